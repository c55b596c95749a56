package ebpfrss

import (
	"math/rand/v2"
	"os"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/vrss-dev/vrss/internal/frame"
	"github.com/vrss-dev/vrss/internal/privtest"
	"github.com/vrss-dev/vrss/rss"
)

// EnvObject names a file holding QEMU's object as QMP request-ebpf returns
// it (vrssd caches it under its state directory, in qemu-ebpf/), for
// TestDifferences. Without it the test checks the engine's side only.
const EnvObject = "VRSS_QEMU_OBJECT"

// Hash types of the cases below.
const (
	plainTypes = rss.HashIPv4 | rss.HashTCPv4 | rss.HashUDPv4 | rss.HashIPv6 | rss.HashTCPv6 | rss.HashUDPv6
	// ipExTypes: IP_EX next to the plain IPv6 types, without TCP_EX and
	// UDP_EX.
	ipExTypes = rss.HashIPv6 | rss.HashTCPv6 | rss.HashUDPv6 | rss.HashIPEx
)

// Where the addresses and ports sit in an untagged frame.
const (
	eth      = 14
	src4     = eth + 12
	src6     = eth + 8
	ip6End   = eth + 40
	unclQ    = 200 // QEMU's default queue, vrss's unclassified queue
	perCase  = 32
	tableLen = 128
)

// qemuInput names the bytes QEMU's program hashes; nil means it sends the
// frame to its default queue.
type qemuInput func(f []byte) []byte

func addrs4(f []byte) []byte { return cat(f[src4 : src4+8]) }
func addrs6(f []byte) []byte { return cat(f[src6 : src6+32]) }

// ports6 is the packet's own IPv6 addresses and the ports at off.
func ports6(off int) qemuInput {
	return func(f []byte) []byte { return cat(f[src6:src6+32], f[off:off+4]) }
}

// srcAt6 is the address at off in place of the source address, the
// destination address, and the ports at ports.
func srcAt6(off, ports int) qemuInput {
	return func(f []byte) []byte { return cat(f[off:off+16], f[src6+16:src6+32], f[ports:ports+4]) }
}

// dstAt6 is the source address, the address at off in place of the
// destination address, and the ports at ports.
func dstAt6(off, ports int) qemuInput {
	return func(f []byte) []byte { return cat(f[src6:src6+16], f[off:off+16], f[ports:ports+4]) }
}

func defaultQueue([]byte) []byte { return nil }

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func rand4(r *rand.Rand, proto uint8) frame.Spec {
	return frame.Spec{Src: frame.RandomAddr4(r), Dst: frame.RandomAddr4(r), Proto: proto,
		SrcPort: uint16(r.Uint32()), DstPort: uint16(r.Uint32()), Payload: 16}
}

func rand6(r *rand.Rand, proto uint8, ext ...frame.ExtHeader) frame.Spec {
	return frame.Spec{Src: frame.RandomAddr6(r), Dst: frame.RandomAddr6(r), Proto: proto, Ext: ext,
		SrcPort: uint16(r.Uint32()), DstPort: uint16(r.Uint32()), Payload: 16}
}

// cut4opts is an IPv4 frame with 40 bytes of options (IHL 15) that ends
// inside them.
func cut4opts(proto uint8, more bool) func(r *rand.Rand) []byte {
	return func(r *rand.Rand) []byte {
		s := rand4(r, proto)
		s.MoreFrags = more
		s.IPv4Opts = make([]byte, 40)
		for i := range s.IPv4Opts {
			s.IPv4Opts[i] = 1 // NOP
		}
		return frame.Build(s)[:eth+20+r.IntN(40)]
	}
}

// cutExt is an IPv6 frame whose one extension header h, followed by
// proto, is cut after from to to-1 of its bytes.
func cutExt(h frame.ExtHeader, proto uint8, from, to int) func(r *rand.Rand) []byte {
	return func(r *rand.Rand) []byte {
		return frame.Build(rand6(r, proto, h))[:ip6End+from+r.IntN(to-from)]
	}
}

