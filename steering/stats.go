package steering

import (
	"errors"
	"fmt"
	"time"

	"github.com/cilium/ebpf"

	"github.com/vrss-dev/vrss/rss"
)

// Stats are the steering program's counters, summed over CPUs.
type Stats struct {
	// Queues[q] counts packets the program sent to queue q (before tun
	// takes it modulo the number of queues), unclassified ones included.
	Queues []uint64
	// Unclassified counts packets no enabled hash type applied to.
	Unclassified uint64
	// Retries counts packets re-steered because a publish raced them.
	Retries uint64
	// Torn counts packets for which re-reading gave up; it stays 0 unless
	// publishes arrive faster than a packet can be steered four times over.
	Torn uint64
	// Unconfigured counts packets seen before any configuration was
	// published; they went to queue 0.
	Unconfigured uint64
}

// Total is the number of packets steered by a configuration.
func (s Stats) Total() uint64 {
	var n uint64
	for _, c := range s.Queues {
		n += c
	}
	return n
}

// Stats reads the program's counters.
func (p *Program) Stats() (Stats, error) {
	var st Stats
	st.Queues = make([]uint64, MaxQueues)
	var vals []uint64
	for i := uint32(0); i < numStats; i++ {
		if err := p.StatsMap.Lookup(i, &vals); err != nil {
			return Stats{}, fmt.Errorf("steering: read counter %d: %w", i, err)
		}
		var sum uint64
		for _, v := range vals {
			sum += v
		}
		switch i {
		case statUnclassified:
			st.Unclassified = sum
		case statRetry:
			st.Retries = sum
		case statTorn:
			st.Torn = sum
		case statUnconfigured:
			st.Unconfigured = sum
		default:
			st.Queues[i] = sum
		}
	}
	return st, nil
}

// Run steers one Ethernet frame (at least 14 bytes) with BPF_PROG_TEST_RUN
// and returns the program's answer: the queue.
func (p *Program) Run(frame []byte) (uint32, error) {
	return p.Prog.Run(&ebpf.RunOptions{Data: frame})
}

// Benchmark steers frame repeat times in the kernel and returns the mean
// time per run, as BPF_PROG_TEST_RUN measures it.
func (p *Program) Benchmark(frame []byte, repeat int) (time.Duration, error) {
	_, d, err := p.Prog.Benchmark(frame, repeat, nil)
	return d, err
}

// LastResult returns what the Debug variant recorded for the last frame it
// steered.
func (p *Program) LastResult() (rss.Result, error) {
	if p.DebugMap == nil {
		return rss.Result{}, errors.New("steering: LastResult needs the debug variant")
	}
	var d vrssdebugVrssDebug
	if err := p.DebugMap.Lookup(uint32(0), &d); err != nil {
		return rss.Result{}, err
	}
	return rss.Result{Queue: d.Queue, Hash: d.Hash, Report: rss.HashReport(d.Report)}, nil
}
