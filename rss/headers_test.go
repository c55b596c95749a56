package rss_test

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/vrss-dev/vrss/internal/frame"
	"github.com/vrss-dev/vrss/internal/proto"
	"github.com/vrss-dev/vrss/rss"
)

// exact returns a copy of b whose capacity is its length, so that any read
// past the end panics, even through a reslice.
func exact(b []byte) []byte {
	c := append([]byte(nil), b...)
	return c[:len(c):len(c)]
}

func TestParseHeaders(t *testing.T) {
	s4, d4 := a4("10.0.0.1"), a4("10.0.0.2")
	s6, d6 := a4("2001:db8::1"), a4("2001:db8::2")
	tcp4 := frame.Spec{Src: s4, Dst: d4, Proto: frame.ProtoTCP, SrcPort: 1000, DstPort: 80, Payload: 3}
	udp4 := frame.Spec{Src: s4, Dst: d4, Proto: frame.ProtoUDP, SrcPort: 1000, DstPort: 53, Payload: 3}
	icmp4 := frame.Spec{Src: s4, Dst: d4, Proto: frame.ProtoICMP, Payload: 8}
	tcp6 := frame.Spec{Src: s6, Dst: d6, Proto: frame.ProtoTCP, SrcPort: 1000, DstPort: 80, Payload: 3}
	udp6 := frame.Spec{Src: s6, Dst: d6, Proto: frame.ProtoUDP, SrcPort: 1000, DstPort: 53, Payload: 3}
	vlan := func(s frame.Spec, tpids ...uint16) frame.Spec { s.VLANs = tpids; return s }
	frag4 := func(s frame.Spec, off uint16, more bool) frame.Spec { s.FragOffset, s.MoreFrags = off, more; return s }
	with := func(s frame.Spec, ext ...frame.ExtHeader) frame.Spec { s.Ext = ext; return s }
	hbh := frame.ExtHeader{Type: proto.IPProtoHopOpts, Data: make([]byte, 6)} // 8 bytes
	dst := frame.ExtHeader{Type: proto.IPProtoDstOpts, Data: make([]byte, 6)} // 8 bytes
	rt := frame.ExtHeader{Type: proto.IPProtoRouting, Data: make([]byte, 14)} // 16 bytes
	ah := frame.ExtHeader{Type: proto.IPProtoAH, Data: make([]byte, 10)}      // 12 bytes
	mh := frame.ExtHeader{Type: proto.IPProtoMH, Data: make([]byte, 6)}       // 8 bytes
	chain := func(n int, h frame.ExtHeader) []frame.ExtHeader {
		c := make([]frame.ExtHeader, n)
		for i := range c {
			c[i] = h
		}
		return c
	}
	// Offsets of an untagged frame's IP header, addresses and transport.
	const l3 = 14
	v4 := func(ports int) rss.Headers {
		return rss.Headers{EtherType: 0x0800, Family: 4, Src: l3 + 12, Dst: l3 + 16, HasProto: true, Ports: ports}
	}
	v6 := func(next uint8, ports int) rss.Headers {
		return rss.Headers{EtherType: 0x86dd, Family: 6, Src: l3 + 8, Dst: l3 + 24, Proto: next, HasProto: true, Ports: ports}
	}
	set := func(h rss.Headers, f func(*rss.Headers)) rss.Headers { f(&h); return h }
	tcp := func(h rss.Headers) rss.Headers { h.Proto, h.Transport = 6, 6; return h }
	udp := func(h rss.Headers) rss.Headers { h.Proto, h.Transport = 17, 17; return h }
	ethOnly := func(etype uint16) rss.Headers { return rss.Headers{EtherType: etype} }

	cases := []struct {
		name string
		b    []byte
		want rss.Headers
	}{
		{"ipv4 tcp", frame.Build(tcp4), tcp(v4(34))},
		{"ipv4 udp", frame.Build(udp4), udp(v4(34))},
		{"ipv4 icmp", frame.Build(icmp4), set(v4(0), func(h *rss.Headers) { h.Proto = 1 })},
		{"ipv4 options", frame.Build(func() frame.Spec { s := tcp4; s.IPv4Opts = make([]byte, 12); return s }()), tcp(v4(34 + 12))},
		{"ipv4 first fragment shows its ports", frame.Build(frag4(tcp4, 0, true)), set(tcp(v4(34)), func(h *rss.Headers) { h.Fragment = true })},
		{"ipv4 first udp fragment", frame.Build(frag4(udp4, 0, true)), set(udp(v4(34)), func(h *rss.Headers) { h.Fragment = true })},
		{"ipv4 first fragment, tcp header cut", frame.Build(frag4(tcp4, 0, true))[:34+19],
			set(v4(0), func(h *rss.Headers) { h.Proto, h.Fragment = 6, true })},
		{"ipv4 later fragment", frame.Build(frag4(tcp4, 100, true)), set(v4(0), func(h *rss.Headers) { h.Proto, h.Fragment = 6, true })},
		{"ipv4 last fragment", frame.Build(frag4(udp4, 7, false)), set(v4(0), func(h *rss.Headers) { h.Proto, h.Fragment = 17, true })},
		{"ipv4 header cut", frame.Build(tcp4)[:l3+19], ethOnly(0x0800)},
		{"ipv4 options cut", frame.Build(func() frame.Spec { s := tcp4; s.IPv4Opts = make([]byte, 12); return s }())[:l3+30], ethOnly(0x0800)},
		{"ipv4 tcp cut", frame.Build(tcp4)[:34+19], ethOnly(0x0800)},
		{"ipv4 udp cut", frame.Build(udp4)[:34+7], ethOnly(0x0800)},
		{"ipv4 bad version", func() []byte { b := frame.Build(tcp4); b[l3] = 0x65; return b }(), ethOnly(0x0800)},

		{"one tag", frame.Build(vlan(tcp4, 0x8100)), set(tcp(v4(38)), func(h *rss.Headers) {
			h.Tagged, h.TCI, h.Src, h.Dst = true, 100, h.Src+4, h.Dst+4
		})},
		{"two tags: the outer TCI", frame.Build(vlan(udp6, 0x88a8, 0x8100)), set(udp(v6(17, 62)), func(h *rss.Headers) {
			h.Tagged, h.TCI, h.Src, h.Dst = true, 100, h.Src+8, h.Dst+8
		})},
		{"three tags: the third TPID, no IP", frame.Build(vlan(tcp4, 0x88a8, 0x8100, 0x88a8)), rss.Headers{EtherType: 0x88a8, Tagged: true, TCI: 100}},
		{"tag cut", frame.Build(vlan(tcp4, 0x8100))[:17], ethOnly(0x8100)},
		{"second tag cut", frame.Build(vlan(tcp4, 0x8100, 0x8100))[:21], rss.Headers{EtherType: 0x8100, Tagged: true, TCI: 100}},
		{"tagged, non-IP", func() []byte { b := frame.Build(vlan(tcp4, 0x8100)); b[16], b[17] = 0x08, 0x06; return b }(),
			rss.Headers{EtherType: 0x0806, Tagged: true, TCI: 100}},
		{"tagged, ipv4 cut", frame.Build(vlan(tcp4, 0x8100))[:30], rss.Headers{EtherType: 0x0800, Tagged: true, TCI: 100}},

		{"ipv6 tcp", frame.Build(tcp6), tcp(v6(6, 54))},
		{"ipv6 udp", frame.Build(udp6), udp(v6(17, 54))},
		{"ipv6 icmp", frame.Build(frame.Spec{Src: s6, Dst: d6, Proto: 58, Payload: 8}), v6(58, 0)},
		{"ipv6 hbh dstopts routing ah, tcp", frame.Build(with(tcp6, hbh, dst, rt, ah)), tcp(v6(6, 54+8+8+16+12))},
		{"ipv6 ah mh, udp", frame.Build(with(udp6, ah, mh)), udp(v6(17, 54+12+8))},
		{"ipv6 dstopts, esp", frame.Build(with(frame.Spec{Src: s6, Dst: d6, Proto: 50, Payload: 8}, dst)), v6(50, 0)},
		{"ipv6 no next header", frame.Build(with(frame.Spec{Src: s6, Dst: d6, Proto: 59}, hbh)), v6(59, 0)},
		{"ipv6 8 extension headers", frame.Build(with(tcp6, chain(8, dst)...)), tcp(v6(6, 54+64))},
		{"ipv6 9 extension headers", frame.Build(with(tcp6, chain(9, dst)...)), ethOnly(0x86dd)},
		{"ipv6 header cut", frame.Build(tcp6)[:l3+39], ethOnly(0x86dd)},
		{"ipv6 extension header cut", frame.Build(with(tcp6, hbh, rt))[:54+8+15], ethOnly(0x86dd)},
		{"ipv6 tcp cut", frame.Build(with(tcp6, hbh))[:54+8+19], ethOnly(0x86dd)},
		{"ipv6 udp cut", frame.Build(udp6)[:54+7], ethOnly(0x86dd)},
		{"ipv6 bad version", func() []byte { b := frame.Build(tcp6); b[l3] = 0x40; return b }(), ethOnly(0x86dd)},

		{"ipv6 first fragment, then extension headers and tcp", frame.Build(with(tcp6, hbh, frame.FragmentHeader(0, true), dst, ah)),
			set(tcp(v6(6, 54+8+8+8+12)), func(h *rss.Headers) { h.Fragment = true })},
		{"ipv6 first fragment, udp", frame.Build(with(udp6, frame.FragmentHeader(0, true))),
			set(udp(v6(17, 54+8)), func(h *rss.Headers) { h.Fragment = true })},
		{"ipv6 later fragment: the fragment header's next header", frame.Build(with(tcp6, hbh, frame.FragmentHeader(9, true), dst)),
			set(v6(proto.IPProtoDstOpts, 0), func(h *rss.Headers) { h.Fragment = true })},
		{"ipv6 last fragment, tcp", frame.Build(with(tcp6, frame.FragmentHeader(9, false))),
			set(v6(6, 0), func(h *rss.Headers) { h.Fragment = true })},
		{"ipv6 first fragment, chain cut", frame.Build(with(tcp6, frame.FragmentHeader(0, true), rt))[:54+8+15],
			set(v6(proto.IPProtoRouting, 0), func(h *rss.Headers) { h.Fragment, h.HasProto = true, false })},
		{"ipv6 first fragment, chain ends at the fragment header", frame.Build(with(tcp6, frame.FragmentHeader(0, true), dst))[:54+8],
			set(v6(proto.IPProtoDstOpts, 0), func(h *rss.Headers) { h.Fragment, h.HasProto = true, false })},
		{"ipv6 first fragment, tcp cut", frame.Build(with(tcp6, frame.FragmentHeader(0, true), dst))[:54+16+19],
			set(v6(6, 0), func(h *rss.Headers) { h.Fragment = true })},
		{"ipv6 first fragment, 8 extension headers in all", frame.Build(with(tcp6, append([]frame.ExtHeader{frame.FragmentHeader(0, true)}, chain(7, dst)...)...)),
			set(tcp(v6(6, 54+64)), func(h *rss.Headers) { h.Fragment = true })},
		{"ipv6 first fragment, 9 extension headers in all", frame.Build(with(tcp6, append([]frame.ExtHeader{frame.FragmentHeader(0, true)}, chain(8, dst)...)...)),
			set(v6(proto.IPProtoDstOpts, 0), func(h *rss.Headers) { h.Fragment, h.HasProto = true, false })},
		{"ipv6 atomic fragment is whole", frame.Build(with(tcp6, frame.FragmentHeader(0, false))), tcp(v6(6, 54+8))},

		{"arp", func() []byte { b := frame.Build(tcp4); b[12], b[13] = 0x08, 0x06; return b }(), ethOnly(0x0806)},
		{"ethernet header only", frame.Build(tcp4)[:14], ethOnly(0x0800)},
		{"13 bytes", frame.Build(tcp4)[:13], rss.Headers{}},
		{"empty", nil, rss.Headers{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := rss.ParseHeaders(exact(c.b)); got != c.want {
				t.Errorf("got  %+v\nwant %+v", got, c.want)
			}
		})
	}
}

