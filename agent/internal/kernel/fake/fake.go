// Package fake is an in-memory kernel for vrssd's tests, in the style of
// wireguard-go's tun/tuntest: a Kernel implements kernel.Programs and
// kernel.TAPs without privileges, so that the daemon's request handlers,
// its authorisation and its restarts can be tested by any user, with no
// TAP device, no eBPF and no vrssd process.
//
// It models what vrssd depends on, and nothing of the data path:
//
//   - TAP devices with a name, an ifindex, tun's flags, a kernel owner and
//     group, persistence, and queues. Each queue is one end of a unix
//     socket pair, so that its descriptor can be duplicated and handed to
//     another process like a real one; the Kernel holds the other end and
//     notices, as tun does, when every descriptor of a queue is closed:
//     the queue detaches, and a device that is not persistent goes with
//     its last queue. Queues are enabled or disabled, and counted so.
//   - The steering program attached to each device, replaced or detached
//     through any of its queues.
//   - Programs: each has a configuration map that is a memfd of
//     steering.ConfigSize bytes, which steering.Publisher maps and
//     publishes to exactly as to the real map (and a VMM handed its
//     descriptor can too); counters (see Transmit); and pins, which are
//     files in the pin directory naming the program, so that pins can be
//     lost or spoiled with the os package. A program of the flow build
//     keeps its rules, groups and contexts in memory (a memfd has no map
//     value size for steering.NewPublisher to tell the layouts apart by)
//     and its filter's link as one more pin file; SetFlowStats sets its
//     counters, and DetachFilterBehind detaches its filter as bpftool
//     would.
//   - Link updates, sent to every watcher whenever a device, its queues or
//     its name change; like the kernel's, they are dropped when a
//     watcher's channel is full.
//
// A queue closed by its last holder is noticed at the next look at the
// kernel (any lookup, or Refresh), not at once.
package fake

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/agent/internal/kernel"
	"github.com/vrss-dev/vrss/internal/fd"
	"github.com/vrss-dev/vrss/rss"
	"github.com/vrss-dev/vrss/tap"
)

// Kernel is a fake kernel. Its methods are safe for concurrent use.
type Kernel struct {
	mu       sync.Mutex
	devs     map[int]*device // by ifindex
	next     int             // the next ifindex
	objs     map[int]*object // programs, by id
	nextObj  int
	handles  int // Program values not closed
	watchers map[*watcher]bool
	loadErr  error
	drop     bool // updates are lost
	closed   bool
}

var (
	_ kernel.Programs = (*Kernel)(nil)
	_ kernel.TAPs     = (*Kernel)(nil)
)

// New returns a kernel with one device, the loopback device lo.
func New() *Kernel {
	k := &Kernel{devs: map[int]*device{}, next: 1, objs: map[int]*object{}, nextObj: 1, watchers: map[*watcher]bool{}}
	k.AddLink("lo", "device")
	return k
}

// Close releases every descriptor the kernel holds. Queue descriptors
// handed out stay open until their holders close them.
func (k *Kernel) Close() {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, d := range k.devs {
		d.detachAll()
	}
	for _, o := range k.objs {
		o.close()
	}
	k.devs, k.objs = map[int]*device{}, map[int]*object{}
	k.closed = true
}

// device is a network device; the rest of the fields after typ describe a
// TUN or TAP device.
type device struct {
	name    string
	index   int
	typ     string // "tuntap" for TUN and TAP devices
	tap     bool
	multi   bool
	vnet    int // vnet header length; 0 for no IFF_VNET_HDR
	persist bool
	noqueue bool
	owner   uint32
	group   uint32
	queues  []*queue // attached, in attach order
	prog    *object  // the steering program
	tx      uint64
}

// queue is one attached queue.
type queue struct {
	dev     *device
	enabled bool
	own     *fd.FD // the kernel's end of the pair: hung up once every descriptor of the queue is closed
	ino     uint64 // the queue end's inode, which its every descriptor shares
}

