package netnstest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/vrss-dev/vrss/internal/privtest"
)

// named counts the namespaces Named made, for unique names.
var named atomic.Int64

// Named makes a fresh network namespace with a path, as `ip netns add`
// does (/var/run/netns/NAME, a bind mount of the namespace), with lo up
// and IPv6 off for new interfaces as in Do, and returns its path. The
// calling thread stays in its namespace. The namespace is deleted (its
// path unmounted and removed) when the test ends, unless the test did it
// with Delete; t is skipped without namespaces (see privtest).
func Named(t testing.TB) string {
	t.Helper()
	privtest.Require(t, "netns")
	name := fmt.Sprintf("vrss-test-%d-%d", os.Getpid(), named.Add(1))
	path := filepath.Join("/var/run/netns", name)
	t.Cleanup(func() { Delete(path) })
	err := onThread(func() error {
		ns, err := netns.NewNamed(name) // and enters it
		if err != nil {
			return err
		}
		ns.Close()
		return setup(func() error { return nil })
	})
	if err != nil {
		t.Fatalf("netnstest: named namespace %s: %v", name, err)
	}
	return path
}

// Delete deletes the namespace Named made at path, as `ip netns delete`
// does: the namespace goes once nothing else holds it. A path already gone
// is no error.
func Delete(path string) error {
	err := netns.DeleteNamed(filepath.Base(path))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// In runs fn on a locked OS thread inside the namespace at path, then
// switches the thread back (see Do).
func In(path string, fn func() error) error {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return err
	}
	defer ns.Close()
	return onThread(func() error {
		if err := netns.Set(ns); err != nil {
			return err
		}
		return fn()
	})
}

// Link looks the device name up in the namespace at path: nil, and no
// error, if there is none.
func Link(path, name string) (netlink.Link, error) {
	var l netlink.Link
	err := In(path, func() error {
		var err error
		l, err = netlink.LinkByName(name)
		if errors.As(err, &netlink.LinkNotFoundError{}) {
			return nil
		}
		return err
	})
	return l, err
}

// Tuntap looks the TUN or TAP device name up in the namespace at path:
// nil if there is none (or it is another kind of device). An error fails t.
func Tuntap(t testing.TB, path, name string) *netlink.Tuntap {
	t.Helper()
	l, err := Link(path, name)
	if err != nil {
		t.Fatal(err)
	}
	tt, _ := l.(*netlink.Tuntap)
	return tt
}

// onThread runs fn, which may switch namespaces, on a locked OS thread,
// then switches the thread back to its namespace; if it cannot, the
// thread stays locked and the runtime discards it with its goroutine.
func onThread(fn func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netnstest: current namespace: %w", err)
	}
	defer orig.Close()
	defer func() {
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
	}()
	return fn()
}
