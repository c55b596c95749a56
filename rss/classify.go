package rss

import (
	"encoding/binary"

	"github.com/vrss-dev/vrss/internal/proto"
)

// Parser bounds. They are part of the semantics: the eBPF program uses the
// same ones (docs/semantics.md).
const (
	// MaxVLANTags is how many 802.1Q / 802.1ad tags may precede the IP
	// header; a frame with more is unclassified.
	MaxVLANTags = 2
	// MaxExtHeaders is how many IPv6 extension headers are walked; a frame
	// whose chain is longer is unclassified.
	MaxExtHeaders = 8
	// MaxDestOptions is how many options of one destination options header
	// are examined for a Home Address option; later ones are not.
	MaxDestOptions = 16
)

// flow is what classification extracts from a frame: where the addresses and
// ports are, as offsets into the frame so that nothing is copied.
type flow struct {
	family uint8 // 0 (not IP, or malformed), 4 or 6
	l4     uint8 // proto.IPProtoTCP, proto.IPProtoUDP, or 0 when neither (or a fragment)
	frag   bool  // an IP fragment (NDIS rule: hash addresses only)
	ext    bool  // IPv6 with at least one extension header
	src    int   // offset of the source address
	dst    int   // offset of the destination address
	home   int   // offset of the Home Address option's address, or 0
	rt2    int   // offset of the type 2 routing header's address, or 0
	ports  int   // offset of the source and destination ports

	// What flow rules match on besides the above (package flow). None of
	// it changes how a frame is hashed.
	etype    uint16 // the EtherType after the VLAN tags (0 if the frame has none)
	tci      uint16 // the outer VLAN tag's TCI
	tagged   bool   // at least one VLAN tag
	proto    uint8  // IPv4 protocol, or IPv6's last next header
	hasProto bool   // proto is known
	kports   int    // offset of TCP/UDP ports for rules (first fragments too), or 0
	kl4      uint8  // the transport kports belongs to
	upper    int    // offset of the upper-layer header (whole packets and first fragments), or 0
}

// classify parses an Ethernet frame into f, which must be zero. It never
// reads past len(b); any header that does not fit leaves f unclassified
// (family 0). It fills f in place: returning the struct by value through
// each layer costs as much as the parsing.
func classify(b []byte, f *flow) {
	if len(b) < proto.EthHeaderLen {
		return
	}
	off := proto.EthTypeOff
	etype := binary.BigEndian.Uint16(b[off:])
	for tags := 0; etype == proto.EtherTypeVLAN || etype == proto.EtherTypeQinQ; tags++ {
		if tags == MaxVLANTags || len(b) < off+proto.VLANHeaderLen+2 {
			// Too many tags, or a cut-off one: the frame's EtherType
			// is the last one read, and nothing past it is parsed.
			f.etype = etype
			return
		}
		if tags == 0 {
			f.tagged, f.tci = true, binary.BigEndian.Uint16(b[off+2:])
		}
		off += proto.VLANHeaderLen
		etype = binary.BigEndian.Uint16(b[off:])
	}
	f.etype = etype
	off += 2 // past the EtherType
	ok := false
	switch etype {
	case proto.EtherTypeIPv4:
		ok = classify4(b, off, f)
	case proto.EtherTypeIPv6:
		ok = classify6(b, off, f)
	}
	if !ok {
		*f = flow{etype: f.etype, tci: f.tci, tagged: f.tagged}
	}
}

func classify4(b []byte, off int, f *flow) bool {
	if len(b) < off+proto.IPv4MinHeaderLen || b[off]>>4 != 4 {
		return false
	}
	ihl := int(b[off]&0x0f) * 4
	if ihl < proto.IPv4MinHeaderLen || len(b) < off+ihl {
		return false
	}
	f.family, f.src, f.dst = 4, off+proto.IPv4SrcOff, off+proto.IPv4DstOff
	f.proto, f.hasProto = b[off+proto.IPv4ProtoOff], true
	// Any fragment, the first included, hashes on addresses only; a first
	// fragment still shows its ports to flow rules.
	if frag := binary.BigEndian.Uint16(b[off+proto.IPv4FragOff:]); frag&proto.IPv4FragMask != 0 {
		f.frag = true
		if frag&proto.IPv4OffsetMask == 0 {
			f.upper = off + ihl
			rulePorts(b, f, f.proto, off+ihl)
		}
		return true
	}
	f.upper = off + ihl
	return transport(b, f, f.proto, off+ihl)
}

