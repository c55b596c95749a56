package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/agent/client"
	"github.com/vrss-dev/vrss/internal/frame"
	"github.com/vrss-dev/vrss/port"
	"github.com/vrss-dev/vrss/xsk/xsktest"
)

// Scenario X's names and numbers.
const (
	xPort = "vrsse2ex0"
	// xPair names the veth pair xsktest makes: xPair+"in" carries the
	// port, frames are sent into xPair+"out".
	xPair = "vrsse2ex"
	// xDevQueues are the pair's queues; the port takes xQueues of them
	// from xStartQueue.
	xDevQueues, xStartQueue, xQueues = 4, 1, 2
	// xRounds of xPerQueue allowed frames to each device queue, and on
	// the port's queues xBad frames of each denied kind.
	xRounds, xPerQueue, xBad = 4, 50, 5
	// capIPCLock and capNetRaw are CAP_IPC_LOCK's and CAP_NET_RAW's
	// numbers.
	capIPCLock = 14
	capNetRaw  = 13
)

// xPolicy is the port's policy, which an AF_XDP port applies to the
// frames arriving for the guest (inbound): frames to its MAC and its IPv4
// address reach it, anything else on the port's queues is dropped.
var xPolicy = port.Policy{
	MACs:    []port.MAC{{0x52, 0x54, 0, 0x12, 0x34, 0x56}}, // the guest NIC's (QEMU's default), frame.Build's destination
	IPv4:    []netip.Prefix{netip.MustParsePrefix("10.9.0.1/32")},
	Default: port.Allow,
}

// xFrame is a UDP frame to the guest's MAC and address dst, its source
// port tagging the device queue and sequence number.
func xFrame(queue, seq int, dst string) []byte {
	return frame.Build(frame.Spec{Src: netip.MustParseAddr("10.9.0.254"), Dst: netip.MustParseAddr(dst),
		Proto: frame.ProtoUDP, SrcPort: uint16(10000 + queue*1000 + seq), DstPort: 7, Payload: 32})
}

// AFXDPReport is scenario X's outcome.
type AFXDPReport struct {
	guestRun
	// MapPath says QEMU ran the map-path form (scenario XM): it made the
	// sockets and put them into the owner's pin of the XSKMAP.
	MapPath bool
	QEMU    *AFXDPQEMU
	// Commands are root's calls to vrssd, and Exec the VMM user's `vrss
	// qemu exec --afxdp` command.
	Commands []string
	Exec     string
	QEMUPid  int
	// QEMUUid, QEMUCapEff and QEMUCapAmb are QEMU's from /proc: uid
	// 4242 with CAP_IPC_LOCK alone, ambient.
	QEMUUid                int
	QEMUCapEff, QEMUCapAmb uint64
	// Sent are the allowed frames sent to each device queue; Denied the
	// frames sent to the port's queues that the policy must drop, by
	// reason.
	Sent   []int
	Denied map[string]int
	// Expected and Observed are the guest's rx_queue_N_packets deltas:
	// guest queue i is device queue xStartQueue+i.
	Expected, Observed []uint64
	// Counted are the deltas of the port's counters by reason (every one
	// that moved), XSKRedirected of the frames sent to the sockets,
	// OtherQueue of the other queues' frames, passed to the stack.
	Counted                   map[string]uint64
	XSKRedirected, OtherQueue uint64
	// Sockets describe QEMU's AF_XDP sockets at the end (the kernel's
	// statistics); GuestDiag is the guest's ethtool -l and
	// non-zero ethtool -S when its counters are not as expected.
	Sockets              []string
	GuestDiag            string
	Prepare, Build, Boot time.Duration
	Total                time.Duration
}

// OK reports whether the guest received exactly the allowed frames of its
// queues, each on its queue, the denied ones were counted by reason and
// none arrived, and QEMU ran as the owner with CAP_IPC_LOCK alone.
func (r *AFXDPReport) OK() bool {
	if len(r.Observed) == 0 || !slices.Equal(r.Expected, r.Observed) {
		return false
	}
	want := sum(r.Expected)
	for reason, n := range r.Denied {
		if r.Counted[reason] != uint64(n) {
			return false
		}
	}
	for reason, n := range r.Counted {
		if _, denied := r.Denied[reason]; !denied && (reason != port.DefaultAllow.String() || n != want) {
			return false
		}
	}
	other := uint64(0)
	for q, n := range r.Sent {
		if q < xStartQueue || q >= xStartQueue+xQueues {
			other += uint64(n)
		}
	}
	bit := uint64(1) << capIPCLock
	if r.MapPath {
		bit |= 1 << capNetRaw
	}
	return r.XSKRedirected == want && r.OtherQueue == other &&
		r.QEMUUid == r.UID && r.QEMUCapEff == bit && r.QEMUCapAmb == bit
}

