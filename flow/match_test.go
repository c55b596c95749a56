package flow_test

import (
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/vrss-dev/vrss/flow"
	"github.com/vrss-dev/vrss/internal/frame"
)

// match builds a Match by its setters.
func match(set ...func(*flow.Match)) flow.Match {
	var m flow.Match
	for _, f := range set {
		f(&m)
	}
	return m
}

func etype(v uint16) func(*flow.Match)     { return func(m *flow.Match) { m.SetEtherType(v, 0xffff) } }
func protoIs(v uint8) func(*flow.Match)    { return func(m *flow.Match) { m.SetProto(v, 0xff) } }
func dport(v, mk uint16) func(*flow.Match) { return func(m *flow.Match) { m.SetDstPort(v, mk) } }
func sport(v, mk uint16) func(*flow.Match) { return func(m *flow.Match) { m.SetSrcPort(v, mk) } }
func tci(v, mk uint16) func(*flow.Match)   { return func(m *flow.Match) { m.SetTCI(v, mk) } }
func tcpFlags(v, mk uint8) func(*flow.Match) {
	return func(m *flow.Match) { m.SetTCPFlags(v, mk) }
}
func srcNet(p string) func(*flow.Match) {
	return func(m *flow.Match) {
		pf := netip.MustParsePrefix(p)
		m.SetSrcIP(pf.Addr(), flow.PrefixMask(pf))
	}
}
func dstNet(p string) func(*flow.Match) {
	return func(m *flow.Match) {
		pf := netip.MustParsePrefix(p)
		m.SetDstIP(pf.Addr(), flow.PrefixMask(pf))
	}
}
func flagsIs(v, mk byte) func(*flow.Match) {
	return func(m *flow.Match) { m.Value[flow.OffFlags], m.Mask[flow.OffFlags] = v, mk }
}

func normalized(t testing.TB, m flow.Match) flow.Match {
	t.Helper()
	if err := m.Normalize(); err != nil {
		t.Fatalf("Normalize(%v): %v", m.String(), err)
	}
	return m
}

func TestNormalizeImpliedFlags(t *testing.T) {
	cases := []struct {
		name  string
		m     flow.Match
		flags byte // the flags Normalize requires
	}{
		{"any", match(), 0},
		{"dst mac", match(func(m *flow.Match) { m.SetDstMAC(net.HardwareAddr{2, 0, 0, 0, 0, 1}, nil) }), 0},
		{"ether type", match(etype(0x0806)), 0},
		{"ipv4 ether type alone", match(etype(0x0800)), 0},
		{"vlan", match(tci(100, 0x0fff)), fT},
		{"ipv4 address", match(etype(0x0800), srcNet("10.0.0.0/8")), f4},
		{"ipv6 address", match(etype(0x86dd), dstNet("2001:db8::/32")), f6},
		{"protocol", match(etype(0x0800), protoIs(1)), f4 | fP},
		{"port without protocol", match(etype(0x86dd), dport(53, 0xffff)), f6 | fPort},
		{"tcp4 dst-port", match(etype(0x0800), protoIs(6), dport(80, 0xffff)), f4 | fP | fPort},
		{"tcp flags", match(etype(0x0800), tcpFlags(2, 0x12)), f4 | fPort | fTCP},
		{"vlan tcp6 src-port", match(tci(5, 0xffff), etype(0x86dd), protoIs(6), sport(22, 0xffff)), fT | f6 | fP | fPort},
		{"explicit fragment flag", match(flagsIs(fFrag, fFrag)), fFrag},
		{"explicit not-a-fragment, with ports", match(etype(0x0800), dport(80, 0xffff), flagsIs(0, fFrag)), f4 | fPort},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := normalized(t, c.m)
			extra := n.Mask[flow.OffFlags] &^ c.m.Mask[flow.OffFlags]
			if extra != c.flags&^c.m.Mask[flow.OffFlags] {
				t.Errorf("added flags %#x, want %#x", extra, c.flags)
			}
			if n.Value[flow.OffFlags]&c.flags != c.flags || n.Mask[flow.OffFlags]&c.flags != c.flags {
				t.Errorf("flags %#x/%#x do not require %#x", n.Value[flow.OffFlags], n.Mask[flow.OffFlags], c.flags)
			}
			// Nothing but the flags byte changes for a match whose
			// values lie within its mask.
			n.Value[flow.OffFlags], n.Mask[flow.OffFlags] = c.m.Value[flow.OffFlags], c.m.Mask[flow.OffFlags]
			if n != c.m {
				t.Errorf("Normalize changed more than the flags: %v → %v", c.m.String(), n.String())
			}
			// Idempotent.
			n2 := normalized(t, c.m)
			n3 := normalized(t, n2)
			if n3 != n2 {
				t.Errorf("not idempotent: %v → %v", n2.String(), n3.String())
			}
		})
	}
}

