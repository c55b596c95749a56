package diffcorpus

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"

	"github.com/vrss-dev/vrss/flow"
	"github.com/vrss-dev/vrss/internal/frame"
	"github.com/vrss-dev/vrss/port"
)

// PortPolicies is the number of random port policies the port
// differential tests spread their frames over.
const PortPolicies = 40

// PortPolicy returns a random valid port policy: one to four MACs, up to
// four IPv4 and IPv6 prefixes of assorted lengths (none at times), the
// link-local addresses or not, an ACL of up to maxRules rules (exact and
// masked, from flow rules' mask menu, with values taken from the keys of
// frames PortFrame draws for it, so that frames match them) and either
// default.
func PortPolicy(r *rand.Rand, maxRules int) port.Policy { return portPolicy(r, maxRules, PortFrame) }

// PortPolicyIn is PortPolicy for an AF_XDP port's inbound Filter: its
// rules take their values from frames PortFrameIn draws.
func PortPolicyIn(r *rand.Rand, maxRules int) port.Policy {
	return portPolicy(r, maxRules, PortFrameIn)
}

func portPolicy(r *rand.Rand, maxRules int, frameFor func(*rand.Rand, *port.Policy) []byte) port.Policy {
	var p port.Policy
	for n := 1 + r.IntN(port.MaxMACs); len(p.MACs) < n; {
		m := port.MAC{byte(r.Uint32()) &^ 1, byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())}
		if m != (port.MAC{}) && !contains(p.MACs, m) {
			p.MACs = append(p.MACs, m)
		}
	}
	for n := r.IntN(5); len(p.IPv4) < n; {
		pr := netip.PrefixFrom(frame.RandomAddr4(r), []int{32, 32, 24, 16, 31, 8, 0}[r.IntN(7)]).Masked()
		if !contains(p.IPv4, pr) {
			p.IPv4 = append(p.IPv4, pr)
		}
	}
	for n := r.IntN(5); len(p.IPv6) < n; {
		a := frame.RandomAddr6(r)
		if r.IntN(4) == 0 { // a link-local address of the policy's own
			b := a.As16()
			b[0], b[1] = 0xfe, 0x80
			a = netip.AddrFrom16(b)
		}
		pr := netip.PrefixFrom(a, []int{128, 128, 64, 48, 127, 10, 0}[r.IntN(7)]).Masked()
		if !pr.Addr().Is4In6() && !contains(p.IPv6, pr) {
			p.IPv6 = append(p.IPv6, pr)
		}
	}
	p.LinkLocal = r.IntN(2) == 0
	p.Default = []port.Action{port.Allow, port.Drop}[r.IntN(2)]
	sample := make([][]byte, 32)
	for i := range sample {
		sample[i] = frameFor(r, &p)
	}
	menu := maskMenu()
	for n := r.IntN(maxRules + 1); len(p.Rules) < n; {
		m := flow.Match{Mask: menu[r.IntN(len(menu))]}
		if r.IntN(6) == 0 { // one more masked field: longer patterns
			m.Mask[flow.OffDstIP+r.IntN(16)] |= byte(r.Uint32())
		}
		m.Value = flow.KeyOf(sample[r.IntN(len(sample))])
		if r.IntN(8) == 0 {
			binary.BigEndian.PutUint32(m.Value[flow.OffSrcIP:], r.Uint32())
		}
		if m.Normalize() != nil {
			continue
		}
		p.Rules = append(p.Rules, port.Rule{Match: m, Action: []port.Action{port.Allow, port.Drop}[r.IntN(2)]})
	}
	return p
}

