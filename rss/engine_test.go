package rss_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/vrss-dev/vrss/internal/frame"
	"github.com/vrss-dev/vrss/rss"
)

var (
	msKey = rss.DefaultKey // the Microsoft verification key 6d 5a 56 da ...
	a4    = netip.MustParseAddr
)

func engine(t testing.TB, types rss.HashType, key []byte, table []uint16) *rss.Engine {
	t.Helper()
	e, err := rss.New(rss.Config{HashTypes: types, Key: key, Table: table, UnclassifiedQueue: 7})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// The Microsoft RSS verification suite, run through Steer on real frames.
func TestMicrosoftVectors(t *testing.T) {
	vectors := []struct {
		src, dst       string
		sport, dport   uint16
		ipHash, l4Hash uint32
	}{
		{"66.9.149.187", "161.142.100.80", 2794, 1766, 0x323e8fc2, 0x51ccc178},
		{"199.92.111.2", "65.69.140.83", 14230, 4739, 0xd718262a, 0xc626b0ea},
		{"24.19.198.95", "12.22.207.184", 12898, 38024, 0xd2d0a5de, 0x5c2b394a},
		{"38.27.205.30", "209.142.163.6", 48228, 2217, 0x82989176, 0xafc7327f},
		{"153.39.163.191", "202.188.127.2", 44251, 1303, 0x5d1809c5, 0x10e828a2},
		{"3ffe:2501:200:1fff::7", "3ffe:2501:200:3::1", 2794, 1766, 0x2cc18cd5, 0x40207d3d},
		{"3ffe:501:8::260:97ff:fe40:efab", "ff02::1", 14230, 4739, 0x0f0c461c, 0xdde51bbf},
		{"3ffe:1900:4545:3:200:f8ff:fe21:67cf", "fe80::200:f8ff:fe21:67cf", 44251, 38024, 0x4b61e985, 0x02d1feef},
	}
	table := make([]uint16, 128)
	for i := range table {
		table[i] = uint16(i)
	}
	e := engine(t, rss.AllHashTypes, msKey, table)
	for _, v := range vectors {
		src, dst := a4(v.src), a4(v.dst)
		v4 := src.Is4()
		for _, proto := range []uint8{frame.ProtoTCP, frame.ProtoUDP, frame.ProtoICMP} {
			f := frame.Build(frame.Spec{Src: src, Dst: dst, Proto: proto, SrcPort: v.sport, DstPort: v.dport, Payload: 10})
			got := e.Steer(f)
			want := rss.Result{Hash: v.ipHash, Report: rss.ReportIPv4}
			switch {
			case proto == frame.ProtoTCP:
				want = rss.Result{Hash: v.l4Hash, Report: rss.ReportTCPv4}
			case proto == frame.ProtoUDP:
				// The suite's port vectors hold for UDP too: same input bytes.
				want = rss.Result{Hash: v.l4Hash, Report: rss.ReportUDPv4}
			}
			if !v4 {
				want.Report += rss.ReportIPv6 - rss.ReportIPv4
			}
			want.Queue = uint16(want.Hash & 127)
			if got != want {
				t.Errorf("%s:%d → %s:%d proto %d: got %+v, want %+v", v.src, v.sport, v.dst, v.dport, proto, got, want)
			}
		}
	}
}

// hashOf is the expected hash, computed independently of the engine from
// the fields virtio says make up the input.
func hashOf(src, dst netip.Addr, ports ...uint16) uint32 {
	var in []byte
	in = append(in, src.AsSlice()...)
	in = append(in, dst.AsSlice()...)
	for _, p := range ports {
		in = binary.BigEndian.AppendUint16(in, p)
	}
	return rss.NewToeplitz(msKey).Hash(in)
}

func TestSelection(t *testing.T) {
	s4, d4 := a4("10.0.0.1"), a4("10.0.0.2")
	s6, d6 := a4("2001:db8::1"), a4("2001:db8::2")
	home, care := a4("2001:db8:ffff::aa"), a4("2001:db8:eeee::bb")
	tcp4 := frame.Spec{Src: s4, Dst: d4, Proto: frame.ProtoTCP, SrcPort: 1000, DstPort: 80}
	udp4 := frame.Spec{Src: s4, Dst: d4, Proto: frame.ProtoUDP, SrcPort: 1000, DstPort: 53}
	icmp4 := frame.Spec{Src: s4, Dst: d4, Proto: frame.ProtoICMP}
	tcp6 := frame.Spec{Src: s6, Dst: d6, Proto: frame.ProtoTCP, SrcPort: 1000, DstPort: 80}
	udp6 := frame.Spec{Src: s6, Dst: d6, Proto: frame.ProtoUDP, SrcPort: 1000, DstPort: 53}
	icmp6 := frame.Spec{Src: s6, Dst: d6, Proto: 58}
	with := func(s frame.Spec, ext ...frame.ExtHeader) frame.Spec { s.Ext = ext; return s }
	hao := frame.HomeAddressOption(home)
	rt2 := frame.RoutingType2(care, 1)
	hbh := frame.ExtHeader{Type: 0, Data: make([]byte, 6)}
	frag4 := func(s frame.Spec, off uint16, more bool) frame.Spec { s.FragOffset, s.MoreFrags = off, more; return s }

	const (
		all                 = rss.AllHashTypes
		v4                  = rss.HashIPv4 | rss.HashTCPv4 | rss.HashUDPv4
		v6                  = rss.HashIPv6 | rss.HashTCPv6 | rss.HashUDPv6
		ex                  = rss.HashIPEx | rss.HashTCPEx | rss.HashUDPEx
		none rss.HashReport = rss.ReportNone
	)
	cases := []struct {
		name   string
		spec   frame.Spec
		types  rss.HashType
		report rss.HashReport
		hash   uint32
	}{
		{"tcpv4", tcp4, all, rss.ReportTCPv4, hashOf(s4, d4, 1000, 80)},
		{"tcpv4 without TCPv4 falls to ipv4", tcp4, rss.HashIPv4 | rss.HashUDPv4, rss.ReportIPv4, hashOf(s4, d4)},
		{"tcpv4 with only UDPv4 is unclassified", tcp4, rss.HashUDPv4, none, 0},
		{"udpv4", udp4, all, rss.ReportUDPv4, hashOf(s4, d4, 1000, 53)},
		{"udpv4 without UDPv4", udp4, rss.HashIPv4 | rss.HashTCPv4, rss.ReportIPv4, hashOf(s4, d4)},
		{"icmpv4", icmp4, all, rss.ReportIPv4, hashOf(s4, d4)},
		{"icmpv4 with L4 types only", icmp4, rss.HashTCPv4 | rss.HashUDPv4, none, 0},
		{"ipv4 with v6 types only", tcp4, v6 | ex, none, 0},
		{"ipv4 options", func() frame.Spec { s := tcp4; s.IPv4Opts = []byte{1, 1, 1, 0, 7, 7, 4, 0}; return s }(), all, rss.ReportTCPv4, hashOf(s4, d4, 1000, 80)},
		{"ipv4 first fragment", frag4(tcp4, 0, true), all, rss.ReportIPv4, hashOf(s4, d4)},
		{"ipv4 later fragment", frag4(udp4, 100, false), all, rss.ReportIPv4, hashOf(s4, d4)},
		{"ipv4 fragment without IPv4 type", frag4(tcp4, 0, true), rss.HashTCPv4, none, 0},
		{"tcpv6", tcp6, all, rss.ReportTCPv6, hashOf(s6, d6, 1000, 80)},
		{"udpv6", udp6, v6, rss.ReportUDPv6, hashOf(s6, d6, 1000, 53)},
		{"icmpv6", icmp6, all, rss.ReportIPv6, hashOf(s6, d6)},
		{"tcpv6 falls to ipv6", tcp6, rss.HashIPv6, rss.ReportIPv6, hashOf(s6, d6)},
		{"ipv6 with v4 types only", tcp6, v4, none, 0},
		// _EX types apply only to packets that have extension headers.
		{"no ext headers, _EX only", tcp6, ex, none, 0},
		{"no ext headers, _EX and v6", tcp6, all, rss.ReportTCPv6, hashOf(s6, d6, 1000, 80)},
		{"hbh, tcp_ex", with(tcp6, hbh), all, rss.ReportTCPv6Ex, hashOf(s6, d6, 1000, 80)},
		{"hbh, _EX off", with(tcp6, hbh), v6, rss.ReportTCPv6, hashOf(s6, d6, 1000, 80)},
		{"hbh, udp_ex", with(udp6, hbh), all, rss.ReportUDPv6Ex, hashOf(s6, d6, 1000, 53)},
		{"hbh, ip_ex beats tcpv6", with(tcp6, hbh), rss.HashIPEx | rss.HashTCPv6, rss.ReportIPv6Ex, hashOf(s6, d6)},
		{"hbh, udp with tcp_ex only falls to udpv6", with(udp6, hbh), rss.HashTCPEx | rss.HashUDPv6, rss.ReportUDPv6, hashOf(s6, d6, 1000, 53)},
		{"home address", with(tcp6, hao), all, rss.ReportTCPv6Ex, hashOf(home, d6, 1000, 80)},
		{"routing type 2", with(tcp6, rt2), all, rss.ReportTCPv6Ex, hashOf(s6, care, 1000, 80)},
		{"both", with(udp6, hbh, rt2, hao), all, rss.ReportUDPv6Ex, hashOf(home, care, 1000, 53)},
		{"both, ip_ex", with(icmp6, rt2, hao), all, rss.ReportIPv6Ex, hashOf(home, care)},
		{"both, but _EX off: original addresses", with(tcp6, rt2, hao), v6, rss.ReportTCPv6, hashOf(s6, d6, 1000, 80)},
		{"routing type 2, segments left 0", with(tcp6, frame.RoutingType2(care, 0)), all, rss.ReportTCPv6Ex, hashOf(s6, d6, 1000, 80)},
		{"routing type 0", with(tcp6, frame.ExtHeader{Type: 43, Data: append([]byte{0, 1, 0, 0, 0, 0}, care.AsSlice()...)}), all, rss.ReportTCPv6Ex, hashOf(s6, d6, 1000, 80)},
		{"unknown ext header skipped", with(tcp6, frame.ExtHeader{Type: 253, Data: make([]byte, 30)}), all, rss.ReportTCPv6Ex, hashOf(s6, d6, 1000, 80)},
		{"AH skipped", with(udp6, frame.ExtHeader{Type: 51, Data: make([]byte, 14)}, hao), all, rss.ReportUDPv6Ex, hashOf(home, d6, 1000, 53)},
		{"ipv6 first fragment", with(tcp6, frame.FragmentHeader(0, true)), all, rss.ReportIPv6Ex, hashOf(s6, d6)},
		{"ipv6 later fragment, no _EX", with(udp6, frame.FragmentHeader(9, false)), v6, rss.ReportIPv6, hashOf(s6, d6)},
		{"ipv6 fragment keeps substitution", with(tcp6, hao, frame.FragmentHeader(9, true)), all, rss.ReportIPv6Ex, hashOf(home, d6)},
		{"atomic fragment is whole", with(tcp6, frame.FragmentHeader(0, false)), all, rss.ReportTCPv6Ex, hashOf(s6, d6, 1000, 80)},
		{"vlan", func() frame.Spec { s := tcp4; s.VLANs = []uint16{0x8100}; return s }(), all, rss.ReportTCPv4, hashOf(s4, d4, 1000, 80)},
		{"qinq", func() frame.Spec { s := udp6; s.VLANs = []uint16{0x88a8, 0x8100}; return s }(), all, rss.ReportUDPv6, hashOf(s6, d6, 1000, 53)},
		{"double 802.1Q", func() frame.Spec { s := tcp4; s.VLANs = []uint16{0x8100, 0x8100}; return s }(), all, rss.ReportTCPv4, hashOf(s4, d4, 1000, 80)},
		{"three tags", func() frame.Spec { s := tcp4; s.VLANs = []uint16{0x88a8, 0x8100, 0x8100}; return s }(), all, none, 0},
		{"no hash types", tcp4, 0, none, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := engine(t, c.types, msKey, rss.EqualTable(128, 4))
			got := e.Steer(frame.Build(c.spec))
			want := rss.Result{Queue: 7, Hash: c.hash, Report: c.report}
			if c.report != none {
				want.Queue = uint16(c.hash & 127 % 4)
			}
			if got != want {
				t.Errorf("got %+v (%s), want %+v (%s)", got, got.Report, want, want.Report)
			}
		})
	}
}

