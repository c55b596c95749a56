// Package bench measures what vrss steering costs, for `vrss bench`: the
// steering program's per-frame cost in BPF_PROG_TEST_RUN against a program
// that only returns 0 (the floor), one that only reads the frame as vrss
// does (the read floor) and a bit-serial Toeplitz build of the same
// program (and, if asked, QEMU's own program), each program's own work as
// its cost above the read floor, the flow build's cost with rule sets of
// several sizes and shapes next to the plain program on the same frames
// (rules.go), the memory a TAP's maps take, the Go engine's cost per
// frame, and the rate at which frames injected into a TAP device arrive on
// its queues with no steering program and with vrss attached, in pairs of
// rounds.
//
// It needs root (or CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN): it loads eBPF
// programs and creates a TAP device in a throwaway network namespace.
package bench

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/vrss-dev/vrss/internal/frame"
	"github.com/vrss-dev/vrss/portxdp"
	"github.com/vrss-dev/vrss/rss"
	"github.com/vrss-dev/vrss/steering"
	"github.com/vrss-dev/vrss/xsk/xsktest"
)

// Frame kinds, the keys of the per-kind figures.
const (
	KindTCPv4   = "tcpv4"
	KindUDPv6   = "udpv6"
	KindIPv6Ext = "ipv6_ext"
)

// Kinds lists the frame kinds in the order reports show them.
var Kinds = []string{KindTCPv4, KindUDPv6, KindIPv6Ext}

// Targets, as restated in issue 11: what a program costs beyond the
// kernel's test run and its first read of the frame (the read floor) is
// the work it does itself, and that is what the bit-serial target compares.
const (
	// TargetFloorRatio is the most the vrss program may cost on a TCPv4
	// frame, as a multiple of the floor.
	TargetFloorRatio = 2.5
	// TargetExcessRatio is the least the bit-serial build's cost above the
	// read floor must be, as a multiple of vrss's, on each of ExcessKinds.
	TargetExcessRatio = 8
	// TargetTAPRatio is the least TAP injection rate with vrss attached, as
	// a fraction of the rate with no program: the median of the ratios
	// within pairs of rounds.
	TargetTAPRatio = 0.95
	// GoalExcessNS is the most vrss should cost above the read floor on
	// each of FirstReadKinds (a goal, not a target).
	GoalExcessNS = 20
)

// ExcessKinds are the frame kinds TargetExcessRatio applies to.
var ExcessKinds = []string{KindTCPv4, KindUDPv6}

// FirstReadKinds are the frame kinds whose headers all lie in the
// program's first read of the frame (the IPv6 frame with extension headers
// has its TCP header past it, which takes a second read); GoalExcessNS
// applies to them.
var FirstReadKinds = []string{KindTCPv4, KindUDPv6}

// Options say how long to measure. Zero fields take the defaults.
type Options struct {
	// Frames is the number of frames injected through the TAP per round
	// (default 200,000).
	Frames int
	// Duration is the longest one TAP round may take; frames that have not
	// arrived by then count as lost (default 10s).
	Duration time.Duration
	// Repeat is the number of runs per BPF_PROG_TEST_RUN measurement
	// (default 1,000,000; the bit-serial build, being much slower, gets a
	// tenth of it).
	Repeat int
	// EngineIters is the number of Go engine steers per measurement
	// (default 1,000,000).
	EngineIters int
	// Rounds is the number of interleaved rounds; each figure is the
	// median of its rounds (default 5).
	Rounds int
	// TAPPairs is the number of pairs of TAP rounds, one without a program
	// and one with vrss, after one warm-up pair (default 9).
	TAPPairs int
	// PortRounds is the number of rounds of each mode of the port
	// benchmark (MeasurePort), after one warm-up round each (default 5).
	PortRounds int
	// QEMUObject, if set, is the path of QEMU's eBPF RSS object (as QMP
	// request-ebpf returns it and vrssd caches it), measured next to vrss
	// with as many runs as the bit-serial build.
	QEMUObject string
}

