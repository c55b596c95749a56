package flow_test

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/vrss-dev/vrss/flow"
	"github.com/vrss-dev/vrss/internal/frame"
	"github.com/vrss-dev/vrss/internal/proto"
	"github.com/vrss-dev/vrss/rss"
)

var ip = netip.MustParseAddr

// exact returns a copy of b whose capacity is its length, so that any read
// past the end panics, even through a reslice.
func exact(b []byte) []byte {
	c := append([]byte(nil), b...)
	return c[:len(c):len(c)]
}

// fields is what a test expects in a key, written field by field.
type fields struct {
	etype    uint16
	flags    byte
	proto    uint8
	tci      uint16
	tcpFlags uint8
	src, dst netip.Addr
	sport    uint16
	dport    uint16
}

// key builds the key a frame with the MAC addresses of b and fields f has,
// independently of KeyOf.
func key(b []byte, f fields) flow.Key {
	var k flow.Key
	copy(k[0:12], b[:12])
	binary.BigEndian.PutUint16(k[12:], f.etype)
	k[14], k[15] = f.flags, f.proto
	binary.BigEndian.PutUint16(k[16:], f.tci)
	k[18] = f.tcpFlags
	if f.src.IsValid() {
		copy(k[20:36], f.src.AsSlice())
		copy(k[36:52], f.dst.AsSlice())
	}
	binary.BigEndian.PutUint16(k[52:], f.sport)
	binary.BigEndian.PutUint16(k[54:], f.dport)
	return k
}

const (
	fT    = flow.FlagTagged
	f4    = flow.FlagIPv4
	f6    = flow.FlagIPv6
	fP    = flow.FlagProto
	fPort = flow.FlagPorts
	fFrag = flow.FlagFragment
	fTCP  = flow.FlagTCP
)

func TestKeyLayout(t *testing.T) {
	if flow.KeyLen != 56 || flow.KeyWords != 14 {
		t.Fatalf("KeyLen %d, KeyWords %d", flow.KeyLen, flow.KeyWords)
	}
	// Each field where the documentation puts it, none overlapping.
	offs := []struct{ off, n int }{
		{flow.OffDstMAC, 6}, {flow.OffSrcMAC, 6}, {flow.OffEtherType, 2}, {flow.OffFlags, 1}, {flow.OffProto, 1},
		{flow.OffTCI, 2}, {flow.OffTCPFlags, 1}, {flow.OffReserved, 1}, {flow.OffSrcIP, 16}, {flow.OffDstIP, 16},
		{flow.OffSrcPort, 2}, {flow.OffDstPort, 2},
	}
	next := 0
	for _, o := range offs {
		if o.off != next {
			t.Errorf("field at %d, want %d", o.off, next)
		}
		next = o.off + o.n
	}
	if next != flow.KeyLen {
		t.Errorf("fields end at %d", next)
	}
	// An IPv4 5-tuple's fields lie in four words: 3, 5, 9 and 13.
	var m flow.Match
	m.SetEtherType(0x0800, 0xffff)
	m.SetProto(6, 0xff)
	m.SetSrcIP(ip("10.0.0.1"), ip("255.255.255.255"))
	m.SetDstIP(ip("10.0.0.2"), ip("255.255.255.255"))
	m.SetSrcPort(1, 0xffff)
	m.SetDstPort(2, 0xffff)
	if err := m.Normalize(); err != nil {
		t.Fatal(err)
	}
	var words []int
	for i := 0; i < flow.KeyWords; i++ {
		if m.Mask.Word(i) != 0 {
			words = append(words, i)
		}
	}
	if fmt.Sprint(words) != "[3 5 9 13]" {
		t.Errorf("IPv4 5-tuple in words %v", words)
	}
}

func TestKeyWord(t *testing.T) {
	var k flow.Key
	for i := range k {
		k[i] = byte(i)
	}
	if w := k.Word(0); w != 0x03020100 {
		t.Errorf("Word(0) = %#x", w)
	}
	if w := k.Word(13); w != 0x37363534 {
		t.Errorf("Word(13) = %#x", w)
	}
}

