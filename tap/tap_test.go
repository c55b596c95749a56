package tap

import (
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/internal/netnstest"
	"github.com/vrss-dev/vrss/internal/privtest"
)

// inNetns runs fn in a fresh network namespace after checking privileges.
func inNetns(t *testing.T, fn func()) {
	t.Helper()
	privtest.Require(t, "tap")
	netnstest.Run(t, fn)
}

func tuntap(t *testing.T, name string) *netlink.Tuntap {
	t.Helper()
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	tt, ok := l.(*netlink.Tuntap)
	if !ok {
		t.Fatalf("%s is a %s, want tuntap", name, l.Type())
	}
	return tt
}

func TestCreate(t *testing.T) {
	inNetns(t, func() {
		d, err := Create(Options{Queues: 4, VnetHdrLen: 12, Offloads: unix.TUN_F_CSUM | unix.TUN_F_TSO4, Up: true})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		if !strings.HasPrefix(d.Name(), "vrss") {
			t.Errorf("name %q, want the kernel's pick from vrss%%d", d.Name())
		}
		if d.NumQueues() != 4 {
			t.Errorf("NumQueues %d, want 4", d.NumQueues())
		}
		tt := tuntap(t, d.Name())
		a := tt.Attrs()
		if a.Index != d.Index() || d.Index() <= 1 {
			t.Errorf("Index %d, netlink says %d", d.Index(), a.Index)
		}
		if a.Flags&net.FlagUp == 0 {
			t.Error("link is not up")
		}
		if tt.Mode != netlink.TUNTAP_MODE_TAP {
			t.Errorf("mode %v, want tap", tt.Mode)
		}
		want := netlink.TUNTAP_MULTI_QUEUE | netlink.TUNTAP_VNET_HDR | netlink.TUNTAP_NO_PI
		if tt.Flags&want != want {
			t.Errorf("flags %v, want %v set", tt.Flags, want)
		}
		if tt.Queues != 4 || !tt.NonPersist {
			t.Errorf("netlink: %d queues, non-persistent %v; want 4, true", tt.Queues, tt.NonPersist)
		}

		// Closing the last queue of a non-persistent device removes it.
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := netlink.LinkByName(d.Name()); err == nil {
			t.Errorf("%s still exists after Close", d.Name())
		}
	})
}

func TestPersistOpenDelete(t *testing.T) {
	inNetns(t, func() {
		d, err := Create(Options{Name: "vrsspersist", Queues: 2, VnetHdrLen: 12, Persist: true, Owner: 4242, Group: 4343})
		if err != nil {
			t.Fatal(err)
		}
		if tt := tuntap(t, "vrsspersist"); tt.Owner != 4242 || tt.Group != 4343 {
			t.Errorf("owner %d group %d, want 4242 4343", tt.Owner, tt.Group)
		}
		index := d.Index()
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		if tt := tuntap(t, "vrsspersist"); tt.NonPersist || tt.Queues != 0 {
			t.Fatalf("after Close: non-persistent %v, %d queues; want false, 0", tt.NonPersist, tt.Queues)
		}

		d, err = Open("vrsspersist", 3, 12)
		if err != nil {
			t.Fatal(err)
		}
		if d.NumQueues() != 3 || d.Index() != index || d.Name() != "vrsspersist" {
			t.Errorf("Open: %d queues, index %d, name %q; want 3, %d, vrsspersist", d.NumQueues(), d.Index(), d.Name(), index)
		}
		if tt := tuntap(t, "vrsspersist"); tt.Queues != 3 {
			t.Errorf("netlink: %d queues attached, want 3", tt.Queues)
		}

		if err := Delete("vrsspersist"); err != nil {
			t.Fatal(err)
		}
		if _, err := netlink.LinkByName("vrsspersist"); err == nil {
			t.Error("device still exists after Delete")
		}
		// The queue fds outlive the device but are detached from it.
		if _, err := d.Queue(0).Write(make([]byte, 60+12)); !errors.Is(err, unix.EBADFD) {
			t.Errorf("write after Delete: %v, want EBADFD", err)
		}
		d.Close()

		if err := Delete("vrsspersist"); err == nil {
			t.Error("Delete of a missing device succeeded")
		}
		if err := Delete("lo"); err == nil || !strings.Contains(err.Error(), "not a TAP device") {
			t.Errorf("Delete(lo): %v, want a refusal", err)
		}
	})
}