func (o Options) withDefaults() Options {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.Frames, 200_000)
	def(&o.Repeat, 1_000_000)
	def(&o.EngineIters, 1_000_000)
	def(&o.Rounds, 5)
	def(&o.TAPPairs, 9)
	def(&o.PortRounds, 5)
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
	}
	return o
}

// Result holds the figures; its JSON form is the output of `vrss bench
// --json`. Per-kind maps are keyed by the Kind constants.
type Result struct {
	// BPF is the vrss program's cost per frame in ns.
	BPF map[string]float64 `json:"bpf_ns"`
	// Floor is the cost in ns of a program that returns 0, on the TCPv4
	// frame: what any steering program costs at least.
	Floor float64 `json:"floor_ns"`
	// ReadFloor is the cost per frame in ns of a program that makes the
	// vrss program's first read of the frame (one helper call) and returns
	// 0: what any program that looks at the packet costs at least.
	ReadFloor map[string]float64 `json:"read_floor_ns"`
	// BitSerial is the bit-serial Toeplitz build's cost per frame in ns.
	BitSerial map[string]float64 `json:"bitserial_ns"`
	// QEMU is the cost per frame in ns of QEMU's own eBPF RSS program,
	// configured as QEMU would for the same configuration; only with
	// Options.QEMUObject.
	QEMU map[string]float64 `json:"qemu_ns,omitempty"`
	// QEMUAgrees says, per frame kind, whether QEMU's program hashes the
	// frame as the engine does (compared on the hash's low 7 bits, through
	// an identity table); where it does not, the two programs do different
	// work (docs/semantics.md lists where they differ).
	QEMUAgrees map[string]bool `json:"qemu_agrees,omitempty"`
	// OverReadFloor is each program's cost above the read floor in ns, per
	// frame kind: the work the program does itself, beyond the kernel's
	// test run and the first read of the frame that every program that
	// looks at the packet makes. Keys "vrss", "bitserial" and, with
	// Options.QEMUObject, "qemu". Each is the median over rounds of the
	// difference within a round, not the difference of the medians.
	OverReadFloor map[string]map[string]float64 `json:"over_read_floor_ns"`
	// Engine is the Go engine's (rss.Engine.Steer) cost per frame in ns.
	Engine map[string]float64 `json:"engine_ns"`
	// TAPPPS is the rate in frames per second at which injected frames
	// arrived on the TAP's queues: "none" without a steering program,
	// "vrss" with the production program attached; the median over the
	// rounds of each.
	TAPPPS map[string]float64 `json:"tap_pps"`
	// TAPPairs holds vrss's rate over the rate without a program within
	// each pair of adjacent rounds, in the order measured.
	TAPPairs []float64 `json:"tap_pair_ratios"`
	// TAPLost counts frames sent but not received over all rounds of each
	// mode; it should be 0.
	TAPLost map[string]int `json:"tap_lost"`
	// RulesNS is the flow build's cost per frame in ns on TCPv4 frames,
	// per rule case (the RuleCases keys): the mean over the case's
	// RuleFrames frames, the median of the rounds.
	RulesNS map[string]float64 `json:"rules_ns,omitempty"`
	// RulesBaseline is the plain production program's cost per frame in
	// ns on the frames of the "none" case, measured in the same rounds.
	RulesBaseline float64 `json:"rules_baseline_ns,omitempty"`
	// RulesReadFloor is the read floor's cost on the same frames.
	RulesReadFloor float64 `json:"rules_read_floor_ns,omitempty"`
	// RulesOverReadFloor is each rule case's cost, and the plain
	// program's ("plain"), above the read floor measured in the same
	// round: the median over rounds of the difference.
	RulesOverReadFloor map[string]float64 `json:"rules_over_read_floor_ns,omitempty"`
	// RulesError says why the flow build was not measured (it did not
	// load); then the rule figures are absent or zero.
	RulesError string `json:"rules_error,omitempty"`
	// HashLookupNS is one lookup in a kernel BPF hash map of 10,000
	// 16-byte keys (bpf_map_lookup_elem from a socket filter), above the
	// floor program measured in the same rounds: what a hashed lookup
	// costs when the kernel's own hash table does it, the least any "hash
	// lookup per mask pattern" search pays per pattern.
	HashLookupNS float64 `json:"hash_lookup_ns,omitempty"`
	// Port is the port benchmark (issue 14): frames per second from a TAP
	// to an uplink veth's peer through a bridge, the bridge with
	// nftables, and vrss's XDP policy with its redirect.
	// Its fields are at the top level: port_pps, port_lost, port_error.
	PortResult
	// XDPNs is the port-security program's cost per TCPv4 frame next to
	// an XDP program that only passes (portxdp.XDPNs).
	XDPNs portxdp.XDPNs `json:"xdp_ns"`
	// AFXDPNs is the policy program with its XSKMAP redirect (an AF_XDP
	// port) next to the XDP floor (issue 16).
	AFXDPNs portxdp.AFXDPNs `json:"afxdp_ns"`
	// AFXDPPPS is the rate at which an AF_XDP socket (package xsk) and an
	// AF_PACKET socket receive the same traffic on veth.
	AFXDPPPS xsktest.PPS `json:"afxdp_pps"`
	// MapBytes is the kernel memory a TAP's maps take.
	MapBytes MapBytes `json:"map_bytes"`
	// Ratios compare the figures the targets are about.
	Ratios Ratios `json:"ratios"`
	// TargetsMet says, per ratio, whether it meets its target.
	TargetsMet Targets `json:"targets_met"`
	// Params are the options the figures were measured with.
	Params Params `json:"params"`

	// rulePairs holds the rule ratios' values within each round, by
	// ratio key; evaluate takes their medians.
	rulePairs map[string][]float64
}

