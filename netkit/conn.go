//go:build linux

package netkit

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// Conn is a netlink socket (NETLINK_ROUTE or NETLINK_GENERIC) with
// extended acks on. It belongs to the network namespace of the thread
// that dialled it, for its whole life.
type Conn struct {
	fd  int
	seq uint32
}

// Dial opens a netlink socket of protocol proto (unix.NETLINK_ROUTE or
// unix.NETLINK_GENERIC) in the calling thread's network namespace.
func Dial(proto int) (*Conn, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return nil, fmt.Errorf("netkit: netlink socket: %w", err)
	}
	// Extended acks carry the kernel's reason, which the errors below
	// pass on; capped acks do not echo the request back.
	for _, o := range []int{unix.NETLINK_EXT_ACK, unix.NETLINK_CAP_ACK} {
		unix.SetsockoptInt(fd, unix.SOL_NETLINK, o, 1)
	}
	tv := unix.Timeval{Sec: 10}
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netkit: netlink bind: %w", err)
	}
	return &Conn{fd: fd, seq: 1}, nil
}

// Close closes the socket.
func (c *Conn) Close() error { return unix.Close(c.fd) }

// Error is the kernel's refusal of one request: the errno and, when the
// kernel gave one, its extended ack message.
type Error struct {
	Op    string
	Errno unix.Errno
	Msg   string
}

// Error says what was refused, the errno and the kernel's reason.
func (e *Error) Error() string {
	s := fmt.Sprintf("netkit: %s: %v", e.Op, e.Errno)
	if e.Msg != "" {
		s += " (kernel: " + e.Msg + ")"
	}
	return s
}

// Unwrap gives the errno, for errors.Is.
func (e *Error) Unwrap() error { return e.Errno }

// do sends a request built with the next sequence number and returns
// the replies that came before the kernel's ack; a refusal is an *Error
// for op.
func (c *Conn) do(op string, build func(seq uint32) []byte) ([]Message, error) {
	c.seq++
	seq := c.seq
	if err := unix.Sendto(c.fd, build(seq), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("netkit: %s: send: %w", op, err)
	}
	var out []Message
	buf := make([]byte, 64<<10)
	for {
		n, _, err := unix.Recvfrom(c.fd, buf, 0)
		if err != nil {
			return nil, fmt.Errorf("netkit: %s: receive: %w", op, err)
		}
		msgs, err := SplitMessages(buf[:n])
		if err != nil {
			return nil, fmt.Errorf("netkit: %s: %w", op, err)
		}
		for _, m := range msgs {
			if m.Seq != seq {
				continue // a stale reply to an earlier request
			}
			switch m.Type {
			case nlmsgError:
				a, err := ParseAck(m.Flags, m.Payload)
				if err != nil {
					return nil, fmt.Errorf("netkit: %s: %w", op, err)
				}
				if a.Errno == 0 {
					return out, nil
				}
				return nil, &Error{Op: op, Errno: unix.Errno(-a.Errno), Msg: a.Msg}
			case nlmsgDone:
				return out, nil
			default:
				out = append(out, Message{Type: m.Type, Flags: m.Flags, Seq: m.Seq, Pid: m.Pid, Payload: append([]byte(nil), m.Payload...)})
			}
		}
	}
}

// one is do for a request answered by exactly one message.
func (c *Conn) one(op string, build func(seq uint32) []byte) ([]byte, error) {
	ms, err := c.do(op, build)
	if err != nil {
		return nil, err
	}
	if len(ms) != 1 {
		return nil, fmt.Errorf("netkit: %s: %d replies, want 1", op, len(ms))
	}
	return ms[0].Payload, nil
}

// Release is the running kernel's release (uname -r).
func Release() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// ErrNoLeasing says the kernel cannot lease queues to a netkit: it is
// older than Linux 7.1.
var ErrNoLeasing = errors.New("Linux 7.1 or later is needed for netkit queue leasing")

// ErrNoDriver says the kernel has no netkit driver at all.
var ErrNoDriver = errors.New("no netkit driver (CONFIG_NETKIT)")

// UnsupportedError is ErrNoLeasing with the running kernel and what
// showed it.
type UnsupportedError struct {
	Release string
	Why     string
}

// Error gives ErrNoLeasing's text with the kernel and what showed it.
func (e *UnsupportedError) Error() string {
	return fmt.Sprintf("%v (this kernel: %s; %s)", ErrNoLeasing, e.Release, e.Why)
}

// Is makes errors.Is(err, ErrNoLeasing) true.
func (e *UnsupportedError) Is(target error) bool { return target == ErrNoLeasing }

// ResolveFamily asks the controller for the generic netlink family name;
// c must be a NETLINK_GENERIC Conn.
func ResolveFamily(c *Conn, name string) (Family, error) {
	p, err := c.one("resolving generic netlink family "+name, func(seq uint32) []byte { return GetFamilyRequest(seq, name) })
	if err != nil {
		return Family{}, err
	}
	f, err := ParseFamily(p)
	if err == nil && f.Name != name {
		err = fmt.Errorf("netkit: asked for family %q, the controller answered for %q", name, f.Name)
	}
	return f, err
}

