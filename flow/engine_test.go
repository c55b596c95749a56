package flow_test

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"net"
	"net/netip"
	"sort"
	"testing"

	"github.com/vrss-dev/vrss/flow"
	"github.com/vrss-dev/vrss/internal/frame"
	"github.com/vrss-dev/vrss/internal/proto"
	"github.com/vrss-dev/vrss/rss"
)

func newEngine(t testing.TB, s flow.Set) *flow.Engine {
	t.Helper()
	e, err := flow.NewEngine(s, flow.DefaultLimits(16, rss.DefaultLimits(16)))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// rssVerdict is the verdict of a frame no rule matched: the default
// configuration's result.
func rssVerdict(t testing.TB, c rss.Config, b []byte) flow.Verdict {
	r := mustRSS(c).Steer(b)
	return flow.Verdict{Queue: r.Queue, Hash: r.Hash, Report: r.Report, Rule: -1}
}

// Without rules, the engine is package rss's, frame by frame.
func TestSteerWithoutRules(t *testing.T) {
	def := rss.Config{HashTypes: rss.AllHashTypes, Key: rss.DefaultKey, Table: rss.EqualTable(128, 16), UnclassifiedQueue: 9}
	ctx := []flow.Context{{ID: 1, Config: rss.Config{HashTypes: rss.HashIPv4, Key: rss.DefaultKey, Table: []uint16{1}}}}
	engines := []*flow.Engine{
		newEngine(t, flow.Set{Default: def}),
		// Contexts and groups without rules change nothing either.
		newEngine(t, flow.Set{Default: def, Contexts: ctx, Groups: []flow.Group{{ID: 1, Host: true}}}),
	}
	want := mustRSS(def)
	r := rand.New(rand.NewPCG(11, 12))
	for i := 0; i < 20_000; i++ {
		b := exact(frame.Random(r))
		w := want.Steer(b)
		for _, e := range engines {
			if got := e.Steer(b); got != (flow.Verdict{Queue: w.Queue, Hash: w.Hash, Report: w.Report, Rule: -1}) {
				t.Fatalf("frame %x: %+v, want rss's %+v", b, got, w)
			}
		}
	}
}

func TestSteerActions(t *testing.T) {
	def := rss.Config{HashTypes: rss.AllHashTypes, Key: rss.DefaultKey, Table: rss.EqualTable(128, 4), UnclassifiedQueue: 1}
	ctx := rss.Config{HashTypes: rss.HashIPv4 | rss.HashIPv6, Key: rss.DefaultKey[:20], Table: []uint16{8, 9, 10, 11}, UnclassifiedQueue: 12}
	s := flow.Set{
		Default:  def,
		Contexts: []flow.Context{{ID: 2, Config: ctx}},
		Groups:   []flow.Group{{ID: 1, Host: true}, {ID: 2}},
		Rules: []flow.Rule{
			{ID: 1, Group: 1, Match: match(etype(0x0800), protoIs(6), dport(80, 0xffff)), Action: flow.Action{Kind: flow.ActionContext, Context: 2}},
			{ID: 2, Group: 2, Match: match(etype(0x0800), protoIs(17), dport(53, 0xffff)), Action: flow.Action{Kind: flow.ActionQueue, Queue: 15}},
			{ID: 3, Group: 2, Match: match(etype(0x86dd)), Action: flow.Action{Kind: flow.ActionDrop}},
		},
	}
	e := newEngine(t, s)
	s4, d4 := ip("192.0.2.1"), ip("198.51.100.2")
	web := frame.Build(frame.Spec{Src: s4, Dst: d4, Proto: frame.ProtoTCP, SrcPort: 40000, DstPort: 80})
	dns := frame.Build(frame.Spec{Src: s4, Dst: d4, Proto: frame.ProtoUDP, SrcPort: 40000, DstPort: 53})
	v6 := frame.Build(frame.Spec{Src: ip("2001:db8::1"), Dst: ip("2001:db8::2"), Proto: frame.ProtoUDP, SrcPort: 40000, DstPort: 53})
	icmp := frame.Build(frame.Spec{Src: s4, Dst: d4, Proto: frame.ProtoICMP})

	// A context rule: the context's queue, hash and report.
	c := mustRSS(ctx).Steer(web)
	if c.Report != rss.ReportIPv4 {
		t.Fatalf("context result %+v", c)
	}
	if got := e.Steer(web); got != (flow.Verdict{Queue: c.Queue, Hash: c.Hash, Report: c.Report, Rule: 0, Context: 2}) {
		t.Errorf("context rule: %+v, want the context's %+v", got, c)
	}
	// A queue rule: its queue, with the default configuration's hash
	// and report.
	d := mustRSS(def).Steer(dns)
	if d.Report != rss.ReportUDPv4 || d.Queue == 15 {
		t.Fatalf("default result %+v", d)
	}
	if got := e.Steer(dns); got != (flow.Verdict{Queue: 15, Hash: d.Hash, Report: d.Report, Rule: 1}) {
		t.Errorf("queue rule: %+v, want queue 15 with the default's hash %+v", got, d)
	}
	// A drop rule: nothing else.
	if got := e.Steer(v6); got != (flow.Verdict{Drop: true, Rule: 2}) {
		t.Errorf("drop rule: %+v", got)
	}
	// No rule: the default configuration.
	if got, want := e.Steer(icmp), rssVerdict(t, def, icmp); got != want {
		t.Errorf("no rule: %+v, want %+v", got, want)
	}
	// A queue rule matching a frame RSS leaves unclassified: the rule's
	// queue, no hash.
	s.Rules = append(s.Rules, flow.Rule{ID: 4, Group: 2, Match: match(etype(0x0806)), Action: flow.Action{Kind: flow.ActionQueue, Queue: 2}})
	e = newEngine(t, s)
	arp := append([]byte(nil), icmp...)
	arp[12], arp[13] = 0x08, 0x06
	if got := e.Steer(arp); got != (flow.Verdict{Queue: 2, Rule: 3}) {
		t.Errorf("queue rule on a non-IP frame: %+v", got)
	}
	// The engine keeps its own copy of the set.
	s.Rules[1].Action.Queue = 3
	s.Default.Table[0] = 3
	if got := e.Steer(dns); got.Queue != 15 {
		t.Errorf("engine changed with the caller's set: %+v", got)
	}
	if got := e.Set(); got.Rules[1].Action.Queue != 15 || got.Default.Table[0] != 0 {
		t.Errorf("Set() = %+v", got)
	}
	got := e.Set()
	got.Rules[1].Action.Queue = 4
	if e.Steer(dns).Queue != 15 {
		t.Error("changing Set()'s result changed the engine")
	}
}

// The first rule in Order that matches decides, whatever rules overlap it.
func TestSteerFirstMatchWins(t *testing.T) {
	def := rssConfig(8)
	exact80 := match(etype(0x0800), protoIs(6), dport(80, 0xffff))
	low := match(etype(0x0800), dport(0, 0xff00)) // ports 0-255, any protocol
	tcp := match(etype(0x0800), protoIs(6))
	web := frame.Build(frame.Spec{Src: ip("10.0.0.1"), Dst: ip("10.0.0.2"), Proto: frame.ProtoTCP, SrcPort: 999, DstPort: 80})
	q := func(n uint16) flow.Action { return flow.Action{Kind: flow.ActionQueue, Queue: n} }
	cases := []struct {
		name   string
		groups []flow.Group
		rules  []flow.Rule
		want   uint16 // the queue
	}{
		{"equal priorities: lower rule id", []flow.Group{{ID: 1}}, []flow.Rule{
			{ID: 5, Group: 1, Match: exact80, Action: q(1)}, {ID: 4, Group: 1, Match: low, Action: q(2)}}, 2},
		{"equal priorities, ids swapped", []flow.Group{{ID: 1}}, []flow.Rule{
			{ID: 4, Group: 1, Match: exact80, Action: q(1)}, {ID: 5, Group: 1, Match: low, Action: q(2)}}, 1},
		{"higher rule priority first", []flow.Group{{ID: 1}}, []flow.Rule{
			{ID: 4, Group: 1, Match: low, Action: q(2)}, {ID: 5, Group: 1, Priority: 1, Match: exact80, Action: q(1)}}, 1},
		{"exact rule not more specific than a masked one", []flow.Group{{ID: 1}}, []flow.Rule{
			{ID: 1, Group: 1, Match: tcp, Action: q(3)}, {ID: 2, Group: 1, Match: exact80, Action: q(1)}}, 3},
		{"higher group priority first", []flow.Group{{ID: 1, Priority: 1}, {ID: 2, Priority: 2}}, []flow.Rule{
			{ID: 1, Group: 1, Priority: 255, Match: exact80, Action: q(1)}, {ID: 2, Group: 2, Match: low, Action: q(2)}}, 2},
		{"equal group priorities: lower group id", []flow.Group{{ID: 2, Priority: 3}, {ID: 1, Priority: 3}}, []flow.Rule{
			{ID: 1, Group: 2, Priority: 9, Match: exact80, Action: q(1)}, {ID: 2, Group: 1, Match: low, Action: q(2)}}, 2},
		{"host group before any guest group", []flow.Group{{ID: 1, Priority: 65535}, {ID: 2, Host: true}}, []flow.Rule{
			{ID: 1, Group: 1, Priority: 255, Match: exact80, Action: q(1)}, {ID: 2, Group: 2, Match: low, Action: q(2)}}, 2},
		{"a drop rule first", []flow.Group{{ID: 1}}, []flow.Rule{
			{ID: 1, Group: 1, Match: exact80, Action: flow.Action{Kind: flow.ActionDrop}}, {ID: 2, Group: 1, Match: low, Action: q(2)}}, 0xffff},
		{"no match in the first group: the next", []flow.Group{{ID: 1, Priority: 2}, {ID: 2}}, []flow.Rule{
			{ID: 1, Group: 1, Match: match(etype(0x86dd)), Action: q(1)}, {ID: 2, Group: 2, Match: tcp, Action: q(3)}}, 3},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEngine(t, flow.Set{Default: def, Groups: c.groups, Rules: c.rules})
			v := e.Steer(web)
			if c.want == 0xffff {
				if !v.Drop {
					t.Errorf("%+v, want drop", v)
				}
				return
			}
			if v.Drop || v.Queue != c.want {
				t.Errorf("%+v, want queue %d", v, c.want)
			}
		})
	}
}

