// Package port is the reference for vrss's port security: what a guest may
// send into the host through its TAP. A Policy names the guest's MAC and IP
// addresses and an ordered ACL in package flow's match model; a Filter,
// made from a valid Policy, judges each frame the guest sends (an Ethernet
// frame, without the virtio-net header) and says why: anti-spoofing checks
// like libvirt's clean-traffic first, then the ACL (first match wins), then
// the policy's default.
//
// On an AF_XDP port the program sees only the frames arriving for the
// guest (its transmissions bypass XDP), so the same Policy is applied
// inbound there: NewInbound's Filter judges a frame by its destination
// (DstMAC, ARPTarget, DstIPv4, DstIPv6) before the ACL.
//
// The XDP program on the TAP implements the same semantics and is held to
// Filter frame by frame, so everything here is bounded: small fixed limits
// (MaxMACs, MaxIPv4, MaxIPv6, MaxRules), the rss parser's bounds, and
// Reason values that are fixed counter indexes shared with the program.
// docs/port-security.md gives every check in order, why, and how it
// compares with clean-traffic.
package port

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/vrss-dev/vrss/flow"
)

// Limits of a Policy. The XDP program's map has room for exactly these.
const (
	MaxMACs  = 4  // allowed source MAC addresses
	MaxIPv4  = 16 // allowed IPv4 addresses or prefixes
	MaxIPv6  = 16 // allowed IPv6 addresses or prefixes (besides link-local ones)
	MaxRules = 32 // ACL rules
	// MaxUplinkLen is the longest interface name Linux takes (IFNAMSIZ-1).
	MaxUplinkLen = 15
)

// MAC is an Ethernet address. In JSON and text it is written as
// net.HardwareAddr writes it (52:54:00:12:34:56).
type MAC [6]byte

// ParseMAC reads a 6-byte MAC address in any form net.ParseMAC accepts.
func ParseMAC(s string) (MAC, error) {
	var m MAC
	a, err := net.ParseMAC(s)
	if err != nil || len(a) != len(m) {
		return m, fmt.Errorf("MAC address %q: want six bytes like 52:54:00:12:34:56", s)
	}
	copy(m[:], a)
	return m, nil
}

// String returns the address as 52:54:00:12:34:56.
func (m MAC) String() string { return net.HardwareAddr(m[:]).String() }

// MarshalText writes the address as String does.
func (m MAC) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText reads the address as ParseMAC does.
func (m *MAC) UnmarshalText(b []byte) error {
	v, err := ParseMAC(string(b))
	if err == nil {
		*m = v
	}
	return err
}

// LinkLocal returns the IPv6 link-local address derived from m with the
// modified EUI-64 interface identifier (RFC 4291 appendix A): fe80::/64,
// then m's first three bytes with the universal/local bit flipped, ff:fe,
// and m's last three bytes.
func (m MAC) LinkLocal() netip.Addr {
	return netip.AddrFrom16([16]byte{0: 0xfe, 1: 0x80, 8: m[0] ^ 0x02, 9: m[1], 10: m[2], 11: 0xff, 12: 0xfe, 13: m[3], 14: m[4], 15: m[5]})
}

// Action is what an ACL rule, or a policy's default, does with a frame.
// The zero value is invalid, so that a forgotten action is an error.
type Action uint8

// The actions.
const (
	Allow Action = 1
	Drop  Action = 2
)

// String returns "allow" or "drop".
func (a Action) String() string {
	switch a {
	case Allow:
		return "allow"
	case Drop:
		return "drop"
	}
	return fmt.Sprintf("action(%d)", uint8(a))
}

// ParseAction reads "allow" or "drop"; "deny" is taken for "drop", as a
// policy's default is usually said.
func ParseAction(s string) (Action, error) {
	switch s {
	case "allow":
		return Allow, nil
	case "drop", "deny":
		return Drop, nil
	}
	return 0, fmt.Errorf("action %q: want allow or drop (deny)", s)
}

// MarshalText writes String's words; an invalid action is an error.
func (a Action) MarshalText() ([]byte, error) {
	if a != Allow && a != Drop {
		return nil, fmt.Errorf("port: invalid %s", a)
	}
	return []byte(a.String()), nil
}

