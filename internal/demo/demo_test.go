package demo_test

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/vrss-dev/vrss/internal/demo"
	"github.com/vrss-dev/vrss/internal/privtest"
	"github.com/vrss-dev/vrss/rss"
)

func require(t *testing.T) {
	privtest.Require(t, "root")
	privtest.Require(t, "netns")
	privtest.Require(t, "tap")
	privtest.Require(t, "bpf")
}

func check(t *testing.T, res *demo.Result, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %d queues, %d/%d frames on the predicted queue, observed %v, predicted %v, reports %v, foreign %d, retries %d",
		res.Device, res.Queues, res.Correct, res.Sent, res.Observed, res.Predicted, res.Reports, res.Foreign, res.Stats.Retries)
	for _, w := range res.Wrong {
		t.Error(w)
	}
	if !res.OK() {
		t.Fatalf("%d of %d frames on the predicted queue, %d received", res.Correct, res.Sent, res.Received)
	}
	for rep := rss.ReportNone; rep <= rss.ReportUDPv6Ex; rep++ {
		if res.Reports[rep] == 0 {
			t.Errorf("no frame of report type %s", rep)
		}
	}
	// The program's own counters agree with what the queues received.
	if got := res.Stats.Total(); got != uint64(res.Sent) {
		t.Errorf("program counted %d packets, %d sent", got, res.Sent)
	}
	if res.Stats.Unclassified != uint64(res.Reports[rss.ReportNone]) {
		t.Errorf("program counted %d unclassified, engine predicts %d", res.Stats.Unclassified, res.Reports[rss.ReportNone])
	}
}

// Every frame, from 1,000 flows of every kind, arrives on exactly the queue
// the engine predicts, through a real 4-queue TAP.
func TestFourQueues(t *testing.T) {
	require(t)
	res, err := demo.Run(demo.Options{Queues: 4})
	check(t, res, err)
}

// An 8-queue TAP with a random key, a skewed 64-entry table and an
// unclassified queue other than 0.
func TestEightQueuesSkewed(t *testing.T) {
	require(t)
	r := rand.New(rand.NewPCG(8, 8))
	key := make([]byte, 40)
	for i := range key {
		key[i] = byte(r.Uint32())
	}
	table := make([]uint16, 64)
	for i := range table {
		table[i] = []uint16{0, 0, 0, 1, 2, 5, 7, 7}[r.IntN(8)]
	}
	cfg := rss.Config{HashTypes: rss.AllHashTypes, Key: key, Table: table, UnclassifiedQueue: 6}
	res, err := demo.Run(demo.Options{Queues: 8, Config: &cfg, Seed: 2})
	check(t, res, err)
	if res.Observed[3] != 0 || res.Observed[4] != 0 {
		t.Errorf("queues 3 and 4 are in no table entry but received %d and %d", res.Observed[3], res.Observed[4])
	}
}

// With the flow build: a queue rule, an RSS context over queues 2 and 3
// with its own key, and a drop rule, beside RSS for the rest, on real 4-
// and 8-queue TAPs. Every frame the engine keeps arrives once on its
// queue, none it drops arrives (each of their sends is refused), and the
// program's rule, context and drop counters equal the engine's figures.
func TestRules(t *testing.T) {
	require(t)
	for _, queues := range []int{4, 8} {
		res, err := demo.Run(demo.Options{Queues: queues, Flows: 240, PerFlow: 5, Rules: true})
		if err != nil {
			t.Fatal(err)
		}
		f := res.Flows
		if f == nil {
			t.Fatal("no flow result from a run with rules")
		}
		t.Logf("%s: %d queues, %d/%d frames where predicted, observed %v, predicted %v, rules %+v, contexts %+v, drops %+v, foreign %d",
			res.Device, res.Queues, res.Correct, res.Sent, res.Observed, res.Predicted, f.Rules, f.Contexts, f.Drops, res.Foreign)
		for _, w := range res.Wrong {
			t.Error(w)
		}
		if !res.OK() {
			t.Fatalf("%d of %d frames where predicted, %d received", res.Correct, res.Sent, res.Received)
		}
		perRule := demo.RuleFlowsPer(240) * 5
		for _, r := range f.Rules {
			if r.Predicted < perRule || r.AsPredicted != r.Predicted || r.Counted != uint64(r.Predicted) {
				t.Errorf("rule %d: %d predicted, %d as predicted, %d counted; want at least %d, all as predicted and counted", r.ID, r.Predicted, r.AsPredicted, r.Counted, perRule)
			}
		}
		if d := f.Drops; d.Predicted < perRule || d.Refused != d.Predicted || d.Received != 0 {
			t.Errorf("drops %+v: want every predicted drop refused at send and none received", d)
		}
		if c := f.Contexts[0]; c.Observed[2] == 0 || c.Observed[3] == 0 || c.Observed[0]+c.Observed[1] != 0 {
			t.Errorf("context 1 delivered %v: want frames on queues 2 and 3 only", c.Observed)
		}
		if res.Observed[1] < perRule {
			t.Errorf("queue 1 received %d frames, the queue rule alone sends it %d", res.Observed[1], perRule)
		}
		// The steering program saw every kept frame once.
		if got, kept := res.Stats.Total(), res.Sent-f.Drops.Predicted; got != uint64(kept+res.Foreign) && got != uint64(kept) {
			t.Errorf("the steering program counted %d frames, %d kept (%d foreign)", got, kept, res.Foreign)
		}
	}
}

// A run with rules needs the context's queues.
func TestRulesQueues(t *testing.T) {
	if _, err := demo.Run(demo.Options{Queues: 3, Rules: true}); err == nil || !strings.Contains(err.Error(), "at least 4 queues") {
		t.Errorf("3 queues with rules: %v", err)
	}
}
