//go:build linux

package xsk

import (
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The C layouts of <linux/if_xdp.h>, as (size, field offsets) in order of
// the fields, written out from the header.
var cLayouts = map[string][]uintptr{
	"struct xdp_umem_reg":     {32, 0, 8, 16, 20, 24, 28}, // addr, len, chunk_size, headroom, flags, tx_metadata_len
	"struct xdp_desc":         {16, 0, 8, 12},             // addr, len, options
	"struct xdp_ring_offset":  {32, 0, 8, 16, 24},         // producer, consumer, desc, flags
	"struct xdp_mmap_offsets": {128, 0, 32, 64, 96},       // rx, tx, fr, cr
	"struct xdp_statistics":   {48, 0, 8, 16, 24, 32, 40},
	"struct sockaddr_xdp":     {16, 0, 2, 4, 8, 12}, // family, flags, ifindex, queue_id, shared_umem_fd
}

func goLayouts() map[string][]uintptr {
	var r unix.XDPUmemReg
	var d unix.XDPDesc
	var o unix.XDPRingOffset
	var m unix.XDPMmapOffsets
	var s unix.XDPStatistics
	var a unix.RawSockaddrXDP
	return map[string][]uintptr{
		"struct xdp_umem_reg":     {unsafe.Sizeof(r), unsafe.Offsetof(r.Addr), unsafe.Offsetof(r.Len), unsafe.Offsetof(r.Size), unsafe.Offsetof(r.Headroom), unsafe.Offsetof(r.Flags), unsafe.Offsetof(r.Tx_metadata_len)},
		"struct xdp_desc":         {unsafe.Sizeof(d), unsafe.Offsetof(d.Addr), unsafe.Offsetof(d.Len), unsafe.Offsetof(d.Options)},
		"struct xdp_ring_offset":  {unsafe.Sizeof(o), unsafe.Offsetof(o.Producer), unsafe.Offsetof(o.Consumer), unsafe.Offsetof(o.Desc), unsafe.Offsetof(o.Flags)},
		"struct xdp_mmap_offsets": {unsafe.Sizeof(m), unsafe.Offsetof(m.Rx), unsafe.Offsetof(m.Tx), unsafe.Offsetof(m.Fr), unsafe.Offsetof(m.Cr)},
		"struct xdp_statistics":   {unsafe.Sizeof(s), unsafe.Offsetof(s.Rx_dropped), unsafe.Offsetof(s.Rx_invalid_descs), unsafe.Offsetof(s.Tx_invalid_descs), unsafe.Offsetof(s.Rx_ring_full), unsafe.Offsetof(s.Rx_fill_ring_empty_descs), unsafe.Offsetof(s.Tx_ring_empty_descs)},
		"struct sockaddr_xdp":     {unsafe.Sizeof(a), unsafe.Offsetof(a.Family), unsafe.Offsetof(a.Flags), unsafe.Offsetof(a.Ifindex), unsafe.Offsetof(a.Queue_id), unsafe.Offsetof(a.Shared_umem_fd)},
	}
}

// The Go structs handed to and read from the kernel have the C layout.
func TestLayout(t *testing.T) {
	for name, want := range cLayouts {
		if got := goLayouts()[name]; !slices.Equal(got, want) {
			t.Errorf("%s: Go size and offsets %v, C %v", name, got, want)
		}
	}
}

// The same, against the installed kernel header, compiled: skipped
// without a C compiler or the header.
func TestLayoutAgainstHeader(t *testing.T) {
	cc, err := exec.LookPath("cc")
	if err != nil {
		if cc, err = exec.LookPath("clang"); err != nil {
			t.Skip("no C compiler")
		}
	}
	if _, err := os.Stat("/usr/include/linux/if_xdp.h"); err != nil {
		t.Skip("no <linux/if_xdp.h> (linux-libc-dev)")
	}
	src := `#include <stdio.h>
#include <stddef.h>
#include <linux/if_xdp.h>
#define F(s, f) printf(" %zu", offsetof(s, f))
int main(void) {
	printf("%zu", sizeof(struct xdp_umem_reg)); F(struct xdp_umem_reg, addr); F(struct xdp_umem_reg, len); F(struct xdp_umem_reg, chunk_size); F(struct xdp_umem_reg, headroom); F(struct xdp_umem_reg, flags); 
#ifdef XDP_UMEM_TX_METADATA_LEN
	F(struct xdp_umem_reg, tx_metadata_len);
#else
	printf(" 28"); /* before 6.8: the padding tx_metadata_len took */
#endif
	printf("\n");
	printf("%zu", sizeof(struct xdp_desc)); F(struct xdp_desc, addr); F(struct xdp_desc, len); F(struct xdp_desc, options); printf("\n");
	printf("%zu", sizeof(struct xdp_ring_offset)); F(struct xdp_ring_offset, producer); F(struct xdp_ring_offset, consumer); F(struct xdp_ring_offset, desc); F(struct xdp_ring_offset, flags); printf("\n");
	printf("%zu", sizeof(struct xdp_mmap_offsets)); F(struct xdp_mmap_offsets, rx); F(struct xdp_mmap_offsets, tx); F(struct xdp_mmap_offsets, fr); F(struct xdp_mmap_offsets, cr); printf("\n");
	printf("%zu", sizeof(struct xdp_statistics)); F(struct xdp_statistics, rx_dropped); F(struct xdp_statistics, rx_invalid_descs); F(struct xdp_statistics, tx_invalid_descs); F(struct xdp_statistics, rx_ring_full); F(struct xdp_statistics, rx_fill_ring_empty_descs); F(struct xdp_statistics, tx_ring_empty_descs); printf("\n");
	printf("%zu", sizeof(struct sockaddr_xdp)); F(struct sockaddr_xdp, sxdp_family); F(struct sockaddr_xdp, sxdp_flags); F(struct sockaddr_xdp, sxdp_ifindex); F(struct sockaddr_xdp, sxdp_queue_id); F(struct sockaddr_xdp, sxdp_shared_umem_fd); printf("\n");
	return 0;
}
`
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "l.c"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "l")
	if out, err := exec.Command(cc, "-o", bin, filepath.Join(dir, "l.c")).CombinedOutput(); err != nil {
		t.Skipf("the header does not compile here : %v\n%s", err, out)
	}
	out, err := exec.Command(bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"struct xdp_umem_reg", "struct xdp_desc", "struct xdp_ring_offset", "struct xdp_mmap_offsets", "struct xdp_statistics", "struct sockaddr_xdp"}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	for i, name := range names {
		got := strings.Join(strings.Fields(fmtUintptrs(goLayouts()[name])), " ")
		if i >= len(lines) || lines[i] != got {
			t.Errorf("%s: C says %q, Go %q", name, lines[min(i, len(lines)-1)], got)
		}
	}
}

