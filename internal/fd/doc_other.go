//go:build !linux

package fd

// vrss needs Linux. Package fd owns the file descriptors of TAP queues and
// eBPF objects that vrss hands between processes. Built for another system,
// it fails with the error "undefined: vrss_requires_Linux", which this file
// causes on purpose: a type declaration, which the compiler checks before
// functions, variables and constants, so that the error comes first. The
// packages that build anywhere are the pure-Go rss (the RSS engine) and
// virtio (the virtio-net wire formats).
type _ vrss_requires_Linux
