package flow

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// Match is a rule's condition: the frame's key, under Mask, must equal
// Value. Value bits outside Mask are ignored (Normalize clears them).
type Match struct {
	Value Key
	Mask  Key
}

// Errors of Match.Normalize, wrapped with details.
var (
	// ErrNoFamily means a match names IP or transport fields without
	// fixing the EtherType to IPv4 or IPv6.
	ErrNoFamily = errors.New("flow: IP and port fields need the EtherType fixed to IPv4 (0x0800) or IPv6 (0x86dd)")
	// ErrField means a mask covers bytes no frame ever has: IPv4 address
	// bytes past the fourth, the reserved byte, undefined flags.
	ErrField = errors.New("flow: mask covers an unused field")
)

// Matches reports whether key k satisfies m.
func (m *Match) Matches(k *Key) bool {
	for i := range k {
		if (k[i]^m.Value[i])&m.Mask[i] != 0 {
			return false
		}
	}
	return true
}

func (m *Match) masked(off, n int) bool {
	for _, b := range m.Mask[off : off+n] {
		if b != 0 {
			return true
		}
	}
	return false
}

// requireFlags makes m require flags f, unless m already requires one of
// them to be clear: then no frame matches and it fails.
func (m *Match) requireFlags(f byte) error {
	if m.Mask[OffFlags]&f&^m.Value[OffFlags] != 0 {
		return fmt.Errorf("%w: the fields named need flags %#x, which the match requires clear", ErrField, m.Mask[OffFlags]&f&^m.Value[OffFlags])
	}
	m.Mask[OffFlags] |= f
	m.Value[OffFlags] |= f
	return nil
}

// Normalize clears Value bits outside Mask and adds the flags the named
// fields imply: a VLAN TCI requires a tag; an IP address, protocol, port or
// TCP flag requires an IPv4 or IPv6 header (as the EtherType says); a
// protocol requires it to be known; a port requires ports (so a non-first
// fragment, which has none, never matches a port rule); TCP flags require
// TCP. It is idempotent. It fails, leaving m unchanged, when the fields
// cannot belong to one frame.
func (m *Match) Normalize() error {
	n := *m
	for i := range n.Value {
		n.Value[i] &= n.Mask[i]
	}
	if n.Mask[OffReserved] != 0 || n.Mask[OffFlags]&^allFlags != 0 {
		return fmt.Errorf("%w: reserved byte or undefined flags", ErrField)
	}
	var need byte
	if n.masked(OffTCI, 2) {
		need |= FlagTagged
	}
	ip := n.masked(OffSrcIP, 32) || n.masked(OffProto, 1) || n.masked(OffSrcPort, 4) || n.masked(OffTCPFlags, 1)
	if ip {
		et, etm := binary.BigEndian.Uint16(n.Value[OffEtherType:]), binary.BigEndian.Uint16(n.Mask[OffEtherType:])
		switch {
		case etm == 0xffff && et == 0x0800:
			if n.masked(OffSrcIP+4, 12) || n.masked(OffDstIP+4, 12) {
				return fmt.Errorf("%w: IPv4 addresses are 4 bytes", ErrField)
			}
			need |= FlagIPv4
		case etm == 0xffff && et == 0x86dd:
			need |= FlagIPv6
		default:
			return ErrNoFamily
		}
	}
	if n.masked(OffProto, 1) {
		need |= FlagProto
	}
	if n.masked(OffSrcPort, 4) {
		need |= FlagPorts
	}
	if n.masked(OffTCPFlags, 1) {
		need |= FlagPorts | FlagTCP
	}
	if err := n.requireFlags(need); err != nil {
		return err
	}
	*m = n
	return nil
}

// Words returns how many of the key's 32-bit words the mask touches: the
// size, in words, of the key the eBPF program stores for a rule.
func (m *Match) Words() int {
	n := 0
	for i := 0; i < KeyWords; i++ {
		if binary.LittleEndian.Uint32(m.Mask[4*i:]) != 0 {
			n++
		}
	}
	return n
}

func (m *Match) set(off int, value, mask []byte) {
	copy(m.Value[off:], value)
	copy(m.Mask[off:], mask)
}

// SetDstMAC matches the destination MAC address under mask (nil: exact).
func (m *Match) SetDstMAC(mac, mask net.HardwareAddr) { m.set(OffDstMAC, mac, orFull(mask, 6)) }

// SetSrcMAC matches the source MAC address under mask (nil: exact).
func (m *Match) SetSrcMAC(mac, mask net.HardwareAddr) { m.set(OffSrcMAC, mac, orFull(mask, 6)) }

// SetEtherType matches the EtherType after the VLAN tags.
func (m *Match) SetEtherType(v, mask uint16) { m.set16(OffEtherType, v, mask) }

// SetTCI matches the outer VLAN tag's TCI (the VLAN id is TCI & 0x0fff).
func (m *Match) SetTCI(v, mask uint16) { m.set16(OffTCI, v, mask) }

// SetProto matches the IPv4 protocol or IPv6 (last) next header.
func (m *Match) SetProto(v, mask uint8) { m.set(OffProto, []byte{v}, []byte{mask}) }

// SetTCPFlags matches the TCP flags byte (CWR ECE URG ACK PSH RST SYN FIN).
func (m *Match) SetTCPFlags(v, mask uint8) { m.set(OffTCPFlags, []byte{v}, []byte{mask}) }

