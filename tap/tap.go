// Package tap creates and opens multi-queue Linux TAP devices and attaches
// eBPF steering programs to them (TUNSETSTEERINGEBPF).
//
// A multi-queue TAP has one file descriptor per queue. For traffic the host
// sends to the device (the guest's receive side), the kernel picks the queue
// in tun_select_queue: with a steering program, queue = (u16)ret % n, where
// n is the number of enabled queues; without one, its own flow table.
//
// Create, Open and Delete look the device up by name through netlink in the
// calling thread's network namespace. The queue file descriptors stay bound
// to the device wherever they are used afterwards.
package tap

import (
	"errors"
	"fmt"
	"os"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// MaxQueues is the kernel's limit on queues per TAP device (MAX_TAP_QUEUES).
const MaxQueues = 256

// Options describe a device for Create. The zero Owner makes root the
// device's owner: a persistent TAP with no owner lets any process that can
// open /dev/net/tun attach queues to it (tun_not_capable), which changes
// every packet's queue and hands that process a share of the traffic. Use
// Unowned (-1) only for a device that lives and dies with this process.
type Options struct {
	Name       string // "" lets the kernel pick a vrss%d name; a %d template works too
	Queues     int    // 1..MaxQueues; IFF_MULTI_QUEUE is always set
	VnetHdrLen int    // 0: no IFF_VNET_HDR; else 10, 12 or 20 (TUNSETVNETHDRSZ)
	Offloads   uint   // TUNSETOFFLOAD flags (unix.TUN_F_CSUM, ...); needs VnetHdrLen
	Owner      int    // uid for TUNSETOWNER (0: root); Unowned leaves it unset
	Group      int    // gid for TUNSETGROUP; 0 or Unowned leaves it unset
	Persist    bool   // TUNSETPERSIST: the device survives closing its fds
	Up         bool   // bring the link up via netlink

	// KeepDefaultQdisc leaves the kernel's default qdisc on the device.
	// By default Create makes noqueue its root qdisc before the link goes
	// up (see SetNoqueue): a multi-queue TAP has MaxQueues transmit
	// queues whatever Queues says, and the default (mq with one
	// net.core.default_qdisc per transmit queue) costs about 6.5 MiB of
	// unswappable kernel memory per device with pfifo_fast, more with
	// fq_codel, for nothing: tun never stops its queues, so a qdisc never
	// holds a frame back and drops the same frames noqueue does. A kernel
	// whose tun pushes back on a qdisc would change that; see
	// docs/tap-memory.md.
	KeepDefaultQdisc bool
}

// Unowned, as Options.Owner, leaves a device's owner unset.
const Unowned = -1

// Device is a TAP device and the queue file descriptors this process holds.
type Device struct {
	name   string
	index  int
	queues []*os.File
}

// Create creates a new multi-queue TAP device with o.Queues queues. It fails
// if a device with that name exists (use Open to attach to it). On any error
// everything it opened is closed, so a new device vanishes again.
func Create(o Options) (*Device, error) {
	if err := check(o.Queues, o.VnetHdrLen); err != nil {
		return nil, err
	}
	if o.Offloads != 0 && o.VnetHdrLen == 0 {
		return nil, errors.New("tap: Offloads need a vnet header (VnetHdrLen), or GSO packets could not be described")
	}
	name := o.Name
	if name == "" {
		name = "vrss%d"
	}
	d := &Device{}
	// IFF_TUN_EXCL makes the first TUNSETIFF fail with EBUSY instead of
	// silently attaching to an existing device.
	if err := d.attach(name, o.VnetHdrLen, unix.IFF_TUN_EXCL, true); err != nil {
		return nil, err
	}
	q0 := d.queues[0]
	err := d.setup(o)
	for err == nil && len(d.queues) < o.Queues {
		err = d.attach(d.name, o.VnetHdrLen, 0, false)
	}
	if err == nil {
		err = d.lookup()
	}
	if err == nil && !o.KeepDefaultQdisc {
		// Before the link goes up, which would attach the default.
		err = setNoqueue(d.index, d.name)
	}
	if err == nil && o.Up {
		err = d.up()
	}
	if err == nil && o.Persist {
		// Last, so that a failure above needs no undo: closing the fds
		// removes a non-persistent device.
		err = ioctlInt(q0, unix.TUNSETPERSIST, 1, "TUNSETPERSIST", d.name)
	}
	if err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// setup applies the device-wide options through the first queue.
func (d *Device) setup(o Options) error {
	q0 := d.queues[0]
	if o.VnetHdrLen != 0 {
		if err := ioctlPtrInt(q0, unix.TUNSETVNETHDRSZ, o.VnetHdrLen, "TUNSETVNETHDRSZ", d.name); err != nil {
			return err
		}
	}
	if o.Offloads != 0 {
		if err := ioctlInt(q0, unix.TUNSETOFFLOAD, int(o.Offloads), "TUNSETOFFLOAD", d.name); err != nil {
			return err
		}
	}
	if o.Owner >= 0 {
		if err := ioctlInt(q0, unix.TUNSETOWNER, o.Owner, "TUNSETOWNER", d.name); err != nil {
			return err
		}
	}
	if o.Group > 0 {
		if err := ioctlInt(q0, unix.TUNSETGROUP, o.Group, "TUNSETGROUP", d.name); err != nil {
			return err
		}
	}
	return nil
}

// Open attaches queues more queue fds to an existing multi-queue TAP, such
// as a persistent one.
//
// The vnet header is a property of the device, not of a queue: the first
// queue attached when none is sets IFF_VNET_HDR, later attaches cannot
// change it, so Open fails if vnetHdrLen disagrees with it. A nonzero
// vnetHdrLen is applied with TUNSETVNETHDRSZ, which, as QEMU does, changes
// the length for all queues of the device.
func Open(name string, queues int, vnetHdrLen int) (*Device, error) {
	if err := check(queues, vnetHdrLen); err != nil {
		return nil, err
	}
	if name == "" {
		return nil, errors.New("tap: Open needs a device name")
	}
	d := &Device{}
	var err error
	for err == nil && len(d.queues) < queues {
		err = d.attach(name, vnetHdrLen, 0, false)
	}
	if err == nil {
		err = d.checkVnetHdr(vnetHdrLen != 0)
	}
	if err == nil && vnetHdrLen != 0 {
		err = ioctlPtrInt(d.queues[0], unix.TUNSETVNETHDRSZ, vnetHdrLen, "TUNSETVNETHDRSZ", d.name)
	}
	if err == nil {
		err = d.lookup()
	}
	if err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// OpenQueue attaches one more queue to the existing multi-queue TAP name,
// with IFF_VNET_HDR as vnetHdr says. Unlike Open it leaves the device's
// vnet header length alone: TUNSETVNETHDRSZ applies to every queue, and a
// VMM holding the others may have set another length than the one the
// device was made with.
func OpenQueue(name string, vnetHdr bool) (*Device, error) {
	if name == "" {
		return nil, errors.New("tap: OpenQueue needs a device name")
	}
	d := &Device{}
	hdr := 0
	if vnetHdr {
		hdr = 1 // any nonzero length: attach only looks at whether it is set
	}
	err := d.attach(name, hdr, 0, false)
	if err == nil {
		err = d.checkVnetHdr(vnetHdr)
	}
	if err == nil {
		err = d.lookup()
	}
	if err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// checkVnetHdr reports whether the device's IFF_VNET_HDR is as wanted.
func (d *Device) checkVnetHdr(want bool) error {
	ifr, err := unix.NewIfreq("")
	if err != nil {
		return err
	}
	err = control(d.queues[0], func(fd uintptr) error {
		return unix.IoctlIfreq(int(fd), unix.TUNGETIFF, ifr)
	})
	if err != nil {
		return fmt.Errorf("tap: TUNGETIFF %s: %w", d.name, err)
	}
	switch has := ifr.Uint16()&unix.IFF_VNET_HDR != 0; {
	case has && !want:
		return fmt.Errorf("tap: open %s: the device has a vnet header (its first attached queue decides); pass its length", d.name)
	case !has && want:
		return fmt.Errorf("tap: open %s: the device has no vnet header (its first attached queue decides); pass 0", d.name)
	}
	return nil
}

func check(queues, vnetHdrLen int) error {
	if queues < 1 || queues > MaxQueues {
		return fmt.Errorf("tap: %d queues: want 1 to %d", queues, MaxQueues)
	}
	switch vnetHdrLen {
	case 0, 10, 12, 20:
		return nil
	}
	return fmt.Errorf("tap: vnet header length %d: want 0 (none), 10 (virtio_net_hdr), 12 (v1 / mergeable buffers) or 20 (v1 with hash)", vnetHdrLen)
}

// attach opens /dev/net/tun and attaches it as a queue of name with
// TUNSETIFF, which creates the device if it does not exist yet.
func (d *Device) attach(name string, vnetHdrLen int, extra uint16, create bool) error {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return fmt.Errorf("tap: device name %q: %w", name, err)
	}
	flags := uint16(unix.IFF_TAP|unix.IFF_NO_PI|unix.IFF_MULTI_QUEUE) | extra
	if vnetHdrLen != 0 {
		flags |= unix.IFF_VNET_HDR
	}
	ifr.SetUint16(flags)

	// Nonblocking, so that os.NewFile registers the fd with the runtime
	// poller: reads park the goroutine and honour deadlines.
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return fmt.Errorf("tap: open /dev/net/tun: %w%s", err, openHint(err))
	}
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return fmt.Errorf("tap: TUNSETIFF %s: %w%s", name, err, setiffHint(err, name, create))
	}
	d.name = ifr.Name()
	d.queues = append(d.queues, os.NewFile(uintptr(fd), fmt.Sprintf("tap:%s:q%d", d.name, len(d.queues))))
	return nil
}

// lookup finds the ifindex.
func (d *Device) lookup() error {
	l, err := netlink.LinkByName(d.name)
	if err != nil {
		return fmt.Errorf("tap: netlink lookup %s: %w", d.name, err)
	}
	d.index = l.Attrs().Index
	return nil
}

// up brings the link up.
func (d *Device) up() error {
	l, err := netlink.LinkByIndex(d.index)
	if err == nil {
		err = netlink.LinkSetUp(l)
	}
	if err != nil {
		return fmt.Errorf("tap: link up %s: %w", d.name, err)
	}
	return nil
}

// SetNoqueue makes noqueue the root qdisc of the TAP device name, freeing
// the default qdiscs the kernel attached when the link first went up (mq
// with one net.core.default_qdisc per transmit queue: about 6.5 MiB per
// multi-queue TAP with pfifo_fast). Create does this itself unless
// Options.KeepDefaultQdisc is set; SetNoqueue is for a device made
// elsewhere, such as by ip tuntap or an older vrss. It is idempotent.
//
// A TAP loses nothing by it: tun_net_xmit never stops its transmit
// queues, it drops a frame when the queue's ring (tx_queue_len frames) is
// full, so a qdisc in front of it never holds a frame back. Frames the old
// qdisc holds at the moment of the switch (none, for that reason) would be
// dropped.
func SetNoqueue(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("tap: qdisc noqueue %s: %w", name, err)
	}
	if t := l.Type(); t != "tuntap" {
		return fmt.Errorf("tap: qdisc noqueue %s: not a TAP device (type %s)", name, t)
	}
	return setNoqueue(l.Attrs().Index, name)
}

