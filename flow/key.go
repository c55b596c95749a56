package flow

import (
	"encoding/binary"

	"github.com/vrss-dev/vrss/internal/proto"
	"github.com/vrss-dev/vrss/rss"
)

// KeyLen is the length of a Key: 14 32-bit words.
const KeyLen = 56

// KeyWords is the number of 32-bit words in a Key.
const KeyWords = KeyLen / 4

// Offsets of the fields in a Key. Multi-byte fields are in network byte
// order; IPv4 addresses take the first four bytes of their 16 and leave the
// rest zero. The layout groups the fields an IPv4 5-tuple rule names into
// four words (EtherType/flags/protocol, the two addresses, the ports) so
// that the eBPF program stores such a rule in 16 bytes.
const (
	OffDstMAC    = 0  // 6 bytes
	OffSrcMAC    = 6  // 6 bytes
	OffEtherType = 12 // 2 bytes, after the VLAN tags
	OffFlags     = 14 // 1 byte, the Flag* bits
	OffProto     = 15 // 1 byte
	OffTCI       = 16 // 2 bytes, the outer VLAN tag
	OffTCPFlags  = 18 // 1 byte
	OffReserved  = 19 // 1 byte, always zero
	OffSrcIP     = 20 // 16 bytes
	OffDstIP     = 36 // 16 bytes
	OffSrcPort   = 52 // 2 bytes
	OffDstPort   = 54 // 2 bytes
)

// Flags in a Key's flags byte: which fields the frame has. A field the frame
// does not have is zero in the key, so a rule that names it must also
// require its flag (Match.Normalize adds them) lest a zero match an absent
// field.
const (
	FlagTagged   = 1 << 0 // a VLAN tag: TCI is valid
	FlagIPv4     = 1 << 1 // an IPv4 header the RSS parser accepts: addresses valid
	FlagIPv6     = 1 << 2 // an IPv6 header the RSS parser accepts: addresses valid
	FlagProto    = 1 << 3 // the protocol / last next header is known
	FlagPorts    = 1 << 4 // TCP or UDP ports (not in a non-first fragment)
	FlagFragment = 1 << 5 // an IP fragment, first or later
	FlagTCP      = 1 << 6 // the ports are TCP's: TCP flags valid
	allFlags     = 1<<7 - 1
)

// A Key is the image of one frame's header fields that rules match on.
type Key [KeyLen]byte

// KeyOf returns the key of an Ethernet frame (starting at the destination
// MAC address). The parser is the RSS engine's (rss.ParseHeaders), with its
// bounds: at most two VLAN tags and eight IPv6 extension headers; an IP
// header it rejects (cut off, malformed, too long a chain) leaves only the
// Ethernet fields. A frame shorter than an Ethernet header has the zero key.
func KeyOf(frame []byte) Key {
	var k Key
	if len(frame) < proto.EthHeaderLen {
		return k
	}
	h := rss.ParseHeaders(frame)
	copy(k[OffDstMAC:], frame[:12])
	binary.BigEndian.PutUint16(k[OffEtherType:], h.EtherType)
	var flags byte
	if h.Tagged {
		flags |= FlagTagged
		binary.BigEndian.PutUint16(k[OffTCI:], h.TCI)
	}
	alen := 4
	switch h.Family {
	case 4:
		flags |= FlagIPv4
	case 6:
		flags |= FlagIPv6
		alen = 16
	}
	if h.Family != 0 {
		copy(k[OffSrcIP:OffSrcIP+alen], frame[h.Src:])
		copy(k[OffDstIP:OffDstIP+alen], frame[h.Dst:])
		if h.HasProto {
			flags |= FlagProto
			k[OffProto] = h.Proto
		}
		if h.Fragment {
			flags |= FlagFragment
		}
		if h.Ports != 0 {
			flags |= FlagPorts
			copy(k[OffSrcPort:OffSrcPort+4], frame[h.Ports:])
			if h.Transport == proto.IPProtoTCP {
				flags |= FlagTCP
				k[OffTCPFlags] = frame[h.Ports+proto.TCPFlagsOff]
			}
		}
	}
	k[OffFlags] = flags
	return k
}

// Word returns the key's i-th 32-bit word as the eBPF program loads it: the
// four bytes at 4i in little-endian order.
func (k *Key) Word(i int) uint32 { return binary.LittleEndian.Uint32(k[4*i:]) }