// MapBytes is the kernel memory a TAP's program keeps per TAP: its
// configuration map in each build (steering.MapBytes: the value rounded
// up to pages), and the flow build's rule, drop and context counters, a
// per-CPU array: FlowCountersPerCPU bytes (8 per counter) on each of
// PossibleCPUs CPUs.
type MapBytes struct {
	Plain              int `json:"plain"`
	Flows              int `json:"flows"`
	FlowCounters       int `json:"flow_counters"`
	FlowCountersPerCPU int `json:"flow_counters_per_cpu"`
	PossibleCPUs       int `json:"possible_cpus"`
}

// Memory limits of issue 13: a TAP's configuration map, locked, in bytes.
const (
	MaxPlainMapBytes = 212_992
	MaxFlowMapBytes  = 1_000_000
)

// Ratios are the figures the targets constrain, and a few to compare.
type Ratios struct {
	VRSSTCPv4OverFloor float64 `json:"vrss_tcpv4_over_floor"`
	// BitSerialOverVRSSExcess is the bit-serial build's cost above the
	// read floor over vrss's, per frame kind: how much more work it does.
	BitSerialOverVRSSExcess map[string]float64 `json:"bitserial_over_vrss_excess"`
	// QEMUOverVRSSExcess is the same for QEMU's program; only with
	// Options.QEMUObject.
	QEMUOverVRSSExcess map[string]float64 `json:"qemu_over_vrss_excess,omitempty"`
	// TAPVRSSOverNone is the median of TAPPairs; TAPPairsMin and
	// TAPPairsMax are their spread.
	TAPVRSSOverNone float64 `json:"tap_vrss_over_none"`
	TAPPairsMin     float64 `json:"tap_pair_ratio_min"`
	TAPPairsMax     float64 `json:"tap_pair_ratio_max"`
	// BitSerialOverVRSS and QEMUOverVRSS compare whole costs per frame,
	// the kernel's test run and first read included (no target).
	BitSerialOverVRSS map[string]float64 `json:"bitserial_over_vrss"`
	QEMUOverVRSS      map[string]float64 `json:"qemu_over_vrss,omitempty"`
	// The flow build's ratios, each the median over rounds of the ratio
	// within a round: no rules over the plain program, 10,000 exact rules
	// over no rules and over 10.
	RulesNoneOverPlain         float64 `json:"none_over_plain"`
	RulesExact10000OverNone    float64 `json:"exact_10000_over_none"`
	RulesExact10000OverExact10 float64 `json:"exact_10000_over_exact_10"`
	// The port benchmark's: vrss's rate over nftables' and the bridge's;
	// the policy program's cost over the XDP floor's.
	PortVRSSOverNftables float64 `json:"port_vrss_over_nftables"`
	PortVRSSOverBridge   float64 `json:"port_vrss_over_bridge"`
	XDPPolicyOverFloor   float64 `json:"xdp_policy_over_floor"`
	// AF_XDP's: the redirect over the floor, AF_XDP's rate over AF_PACKET's.
	AFXDPRedirectOverFloor float64 `json:"afxdp_redirect_over_floor"`
	AFXDPOverAFPacket      float64 `json:"afxdp_over_af_packet"`
}

