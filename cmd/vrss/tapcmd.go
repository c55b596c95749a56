package main

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/agent/client"
	"github.com/vrss-dev/vrss/tap"
)

const tapUsage = "tap (create NAME --queues N [--owner UID] [--group GID] [--vnet-hdr N] [--flows] [--netns PATH] | delete NAME [--netns PATH] | attach NAME [--netns PATH] | detach NAME [--netns PATH] | list [--json])"

func runTap(args []string, stdout, stderr io.Writer) int {
	return report(stderr, "tap", subcommand("tap", map[string]func([]string, io.Writer) error{
		"create": tapCreate,
		"delete": tapDelete,
		"list":   tapList,
		"attach": tapAttach,
		"detach": tapDetach,
	}, tapUsage, args, stdout))
}

func tapAttach(args []string, stdout io.Writer) error {
	return tapSteering(args, stdout, true)
}

func tapDetach(args []string, stdout io.Writer) error {
	return tapSteering(args, stdout, false)
}

// tapSteering attaches or detaches a TAP's steering program.
func tapSteering(args []string, stdout io.Writer, on bool) error {
	verb, what := "detach", `
Remove the vrss steering program from a TAP: the kernel's own queue choice
applies again. The TAP, its configuration and counters stay; vrssd leaves
it detached until 'vrss tap attach'.`
	if on {
		verb, what = "attach", `
Attach the TAP's vrss steering program again, after 'vrss tap detach'. It
works while a VMM holds every queue. A program a VMM removed (QEMU 7.2 does
at device reset and when its guest changes the number of queues) is
attached again by vrssd itself, within a fraction of a second; 'vrss tap
list' counts those in REATTACHED. Attaching while attached is harmless.`
	}
	fs := newFlagSet("tap "+verb, "NAME [--netns PATH]", what)
	socket := fs.String("socket", "", socketHelp)
	netns := fs.String("netns", "", netnsHelp)
	pos, err := fs.parse(args, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return inputErrorf("want exactly one TAP name (run 'vrss tap %s -h')", verb)
	}
	c, ctx, cancel, err := dial(*socket)
	if err != nil {
		return err
	}
	defer cancel()
	defer c.Close()
	if on {
		_, err = c.Netns(*netns).Attach(ctx, pos[0])
	} else {
		_, err = c.Netns(*netns).Detach(ctx, pos[0])
	}
	if err != nil {
		return daemonError(err)
	}
	fmt.Fprintf(stdout, "%sed steering of %s\n", verb, pos[0])
	return nil
}

func tapCreate(args []string, stdout io.Writer) error {
	fs := newFlagSet("tap create", "NAME --queues N [--owner UID] [--group GID] [--vnet-hdr N] [--flows] [--netns PATH]", `
Ask vrssd to create a persistent multi-queue TAP device with the vrss steering
program attached, owned by --owner (default: you). Its owner may then open
it (receive the queue fds and the configuration map) and configure it without
privileges. Until a configuration is set, every packet goes to queue 0.

With --flows the TAP takes flow rules and RSS contexts as well (vrss flow
add, vrss rss context add): vrssd steers it with the flow build of the
program and attaches its filter, which drops what drop rules match, at the
TAP's tc egress (tcx: Linux 6.6 or later). Its configuration map locks
about 1 MB of kernel memory instead of about 200 KB. A TAP is made with or
without flows: to change, delete it and create it again. Example:

    vrss tap create vm0 --queues 4 --flows
    vrss flow add vm0 flow-type tcp4 dst-port 22 action 0

With --netns the TAP is made inside that network namespace (a pod's, as the
CNI plugin vrss-cni asks): only root and vrssd's admins may, with --flows
or without (the filter is attached in that namespace). Name the namespace
again (--netns) to reach the TAP with tap delete, attach and detach, rss
set and show, rss context, flow, port and stats; vrssd deletes the TAP
itself once the path no longer names that namespace. Examples:

    vrss tap create tap0 --queues 4 --owner 107 --group 107 --netns /var/run/netns/pod1
    vrss tap create tap0 --queues 4 --flows --netns /var/run/netns/pod2
    vrss flow add tap0 flow-type tcp4 dst-port 22 action 0 --netns /var/run/netns/pod2`)
	queues := fs.Int("queues", 0, fmt.Sprintf("number of queues, 1 to %d (required): not the kernel's %d, because\n"+
		"'open' hands the VMM every queue fd and the configuration map in one SCM_RIGHTS\n"+
		"message, which carries at most %d fds", api.MaxQueues, tap.MaxQueues, api.MaxFDs))
	owner := fs.Int("owner", 0, "owner `UID` (default: you); only root or an admin may name someone else")
	group := fs.Int("group", 0, "owner `GID` (default: your group)")
	vnet := fs.Int("vnet-hdr", 12, "virtio-net header length in bytes: 10, 12 or 20; a vrssd TAP always has one")
	flows := fs.Bool("flows", false, "steer with flow rules and RSS contexts (vrss flow, vrss rss context)")
	netns := fs.String("netns", "", netnsHelp+"; root or admins only")
	socket := fs.String("socket", "", socketHelp)
	pos, err := fs.parse(args, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return inputErrorf("want exactly one TAP name (run 'vrss tap create -h')")
	}
	if err := checkTapCreate(fs, *queues, *owner, *group, *vnet); err != nil {
		return err
	}
	a := api.CreateArgs{Name: pos[0], Queues: *queues, VnetHdrLen: *vnet, Flows: *flows, Netns: *netns}
	if fs.isSet("owner") {
		a.OwnerUID = owner
	}
	if fs.isSet("group") {
		a.OwnerGID = group
	}
	c, ctx, cancel, err := dial(*socket)
	if err != nil {
		return err
	}
	defer cancel()
	defer c.Close()
	t, err := c.Create(ctx, a)
	if err != nil {
		return daemonError(err)
	}
	fmt.Fprintf(stdout, "created %s: %d queues, owner %d:%d, steering attached", t.Name, t.Queues, t.OwnerUID, t.OwnerGID)
	if t.Netns != "" {
		fmt.Fprintf(stdout, ", in network namespace %s", t.Netns)
	}
	if t.Flows {
		fmt.Fprintf(stdout, ", flow rules and RSS contexts (%d KiB configuration map)", t.MapBytes>>10)
	}
	fmt.Fprintln(stdout)
	return nil
}

