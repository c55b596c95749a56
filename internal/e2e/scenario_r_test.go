package e2e

import (
	"bytes"
	"strings"
	"testing"

	"github.com/vrss-dev/vrss/flow"
	"github.com/vrss-dev/vrss/steering"
)

// TestFlowTraffic checks scenario R's set and traffic without a guest:
// the set fits the flow build, the key depends on the seed, every class
// does what the set means (flowTraffic's own check) for several seeds and
// queue counts, and a report built from the prediction passes while any
// one disagreement fails it.
func TestFlowTraffic(t *testing.T) {
	if bytes.Equal(FlowSet(4, 1).Contexts[0].Config.Key, FlowSet(4, 2).Contexts[0].Config.Key) {
		t.Error("the context key does not depend on the seed")
	}
	for _, queues := range []int{4, 8} {
		for seed := uint64(1); seed <= 5; seed++ {
			set := FlowSet(queues, seed)
			eng, err := flow.NewEngine(set, steering.FlowLimits(queues))
			if err != nil {
				t.Fatalf("%d queues: %v", queues, err)
			}
			p, err := flowTraffic(eng, queues, seed)
			if err != nil {
				t.Fatalf("%d queues, seed %d: %v", queues, seed, err)
			}
			if len(p.frames) != 2300 || len(p.classes) != 5 || p.classes[4].Dropped != 200 {
				t.Fatalf("%d frames, %d classes, %d dropped", len(p.frames), len(p.classes), p.classes[4].Dropped)
			}
			// Shuffled: the dropped frames spread over the whole run.
			first, last := -1, -1
			for i, v := range p.verdicts {
				if v.Drop {
					last = i
					if first < 0 {
						first = i
					}
				}
			}
			if n := len(p.verdicts); first > n/4 || last < 3*n/4 {
				t.Errorf("%d queues, seed %d: dropped frames only from %d to %d of %d", queues, seed, first, last, n)
			}
		}
	}

	set := FlowSet(4, 7)
	eng, _ := flow.NewEngine(set, steering.FlowLimits(4))
	p, err := flowTraffic(eng, 4, 7)
	if err != nil {
		t.Fatal(err)
	}
	same := "the same verdict for all 2300 frames"
	rep := &FlowReport{guestRun: guestRun{Queues: 4}, Set: set, Classes: p.classes, Sent: len(p.frames), ProbeSent: 32, ProbeRuns: 32,
		Steering: []steerGap{{Detach: 1, Attached: true, Missing: 2}},
		Expected: make([]uint64, 4), ContextExpected: make([]uint64, 4), Installed: same, ReadBack: same}
	hits := map[uint32]uint64{}
	for _, v := range p.verdicts {
		if v.Rule >= 0 {
			hits[set.Rules[v.Rule].ID]++
		}
		if v.Drop {
			rep.DropSent++
			continue
		}
		rep.Kept++
		rep.Expected[v.Queue]++
		if v.Context == rContext {
			rep.ContextExpected[v.Queue]++
		}
	}
	for _, r := range set.Rules {
		rep.RuleHits = append(rep.RuleHits, rRuleHits{ID: r.ID, Action: r.Action.String(), Counted: hits[r.ID], Predict: hits[r.ID]})
	}
	rep.Observed, rep.Program = append([]uint64(nil), rep.Expected...), append([]uint64(nil), rep.Expected...)
	rep.ContextCounted = append([]uint64(nil), rep.ContextExpected...)
	rep.Delivered, rep.Refused, rep.FilterDropped = uint64(rep.Kept), rep.DropSent, uint64(rep.DropSent)
	if !rep.OK() {
		t.Fatalf("a report equal to the prediction fails:\n%s", rep)
	}
	if s := rep.String(); !strings.Contains(s, "RESULT: PASS") || !strings.Contains(s, "200 sends refused with ENOBUFS") {
		t.Errorf("report:\n%s", s)
	}
	for name, spoil := range map[string]func(r *FlowReport){
		"a queue off by one":        func(r *FlowReport) { r.Observed[2]++ },
		"the program disagrees":     func(r *FlowReport) { r.Program[0]-- },
		"a dropped frame delivered": func(r *FlowReport) { r.Delivered++ },
		"a drop accepted":           func(r *FlowReport) { r.Refused-- },
		"a drop not counted":        func(r *FlowReport) { r.FilterDropped-- },
		"a raced drop":              func(r *FlowReport) { r.Raced++ },
		"a rule's hits":             func(r *FlowReport) { r.RuleHits[1].Counted++ },
		"the context's counters":    func(r *FlowReport) { r.ContextCounted[3]++ },
		"steering not back":         func(r *FlowReport) { r.ProbeRuns-- },
		"never re-attached":         func(r *FlowReport) { r.Steering = append(r.Steering, steerGap{Detach: 5}) },
		"another set installed":     func(r *FlowReport) { r.Installed = "1 of 2300 frames get another verdict" },
		"another set at the end":    func(r *FlowReport) { r.ReadBack = "3 of 2300 frames get another verdict" },
		"a bad send":                func(r *FlowReport) { r.BadSends = []string{"frame 1"} },
		"tun dropped":               func(r *FlowReport) { r.TapDropped++ },
	} {
		c := *rep
		c.Observed, c.Program = append([]uint64(nil), rep.Observed...), append([]uint64(nil), rep.Program...)
		c.ContextCounted = append([]uint64(nil), rep.ContextCounted...)
		c.RuleHits = append([]rRuleHits(nil), rep.RuleHits...)
		spoil(&c)
		if c.OK() {
			t.Errorf("%s: the report still passes", name)
		}
		if !strings.Contains(c.String(), "RESULT: FAIL") {
			t.Errorf("%s: no RESULT: FAIL line", name)
		}
	}
}
