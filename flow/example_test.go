package flow_test

import (
	"fmt"
	"net/netip"

	"github.com/vrss-dev/vrss/flow"
	"github.com/vrss-dev/vrss/internal/frame"
	"github.com/vrss-dev/vrss/rss"
)

// A host operator's rules on a four-queue TAP: web traffic goes to RSS
// context 1, which spreads it over queues 2 and 3 only; DNS answers go to
// queue 0; IPv6 from 2001:db8:bad::/48 is dropped. Everything else is
// steered by the guest's RSS configuration.
func Example() {
	var web, dns, bad flow.Match
	web.SetEtherType(0x0800, 0xffff) // tcp4 dst-port 80
	web.SetProto(6, 0xff)
	web.SetDstPort(80, 0xffff)
	dns.SetEtherType(0x0800, 0xffff) // udp4 src-port 53
	dns.SetProto(17, 0xff)
	dns.SetSrcPort(53, 0xffff)
	p := netip.MustParsePrefix("2001:db8:bad::/48")
	bad.SetEtherType(0x86dd, 0xffff) // ip6 src-ip 2001:db8:bad::/48
	bad.SetSrcIP(p.Addr(), flow.PrefixMask(p))

	s := flow.Set{
		Default: rss.Config{HashTypes: rss.AllHashTypes, Key: rss.DefaultKey, Table: rss.EqualTable(128, 4)},
		Contexts: []flow.Context{{ID: 1, Config: rss.Config{
			HashTypes: rss.HashTCPv4 | rss.HashIPv4, Key: rss.DefaultKey, Table: []uint16{2, 3}}}},
		Groups: []flow.Group{{ID: 1, Host: true}},
		Rules: []flow.Rule{
			{ID: 1, Group: 1, Match: web, Action: flow.Action{Kind: flow.ActionContext, Context: 1}},
			{ID: 2, Group: 1, Match: dns, Action: flow.Action{Kind: flow.ActionQueue, Queue: 0}},
			{ID: 3, Group: 1, Match: bad, Action: flow.Action{Kind: flow.ActionDrop}},
		},
	}
	e, err := flow.NewEngine(s, flow.DefaultLimits(4, rss.DefaultLimits(4)))
	if err != nil {
		panic(err)
	}
	for _, r := range s.Rules {
		fmt.Printf("rule %d: %v → %v\n", r.ID, r.Match.String(), r.Action)
	}

	a, b := netip.MustParseAddr("66.9.149.187"), netip.MustParseAddr("161.142.100.80")
	frames := []struct {
		name string
		spec frame.Spec
	}{
		{"web", frame.Spec{Src: a, Dst: b, Proto: frame.ProtoTCP, SrcPort: 2794, DstPort: 80}},
		{"dns", frame.Spec{Src: b, Dst: a, Proto: frame.ProtoUDP, SrcPort: 53, DstPort: 2794}},
		{"bad", frame.Spec{Src: netip.MustParseAddr("2001:db8:bad::1"), Dst: netip.MustParseAddr("2001:db8::1"), Proto: frame.ProtoTCP}},
		{"ssh", frame.Spec{Src: a, Dst: b, Proto: frame.ProtoTCP, SrcPort: 2794, DstPort: 22}},
	}
	for _, f := range frames {
		v := e.Steer(frame.Build(f.spec))
		switch {
		case v.Drop:
			fmt.Printf("%s: dropped by rule %d\n", f.name, s.Rules[v.Rule].ID)
		case v.Rule < 0:
			fmt.Printf("%s: queue %d by RSS (%s hash %#08x)\n", f.name, v.Queue, v.Report, v.Hash)
		case v.Context != 0:
			fmt.Printf("%s: queue %d by rule %d through context %d (the context's %s hash %#08x)\n", f.name, v.Queue, s.Rules[v.Rule].ID, v.Context, v.Report, v.Hash)
		default:
			fmt.Printf("%s: queue %d by rule %d (the default configuration's %s hash %#08x)\n", f.name, v.Queue, s.Rules[v.Rule].ID, v.Report, v.Hash)
		}
	}
	// Output:
	// rule 1: ether-type 0x0800 proto 6 dst-port 80 → context 1
	// rule 2: ether-type 0x0800 proto 17 src-port 53 → queue 0
	// rule 3: ether-type 0x86dd src-ip 2001:db8:bad::/48 → drop
	// web: queue 2 by rule 1 through context 1 (the context's tcpv4 hash 0x63f8fe3c)
	// dns: queue 0 by rule 2 (the default configuration's udpv4 hash 0x435d2daa)
	// bad: dropped by rule 3
	// ssh: queue 1 by RSS (tcpv4 hash 0xe1e32b39)
}

// A rule's Match is a value and a mask over the frame's Key; Normalize adds
// the flags the named fields imply.
func ExampleMatch_Normalize() {
	var m flow.Match
	m.SetEtherType(0x0800, 0xffff)
	m.SetDstPort(80, 0xffff)
	if err := m.Normalize(); err != nil {
		panic(err)
	}
	fmt.Printf("%v: flags %#x/%#x, %d key words\n", m.String(), m.Value[flow.OffFlags], m.Mask[flow.OffFlags], m.Words())

	var noFamily flow.Match
	noFamily.SetDstPort(80, 0xffff)
	fmt.Println(noFamily.Normalize())
	// Output:
	// ether-type 0x0800 dst-port 80: flags 0x12/0x12, 2 key words
	// flow: IP and port fields need the EtherType fixed to IPv4 (0x0800) or IPv6 (0x86dd)
}

// A frame's key: the fields rules can name.
func ExampleKeyOf() {
	b := frame.Build(frame.Spec{VLANs: []uint16{0x8100}, Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"),
		Proto: frame.ProtoTCP, SrcPort: 1000, DstPort: 80, MoreFrags: true})
	k := flow.KeyOf(b)
	fmt.Printf("ether-type %#04x flags %#x proto %d tci %d tcp-flags %#x ports %d→%d\n",
		uint16(k[flow.OffEtherType])<<8|uint16(k[flow.OffEtherType+1]), k[flow.OffFlags], k[flow.OffProto],
		uint16(k[flow.OffTCI])<<8|uint16(k[flow.OffTCI+1]), k[flow.OffTCPFlags],
		uint16(k[flow.OffSrcPort])<<8|uint16(k[flow.OffSrcPort+1]), uint16(k[flow.OffDstPort])<<8|uint16(k[flow.OffDstPort+1]))
	// Output:
	// ether-type 0x0800 flags 0x7b proto 6 tci 100 tcp-flags 0x18 ports 1000→80
}
