// Package portxdp loads vrss's port-security XDP program (bpf/port.c), which
// implements package port's policy frame by frame on a VM's TAP, publishes
// policies to it atomically through its mmapped map, attaches it, points
// its fast path at an uplink and reads its counters.
//
// tun runs an XDP program attached to a TAP on every frame the VMM writes,
// that is every frame the guest sends, before the kernel builds an skb.
// The program judges each one as port.Filter.Check does (the same checks,
// reasons and ACL; the differential tests hold it to that on over a
// million frames), counts it per reason and per ACL rule, and passes it,
// drops it, or redirects it to the uplink (SetUplink) when the policy
// names one. docs/port-security.md describes the program and its map.
package portxdp
