package agent_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/internal/demo"
	"github.com/vrss-dev/vrss/internal/inject"
	"github.com/vrss-dev/vrss/rss"
	"github.com/vrss-dev/vrss/tap"
)

// openByName opens n queues of TAP name in the daemon's namespace the
// way libvirt does for an unmanaged TAP (TUNSETIFF with IFF_MULTI_QUEUE
// and IFF_VNET_HDR, once per queue) and returns them.
func (d *daemon) openByName(name string, n int) (*tap.Device, []*os.File) {
	d.t.Helper()
	var dev *tap.Device
	var err error
	d.inNS(func() { dev, err = tap.Open(name, n, 12) })
	if err != nil {
		d.t.Fatal(err)
	}
	d.t.Cleanup(func() { dev.Close() })
	qs := make([]*os.File, n)
	for i := range qs {
		qs[i] = dev.Queue(i)
	}
	return dev, qs
}

// sendUnread injects frames into the TAP and drains its queues without
// looking at them: traffic while steering is, perhaps, detached.
func (d *daemon) sendUnread(ifindex int, queues []*os.File, n int) {
	d.t.Helper()
	var inj *inject.Injector
	var err error
	d.inNS(func() { inj, err = inject.Open(ifindex) })
	if err != nil {
		d.t.Fatal(err)
	}
	defer inj.Close()
	if err := inj.SendBatch(demo.Frames(n, 1, 99)); err != nil {
		d.t.Fatal(err)
	}
	buf := make([]byte, 65536)
	for _, q := range queues {
		q.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		for {
			if _, err := q.Read(buf); err != nil {
				break
			}
		}
		q.SetReadDeadline(time.Time{})
	}
}

func (d *daemon) tapInfo(name string) api.TAP {
	d.t.Helper()
	taps, err := d.dial().List(ctx)
	if err != nil {
		d.t.Fatal(err)
	}
	for _, t := range taps {
		if t.Name == name {
			return t
		}
	}
	d.t.Fatalf("no TAP %s in %+v", name, taps)
	return api.TAP{}
}

