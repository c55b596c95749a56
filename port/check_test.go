package port

import (
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/vrss-dev/vrss/flow"
)

// Rules of testPolicy, by index.
const (
	ruleDropSSH = iota
	ruleDNS4
	ruleDNS6
	ruleICMP4
	ruleICMP6
)

func rule(a Action, set func(m *flow.Match)) Rule {
	var m flow.Match
	set(&m)
	if err := m.Normalize(); err != nil {
		panic(err)
	}
	return Rule{Match: m, Action: a}
}

func testPolicy() Policy {
	return Policy{
		MACs:      []MAC{guestMAC},
		IPv4:      []netip.Prefix{netip.MustParsePrefix(guest4 + "/32"), netip.MustParsePrefix("198.51.100.0/24")},
		IPv6:      []netip.Prefix{netip.MustParsePrefix(guest6 + "/128")},
		LinkLocal: true,
		Rules: []Rule{
			ruleDropSSH: rule(Drop, func(m *flow.Match) { m.SetEtherType(0x0800, 0xffff); m.SetProto(6, 0xff); m.SetDstPort(22, 0xffff) }),
			ruleDNS4:    rule(Allow, func(m *flow.Match) { m.SetEtherType(0x0800, 0xffff); m.SetProto(17, 0xff); m.SetDstPort(53, 0xffff) }),
			ruleDNS6:    rule(Allow, func(m *flow.Match) { m.SetEtherType(0x86dd, 0xffff); m.SetProto(17, 0xff); m.SetDstPort(53, 0xffff) }),
			ruleICMP4:   rule(Allow, func(m *flow.Match) { m.SetEtherType(0x0800, 0xffff); m.SetProto(1, 0xff) }),
			ruleICMP6:   rule(Allow, func(m *flow.Match) { m.SetEtherType(0x86dd, 0xffff); m.SetProto(58, 0xff) }),
		},
		Default: Drop,
	}
}

func cut(b []byte, n int) []byte { return b[:n] }

func patch(b []byte, off int, v ...byte) []byte {
	b = append([]byte(nil), b...)
	copy(b[off:], v)
	return b
}

// exact returns a copy of b whose capacity is its length, so that a read
// past its end panics.
func exact(b []byte) []byte {
	c := append([]byte(nil), b...)
	return c[:len(c):len(c)]
}

