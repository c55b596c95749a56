package portxdp

import (
	"net/netip"
	"testing"

	"github.com/vrss-dev/vrss/internal/frame"
	"github.com/vrss-dev/vrss/internal/privtest"
	"github.com/vrss-dev/vrss/port"
)

func TestLoadSmoke(t *testing.T) {
	privtest.Require(t, "bpf")
	p, err := LoadDebug()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	pol := port.Policy{MACs: []port.MAC{{0x52, 0x54, 0, 0xab, 0xcd, 0xef}}, IPv4: []netip.Prefix{netip.MustParsePrefix("10.0.0.1/32")}, Default: port.Allow}
	if err := p.Publish(pol); err != nil {
		t.Fatal(err)
	}
	f := frame.Build(frame.Spec{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), Proto: frame.ProtoTCP, SrcPort: 1, DstPort: 2})
	act, err := p.Run(f)
	r, _ := p.LastResult()
	t.Logf("act %d err %v result %+v", act, err, r)
}
