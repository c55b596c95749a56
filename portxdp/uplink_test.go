package portxdp

import (
	"testing"

	"github.com/vrss-dev/vrss/internal/privtest"
	"github.com/vrss-dev/vrss/port"
)

// TestUplinkActions checks the action for a passed frame of a policy that
// names an uplink: pass while no uplink is set (nothing counted as
// redirected), redirect once one is (lo here: BPF_PROG_TEST_RUN only
// reports the action), pass again once it is cleared; a dropped frame is
// dropped throughout.
func TestUplinkActions(t *testing.T) {
	privtest.Require(t, "bpf")
	p := loaded(t, true)
	pol := BenchPolicy()
	pol.Uplink = "lo"
	if err := p.Publish(pol); err != nil {
		t.Fatal(err)
	}
	good := BenchFrame()
	bad := append([]byte(nil), good...)
	bad[26] ^= 0xff
	run := func(step string, b []byte, want uint32) {
		t.Helper()
		if act, err := p.Run(b); err != nil || act != want {
			t.Errorf("%s: action %d (%v), want %d", step, act, err, want)
		}
	}
	run("no uplink", good, 2)
	run("no uplink, spoofed", bad, 1)
	if err := p.SetUplink(1); err != nil {
		t.Fatalf("uplink lo: %v", err)
	}
	run("uplink", good, 4)
	run("uplink, spoofed", bad, 1)
	if err := p.SetUplink(0); err != nil {
		t.Fatal(err)
	}
	run("uplink cleared", good, 2)
	c, err := p.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if c.Redirected != 1 || c.Reasons[port.ACLAllow] != 3 || c.Reasons[port.SrcIPv4] != 2 {
		t.Errorf("counters: %d redirected (want 1), reasons %v", c.Redirected, c.Reasons)
	}
}

// TestNewPublisherWrongMap: a map other than port_config is refused before
// it is mapped, so it is never overwritten.
func TestNewPublisherWrongMap(t *testing.T) {
	privtest.Require(t, "bpf")
	p := loaded(t, false)
	if pub, err := NewPublisher(p.StatsMap.FD()); err == nil {
		pub.Close()
		t.Fatal("NewPublisher took the counters map")
	}
	pub, err := NewPublisher(p.ConfigMap.FD())
	if err != nil {
		t.Fatal(err)
	}
	pub.Close()
}

// loaded loads the debug or production build for t (skipping t without
// BPF, as privtest says) and closes it when t ends.
func loaded(t *testing.T, debug bool) *Program {
	t.Helper()
	privtest.Require(t, "bpf")
	p, err := load(debug)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}
