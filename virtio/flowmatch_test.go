package virtio

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"testing"

	"github.com/vrss-dev/vrss/flow"
	"github.com/vrss-dev/vrss/internal/frame"
)

func TestMatchOfGolden(t *testing.T) {
	m, err := MatchOf(&goldenClassifierValue, goldenRuleKey)
	if err != nil {
		t.Fatal(err)
	}
	var want flow.Match
	want.SetEtherType(0x0800, 0xffff)
	want.SetProto(6, 0xff)
	want.SetDstIP(netip.MustParseAddr("10.1.2.0"), netip.MustParseAddr("255.255.255.0"))
	want.SetDstPort(443, 0xffff)
	if err := want.Normalize(); err != nil {
		t.Fatal(err)
	}
	if m != want {
		t.Errorf("MatchOf = %s\nwant      %s", m.String(), want.String())
	}
	if s := m.String(); s != "ether-type 0x0800 proto 6 dst-ip 10.1.2.0/24 dst-port 443" {
		t.Errorf("String = %q", s)
	}
	hit := flow.KeyOf(frame.Build(frame.Spec{Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("10.1.2.77"), Proto: frame.ProtoTCP, SrcPort: 5555, DstPort: 443}))
	miss := flow.KeyOf(frame.Build(frame.Spec{Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("10.1.3.77"), Proto: frame.ProtoTCP, SrcPort: 5555, DstPort: 443}))
	udp := flow.KeyOf(frame.Build(frame.Spec{Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("10.1.2.77"), Proto: frame.ProtoUDP, SrcPort: 5555, DstPort: 443}))
	if !m.Matches(&hit) || m.Matches(&miss) || m.Matches(&udp) {
		t.Errorf("matches 10.1.2.77:443/tcp %v, 10.1.3.77 %v, udp %v", m.Matches(&hit), m.Matches(&miss), m.Matches(&udp))
	}
}

// sel returns a selector of type t masking the byte ranges [from, to).
func sel(t uint8, mask ...[2]int) Selector {
	s := Selector{Type: t, Mask: make([]byte, SelectorLen(t))}
	for _, r := range mask {
		for i := r[0]; i < r[1]; i++ {
			s.Mask[i] = 0xff
		}
	}
	return s
}

func TestMatchOfShapes(t *testing.T) {
	mac := unhex("02 00 00 00 00 01")
	for _, tc := range []struct {
		name string
		c    FFClassifier
		key  []byte
		want func(*flow.Match)
	}{
		{"ETH destination MAC", FFClassifier{Selectors: []Selector{sel(SelectorETH, [2]int{0, 6})}},
			append(bytes.Clone(mac), make([]byte, 8)...),
			func(m *flow.Match) { m.SetDstMAC(mac[:6], nil) }},
		{"ETH ARP", FFClassifier{Selectors: []Selector{sel(SelectorETH, [2]int{12, 14})}},
			unhex("00 00 00 00 00 00 00 00 00 00 00 00 08 06"),
			func(m *flow.Match) { m.SetEtherType(0x0806, 0xffff) }},
		{"IPv6 alone, nothing masked", FFClassifier{Selectors: []Selector{sel(SelectorETH), sel(SelectorIPv6)}},
			make([]byte, 54),
			func(m *flow.Match) { m.SetEtherType(0x86dd, 0xffff) }},
		{"IPv6 UDP source port", FFClassifier{Selectors: []Selector{sel(SelectorETH, [2]int{12, 14}), sel(SelectorIPv6, [2]int{6, 7}), sel(SelectorUDP, [2]int{0, 2})}},
			append(append(unhex("00 00 00 00 00 00 00 00 00 00 00 00 86 dd"), unhex("60 00 00 00 00 00 11 00")...), append(make([]byte, 32), unhex("00 35 00 00 00 00 00 00")...)...),
			func(m *flow.Match) { m.SetEtherType(0x86dd, 0xffff); m.SetProto(17, 0xff); m.SetSrcPort(53, 0xffff) }},
		{"TCP SYN without ACK, protocol not masked", FFClassifier{Selectors: []Selector{sel(SelectorETH), sel(SelectorIPv4), {Type: SelectorTCP, Mask: unhex("00 00 00 00 00 00 00 00 00 00 00 00 00 12 00 00 00 00 00 00")}}},
			append(make([]byte, 34), unhex("00 00 00 00 00 00 00 00 00 00 00 00 00 02 00 00 00 00 00 00")...),
			func(m *flow.Match) { m.SetEtherType(0x0800, 0xffff); m.SetProto(6, 0xff); m.SetTCPFlags(0x02, 0x12) }},
		{"IPv4 source prefix, partial", FFClassifier{Selectors: []Selector{sel(SelectorETH), {Type: SelectorIPv4, Mask: unhex("00 00 00 00 00 00 00 00 00 00 00 00 ff f0 00 00 00 00 00 00")}}},
			append(make([]byte, 14), unhex("00 00 00 00 00 00 00 00 00 00 00 00 0a 1f 00 00 00 00 00 00")...),
			func(m *flow.Match) {
				m.SetEtherType(0x0800, 0xffff)
				m.SetSrcIP(netip.MustParseAddr("10.16.0.0"), netip.MustParseAddr("255.240.0.0"))
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := MatchOf(&tc.c, tc.key)
			if err != nil {
				t.Fatal(err)
			}
			var want flow.Match
			tc.want(&want)
			if err := want.Normalize(); err != nil {
				t.Fatal(err)
			}
			if m != want {
				t.Errorf("MatchOf = %s (% x)\nwant      %s (% x)", m.String(), m.Mask, want.String(), want.Mask)
			}
		})
	}
}

