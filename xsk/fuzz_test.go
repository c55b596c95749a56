//go:build linux

package xsk

import (
	"encoding/binary"
	"sync/atomic"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// checkDesc never gives a range outside the UMEM or across a frame's end.
func FuzzCheckDesc(f *testing.F) {
	f.Add(uint64(256), uint32(60), uint32(0), uint8(4), uint8(11))
	f.Add(uint64(4095), uint32(2), uint32(0), uint8(1), uint8(12))
	f.Add(^uint64(0), ^uint32(0), uint32(1), uint8(255), uint8(11))
	f.Fuzz(func(t *testing.T, addr uint64, length, options uint32, frames, shift uint8) {
		fs := uint64(1) << (11 + shift%2) // 2 KB or 4 KB
		size := uint64(frames) * fs
		frame, start, end, ok := checkDesc(unix.XDPDesc{Addr: addr, Len: length, Options: options}, size, fs)
		if !ok {
			return
		}
		if start != addr || end-start != uint64(length) || length == 0 {
			t.Fatalf("range [%d, %d) for addr %d len %d", start, end, addr, length)
		}
		if end > size || start < frame*fs || end > (frame+1)*fs {
			t.Fatalf("addr %d len %d: frame %d, range [%d, %d) outside frame or UMEM of %d", addr, length, frame, start, end, size)
		}
		if options&unix.XDP_PKT_CONTD != 0 {
			t.Fatalf("multi-buffer part accepted")
		}
	})
}

// fakeRing gives r n entries of entry bytes in Go memory, laid out as a
// kernel might (indices on separate cache lines).
func fakeRing(r *ring, n uint32, entry uintptr) {
	words := make([]uint64, (192+uintptr(n)*entry)/8)
	base := unsafe.Pointer(&words[0])
	*r = ring{
		producer: (*uint32)(base),
		consumer: (*uint32)(unsafe.Add(base, 64)),
		flags:    (*uint32)(unsafe.Add(base, 128)),
		entries:  unsafe.Add(base, 192),
		mask:     n - 1,
		size:     n,
	}
}

// fakeSocket is a Socket whose UMEM and rings are Go memory, which the
// test plays the kernel on. Its fd is never used: Receive is called with
// no timeout and no wakeups.
func fakeSocket(frames, frameSize int, fill, rx uint32) *Socket {
	s := &Socket{fd: 1 << 30, opts: Options{Frames: frames, FrameSize: frameSize, FillSize: int(fill), RxSize: int(rx)}}
	s.umem = make([]byte, frames*frameSize)
	fakeRing(&s.fill, fill, 8)
	fakeRing(&s.rx, rx, 16)
	s.lent = make([]bool, frames)
	for i := frames - 1; i >= 0; i-- {
		s.free = append(s.free, uint64(i*frameSize))
	}
	s.refill()
	return s
}

// Whatever descriptors (and producer index) a buggy kernel or a process
// sharing the socket puts on the receive ring, Receive reads only inside
// the UMEM, inside frames it lent, each once, and never loses or
// duplicates a frame.
func FuzzReceive(f *testing.F) {
	desc := func(addr uint64, n uint32) []byte {
		b := make([]byte, 16)
		binary.LittleEndian.PutUint64(b, addr)
		binary.LittleEndian.PutUint32(b[8:], n)
		return b
	}
	seed := append(desc(256, 60), desc(2048+256, 1500)...)
	f.Add(seed, uint32(2), seed, uint32(2))
	f.Add(append(desc(0, 2048), desc(0, 10)...), uint32(2), desc(1<<40, 1), uint32(1<<31))
	f.Add(desc(4*2048-1, 1), uint32(9), []byte{}, uint32(0))
	f.Fuzz(func(t *testing.T, round1 []byte, prod1 uint32, round2 []byte, prod2 uint32) {
		const frames, fs = 6, 2048
		s := fakeSocket(frames, fs, 4, 8)
		umem := uintptr(unsafe.Pointer(&s.umem[0]))
		for _, round := range []struct {
			descs []byte
			prod  uint32
		}{{round1, prod1}, {round2, prod2}} {
			for i := uint32(0); i < s.rx.size && int(i+1)*16 <= len(round.descs); i++ {
				d := s.rx.desc(s.rx.cached + i)
				d.Addr = binary.LittleEndian.Uint64(round.descs[16*i:])
				d.Len = binary.LittleEndian.Uint32(round.descs[16*i+8:])
				d.Options = binary.LittleEndian.Uint32(round.descs[16*i+12:])
			}
			atomic.StoreUint32(s.rx.producer, s.rx.cached+round.prod)
			lentBefore := append([]bool(nil), s.lent...)
			seen := map[uintptr]bool{}
			n, err := s.Receive(0, func(b []byte) {
				p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
				if len(b) == 0 || p < umem || p+uintptr(len(b)) > umem+uintptr(len(s.umem)) {
					t.Fatalf("frame of %d bytes at UMEM offset %d: outside the UMEM of %d", len(b), int64(p-umem), len(s.umem))
				}
				k := (p - umem) / fs
				if (p-umem+uintptr(len(b))-1)/fs != k {
					t.Fatalf("frame at UMEM offset %d of %d bytes crosses a frame's end", p-umem, len(b))
				}
				if !lentBefore[k] || seen[k] {
					t.Fatalf("UMEM frame %d handed out though not lent, or twice", k)
				}
				seen[k] = true
			})
			if err != nil || n != len(seen) {
				t.Fatalf("Receive: %d, %v; callback saw %d frames", n, err, len(seen))
			}
			held := len(s.free)
			for _, l := range s.lent {
				if l {
					held++
				}
			}
			if held != frames {
				t.Fatalf("%d frames lent or free, want %d", held, frames)
			}
			inFill := s.fill.cached - atomic.LoadUint32(s.fill.consumer)
			if inFill > s.fill.size {
				t.Fatalf("fill ring holds %d of %d", inFill, s.fill.size)
			}
			// The kernel takes every frame on the fill ring.
			atomic.StoreUint32(s.fill.consumer, s.fill.cached)
		}
	})
}