func setNoqueue(index int, name string) error {
	q := &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: index, Parent: netlink.HANDLE_ROOT},
		QdiscType:  "noqueue",
	}
	if err := netlink.QdiscReplace(q); err != nil {
		return fmt.Errorf("tap: qdisc noqueue %s: %w", name, err)
	}
	return nil
}

func openHint(err error) string {
	switch {
	case errors.Is(err, unix.ENOENT):
		return " (no /dev/net/tun: create it with mknod /dev/net/tun c 10 200, or load the tun module)"
	case errors.Is(err, unix.ENODEV):
		return " (the tun driver is missing: modprobe tun)"
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		return " (needs read-write access to /dev/net/tun)"
	}
	return ""
}

func setiffHint(err error, name string, create bool) string {
	switch {
	case errors.Is(err, unix.EBUSY) && create:
		return fmt.Sprintf(" (a network device named %s already exists; Open attaches to a TAP)", name)
	case errors.Is(err, unix.EINVAL):
		return fmt.Sprintf(" (%s exists but is not a multi-queue TAP device)", name)
	case errors.Is(err, unix.EPERM):
		return " (needs CAP_NET_ADMIN, or to be the device's owner or group)"
	case errors.Is(err, unix.E2BIG):
		return fmt.Sprintf(" (the device already has %d queues)", MaxQueues)
	}
	return ""
}

