package kernel

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	ebpflink "github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/internal/fd"
	"github.com/vrss-dev/vrss/steering"
	"github.com/vrss-dev/vrss/tap"
)

// Host is the running kernel: vrss's steering program (package steering),
// TAP devices (package tap) and netlink, in the calling thread's network
// namespace. It needs the privileges those do.
type Host struct{}

var (
	_ Programs = Host{}
	_ TAPs     = Host{}
)

// Pin file names inside a TAP's pin directory: the program and its maps,
// and for the flow build its filter, its flow counters and the BPF link
// that attaches the filter at the TAP's tc egress. (The flow build's
// scratch map needs no pin: its programs hold it.)
const (
	pinProg      = "prog"
	pinConfig    = "config"
	pinStats     = "stats"
	pinFilter    = "filter"
	pinFlowStats = "flowstats"
	// pinJump keeps the flow build's program array, and the rule path's
	// program in it, filled: the kernel empties a program array when its
	// last fd or pin goes (steering.Program.JumpMap).
	pinJump = "jump"
	// PinLink is the file name of the filter's link in a TAP's pin
	// directory.
	PinLink = "link"
)

// pinNames are every name Pin and AttachFilter make.
var pinNames = []string{pinProg, pinConfig, pinStats, pinFilter, pinFlowStats, pinJump, PinLink}

// PinRoot makes dir a directory on a bpf filesystem, mounting one if
// needed (see ensureBPFFS).
func (Host) PinRoot(dir string) (string, error) { return ensureBPFFS(dir) }

// hostProgram is a steering.Program, and the link of its filter once
// attached or loaded from its pin.
type hostProgram struct {
	p    *steering.Program
	link ebpflink.Link
}

// Load loads the production steering program, or its flow build.
func (Host) Load(flows bool) (Program, error) {
	v := steering.Production
	if flows {
		v = steering.Flows
	}
	p, err := steering.LoadVariant(v)
	if err != nil {
		return nil, err
	}
	return &hostProgram{p: p}, nil
}

func (h *hostProgram) Publisher(queues int) (Publisher, error) {
	pub, err := h.p.Publisher(queues)
	if err != nil {
		return nil, err
	}
	return pub, nil
}

func (h *hostProgram) Stats() (steering.Stats, error) { return h.p.Stats() }
func (h *hostProgram) FD() int                        { return h.p.Prog.FD() }
func (h *hostProgram) DupConfigMap() (*fd.FD, error)  { return fd.Dup(h.p.ConfigMap.FD()) }
func (h *hostProgram) Flows() bool                    { return h.p.FlowStatsMap != nil }

func (h *hostProgram) FlowStats(pub Publisher) (steering.FlowStats, error) {
	if h.p.FlowStatsMap == nil {
		return steering.FlowStats{}, steering.ErrNoFlows
	}
	if sp, ok := pub.(*steering.Publisher); ok {
		return steering.ReadFlowStats(h.p.FlowStatsMap, sp)
	}
	return h.p.FlowStats()
}

// AttachFilter keeps the link pinned at pin if it attaches this filter
// at ifindex's tc egress, and attaches and pins a new one otherwise.
func (h *hostProgram) AttachFilter(ifindex int, pin string) (bool, error) {
	if h.p.Filter == nil {
		return false, steering.ErrNoFlows
	}
	if h.link == nil {
		l, err := ebpflink.LoadPinnedLink(pin, nil)
		switch {
		case err == nil:
			h.link = l
		case errors.Is(err, os.ErrNotExist):
		default:
			// Not a link (or not one this process may use): vrssd's
			// own name in vrssd's own directory, so it goes.
			if err := os.Remove(pin); err != nil && !errors.Is(err, os.ErrNotExist) {
				return false, fmt.Errorf("remove %s, which is no link: %w", pin, err)
			}
		}
	}
	if h.link != nil {
		if h.linkAt(ifindex) {
			// Pinned again if its pin was removed meanwhile.
			if _, err := os.Lstat(pin); errors.Is(err, os.ErrNotExist) {
				h.link.Unpin()
				if err := h.link.Pin(pin); err != nil {
					return false, fmt.Errorf("pin %s: %w", PinLink, err)
				}
			}
			return false, nil
		}
		// Another filter's, or detached (its device went, or bpftool
		// detached it): replaced.
		h.link.Close()
		h.link = nil
		if err := os.Remove(pin); err != nil && !errors.Is(err, os.ErrNotExist) {
			return false, err
		}
	}
	l, err := h.p.AttachFilter(ifindex)
	if err != nil {
		return false, err
	}
	if err := l.Pin(pin); err != nil {
		l.Close()
		return false, fmt.Errorf("pin %s: %w", PinLink, err)
	}
	h.link = l
	return true, nil
}

// linkAt reports whether h.link attaches h's filter at ifindex's tc
// egress.
func (h *hostProgram) linkAt(ifindex int) bool {
	info, err := h.link.Info()
	if err != nil {
		return false
	}
	tcx := info.TCX()
	if tcx == nil || int(tcx.Ifindex) != ifindex || ebpf.AttachType(tcx.AttachType) != ebpf.AttachTCXEgress {
		return false
	}
	pi, err := h.p.Filter.Info()
	if err != nil {
		return false
	}
	id, ok := pi.ID()
	return ok && id == info.Program
}

