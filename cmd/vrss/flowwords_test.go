package main

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/vrss-dev/vrss/flow"
)

func TestParseFlowWords(t *testing.T) {
	mac := func(s string) net.HardwareAddr { m, _ := net.ParseMAC(s); return m }
	ip := netip.MustParseAddr
	queue := func(q uint16) flow.Action { return flow.Action{Kind: flow.ActionQueue, Queue: q} }
	drop := flow.Action{Kind: flow.ActionDrop}
	// match builds the expected match with the setters, normalized.
	match := func(set func(m *flow.Match)) flow.Match {
		var m flow.Match
		set(&m)
		if err := m.Normalize(); err != nil {
			t.Fatal(err)
		}
		return m
	}
	tcp4 := func(m *flow.Match) { m.SetEtherType(0x0800, 0xffff); m.SetProto(6, 0xff) }
	for _, tc := range []struct {
		words     string
		match     func(m *flow.Match)
		action    flow.Action
		id, group uint32
		prio      uint8
		hasLoc    bool
		groupPrio int // -1: none
	}{
		{words: "flow-type tcp4 dst-port 5001 action 1", match: func(m *flow.Match) { tcp4(m); m.SetDstPort(5001, 0xffff) }, action: queue(1)},
		{words: "flow-type udp6 src-ip 2001:db8::1 dst-port 53 action drop", match: func(m *flow.Match) {
			m.SetEtherType(0x86dd, 0xffff)
			m.SetProto(17, 0xff)
			m.SetSrcIP(ip("2001:db8::1"), flow.PrefixMask(netip.MustParsePrefix("::/128")))
			m.SetDstPort(53, 0xffff)
		}, action: drop},
		// ethtool's drop, its m (bits set are ignored), loc.
		{words: "flow-type tcp4 src-ip 10.1.0.0 m 0.0.255.255 action -1 loc 7", match: func(m *flow.Match) {
			tcp4(m)
			m.SetSrcIP(ip("10.1.0.0"), ip("255.255.0.0"))
		}, action: drop, id: 7, hasLoc: true},
		// A prefix, a netmask, the same.
		{words: "flow-type ip4 dst-ip 192.0.2.0/24 action 3", match: func(m *flow.Match) {
			m.SetEtherType(0x0800, 0xffff)
			m.SetDstIP(ip("192.0.2.0"), ip("255.255.255.0"))
		}, action: queue(3)},
		{words: "flow-type ip4 dst-ip 192.0.2.0/255.255.255.0 action 3", match: func(m *flow.Match) {
			m.SetEtherType(0x0800, 0xffff)
			m.SetDstIP(ip("192.0.2.0"), ip("255.255.255.0"))
		}, action: queue(3)},
		// Port masks both ways, hex numbers, prio, group.
		{words: "flow-type udp4 dst-port 0x1000/0xf000 src-port 80 m 0xff00 action 0 prio 9 group 3 group-prio 2", match: func(m *flow.Match) {
			m.SetEtherType(0x0800, 0xffff)
			m.SetProto(17, 0xff)
			m.SetDstPort(0x1000, 0xf000)
			m.SetSrcPort(80, 0x00ff)
		}, action: queue(0), prio: 9, group: 3, groupPrio: 2},
		// ip4's protocol: l4proto (ethtool) or proto.
		{words: "flow-type ip4 l4proto 1 action 2", match: func(m *flow.Match) { m.SetEtherType(0x0800, 0xffff); m.SetProto(1, 0xff) }, action: queue(2)},
		{words: "flow-type ip6 proto 58 action 2", match: func(m *flow.Match) { m.SetEtherType(0x86dd, 0xffff); m.SetProto(58, 0xff) }, action: queue(2)},
		// ether: proto is the EtherType, src and dst MACs (ethtool's words).
		{words: "flow-type ether proto 0x0806 dst ff:ff:ff:ff:ff:ff action 0", match: func(m *flow.Match) {
			m.SetEtherType(0x0806, 0xffff)
			m.SetDstMAC(mac("ff:ff:ff:ff:ff:ff"), nil)
		}, action: queue(0)},
		{words: "flow-type ether src-mac 52:54:00:00:00:00/ff:ff:ff:00:00:00 vlan 100/0xfff action 1", match: func(m *flow.Match) {
			m.SetSrcMAC(mac("52:54:00:00:00:00"), mac("ff:ff:ff:00:00:00"))
			m.SetTCI(100, 0xfff)
		}, action: queue(1)},
		// Contexts: alone, or with ethtool's action 0.
		{words: "flow-type tcp4 dst-port 80 context 2", match: func(m *flow.Match) { tcp4(m); m.SetDstPort(80, 0xffff) }, action: flow.Action{Kind: flow.ActionContext, Context: 2}},
		{words: "flow-type tcp4 dst-port 80 action 0 context 2", match: func(m *flow.Match) { tcp4(m); m.SetDstPort(80, 0xffff) }, action: flow.Action{Kind: flow.ActionContext, Context: 2}},
		// TCP flags: SYN without ACK.
		{words: "flow-type tcp6 tcp-flags 0x02/0x12 action drop", match: func(m *flow.Match) {
			m.SetEtherType(0x86dd, 0xffff)
			m.SetProto(6, 0xff)
			m.SetTCPFlags(0x02, 0x12)
		}, action: drop},
		// No flow type: the words flow.Match.String writes, in any order.
		{words: "dst-port 5001 ether-type 0x0800 proto 6 action 1", match: func(m *flow.Match) { tcp4(m); m.SetDstPort(5001, 0xffff) }, action: queue(1)},
		{words: "src-ip 10.0.0.0/8 ether-type 0x0800 action 1", match: func(m *flow.Match) {
			m.SetEtherType(0x0800, 0xffff)
			m.SetSrcIP(ip("10.0.0.0"), ip("255.0.0.0"))
		}, action: queue(1)},
		{words: "ether-type 0x8100/0xff00 action 1", match: func(m *flow.Match) { m.SetEtherType(0x8100, 0xff00) }, action: queue(1)},
		{words: "action 1", match: func(m *flow.Match) {}, action: queue(1)},
	} {
		t.Run(tc.words, func(t *testing.T) {
			got, err := parseFlowWords(strings.Fields(tc.words))
			if err != nil {
				t.Fatal(err)
			}
			want := match(tc.match)
			if got.Rule.Match != want {
				t.Errorf("match %s, want %s", got.Rule.Match.String(), want.String())
			}
			if got.Rule.Action != tc.action || got.Rule.ID != tc.id || got.Rule.Group != tc.group || got.Rule.Priority != tc.prio || got.HasLoc != tc.hasLoc {
				t.Errorf("rule %+v (loc given %v), want action %v id %d group %d prio %d", got.Rule, got.HasLoc, tc.action, tc.id, tc.group, tc.prio)
			}
			if (got.GroupPrio == nil) != (tc.groupPrio == 0) || got.GroupPrio != nil && int(*got.GroupPrio) != tc.groupPrio {
				t.Errorf("group-prio %v, want %d", got.GroupPrio, tc.groupPrio)
			}
		})
	}
}

