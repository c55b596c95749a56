package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/agent/client"
	"github.com/vrss-dev/vrss/port"
)

const portUsage = "port (set TAP --mac MAC[,MAC] [--ip ADDR[/PREFIX][,...]] [--link-local] [--acl FILE] [--default allow|deny] [--uplink DEV] | show TAP [--json] | stats TAP [--json] | clear TAP) [--netns PATH]"

func runPort(args []string, stdout, stderr io.Writer) int {
	return report(stderr, "port", subcommand("port", map[string]func([]string, io.Writer) error{
		"set":   portSet,
		"show":  portShow,
		"stats": portStats,
		"clear": portClear,
	}, portUsage, args, stdout))
}

// portNote says who may do what, for every port command's help.
const portNote = `vrssd enforces the policy with an XDP program on the TAP, on every frame
the guest sends, before the kernel builds an skb (docs/port-security.md).
Only root and vrssd's admins may set or clear a port's policy; the TAP's
owner (its VMM) may show it and its counters; others are answered as for a
TAP that does not exist. The program, its counters and the policy survive
vrssd restarts.`

// maxACLFile bounds an ACL file: port.MaxRules rules are a few KB.
const maxACLFile = 1 << 20

// portCall is the rest of every port command once its own flags are
// defined in fs: it adds --socket and --netns, parses args, wants one TAP
// (or, for the afxdp commands, AF_XDP port) name, runs check (if not nil; input errors come before vrssd is asked),
// dials vrssd and runs call for the TAP in --netns's namespace.
func portCall(fs *flagSet, args []string, stdout io.Writer, check func() error, call func(ctx context.Context, n *client.Netns, name string) error) error {
	socket, netns := fs.String("socket", "", socketHelp), fs.String("netns", "", netnsHelp)
	pos, err := fs.parse(args, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		noun := "TAP"
		if strings.HasPrefix(fs.Name(), "afxdp ") {
			noun = "AF_XDP port"
		}
		return inputErrorf("want exactly one %s name (run 'vrss %s -h')", noun, fs.Name())
	}
	if check != nil {
		if err := check(); err != nil {
			return err
		}
	}
	c, ctx, cancel, err := dial(*socket)
	if err != nil {
		return err
	}
	defer cancel()
	defer c.Close()
	return call(ctx, c.Netns(*netns), pos[0])
}

func portSet(args []string, stdout io.Writer) error {
	fs := newFlagSet("port set", "TAP --mac MAC[,MAC] [--ip ADDR[/PREFIX][,...]] [--link-local] [--acl FILE] [--default allow|deny] [--uplink DEV] [--netns PATH]", fmt.Sprintf(`
Set a TAP's port policy: what its guest may send. Every frame the guest
sends must come from one of its MAC addresses; IPv4 and IPv6 frames from one
of its addresses, ARP and neighbour advertisements must claim only those;
DHCP and DHCPv6 clients are let through before an address is known, while
DHCP server replies, router advertisements and redirects from the guest are
dropped, like libvirt's clean-traffic. Frames that pass those checks are
judged by the ACL, rule by rule (the first match decides), then by the
default. The new policy replaces the active one in one atomic step; a policy
vrssd refuses (a bad value, an uplink that does not exist) changes nothing.

ACL file: one rule per line, "allow" or "drop" and then a match in the words
of 'vrss flow add' (flow-type, src-ip, dst-port, ...; no action, context,
prio, loc or group). A rule with no match words matches every frame; blank
lines and lines starting with # are skipped; at most %d rules. Example:

    # acl.txt
    allow flow-type udp4 dst-port 53
    allow flow-type tcp4 dst-port 443
    drop  flow-type tcp4 dst-port 25

    vrss port set vm0 --mac 52:54:00:12:34:56 --ip 192.0.2.10,2001:db8::10 \
        --link-local --acl acl.txt --default deny --uplink eth1

With --uplink, the frames the policy passes go straight to that device (a
NIC or a veth in the TAP's network namespace) by XDP redirect, skipping the
bridge and the stack; traffic to the guest stays on the stack.

On an AF_XDP port ('vrss afxdp create') the policy is inbound: the program
sees the frames arriving for the guest on the port's queues and none of
what the guest sends (AF_XDP transmission bypasses XDP; vrss does not
judge it). --mac and --ip are still the guest's own: a unicast frame to
another MAC (dst_mac), an IPv4 or IPv6 destination neither the guest's,
broadcast nor multicast (dst_ipv4, dst_ipv6) and ARP for another's
address (arp_target) are dropped; DHCP and DHCPv6 server messages, NDP and
MLD pass; the ACL sees the frame as it arrives (dst-port is the guest's
port). docs/port-security.md, "Inbound", has the checks.

`+portNote, port.MaxRules))
	macs := fs.String("mac", "", fmt.Sprintf("the guest's MAC `addresses`, comma-separated (1 to %d)", port.MaxMACs))
	ips := fs.String("ip", "", fmt.Sprintf("the guest's IPv4 and IPv6 `addresses`, comma-separated, each an address or a\nprefix ADDR/PREFIX (at most %d of each family); none allows no IP source", port.MaxIPv4))
	linkLocal := fs.Bool("link-local", false, "allow too the IPv6 link-local address each MAC derives (fe80::/64 and\nmodified EUI-64), which IPv6 neighbour discovery needs")
	acl := fs.String("acl", "", "an ACL `file`: one 'allow|drop MATCH' rule a line (see above)")
	dflt := fs.String("default", "allow", "what happens to frames that pass the checks and match no ACL rule: `allow` or deny")
	uplink := fs.String("uplink", "", "the fast path's `device`: allowed frames are redirected to it (a NIC or a\nveth of the TAP's network namespace, not a TAP); none passes them to the stack")
	var pol port.Policy
	check := func() (err error) {
		pol, err = portPolicy(*macs, *ips, *linkLocal, *acl, *dflt, *uplink)
		return asInput(err)
	}
	return portCall(fs, args, stdout, check, func(ctx context.Context, n *client.Netns, name string) error {
		info, err := n.PortSet(ctx, name, pol)
		if err != nil {
			return flowDaemonError(err)
		}
		fmt.Fprintf(stdout, "%s: port policy set (generation %d): %d MAC, %d IPv4, %d IPv6 %s, %d ACL %s, default %s\n",
			name, info.Generation, len(pol.MACs), len(pol.IPv4), len(pol.IPv6), plural(len(pol.IPv6), "prefix", "prefixes"), len(pol.Rules), plural(len(pol.Rules), "rule", "rules"), pol.Default)
		return nil
	})
}