// maxID is the highest uid or gid a TAP's owner can be: the kernel's ids are
// 32 bits, and 4294967295 ((uid_t)-1) means "none".
const maxID = 1<<32 - 2

// checkTapCreate range-checks tap create's numbers before anything is sent.
func checkTapCreate(fs *flagSet, queues, owner, group, vnet int) error {
	if queues < 1 || queues > api.MaxQueues {
		return inputErrorf("--queues %d: want 1 to %d (vrssd hands a TAP's queue fds and its configuration map in one SCM_RIGHTS message of at most %d fds)", queues, api.MaxQueues, api.MaxFDs)
	}
	for _, id := range []struct {
		flag, what string
		v          int
	}{{"owner", "uid", owner}, {"group", "gid", group}} {
		if fs.isSet(id.flag) && (id.v < 0 || id.v > maxID) {
			return inputErrorf("--%s %d: want a %s from 0 to %d", id.flag, id.v, id.what, maxID)
		}
	}
	switch vnet {
	case 10, 12, 20:
	case 0:
		// The daemon reads a zero length as "the default", 12: refused
		// here rather than answered with a TAP that has one after all.
		return inputErrorf("--vnet-hdr 0: vrssd TAPs always carry a virtio-net header: want 10, 12 or 20")
	default:
		return inputErrorf("--vnet-hdr %d: want 10, 12 or 20 (virtio_net_hdr, virtio_net_hdr_v1 or virtio_net_hdr_v1_hash)", vnet)
	}
	return nil
}

func tapDelete(args []string, stdout io.Writer) error {
	fs := newFlagSet("tap delete", "NAME [--netns PATH]", "Detach steering from a TAP, delete the device and forget its state.")
	socket := fs.String("socket", "", socketHelp)
	netns := fs.String("netns", "", netnsHelp)
	pos, err := fs.parse(args, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return inputErrorf("want exactly one TAP name (run 'vrss tap delete -h')")
	}
	c, ctx, cancel, err := dial(*socket)
	if err != nil {
		return err
	}
	defer cancel()
	defer c.Close()
	if err := c.Netns(*netns).Delete(ctx, pos[0]); err != nil {
		return daemonError(err)
	}
	fmt.Fprintf(stdout, "deleted %s\n", pos[0])
	return nil
}

func tapList(args []string, stdout io.Writer) error {
	fs := newFlagSet("tap list", "[--json]", `
List the TAPs vrssd manages that you may see (all of them for root). FLOWS
says whether a TAP takes flow rules and RSS contexts (vrss tap create
--flows); --json has it as "flows", and the kernel memory each TAP's
configuration map locks as "map_bytes". A TAP in another network namespace
(vrss tap create --netns) is listed with it under the table, and in --json
as "netns".`)
	asJSON := fs.Bool("json", false, "print JSON")
	socket := fs.String("socket", "", socketHelp)
	return listFromDaemon(fs, args, stdout, asJSON, socket, (*client.Client).List, printTAPs)
}

// printTAPs prints taps as a table, what vrssd says about each under it.
func printTAPs(stdout io.Writer, taps []api.TAP) error {
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	// ENABLED is what the kernel reports: the queues other processes (a
	// VMM) hold enabled, which steering picks from.
	fmt.Fprintln(w, "NAME\tQUEUES\tENABLED\tOWNER\tSTEERING\tREATTACHED\tCONFIGS\tFLOWS")
	for _, t := range taps {
		steer := "attached"
		if !t.Steering {
			steer = "detached"
		}
		flows := "-"
		if t.Flows {
			flows = "yes"
		}
		fmt.Fprintf(w, "%s\t%d\t%d\t%d:%d\t%s\t%d\t%d\t%s\n", t.Name, t.Queues, t.AttachedQueues, t.OwnerUID, t.OwnerGID, steer, t.Reattached, t.Generation, flows)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	// What vrssd says is wrong with a TAP goes under the table, whole.
	for _, t := range taps {
		if t.Netns != "" {
			fmt.Fprintf(stdout, "%s: in network namespace %s\n", t.Name, t.Netns)
		}
		if t.Problem != "" {
			fmt.Fprintf(stdout, "%s: %s\n", t.Name, t.Problem)
		}
	}
	return nil
}
