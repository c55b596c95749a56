// Package steering loads the vrss eBPF steering program, publishes RSS
// configurations to it atomically through its mmapped configuration map,
// attaches it to TAP devices and reads its counters.
package steering