func TestExtHeaderBounds(t *testing.T) {
	s6, d6 := a4("2001:db8::1"), a4("2001:db8::2")
	e := engine(t, rss.AllHashTypes, msKey, []uint16{0})
	var chain []frame.ExtHeader
	for i := 0; i < rss.MaxExtHeaders; i++ {
		chain = append(chain, frame.ExtHeader{Type: 60, Data: make([]byte, 6)})
	}
	spec := frame.Spec{Src: s6, Dst: d6, Proto: frame.ProtoTCP, SrcPort: 1, DstPort: 2, Ext: chain}
	if r := e.Steer(frame.Build(spec)); r.Report != rss.ReportTCPv6Ex {
		t.Errorf("%d extension headers: report %s, want tcpv6_ex", rss.MaxExtHeaders, r.Report)
	}
	spec.Ext = append(chain, chain[0])
	if r := e.Steer(frame.Build(spec)); r.Report != rss.ReportNone {
		t.Errorf("%d extension headers: report %s, want none", rss.MaxExtHeaders+1, r.Report)
	}

	// A Home Address option after MaxDestOptions-1 Pad1 options is the
	// last one examined; one more pad hides it.
	home := a4("2001:db8:ffff::1")
	for pads, want := range map[int]uint32{rss.MaxDestOptions - 1: hashOf(home, d6, 1, 2), rss.MaxDestOptions: hashOf(s6, d6, 1, 2)} {
		data := make([]byte, pads)
		data = append(data, 0xc9, 16)
		data = append(data, home.AsSlice()...)
		spec.Ext = []frame.ExtHeader{{Type: 60, Data: data}}
		if r := e.Steer(frame.Build(spec)); r.Hash != want || r.Report != rss.ReportTCPv6Ex {
			t.Errorf("HAO after %d pads: %+v, want hash %#08x", pads, r, want)
		}
	}
}

