package api

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/vrss-dev/vrss/port"
)

// Port security: a TAP's port policy (package port), enforced by an XDP
// program on the TAP (package portxdp) on every frame its guest sends.
// Only root and the daemon's admins may set or clear a policy; the TAP's
// owner may read it (show, stats); anyone else is answered CodeNotFound,
// as for a TAP that does not exist.
const (
	OpPortSet   Op = "port_set"   // PortSetArgs → PortInfo
	OpPortShow  Op = "port_show"  // NameArgs → PortInfo
	OpPortStats Op = "port_stats" // NameArgs → PortStats
	OpPortClear Op = "port_clear" // NameArgs → nothing
)

// PortSetArgs set a TAP's port policy. A policy that does not validate
// (port.Policy.Validate), or names an uplink the TAP's network namespace
// has no device of, is refused with CodeInvalidConfig and the active one
// stays.
type PortSetArgs struct {
	Name string `json:"name"`
	// Netns names the network namespace the TAP lives in, by a path;
	// empty for the daemon's own. See NameArgs.Netns.
	Netns  string      `json:"netns,omitempty"`
	Policy port.Policy `json:"policy"`
}

// PortInfo is a TAP's port policy as port_show and port_set answer it.
type PortInfo struct {
	TAP   string `json:"tap"`
	Netns string `json:"netns"`
	// Attached says the program is attached to the TAP (XDP), judging
	// every frame the guest sends.
	Attached bool `json:"attached"`
	// Generation counts the policies published to the TAP's program.
	Generation uint64 `json:"generation"`
	// Policy is the active policy; nil when the TAP has none.
	Policy *port.Policy `json:"policy"`
}

// PortStats are the counters of a TAP's port-security program.
type PortStats struct {
	TAP        string `json:"tap"`
	Netns      string `json:"netns"`
	Attached   bool   `json:"attached"`
	Generation uint64 `json:"generation"`
	// Uplink is the policy's fast-path device, empty for none.
	Uplink string `json:"uplink"`
	// Passed and Dropped total the frames by their reasons' verdicts;
	// Redirected counts the passed frames sent to the uplink, and
	// Unconfigured the frames dropped before any policy was published.
	Passed       uint64 `json:"passed"`
	Dropped      uint64 `json:"dropped"`
	Redirected   uint64 `json:"redirected"`
	Unconfigured uint64 `json:"unconfigured"`
	// XSKRedirected counts, on an AF_XDP port, the passed frames sent to
	// the socket of their queue; OtherQueue the frames of the device's
	// other queues, passed to the stack unjudged.
	XSKRedirected uint64 `json:"xsk_redirected,omitempty"`
	OtherQueue    uint64 `json:"other_queue,omitempty"`
	// Reasons counts frames by port.Reason.
	Reasons PortReasons `json:"reasons"`
	// Rules counts the frames each ACL rule decided, in policy order.
	Rules []PortRuleHits `json:"rules"`
}

// PortRuleHits are one ACL rule's hits.
type PortRuleHits struct {
	Index int    `json:"index"`
	Rule  string `json:"rule"` // as port.Rule.String writes it
	Hits  uint64 `json:"hits"`
}

// PortReasons count frames by port.Reason (index 0, no reason, stays 0).
// In JSON it is an object of every reason's name (port.Reason.String) and
// count, in the reasons' order.
type PortReasons [port.NumReasons]uint64

// MarshalJSON writes every reason from port.ACLAllow on by name.
func (r PortReasons) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i := 1; i < port.NumReasons; i++ {
		if i > 1 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%q:%d", port.Reason(i).String(), r[i])
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// UnmarshalJSON reads what MarshalJSON writes; an unknown name is an
// error.
func (r *PortReasons) UnmarshalJSON(b []byte) error {
	var m map[string]uint64
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	var out PortReasons
	for name, n := range m {
		i := 1
		for i < port.NumReasons && port.Reason(i).String() != name {
			i++
		}
		if i == port.NumReasons {
			return fmt.Errorf("unknown port reason %q", name)
		}
		out[i] = n
	}
	*r = out
	return nil
}
