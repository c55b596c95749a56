package agent_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/agent/client"
	"github.com/vrss-dev/vrss/internal/diffcorpus"
	"github.com/vrss-dev/vrss/internal/inject"
	"github.com/vrss-dev/vrss/internal/netnstest"
	"github.com/vrss-dev/vrss/port"
	"github.com/vrss-dev/vrss/portxdp"
)

// Port security through vrssd: a real daemon, real TAPs, frames written
// into the queue fds as a VMM writes them (a zeroed virtio-net header
// first), and clients as other uids.

// portPolicy is the tests' policy: random addresses and a twelve-rule ACL
// (diffcorpus.PortPolicy), and 192.0.2.0/24.
func portPolicy(seed uint64) port.Policy {
	pol := diffcorpus.PortPolicy(rand.New(rand.NewPCG(14, seed)), 12)
	pol.IPv4 = append(pol.IPv4, netip.MustParsePrefix("192.0.2.0/24"))
	return pol
}

// portRun is a batch of frames for one policy and the reference's
// counters of them.
type portRun struct {
	frames [][]byte
	want   []port.Result
	ref    port.Counters
}

// portFrames draws n frames tun takes (an Ethernet header at least) for
// pol, judged by the reference.
func portFrames(t *testing.T, pol port.Policy, seed uint64, n int) *portRun {
	t.Helper()
	f, err := port.New(pol)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(15, seed))
	run := &portRun{}
	for len(run.frames) < n {
		b := diffcorpus.PortFrame(r, &pol)
		if len(b) < 14 {
			continue
		}
		res := f.Check(b)
		run.frames, run.want = append(run.frames, b), append(run.want, res)
		run.ref.Add(res)
	}
	return run
}

