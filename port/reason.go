package port

import "fmt"

// Reason says why a frame passed or was dropped. The values are stable:
// they index the XDP program's counters and the differential test's
// comparison, so a reason is never renumbered, only added.
type Reason uint8

// The reasons, in the order of the checks that give them (see
// docs/port-security.md). 0 is never returned.
const (
	// Passed frames.
	ACLAllow     Reason = 1 // an ACL rule with action allow matched
	DefaultAllow Reason = 2 // no rule matched; the default is allow
	Control      Reason = 3 // ARP, QEMU's RARP announcement, a DHCP/DHCPv6 client message, NDP or MLD: passed by the checks, not subject to the ACL

	// Dropped frames.
	Malformed    Reason = 4  // too short, or a header the parser rejects, cut off or incomplete
	SrcMAC       Reason = 5  // source MAC not the guest's
	VLAN         Reason = 6  // VLAN-tagged (802.1Q or 802.1ad)
	L2Proto      Reason = 7  // an EtherType other than IPv4, IPv6, ARP and RARP
	ARPOpcode    Reason = 8  // ARP other than request or reply
	ARPSender    Reason = 9  // ARP sender MAC or IPv4 address not the guest's
	RARP         Reason = 10 // RARP other than QEMU's self-announcement
	SrcIPv4      Reason = 11 // IPv4 source address not the guest's
	SrcIPv6      Reason = 12 // IPv6 source address not the guest's
	DHCPServer   Reason = 13 // UDP from port 67: a DHCP server or relay reply
	DHCPv6Server Reason = 14 // UDP from port 547: a DHCPv6 server or relay message
	RouterAdvert Reason = 15 // ICMPv6 router advertisement (134)
	Redirect     Reason = 16 // ICMPv6 redirect (137)
	NDPTarget    Reason = 17 // neighbour advertisement for an address not the guest's
	ACLDrop      Reason = 18 // an ACL rule with action drop matched
	DefaultDeny  Reason = 19 // no rule matched; the default is drop

	// Dropped frames, inbound only: an AF_XDP port's (NewInbound).
	DstMAC    Reason = 20 // a unicast destination MAC not the guest's
	ARPTarget Reason = 21 // ARP whose target address is not the guest's
	DstIPv4   Reason = 22 // IPv4 destination neither the guest's, broadcast nor multicast
	DstIPv6   Reason = 23 // IPv6 destination neither the guest's nor multicast

	// NumReasons is one more than the largest reason: the length of a
	// per-reason counter array.
	NumReasons = 24
)

var reasonNames = [NumReasons]string{
	"none", "acl_allow", "default_allow", "control",
	"malformed", "src_mac", "vlan", "l2_proto", "arp_opcode", "arp_sender", "rarp",
	"src_ipv4", "src_ipv6", "dhcp_server", "dhcpv6_server", "router_advert", "redirect", "ndp_target",
	"acl_drop", "default_deny",
	"dst_mac", "arp_target", "dst_ipv4", "dst_ipv6",
}

// String returns the reason's name as counters are labelled: "src_mac".
func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// Pass reports whether frames with reason r pass.
func (r Reason) Pass() bool { return r >= ACLAllow && r <= Control }

// Verdict is what happens to a frame. The values are XDP's: XDP_DROP 1,
// XDP_PASS 2.
type Verdict uint8

// The verdicts.
const (
	VerdictDrop Verdict = 1
	VerdictPass Verdict = 2
)

// String returns "pass" or "drop".
func (v Verdict) String() string {
	switch v {
	case VerdictDrop:
		return "drop"
	case VerdictPass:
		return "pass"
	}
	return fmt.Sprintf("verdict(%d)", uint8(v))
}

// Result is a Filter's judgement of one frame.
type Result struct {
	Verdict Verdict
	Reason  Reason
	// Rule is the index in Policy.Rules of the ACL rule that decided
	// (reasons ACLAllow and ACLDrop), else -1.
	Rule int
}

func result(r Reason) Result {
	v := VerdictDrop
	if r.Pass() {
		v = VerdictPass
	}
	return Result{Verdict: v, Reason: r, Rule: -1}
}

// Counters count frames per reason and per ACL rule, as the XDP program
// does; the zero value is ready.
type Counters struct {
	// Reasons counts frames by Result.Reason (index 0 stays 0).
	Reasons [NumReasons]uint64
	// Rules counts frames by Result.Rule, the index in Policy.Rules.
	Rules [MaxRules]uint64
}

// Add counts r.
func (c *Counters) Add(r Result) {
	if int(r.Reason) < NumReasons {
		c.Reasons[r.Reason]++
	}
	if r.Rule >= 0 && r.Rule < MaxRules {
		c.Rules[r.Rule]++
	}
}

// Passed returns the total of frames passed.
func (c *Counters) Passed() (n uint64) {
	for r, v := range c.Reasons {
		if Reason(r).Pass() {
			n += v
		}
	}
	return n
}

// Dropped returns the total of frames dropped.
func (c *Counters) Dropped() (n uint64) {
	for _, v := range c.Reasons {
		n += v
	}
	return n - c.Passed()
}