// TestOpenByName is the libvirt path (issue: a VMM that opens the TAP by
// name got no steered frames): vrssd holds only a disabled control
// queue, so the queues a process opens by name are the ones steering
// picks; QEMU's detaches (at reset, with its queue changes) are undone
// by vrssd, an operator's detach is respected, and restarts of vrssd,
// with the VMM running or not, keep all of it.
func TestOpenByName(t *testing.T) {
	const vmm = 4242
	d := newDaemon(t, "")
	c := d.dial()
	tp, err := c.Create(ctx, api.CreateArgs{Name: "lv0", Queues: 4, OwnerUID: ptrTo(vmm), OwnerGID: ptrTo(vmm)})
	if err != nil {
		t.Fatal(err)
	}
	cfg := rss.Config{HashTypes: rss.AllHashTypes, Key: rss.DefaultKey, Table: rss.WeightedTable(128, []int{5, 3, 1, 1})}
	if _, err := c.SetRSS(ctx, "lv0", cfg); err != nil {
		t.Fatal(err)
	}
	if tt := d.tuntap("lv0"); tt.Queues != 0 || tt.DisabledQueues != 1 {
		t.Fatalf("before the VMM: numqueues %d numdisabled %d, want 0 and vrssd's disabled control queue", tt.Queues, tt.DisabledQueues)
	}

	dev, qs := d.openByName("lv0", 4)
	per := d.steerCheck(tp.Index, qs, 12, cfg, 31)
	t.Logf("opened by name: frames per queue %v", per)
	if ti := d.tapInfo("lv0"); ti.AttachedQueues != 4 || !ti.HeldElsewhere || !ti.Steering || ti.Problem != "" {
		t.Fatalf("list while held by name: %+v", ti)
	}

	// The VMM detaches the program with no queue change (as QEMU 7.2 does
	// with rss='on' when the device is created), once vrssd's delayed
	// re-attach after the queue changes above is past; the next frames
	// tell vrssd, which attaches it again.
	time.Sleep(300 * time.Millisecond)
	if err := tap.SetSteeringFD(fdOf(t, qs[0]), -1); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for d.tapInfo("lv0").Reattached == 0 {
		if time.Now().After(deadline) {
			t.Fatal("a detach behind vrssd's back was not undone")
		}
		d.sendUnread(tp.Index, qs, 40)
		time.Sleep(100 * time.Millisecond)
	}
	d.steerCheck(tp.Index, qs, 12, cfg, 32)

	// QEMU detaches when its guest changes the queue pairs: the queue
	// changes alone make vrssd attach it again, before any frame flows.
	before := d.tapInfo("lv0").Reattached
	if err := tap.SetSteeringFD(fdOf(t, qs[0]), -1); err != nil {
		t.Fatal(err)
	}
	if err := dev.SetQueueEnabled(3, false); err != nil {
		t.Fatal(err)
	}
	if err := dev.SetQueueEnabled(3, true); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	d.steerCheck(tp.Index, qs, 12, cfg, 33)
	if got := d.tapInfo("lv0").Reattached; got != before {
		t.Fatalf("the queue-change path went through the frame check (%d re-attachments, %d before)", got, before)
	}

	// An operator's detach is respected.
	if _, err := c.Detach(ctx, "lv0"); err != nil {
		t.Fatal(err)
	}
	d.sendUnread(tp.Index, qs, 200)
	time.Sleep(600 * time.Millisecond)
	d.sendUnread(tp.Index, qs, 200)
	if ti := d.tapInfo("lv0"); ti.Steering || ti.Reattached != before {
		t.Fatalf("after vrss tap detach: %+v", ti)
	}
	if _, err := c.Attach(ctx, "lv0"); err != nil {
		t.Fatalf("attach while the VMM holds every queue: %v", err)
	}
	d.steerCheck(tp.Index, qs, 12, cfg, 34)

	// A second process opening it by name is reported.
	_, extra := d.openByName("lv0", 1)
	if ti := d.tapInfo("lv0"); !strings.Contains(ti.Problem, "more than one process") {
		t.Fatalf("five queues on a 4-queue TAP: %+v", ti)
	}
	extra[0].Close()

	// vrssd restarts under a running VMM: nothing moves.
	c.Close()
	d.stop()
	d.start()
	c = d.dial()
	d.steerCheck(tp.Index, qs, 12, cfg, 35)

	// The VMM goes; vrssd restarts while it is down and takes no queue
	// that steering could pick; the VMM comes back by name.
	dev.Close()
	c.Close()
	d.stop()
	d.start()
	c = d.dial()
	if tt := d.tuntap("lv0"); tt.Queues != 0 || tt.DisabledQueues != 1 {
		t.Fatalf("restarted with the VMM down: numqueues %d numdisabled %d", tt.Queues, tt.DisabledQueues)
	}
	_, qs = d.openByName("lv0", 4)
	d.steerCheck(tp.Index, qs, 12, cfg, 36)
}

func ptrTo(v int) *int { return &v }

// fdOf is f's descriptor, without switching f to blocking mode.
func fdOf(t *testing.T, f *os.File) uintptr {
	rc, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var fd uintptr
	rc.Control(func(v uintptr) { fd = v })
	return fd
}

// vrssd opening its control queue (at a restart, here) leaves alone the
// vnet header length a VMM holding the other queues has set: the length
// is the device's, for every queue.
func TestControlQueueKeepsVnetHdrLen(t *testing.T) {
	d := newDaemon(t, "")
	if _, err := d.dial().Create(ctx, api.CreateArgs{Name: "vh0", Queues: 2}); err != nil {
		t.Fatal(err)
	}
	_, qs := d.openByName("vh0", 2)
	// The guest negotiated hash reports: QEMU sets 20.
	if err := unix.IoctlSetPointerInt(int(fdOf(t, qs[0])), unix.TUNSETVNETHDRSZ, 20); err != nil {
		t.Fatal(err)
	}
	d.stop()
	d.start()
	n, err := unix.IoctlGetInt(int(fdOf(t, qs[1])), unix.TUNGETVNETHDRSZ)
	if err != nil || n != 20 {
		t.Fatalf("after vrssd restarted under the VMM: vnet header length %d, %v; want the VMM's 20", n, err)
	}
}

// A client whose daemon went away reconnects once it is back, even after
// a reconnect failed meanwhile.
func TestClientReconnectsAfterRestart(t *testing.T) {
	d := newDaemon(t, "")
	c := d.dial()
	if _, err := c.List(ctx); err != nil {
		t.Fatal(err)
	}
	d.stop()
	if _, err := c.List(ctx); err == nil {
		t.Fatal("a call with vrssd stopped succeeded")
	}
	if _, err := c.List(ctx); err == nil {
		t.Fatal("a second call with vrssd stopped succeeded")
	}
	d.start()
	if _, err := c.List(ctx); err != nil {
		t.Fatalf("after vrssd came back: %v", err)
	}
}
