package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/vrss-dev/vrss/internal/bench"
	"github.com/vrss-dev/vrss/qemu/ebpfrss"
)

const benchDescription = `
Measure what vrss steering costs, all in one run (needs root):

  - the eBPF steering program's cost per frame in BPF_PROG_TEST_RUN for a
    TCPv4 frame, a UDPv6 frame and an IPv6 TCP frame with extension headers
    (hop-by-hop, type 2 routing, home address option), next to a program
    that only returns 0 (the floor, on the TCPv4 frame), one that only
    makes vrss's first read of the frame (the read floor: the kernel's test
    run and one helper call, which every program that looks at the packet
    pays) and a bit-serial Toeplitz build of the same program; with
    --qemu-object, also QEMU's own eBPF RSS program (the one QEMU >= 9.0
    hands out through QMP request-ebpf), configured as QEMU would for the
    same configuration;
  - each program's cost above the read floor, the work it does itself:
    the median over rounds of its cost less the read floor's in the same
    round;
  - the flow build (flow rules and RSS contexts) on TCPv4 frames, with
    no rules (none); one exact IPv4 5-tuple rule (exact_1); 10 (exact_10);
    10,000 (exact_10000, the frames spread over 1,000 of them); 16 masks
    (destination prefixes /17 to /32 with a port) of 100 rules each, every
    frame's search looking up all 16 (masks_16x100); and one rule sending
    the frames to an RSS context (context); next to the plain program (no
    rule support) and the read floor on the same frames, in the same
    rounds, every case a tenth of its frames at a time so that all are
    measured close together. Each measured frame is checked first: the
    engine says it matches the rule the case names, and the flow program
    steers it there and counts the hit. A case's figure in a round is the
    mean over its 1,000 frames, a test run of each; and, as a reference
    for the search, one lookup in a kernel BPF hash map of 10,000 16-byte
    keys, above the floor program (hash_lookup_ns);
  - port security (issue 14): frames written into a TAP as a VMM writes
    them (virtio-net header, non-blocking), reaching the peer of an
    uplink veth, per second (port_pps): through a Linux bridge with no
    filtering (bridge); the same bridge with nftables bridge-family rules
    equivalent to the policy (nftables; needs the nft command); and vrss's
    XDP policy on the TAP, redirecting to the uplink (vrss); the modes'
    rounds alternate, in a new network namespace; and the policy program's
    cost per TCPv4 frame next to an XDP program that only passes
    (xdp_ns: floor, policy);
  - AF_XDP (issue 16): the policy program with its XSKMAP redirect next to
    the XDP floor and a program that only redirects (afxdp_ns: floor,
    redirect, redirect_only), and the frames per second an
    AF_XDP socket (package xsk) and an AF_PACKET socket receive of the same
    traffic on a veth, sent by the kernel's live-frames generator, faster
    than either (afxdp_pps: af_packet, afxdp, and the frames each lost);
  - the kernel memory a TAP's maps take: the configuration map of each
    build, and the flow build's per-CPU rule counters;
  - the Go engine's cost per frame on the same frames;
  - the rate at which frames injected into a 4-queue TAP device arrive on
    its queues, with no steering program and with vrss attached, in pairs
    of adjacent rounds.

Each eBPF and Go figure is the median of 5 interleaved rounds. The targets
are: vrss on TCPv4 within 2.5x the floor; the bit-serial build's cost above
the read floor at least 8x vrss's on TCPv4 and UDPv6; and TAP injection with
vrss at least 95% of the rate with no program, as the median of the ratios
within 9 pairs of rounds (their spread, min to max, is shown too); for
the flow build, no rules at most 5% above the plain program, 10,000 exact
rules at most 1.3x no rules, and 10 and 10,000 exact rules within 10% of
each other (each the median over rounds of the ratio within a round). A goal
besides: vrss within 20 ns of the read floor on every frame kind whose
headers fit its first read of the frame (TCPv4, UDPv6). The text output
marks each ok or MISSED. With --json the output is one object:

    {"bpf_ns": {"tcpv4": N, "udpv6": N, "ipv6_ext": N}, "floor_ns": N,
     "read_floor_ns": {...}, "bitserial_ns": {...},
     "over_read_floor_ns": {"vrss": {...}, "bitserial": {...}, "qemu": {...}},
     "engine_ns": {...}, "tap_pps": {"none": N, "vrss": N},
     "tap_pair_ratios": [N, ...], "tap_lost": {"none": N, "vrss": N},
     "rules_ns": {"none": N, "exact_1": N, "exact_10": N, "exact_10000": N,
                  "masks_16x100": N, "context": N},
     "rules_baseline_ns": N, "rules_read_floor_ns": N,
     "rules_over_read_floor_ns": {"plain": N, "none": N, ...},
     "map_bytes": {"plain": N, "flows": N, "flow_counters": N,
                   "flow_counters_per_cpu": N, "possible_cpus": N},
     "ratios": {"vrss_tcpv4_over_floor": N,
                "bitserial_over_vrss_excess": {...}, "qemu_over_vrss_excess": {...},
                "tap_vrss_over_none": N, "tap_pair_ratio_min": N, "tap_pair_ratio_max": N,
                "bitserial_over_vrss": {...}, "qemu_over_vrss": {...},
                "none_over_plain": N, "exact_10000_over_none": N,
                "exact_10000_over_exact_10": N},
     "targets_met": {"vrss_tcpv4_over_floor": B, "bitserial_over_vrss_excess": B,
                     "tap_vrss_over_none": B, "vrss_over_read_floor_goal": B,
                     "rules_none_over_plain": B, "rules_exact_10000_over_none": B,
                     "rules_exact_10_vs_10000": B},
     "params": {...}}

where the qemu keys, "qemu_ns" and "qemu_agrees" (per frame kind: does
QEMU's program hash the frame as vrss does? Where not, the figure is for
different work) come only with --qemu-object. "tap_vrss_over_none" is the
median of "tap_pair_ratios"; "bitserial_over_vrss" and "qemu_over_vrss"
compare whole costs, the kernel's test run and first read included, as do
the flow build's ratios. "rules_baseline_ns" is the plain program on the
frames of "none"; "map_bytes" "plain" and "flows" are the configuration
map, locked, rounded up to pages; "flow_counters" is the flow build's
per-CPU counter map: 8 bytes per counter on each possible CPU. A kernel
that refuses the flow build still gets every other figure: "rules_error"
then says why, and the rule figures and targets are left out or false.

Exit status is 0 when the measurements were taken, targets met or not; 1 if
they could not be (no eBPF, no TAP device), 2 for bad flags.`

