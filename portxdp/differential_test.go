package portxdp

import (
	"testing"

	"github.com/vrss-dev/vrss/internal/diffcorpus"
	"github.com/vrss-dev/vrss/internal/privtest"
	"github.com/vrss-dev/vrss/port"
)

// xdpMinFrame is the shortest frame BPF_PROG_TEST_RUN takes for XDP (an
// Ethernet header); port.Filter finds every shorter one malformed, as the
// program does (its first read fails).
const xdpMinFrame = 14

// TestDifferential holds the debug build to port.Filter on
// diffcorpus.Frames() frames under diffcorpus.PortPolicies random
// policies: on every frame the reason, the rule and the verdict must be
// the reference's, and the action pass or drop accordingly; after the run
// the per-reason and per-rule counters must be the reference's
// port.Counters.
func TestDifferential(t *testing.T) {
	privtest.Require(t, "bpf")
	p := loaded(t, true)
	r := diffcorpus.Rand()
	n := diffcorpus.Frames()
	per := max(n/diffcorpus.PortPolicies, 1)
	var (
		ref     port.Counters
		f       *port.Filter
		short   int
		ran     int
		mism    int
		actions = map[port.Verdict]uint32{port.VerdictPass: 2, port.VerdictDrop: 1}
	)
	for i := 0; i < n; i++ {
		if i%per == 0 {
			pol := diffcorpus.PortPolicy(r, []int{0, 4, 12, port.MaxRules}[(i/per)%4])
			var err error
			if f, err = port.New(pol); err != nil {
				t.Fatalf("policy %d: %v", i/per, err)
			}
			if err := p.Publish(pol); err != nil {
				t.Fatal(err)
			}
		}
		pol := f.Policy()
		b := diffcorpus.PortFrame(r, &pol)
		want := f.Check(b)
		if len(b) < xdpMinFrame {
			short++
			if want.Reason != port.Malformed {
				t.Fatalf("frame %x: the reference says %v for a frame shorter than an Ethernet header", b, want.Reason)
			}
			continue
		}
		act, err := p.Run(b)
		if err != nil {
			t.Fatalf("frame %d (%x): %v", i, b, err)
		}
		got, err := p.LastResult()
		if err != nil {
			t.Fatal(err)
		}
		ran++
		ref.Add(want)
		if got.Result != want || act != actions[want.Verdict] || got.Action != act || got.Tag != p.Generation() {
			mism++
			if mism <= 10 {
				t.Errorf("frame %d %x\npolicy %+v\nprogram %+v (action %d), reference %+v", i, b, pol, got, act, want)
			}
		}
	}
	if mism > 0 {
		t.Fatalf("%d of %d frames judged differently", mism, ran)
	}
	c, err := p.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if c.Reasons != ref.Reasons || c.Rules != ref.Rules {
		t.Fatalf("counters:\nprogram   %v %v\nreference %v %v", c.Reasons, c.Rules, ref.Reasons, ref.Rules)
	}
	t.Logf("%d frames through BPF_PROG_TEST_RUN under %d policies, every one judged as port.Filter does (and %d shorter than 14 bytes, which the test run refuses, malformed for both)", ran, diffcorpus.PortPolicies, short)
	for reason, v := range ref.Reasons {
		if v > 0 {
			t.Logf("  %-14s %8d", port.Reason(reason), v)
		}
	}
}