// endsAfterFrag is an IPv6 frame that ends right after a fragment header
// (offset 0; more says M) whose next header is next.
func endsAfterFrag(next uint8, more bool) func(r *rand.Rand) []byte {
	return func(r *rand.Rand) []byte {
		return frame.Build(rand6(r, next, frame.FragmentHeader(0, more)))[:ip6End+8]
	}
}

func withExt(proto uint8, ext ...func(r *rand.Rand) frame.ExtHeader) func(r *rand.Rand) []byte {
	return func(r *rand.Rand) []byte {
		var h []frame.ExtHeader
		for _, e := range ext {
			h = append(h, e(r))
		}
		return frame.Build(rand6(r, proto, h...))
	}
}

func hbh(*rand.Rand) frame.ExtHeader   { return frame.ExtHeader{Type: 0, Data: make([]byte, 6)} }
func hao(r *rand.Rand) frame.ExtHeader { return frame.HomeAddressOption(frame.RandomAddr6(r)) }
func rt2(r *rand.Rand) frame.ExtHeader { return frame.RoutingType2(frame.RandomAddr6(r), 1) }

// twoHAO is one destination options header holding two Home Address
// options, the first first bytes long (address at 8 either way).
func twoHAO(first byte) func(r *rand.Rand) frame.ExtHeader {
	return func(r *rand.Rand) frame.ExtHeader {
		a, b := frame.RandomAddr6(r).As16(), frame.RandomAddr6(r).As16()
		d := append([]byte{1, 2, 0, 0, 0xc9, first}, a[:]...)
		d = append(d, make([]byte, first-16)...)
		d = append(d, 0xc9, 16)
		return frame.ExtHeader{Type: 60, Data: append(d, b[:]...)}
	}
}

