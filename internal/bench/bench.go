// Package bench measures what vrss steering costs, for `vrss bench`: the
// steering program's per-frame cost in BPF_PROG_TEST_RUN against a program
// that only returns 0 (the floor), one that only reads the frame as vrss
// does (the read floor) and a bit-serial Toeplitz build of the same
// program, the Go engine's cost per frame, and the rate at which frames
// injected into a TAP device arrive on its queues with no steering program
// and with vrss attached.
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
	"github.com/vrss-dev/vrss/rss"
	"github.com/vrss-dev/vrss/steering"
)

// Frame kinds, the keys of the per-kind figures.
const (
	KindTCPv4   = "tcpv4"
	KindUDPv6   = "udpv6"
	KindIPv6Ext = "ipv6_ext"
)

// Kinds lists the frame kinds in the order reports show them.
var Kinds = []string{KindTCPv4, KindUDPv6, KindIPv6Ext}

// Targets from the issue that introduced the benchmark.
const (
	// TargetFloorRatio is the most the vrss program may cost on a TCPv4
	// frame, as a multiple of the floor.
	TargetFloorRatio = 2.5
	// TargetBitSerialRatio is the least the bit-serial build must cost on
	// every frame kind, as a multiple of vrss.
	TargetBitSerialRatio = 5
	// TargetTAPRatio is the least TAP injection rate with vrss attached, as
	// a fraction of the rate with no program.
	TargetTAPRatio = 0.95
)

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
	// Engine is the Go engine's (rss.Engine.Steer) cost per frame in ns.
	Engine map[string]float64 `json:"engine_ns"`
	// TAPPPS is the rate in frames per second at which injected frames
	// arrived on the TAP's queues: "none" without a steering program,
	// "vrss" with the production program attached.
	TAPPPS map[string]float64 `json:"tap_pps"`
	// TAPLost counts frames sent but not received over all rounds of each
	// mode; it should be 0.
	TAPLost map[string]int `json:"tap_lost"`
	// Ratios compare the figures the targets are about.
	Ratios Ratios `json:"ratios"`
	// TargetsMet says, per ratio, whether it meets its target.
	TargetsMet Targets `json:"targets_met"`
	// Params are the options the figures were measured with.
	Params Params `json:"params"`
}

// Ratios are the figures the targets constrain.
type Ratios struct {
	VRSSTCPv4OverFloor float64            `json:"vrss_tcpv4_over_floor"`
	BitSerialOverVRSS  map[string]float64 `json:"bitserial_over_vrss"`
	TAPVRSSOverNone    float64            `json:"tap_vrss_over_none"`
	// BitSerialOverReadFloor bounds BitSerialOverVRSS: it is the ratio a
	// steering program would reach if everything after its first read of
	// the frame cost nothing. No program that reads the frame with the
	// same helper call can do better against this bit-serial build.
	BitSerialOverReadFloor map[string]float64 `json:"bitserial_over_read_floor"`
	// QEMUOverVRSS is QEMU's program's cost over vrss's, per frame kind;
	// only with Options.QEMUObject.
	QEMUOverVRSS map[string]float64 `json:"qemu_over_vrss,omitempty"`
}

// Targets says which ratios meet their targets; BitSerialOverVRSS holds
// only if it does for every frame kind.
type Targets struct {
	VRSSTCPv4OverFloor bool `json:"vrss_tcpv4_over_floor"`
	BitSerialOverVRSS  bool `json:"bitserial_over_vrss"`
	TAPVRSSOverNone    bool `json:"tap_vrss_over_none"`
}

// Params records how the figures were measured.
type Params struct {
	Repeat          int    `json:"repeat"`
	BitSerialRepeat int    `json:"bitserial_repeat"`
	EngineIters     int    `json:"engine_iters"`
	Rounds          int    `json:"rounds"`
	TAPFrames       int    `json:"tap_frames"`
	TAPQueues       int    `json:"tap_queues"`
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
		Rounds: o.Rounds, TAPFrames: o.Frames, TAPQueues: tapQueues, Kernel: kernelRelease(),
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
	if err := measureEngine(&r, o); err != nil {
		return Result{}, err
	}
	if err := measureTAP(&r, progs.vrss, o); err != nil {
		return Result{}, needsRoot(err)
	}
	r.evaluate()
	r.round()
	return r, nil
}

// evaluate fills in the ratios and whether they meet their targets.
func (r *Result) evaluate() {
	r.Ratios = Ratios{
		VRSSTCPv4OverFloor: ratio(r.BPF[KindTCPv4], r.Floor),
		BitSerialOverVRSS:  map[string]float64{},
		TAPVRSSOverNone:    ratio(r.TAPPPS["vrss"], r.TAPPPS["none"]),

		BitSerialOverReadFloor: map[string]float64{},
	}
	r.TargetsMet = Targets{
		VRSSTCPv4OverFloor: r.Ratios.VRSSTCPv4OverFloor > 0 && r.Ratios.VRSSTCPv4OverFloor <= TargetFloorRatio,
		BitSerialOverVRSS:  true,
		TAPVRSSOverNone:    r.Ratios.TAPVRSSOverNone >= TargetTAPRatio,
	}
	for _, k := range Kinds {
		x := ratio(r.BitSerial[k], r.BPF[k])
		r.Ratios.BitSerialOverVRSS[k] = x
		r.TargetsMet.BitSerialOverVRSS = r.TargetsMet.BitSerialOverVRSS && x >= TargetBitSerialRatio
		r.Ratios.BitSerialOverReadFloor[k] = ratio(r.BitSerial[k], r.ReadFloor[k])
	}
	if r.QEMU != nil {
		r.Ratios.QEMUOverVRSS = map[string]float64{}
		for _, k := range Kinds {
			r.Ratios.QEMUOverVRSS[k] = ratio(r.QEMU[k], r.BPF[k])
		}
	}
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
	r.Floor = to(r.Floor, 10)
	all(r.TAPPPS, 1)
	all(r.Ratios.BitSerialOverVRSS, 1000)
	all(r.Ratios.BitSerialOverReadFloor, 1000)
	all(r.Ratios.QEMUOverVRSS, 1000)
	r.Ratios.VRSSTCPv4OverFloor = to(r.Ratios.VRSSTCPv4OverFloor, 1000)
	r.Ratios.TAPVRSSOverNone = to(r.Ratios.TAPVRSSOverNone, 1000)
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