// Targets says which ratios meet their targets: BitSerialOverVRSSExcess
// holds only if it does on every kind of ExcessKinds. VRSSExcessGoal says
// whether vrss's cost above the read floor is within GoalExcessNS on every
// kind of FirstReadKinds.
type Targets struct {
	VRSSTCPv4OverFloor      bool `json:"vrss_tcpv4_over_floor"`
	BitSerialOverVRSSExcess bool `json:"bitserial_over_vrss_excess"`
	TAPVRSSOverNone         bool `json:"tap_vrss_over_none"`
	VRSSExcessGoal          bool `json:"vrss_over_read_floor_goal"`
	// The flow build's: none_over_plain at most TargetRulesNoneOverPlain,
	// exact_10000_over_none at most TargetRulesExact10000OverNone, and
	// exact_10000_over_exact_10 within TargetRulesExactSpread either way.
	RulesNoneOverPlain      bool `json:"rules_none_over_plain"`
	RulesExact10000OverNone bool `json:"rules_exact_10000_over_none"`
	RulesExactSpread        bool `json:"rules_exact_10_vs_10000"`
	// The port benchmark's: TargetPortOverNftables, TargetPortOverBridge
	// and TargetXDPPolicyOverFloor.
	PortVRSSOverNftables bool `json:"port_vrss_over_nftables"`
	PortVRSSOverBridge   bool `json:"port_vrss_over_bridge"`
	XDPPolicyOverFloor   bool `json:"xdp_policy_over_floor"`
	// AF_XDP's: TargetAFXDPRedirectOverFloor and TargetAFXDPOverAFPacket.
	AFXDPRedirectOverFloor bool `json:"afxdp_redirect_over_floor"`
	AFXDPOverAFPacket      bool `json:"afxdp_over_af_packet"`
}

// Params records how the figures were measured.
type Params struct {
	Repeat          int    `json:"repeat"`
	BitSerialRepeat int    `json:"bitserial_repeat"`
	EngineIters     int    `json:"engine_iters"`
	Rounds          int    `json:"rounds"`
	TAPPairs        int    `json:"tap_pairs"`
	TAPFrames       int    `json:"tap_frames"`
	TAPQueues       int    `json:"tap_queues"`
	PortRounds      int    `json:"port_rounds"`
	Kernel          string `json:"kernel"`
	QEMUObject      string `json:"qemu_object,omitempty"`
}

// benchConfig is the configuration every measurement steers by.
func benchConfig() rss.Config {
	return rss.Config{HashTypes: rss.AllHashTypes, Key: rss.DefaultKey, Table: rss.EqualTable(128, tapQueues)}
}