// differenceCases are the edge cases docs/semantics.md describes under
// "Differences from QEMU's eBPF RSS program" and "Truncated and malformed
// frames": what vrss reports, what QEMU's program hashes, and whether the
// two then choose different queues. Offsets below are into the frames the
// builders make: a destination options header from frame.HomeAddressOption
// and a type 2 routing header are 24 bytes with the address at 8; TCP
// follows the last header.
var differenceCases = []struct {
	name   string
	types  rss.HashType
	build  func(r *rand.Rand) []byte
	vrss   rss.HashReport
	qemu   qemuInput
	differ bool
}{
	// IPv4 cut inside its options: QEMU reads the fixed 20 bytes and
	// looks no further unless it wants the ports.
	{"icmpv4, cut inside its options", plainTypes, cut4opts(frame.ProtoICMP, false), rss.ReportNone, addrs4, true},
	{"ipv4 first fragment (TCP), cut inside its options", plainTypes, cut4opts(frame.ProtoTCP, true), rss.ReportNone, addrs4, true},
	{"tcpv4, cut inside its options", plainTypes, cut4opts(frame.ProtoTCP, false), rss.ReportNone, defaultQueue, false},
	{"udpv4, cut inside its options", plainTypes, cut4opts(frame.ProtoUDP, false), rss.ReportNone, defaultQueue, false},

	// An IPv6 extension header cut short (ESP behind it: no further read).
	{"hop-by-hop (16 bytes) cut after 2-15, then ESP", plainTypes,
		cutExt(frame.ExtHeader{Type: 0, Data: make([]byte, 14)}, 50, 2, 16), rss.ReportNone, addrs6, true},
	{"hop-by-hop cut after 0-1, then ESP", plainTypes,
		cutExt(frame.ExtHeader{Type: 0, Data: make([]byte, 14)}, 50, 0, 2), rss.ReportNone, defaultQueue, false},
	{"mobility header (16 bytes) cut after 2-15, then ESP", plainTypes,
		cutExt(frame.ExtHeader{Type: 135, Data: make([]byte, 14)}, 50, 2, 16), rss.ReportNone, addrs6, true},
	{"fragment header (M) cut after 2-7, then TCP", plainTypes,
		cutExt(frame.FragmentHeader(0, true), frame.ProtoTCP, 2, 8), rss.ReportNone, addrs6, true},
	{"atomic fragment header cut after 2-7, then TCP", plainTypes,
		cutExt(frame.FragmentHeader(0, false), frame.ProtoTCP, 2, 8), rss.ReportNone, addrs6, true},
	{"routing header type 0 (24 bytes) cut after 4-23, then ESP", plainTypes,
		cutExt(frame.ExtHeader{Type: 43, Data: make([]byte, 22)}, 50, 4, 24), rss.ReportNone, addrs6, true},
	{"routing header cut after 2-3, then ESP", plainTypes,
		cutExt(frame.ExtHeader{Type: 43, Data: make([]byte, 22)}, 50, 2, 4), rss.ReportNone, defaultQueue, false},
	{"destination options (8 bytes of Pad1) cut after 4-7, then ESP", plainTypes,
		cutExt(frame.ExtHeader{Type: 60, Data: make([]byte, 6)}, 50, 4, 8), rss.ReportNone, addrs6, true},
	{"destination options cut after 2-3, then ESP", plainTypes,
		cutExt(frame.ExtHeader{Type: 60, Data: make([]byte, 6)}, 50, 2, 4), rss.ReportNone, defaultQueue, false},
	{"hop-by-hop cut after 2-15, then TCP", plainTypes,
		cutExt(frame.ExtHeader{Type: 0, Data: make([]byte, 14)}, frame.ProtoTCP, 2, 16), rss.ReportNone, defaultQueue, false},
	{"hop-by-hop cut after 2-15, then ICMPv6", plainTypes,
		cutExt(frame.ExtHeader{Type: 0, Data: make([]byte, 14)}, 58, 2, 16), rss.ReportNone, defaultQueue, false},

	// A frame that ends right after a whole fragment header.
	{"ends after fragment header (M), next TCP", plainTypes, endsAfterFrag(frame.ProtoTCP, true), rss.ReportIPv6, addrs6, false},
	{"ends after fragment header (M), next ESP", plainTypes, endsAfterFrag(50, true), rss.ReportIPv6, addrs6, false},
	{"ends after fragment header (M), next ICMPv6", plainTypes, endsAfterFrag(58, true), rss.ReportIPv6, defaultQueue, true},
	{"ends after fragment header (M), next destination options", plainTypes, endsAfterFrag(60, true), rss.ReportIPv6, defaultQueue, true},
	{"ends after atomic fragment header, next TCP", plainTypes, endsAfterFrag(frame.ProtoTCP, false), rss.ReportNone, addrs6, true},
	{"ends after atomic fragment header, next UDP", plainTypes, endsAfterFrag(frame.ProtoUDP, false), rss.ReportNone, addrs6, true},
	{"ends after atomic fragment header, next ESP", plainTypes, endsAfterFrag(50, false), rss.ReportIPv6, addrs6, false},
	{"ends after atomic fragment header, next ICMPv6", plainTypes, endsAfterFrag(58, false), rss.ReportIPv6, defaultQueue, true},
	{"ends after atomic fragment header, next no next header", plainTypes, endsAfterFrag(59, false), rss.ReportIPv6, defaultQueue, true},
	{"ends after atomic fragment header, next hop-by-hop", plainTypes, endsAfterFrag(0, false), rss.ReportNone, defaultQueue, false},

	// IP_EX with TCPv6 or UDPv6 (no TCP_EX, UDP_EX): the spec's order
	// puts IP_EX first for a packet with extension headers.
	{"tcpv6 + hop-by-hop, IP_EX", ipExTypes, withExt(frame.ProtoTCP, hbh), rss.ReportIPv6Ex, ports6(ip6End + 8), true},
	{"udpv6 + hop-by-hop, IP_EX", ipExTypes, withExt(frame.ProtoUDP, hbh), rss.ReportIPv6Ex, ports6(ip6End + 8), true},
	{"tcpv6 + home address, IP_EX", ipExTypes, withExt(frame.ProtoTCP, hao), rss.ReportIPv6Ex, ports6(ip6End + 24), true},

	// Home Address options: QEMU takes the first 0xC9 of a header, and a
	// later header's replaces an earlier one's.
	{"tcpv6 + one home address", rss.AllHashTypes, withExt(frame.ProtoTCP, hao), rss.ReportTCPv6Ex, srcAt6(ip6End+8, ip6End+24), false},
	{"tcpv6 + two home address headers", rss.AllHashTypes, withExt(frame.ProtoTCP, hao, hao), rss.ReportTCPv6Ex, srcAt6(ip6End+24+8, ip6End+48), true},
	{"tcpv6 + two home address options in one header", rss.AllHashTypes, withExt(frame.ProtoTCP, twoHAO(16)), rss.ReportTCPv6Ex, srcAt6(ip6End+8, ip6End+48), false},
	{"tcpv6 + home address options of length 17, then 16", rss.AllHashTypes, withExt(frame.ProtoTCP, twoHAO(17)), rss.ReportTCPv6Ex, srcAt6(ip6End+8, ip6End+48), true},
	// Type 2 routing headers alike: a later one replaces an earlier one.
	{"tcpv6 + two type 2 routing headers", rss.AllHashTypes, withExt(frame.ProtoTCP, rt2, rt2), rss.ReportTCPv6Ex, dstAt6(ip6End+24+8, ip6End+48), true},
}