// openFrameCapture opens a capture of device name in the calling thread's
// namespace, closed when t ends.
func openFrameCapture(t *testing.T, name string) *inject.Capture {
	t.Helper()
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	c, err := inject.OpenCapture(l.Attrs().Index)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// send writes run's frames into the queues (non-blocking, as QEMU's), a
// zeroed virtio-net header of hdrLen bytes before each, and checks what
// arrived on far: every frame the reference passes, once, and none it
// drops.
func (run *portRun) send(t *testing.T, queues []*os.File, hdrLen int, far *inject.Capture) {
	t.Helper()
	hdr := make([]byte, hdrLen)
	for i, b := range run.frames {
		rc, err := queues[i%len(queues)].SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var werr error
		rc.Write(func(fd uintptr) bool {
			_, werr = unix.Writev(int(fd), [][]byte{hdr, b})
			return !errors.Is(werr, unix.EAGAIN)
		})
		if werr != nil && !errors.Is(werr, unix.EINVAL) {
			t.Fatalf("frame %d: write: %v", i, werr)
		}
	}
	got := far.Drain()
	for i, b := range run.frames {
		k := string(b)
		switch {
		case run.want[i].Verdict == port.VerdictPass && got[k] == 0:
			t.Errorf("frame %d (%v) passed by the reference, never arrived: %x", i, run.want[i].Reason, b)
		case run.want[i].Verdict == port.VerdictDrop && got[k] > 0:
			t.Errorf("frame %d (%v) dropped by the reference, arrived: %x", i, run.want[i].Reason, b)
		}
		got[k]--
	}
	for k, n := range got {
		if n > 0 {
			t.Errorf("%d unexpected arrivals of %x", n, k)
		}
	}
}

// wantPortStats fails t unless st counts exactly ref's frames, by reason
// and by rule, for pol.
func wantPortStats(t *testing.T, what string, st api.PortStats, ref port.Counters, pol port.Policy) {
	t.Helper()
	if st.Reasons != api.PortReasons(ref.Reasons) || st.Passed != ref.Passed() || st.Dropped != ref.Dropped() || len(st.Rules) != len(pol.Rules) {
		t.Fatalf("%s: counted %v (passed %d, dropped %d), the reference %v (%d, %d)", what, st.Reasons, st.Passed, st.Dropped, ref.Reasons, ref.Passed(), ref.Dropped())
	}
	for i, r := range st.Rules {
		if r.Index != i || r.Rule != pol.Rules[i].String() || r.Hits != ref.Rules[i] {
			t.Fatalf("%s: rule %d: %+v, want %q with %d hits", what, i, r, pol.Rules[i], ref.Rules[i])
		}
	}
}

// add adds o's counts to c.
func addCounters(c *port.Counters, o port.Counters) {
	for i := range c.Reasons {
		c.Reasons[i] += o.Reasons[i]
	}
	for i := range c.Rules {
		c.Rules[i] += o.Rules[i]
	}
}

// TestPortSecurity: an admin sets a TAP's port policy and vrssd enforces
// it on the frames its VMM writes, counting each as the reference does;
// the owner reads it but may not change it, anyone else finds nothing; bad
// policies change nothing; restarts keep it enforced and its counters, pins
// lost while vrssd was stopped are made anew from the saved policy, a
// program detached behind vrssd's back is attached again, a hostile port
// file stops the start, and clear and delete remove everything.
func TestPortSecurity(t *testing.T) {
	const admin, owner, stranger = 4242, 4343, 4444
	d := newDaemon(t, `{"admin": {"uids": [4242]}}`)
	c := d.dial()
	if _, err := c.Create(ctx, api.CreateArgs{Name: "ps0", Queues: 2, OwnerUID: ptr(owner), OwnerGID: ptr(owner)}); err != nil {
		t.Fatal(err)
	}
	pol := portPolicy(1)
	set := mustJSON(api.PortSetArgs{Name: "ps0", Policy: pol})
	named := mustJSON(api.NameArgs{Name: "ps0"})

	// Who may do what.
	if r := d.asUser(owner, "call", helperArgs{Op: api.OpPortShow, Args: named}); r.Error != nil || !strings.Contains(string(r.Result), `"policy":null`) {
		t.Fatalf("the owner's show before any policy: %+v", r)
	}
	wantDenied(t, "the owner's set", d.asUser(owner, "call", helperArgs{Op: api.OpPortSet, Args: set}))
	for _, op := range []api.Op{api.OpPortShow, api.OpPortStats, api.OpPortClear} {
		wantHidden(t, "a stranger's "+string(op), d.asUser(stranger, "call", helperArgs{Op: op, Args: named}))
	}
	wantHidden(t, "a stranger's set", d.asUser(stranger, "call", helperArgs{Op: api.OpPortSet, Args: set}))
	var info api.PortInfo
	if r := d.asUser(admin, "call", helperArgs{Op: api.OpPortSet, Args: set}); r.Error != nil || json.Unmarshal(r.Result, &info) != nil || !info.Attached || info.Generation != 1 {
		t.Fatalf("the admin's set: %+v", r)
	}
	wantDenied(t, "the owner's clear", d.asUser(owner, "call", helperArgs{Op: api.OpPortClear, Args: named}))
	wantDenied(t, "the owner's set over the admin's", d.asUser(owner, "call", helperArgs{Op: api.OpPortSet, Args: mustJSON(api.PortSetArgs{Name: "ps0", Policy: portPolicy(2)})}))
	var st api.PortStats
	if r := d.asUser(owner, "call", helperArgs{Op: api.OpPortStats, Args: named}); r.Error != nil || json.Unmarshal(r.Result, &st) != nil || !st.Attached {
		t.Fatalf("the owner's stats: %+v", r)
	}
	if r := d.asUser(owner, "call", helperArgs{Op: api.OpPortShow, Args: named}); r.Error != nil || json.Unmarshal(r.Result, &info) != nil || info.Policy == nil || len(info.Policy.Rules) != len(pol.Rules) {
		t.Fatalf("the owner's show: %+v", r)
	}

	// The VMM's frames, judged as the reference judges them.
	h, err := c.Open(ctx, "ps0")
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var far *inject.Capture
	d.inNS(func() { far = openFrameCapture(t, "ps0") })
	var total port.Counters
	batch := func(seed uint64, what string) {
		t.Helper()
		run := portFrames(t, pol, seed, 1500)
		run.send(t, h.Queues, h.TAP.VnetHdrLen, far)
		addCounters(&total, run.ref)
		st, err := c.PortStats(ctx, "ps0")
		if err != nil {
			t.Fatal(err)
		}
		wantPortStats(t, what, st, total, pol)
		t.Logf("%s: %d frames, %d passed and arrived, %d dropped and counted", what, len(run.frames), run.ref.Passed(), run.ref.Dropped())
	}
	batch(1, "the admin's policy")

	// Bad policies, each refused, and the active one judges on.
	tap := pol
	tap.Uplink = "ps0"
	multicast := pol
	multicast.MACs = []port.MAC{{0x01, 0, 0x5e, 0, 0, 1}}
	hostBits := pol
	hostBits.IPv4 = append(hostBits.IPv4[:len(hostBits.IPv4):len(hostBits.IPv4)], netip.PrefixFrom(netip.MustParseAddr("198.51.100.7"), 24))
	nowhere := pol
	nowhere.Uplink = "nosuch0"
	for _, b := range []struct {
		name string
		pol  port.Policy
		want string
	}{
		{"a multicast MAC", multicast, "multicast"},
		{"host bits in a prefix", hostBits, "host bits"},
		{"an uplink that does not exist", nowhere, "no such device"},
		{"the TAP as its own uplink", tap, "TUN/TAP"},
		{"too many rules", func() port.Policy {
			p := pol
			for len(p.Rules) <= port.MaxRules {
				p.Rules = append(p.Rules, pol.Rules[0])
			}
			return p
		}(), "too many"},
	} {
		_, err := c.PortSet(ctx, "ps0", b.pol)
		var ae *api.Error
		if !errors.As(err, &ae) || ae.Code != api.CodeInvalidConfig || !strings.Contains(ae.Message, b.want) {
			t.Fatalf("%s: %v, want invalid_config saying %q", b.name, err, b.want)
		}
	}
	if info, err := c.PortShow(ctx, "ps0"); err != nil || info.Generation != 1 || !info.Attached {
		t.Fatalf("after the refusals: %+v, %v", info, err)
	}
	batch(2, "after refused policies")

	// A restart: the policy is enforced meanwhile and after, and the
	// counters go on.
	c.Close()
	d.stop()
	run := portFrames(t, pol, 3, 500)
	run.send(t, h.Queues, h.TAP.VnetHdrLen, far)
	addCounters(&total, run.ref)
	d.start()
	c = d.dial()
	if st, err := c.PortStats(ctx, "ps0"); err != nil {
		t.Fatal(err)
	} else {
		wantPortStats(t, "after a restart", st, total, pol)
	}
	batch(4, "after a restart")

	// The pins lost while vrssd was stopped: enforced anew by the saved
	// policy (with counters from zero).
	c.Close()
	d.stop()
	pinDir := filepath.Join(d.bpffsDir, "ps0")
	if err := portxdp.Unpin(pinDir); err != nil {
		t.Fatal(err)
	}
	d.start()
	c = d.dial()
	if !strings.Contains(d.log(), "attached it anew with the saved policy") {
		t.Error("vrssd did not say it attached the port program anew")
	}
	total = port.Counters{}
	batch(5, "after losing the pins")

	// Detached behind vrssd's back: attached again within seconds.
	d.inNS(func() {
		l, err := link.LoadPinnedLink(filepath.Join(pinDir, portxdp.PinLink), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		if err := l.Detach(); err != nil {
			t.Fatal(err)
		}
	})
	waitFor(t, "the port program attached again", func() bool {
		info, err := c.PortShow(ctx, "ps0")
		return err == nil && info.Attached
	})
	// vrssd's log reaches the test through a pipe: wait for the line.
	waitFor(t, "vrssd saying it attached the port program again", func() bool {
		return strings.Contains(d.log(), "the port-security program was not attached")
	})
	batch(6, "after a detach behind vrssd's back")

	// A hostile port file stops the start, naming the file.
	c.Close()
	d.stop()
	file := filepath.Join(d.stateDir, "flows", "ps0.port.json")
	good, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	elsewhere := filepath.Join(d.dir, "port-elsewhere.json")
	os.WriteFile(elsewhere, good, 0o600)
	os.Remove(file)
	os.Symlink(elsewhere, file)
	d.startFails("is a symbolic link")
	os.Remove(file)
	for _, b := range []struct{ from, to, want string }{
		{`"name":"ps0"`, `"name":"ps1"`, "not of"},
		{`"name":"ps0"`, `"name":"ps0","owner":0`, "unknown field"},
		{`"default":"`, `"defaults":"`, "default: must be allow or deny"},
		{`"ipv4":[`, `"ipv4":["198.51.100.7/24",`, "host bits set"},
	} {
		bad := strings.Replace(string(good), b.from, b.to, 1)
		if bad == string(good) {
			t.Fatalf("%q is not in the port file %s", b.from, good)
		}
		os.WriteFile(file, []byte(bad), 0o600)
		d.startFails(b.want)
	}
	os.WriteFile(file, append(good, make([]byte, 300<<10)...), 0o600)
	d.startFails("over")
	os.WriteFile(file, good, 0o600)
	d.start()
	c = d.dial()
	batch(7, "after the hostile files")

	// Clear: detached, pins and file gone; set again, then delete the TAP.
	if err := c.PortClear(ctx, "ps0"); err != nil {
		t.Fatal(err)
	}
	if info, err := c.PortShow(ctx, "ps0"); err != nil || info.Policy != nil || info.Attached {
		t.Fatalf("after clear: %+v, %v", info, err)
	}
	d.inNS(func() {
		l, err := netlink.LinkByName("ps0")
		if err != nil || l.Attrs().Xdp != nil && l.Attrs().Xdp.Attached {
			t.Fatalf("XDP on the TAP after clear: %+v, %v", l.Attrs().Xdp, err)
		}
	})
	if exists(filepath.Join(pinDir, portxdp.PinProg)) || exists(file) {
		t.Fatal("pins or the port file left after clear")
	}
	if _, err := c.PortSet(ctx, "ps0", pol); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, "ps0"); err != nil {
		t.Fatal(err)
	}
	if exists(pinDir) || exists(file) {
		t.Fatal("pins or the port file left after delete")
	}
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// TestPortUplink: a TAP in another network namespace, whose policy names
// an uplink there (a veth): the frames the policy passes arrive on the
// veth's peer by the fast path, and none on the stack; an uplink of
// vrssd's own namespace is no device of the TAP's.
func TestPortUplink(t *testing.T) {
	d := newDaemon(t, "")
	pod := netnstest.Named(t)
	c := d.dial()
	pc := c.Netns(pod)
	if _, err := c.Create(ctx, api.CreateArgs{Name: "up0", Queues: 2, Netns: pod}); err != nil {
		t.Fatal(err)
	}
	pass, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, License: "Dual BSD/GPL", Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2), asm.Return()}})
	if err != nil {
		t.Fatal(err)
	}
	defer pass.Close()
	peer := uplinkVeth(t, pod, pass)
	var stack *inject.Capture
	netnstest.In(pod, func() error { stack = openFrameCapture(t, "up0"); return nil })
	d.inNS(func() {
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "onlyhere0"}, PeerName: "onlyhere1"}); err != nil {
			t.Fatal(err)
		}
	})
	pol := portPolicy(3)
	pol.Uplink = "onlyhere0"
	if _, err := pc.PortSet(ctx, "up0", pol); err == nil || !strings.Contains(err.Error(), "no such device in network namespace "+pod) {
		t.Fatalf("an uplink of vrssd's namespace: %v", err)
	}
	pol.Uplink = "vrssup0"
	if info, err := pc.PortSet(ctx, "up0", pol); err != nil || !info.Attached || info.Netns != pod {
		t.Fatalf("set: %+v, %v", info, err)
	}
	h, err := pc.Open(ctx, "up0")
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	run := portFrames(t, pol, 8, 1500)
	run.send(t, h.Queues, h.TAP.VnetHdrLen, peer)
	if n := len(stack.Drain()); n != 0 {
		t.Errorf("%d kinds of frames reached the stack besides the uplink", n)
	}
	st, err := pc.PortStats(ctx, "up0")
	if err != nil {
		t.Fatal(err)
	}
	wantPortStats(t, "through the uplink", st, run.ref, pol)
	if st.Redirected != run.ref.Passed() || st.Uplink != "vrssup0" || st.Netns != pod {
		t.Fatalf("%d redirected, %d passed; %+v", st.Redirected, run.ref.Passed(), st)
	}
	t.Logf("%d frames: %d redirected to the uplink's peer, %d dropped", len(run.frames), st.Redirected, st.Dropped)

	// The uplink deleted and made again (a new ifindex): the fast path
	// follows it within seconds.
	if err := netnstest.In(pod, func() error { return netlink.LinkDel(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "vrssup0"}}) }); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the fast path without its uplink", func() bool { return strings.Contains(d.log(), "ifindex=0") })
	peer = uplinkVeth(t, pod, pass)
	waitFor(t, "the fast path on the new uplink", func() bool { return strings.Count(d.log(), "the port policy's uplink changed") == 2 })
	run = portFrames(t, pol, 9, 500)
	run.send(t, h.Queues, h.TAP.VnetHdrLen, peer)

	// A kill between a set's publish and its save, the set dropping the
	// uplink: after the restart the saved policy, its uplink set again
	// before it is published, judges the frames, and what it passes goes
	// to the uplink, none to the stack.
	c.Close()
	noUplink := portPolicy(4)
	setKilled(t, d, "port-published", func(c *client.Client) error {
		_, err := c.Netns(pod).PortSet(ctx, "up0", noUplink)
		return err
	})
	d.start()
	stack.Drain()
	run = portFrames(t, pol, 10, 500)
	run.send(t, h.Queues, h.TAP.VnetHdrLen, peer)
	if n := len(stack.Drain()); n != 0 {
		t.Errorf("after the restart: %d kinds of frames reached the stack besides the uplink", n)
	}
}