func TestKeyOf(t *testing.T) {
	s4, d4 := ip("10.0.0.1"), ip("10.0.0.2")
	s6, d6 := ip("2001:db8::1"), ip("2001:db8::2")
	tcp4 := frame.Spec{Src: s4, Dst: d4, Proto: frame.ProtoTCP, SrcPort: 1000, DstPort: 80, Payload: 3}
	udp4 := frame.Spec{Src: s4, Dst: d4, Proto: frame.ProtoUDP, SrcPort: 1000, DstPort: 53, Payload: 3}
	tcp6 := frame.Spec{Src: s6, Dst: d6, Proto: frame.ProtoTCP, SrcPort: 1000, DstPort: 80, Payload: 3}
	udp6 := frame.Spec{Src: s6, Dst: d6, Proto: frame.ProtoUDP, SrcPort: 1000, DstPort: 53, Payload: 3}
	vlan := func(s frame.Spec, tpids ...uint16) frame.Spec { s.VLANs = tpids; return s }
	frag4 := func(s frame.Spec, off uint16, more bool) frame.Spec { s.FragOffset, s.MoreFrags = off, more; return s }
	with := func(s frame.Spec, ext ...frame.ExtHeader) frame.Spec { s.Ext = ext; return s }
	hbh := frame.ExtHeader{Type: proto.IPProtoHopOpts, Data: make([]byte, 6)}
	dst := frame.ExtHeader{Type: proto.IPProtoDstOpts, Data: make([]byte, 6)}
	rt := frame.ExtHeader{Type: proto.IPProtoRouting, Data: make([]byte, 14)}
	ah := frame.ExtHeader{Type: proto.IPProtoAH, Data: make([]byte, 10)}
	chain := func(n int) []frame.ExtHeader {
		c := make([]frame.ExtHeader, n)
		for i := range c {
			c[i] = dst
		}
		return c
	}
	synack := func(b []byte, at int) []byte { b[at+13] = 0x12; return b }

	tcp4f := fields{etype: 0x0800, flags: f4 | fP | fPort | fTCP, proto: 6, tcpFlags: 0x18, src: s4, dst: d4, sport: 1000, dport: 80}
	udp4f := fields{etype: 0x0800, flags: f4 | fP | fPort, proto: 17, src: s4, dst: d4, sport: 1000, dport: 53}
	tcp6f := fields{etype: 0x86dd, flags: f6 | fP | fPort | fTCP, proto: 6, tcpFlags: 0x18, src: s6, dst: d6, sport: 1000, dport: 80}
	udp6f := fields{etype: 0x86dd, flags: f6 | fP | fPort, proto: 17, src: s6, dst: d6, sport: 1000, dport: 53}
	mod := func(f fields, g func(*fields)) fields { g(&f); return f }
	eth := func(etype uint16) fields { return fields{etype: etype} }

	cases := []struct {
		name string
		b    []byte
		want fields
	}{
		{"untagged tcp4", frame.Build(tcp4), tcp4f},
		{"udp4", frame.Build(udp4), udp4f},
		{"icmp4", frame.Build(frame.Spec{Src: s4, Dst: d4, Proto: frame.ProtoICMP, Payload: 8}),
			fields{etype: 0x0800, flags: f4 | fP, proto: 1, src: s4, dst: d4}},
		{"tcp flags byte", synack(frame.Build(tcp4), 34), mod(tcp4f, func(f *fields) { f.tcpFlags = 0x12 })},
		{"ipv4 options", frame.Build(func() frame.Spec { s := tcp4; s.IPv4Opts = []byte{1, 1, 1, 0, 7, 7, 4, 0}; return s }()), tcp4f},
		{"one tag", frame.Build(vlan(tcp4, 0x8100)), mod(tcp4f, func(f *fields) { f.flags |= fT; f.tci = 100 })},
		{"two tags: outer TCI", frame.Build(vlan(udp6, 0x88a8, 0x8100)), mod(udp6f, func(f *fields) { f.flags |= fT; f.tci = 100 })},
		{"three tags: the third TPID, no IP", frame.Build(vlan(tcp4, 0x8100, 0x8100, 0x8100)), fields{etype: 0x8100, flags: fT, tci: 100}},
		{"tag with TCI 0", func() []byte { b := frame.Build(vlan(tcp4, 0x8100)); b[14], b[15] = 0, 0; return b }(),
			mod(tcp4f, func(f *fields) { f.flags |= fT })},
		{"ipv4 first fragment: ports", frame.Build(frag4(tcp4, 0, true)), mod(tcp4f, func(f *fields) { f.flags |= fFrag })},
		{"ipv4 first fragment, tcp cut: no ports", frame.Build(frag4(tcp4, 0, true))[:34+19],
			fields{etype: 0x0800, flags: f4 | fP | fFrag, proto: 6, src: s4, dst: d4}},
		{"ipv4 later fragment: protocol, no ports", frame.Build(frag4(udp4, 100, false)),
			fields{etype: 0x0800, flags: f4 | fP | fFrag, proto: 17, src: s4, dst: d4}},
		{"ipv4 header cut", frame.Build(tcp4)[:14+19], eth(0x0800)},
		{"ipv4 tcp cut", frame.Build(tcp4)[:34+19], eth(0x0800)},
		{"ipv4 udp cut", frame.Build(udp4)[:34+7], eth(0x0800)},
		{"tagged ipv4 tcp cut", frame.Build(vlan(tcp4, 0x88a8))[:38+10], fields{etype: 0x0800, flags: fT, tci: 100}},

		{"tcp6", frame.Build(tcp6), tcp6f},
		{"icmp6", frame.Build(frame.Spec{Src: s6, Dst: d6, Proto: 58, Payload: 8}),
			fields{etype: 0x86dd, flags: f6 | fP, proto: 58, src: s6, dst: d6}},
		{"ipv6 hbh dstopts routing ah: last next header", frame.Build(with(udp6, hbh, dst, rt, ah)), udp6f},
		{"ipv6 8 extension headers", frame.Build(with(tcp6, chain(8)...)), tcp6f},
		{"ipv6 9 extension headers", frame.Build(with(tcp6, chain(9)...)), eth(0x86dd)},
		{"ipv6 tcp cut", frame.Build(with(tcp6, hbh))[:62+19], eth(0x86dd)},
		{"ipv6 first fragment, more headers, tcp: ports", frame.Build(with(tcp6, hbh, frame.FragmentHeader(0, true), dst, rt)),
			mod(tcp6f, func(f *fields) { f.flags |= fFrag })},
		{"ipv6 later fragment: fragment header's next header", frame.Build(with(tcp6, frame.FragmentHeader(10, true), dst)),
			fields{etype: 0x86dd, flags: f6 | fP | fFrag, proto: proto.IPProtoDstOpts, src: s6, dst: d6}},
		{"ipv6 later fragment, tcp", frame.Build(with(tcp6, frame.FragmentHeader(10, false))),
			fields{etype: 0x86dd, flags: f6 | fP | fFrag, proto: 6, src: s6, dst: d6}},
		{"ipv6 first fragment, chain cut: no protocol", frame.Build(with(tcp6, frame.FragmentHeader(0, true), rt))[:62+10],
			fields{etype: 0x86dd, flags: f6 | fFrag, src: s6, dst: d6}},
		{"ipv6 first fragment, 9 extension headers: no protocol", frame.Build(with(tcp6, append([]frame.ExtHeader{frame.FragmentHeader(0, true)}, chain(8)...)...)),
			fields{etype: 0x86dd, flags: f6 | fFrag, src: s6, dst: d6}},
		{"ipv6 first fragment, udp cut: protocol, no ports", frame.Build(with(udp6, frame.FragmentHeader(0, true)))[:62+7],
			fields{etype: 0x86dd, flags: f6 | fP | fFrag, proto: 17, src: s6, dst: d6}},
		{"ipv6 atomic fragment: whole", frame.Build(with(tcp6, frame.FragmentHeader(0, false))), tcp6f},
		{"arp", func() []byte { b := frame.Build(tcp4); b[12], b[13] = 0x08, 0x06; return b }(), eth(0x0806)},
		{"ethernet header only", frame.Build(tcp6)[:14], eth(0x86dd)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want := key(c.b, c.want)
			if got := flow.KeyOf(exact(c.b)); got != want {
				t.Errorf("got  %x\nwant %x", got[:], want[:])
			}
		})
	}
}

