package steering_test

import (
	"math/rand/v2"
	"testing"

	"github.com/vrss-dev/vrss/internal/diffcorpus"
	"github.com/vrss-dev/vrss/internal/frame"
	"github.com/vrss-dev/vrss/rss"
	"github.com/vrss-dev/vrss/steering"
	_ "github.com/vrss-dev/vrss/steering/baseline" // the benchmark baselines
)

// identityTable maps every index to itself, so the queue a frame is steered
// to is the low 15 bits of its hash; hashTableUnclassified is no index.
const hashTableUnclassified = 0xffff

func identityTable() []uint16 {
	t := make([]uint16, steering.MaxTableLen)
	for i := range t {
		t[i] = uint16(i)
	}
	return t
}

// TestBitSerialMatchesEngine steers 20,000 random frames through the
// bit-serial build (the benchmark's baseline) and the production build,
// neither of which records its hash, and checks each queue against the rss
// engine's. The 32768-entry identity table makes the queue the hash's low
// 15 bits, and no table entry is the unclassified queue, so a frame hashed
// wrongly, with the wrong hash type or not at all shows as a wrong queue.
func TestBitSerialMatchesEngine(t *testing.T) {
	const configs, total = 4, 20_000
	r := rand.New(rand.NewPCG(36, 8))
	var frames [][]byte
	for len(frames) < total {
		f := frame.Random(r)
		if len(f) < 14 || shortIPHeader(f) {
			continue // BPF_PROG_TEST_RUN refuses these; see TestDifferential
		}
		frames = append(frames, f)
	}
	cfgs := make([]rss.Config, configs)
	for i := range cfgs {
		c := diffcorpus.Config(r)
		if i == 0 {
			c.HashTypes = rss.AllHashTypes
		}
		c.Table, c.UnclassifiedQueue = identityTable(), hashTableUnclassified
		cfgs[i] = c
	}

	for _, v := range []steering.Variant{steering.BitSerial, steering.Production} {
		t.Run(v.String(), func(t *testing.T) {
			p := load(t, v)
			pub, err := p.Publisher(0)
			if err != nil {
				t.Fatal(err)
			}
			defer pub.Close()
			reports := map[rss.HashReport]int{}
			mismatches := 0
			for c, cfg := range cfgs {
				eng, err := rss.New(cfg)
				if err != nil {
					t.Fatal(err)
				}
				if err := pub.Publish(cfg); err != nil {
					t.Fatal(err)
				}
				for _, f := range frames[c*total/configs : (c+1)*total/configs] {
					want := eng.Steer(f)
					q, err := p.Run(f)
					if err != nil {
						t.Fatalf("frame %x: %v", f, err)
					}
					reports[want.Report]++
					if q != uint32(want.Queue) {
						if mismatches++; mismatches <= 10 {
							t.Errorf("config %d (%s) frame %x: queue %#x, engine %+v", c, cfg.HashTypes, f, q, want)
						}
					}
				}
			}
			if mismatches > 0 {
				t.Fatalf("%d of %d frames on another queue than the engine's", mismatches, total)
			}
			for rep := rss.ReportNone; rep <= rss.ReportUDPv6Ex; rep++ {
				if reports[rep] == 0 {
					t.Errorf("no frame produced report %s", rep)
				}
			}
			t.Logf("%d frames, %d configurations: every queue (the hash's low 15 bits) equals the engine's; reports %v", total, configs, reports)
		})
	}
}