// portPolicy builds a policy from port set's flags, and checks it as vrssd
// will (port.Policy.Validate).
func portPolicy(macs, ips string, linkLocal bool, aclFile, dflt, uplink string) (port.Policy, error) {
	pol := port.Policy{LinkLocal: linkLocal, Uplink: uplink}
	if macs == "" {
		return pol, fmt.Errorf("--mac: the guest's MAC address is required (run 'vrss port set -h')")
	}
	for _, s := range strings.Split(macs, ",") {
		m, err := port.ParseMAC(strings.TrimSpace(s))
		if err != nil {
			return pol, fmt.Errorf("--mac: %w", err)
		}
		pol.MACs = append(pol.MACs, m)
	}
	if ips != "" {
		for _, s := range strings.Split(ips, ",") {
			p, err := parsePrefix(strings.TrimSpace(s))
			if err != nil {
				return pol, fmt.Errorf("--ip: %w", err)
			}
			if p.Addr().Is4() {
				pol.IPv4 = append(pol.IPv4, p)
			} else {
				pol.IPv6 = append(pol.IPv6, p)
			}
		}
	}
	var err error
	if pol.Default, err = port.ParseAction(dflt); err != nil {
		return pol, fmt.Errorf("--default: %w", err)
	}
	if aclFile != "" {
		if pol.Rules, err = readACL(aclFile); err != nil {
			return pol, err
		}
	}
	if err := pol.Validate(); err != nil {
		return pol, err
	}
	return pol, nil
}

// parsePrefix reads an address (a /32 or /128) or a prefix.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return p, fmt.Errorf("%q: want ADDR or ADDR/PREFIX", s)
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q: want ADDR or ADDR/PREFIX", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// readACL reads and parses an ACL file (port.ParseACL).
func readACL(path string) ([]port.Rule, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--acl: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxACLFile+1))
	if err != nil {
		return nil, fmt.Errorf("--acl %s: %w", path, err)
	}
	if len(b) > maxACLFile {
		return nil, fmt.Errorf("--acl %s: over %d bytes", path, maxACLFile)
	}
	rules, err := port.ParseACL(string(b))
	if err != nil {
		return nil, fmt.Errorf("--acl %s: %w", path, err)
	}
	return rules, nil
}

func portShow(args []string, stdout io.Writer) error {
	fs := newFlagSet("port show", "TAP [--json] [--netns PATH]", `
Show a TAP's port policy: its MAC and IP addresses, whether the IPv6
link-local addresses are allowed, the ACL in order, the default and the
uplink; whether the program is attached and how many policies were
published to it (the generation). Example:

    vrss port show vm0 --json | jq .policy.rules

`+portNote)
	asJSON := fs.Bool("json", false, `print JSON: {"tap","netns","attached","generation","policy"}, the policy as
vrssd keeps it (null for none; each rule's match as value and mask in hex,
and in words)`)
	return portCall(fs, args, stdout, nil, func(ctx context.Context, n *client.Netns, name string) error {
		info, err := n.PortShow(ctx, name)
		if err != nil {
			return daemonError(err)
		}
		if *asJSON {
			return writeJSON(stdout, info)
		}
		return printPort(stdout, info)
	})
}

