package rss_test

import (
	"net/netip"
	"testing"

	"github.com/vrss-dev/vrss/internal/frame"
	"github.com/vrss-dev/vrss/rss"
)

// benchFrames are the frame kinds whose cost the README reports.
func benchFrames() []struct {
	name string
	f    []byte
} {
	ip := netip.MustParseAddr
	return []struct {
		name string
		f    []byte
	}{
		{"TCPv4", frame.Build(frame.Spec{Src: ip("192.168.1.10"), Dst: ip("10.0.0.1"), Proto: frame.ProtoTCP, SrcPort: 43210, DstPort: 443, Payload: 64})},
		{"UDPv6", frame.Build(frame.Spec{Src: ip("2001:db8::10"), Dst: ip("2001:db8::1"), Proto: frame.ProtoUDP, SrcPort: 43210, DstPort: 4789, Payload: 64})},
		{"IPv6Ext", frame.Build(frame.Spec{Src: ip("2001:db8::10"), Dst: ip("2001:db8::1"), Proto: frame.ProtoTCP, SrcPort: 43210, DstPort: 443, Payload: 64,
			Ext: []frame.ExtHeader{{Type: 0, Data: make([]byte, 6)}, frame.RoutingType2(ip("2001:db8::2"), 1), frame.HomeAddressOption(ip("2001:db8::11"))}})},
	}
}

func BenchmarkSteer(b *testing.B) {
	e, err := rss.New(rss.Config{HashTypes: rss.AllHashTypes, Key: rss.DefaultKey, Table: rss.EqualTable(128, 4)})
	if err != nil {
		b.Fatal(err)
	}
	for _, bf := range benchFrames() {
		b.Run(bf.name, func(b *testing.B) {
			b.ReportAllocs()
			var q uint16
			for b.Loop() {
				q ^= e.Steer(bf.f).Queue
			}
			sinkQ = q
		})
	}
}

var sinkQ uint16
