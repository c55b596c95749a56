package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/vrss-dev/vrss/agent/client"
	"github.com/vrss-dev/vrss/qemu"
)

const qemuUsage = "qemu (exec (--tap NAME [--ebpf-rss] | --afxdp NAME [--map-path]) -- QEMU [ARGS...] | args (--tap NAME [--ebpf-rss] | --afxdp NAME [--map-path]) [--first-fd N])"

func runQEMU(args []string, stdout, stderr io.Writer) int {
	return report(stderr, "qemu", subcommand("qemu", map[string]func([]string, io.Writer) error{
		"exec": qemuExec,
		"args": qemuArgs,
	}, qemuUsage, args, stdout))
}

// qemuNetFlags are the flags exec and args share.
type qemuNetFlags struct {
	tap, afxdp, id, mac, socket, netns *string
	props                              *string
	ebpfRSS, forceCopy, mapPath        *bool
}

func addQEMUNetFlags(fs *flagSet) qemuNetFlags {
	return qemuNetFlags{
		tap:       fs.String("tap", "", "the vrss-steered TAP `NAME` (this or --afxdp)"),
		afxdp:     fs.String("afxdp", "", "the vrssd AF_XDP port `NAME` (this or --tap): QEMU's af-xdp backend on its sockets"),
		forceCopy: fs.Bool("force-copy", true, "with --afxdp, bind the sockets in copy mode (force-copy=on); false lets QEMU try zero-copy first"),
		mapPath:   fs.Bool("map-path", false, "with --afxdp, QEMU's map-path form (QEMU >= 10.1): QEMU creates the sockets itself, which needs CAP_NET_RAW,\nand puts them into the port's XSKMAP, which vrssd pins for the port's owner (map-path=, map-start-index=)"),
		netns:     fs.String("netns", "", "the network namespace the TAP or AF_XDP port lives in, by `PATH`; default vrssd's own.\nWith --afxdp, QEMU must run in that namespace: it finds the device by name"),
		id:        fs.String("id", "vrss0", "QEMU netdev `ID`"),
		mac:       fs.String("mac", "", "guest MAC `ADDRESS` for the device (default: QEMU's)"),
		props:     fs.String("device-props", "", "extra virtio-net device properties, a comma-separated `LIST` of name=value (e.g. host_mtu=9000)"),
		ebpfRSS:   fs.Bool("ebpf-rss", false, "offer the guest RSS (rss=on) steered by QEMU's own eBPF program, which vrssd loads for it (ebpf-rss-fds, QEMU >= 9.0)"),
		socket:    fs.String("socket", "", socketHelp),
	}
}

func (f qemuNetFlags) options(queues int) qemu.NetOptions {
	o := qemu.NetOptions{ID: *f.id, Queues: queues, MAC: *f.mac, EBPFRSS: *f.ebpfRSS}
	if *f.props != "" {
		o.DeviceProps = strings.Split(*f.props, ",")
	}
	return o
}

