//go:build !linux

package ebpfrss

// vrss needs Linux. Package ebpfrss loads QEMU's eBPF RSS program and maps
// into the Linux kernel. Built for another system, it fails with the error
// "undefined: vrss_requires_Linux", which this file causes on purpose: a
// type declaration, which the compiler checks before functions, variables
// and constants, so that the error comes first. The packages that build
// anywhere are the pure-Go rss (the RSS engine) and virtio (the virtio-net
// wire formats).
type _ vrss_requires_Linux
