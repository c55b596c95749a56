package portxdp

import (
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/vrss-dev/vrss/port"
	"github.com/vrss-dev/vrss/steering"
)

// Counters are the program's counters, summed over CPUs.
type Counters struct {
	// Counters counts frames per reason and per ACL rule index, as
	// port.Counters does for the reference.
	port.Counters
	// Unconfigured counts frames dropped before any policy was published.
	Unconfigured uint64
	// Retries counts frames judged again because a publish changed their
	// slot meanwhile; Torn, frames dropped after four such tries (never
	// expected).
	Retries, Torn uint64
	// Redirected counts passed frames redirected to the uplink (the
	// kernel may still drop one the uplink does not take: see
	// SetUplink).
	Redirected uint64
	// XSKRedirected counts passed frames redirected to the AF_XDP socket
	// at their receive queue (an AF_XDP port's; the kernel drops one the
	// socket does not take: not bound yet, or its ring full).
	XSKRedirected uint64
	// OtherQueue counts frames an AF_XDP port's program passed to the
	// stack without judging them: they arrived on a receive queue outside
	// the port's (the host's traffic).
	OtherQueue uint64
}

// Counters reads the program's counters in one batch lookup.
func (p *Program) Counters() (Counters, error) { return ReadCounters(p.StatsMap) }

// ReadCounters reads the counters in statsMap, a program's StatsMap (or
// the same map pinned, for a process that did not load the program).
func ReadCounters(statsMap *ebpf.Map) (Counters, error) {
	var c Counters
	sums, err := steering.SumCounters(statsMap)
	if err != nil {
		return c, fmt.Errorf("portxdp: %w", err)
	}
	if len(sums) != numStats {
		return c, fmt.Errorf("portxdp: %d counters, want %d", len(sums), numStats)
	}
	copy(c.Reasons[:], sums[:port.NumReasons])
	copy(c.Rules[:], sums[statRule:statRule+port.MaxRules])
	c.Unconfigured, c.Retries, c.Torn, c.Redirected = sums[statUnconfigured], sums[statRetry], sums[statTorn], sums[statRedirect]
	c.XSKRedirected, c.OtherQueue = sums[statXSK], sums[statOtherQueue]
	return c, nil
}