func (d *device) link() *kernel.Link {
	l := &kernel.Link{Name: d.name, Index: d.index, Type: d.typ, TxPackets: d.tx, HasStats: true}
	if d.typ != "tuntap" {
		return l
	}
	l.TAP, l.MultiQueue, l.VnetHdr, l.Persistent = d.tap, d.multi, d.vnet != 0, d.persist
	l.Owner, l.Group = d.owner, d.group
	for _, q := range d.queues {
		if q.enabled {
			l.Queues++
		} else {
			l.DisabledQueues++
		}
	}
	return l
}

func (d *device) enabled() int {
	n := 0
	for _, q := range d.queues {
		if q.enabled {
			n++
		}
	}
	return n
}

// detachAll detaches every queue, as deleting the device does.
func (d *device) detachAll() {
	for _, q := range d.queues {
		q.dev = nil
		q.own.Close()
	}
	d.queues = nil
}

// AddLink adds a network device that is not a TUN or TAP device, of type
// typ (as netlink names it: "veth", "bridge", "device" for loopback), and
// returns its ifindex.
func (k *Kernel) AddLink(name, typ string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	d := &device{name: name, index: k.next, typ: typ}
	k.next++
	k.devs[d.index] = d
	k.notify(d, false)
	return d.index
}

func (k *Kernel) byName(name string) *device {
	for _, d := range k.devs {
		if d.name == name {
			return d
		}
	}
	return nil
}

// refresh detaches the queues whose every descriptor is closed, removes
// the devices that are not persistent and have no queue left, and
// announces the changes. k.mu is held.
func (k *Kernel) refresh() {
	for _, d := range k.devs {
		if d.typ != "tuntap" {
			continue
		}
		kept := d.queues[:0]
		for _, q := range d.queues {
			if q.hungUp() {
				q.dev = nil
				q.own.Close()
				continue
			}
			kept = append(kept, q)
		}
		changed := len(kept) != len(d.queues)
		clear(d.queues[len(kept):])
		d.queues = kept
		switch {
		case len(d.queues) == 0 && !d.persist:
			delete(k.devs, d.index)
			k.notify(d, true)
		case changed:
			k.notify(d, false)
		}
	}
}

func (q *queue) hungUp() bool {
	p := []unix.PollFd{{Fd: int32(q.own.Int()), Events: unix.POLLIN}}
	n, err := unix.Poll(p, 0)
	return err == nil && n == 1 && p[0].Revents&unix.POLLHUP != 0
}

// Refresh makes the kernel notice queues whose every descriptor has been
// closed since it last looked, as any lookup does.
func (k *Kernel) Refresh() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.refresh()
}

// tuntapErr is an error of the tap package: it wraps errno.
func tuntapErr(op, name string, errno unix.Errno, hint string) error {
	return fmt.Errorf("tap: %s %s: %w%s", op, name, errno, hint)
}