func qemuExec(args []string, stdout io.Writer) error {
	fs := newFlagSet("qemu exec", "(--tap NAME [--ebpf-rss [--qemu-ebpf-binary PATH]] | --afxdp NAME [--map-path]) -- QEMU [ARGS...]", `
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
its queues.

With --ebpf-rss the guest is offered RSS and sets it itself (ethtool -X,
ethtool -N rx-flow-hash), and QEMU (9.0 or later) steers by its own eBPF
program: vrssd obtains the program from the QEMU binary (QMP request-ebpf;
the binary must be in vrssd's qemu_binaries allowlist), loads it, and hands
over the program and its three maps, which QEMU inherits right after the
queues (fds 3+queues ... 6+queues) and takes with rss=on and ebpf-rss-fds.
vrssd detaches vrss's own program from the TAP; QEMU attaches its program
when the guest enables RSS. The device is then given in QEMU's JSON syntax,
the only one that takes ebpf-rss-fds.

With --afxdp NAME, QEMU (8.2 or later, built with af-xdp) runs its af-xdp
backend on a vrssd AF_XDP port ('vrss afxdp create'): as the port's owner,
obtain its unbound sockets from vrssd, one per queue and already in the
XSKMAP of the program vrssd attached, and exec QEMU with them at fds 3,
4, ... and these arguments appended:

    -netdev af-xdp,id=vrss0,ifname=DEV,inhibit=on,sock-fds=3:4:...,
            queues=K,start-queue=N,force-copy=on
    -device virtio-net-pci,netdev=vrss0,mq=on,vectors=2*K+2

QEMU loads no program (inhibit=on) and needs no capability, but it locks
32 MiB of UMEM per queue: before opening the port, vrss checks that QEMU
will have RLIMIT_MEMLOCK of at least K*32 MiB, or CAP_IPC_LOCK (ambient,
or as root), and refuses otherwise (systemd LimitMEMLOCK= or
AmbientCapabilities=CAP_IPC_LOCK; ulimit -l). Opening makes new sockets:
a QEMU holding the port's old ones stops receiving. QEMU finds DEV by
name, so it must run in the port's network namespace (--netns).

With --afxdp NAME --map-path, QEMU (10.1 or later, built with af-xdp) makes
the sockets itself and puts socket i into the port's XSKMAP, which vrssd
pins for the port's owner alone (mode 0600; 'vrss afxdp show --json'
gives its path as map_path), at index N+i; nothing is inherited and the
port is not opened:

    -netdev af-xdp,id=vrss0,ifname=DEV,inhibit=on,map-path=PATH,
            map-start-index=N,queues=K,start-queue=N,force-copy=on

QEMU then needs CAP_NET_RAW (it creates AF_XDP sockets; systemd
AmbientCapabilities=CAP_NET_RAW), the locked memory above, and to open the
pinned map, which only the port's owner may: vrss checks all three before
it starts QEMU and names in one line what QEMU would lack. Putting its
sockets in the map cuts off whoever held the port's sockets before; when
QEMU exits it removes them, and until the port is opened again the port's
allowed frames go to the host's stack.`)
	nf := addQEMUNetFlags(fs)
	ebpfBin := fs.String("qemu-ebpf-binary", "", "with --ebpf-rss, the QEMU `PATH` vrssd asks for the program (default: the QEMU being started); it must be the same build")
	pos, err := fs.parse(args, stdout)
	if err != nil {
		return err
	}
	if err := nf.oneDevice("exec"); err != nil {
		return err
	}
	if len(pos) == 0 {
		return inputErrorf("want the QEMU command after -- (run 'vrss qemu exec -h')")
	}
	if *ebpfBin != "" && !*nf.ebpfRSS {
		return inputErrorf("--qemu-ebpf-binary needs --ebpf-rss")
	}
	// Check the arguments before anything is loaded or detached.
	if _, err := qemu.Args(nf.options(1)); err != nil {
		return asInput(err)
	}
	if *nf.afxdp != "" {
		limits, err := currentMemlock()
		if err != nil {
			return err
		}
		return qemuExecAFXDP(nf, pos, limits)
	}
	qemuBin := *ebpfBin
	if *nf.ebpfRSS && qemuBin == "" {
		// vrssd wants the binary's absolute path, and checks it against
		// its allowlist without resolving it: the client library
		// resolves links, as this user.
		p, err := exec.LookPath(pos[0])
		if err == nil {
			p, err = filepath.Abs(p)
		}
		if err != nil {
			return fmt.Errorf("QEMU %s: %w", pos[0], err)
		}
		qemuBin = p
	}
	c, ctx, cancel, err := dial(*nf.socket)
	if err != nil {
		return err
	}
	defer cancel()
	defer c.Close()
	h, err := c.Netns(*nf.netns).Open(ctx, *nf.tap)
	if err != nil {
		return daemonError(err)
	}
	// QEMU needs only the queues; the configuration stays with the daemon.
	h.Publisher.Close()
	h.ConfigMap.Close()
	files := h.Queues
	if *nf.ebpfRSS {
		res, ebpf, err := c.QEMUEBPF(ctx, *nf.tap, qemuBin)
		if err != nil {
			return daemonError(err)
		}
		files = append(files, ebpf...)
		how := "loaded"
		if res.Cached {
			how = "loaded from vrssd's cache"
		}
		detached := ""
		if res.SteeringDetached {
			detached = "; vrss's own program detached from the TAP"
		}
		fmt.Fprintf(os.Stderr, "vrss: QEMU %s's eBPF RSS program (%s, %s) %s by vrssd: program id %d, maps %s (ids %s)%s\n",
			res.QEMUVersion, res.QEMU, shortDigest(res.Digest), how, res.ProgramID, strings.Join(res.Maps, ", "), joinIDs(res.MapIDs), detached)
	}
	opts := nf.options(len(h.Queues))
	return qemu.Exec(pos[0], pos[1:], opts, files)
}

