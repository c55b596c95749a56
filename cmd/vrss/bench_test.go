package main

import (
	"encoding/json"
	"fmt"
	"os/exec"
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
	privtest.RequireFunc(t, "nft (Debian package nftables), for the port benchmark", func() error { _, err := exec.LookPath("nft"); return err })
	old := benchBase
	benchBase = bench.Options{Repeat: 2000, EngineIters: 20000, Rounds: 1, TAPPairs: 2, PortRounds: 1}
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
	checkBenchJSON(t, got, false)
	if t.Failed() {
		t.Logf("output:\n%s", out)
	}
}

// checkBenchJSON checks the shape of `vrss bench --json` output: every key
// the help text promises, per frame kind where it says so, with numbers
// and booleans where it says so; the qemu keys only if withQEMU.
func checkBenchJSON(t *testing.T, got map[string]any, withQEMU bool) {
	t.Helper()
	kinds := []string{"tcpv4", "udpv6", "ipv6_ext"}
	positive := func(path string, v any) {
		if x, ok := v.(float64); !ok || x <= 0 {
			t.Errorf("%s = %v, want a positive number", path, v)
		}
	}
	number := func(path string, v any) {
		if _, ok := v.(float64); !ok {
			t.Errorf("%s = %v, want a number", path, v)
		}
	}
	boolean := func(path string, v any) {
		if _, ok := v.(bool); !ok {
			t.Errorf("%s = %v, want true or false", path, v)
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
	perKind := func(check func(string, any)) func(string, any) {
		return func(path string, v any) { object(path, v, kinds, check) }
	}
	absent := func(m any, path string, keys ...string) {
		if o, ok := m.(map[string]any); ok {
			for _, k := range keys {
				if _, ok := o[k]; ok {
					t.Errorf("%s.%s present without --qemu-object", path, k)
				}
			}
		}
	}

	for _, key := range []string{"bpf_ns", "read_floor_ns", "bitserial_ns", "engine_ns"} {
		perKind(positive)(key, got[key])
	}
	positive("floor_ns", got["floor_ns"])
	programs := []string{"vrss", "bitserial"}
	ratioKeys := []string{"bitserial_over_vrss_excess", "bitserial_over_vrss"}
	if withQEMU {
		perKind(positive)("qemu_ns", got["qemu_ns"])
		perKind(boolean)("qemu_agrees", got["qemu_agrees"])
		programs = append(programs, "qemu")
		ratioKeys = append(ratioKeys, "qemu_over_vrss_excess", "qemu_over_vrss")
	} else {
		absent(got, "", "qemu_ns", "qemu_agrees")
		absent(got["over_read_floor_ns"], "over_read_floor_ns", "qemu")
		absent(got["ratios"], "ratios", "qemu_over_vrss_excess", "qemu_over_vrss")
	}
	// A cost above the read floor is a difference of two measurements:
	// on a busy machine, in a run this short, it may come out at or
	// below zero.
	object("over_read_floor_ns", got["over_read_floor_ns"], programs, perKind(number))
	object("ratios", got["ratios"], ratioKeys, perKind(number))
	object("ratios", got["ratios"], []string{"vrss_tcpv4_over_floor", "tap_vrss_over_none", "tap_pair_ratio_min", "tap_pair_ratio_max"}, positive)
	object("tap_pps", got["tap_pps"], []string{"none", "vrss"}, positive)
	if pairs, ok := got["tap_pair_ratios"].([]any); !ok || len(pairs) != 2 {
		t.Errorf("tap_pair_ratios = %v, want one ratio for each of 2 pairs", got["tap_pair_ratios"])
	} else {
		for i, v := range pairs {
			positive(fmt.Sprintf("tap_pair_ratios[%d]", i), v)
		}
	}
	object("tap_lost", got["tap_lost"], []string{"none", "vrss"}, func(path string, v any) {
		if v != 0.0 {
			t.Errorf("%s = %v, want 0: frames were lost", path, v)
		}
	})
	object("targets_met", got["targets_met"], []string{"vrss_tcpv4_over_floor", "bitserial_over_vrss_excess", "tap_vrss_over_none", "vrss_over_read_floor_goal",
		"rules_none_over_plain", "rules_exact_10000_over_none", "rules_exact_10_vs_10000"}, boolean)
	// The flow build's figures: every rule case, the plain program and
	// the read floor on the same frames, the ratios and the memory.
	object("rules_ns", got["rules_ns"], bench.RuleCases, positive)
	positive("rules_baseline_ns", got["rules_baseline_ns"])
	positive("rules_read_floor_ns", got["rules_read_floor_ns"])
	object("rules_over_read_floor_ns", got["rules_over_read_floor_ns"], append([]string{"plain"}, bench.RuleCases...), number)
	object("ratios", got["ratios"], []string{"none_over_plain", "exact_10000_over_none", "exact_10000_over_exact_10"}, positive)
	object("map_bytes", got["map_bytes"], []string{"plain", "flows", "flow_counters", "flow_counters_per_cpu", "possible_cpus"}, positive)
	if m, ok := got["map_bytes"].(map[string]any); ok {
		if v, _ := m["plain"].(float64); v > bench.MaxPlainMapBytes {
			t.Errorf("map_bytes.plain = %v, want at most %d", v, bench.MaxPlainMapBytes)
		}
		if v, _ := m["flows"].(float64); v > bench.MaxFlowMapBytes {
			t.Errorf("map_bytes.flows = %v, want at most %d", v, bench.MaxFlowMapBytes)
		}
		if m["flow_counters"] != m["flow_counters_per_cpu"].(float64)*m["possible_cpus"].(float64) {
			t.Errorf("map_bytes: flow_counters %v is not flow_counters_per_cpu %v x possible_cpus %v", m["flow_counters"], m["flow_counters_per_cpu"], m["possible_cpus"])
		}
	}
	// The port benchmark's: every mode's rate, nothing lost, the XDP
	// figures and their ratios and targets.
	object("port_pps", got["port_pps"], bench.PortModes, positive)
	object("port_lost", got["port_lost"], bench.PortModes, func(path string, v any) {
		if v != 0.0 {
			t.Errorf("%s = %v, want 0: frames were lost", path, v)
		}
	})
	object("xdp_ns", got["xdp_ns"], []string{"floor", "policy"}, positive)
	object("ratios", got["ratios"], []string{"port_vrss_over_nftables", "port_vrss_over_bridge", "xdp_policy_over_floor"}, positive)
	object("targets_met", got["targets_met"], []string{"port_vrss_over_nftables", "port_vrss_over_bridge", "xdp_policy_over_floor"}, boolean)
	object("afxdp_ns", got["afxdp_ns"], []string{"floor", "redirect", "redirect_only", "redirect_over_floor"}, positive)
	object("afxdp_pps", got["afxdp_pps"], []string{"af_packet", "afxdp"}, positive)
	object("ratios", got["ratios"], []string{"afxdp_redirect_over_floor", "afxdp_over_af_packet"}, positive)
	object("targets_met", got["targets_met"], []string{"afxdp_redirect_over_floor", "afxdp_over_af_packet"}, boolean)
	object("params", got["params"], []string{"repeat", "rounds", "tap_pairs", "tap_frames", "port_rounds"}, positive)
}

func TestBenchText(t *testing.T) {
	quickBench(t)
	code, out, errOut := vrss(t, "bench", "--frames", "2000")
	if code != exitOK || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	for _, want := range []string{"vrss eBPF", "floor (returns 0)", "read floor", "bit-serial eBPF", "Go engine",
		"above the read floor, ns", "bit-serial / vrss", "no program", "frames/s", "lost 0", "per pair",
		"flow rules, TCPv4, ns", "plain program (no rules)", "flow build: none", "flow build: exact_10000", "flow build: masks_16x100",
		"flow build: context", "memory per TAP: configuration map",
		"port security:", "bridge + nftables", "vrss XDP + redirect", "port-security program",
		"AF_XDP socket receives", "policy + XSKMAP redirect"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	_, targets, _ := strings.Cut(out, "\ntargets\n")
	targets, goal, ok := strings.Cut(targets, "goal\n")
	if !ok {
		t.Fatalf("no goal section:\n%s", out)
	}
	marked := regexp.MustCompile(`want [<>]= \S+( ns)? +(ok|MISSED)( |$)`)
	want := []string{"vrss tcpv4 / floor", "bit-serial / vrss above floor tcpv4", "bit-serial / vrss above floor udpv6", "TAP vrss / no program",
		"flows none / plain", "flows exact_10000 / none", "flows exact_10000 vs exact_10",
		"port vrss / nftables", "port vrss / bridge", "xdp policy / floor",
		"afxdp redirect / floor", "afxdp / af_packet received"}
	lines := strings.Split(strings.TrimSpace(targets), "\n")
	if len(lines) != len(want) {
		t.Fatalf("want %d target lines, got %d:\n%s", len(want), len(lines), out)
	}
	for i, l := range lines {
		if !strings.HasPrefix(strings.TrimSpace(l), want[i]) || !marked.MatchString(l) {
			t.Errorf("target line %q: want %q marked ok or MISSED", l, want[i])
		}
	}
	if !regexp.MustCompile(`median of 2 pairs, [0-9.]+% to [0-9.]+%$`).MatchString(lines[3]) {
		t.Errorf("TAP target line %q lacks the pairs' median and spread", lines[3])
	}
	goals := strings.Split(strings.TrimSpace(goal), "\n")
	if len(goals) != 2 {
		t.Fatalf("want 2 goal lines, got %d:\n%s", len(goals), out)
	}
	for i, k := range []string{"tcpv4", "udpv6"} {
		if !strings.Contains(goals[i], "above the read floor "+k) || !marked.MatchString(goals[i]) {
			t.Errorf("goal line %q: want vrss above the read floor on %s, marked", goals[i], k)
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
	var all map[string]any
	if err := json.Unmarshal([]byte(out), &all); err != nil {
		t.Fatal(err)
	}
	checkBenchJSON(t, all, true)
	var got struct {
		Agrees map[string]bool `json:"qemu_agrees"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Agrees) != len(bench.Kinds) || got.Agrees[bench.KindTCPv4] && got.Agrees[bench.KindUDPv6] && got.Agrees[bench.KindIPv6Ext] {
		t.Errorf("qemu_agrees %v: the stub cannot hash", got.Agrees)
	}
	code, out, errOut = vrss(t, "bench", "--frames", "2000", "--qemu-object", "../../agent/testdata/qemu_rss_stub.o")
	if code != exitOK || errOut != "" {
		t.Fatalf("text: exit %d, stderr %q", code, errOut)
	}
	for _, want := range []string{"QEMU's eBPF RSS program", "QEMU / vrss", "hashes differently"} {
		if !strings.Contains(out, want) {
			t.Errorf("text output lacks %q:\n%s", want, out)
		}
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

// Where the flow build does not load, the rest is reported and the text
// says why the rules were not measured.
func TestBenchTextNoFlows(t *testing.T) {
	r := bench.Result{RulesError: "load the flows program: refused", MapBytes: bench.MapBytes{Plain: 208896, Flows: 999424}}
	var b strings.Builder
	writeBenchText(&b, r)
	out := b.String()
	for _, want := range []string{"flow rules: not measured: load the flows program: refused\n", "  flow build                           not measured\n",
		"memory per TAP: configuration map 208896 bytes (plain), 999424 bytes (flows)\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "flows none / plain") {
		t.Errorf("rule targets without rule figures:\n%s", out)
	}
}
