//go:build !linux

package netkit

// vrss needs Linux: package netkit drives Linux interfaces (rtnetlink and netdev generic netlink). Built for another
// system, it fails with the error "undefined: vrss_requires_Linux" (see
// package steering's doc_other.go for why a type).
type _ vrss_requires_Linux