// benchFrames returns one frame of each kind, in the order of Kinds; the
// same shapes as the rss package's benchmarks.
func benchFrames() [][]byte {
	ip := netip.MustParseAddr
	return [][]byte{
		frame.Build(frame.Spec{Src: ip("192.168.1.10"), Dst: ip("10.0.0.1"), Proto: frame.ProtoTCP, SrcPort: 43210, DstPort: 443, Payload: 64}),
		frame.Build(frame.Spec{Src: ip("2001:db8::10"), Dst: ip("2001:db8::1"), Proto: frame.ProtoUDP, SrcPort: 43210, DstPort: 4789, Payload: 64}),
		frame.Build(frame.Spec{Src: ip("2001:db8::10"), Dst: ip("2001:db8::1"), Proto: frame.ProtoTCP, SrcPort: 43210, DstPort: 443, Payload: 64,
			Ext: []frame.ExtHeader{{Type: 0, Data: make([]byte, 6)}, frame.RoutingType2(ip("2001:db8::2"), 1), frame.HomeAddressOption(ip("2001:db8::11"))}}),
	}
}

// Run takes every measurement and evaluates the targets. Missing a target is
// not an error; failing to measure is.
func Run(o Options) (Result, error) {
	o = o.withDefaults()
	r := Result{Params: Params{
		Repeat: o.Repeat, BitSerialRepeat: bitSerialRepeat(o.Repeat), EngineIters: o.EngineIters,
		Rounds: o.Rounds, TAPPairs: o.TAPPairs, TAPFrames: o.Frames, TAPQueues: tapQueues, PortRounds: o.PortRounds, Kernel: kernelRelease(),
		QEMUObject: o.QEMUObject,
	}}
	progs, err := loadPrograms(o)
	if err != nil {
		return Result{}, needsRoot(err)
	}
	defer progs.close()
	if err := measurePrograms(&r, progs, o); err != nil {
		return Result{}, err
	}
	if err := measureRules(&r, progs, o); err != nil {
		return Result{}, err
	}
	if err := measureMemory(&r, progs); err != nil {
		return Result{}, err
	}
	if err := measureEngine(&r, o); err != nil {
		return Result{}, err
	}
	if err := measureTAP(&r, progs.vrss, o); err != nil {
		return Result{}, needsRoot(err)
	}
	if err := measurePort(&r, o); err != nil {
		return Result{}, needsRoot(err)
	}
	if err := measureAFXDP(&r, o); err != nil {
		return Result{}, needsRoot(err)
	}
	r.evaluate()
	r.round()
	return r, nil
}