// SetSrcPort matches the TCP or UDP source port under mask.
func (m *Match) SetSrcPort(v, mask uint16) { m.set16(OffSrcPort, v, mask) }

// SetDstPort matches the TCP or UDP destination port under mask.
func (m *Match) SetDstPort(v, mask uint16) { m.set16(OffDstPort, v, mask) }

// SetSrcIP matches the source address under mask, an address of the same
// family whose set bits are the ones compared.
func (m *Match) SetSrcIP(addr, mask netip.Addr) { m.setIP(OffSrcIP, addr, mask) }

// SetDstIP matches the destination address under mask.
func (m *Match) SetDstIP(addr, mask netip.Addr) { m.setIP(OffDstIP, addr, mask) }

func (m *Match) set16(off int, v, mask uint16) {
	binary.BigEndian.PutUint16(m.Value[off:], v)
	binary.BigEndian.PutUint16(m.Mask[off:], mask)
}

func (m *Match) setIP(off int, addr, mask netip.Addr) {
	clear(m.Value[off : off+16])
	clear(m.Mask[off : off+16])
	m.set(off, addr.AsSlice(), mask.AsSlice())
}

// PrefixMask returns the mask of prefix p: its first p.Bits() bits set.
func PrefixMask(p netip.Prefix) netip.Addr {
	b := make([]byte, p.Addr().BitLen()/8)
	for i := 0; i < p.Bits(); i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func orFull(mask []byte, n int) []byte {
	if mask != nil {
		return mask
	}
	return []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}[:n]
}

// String describes the match in the words of `vrss flow add`, fields in
// key order, with "/mask" where the mask is not full; the implied flags are
// not shown. An empty match is "any".
func (m *Match) String() string {
	var parts []string
	hex := func(off, n int) (v, mk string, full bool) {
		full = true
		for _, b := range m.Mask[off : off+n] {
			full = full && b == 0xff
		}
		return fmt.Sprintf("%x", m.Value[off:off+n]), fmt.Sprintf("%x", m.Mask[off:off+n]), full
	}
	mac := func(name string, off int) {
		if !m.masked(off, 6) {
			return
		}
		s := net.HardwareAddr(m.Value[off : off+6]).String()
		if _, _, full := hex(off, 6); !full {
			s += "/" + net.HardwareAddr(m.Mask[off:off+6]).String()
		}
		parts = append(parts, name+" "+s)
	}
	num := func(name string, off, n int) {
		if !m.masked(off, n) {
			return
		}
		var v, mk uint64
		for i := 0; i < n; i++ {
			v, mk = v<<8|uint64(m.Value[off+i]), mk<<8|uint64(m.Mask[off+i])
		}
		s := fmt.Sprint(v)
		if mk != 1<<(8*n)-1 {
			s += fmt.Sprintf("/%#x", mk)
		}
		parts = append(parts, name+" "+s)
	}
	addr := func(name string, off int) {
		if !m.masked(off, 16) {
			return
		}
		n := 16
		if m.Value[OffFlags]&FlagIPv4 != 0 || binary.BigEndian.Uint16(m.Mask[OffEtherType:]) == 0xffff && binary.BigEndian.Uint16(m.Value[OffEtherType:]) == 0x0800 {
			n = 4
		}
		a, _ := netip.AddrFromSlice(m.Value[off : off+n])
		mk, _ := netip.AddrFromSlice(m.Mask[off : off+n])
		s := a.String()
		if bits, ok := prefixLen(m.Mask[off : off+n]); ok {
			if bits != 8*n {
				s += fmt.Sprintf("/%d", bits)
			}
		} else {
			s += "/" + mk.String()
		}
		parts = append(parts, name+" "+s)
	}
	mac("dst-mac", OffDstMAC)
	mac("src-mac", OffSrcMAC)
	if m.masked(OffEtherType, 2) {
		v, mk, full := hex(OffEtherType, 2)
		s := "0x" + v
		if !full {
			s += "/0x" + mk
		}
		parts = append(parts, "ether-type "+s)
	}
	num("proto", OffProto, 1)
	num("vlan", OffTCI, 2)
	num("tcp-flags", OffTCPFlags, 1)
	addr("src-ip", OffSrcIP)
	addr("dst-ip", OffDstIP)
	num("src-port", OffSrcPort, 2)
	num("dst-port", OffDstPort, 2)
	if f := m.Mask[OffFlags] &^ impliedFlags(m); f != 0 {
		parts = append(parts, fmt.Sprintf("flags %#x/%#x", m.Value[OffFlags]&f, f))
	}
	if len(parts) == 0 {
		return "any"
	}
	return strings.Join(parts, " ")
}

// impliedFlags returns the flags Normalize would add to m's mask.
func impliedFlags(m *Match) byte {
	c := *m
	clear(c.Mask[OffFlags : OffFlags+1])
	clear(c.Value[OffFlags : OffFlags+1])
	if c.Normalize() != nil {
		return 0
	}
	return c.Mask[OffFlags] & m.Mask[OffFlags] & m.Value[OffFlags]
}

func prefixLen(mask []byte) (int, bool) {
	bits, done := 0, false
	for _, b := range mask {
		for i := 7; i >= 0; i-- {
			switch set := b>>i&1 == 1; {
			case set && done:
				return 0, false
			case set:
				bits++
			default:
				done = true
			}
		}
	}
	return bits, true
}
