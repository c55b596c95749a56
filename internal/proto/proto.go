// Package proto names the protocol numbers and header offsets that vrss's
// parsers use: the rss engine (rss/classify.go), the frame builders
// (internal/frame) and, in C, the eBPF program (bpf/proto.h, whose every
// #define this package's test checks against the constants here). Add a
// name to both.
package proto

// Ethernet (IEEE 802.3) and VLAN tags (802.1Q, 802.1ad).
//
//	+-------------+-------------+-----------+
//	| destination |   source    | EtherType |
//	|   6 bytes   |   6 bytes   |  2 bytes  |
//	+-------------+-------------+-----------+
//
// A VLAN tag (TPID, then a 2-byte TCI) sits where the EtherType was, and the
// next EtherType follows it.
const (
	EthAddrLen    = 6
	EthTypeOff    = 12 // EtherType after the two addresses
	EthHeaderLen  = 14
	VLANHeaderLen = 4 // TPID and TCI
	EtherTypeIPv4 = 0x0800
	EtherTypeIPv6 = 0x86dd
	EtherTypeVLAN = 0x8100 // 802.1Q
	EtherTypeQinQ = 0x88a8 // 802.1ad service tag
)

// IPv4 (RFC 791 section 3.1).
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|Version|  IHL  |Type of Service|          Total Length         |
//	|         Identification        |Flags|      Fragment Offset    |
//	|  Time to Live |    Protocol   |         Header Checksum       |
//	|                       Source Address                          |
//	|                    Destination Address                        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
const (
	IPv4MinHeaderLen = 20
	IPv4FragOff      = 6      // flags and fragment offset, 16 bits
	IPv4FragMask     = 0x3fff // MF and the offset: some bit set in every fragment
	IPv4OffsetMask   = 0x1fff // the offset alone: zero in a first fragment
	IPv4ProtoOff     = 9
	IPv4SrcOff       = 12
	IPv4DstOff       = 16
	IPv4AddrLen      = 4
)

// IPv6 (RFC 8200 section 3): version, traffic class and flow label (4
// bytes), payload length (2), next header (1), hop limit (1), source and
// destination addresses (16 each).
const (
	IPv6HeaderLen = 40
	IPv6NextOff   = 6
	IPv6SrcOff    = 8
	IPv6DstOff    = 24
	IPv6AddrLen   = 16
)

// Next-header (IPv4 protocol) values: the transports the hash takes ports
// from, and the IPv6 extension headers the walk passes through (RFC 8200
// section 4; RFC 7045's list).
const (
	IPProtoHopOpts  = 0 // hop-by-hop options, RFC 8200 section 4.3
	IPProtoICMP     = 1
	IPProtoTCP      = 6
	IPProtoUDP      = 17
	IPProtoRouting  = 43  // RFC 8200 section 4.4
	IPProtoFragment = 44  // RFC 8200 section 4.5
	IPProtoAH       = 51  // authentication header, RFC 4302
	IPProtoDstOpts  = 60  // RFC 8200 section 4.6
	IPProtoMH       = 135 // mobility header, RFC 6275
	IPProtoHIP      = 139 // RFC 7401
	IPProtoShim6    = 140 // RFC 5533
	IPProtoExp1     = 253 // experiments, RFC 3692
	IPProtoExp2     = 254
)

// IPv6 extension headers.
const (
	IPv6ExtMinHeaderLen = 8 // every extension header is at least 8 bytes
	IPv6FragHeaderLen   = 8
	IPv6FragMask        = 0xfff9 // offset and M: some bit set in every fragment
	IPv6OffsetMask      = 0xfff8 // the offset alone: zero in a first fragment
	IPv6RT2Type         = 2      // type 2 routing header, RFC 6275 section 6.4
	IPv6RT2ExtLen       = 2      // its length field: 24 bytes
	IPv6RT2AddrOff      = 8      // its home address
	IPv6OptPad1         = 0
	IPv6OptHomeAddress  = 0xc9 // home address option, RFC 6275 section 6.3
)

// Transport headers: the hash needs them whole; the ports come first.
const (
	TCPMinHeaderLen = 20
	TCPFlagsOff     = 13 // CWR ECE URG ACK PSH RST SYN FIN
	UDPHeaderLen    = 8
	PortsLen        = 4
)

// IsIPv6ExtHeader reports whether next is an extension header the IPv6 walk
// passes through rather than a transport or an unknown protocol.
func IsIPv6ExtHeader(next uint8) bool {
	switch next {
	case IPProtoHopOpts, IPProtoRouting, IPProtoFragment, IPProtoAH, IPProtoDstOpts,
		IPProtoMH, IPProtoHIP, IPProtoShim6, IPProtoExp1, IPProtoExp2:
		return true
	}
	return false
}