func TestNormalizeClearsValueOutsideMask(t *testing.T) {
	m := match(etype(0x0800), dport(0x1234, 0xff00))
	for i := range m.Value {
		m.Value[i] |= 0xa5 &^ m.Mask[i]
	}
	n := normalized(t, m)
	for i := range n.Value {
		if n.Value[i]&^n.Mask[i] != 0 {
			t.Errorf("byte %d: value %#x outside mask %#x", i, n.Value[i], n.Mask[i])
		}
	}
	want := normalized(t, match(etype(0x0800), dport(0x1200, 0xff00)))
	if n != want {
		t.Errorf("got %v, want %v", n.String(), want.String())
	}
}

func TestNormalizeErrors(t *testing.T) {
	cases := []struct {
		name string
		m    flow.Match
		want error
	}{
		{"protocol without ether type", match(protoIs(6)), flow.ErrNoFamily},
		{"port without ether type", match(dport(80, 0xffff)), flow.ErrNoFamily},
		{"tcp flags without ether type", match(tcpFlags(2, 2)), flow.ErrNoFamily},
		{"address without ether type", match(srcNet("10.0.0.0/8")), flow.ErrNoFamily},
		{"non-IP ether type", match(etype(0x0806), protoIs(6)), flow.ErrNoFamily},
		{"ether type under a partial mask", match(func(m *flow.Match) { m.SetEtherType(0x0800, 0xff00) }, protoIs(6)), flow.ErrNoFamily},
		{"ipv4 address byte 5", match(etype(0x0800), func(m *flow.Match) { m.Mask[flow.OffSrcIP+4] = 1 }), flow.ErrField},
		{"ipv4 destination byte 16", match(etype(0x0800), func(m *flow.Match) { m.Mask[flow.OffDstIP+15] = 0x80 }), flow.ErrField},
		{"ipv6 address given for ipv4", match(etype(0x0800), srcNet("2001:db8::/48")), flow.ErrField},
		{"reserved byte", match(func(m *flow.Match) { m.Mask[flow.OffReserved] = 1 }), flow.ErrField},
		{"undefined flag", match(flagsIs(0, 0x80)), flow.ErrField},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := c.m
			if err := m.Normalize(); !errors.Is(err, c.want) {
				t.Errorf("error %v, want %v", err, c.want)
			}
			if m != c.m {
				t.Error("a failed Normalize changed the match")
			}
		})
	}
	// The same bytes past an IPv4 address's fourth are fine in IPv6.
	if m := match(etype(0x86dd), func(m *flow.Match) { m.Mask[flow.OffSrcIP+4] = 1 }); m.Normalize() != nil {
		t.Error("ipv6 address byte 5 refused")
	}
}

// A match that fixes an implied flag to zero names fields no frame can
// have (an address of a frame without an IP header, a port of a frame
// without ports); Normalize must refuse it, not turn the zero into a one
// and so match frames the caller excluded.
func TestNormalizeContradictoryFlags(t *testing.T) {
	cases := []struct {
		name string
		m    flow.Match
	}{
		{"dst-port of a non-first fragment", match(etype(0x0800), dport(80, 0xffff), flagsIs(0, fPort))},
		{"address of a frame that is not IPv4", match(etype(0x0800), srcNet("10.0.0.0/8"), flagsIs(0, f4))},
		{"vlan of an untagged frame", match(tci(100, 0x0fff), flagsIs(0, fT))},
		{"tcp flags of a frame without TCP", match(etype(0x0800), tcpFlags(2, 2), flagsIs(0, fTCP))},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := c.m
			err := m.Normalize()
			if err == nil {
				t.Errorf("accepted and turned into %v (flags %#x/%#x); it matches no frame as written", m.String(), m.Value[flow.OffFlags], m.Mask[flow.OffFlags])
			}
		})
	}
}

