//go:build !linux

package client

// vrss needs Linux. Package client talks to vrssd over a SOCK_SEQPACKET
// unix socket, takes file descriptors by SCM_RIGHTS and maps the eBPF maps
// it is handed. Built for another system, it fails with the error
// "undefined: vrss_requires_Linux", which this file causes on purpose: a
// type declaration, which the compiler checks before functions, variables
// and constants, so that the error comes first. The packages that build
// anywhere are the pure-Go rss (the RSS engine) and virtio (the virtio-net
// wire formats).
type _ vrss_requires_Linux
