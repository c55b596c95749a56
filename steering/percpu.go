package steering

import "github.com/cilium/ebpf"

// SumCounters reads every counter of a per-CPU array of uint64 counters,
// summed over CPUs, in one batch lookup where the kernel has it (as
// ReadFlowStats does): for other programs' counters (package portxdp).
func SumCounters(m *ebpf.Map) ([]uint64, error) { return sumCounters(m) }

// MapValueSize returns the value size of the BPF map behind fd, read from
// /proc/self/fdinfo without a bpf() call (as NewPublisher tells the two
// builds' maps apart): for other packages' publishers (package portxdp).
func MapValueSize(fd int) (int, error) { return mapValueSize(fd) }
