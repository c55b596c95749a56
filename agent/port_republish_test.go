package agent_test

import (
	"context"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/vrss-dev/vrss/agent"
	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/agent/client"
	"github.com/vrss-dev/vrss/internal/inject"
	"github.com/vrss-dev/vrss/port"
	"github.com/vrss-dev/vrss/portxdp"
)

// XDP actions BPF_PROG_TEST_RUN returns.
const (
	xdpDrop     = 1
	xdpPass     = 2
	xdpRedirect = 4
)

// setKilled restarts vrssd so that it dies (EnvFault point) in the port
// set that set makes, after publishing the policy into the pinned program
// and before saving it, and waits until it is gone: the set's client gets
// no answer.
func setKilled(t *testing.T, d *daemon, point string, set func(*client.Client) error) {
	t.Helper()
	d.stop()
	d.env = []string{agent.EnvFault + "=" + point}
	d.start()
	c := d.dial()
	err := set(c)
	c.Close()
	if err == nil {
		t.Fatalf("the set was answered; vrssd should have died at %s", point)
	}
	<-d.exited
	d.env = nil
}

// setPolicy is a set of name's policy to pol, for setKilled.
func setPolicy(name string, pol port.Policy) func(*client.Client) error {
	return func(c *client.Client) error {
		_, err := c.PortSet(context.Background(), name, pol)
		return err
	}
}

// TestPortRepublishTAP: vrssd is SIGKILLed after publishing a TAP's new
// port policy into the pinned program and before saving it, so that the
// program enforces the new policy, the record the old. Once restarted,
// vrssd shows the old policy and the frames the VMM writes are judged by
// it, not by the one the interrupted set published.
func TestPortRepublishTAP(t *testing.T) {
	d := newDaemon(t, "")
	c := d.dial()
	ctx := context.Background()
	if _, err := c.Create(ctx, api.CreateArgs{Name: "rp0", Queues: 2}); err != nil {
		t.Fatal(err)
	}
	saved, interrupted := portPolicy(1), portPolicy(2)
	if _, err := c.PortSet(ctx, "rp0", saved); err != nil {
		t.Fatal(err)
	}
	h, err := c.Open(ctx, "rp0")
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	c.Close()

	// Frames on which the two policies disagree: without some, the test
	// could not tell them apart.
	run := portFrames(t, saved, 21, 1500)
	other, err := port.New(interrupted)
	if err != nil {
		t.Fatal(err)
	}
	differ := 0
	for i, b := range run.frames {
		if other.Check(b).Verdict != run.want[i].Verdict {
			differ++
		}
	}
	if differ == 0 {
		t.Fatal("the two policies judge every frame alike")
	}

	setKilled(t, d, "port-published", setPolicy("rp0", interrupted))
	// The worst moment: the pinned program enforces the interrupted set's
	// policy (BPF_PROG_TEST_RUN), the record names the saved one.
	prog, err := portxdp.LoadPinned(filepath.Join(d.bpffsDir, "rp0"))
	if err != nil {
		t.Fatal(err)
	}
	for i, b := range run.frames[:200] {
		act, err := prog.Run(b)
		want := uint32(xdpDrop)
		if other.Check(b).Verdict == port.VerdictPass {
			want = xdpPass
		}
		if err != nil || act != want {
			t.Fatalf("frame %d in the pinned program after the kill: action %d, %v; the interrupted policy's is %d", i, act, err, want)
		}
	}
	prog.Close()

	d.start()
	c = d.dial()
	defer c.Close()
	if info, err := c.PortShow(ctx, "rp0"); err != nil || info.Policy == nil || len(info.Policy.MACs) != len(saved.MACs) || info.Policy.MACs[0] != saved.MACs[0] {
		t.Fatalf("port show after the restart: %+v, %v; want the saved policy", info, err)
	}
	var far *inject.Capture
	d.inNS(func() { far = openFrameCapture(t, "rp0") })
	run.send(t, h.Queues, h.TAP.VnetHdrLen, far)
	t.Logf("after the restart: %d frames judged by the saved policy (%d of them judged otherwise by the interrupted set's)", len(run.frames), differ)
}

// TestPortRepublishAFXDP: as TestPortRepublishTAP for an AF_XDP port on
// queues 1-2 of a veth: after the kill between publish and save and a
// restart, the pinned program (BPF_PROG_TEST_RUN, as frames arriving on
// queue 1) passes the frames the saved policy allows and drops those only
// the interrupted set's allows.
func TestPortRepublishAFXDP(t *testing.T) {
	d := newDaemon(t, "")
	var ifindex int
	d.inNS(func() {
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "rpout", NumTxQueues: 4, NumRxQueues: 4}, PeerName: "rpin", PeerNumTxQueues: 4, PeerNumRxQueues: 4}
		if err := netlink.LinkAdd(v); err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"rpin", "rpout"} {
			l, err := netlink.LinkByName(n)
			if err == nil {
				err = netlink.LinkSetUp(l)
			}
			if err != nil {
				t.Fatal(err)
			}
			if n == "rpin" {
				ifindex = l.Attrs().Index
			}
		}
	})
	c := d.dial()
	ctx := context.Background()
	if _, err := c.AFXDPCreate(ctx, api.AFXDPCreateArgs{Name: "rx0", Dev: "rpin", QueueStart: 1, Queues: 2}); err != nil {
		t.Fatal(err)
	}
	policy := func(addr string) port.Policy {
		return port.Policy{MACs: []port.MAC{afxdpGuestMAC}, IPv4: []netip.Prefix{netip.MustParsePrefix(addr + "/32")}, Default: port.Allow}
	}
	saved, interrupted := policy("10.9.0.1"), policy("10.9.0.2")
	if _, err := c.PortSet(ctx, "rx0", saved); err != nil {
		t.Fatal(err)
	}
	c.Close()
	toSaved, toInterrupted := afxdpFrame(1, 1, "10.9.0.1"), afxdpFrame(1, 2, "10.9.0.2")
	// What the pinned program does with each frame: allowed, it goes to
	// the queue's socket (or the stack if the map has none); denied, it
	// is dropped.
	judge := func(what string, allowed, denied []byte) {
		t.Helper()
		prog, err := portxdp.LoadPinned(filepath.Join(d.bpffsDir, "afxdp", "rx0"))
		if err != nil {
			t.Fatal(err)
		}
		defer prog.Close()
		d.inNS(func() {
			if act, err := prog.RunQueue(allowed, ifindex, 1); err != nil || act != xdpRedirect && act != xdpPass {
				t.Fatalf("%s: the allowed frame: action %d, %v; want it passed", what, act, err)
			}
			if act, err := prog.RunQueue(denied, ifindex, 1); err != nil || act != xdpDrop {
				t.Fatalf("%s: the denied frame: action %d, %v; want it dropped", what, act, err)
			}
		})
	}
	judge("the saved policy", toSaved, toInterrupted)

	setKilled(t, d, "afxdp-published", setPolicy("rx0", interrupted))
	judge("after the kill (the interrupted set's policy)", toInterrupted, toSaved)

	d.start()
	c = d.dial()
	defer c.Close()
	if info, err := c.PortShow(ctx, "rx0"); err != nil || info.Policy == nil || len(info.Policy.IPv4) != 1 || info.Policy.IPv4[0] != saved.IPv4[0] {
		t.Fatalf("port show after the restart: %+v, %v; want the saved policy", info, err)
	}
	judge("after the restart", toSaved, toInterrupted)
}