// TestOpenVnetHdrMismatch pins down that IFF_VNET_HDR belongs to the device:
// the first queue attached sets it and later attaches cannot change it, so
// Open must refuse a vnetHdrLen that disagrees.
func TestOpenVnetHdrMismatch(t *testing.T) {
	inNetns(t, func() {
		d, err := Create(Options{Name: "vrssflags", Queues: 1, VnetHdrLen: 12, Persist: true})
		if err != nil {
			t.Fatal(err)
		}
		defer Delete("vrssflags")
		_, err = Open("vrssflags", 1, 0)
		t.Logf("Open without vnet header: %v", err)
		if err == nil || !strings.Contains(err.Error(), "has a vnet header") {
			t.Errorf("Open without a vnet header on a device with one: %v", err)
		}
		if tt := tuntap(t, "vrssflags"); tt.Flags&netlink.TUNTAP_VNET_HDR == 0 {
			t.Error("vnet header flag lost")
		}

		// With no queue attached, the next attach decides again.
		d.Close()
		d, err = Open("vrssflags", 1, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		if tt := tuntap(t, "vrssflags"); tt.Flags&netlink.TUNTAP_VNET_HDR != 0 {
			t.Error("vnet header still on after reattaching without it")
		}
	})
}

func TestSetQueueEnabled(t *testing.T) {
	inNetns(t, func() {
		d, err := Create(Options{Queues: 4})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		check := func(queues, disabled int) {
			t.Helper()
			tt := tuntap(t, d.Name())
			if tt.Queues != queues || tt.DisabledQueues != disabled {
				t.Errorf("netlink: %d queues, %d disabled; want %d, %d", tt.Queues, tt.DisabledQueues, queues, disabled)
			}
		}
		if err := d.SetQueueEnabled(3, false); err != nil {
			t.Fatal(err)
		}
		check(3, 1)
		err = d.SetQueueEnabled(3, false)
		if err == nil || !strings.Contains(err.Error(), "TUNSETQUEUE") {
			t.Errorf("disabling a disabled queue: %v, want a TUNSETQUEUE error", err)
		}
		if err := d.SetQueueEnabled(3, true); err != nil {
			t.Fatal(err)
		}
		check(4, 0)
	})
}

func TestBadOptions(t *testing.T) {
	// Validation happens before any syscall, so no privileges are needed.
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{Queues: 0}, "0 queues: want 1 to 256"},
		{Options{Queues: 257}, "257 queues: want 1 to 256"},
		{Options{Queues: 1, VnetHdrLen: 7}, "vnet header length 7"},
		{Options{Queues: 1, Offloads: unix.TUN_F_CSUM}, "Offloads need a vnet header"},
	} {
		d, err := Create(tc.o)
		if err == nil {
			d.Close()
			t.Errorf("Create(%+v) succeeded", tc.o)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Create(%+v): %v, want %q", tc.o, err, tc.want)
		}
	}
	if _, err := Open("", 1, 0); err == nil {
		t.Error("Open without a name succeeded")
	}
}

func TestCreateBadName(t *testing.T) {
	inNetns(t, func() {
		_, err := Create(Options{Name: "a-name-longer-than-15", Queues: 1})
		if err == nil || !strings.Contains(err.Error(), "device name") {
			t.Errorf("long name: %v", err)
		}
	})
}

