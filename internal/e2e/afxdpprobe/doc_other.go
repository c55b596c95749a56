//go:build !linux

package main

// vrss needs Linux: afxdpprobe sets up Linux AF_XDP sockets. Built for
// another system, it fails with the error "undefined: vrss_requires_Linux"
// (see package steering's doc_other.go for why a type).
type _ vrss_requires_Linux