// CheckLeasing resolves the netdev family and checks that it has
// NETDEV_CMD_QUEUE_CREATE: a kernel without it (before 7.1) is refused
// with an *UnsupportedError, before anything is created. It changes
// nothing. c must be a NETLINK_GENERIC Conn.
func CheckLeasing(c *Conn) (Family, error) {
	f, err := ResolveFamily(c, FamilyName)
	var ke *Error
	if errors.As(err, &ke) && ke.Errno == unix.ENOENT {
		return f, &UnsupportedError{Release: Release(), Why: "it has no netdev generic netlink family"}
	}
	if err != nil {
		return f, err
	}
	if !f.Has(CmdQueueCreate) {
		return f, &UnsupportedError{Release: Release(), Why: fmt.Sprintf("its netdev generic netlink family (version %d) has no queue-create operation", f.Version)}
	}
	return f, nil
}

// GetLink reads the device named name back; c must be a NETLINK_ROUTE
// Conn. A missing device is an *Error with ENODEV.
func GetLink(c *Conn, name string) (Link, error) {
	p, err := c.one("reading device "+name, func(seq uint32) []byte { return GetLinkRequest(seq, name) })
	if err != nil {
		return Link{}, err
	}
	return ParseLink(p)
}

// Create makes the single-device netkit s in c's namespace and reads it
// back. A kernel that made something else (before 7.1 netkit ignores
// IFLA_NETKIT_PAIRING and makes a pair) has it deleted again and is
// refused with an *UnsupportedError. c must be a NETLINK_ROUTE Conn.
func Create(c *Conn, s Spec) (Link, error) {
	if err := s.Check(); err != nil {
		return Link{}, err
	}
	_, err := c.do("creating netkit "+s.Name, func(seq uint32) []byte {
		b, _ := NewLinkRequest(seq, s)
		return b
	})
	var ke *Error
	if errors.As(err, &ke) {
		switch {
		case ke.Errno == unix.EEXIST:
			return Link{}, fmt.Errorf("netkit: a device named %s already exists in the namespace: %w", s.Name, err)
		case ke.Errno == unix.EOPNOTSUPP && strings.Contains(ke.Msg, "Unknown device type"):
			return Link{}, fmt.Errorf("netkit: this kernel (%s): %w: %w", Release(), ErrNoDriver, err)
		}
	}
	if err != nil {
		return Link{}, err
	}
	l, err := GetLink(c, s.Name)
	if err != nil {
		return Link{}, fmt.Errorf("netkit: reading back the netkit %s just created (it may be left behind): %w", s.Name, err)
	}
	if !l.Single() || l.RxQueues != uint32(1+s.Queues) {
		derr := DeleteLink(c, l.Index)
		what := "a netkit pair"
		if l.Kind != "netkit" {
			what = "a " + l.Kind + " device"
		} else if l.Single() {
			what = fmt.Sprintf("a single-device netkit with %d receive queues", l.RxQueues)
		}
		err := &UnsupportedError{Release: Release(), Why: fmt.Sprintf("asked for a single-device netkit with %d receive queues, it made %s (IFLA_NETKIT_PAIRING ignored)", 1+s.Queues, what)}
		if derr != nil {
			return Link{}, errors.Join(err, fmt.Errorf("netkit: deleting %s again: %w", s.Name, derr))
		}
		return Link{}, err
	}
	return l, nil
}

// DeleteLink deletes the device whose index is ifindex (a netkit pair
// with its peer); c must be a NETLINK_ROUTE Conn.
func DeleteLink(c *Conn, ifindex int32) error {
	_, err := c.do(fmt.Sprintf("deleting device %d", ifindex), func(seq uint32) []byte { return DelLinkRequest(seq, ifindex) })
	return err
}

// DeleteSingle deletes the single-device netkit name if it is still the
// one of index ifindex, and says whether it did: a device that is gone
// is no error, one that is no longer that netkit is left alone and
// refused.
func DeleteSingle(c *Conn, name string, ifindex int32) (bool, error) {
	l, err := GetLink(c, name)
	if errors.Is(err, unix.ENODEV) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if l.Index != ifindex || !l.Single() {
		return false, fmt.Errorf("netkit: %s is no longer the single-device netkit %d vrss made (index %d, kind %q): left alone", name, ifindex, l.Index, l.Kind)
	}
	return true, DeleteLink(c, ifindex)
}