func (r *AFXDPReport) String() string {
	var b strings.Builder
	if r.MapPath {
		b.WriteString("scenario XM: an AF_XDP port of vrssd under a real guest (QEMU's af-xdp netdev, map-path form)\n")
	} else {
		b.WriteString("scenario X: an AF_XDP port of vrssd under a real guest (QEMU's af-xdp netdev)\n")
	}
	if r.QEMU != nil {
		how := fmt.Sprintf("built in %v", r.QEMU.Took.Round(time.Second))
		if r.QEMU.Cached {
			how = "cached"
		}
		fmt.Fprintf(&b, "  QEMU %s with af-xdp (%s, key %s): %s\n", r.QEMU.Version, how, r.QEMU.Key, r.QEMU.Binary)
	}
	fmt.Fprintf(&b, "  port %s on %sin queues %d-%d of %d, guest %s, %d queue pairs, %d vCPUs\n",
		xPort, xPair, xStartQueue, xStartQueue+xQueues-1, xDevQueues, r.Release, r.Queues, r.CPUs)
	for _, c := range r.Commands {
		fmt.Fprintf(&b, "  %s\n", c)
	}
	if r.Exec != "" {
		fmt.Fprintf(&b, "  uid %d: %s (pid %d: uid %d, CapEff %#x, CapAmb %#x)\n", r.UID, r.Exec, r.QEMUPid, r.QEMUUid, r.QEMUCapEff, r.QEMUCapAmb)
	}
	if len(r.Sent) > 0 {
		fmt.Fprintf(&b, "  allowed frames sent per device queue %v; denied sent %v\n", r.Sent, r.Denied)
		fmt.Fprintf(&b, "  guest rx_queue_N_packets: expected %v, observed %v\n", r.Expected, r.Observed)
		fmt.Fprintf(&b, "  port counters: xsk_redirected %d, other_queue %d, by reason %v\n", r.XSKRedirected, r.OtherQueue, r.Counted)
	}
	for _, l := range r.Sockets {
		fmt.Fprintf(&b, "  QEMU's socket %s\n", l)
	}
	if r.GuestDiag != "" {
		fmt.Fprintf(&b, "  the guest's ethtool:\n    %s\n", strings.ReplaceAll(r.GuestDiag, "\n", "\n    "))
	}
	fmt.Fprintf(&b, "  prepare %v, QEMU build %v, boot %v, total %v: ", r.Prepare.Round(time.Millisecond), r.Build.Round(time.Millisecond),
		r.Boot.Round(time.Millisecond), r.Total.Round(time.Millisecond))
	if r.OK() {
		b.WriteString("PASS")
	} else {
		b.WriteString("FAIL")
	}
	return b.String()
}

// RunAFXDP runs scenario X: a vrssd AF_XDP port under a real guest. It
// builds (once; see BuildAFXDPQEMU) a QEMU with the af-xdp netdev. In a
// fresh network namespace a veth pair with 4 queues (xsktest's, its own
// redirect program detached; driver-mode XDP), a vrssd of the test's own
// creates an AF_XDP port on queues 1-2 of one end for the VMM's user and
// root sets its port policy; the user starts that QEMU with only
// CAP_IPC_LOCK, ambient, through `vrss qemu exec --afxdp` (the sockets
// inherited; -netdev af-xdp,inhibit=on,sock-fds=...,queues=2,
// start-queue=1,force-copy=on). Frames sent into the other end, to each of
// the 4 queues, allowed and denied: the guest's per-queue receive counters
// must grow by exactly the allowed frames of its two queues, device queue
// 1+i on guest queue i, and the port must count the denied ones by reason
// and the other queues' frames as passed to the stack.
func RunAFXDP(o Options) (*AFXDPReport, error) { return runAFXDPScenario(o, false) }