func classify6(b []byte, off int, f *flow) bool {
	if len(b) < off+proto.IPv6HeaderLen || b[off]>>4 != 6 {
		return false
	}
	f.family, f.src, f.dst = 6, off+proto.IPv6SrcOff, off+proto.IPv6DstOff
	next := b[off+proto.IPv6NextOff]
	off += proto.IPv6HeaderLen
	for n := 0; ; n++ {
		hlen, isExt, ok := extHeaderLen(b, next, off)
		switch {
		case !isExt:
			f.proto, f.hasProto, f.upper = next, true, off
			return transport(b, f, next, off)
		case !ok:
			return false
		}
		if n == MaxExtHeaders || len(b) < off+hlen {
			return false
		}
		f.ext = true
		switch next {
		case proto.IPProtoRouting: // type 2 routing header with one segment left: 24 bytes
			if f.rt2 == 0 && b[off+2] == proto.IPv6RT2Type && b[off+3] == 1 && b[off+1] == proto.IPv6RT2ExtLen {
				f.rt2 = off + proto.IPv6RT2AddrOff
			}
		case proto.IPProtoDstOpts:
			if f.home == 0 {
				f.home = homeAddress(b[:off+hlen], off)
			}
		case proto.IPProtoFragment:
			if frag := binary.BigEndian.Uint16(b[off+2:]); frag&proto.IPv6FragMask != 0 {
				// Offset or more-fragments set; an atomic fragment
				// (both zero) is a whole packet and walked through.
				// Rules see the fragment header's next header and,
				// in a first fragment, the ports after the rest of
				// the chain.
				f.frag = true
				f.proto, f.hasProto = b[off], true
				if frag&proto.IPv6OffsetMask == 0 {
					fragmentRest(b, f, b[off], off+hlen, n+1)
				}
				return true
			}
		}
		next = b[off]
		off += hlen
	}
}

// fragmentRest walks the rest of a first IPv6 fragment's header chain, from
// the header next at off (the n-th extension header), for flow rules only:
// the hash is already settled (addresses), so a chain that ends badly only
// leaves the protocol unknown and the ports absent.
func fragmentRest(b []byte, f *flow, next byte, off, n int) {
	for ; ; n++ {
		hlen, isExt, ok := extHeaderLen(b, next, off)
		switch {
		case !isExt:
			f.proto, f.upper = next, off
			rulePorts(b, f, next, off)
			return
		case !ok || n == MaxExtHeaders || len(b) < off+hlen:
			f.hasProto = false
			return
		}
		next = b[off]
		off += hlen
	}
}

// extHeaderLen returns the length of the IPv6 extension header of type
// next at off. isExt is false when next is not an extension header the walk
// passes through (the upper-layer protocol); ok is false when the header's
// length field lies past the frame. The header itself may still be cut
// short: the caller checks len(b) against off+hlen.
func extHeaderLen(b []byte, next byte, off int) (hlen int, isExt, ok bool) {
	switch next {
	case proto.IPProtoHopOpts, proto.IPProtoRouting, proto.IPProtoDstOpts, proto.IPProtoMH, proto.IPProtoHIP, proto.IPProtoShim6, proto.IPProtoExp1, proto.IPProtoExp2:
		// generic (len+1)*8 format
		if len(b) < off+proto.IPv6ExtMinHeaderLen {
			return 0, true, false
		}
		return (int(b[off+1]) + 1) * 8, true, true
	case proto.IPProtoAH: // (len+2)*4
		if len(b) < off+proto.IPv6ExtMinHeaderLen {
			return 0, true, false
		}
		return (int(b[off+1]) + 2) * 4, true, true
	case proto.IPProtoFragment:
		return proto.IPv6FragHeaderLen, true, true
	}
	return 0, false, true
}

