package steering

import "github.com/cilium/ebpf"

// SumCounters reads every counter of a per-CPU array of uint64 counters,
// summed over CPUs, in one batch lookup where the kernel has it (as
// ReadFlowStats does): for other programs' counters (package portxdp).
func SumCounters(m *ebpf.Map) ([]uint64, error) { return sumCounters(m) }