// Name returns the interface name.
func (d *Device) Name() string { return d.name }

// Index returns the interface index.
func (d *Device) Index() int { return d.index }

// NumQueues returns how many queue fds d holds.
func (d *Device) NumQueues() int { return len(d.queues) }

// Queue returns the fd of queue i. It is nonblocking and registered with
// the runtime poller, so Read and Write block only the goroutine and read
// deadlines work. Each Read returns one frame, preceded by the vnet header
// if the device has one.
//
// To hand the fd to another process use SyscallConn: Fd switches the file
// to blocking mode, which stops deadlines from working.
func (d *Device) Queue(i int) *os.File { return d.queues[i] }

// SetSteering attaches the BPF socket filter program progFD as the device's
// steering program, replacing any previous one; -1 detaches. The device
// keeps its own reference, so progFD may be closed afterwards.
func (d *Device) SetSteering(progFD int) error {
	if len(d.queues) == 0 {
		return fmt.Errorf("tap: TUNSETSTEERINGEBPF %s: device closed", d.name)
	}
	return control(d.queues[0], func(fd uintptr) error {
		return setSteering(fd, progFD, " "+d.name)
	})
}

// DetachSteering removes the steering program, returning the device to the
// kernel's own flow-based queue selection. It succeeds if none is attached.
func (d *Device) DetachSteering() error { return d.SetSteering(-1) }

