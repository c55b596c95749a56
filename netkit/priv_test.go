//go:build linux

package netkit

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/internal/netnstest"
)

// EnvLeaseNIC names a NIC for TestLeaseNIC (the e2e guest's eth0).
const EnvLeaseNIC = "VRSS_NETKIT_NIC"

func dial(t *testing.T, proto int) *Conn {
	t.Helper()
	c, err := Dial(proto)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// netkits lists the netkit devices of the calling thread's namespace.
func netkits(t *testing.T) []string {
	t.Helper()
	ls, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range ls {
		if l.Type() == "netkit" {
			out = append(out, l.Attrs().Name)
		}
	}
	return out
}

// The kernel's answer to the feature check and to a single-device create:
// before 7.1 both are refused and nothing is left: the check with
// ErrNoLeasing, the create with ErrNoDriver on a kernel without netkit
// (this machine's 6.18) or with ErrNoLeasing on one with netkit (which
// ignores IFLA_NETKIT_PAIRING and makes a pair: it is deleted again); from
// 7.1 the family has queue-create and the device is single, with
// 1+queues receive queues, and is deleted again.
func TestKernel(t *testing.T) {
	netnstest.Run(t, func() {
		g, r := dial(t, unix.NETLINK_GENERIC), dial(t, unix.NETLINK_ROUTE)
		fam, ferr := CheckLeasing(g)
		leasing := ferr == nil
		if !leasing && !errors.Is(ferr, ErrNoLeasing) {
			t.Fatalf("CheckLeasing: %v", ferr)
		}
		if fam.ID == 0 {
			t.Fatalf("the netdev family did not resolve: %+v, %v", fam, ferr)
		}
		t.Logf("RESULT kernel %s: netdev family id %d, version %d, ops %v; leasing: %v", Release(), fam.ID, fam.Version, fam.Ops, ferr)
		if !leasing && !strings.Contains(ferr.Error(), "Linux 7.1 or later is needed for netkit queue leasing (this kernel: "+Release()) {
			t.Fatalf("refusal %q", ferr)
		}

		l, err := Create(r, Spec{Name: "nkt0", Queues: 2})
		if leasing {
			if err != nil || !l.Single() || l.RxQueues != 3 || l.Name != "nkt0" {
				t.Fatalf("Create on a kernel with leasing: %+v, %v", l, err)
			}
			if _, err := Create(r, Spec{Name: "nkt0", Queues: 1}); err == nil || !strings.Contains(err.Error(), "already exists") {
				t.Fatalf("a second create of nkt0: %v", err)
			}
			if ok, err := DeleteSingle(r, "nkt0", l.Index); err != nil || !ok {
				t.Fatal(err)
			}
			t.Logf("RESULT created single-device netkit nkt0 (%d receive queues), a second refused, deleted", l.RxQueues)
		} else if !errors.Is(err, ErrNoDriver) && (!errors.Is(err, ErrNoLeasing) || !strings.Contains(err.Error(), "it made a netkit pair (IFLA_NETKIT_PAIRING ignored)")) {
			t.Fatalf("Create on a kernel without leasing: %+v, %v", l, err)
		} else {
			t.Logf("RESULT create refused: %v", err)
		}
		if left := netkits(t); len(left) != 0 {
			t.Fatalf("netkit devices left: %v", left)
		}
		if ok, err := DeleteSingle(r, "nkt0", 1); err != nil || ok {
			t.Fatalf("deleting what is gone: %v, %v", ok, err)
		}
	})
}

// NSID assigns the root namespace an id in a new namespace once, and
// reads the same id the second time.
func TestNSID(t *testing.T) {
	root, err := ThreadNetns()
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	netnstest.Run(t, func() {
		r := dial(t, unix.NETLINK_ROUTE)
		a, err := NSID(r, int(root.Fd()))
		if err != nil || a < 0 {
			t.Fatalf("NSID: %d, %v", a, err)
		}
		b, err := NSID(r, int(root.Fd()))
		if err != nil || b != a {
			t.Fatalf("NSID again: %d, %v (first %d)", b, err, a)
		}
		if _, err := NSID(r, int(os.Stdin.Fd())); !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.EBADF) {
			t.Logf("a descriptor that is no namespace: %v", err)
		}
	})
}

