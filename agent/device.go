package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/rss"
	"github.com/vrss-dev/vrss/steering"
	"github.com/vrss-dev/vrss/tap"
)

// device is a TAP under vrssd: its steering program and maps (pinned in
// bpffs under its name), and the queue fds vrssd holds, if any.
type device struct {
	name       string
	index      int
	queues     int
	vnetHdrLen int
	owner      int
	group      int
	steering   bool // the program is attached
	adopted    bool
	abi        string
	hash       *api.HashReport

	prog *steering.Program
	// pub publishes through the mmapped configuration map; nil when the
	// program was loaded by a vrssd with another ABI, whose map layout
	// this one must not touch.
	pub *steering.Publisher
	// ctl is vrssd's control queue: one queue fd, kept disabled
	// (IFF_DETACH_QUEUE) so that steering never picks it, through which
	// vrssd attaches and detaches the program whoever holds the other
	// queues. nil only if it could not be opened.
	ctl *tap.Device
	// attachedQ and disabledQ are the queues other processes hold, as the
	// kernel last reported them: enabled (the ones steering picks from)
	// and disabled.
	attachedQ, disabledQ int
	// lost: the program was found detached behind vrssd's back (the
	// TAP transmitted frames the program never saw) and not yet
	// re-attached; reattached counts the re-attachments.
	lost       bool
	reattached uint64
	// transient: the TAP is not persistent (adopted from a VMM's fd): it
	// lives as long as its queues, so vrssd lets go of its control queue
	// once the others are gone.
	transient bool
	// progSeen and txSeen are the program's frame count and the TAP's
	// tx_packets at the monitor's last look; seen says they are valid.
	progSeen, txSeen uint64
	seen             bool
	// problem, when set, says what is wrong with the TAP's steering (its
	// pins could not be loaded or made again); list shows it.
	problem string
	// config is the configuration last saved in state.json, and savedGen
	// the generation it was read at.
	config   *rss.Config
	savedGen uint64
}

func (d *device) info() api.TAP {
	t := api.TAP{
		Name: d.name, Index: d.index, Queues: d.queues, VnetHdrLen: d.vnetHdrLen,
		OwnerUID: d.owner, OwnerGID: d.group, Steering: d.steering, Adopted: d.adopted,
		ABI: d.abi, HeldElsewhere: d.elsewhere(), Problem: d.problem,
		AttachedQueues: d.attachedQ, DisabledQueues: d.disabledQ, Reattached: d.reattached,
	}
	t.Steering = d.steering && !d.lost
	if t.Problem == "" && d.attachedQ+d.disabledQ > d.queues {
		t.Problem = fmt.Sprintf("%d queues are open on it (%d enabled), more than its %d: more than one process opened it, so steering picks queues some of them do not read", d.attachedQ+d.disabledQ, d.attachedQ, d.queues)
	}
	if d.pub != nil {
		t.Generation = d.pub.Generation()
	}
	return t
}

// record is d as state.json keeps it. It reads the configuration from
// the map, which a VMM may have published to since the last save.
func (d *device) record() tapState {
	if d.pub != nil {
		gen := d.pub.Generation()
		if c, err := d.pub.Config(); err == nil {
			d.config, d.savedGen = &c, gen
		}
	}
	return tapState{
		Name: d.name, Index: d.index, Queues: d.queues, VnetHdrLen: d.vnetHdrLen,
		OwnerUID: d.owner, OwnerGID: d.group, Steering: d.steering, Adopted: d.adopted,
		ABI: d.abi, HashReport: d.hash, Config: d.config,
	}
}

// pinDir is where d's program and maps are pinned.
func (d *device) pinDir(bpffsDir string) string { return filepath.Join(bpffsDir, pinDirName(d.name)) }

// release closes what vrssd holds of d. The kernel objects stay: a pinned
// program goes on steering a persistent TAP.
func (d *device) release() {
	if d.pub != nil {
		d.pub.Close()
		d.pub = nil
	}
	if d.prog != nil {
		d.prog.Close()
		d.prog = nil
	}
	if d.ctl != nil {
		d.ctl.Close()
		d.ctl = nil
	}
}