func TestCreateExisting(t *testing.T) {
	inNetns(t, func() {
		// A single-queue TAP, created by hand as other software would.
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		ifr, _ := unix.NewIfreq("vrsssingle")
		ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			t.Fatal(err)
		}

		_, err = Create(Options{Name: "vrsssingle", Queues: 2})
		t.Logf("Create: %v", err)
		if !errors.Is(err, unix.EBUSY) || !strings.Contains(err.Error(), "TUNSETIFF vrsssingle") || !strings.Contains(err.Error(), "already exists") {
			t.Errorf("Create on an existing name: %v", err)
		}
		_, err = Open("vrsssingle", 2, 0)
		t.Logf("Open: %v", err)
		if !errors.Is(err, unix.EINVAL) || !strings.Contains(err.Error(), "not a multi-queue TAP") {
			t.Errorf("Open of a single-queue TAP: %v", err)
		}
		if _, err := Open("lo", 1, 0); !errors.Is(err, unix.EINVAL) {
			t.Errorf("Open(lo): %v, want EINVAL", err)
		}
		// The failed attempts left the existing device and its fd alone.
		if tt := tuntap(t, "vrsssingle"); tt.Flags&netlink.TUNTAP_MULTI_QUEUE != 0 {
			t.Errorf("vrsssingle turned multi-queue: %v", tt.Flags)
		}
		if err := unix.IoctlIfreq(fd, unix.TUNGETIFF, ifr); err != nil || ifr.Name() != "vrsssingle" {
			t.Errorf("TUNGETIFF on the original fd: %v, %q", err, ifr.Name())
		}
	})
}

func TestReadDeadline(t *testing.T) {
	inNetns(t, func() {
		d, err := Create(Options{Queues: 2, Up: true})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		q := d.Queue(1)
		start := time.Now()
		q.SetReadDeadline(start.Add(50 * time.Millisecond))
		_, err = q.Read(make([]byte, 2048))
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Read on an idle queue: %v, want a deadline error", err)
		}
		if el := time.Since(start); el < 40*time.Millisecond || el > 2*time.Second {
			t.Errorf("deadline fired after %v, want about 50ms", el)
		}

		// Close wakes a blocked reader.
		q.SetReadDeadline(time.Time{})
		done := make(chan error, 1)
		go func() {
			_, err := d.Queue(0).Read(make([]byte, 2048))
			done <- err
		}()
		time.Sleep(20 * time.Millisecond)
		d.Queue(0).Close()
		select {
		case err := <-done:
			if !errors.Is(err, os.ErrClosed) {
				t.Errorf("Read after Close: %v, want os.ErrClosed", err)
			}
		case <-time.After(2 * time.Second):
			t.Error("Close did not wake the reader")
		}
	})
}

func TestSetSteeringErrors(t *testing.T) {
	inNetns(t, func() {
		d, err := Create(Options{Queues: 2})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()

		// Detaching when nothing is attached is fine.
		if err := d.DetachSteering(); err != nil {
			t.Errorf("DetachSteering without a program: %v", err)
		}

		err = d.SetSteering(1 << 20) // far above any open fd
		t.Logf("bad fd: %v", err)
		if !errors.Is(err, unix.EBADF) || !strings.Contains(err.Error(), "TUNSETSTEERINGEBPF "+d.Name()) {
			t.Errorf("SetSteering(bad fd): %v, want EBADF", err)
		}

		null, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		defer null.Close()
		err = d.SetSteering(int(null.Fd()))
		t.Logf("not a program: %v", err)
		if !errors.Is(err, unix.EINVAL) || !strings.Contains(err.Error(), "not a BPF socket filter program") {
			t.Errorf("SetSteering(/dev/null): %v, want EINVAL", err)
		}

		// The low-level form on a file that is no TAP queue.
		err = SetSteeringFD(null.Fd(), -1)
		t.Logf("not a queue: %v", err)
		if !errors.Is(err, unix.ENOTTY) {
			t.Errorf("SetSteeringFD(/dev/null): %v, want ENOTTY", err)
		}
	})
}