func TestCheck(t *testing.T) {
	const (
		udp  = layers.IPProtocolUDP
		tcp  = layers.IPProtocolTCP
		icmp = layers.IPProtocolICMPv4
		icm6 = layers.IPProtocolICMPv6
		hbh  = layers.IPProtocolIPv6HopByHop
		dsto = layers.IPProtocolIPv6Destination
		frag = layers.IPProtocolIPv6Fragment
	)
	first := &layers.IPv6Fragment{MoreFragments: true, Identification: 7}
	later := &layers.IPv6Fragment{FragmentOffset: 100, MoreFragments: true, Identification: 7}
	dns4 := v4{src: guest4, dst: gw4, proto: udp, sp: 40000, dp: 53, payload: 20}
	dns6 := v6{src: guest6, dst: gw6, proto: udp, sp: 40000, dp: 53, payload: 20}
	echo6 := v6{src: guest6, dst: gw6, proto: icm6, icmp: layers.ICMPv6TypeEchoRequest}
	ra := v6{src: guestLL, dst: "ff02::1", proto: icm6, icmp: layers.ICMPv6TypeRouterAdvertisement}
	na := func(src, target string) v6 {
		return v6{src: src, dst: "ff02::1", proto: icm6, icmp: layers.ICMPv6TypeNeighborAdvertisement, target: target}
	}
	ns := func(src, target string) v6 {
		return v6{src: src, dst: "ff02::1:ff00:10", proto: icm6, icmp: layers.ICMPv6TypeNeighborSolicitation, target: target}
	}
	with := func(s v6, f func(*v6)) v6 { f(&s); return s }
	with4 := func(s v4, f func(*v4)) v4 { f(&s); return s }
	dhcpDiscover := v4{src: "0.0.0.0", dst: "255.255.255.255", proto: udp, sp: 68, dp: 67, payload: 240}
	solicit := v6{src: otherLL, dst: "ff02::1:2", proto: udp, sp: 546, dp: 547, payload: 40}
	noLL := func(p *Policy) { p.LinkLocal = false }
	allowAll := func(p *Policy) { p.Default = Allow }

	cases := []struct {
		name   string
		frame  []byte
		want   Reason
		rule   int // -1: none
		policy func(*Policy)
	}{
		// The Ethernet header, the source MAC, VLANs, other L2 protocols.
		{"13 bytes", cut(dns4.build(), 13), Malformed, -1, nil},
		{"empty", nil, Malformed, -1, nil},
		{"another's MAC", with4(dns4, func(s *v4) { s.mac = otherMAC }).build(), SrcMAC, -1, nil},
		{"a multicast source MAC", patch(dns4.build(), 6, 0x01), SrcMAC, -1, nil},
		{"another's MAC, header only", patch(dns4.build(), 6, otherMAC[:]...)[:14], SrcMAC, -1, nil},
		{"802.1Q tag", serialize(ether(guestMAC, gwMAC, layers.EthernetTypeDot1Q), &layers.Dot1Q{VLANIdentifier: 100, Type: layers.EthernetTypeIPv4},
			&layers.IPv4{Version: 4, TTL: 1, Protocol: udp, SrcIP: ip(guest4), DstIP: ip(gw4)}), VLAN, -1, nil},
		{"802.1ad tag, cut", patch(dns4.build(), 12, 0x88, 0xa8)[:16], VLAN, -1, nil},
		{"LLDP", serialize(ether(guestMAC, MAC{0x01, 0x80, 0xc2, 0, 0, 0x0e}, layers.EthernetTypeLinkLayerDiscovery), gopacket.Payload(make([]byte, 46))), L2Proto, -1, nil},
		{"802.3 length field (STP)", patch(dns4.build(), 12, 0x00, 0x26, 0x42, 0x42, 0x03), L2Proto, -1, nil},
		{"QEMU's old announce EtherType 0x0835", patch(qemuAnnounce().build(), 12, 0x08, 0x35), L2Proto, -1, nil},

		// ARP.
		{"arp request", arpFrame{op: 1, sha: guestMAC, spa: guest4, tpa: gw4}.build(), Control, -1, nil},
		{"arp reply", arpFrame{dst: gwMAC, op: 2, sha: guestMAC, spa: net4, tha: gwMAC, tpa: gw4}.build(), Control, -1, nil},
		{"arp probe from 0.0.0.0", arpFrame{op: 1, sha: guestMAC, spa: "0.0.0.0", tpa: guest4}.build(), Control, -1, nil},
		{"arp reply from 0.0.0.0", arpFrame{op: 2, sha: guestMAC, spa: "0.0.0.0", tpa: gw4}.build(), ARPSender, -1, nil},
		{"gratuitous arp for another's address", arpFrame{op: 1, sha: guestMAC, spa: other4, tpa: other4}.build(), ARPSender, -1, nil},
		{"arp reply with another sender MAC", arpFrame{dst: gwMAC, op: 2, sha: otherMAC, spa: guest4, tha: gwMAC, tpa: gw4}.build(), ARPSender, -1, nil},
		{"arp opcode 3 (RARP's) in ARP", arpFrame{op: 3, sha: guestMAC, spa: guest4, tpa: gw4}.build(), ARPOpcode, -1, nil},
		{"inverse arp request (8)", arpFrame{op: 8, sha: guestMAC, spa: guest4, tpa: gw4}.build(), ARPOpcode, -1, nil},
		{"arp cut", cut(arpFrame{op: 1, sha: guestMAC, spa: guest4, tpa: gw4}.build(), 14+27), Malformed, -1, nil},
		{"arp for another hardware type", arpFrame{op: 1, sha: guestMAC, spa: guest4, tpa: gw4, htype: 6}.build(), Malformed, -1, nil},

		// RARP.
		{"QEMU's self-announcement", qemuAnnounce().build(), Control, -1, nil},
		{"rarp with a sender address", with2(qemuAnnounce(), func(a *arpFrame) { a.spa = guest4 }).build(), RARP, -1, nil},
		{"rarp for another target MAC", with2(qemuAnnounce(), func(a *arpFrame) { a.tha = otherMAC }).build(), RARP, -1, nil},
		{"rarp unicast", with2(qemuAnnounce(), func(a *arpFrame) { a.dst = gwMAC }).build(), RARP, -1, nil},
		{"rarp reply (4)", with2(qemuAnnounce(), func(a *arpFrame) { a.op = 4 }).build(), RARP, -1, nil},
		{"rarp cut", cut(qemuAnnounce().build(), 14+20), Malformed, -1, nil},

		// IPv4: the source address, DHCP, then the ACL.
		{"udp4 to 53: rule", dns4.build(), ACLAllow, ruleDNS4, nil},
		{"tcp4 to 22: drop rule", v4{src: guest4, dst: gw4, proto: tcp, sp: 40000, dp: 22}.build(), ACLDrop, ruleDropSSH, nil},
		{"tcp4 to 80: default deny", v4{src: guest4, dst: gw4, proto: tcp, sp: 40000, dp: 80}.build(), DefaultDeny, -1, nil},
		{"tcp4 to 80: default allow", v4{src: guest4, dst: gw4, proto: tcp, sp: 40000, dp: 80}.build(), DefaultAllow, -1, allowAll},
		{"icmp4 from the guest's prefix", v4{src: net4, dst: gw4, proto: icmp}.build(), ACLAllow, ruleICMP4, nil},
		{"ipv4 options", with4(dns4, func(s *v4) { s.opts = true }).build(), ACLAllow, ruleDNS4, nil},
		{"ipv4 from another's address", with4(dns4, func(s *v4) { s.src = other4 }).build(), SrcIPv4, -1, nil},
		{"tcp4 from 0.0.0.0", v4{src: "0.0.0.0", dst: gw4, proto: tcp, sp: 68, dp: 67}.build(), SrcIPv4, -1, nil},
		{"dhcp discover from 0.0.0.0", dhcpDiscover.build(), Control, -1, nil},
		{"dhcp from 0.0.0.0, unicast", with4(dhcpDiscover, func(s *v4) { s.dst = gw4 }).build(), SrcIPv4, -1, nil},
		{"dhcp from 0.0.0.0, port 68 to 68", with4(dhcpDiscover, func(s *v4) { s.dp = 68 }).build(), SrcIPv4, -1, nil},
		{"dhcp from 0.0.0.0, first fragment", with4(dhcpDiscover, func(s *v4) { s.moreFrags = true }).build(), SrcIPv4, -1, nil},
		{"dhcp renewal from the lease", with4(dhcpDiscover, func(s *v4) { s.src, s.dst = guest4, gw4 }).build(), Control, -1, nil},
		{"dhcp server reply", v4{src: guest4, dst: "255.255.255.255", proto: udp, sp: 67, dp: 68, payload: 240}.build(), DHCPServer, -1, nil},
		{"dhcp relay to a server", v4{src: guest4, dst: gw4, proto: udp, sp: 67, dp: 67, payload: 240}.build(), DHCPServer, -1, nil},
		{"dhcp server reply from 0.0.0.0", v4{src: "0.0.0.0", dst: "255.255.255.255", proto: udp, sp: 67, dp: 68}.build(), SrcIPv4, -1, nil},
		{"dhcp server reply, first fragment", v4{src: guest4, dst: gw4, proto: udp, sp: 67, dp: 68, moreFrags: true, payload: 240}.build(), DHCPServer, -1, nil},
		{"ipv4 later fragment: no ports, default", with4(dns4, func(s *v4) { s.fragOff, s.moreFrags = 100, true }).build(), DefaultDeny, -1, nil},
		{"ipv4 first fragment, udp cut", cut(v4{src: guest4, dst: gw4, proto: udp, sp: 67, dp: 68, moreFrags: true}.build(), 14+20+7), Malformed, -1, nil},
		{"ipv4 header cut", cut(dns4.build(), 14+19), Malformed, -1, nil},
		{"ipv4 udp cut", cut(dns4.build(), 14+20+7), Malformed, -1, nil},
		{"ipv4 bad version", patch(dns4.build(), 14, 0x65), Malformed, -1, nil},

		// IPv6: the source address, DHCPv6, NDP, then the ACL.
		{"udp6 to 53: rule", dns6.build(), ACLAllow, ruleDNS6, nil},
		{"tcp6 to 80: default", v6{src: guest6, dst: gw6, proto: tcp, sp: 40000, dp: 80}.build(), DefaultDeny, -1, nil},
		{"udp6 behind hop-by-hop and destination options", with(dns6, func(s *v6) { s.ext = []layers.IPProtocol{hbh, dsto} }).build(), ACLAllow, ruleDNS6, nil},
		{"udp6 first fragment shows ports", with(dns6, func(s *v6) { s.ext, s.frag = []layers.IPProtocol{frag}, first }).build(), ACLAllow, ruleDNS6, nil},
		{"udp6 later fragment: no ports, default", with(dns6, func(s *v6) { s.ext, s.frag = []layers.IPProtocol{frag}, later }).build(), DefaultDeny, -1, nil},
		{"ipv6 first fragment, chain cut", cut(with(dns6, func(s *v6) { s.ext, s.frag = []layers.IPProtocol{frag, dsto}, first }).build(), 14+40+8+4), Malformed, -1, nil},
		{"ipv6 first fragment, udp cut", cut(with(dns6, func(s *v6) { s.ext, s.frag = []layers.IPProtocol{frag}, first }).build(), 14+40+8+7), Malformed, -1, nil},
		{"ipv6 9 extension headers", with(dns6, func(s *v6) {
			s.ext = []layers.IPProtocol{hbh, dsto, dsto, dsto, dsto, dsto, dsto, dsto, dsto}
		}).build(), Malformed, -1, nil},
		{"ipv6 header cut", cut(dns6.build(), 14+39), Malformed, -1, nil},
		{"ipv6 extension header cut", cut(with(dns6, func(s *v6) { s.ext = []layers.IPProtocol{hbh} }).build(), 14+40+7), Malformed, -1, nil},
		{"ipv6 bad version", patch(dns6.build(), 14, 0x40), Malformed, -1, nil},
		{"icmp6 echo: rule", echo6.build(), ACLAllow, ruleICMP6, nil},
		{"icmp6 header cut", cut(echo6.build(), 14+40+3), Malformed, -1, nil},
		{"ipv6 from another's address", with(dns6, func(s *v6) { s.src = other6 }).build(), SrcIPv6, -1, nil},
		{"ipv6 from the EUI-64 link-local address", with(echo6, func(s *v6) { s.src = guestLL }).build(), ACLAllow, ruleICMP6, nil},
		{"ipv6 from the EUI-64 link-local address, not allowed", with(echo6, func(s *v6) { s.src = guestLL }).build(), SrcIPv6, -1, noLL},
		{"ipv6 from another link-local address", with(echo6, func(s *v6) { s.src = otherLL }).build(), SrcIPv6, -1, nil},
		{"echo from ::", with(echo6, func(s *v6) { s.src = "::" }).build(), SrcIPv6, -1, nil},
		{"dhcpv6 solicit from any link-local address", solicit.build(), Control, -1, nil},
		{"dhcpv6 solicit from the guest's address", with(solicit, func(s *v6) { s.src = guest6 }).build(), Control, -1, nil},
		{"dhcpv6 from link-local, unicast", with(solicit, func(s *v6) { s.dst = gw6 }).build(), SrcIPv6, -1, nil},
		{"dhcpv6 from a global address not the guest's", with(solicit, func(s *v6) { s.src = other6 }).build(), SrcIPv6, -1, nil},
		{"dhcpv6 server advertise", v6{src: guestLL, dst: otherLL, proto: udp, sp: 547, dp: 546}.build(), DHCPv6Server, -1, nil},
		{"dhcpv6 relay forward", v6{src: guest6, dst: "ff05::1:3", proto: udp, sp: 547, dp: 547}.build(), DHCPv6Server, -1, nil},
		{"router advertisement", ra.build(), RouterAdvert, -1, nil},
		{"router advertisement from another link-local", with(ra, func(s *v6) { s.src = otherLL }).build(), SrcIPv6, -1, nil},
		{"router advertisement behind extension headers", with(ra, func(s *v6) { s.ext = []layers.IPProtocol{hbh, dsto} }).build(), RouterAdvert, -1, nil},
		{"router advertisement, first fragment", with(ra, func(s *v6) { s.ext, s.frag = []layers.IPProtocol{frag}, first }).build(), RouterAdvert, -1, nil},
		{"redirect", v6{src: guestLL, dst: otherLL, proto: icm6, icmp: layers.ICMPv6TypeRedirect, target: gw6}.build(), Redirect, -1, nil},
		{"router solicitation", v6{src: guestLL, dst: "ff02::2", proto: icm6, icmp: layers.ICMPv6TypeRouterSolicitation}.build(), Control, -1, nil},
		{"router solicitation from ::", v6{src: "::", dst: "ff02::2", proto: icm6, icmp: layers.ICMPv6TypeRouterSolicitation}.build(), Control, -1, nil},
		{"neighbour advertisement", na(guest6, guest6).build(), Control, -1, nil},
		{"neighbour advertisement for the link-local address", na(guestLL, guestLL).build(), Control, -1, nil},
		{"neighbour advertisement for another's address", na(guest6, other6).build(), NDPTarget, -1, nil},
		{"neighbour advertisement for another's, behind a destination header", with(na(guest6, other6), func(s *v6) { s.ext = []layers.IPProtocol{dsto} }).build(), NDPTarget, -1, nil},
		{"neighbour advertisement cut", cut(na(guest6, guest6).build(), 14+40+23), Malformed, -1, nil},
		{"neighbour advertisement from another", na(other6, other6).build(), SrcIPv6, -1, nil},
		{"neighbour solicitation", ns(guestLL, gw6).build(), Control, -1, nil},
		{"duplicate address detection", ns("::", guest6).build(), Control, -1, nil},
		{"duplicate address detection for another's address", ns("::", other6).build(), NDPTarget, -1, nil},
		{"neighbour solicitation, first fragment: the ACL decides", with(ns(guest6, gw6), func(s *v6) { s.ext, s.frag = []layers.IPProtocol{frag}, first }).build(), ACLAllow, ruleICMP6, nil},
		{"neighbour solicitation, first fragment, default", with(ns(guest6, gw6), func(s *v6) { s.ext, s.frag = []layers.IPProtocol{frag}, first }).build(), DefaultAllow, -1,
			func(p *Policy) { p.Rules, p.Default = nil, Allow }},
		{"mldv2 report from ::", v6{src: "::", dst: "ff02::16", ext: []layers.IPProtocol{hbh}, proto: icm6, icmp: 143}.build(), Control, -1, nil},
		{"mldv1 report", v6{src: guestLL, dst: "ff02::1:ff12:3456", proto: icm6, icmp: 131}.build(), Control, -1, nil},
		{"mld query from :: (not a host's message)", v6{src: "::", dst: "ff02::1", proto: icm6, icmp: 130}.build(), SrcIPv6, -1, nil},
	}
	seen := map[Reason]bool{}
	for _, c := range cases {
		seen[c.want] = true
		t.Run(c.name, func(t *testing.T) {
			p := testPolicy()
			if c.policy != nil {
				c.policy(&p)
			}
			f, err := New(p)
			if err != nil {
				t.Fatal(err)
			}
			got := f.Check(exact(c.frame))
			want := result(c.want)
			want.Rule = c.rule
			if got != want {
				t.Errorf("got %v %v rule %d, want %v %v rule %d", got.Verdict, got.Reason, got.Rule, want.Verdict, want.Reason, want.Rule)
			}
		})
	}
	for r := Reason(1); r < DstMAC; r++ {
		if !seen[r] {
			t.Errorf("no case for reason %v", r)
		}
	}
}