func TestMatches(t *testing.T) {
	s4, d4 := ip("10.0.0.1"), ip("10.0.0.2")
	tcp80 := frame.Spec{Src: s4, Dst: d4, Proto: frame.ProtoTCP, SrcPort: 5000, DstPort: 80}
	spec := func(f func(*frame.Spec)) []byte { s := tcp80; f(&s); return frame.Build(s) }
	k := func(b []byte) flow.Key { return flow.KeyOf(b) }
	tcp4dport80 := normalized(t, match(etype(0x0800), protoIs(6), dport(80, 0xffff)))
	anyPort80 := normalized(t, match(etype(0x0800), dport(80, 0xffff)))
	highPorts := normalized(t, match(etype(0x0800), sport(0x8000, 0x8000))) // source port ≥ 32768
	syn := normalized(t, match(etype(0x0800), tcpFlags(0x02, 0x12)))        // SYN without ACK

	cases := []struct {
		name string
		m    flow.Match
		b    []byte
		want bool
	}{
		{"tcp 80", tcp4dport80, frame.Build(tcp80), true},
		{"tcp 81", tcp4dport80, spec(func(s *frame.Spec) { s.DstPort = 81 }), false},
		{"udp 80", tcp4dport80, spec(func(s *frame.Spec) { s.Proto = frame.ProtoUDP }), false},
		{"udp 80, any protocol", anyPort80, spec(func(s *frame.Spec) { s.Proto = frame.ProtoUDP }), true},
		{"tcp6 80", tcp4dport80, spec(func(s *frame.Spec) { s.Src, s.Dst = ip("::1"), ip("::2") }), false},
		{"tagged", tcp4dport80, spec(func(s *frame.Spec) { s.VLANs = []uint16{0x8100} }), true},
		{"first fragment", tcp4dport80, spec(func(s *frame.Spec) { s.MoreFrags = true }), true},
		{"later fragment", tcp4dport80, spec(func(s *frame.Spec) { s.FragOffset = 1 }), false},
		{"tcp cut", tcp4dport80, frame.Build(tcp80)[:50], false},
		{"ipv4 cut", tcp4dport80, frame.Build(tcp80)[:30], false},
		{"high source port", highPorts, frame.Build(tcp80), false},
		{"high source port 40000", highPorts, spec(func(s *frame.Spec) { s.SrcPort = 40000 }), true},
		{"syn", syn, func() []byte { b := frame.Build(tcp80); b[34+13] = 0x02; return b }(), true},
		{"syn-ack", syn, func() []byte { b := frame.Build(tcp80); b[34+13] = 0x12; return b }(), false},
		{"syn flags in a udp header", syn, func() []byte {
			b := spec(func(s *frame.Spec) { s.Proto = frame.ProtoUDP; s.Payload = 10 })
			b[34+13] = 0x02
			return b
		}(), false},
		{"any matches anything", flow.Match{}, []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			key := k(exact(c.b))
			if got := c.m.Matches(&key); got != c.want {
				t.Errorf("%v on %x: %v, want %v", c.m.String(), key[:], got, c.want)
			}
		})
	}

	// Why the implied flags: unnormalized, a port-0 rule matches any
	// frame without ports, whose key has zero there.
	raw := match(etype(0x0800), dport(0, 0xffff))
	icmp := flow.KeyOf(frame.Build(frame.Spec{Src: s4, Dst: d4, Proto: frame.ProtoICMP}))
	if !raw.Matches(&icmp) {
		t.Error("raw port-0 match does not match ICMP's zero ports")
	}
	if n := normalized(t, raw); n.Matches(&icmp) {
		t.Error("normalized port-0 match matches ICMP")
	}
}

