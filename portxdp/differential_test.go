package portxdp

import (
	"math/rand/v2"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/internal/diffcorpus"
	"github.com/vrss-dev/vrss/internal/netnstest"
	"github.com/vrss-dev/vrss/internal/privtest"
	"github.com/vrss-dev/vrss/port"
)

// xdpMinFrame is the shortest frame BPF_PROG_TEST_RUN takes for XDP (an
// Ethernet header); port.Filter finds every shorter one malformed, as the
// program does (its first read fails).
const xdpMinFrame = 14

// diffQueues is the number of receive queues of the device the
// differential test's frames arrive on.
const diffQueues = 16

// queueVeth makes a veth pair, name and peer, with n receive and n
// transmit queues at each end, in the calling thread's namespace (test
// runs that name a receive queue need a device that has it), and returns
// their ifindexes.
func queueVeth(t *testing.T, name, peer string, n int) (int, int) {
	t.Helper()
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name, NumRxQueues: n, NumTxQueues: n}, PeerName: peer, PeerNumRxQueues: uint32(n), PeerNumTxQueues: uint32(n)}
	if err := netlink.LinkAdd(v); err != nil {
		t.Fatal(err)
	}
	var idx [2]int
	for i, nm := range []string{name, peer} {
		l, err := netlink.LinkByName(nm)
		if err != nil {
			t.Fatal(err)
		}
		idx[i] = l.Attrs().Index
	}
	return idx[0], idx[1]
}

// xskSocket opens an AF_XDP socket, unbound, and puts it at queue of p's
// XSKMAP, which takes it as it is (a VMM binds it later); the test closes
// it.
func xskSocket(t *testing.T, p *Program, queue int) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("AF_XDP socket: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := p.SetSocket(queue, fd); err != nil {
		t.Fatalf("an unbound AF_XDP socket in the XSKMAP: %v", err)
	}
}

// TestDifferential holds the debug build to port.Filter (outbound: a
// TAP's) on diffcorpus.Frames() frames under diffcorpus.PortPolicies
// random policies. On every frame the reason, the rule, the verdict and
// the action (drop or pass) must be the reference's; after the run the
// per-reason and per-rule counters must be the reference's
// port.Counters. TestDifferentialXSK does the same for AF_XDP ports.
func TestDifferential(t *testing.T) {
	privtest.Require(t, "bpf")
	p := loaded(t, true)
	r := diffcorpus.Rand()
	n := diffcorpus.Frames()
	per := max(n/diffcorpus.PortPolicies, 1)
	var (
		ref              port.Counters
		f                *port.Filter
		short, ran, mism int
		actions          = map[port.Verdict]uint32{port.VerdictPass: 2, port.VerdictDrop: 1}
	)
	for i := 0; i < n; i++ {
		if i%per == 0 {
			pol := diffcorpus.PortPolicy(r, []int{0, 4, 12, port.MaxRules}[(i/per)%4])
			var err error
			if f, err = port.New(pol); err != nil {
				t.Fatalf("policy %d: %v", i/per, err)
			}
			if err := p.Publish(pol); err != nil {
				t.Fatal(err)
			}
		}
		pol := f.Policy()
		b := diffcorpus.PortFrame(r, &pol)
		want := f.Check(b)
		if len(b) < xdpMinFrame {
			short++
			if want.Reason != port.Malformed {
				t.Fatalf("frame %x: the reference says %v for a frame shorter than an Ethernet header", b, want.Reason)
			}
			continue
		}
		act, err := p.Run(b)
		if err != nil {
			t.Fatalf("frame %d (%x): %v", i, b, err)
		}
		got, err := p.LastResult()
		if err != nil {
			t.Fatal(err)
		}
		ran++
		ref.Add(want)
		if got.Result != want || act != actions[want.Verdict] || got.Action != act || got.Tag != p.Generation() {
			mism++
			if mism <= 10 {
				t.Errorf("frame %d %x\npolicy %+v\nprogram %+v (action %d), reference %+v", i, b, pol, got, act, want)
			}
		}
	}
	if mism > 0 {
		t.Fatalf("%d of %d frames judged differently", mism, ran)
	}
	c := countersAgree(t, p, ref)
	if c.OtherQueue != 0 || c.XSKRedirected != 0 || c.Redirected != 0 {
		t.Fatalf("counters: %d of other queues, %d redirected to AF_XDP sockets, %d to an uplink (want 0 each)", c.OtherQueue, c.XSKRedirected, c.Redirected)
	}
	t.Logf("TAP (outbound): %d frames through BPF_PROG_TEST_RUN under %d policies, every one judged as port.Filter does (and %d shorter than 14 bytes, which the test run refuses, malformed for both)", ran, diffcorpus.PortPolicies, short)
	logReasons(t, &ref)
}