// Cutting a valid frame anywhere inside its headers makes it unclassified;
// cutting it in the payload changes nothing.
func TestTruncation(t *testing.T) {
	s4, d4 := a4("10.1.2.3"), a4("10.3.2.1")
	s6, d6 := a4("2001:db8::1"), a4("2001:db8::2")
	specs := []struct {
		spec       frame.Spec
		headersEnd int
	}{
		{frame.Spec{Src: s4, Dst: d4, Proto: frame.ProtoTCP, SrcPort: 5, DstPort: 6, Payload: 20}, 14 + 20 + 20},
		{frame.Spec{VLANs: []uint16{0x88a8, 0x8100}, Src: s4, Dst: d4, Proto: frame.ProtoUDP, IPv4Opts: []byte{1, 1, 1, 1}, Payload: 9}, 22 + 24 + 8},
		{frame.Spec{Src: s4, Dst: d4, Proto: frame.ProtoTCP, FragOffset: 3, Payload: 9}, 14 + 20},
		{frame.Spec{Src: s4, Dst: d4, Proto: frame.ProtoICMP, Payload: 9}, 14 + 20},
		{frame.Spec{Src: s6, Dst: d6, Proto: frame.ProtoUDP, Payload: 9}, 14 + 40 + 8},
		{frame.Spec{Src: s6, Dst: d6, Proto: frame.ProtoTCP, Payload: 9, Ext: []frame.ExtHeader{
			{Type: 0, Data: make([]byte, 6)}, frame.RoutingType2(d6.Next(), 1), frame.HomeAddressOption(s6.Next())}}, 14 + 40 + 8 + 24 + 24 + 20},
		{frame.Spec{Src: s6, Dst: d6, Proto: frame.ProtoTCP, Payload: 9, Ext: []frame.ExtHeader{frame.FragmentHeader(0, true)}}, 14 + 40 + 8},
	}
	for _, types := range []rss.HashType{rss.AllHashTypes, rss.HashIPv4 | rss.HashIPv6} {
		e := engine(t, types, msKey, rss.EqualTable(8, 8))
		for i, s := range specs {
			full := frame.Build(s.spec)
			want := e.Steer(full)
			if want.Report == rss.ReportNone {
				t.Fatalf("spec %d: the whole frame is unclassified", i)
			}
			for n := 0; n < len(full); n++ {
				// A fresh slice of exactly n bytes, so a read past the end panics.
				got := e.Steer(append([]byte(nil), full[:n]...))
				switch {
				case n < s.headersEnd && got != (rss.Result{Queue: 7}):
					t.Errorf("spec %d types %s cut at %d of %d (headers end at %d): %+v, want unclassified", i, types, n, len(full), s.headersEnd, got)
				case n >= s.headersEnd && got != want:
					t.Errorf("spec %d cut at %d in the payload: %+v, want %+v", i, n, got, want)
				}
			}
		}
	}
}