// A fragment other than the first has no ports: port rules never catch it,
// protocol rules do. A first fragment shows its ports.
func TestSteerFragments(t *testing.T) {
	def := rssConfig(8)
	s := flow.Set{
		Default: def,
		Groups:  []flow.Group{{ID: 1}},
		Rules: []flow.Rule{
			{ID: 1, Group: 1, Priority: 2, Match: match(etype(0x0800), protoIs(17), dport(4789, 0xffff)), Action: flow.Action{Kind: flow.ActionQueue, Queue: 7}},
			{ID: 2, Group: 1, Priority: 2, Match: match(etype(0x86dd), dport(4789, 0xffff)), Action: flow.Action{Kind: flow.ActionQueue, Queue: 6}},
			{ID: 3, Group: 1, Priority: 1, Match: match(etype(0x86dd), protoIs(58)), Action: flow.Action{Kind: flow.ActionQueue, Queue: 5}},
		},
	}
	e := newEngine(t, s)
	vx4 := frame.Spec{Src: ip("10.0.0.1"), Dst: ip("10.0.0.2"), Proto: frame.ProtoUDP, SrcPort: 1, DstPort: 4789, Payload: 20}
	vx6 := frame.Spec{Src: ip("2001:db8::1"), Dst: ip("2001:db8::2"), Proto: frame.ProtoUDP, SrcPort: 1, DstPort: 4789, Payload: 20}
	f4 := func(off uint16, more bool) []byte {
		s := vx4
		s.FragOffset, s.MoreFrags = off, more
		return frame.Build(s)
	}
	f6 := func(s frame.Spec, ext ...frame.ExtHeader) []byte { s.Ext = ext; return frame.Build(s) }
	dst := frame.ExtHeader{Type: proto.IPProtoDstOpts, Data: make([]byte, 6)}
	icmp6 := frame.Spec{Src: vx6.Src, Dst: vx6.Dst, Proto: 58, Payload: 20}
	cases := []struct {
		name string
		b    []byte
		rule int // -1: RSS
	}{
		{"ipv4 whole", frame.Build(vx4), 0},
		{"ipv4 first fragment", f4(0, true), 0},
		{"ipv4 middle fragment", f4(100, true), -1},
		{"ipv4 last fragment", f4(100, false), -1},
		{"ipv6 first fragment", f6(vx6, frame.FragmentHeader(0, true), dst), 1},
		{"ipv6 later fragment", f6(vx6, frame.FragmentHeader(3, true)), -1},
		{"ipv6 first fragment, chain cut", f6(vx6, frame.FragmentHeader(0, true), dst)[:54+8+4], -1},
		{"icmpv6 later fragment: protocol rule", f6(icmp6, frame.FragmentHeader(3, false)), 2},
		{"icmpv6 later fragment behind dstopts: next header is 60", f6(icmp6, frame.FragmentHeader(3, false), dst), -1},
		{"icmpv6 first fragment behind dstopts", f6(icmp6, frame.FragmentHeader(0, true), dst), 2},
	}
	for _, c := range cases {
		b := exact(c.b)
		v := e.Steer(b)
		want := rssVerdict(t, def, b)
		if c.rule >= 0 {
			want.Queue, want.Rule = s.Rules[c.rule].Action.Queue, c.rule
		}
		if v != want {
			t.Errorf("%s: %+v, want %+v", c.name, v, want)
		}
		// Whatever a rule does, RSS hashed every fragment on addresses.
		if h := rss.ParseHeaders(b); h.Fragment && v.Report != rss.ReportIPv4 && v.Report != rss.ReportIPv6Ex {
			t.Errorf("%s: fragment reported %s", c.name, v.Report)
		}
	}
}