// homeAddress scans the options of the destination options header at off,
// which ends at len(b), and returns the offset of a Home Address option's
// 16-byte address, or 0.
func homeAddress(b []byte, off int) int {
	p := off + 2
	for i := 0; i < MaxDestOptions && p < len(b); i++ {
		if b[p] == proto.IPv6OptPad1 { // no length byte
			p++
			continue
		}
		if p+2 > len(b) {
			return 0
		}
		olen := int(b[p+1])
		if b[p] == proto.IPv6OptHomeAddress && olen == proto.IPv6AddrLen && p+2+proto.IPv6AddrLen <= len(b) {
			return p + 2
		}
		p += 2 + olen
	}
	return 0
}

// transport records the TCP or UDP ports at off, if the whole header is
// there; a cut-off TCP or UDP header makes the frame malformed.
func transport(b []byte, f *flow, next byte, off int) bool {
	need := l4HeaderLen(next)
	if need == 0 {
		return true
	}
	if len(b) < off+need {
		return false
	}
	f.l4, f.kl4 = next, next
	f.ports, f.kports = off, off
	return true
}

// rulePorts records the ports of a first fragment's TCP or UDP header for
// flow rules, if the whole header is there; the hash does not use them.
func rulePorts(b []byte, f *flow, next byte, off int) {
	if need := l4HeaderLen(next); need != 0 && len(b) >= off+need {
		f.kl4, f.kports = next, off
	}
}

// l4HeaderLen is the length of the TCP or UDP header the ports are taken
// from, or 0 for another protocol.
func l4HeaderLen(next byte) int {
	switch next {
	case proto.IPProtoTCP:
		return proto.TCPMinHeaderLen
	case proto.IPProtoUDP:
		return proto.UDPHeaderLen
	}
	return 0
}

// Headers is what the parser found in a frame beyond what the hash uses:
// the fields flow rules match on (package flow). Offsets index the frame.
type Headers struct {
	// EtherType is the frame's EtherType after at most MaxVLANTags VLAN
	// tags; 0 for a frame shorter than an Ethernet header.
	EtherType uint16
	// Tagged says the frame has a VLAN tag; TCI is the outer tag's.
	Tagged bool
	TCI    uint16
	// Family is 4 or 6 when the IP header parsed as the hash requires
	// (Src and Dst are then valid), else 0.
	Family   uint8
	Src, Dst int
	// Proto is IPv4's protocol or IPv6's last next header, valid when
	// HasProto: for a later IPv6 fragment, the fragment header's next
	// header (its chain ends there); for a first one, the chain's last.
	Proto    uint8
	HasProto bool
	// Fragment says the packet is an IP fragment (first or later).
	Fragment bool
	// Ports is the offset of the TCP or UDP source and destination ports,
	// 0 when the frame shows none to rules: not TCP or UDP, a cut-off
	// header, or a fragment other than the first. Transport names the
	// protocol they belong to.
	Ports     int
	Transport uint8
}

// ParseHeaders parses frame as Engine.Steer does and returns the fields
// flow rules match on. It never reads outside frame.
func ParseHeaders(frame []byte) Headers {
	h, _ := ParseUpperLayer(frame)
	return h
}

// ParseUpperLayer is ParseHeaders that also returns the offset of the
// upper-layer header (the protocol Headers.Proto names, past every IPv6
// extension header) in a whole packet or a first fragment whose header
// chain ends in the frame, for checks that read other protocols than TCP
// and UDP (package port reads ICMPv6). It is 0 when the frame shows none,
// and may equal len(frame): the caller checks the length it needs.
func ParseUpperLayer(frame []byte) (Headers, int) {
	var f flow
	classify(frame, &f)
	h := Headers{EtherType: f.etype, Tagged: f.tagged, TCI: f.tci, Family: f.family}
	if f.family == 0 {
		return h, 0
	}
	h.Src, h.Dst = f.src, f.dst
	h.Proto, h.HasProto, h.Fragment = f.proto, f.hasProto, f.frag
	h.Ports, h.Transport = f.kports, f.kl4
	return h, f.upper
}