func contains[T comparable](s []T, v T) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// PortFrame returns a frame a guest under p might send, for the port
// differential tests: mostly from one of p's MACs (else another), from
// one of p's addresses or not; IPv4 and IPv6 traffic as frame.Random
// draws it (VLAN tags, options, fragments, extension headers, garbage),
// ARP requests, replies and other opcodes with true and spoofed senders,
// RARP, DHCP and DHCPv6 client and server messages, ICMPv6 neighbour
// discovery (NS, NA with owned and foreign targets, RS, RA, redirect) and
// MLD, behind extension headers at times; a share cut short, at a header
// boundary or anywhere.
func PortFrame(r *rand.Rand, p *port.Policy) []byte {
	var b []byte
	switch k := r.IntN(16); {
	case k < 3:
		b = frame.Random(r)
	case k < 5:
		b = arpFrame(r, p)
	case k < 6:
		b = rarpFrame(r, p)
	case k < 8:
		b = dhcpFrame(r, p)
	case k < 12:
		b = icmp6Frame(r, p)
	default:
		s := frame.RandomSpec(r)
		if s.Src.Is4() {
			s.Src = addr4(r, p)
		} else {
			s.Src = addr6(r, p)
		}
		b = frame.Build(s)
	}
	if len(b) >= 14 && (b[12] != 0x08 || b[13] != 0x06) && (b[12] != 0x80 || b[13] != 0x35) {
		m := pickMAC(r, p) // ARP and RARP chose theirs
		copy(b[6:12], m[:])
	}
	return cutShort(r, b)
}

// cutShort cuts a share of frames short, at a header boundary or
// anywhere.
func cutShort(r *rand.Rand, b []byte) []byte {
	switch r.IntN(12) {
	case 0: // anywhere
		b = b[:r.IntN(len(b)+1)]
	case 1: // around a header boundary
		cut := []int{14, 18, 22, 34, 42, 54, 58, 62, 66, 74, 78}[r.IntN(11)] + r.IntN(3) - 1
		b = b[:min(cut, len(b))]
	}
	return b
}

// PortFrameIn returns a frame that might arrive for a guest under p on an
// AF_XDP port's queues, for the inbound differential tests: mostly to one
// of p's MACs, else to broadcast, a multicast group or another MAC; to
// one of p's addresses, a link-local address of its MACs, broadcast,
// multicast (all-nodes, solicited-node) or another; IPv4 and IPv6 traffic
// as frame.Random draws it (VLAN tags, options, fragments, extension
// headers, garbage), ARP requests, replies and other opcodes for p's
// addresses and others', RARP, DHCP and DHCPv6 server and client
// messages, ICMPv6 neighbour discovery, redirects and MLD (queries too),
// at times behind extension headers or in a fragment; a share cut short.
func PortFrameIn(r *rand.Rand, p *port.Policy) []byte {
	var b []byte
	switch k := r.IntN(16); {
	case k < 3:
		b = frame.Random(r)
	case k < 5:
		b = arpFrameIn(r, p)
	case k < 6:
		b = rarpFrame(r, p)
	case k < 8:
		b = dhcpFrameIn(r, p)
	case k < 11:
		b = icmp6FrameIn(r, p)
	default:
		s := frame.RandomSpec(r)
		if s.Src.Is4() {
			s.Dst = dst4(r, p)
		} else {
			s.Dst = dst6(r, p)
		}
		b = frame.Build(s)
	}
	if len(b) >= 12 {
		m := pickDstMAC(r, p)
		copy(b[0:6], m[:])
		src := port.MAC{0x02, 0, 0, 0, byte(r.Uint32()), byte(r.Uint32())}
		copy(b[6:12], src[:])
	}
	return cutShort(r, b)
}

// pickDstMAC returns one of p's MACs, broadcast, a multicast group or
// another MAC.
func pickDstMAC(r *rand.Rand, p *port.Policy) port.MAC {
	switch k := r.IntN(20); {
	case k < 14:
		return p.MACs[r.IntN(len(p.MACs))]
	case k < 16:
		return port.MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	case k < 18:
		return []port.MAC{{0x33, 0x33, 0, 0, 0, 1}, {0x01, 0x00, 0x5e, 0, 0, 0xfb}, {0x33, 0x33, 0xff, byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())}}[r.IntN(3)]
	}
	return port.MAC{0x52, 0x54, 0, byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())}
}