// RunAFXDPMapPath runs scenario XM: scenario X with QEMU 10.2 (sid's
// source, built as X's is) in the map-path form. uid 4242 starts it with
// CAP_IPC_LOCK and CAP_NET_RAW, ambient, through `vrss qemu exec --afxdp
// --map-path`: QEMU creates its own sockets and puts them into the
// owner's pin of the port's XSKMAP (-netdev af-xdp,inhibit=on,
// map-path=PIN,map-start-index=1,queues=2,start-queue=1,force-copy=on).
// It is judged as X is.
func RunAFXDPMapPath(o Options) (*AFXDPReport, error) { return runAFXDPScenario(o, true) }

func runAFXDPScenario(o Options, mapPath bool) (*AFXDPReport, error) {
	start := time.Now()
	if o.Queues == 0 {
		o.Queues = xQueues
	}
	o.defaults()
	rep := &AFXDPReport{guestRun: newGuestRun(o, xPair+"in"), MapPath: mapPath}
	if o.Queues != xQueues {
		return rep, fmt.Errorf("e2e: scenario X's guest has %d queue pairs, not %d", xQueues, o.Queues)
	}
	build := BuildAFXDPQEMU
	if rep.MapPath {
		build = BuildAFXDPMapPathQEMU
	}
	q, err := build(o.Cache, o.Log)
	rep.Build = time.Since(start)
	if err != nil {
		return rep, err
	}
	rep.QEMU = q
	name := "x"
	if mapPath {
		name = "xm"
	}
	err = prepared(o, name, func(a *Assets) error {
		a.QEMU, a.QEMUVersion = q.Binary, q.Version
		rep.Assets = a
		return nil
	}, func(w *workDir) error {
		rep.Prepare = time.Since(start) - rep.Build
		return runAFXDP(o, w, rep)
	})
	rep.Total = time.Since(start)
	return rep, err
}