// printPort prints a TAP's port policy as port show does.
func printPort(w io.Writer, info api.PortInfo) error {
	if info.Policy == nil {
		fmt.Fprintf(w, "%s: no port policy\n", info.TAP)
		return nil
	}
	pol := info.Policy
	fmt.Fprintf(w, "%s: port policy, %s, generation %d\n", info.TAP, attachedWord(info.Attached), info.Generation)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "macs\t%s\n", joinStrings(pol.MACs))
	fmt.Fprintf(tw, "ipv4\t%s\n", joinStrings(pol.IPv4))
	fmt.Fprintf(tw, "ipv6\t%s\n", joinStrings(pol.IPv6))
	fmt.Fprintf(tw, "link-local\t%v\n", pol.LinkLocal)
	fmt.Fprintf(tw, "default\t%s\n", pol.Default)
	uplink := pol.Uplink
	if uplink == "" {
		uplink = "-"
	}
	fmt.Fprintf(tw, "uplink\t%s\n", uplink)
	fmt.Fprintf(tw, "acl\t%d %s, in the order tried\n", len(pol.Rules), plural(len(pol.Rules), "rule", "rules"))
	if err := tw.Flush(); err != nil {
		return err
	}
	for i, r := range pol.Rules {
		fmt.Fprintf(w, "  %2d  %s\n", i, r)
	}
	return nil
}

func attachedWord(on bool) string {
	if on {
		return "attached"
	}
	return "NOT attached"
}

// joinStrings writes values comma-separated, "-" for none.
func joinStrings[T fmt.Stringer](vs []T) string {
	if len(vs) == 0 {
		return "-"
	}
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = v.String()
	}
	return strings.Join(s, ",")
}

func portStats(args []string, stdout io.Writer) error {
	fs := newFlagSet("port stats", "TAP [--json] [--netns PATH]", `
Show a TAP's port-security counters: frames passed and dropped, those the
fast path redirected to the uplink, those dropped before any policy
(unconfigured), the frames of each reason (acl_allow, default_allow and
control pass; the rest, src_mac, src_ipv4, dhcp_server, router_advert and
so on, drop; an AF_XDP port's inbound policy drops by dst_mac, arp_target,
dst_ipv4 and dst_ipv6 instead of the source checks; docs/port-security.md
lists them) and each ACL rule's hits.
Counters go on across vrssd restarts and policy changes. Example:

    vrss port stats vm0 --json | jq .reasons.src_ipv4

`+portNote)
	asJSON := fs.Bool("json", false, `print JSON: {"tap","netns","attached","generation","uplink","passed",
"dropped","redirected","unconfigured","reasons":{every reason's name: frames},
"rules":[{"index","rule","hits"}]}`)
	return portCall(fs, args, stdout, nil, func(ctx context.Context, n *client.Netns, name string) error {
		st, err := n.PortStats(ctx, name)
		if err != nil {
			return daemonError(err)
		}
		if *asJSON {
			return writeJSON(stdout, st)
		}
		return printPortStats(stdout, st)
	})
}

// printPortStats prints port counters as port stats does: the reasons
// with frames, and every rule.
func printPortStats(w io.Writer, st api.PortStats) error {
	uplink := ""
	if st.Uplink != "" {
		uplink = ", uplink " + st.Uplink
	}
	fmt.Fprintf(w, "%s: %s, generation %d%s\n", st.TAP, attachedWord(st.Attached), st.Generation, uplink)
	fmt.Fprintf(w, "passed %d  dropped %d  redirected %d  unconfigured %d\n", st.Passed, st.Dropped, st.Redirected, st.Unconfigured)
	if st.XSKRedirected != 0 || st.OtherQueue != 0 { // an AF_XDP port's
		fmt.Fprintf(w, "xsk_redirected %d  other_queue %d\n", st.XSKRedirected, st.OtherQueue)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REASON\tVERDICT\tFRAMES")
	for r := port.Reason(1); r < port.NumReasons; r++ {
		if st.Reasons[r] == 0 {
			continue
		}
		verdict := "drop"
		if r.Pass() {
			verdict = "pass"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\n", r, verdict, st.Reasons[r])
	}
	if len(st.Rules) > 0 {
		fmt.Fprintln(tw, "\nRULE\tHITS\tMATCH")
		for _, r := range st.Rules {
			fmt.Fprintf(tw, "%d\t%d\t%s\n", r.Index, r.Hits, r.Rule)
		}
	}
	return tw.Flush()
}

func portClear(args []string, stdout io.Writer) error {
	fs := newFlagSet("port clear", "TAP [--netns PATH]", `
Remove a TAP's port policy: the program is detached (the guest's frames are
no longer checked) and its pins, counters and saved policy are removed.
Clearing a TAP without a policy does nothing. Example:

    vrss port clear vm0

`+portNote)
	return portCall(fs, args, stdout, nil, func(ctx context.Context, n *client.Netns, name string) error {
		if err := n.PortClear(ctx, name); err != nil {
			return daemonError(err)
		}
		fmt.Fprintf(stdout, "%s: port policy cleared\n", name)
		return nil
	})
}