// dst4 returns one of p's IPv4 addresses, broadcast, a multicast group or
// another.
func dst4(r *rand.Rand, p *port.Policy) netip.Addr {
	switch k := r.IntN(10); {
	case k < 5 && len(p.IPv4) > 0:
		return inPrefix(r, p.IPv4[r.IntN(len(p.IPv4))])
	case k < 6:
		return netip.AddrFrom4([4]byte{255, 255, 255, 255})
	case k < 7:
		return netip.AddrFrom4([4]byte{224 + byte(r.IntN(16)), byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())})
	}
	return frame.RandomAddr4(r)
}

// dst6 returns one of p's IPv6 addresses, a link-local address of its
// MACs, all-nodes, a solicited-node group, another link-local address or
// another.
func dst6(r *rand.Rand, p *port.Policy) netip.Addr {
	switch k := r.IntN(10); {
	case k < 3 && len(p.IPv6) > 0:
		return inPrefix(r, p.IPv6[r.IntN(len(p.IPv6))])
	case k < 5:
		return p.MACs[r.IntN(len(p.MACs))].LinkLocal()
	case k < 6:
		return netip.MustParseAddr("ff02::1")
	case k < 7:
		return netip.AddrFrom16([16]byte{0xff, 0x02, 10: 0, 11: 1, 12: 0xff, 13: byte(r.Uint32()), 14: byte(r.Uint32()), 15: byte(r.Uint32())})
	case k < 8:
		return netip.MustParseAddr("fe80::1")
	}
	return frame.RandomAddr6(r)
}

// arpFrameIn is an ARP request, reply or other opcode from a neighbour,
// its target one of p's addresses or not.
func arpFrameIn(r *rand.Rand, p *port.Policy) []byte {
	b := ether(port.MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 0x0806)
	op := []uint16{1, 1, 2, 2, 3, 4, 0, 8}[r.IntN(8)]
	b = append(b, 0, 1, 8, 0, 6, 4)
	if r.IntN(12) == 0 { // not Ethernet/IPv4
		b[14+r.IntN(6)] ^= byte(1 + r.IntN(255))
	}
	b = binary.BigEndian.AppendUint16(b, op)
	b = append(b, 0x02, 0, 0, 0, 0, 1)
	spa := frame.RandomAddr4(r).As4()
	b = append(b, spa[:]...)
	tha := pickMAC(r, p)
	b = append(b, tha[:]...)
	tpa := dst4(r, p).As4()
	b = append(b, tpa[:]...)
	return append(b, make([]byte, r.IntN(20))...)
}

// dhcpFrameIn is a DHCP or DHCPv6 server or client message, or one like
// them (ports, addresses or fragments changed), to the guest's address,
// broadcast, multicast or another's.
func dhcpFrameIn(r *rand.Rand, p *port.Policy) []byte {
	ports := [][2]uint16{{67, 68}, {67, 68}, {68, 67}, {547, 546}, {547, 546}, {546, 547}, {67, 67}, {546, 546}}[r.IntN(8)]
	s := frame.Spec{Proto: frame.ProtoUDP, SrcPort: ports[0], DstPort: ports[1], Payload: r.IntN(60)}
	if ports[0] == 546 || ports[0] == 547 {
		s.Src, s.Dst = netip.MustParseAddr("fe80::1"), dst6(r, p)
		if r.IntN(5) == 0 {
			s.Ext = []frame.ExtHeader{frame.FragmentHeader(uint16(r.IntN(2)), r.IntN(2) == 0)}
		}
	} else {
		s.Src, s.Dst = frame.RandomAddr4(r), dst4(r, p)
		if r.IntN(5) == 0 {
			s.FragOffset, s.MoreFrags = uint16(r.IntN(2)), r.IntN(2) == 0
		}
	}
	return frame.Build(s)
}