func TestParseFlowWordsRefuses(t *testing.T) {
	for _, tc := range []struct{ words, want string }{
		{"", "an action is required"},
		{"flow-type tcp4 dst-port 80", "an action is required"},
		{"flow-type sctp4 action 1", `flow-type "sctp4"`},
		{"flow-type tcp4 tos 4 action 1", `unknown word "tos"`},
		{"flow-type tcp4 dst-port", "dst-port needs a value"},
		{"flow-type tcp4 dst-port 80 dst-port 81 action 1", "dst-port given twice"},
		{"flow-type tcp4 dst-port 70000 action 1", `dst-port "70000": want a number from 0 to 65535`},
		{"flow-type tcp4 dst-port 80/0x1ffff action 1", "dst-port mask"},
		{"flow-type tcp4 dst-port 80/0xff m 0xff action 1", "not both"},
		{"flow-type tcp4 m 0xff action 1", "m MASK must follow"},
		{"flow-type tcp4 dst-port 80 m", "m needs a mask"},
		{"flow-type tcp4 proto 17 action 1", "fixes the protocol"},
		{"flow-type tcp4 ether-type 0x86dd action 1", "fixes it"},
		{"flow-type ip4 dst-port 80 action 1", "has no ports"},
		{"flow-type udp4 tcp-flags 2 action 1", "not TCP"},
		{"flow-type ether src-ip 10.0.0.1 action 1", "no IP fields"},
		{"flow-type ether l4proto 6 action 1", "no IP protocol"},
		{"flow-type ether proto 0x800 ether-type 0x800 action 1", "name the same field"},
		{"flow-type tcp4 src 52:54:00:00:00:01 action 1", "ethtool's word"},
		{"flow-type tcp4 src-ip 2001:db8::1 action 1", "an IPv6 address, and the rule is for IPv4"},
		{"flow-type tcp6 dst-ip 10.0.0.1 action 1", "an IPv4 address, and the rule is for IPv6"},
		{"flow-type tcp4 src-ip 10.0.0.1/33 action 1", "prefix of 33 bits"},
		{"flow-type tcp4 src-ip 10.0.0.1/ffff:: action 1", "same family"},
		{"flow-type tcp4 src-ip 10.0.0.1 m ::1 action 1", "same family"},
		{"flow-type tcp4 src-ip fe80::1%eth0 action 1", "want an IPv4 or IPv6 address"},
		{"src-ip 10.0.0.1 action 1", "need flow-type"},
		{"flow-type ether dst-mac 52:54:00 action 1", "want a MAC address"},
		{"flow-type ether dst-mac 00:00:00:00:fe:80:00:00:00:00:00:00:00:00:00:00:00:00:00:01 action 1", "want a MAC address"},
		{"flow-type tcp4 action -2", "special actions"},
		{"flow-type tcp4 action x", `action "x"`},
		{"flow-type tcp4 action 65536", `action "65536"`},
		{"flow-type tcp4 context 0", "context 0"},
		{"flow-type tcp4 context 9", "context 9"},
		{"flow-type tcp4 context 1 action 3", "no queue offset"},
		{"flow-type tcp4 action 1 prio 256", `prio "256"`},
		{"flow-type tcp4 action 1 loc -1", `loc "-1"`},
		{"flow-type tcp4 action 1 group-prio 65536", "group-prio"},
		// What Normalize refuses: an IP protocol without a family, a flag
		// required clear that a field needs.
		{"proto 6 action 1", "EtherType fixed"},
		{"flow-type tcp4 dst-port 80 flags 0/0x10 action 1", "requires clear"},
	} {
		_, err := parseFlowWords(strings.Fields(tc.words))
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: %v, want an error mentioning %q", tc.words, err, tc.want)
		}
	}
}

