package frame

import (
	"math/rand/v2"
	"net/netip"

	"github.com/vrss-dev/vrss/internal/proto"
)

// Random returns a frame for differential testing: mostly well-formed
// IPv4/IPv6 TCP, UDP and other traffic with VLAN tags, IPv4 options and
// fragments, IPv6 extension-header chains (home address, type 2 routing,
// fragments, AH, unknown types, chains past the parser's bound), and a share
// of truncated, corrupted, non-IP and garbage frames.
func Random(r *rand.Rand) []byte {
	switch r.IntN(20) {
	case 0: // garbage
		b := make([]byte, r.IntN(140))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	case 1: // non-IP EtherType, or IP EtherType with a wrong version
		b := Build(RandomSpec(r))
		if len(b) > 14 {
			if r.IntN(2) == 0 {
				b[12], b[13] = 0x08, 0x06
			} else {
				b[14] ^= 0xf0
			}
		}
		return b
	}
	b := Build(RandomSpec(r))
	switch r.IntN(10) {
	case 0: // truncated anywhere
		b = b[:r.IntN(len(b)+1)]
	case 1: // a few random header bytes corrupted
		for n := r.IntN(3) + 1; n > 0; n-- {
			i := 12 + r.IntN(min(len(b)-12, 80))
			b[i] = byte(r.Uint32())
		}
	}
	return b
}

// RandomSpec returns a well-formed random frame description.
func RandomSpec(r *rand.Rand) Spec {
	var s Spec
	switch n := r.IntN(12); {
	case n < 2:
		s.VLANs = []uint16{vlanTPID(r)}
	case n < 3:
		s.VLANs = []uint16{vlanTPID(r), vlanTPID(r)}
	case n < 4 && r.IntN(4) == 0:
		s.VLANs = []uint16{vlanTPID(r), vlanTPID(r), vlanTPID(r)}
	}
	s.Proto = []uint8{ProtoTCP, ProtoTCP, ProtoUDP, ProtoUDP, ProtoICMP, 58, 50, 132, byte(r.Uint32())}[r.IntN(9)]
	s.SrcPort, s.DstPort = uint16(r.Uint32()), uint16(r.Uint32())
	s.Payload = r.IntN(40)
	if r.IntN(2) == 0 {
		s.Src, s.Dst = RandomAddr4(r), RandomAddr4(r)
		if r.IntN(4) == 0 {
			s.IPv4Opts = make([]byte, 4*r.IntN(11))
			for i := range s.IPv4Opts {
				s.IPv4Opts[i] = 1 // NOP
			}
		}
		if r.IntN(5) == 0 {
			s.FragOffset, s.MoreFrags = uint16(r.IntN(3)*r.IntN(8000)), r.IntN(2) == 0
		}
		return s
	}
	s.Src, s.Dst = RandomAddr6(r), RandomAddr6(r)
	if r.IntN(3) == 0 {
		return s
	}
	n := r.IntN(5)
	if r.IntN(10) == 0 {
		n = 7 + r.IntN(4) // around the parser's bound of 8
	}
	for i := 0; i < n; i++ {
		s.Ext = append(s.Ext, randomExt(r))
	}
	return s
}

func vlanTPID(r *rand.Rand) uint16 {
	if r.IntN(2) == 0 {
		return proto.EtherTypeVLAN
	}
	return proto.EtherTypeQinQ
}

// RandomAddr4 returns a random IPv4 address.
func RandomAddr4(r *rand.Rand) netip.Addr {
	var a [4]byte
	for i := range a {
		a[i] = byte(r.Uint32())
	}
	return netip.AddrFrom4(a)
}

// RandomAddr6 returns a random IPv6 address.
func RandomAddr6(r *rand.Rand) netip.Addr {
	var a [16]byte
	for i := range a {
		a[i] = byte(r.Uint32())
	}
	return netip.AddrFrom16(a)
}

func randomExt(r *rand.Rand) ExtHeader {
	switch r.IntN(10) {
	case 0:
		return ExtHeader{Type: 0, Data: make([]byte, 6+8*r.IntN(3))}
	case 1, 2:
		// Segments left 1 is the one that counts; 0 and 2 must be ignored.
		h := RoutingType2(RandomAddr6(r), uint8([]int{1, 1, 0, 2}[r.IntN(4)]))
		if r.IntN(5) == 0 {
			h.Data[0] = byte(r.IntN(5)) // another routing type
		}
		return h
	case 3:
		return FragmentHeader(uint16(r.IntN(2)*r.IntN(8000)), r.IntN(2) == 0)
	case 4, 5:
		if r.IntN(4) == 0 {
			// Padding before the option, sometimes past the 16 options examined.
			pads := make([]byte, r.IntN(20))
			d := append(pads, proto.IPv6OptHomeAddress, proto.IPv6AddrLen)
			a := RandomAddr6(r).As16()
			return ExtHeader{Type: proto.IPProtoDstOpts, Data: append(d, a[:]...)}
		}
		return HomeAddressOption(RandomAddr6(r))
	case 6:
		return ExtHeader{Type: proto.IPProtoAH, Data: make([]byte, 10+4*r.IntN(3))}
	case 7:
		return ExtHeader{Type: []uint8{proto.IPProtoMH, proto.IPProtoHIP, proto.IPProtoShim6, proto.IPProtoExp1, proto.IPProtoExp2}[r.IntN(5)], Data: make([]byte, 6+8*r.IntN(2))}
	case 8:
		// A destination options header with an odd option mix.
		d := []byte{1, byte(r.IntN(4)), 0, 0, 0, 0}
		return ExtHeader{Type: proto.IPProtoDstOpts, Data: append(d, make([]byte, 8*r.IntN(2))...)}
	}
	return ExtHeader{Type: proto.IPProtoDstOpts, Data: make([]byte, 6)}
}