// inbound returns a copy of frame b addressed to MAC dst and from the
// gateway's MAC, as it arrives for the guest.
func inbound(b []byte, dst MAC) []byte {
	b = patch(b, 0, dst[:]...)
	copy(b[6:12], gwMAC[:])
	return b
}

// TestCheckInbound is TestCheck for an inbound Filter (NewInbound, an
// AF_XDP port's): frames arriving for the guest, a case for every reason
// an inbound Filter gives, and none of the outbound ones.
func TestCheckInbound(t *testing.T) {
	const (
		udp  = layers.IPProtocolUDP
		tcp  = layers.IPProtocolTCP
		icmp = layers.IPProtocolICMPv4
		icm6 = layers.IPProtocolICMPv6
		hbh  = layers.IPProtocolIPv6HopByHop
		frag = layers.IPProtocolIPv6Fragment
	)
	first := &layers.IPv6Fragment{MoreFragments: true, Identification: 7}
	g := func(b []byte) []byte { return inbound(b, guestMAC) }
	bc := func(b []byte) []byte { return inbound(b, bcastMAC) }
	dns4 := v4{src: gw4, dst: guest4, proto: udp, sp: 40000, dp: 53, payload: 20} // a query to the guest's server
	dns6 := v6{src: gw6, dst: guest6, proto: udp, sp: 53, dp: 40000, payload: 20}
	offer := v4{src: gw4, dst: "255.255.255.255", proto: udp, sp: 67, dp: 68, payload: 240}
	advertise := v6{src: otherLL, dst: guestLL, proto: udp, sp: 547, dp: 546, payload: 40}
	ra := v6{src: otherLL, dst: "ff02::1", proto: icm6, icmp: layers.ICMPv6TypeRouterAdvertisement}
	ns := v6{src: otherLL, dst: "ff02::1:ff00:10", proto: icm6, icmp: layers.ICMPv6TypeNeighborSolicitation, target: guest6}
	with := func(s v6, f func(*v6)) v6 { f(&s); return s }
	with4 := func(s v4, f func(*v4)) v4 { f(&s); return s }
	noLL := func(p *Policy) { p.LinkLocal = false }
	allowAll := func(p *Policy) { p.Default = Allow }
	no4 := func(p *Policy) { p.IPv4 = nil }
	arpFor := func(op uint16, tpa string) []byte {
		return bc(arpFrame{op: op, sha: gwMAC, spa: gw4, tpa: tpa}.build())
	}

	cases := []struct {
		name   string
		frame  []byte
		want   Reason
		rule   int // -1: none
		policy func(*Policy)
	}{
		// The Ethernet header, VLANs, the destination MAC, other L2
		// protocols.
		{"13 bytes", cut(g(dns4.build()), 13), Malformed, -1, nil},
		{"empty", nil, Malformed, -1, nil},
		{"802.1Q tag", serialize(ether(gwMAC, guestMAC, layers.EthernetTypeDot1Q), &layers.Dot1Q{VLANIdentifier: 100, Type: layers.EthernetTypeIPv4},
			&layers.IPv4{Version: 4, TTL: 1, Protocol: udp, SrcIP: ip(gw4), DstIP: ip(guest4)}), VLAN, -1, nil},
		{"802.1ad tag to another MAC: the tag first", inbound(patch(dns4.build(), 12, 0x88, 0xa8), otherMAC)[:16], VLAN, -1, nil},
		{"to another MAC", inbound(dns4.build(), otherMAC), DstMAC, -1, nil},
		{"to another MAC, header only", inbound(dns4.build(), otherMAC)[:14], DstMAC, -1, nil},
		{"to another MAC, from the guest's", patch(inbound(dns4.build(), otherMAC), 6, guestMAC[:]...), DstMAC, -1, nil},
		{"from another MAC: the source is not judged", patch(g(dns4.build()), 6, otherMAC[:]...), ACLAllow, ruleDNS4, nil},
		{"to broadcast", bc(with4(dns4, func(s *v4) { s.dst = "255.255.255.255" }).build()), ACLAllow, ruleDNS4, nil},
		{"to a multicast MAC", inbound(with4(dns4, func(s *v4) { s.dst = "224.0.0.251" }).build(), MAC{0x01, 0x00, 0x5e, 0, 0, 0xfb}), ACLAllow, ruleDNS4, nil},
		{"LLDP to its group", inbound(serialize(ether(gwMAC, guestMAC, layers.EthernetTypeLinkLayerDiscovery), gopacket.Payload(make([]byte, 46))), MAC{0x01, 0x80, 0xc2, 0, 0, 0x0e}), L2Proto, -1, nil},
		{"802.3 length field (STP)", g(patch(dns4.build(), 12, 0x00, 0x26, 0x42, 0x42, 0x03)), L2Proto, -1, nil},
		{"QEMU's RARP announcement (another guest's)", bc(qemuAnnounce().build()), L2Proto, -1, nil},
		{"RARP cut", cut(bc(qemuAnnounce().build()), 14+20), L2Proto, -1, nil},

		// ARP: the target address.
		{"arp request for the guest's address", arpFor(1, guest4), Control, -1, nil},
		{"arp request for an address of its prefix", arpFor(1, net4), Control, -1, nil},
		{"arp reply to the guest", g(arpFrame{op: 2, sha: gwMAC, spa: gw4, tha: guestMAC, tpa: guest4}.build()), Control, -1, nil},
		{"arp request for another's address", arpFor(1, other4), ARPTarget, -1, nil},
		{"gratuitous arp of a neighbour", arpFor(1, gw4), ARPTarget, -1, nil},
		{"arp request, no IPv4 address in the policy", arpFor(1, guest4), ARPTarget, -1, no4},
		{"arp opcode 3", arpFor(3, guest4), ARPOpcode, -1, nil},
		{"inverse arp (8)", arpFor(8, guest4), ARPOpcode, -1, nil},
		{"arp cut", cut(arpFor(1, guest4), 14+27), Malformed, -1, nil},
		{"arp for another hardware type", bc(arpFrame{op: 1, sha: gwMAC, spa: gw4, tpa: guest4, htype: 6}.build()), Malformed, -1, nil},

		// IPv4: DHCP, the destination, then the ACL.
		{"udp4 to 53: rule", g(dns4.build()), ACLAllow, ruleDNS4, nil},
		{"udp4 from 53: default", g(with4(dns4, func(s *v4) { s.sp, s.dp = 53, 40000 }).build()), DefaultDeny, -1, nil},
		{"tcp4 to 22: drop rule", g(v4{src: gw4, dst: guest4, proto: tcp, sp: 40000, dp: 22}.build()), ACLDrop, ruleDropSSH, nil},
		{"tcp4 to 80: default deny", g(v4{src: gw4, dst: guest4, proto: tcp, sp: 40000, dp: 80}.build()), DefaultDeny, -1, nil},
		{"tcp4 to 80: default allow", g(v4{src: gw4, dst: guest4, proto: tcp, sp: 40000, dp: 80}.build()), DefaultAllow, -1, allowAll},
		{"icmp4 to the guest's prefix", g(v4{src: gw4, dst: net4, proto: icmp}.build()), ACLAllow, ruleICMP4, nil},
		{"ipv4 to another's address", g(with4(dns4, func(s *v4) { s.dst = other4 }).build()), DstIPv4, -1, nil},
		{"ipv4 to another's address, from the guest's", g(with4(dns4, func(s *v4) { s.src, s.dst = guest4, other4 }).build()), DstIPv4, -1, nil},
		{"ipv4 to 0.0.0.0", g(with4(dns4, func(s *v4) { s.dst = "0.0.0.0" }).build()), DstIPv4, -1, nil},
		{"ipv4 to a subnet broadcast not the guest's", g(with4(dns4, func(s *v4) { s.dst = "192.0.2.255" }).build()), DstIPv4, -1, nil},
		{"ipv4 multicast", bc(with4(dns4, func(s *v4) { s.dst = "239.1.2.3" }).build()), ACLAllow, ruleDNS4, nil},
		{"dhcp offer to broadcast", bc(offer.build()), Control, -1, nil},
		{"dhcp offer unicast to the offered address, not yet the policy's", g(with4(offer, func(s *v4) { s.dst = other4 }).build()), Control, -1, nil},
		{"dhcp offer, no IPv4 address in the policy", g(with4(offer, func(s *v4) { s.dst = guest4 }).build()), Control, -1, no4},
		{"dhcp offer to another MAC", inbound(offer.build(), otherMAC), DstMAC, -1, nil},
		{"dhcp offer, first fragment: the destination, then the ACL", g(with4(offer, func(s *v4) { s.dst, s.moreFrags = other4, true }).build()), DstIPv4, -1, nil},
		{"dhcp offer to the guest, first fragment: the ACL", g(with4(offer, func(s *v4) { s.dst, s.moreFrags = guest4, true }).build()), DefaultDeny, -1, nil},
		{"udp 67 to 67 to another", g(with4(offer, func(s *v4) { s.dst, s.dp = other4, 67 }).build()), DstIPv4, -1, nil},
		{"a dhcp client's discover (another guest's), to broadcast", bc(v4{src: "0.0.0.0", dst: "255.255.255.255", proto: udp, sp: 68, dp: 67}.build()), DefaultDeny, -1, nil},
		{"ipv4 later fragment: default", g(with4(dns4, func(s *v4) { s.fragOff, s.moreFrags = 100, true }).build()), DefaultDeny, -1, nil},
		{"ipv4 header cut", cut(g(dns4.build()), 14+19), Malformed, -1, nil},
		{"ipv4 udp cut", cut(g(dns4.build()), 14+20+7), Malformed, -1, nil},
		{"ipv4 bad version", patch(g(dns4.build()), 14, 0x65), Malformed, -1, nil},

		// IPv6: the destination, then NDP, MLD, DHCPv6, then the ACL.
		{"udp6 from 53: default", g(dns6.build()), DefaultDeny, -1, nil},
		{"udp6 to 53: rule", g(with(dns6, func(s *v6) { s.sp, s.dp = 40000, 53 }).build()), ACLAllow, ruleDNS6, nil},
		{"ipv6 to another's address", g(with(dns6, func(s *v6) { s.dst = other6 }).build()), DstIPv6, -1, nil},
		{"ipv6 to the guest's link-local address", g(with(dns6, func(s *v6) { s.dst = guestLL }).build()), DefaultDeny, -1, nil},
		{"ipv6 to the guest's link-local address, not allowed", g(with(dns6, func(s *v6) { s.dst = guestLL }).build()), DstIPv6, -1, noLL},
		{"ipv6 to another link-local address", g(with(dns6, func(s *v6) { s.dst = otherLL }).build()), DstIPv6, -1, nil},
		{"ipv6 to ::", g(with(dns6, func(s *v6) { s.dst = "::" }).build()), DstIPv6, -1, nil},
		{"router advertisement to all nodes", inbound(ra.build(), MAC{0x33, 0x33, 0, 0, 0, 1}), Control, -1, nil},
		{"router advertisement to the guest", g(with(ra, func(s *v6) { s.dst = guestLL }).build()), Control, -1, nil},
		{"router advertisement to the guest, link-local not allowed", g(with(ra, func(s *v6) { s.dst = guestLL }).build()), DstIPv6, -1, noLL},
		{"router advertisement behind a hop-by-hop header", inbound(with(ra, func(s *v6) { s.ext = []layers.IPProtocol{hbh} }).build(), MAC{0x33, 0x33, 0, 0, 0, 1}), Control, -1, nil},
		{"router advertisement, first fragment: the ACL", inbound(with(ra, func(s *v6) { s.ext, s.frag = []layers.IPProtocol{frag}, first }).build(), MAC{0x33, 0x33, 0, 0, 0, 1}), ACLAllow, ruleICMP6, nil},
		{"router solicitation of another guest", inbound(v6{src: otherLL, dst: "ff02::2", proto: icm6, icmp: layers.ICMPv6TypeRouterSolicitation}.build(), MAC{0x33, 0x33, 0, 0, 0, 2}), Control, -1, nil},
		{"neighbour solicitation to the solicited-node group", inbound(ns.build(), MAC{0x33, 0x33, 0xff, 0, 0, 0x10}), Control, -1, nil},
		{"neighbour solicitation for another's address", inbound(with(ns, func(s *v6) { s.target = other6 }).build(), MAC{0x33, 0x33, 0xff, 0, 0, 0x99}), Control, -1, nil},
		{"neighbour advertisement to the guest", g(v6{src: gw6, dst: guest6, proto: icm6, icmp: layers.ICMPv6TypeNeighborAdvertisement, target: gw6}.build()), Control, -1, nil},
		{"neighbour advertisement to another", g(v6{src: gw6, dst: other6, proto: icm6, icmp: layers.ICMPv6TypeNeighborAdvertisement, target: gw6}.build()), DstIPv6, -1, nil},
		{"neighbour advertisement cut", cut(g(v6{src: gw6, dst: guest6, proto: icm6, icmp: layers.ICMPv6TypeNeighborAdvertisement, target: gw6}.build()), 14+40+23), Malformed, -1, nil},
		{"redirect to the guest", g(v6{src: otherLL, dst: guestLL, proto: icm6, icmp: layers.ICMPv6TypeRedirect, target: gw6}.build()), Control, -1, nil},
		{"mld query", inbound(v6{src: otherLL, dst: "ff02::1", ext: []layers.IPProtocol{hbh}, proto: icm6, icmp: 130}.build(), MAC{0x33, 0x33, 0, 0, 0, 1}), Control, -1, nil},
		{"mldv2 report of another host", inbound(v6{src: otherLL, dst: "ff02::16", ext: []layers.IPProtocol{hbh}, proto: icm6, icmp: 143}.build(), MAC{0x33, 0x33, 0, 0, 0, 0x16}), Control, -1, nil},
		{"dhcpv6 advertise to the guest's link-local address", g(advertise.build()), Control, -1, nil},
		{"dhcpv6 advertise, link-local not allowed", g(advertise.build()), DstIPv6, -1, noLL},
		{"dhcpv6 reply to the guest's address", g(with(advertise, func(s *v6) { s.dst = guest6 }).build()), Control, -1, nil},
		{"dhcpv6 relay reply (547 to 547)", g(with(advertise, func(s *v6) { s.dp = 547 }).build()), DefaultDeny, -1, nil},
		{"icmp6 echo: rule", g(v6{src: gw6, dst: guest6, proto: icm6, icmp: layers.ICMPv6TypeEchoRequest}.build()), ACLAllow, ruleICMP6, nil},
		{"icmp6 header cut", cut(g(v6{src: gw6, dst: guest6, proto: icm6, icmp: layers.ICMPv6TypeEchoRequest}.build()), 14+40+3), Malformed, -1, nil},
		{"ipv6 header cut", cut(g(dns6.build()), 14+39), Malformed, -1, nil},
		{"ipv6 bad version", patch(g(dns6.build()), 14, 0x40), Malformed, -1, nil},
	}
	seen := map[Reason]bool{}
	for _, c := range cases {
		seen[c.want] = true
		t.Run(c.name, func(t *testing.T) {
			p := testPolicy()
			if c.policy != nil {
				c.policy(&p)
			}
			f, err := NewInbound(p)
			if err != nil {
				t.Fatal(err)
			}
			if !f.Inbound() {
				t.Fatal("NewInbound's Filter is not inbound")
			}
			got := f.Check(exact(c.frame))
			want := result(c.want)
			want.Rule = c.rule
			if got != want {
				t.Errorf("got %v %v rule %d, want %v %v rule %d", got.Verdict, got.Reason, got.Rule, want.Verdict, want.Reason, want.Rule)
			}
		})
	}
	for r := Reason(1); r < NumReasons; r++ {
		outbound := r == SrcMAC || r >= ARPSender && r <= NDPTarget
		if !seen[r] && !outbound {
			t.Errorf("no case for reason %v", r)
		}
	}
}

func with2(a arpFrame, f func(*arpFrame)) arpFrame { f(&a); return a }
