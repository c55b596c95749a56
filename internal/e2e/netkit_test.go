package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/vrss-dev/vrss/internal/inject"
	"github.com/vrss-dev/vrss/internal/netnstest"
	"github.com/vrss-dev/vrss/internal/privtest"
	"github.com/vrss-dev/vrss/tap"
)

// netkitBudget is what TestE2ENetkit may take once sid's kernel is cached.
const netkitBudget = 3 * time.Minute

// TestE2ENetkit boots Debian sid's kernel (Linux 7.2) on a 4-queue
// virtio-net NIC and runs package netkit's kernel tests in the guest
// (RunNetkit): the netdev family has queue-create, a single-device
// netkit is created (in the NIC's namespace and in another), the lease
// of the NIC's queue 1 is refused because virtio_net has no
// queue-management operations, the refusal is explained, and the netkit
// is deleted with nothing left. Then an AF_XDP port on Linux 7.2
// (afxdp72.go): vrssd makes it on the NIC's enabled queues, uid 4242 sets
// its sockets up and binds them, vrssd inserts them once bound (7.2
// refuses them unbound), and the frames the host sends arrive on the
// sockets of the queues they came in on, the denied ones counted by
// reason. Gated like TestE2E (VRSS_E2E=1).
func TestE2ENetkit(t *testing.T) {
	rep, took := runNetkit(t, false)
	// The AF_XDP step: a port on Linux 7.2, which refuses unbound
	// sockets in an XSKMAP, works through vrssd's pending sockets.
	if rep.AFXDP != nil {
		fmt.Print(rep.AFXDP)
	}
	if rep.AFXDP == nil || rep.AFXDPErr != nil {
		t.Errorf("the AF_XDP port on 7.2: %v", rep.AFXDPErr)
	}
	for _, want := range []string{"lease refused", "created single-device netkit", "deleted, no netkit left"} {
		if !strings.Contains(strings.Join(rep.Results, "\n"), want) {
			t.Errorf("the guest reported no %q", want)
		}
	}
	if took-rep.Prepare > netkitBudget {
		t.Errorf("boot and test took %v, over the %v budget", took-rep.Prepare, netkitBudget)
	}
}

// TestE2ENetkitBefore71 boots bookworm-backports' cloud kernel (6.12:
// netkit without queue leasing) the same way: the netdev family has no
// queue-create, netkit.Create's single device comes out as a pair (the
// kernel ignores IFLA_NETKIT_PAIRING) and is deleted again with
// ErrNoLeasing, and vrssd refuses --netkit as needing Linux 7.1, leaving
// nothing. Gated like TestE2E (VRSS_E2E=1).
func TestE2ENetkitBefore71(t *testing.T) {
	runNetkit(t, true)
}

// runNetkit runs RunNetkit on a fresh 4-queue TAP and fails t unless its
// report is OK.
func runNetkit(t *testing.T, before71 bool) (*NetkitReport, time.Duration) {
	if os.Getenv(EnvE2E) != "1" {
		t.Skipf("real-guest end-to-end test (downloads a Debian kernel, boots QEMU): set %s=1", EnvE2E)
	}
	for _, need := range []string{"root", "tap", "netns"} {
		privtest.Require(t, need)
	}
	start := time.Now()
	// The TAP lives in a throwaway namespace: its queues stay usable
	// outside, and the device goes with them.
	var d *tap.Device
	var inj *inject.Injector // the AF_XDP step's sender (afxdp72.go), on 7.2
	err := netnstest.Do(func() error {
		var err error
		if d, err = tap.Create(tap.Options{Name: "vrssnk0", Queues: 4, VnetHdrLen: 12}); err != nil || before71 {
			return err
		}
		// Up for the host's frames; opened in the TAP's namespace, the
		// sender sends there from anywhere.
		l, err := netlink.LinkByIndex(d.Index())
		if err == nil {
			err = netlink.LinkSetUp(l)
		}
		if err == nil {
			inj, err = inject.Open(d.Index())
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if inj != nil {
		defer inj.Close()
	}
	var files []*os.File
	for i := range d.NumQueues() {
		files = append(files, d.Queue(i))
	}
	rep, err := RunNetkit(NetkitOptions{Log: os.Stdout, TapFiles: files, ConsoleLog: filepath.Join(t.TempDir(), "console.log"), Before71: before71, QEMU: os.Getenv("VRSS_E2E_QEMU"), AFXDPInject: inj})
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	fmt.Printf("%s\n  whole test %v (budget %v once cached)\n", rep, took.Round(time.Millisecond), netkitBudget)
	if !rep.OK() {
		t.Fatal("the guest's netkit tests failed")
	}
	return rep, took
}
