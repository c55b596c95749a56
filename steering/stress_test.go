package steering_test

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vrss-dev/vrss/internal/frame"
	"github.com/vrss-dev/vrss/rss"
	"github.com/vrss-dev/vrss/steering"
)

// TestAtomicPublish publishes configurations in turn — different keys,
// disjoint queue sets (0-3, 4-7, 8-11) — while other goroutines steer frames
// through the program in the kernel. Every frame's queue must be the one
// some configuration gives it: a packet steered by a mix (one key with
// another's table, a half-written table) would land elsewhere.
//
// With two configurations each of the map's two slots is always rewritten
// with the same content, so a torn read could not show; the three-way cycle
// gives each slot new content on every write, and fails if the program's
// sequence check is removed.
func TestAtomicPublish(t *testing.T) {
	t.Run("two", func(t *testing.T) { testAtomicPublish(t, 2) })
	t.Run("three", func(t *testing.T) { testAtomicPublish(t, 3) })
}

func testAtomicPublish(t *testing.T, nconfigs int) {
	frames, publishes := 1_000_000, 10_000
	if testing.Short() {
		frames, publishes = 100_000, 1_000
	}
	p := load(t, steering.Production)
	r := rand.New(rand.NewPCG(3, 4))
	mk := func(queues []uint16) rss.Config {
		key := make([]byte, 40)
		for i := range key {
			key[i] = byte(r.Uint32())
		}
		table := make([]uint16, 128)
		for i := range table {
			table[i] = queues[r.IntN(len(queues))]
		}
		return rss.Config{HashTypes: rss.AllHashTypes, Key: key, Table: table, UnclassifiedQueue: queues[0]}
	}
	var (
		cfgs []rss.Config
		engs []*rss.Engine
	)
	for i := range nconfigs {
		c := mk([]uint16{uint16(4 * i), uint16(4*i + 1), uint16(4*i + 2), uint16(4*i + 3)})
		e, err := rss.New(c)
		if err != nil {
			t.Fatal(err)
		}
		cfgs, engs = append(cfgs, c), append(engs, e)
	}
	pub := publish(t, p, cfgs[0])

	// A pool of classifiable frames whose queue differs between A and B
	// (always, as the queue sets are disjoint).
	pool := make([][]byte, 4096)
	for i := range pool {
		pool[i] = frame.Build(frame.RandomSpec(r))
	}

	var (
		done      atomic.Bool
		published atomic.Int64
		wg        sync.WaitGroup
	)
	wg.Go(func() {
		for i := 1; !done.Load() || published.Load() < int64(publishes); i++ {
			if err := pub.Publish(cfgs[i%nconfigs]); err != nil {
				t.Error(err)
				return
			}
			published.Add(1)
		}
	})
	const workers = 2
	var bad, steered atomic.Int64
	saw := make([]atomic.Int64, nconfigs)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < frames; i += workers {
				f := pool[i%len(pool)]
				q, err := p.Run(f)
				if err != nil {
					t.Error(err)
					return
				}
				steered.Add(1)
				ok := false
				for c, e := range engs {
					if uint16(q) == e.Steer(f).Queue {
						saw[c].Add(1)
						ok = true
						break
					}
				}
				if !ok && bad.Add(1) <= 5 {
					t.Errorf("frame %x steered to %d: the configurations say %d, %d", f[:40], q, engs[0].Steer(f).Queue, engs[1].Steer(f).Queue)
				}
			}
		})
	}
	// Stop publishing once the frames are through (and enough publishes done).
	for steered.Load() < int64(frames) && !t.Failed() {
		runtimeGosched()
	}
	done.Store(true)
	wg.Wait()

	st, err := p.Stats()
	if err != nil {
		t.Fatal(err)
	}
	by := make([]int64, nconfigs)
	for i := range saw {
		by[i] = saw[i].Load()
	}
	t.Logf("%d frames steered during %d publishes of %d configurations: by each %v, by none %d; program re-reads %d, gave up %d",
		steered.Load(), published.Load(), nconfigs, by, bad.Load(), st.Retries, st.Torn)
	if bad.Load() > 0 {
		t.Fatalf("%d frames steered by no configuration", bad.Load())
	}
	if st.Torn != 0 {
		t.Errorf("the program gave up re-reading %d times", st.Torn)
	}
	for i, n := range by {
		if n == 0 {
			t.Errorf("publishes did not overlap steering: configuration %d steered nothing", i)
		}
	}
}

func runtimeGosched() { time.Sleep(time.Millisecond) }
