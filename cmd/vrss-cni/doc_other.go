//go:build !linux

package main

// vrss needs Linux. vrss-cni asks vrssd for TAP devices in Linux network
// namespaces. Built for another system, it fails with the error
// "undefined: vrss_requires_Linux", which this file causes on purpose: a
// type declaration, which the compiler checks before functions, variables
// and constants, so that the error comes first. The packages that build
// anywhere are the pure-Go rss (the RSS engine) and virtio (the virtio-net
// wire formats).
type _ vrss_requires_Linux