func runAFXDP(o Options, w *workDir, rep *AFXDPReport) error {
	pair, err := xsktest.NewPair(xPair, xDevQueues, false)
	if err != nil {
		return err
	}
	defer pair.Close()
	if err := detachXDPProgram(pair); err != nil {
		return err
	}
	snd, err := pair.NewSender(xDevQueues)
	if err != nil {
		return err
	}
	defer snd.Close()

	vd, err := startVRSSD(w, o.VMMUID)
	if err != nil {
		return err
	}
	defer vd.stop()
	ctx := context.Background()
	c, err := client.Dial(ctx, w.socket)
	if err != nil {
		return vd.fail(err)
	}
	defer c.Close()
	uid, gid := o.VMMUID, o.VMMUID
	create := api.AFXDPCreateArgs{Name: xPort, Dev: xPair + "in", QueueStart: xStartQueue, Queues: xQueues, OwnerUID: &uid, OwnerGID: &gid}
	p, err := c.AFXDPCreate(ctx, create)
	if err != nil {
		return vd.fail(fmt.Errorf("e2e: X: AFXDPCreate: %w", err))
	}
	rep.Commands = append(rep.Commands, fmt.Sprintf("root: AFXDPCreate %s dev %s queues %d-%d owner %d -> attached %v", p.Name, p.Dev, p.QueueStart, p.QueueStart+p.Queues-1, p.OwnerUID, p.Attached))
	if _, err := c.PortSet(ctx, xPort, xPolicy); err != nil {
		return vd.fail(fmt.Errorf("e2e: X: PortSet: %w", err))
	}
	rep.Commands = append(rep.Commands, "root: PortSet "+xPort+" mac 52:54:00:12:34:56 ipv4 10.9.0.1/32 default allow")
	for _, l := range rep.Commands {
		fmt.Fprintf(o.Log, "e2e: X: %s\n", l)
	}

	execArgs := []string{"qemu", "exec", "--afxdp", xPort, "--force-copy", "--id", "n0", "--mac", GuestMAC, "--device-props", strings.Join(DeviceProps, ","), "--"}
	caps := []uintptr{capIPCLock}
	if rep.MapPath {
		// QEMU makes its own sockets.
		execArgs = append(execArgs[:4], append([]string{"--map-path"}, execArgs[4:]...)...)
		caps = append(caps, capNetRaw)
	}
	boot := BootOptions{
		QEMU: w.qemu,
		Machine: Machine{Kernel: w.kernel, Initrd: w.initrd, MemoryMB: o.MemoryMB, CPUs: o.CPUs, ExternalNet: true,
			// The build installs no firmware: the system QEMU's.
			Extra: dataDirArgs(rep.QEMU.DataDirs)},
		Wrapper:     append([]string{w.vrss, "qemu", "exec", "--socket", w.socket}, execArgs[2:]...),
		ConsoleLog:  o.Cache + "/console-x.log",
		Credential:  &syscall.Credential{Uid: uint32(o.VMMUID), Gid: uint32(o.VMMUID)},
		AmbientCaps: caps,
	}
	rep.Exec = strings.Join(append(execArgs, w.qemu, "…"), " ")
	capNames := "CAP_IPC_LOCK"
	if rep.MapPath {
		capNames += " and CAP_NET_RAW"
	}
	fmt.Fprintf(o.Log, "e2e: X: booting with %s as uid %d (%s ambient) through vrss %s\n", w.qemu, o.VMMUID, capNames, rep.Exec)
	bootStart := time.Now()
	g, err := Boot(boot)
	if err != nil {
		return vd.fail(err)
	}
	defer g.Close()
	rep.Boot = time.Since(bootStart)
	rep.Release = g.Release
	rep.QEMUPid = g.Pid()
	if err := rep.readQEMUStatus(); err != nil {
		return err
	}
	fmt.Fprintf(o.Log, "e2e: X: guest READY after %v; QEMU pid %d uid %d CapEff %#x CapAmb %#x\n",
		rep.Boot.Round(time.Millisecond), rep.QEMUPid, rep.QEMUUid, rep.QEMUCapEff, rep.QEMUCapAmb)

	guest0, err := g.RxQueuePackets(guestIface, xQueues)
	if err != nil {
		return err
	}
	stats0, err := c.PortStats(ctx, xPort)
	if err != nil {
		return vd.fail(err)
	}
	rep.Sent = make([]int, xDevQueues)
	rep.Denied = map[string]int{}
	rep.Expected = make([]uint64, xQueues)
	for round := range xRounds {
		for q := range xDevQueues {
			var fs [][]byte
			for i := range xPerQueue {
				fs = append(fs, xFrame(q, round*xPerQueue+i, "10.9.0.1"))
			}
			rep.Sent[q] += xPerQueue
			if q >= xStartQueue && q < xStartQueue+xQueues {
				rep.Expected[q-xStartQueue] += xPerQueue
				for i := range xBad {
					// To another MAC, and to an address not the guest's.
					toOther := xFrame(q, 900+round*xBad+i, "10.9.0.1")
					toOther[5] ^= 1
					fs = append(fs, toOther, xFrame(q, 950+round*xBad+i, "10.9.0.2"))
				}
				rep.Denied[port.DstMAC.String()] += xBad
				rep.Denied[port.DstIPv4.String()] += xBad
			}
			if err := snd.Send(q, fs); err != nil {
				return err
			}
		}
		// Let the guest take each round before the next: QEMU's rings
		// are finite and TCG is slow.
		if err := waitGuest(g, guest0, rep.Expected, &rep.Observed); err != nil {
			return err
		}
	}
	// Once more after a pause: nothing else arrives.
	time.Sleep(time.Second)
	if err := waitGuest(g, guest0, rep.Expected, &rep.Observed); err != nil {
		return err
	}
	stats, err := c.PortStats(ctx, xPort)
	if err != nil {
		return vd.fail(err)
	}
	rep.Counted = map[string]uint64{}
	for i := 1; i < port.NumReasons; i++ {
		if d := stats.Reasons[i] - stats0.Reasons[i]; d != 0 {
			rep.Counted[port.Reason(i).String()] = d
		}
	}
	rep.XSKRedirected = stats.XSKRedirected - stats0.XSKRedirected
	rep.OtherQueue = stats.OtherQueue - stats0.OtherQueue
	rep.Sockets = qemuSockets(rep.QEMUPid, qemuXSKFds(rep.QEMUPid, rep.MapPath))
	if !slices.Equal(rep.Expected, rep.Observed) {
		// What the guest saw, for the report.
		out, _, _ := g.Run("ethtool -l "+guestIface+"; ethtool -S "+guestIface+" | grep -v ': 0$'", time.Minute)
		rep.GuestDiag = strings.TrimSpace(out)
		host, _ := exec.Command("sh", "-c", "ethtool -S "+xPair+"in | grep -v ': 0$'").CombinedOutput()
		rep.GuestDiag += "\n(host) " + strings.TrimSpace(string(host))
	}
	return nil
}