// benchBase holds the options flags do not set; tests shrink them.
var benchBase bench.Options

func runBench(args []string, stdout, stderr io.Writer) int {
	return report(stderr, "bench", benchMain(args, stdout))
}

func benchMain(args []string, stdout io.Writer) error {
	fs := newFlagSet("bench", "[--json] [--frames N] [--duration D] [--qemu-object FILE]", benchDescription)
	asJSON := fs.Bool("json", false, "print one JSON object instead of text")
	frames := fs.Int("frames", 200_000, "frames to inject through the TAP device per round, `N` > 0")
	duration := fs.Duration("duration", 10*time.Second,
		"longest one TAP round may take, `D` > 0 (e.g. 30s); frames that have not\narrived by then are reported lost")
	qemuObject := fs.String("qemu-object", "",
		"also measure QEMU's own eBPF RSS program from `FILE`, the object QMP request-ebpf\nreturns (vrssd caches it under its state directory, in qemu-ebpf/)")
	pos, err := fs.parse(args, stdout)
	if err != nil {
		return err
	}
	if err := noArgs(pos); err != nil {
		return err
	}
	if *frames <= 0 {
		return inputErrorf("--frames %d: want a positive number", *frames)
	}
	if *duration <= 0 {
		return inputErrorf("--duration %v: want a positive duration", *duration)
	}
	if *qemuObject != "" {
		// Checked here so that a wrong file is bad input, not a failed run.
		data, err := os.ReadFile(*qemuObject)
		if err != nil {
			return inputErrorf("--qemu-object: %v", err)
		}
		if _, err := ebpfrss.ParseObject(data); err != nil {
			return inputErrorf("--qemu-object %s: not QEMU's eBPF RSS object: %v", *qemuObject, err)
		}
	}
	o := benchBase
	o.Frames, o.Duration, o.QEMUObject = *frames, *duration, *qemuObject
	r, err := bench.Run(o)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(stdout)
	if *asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			return err
		}
	} else {
		writeBenchText(w, r)
	}
	return w.Flush()
}