// A first IPv6 fragment whose chain after the fragment header is cut off,
// or too long, shows rules no protocol and no ports; RSS hashes it on its
// addresses all the same, as it hashes the whole frame.
func TestFirstFragmentChainCutKeepsHash(t *testing.T) {
	s6, d6 := a4("2001:db8::1"), a4("2001:db8::2")
	dst := frame.ExtHeader{Type: proto.IPProtoDstOpts, Data: make([]byte, 14)} // 16 bytes
	whole := frame.Build(frame.Spec{Src: s6, Dst: d6, Proto: frame.ProtoTCP, SrcPort: 1, DstPort: 2,
		Ext: []frame.ExtHeader{frame.FragmentHeader(0, true), dst, dst}})
	for _, types := range []rss.HashType{rss.AllHashTypes, rss.HashIPv6, rss.HashIPEx} {
		e := engine(t, types, msKey, rss.EqualTable(128, 4))
		want := e.Steer(whole)
		if want.Report == rss.ReportNone || want.Hash != hashOf(s6, d6) {
			t.Fatalf("types %s: whole first fragment %+v, want the addresses' hash", types, want)
		}
		for n := 54 + 8; n < len(whole); n++ {
			cut := exact(whole[:n])
			if got := e.Steer(cut); got != want {
				t.Errorf("types %s, cut at %d: %+v, want %+v", types, n, got, want)
			}
			h := rss.ParseHeaders(cut)
			if h.Family != 6 || !h.Fragment || h.Ports != 0 || h.HasProto != (n >= 54+8+32) {
				t.Errorf("cut at %d: %+v", n, h)
			}
		}
	}
	chain := []frame.ExtHeader{frame.FragmentHeader(0, true)}
	for i := 0; i < rss.MaxExtHeaders; i++ {
		chain = append(chain, dst)
	}
	long := frame.Build(frame.Spec{Src: s6, Dst: d6, Proto: frame.ProtoTCP, SrcPort: 1, DstPort: 2, Ext: chain})
	e := engine(t, rss.AllHashTypes, msKey, rss.EqualTable(128, 4))
	if got := e.Steer(long); got.Report != rss.ReportIPv6Ex || got.Hash != hashOf(s6, d6) {
		t.Errorf("first fragment with %d extension headers: %+v, want ipv6_ex on the addresses", len(chain), got)
	}
	if h := rss.ParseHeaders(long); h.Family != 6 || !h.Fragment || h.HasProto || h.Ports != 0 {
		t.Errorf("first fragment with %d extension headers: %+v, want no protocol or ports", len(chain), h)
	}
}