// Truncated headers give no IP fields: no IP or port rule matches them, an
// Ethernet rule still does. Frames shorter than an Ethernet header match
// no rule, not even one that names no field.
func TestSteerTruncatedAndShort(t *testing.T) {
	def := rss.Config{HashTypes: rss.AllHashTypes, Key: rss.DefaultKey, Table: rss.EqualTable(128, 4), UnclassifiedQueue: 3}
	tcp := frame.Build(frame.Spec{VLANs: []uint16{0x8100}, Src: ip("10.0.0.1"), Dst: ip("10.0.0.2"), Proto: frame.ProtoTCP, SrcPort: 1, DstPort: 80})
	portRule := flow.Rule{ID: 1, Group: 1, Priority: 9, Match: match(etype(0x0800), dport(80, 0xffff)), Action: flow.Action{Kind: flow.ActionQueue, Queue: 1}}
	protoRule := flow.Rule{ID: 2, Group: 1, Priority: 8, Match: match(etype(0x0800), protoIs(6)), Action: flow.Action{Kind: flow.ActionQueue, Queue: 2}}
	vlanRule := flow.Rule{ID: 3, Group: 1, Priority: 7, Match: match(tci(100, 0x0fff)), Action: flow.Action{Kind: flow.ActionQueue, Queue: 0}}
	anyRule := flow.Rule{ID: 4, Group: 1, Match: flow.Match{}, Action: flow.Action{Kind: flow.ActionDrop}}
	e := newEngine(t, flow.Set{Default: def, Groups: []flow.Group{{ID: 1}}, Rules: []flow.Rule{portRule, protoRule, vlanRule, anyRule}})
	for n := 0; n <= len(tcp); n++ {
		b := exact(tcp[:n])
		v := e.Steer(b)
		var want flow.Verdict
		switch {
		case n == len(tcp):
			want = rssVerdict(t, def, b)
			want.Queue, want.Rule = 1, 0
		case n >= 18+20+4: // the ports are there, the TCP header is not whole
			want = flow.Verdict{Queue: 0, Rule: 2} // RSS: unclassified
		case n >= 18:
			want = flow.Verdict{Queue: 0, Rule: 2} // the tag is whole
		case n >= 14:
			want = flow.Verdict{Drop: true, Rule: 3}
		default:
			want = flow.Verdict{Queue: 3, Rule: -1}
		}
		if v != want {
			t.Errorf("cut at %d: %+v, want %+v", n, v, want)
		}
	}
}

