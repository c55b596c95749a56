package steering_test

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/vrss-dev/vrss/flow"
	"github.com/vrss-dev/vrss/internal/diffcorpus"
	"github.com/vrss-dev/vrss/internal/frame"
	"github.com/vrss-dev/vrss/steering"
)

// TestAtomicPublishFlows swaps three whole sets — default configuration,
// contexts and rules, each set's queues disjoint from the others' — at
// least 10,000 times while at least a million frames are steered through
// the flow build: every frame's queue must be the one some set gives it
// whole. A frame steered by one set's rules with another's contexts or
// default table would land in the wrong set's range.
func TestAtomicPublishFlows(t *testing.T) {
	frames, publishes := 1_000_000, 10_000
	if testing.Short() {
		frames, publishes = 100_000, 1_000
	}
	p := load(t, steering.Flows)
	pub, err := p.Publisher(0)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	r := diffcorpus.Rand()
	var sample [][]byte
	for len(sample) < 256 {
		if f := frame.Random(r); len(f) >= 14 && !shortIPHeader(f) {
			sample = append(sample, f)
		}
	}
	const nsets, span = 3, 16
	var (
		sets []flow.Set
		engs []*flow.Engine
	)
	for i := range nsets {
		s := diffcorpus.FlowSet(r, span, 300, sample)
		shift := func(q *uint16) { *q += uint16(i * span) }
		shiftAll := func(t []uint16) {
			for j := range t {
				shift(&t[j])
			}
		}
		shiftAll(s.Default.Table)
		shift(&s.Default.UnclassifiedQueue)
		for c := range s.Contexts {
			shiftAll(s.Contexts[c].Config.Table)
			shift(&s.Contexts[c].Config.UnclassifiedQueue)
		}
		for j := range s.Rules {
			a := &s.Rules[j].Action
			if a.Kind == flow.ActionDrop { // the filter's business: tested elsewhere
				*a = flow.Action{Kind: flow.ActionQueue}
			}
			if a.Kind == flow.ActionQueue {
				shift(&a.Queue)
			}
		}
		e, err := flow.NewEngine(s, steering.FlowLimits(0))
		if err != nil {
			t.Fatal(err)
		}
		sets, engs = append(sets, s), append(engs, e)
	}
	if err := pub.PublishSet(sets[0]); err != nil {
		t.Fatal(err)
	}
	var (
		done      atomic.Bool
		published atomic.Int64
		wg        sync.WaitGroup
	)
	wg.Go(func() {
		for i := 1; !done.Load() || published.Load() < int64(publishes); i++ {
			if err := pub.PublishSet(sets[i%nsets]); err != nil {
				t.Error(err)
				return
			}
			published.Add(1)
		}
	})
	const workers = 2
	var bad, steered, ruled atomic.Int64
	for w := range workers {
		wg.Go(func() {
			for i := w; i < frames; i += workers {
				f := sample[i%len(sample)]
				q, err := p.Run(f)
				if err != nil {
					t.Error(err)
					return
				}
				steered.Add(1)
				want := engs[int(q)/span%nsets].Steer(f)
				if want.Rule >= 0 {
					ruled.Add(1)
				}
				if int(q) >= nsets*span || uint32(want.Queue) != q {
					if bad.Add(1) <= 5 {
						t.Errorf("frame %x steered to %d, which no whole set gives it", f[:min(len(f), 40)], q)
					}
				}
			}
		})
	}
	for steered.Load() < int64(frames) && !t.Failed() {
		runtimeGosched()
	}
	done.Store(true)
	wg.Wait()
	st, err := p.Stats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d frames (%d matched a rule) steered during %d publishes of %d sets; by no whole set %d; program re-reads %d, gave up %d",
		steered.Load(), ruled.Load(), published.Load(), nsets, bad.Load(), st.Retries, st.Torn)
	if bad.Load() > 0 {
		t.Fatalf("%d frames steered by no whole set", bad.Load())
	}
	if st.Torn != 0 {
		t.Errorf("the program gave up re-reading %d times", st.Torn)
	}
	if published.Load() < int64(publishes) || ruled.Load() == 0 {
		t.Errorf("%d publishes, %d frames matched a rule", published.Load(), ruled.Load())
	}
}