// NSID returns the id that c's namespace gives the namespace nsfd refers
// to, assigning one if it has none (RTM_NEWNSID, as `ip netns set` does:
// the id stays with the namespaces). c must be a NETLINK_ROUTE Conn.
func NSID(c *Conn, nsfd int) (int32, error) {
	get := func() (int32, error) {
		p, err := c.one("reading a namespace id", func(seq uint32) []byte { return GetNSIDRequest(seq, nsfd) })
		if err != nil {
			return 0, err
		}
		return ParseNSID(p)
	}
	id, err := get()
	if err != nil || id >= 0 {
		return id, err
	}
	_, err = c.do("assigning a namespace id", func(seq uint32) []byte { return NewNSIDRequest(seq, nsfd) })
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return 0, err
	}
	if id, err = get(); err == nil && id < 0 {
		err = errors.New("netkit: the namespace still has no id after RTM_NEWNSID")
	}
	return id, err
}

// QueueDrivers are the drivers whose queues can be leased in Linux 7.2:
// those with queue-management operations (netdev_queue_mgmt_ops).
const QueueDrivers = "gve, mlx5, bnxt, fbnic, netdevsim"

// ErrCannotLease says the NIC's driver has no queue-management
// operations, which a lease needs.
var ErrCannotLease = errors.New("the driver cannot lease queues")

// LeaseError is a refused lease, explained.
type LeaseError struct {
	Dev   string
	Queue uint32
	Why   string
	Err   *Error
}

// Error names the queue and device, why, and the kernel's own words.
func (e *LeaseError) Error() string {
	s := fmt.Sprintf("netkit: leasing queue %d of %s: %s", e.Queue, e.Dev, e.Why)
	if e.Err.Msg != "" {
		s += fmt.Sprintf(" (kernel: %s, %v)", e.Err.Msg, e.Err.Errno)
	} else {
		s += fmt.Sprintf(" (kernel: %v)", e.Err.Errno)
	}
	return s
}

// Unwrap gives the kernel's refusal, and ErrCannotLease when it is that.
func (e *LeaseError) Unwrap() []error {
	if e.Err.Errno == unix.EINVAL && strings.Contains(e.Err.Msg, "does not support queue management") {
		return []error{e.Err, ErrCannotLease}
	}
	return []error{e.Err}
}

// explainLease turns the kernel's refusal of l (Linux 7.1's checks, in
// net/core/netdev-genl.c and netdev_queues.c) into a LeaseError.
func explainLease(dev string, l Lease, e *Error) error {
	why := "refused"
	switch {
	case e.Errno == unix.EINVAL && strings.Contains(e.Msg, "does not support queue management"):
		why = fmt.Sprintf("%s's driver cannot lease queues (only drivers with queue-management operations can: %s)", dev, QueueDrivers)
	case e.Errno == unix.EINVAL && strings.Contains(e.Msg, "is a virtual device"):
		why = fmt.Sprintf("%s is a virtual device (veth, bridge, ...): only a NIC's queues can be leased", dev)
	case e.Errno == unix.EINVAL && strings.Contains(e.Msg, "removed"):
		why = fmt.Sprintf("%s has been removed", dev)
	case e.Errno == unix.ERANGE:
		why = fmt.Sprintf("%s has no receive queue %d", dev, l.Queue)
	case e.Errno == unix.EBUSY:
		why = fmt.Sprintf("queue %d of %s is in use (an AF_XDP socket, another lease or a memory provider)", l.Queue, dev)
	case e.Errno == unix.ENODEV:
		why = fmt.Sprintf("no device %s (ifindex %d) in its namespace, or no netkit %d", dev, l.PhysIfindex, l.Ifindex)
	case e.Errno == unix.ENONET:
		why = fmt.Sprintf("the netkit's namespace knows no namespace id %d", l.NetnsID)
	case e.Errno == unix.EPERM:
		why = "CAP_NET_ADMIN is needed"
	case e.Errno == unix.EOPNOTSUPP:
		why = "netkit refused it"
	}
	return &LeaseError{Dev: dev, Queue: l.Queue, Why: why, Err: e}
}

// LeaseQueue creates a receive queue of the netkit l.Ifindex leasing
// queue l.Queue of dev (l.PhysIfindex) and returns the new queue's id;
// c must be a NETLINK_GENERIC Conn in the netkit's namespace and family
// the netdev family (CheckLeasing).
func LeaseQueue(c *Conn, family Family, dev string, l Lease) (uint32, error) {
	if !family.Has(CmdQueueCreate) {
		return 0, &UnsupportedError{Release: Release(), Why: "its netdev generic netlink family has no queue-create operation"}
	}
	p, err := c.one(fmt.Sprintf("leasing queue %d of %s", l.Queue, dev), func(seq uint32) []byte { return QueueCreateRequest(seq, family.ID, l) })
	var ke *Error
	if errors.As(err, &ke) {
		return 0, explainLease(dev, l, ke)
	}
	if err != nil {
		return 0, err
	}
	return ParseQueueCreate(p)
}

// ThreadNetns opens the calling thread's network namespace, for NSID.
func ThreadNetns() (*os.File, error) {
	return os.Open("/proc/thread-self/ns/net")
}