// FuzzFlowWords: the parser never panics on any words; what it accepts is
// a normalized match and a valid action; and the match flow list prints
// (flow.Match.String) reads back as the same match.
func FuzzFlowWords(f *testing.F) {
	for _, s := range []string{
		"flow-type tcp4 src-ip 10.1.0.0 m 0.0.255.255 dst-port 80 action -1 loc 7",
		"flow-type udp6 src-ip 2001:db8::/32 dst-port 0x1000/0xf000 action 3 prio 4",
		"flow-type ether proto 0x0806 dst ff:ff:ff:ff:ff:ff vlan 5/0xfff action 0",
		"flow-type tcp4 tcp-flags 0x02/0x12 context 2 group 1 group-prio 3",
		"flow-type ip6 l4proto 58 src-mac 52:54:00:00:00:00/ff:ff:ff:00:00:00 action drop",
		"ether-type 0x0800 proto 6 src-ip 1.2.3.4/255.0.255.0 flags 0x20/0x20 action 1",
		"flow-type tcp4 dst-port 80 m",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		w, err := parseFlowWords(strings.Fields(s))
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("a multi-line error: %q", err)
			}
			return
		}
		m := w.Rule.Match
		if err := m.Normalize(); err != nil || m != w.Rule.Match {
			t.Fatalf("%q: the match is not normalized (%v)", s, err)
		}
		switch a := w.Rule.Action; a.Kind {
		case flow.ActionDrop, flow.ActionQueue:
		case flow.ActionContext:
			if a.Context < 1 || a.Context > flow.MaxContexts {
				t.Fatalf("%q: %v", s, a)
			}
		default:
			t.Fatalf("%q: action %v", s, a)
		}
		printed := m.String()
		if printed == "any" {
			return
		}
		back, err := parseFlowWords(append(strings.Fields(printed), "action", "0"))
		if err != nil {
			t.Fatalf("%q: the match printed as %q does not read back: %v", s, printed, err)
		}
		if back.Rule.Match != m {
			t.Fatalf("%q: printed as %q, read back as %q", s, printed, back.Rule.Match.String())
		}
	})
}