// The oracle: random sets of rules, drawn from a small pool of shapes, and
// random frames built to hit their values; the engine must agree with a
// plain re-implementation that reads the frame's headers (rss.ParseHeaders)
// field by field, sorts the rules as documented and takes the first match.

// shape is a kind of rule: which fields it names, under which masks. The
// values vary; the masks do not, so a set has at most len(shapes) masks.
type shape struct {
	name  string
	build func(r *rand.Rand) (flow.Match, func(b []byte, h rss.Headers) bool)
}

var (
	macPool  = []net.HardwareAddr{{0x52, 0x54, 0, 0x12, 0x34, 0x56}, {0x02, 0, 0, 0, 0, 1}}
	tciPool  = []uint16{100, 200, 0x2064}
	portPool = []uint16{80, 443, 53, 1000, 0x1234}
	protos   = []uint8{6, 17, 1, 58}
	v4Pool   = []netip.Addr{ip("10.0.0.1"), ip("10.1.2.3"), ip("192.168.1.1"), ip("11.0.0.1")}
	v6Pool   = []netip.Addr{ip("2001:db8::1"), ip("2001:db9::1"), ip("fe80::1"), ip("2001:db8:1::5")}
	flagPool = []uint8{0x02, 0x12, 0x10, 0x18}
)