func TestMatchOfErrors(t *testing.T) {
	eth, ip4, ip6, tcp, udp := sel(SelectorETH, [2]int{12, 14}), sel(SelectorIPv4, [2]int{9, 10}), sel(SelectorIPv6), sel(SelectorTCP), sel(SelectorUDP)
	esp := Selector{Type: SelectorESP, Mask: make([]byte, 8)}
	key := func(c FFClassifier) []byte {
		n := 0
		for _, s := range c.Selectors {
			n += len(s.Mask)
		}
		return make([]byte, n)
	}
	ttl := sel(SelectorIPv4, [2]int{8, 9})
	ver := sel(SelectorIPv6, [2]int{0, 1})
	seq := sel(SelectorTCP, [2]int{4, 8})
	ulen := sel(SelectorUDP, [2]int{4, 6})
	short := Selector{Type: SelectorETH, Mask: make([]byte, 13)}
	for _, tc := range []struct {
		name string
		c    FFClassifier
		key  []byte // nil: zeros of the right length
		want error
	}{
		{"no selectors", FFClassifier{}, nil, ErrSelector},
		{"four selectors", FFClassifier{Selectors: []Selector{eth, ip4, tcp, udp}}, nil, ErrSelector},
		{"IPv4 first", FFClassifier{Selectors: []Selector{ip4}}, nil, ErrSelector},
		{"ETH twice", FFClassifier{Selectors: []Selector{eth, eth}}, nil, ErrSelector},
		{"TCP second", FFClassifier{Selectors: []Selector{eth, tcp}}, nil, ErrSelector},
		{"ESP", FFClassifier{Selectors: []Selector{eth, ip4, esp}}, nil, ErrSelector},
		{"unknown type", FFClassifier{Selectors: []Selector{eth, {Type: 9}}}, nil, ErrSelector},
		{"short ETH mask", FFClassifier{Selectors: []Selector{short}}, nil, ErrSelector},
		{"IPv4 TTL", FFClassifier{Selectors: []Selector{eth, ttl}}, nil, ErrMask},
		{"IPv6 version", FFClassifier{Selectors: []Selector{eth, ver}}, nil, ErrMask},
		{"TCP sequence", FFClassifier{Selectors: []Selector{eth, ip4, seq}}, nil, ErrMask},
		{"UDP length", FFClassifier{Selectors: []Selector{eth, ip6, ulen}}, nil, ErrMask},
		{"key too short", goldenClassifierValue, goldenRuleKey[:53], ErrKey},
		{"key too long", goldenClassifierValue, append(bytes.Clone(goldenRuleKey), 0), ErrKey},
		{"key EtherType ARP under IPv4", goldenClassifierValue, patch(goldenRuleKey, 12, 0x08, 0x06), ErrKey},
		{"key protocol UDP under TCP", goldenClassifierValue, patch(goldenRuleKey, 14+9, 17), ErrKey},
		{"key EtherType zero under IPv6", FFClassifier{Selectors: []Selector{eth, ip6}}, nil, ErrKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := tc.key
			if k == nil {
				k = key(tc.c)
			}
			m, err := MatchOf(&tc.c, k)
			if !errors.Is(err, tc.want) || m != (flow.Match{}) {
				t.Errorf("MatchOf = %s, %v; want %v", m.String(), err, tc.want)
			}
		})
	}
	// An unmasked EtherType or protocol in the key is not compared.
	c := FFClassifier{Selectors: []Selector{sel(SelectorETH), sel(SelectorIPv4), sel(SelectorTCP)}}
	if _, err := MatchOf(&c, make([]byte, 54)); err != nil {
		t.Errorf("unmasked zero EtherType and protocol: %v", err)
	}
}

