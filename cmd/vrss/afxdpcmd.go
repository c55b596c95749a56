package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/agent/client"
)

const afxdpUsage = "afxdp (create NAME --dev DEV --queue-start N --queues K [--slice] [--netkit NETNS] [--owner UID] [--group GID] [--netns PATH] | delete NAME [--netns PATH] | show NAME [--json] [--netns PATH] | list [--json])"

func runAFXDP(args []string, stdout, stderr io.Writer) int {
	return report(stderr, "afxdp", subcommand("afxdp", map[string]func([]string, io.Writer) error{
		"create": afxdpCreate,
		"delete": afxdpDelete,
		"show":   afxdpShow,
		"list":   afxdpList,
	}, afxdpUsage, args, stdout))
}

func afxdpCreate(args []string, stdout io.Writer) error {
	fs := newFlagSet("afxdp create", "NAME --dev DEV --queue-start N --queues K [--slice] [--netkit NETNS] [--owner UID] [--group GID] [--netns PATH]", `
Ask vrssd for an AF_XDP port: receive queues N to N+K-1 of the device DEV
(a NIC or a veth, which must have that many receive queues and carry no
XDP program) handed to a VMM as AF_XDP sockets. vrssd attaches its
port-security program to DEV (XDP, driver mode), puts one unbound AF_XDP
socket per queue in the program's XSKMAP, and pins them, so that the
sockets a VMM set up keep receiving across vrssd restarts. The owner
(--owner, default you) gets the sockets from 'afxdp_open' (the client
library's AFXDPOpen), sets each up and binds it to its queue.

Until root or an admin sets a port policy on the port ('vrss port set NAME
...', as on a TAP; no --uplink; judged inbound: the policy names the
guest's own MACs and addresses), every unicast frame of the port's queues
is dropped, and only broadcast and multicast control frames (DHCP server
messages, NDP, MLD) reach the sockets: the VM gets nothing it was not
allowed. Frames of DEV's other
queues are the host's: passed to the stack unjudged. On a NIC, the port's
queues get whatever the NIC's RSS sends them, host traffic included,
unless --slice: vrssd then creates an RSS context spreading over the
port's queues and, whenever the port policy is set, changed or cleared,
one ntuple rule per IPv4 or IPv6 prefix of the policy sending traffic to
that address into the context; delete removes them, and vrssd removes
those an interrupted create or delete left at its next start. --slice
needs a NIC whose driver has RSS contexts and ntuple rules (mlx5, bnxt,
sfc, ...; 'ethtool -K DEV ntuple on' first on many); on any other
device (veth, virtio_net, ...) the create is refused, naming the device
and why, and nothing is created. Not yet run on a real NIC.

--netkit NETNS (Linux 7.1 or later; root and admins) also creates, in
the network namespace NETNS (a path: /var/run/netns/NAME,
/proc/PID/ns/net), a single-device netkit named NAME whose receive queues
1 to K lease DEV's queues N to N+K-1 (netdev netlink queue-create), so
that an AF_XDP socket in NETNS binds through the netkit to DEV's queue
('vrss afxdp show' lists its queues); delete removes it. Only drivers with
queue-management operations can lease queues (gve, mlx5, bnxt, fbnic in
Linux 7.2); on an older kernel, or with another driver (virtio_net,
veth, ...), the create is refused in one line with the kernel's reason
and nothing is left. Not yet run on a NIC that can lease. Example:

    vrss afxdp create vm0x --dev eth1 --queue-start 2 --queues 2 --owner 107 --slice
    vrss port set vm0x --mac 52:54:00:12:34:56 --ip 10.0.0.5 --default allow`)
	dev := fs.String("dev", "", "the device whose receive queues the port takes (required)")
	start := fs.Int("queue-start", 0, "the port's first receive queue")
	queues := fs.Int("queues", 0, fmt.Sprintf("how many receive queues, 1 to %d (required)", api.MaxQueues))
	owner := fs.Int("owner", 0, "owner `UID` (default: you); only root or an admin may name someone else")
	group := fs.Int("group", 0, "owner `GID` (default: your group)")
	slice := fs.Bool("slice", false, "slice DEV's queues for the port: an RSS context over them and ntuple rules for the policy's addresses (NICs with RSS contexts only)")
	nk := fs.String("netkit", "", "create a single-device netkit NAME in the network namespace at `NETNS` leasing the port's queues (Linux 7.1+, drivers with queue-management operations)")
	check := func() error {
		switch {
		case *dev == "":
			return inputErrorf("--dev is required (run 'vrss afxdp create -h')")
		case *start < 0 || *start > 255:
			return inputErrorf("--queue-start %d: want 0 to 255", *start)
		}
		return checkTapCreate(fs, *queues, *owner, *group, 12)
	}
	return portCall(fs, args, stdout, check, func(ctx context.Context, n *client.Netns, name string) error {
		a := api.AFXDPCreateArgs{Name: name, Dev: *dev, QueueStart: *start, Queues: *queues, Slice: *slice, Netkit: *nk}
		if fs.isSet("owner") {
			a.OwnerUID = owner
		}
		if fs.isSet("group") {
			a.OwnerGID = group
		}
		p, err := n.AFXDPCreate(ctx, a)
		if err != nil {
			return daemonError(err)
		}
		fmt.Fprintf(stdout, "created AF_XDP port %s: %s queues %d-%d, owner %d:%d; their unicast frames are dropped until 'vrss port set %s ...'\n",
			p.Name, p.Dev, p.QueueStart, p.QueueStart+p.Queues-1, p.OwnerUID, p.OwnerGID, p.Name)
		if p.Slice != nil {
			fmt.Fprintf(stdout, "sliced %s: RSS context %d over queues %d-%d; its ntuple rules follow the port policy's addresses\n", p.Dev, p.Slice.Context, p.QueueStart, p.QueueStart+p.Queues-1)
		}
		if p.Netkit != nil {
			fmt.Fprintf(stdout, "netkit %s (ifindex %d) in %s: its queues %s lease %s queues %d-%d\n", p.Netkit.Name, p.Netkit.Ifindex, p.Netkit.Netns, joinU32(p.Netkit.Queues), p.Dev, p.QueueStart, p.QueueStart+p.Queues-1)
		}
		return nil
	})
}