func pick[T any](r *rand.Rand, s []T) T { return s[r.IntN(len(s))] }

func famOK(h rss.Headers, fam uint8) bool { return h.Family == fam }

func inPrefix(b []byte, off int, p netip.Prefix) bool {
	a, _ := netip.AddrFromSlice(b[off : off+p.Addr().BitLen()/8])
	return p.Contains(a)
}

var shapes = []shape{
	{"any", func(r *rand.Rand) (flow.Match, func([]byte, rss.Headers) bool) {
		return flow.Match{}, func([]byte, rss.Headers) bool { return true }
	}},
	{"ether-type", func(r *rand.Rand) (flow.Match, func([]byte, rss.Headers) bool) {
		et := pick(r, []uint16{0x0800, 0x86dd, 0x0806, 0x8100})
		return match(etype(et)), func(b []byte, h rss.Headers) bool { return h.EtherType == et }
	}},
	{"dst-mac", func(r *rand.Rand) (flow.Match, func([]byte, rss.Headers) bool) {
		mac := pick(r, macPool)
		return match(func(m *flow.Match) { m.SetDstMAC(mac, nil) }), func(b []byte, h rss.Headers) bool { return bytes.Equal(b[:6], mac) }
	}},
	{"vlan id", func(r *rand.Rand) (flow.Match, func([]byte, rss.Headers) bool) {
		v := pick(r, tciPool) & 0x0fff
		return match(tci(v, 0x0fff)), func(b []byte, h rss.Headers) bool { return h.Tagged && h.TCI&0x0fff == v }
	}},
	{"ip4 proto", func(r *rand.Rand) (flow.Match, func([]byte, rss.Headers) bool) {
		p := pick(r, protos)
		return match(etype(0x0800), protoIs(p)), func(b []byte, h rss.Headers) bool { return famOK(h, 4) && h.HasProto && h.Proto == p }
	}},
	{"ip4 proto dst-port", func(r *rand.Rand) (flow.Match, func([]byte, rss.Headers) bool) {
		p, port := pick(r, protos[:2]), pick(r, portPool)
		return match(etype(0x0800), protoIs(p), dport(port, 0xffff)), func(b []byte, h rss.Headers) bool {
			return famOK(h, 4) && h.HasProto && h.Proto == p && h.Ports != 0 && binary.BigEndian.Uint16(b[h.Ports+2:]) == port
		}
	}},
	{"ip4 dst-port/0xff00", func(r *rand.Rand) (flow.Match, func([]byte, rss.Headers) bool) {
		port := pick(r, portPool) & 0xff00
		return match(etype(0x0800), dport(port, 0xff00)), func(b []byte, h rss.Headers) bool {
			return famOK(h, 4) && h.Ports != 0 && binary.BigEndian.Uint16(b[h.Ports+2:])&0xff00 == port
		}
	}},
	{"ip6 proto src-port", func(r *rand.Rand) (flow.Match, func([]byte, rss.Headers) bool) {
		p, port := pick(r, protos[:2]), pick(r, portPool)
		return match(etype(0x86dd), protoIs(p), sport(port, 0xffff)), func(b []byte, h rss.Headers) bool {
			return famOK(h, 6) && h.HasProto && h.Proto == p && h.Ports != 0 && binary.BigEndian.Uint16(b[h.Ports:]) == port
		}
	}},
	{"ip4 src-ip/8", func(r *rand.Rand) (flow.Match, func([]byte, rss.Headers) bool) {
		p, _ := pick(r, v4Pool).Prefix(8)
		return match(etype(0x0800), srcNet(p.String())), func(b []byte, h rss.Headers) bool { return famOK(h, 4) && inPrefix(b, h.Src, p) }
	}},
	{"ip6 dst-ip/32", func(r *rand.Rand) (flow.Match, func([]byte, rss.Headers) bool) {
		p, _ := pick(r, v6Pool).Prefix(32)
		return match(etype(0x86dd), dstNet(p.String())), func(b []byte, h rss.Headers) bool { return famOK(h, 6) && inPrefix(b, h.Dst, p) }
	}},
	{"ip4 tcp-flags", func(r *rand.Rand) (flow.Match, func([]byte, rss.Headers) bool) {
		f := pick(r, flagPool) & 0x12
		return match(etype(0x0800), tcpFlags(f, 0x12)), func(b []byte, h rss.Headers) bool {
			return famOK(h, 4) && h.Ports != 0 && h.Transport == 6 && b[h.Ports+13]&0x12 == f
		}
	}},
	{"ip6 fragment flag", func(r *rand.Rand) (flow.Match, func([]byte, rss.Headers) bool) {
		frag := r.IntN(2) == 0
		var v byte
		if frag {
			v = flow.FlagFragment
		}
		return match(etype(0x86dd), flagsIs(v, flow.FlagFragment)), func(b []byte, h rss.Headers) bool {
			return h.EtherType == 0x86dd && h.Fragment == frag
		}
	}},
	{"ip4 5-tuple-ish", func(r *rand.Rand) (flow.Match, func([]byte, rss.Headers) bool) {
		p, port := pick(r, protos[:2]), pick(r, portPool)
		src := pick(r, v4Pool)
		return match(etype(0x0800), protoIs(p), srcNet(src.String()+"/32"), dport(port, 0xffff)), func(b []byte, h rss.Headers) bool {
			return famOK(h, 4) && h.HasProto && h.Proto == p && bytes.Equal(b[h.Src:h.Src+4], src.AsSlice()) &&
				h.Ports != 0 && binary.BigEndian.Uint16(b[h.Ports+2:]) == port
		}
	}},
	{"vlan ip6 proto", func(r *rand.Rand) (flow.Match, func([]byte, rss.Headers) bool) {
		v, p := pick(r, tciPool), pick(r, protos)
		return match(tci(v, 0xffff), etype(0x86dd), protoIs(p)), func(b []byte, h rss.Headers) bool {
			return h.Tagged && h.TCI == v && famOK(h, 6) && h.HasProto && h.Proto == p
		}
	}},
}

