//go:build linux

package baseline

import (
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/vrss-dev/vrss/internal/frame"
	"github.com/vrss-dev/vrss/internal/privtest"
	"github.com/vrss-dev/vrss/steering"
)

// helperCalls lists the helpers a variant's program calls, in order.
func helperCalls(t *testing.T, v steering.Variant) []asm.BuiltinFunc {
	t.Helper()
	load := map[steering.Variant]func() (*ebpf.CollectionSpec, error){steering.Floor: loadFloor, steering.ReadFloor: loadReadfloor}[v]
	spec, err := load()
	if err != nil {
		t.Fatal(err)
	}
	if len(spec.Programs) != 1 {
		t.Fatalf("%s object has %d programs, want 1", v, len(spec.Programs))
	}
	var calls []asm.BuiltinFunc
	for _, p := range spec.Programs {
		for _, ins := range p.Instructions {
			if ins.IsBuiltinCall() {
				calls = append(calls, asm.BuiltinFunc(ins.Constant))
			}
		}
	}
	return calls
}

// The floors are what the benchmark divides by, so what they do is pinned:
// the floor calls nothing; the read floor calls only the frame read, with
// the same fallbacks as the production reader (reader_init).
func TestFloorPrograms(t *testing.T) {
	if calls := helperCalls(t, steering.Floor); len(calls) != 0 {
		t.Errorf("floor calls helpers %v, want none", calls)
	}
	calls := helperCalls(t, steering.ReadFloor)
	if len(calls) != 3 {
		t.Errorf("read floor calls %v, want the 3 reads of reader_init", calls)
	}
	for _, c := range calls {
		if c != asm.FnSkbLoadBytesRelative {
			t.Errorf("read floor calls %v, want only %v", c, asm.FnSkbLoadBytesRelative)
		}
	}

	privtest.Require(t, "bpf")
	ip := netip.MustParseAddr
	f := frame.Build(frame.Spec{Src: ip("192.168.1.10"), Dst: ip("10.0.0.1"), Proto: frame.ProtoTCP, SrcPort: 43210, DstPort: 443})
	for _, v := range []steering.Variant{steering.Floor, steering.ReadFloor} {
		p, err := steering.LoadVariant(v)
		if err != nil {
			t.Fatalf("load %s: %v", v, err)
		}
		ret, err := p.Run(f)
		p.Close()
		if err != nil || ret != 0 {
			t.Errorf("%s returned %d, %v; want 0", v, ret, err)
		}
	}
}