// qemuXSKFds are the descriptors of QEMU's AF_XDP sockets: 3, 4, ... as
// inherited, or those it made itself in the map-path form (its
// descriptors that are AF_XDP sockets).
func qemuXSKFds(pid int, mapPath bool) []int {
	if !mapPath {
		return []int{3, 4}[:xQueues]
	}
	var fds []int
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil
	}
	defer unix.Close(pidfd)
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		fd, err := unix.PidfdGetfd(pidfd, n, 0)
		if err != nil {
			continue
		}
		if dom, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN); err == nil && dom == unix.AF_XDP {
			fds = append(fds, n)
		}
		unix.Close(fd)
	}
	slices.Sort(fds)
	return fds
}

// qemuSockets describes QEMU's AF_XDP sockets at fds: the kernel's
// XDP_STATISTICS, taken with pidfd_getfd (getsockname does not support
// AF_XDP, so the bound queue is not shown).
func qemuSockets(pid int, fds []int) []string {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return []string{fmt.Sprintf("pidfd_open %d: %v", pid, err)}
	}
	defer unix.Close(pidfd)
	var out []string
	for _, qfd := range fds {
		fd, err := unix.PidfdGetfd(pidfd, qfd, 0)
		if err != nil {
			out = append(out, fmt.Sprintf("fd %d: %v", qfd, err))
			continue
		}
		line := fmt.Sprintf("fd %d:", qfd)
		var st [6]uint64
		size := uint32(unsafe.Sizeof(st))
		if _, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_XDP, unix.XDP_STATISTICS,
			uintptr(unsafe.Pointer(&st[0])), uintptr(unsafe.Pointer(&size)), 0); e == 0 {
			line += fmt.Sprintf(" rx_dropped %d rx_invalid %d tx_invalid %d rx_ring_full %d fill_empty %d tx_empty %d", st[0], st[1], st[2], st[3], st[4], st[5])
		} else {
			line += fmt.Sprintf(" XDP_STATISTICS: %v", e)
		}
		unix.Close(fd)
		out = append(out, line)
	}
	return out
}

// waitGuest reads the guest's receive counters until they reach want or
// stop moving for a while, leaving their deltas from base in got.
func waitGuest(g *Guest, base, want []uint64, got *[]uint64) error {
	last, since := uint64(0), time.Now()
	for {
		cur, err := g.RxQueuePackets(guestIface, len(base))
		if err != nil {
			return err
		}
		*got = sub(cur, base)
		total := sum(*got)
		if total >= sum(want) || time.Since(since) > 10*time.Second {
			return nil
		}
		if total != last {
			last, since = total, time.Now()
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// detachXDPProgram takes xsktest's redirect program off the pair's In:
// vrssd attaches its own there.
func detachXDPProgram(p *xsktest.Pair) error {
	info, err := p.Redirect.Prog.Info()
	if err != nil {
		return err
	}
	id, _ := info.ID()
	it := new(link.Iterator)
	defer it.Close()
	for it.Next() {
		l := it.Take()
		li, err := l.Info()
		if err == nil && li.Program == id {
			err = l.Detach()
			l.Close()
			return err
		}
		l.Close()
	}
	return fmt.Errorf("e2e: X: no link of xsktest's program %d on %s: %v", id, p.In.Attrs().Name, it.Err())
}

// readQEMUStatus reads QEMU's uid and capability sets from /proc.
func (r *AFXDPReport) readQEMUStatus() error {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", r.QEMUPid))
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		switch k {
		case "Uid":
			r.QEMUUid, err = strconv.Atoi(f[1]) // effective
		case "CapEff":
			r.QEMUCapEff, err = strconv.ParseUint(f[0], 16, 64)
		case "CapAmb":
			r.QEMUCapAmb, err = strconv.ParseUint(f[0], 16, 64)
		}
		if err != nil {
			return fmt.Errorf("e2e: X: QEMU's %s: %w", k, err)
		}
	}
	return nil
}

// dataDirArgs are -L options for dirs.
func dataDirArgs(dirs []string) []string {
	var a []string
	for _, d := range dirs {
		a = append(a, "-L", d)
	}
	return a
}