func TestMalformed(t *testing.T) {
	e := engine(t, rss.AllHashTypes, msKey, []uint16{0})
	good4 := frame.Build(frame.Spec{Src: a4("1.2.3.4"), Dst: a4("5.6.7.8"), Proto: frame.ProtoTCP})
	good6 := frame.Build(frame.Spec{Src: a4("::1"), Dst: a4("::2"), Proto: frame.ProtoTCP})
	mut := func(b []byte, i int, v byte) []byte { b = append([]byte(nil), b...); b[i] = v; return b }
	for name, f := range map[string][]byte{
		"empty":             nil,
		"arp":               mut(mut(good4, 12, 0x08), 13, 0x06),
		"802.3 length":      mut(mut(good4, 12, 0x00), 13, 0x40),
		"ipv4 version 6":    mut(good4, 14, 0x65),
		"ipv4 ihl 4":        mut(good4, 14, 0x44),
		"ipv4 ihl past end": mut(good4, 14, 0x4f),
		"ipv6 version 4":    mut(good6, 14, 0x40),
	} {
		if r := e.Steer(f); r != (rss.Result{Queue: 7}) {
			t.Errorf("%s: %+v, want unclassified", name, r)
		}
	}
}

func TestValidate(t *testing.T) {
	ok := rss.Config{HashTypes: rss.AllHashTypes, Key: msKey, Table: rss.EqualTable(128, 4), UnclassifiedQueue: 3}
	l := rss.DefaultLimits(4)
	if err := ok.Validate(l); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	bad := func(f func(c *rss.Config)) rss.Config { c := ok.Clone(); f(&c); return c }
	cases := []struct {
		c    rss.Config
		l    rss.Limits
		want error
	}{
		{bad(func(c *rss.Config) { c.Key = nil }), l, rss.ErrKeySize},
		{bad(func(c *rss.Config) { c.Key = make([]byte, 41) }), l, rss.ErrKeySize},
		{bad(func(c *rss.Config) { c.Table = nil }), l, rss.ErrTableLength},
		{bad(func(c *rss.Config) { c.Table = make([]uint16, 96) }), l, rss.ErrTableLength},
		{bad(func(c *rss.Config) { c.Table = make([]uint16, 256) }), l, rss.ErrTableLength},
		{bad(func(c *rss.Config) { c.Table[5] = 4 }), l, rss.ErrQueueRange},
		{bad(func(c *rss.Config) { c.UnclassifiedQueue = 4 }), l, rss.ErrQueueRange},
		{bad(func(c *rss.Config) { c.HashTypes = 1 << 9 }), l, rss.ErrHashTypes},
		{ok, rss.Limits{MaxKeySize: 40, MaxTableLen: 128, Queues: 4, HashTypes: rss.HashIPv4}, rss.ErrHashTypes},
		{ok, rss.Limits{MaxKeySize: 0, MaxTableLen: 128}, rss.ErrInvalidLimits},
	}
	for i, c := range cases {
		if err := c.c.Validate(c.l); !errors.Is(err, c.want) {
			t.Errorf("case %d: %v, want %v", i, err, c.want)
		}
	}
	// Bigger than the defaults is fine within the engine's own bounds.
	big := bad(func(c *rss.Config) { c.Key = make([]byte, 255); c.Table = make([]uint16, rss.MaxTableLen) })
	if _, err := rss.New(big); err != nil {
		t.Errorf("255-byte key, %d-entry table: %v", rss.MaxTableLen, err)
	}
	if _, err := rss.New(bad(func(c *rss.Config) { c.Table = make([]uint16, 2*rss.MaxTableLen) })); !errors.Is(err, rss.ErrTableLength) {
		t.Errorf("oversized table: %v", err)
	}
}

