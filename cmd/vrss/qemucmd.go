package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/vrss-dev/vrss/qemu"
)

const qemuUsage = "qemu (exec --tap NAME -- QEMU [ARGS...] | args --tap NAME [--queues N])"

func runQEMU(args []string, stdout, stderr io.Writer) int {
	return report(stderr, "qemu", subcommand("qemu", map[string]func([]string, io.Writer) error{
		"exec": qemuExec,
		"args": qemuArgs,
	}, qemuUsage, args, stdout))
}

// qemuNetFlags are the flags exec and args share.
type qemuNetFlags struct {
	tap, id, mac, socket *string
	props                *string
}

func addQEMUNetFlags(fs *flagSet) qemuNetFlags {
	return qemuNetFlags{
		tap:    fs.String("tap", "", "the vrss-steered TAP `NAME` (required)"),
		id:     fs.String("id", "vrss0", "QEMU netdev `ID`"),
		mac:    fs.String("mac", "", "guest MAC `ADDRESS` for the device (default: QEMU's)"),
		props:  fs.String("device-props", "", "extra virtio-net device properties, a comma-separated `LIST` (e.g. host_mtu=9000)"),
		socket: fs.String("socket", "", socketHelp),
	}
}

func (f qemuNetFlags) options(queues int) qemu.NetOptions {
	o := qemu.NetOptions{ID: *f.id, Queues: queues, MAC: *f.mac}
	if *f.props != "" {
		o.DeviceProps = strings.Split(*f.props, ",")
	}
	return o
}

func qemuExec(args []string, stdout io.Writer) error {
	fs := newFlagSet("qemu exec", "--tap NAME -- QEMU [ARGS...]", `
Start QEMU on a vrss-steered TAP without any privilege: as the TAP's owner,
obtain its queue fds from vrssd and replace this process with QEMU, the
queues inherited at fds 3, 4, ... and these arguments appended:

    -netdev tap,id=vrss0,fds=3:4:...,vhost=off
    -device virtio-net-pci,netdev=vrss0,mq=on,vectors=2*queues+2

vrss's program has already put every packet on the queue the TAP's RSS
configuration names, and QEMU delivers TAP queue i to the guest's receive
queue i, so any QEMU version works. The guest should enable all queues
(Linux: ethtool -L eth0 combined N; the driver enables min(queues, CPUs)).
Note: QEMU 7.2 (Debian bookworm's) detaches any steering program from the
TAP whenever the guest changes its queue count or resets the device; QEMU
10.0 does not. With 7.2, run 'vrss tap attach NAME' after the guest has set
its queues.`)
	nf := addQEMUNetFlags(fs)
	pos, err := fs.parse(args, stdout)
	if err != nil {
		return err
	}
	if *nf.tap == "" || len(pos) == 0 {
		return inputErrorf("want --tap NAME and the QEMU command after -- (run 'vrss qemu exec -h')")
	}
	c, ctx, cancel, err := dial(*nf.socket)
	if err != nil {
		return err
	}
	defer cancel()
	h, err := c.Open(ctx, *nf.tap)
	c.Close()
	if err != nil {
		return daemonError(err)
	}
	// QEMU needs only the queues; the configuration stays with the daemon.
	h.Publisher.Close()
	h.ConfigMap.Close()
	opts := nf.options(len(h.Queues))
	if _, err := qemu.Args(opts); err != nil {
		return asInput(err)
	}
	return qemu.Exec(pos[0], pos[1:], opts, h.Queues)
}

func qemuArgs(args []string, stdout io.Writer) error {
	fs := newFlagSet("qemu args", "--tap NAME [--first-fd N]", `
Print the QEMU arguments for a vrss-steered TAP, for a management layer that
builds its own command line and passes the TAP's queue fds itself (for
example after 'vrss qemu exec' is not an option): the queues must be
inherited at --first-fd, --first-fd+1, ...`)
	nf := addQEMUNetFlags(fs)
	first := fs.Int("first-fd", qemu.FirstFD, "descriptor number of queue 0 in QEMU")
	pos, err := fs.parse(args, stdout)
	if err != nil {
		return err
	}
	if err := noArgs(pos); err != nil {
		return err
	}
	if *nf.tap == "" {
		return inputErrorf("want --tap NAME (run 'vrss qemu args -h')")
	}
	c, ctx, cancel, err := dial(*nf.socket)
	if err != nil {
		return err
	}
	defer cancel()
	defer c.Close()
	queues, err := tapQueues(ctx, c, *nf.tap)
	if err != nil {
		return err
	}
	opts := nf.options(queues)
	opts.FirstFD = *first
	a, err := qemu.Args(opts)
	if err != nil {
		return asInput(err)
	}
	fmt.Fprintln(stdout, strings.Join(a, " "))
	return nil
}