// DetachFilter removes the link's pin and closes it: the filter is
// detached.
func (h *hostProgram) DetachFilter(pin string) error {
	err := os.Remove(pin)
	if errors.Is(err, os.ErrNotExist) {
		err = nil
	}
	if h.link != nil {
		h.link.Close()
		h.link = nil
	}
	return err
}

func (h *hostProgram) Close() error {
	if h.link != nil {
		h.link.Close()
		h.link = nil
	}
	return h.p.Close()
}

func hostProg(p Program) (*steering.Program, error) {
	h, ok := p.(*hostProgram)
	if !ok {
		return nil, fmt.Errorf("kernel: %T is not a program of the host's kernel", p)
	}
	return h.p, nil
}

// Pin makes dir and pins p's programs and maps in it.
func (Host) Pin(p Program, dir string) error {
	sp, err := hostProg(p)
	if err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	objs := []struct {
		name string
		pin  func(string) error
	}{{pinProg, sp.Prog.Pin}, {pinConfig, sp.ConfigMap.Pin}, {pinStats, sp.StatsMap.Pin}}
	if sp.Filter != nil {
		objs = append(objs, struct {
			name string
			pin  func(string) error
		}{pinFilter, sp.Filter.Pin}, struct {
			name string
			pin  func(string) error
		}{pinFlowStats, sp.FlowStatsMap.Pin}, struct {
			name string
			pin  func(string) error
		}{pinJump, sp.JumpMap.Pin})
	}
	for _, o := range objs {
		if err := o.pin(filepath.Join(dir, o.name)); err != nil {
			return fmt.Errorf("pin %s: %w", o.name, err)
		}
	}
	return nil
}

// LoadPinned loads the programs and maps pinned in dir.
func (Host) LoadPinned(dir string, flows bool) (Program, error) {
	p := &steering.Program{Variant: steering.Production}
	var err error
	if p.Prog, err = ebpf.LoadPinnedProgram(filepath.Join(dir, pinProg), nil); err != nil {
		return nil, err
	}
	if p.ConfigMap, err = ebpf.LoadPinnedMap(filepath.Join(dir, pinConfig), nil); err == nil {
		p.StatsMap, err = ebpf.LoadPinnedMap(filepath.Join(dir, pinStats), nil)
	}
	if err == nil && flows {
		p.Variant = steering.Flows
		if p.Filter, err = ebpf.LoadPinnedProgram(filepath.Join(dir, pinFilter), nil); err == nil {
			p.FlowStatsMap, err = ebpf.LoadPinnedMap(filepath.Join(dir, pinFlowStats), nil)
		}
		if err == nil {
			// Held while vrssd runs, so that the array stays filled
			// even if its pin is removed meanwhile.
			p.JumpMap, err = ebpf.LoadPinnedMap(filepath.Join(dir, pinJump), nil)
		}
	}
	if err != nil {
		p.Close()
		return nil, err
	}
	return &hostProgram{p: p}, nil
}

// Unpin removes the pins Pin and AttachFilter make in dir, then dir if
// nothing else is in it: the bpffs directory may be shared with other
// software.
func (Host) Unpin(dir string) error { return unpin(dir) }