// TestDifferences holds docs/semantics.md to the cases above: the engine
// always, QEMU's program (test runs of the object in EnvObject, with an
// identity indirection table so that agreement is on the hash's low 7
// bits) when there is one.
func TestDifferences(t *testing.T) {
	key := make([]byte, KeySize)
	r := rand.New(rand.NewPCG(11, 3))
	for i := range key {
		key[i] = byte(r.Uint32())
	}
	table := make([]uint16, tableLen)
	for i := range table {
		table[i] = uint16(i)
	}
	toe := rss.NewToeplitz(key)

	var obj *Object
	if path := os.Getenv(EnvObject); path != "" {
		privtest.Require(t, "bpf")
		var err error
		if obj, err = LoadFile(path); err != nil {
			t.Fatal(err)
		}
		defer obj.Close()
	} else {
		t.Logf("%s not set: checking the engine's side only", EnvObject)
	}

	for _, c := range differenceCases {
		t.Run(c.name, func(t *testing.T) {
			cfg := rss.Config{HashTypes: c.types, Key: key, Table: table, UnclassifiedQueue: unclQ}
			eng, err := rss.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if obj != nil {
				if err := obj.Write(FromRSS(cfg)); err != nil {
					t.Fatal(err)
				}
			}
			differ := 0
			for range perCase {
				f := c.build(r)
				st := eng.Steer(f)
				if st.Report != c.vrss {
					t.Fatalf("vrss reports %s, want %s (frame %x)", st.Report, c.vrss, f)
				}
				if obj == nil {
					continue
				}
				ret, err := obj.Program.Run(&ebpf.RunOptions{Data: f})
				if err != nil {
					t.Fatalf("BPF_PROG_TEST_RUN of QEMU's program: %v", err)
				}
				want := uint16(unclQ)
				if in := c.qemu(f); in != nil {
					want = table[toe.Hash(in)%tableLen]
				}
				if q := uint16(ret); q != want {
					t.Fatalf("QEMU chose queue %d, want %d (frame %x)", q, want, f)
				}
				if uint16(ret) != st.Queue {
					differ++
				}
			}
			switch {
			case obj == nil:
			case c.differ && differ == 0:
				t.Errorf("QEMU and vrss agree on all %d frames; the case says they differ", perCase)
			case !c.differ && differ > 0:
				t.Errorf("QEMU and vrss differ on %d of %d frames; the case says they agree", differ, perCase)
			}
		})
	}
}