// TestLeaseNIC runs where EnvLeaseNIC names a NIC and the kernel can
// lease (the e2e guest, Debian sid's kernel, a virtio_net NIC): a
// single-device netkit in a new namespace leases the NIC's queue 1 (the
// NIC in the namespace the test started in), which a driver without
// queue-management operations refuses with ErrCannotLease, explained;
// the same in one namespace; the netkit is deleted and nothing is left.
// Run with -test.v to see the refusals.
func TestLeaseNIC(t *testing.T) {
	nic := os.Getenv(EnvLeaseNIC)
	if nic == "" {
		t.Skipf("set %s to a NIC to lease from (the e2e guest does)", EnvLeaseNIC)
	}
	phys, err := netlink.LinkByName(nic)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: ifindex %d, driver kind %q, %d receive queues; kernel %s", nic, phys.Attrs().Index, phys.Type(), phys.Attrs().NumRxQueues, Release())
	g := dial(t, unix.NETLINK_GENERIC)
	fam, err := CheckLeasing(g)
	if err != nil {
		t.Fatalf("CheckLeasing: %v", err)
	}
	t.Logf("RESULT family: netdev id %d version %d, queue-create present", fam.ID, fam.Version)
	root, err := ThreadNetns()
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()

	lease := func(r, g *Conn, where string, nsid int32) {
		l, err := Create(r, Spec{Name: "nkvm0", Queues: 2})
		if err != nil {
			t.Fatalf("%s: Create: %v", where, err)
		}
		if !l.Single() || l.RxQueues != 3 {
			t.Fatalf("%s: created %+v", where, l)
		}
		t.Logf("RESULT %s: created single-device netkit %s (ifindex %d, %d receive queues, mode %d)", where, l.Name, l.Index, l.RxQueues, l.Mode)
		q, err := LeaseQueue(g, fam, nic, Lease{Ifindex: uint32(l.Index), PhysIfindex: uint32(phys.Attrs().Index), Queue: 1, NetnsID: nsid})
		var le *LeaseError
		if err == nil || !errors.Is(err, ErrCannotLease) || !errors.As(err, &le) || le.Err.Errno != unix.EINVAL ||
			!strings.Contains(err.Error(), nic+"'s driver cannot lease queues") {
			t.Fatalf("%s: leasing queue 1 of %s: queue %d, %v; want the refusal of a driver without queue-management operations", where, nic, q, err)
		}
		t.Logf("RESULT %s: lease refused: %v", where, err)
		// The refusal left the netkit as it was: still single, no
		// queue added (its real queue count is not in RTM_NEWLINK; a
		// lease would be at queue 1, which a second refusal shows free).
		if again, err := GetLink(r, "nkvm0"); err != nil || again.Index != l.Index || !again.Single() {
			t.Fatalf("%s: after the refusal: %+v, %v", where, again, err)
		}
		if ok, err := DeleteSingle(r, "nkvm0", l.Index); err != nil || !ok {
			t.Fatalf("%s: delete: %v", where, err)
		}
		if _, err := GetLink(r, "nkvm0"); !errors.Is(err, unix.ENODEV) {
			t.Fatalf("%s: after the delete: %v", where, err)
		}
		if left := netkits(t); len(left) != 0 {
			t.Fatalf("%s: netkit devices left: %v", where, left)
		}
		t.Logf("RESULT %s: deleted, no netkit left", where)
	}

	netnstest.Run(t, func() {
		r, g := dial(t, unix.NETLINK_ROUTE), dial(t, unix.NETLINK_GENERIC)
		nsid, err := NSID(r, int(root.Fd()))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("RESULT the NIC's namespace has id %d in the netkit's", nsid)
		lease(r, g, "another namespace", nsid)

		// A virtual device's queues are refused as such.
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "nkv0", NumRxQueues: 2, NumTxQueues: 2}, PeerName: "nkv1"}
		if err := netlink.LinkAdd(v); err != nil {
			t.Fatal(err)
		}
		veth, err := netlink.LinkByName("nkv0")
		if err != nil {
			t.Fatal(err)
		}
		l, err := Create(r, Spec{Name: "nkvm1", Queues: 1})
		if err != nil {
			t.Fatal(err)
		}
		_, err = LeaseQueue(g, fam, "nkv0", Lease{Ifindex: uint32(l.Index), PhysIfindex: uint32(veth.Attrs().Index), Queue: 1, NetnsID: NSIDNotAssigned})
		if err == nil || errors.Is(err, ErrCannotLease) || !strings.Contains(err.Error(), "nkv0 is a virtual device") {
			t.Fatalf("leasing a veth's queue: %v", err)
		}
		t.Logf("RESULT a veth's queue: lease refused: %v", err)
		if ok, err := DeleteSingle(r, "nkvm1", l.Index); err != nil || !ok {
			t.Fatal(err)
		}
	})
	lease(dial(t, unix.NETLINK_ROUTE), g, "the NIC's namespace", NSIDNotAssigned)
}