// ParseHeaders' family, addresses and ports are the ones Steer hashes:
// under the hash types without _EX (no address substitution) the hash of
// every random frame is the Toeplitz hash of the fields at the offsets
// ParseHeaders gives, with the ports for a TCP or UDP non-fragment.
func TestParseHeadersAgreesWithSteer(t *testing.T) {
	const (
		v4 = rss.HashIPv4 | rss.HashTCPv4 | rss.HashUDPv4
		v6 = rss.HashIPv6 | rss.HashTCPv6 | rss.HashUDPv6
	)
	table := rss.EqualTable(128, 16)
	full := engine(t, v4|v6, msKey, table)
	ipOnly := engine(t, rss.HashIPv4|rss.HashIPv6, msKey, table)
	all := engine(t, rss.AllHashTypes, msKey, table)
	toe := rss.NewToeplitz(msKey)
	r := rand.New(rand.NewPCG(5, 6))
	n := 200_000
	if testing.Short() {
		n = 20_000
	}
	seen := map[string]int{}
	for i := 0; i < n; i++ {
		b := exact(frame.Random(r))
		h := rss.ParseHeaders(b)
		if h.Family == 0 {
			if h != (rss.Headers{EtherType: h.EtherType, Tagged: h.Tagged, TCI: h.TCI}) {
				t.Fatalf("frame %x: no family but %+v", b, h)
			}
			for _, e := range []*rss.Engine{full, ipOnly, all} {
				if got := e.Steer(b); got != (rss.Result{Queue: 7}) {
					t.Fatalf("frame %x: no family, but steered %+v", b, got)
				}
			}
			seen["non-IP"]++
			continue
		}
		alen := 4
		if h.Family == 6 {
			alen = 16
		}
		if h.Src+alen > len(b) || h.Dst+alen > len(b) || h.Ports+4 > len(b) || (h.Transport == 6 && h.Ports+20 > len(b)) {
			t.Fatalf("frame %x: offsets past the end: %+v", b, h)
		}
		in := append(append([]byte(nil), b[h.Src:h.Src+alen]...), b[h.Dst:h.Dst+alen]...)
		addrHash := toe.Hash(in)
		ipReport := rss.ReportIPv4
		if h.Family == 6 {
			ipReport = rss.ReportIPv6
		}
		want := rss.Result{Hash: addrHash, Report: ipReport}
		if h.Ports != 0 && !h.Fragment {
			want.Hash = toe.Hash(append(in, b[h.Ports:h.Ports+4]...))
			want.Report = map[uint8]rss.HashReport{6: rss.ReportTCPv4, 17: rss.ReportUDPv4}[h.Transport]
			if h.Family == 6 {
				want.Report += rss.ReportIPv6 - rss.ReportIPv4
			}
			seen["ports"]++
		} else if h.Ports != 0 {
			seen["first fragment with ports"]++
		}
		want.Queue = table[want.Hash&127]
		if got := full.Steer(b); got != want {
			t.Fatalf("frame %x: headers %+v: Steer %+v, want %+v", b, h, got, want)
		}
		if got := ipOnly.Steer(b); got != (rss.Result{Queue: table[addrHash&127], Hash: addrHash, Report: ipReport}) {
			t.Fatalf("frame %x: headers %+v: ip-only Steer %+v, want the addresses' hash %#x", b, h, got, addrHash)
		}
		if got := all.Steer(b); got.Report == rss.ReportNone {
			t.Fatalf("frame %x: headers %+v: all types leave it unclassified", b, h)
		}
		if h.Fragment {
			seen["fragment"]++
		}
	}
	for _, k := range []string{"non-IP", "ports", "fragment", "first fragment with ports"} {
		if seen[k] < n/1000 {
			t.Errorf("only %d frames of kind %q in %d", seen[k], k, n)
		}
	}
}

