// Package netnstest runs code inside a fresh, throwaway network namespace,
// so tests and demos can create TAP devices and inject traffic without
// touching the host's interfaces.
//
// A network namespace belongs to an OS thread, not to a goroutine: only the
// goroutine that calls fn runs in the namespace. Goroutines started inside fn
// stay in the original namespace unless they lock a thread and setns
// themselves. File descriptors opened inside (TAP queues, AF_PACKET and
// netlink sockets) stay bound to the namespace they were opened in, so they
// can be used from any goroutine, even after fn returns.
package netnstest

import (
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/vrss-dev/vrss/internal/privtest"
)

// Do runs fn on a locked OS thread inside a fresh network namespace with lo
// up, then switches the thread back. IPv6 is disabled by default for new
// interfaces in the namespace (net.ipv6.conf.default.disable_ipv6=1), so a
// link brought up inside does not emit router solicitations, MLD reports
// and DAD probes that would mix with injected traffic.
//
// The namespace disappears, with any devices in it, once fn has returned and
// the last file descriptor opened inside is closed. If the thread cannot be
// switched back, it stays locked, and the runtime discards it when the
// calling goroutine exits.
func Do(fn func() error) error {
	return onThread(func() error {
		ns, err := netns.New()
		if err != nil {
			return fmt.Errorf("netnstest: new namespace: %w", err)
		}
		defer ns.Close()
		return setup(fn)
	})
}

// setup brings lo up and turns IPv6 off for new interfaces in the
// calling thread's namespace, then runs fn.
func setup(fn func() error) error {
	lo, err := netlink.LinkByName("lo")
	if err == nil {
		err = netlink.LinkSetUp(lo)
	}
	if err != nil {
		return fmt.Errorf("netnstest: lo up: %w", err)
	}
	// /proc/sys/net follows the calling thread's namespace.
	err = os.WriteFile("/proc/sys/net/ipv6/conf/default/disable_ipv6", []byte("1"), 0)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("netnstest: disable IPv6: %w", err)
	}
	return fn()
}

// Run runs fn inside a fresh network namespace as Do does, skipping t when
// namespaces are unavailable (see privtest). fn may call t.Fatal.
//
// Functions registered with t.Cleanup inside fn run after Run returns,
// outside the namespace: use defer for anything that needs the namespace
// (netlink calls, tap.Delete); closing file descriptors is fine either way.
func Run(t testing.TB, fn func()) {
	t.Helper()
	privtest.Require(t, "netns")
	if err := Do(func() error { fn(); return nil }); err != nil {
		t.Fatal(err)
	}
}
