package xsk

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ring is one of the four rings the kernel shares with the socket's
// owner: a producer index, a consumer index, flags and entries, in one
// mapping. Indices run freely and wrap at 2^32; entry i is at i & mask.
type ring struct {
	mem      []byte
	producer *uint32
	consumer *uint32
	flags    *uint32
	entries  unsafe.Pointer
	mask     uint32
	size     uint32
	// cached is this side's own index: the producer's for the fill
	// ring, the consumer's for the receive ring. Only this side writes
	// it, so it needs no atomic read.
	cached uint32
}

// mmap maps the ring of n entries of entry bytes at the page offset pgoff
// of fd, laid out as off says.
func (r *ring) mmap(fd int, off unix.XDPRingOffset, pgoff int64, n uint32, entry uintptr) error {
	length := off.Desc + uint64(n)*uint64(entry)
	if off.Producer+4 > length || off.Consumer+4 > length || off.Flags+4 > length || off.Producer%4 != 0 || off.Consumer%4 != 0 || off.Flags%4 != 0 || off.Desc%8 != 0 {
		return fmt.Errorf("ring offsets %+v do not fit a ring of %d bytes", off, length)
	}
	mem, err := unix.Mmap(fd, pgoff, int(length), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return err
	}
	base := unsafe.Pointer(&mem[0])
	*r = ring{
		mem:      mem,
		producer: (*uint32)(unsafe.Add(base, off.Producer)),
		consumer: (*uint32)(unsafe.Add(base, off.Consumer)),
		flags:    (*uint32)(unsafe.Add(base, off.Flags)),
		entries:  unsafe.Add(base, off.Desc),
		mask:     n - 1,
		size:     n,
	}
	return nil
}

func (r *ring) unmap() {
	if r.mem != nil {
		unix.Munmap(r.mem)
		*r = ring{}
	}
}

// addr returns entry i of a fill or completion ring.
func (r *ring) addr(i uint32) *uint64 {
	return (*uint64)(unsafe.Add(r.entries, uintptr(i&r.mask)*8))
}

// desc returns entry i of a receive or transmit ring.
func (r *ring) desc(i uint32) *unix.XDPDesc {
	return (*unix.XDPDesc)(unsafe.Add(r.entries, uintptr(i&r.mask)*unsafe.Sizeof(unix.XDPDesc{})))
}

// needWakeup says whether the kernel asked to be woken (only set on a
// socket bound with XDP_USE_NEED_WAKEUP).
func (r *ring) needWakeup() bool {
	return atomic.LoadUint32(r.flags)&unix.XDP_RING_NEED_WAKEUP != 0
}

// parseMmapOffsets decodes XDP_MMAP_OFFSETS as the kernel wrote it: the
// current layout (four rings of producer, consumer, desc, flags), or the
// one of kernels before 5.4, without flags, where the flags word follows
// the consumer index.
func parseMmapOffsets(b []byte) (unix.XDPMmapOffsets, error) {
	var o unix.XDPMmapOffsets
	rings := []*unix.XDPRingOffset{&o.Rx, &o.Tx, &o.Fr, &o.Cr}
	u64 := func(i int) uint64 { return binary.NativeEndian.Uint64(b[8*i:]) }
	switch len(b) {
	case 4 * 32:
		for i, r := range rings {
			*r = unix.XDPRingOffset{Producer: u64(4 * i), Consumer: u64(4*i + 1), Desc: u64(4*i + 2), Flags: u64(4*i + 3)}
		}
	case 4 * 24:
		for i, r := range rings {
			*r = unix.XDPRingOffset{Producer: u64(3 * i), Consumer: u64(3*i + 1), Desc: u64(3*i + 2)}
			r.Flags = r.Consumer + 4
		}
	default:
		return o, fmt.Errorf("the kernel returned %d bytes of offsets, want %d or %d", len(b), 4*32, 4*24)
	}
	return o, nil
}

// parseStatistics decodes XDP_STATISTICS as the kernel wrote it: as many
// counters as it knows, in order.
func parseStatistics(b []byte) Stats {
	var st Stats
	for i, f := range []*uint64{&st.RxDropped, &st.RxInvalidDescs, &st.TxInvalidDescs, &st.RxRingFull, &st.RxFillRingEmpty, &st.TxRingEmpty} {
		if len(b) >= 8*(i+1) {
			*f = binary.NativeEndian.Uint64(b[8*i:])
		}
	}
	return st
}