// TestDifferentialXSK holds the debug build, its slots an AF_XDP port's,
// to port.NewInbound's Filter on diffcorpus.Frames() frames arriving for
// the guest (diffcorpus.PortFrameIn) under diffcorpus.PortPolicies random
// policies (PortPolicyIn), each over a random range of the receive queues
// of a device with diffQueues queues, with an unbound AF_XDP socket at
// every even queue of the XSKMAP. Every frame arrives on a random queue of
// the port's range, where the reason, the rule and the verdict must be the
// reference's, and the action drop, or for a frame passed XDP_REDIRECT
// where a socket sits at its queue and pass where none does; every 16th
// frame also arrives on a queue outside the range, if there is one, where
// it must pass unjudged. After the run the per-reason and per-rule
// counters must be the reference's port.Counters, and the AF_XDP counters
// what the test saw; every reason must have occurred but the outbound
// ones (src_mac, arp_sender, rarp, src_ipv4, src_ipv6, dhcp_server,
// dhcpv6_server, router_advert, redirect, ndp_target), which must not.
func TestDifferentialXSK(t *testing.T) {
	privtest.Require(t, "bpf")
	p := loaded(t, true)
	for q := 0; q < diffQueues; q += 2 {
		xskSocket(t, p, q)
	}
	r := diffcorpus.Rand()
	rq := rand.New(rand.NewPCG(16, 1)) // queues: the frames stay diffcorpus's
	n := diffcorpus.Frames()
	per := max(n/diffcorpus.PortPolicies, 1)
	var (
		ref                    port.Counters
		f                      *port.Filter
		xsk                    Queues
		short, ran, mism       int
		other, redirected, pol int
		dev                    int
	)
	check := func(i int, b []byte, q int, want port.Result, wantAct uint32) {
		act, err := p.RunQueue(b, dev, q)
		if err != nil {
			t.Fatalf("frame %d (%x) on queue %d: %v", i, b, q, err)
		}
		got, err := p.LastResult()
		if err != nil {
			t.Fatal(err)
		}
		if got.Result != want || act != wantAct || got.Action != act || got.Tag != p.Generation() {
			mism++
			if mism <= 10 {
				t.Errorf("frame %d %x on queue %d (AF_XDP queues %v)\npolicy %+v\nprogram %+v (action %d), reference %+v (action %d)", i, b, q, xsk, f.Policy(), got, act, want, wantAct)
			}
		}
	}
	netnstest.Run(t, func() {
		dev, _ = queueVeth(t, "vrssq0", "vrssq1", diffQueues)
		for i := 0; i < n; i++ {
			if i%per == 0 {
				pl := diffcorpus.PortPolicyIn(r, []int{0, 4, 12, port.MaxRules}[pol%4])
				pol++
				var err error
				if f, err = port.NewInbound(pl); err != nil {
					t.Fatalf("policy %d: %v", pol, err)
				}
				start := rq.IntN(diffQueues)
				xsk = Queues{Start: start, Count: 1 + rq.IntN(diffQueues-start)}
				if err := p.PublishXSK(pl, xsk); err != nil {
					t.Fatal(err)
				}
			}
			pl := f.Policy()
			b := diffcorpus.PortFrameIn(r, &pl)
			want := f.Check(b)
			if len(b) < xdpMinFrame {
				short++
				if want.Reason != port.Malformed {
					t.Fatalf("frame %x: the reference says %v for a frame shorter than an Ethernet header", b, want.Reason)
				}
				continue
			}
			q := xsk.Start + rq.IntN(xsk.Count)
			wantAct := uint32(1) // XDP_DROP
			if want.Verdict == port.VerdictPass {
				wantAct = 2 // XDP_PASS: no socket at the queue
				if q%2 == 0 {
					wantAct = 4 // XDP_REDIRECT
					redirected++
				}
			}
			ran++
			ref.Add(want)
			check(i, b, q, want, wantAct)
			if i%16 == 0 && xsk.Count < diffQueues {
				oq := (xsk.Start + xsk.Count + rq.IntN(diffQueues-xsk.Count)) % diffQueues
				other++
				check(i, b, oq, port.Result{Verdict: port.VerdictPass, Rule: -1}, 2)
			}
		}
	})
	if mism > 0 {
		t.Fatalf("%d of %d frames judged differently", mism, ran+other)
	}
	c := countersAgree(t, p, ref)
	if c.OtherQueue != uint64(other) || c.XSKRedirected != uint64(redirected) || c.Redirected != 0 {
		t.Fatalf("counters: %d of other queues (want %d), %d redirected to AF_XDP sockets (want %d), %d to an uplink (want 0)", c.OtherQueue, c.XSKRedirected, other, redirected, c.Redirected)
	}
	t.Logf("AF_XDP (inbound): %d frames on the ports' queues through BPF_PROG_TEST_RUN under %d policies, every one judged as port.NewInbound's Filter does (%d passed and redirected to a socket, the other passed ones to the stack where no socket sat; and %d shorter than 14 bytes, which the test run refuses, malformed for both); %d on other queues passed unjudged", ran, pol, redirected, short, other)
	logReasons(t, &ref)
	for reason := port.Reason(1); reason < port.NumReasons; reason++ {
		outbound := reason >= port.SrcMAC && reason <= port.NDPTarget && reason != port.VLAN && reason != port.L2Proto && reason != port.ARPOpcode
		if got := ref.Reasons[reason]; (got == 0) != outbound {
			t.Errorf("%v occurred %d times", reason, got)
		}
	}
}

func logReasons(t *testing.T, ref *port.Counters) {
	t.Helper()
	for reason, v := range ref.Reasons {
		if v > 0 {
			t.Logf("  %-14s %8d", port.Reason(reason), v)
		}
	}
}
