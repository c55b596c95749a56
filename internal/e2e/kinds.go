package e2e

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"

	"github.com/vrss-dev/vrss/internal/frame"
	"github.com/vrss-dev/vrss/rss"
)

// frameKind is a kind of frame scenario B sends: every frame of a kind is
// a flow of its own (random addresses and ports).
type frameKind struct {
	name string
	// main kinds make up the main pass, whose counters must equal the
	// engine's prediction; the others are characterised.
	main bool
	// vlan: tagged frames, whose network header BPF_PROG_TEST_RUN places
	// differently from the TAP's transmit path, so only the guest judges.
	vlan  bool
	build func(r *rand.Rand) []byte
}

func spec4(r *rand.Rand, proto uint8) frame.Spec {
	return frame.Spec{
		Src: frame.RandomAddr4(r), Dst: frame.RandomAddr4(r), Proto: proto,
		SrcPort: uint16(r.Uint32()), DstPort: uint16(r.Uint32()), Payload: 16,
	}
}

func spec6(r *rand.Rand, proto uint8, ext ...frame.ExtHeader) frame.Spec {
	return frame.Spec{
		Src: frame.RandomAddr6(r), Dst: frame.RandomAddr6(r), Proto: proto, Ext: ext,
		SrcPort: uint16(r.Uint32()), DstPort: uint16(r.Uint32()), Payload: 16,
	}
}

// icmp6 builds an ICMPv6 frame whose message type (the payload's first
// byte) is typ.
func icmp6(r *rand.Rand, typ byte) []byte {
	s := spec6(r, 58)
	f := frame.Build(s)
	f[len(f)-s.Payload] = typ
	return f
}

// destOpts returns n destination options headers (8 bytes each).
func destOpts(n int) []frame.ExtHeader {
	h := make([]frame.ExtHeader, n)
	for i := range h {
		h[i] = frame.ExtHeader{Type: 60, Data: make([]byte, 6)}
	}
	return h
}

func build(mk func(r *rand.Rand) frame.Spec) func(r *rand.Rand) []byte {
	return func(r *rand.Rand) []byte { return frame.Build(mk(r)) }
}