// The bytes of XDP_UMEM_REG's argument, for a UMEM at 0x7f0011223000 of
// 2 MB in 4 KB frames: no headroom, no flags (aligned chunks), no
// transmit metadata.
func TestUmemRegGolden(t *testing.T) {
	requireLittleEndian(t)
	r := umemReg(0x7f0011223000, 2<<20, 4096)
	got := hex.EncodeToString(unsafe.Slice((*byte)(unsafe.Pointer(&r)), unsafe.Sizeof(r)))
	want := "00302211007f0000" + "0000200000000000" + "00100000" + "00000000" + "00000000" + "00000000"
	if got != want {
		t.Errorf("XDP_UMEM_REG bytes\n got %s\nwant %s", got, want)
	}
}

// Descriptors are read from the ring as struct xdp_desc lays them out.
func TestDescGolden(t *testing.T) {
	requireLittleEndian(t)
	b, _ := hex.DecodeString("0011000000000000" + "2a000000" + "01000000")
	d := *(*unix.XDPDesc)(unsafe.Pointer(&b[0]))
	if d != (unix.XDPDesc{Addr: 0x1100, Len: 42, Options: unix.XDP_PKT_CONTD}) {
		t.Errorf("decoded %+v", d)
	}
}

// XDP_MMAP_OFFSETS in both layouts the kernel has written: with flags
// (5.4 and later) and without (before, where flags follow the consumer).
func TestParseMmapOffsets(t *testing.T) {
	requireLittleEndian(t)
	word := func(v uint64) string {
		b := make([]byte, 8)
		for i := range b {
			b[i] = byte(v >> (8 * i))
		}
		return hex.EncodeToString(b)
	}
	var cur, v1 string
	for r := range uint64(4) {
		cur += word(r*1000) + word(r*1000+64) + word(r*1000+128) + word(r*1000+8)
		v1 += word(r*1000) + word(r*1000+64) + word(r*1000+128)
	}
	for _, c := range []struct {
		name, hex string
		flags     uint64
	}{{"current", cur, 8}, {"v1", v1, 68}} {
		b, _ := hex.DecodeString(c.hex)
		o, err := parseMmapOffsets(b)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		for r, ro := range []unix.XDPRingOffset{o.Rx, o.Tx, o.Fr, o.Cr} {
			base := uint64(r) * 1000
			want := unix.XDPRingOffset{Producer: base, Consumer: base + 64, Desc: base + 128, Flags: base + c.flags}
			if ro != want {
				t.Errorf("%s: ring %d: %+v, want %+v", c.name, r, ro, want)
			}
		}
	}
	if _, err := parseMmapOffsets(make([]byte, 100)); err == nil {
		t.Error("100 bytes of offsets accepted")
	}
}

// XDP_STATISTICS: the six counters, or the first three from kernels
// before 5.9.
func TestParseStatistics(t *testing.T) {
	requireLittleEndian(t)
	b := make([]byte, 48)
	for i := range 6 {
		b[8*i] = byte(i + 1)
	}
	want := Stats{1, 2, 3, 4, 5, 6, 0}
	if st := parseStatistics(b); st != want {
		t.Errorf("48 bytes: %+v, want %+v", st, want)
	}
	if st := parseStatistics(b[:24]); st != (Stats{RxDropped: 1, RxInvalidDescs: 2, TxInvalidDescs: 3}) {
		t.Errorf("24 bytes: %+v", st)
	}
}

func requireLittleEndian(t *testing.T) {
	t.Helper()
	x := uint16(1)
	if *(*byte)(unsafe.Pointer(&x)) != 1 {
		t.Skip("golden bytes are little-endian")
	}
}

func fmtUintptrs(v []uintptr) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, " ")
}
