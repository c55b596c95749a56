//go:build !linux

package kernel

// vrss needs Linux. Package kernel is what vrssd asks of the Linux kernel:
// eBPF programs, TAP devices, netlink. Built for another system, it fails
// with the error "undefined: vrss_requires_Linux", which this file causes
// on purpose: a type declaration, which the compiler checks before
// functions, variables and constants, so that the error comes first. The
// packages that build anywhere are the pure-Go rss (the RSS engine) and
// virtio (the virtio-net wire formats).
type _ vrss_requires_Linux
