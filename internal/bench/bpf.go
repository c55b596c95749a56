package bench

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/rss"
	"github.com/vrss-dev/vrss/steering"
	_ "github.com/vrss-dev/vrss/steering/baseline" // the baselines it compares with
)

// programs are the builds the benchmark compares, and QEMU's program if
// asked for.
type programs struct {
	floor, readFloor, vrss, bitSerial *steering.Program
	// flows is the flow build, whose set measureRules publishes; nil if
	// it would not load, and flowsErr says why.
	flows      *steering.Program
	flowsErr   error
	qemu       *qemuProgram
	qemuAgrees []bool
}

// loadPrograms loads the two floors, the production and the bit-serial
// builds and
// publishes the benchmark configuration to the two that read one.
func loadPrograms(o Options) (*programs, error) {
	p := &programs{}
	for _, l := range []struct {
		to *(*steering.Program)
		v  steering.Variant
	}{{&p.floor, steering.Floor}, {&p.readFloor, steering.ReadFloor}, {&p.vrss, steering.Production}, {&p.bitSerial, steering.BitSerial}} {
		prog, err := steering.LoadVariant(l.v)
		if err != nil {
			p.close()
			return nil, fmt.Errorf("load the %s program: %w", l.v, err)
		}
		*l.to = prog
	}
	for _, prog := range []*steering.Program{p.vrss, p.bitSerial} {
		if err := publish(prog); err != nil {
			p.close()
			return nil, err
		}
	}
	// The flow build is measured if it loads: a kernel that refuses it
	// still gets every other figure, and the reason.
	if p.flows, p.flowsErr = steering.LoadVariant(steering.Flows); p.flowsErr != nil {
		p.flowsErr = fmt.Errorf("load the %s program: %w", steering.Flows, p.flowsErr)
	}
	if o.QEMUObject != "" {
		var err error
		if p.qemu, p.qemuAgrees, err = loadQEMU(o.QEMUObject); err != nil {
			p.close()
			return nil, fmt.Errorf("QEMU's program: %w", err)
		}
	}
	return p, nil
}

// publish gives prog the benchmark configuration. The mapping is only
// needed to write it: the program keeps steering by it after Close.
func publish(prog *steering.Program) error {
	pub, err := prog.Publisher(tapQueues)
	if err != nil {
		return err
	}
	defer pub.Close()
	if err := pub.Publish(benchConfig()); err != nil {
		return fmt.Errorf("publish to the %s program: %w", prog.Variant, err)
	}
	return nil
}

func (p *programs) close() {
	for _, prog := range []*steering.Program{p.floor, p.readFloor, p.vrss, p.bitSerial, p.flows} {
		if prog != nil {
			prog.Close()
		}
	}
	p.qemu.close()
}

// bitSerialRepeat is the repeat count for the bit-serial build: it is tens
// of times slower, so a tenth of the runs still lasts longer than vrss's.
func bitSerialRepeat(repeat int) int { return max(1, repeat/10) }