// Every frame of the stream cut at a random length: ParseHeaders never
// reads past the end (the slices have no spare capacity) and gives no IP
// fields for a cut the hash calls truncated.
func TestParseHeadersCut(t *testing.T) {
	e := engine(t, rss.HashIPv4|rss.HashIPv6, msKey, []uint16{0})
	r := rand.New(rand.NewPCG(8, 9))
	for i := 0; i < 20_000; i++ {
		b := frame.Build(frame.RandomSpec(r))
		for n := 0; n <= len(b); n += 1 + r.IntN(4) {
			cut := exact(b[:n])
			h := rss.ParseHeaders(cut)
			if (h.Family == 0) != (e.Steer(cut).Report == rss.ReportNone) {
				t.Fatalf("frame %x: headers %+v disagree with Steer %+v", cut, h, e.Steer(cut))
			}
			if n < 14 && h != (rss.Headers{}) {
				t.Fatalf("frame %x: %+v, want nothing", cut, h)
			}
		}
	}
}

// goldenSteerDigest is steerDigest(200000) computed with rss as it was
// before ParseHeaders and the flow fields were added (commit 0dfadf4). If
// internal/frame's Random or Build change, recompute it there (git archive
// 0dfadf4, this function and goldenConfigs copied in) rather than here.
const goldenSteerDigest = "8d9d33481bc91d298728a81245cc314f7b501f386828ffc48643c2e14564dcbd"