func shortDigest(d string) string {
	if len(d) > 19 {
		return d[:19] + "…"
	}
	return d
}

func joinIDs(ids []uint32) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = fmt.Sprint(id)
	}
	return strings.Join(s, " ")
}

func qemuArgs(args []string, stdout io.Writer) error {
	fs := newFlagSet("qemu args", "(--tap NAME [--ebpf-rss] | --afxdp NAME [--map-path]) [--first-fd N]", `
Print the QEMU arguments for a vrss-steered TAP, for a management layer that
builds its own command line and passes the TAP's queue fds itself (for
example after 'vrss qemu exec' is not an option): the queues must be
inherited at --first-fd, --first-fd+1, ... With --ebpf-rss, QEMU's eBPF
RSS program and its configuration, key and indirection table maps (in that
order; the agent/client QEMUEBPF call gets them from vrssd) must follow at
the next four descriptors. With --afxdp, the arguments are QEMU's af-xdp
backend's for a vrssd AF_XDP port: its sockets (agent/client AFXDPOpen,
one per queue in queue order) must be inherited at --first-fd, ... With
--afxdp NAME --map-path, they are for QEMU 10.1's map-path form: no
descriptors (QEMU, with CAP_NET_RAW, makes the sockets and puts them into
the XSKMAP vrssd pinned for the port's owner; see 'vrss qemu exec -h').`)
	nf := addQEMUNetFlags(fs)
	first := fs.Int("first-fd", qemu.FirstFD, "descriptor number of queue 0 in QEMU, 3 or more")
	pos, err := fs.parse(args, stdout)
	if err != nil {
		return err
	}
	if err := noArgs(pos); err != nil {
		return err
	}
	if err := nf.oneDevice("args"); err != nil {
		return err
	}
	// 0 would mean the default to package qemu, and 0 to 2 are QEMU's
	// standard input, output and error; descriptors are C ints.
	if *first < 3 || *first > math.MaxInt32 {
		return inputErrorf("--first-fd %d: want a descriptor from 3 to %d (0, 1 and 2 are standard input, output and error)", *first, math.MaxInt32)
	}
	c, ctx, cancel, err := dial(*nf.socket)
	if err != nil {
		return err
	}
	defer cancel()
	defer c.Close()
	a, err := qemuArgsFor(ctx, c, nf, *first)
	if err != nil {
		return err
	}
	for i := range a {
		a[i] = shellQuote(a[i])
	}
	fmt.Fprintln(stdout, strings.Join(a, " "))
	return nil
}

// qemuArgsFor is the arguments for the TAP or AF_XDP port nf names, its
// descriptors from first on.
func qemuArgsFor(ctx context.Context, c *client.Client, nf qemuNetFlags, first int) ([]string, error) {
	if *nf.afxdp != "" {
		return qemuArgsAFXDP(ctx, c.Netns(*nf.netns), nf, first)
	}
	queues, err := tapQueues(ctx, c, *nf.netns, *nf.tap)
	if err != nil {
		return nil, err
	}
	opts := nf.options(queues)
	opts.FirstFD = first
	if last := first + opts.Files() - 1; last > math.MaxInt32 {
		return nil, inputErrorf("--first-fd %d: the last of the %d descriptors would be %d, beyond %d", first, opts.Files(), last, math.MaxInt32)
	}
	a, err := qemu.Args(opts)
	return a, asInput(err)
}

// oneDevice checks that the flags name a TAP or an AF_XDP port, not both,
// and no TAP-only option with a port.
func (f qemuNetFlags) oneDevice(verb string) error {
	switch {
	case (*f.tap == "") == (*f.afxdp == ""):
		return inputErrorf("want --tap NAME or --afxdp NAME, one of them (run 'vrss qemu %s -h')", verb)
	case *f.afxdp != "" && *f.ebpfRSS:
		return inputErrorf("--ebpf-rss is for a TAP: QEMU's eBPF RSS program steers TAP queues, not AF_XDP sockets")
	case *f.mapPath && *f.afxdp == "":
		return inputErrorf("--map-path is for an AF_XDP port (--afxdp NAME): it names the port's XSKMAP")
	}
	return nil
}

// shellQuote quotes s for a POSIX shell if it needs it: the JSON form of
// -device (--ebpf-rss) has quotes and brackets.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789,._:=/+-@%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