func afxdpDelete(args []string, stdout io.Writer) error {
	fs := newFlagSet("afxdp delete", "NAME [--netns PATH]", `
Detach the port's program from its device and remove its pins and record:
the sockets its owner holds stop receiving, and the device's queues go
back to the stack.`)
	return portCall(fs, args, stdout, nil, func(ctx context.Context, n *client.Netns, name string) error {
		if err := n.AFXDPDelete(ctx, name); err != nil {
			return daemonError(err)
		}
		fmt.Fprintf(stdout, "deleted AF_XDP port %s\n", name)
		return nil
	})
}

func afxdpShow(args []string, stdout io.Writer) error {
	fs := newFlagSet("afxdp show", "NAME [--json] [--netns PATH]", `
Show an AF_XDP port: its device and queues, owner, whether the program is
attached and whether a port policy was set ('vrss port show NAME' shows
the policy, 'vrss port stats NAME' its counters), and, for a port created
with --slice, its RSS context and ntuple rules.`)
	asJSON := fs.Bool("json", false, `print JSON: {"name","dev","netns","queue_start","queues","owner_uid","owner_gid","attached","policy"}, and "slice": {"context","rules":[{"location","prefix"}]} if sliced, "pending" and "orphaned" (queues) if any`)
	return portCall(fs, args, stdout, nil, func(ctx context.Context, n *client.Netns, name string) error {
		p, err := n.AFXDPShow(ctx, name)
		if err != nil {
			return daemonError(err)
		}
		if *asJSON {
			return writeJSON(stdout, p)
		}
		return printAFXDP(stdout, []api.AFXDPPort{p})
	})
}

func afxdpList(args []string, stdout io.Writer) error {
	fs := newFlagSet("afxdp list", "[--json]", "List the AF_XDP ports you may see (all of them for root and admins).")
	asJSON := fs.Bool("json", false, "print JSON: a list of what 'vrss afxdp show --json' prints")
	socket := fs.String("socket", "", socketHelp)
	return listFromDaemon(fs, args, stdout, asJSON, socket, (*client.Client).AFXDPList, printAFXDP)
}

// printAFXDP prints ports as a table, namespaces under it.
func printAFXDP(stdout io.Writer, ports []api.AFXDPPort) error {
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tDEV\tQUEUES\tOWNER\tPROGRAM\tPOLICY")
	for _, p := range ports {
		pol := "none (drops all)"
		if p.Policy {
			pol = "set"
		}
		fmt.Fprintf(w, "%s\t%s\t%d-%d\t%d:%d\t%s\t%s\n", p.Name, p.Dev, p.QueueStart, p.QueueStart+p.Queues-1, p.OwnerUID, p.OwnerGID, attachedWord(p.Attached), pol)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	for _, p := range ports {
		if p.Netns != "" {
			fmt.Fprintf(stdout, "%s: in network namespace %s\n", p.Name, p.Netns)
		}
		if p.Slice != nil {
			fmt.Fprintf(stdout, "%s: sliced: RSS context %d of %s over queues %d-%d, %s\n", p.Name, p.Slice.Context, p.Dev, p.QueueStart, p.QueueStart+p.Queues-1, sliceRules(p.Slice.Rules))
		}
		if p.Netkit != nil {
			fmt.Fprintf(stdout, "%s: netkit %s (ifindex %d) in %s, queues %s leasing %s queues %d-%d\n", p.Name, p.Netkit.Name, p.Netkit.Ifindex, p.Netkit.Netns, joinU32(p.Netkit.Queues), p.Dev, p.QueueStart, p.QueueStart+p.Queues-1)
		}
		if len(p.Pending) > 0 {
			fmt.Fprintf(stdout, "%s: queues %s pending: the kernel refused their sockets unbound; vrssd inserts each once its owner has bound it (until then their frames go to the host's stack)\n", p.Name, joinInts(p.Pending))
		}
		if len(p.Orphaned) > 0 {
			fmt.Fprintf(stdout, "%s: queues %s orphaned: they were pending when vrssd stopped and it no longer holds their sockets; nothing receives them (their frames go to the host's stack) until the owner opens the port again\n", p.Name, joinInts(p.Orphaned))
		}
	}
	return nil
}

// joinInts lists queues: "1,2".
func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ",")
}

// joinU32 lists a netkit's queues: "1,2".
func joinU32(v []uint32) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.FormatUint(uint64(x), 10)
	}
	return strings.Join(s, ",")
}

// sliceRules lists a slice's ntuple rules for printAFXDP.
func sliceRules(rules []api.AFXDPSliceRule) string {
	if len(rules) == 0 {
		return "no ntuple rule (no address in the port policy)"
	}
	s := "ntuple rules"
	for i, r := range rules {
		sep := ","
		if i == 0 {
			sep = ""
		}
		s += fmt.Sprintf("%s %d (to %s)", sep, r.Location, r.Prefix)
	}
	return s
}
