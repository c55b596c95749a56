//go:build !linux

package xdptest

// vrss_requires_Linux: the XDP test program is a Linux eBPF object.
type _ vrss_requires_Linux