func writeBenchText(w io.Writer, r bench.Result) {
	p := r.Params
	fmt.Fprintf(w, "%s, median of %d interleaved rounds\n\n", p.Kernel, p.Rounds)
	header := func(title string) {
		fmt.Fprintf(w, "%-29s %10s %10s %10s\n", title, bench.KindTCPv4, bench.KindUDPv6, bench.KindIPv6Ext)
	}
	row := func(name, format string, m map[string]float64) {
		fmt.Fprintf(w, "  %-27s "+format+" "+format+" "+format+"\n", name, m[bench.KindTCPv4], m[bench.KindUDPv6], m[bench.KindIPv6Ext])
	}
	ns := func(name string, m map[string]float64) { row(name, "%10.1f", m) }
	times := func(name string, m map[string]float64) { row(name, "%9.2fx", m) }

	header("cost per frame, ns")
	ns("vrss eBPF", r.BPF)
	fmt.Fprintf(w, "  %-27s %10.1f\n", "floor (returns 0)", r.Floor)
	ns("read floor (reads, ret 0)", r.ReadFloor)
	ns("bit-serial eBPF", r.BitSerial)
	if r.QEMU != nil {
		ns("QEMU's eBPF RSS program", r.QEMU)
	}
	ns("Go engine", r.Engine)
	slow := "bit-serial"
	if r.QEMU != nil {
		slow += " and QEMU"
	}
	fmt.Fprintf(w, "  (eBPF: BPF_PROG_TEST_RUN, %d runs, %s %d; Go: %d steers)\n\n", p.Repeat, slow, p.BitSerialRepeat, p.EngineIters)

	header("above the read floor, ns")
	ns("vrss eBPF", r.OverReadFloor["vrss"])
	ns("bit-serial eBPF", r.OverReadFloor["bitserial"])
	if r.QEMU != nil {
		ns("QEMU's eBPF RSS program", r.OverReadFloor["qemu"])
	}
	times("bit-serial / vrss", r.Ratios.BitSerialOverVRSSExcess)
	if r.QEMU != nil {
		times("QEMU / vrss", r.Ratios.QEMUOverVRSSExcess)
	}
	fmt.Fprintf(w, "  (the program's own work: its cost less the read floor's)\n\n")

	if r.RulesError != "" {
		fmt.Fprintf(w, "flow rules: not measured: %s\n\n", r.RulesError)
	} else {
		writeRulesText(w, r)
	}

	fmt.Fprintf(w, "TAP injection, %d queues, %d frames per round, %d pairs of rounds\n", p.TAPQueues, p.TAPFrames, p.TAPPairs)
	for _, m := range []struct{ key, name string }{{"none", "no program"}, {"vrss", "vrss"}} {
		fmt.Fprintf(w, "  %-27s %10.0f frames/s   lost %d\n", m.name, r.TAPPPS[m.key], r.TAPLost[m.key])
	}
	pct := func(x float64) string { return fmt.Sprintf("%.1f%%", 100*x) }
	fmt.Fprintf(w, "  %-27s %s\n", "vrss / no program, per pair", strings.Join(mapSlice(r.TAPPairs, pct), " "))

	fmt.Fprintf(w, "\nport security: frames written into a TAP reaching an uplink veth's peer, %d frames per round, %d rounds\n", p.TAPFrames, p.PortRounds)
	for _, m := range []struct{ key, name string }{{bench.PortBridge, "bridge"}, {bench.PortNftables, "bridge + nftables"}, {bench.PortVRSS, "vrss XDP + redirect"}} {
		if e := r.PortResult.Error[m.key]; e != "" {
			fmt.Fprintf(w, "  %-27s not measured: %s\n", m.name, e)
			continue
		}
		fmt.Fprintf(w, "  %-27s %10.0f frames/s   lost %d\n", m.name, r.PPS[m.key], r.Lost[m.key])
	}
	fmt.Fprintf(w, "  %-27s %10.1f ns\n  %-27s %10.1f ns\n", "XDP floor (XDP_PASS)", r.XDPNs.Floor, "port-security program", r.XDPNs.Policy)

	fmt.Fprintf(w, "\nAF_XDP: a one-queue veth, %d rounds\n", p.PortRounds)
	fmt.Fprintf(w, "  %-27s %10.0f frames/s   lost %d\n", "AF_PACKET socket receives", r.AFXDPPPS.AFPacket, r.AFXDPPPS.LostAFPacket)
	fmt.Fprintf(w, "  %-27s %10.0f frames/s   lost %d\n", "AF_XDP socket receives", r.AFXDPPPS.AFXDP, r.AFXDPPPS.LostAFXDP)
	fmt.Fprintf(w, "  %-27s %10.1f ns\n  %-27s %10.1f ns\n", "XDP floor (XDP_PASS)", r.AFXDPNs.Floor, "policy + XSKMAP redirect", r.AFXDPNs.Redirect)
	fmt.Fprintf(w, "  %-27s %10.1f ns\n", "XSKMAP redirect alone", r.AFXDPNs.RedirectOnly)

	m := r.MapBytes
	fmt.Fprintf(w, "\nmemory per TAP: configuration map %d bytes (plain), %d bytes (flows)", m.Plain, m.Flows)
	if m.PossibleCPUs > 0 {
		fmt.Fprintf(w, "; flow counters %d bytes per CPU x %d possible CPUs = %d bytes", m.FlowCountersPerCPU, m.PossibleCPUs, m.FlowCounters)
	}
	fmt.Fprintln(w)

	mark := func(ok bool) string {
		if ok {
			return "ok"
		}
		return "MISSED"
	}
	line := func(name, value, want string, ok bool, note string) {
		fmt.Fprintln(w, strings.TrimRight(fmt.Sprintf("  %-36s %8s   want %-8s %-6s %s", name, value, want, mark(ok), note), " "))
	}
	x := func(v float64) string { return fmt.Sprintf("%.2fx", v) }
	fmt.Fprintf(w, "\ntargets\n")
	line("vrss tcpv4 / floor", x(r.Ratios.VRSSTCPv4OverFloor), fmt.Sprintf("<= %gx", bench.TargetFloorRatio), r.TargetsMet.VRSSTCPv4OverFloor, "")
	for _, k := range bench.ExcessKinds {
		v := r.Ratios.BitSerialOverVRSSExcess[k]
		line("bit-serial / vrss above floor "+k, x(v), fmt.Sprintf(">= %dx", bench.TargetExcessRatio), v >= bench.TargetExcessRatio, "")
	}
	line("TAP vrss / no program", pct(r.Ratios.TAPVRSSOverNone), fmt.Sprintf(">= %g%%", 100*bench.TargetTAPRatio), r.TargetsMet.TAPVRSSOverNone,
		fmt.Sprintf("median of %d pairs, %s to %s", len(r.TAPPairs), pct(r.Ratios.TAPPairsMin), pct(r.Ratios.TAPPairsMax)))
	if r.RulesError != "" {
		fmt.Fprintf(w, "  %-36s not measured\n", "flow build")
	} else {
		writeRulesTargets(r, line)
	}
	line("port vrss / nftables", x(r.Ratios.PortVRSSOverNftables), fmt.Sprintf(">= %gx", bench.TargetPortOverNftables), r.TargetsMet.PortVRSSOverNftables, "")
	line("port vrss / bridge", x(r.Ratios.PortVRSSOverBridge), fmt.Sprintf(">= %gx", bench.TargetPortOverBridge), r.TargetsMet.PortVRSSOverBridge, "")
	line("xdp policy / floor", x(r.Ratios.XDPPolicyOverFloor), fmt.Sprintf("<= %gx", bench.TargetXDPPolicyOverFloor), r.TargetsMet.XDPPolicyOverFloor, "")
	line("afxdp redirect / floor", x(r.Ratios.AFXDPRedirectOverFloor), fmt.Sprintf("<= %gx", bench.TargetAFXDPRedirectOverFloor), r.TargetsMet.AFXDPRedirectOverFloor, "")
	line("afxdp / af_packet received", x(r.Ratios.AFXDPOverAFPacket), fmt.Sprintf(">= %gx", bench.TargetAFXDPOverAFPacket), r.TargetsMet.AFXDPOverAFPacket, "")
	fmt.Fprintf(w, "goal\n")
	for _, k := range bench.FirstReadKinds {
		v := r.OverReadFloor["vrss"][k]
		line("vrss above the read floor "+k, fmt.Sprintf("%.1f ns", v), fmt.Sprintf("<= %d ns", bench.GoalExcessNS), v <= bench.GoalExcessNS, "")
	}
	if r.QEMU != nil {
		fmt.Fprintf(w, "\nQEMU's program (%s)\n", p.QEMUObject)
		for _, k := range bench.Kinds {
			note := "hashes as vrss"
			if !r.QEMUAgrees[k] {
				note = "hashes differently: not the same work"
			}
			fmt.Fprintf(w, "  %-27s %8s   %s\n", "QEMU / vrss "+k, x(r.Ratios.QEMUOverVRSS[k]), note)
		}
	}
}