// icmp6FrameIn is an ICMPv6 message the inbound checks look at (NDP,
// redirect, MLD) or another, to one of p's addresses, a group or another,
// at times behind extension headers or in a fragment.
func icmp6FrameIn(r *rand.Rand, p *port.Policy) []byte {
	typ := []byte{130, 131, 132, 133, 134, 135, 136, 137, 143, 128, 129, 1, 138}[r.IntN(13)]
	s := frame.Spec{Src: addr6(r, p), Dst: dst6(r, p), Proto: 58, Payload: []int{24, 24, 32, 4, 3, 23, 0}[r.IntN(7)]}
	if r.IntN(4) == 0 {
		s.Ext = append(s.Ext, []frame.ExtHeader{{Type: 0, Data: make([]byte, 6)}, {Type: 60, Data: make([]byte, 6)}, frame.FragmentHeader(uint16(r.IntN(2)), r.IntN(2) == 0)}[r.IntN(3)])
	}
	b := frame.Build(s)
	upper := len(b) - s.Payload
	if s.Payload > 0 {
		b[upper] = typ
	}
	if s.Payload >= 24 {
		t := dst6(r, p).As16()
		copy(b[upper+8:], t[:])
	}
	return b
}

func pickMAC(r *rand.Rand, p *port.Policy) port.MAC {
	if r.IntN(10) == 0 {
		return port.MAC{0x52, 0x54, 0, byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())}
	}
	return p.MACs[r.IntN(len(p.MACs))]
}

// inPrefix returns a random address in pr.
func inPrefix(r *rand.Rand, pr netip.Prefix) netip.Addr {
	a := pr.Addr().AsSlice()
	for i := range a {
		keep := byte(uint16(0xff00) >> min(max(pr.Bits()-8*i, 0), 8)) // the prefix's bits of byte i
		a[i] = a[i]&keep | byte(r.Uint32())&^keep
	}
	v, _ := netip.AddrFromSlice(a)
	return v
}

// addr4 returns one of p's IPv4 addresses, 0.0.0.0 or another.
func addr4(r *rand.Rand, p *port.Policy) netip.Addr {
	switch k := r.IntN(8); {
	case k < 5 && len(p.IPv4) > 0:
		return inPrefix(r, p.IPv4[r.IntN(len(p.IPv4))])
	case k < 6:
		return netip.IPv4Unspecified()
	}
	return frame.RandomAddr4(r)
}

// addr6 returns one of p's IPv6 addresses, a link-local address of its
// MACs, ::, a link-local address of another, or another.
func addr6(r *rand.Rand, p *port.Policy) netip.Addr {
	switch k := r.IntN(10); {
	case k < 4 && len(p.IPv6) > 0:
		return inPrefix(r, p.IPv6[r.IntN(len(p.IPv6))])
	case k < 6:
		return p.MACs[r.IntN(len(p.MACs))].LinkLocal()
	case k < 7:
		return netip.IPv6Unspecified()
	case k < 8:
		return netip.MustParseAddr("fe80::1")
	}
	return frame.RandomAddr6(r)
}

func ether(dst port.MAC, etype uint16) []byte {
	b := append(dst[:], make([]byte, 6)...)
	return binary.BigEndian.AppendUint16(b, etype)
}

// arpFrame is an ARP request, reply or other opcode, its sender one of p's
// or not.
func arpFrame(r *rand.Rand, p *port.Policy) []byte {
	src := pickMAC(r, p)
	b := ether(port.MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 0x0806)
	b = copyMAC(b, src) // the frame's source, so the sender may match it
	op := []uint16{1, 1, 2, 2, 3, 4, 0, 8}[r.IntN(8)]
	b = append(b, 0, 1, 8, 0, 6, 4)
	if r.IntN(12) == 0 { // not Ethernet/IPv4
		b[14+r.IntN(6)] ^= byte(1 + r.IntN(255))
	}
	b = binary.BigEndian.AppendUint16(b, op)
	sha := src
	if r.IntN(6) == 0 {
		sha = pickMAC(r, p)
	}
	b = append(b, sha[:]...)
	spa := addr4(r, p).As4()
	b = append(b, spa[:]...)
	b = append(b, make([]byte, 6)...)
	tpa := frame.RandomAddr4(r).As4()
	b = append(b, tpa[:]...)
	return append(b, make([]byte, r.IntN(20))...)
}