func TestKeyOfShort(t *testing.T) {
	b := frame.Build(frame.Spec{Src: ip("10.0.0.1"), Dst: ip("10.0.0.2"), Proto: frame.ProtoTCP})
	for n := 0; n < 14; n++ {
		if k := flow.KeyOf(exact(b[:n])); k != (flow.Key{}) {
			t.Errorf("%d bytes: key %x, want zero", n, k[:])
		}
	}
}

// checkKey holds a frame's key to what any key must satisfy: fields the
// frame does not have are zero, the flags are consistent with each other,
// with the frame's bytes and with how RSS classifies it.
func checkKey(t testing.TB, b []byte, k flow.Key) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("frame %x, key %x: "+format, append([]any{b, k[:]}, args...)...)
	}
	if len(b) < 14 {
		if k != (flow.Key{}) {
			fail("a frame shorter than an Ethernet header has a key")
		}
		return
	}
	fl := k[flow.OffFlags]
	has := func(f byte) bool { return fl&f != 0 }
	zero := func(off, n int) bool {
		for _, c := range k[off : off+n] {
			if c != 0 {
				return false
			}
		}
		return true
	}
	if string(k[:12]) != string(b[:12]) {
		fail("MAC addresses differ from the frame's")
	}
	if fl&^0x7f != 0 || k[flow.OffReserved] != 0 {
		fail("undefined flags or reserved byte set")
	}
	ip := has(flow.FlagIPv4) || has(flow.FlagIPv6)
	switch {
	case has(flow.FlagIPv4) && has(flow.FlagIPv6):
		fail("both families")
	case has(flow.FlagPorts) && !(ip && has(flow.FlagProto)):
		fail("ports without IP and protocol")
	case has(flow.FlagTCP) && !has(flow.FlagPorts):
		fail("TCP without ports")
	case (has(flow.FlagProto) || has(flow.FlagFragment)) && !ip:
		fail("protocol or fragment without IP")
	case !has(flow.FlagTagged) && !zero(flow.OffTCI, 2):
		fail("TCI without a tag")
	case !ip && !zero(flow.OffSrcIP, 32):
		fail("addresses without IP")
	case has(flow.FlagIPv4) && !(zero(flow.OffSrcIP+4, 12) && zero(flow.OffDstIP+4, 12)):
		fail("IPv4 addresses longer than 4 bytes")
	case !has(flow.FlagProto) && k[flow.OffProto] != 0:
		fail("protocol byte without FlagProto")
	case !has(flow.FlagPorts) && !zero(flow.OffSrcPort, 4):
		fail("ports without FlagPorts")
	case !has(flow.FlagTCP) && k[flow.OffTCPFlags] != 0:
		fail("TCP flags without FlagTCP")
	case has(flow.FlagPorts) && k[flow.OffProto] != 6 && k[flow.OffProto] != 17:
		fail("ports of protocol %d", k[flow.OffProto])
	case has(flow.FlagPorts) && has(flow.FlagTCP) != (k[flow.OffProto] == 6):
		fail("FlagTCP disagrees with the protocol")
	case has(flow.FlagIPv4) && binary.BigEndian.Uint16(k[flow.OffEtherType:]) != 0x0800,
		has(flow.FlagIPv6) && binary.BigEndian.Uint16(k[flow.OffEtherType:]) != 0x86dd:
		fail("family disagrees with the EtherType")
	}
	// The IP flags say exactly what RSS says: a frame is IP to rules if
	// and only if the hash can use its addresses.
	if r := ipOnly.Steer(b); (r.Report != rss.ReportNone) != ip {
		fail("IP flags disagree with RSS's report %s", r.Report)
	}
	// Non-fragment TCP and UDP show their ports to rules exactly when RSS
	// hashes them (under the L4 types, without _EX).
	if r := l4.Steer(b); ip && !has(flow.FlagFragment) {
		hashesPorts := r.Report == rss.ReportTCPv4 || r.Report == rss.ReportUDPv4 || r.Report == rss.ReportTCPv6 || r.Report == rss.ReportUDPv6
		if hashesPorts != has(flow.FlagPorts) {
			fail("FlagPorts disagrees with RSS's report %s", r.Report)
		}
	}
}

var (
	ipOnly = mustRSS(rss.Config{HashTypes: rss.HashIPv4 | rss.HashIPv6, Key: rss.DefaultKey, Table: []uint16{0}})
	l4     = mustRSS(rss.Config{HashTypes: rss.AllHashTypes &^ (rss.HashIPEx | rss.HashTCPEx | rss.HashUDPEx), Key: rss.DefaultKey, Table: []uint16{0}})
)

func mustRSS(c rss.Config) *rss.Engine {
	e, err := rss.New(c)
	if err != nil {
		panic(err)
	}
	return e
}

// Random frames, each also cut at every length: every key is consistent.
func TestKeyOfRandomCut(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	n := 5000
	if testing.Short() {
		n = 500
	}
	for i := 0; i < n; i++ {
		b := frame.Random(r)
		for j := 0; j <= len(b); j++ {
			cut := exact(b[:j])
			checkKey(t, cut, flow.KeyOf(cut))
		}
	}
}
