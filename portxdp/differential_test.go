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

// TestDifferential holds the debug build to port.Filter on
// diffcorpus.Frames() frames under diffcorpus.PortPolicies random
// policies, each frame arriving on a random receive queue of a device
// with diffQueues queues. Half the policies are a TAP's (the queue does
// not matter), half an AF_XDP port's over a random range of queues, with
// an unbound AF_XDP socket at every even queue of the XSKMAP. On every
// frame a TAP's policy and an AF_XDP port's in its range judge, the
// reason, the rule and the verdict must be the reference's, and the action
// drop, pass, or for a frame an AF_XDP port passes, XDP_REDIRECT where a
// socket sits at its queue and pass where none does; an AF_XDP port's
// frames of other queues must pass unjudged. After the run the per-reason
// and per-rule counters must be the reference's port.Counters, and the
// AF_XDP counters what the test saw.
func TestDifferential(t *testing.T) {
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
		xsk                    *Queues
		short, ran, mism       int
		other, redirected, xsn int
		actions                = map[port.Verdict]uint32{port.VerdictPass: 2, port.VerdictDrop: 1}
	)
	netnstest.Run(t, func() {
		dev, _ := queueVeth(t, "vrssq0", "vrssq1", diffQueues)
		for i := 0; i < n; i++ {
			if i%per == 0 {
				pol := diffcorpus.PortPolicy(r, []int{0, 4, 12, port.MaxRules}[(i/per)%4])
				var err error
				if f, err = port.New(pol); err != nil {
					t.Fatalf("policy %d: %v", i/per, err)
				}
				xsk = nil
				if (i/per/4)%2 == 1 {
					start := rq.IntN(diffQueues)
					xsk = &Queues{Start: start, Count: 1 + rq.IntN(diffQueues-start)}
					pol.Uplink = ""
					err = p.PublishXSK(pol, *xsk)
				} else {
					err = p.Publish(pol)
				}
				if err != nil {
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
			q := rq.IntN(diffQueues)
			act, err := p.RunQueue(b, dev, q)
			if err != nil {
				t.Fatalf("frame %d (%x) on queue %d: %v", i, b, q, err)
			}
			got, err := p.LastResult()
			if err != nil {
				t.Fatal(err)
			}
			ran++
			wantAct := actions[want.Verdict]
			switch {
			case xsk != nil && (q < xsk.Start || q >= xsk.Start+xsk.Count):
				other++
				want, wantAct = port.Result{Verdict: port.VerdictPass, Rule: -1}, 2
			case xsk != nil:
				xsn++
				if want.Verdict == port.VerdictPass && q%2 == 0 {
					wantAct = 4 // XDP_REDIRECT
					redirected++
				}
				fallthrough
			default:
				ref.Add(want)
			}
			if got.Result != want || act != wantAct || got.Action != act || got.Tag != p.Generation() {
				mism++
				if mism <= 10 {
					t.Errorf("frame %d %x on queue %d (AF_XDP queues %v)\npolicy %+v\nprogram %+v (action %d), reference %+v (action %d)", i, b, q, xsk, pol, got, act, want, wantAct)
				}
			}
		}
	})
	if mism > 0 {
		t.Fatalf("%d of %d frames judged differently", mism, ran)
	}
	c := countersAgree(t, p, ref)
	if c.OtherQueue != uint64(other) || c.XSKRedirected != uint64(redirected) || c.Redirected != 0 {
		t.Fatalf("counters: %d of other queues (want %d), %d redirected to AF_XDP sockets (want %d), %d to an uplink (want 0)", c.OtherQueue, other, c.XSKRedirected, redirected, c.Redirected)
	}
	t.Logf("%d frames through BPF_PROG_TEST_RUN under %d policies, every one judged as port.Filter does (and %d shorter than 14 bytes, which the test run refuses, malformed for both)", ran, diffcorpus.PortPolicies, short)
	t.Logf("AF_XDP ports: %d frames on their queues judged alike, %d of them passed and redirected to a socket (the rest passed to the stack where no socket sat); %d on other queues passed unjudged", xsn, redirected, other)
	for reason, v := range ref.Reasons {
		if v > 0 {
			t.Logf("  %-14s %8d", port.Reason(reason), v)
		}
	}
}