func TestClassifierCap(t *testing.T) {
	cap := SupportedSelectors()
	whole := cap.Clone()
	for i := range whole.Selectors {
		whole.Selectors[i].Flags = 0
	}
	noIPv6 := FFSelectorCap{Selectors: []Selector{cap.Selectors[0], cap.Selectors[1], cap.Selectors[3], cap.Selectors[4]}}
	macOnly := FFSelectorCap{Selectors: []Selector{sel(SelectorETH, [2]int{0, 6})}}
	prefix := FFClassifier{Selectors: []Selector{sel(SelectorETH), {Type: SelectorIPv4, Mask: unhex("00 00 00 00 00 00 00 00 00 00 00 00 ff f0 00 00 00 00 00 00")}}}
	syn := FFClassifier{Selectors: []Selector{sel(SelectorETH, [2]int{12, 14}), sel(SelectorIPv4, [2]int{9, 10}), {Type: SelectorTCP, Mask: unhex("ff ff 00 00 00 00 00 00 00 00 00 00 00 12 00 00 00 00 00 00")}}}
	v6 := FFClassifier{Selectors: []Selector{sel(SelectorETH, [2]int{12, 14}), sel(SelectorIPv6, [2]int{8, 24})}}
	ethType := FFClassifier{Selectors: []Selector{sel(SelectorETH, [2]int{12, 14})}}
	for _, tc := range []struct {
		name string
		c    FFClassifier
		cap  FFSelectorCap
		max  uint8
		want error
	}{
		{"prefix with partial masks", prefix, cap, 3, nil},
		{"prefix without partial masks", prefix, whole, 3, ErrMask},
		{"TCP flag bits without partial masks", syn, whole, 3, nil},
		{"three selectors, limit two", syn, cap, 2, ErrSelector},
		{"IPv6 not in the driver's capability", v6, noIPv6, 3, ErrSelector},
		{"IPv6 whole fields", v6, whole, 3, nil},
		{"EtherType outside the driver's mask", ethType, macOnly, 3, ErrMask},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := checkClassifier(&tc.c); err != nil {
				t.Fatal(err)
			}
			if err := checkClassifierCap(&tc.c, &tc.cap, tc.max); !errors.Is(err, tc.want) || (err == nil) != (tc.want == nil) {
				t.Errorf("checkClassifierCap = %v, want %v", err, tc.want)
			}
		})
	}
}

// headers returns the header images the selectors of c see in a plain
// frame (no VLAN tag, IPv4 options or IPv6 extension headers): what the
// specification matches keys against, read straight from the frame.
func headers(c *FFClassifier, b []byte) ([][]byte, bool) {
	var out [][]byte
	off := 0
	for i, s := range c.Selectors {
		n := SelectorLen(s.Type)
		if off+n > len(b) {
			return nil, false
		}
		h := b[off : off+n]
		switch {
		case i == 1 && s.Type == SelectorIPv4 && (b[12] != 0x08 || b[13] != 0x00),
			i == 1 && s.Type == SelectorIPv6 && (b[12] != 0x86 || b[13] != 0xdd),
			i == 2 && s.Type == SelectorTCP && b[off-ipLen(c)+protoOff(c)] != 6,
			i == 2 && s.Type == SelectorUDP && b[off-ipLen(c)+protoOff(c)] != 17:
			return nil, false
		}
		out = append(out, h)
		off += n
	}
	return out, true
}

// ipLen and protoOff give the IP selector's header length and where its
// protocol (next header) byte lies.
func ipLen(c *FFClassifier) int { return SelectorLen(c.Selectors[1].Type) }