func TestWordsAndRuleWords(t *testing.T) {
	five4 := normalized(t, match(etype(0x0800), protoIs(17), srcNet("10.0.0.1/32"), dstNet("10.0.0.0/24"), sport(1, 0xffff), dport(2, 0xffff)))
	five6 := normalized(t, match(etype(0x86dd), protoIs(6), srcNet("2001:db8::1/128"), dstNet("2001:db8::/127"), sport(1, 0xffff), dport(2, 0xffff)))
	cases := []struct {
		name         string
		m            flow.Match
		words, total int
	}{
		{"any", flow.Match{}, 0, 4},
		{"ether type", match(etype(0x0806)), 1, 4},
		{"dst mac", match(func(m *flow.Match) { m.SetDstMAC(net.HardwareAddr{1, 2, 3, 4, 5, 6}, nil) }), 2, 6},
		{"both macs", match(func(m *flow.Match) {
			m.SetDstMAC(net.HardwareAddr{1, 2, 3, 4, 5, 6}, nil)
			m.SetSrcMAC(net.HardwareAddr{1, 2, 3, 4, 5, 6}, nil)
		}), 3, 6},
		{"tcp4 dst-port", normalized(t, match(etype(0x0800), protoIs(6), dport(80, 0xffff))), 2, 6},
		{"vlan", normalized(t, match(tci(3, 0xfff))), 2, 6}, // the flags word and the TCI word
		{"ipv4 5-tuple", five4, 4, 8},
		{"ipv6 5-tuple", five6, 10, 14},
		{"everything", func() flow.Match {
			var m flow.Match
			for i := range m.Mask {
				m.Mask[i] = 0xff
			}
			return m
		}(), 14, 18},
	}
	for _, c := range cases {
		if w := c.m.Words(); w != c.words {
			t.Errorf("%s: Words %d, want %d", c.name, w, c.words)
		}
		if w := flow.RuleWords(&c.m); w != c.total {
			t.Errorf("%s: RuleWords %d, want %d", c.name, w, c.total)
		}
	}
}

func TestSetters(t *testing.T) {
	var m flow.Match
	m.SetDstMAC(net.HardwareAddr{1, 2, 3, 4, 5, 6}, nil)
	m.SetSrcMAC(net.HardwareAddr{7, 8, 9, 10, 11, 12}, net.HardwareAddr{0xff, 0, 0, 0, 0, 0xf0})
	m.SetEtherType(0x86dd, 0xfff0)
	m.SetProto(58, 0x7f)
	m.SetTCI(0x1234, 0x0fff)
	m.SetTCPFlags(0x12, 0x3f)
	m.SetSrcPort(0x0102, 0xff00)
	m.SetDstPort(0x0304, 0x00ff)
	m.SetSrcIP(ip("2001:db8::1"), ip("ffff:ffff::"))
	m.SetDstIP(ip("10.1.2.3"), ip("255.255.0.0"))
	var v, mk flow.Key
	copy(v[0:], []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0x86, 0xdd, 0, 58, 0x12, 0x34, 0x12})
	copy(mk[0:], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0xf0, 0xff, 0xf0, 0, 0x7f, 0x0f, 0xff, 0x3f})
	copy(v[20:], ip("2001:db8::1").AsSlice())
	copy(mk[20:], []byte{0xff, 0xff, 0xff, 0xff})
	copy(v[36:], []byte{10, 1, 2, 3})
	copy(mk[36:], []byte{0xff, 0xff})
	copy(v[52:], []byte{1, 2, 3, 4})
	copy(mk[52:], []byte{0xff, 0, 0, 0xff})
	if m.Value != v || m.Mask != mk {
		t.Errorf("value %x\nwant  %x\nmask  %x\nwant  %x", m.Value[:], v[:], m.Mask[:], mk[:])
	}
	// Setting an IPv4 address over an IPv6 one clears the other 12 bytes.
	m.SetSrcIP(ip("192.0.2.1"), ip("255.255.255.255"))
	for i := flow.OffSrcIP + 4; i < flow.OffSrcIP+16; i++ {
		if m.Value[i] != 0 || m.Mask[i] != 0 {
			t.Fatalf("byte %d of the source address left: %x/%x", i-flow.OffSrcIP, m.Value[i], m.Mask[i])
		}
	}
}

