package portxdp

import (
	"unsafe"
)

// The map layout (bpf/portmap.h); layout_test.go pins it.
const (
	// Magic is the layout stamp the publisher writes once a policy is
	// published (PORT_MAGIC, "PRT3" little endian: layout version 3, in
	// which an AF_XDP port's slot is judged inbound; 2 added the AF_XDP
	// mode and queue range). The bytes did not move in 3, the meaning of
	// an AF_XDP slot did: a program of version 2 must not take its policy.
	Magic = 0x33545250
	// ConfigSize is the configuration map's value size: what a TAP with
	// port security locks.
	ConfigSize = int(unsafe.Sizeof(configLayout{}))

	maxV6 = 16 + 4 // port.MaxIPv6 and a link-local address per MAC

	// Counter indexes (PORT_STAT_*): port.Reason r at r, rule i at
	// statRule+i, then the rest.
	statRule         = 32
	statUnconfigured = statRule + 32
	statRetry        = statUnconfigured + 1
	statTorn         = statUnconfigured + 2
	statRedirect     = statUnconfigured + 3
	statXSK          = statUnconfigured + 4
	statOtherQueue   = statUnconfigured + 5
	numStats         = statUnconfigured + 6

	// Where a slot's passed frames go (PORT_MODE_*).
	modeStack  = 0
	modeUplink = 1
	modeXSK    = 2
)

// MaxQueues is the number of entries of the AF_XDP sockets' map
// (PORT_MAX_QUEUES): an AF_XDP port's receive queues are below it.
const MaxQueues = 256

type configLayout = portPortConfig

// debugLayout is struct port_debug.
type debugLayout struct {
	Reason uint32
	Rule   int32
	Action uint32
	_      uint32
	Tag    uint64
}
