// Package rss is the reference implementation of virtio-net receive side
// scaling: packet classification, hash type selection, the Toeplitz hash,
// the indirection table and the hash report.
//
// Every other implementation in vrss (the eBPF steering program, the
// userspace fallback) is proven identical to this package by differential
// tests. It has no OS dependencies and performs no allocations on the packet
// path. Decisions the virtio specification leaves open are listed in
// docs/semantics.md.
package rss

import (
	"fmt"
	"strings"
)

// HashType is a set of virtio-net hash types (VIRTIO_NET_RSS_HASH_TYPE_*),
// as carried in the hash_types field of the RSS and hash configuration
// commands.
type HashType uint32

// The nine virtio-net hash types, with their wire bit values.
const (
	HashIPv4  HashType = 1 << 0
	HashTCPv4 HashType = 1 << 1
	HashUDPv4 HashType = 1 << 2
	HashIPv6  HashType = 1 << 3
	HashTCPv6 HashType = 1 << 4
	HashUDPv6 HashType = 1 << 5
	HashIPEx  HashType = 1 << 6
	HashTCPEx HashType = 1 << 7
	HashUDPEx HashType = 1 << 8

	// AllHashTypes is the set of every hash type defined by virtio.
	AllHashTypes HashType = 1<<9 - 1
)

var hashTypeNames = [...]string{"ipv4", "tcpv4", "udpv4", "ipv6", "tcpv6", "udpv6", "ip_ex", "tcp_ex", "udp_ex"}

// String returns the set as a comma-separated list of the names accepted by
// ParseHashTypes, or "none" for the empty set. Undefined bits are shown in hex.
func (t HashType) String() string {
	if t == 0 {
		return "none"
	}
	var parts []string
	for i, name := range hashTypeNames {
		if t&(1<<i) != 0 {
			parts = append(parts, name)
		}
	}
	if rest := t &^ AllHashTypes; rest != 0 {
		parts = append(parts, fmt.Sprintf("%#x", uint32(rest)))
	}
	return strings.Join(parts, ",")
}

// ParseHashTypes parses a comma-separated list of hash type names
// (ipv4, tcpv4, udpv4, ipv6, tcpv6, udpv6, ip_ex, tcp_ex, udp_ex, or all).
// Names are case-insensitive; "none" or an empty string is the empty set.
func ParseHashTypes(list string) (HashType, error) {
	var t HashType
	for _, f := range strings.Split(list, ",") {
		f = strings.ToLower(strings.TrimSpace(f))
		switch f {
		case "", "none":
			continue
		case "all":
			t |= AllHashTypes
			continue
		}
		found := false
		for i, name := range hashTypeNames {
			if f == name {
				t |= 1 << i
				found = true
				break
			}
		}
		if !found {
			return 0, fmt.Errorf("unknown hash type %q (want one of %s, all)", f, strings.Join(hashTypeNames[:], ", "))
		}
	}
	return t, nil
}

// HashReport is the virtio-net hash report value (VIRTIO_NET_HASH_REPORT_*)
// that tells the driver which hash type produced a packet's hash.
type HashReport uint16

// The virtio-net hash report values.
const (
	ReportNone    HashReport = 0
	ReportIPv4    HashReport = 1
	ReportTCPv4   HashReport = 2
	ReportUDPv4   HashReport = 3
	ReportIPv6    HashReport = 4
	ReportTCPv6   HashReport = 5
	ReportUDPv6   HashReport = 6
	ReportIPv6Ex  HashReport = 7
	ReportTCPv6Ex HashReport = 8
	ReportUDPv6Ex HashReport = 9
)

var reportNames = [...]string{"none", "ipv4", "tcpv4", "udpv4", "ipv6", "tcpv6", "udpv6", "ipv6_ex", "tcpv6_ex", "udpv6_ex"}

// String returns the report's lower-case name, such as "tcpv4".
func (r HashReport) String() string {
	if int(r) < len(reportNames) {
		return reportNames[r]
	}
	return fmt.Sprintf("report(%d)", uint16(r))
}

// Result is the outcome of steering one frame.
type Result struct {
	// Queue is the receive queue the frame belongs on.
	Queue uint16
	// Hash is the Toeplitz hash; 0 when Report is ReportNone. A hash of 0
	// with another report is a valid hash.
	Hash uint32
	// Report names the hash type used, or ReportNone for an unclassified
	// frame, which goes to the configuration's unclassified queue.
	Report HashReport
}
