package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/agent/client"
	"github.com/vrss-dev/vrss/qemu"
)

// capIPCLock and capNetRaw are CAP_IPC_LOCK's and CAP_NET_RAW's bits in
// the capability sets.
const (
	capIPCLock = 14
	capNetRaw  = 13
)

// memlock is what decides whether QEMU may lock its AF_XDP UMEM: the soft
// RLIMIT_MEMLOCK QEMU inherits, and the capabilities it keeps across exec.
type memlock struct {
	Soft           uint64 // bytes; unix.RLIM_INFINITY for none
	EUID           int
	CapEff, CapAmb uint64 // /proc/self/status CapEff and CapAmb
}

// ipcLock says whether QEMU will have CAP_IPC_LOCK: as an ambient
// capability of a process that execs it, or as root's effective one (root
// keeps its capabilities across exec).
func (m memlock) ipcLock() bool { return m.keeps(capIPCLock) }

// keeps says whether QEMU will have capability c after exec: ambient, or
// effective for root.
func (m memlock) keeps(c uint) bool {
	bit := uint64(1) << c
	return m.CapAmb&bit != 0 || (m.EUID == 0 && m.CapEff&bit != 0)
}

// check refuses, in one line, what would make QEMU fail to register its
// UMEM on the queues of AF_XDP port name: too low a RLIMIT_MEMLOCK without
// CAP_IPC_LOCK.
func (m memlock) check(name string, queues int) error {
	need := uint64(queues) * qemu.AFXDPUMEMBytes
	if m.ipcLock() || m.Soft == unix.RLIM_INFINITY || m.Soft >= need {
		return nil
	}
	mib := need >> 20
	return fmt.Errorf("QEMU needs %d MiB of locked memory for the %d queues of AF_XDP port %s (%d MiB of UMEM each) but RLIMIT_MEMLOCK is %s and it would not have CAP_IPC_LOCK: raise the limit (systemd LimitMEMLOCK=%dM, or ulimit -l %d) or grant CAP_IPC_LOCK as an ambient capability (systemd AmbientCapabilities=CAP_IPC_LOCK)",
		mib, queues, name, qemu.AFXDPUMEMBytes>>20, kib(m.Soft), mib, need>>10)
}

func kib(n uint64) string {
	if n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d KiB", n>>10)
}

// currentMemlock reads this process's limit and capabilities, which QEMU
// inherits through exec.
func currentMemlock() (memlock, error) {
	var r unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &r); err != nil {
		return memlock{}, fmt.Errorf("RLIMIT_MEMLOCK: %w", err)
	}
	m := memlock{Soft: r.Cur, EUID: os.Geteuid()}
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return m, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		var dst *uint64
		switch k {
		case "CapEff":
			dst = &m.CapEff
		case "CapAmb":
			dst = &m.CapAmb
		default:
			continue
		}
		if *dst, err = strconv.ParseUint(strings.TrimSpace(v), 16, 64); err != nil {
			return m, fmt.Errorf("/proc/self/status %s: %w", k, err)
		}
	}
	return m, nil
}

// afxdpOptions are the af-xdp arguments for port p; with --map-path, for
// the map-path form, which needs the path vrssd pinned the map at.
func (f qemuNetFlags) afxdpOptions(p api.AFXDPPort) (qemu.AFXDPOptions, error) {
	n := f.options(p.Queues)
	o := qemu.AFXDPOptions{ID: n.ID, Ifname: p.Dev, StartQueue: p.QueueStart, Queues: p.Queues,
		ForceCopy: *f.forceCopy, MAC: n.MAC, DeviceProps: n.DeviceProps}
	if *f.mapPath {
		if p.MapPath == "" {
			return o, fmt.Errorf("vrssd has no pin of AF_XDP port %s's XSKMAP for its owner (its log says why), so QEMU's map-path form cannot be used: leave out --map-path (sock-fds)", p.Name)
		}
		o.MapPath = p.MapPath
	}
	return o, nil
}