// measurePrograms fills in BPF, Floor, ReadFloor and BitSerial. The
// measurements are interleaved round by round, so drift in the machine's
// speed (frequency changes, neighbours on a shared host) affects all
// programs alike, and the floor is measured next to vrss on the same TCPv4
// frame.
func measurePrograms(r *Result, p *programs, o Options) error {
	frames := benchFrames()
	var floor []float64
	vrss := make([][]float64, len(Kinds))
	read := make([][]float64, len(Kinds))
	bits := make([][]float64, len(Kinds))
	qemu := make([][]float64, len(Kinds))
	for range o.Rounds {
		for i, f := range frames {
			if i == 0 {
				ns, err := testRun(p.floor, f, o.Repeat)
				if err != nil {
					return err
				}
				floor = append(floor, ns)
			}
			ns, err := testRun(p.vrss, f, o.Repeat)
			if err != nil {
				return err
			}
			vrss[i] = append(vrss[i], ns)
			if ns, err = testRun(p.readFloor, f, o.Repeat); err != nil {
				return err
			}
			read[i] = append(read[i], ns)
			if ns, err = testRun(p.bitSerial, f, bitSerialRepeat(o.Repeat)); err != nil {
				return err
			}
			bits[i] = append(bits[i], ns)
			if p.qemu != nil {
				if ns, err = testRun(p.qemu, f, bitSerialRepeat(o.Repeat)); err != nil {
					return err
				}
				qemu[i] = append(qemu[i], ns)
			}
		}
	}
	r.Floor = median(floor)
	r.BPF, r.ReadFloor, r.BitSerial = map[string]float64{}, map[string]float64{}, map[string]float64{}
	r.OverReadFloor = map[string]map[string]float64{"vrss": {}, "bitserial": {}}
	for i, k := range Kinds {
		r.BPF[k] = median(vrss[i])
		r.ReadFloor[k] = median(read[i])
		r.BitSerial[k] = median(bits[i])
		r.OverReadFloor["vrss"][k] = medianOver(vrss[i], read[i])
		r.OverReadFloor["bitserial"][k] = medianOver(bits[i], read[i])
	}
	if p.qemu != nil {
		r.QEMU, r.QEMUAgrees = map[string]float64{}, map[string]bool{}
		r.OverReadFloor["qemu"] = map[string]float64{}
		for i, k := range Kinds {
			r.QEMU[k] = median(qemu[i])
			r.QEMUAgrees[k] = p.qemuAgrees[i]
			r.OverReadFloor["qemu"][k] = medianOver(qemu[i], read[i])
		}
	}
	return nil
}

// medianOver returns the median over rounds of xs[i] - floor[i]: each
// program's cost above the read floor measured in the same round, right
// after it, so that the machine's drift between rounds cancels out.
func medianOver(xs, floor []float64) float64 {
	d := make([]float64, len(xs))
	for i := range xs {
		d[i] = xs[i] - floor[i]
	}
	return median(d)
}

// benchmarker is a program the benchmark can run: a steering.Program or
// QEMU's.
type benchmarker interface {
	Benchmark(frame []byte, repeat int) (time.Duration, error)
}

// testRun returns prog's mean cost per run on f in ns, as
// BPF_PROG_TEST_RUN measures it over repeat runs.
func testRun(prog benchmarker, f []byte, repeat int) (float64, error) {
	d, err := prog.Benchmark(f, repeat)
	if err != nil {
		return 0, fmt.Errorf("BPF_PROG_TEST_RUN of the %s program: %w", programName(prog), err)
	}
	if d <= 0 {
		// The kernel reports whole ns; 0 would make every ratio meaningless.
		return 0, fmt.Errorf("BPF_PROG_TEST_RUN of the %s program reported %v per run", programName(prog), d)
	}
	return float64(d.Nanoseconds()), nil
}

func programName(prog benchmarker) string {
	if p, ok := prog.(*steering.Program); ok {
		return p.Variant.String()
	}
	return fmt.Sprint(prog)
}

// measureEngine fills in Engine: the Go engine steering the same frames,
// timed over EngineIters steers, median of Rounds.
func measureEngine(r *Result, o Options) error {
	e, err := rss.New(benchConfig())
	if err != nil {
		return err
	}
	frames := benchFrames()
	samples := make([][]float64, len(Kinds))
	var sink uint16
	for range o.Rounds {
		for i, f := range frames {
			start := time.Now()
			for range o.EngineIters {
				sink ^= e.Steer(f).Queue
			}
			samples[i] = append(samples[i], float64(time.Since(start).Nanoseconds())/float64(o.EngineIters))
		}
	}
	engineSink = sink
	r.Engine = map[string]float64{}
	for i, k := range Kinds {
		r.Engine[k] = median(samples[i])
	}
	return nil
}

// engineSink keeps the compiler from dropping the engine loop.
var engineSink uint16

func kernelRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return ""
	}
	return "Linux " + unix.ByteSliceToString(u.Release[:])
}
