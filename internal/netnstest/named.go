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
	err := func() error {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			return err
		}
		defer orig.Close()
		defer func() {
			if netns.Set(orig) == nil {
				runtime.UnlockOSThread()
			}
		}()
		ns, err := netns.NewNamed(name)
		if err != nil {
			return err
		}
		ns.Close()
		lo, err := netlink.LinkByName("lo")
		if err == nil {
			err = netlink.LinkSetUp(lo)
		}
		if err != nil {
			return fmt.Errorf("lo up: %w", err)
		}
		err = os.WriteFile("/proc/sys/net/ipv6/conf/default/disable_ipv6", []byte("1"), 0)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("disable IPv6: %w", err)
		}
		return nil
	}()
	path := filepath.Join("/var/run/netns", name)
	t.Cleanup(func() { Delete(path) })
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
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer func() {
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
	}()
	return fn()
}
