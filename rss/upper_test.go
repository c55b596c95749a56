package rss_test

import (
	"testing"

	"github.com/vrss-dev/vrss/internal/frame"
	"github.com/vrss-dev/vrss/internal/proto"
	"github.com/vrss-dev/vrss/rss"
)

// ParseUpperLayer: ParseHeaders' result, and the offset of the upper-layer
// header wherever the frame has its start.
func TestParseUpperLayer(t *testing.T) {
	s6, d6 := a4("2001:db8::1"), a4("2001:db8::2")
	icmp6 := frame.Spec{Src: s6, Dst: d6, Proto: 58, Payload: 8}
	udp4 := frame.Spec{Src: a4("10.0.0.1"), Dst: a4("10.0.0.2"), Proto: frame.ProtoUDP, SrcPort: 1, DstPort: 2, Payload: 3}
	dst := frame.ExtHeader{Type: proto.IPProtoDstOpts, Data: make([]byte, 6)}
	with := func(s frame.Spec, ext ...frame.ExtHeader) frame.Spec { s.Ext = ext; return s }
	frag4 := func(s frame.Spec, off uint16) frame.Spec { s.FragOffset, s.MoreFrags = off, true; return s }
	for _, c := range []struct {
		name  string
		b     []byte
		upper int
	}{
		{"ipv4 udp", frame.Build(udp4), 34},
		{"ipv4 first fragment", frame.Build(frag4(udp4, 0)), 34},
		{"ipv4 later fragment", frame.Build(frag4(udp4, 10)), 0},
		{"ipv6 icmp", frame.Build(icmp6), 54},
		{"ipv6 icmp behind a destination options header", frame.Build(with(icmp6, dst)), 62},
		{"ipv6 icmp, header absent", frame.Build(icmp6)[:54], 54},
		{"ipv6 first fragment", frame.Build(with(icmp6, frame.FragmentHeader(0, true), dst)), 70},
		{"ipv6 first fragment, chain cut", frame.Build(with(icmp6, frame.FragmentHeader(0, true), dst))[:66], 0},
		{"ipv6 later fragment", frame.Build(with(icmp6, frame.FragmentHeader(9, true))), 0},
		{"ipv6 cut", frame.Build(icmp6)[:50], 0},
		{"arp", func() []byte { b := frame.Build(udp4); b[12], b[13] = 0x08, 0x06; return b }(), 0},
	} {
		b := exact(c.b)
		h, upper := rss.ParseUpperLayer(b)
		if upper != c.upper || h != rss.ParseHeaders(b) {
			t.Errorf("%s: upper %d, want %d; headers %+v", c.name, upper, c.upper, h)
		}
	}
}
