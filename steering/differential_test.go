package steering_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"

	"github.com/vrss-dev/vrss/internal/frame"
	"github.com/vrss-dev/vrss/rss"
	"github.com/vrss-dev/vrss/steering"
)

// shortIPHeader reports whether f is an untagged IPv4 or IPv6 frame too short
// to hold the fixed IP header: BPF_PROG_TEST_RUN rejects those with EINVAL.
func shortIPHeader(f []byte) bool {
	et := uint16(f[12])<<8 | uint16(f[13])
	return et == 0x0800 && len(f) < 14+20 || et == 0x86dd && len(f) < 14+40
}

// randomConfig returns a configuration with a random key (of a random
// length), table and hash-type set.
func randomConfig(r *rand.Rand) rss.Config {
	key := make([]byte, []int{40, 40, 40, 52, 13, 255}[r.IntN(6)])
	for i := range key {
		key[i] = byte(r.Uint32())
	}
	table := make([]uint16, 1<<r.IntN(10))
	for i := range table {
		table[i] = uint16(r.IntN(256))
	}
	types := rss.HashType(r.Uint32()) & rss.AllHashTypes
	if r.IntN(3) == 0 {
		types = rss.AllHashTypes
	}
	return rss.Config{HashTypes: types, Key: key, Table: table, UnclassifiedQueue: uint16(r.IntN(256))}
}

// TestDifferential steers at least a million random and crafted frames
// through the debug build of the program with BPF_PROG_TEST_RUN and checks
// that queue, hash and report equal the rss engine's for every one.
// VRSS_DIFF_FRAMES overrides the count.
func TestDifferential(t *testing.T) {
	total := 1_100_000 // about 5% are too short for BPF_PROG_TEST_RUN
	if v, err := strconv.Atoi(os.Getenv("VRSS_DIFF_FRAMES")); err == nil {
		total = v
	} else if testing.Short() {
		total = 50_000
	}
	p := load(t, steering.Debug)
	pub, err := p.Publisher(0)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()

	const configs = 8
	r := rand.New(rand.NewPCG(20261122, 1))
	reports := map[rss.HashReport]int{}
	var runs, short, mismatches int
	for c := 0; c < configs; c++ {
		cfg := randomConfig(r)
		if c == 0 {
			cfg.HashTypes = rss.AllHashTypes
		}
		eng, err := rss.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := pub.Publish(cfg); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < total/configs; i++ {
			f := frame.Random(r)
			want := eng.Steer(f)
			if len(f) < 14 || shortIPHeader(f) {
				// BPF_PROG_TEST_RUN refuses frames shorter than an Ethernet
				// header, and untagged IP frames whose fixed IP header is
				// cut short. The engine must say unclassified; the device
				// test sends such frames through a real TAP.
				short++
				if want.Report != rss.ReportNone {
					t.Fatalf("engine classified a %d-byte frame", len(f))
				}
				continue
			}
			q, err := p.Run(f)
			if err != nil {
				t.Fatalf("frame %x: %v", f, err)
			}
			got, err := p.LastResult()
			if err != nil {
				t.Fatal(err)
			}
			runs++
			reports[want.Report]++
			if q != uint32(want.Queue) || got != want {
				mismatches++
				if mismatches <= 10 {
					t.Errorf("config %d (%s) frame %x:\n program queue %d %+v\n engine %+v", c, cfg.HashTypes, f, q, got, want)
				}
			}
		}
	}
	if mismatches > 0 {
		t.Fatalf("%d of %d frames differ", mismatches, runs)
	}
	// The frames must have exercised every report type.
	for rep := rss.ReportNone; rep <= rss.ReportUDPv6Ex; rep++ {
		if reports[rep] == 0 {
			t.Errorf("no frame produced report %s", rep)
		}
	}
	t.Logf("%d frames identical through BPF_PROG_TEST_RUN (%d configs, %d frames too short for BPF_PROG_TEST_RUN checked in the engine only); reports: %v", runs, configs, short, fmt.Sprint(reports))
}