// Create makes a TAP as tap.Create does (IFF_MULTI_QUEUE; the owner and
// group tap.Options give; persistent if asked) with o.Queues queues,
// enabled.
func (k *Kernel) Create(o tap.Options) (kernel.Queues, error) {
	if o.Queues < 1 || o.Queues > tap.MaxQueues {
		return nil, fmt.Errorf("tap: %d queues: want 1 to %d", o.Queues, tap.MaxQueues)
	}
	if o.Name == "" || strings.Contains(o.Name, "%") {
		return nil, errors.New("fake: Create needs a plain device name")
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.refresh()
	if k.byName(o.Name) != nil {
		return nil, tuntapErr("TUNSETIFF", o.Name, unix.EBUSY, fmt.Sprintf(" (a network device named %s already exists; Open attaches to a TAP)", o.Name))
	}
	d := &device{
		name: o.Name, index: k.next, typ: "tuntap", tap: true, multi: true, vnet: o.VnetHdrLen,
		persist: o.Persist, noqueue: !o.KeepDefaultQdisc, owner: kernel.Unset, group: kernel.Unset,
	}
	if o.Owner >= 0 {
		d.owner = uint32(o.Owner)
	}
	if o.Group > 0 {
		d.group = uint32(o.Group)
	}
	k.next++
	k.devs[d.index] = d
	qs, err := k.attach(d, o.Queues)
	if err != nil {
		delete(k.devs, d.index)
		return nil, err
	}
	k.notify(d, false)
	return qs, nil
}

// Open attaches n queues to the TAP name, enabled, as tap.Open does. Unlike
// the kernel it never makes a device: a missing one is ENODEV.
func (k *Kernel) Open(name string, n, vnetHdrLen int) (kernel.Queues, error) {
	if n < 1 || n > tap.MaxQueues {
		return nil, fmt.Errorf("tap: %d queues: want 1 to %d", n, tap.MaxQueues)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	d, err := k.openableLocked(name, n, vnetHdrLen != 0)
	if err != nil {
		return nil, err
	}
	qs, err := k.attach(d, n)
	if err != nil {
		return nil, err
	}
	if vnetHdrLen != 0 {
		d.vnet = vnetHdrLen
	}
	k.notify(d, false)
	return qs, nil
}

// OpenQueue attaches one queue to the TAP name, as tap.OpenQueue does:
// the device's vnet header length stays as it is.
func (k *Kernel) OpenQueue(name string, vnetHdr bool) (kernel.Queues, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	d, err := k.openableLocked(name, 1, vnetHdr)
	if err != nil {
		return nil, err
	}
	qs, err := k.attach(d, 1)
	if err != nil {
		return nil, err
	}
	k.notify(d, false)
	return qs, nil
}

// openableLocked finds the TAP name and checks that n more queues, with
// or without a vnet header, may be attached to it, as TUNSETIFF would;
// k.mu is held.
func (k *Kernel) openableLocked(name string, n int, vnetHdr bool) (*device, error) {
	k.refresh()
	d := k.byName(name)
	switch {
	case d == nil:
		return nil, tuntapErr("TUNSETIFF", name, unix.ENODEV, "")
	case d.typ != "tuntap" || !d.tap || !d.multi:
		return nil, tuntapErr("TUNSETIFF", name, unix.EINVAL, fmt.Sprintf(" (%s exists but is not a multi-queue TAP device)", name))
	case len(d.queues)+n > tap.MaxQueues:
		return nil, tuntapErr("TUNSETIFF", name, unix.E2BIG, fmt.Sprintf(" (the device already has %d queues)", tap.MaxQueues))
	case vnetHdr != (d.vnet != 0):
		return nil, fmt.Errorf("tap: open %s: the device's vnet header (length %d) is not as asked (vnet header %v)", name, d.vnet, vnetHdr)
	}
	return d, nil
}

// VnetHdrLen is the vnet header length of the TAP name (0 for none or no
// such TAP), for tests.
func (k *Kernel) VnetHdrLen(name string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	if d := k.byName(name); d != nil {
		return d.vnet
	}
	return 0
}

// attach attaches n new queues to d; k.mu is held.
func (k *Kernel) attach(d *device, n int) (*queues, error) {
	qs := &queues{k: k, name: d.name, index: d.index}
	for i := range n {
		pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			qs.closeLocked()
			return nil, fmt.Errorf("fake: queue %d of %s: %w", i, d.name, err)
		}
		var st unix.Stat_t
		if err := unix.Fstat(pair[1], &st); err != nil {
			unix.Close(pair[0])
			unix.Close(pair[1])
			qs.closeLocked()
			return nil, err
		}
		q := &queue{dev: d, enabled: true, own: fd.New(pair[0]), ino: st.Ino}
		d.queues = append(d.queues, q)
		qs.qs = append(qs.qs, q)
		qs.files = append(qs.files, os.NewFile(uintptr(pair[1]), fmt.Sprintf("tap:%s:q%d", d.name, len(d.queues)-1)))
	}
	return qs, nil
}

// queues are queue descriptors handed out by Create and Open.
type queues struct {
	k           *Kernel
	name        string
	index       int
	qs          []*queue
	files       []*os.File
	closedFiles bool
}

func (q *queues) Name() string      { return q.name }
func (q *queues) Index() int        { return q.index }
func (q *queues) Files() []*os.File { return q.files }

// live returns queue i's device, or an error as tun gives for a queue of
// a device that is gone (EBADFD) or a closed descriptor (EBADF).
func (q *queues) live(i int, op string) (*device, error) {
	if q.closedFiles || i < 0 || i >= len(q.qs) {
		return nil, tuntapErr(op, q.name, unix.EBADF, "")
	}
	if q.qs[i].dev == nil {
		return nil, tuntapErr(op, q.name, unix.EBADFD, " (the queue fd is not attached to a device)")
	}
	return q.qs[i].dev, nil
}

// SetSteering attaches p (a Program of the same Kernel) through the first
// queue; nil detaches.
func (q *queues) SetSteering(p kernel.Program) error {
	var obj *object
	if p != nil {
		fp, ok := p.(*program)
		if !ok || fp.k != q.k {
			return fmt.Errorf("fake: %T is not a program of this kernel", p)
		}
		if fp.obj == nil {
			return tuntapErr("TUNSETSTEERINGEBPF", q.name, unix.EBADF, " (the program is closed)")
		}
		obj = fp.obj
	}
	q.k.mu.Lock()
	defer q.k.mu.Unlock()
	d, err := q.live(0, "TUNSETSTEERINGEBPF")
	if err != nil {
		return err
	}
	d.prog = obj
	return nil
}

// SetQueueEnabled enables or disables queue i.
func (q *queues) SetQueueEnabled(i int, on bool) error {
	q.k.mu.Lock()
	defer q.k.mu.Unlock()
	d, err := q.live(i, "TUNSETQUEUE")
	if err != nil {
		return err
	}
	if q.qs[i].enabled != on {
		q.qs[i].enabled = on
		q.k.notify(d, false)
	}
	return nil
}

// Close closes the descriptors; a queue another holder has a duplicate of
// stays attached.
func (q *queues) Close() error {
	q.k.mu.Lock()
	defer q.k.mu.Unlock()
	q.closeLocked()
	q.k.refresh()
	return nil
}

func (q *queues) closeLocked() {
	if q.closedFiles {
		return
	}
	q.closedFiles = true
	for _, f := range q.files {
		f.Close()
	}
}

// noDevice is the error for a device that does not exist.
func noDevice(what string) error {
	return fmt.Errorf("%w: %s (Link not found)", kernel.ErrNoDevice, what)
}

// Delete removes the TUN or TAP device name: its queues detach (and fail
// with EBADFD from then on).
func (k *Kernel) Delete(name string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	d := k.byName(name)
	switch {
	case d == nil:
		return fmt.Errorf("tap: delete %s: %w", name, noDevice(name))
	case d.typ != "tuntap":
		return fmt.Errorf("tap: delete %s: not a TAP device (type %s)", name, d.typ)
	}
	d.detachAll()
	delete(k.devs, d.index)
	k.notify(d, true)
	return nil
}

// Rename renames a device, as ip link set NAME name NEW does.
func (k *Kernel) Rename(name, newName string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	d := k.byName(name)
	if d == nil {
		return noDevice(name)
	}
	if k.byName(newName) != nil {
		return unix.EEXIST
	}
	d.name = newName
	k.notify(d, false)
	return nil
}

// SetNoqueue makes noqueue the TAP's root qdisc.
func (k *Kernel) SetNoqueue(name string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	d := k.byName(name)
	if d == nil {
		return fmt.Errorf("tap: qdisc noqueue %s: %w", name, noDevice(name))
	}
	if d.typ != "tuntap" {
		return fmt.Errorf("tap: qdisc noqueue %s: not a TAP device (type %s)", name, d.typ)
	}
	d.noqueue = true
	return nil
}

// Noqueue reports whether the TAP name has the noqueue qdisc.
func (k *Kernel) Noqueue(name string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	d := k.byName(name)
	return d != nil && d.noqueue
}

// LinkByName looks a device up by name.
func (k *Kernel) LinkByName(name string) (*kernel.Link, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.refresh()
	if d := k.byName(name); d != nil {
		return d.link(), nil
	}
	return nil, noDevice(name)
}

// LinkByIndex looks a device up by ifindex.
func (k *Kernel) LinkByIndex(index int) (*kernel.Link, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.refresh()
	if d := k.devs[index]; d != nil {
		return d.link(), nil
	}
	return nil, noDevice("ifindex " + strconv.Itoa(index))
}

// Links lists every device.
func (k *Kernel) Links() ([]*kernel.Link, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.refresh()
	var ls []*kernel.Link
	for _, d := range k.devs {
		ls = append(ls, d.link())
	}
	return ls, nil
}

// Link returns the device name as the kernel reports it, or nil.
func (k *Kernel) Link(name string) *kernel.Link {
	l, _ := k.LinkByName(name)
	return l
}

// InspectQueue identifies the TAP of a queue descriptor Create or Open
// handed out (or a duplicate of one). Every device is in the caller's
// network namespace.
func (k *Kernel) InspectQueue(q *fd.FD) (kernel.QueueInfo, error) {
	var st unix.Stat_t
	if err := unix.Fstat(q.Int(), &st); err != nil {
		return kernel.QueueInfo{}, fmt.Errorf("%w: %w", kernel.ErrNotQueue, err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.refresh()
	for _, d := range k.devs {
		for _, qq := range d.queues {
			if qq.ino == st.Ino {
				info := kernel.QueueInfo{Name: d.name, TAP: d.tap, MultiQueue: d.multi, SameNetns: true}
				if d.tap && d.multi {
					info.VnetHdrLen = d.vnet
				}
				return info, nil
			}
		}
	}
	return kernel.QueueInfo{}, fmt.Errorf("TUNGETIFF: %w: %w", unix.EBADFD, kernel.ErrNotQueue)
}

// QueueOf returns the name of the TAP whose queue raw is a descriptor of,
// and whether the queue is attached and enabled; "" if it is none.
func (k *Kernel) QueueOf(raw int) (name string, enabled bool) {
	var st unix.Stat_t
	if unix.Fstat(raw, &st) != nil {
		return "", false
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, d := range k.devs {
		for _, q := range d.queues {
			if q.ino == st.Ino {
				return d.name, q.enabled
			}
		}
	}
	return "", false
}

// Transmit has the TAP name send n frames to its queues: its tx_packets
// grow, and the program attached, if any, counts them, when more than one
// queue is enabled (with one, tun asks no program). A configured program
// counts them on queue 0, one not configured yet as unconfigured.
func (k *Kernel) Transmit(name string, n uint64) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.refresh()
	d := k.byName(name)
	if d == nil {
		return noDevice(name)
	}
	d.tx += n
	if d.prog != nil && d.enabled() > 1 {
		if _, err := d.prog.view.Config(); err != nil {
			d.prog.stats.Unconfigured += n
		} else {
			d.prog.stats.Queues[0] += n
		}
	}
	return nil
}

// Steering returns the id of the program steering the TAP name, 0 if
// none.
func (k *Kernel) Steering(name string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	if d := k.byName(name); d != nil && d.prog != nil {
		return d.prog.id
	}
	return 0
}

// Config returns the configuration the TAP name is steered by: that of
// the program attached to it.
func (k *Kernel) Config(name string) (rss.Config, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	d := k.byName(name)
	switch {
	case d == nil:
		return rss.Config{}, noDevice(name)
	case d.prog == nil:
		return rss.Config{}, fmt.Errorf("fake: no program steers %s", name)
	}
	return d.prog.view.Config()
}

// watcher is one WatchLinks subscription.
type watcher struct {
	ch chan<- kernel.LinkUpdate
}

// WatchLinks sends link updates to ch until stop is closed. An update
// that finds ch full is dropped.
func (k *Kernel) WatchLinks(ch chan<- kernel.LinkUpdate, stop <-chan struct{}, onError func(error)) error {
	w := &watcher{ch: ch}
	k.mu.Lock()
	k.watchers[w] = true
	k.mu.Unlock()
	go func() {
		<-stop
		k.mu.Lock()
		delete(k.watchers, w)
		close(ch)
		k.mu.Unlock()
	}()
	return nil
}

// In returns k itself: the fake kernel has one namespace.
func (k *Kernel) In(*kernel.Netns) kernel.TAPs { return k }

// DropUpdates makes the kernel lose every link update from now on (as a
// full netlink socket buffer loses them), or stop losing them.
func (k *Kernel) DropUpdates(drop bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.drop = drop
}

// notify announces d; k.mu is held.
func (k *Kernel) notify(d *device, deleted bool) {
	if k.drop {
		return
	}
	u := kernel.LinkUpdate{Index: d.index, Deleted: deleted, Link: d.link()}
	for w := range k.watchers {
		select {
		case w.ch <- u:
		default:
		}
	}
}