// stale reports, as an error, that d's program has another ABI.
func (d *device) stale() error {
	if d.pub != nil {
		return nil
	}
	if d.prog == nil {
		return api.Errorf(api.CodeUnavailable, "TAP %s: %s", d.name, d.problem)
	}
	return api.Errorf(api.CodeABIMismatch, "TAP %s is steered by a program of another vrssd build (ABI %s, this daemon has %s); it keeps steering, but only list, detach and delete work on it", d.name, d.abi, steering.ABIStamp())
}

// Pin file names inside a TAP's pin directory.
const (
	pinProg   = "prog"
	pinConfig = "config"
	pinStats  = "stats"
)

func pin(dir string, p *steering.Program) error {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	for _, o := range []struct {
		name string
		pin  func(string) error
	}{{pinProg, p.Prog.Pin}, {pinConfig, p.ConfigMap.Pin}, {pinStats, p.StatsMap.Pin}} {
		if err := o.pin(filepath.Join(dir, o.name)); err != nil {
			return fmt.Errorf("pin %s: %w", o.name, err)
		}
	}
	return nil
}

func loadPinned(dir string) (*steering.Program, error) {
	p := &steering.Program{Variant: steering.Production}
	var err error
	if p.Prog, err = ebpf.LoadPinnedProgram(filepath.Join(dir, pinProg), nil); err != nil {
		return nil, err
	}
	if p.ConfigMap, err = ebpf.LoadPinnedMap(filepath.Join(dir, pinConfig), nil); err == nil {
		p.StatsMap, err = ebpf.LoadPinnedMap(filepath.Join(dir, pinStats), nil)
	}
	if err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// checkName applies the kernel's rules for interface names (dev_valid_name)
// and refuses templates: vrssd must know the name before it asks for it.
func checkName(name string) error {
	switch {
	case name == "":
		return api.Errorf(api.CodeBadRequest, "a TAP name is required")
	case len(name) >= unix.IFNAMSIZ:
		return api.Errorf(api.CodeBadRequest, "TAP name %q is longer than %d bytes", name, unix.IFNAMSIZ-1)
	case name == "." || name == "..", strings.ContainsAny(name, "/:% \t\n\r\v\f"):
		return api.Errorf(api.CodeBadRequest, "TAP name %q: not a valid interface name (no /, :, %%, white space; not . or ..)", name)
	}
	return nil
}

// tuntapByName returns the TAP link name in vrssd's network namespace.
func tuntapByName(name string) (*netlink.Tuntap, error) {
	l, err := netlink.LinkByName(name)
	if _, ok := err.(netlink.LinkNotFoundError); ok {
		return nil, api.Errorf(api.CodeNotFound, "no network device named %s", name)
	}
	if err != nil {
		return nil, fmt.Errorf("netlink lookup %s: %w", name, err)
	}
	return asTAP(l)
}

func asTAP(l netlink.Link) (*netlink.Tuntap, error) {
	t, ok := l.(*netlink.Tuntap)
	if !ok || t.Mode != netlink.TUNTAP_MODE_TAP {
		return nil, api.Errorf(api.CodeBadRequest, "%s is a %s device, not a TAP", l.Attrs().Name, l.Type())
	}
	if t.Flags&netlink.TUNTAP_MULTI_QUEUE == 0 {
		return nil, api.Errorf(api.CodeBadRequest, "%s is not a multi-queue TAP (IFF_MULTI_QUEUE); steering needs one", t.Name)
	}
	return t, nil
}

// attached is the number of queue fds open on a TAP, enabled or not.
func attached(t *netlink.Tuntap) int { return t.Queues + t.DisabledQueues }

// elsewhere reports whether other processes hold queues of d.
func (d *device) elsewhere() bool { return d.attachedQ+d.disabledQ > 0 }

// noteQueues records the kernel's queue counts of t, less vrssd's own
// (disabled) control queue; it reports whether they changed.
func (d *device) noteQueues(t *netlink.Tuntap) bool {
	a, dis := t.Queues, t.DisabledQueues
	if d.ctl != nil && dis > 0 {
		dis--
	}
	changed := a != d.attachedQ || dis != d.disabledQ
	d.attachedQ, d.disabledQ = a, dis
	return changed
}

// openControl opens vrssd's control queue on TAP name and disables it.
// While it is enabled, for a moment, it is the last queue: the queues a VMM
// holds keep their numbers.
func openControl(name string, vnetHdrLen int) (*tap.Device, error) {
	c, err := tap.Open(name, 1, vnetHdrLen)
	if err != nil {
		return nil, err
	}
	if err := disableControl(c); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// disableControl disables the one queue of c, which must be the last one
// enabled, so that no other queue moves.
func disableControl(c *tap.Device) error { return c.SetQueueEnabled(0, false) }

// kernelOwner reports whether the kernel would let c attach to t without
// CAP_NET_ADMIN (tun_not_capable): c must be its owner, when one is set,
// and in its group, when one is set. vrssd asks one thing more: that an
// owner is set. A TAP without one lets every process (or every member of
// its group) attach, so it has no single user vrssd could give it to: only
// root and admins may adopt it.
func kernelOwner(c *peer, t *netlink.Tuntap) bool {
	const unset = ^uint32(0)
	if t.Owner == unset || int(t.Owner) != c.uid {
		return false
	}
	return t.Group == unset || slices.Contains(c.groups(), int(t.Group))
}

// queueInfo describes the TAP a queue fd received from a client belongs to.
type queueInfo struct {
	name       string
	flags      uint16
	vnetHdrLen int
}

// inspectQueue identifies the device of queue fd fd and checks that it
// lives in vrssd's network namespace, where its name means the same device.
func inspectQueue(fd int) (queueInfo, error) {
	ifr, err := unix.NewIfreq("")
	if err != nil {
		return queueInfo{}, err
	}
	if err := unix.IoctlIfreq(fd, unix.TUNGETIFF, ifr); err != nil {
		return queueInfo{}, api.Errorf(api.CodeBadRequest, "the fd passed is not an attached TAP queue (TUNGETIFF: %v)", err)
	}
	q := queueInfo{name: ifr.Name(), flags: ifr.Uint16()}
	if q.flags&unix.IFF_TAP == 0 {
		return q, api.Errorf(api.CodeBadRequest, "the fd passed is a queue of TUN device %s, not a TAP", q.name)
	}
	if q.flags&unix.IFF_MULTI_QUEUE == 0 {
		return q, api.Errorf(api.CodeBadRequest, "%s is not a multi-queue TAP (IFF_MULTI_QUEUE); steering needs one", q.name)
	}
	if q.flags&unix.IFF_VNET_HDR != 0 {
		if q.vnetHdrLen, err = unix.IoctlGetInt(fd, unix.TUNGETVNETHDRSZ); err != nil {
			return q, fmt.Errorf("TUNGETVNETHDRSZ %s: %w", q.name, err)
		}
	}
	nsfd, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TUNGETDEVNETNS, 0)
	if errno != 0 {
		return q, fmt.Errorf("TUNGETDEVNETNS %s: %w", q.name, errno)
	}
	defer unix.Close(int(nsfd))
	var theirs, ours unix.Stat_t
	if err := unix.Fstat(int(nsfd), &theirs); err != nil {
		return q, err
	}
	if err := unix.Stat("/proc/thread-self/ns/net", &ours); err != nil {
		return q, err
	}
	if theirs.Dev != ours.Dev || theirs.Ino != ours.Ino {
		return q, api.Errorf(api.CodeBadRequest, "TAP %s is in another network namespace than vrssd", q.name)
	}
	return q, nil
}

// dupFile duplicates f's descriptor without f.Fd, which would switch f to
// blocking mode.
func dupFile(f *os.File) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return -1, err
	}
	nfd, derr := -1, error(nil)
	if err := rc.Control(func(fd uintptr) { nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, err
	}
	return nfd, derr
}

// tapError classifies a failure of the tap package for the client.
func tapError(err error) error {
	switch {
	case errors.Is(err, unix.EBUSY), errors.Is(err, unix.EEXIST):
		return api.Errorf(api.CodeExists, "%v", err)
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES), errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENODEV):
		return api.Errorf(api.CodeUnavailable, "%v", err)
	}
	return err
}

// loadError classifies a failure to load the steering program.
func loadError(err error) error {
	if errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) {
		return api.Errorf(api.CodeBusy, "vrssd is out of file descriptors (%v): too many TAPs or connections; try again later", err)
	}
	var ue *steering.UnavailableError
	if errors.As(err, &ue) {
		return api.Errorf(api.CodeUnavailable, "%v", err)
	}
	return err
}