// UnmarshalText reads what ParseAction reads.
func (a *Action) UnmarshalText(b []byte) error {
	v, err := ParseAction(string(b))
	if err == nil {
		*a = v
	}
	return err
}

// Rule is one ACL rule: frames whose flow.Key matches Match get Action.
type Rule struct {
	Match  flow.Match
	Action Action
}

// String describes the rule as "allow ether-type 0x0800 proto 6 dst-port 22".
func (r Rule) String() string { return r.Action.String() + " " + r.Match.String() }

// Policy is a port's policy: who the guest is, and what else it may send.
type Policy struct {
	// MACs are the source MAC addresses the guest may use: 1 to MaxMACs
	// unicast addresses.
	MACs []MAC
	// IPv4 and IPv6 are the source addresses the guest may use, as
	// prefixes (an address is a /32 or /128); at most MaxIPv4 and
	// MaxIPv6, without host bits set.
	IPv4 []netip.Prefix
	IPv6 []netip.Prefix
	// LinkLocal allows, besides IPv6, the link-local address each MAC
	// derives (MAC.LinkLocal), which IPv6 neighbour discovery needs.
	LinkLocal bool
	// Rules are the ACL, tried in order after the anti-spoofing checks;
	// the first whose match the frame's key satisfies decides. At most
	// MaxRules; each match must be normalized (flow.Match.Normalize).
	Rules []Rule
	// Default decides frames that pass the checks and match no rule.
	Default Action
	// Uplink is the device allowed frames may be redirected to by the fast
	// path; empty for none. The reference only carries it.
	Uplink string
}

// Errors of Validate, wrapped with the field and value at fault.
var (
	ErrLimit   = errors.New("port: too many")
	ErrInvalid = errors.New("port: invalid")
)

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w %s", ErrInvalid, fmt.Sprintf(format, a...))
}

// Validate reports the first thing wrong with p: a count over its limit, a
// MAC that is zero, multicast or repeated, a prefix of the wrong family,
// with host bits set or repeated, a rule without an action or whose match
// is not normalized, a missing default, an uplink Linux would not name a
// device.
func (p *Policy) Validate() error {
	switch {
	case len(p.MACs) == 0:
		return invalid("macs: at least one MAC address is required (the guest's)")
	case len(p.MACs) > MaxMACs:
		return fmt.Errorf("%w macs: %d, the limit is %d", ErrLimit, len(p.MACs), MaxMACs)
	case len(p.IPv4) > MaxIPv4:
		return fmt.Errorf("%w ipv4 prefixes: %d, the limit is %d", ErrLimit, len(p.IPv4), MaxIPv4)
	case len(p.IPv6) > MaxIPv6:
		return fmt.Errorf("%w ipv6 prefixes: %d, the limit is %d", ErrLimit, len(p.IPv6), MaxIPv6)
	case len(p.Rules) > MaxRules:
		return fmt.Errorf("%w rules: %d, the limit is %d", ErrLimit, len(p.Rules), MaxRules)
	}
	for i, m := range p.MACs {
		switch {
		case m == MAC{}:
			return invalid("macs[%d] %s: the zero address", i, m)
		case m[0]&1 != 0:
			return invalid("macs[%d] %s: a multicast address cannot be a source", i, m)
		}
		for _, o := range p.MACs[:i] {
			if o == m {
				return invalid("macs[%d] %s: given twice", i, m)
			}
		}
	}
	if err := checkPrefixes("ipv4", p.IPv4, 4); err != nil {
		return err
	}
	if err := checkPrefixes("ipv6", p.IPv6, 6); err != nil {
		return err
	}
	for i, r := range p.Rules {
		if r.Action != Allow && r.Action != Drop {
			return invalid("rules[%d] (%s): action must be allow or drop", i, r.Match.String())
		}
		n := r.Match
		if err := n.Normalize(); err != nil {
			return invalid("rules[%d] (%s): %v", i, r.Match.String(), err)
		}
		if n != r.Match {
			return invalid("rules[%d] (%s): match not normalized (flow.Match.Normalize)", i, r.Match.String())
		}
	}
	if p.Default != Allow && p.Default != Drop {
		return invalid("default: must be allow or deny")
	}
	if u := p.Uplink; u != "" && (len(u) > MaxUplinkLen || u == "." || u == ".." || strings.ContainsAny(u, "/: \t\n\r\v\f")) {
		return invalid("uplink %q: not a Linux interface name (1 to %d bytes, no '/', ':' or space)", u, MaxUplinkLen)
	}
	return nil
}

