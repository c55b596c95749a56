package steering

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// Variant selects which build of the steering program to load.
type Variant int

const (
	// Production is the steering program vrss attaches to TAP devices.
	Production Variant = iota
	// Debug also records each packet's hash, report and queue, so tests
	// can compare hashes with the rss engine, not only queues.
	Debug
	// BitSerial hashes bit by bit from the key: a benchmark baseline
	// (package steering/baseline).
	BitSerial
	// Floor returns 0 for every packet: the benchmark's cost floor
	// (package steering/baseline).
	Floor
	// ReadFloor makes the production program's first read of the frame
	// and returns 0: what any program that reads the packet costs at least
	// (package steering/baseline).
	ReadFloor
	// Flows is the production build with flow rules and RSS contexts: a
	// larger configuration map (FlowConfigSize) and a filter program to
	// attach at the TAP's tc egress, which drops what drop rules match.
	Flows
	// FlowsDebug is Flows recording each frame's verdict for tests.
	FlowsDebug
)

// String names the variant: production, debug, bitserial, floor,
// readfloor, flows or flowsdebug.
func (v Variant) String() string {
	names := [...]string{"production", "debug", "bitserial", "floor", "readfloor", "flows", "flowsdebug"}
	if v < 0 || int(v) >= len(names) {
		return fmt.Sprintf("variant(%d)", int(v))
	}
	return names[v]
}

// Reason says why eBPF steering is unavailable.
type Reason string

// Reasons Load reports in an UnavailableError.
const (
	ReasonKernelTooOld     Reason = "kernel too old"
	ReasonNoCapBPF         Reason = "missing CAP_BPF"
	ReasonUnprivDisabled   Reason = "unprivileged BPF disabled"
	ReasonNoMmapableMaps   Reason = "mmapable maps unsupported"
	ReasonVerifierRejected Reason = "program rejected by the verifier"
	ReasonMemlock          Reason = "locked-memory limit too low"
	ReasonNoFDs            Reason = "out of file descriptors"
	ReasonUnknown          Reason = "eBPF unavailable"
	unprivilegedBPFSysctl         = "/proc/sys/kernel/unprivileged_bpf_disabled"
)

// UnavailableError is returned by Load when the kernel or the caller's
// privileges do not allow eBPF steering. Callers fall back to steering in
// userspace with the rss engine, which computes the same queues.
type UnavailableError struct {
	Reason Reason
	Detail string
	Err    error
}