// frameKinds are scenario B's kinds. The main ones are those every RSS
// implementation must steer alike: plain TCP, UDP and ICMP over IPv4 and
// IPv6, and non-IP frames. The others probe where the virtio
// specification is silent or implementations are known to part: fragments,
// extension headers, VLAN tags, malformed and truncated headers, a hash of
// 0 (found for key, the guest's key).
func frameKinds(key []byte) []frameKind {
	zero := zeroHashAddrs(key)
	return []frameKind{
		{name: "tcpv4", main: true, build: build(func(r *rand.Rand) frame.Spec { return spec4(r, frame.ProtoTCP) })},
		{name: "udpv4", main: true, build: build(func(r *rand.Rand) frame.Spec { return spec4(r, frame.ProtoUDP) })},
		{name: "icmpv4", main: true, build: build(func(r *rand.Rand) frame.Spec { return spec4(r, frame.ProtoICMP) })},
		{name: "tcpv6", main: true, build: build(func(r *rand.Rand) frame.Spec { return spec6(r, frame.ProtoTCP) })},
		{name: "udpv6", main: true, build: build(func(r *rand.Rand) frame.Spec { return spec6(r, frame.ProtoUDP) })},
		{name: "icmpv6 echo request", main: true, build: func(r *rand.Rand) []byte { return icmp6(r, 128) }},
		{name: "non-IP (EtherType 0x88b5)", main: true, build: func(r *rand.Rand) []byte {
			f := frame.Build(spec4(r, frame.ProtoTCP))
			f[12], f[13] = 0x88, 0xb5
			return f
		}},

		{name: "ipv4 first fragment (MF, TCP)", build: build(func(r *rand.Rand) frame.Spec {
			s := spec4(r, frame.ProtoTCP)
			s.MoreFrags = true
			return s
		})},
		{name: "ipv4 later fragment (UDP)", build: build(func(r *rand.Rand) frame.Spec {
			s := spec4(r, frame.ProtoUDP)
			s.FragOffset = 100
			return s
		})},
		{name: "ipv4 with options (TCP)", build: build(func(r *rand.Rand) frame.Spec {
			s := spec4(r, frame.ProtoTCP)
			s.IPv4Opts = make([]byte, 4*(1+r.IntN(10)))
			for i := range s.IPv4Opts {
				s.IPv4Opts[i] = 1 // NOP
			}
			return s
		})},
		{name: "ipv4 IHL 4 (TCP)", build: func(r *rand.Rand) []byte {
			f := frame.Build(spec4(r, frame.ProtoTCP))
			f[14] = 0x44
			return f
		}},
		{name: "ipv4 EtherType, version 6", build: func(r *rand.Rand) []byte {
			f := frame.Build(spec4(r, frame.ProtoTCP))
			f[14] = 0x65
			return f
		}},
		{name: "ipv4 header cut at 10 bytes", build: func(r *rand.Rand) []byte {
			return frame.Build(spec4(r, frame.ProtoTCP))[:14+10]
		}},
		{name: "tcpv4 header cut at 10 bytes", build: func(r *rand.Rand) []byte {
			return frame.Build(spec4(r, frame.ProtoTCP))[:14+20+10]
		}},
		{name: "udpv4 header cut at 4 bytes", build: func(r *rand.Rand) []byte {
			return frame.Build(spec4(r, frame.ProtoUDP))[:14+20+4]
		}},
		{name: "icmpv4, Toeplitz hash 0", build: func(r *rand.Rand) []byte {
			s := spec4(r, frame.ProtoICMP)
			s.Src, s.Dst = zero(r)
			return frame.Build(s)
		}},
		{name: "ipv6 fragment, first (TCP)", build: build(func(r *rand.Rand) frame.Spec {
			return spec6(r, frame.ProtoTCP, frame.FragmentHeader(0, true))
		})},
		{name: "ipv6 atomic fragment (TCP)", build: build(func(r *rand.Rand) frame.Spec {
			return spec6(r, frame.ProtoTCP, frame.FragmentHeader(0, false))
		})},
		{name: "ipv6 hop-by-hop (TCP)", build: build(func(r *rand.Rand) frame.Spec {
			return spec6(r, frame.ProtoTCP, frame.ExtHeader{Type: 0, Data: make([]byte, 6)})
		})},
		{name: "ipv6 home address option (TCP)", build: build(func(r *rand.Rand) frame.Spec {
			return spec6(r, frame.ProtoTCP, frame.HomeAddressOption(frame.RandomAddr6(r)))
		})},
		{name: "ipv6 type 2 routing header (UDP)", build: build(func(r *rand.Rand) frame.Spec {
			return spec6(r, frame.ProtoUDP, frame.RoutingType2(frame.RandomAddr6(r), 1))
		})},
		{name: "ipv6 AH (TCP)", build: build(func(r *rand.Rand) frame.Spec {
			return spec6(r, frame.ProtoTCP, frame.ExtHeader{Type: 51, Data: make([]byte, 10)})
		})},
		{name: "ipv6 mobility header 135 (TCP)", build: build(func(r *rand.Rand) frame.Spec {
			return spec6(r, frame.ProtoTCP, frame.ExtHeader{Type: 135, Data: make([]byte, 6)})
		})},
		{name: "ipv6 ESP", build: build(func(r *rand.Rand) frame.Spec { return spec6(r, 50) })},
		{name: "ipv6 8 extension headers (TCP)", build: build(func(r *rand.Rand) frame.Spec { return spec6(r, frame.ProtoTCP, destOpts(8)...) })},
		{name: "ipv6 9 extension headers (TCP)", build: build(func(r *rand.Rand) frame.Spec { return spec6(r, frame.ProtoTCP, destOpts(9)...) })},
		{name: "ipv6 12 extension headers (TCP)", build: build(func(r *rand.Rand) frame.Spec { return spec6(r, frame.ProtoTCP, destOpts(12)...) })},
		{name: "ipv6 no next header, empty", build: build(func(r *rand.Rand) frame.Spec {
			s := spec6(r, 59)
			s.Payload = 0
			return s
		})},
		{name: "icmpv6 type 0", build: func(r *rand.Rand) []byte { return icmp6(r, 0) }},
		{name: "tcpv6 header cut at 10 bytes", build: func(r *rand.Rand) []byte {
			return frame.Build(spec6(r, frame.ProtoTCP))[:14+40+10]
		}},
		{name: "802.1Q (TCPv4)", vlan: true, build: build(func(r *rand.Rand) frame.Spec {
			s := spec4(r, frame.ProtoTCP)
			s.VLANs = []uint16{0x8100}
			return s
		})},
		{name: "802.1ad + 802.1Q (TCPv4)", vlan: true, build: build(func(r *rand.Rand) frame.Spec {
			s := spec4(r, frame.ProtoTCP)
			s.VLANs = []uint16{0x88a8, 0x8100}
			return s
		})},
		{name: "802.1Q + 802.1Q (TCPv4)", vlan: true, build: build(func(r *rand.Rand) frame.Spec {
			s := spec4(r, frame.ProtoTCP)
			s.VLANs = []uint16{0x8100, 0x8100}
			return s
		})},
		{name: "802.1ad alone (TCPv4)", vlan: true, build: build(func(r *rand.Rand) frame.Spec {
			s := spec4(r, frame.ProtoTCP)
			s.VLANs = []uint16{0x88a8}
			return s
		})},
		{name: "802.1Q + 802.1ad (TCPv4)", vlan: true, build: build(func(r *rand.Rand) frame.Spec {
			s := spec4(r, frame.ProtoTCP)
			s.VLANs = []uint16{0x8100, 0x88a8}
			return s
		})},
		{name: "802.1Q (TCPv6)", vlan: true, build: build(func(r *rand.Rand) frame.Spec {
			s := spec6(r, frame.ProtoTCP)
			s.VLANs = []uint16{0x8100}
			return s
		})},
	}
}