// New copies the configuration: later changes to the caller's slices do not
// reach the engine.
func TestNewCopies(t *testing.T) {
	c := rss.Config{HashTypes: rss.AllHashTypes, Key: append([]byte(nil), msKey...), Table: []uint16{1, 1}}
	e, err := rss.New(c)
	if err != nil {
		t.Fatal(err)
	}
	f := frame.Build(frame.Spec{Src: a4("1.2.3.4"), Dst: a4("5.6.7.8"), Proto: frame.ProtoTCP})
	before := e.Steer(f)
	c.Key[0]++
	c.Table[0], c.Table[1] = 0, 0
	if after := e.Steer(f); after != before {
		t.Errorf("engine changed with caller's slices: %+v → %+v", before, after)
	}
}

func TestHashTypeNames(t *testing.T) {
	ht, err := rss.ParseHashTypes("IPv4, tcp_ex,udpv6")
	if err != nil || ht != rss.HashIPv4|rss.HashTCPEx|rss.HashUDPv6 {
		t.Fatalf("ParseHashTypes: %v %v", ht, err)
	}
	if s := ht.String(); s != "ipv4,udpv6,tcp_ex" {
		t.Errorf("String: %q", s)
	}
	if all, _ := rss.ParseHashTypes("all"); all != rss.AllHashTypes {
		t.Errorf("all: %v", all)
	}
	if _, err := rss.ParseHashTypes("ipv5"); err == nil {
		t.Error("ipv5 accepted")
	}
	if s := rss.ReportUDPv6Ex.String(); s != "udpv6_ex" {
		t.Errorf("report name %q", s)
	}
}

