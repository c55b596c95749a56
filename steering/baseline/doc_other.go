//go:build !linux

package baseline

// vrss_requires_Linux: the baselines are Linux eBPF objects (see
// steering/doc_other.go).
type _ vrss_requires_Linux