// zeroHashAddrs returns a generator of IPv4 address pairs whose Toeplitz
// hash under key (addresses only, the IPv4 hash type's input) is 0. The
// hash is linear over GF(2) in the input bits: 64 input bits contribute
// 32-bit words, so some nonempty set of them XORs to zero; elimination in
// a random bit order finds a different one each time.
func zeroHashAddrs(key []byte) func(r *rand.Rand) (netip.Addr, netip.Addr) {
	toe := rss.NewToeplitz(key)
	return func(r *rand.Rand) (netip.Addr, netip.Addr) {
		for {
			var basis [32]struct {
				v    uint32
				mask uint64
			}
			var x uint64
			for _, i := range r.Perm(64) {
				v, mask := toe.Table(i/8, 0x80>>(i%8)), uint64(1)<<(63-i)
				for b := 31; b >= 0 && v != 0; b-- {
					if v&(1<<b) == 0 {
						continue
					}
					if basis[b].v == 0 {
						basis[b].v, basis[b].mask = v, mask
						v = 0
						mask = 0
						break
					}
					v ^= basis[b].v
					mask ^= basis[b].mask
				}
				if mask != 0 {
					x = mask
					break
				}
			}
			var in [8]byte
			binary.BigEndian.PutUint64(in[:], x)
			if x != 0 && toe.Hash(in[:]) == 0 {
				return netip.AddrFrom4([4]byte(in[:4])), netip.AddrFrom4([4]byte(in[4:]))
			}
		}
	}
}

// exKinds are IPv6 frames with the headers the _EX hash types look at,
// for the host-side characterisation of QEMU's program under _EX
// configurations, which Linux guests never set.
func exKinds() []frameKind {
	tcp := func(ext func(r *rand.Rand) []frame.ExtHeader) func(r *rand.Rand) []byte {
		return func(r *rand.Rand) []byte { return frame.Build(spec6(r, frame.ProtoTCP, ext(r)...)) }
	}
	hao := func(r *rand.Rand) frame.ExtHeader { return frame.HomeAddressOption(frame.RandomAddr6(r)) }
	return []frameKind{
		{name: "tcpv6, no extension header", build: tcp(func(r *rand.Rand) []frame.ExtHeader { return nil })},
		{name: "tcpv6 + hop-by-hop", build: tcp(func(r *rand.Rand) []frame.ExtHeader {
			return []frame.ExtHeader{{Type: 0, Data: make([]byte, 6)}}
		})},
		{name: "tcpv6 + home address", build: tcp(func(r *rand.Rand) []frame.ExtHeader { return []frame.ExtHeader{hao(r)} })},
		{name: "tcpv6 + type 2 routing", build: tcp(func(r *rand.Rand) []frame.ExtHeader {
			return []frame.ExtHeader{frame.RoutingType2(frame.RandomAddr6(r), 1)}
		})},
		{name: "udpv6 + home address", build: func(r *rand.Rand) []byte {
			return frame.Build(spec6(r, frame.ProtoUDP, hao(r)))
		}},
		{name: "icmpv6 echo + home address", build: func(r *rand.Rand) []byte {
			s := spec6(r, 58, hao(r))
			f := frame.Build(s)
			f[len(f)-s.Payload] = 128
			return f
		}},
		{name: "tcpv6 + home address, option length 17", build: tcp(func(r *rand.Rand) []frame.ExtHeader {
			h := hao(r)
			h.Data[5] = 17
			return []frame.ExtHeader{h}
		})},
		{name: "tcpv6 + two home address headers", build: tcp(func(r *rand.Rand) []frame.ExtHeader {
			return []frame.ExtHeader{hao(r), hao(r)}
		})},
		{name: "tcpv6 + atomic fragment + home address", build: tcp(func(r *rand.Rand) []frame.ExtHeader {
			return []frame.ExtHeader{frame.FragmentHeader(0, false), hao(r)}
		})},
	}
}