// Error says why eBPF is unavailable, with details and the cause.
func (e *UnavailableError) Error() string {
	s := "steering: eBPF unavailable: " + string(e.Reason)
	if e.Detail != "" {
		s += " (" + e.Detail + ")"
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the load error behind the reason.
func (e *UnavailableError) Unwrap() error { return e.Err }

// Program is a loaded steering program with its maps.
type Program struct {
	// Prog is the socket filter program to attach with TUNSETSTEERINGEBPF.
	Prog *ebpf.Program
	// ConfigMap is the mmapable configuration map (one element).
	ConfigMap *ebpf.Map
	// StatsMap holds the per-CPU counters.
	StatsMap *ebpf.Map
	// DebugMap is the last packet's result; only in the Debug and
	// FlowsDebug variants (a struct vrss_flow_debug in the latter).
	DebugMap *ebpf.Map
	// Filter is the flow builds' tc program, to attach at the TAP's egress
	// (AttachFilter): it drops what drop rules match. Nil otherwise.
	Filter *ebpf.Program
	// FlowStatsMap holds the flow builds' per-CPU rule, drop and context
	// counters (FlowStats). Nil otherwise.
	FlowStatsMap *ebpf.Map
	// JumpMap is the flow builds' program array holding the rule path's
	// program, which the steering program tail-calls when the active set
	// has rules. The kernel empties a program array when its last user
	// reference (fd or pin) goes: pin it with the rest, or the steering
	// program, no longer finding the rule path, sends frames of a set with
	// rules to the unclassified queue (counted: FlowStats.NoRulePath).
	JumpMap    *ebpf.Map
	scratchMap *ebpf.Map
	rulesProg  *ebpf.Program
	// Variant is the build that was loaded.
	Variant Variant
}

// Load loads the production steering program. If eBPF cannot be used, the
// error is an *UnavailableError saying precisely why.
func Load() (*Program, error) { return LoadVariant(Production) }

// loaders load each build through the objects bpf2go generated for it,
// into p's fields. The production and debug builds are this package's; the
// benchmark baselines (BitSerial, Floor, ReadFloor) are registered by
// package steering/baseline, so that their objects are not in every binary
// that steers (vrssd), only in those that import it.
var loaders = map[Variant]func(p *Program) error{
	Production: func(p *Program) error {
		var o vrssObjects
		if err := loadVrssObjects(&o, nil); err != nil {
			return err
		}
		p.Prog, p.ConfigMap, p.StatsMap = o.VrssSteer, o.VrssConfig, o.VrssStats
		return nil
	},
	Debug: func(p *Program) error {
		var o vrssdebugObjects
		if err := loadVrssdebugObjects(&o, nil); err != nil {
			return err
		}
		p.Prog, p.ConfigMap, p.StatsMap, p.DebugMap = o.VrssSteer, o.VrssConfig, o.VrssStats, o.VrssDebug
		return nil
	},
	Flows: func(p *Program) error {
		var o vrssflowObjects
		if err := loadVrssflowObjects(&o, nil); err != nil {
			return err
		}
		p.Prog, p.Filter, p.ConfigMap, p.StatsMap = o.VrssSteer, o.VrssFilter, o.VrssConfig, o.VrssStats
		p.FlowStatsMap, p.scratchMap, p.JumpMap, p.rulesProg = o.VrssFlowStats, o.VrssScratch, o.VrssJump, o.VrssSteerRules
		return p.JumpMap.Put(uint32(0), p.rulesProg)
	},
	FlowsDebug: func(p *Program) error {
		var o vrssflowdebugObjects
		if err := loadVrssflowdebugObjects(&o, nil); err != nil {
			return err
		}
		p.Prog, p.Filter, p.ConfigMap, p.StatsMap = o.VrssSteer, o.VrssFilter, o.VrssConfig, o.VrssStats
		p.FlowStatsMap, p.scratchMap, p.DebugMap = o.VrssFlowStats, o.VrssScratch, o.VrssFlowDebug
		p.JumpMap, p.rulesProg = o.VrssJump, o.VrssSteerRules
		return p.JumpMap.Put(uint32(0), p.rulesProg)
	},
}

// RegisterBaseline makes LoadVariant(v) load a benchmark baseline with load,
// which fills p's fields (as bpf2go's generated loaders do) or fails with
// the load's error. Package steering/baseline calls it when imported; it is
// not for other callers, and must be called before any LoadVariant.
func RegisterBaseline(v Variant, load func(p *Program) error) {
	if v < BitSerial || v > ReadFloor {
		panic(fmt.Sprintf("steering: %s is not a benchmark baseline", v))
	}
	loaders[v] = load
}

// LoadVariant loads one build of the steering program. The benchmark
// baselines (BitSerial, Floor, ReadFloor) need package steering/baseline
// imported.
func LoadVariant(v Variant) (*Program, error) {
	load, ok := loaders[v]
	if !ok {
		if v >= BitSerial && v <= ReadFloor {
			return nil, fmt.Errorf("steering: %s is a benchmark baseline: import github.com/vrss-dev/vrss/steering/baseline to load it", v)
		}
		return nil, fmt.Errorf("steering: unknown variant %d", v)
	}
	// Before Linux 5.11 maps count against RLIMIT_MEMLOCK; lift it where
	// the process may. Later kernels need nothing, and failing is fine: a
	// real shortage is reported by the load below.
	_ = rlimit.RemoveMemlock()
	p := &Program{Variant: v}
	if err := load(p); err != nil {
		return nil, classifyLoadError(err)
	}
	return p, nil
}

// Seams for tests, which run as root but must also classify the failures
// of unprivileged callers.
var (
	geteuid          = os.Geteuid
	readUnprivSysctl = func() ([]byte, error) { return os.ReadFile(unprivilegedBPFSysctl) }
)

// classifyLoadError turns a load failure into the reason a caller can act on.
func classifyLoadError(err error) error {
	// Before anything that probes the kernel: a process out of
	// descriptors fails every probe too, and would be told its kernel
	// is too old.
	if errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) {
		return &UnavailableError{Reason: ReasonNoFDs, Detail: "close some, or raise RLIMIT_NOFILE (ulimit -n)", Err: err}
	}
	var verr *ebpf.VerifierError
	if errors.As(err, &verr) && !errors.Is(err, unix.EPERM) {
		return &UnavailableError{Reason: ReasonVerifierRejected, Detail: kernelRelease(), Err: err}
	}
	switch {
	case (errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES)) && geteuid() == 0 && strings.Contains(err.Error(), "MEMLOCK"):
		// Kernels before 5.11 charge maps to RLIMIT_MEMLOCK and answer
		// EPERM when it is exhausted, even for root.
		return &UnavailableError{Reason: ReasonMemlock, Detail: "raise RLIMIT_MEMLOCK (ulimit -l)", Err: err}
	case errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES):
		if v, rerr := readUnprivSysctl(); rerr == nil && strings.TrimSpace(string(v)) != "0" && geteuid() != 0 {
			return &UnavailableError{Reason: ReasonUnprivDisabled, Detail: unprivilegedBPFSysctl + " = " + strings.TrimSpace(string(v)), Err: err}
		}
		return &UnavailableError{Reason: ReasonNoCapBPF, Detail: "run as root or grant CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN", Err: err}
	}
	if ferr := features.HaveMapFlag(features.BPF_F_MMAPABLE); ferr != nil {
		return &UnavailableError{Reason: ReasonNoMmapableMaps, Detail: "needs Linux 5.5; running " + kernelRelease(), Err: err}
	}
	if errors.Is(err, ebpf.ErrNotSupported) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		return &UnavailableError{Reason: ReasonKernelTooOld, Detail: "needs Linux 5.5; running " + kernelRelease(), Err: err}
	}
	return &UnavailableError{Reason: ReasonUnknown, Err: err}
}

func kernelRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return "unknown kernel"
	}
	return "Linux " + unix.ByteSliceToString(u.Release[:])
}

// Publisher maps the program's configuration map for publishing.
func (p *Program) Publisher(queues int) (*Publisher, error) {
	return NewPublisher(p.ConfigMap.FD(), queues)
}

// Close releases the program and its maps. A TAP device it is attached to
// keeps its own reference and goes on steering.
func (p *Program) Close() error {
	var errs []error
	for _, c := range []interface{ Close() error }{p.Prog, p.Filter, p.ConfigMap, p.StatsMap, p.DebugMap, p.FlowStatsMap, p.scratchMap, p.JumpMap, p.rulesProg} {
		if c != nil && !isNil(c) {
			errs = append(errs, c.Close())
		}
	}
	return errors.Join(errs...)
}

func isNil(c interface{ Close() error }) bool {
	switch v := c.(type) {
	case *ebpf.Program:
		return v == nil
	case *ebpf.Map:
		return v == nil
	}
	return false
}
