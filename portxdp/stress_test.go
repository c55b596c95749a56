package portxdp

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/vrss-dev/vrss/internal/diffcorpus"
	"github.com/vrss-dev/vrss/internal/privtest"
	"github.com/vrss-dev/vrss/port"
)

// TestAtomicPublish swaps whole policies as fast as one goroutine can
// publish them while another runs frames through the debug build: every
// frame must be judged exactly as the reference judges it under the one
// policy whose tag the program recorded (a frame judged by parts of two
// policies would differ from both on some frames: the policies differ in
// MACs, addresses and ACL). Half the policies are AF_XDP ports', over
// queue 0 (the test run's) or over queues 1-2, which leave the frames
// unjudged: the mode, and so the direction (an AF_XDP port's frames are
// judged inbound, by port.NewInbound's Filter), and the queue range must be
// the same policy's too.
func TestAtomicPublish(t *testing.T) {
	privtest.Require(t, "bpf")
	p := loaded(t, true)
	r := rand.New(rand.NewPCG(14, 2))
	const npol = 8
	var (
		pols    [npol]port.Policy
		filters [npol]*port.Filter
		frames  [][]byte
	)
	queues := [npol]*Queues{1: {0, 1}, 3: {1, 2}, 5: {0, 1}, 7: {1, 2}}
	for i := range pols {
		pols[i] = diffcorpus.PortPolicy(r, []int{4, 12, port.MaxRules}[i%3])
		newFilter, frameFor := port.New, diffcorpus.PortFrame
		if queues[i] != nil {
			newFilter, frameFor = port.NewInbound, diffcorpus.PortFrameIn
		}
		var err error
		if filters[i], err = newFilter(pols[i]); err != nil {
			t.Fatal(err)
		}
		for len(frames) < (i+1)*200 {
			if b := frameFor(r, &pols[i]); len(b) >= xdpMinFrame {
				frames = append(frames, b)
			}
		}
	}
	// Publish i (from 0) carries tag i+1 and policy i % npol.
	publish := func(i int) error {
		if q := queues[i]; q != nil {
			return p.PublishXSK(pols[i], *q)
		}
		return p.Publish(pols[i])
	}
	if err := publish(0); err != nil {
		t.Fatal(err)
	}
	nframes := 300_000
	if testing.Short() {
		nframes = 30_000
	}
	var done atomic.Bool
	var publishes int
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 1; !done.Load(); i++ {
			if err := publish(i % npol); err != nil {
				t.Error(err)
				return
			}
			publishes = i + 1
		}
	}()
	mism := 0
	for i := range nframes {
		b := frames[i%len(frames)]
		if _, err := p.Run(b); err != nil {
			t.Fatal(err)
		}
		got, err := p.LastResult()
		if err != nil {
			t.Fatal(err)
		}
		n := (got.Tag - 1) % npol
		want := filters[n].Check(b)
		if q := queues[n]; q != nil && q.Start > 0 {
			want = port.Result{Verdict: port.VerdictPass, Rule: -1} // not judged
		}
		if got.Result != want {
			if mism++; mism <= 5 {
				t.Errorf("frame %x judged %+v under tag %d, whose policy gives %+v", b, got.Result, got.Tag, want)
			}
		}
	}
	done.Store(true)
	wg.Wait()
	c, err := p.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if mism > 0 {
		t.Fatalf("%d of %d frames judged by no whole policy", mism, nframes)
	}
	if c.Torn != 0 {
		t.Errorf("%d frames gave up on a changing slot", c.Torn)
	}
	if publishes < 10_000 && !testing.Short() {
		t.Fatalf("only %d publishes during %d frames; want 10,000 or more", publishes, nframes)
	}
	t.Logf("%d frames during %d publishes, every one judged by one whole policy; %d judged again after a publish raced them", nframes, publishes, c.Retries)
}