// The additions for flow rules change no hash, queue or report: 200,000
// random frames steered under five configurations give the same results
// as before them.
func TestSteerUnchangedByFlowFields(t *testing.T) {
	if got := steerDigest(t, 200_000); got != goldenSteerDigest {
		t.Errorf("Steer results changed: digest %s, want %s", got, goldenSteerDigest)
	}
}

func goldenConfigs() []rss.Config {
	key := make([]byte, 40)
	for i := range key {
		key[i] = byte(i*37 + 1)
	}
	table := make([]uint16, 256)
	for i := range table {
		table[i] = uint16(i * 7 % 13)
	}
	const (
		v4 = rss.HashIPv4 | rss.HashTCPv4 | rss.HashUDPv4
		v6 = rss.HashIPv6 | rss.HashTCPv6 | rss.HashUDPv6
		ex = rss.HashIPEx | rss.HashTCPEx | rss.HashUDPEx
	)
	return []rss.Config{
		{HashTypes: rss.AllHashTypes, Key: rss.DefaultKey, Table: rss.EqualTable(128, 4), UnclassifiedQueue: 7},
		{HashTypes: rss.HashIPv4 | rss.HashIPv6, Key: rss.DefaultKey, Table: rss.EqualTable(128, 4), UnclassifiedQueue: 7},
		{HashTypes: v4 | v6, Key: key, Table: table, UnclassifiedQueue: 3},
		{HashTypes: ex, Key: key, Table: table, UnclassifiedQueue: 3},
		{HashTypes: rss.HashIPv4 | rss.HashUDPv4 | rss.HashTCPv6 | rss.HashIPEx, Key: key[:13], Table: table, UnclassifiedQueue: 12},
	}
}

// steerDigest is the SHA-256 of every (queue, hash, report) the engines of
// goldenConfigs give the first frames of frame.Random's stream from a
// fixed seed.
func steerDigest(t testing.TB, frames int) string {
	var es []*rss.Engine
	for _, c := range goldenConfigs() {
		e, err := rss.New(c)
		if err != nil {
			t.Fatal(err)
		}
		es = append(es, e)
	}
	r := rand.New(rand.NewPCG(20261128, 7))
	h := sha256.New()
	var buf [8]byte
	for i := 0; i < frames; i++ {
		f := frame.Random(r)
		f = f[:len(f):len(f)]
		for _, e := range es {
			res := e.Steer(f)
			binary.BigEndian.PutUint16(buf[0:], res.Queue)
			binary.BigEndian.PutUint32(buf[2:], res.Hash)
			binary.BigEndian.PutUint16(buf[6:], uint16(res.Report))
			h.Write(buf[:])
		}
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}