// SetSteeringFD attaches progFD as the steering program of the TAP device
// that queueFD is a queue of (any queue will do, for example one received
// over a unix socket); -1 detaches. It needs no capability beyond holding
// both fds.
func SetSteeringFD(queueFD uintptr, progFD int) error {
	return setSteering(queueFD, progFD, "")
}

func setSteering(queueFD uintptr, progFD int, name string) error {
	// The ioctl takes a pointer to an int holding the fd.
	v := int32(progFD)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, queueFD, unix.TUNSETSTEERINGEBPF, uintptr(unsafe.Pointer(&v)))
	if errno != 0 {
		return fmt.Errorf("tap: TUNSETSTEERINGEBPF%s: %w%s", name, errno, steeringHint(errno, progFD))
	}
	return nil
}

func steeringHint(errno unix.Errno, progFD int) string {
	switch errno {
	case unix.EBADF:
		return fmt.Sprintf(" (fd %d is not open)", progFD)
	case unix.EINVAL:
		return fmt.Sprintf(" (fd %d is not a BPF socket filter program)", progFD)
	case unix.EBADFD:
		return " (the queue fd is not attached to a device)"
	case unix.ENOTTY:
		return " (not a TAP queue fd)"
	}
	return ""
}

// SetQueueEnabled enables or disables queue i (TUNSETQUEUE with
// IFF_ATTACH_QUEUE or IFF_DETACH_QUEUE). A disabled queue keeps its fd but
// receives nothing, and the steering program's result is taken modulo the
// enabled queues only.
//
// The kernel numbers enabled queues densely: disabling one moves the
// highest-numbered enabled queue into its slot, and enabling appends at the
// end. Steering results refer to these kernel numbers, so they equal the
// indices here only while queues are disabled from the top down and enabled
// from the bottom up (as a VMM does when the guest changes its queue pair
// count).
func (d *Device) SetQueueEnabled(i int, on bool) error {
	ifr, err := unix.NewIfreq("")
	if err != nil {
		return err
	}
	op, flag := "IFF_DETACH_QUEUE", uint16(unix.IFF_DETACH_QUEUE)
	if on {
		op, flag = "IFF_ATTACH_QUEUE", unix.IFF_ATTACH_QUEUE
	}
	ifr.SetUint16(flag)
	return control(d.queues[i], func(fd uintptr) error {
		if err := unix.IoctlIfreq(int(fd), unix.TUNSETQUEUE, ifr); err != nil {
			return fmt.Errorf("tap: TUNSETQUEUE %s queue %d %s: %w", d.name, i, op, err)
		}
		return nil
	})
}

// Close closes all queue fds. A persistent device stays; any other device
// disappears once no process holds a queue fd.
func (d *Device) Close() error {
	var errs []error
	for _, q := range d.queues {
		errs = append(errs, q.Close())
	}
	d.queues = nil
	return errors.Join(errs...)
}

// Delete removes the TAP device name, persistent or not, via netlink.
// Queue fds still open on it then fail with EBADFD.
func Delete(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("tap: delete %s: %w", name, err)
	}
	if t := l.Type(); t != "tuntap" {
		return fmt.Errorf("tap: delete %s: not a TAP device (type %s)", name, t)
	}
	if err := netlink.LinkDel(l); err != nil {
		return fmt.Errorf("tap: delete %s: %w", name, err)
	}
	return nil
}

func ioctlInt(f *os.File, req uint, v int, op, name string) error {
	return control(f, func(fd uintptr) error {
		if err := unix.IoctlSetInt(int(fd), req, v); err != nil {
			return fmt.Errorf("tap: %s %s: %w", op, name, err)
		}
		return nil
	})
}

func ioctlPtrInt(f *os.File, req uint, v int, op, name string) error {
	return control(f, func(fd uintptr) error {
		if err := unix.IoctlSetPointerInt(int(fd), req, v); err != nil {
			return fmt.Errorf("tap: %s %s: %w", op, name, err)
		}
		return nil
	})
}

// control runs fn on f's fd without f.Fd, which would make f blocking.
func control(f *os.File, fn func(fd uintptr) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(fd) }); err != nil {
		return err
	}
	return ferr
}
