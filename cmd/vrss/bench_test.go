package main

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/vrss-dev/vrss/internal/bench"
	"github.com/vrss-dev/vrss/internal/privtest"
)

// quickBench makes bench take seconds, not tens: these tests check that
// every figure is measured and reported, not what the figures are.
func quickBench(t *testing.T) {
	t.Helper()
	privtest.Require(t, "bpf")
	privtest.Require(t, "tap")
	privtest.Require(t, "netns")
	old := benchBase
	benchBase = bench.Options{Repeat: 2000, EngineIters: 20000, Rounds: 1}
	t.Cleanup(func() { benchBase = old })
}

func TestBenchJSON(t *testing.T) {
	quickBench(t)
	code, out, errOut := vrss(t, "bench", "--json", "--frames", "2000")
	if code != exitOK || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("output is not one JSON object: %v\n%s", err, out)
	}
	kinds := []string{"tcpv4", "udpv6", "ipv6_ext"}
	positive := func(path string, v any) {
		if x, ok := v.(float64); !ok || x <= 0 {
			t.Errorf("%s = %v, want a positive number", path, v)
		}
	}
	object := func(path string, v any, keys []string, check func(string, any)) {
		m, ok := v.(map[string]any)
		if !ok {
			t.Errorf("%s = %v, want an object", path, v)
			return
		}
		for _, k := range keys {
			check(path+"."+k, m[k])
		}
	}
	for _, key := range []string{"bpf_ns", "read_floor_ns", "bitserial_ns", "engine_ns"} {
		object(key, got[key], kinds, positive)
	}
	positive("floor_ns", got["floor_ns"])
	object("tap_pps", got["tap_pps"], []string{"none", "vrss"}, positive)
	object("tap_lost", got["tap_lost"], []string{"none", "vrss"}, func(path string, v any) {
		if v != 0.0 {
			t.Errorf("%s = %v, want 0: frames were lost", path, v)
		}
	})
	object("ratios", got["ratios"], []string{"vrss_tcpv4_over_floor", "tap_vrss_over_none"}, positive)
	object("ratios", got["ratios"], []string{"bitserial_over_vrss", "bitserial_over_read_floor"}, func(path string, v any) {
		object(path, v, kinds, positive)
	})
	object("targets_met", got["targets_met"], []string{"vrss_tcpv4_over_floor", "bitserial_over_vrss", "tap_vrss_over_none"}, func(path string, v any) {
		if _, ok := v.(bool); !ok {
			t.Errorf("%s = %v, want true or false", path, v)
		}
	})
	if t.Failed() {
		t.Logf("output:\n%s", out)
	}
}

func TestBenchText(t *testing.T) {
	quickBench(t)
	code, out, errOut := vrss(t, "bench", "--frames", "2000")
	if code != exitOK || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	for _, want := range []string{"vrss eBPF", "floor (returns 0)", "read floor", "bit-serial eBPF", "Go engine", "no program", "frames/s", "lost 0"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	_, targets, _ := strings.Cut(out, "\ntargets\n")
	lines := strings.Split(strings.TrimSpace(targets), "\n")
	if len(lines) < 5 {
		t.Fatalf("want 5 target lines, got %d:\n%s", len(lines), out)
	}
	marked := regexp.MustCompile(`want [<>]= \S+ +(ok|MISSED)$`)
	bounded := regexp.MustCompile(`^  bit-serial / vrss \S+ .* want >= \S+ +(ok|MISSED) +bound [0-9.]+x$`)
	for i, l := range lines[:5] {
		if i >= 1 && i <= 3 {
			if !bounded.MatchString(l) {
				t.Errorf("bit-serial target line %q is not marked ok or MISSED with its bound", l)
			}
		} else if !marked.MatchString(l) {
			t.Errorf("target line %q is not marked ok or MISSED", l)
		}
	}
}

// With --qemu-object the benchmark measures QEMU's program too; the stub
// object vrssd's tests use stands in for it (it returns the configured
// default queue, so it cannot hash as vrss does).
func TestBenchQEMUObject(t *testing.T) {
	quickBench(t)
	code, out, errOut := vrss(t, "bench", "--json", "--frames", "2000", "--qemu-object", "../../agent/testdata/qemu_rss_stub.o")
	if code != exitOK || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	var got struct {
		QEMU   map[string]float64 `json:"qemu_ns"`
		Agrees map[string]bool    `json:"qemu_agrees"`
		Ratios struct {
			QEMUOverVRSS map[string]float64 `json:"qemu_over_vrss"`
		} `json:"ratios"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	for _, k := range bench.Kinds {
		if got.QEMU[k] <= 0 || got.Ratios.QEMUOverVRSS[k] <= 0 {
			t.Errorf("%s: qemu_ns %v, qemu_over_vrss %v; want positive", k, got.QEMU[k], got.Ratios.QEMUOverVRSS[k])
		}
	}
	if len(got.Agrees) != len(bench.Kinds) || got.Agrees[bench.KindTCPv4] && got.Agrees[bench.KindUDPv6] && got.Agrees[bench.KindIPv6Ext] {
		t.Errorf("qemu_agrees %v: the stub cannot hash", got.Agrees)
	}

}

func TestBenchFlags(t *testing.T) {
	wantInputError(t, "--frames 0", "bench", "--frames", "0")
	wantInputError(t, "invalid value", "bench", "--frames", "many")
	wantInputError(t, "--duration -1s", "bench", "--duration", "-1s")
	wantInputError(t, "no such file", "bench", "--qemu-object", "/nonexistent/rss.o")
	wantInputError(t, "want tun_rss_steering_prog", "bench", "--qemu-object", "../../steering/vrss_bpfel.o")
	wantInputError(t, "invalid value", "bench", "--duration", "10")
	wantInputError(t, `unexpected argument "now"`, "bench", "now")
	code, out, _ := vrss(t, "help", "bench")
	if code != exitOK {
		t.Errorf("vrss help bench: exit %d", code)
	}
	for _, f := range []string{"-json", "-frames", "-duration"} {
		if !strings.Contains(out, "\n  "+f+" ") && !strings.Contains(out, "\n  "+f+"\n") {
			t.Errorf("help does not explain %s:\n%s", f, out)
		}
	}
}
