package portxdp

import (
	"unsafe"
)

// The map layout (bpf/portmap.h); layout_test.go pins it.
const (
	// Magic is the layout stamp the publisher writes once a policy is
	// published (PORT_MAGIC, "PORT" little endian).
	Magic = 0x54524f50
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
	numStats         = statUnconfigured + 4
)

type configLayout = portPortConfig

// debugLayout is struct port_debug.
type debugLayout struct {
	Reason uint32
	Rule   int32
	Action uint32
	_      uint32
	Tag    uint64
}