type oracleRule struct {
	matches func(b []byte, h rss.Headers) bool
	shape   int
}

func randomSet(r *rand.Rand) (flow.Set, []oracleRule) {
	cfg := func() rss.Config {
		key := make([]byte, pick(r, []int{40, 13, 52}))
		for i := range key {
			key[i] = byte(r.Uint32())
		}
		table := make([]uint16, 1<<r.IntN(9))
		for i := range table {
			table[i] = uint16(r.IntN(16))
		}
		types := rss.HashType(r.Uint32()) & rss.AllHashTypes
		if r.IntN(2) == 0 {
			types = rss.AllHashTypes
		}
		return rss.Config{HashTypes: types, Key: key, Table: table, UnclassifiedQueue: uint16(r.IntN(16))}
	}
	s := flow.Set{Default: cfg()}
	for _, id := range r.Perm(flow.MaxContexts)[:r.IntN(3)] {
		s.Contexts = append(s.Contexts, flow.Context{ID: uint16(id + 1), Config: cfg()})
	}
	for _, id := range r.Perm(10)[:1+r.IntN(4)] {
		s.Groups = append(s.Groups, flow.Group{ID: uint32(id), Priority: pick(r, []uint16{0, 1, 2, 65535}), Host: r.IntN(3) == 0})
	}
	var oracle []oracleRule
	for _, id := range r.Perm(50)[:r.IntN(13)] {
		g := pick(r, s.Groups)
		sh := r.IntN(len(shapes))
		m, f := shapes[sh].build(r)
		a := flow.Action{Kind: pick(r, []flow.ActionKind{flow.ActionDrop, flow.ActionQueue, flow.ActionQueue, flow.ActionContext})}
		switch {
		case a.Kind == flow.ActionContext && g.Host && len(s.Contexts) > 0:
			a.Context = pick(r, s.Contexts).ID
		case a.Kind != flow.ActionDrop:
			a = flow.Action{Kind: flow.ActionQueue, Queue: uint16(r.IntN(16))}
		}
		s.Rules = append(s.Rules, flow.Rule{ID: uint32(id), Group: g.ID, Priority: pick(r, []uint8{0, 1, 255}), Match: m, Action: a})
		oracle = append(oracle, oracleRule{f, sh})
	}
	return s, oracle
}

