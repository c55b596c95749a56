//go:build !linux

package main

// guestsend runs in scenario P's Linux guest (AF_PACKET). Built for another
// system, it fails with the error "undefined: vrss_requires_Linux", which
// this file causes on purpose, first, as every Linux-only package of vrss
// does.
type _ vrss_requires_Linux