func mapSlice(xs []float64, f func(float64) string) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = f(x)
	}
	return out
}

// writeRulesText prints the flow build's table: the plain program and each
// rule case on the same TCPv4 frames, and the read floor.
func writeRulesText(w io.Writer, r bench.Result) {
	fmt.Fprintf(w, "%-29s %10s %10s\n", "flow rules, TCPv4, ns", "per frame", "above rf")
	row := func(name string, ns, over float64) { fmt.Fprintf(w, "  %-27s %10.1f %10.1f\n", name, ns, over) }
	row("plain program (no rules)", r.RulesBaseline, r.RulesOverReadFloor["plain"])
	for _, k := range bench.RuleCases {
		row("flow build: "+k, r.RulesNS[k], r.RulesOverReadFloor[k])
	}
	fmt.Fprintf(w, "  %-27s %10.1f\n", "read floor", r.RulesReadFloor)
	fmt.Fprintf(w, "  (each the mean over %d frames, %d runs each; exact_10000's match %d different rules)\n\n",
		bench.RuleFrames, max(1, r.Params.Repeat/bench.RuleFrames), bench.RuleFrames)
}

// writeRulesTargets prints the flow build's target lines.
func writeRulesTargets(r bench.Result, line func(name, value, want string, ok bool, note string)) {
	x := func(v float64) string { return fmt.Sprintf("%.2fx", v) }
	line("flows none / plain", x(r.Ratios.RulesNoneOverPlain), fmt.Sprintf("<= %gx", bench.TargetRulesNoneOverPlain), r.TargetsMet.RulesNoneOverPlain, "")
	line("flows exact_10000 / none", x(r.Ratios.RulesExact10000OverNone), fmt.Sprintf("<= %gx", bench.TargetRulesExact10000OverNone), r.TargetsMet.RulesExact10000OverNone, "")
	spread := r.Ratios.RulesExact10000OverExact10
	if spread > 0 && spread < 1 {
		spread = 1 / spread
	}
	line("flows exact_10000 vs exact_10", x(spread), fmt.Sprintf("<= %gx", bench.TargetRulesExactSpread), r.TargetsMet.RulesExactSpread,
		fmt.Sprintf("the larger over the smaller (exact_10000 / exact_10 = %s)", x(r.Ratios.RulesExact10000OverExact10)))
}