// oracleFrame builds a frame whose fields come from the pools the rules
// draw their values from, sometimes fragmented, tagged, cut or garbled.
func oracleFrame(r *rand.Rand) []byte {
	if r.IntN(8) == 0 {
		return frame.Random(r)
	}
	s := frame.Spec{Proto: pick(r, protos), SrcPort: pick(r, portPool), DstPort: pick(r, portPool), Payload: r.IntN(30)}
	if s.Proto == 58 && r.IntN(2) == 0 {
		s.Proto = 6
	}
	for n := r.IntN(4); n > 0 && r.IntN(2) == 0; n-- {
		s.VLANs = append(s.VLANs, pick(r, []uint16{0x8100, 0x88a8}))
	}
	if r.IntN(2) == 0 {
		s.Src, s.Dst = pick(r, v4Pool), pick(r, v4Pool)
		if r.IntN(4) == 0 {
			s.FragOffset, s.MoreFrags = uint16(r.IntN(2)*r.IntN(100)), r.IntN(2) == 0
		}
		if r.IntN(5) == 0 {
			s.IPv4Opts = make([]byte, 4*r.IntN(3))
		}
	} else {
		s.Src, s.Dst = pick(r, v6Pool), pick(r, v6Pool)
		for n := r.IntN(4); n > 0; n-- {
			switch r.IntN(4) {
			case 0:
				s.Ext = append(s.Ext, frame.FragmentHeader(uint16(r.IntN(2)*r.IntN(100)), r.IntN(2) == 0))
			case 1:
				s.Ext = append(s.Ext, frame.ExtHeader{Type: proto.IPProtoHopOpts, Data: make([]byte, 6)})
			case 2:
				s.Ext = append(s.Ext, frame.ExtHeader{Type: proto.IPProtoAH, Data: make([]byte, 10)})
			default:
				s.Ext = append(s.Ext, frame.ExtHeader{Type: proto.IPProtoDstOpts, Data: make([]byte, 14)})
			}
		}
	}
	b := frame.Build(s)
	copy(b, pick(r, macPool))
	if len(s.VLANs) > 0 {
		binary.BigEndian.PutUint16(b[14:], pick(r, tciPool))
	}
	if h := rss.ParseHeaders(b); h.Ports != 0 && h.Transport == 6 {
		b[h.Ports+13] = pick(r, flagPool)
	}
	if r.IntN(6) == 0 {
		b = b[:r.IntN(len(b)+1)]
	}
	return b
}

