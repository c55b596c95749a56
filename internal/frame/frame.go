// Package frame builds Ethernet frames for tests, the CLI and the demo:
// VLAN tags, IPv4 with options and fragments, IPv6 with extension headers,
// TCP and UDP. Checksums are left zero: nothing on the steering path reads
// them.
package frame

import (
	"encoding/binary"
	"net/netip"

	"github.com/vrss-dev/vrss/internal/proto"
)

// IP protocol numbers used by Spec.Proto (package proto names the rest).
const (
	ProtoTCP  = proto.IPProtoTCP
	ProtoUDP  = proto.IPProtoUDP
	ProtoICMP = proto.IPProtoICMP
)

// ExtHeader is one IPv6 extension header. Data is its content after the
// next-header and length bytes; Build pads it to the header's unit size.
type ExtHeader struct {
	Type uint8 // proto.IPProtoHopOpts, IPProtoRouting, ...
	Data []byte
}

// HomeAddressOption returns a destination options header carrying a Home
// Address option (type 0xC9) for addr.
func HomeAddressOption(addr netip.Addr) ExtHeader {
	a := addr.As16()
	// PadN of 2 bytes aligns the address to 8n+6 as RFC 6275 asks.
	d := append([]byte{1, 2, 0, 0, proto.IPv6OptHomeAddress, proto.IPv6AddrLen}, a[:]...)
	return ExtHeader{Type: proto.IPProtoDstOpts, Data: d}
}

// RoutingType2 returns a type 2 routing header for addr with segmentsLeft.
func RoutingType2(addr netip.Addr, segmentsLeft uint8) ExtHeader {
	a := addr.As16()
	d := append([]byte{proto.IPv6RT2Type, segmentsLeft, 0, 0, 0, 0}, a[:]...)
	return ExtHeader{Type: proto.IPProtoRouting, Data: d}
}

// FragmentHeader returns an IPv6 fragment header.
func FragmentHeader(offset uint16, more bool) ExtHeader {
	v := offset << 3
	if more {
		v |= 1
	}
	return ExtHeader{Type: proto.IPProtoFragment, Data: []byte{0, byte(v >> 8), byte(v), 0, 0, 0, 1}}
}

// Spec describes a frame.
type Spec struct {
	VLANs      []uint16 // TPIDs of VLAN tags, outermost first (0x8100, 0x88a8)
	Src, Dst   netip.Addr
	Proto      uint8 // ProtoTCP, ProtoUDP, or another protocol number
	SrcPort    uint16
	DstPort    uint16
	IPv4Opts   []byte // IPv4 options, padded to 4 bytes
	FragOffset uint16 // IPv4 fragment offset in 8-byte units
	MoreFrags  bool   // IPv4 more-fragments flag
	Ext        []ExtHeader
	Payload    int // payload bytes after the transport header
}

// Build returns the frame for s. Src and Dst must be of the same family.
func Build(s Spec) []byte {
	b := []byte{0x52, 0x54, 0, 0x12, 0x34, 0x56, 0x52, 0x54, 0, 0xab, 0xcd, 0xef}
	for i, tpid := range s.VLANs {
		b = binary.BigEndian.AppendUint16(b, tpid)
		b = binary.BigEndian.AppendUint16(b, uint16(100+i))
	}
	l4 := transport(s)
	if s.Src.Is4() {
		b = binary.BigEndian.AppendUint16(b, proto.EtherTypeIPv4)
		opts := append([]byte(nil), s.IPv4Opts...)
		for len(opts)%4 != 0 {
			opts = append(opts, 0)
		}
		hl := proto.IPv4MinHeaderLen + len(opts)
		b = append(b, byte(0x40|hl/4), 0)
		b = binary.BigEndian.AppendUint16(b, uint16(hl+len(l4)))
		b = append(b, 0x12, 0x34)
		fo := s.FragOffset & 0x1fff
		if s.MoreFrags {
			fo |= 0x2000
		}
		b = binary.BigEndian.AppendUint16(b, fo)
		b = append(b, 64, s.Proto, 0, 0)
		src, dst := s.Src.As4(), s.Dst.As4()
		b = append(b, src[:]...)
		b = append(b, dst[:]...)
		b = append(b, opts...)
		return append(b, l4...)
	}
	b = binary.BigEndian.AppendUint16(b, proto.EtherTypeIPv6)
	var ext []byte
	next := s.Proto
	for i := len(s.Ext) - 1; i >= 0; i-- {
		ext = append(extBytes(s.Ext[i], next), ext...)
		next = s.Ext[i].Type
	}
	b = append(b, 0x60, 0, 0, 0)
	b = binary.BigEndian.AppendUint16(b, uint16(len(ext)+len(l4)))
	b = append(b, next, 64)
	src, dst := s.Src.As16(), s.Dst.As16()
	b = append(b, src[:]...)
	b = append(b, dst[:]...)
	b = append(b, ext...)
	return append(b, l4...)
}

func extBytes(h ExtHeader, next uint8) []byte {
	switch h.Type {
	case proto.IPProtoFragment:
		d := make([]byte, proto.IPv6FragHeaderLen)
		d[0] = next
		copy(d[1:], h.Data)
		return d
	case proto.IPProtoAH: // length in 4-byte units minus 2
		n := (2 + len(h.Data) + 3) / 4 * 4
		if n < 8 {
			n = 8
		}
		d := make([]byte, n)
		d[0], d[1] = next, byte(n/4-2)
		copy(d[2:], h.Data)
		return d
	}
	n := (2 + len(h.Data) + 7) / 8 * 8
	d := make([]byte, n)
	d[0], d[1] = next, byte(n/8-1)
	copy(d[2:], h.Data)
	if pad := n - 2 - len(h.Data); pad >= 2 && (h.Type == proto.IPProtoHopOpts || h.Type == proto.IPProtoDstOpts) {
		// Fill the tail with a PadN option so the options stay well formed.
		d[2+len(h.Data)], d[3+len(h.Data)] = 1, byte(pad-2)
	}
	return d
}

func transport(s Spec) []byte {
	payload := make([]byte, s.Payload)
	for i := range payload {
		payload[i] = byte(i)
	}
	var h []byte
	switch s.Proto {
	case ProtoTCP:
		h = make([]byte, proto.TCPMinHeaderLen)
		h[12] = 5 << 4
		h[13] = 0x18
	case ProtoUDP:
		h = make([]byte, proto.UDPHeaderLen)
		binary.BigEndian.PutUint16(h[4:], uint16(proto.UDPHeaderLen+len(payload)))
	default:
		return payload
	}
	binary.BigEndian.PutUint16(h[0:], s.SrcPort)
	binary.BigEndian.PutUint16(h[2:], s.DstPort)
	return append(h, payload...)
}

// IPv4Checksum returns the Internet checksum (RFC 1071) of IPv4 header h,
// whose checksum field must be zero: what a header needs to pass the
// bridge's and the stack's checks. Build leaves the field zero.
func IPv4Checksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(h); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