// mapPathCheck refuses, in one line, what QEMU would lack for the
// map-path form on port p: CAP_NET_RAW to create its AF_XDP sockets, the
// locked memory for their UMEM, and access to the pinned XSKMAP (openErr
// is what opening it as this process, whose uid QEMU keeps, gave).
func (m memlock) mapPathCheck(p api.AFXDPPort, openErr error) error {
	var lacks []string
	if !m.keeps(capNetRaw) {
		lacks = append(lacks, "CAP_NET_RAW to create its AF_XDP sockets (grant it as an ambient capability: systemd AmbientCapabilities=CAP_NET_RAW)")
	}
	if err := m.check(p.Name, p.Queues); err != nil {
		need := uint64(p.Queues) * qemu.AFXDPUMEMBytes
		lacks = append(lacks, fmt.Sprintf("%d MiB of locked memory for their UMEM, or CAP_IPC_LOCK (RLIMIT_MEMLOCK is %s: systemd LimitMEMLOCK=%dM or AmbientCapabilities=CAP_IPC_LOCK)", need>>20, kib(m.Soft), need>>20))
	}
	if openErr != nil {
		lacks = append(lacks, fmt.Sprintf("access to the XSKMAP pinned at %s (%v; only the port's owner, uid %d, may open it: run QEMU as that user)", p.MapPath, openErr, p.OwnerUID))
	}
	if len(lacks) == 0 {
		return nil
	}
	return fmt.Errorf("QEMU's map-path form on AF_XDP port %s would lack %s", p.Name, strings.Join(lacks, "; and "))
}

// openPinned opens a pinned BPF object read-write and closes it again,
// as QEMU's bpf_obj_get on map-path does: it says whether this uid may.
func openPinned(path string) error {
	p, err := unix.BytePtrFromString(path)
	if err != nil {
		return err
	}
	attr := struct {
		pathname uint64
		fd       uint32
		flags    uint32
		pathFD   int32
		_        uint32
	}{pathname: uint64(uintptr(unsafe.Pointer(p)))}
	fd, _, e := unix.Syscall(unix.SYS_BPF, unix.BPF_OBJ_GET, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	runtime.KeepAlive(p)
	if e != 0 {
		return fmt.Errorf("bpf(BPF_OBJ_GET): %w", e)
	}
	unix.Close(int(fd))
	return nil
}

// qemuExecAFXDPMapPath checks what QEMU needs for the map-path form on
// port p and replaces this process with it; the port is not opened.
func qemuExecAFXDPMapPath(nf qemuNetFlags, pos []string, limits memlock, p api.AFXDPPort) error {
	o, err := nf.afxdpOptions(p)
	if err != nil {
		return err
	}
	if err := limits.mapPathCheck(p, openPinned(p.MapPath)); err != nil {
		return err
	}
	return qemu.ExecAFXDPMapPath(pos[0], pos[1:], o)
}

// qemuExecAFXDP checks QEMU's memlock allowance for the port, opens it
// (new sockets: whoever held the old ones stops receiving) and replaces
// this process with QEMU, the sockets inherited at 3, 4, ...
func qemuExecAFXDP(nf qemuNetFlags, pos []string, limits memlock) error {
	c, ctx, cancel, err := dial(*nf.socket)
	if err != nil {
		return err
	}
	defer cancel()
	defer c.Close()
	n := c.Netns(*nf.netns)
	p, err := n.AFXDPShow(ctx, *nf.afxdp)
	if err != nil {
		return daemonError(err)
	}
	if *nf.mapPath {
		return qemuExecAFXDPMapPath(nf, pos, limits, p)
	}
	if err := limits.check(p.Name, p.Queues); err != nil {
		return err
	}
	res, socks, err := n.AFXDPOpen(ctx, *nf.afxdp)
	if err != nil {
		return daemonError(err)
	}
	o, err := nf.afxdpOptions(res.Port)
	if err != nil {
		return err
	}
	return qemu.ExecAFXDP(pos[0], pos[1:], o, socks)
}

// qemuArgsAFXDP prints the af-xdp arguments for the port, its sockets at
// first, first+1, ...
func qemuArgsAFXDP(ctx context.Context, n *client.Netns, nf qemuNetFlags, first int) ([]string, error) {
	p, err := n.AFXDPShow(ctx, *nf.afxdp)
	if err != nil {
		return nil, daemonError(err)
	}
	if last := first + p.Queues - 1; last > math.MaxInt32 {
		return nil, inputErrorf("--first-fd %d: the last of the %d descriptors would be %d, beyond %d", first, p.Queues, last, math.MaxInt32)
	}
	o, err := nf.afxdpOptions(p)
	if err != nil {
		return nil, err
	}
	o.FirstFD = first
	a, err := qemu.AFXDPArgs(o)
	return a, asInput(err)
}