func TestSteerOracle(t *testing.T) {
	r := rand.New(rand.NewPCG(2026, 11))
	sets, frames := 600, 300
	if testing.Short() {
		sets = 100
	}
	l := flow.DefaultLimits(16, rss.Limits{MaxKeySize: 255, MaxTableLen: 1024, HashTypes: rss.AllHashTypes})
	hits := make([]int, len(shapes))
	actions := map[string]int{}
	for i := 0; i < sets; i++ {
		s, oracle := randomSet(r)
		e, err := flow.NewEngine(s, l)
		if err != nil {
			t.Fatalf("set %d: %v", i, err)
		}
		// The documented order, written out.
		groups := map[uint32]flow.Group{}
		for _, g := range s.Groups {
			groups[g.ID] = g
		}
		order := make([]int, len(s.Rules))
		for j := range order {
			order[j] = j
		}
		sort.Slice(order, func(a, b int) bool {
			ra, rb := s.Rules[order[a]], s.Rules[order[b]]
			ga, gb := groups[ra.Group], groups[rb.Group]
			if ga.Host != gb.Host {
				return ga.Host
			}
			if ga.Priority != gb.Priority {
				return ga.Priority > gb.Priority
			}
			if ga.ID != gb.ID {
				return ga.ID < gb.ID
			}
			if ra.Priority != rb.Priority {
				return ra.Priority > rb.Priority
			}
			return ra.ID < rb.ID
		})
		engines := map[uint16]*rss.Engine{0: mustRSS(s.Default)}
		for _, c := range s.Contexts {
			engines[c.ID] = mustRSS(c.Config)
		}
		for j := 0; j < frames; j++ {
			b := exact(oracleFrame(r))
			h := rss.ParseHeaders(b)
			want := flow.Verdict{Rule: -1}
			if len(b) >= 14 {
				for _, k := range order {
					if oracle[k].matches(b, h) {
						want.Rule = k
						break
					}
				}
			}
			res := engines[0].Steer(b)
			want.Queue, want.Hash, want.Report = res.Queue, res.Hash, res.Report
			if want.Rule >= 0 {
				hits[oracle[want.Rule].shape]++
				a := s.Rules[want.Rule].Action
				actions[a.Kind.String()]++
				switch a.Kind {
				case flow.ActionDrop:
					want = flow.Verdict{Drop: true, Rule: want.Rule}
				case flow.ActionQueue:
					want.Queue = a.Queue
				case flow.ActionContext:
					res := engines[a.Context].Steer(b)
					want.Queue, want.Hash, want.Report, want.Context = res.Queue, res.Hash, res.Report, a.Context
				}
			}
			if got := e.Steer(b); got != want {
				t.Fatalf("set %d %+v\nframe %x (headers %+v)\ngot  %+v\nwant %+v", i, s, b, h, got, want)
			}
		}
	}
	for i, n := range hits {
		if n < 20 {
			t.Errorf("shape %q decided only %d frames", shapes[i].name, n)
		}
	}
	for _, a := range []string{"drop", "queue", "context"} {
		if actions[a] < 100 {
			t.Errorf("only %d frames took action %s", actions[a], a)
		}
	}
	t.Logf("frames decided per shape: %v; per action: %v", hits, actions)
}
