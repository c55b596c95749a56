//go:build !linux

package ethtooltest

// vrss needs Linux: package ethtooltest models a Linux ethtool driver for tests. Built for another
// system, it fails with the error "undefined: vrss_requires_Linux" (see
// package steering's doc_other.go for why a type).
type _ vrss_requires_Linux
