package steering_test

import (
	"fmt"
	"testing"

	"github.com/vrss-dev/vrss/flow"
	"github.com/vrss-dev/vrss/internal/diffcorpus"
	"github.com/vrss-dev/vrss/internal/frame"
	"github.com/vrss-dev/vrss/steering"
)

// TestFlowDifferential holds the flow build to flow.Engine on at least a
// million frames under random sets (default configuration, contexts,
// groups, overlapping exact and masked rules of every action): for every
// frame the steering program's rule, context, queue, hash and report, and
// the filter's drop verdict, equal the engine's; and the production build
// (which skips the hash of a frame a queue rule steers) returns the same
// queue for every frame not dropped. VRSS_DIFF_FRAMES overrides the count.
func TestFlowDifferential(t *testing.T) {
	total := diffcorpus.Frames()
	p := load(t, steering.FlowsDebug)
	pub, err := p.Publisher(0)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	prod := load(t, steering.Flows)
	prodPub, err := prod.Publisher(0)
	if err != nil {
		t.Fatal(err)
	}
	defer prodPub.Close()

	r := diffcorpus.Rand()
	var runs, short, mismatches, drops, ruled, contexts, rules int
	for c := 0; c < diffcorpus.FlowSets; c++ {
		var sample [][]byte
		for len(sample) < 64 {
			if f := frame.Random(r); len(f) >= 14 {
				sample = append(sample, f)
			}
		}
		maxRules := 300
		if c%8 == 7 {
			maxRules = flow.MaxRules / 2
		}
		set := diffcorpus.FlowSet(r, steering.MaxQueues, maxRules, sample)
		rules += len(set.Rules)
		eng, err := flow.NewEngine(set, steering.FlowLimits(0))
		if err != nil {
			t.Fatal(err)
		}
		if err := pub.PublishSet(set); err != nil {
			t.Fatalf("set %d: %v", c, err)
		}
		if err := prodPub.PublishSet(set); err != nil {
			t.Fatalf("set %d, production build: %v", c, err)
		}
		for i := 0; i < total/diffcorpus.FlowSets; i++ {
			f := diffcorpus.FlowFrame(r, sample)
			want := eng.Steer(f)
			if len(f) < 14 || shortIPHeader(f) {
				short++
				continue
			}
			q, err := p.Run(f)
			if err != nil {
				t.Fatalf("frame %x: %v", f, err)
			}
			got, err := p.LastFlowResult()
			if err != nil {
				t.Fatal(err)
			}
			fv, err := p.RunFilter(f)
			if err != nil {
				t.Fatal(err)
			}
			pq, err := prod.Run(f)
			if err != nil {
				t.Fatal(err)
			}
			runs++
			bad := got.HasRule != (want.Rule >= 0) || got.Drop != want.Drop || (fv == steering.FilterDrop) != want.Drop
			if want.Rule >= 0 {
				ruled++
				bad = bad || got.RuleID != set.Rules[want.Rule].ID
			}
			if want.Drop {
				drops++
			} else {
				bad = bad || q != uint32(want.Queue) || pq != q || got.Queue != want.Queue || got.Hash != want.Hash || got.Report != want.Report || got.Context != want.Context
				if want.Context != 0 {
					contexts++
				}
			}
			if bad {
				mismatches++
				if mismatches <= 10 {
					t.Errorf("set %d frame %x:\n program queue %d (production build %d) %+v filter %d\n engine %+v", c, f, q, pq, got, fv, want)
				}
			}
		}
	}
	if mismatches > 0 {
		t.Fatalf("%d of %d frames differ", mismatches, runs)
	}
	if drops == 0 || contexts == 0 || ruled == runs {
		t.Fatalf("corpus too narrow: %d dropped, %d by contexts, %d of %d matched a rule", drops, contexts, ruled, runs)
	}
	t.Logf("%d frames identical through BPF_PROG_TEST_RUN (%d sets, %d rules in all, %d frames too short for BPF_PROG_TEST_RUN): %d matched a rule, %d dropped, %d steered by a context", runs, diffcorpus.FlowSets, rules, short, ruled, drops, contexts)
	_ = fmt.Sprint
}
