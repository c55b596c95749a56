//go:build linux

package xdptest

import (
	"fmt"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"

	"github.com/vrss-dev/vrss/internal/diffcorpus"
	"github.com/vrss-dev/vrss/internal/frame"
	"github.com/vrss-dev/vrss/internal/privtest"
	"github.com/vrss-dev/vrss/rss"
	"github.com/vrss-dev/vrss/steering"
)

// TestXDPClassifiesAsEngine runs the XDP build of the steering headers
// (bpf/xdp_test.c) through BPF_PROG_TEST_RUN on the differential test's
// frames and checks that hash, report and queue equal the rss engine's for
// every one. VRSS_DIFF_FRAMES overrides the count.
func TestXDPClassifiesAsEngine(t *testing.T) {
	privtest.Require(t, "bpf")
	total := diffcorpus.Frames()
	_ = rlimit.RemoveMemlock()
	var objs xdpObjects
	if err := loadXdpObjects(&objs, nil); err != nil {
		t.Fatalf("load: %v", err)
	}
	defer objs.Close()
	pub, err := steering.NewPublisher(objs.VrssConfig.FD(), 0)
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
			if len(f) < 14 {
				// BPF_PROG_TEST_RUN refuses XDP frames shorter than an
				// Ethernet header; the engine must say unclassified.
				short++
				if want.Report != rss.ReportNone {
					t.Fatalf("engine classified a %d-byte frame", len(f))
				}
				continue
			}
			ret, err := objs.VrssXdpClassify.Run(&ebpf.RunOptions{Data: f})
			if err != nil {
				t.Fatalf("frame %x: %v", f, err)
			}
			var d xdpVrssDebug
			if err := objs.VrssDebug.Lookup(uint32(0), &d); err != nil {
				t.Fatal(err)
			}
			got := rss.Result{Queue: d.Queue, Hash: d.Hash, Report: rss.HashReport(d.Report)}
			runs++
			reports[want.Report]++
			if ret != 2 /* XDP_PASS */ || got != want {
				mismatches++
				if mismatches <= 10 {
					t.Errorf("config %d (%s) frame %x:\n program %+v (return %d)\n engine  %+v", c, cfg.HashTypes, f, got, ret, want)
				}
			}
		}
	}
	if mismatches > 0 {
		t.Fatalf("%d of %d frames differ", mismatches, runs)
	}
	for rep := rss.ReportNone; rep <= rss.ReportUDPv6Ex; rep++ {
		if reports[rep] == 0 {
			t.Errorf("no frame produced report %s", rep)
		}
	}
	t.Logf("%d frames identical through BPF_PROG_TEST_RUN for XDP (%d configs, %d frames shorter than an Ethernet header checked in the engine only); reports: %v", runs, configs, short, fmt.Sprint(reports))
}
