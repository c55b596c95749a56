package steering_test

import (
	"fmt"
	"testing"

	"github.com/vrss-dev/vrss/internal/diffcorpus"
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

// TestDifferential steers at least a million random and crafted frames
// through the debug build of the program with BPF_PROG_TEST_RUN and checks
// that queue, hash and report equal the rss engine's for every one.
// VRSS_DIFF_FRAMES overrides the count.
func TestDifferential(t *testing.T) {
	total := diffcorpus.Frames()
	p := load(t, steering.Debug)
	pub, err := p.Publisher(0)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()

	const configs = diffcorpus.Configs
	r := diffcorpus.Rand()
	reports := map[rss.HashReport]int{}
	var runs, short, mismatches int
	for c := 0; c < configs; c++ {
		cfg := diffcorpus.Config(r)
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