func checkPrefixes(field string, ps []netip.Prefix, family int) error {
	for i, p := range ps {
		a := p.Addr()
		switch {
		case !p.IsValid():
			return invalid("%s[%d]: not a prefix", field, i)
		case family == 4 && !a.Is4(), family == 6 && (!a.Is6() || a.Is4In6()):
			return invalid("%s[%d] %s: not an IPv%d prefix", field, i, p, family)
		case p != p.Masked():
			return invalid("%s[%d] %s: host bits set (the prefix is %s)", field, i, p, p.Masked())
		}
		for _, o := range ps[:i] {
			if o == p {
				return invalid("%s[%d] %s: given twice", field, i, p)
			}
		}
	}
	return nil
}

// policyJSON is a Policy's JSON form: addresses as text, rule matches as
// flow key images in hex (112 digits each, exact and stable).
type policyJSON struct {
	MACs      []MAC          `json:"macs"`
	IPv4      []netip.Prefix `json:"ipv4"`
	IPv6      []netip.Prefix `json:"ipv6"`
	LinkLocal bool           `json:"link_local"`
	Rules     []ruleJSON     `json:"rules"`
	Default   Action         `json:"default"`
	Uplink    string         `json:"uplink,omitempty"`
}

type ruleJSON struct {
	Action Action  `json:"action"`
	Value  hexKey  `json:"value"`
	Mask   hexKey  `json:"mask"`
	Match  *string `json:"match,omitempty"`
}

// hexKey is a flow.Key written as 112 hex digits.
type hexKey flow.Key

func (k hexKey) MarshalText() ([]byte, error) { return hex.AppendEncode(nil, k[:]), nil }

func (k *hexKey) UnmarshalText(b []byte) error {
	var v flow.Key
	if n, err := hex.Decode(v[:], b); len(b) != 2*flow.KeyLen || n != flow.KeyLen || err != nil {
		return fmt.Errorf("a flow key is %d hex digits: %q", 2*flow.KeyLen, b)
	}
	*k = hexKey(v)
	return nil
}

// MarshalJSON writes p with its addresses as text, its default and rule
// actions as words, and each rule's match as its flow.Key value and mask
// in hex, with the match's words beside them for the reader ("match",
// ignored when read back). Empty lists are written as [].
func (p Policy) MarshalJSON() ([]byte, error) {
	j := policyJSON{MACs: p.MACs, IPv4: p.IPv4, IPv6: p.IPv6, LinkLocal: p.LinkLocal, Default: p.Default, Uplink: p.Uplink, Rules: []ruleJSON{}}
	j.MACs = orEmpty(j.MACs)
	j.IPv4, j.IPv6 = orEmpty(j.IPv4), orEmpty(j.IPv6)
	for _, r := range p.Rules {
		s := r.Match.String()
		j.Rules = append(j.Rules, ruleJSON{Action: r.Action, Value: hexKey(r.Match.Value), Mask: hexKey(r.Match.Mask), Match: &s})
	}
	return json.Marshal(j)
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// UnmarshalJSON reads what MarshalJSON writes. It does not validate: call
// Validate (New does).
func (p *Policy) UnmarshalJSON(b []byte) error {
	var j policyJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return fmt.Errorf("port policy: %w", err)
	}
	n := Policy{MACs: j.MACs, IPv4: j.IPv4, IPv6: j.IPv6, LinkLocal: j.LinkLocal, Default: j.Default, Uplink: j.Uplink}
	for _, r := range j.Rules {
		n.Rules = append(n.Rules, Rule{Action: r.Action, Match: flow.Match{Value: flow.Key(r.Value), Mask: flow.Key(r.Mask)}})
	}
	*p = n
	return nil
}