// uplinkVeth makes the veth vrssup0 and its peer vrsspeer0 in the
// namespace at path, with pass (an XDP program that passes every frame)
// on the peer: a veth takes XDP frames for its peer only in NAPI mode,
// which an XDP program on the peer turns on. It returns a capture of the
// peer.
func uplinkVeth(t *testing.T, path string, pass *ebpf.Program) *inject.Capture {
	t.Helper()
	var peer *inject.Capture
	err := netnstest.In(path, func() error {
		up := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "vrssup0"}, PeerName: "vrsspeer0"}
		if err := netlink.LinkAdd(up); err != nil {
			return fmt.Errorf("veth: %w", err)
		}
		p, err := netlink.LinkByName("vrsspeer0")
		if err != nil {
			return fmt.Errorf("peer: %w", err)
		}
		for _, l := range []netlink.Link{up, p} {
			if err := netlink.LinkSetUp(l); err != nil {
				return fmt.Errorf("up: %w", err)
			}
		}
		pl, err := link.AttachXDP(link.XDPOptions{Program: pass, Interface: p.Attrs().Index})
		if err != nil {
			return fmt.Errorf("XDP on the peer: %w", err)
		}
		t.Cleanup(func() { pl.Close() })
		peer = openFrameCapture(t, "vrsspeer0")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return peer
}
