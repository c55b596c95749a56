package bench

import (
	"fmt"
	"time"

	"github.com/cilium/ebpf"

	"github.com/vrss-dev/vrss/qemu/ebpfrss"
	"github.com/vrss-dev/vrss/rss"
)

// qemuProgram is QEMU's own eBPF RSS program (the object QMP request-ebpf
// returns, as vrssd caches it), configured as QEMU would for a guest that
// set the benchmark configuration: the steering program in use today that
// vrss is meant to replace.
type qemuProgram struct {
	obj *ebpfrss.Object
}

// loadQEMU loads and configures the object at path, and checks which bench
// frames it hashes as the engine does (agree, in the order of Kinds):
// where QEMU's semantics differ (docs/semantics.md) its figure is for
// different work.
func loadQEMU(path string) (q *qemuProgram, agree []bool, err error) {
	obj, err := ebpfrss.LoadFile(path)
	if err != nil {
		return nil, nil, err
	}
	q = &qemuProgram{obj: obj}
	if agree, err = q.agreement(); err != nil {
		q.close()
		return nil, nil, err
	}
	if err := obj.Write(ebpfrss.FromRSS(benchConfig())); err != nil {
		q.close()
		return nil, nil, err
	}
	return q, agree, nil
}

// agreement steers the bench frames under the benchmark configuration
// with an identity table, so that each answer is the hash's low 7 bits,
// and compares them with the engine's.
func (q *qemuProgram) agreement() ([]bool, error) {
	cfg := benchConfig()
	cfg.Table = make([]uint16, len(cfg.Table))
	for i := range cfg.Table {
		cfg.Table[i] = uint16(i)
	}
	if err := q.obj.Write(ebpfrss.FromRSS(cfg)); err != nil {
		return nil, err
	}
	eng, err := rss.New(cfg)
	if err != nil {
		return nil, err
	}
	var agree []bool
	for _, f := range benchFrames() {
		ret, err := q.obj.Program.Run(&ebpf.RunOptions{Data: f})
		if err != nil {
			return nil, fmt.Errorf("BPF_PROG_TEST_RUN of QEMU's program: %w", err)
		}
		agree = append(agree, ret == uint32(eng.Steer(f).Queue))
	}
	return agree, nil
}

// Benchmark runs the program on frame repeat times in the kernel.
func (q *qemuProgram) Benchmark(frame []byte, repeat int) (time.Duration, error) {
	_, d, err := q.obj.Program.Benchmark(frame, repeat, nil)
	return d, err
}

func (q *qemuProgram) String() string { return "QEMU" }

func (q *qemuProgram) close() {
	if q != nil {
		q.obj.Close()
	}
}
