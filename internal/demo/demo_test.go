package demo_test

import (
	"math/rand/v2"
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
