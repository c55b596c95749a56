package fake

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/agent/internal/kernel"
	"github.com/vrss-dev/vrss/internal/fd"
	"github.com/vrss-dev/vrss/rss"
	"github.com/vrss-dev/vrss/steering"
	"github.com/vrss-dev/vrss/tap"
)

func newKernel(t *testing.T) *Kernel {
	k := New()
	t.Cleanup(k.Close)
	return k
}

func counts(t *testing.T, k *Kernel, name string) (int, int) {
	t.Helper()
	l, err := k.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return l.Queues, l.DisabledQueues
}

// A queue stays attached while any descriptor of it is open, wherever it
// went; a device that is not persistent goes with its last queue.
func TestQueuesLiveWhileHeld(t *testing.T) {
	k := newKernel(t)
	q, err := k.Create(tap.Options{Name: "t0", Queues: 2, VnetHdrLen: 12, Owner: 1000, Group: tap.Unowned})
	if err != nil {
		t.Fatal(err)
	}
	l := k.Link("t0")
	if l.Type != "tuntap" || !l.TAP || !l.MultiQueue || !l.VnetHdr || l.Persistent || l.Owner != 1000 || l.Group != kernel.Unset || l.Queues != 2 {
		t.Fatalf("%+v", l)
	}
	if _, err := k.Create(tap.Options{Name: "t0", Queues: 1}); !errors.Is(err, unix.EBUSY) {
		t.Fatalf("a second t0: %v", err)
	}
	if err := q.SetQueueEnabled(1, false); err != nil {
		t.Fatal(err)
	}
	if a, d := counts(t, k, "t0"); a != 1 || d != 1 {
		t.Fatalf("after disabling one: %d enabled, %d disabled", a, d)
	}
	dup, err := fd.DupFile(q.Files()[0])
	if err != nil {
		t.Fatal(err)
	}
	info, err := k.InspectQueue(dup)
	if err != nil || info != (kernel.QueueInfo{Name: "t0", TAP: true, MultiQueue: true, VnetHdrLen: 12, SameNetns: true}) {
		t.Fatalf("inspect: %+v, %v", info, err)
	}
	if name, on := k.QueueOf(dup.Int()); name != "t0" || !on {
		t.Fatalf("QueueOf: %q %v", name, on)
	}
	q.Close()
	if a, d := counts(t, k, "t0"); a != 1 || d != 0 {
		t.Fatalf("with one duplicate held: %d enabled, %d disabled", a, d)
	}
	dup.Close()
	if l, err := k.LinkByName("t0"); !errors.Is(err, kernel.ErrNoDevice) {
		t.Fatalf("a device that is not persistent outlived its queues: %+v", l)
	}
	r, w, _ := os.Pipe()
	defer r.Close()
	defer w.Close()
	pipe, _ := fd.DupFile(r)
	defer pipe.Close()
	if _, err := k.InspectQueue(pipe); !errors.Is(err, kernel.ErrNotQueue) {
		t.Fatalf("a pipe: %v", err)
	}
}

func TestDeleteAndUpdates(t *testing.T) {
	k := newKernel(t)
	ch := make(chan kernel.LinkUpdate, 16)
	stop := make(chan struct{})
	if err := k.WatchLinks(ch, stop, nil); err != nil {
		t.Fatal(err)
	}
	q, err := k.Create(tap.Options{Name: "t0", Queues: 1, Persist: true})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if u := <-ch; u.Deleted || u.Link.Name != "t0" || u.Link.Queues != 1 || !u.Link.Persistent {
		t.Fatalf("create: %+v", u)
	}
	v, err := k.Open("t0", 2, 0)
	if err != nil {
		t.Fatal(err)
	}
	if u := <-ch; u.Link.Queues != 3 {
		t.Fatalf("open: %+v", u.Link)
	}
	v.Close()
	if u := <-ch; u.Link.Queues != 1 {
		t.Fatalf("close: %+v", u.Link)
	}
	if err := k.Delete("t0"); err != nil {
		t.Fatal(err)
	}
	if u := <-ch; !u.Deleted {
		t.Fatalf("delete: %+v", u)
	}
	if err := q.SetQueueEnabled(0, false); !errors.Is(err, unix.EBADFD) {
		t.Fatalf("a queue of a deleted device: %v", err)
	}
	if err := k.Delete("t0"); !errors.Is(err, kernel.ErrNoDevice) {
		t.Fatal(err)
	}
	close(stop)
	select {
	case _, ok := <-ch:
		if ok {
			t.Fatal("an update after stop")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ch not closed")
	}
}

// Programs publish through a memfd as through the real map, and pins are
// files that name them.
func TestProgramsAndPins(t *testing.T) {
	k := newKernel(t)
	p, err := k.Load(false)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := p.Publisher(4)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	cfg := rss.Config{HashTypes: rss.HashTCPv4, Key: rss.DefaultKey, Table: []uint16{3, 2, 1, 0}}
	if err := pub.Publish(cfg); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(rss.Config{HashTypes: rss.HashTCPv4, Key: rss.DefaultKey, Table: []uint16{4}}); err == nil {
		t.Fatal("a queue past the TAP's 4 published")
	}
	// A VMM handed the map publishes through its own mapping.
	m, err := p.DupConfigMap()
	if err != nil {
		t.Fatal(err)
	}
	vmm, err := steering.NewPublisher(m.Int(), 4)
	m.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer vmm.Close()
	if got, err := vmm.Config(); err != nil || !reflect.DeepEqual(got, cfg) || vmm.Generation() != 1 {
		t.Fatalf("through the VMM's mapping: %+v, %v", got, err)
	}

	dir := filepath.Join(t.TempDir(), "t0")
	if err := k.Pin(p, dir); err != nil {
		t.Fatal(err)
	}
	if err := k.Pin(p, dir); !errors.Is(err, os.ErrExist) {
		t.Fatalf("pinning twice: %v", err)
	}
	q, err := k.Create(tap.Options{Name: "t0", Queues: 2, Persist: true})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if err := q.SetSteering(p); err != nil {
		t.Fatal(err)
	}
	id := k.Steering("t0")
	if id == 0 || k.Pinned(dir) != id {
		t.Fatalf("attached %d, pinned %d", id, k.Pinned(dir))
	}
	if got, err := k.Config("t0"); err != nil || !reflect.DeepEqual(got, cfg) {
		t.Fatalf("the TAP's configuration: %+v, %v", got, err)
	}
	k.Transmit("t0", 5)
	p.Close()
	if k.Programs() != 0 {
		t.Fatalf("%d programs open", k.Programs())
	}
	// The program lives on, attached and pinned.
	again, err := k.LoadPinned(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if st, err := again.Stats(); err != nil || st.Queues[0] != 5 {
		t.Fatalf("stats: %+v, %v", st.Queues[:4], err)
	}
	os.WriteFile(filepath.Join(dir, "stats"), []byte("junk"), 0o600)
	if _, err := k.LoadPinned(dir, false); !errors.Is(err, unix.EINVAL) {
		t.Fatalf("a spoiled pin: %v", err)
	}
	if err := k.Unpin(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := k.LoadPinned(dir, false); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("after Unpin: %v", err)
	}
	if err := q.SetSteering(nil); err != nil || k.Steering("t0") != 0 {
		t.Fatalf("detach: %v", err)
	}
	k.FailLoad(unix.EPERM)
	if _, err := k.Load(false); !errors.Is(err, unix.EPERM) {
		t.Fatal(err)
	}
}