func TestPrefixMask(t *testing.T) {
	for p, want := range map[string]string{
		"10.0.0.0/8":     "255.0.0.0",
		"10.0.0.1/32":    "255.255.255.255",
		"0.0.0.0/0":      "0.0.0.0",
		"10.0.0.0/20":    "255.255.240.0",
		"2001:db8::/32":  "ffff:ffff::",
		"::/0":           "::",
		"2001:db8::/65":  "ffff:ffff:ffff:ffff:8000::",
		"2001:db8::/128": "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
	} {
		if got := flow.PrefixMask(netip.MustParsePrefix(p)); got != ip(want) {
			t.Errorf("PrefixMask(%s) = %s, want %s", p, got, want)
		}
	}
}

func TestString(t *testing.T) {
	cases := []struct {
		m    flow.Match
		want string
	}{
		{flow.Match{}, "any"},
		{match(etype(0x0800), protoIs(6), dport(80, 0xffff)), "ether-type 0x0800 proto 6 dst-port 80"},
		{match(etype(0x86dd), srcNet("2001:db8::/32")), "ether-type 0x86dd src-ip 2001:db8::/32"},
		{match(etype(0x0800), protoIs(17), srcNet("10.0.0.1/32"), dstNet("10.9.0.0/16"), sport(1000, 0xffff), dport(53, 0xffff)),
			"ether-type 0x0800 proto 17 src-ip 10.0.0.1 dst-ip 10.9.0.0/16 src-port 1000 dst-port 53"},
		{match(tci(100, 0x0fff)), "vlan 100/0xfff"},
		{match(tci(0x2064, 0xffff), etype(0x0800)), "ether-type 0x0800 vlan 8292"},
		{match(etype(0x0800), protoIs(17), dport(0x1000, 0xf000)), "ether-type 0x0800 proto 17 dst-port 4096/0xf000"},
		{match(etype(0x86dd), tcpFlags(0x02, 0x12)), "ether-type 0x86dd tcp-flags 2/0x12"},
		{match(func(m *flow.Match) {
			m.SetDstMAC(net.HardwareAddr{0x52, 0x54, 0, 0x12, 0x34, 0x56}, nil)
			m.SetSrcMAC(net.HardwareAddr{2, 0, 0, 0, 0, 0}, net.HardwareAddr{2, 0, 0, 0, 0, 0})
		}), "dst-mac 52:54:00:12:34:56 src-mac 02:00:00:00:00:00/02:00:00:00:00:00"},
		{match(etype(0x0800), func(m *flow.Match) { m.SetDstIP(ip("10.0.2.0"), ip("255.0.255.0")) }), "ether-type 0x0800 dst-ip 10.0.2.0/255.0.255.0"},
		{match(func(m *flow.Match) { m.SetEtherType(0x8800, 0xff00) }), "ether-type 0x8800/0xff00"},
		{match(etype(0x0800), flagsIs(fFrag, fFrag)), "ether-type 0x0800 flags 0x20/0x20"},
		{match(etype(0x0800), dport(80, 0xffff), flagsIs(0, fFrag)), "ether-type 0x0800 dst-port 80 flags 0x0/0x20"},
		{match(flagsIs(fT, fT)), "flags 0x1/0x1"},
		{match(etype(0x86dd), protoIs(58)), "ether-type 0x86dd proto 58"},
	}
	for _, c := range cases {
		n := c.m
		if err := n.Normalize(); err != nil {
			t.Fatalf("%s: %v", c.want, err)
		}
		if got := n.String(); got != c.want {
			t.Errorf("normalized: got %q, want %q", got, c.want)
		}
		// The implied flags are not shown, so a match reads the same
		// before and after Normalize.
		if got := c.m.String(); got != c.want {
			t.Errorf("as built: got %q, want %q", got, c.want)
		}
	}
}
