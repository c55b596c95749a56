package steering_test

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/vrss-dev/vrss/internal/frame"
	"github.com/vrss-dev/vrss/internal/privtest"
	"github.com/vrss-dev/vrss/rss"
	"github.com/vrss-dev/vrss/steering"
	_ "github.com/vrss-dev/vrss/steering/baseline" // the benchmark baselines
)

// load loads a variant, skipping (or failing under VRSS_REQUIRE_PRIV=1) when
// the machine cannot run eBPF.
func load(t testing.TB, v steering.Variant) *steering.Program {
	t.Helper()
	privtest.Require(t, "bpf")
	p, err := steering.LoadVariant(v)
	if err != nil {
		t.Fatalf("load %s: %v", v, err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func publish(t testing.TB, p *steering.Program, c rss.Config) *steering.Publisher {
	t.Helper()
	pub, err := p.Publisher(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pub.Close() })
	if err := pub.Publish(c); err != nil {
		t.Fatal(err)
	}
	return pub
}

func TestLoadAllVariants(t *testing.T) {
	for _, v := range []steering.Variant{steering.Production, steering.Debug, steering.BitSerial, steering.Floor, steering.ReadFloor} {
		t.Run(v.String(), func(t *testing.T) { load(t, v) })
	}
}

func TestSteerMatchesEngine(t *testing.T) {
	cfg := rss.Config{HashTypes: rss.AllHashTypes, Key: rss.DefaultKey, Table: rss.EqualTable(128, 8), UnclassifiedQueue: 5}
	eng, err := rss.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr
	frames := [][]byte{
		frame.Build(frame.Spec{Src: ip("66.9.149.187"), Dst: ip("161.142.100.80"), Proto: frame.ProtoTCP, SrcPort: 2794, DstPort: 1766}),
		frame.Build(frame.Spec{Src: ip("66.9.149.187"), Dst: ip("161.142.100.80"), Proto: frame.ProtoICMP}),
		frame.Build(frame.Spec{Src: ip("2001:db8::1"), Dst: ip("2001:db8::2"), Proto: frame.ProtoUDP, SrcPort: 5, DstPort: 6,
			Ext: []frame.ExtHeader{frame.HomeAddressOption(ip("2001:db8::9")), frame.RoutingType2(ip("2001:db8::7"), 1)}}),
	}
	for _, v := range []steering.Variant{steering.Production, steering.Debug, steering.BitSerial} {
		p := load(t, v)
		publish(t, p, cfg)
		for i, f := range frames {
			want := eng.Steer(f)
			q, err := p.Run(f)
			if err != nil {
				t.Fatal(err)
			}
			if q != uint32(want.Queue) {
				t.Errorf("%s frame %d: queue %d, engine %d", v, i, q, want.Queue)
			}
			if v == steering.Debug {
				got, err := p.LastResult()
				if err != nil {
					t.Fatal(err)
				}
				if got != want {
					t.Errorf("debug frame %d: %+v, engine %+v", i, got, want)
				}
			}
		}
	}
}

func TestPublishRejectsBadConfig(t *testing.T) {
	p := load(t, steering.Production)
	good := rss.Config{HashTypes: rss.AllHashTypes, Key: rss.DefaultKey, Table: rss.EqualTable(64, 4)}
	pub := publish(t, p, good)
	bad := good.Clone()
	bad.Table = make([]uint16, 100)
	if err := pub.Publish(bad); !errors.Is(err, rss.ErrTableLength) {
		t.Fatalf("bad table: %v", err)
	}
	got, err := pub.Config()
	if err != nil {
		t.Fatal(err)
	}
	if got.HashTypes != good.HashTypes || string(got.Key) != string(good.Key) || len(got.Table) != 64 {
		t.Errorf("config changed after a rejected publish: %+v", got)
	}
}
