package agent_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/internal/netnstest"
	"github.com/vrss-dev/vrss/port"
	"github.com/vrss-dev/vrss/xsk/xsktest"
)

// TestAFXDPNetns: an AF_XDP port on a veth in another network namespace
// than vrssd's (--netns). Its sockets must be made in that namespace: the
// kernel resolves the ifindex the owner binds to in the socket's
// namespace, and the owner (uid 4242, no capabilities, in neither
// namespace) binds to the port's device by the ifindex open returned.
// Every allowed frame arrives on its queue's socket.
func TestAFXDPNetns(t *testing.T) {
	const owner = 4242
	d := newDaemon(t, "")
	pod := netnstest.Named(t)
	ctx := context.Background()
	var pair *xsktest.Pair
	var snd *xsktest.Sender
	if err := netnstest.In(pod, func() (err error) {
		if pair, err = xsktest.NewPair("xn", 2, false); err != nil {
			return err
		}
		snd, err = pair.NewSender(2)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		netnstest.In(pod, func() error {
			snd.Close()
			return pair.Close()
		})
	})
	// The pair's own redirect program makes way for vrssd's.
	info, err := pair.Redirect.Prog.Info()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := info.ID()
	detachProg(t, id)

	c := d.dial()
	defer c.Close()
	if _, err := c.AFXDPCreate(ctx, api.AFXDPCreateArgs{Name: "np0", Dev: "xnin", QueueStart: 0, Queues: 2, OwnerUID: ptr(owner), OwnerGID: ptr(owner), Netns: pod}); err != nil {
		t.Fatal(err)
	}
	if d.hasIface("xnin") {
		t.Fatal("xnin in vrssd's namespace too: the test would prove nothing")
	}
	pol := port.Policy{MACs: []port.MAC{afxdpGuestMAC}, IPv4: []netip.Prefix{netip.MustParsePrefix("10.9.0.1/32")}, Default: port.Allow}
	if _, err := c.Netns(pod).PortSet(ctx, "np0", pol); err != nil {
		t.Fatal(err)
	}

	stdin, out := startAFXDPOwner(t, d, owner, api.NameArgs{Name: "np0", Netns: pod})

	const perQueue = 100
	want := map[int]int{}
	for q := range 2 {
		var fs [][]byte
		for i := range perQueue {
			f := afxdpFrame(q, i, "10.9.0.1")
			want[afxdpTag(f)] = q
			fs = append(fs, f)
		}
		fs = append(fs, afxdpFrame(q, 900, "10.9.0.2")) // denied: dst_ipv4
		if err := snd.Send(q, fs); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(300 * time.Millisecond)
	checkOnQueues(t, afxdpHelperTags(t, stdin, out, "afxdp helper"), want, 0)
	st, err := c.Netns(pod).PortStats(ctx, "np0")
	if err != nil {
		t.Fatal(err)
	}
	if st.Reasons[port.DstIPv4] != 2 || st.XSKRedirected != 2*perQueue {
		t.Errorf("dst_ipv4 %d, xsk_redirected %d; want 2 and %d", st.Reasons[port.DstIPv4], st.XSKRedirected, 2*perQueue)
	}
	if err := c.Netns(pod).AFXDPDelete(ctx, "np0"); err != nil {
		t.Fatal(err)
	}
}
