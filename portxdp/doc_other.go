//go:build !linux

package portxdp

// vrss needs Linux: package portxdp loads an XDP program into the Linux
// kernel. Built for another system, it fails with the error "undefined:
// vrss_requires_Linux" (see package steering's doc_other.go for why a type).
type _ vrss_requires_Linux