func TestSteerDoesNotAllocate(t *testing.T) {
	e := engine(t, rss.AllHashTypes, msKey, rss.EqualTable(128, 4))
	f := frame.Build(frame.Spec{Src: a4("2001:db8::1"), Dst: a4("2001:db8::2"), Proto: frame.ProtoUDP,
		Ext: []frame.ExtHeader{frame.HomeAddressOption(a4("2001:db8::3"))}})
	if n := testing.AllocsPerRun(100, func() { e.Steer(f) }); n != 0 {
		t.Errorf("Steer allocates %v times", n)
	}
}

func ExampleEngine_Steer() {
	e, err := rss.New(rss.Config{
		HashTypes: rss.HashIPv4 | rss.HashTCPv4,
		Key:       rss.DefaultKey,
		Table:     rss.EqualTable(128, 4),
	})
	if err != nil {
		panic(err)
	}
	f := frame.Build(frame.Spec{Src: netip.MustParseAddr("66.9.149.187"), Dst: netip.MustParseAddr("161.142.100.80"),
		Proto: frame.ProtoTCP, SrcPort: 2794, DstPort: 1766})
	r := e.Steer(f)
	fmt.Printf("queue %d hash %#08x %s\n", r.Queue, r.Hash, r.Report)
	// Output: queue 0 hash 0x51ccc178 tcpv4
}

func TestWeightedTable(t *testing.T) {
	count := func(tab []uint16) map[uint16]int {
		m := map[uint16]int{}
		for _, q := range tab {
			m[q]++
		}
		return m
	}
	if got := count(rss.WeightedTable(128, []int{5, 3, 0, 0, 1, 1})); got[0] != 64 || got[1] != 38 || got[2] != 0 || got[3] != 0 || got[4] != 13 || got[5] != 13 {
		t.Errorf("weights 5,3,0,0,1,1: %v", got)
	}
	// The layout ethtool -X weight 5 3 1 1 gives a 128-entry table.
	if got := count(rss.WeightedTable(128, []int{5, 3, 1, 1})); got[0] != 64 || got[1] != 38 || got[2] != 13 || got[3] != 13 {
		t.Errorf("weights 5,3,1,1: %v", got)
	}
	if got := rss.WeightedTable(8, []int{1, 1}); fmt.Sprint(got) != "[0 0 0 0 1 1 1 1]" {
		t.Errorf("weights 1,1: %v", got)
	}
	for _, bad := range [][]int{nil, {0, 0}, {1, -1}} {
		if got := rss.WeightedTable(8, bad); got != nil {
			t.Errorf("weights %v: %v, want nil", bad, got)
		}
	}
}