// rarpFrame is QEMU's announcement, or one of its fields changed.
func rarpFrame(r *rand.Rand, p *port.Policy) []byte {
	src := pickMAC(r, p)
	b := ether(port.MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 0x8035)
	b = copyMAC(b, src)
	b = append(b, 0, 1, 8, 0, 6, 4, 0, 3)
	b = append(b, src[:]...)
	b = append(b, 0, 0, 0, 0)
	b = append(b, src[:]...)
	b = append(b, 0, 0, 0, 0)
	b = append(b, make([]byte, 18)...)
	if r.IntN(2) == 0 {
		b[[]int{0, 5, 15, 21, 22, 27, 29, 33, 37, 40}[r.IntN(10)]] ^= byte(1 + r.IntN(255))
	}
	return b
}

func copyMAC(b []byte, m port.MAC) []byte {
	copy(b[6:12], m[:])
	return b
}

// dhcpFrame is a DHCP or DHCPv6 client or server message, or one like
// them (ports, addresses or fragments changed).
func dhcpFrame(r *rand.Rand, p *port.Policy) []byte {
	ports := [][2]uint16{{68, 67}, {68, 67}, {67, 68}, {546, 547}, {546, 547}, {547, 546}, {67, 67}, {68, 68}}[r.IntN(8)]
	s := frame.Spec{Proto: frame.ProtoUDP, SrcPort: ports[0], DstPort: ports[1], Payload: r.IntN(60)}
	if ports[0] == 546 || ports[0] == 547 {
		s.Src = []netip.Addr{addr6(r, p), p.MACs[0].LinkLocal(), netip.MustParseAddr("fe80::1")}[r.IntN(3)]
		s.Dst = []netip.Addr{netip.MustParseAddr("ff02::1:2"), netip.MustParseAddr("ff02::1:2"), frame.RandomAddr6(r)}[r.IntN(3)]
		if r.IntN(5) == 0 {
			s.Ext = []frame.ExtHeader{frame.FragmentHeader(uint16(r.IntN(2)), r.IntN(2) == 0)}
		}
	} else {
		s.Src = addr4(r, p)
		s.Dst = []netip.Addr{netip.AddrFrom4([4]byte{255, 255, 255, 255}), frame.RandomAddr4(r)}[r.IntN(2)]
		if r.IntN(5) == 0 {
			s.FragOffset, s.MoreFrags = uint16(r.IntN(2)), r.IntN(2) == 0
		}
	}
	return frame.Build(s)
}

// icmp6Frame is an ICMPv6 message the checks look at (NDP, MLD) or
// another, from one of p's addresses, ::, or another, at times behind
// extension headers or in a fragment.
func icmp6Frame(r *rand.Rand, p *port.Policy) []byte {
	typ := []byte{133, 134, 135, 135, 136, 136, 137, 130, 131, 132, 143, 128, 129, 1}[r.IntN(14)]
	s := frame.Spec{Src: addr6(r, p), Dst: frame.RandomAddr6(r), Proto: 58, Payload: []int{24, 24, 32, 4, 3, 23, 0}[r.IntN(7)]}
	if r.IntN(4) == 0 {
		s.Ext = append(s.Ext, []frame.ExtHeader{{Type: 0, Data: make([]byte, 6)}, {Type: 60, Data: make([]byte, 6)}, frame.FragmentHeader(uint16(r.IntN(2)), r.IntN(2) == 0)}[r.IntN(3)])
	}
	b := frame.Build(s)
	upper := len(b) - s.Payload
	if s.Payload > 0 {
		b[upper] = typ
	}
	if s.Payload >= 24 {
		t := addr6(r, p).As16()
		copy(b[upper+8:], t[:])
	}
	return b
}