// evaluate fills in the ratios and whether they meet their targets, and
// the costs above the read floor if they were not measured (then as the
// difference of the medians).
func (r *Result) evaluate() {
	over := func(m map[string]float64) map[string]float64 {
		o := map[string]float64{}
		for _, k := range Kinds {
			o[k] = m[k] - r.ReadFloor[k]
		}
		return o
	}
	if r.OverReadFloor == nil {
		r.OverReadFloor = map[string]map[string]float64{"vrss": over(r.BPF), "bitserial": over(r.BitSerial)}
		if r.QEMU != nil {
			r.OverReadFloor["qemu"] = over(r.QEMU)
		}
	}
	vrss := r.OverReadFloor["vrss"]
	r.Ratios = Ratios{
		VRSSTCPv4OverFloor:      ratio(r.BPF[KindTCPv4], r.Floor),
		BitSerialOverVRSSExcess: map[string]float64{},
		BitSerialOverVRSS:       map[string]float64{},
		TAPVRSSOverNone:         median(r.TAPPairs),
	}
	if len(r.TAPPairs) > 0 {
		r.Ratios.TAPPairsMin, r.Ratios.TAPPairsMax = slices.Min(r.TAPPairs), slices.Max(r.TAPPairs)
	}
	for _, k := range Kinds {
		r.Ratios.BitSerialOverVRSSExcess[k] = excessRatio(r.OverReadFloor["bitserial"][k], vrss[k])
		r.Ratios.BitSerialOverVRSS[k] = ratio(r.BitSerial[k], r.BPF[k])
	}
	if r.QEMU != nil {
		r.Ratios.QEMUOverVRSSExcess, r.Ratios.QEMUOverVRSS = map[string]float64{}, map[string]float64{}
		for _, k := range Kinds {
			r.Ratios.QEMUOverVRSSExcess[k] = excessRatio(r.OverReadFloor["qemu"][k], vrss[k])
			r.Ratios.QEMUOverVRSS[k] = ratio(r.QEMU[k], r.BPF[k])
		}
	}
	r.TargetsMet = Targets{
		VRSSTCPv4OverFloor:      r.Ratios.VRSSTCPv4OverFloor > 0 && r.Ratios.VRSSTCPv4OverFloor <= TargetFloorRatio,
		BitSerialOverVRSSExcess: true,
		TAPVRSSOverNone:         r.Ratios.TAPVRSSOverNone >= TargetTAPRatio,
		VRSSExcessGoal:          true,
	}
	for _, k := range ExcessKinds {
		r.TargetsMet.BitSerialOverVRSSExcess = r.TargetsMet.BitSerialOverVRSSExcess && r.Ratios.BitSerialOverVRSSExcess[k] >= TargetExcessRatio
	}
	for _, k := range FirstReadKinds {
		r.TargetsMet.VRSSExcessGoal = r.TargetsMet.VRSSExcessGoal && vrss[k] <= GoalExcessNS
	}
	r.evaluateRules()
	r.Ratios.PortVRSSOverNftables = ratio(r.PPS[PortVRSS], r.PPS[PortNftables])
	r.Ratios.PortVRSSOverBridge = ratio(r.PPS[PortVRSS], r.PPS[PortBridge])
	r.Ratios.XDPPolicyOverFloor = r.XDPNs.PolicyOverFloor
	r.TargetsMet.PortVRSSOverNftables = r.Ratios.PortVRSSOverNftables >= TargetPortOverNftables
	r.TargetsMet.PortVRSSOverBridge = r.Ratios.PortVRSSOverBridge >= TargetPortOverBridge
	r.TargetsMet.XDPPolicyOverFloor = r.Ratios.XDPPolicyOverFloor > 0 && r.Ratios.XDPPolicyOverFloor <= TargetXDPPolicyOverFloor
	r.Ratios.AFXDPRedirectOverFloor = r.AFXDPNs.RedirectOverFloor
	r.Ratios.AFXDPOverAFPacket = ratio(r.AFXDPPPS.AFXDP, r.AFXDPPPS.AFPacket)
	r.TargetsMet.AFXDPRedirectOverFloor = r.Ratios.AFXDPRedirectOverFloor > 0 && r.Ratios.AFXDPRedirectOverFloor <= TargetAFXDPRedirectOverFloor
	r.TargetsMet.AFXDPOverAFPacket = r.Ratios.AFXDPOverAFPacket >= TargetAFXDPOverAFPacket
}

// evaluateRules fills in the flow build's ratios and targets: from the
// ratios within rounds where measured, else from the medians.
func (r *Result) evaluateRules() {
	pick := func(key string, a, b float64) float64 {
		if pairs := r.rulePairs[key]; len(pairs) > 0 {
			return median(pairs)
		}
		return ratio(a, b)
	}
	r.Ratios.RulesNoneOverPlain = pick("none_over_plain", r.RulesNS[RulesNone], r.RulesBaseline)
	r.Ratios.RulesExact10000OverNone = pick("exact_10000_over_none", r.RulesNS[RulesExact10000], r.RulesNS[RulesNone])
	r.Ratios.RulesExact10000OverExact10 = pick("exact_10000_over_exact_10", r.RulesNS[RulesExact10000], r.RulesNS[RulesExact10])
	spread := r.Ratios.RulesExact10000OverExact10
	r.TargetsMet.RulesNoneOverPlain = r.Ratios.RulesNoneOverPlain > 0 && r.Ratios.RulesNoneOverPlain <= TargetRulesNoneOverPlain
	r.TargetsMet.RulesExact10000OverNone = r.Ratios.RulesExact10000OverNone > 0 && r.Ratios.RulesExact10000OverNone <= TargetRulesExact10000OverNone
	r.TargetsMet.RulesExactSpread = spread > 0 && spread <= TargetRulesExactSpread && 1/spread <= TargetRulesExactSpread
}