func protoOff(c *FFClassifier) int {
	if c.Selectors[1].Type == SelectorIPv6 {
		return 6
	}
	return 9
}

// TestMatchOfAgainstSpec checks MatchOf against a direct reading of the
// specification on random plain frames: a rule matches when, for every
// selector, the frame has that header and its bytes under the mask equal
// the key's.
func TestMatchOfAgainstSpec(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	addrs4 := []string{"10.0.0.1", "10.0.0.2", "10.0.1.1"}
	addrs6 := []string{"2001:db8::1", "2001:db8::2", "2001:db8:1::1"}
	matched, n := 0, 0
	for range 20000 {
		// A random plain frame.
		var spec frame.Spec
		v6 := r.IntN(2) == 0
		pick := func(l []string) netip.Addr { return netip.MustParseAddr(l[r.IntN(len(l))]) }
		if v6 {
			spec.Src, spec.Dst = pick(addrs6), pick(addrs6)
		} else {
			spec.Src, spec.Dst = pick(addrs4), pick(addrs4)
		}
		spec.Proto = []uint8{6, 17, 1}[r.IntN(3)]
		spec.SrcPort, spec.DstPort = uint16(r.IntN(3)), uint16(r.IntN(3))
		b := frame.Build(spec)
		if spec.Proto == 6 {
			b[14+map[bool]int{false: 20, true: 40}[v6]+13] = byte(r.IntN(4)) // TCP flags
		}

		// A random classifier over the fields vrss supports.
		c := FFClassifier{Selectors: []Selector{{Type: SelectorETH}}}
		if r.IntN(4) > 0 {
			c.Selectors = append(c.Selectors, Selector{Type: []uint8{SelectorIPv4, SelectorIPv6}[r.IntN(2)]})
			if r.IntN(3) > 0 {
				c.Selectors = append(c.Selectors, Selector{Type: []uint8{SelectorTCP, SelectorUDP}[r.IntN(2)]})
			}
		}
		for i := range c.Selectors {
			s := &c.Selectors[i]
			sup := supportedMask(s.Type)
			s.Mask = make([]byte, len(sup))
			for j := range sup {
				switch r.IntN(4) {
				case 0:
					s.Mask[j] = sup[j]
				case 1:
					s.Mask[j] = sup[j] & byte(r.Uint32())
				}
			}
		}
		// The key: the headers of another random frame, or of this one.
		other := frame.Build(frame.Spec{Src: spec.Src, Dst: spec.Dst, Proto: spec.Proto, SrcPort: uint16(r.IntN(3)), DstPort: uint16(r.IntN(3))})
		src := b
		if r.IntN(2) == 0 {
			src = other
		}
		var key []byte
		off := 0
		for _, s := range c.Selectors {
			key = append(key, src[min(off, len(src)):min(off+len(s.Mask), len(src))]...)
			off += len(s.Mask)
		}
		key = append(key, make([]byte, max(0, off-len(key)))...)

		m, err := MatchOf(&c, key)
		if err != nil {
			if !errors.Is(err, ErrKey) {
				t.Fatalf("MatchOf: %v", err)
			}
			continue // the key's EtherType or protocol contradicts the classifier
		}
		n++
		// The specification's reading.
		want := false
		if hs, ok := headers(&c, b); ok {
			want = true
			off := 0
			for i, s := range c.Selectors {
				for j := range s.Mask {
					if (hs[i][j]^key[off+j])&s.Mask[j] != 0 {
						want = false
					}
				}
				off += len(s.Mask)
			}
		}
		k := flow.KeyOf(b)
		if got := m.Matches(&k); got != want {
			t.Fatalf("frame % x\nclassifier %+v\nkey % x\nmatch %s: got %v, want %v", b, c, key, m.String(), got, want)
		}
		if want {
			matched++
		}
	}
	t.Logf("%d valid rules, %d matches", n, matched)
	if n < 5000 || matched < 500 {
		t.Errorf("only %d valid rules, %d matches: the test is not testing", n, matched)
	}
}

func TestSupportedSelectorsCopies(t *testing.T) {
	a := SupportedSelectors()
	a.Selectors[0].Mask[0] = 0
	if b := SupportedSelectors(); b.Selectors[0].Mask[0] != 0xff || reflect.DeepEqual(a, b) {
		t.Error("SupportedSelectors shares its masks")
	}
}
