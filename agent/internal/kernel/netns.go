package kernel

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/internal/fd"
	"github.com/vrss-dev/vrss/tap"
)

// NetnsID identifies a network namespace: the device and inode of its
// nsfs file, which every path naming it (/var/run/netns/NAME,
// /proc/PID/ns/net) shares.
type NetnsID struct{ Dev, Ino uint64 }

// Netns is a network namespace opened by path. Its descriptor keeps the
// namespace alive until Close.
type Netns struct {
	Path string
	ID   NetnsID
	fd   *fd.FD
}

// StatNetns identifies the namespace path names without opening it (a
// path a client names may be anything: a FIFO's open would block).
func StatNetns(path string) (NetnsID, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return NetnsID{}, err
	}
	return NetnsID{Dev: st.Dev, Ino: st.Ino}, nil
}

// OwnNetns identifies the network namespace of the calling thread.
func OwnNetns() (NetnsID, error) { return StatNetns("/proc/thread-self/ns/net") }

// ErrNotNetns: the path names no network namespace.
var ErrNotNetns = errors.New("not a network namespace")

// OpenNetns opens the network namespace at path, which must be one
// (NS_GET_NSTYPE).
func OpenNetns(path string) (*Netns, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		// nsfs files are regular; this refuses FIFOs before an open.
		return nil, fmt.Errorf("%s: %w", path, ErrNotNetns)
	}
	raw, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	f := fd.New(raw)
	if t, err := unix.IoctlRetInt(raw, unix.NS_GET_NSTYPE); err != nil || t != unix.CLONE_NEWNET {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, ErrNotNetns)
	}
	if err := unix.Fstat(raw, &st); err != nil {
		f.Close()
		return nil, err
	}
	return &Netns{Path: path, ID: NetnsID{Dev: st.Dev, Ino: st.Ino}, fd: f}, nil
}

// Close lets the namespace go; a nil Netns is no error.
func (n *Netns) Close() error {
	if n == nil {
		return nil
	}
	return n.fd.Close()
}

// Do runs fn on a locked OS thread inside the namespace, then switches
// the thread back. A descriptor fn opens (a TAP queue, a netlink socket)
// stays bound to the namespace. If the thread cannot be switched back it
// stays locked, and the runtime discards it when its goroutine exits.
func (n *Netns) Do(fn func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("current network namespace: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(netns.NsHandle(n.fd.Int())); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("entering network namespace %s: %w", n.Path, err)
	}
	defer func() {
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
	}()
	return fn()
}

// In returns the TAPs of the namespace ns: every operation runs in it.
// Link updates are not watched there (WatchLinks fails).
func (Host) In(ns *Netns) TAPs { return hostIn{ns} }

// hostIn is Host in another network namespace.
type hostIn struct{ ns *Netns }

// do runs fn in the namespace and returns its results.
func do[T any](ns *Netns, fn func() (T, error)) (T, error) {
	var v T
	err := ns.Do(func() error {
		var err error
		v, err = fn()
		return err
	})
	return v, err
}

func (h hostIn) In(ns *Netns) TAPs { return hostIn{ns} }

func (h hostIn) Create(o tap.Options) (Queues, error) {
	return do(h.ns, func() (Queues, error) { return Host{}.Create(o) })
}

func (h hostIn) Open(name string, n, vnetHdrLen int) (Queues, error) {
	return do(h.ns, func() (Queues, error) { return Host{}.Open(name, n, vnetHdrLen) })
}

func (h hostIn) OpenQueue(name string, vnetHdr bool) (Queues, error) {
	return do(h.ns, func() (Queues, error) { return Host{}.OpenQueue(name, vnetHdr) })
}

func (h hostIn) Delete(name string) error {
	return h.ns.Do(func() error { return Host{}.Delete(name) })
}

func (h hostIn) SetNoqueue(name string) error {
	return h.ns.Do(func() error { return Host{}.SetNoqueue(name) })
}

func (h hostIn) LinkByName(name string) (*Link, error) {
	return do(h.ns, func() (*Link, error) { return Host{}.LinkByName(name) })
}

func (h hostIn) LinkByIndex(index int) (*Link, error) {
	return do(h.ns, func() (*Link, error) { return Host{}.LinkByIndex(index) })
}

func (h hostIn) Links() ([]*Link, error) {
	return do(h.ns, func() ([]*Link, error) { return Host{}.Links() })
}

func (h hostIn) WatchLinks(ch chan<- LinkUpdate, _ <-chan struct{}, _ func(error)) error {
	close(ch)
	return errors.New("link updates are watched in vrssd's own network namespace only")
}

// InspectQueue runs in the namespace, so that SameNetns compares the
// queue's device with it.
func (h hostIn) InspectQueue(q *fd.FD) (QueueInfo, error) {
	return do(h.ns, func() (QueueInfo, error) { return Host{}.InspectQueue(q) })
}