func unpin(dir string) error {
	var errs []error
	for _, f := range pinNames {
		if err := os.Remove(filepath.Join(dir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// hostQueues is a tap.Device.
type hostQueues struct{ d *tap.Device }

// Create makes a TAP with tap.Create.
func (Host) Create(o tap.Options) (Queues, error) {
	d, err := tap.Create(o)
	if err != nil {
		return nil, err
	}
	return &hostQueues{d}, nil
}

// Open attaches queues with tap.Open.
func (Host) Open(name string, n, vnetHdrLen int) (Queues, error) {
	d, err := tap.Open(name, n, vnetHdrLen)
	if err != nil {
		return nil, err
	}
	return &hostQueues{d}, nil
}

// OpenQueue attaches one queue with tap.OpenQueue.
func (Host) OpenQueue(name string, vnetHdr bool) (Queues, error) {
	d, err := tap.OpenQueue(name, vnetHdr)
	if err != nil {
		return nil, err
	}
	return &hostQueues{d}, nil
}

func (q *hostQueues) Name() string { return q.d.Name() }
func (q *hostQueues) Index() int   { return q.d.Index() }

func (q *hostQueues) Files() []*os.File {
	files := make([]*os.File, q.d.NumQueues())
	for i := range files {
		files[i] = q.d.Queue(i)
	}
	return files
}

func (q *hostQueues) SetSteering(p Program) error {
	if p == nil {
		return q.d.DetachSteering()
	}
	return q.d.SetSteering(p.FD())
}

func (q *hostQueues) SetQueueEnabled(i int, on bool) error { return q.d.SetQueueEnabled(i, on) }
func (q *hostQueues) Close() error                         { return q.d.Close() }

// noDevice is a netlink.LinkNotFoundError that is also ErrNoDevice, and
// says what it said.
type noDevice struct{ err error }

func (e *noDevice) Error() string   { return e.err.Error() }
func (e *noDevice) Unwrap() []error { return []error{e.err, ErrNoDevice} }

func linkErr(err error) error {
	if errors.As(err, &netlink.LinkNotFoundError{}) {
		return &noDevice{err}
	}
	return err
}

// Delete removes a TAP with tap.Delete.
func (Host) Delete(name string) error { return linkErr(tap.Delete(name)) }

// SetNoqueue sets the noqueue qdisc with tap.SetNoqueue.
func (Host) SetNoqueue(name string) error { return tap.SetNoqueue(name) }

// LinkByName looks a device up through netlink.
func (Host) LinkByName(name string) (*Link, error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return nil, linkErr(err)
	}
	return link(l), nil
}

// LinkByIndex looks a device up through netlink.
func (Host) LinkByIndex(index int) (*Link, error) {
	l, err := netlink.LinkByIndex(index)
	if err != nil {
		return nil, linkErr(err)
	}
	return link(l), nil
}

// Links lists the devices through netlink, in one dump.
func (Host) Links() ([]*Link, error) {
	ls, err := netlink.LinkList()
	if err != nil {
		return nil, err
	}
	out := make([]*Link, len(ls))
	for i, l := range ls {
		out[i] = link(l)
	}
	return out, nil
}

// WatchLinks subscribes to netlink's link updates.
func (Host) WatchLinks(ch chan<- LinkUpdate, stop <-chan struct{}, onError func(error)) error {
	nl := make(chan netlink.LinkUpdate, cap(ch))
	if err := netlink.LinkSubscribeWithOptions(nl, stop, netlink.LinkSubscribeOptions{ErrorCallback: onError}); err != nil {
		return err
	}
	go func() {
		defer close(ch)
		for u := range nl {
			lu := LinkUpdate{Index: int(u.Index), Deleted: u.Header.Type == unix.RTM_DELLINK}
			if u.Link != nil {
				lu.Link = link(u.Link)
			}
			ch <- lu
		}
	}()
	return nil
}

func link(l netlink.Link) *Link {
	a := l.Attrs()
	k := &Link{Name: a.Name, Index: a.Index, Type: l.Type()}
	if a.Statistics != nil {
		k.TxPackets, k.HasStats = a.Statistics.TxPackets, true
	}
	if t, ok := l.(*netlink.Tuntap); ok {
		k.TAP = t.Mode == netlink.TUNTAP_MODE_TAP
		k.MultiQueue = t.Flags&netlink.TUNTAP_MULTI_QUEUE != 0
		k.VnetHdr = t.Flags&netlink.TUNTAP_VNET_HDR != 0
		k.Persistent = !t.NonPersist
		k.Owner, k.Group = t.Owner, t.Group
		k.Queues, k.DisabledQueues = t.Queues, t.DisabledQueues
	}
	return k
}

// notQueue is a failed TUNGETIFF: ErrNotQueue, saying what failed.
type notQueue struct{ err error }

func (e *notQueue) Error() string   { return "TUNGETIFF: " + e.err.Error() }
func (e *notQueue) Unwrap() []error { return []error{e.err, ErrNotQueue} }

// InspectQueue asks the kernel about queue descriptor q: TUNGETIFF, and
// for a multi-queue TAP TUNGETVNETHDRSZ and TUNGETDEVNETNS.
func (Host) InspectQueue(q *fd.FD) (QueueInfo, error) {
	raw := q.Int()
	ifr, err := unix.NewIfreq("")
	if err != nil {
		return QueueInfo{}, err
	}
	if err := unix.IoctlIfreq(raw, unix.TUNGETIFF, ifr); err != nil {
		return QueueInfo{}, &notQueue{err}
	}
	flags := ifr.Uint16()
	info := QueueInfo{Name: ifr.Name(), TAP: flags&unix.IFF_TAP != 0, MultiQueue: flags&unix.IFF_MULTI_QUEUE != 0}
	if !info.TAP || !info.MultiQueue {
		return info, nil
	}
	if flags&unix.IFF_VNET_HDR != 0 {
		if info.VnetHdrLen, err = unix.IoctlGetInt(raw, unix.TUNGETVNETHDRSZ); err != nil {
			return info, fmt.Errorf("TUNGETVNETHDRSZ %s: %w", info.Name, err)
		}
	}
	nsfd, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(raw), unix.TUNGETDEVNETNS, 0)
	if errno != 0 {
		return info, fmt.Errorf("TUNGETDEVNETNS %s: %w", info.Name, errno)
	}
	ns := fd.New(int(nsfd))
	defer ns.Close()
	var theirs, ours unix.Stat_t
	if err := unix.Fstat(ns.Int(), &theirs); err != nil {
		return info, err
	}
	if err := unix.Stat("/proc/thread-self/ns/net", &ours); err != nil {
		return info, err
	}
	info.SameNetns = theirs.Dev == ours.Dev && theirs.Ino == ours.Ino
	return info, nil
}