// excessRatio is a / b for two costs above the read floor. A cost at or
// below the floor (within the measurement's noise) makes no ratio: 0.
func excessRatio(a, b float64) float64 {
	if a <= 0 || b <= 0 {
		return 0
	}
	return a / b
}

// round trims the figures to what they can tell, once the ratios have been
// computed from the full values: ns to 0.1, rates to 1/s, ratios to 0.001.
func (r *Result) round() {
	// Dividing by the scale, not multiplying by its inverse, gives the
	// shortest decimal.
	to := func(x, scale float64) float64 { return math.Round(x*scale) / scale }
	all := func(m map[string]float64, scale float64) {
		for k, v := range m {
			m[k] = to(v, scale)
		}
	}
	all(r.BPF, 10)
	all(r.BitSerial, 10)
	all(r.ReadFloor, 10)
	all(r.QEMU, 10)
	all(r.Engine, 10)
	for _, m := range r.OverReadFloor {
		all(m, 10)
	}
	r.Floor = to(r.Floor, 10)
	all(r.RulesNS, 10)
	all(r.RulesOverReadFloor, 10)
	r.RulesBaseline = to(r.RulesBaseline, 10)
	r.RulesReadFloor = to(r.RulesReadFloor, 10)
	r.Ratios.RulesNoneOverPlain = to(r.Ratios.RulesNoneOverPlain, 1000)
	r.Ratios.RulesExact10000OverNone = to(r.Ratios.RulesExact10000OverNone, 1000)
	r.Ratios.RulesExact10000OverExact10 = to(r.Ratios.RulesExact10000OverExact10, 1000)
	all(r.TAPPPS, 1)
	all(r.PPS, 1)
	r.Ratios.PortVRSSOverNftables = to(r.Ratios.PortVRSSOverNftables, 1000)
	r.Ratios.PortVRSSOverBridge = to(r.Ratios.PortVRSSOverBridge, 1000)
	r.Ratios.XDPPolicyOverFloor = to(r.Ratios.XDPPolicyOverFloor, 1000)
	r.XDPNs.PolicyOverFloor = to(r.XDPNs.PolicyOverFloor, 1000)
	r.AFXDPNs.RedirectOverFloor = to(r.AFXDPNs.RedirectOverFloor, 1000)
	r.AFXDPPPS.AFXDP, r.AFXDPPPS.AFPacket = to(r.AFXDPPPS.AFXDP, 1), to(r.AFXDPPPS.AFPacket, 1)
	r.Ratios.AFXDPRedirectOverFloor = to(r.Ratios.AFXDPRedirectOverFloor, 1000)
	r.Ratios.AFXDPOverAFPacket = to(r.Ratios.AFXDPOverAFPacket, 1000)
	for i, x := range r.TAPPairs {
		r.TAPPairs[i] = to(x, 1000)
	}
	all(r.Ratios.BitSerialOverVRSSExcess, 1000)
	all(r.Ratios.QEMUOverVRSSExcess, 1000)
	all(r.Ratios.BitSerialOverVRSS, 1000)
	all(r.Ratios.QEMUOverVRSS, 1000)
	r.Ratios.VRSSTCPv4OverFloor = to(r.Ratios.VRSSTCPv4OverFloor, 1000)
	r.Ratios.TAPVRSSOverNone = to(r.Ratios.TAPVRSSOverNone, 1000)
	r.Ratios.TAPPairsMin = to(r.Ratios.TAPPairsMin, 1000)
	r.Ratios.TAPPairsMax = to(r.Ratios.TAPPairsMax, 1000)
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// median returns the median of xs, the mean of the middle two for an even
// count.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// needsRoot adds what the benchmark needs to err when the process is not
// root, the usual reason eBPF or TAP devices are refused.
func needsRoot(err error) error {
	var unavail *steering.UnavailableError
	if os.Geteuid() != 0 || errors.As(err, &unavail) {
		return fmt.Errorf("%w (vrss bench needs root: it loads eBPF programs and creates a TAP device in a new network namespace)", err)
	}
	return err
}
