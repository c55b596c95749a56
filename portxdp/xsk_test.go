package portxdp

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/internal/diffcorpus"
	"github.com/vrss-dev/vrss/internal/inject"
	"github.com/vrss-dev/vrss/internal/netnstest"
	"github.com/vrss-dev/vrss/internal/privtest"
	"github.com/vrss-dev/vrss/port"
	"github.com/vrss-dev/vrss/xsk"
)

// queueByDstMAC attaches to the egress of the interface with ifindex a tc
// program that sends each frame out of transmit queue dst[5] & 3 (the
// last byte of its destination MAC): it records dst[5] & 3 as the skb's
// receive queue (queue_mapping is that plus one), and with neither a
// socket's queue nor XPS to go by, the kernel's pick of a transmit queue
// (skb_tx_hash) takes a recorded receive queue as it is. A veth hands a
// frame to its peer's receive queue of the same number as the transmit
// queue it went out of (veth_xmit). The function undoes it.
func queueByDstMAC(t *testing.T, ifindex int) func() {
	t.Helper()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SchedCLS, License: "Dual BSD/GPL", Instructions: asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1), // LD_ABS reads the skb in R6
		asm.LoadAbs(5, asm.Byte),
		asm.And.Imm(asm.R0, 3),
		asm.Add.Imm(asm.R0, 1),
		asm.StoreMem(asm.R6, 12, asm.R0, asm.Word), // __sk_buff.queue_mapping
		asm.Mov.Imm(asm.R0, 0),                     // TC_ACT_OK
		asm.Return(),
	}})
	if err != nil {
		t.Fatal(err)
	}
	l, err := link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: prog, Attach: ebpf.AttachTCXEgress})
	if err != nil {
		prog.Close()
		t.Fatal(err)
	}
	return func() { l.Close(); prog.Close() }
}

// boundSocket puts an unbound AF_XDP socket at queue of p's XSKMAP, then
// sets it up (UMEM, rings, bind to the device with ifindex and queue, in
// copy mode) as a VMM does with one handed to it.
func boundSocket(t *testing.T, p *Program, ifindex, queue int) *xsk.Socket {
	t.Helper()
	f, err := xsk.NewUnbound()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := p.SetSocket(queue, int(f.Fd())); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Dup(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	s, err := xsk.Setup(fd, xsk.Options{Frames: 1024, FillSize: 512, CompSize: 512, RxSize: 1024, Ifindex: ifindex, Queue: queue, Copy: true})
	if err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	return s
}

// TestXSKVeth attaches the program, for an AF_XDP port on receive queues
// 1 and 2, to a veth with four receive queues, and sends frames from its
// peer spread over the four queues (queueByDstMAC): the frames of queues 0
// and 3 reach the stack whatever they are, unjudged and counted apart; of
// queues 1 and 2 those the inbound reference (port.NewInbound) drops are
// counted by reason and never
// reach the stack, and those it passes reach the stack, there being no
// socket in the XSKMAP (the fallback). Then an AF_XDP socket, unbound, at
// queue 1: the allowed frames of queue 1 are redirected to it and, the
// socket bound to nothing, lost rather than passed to the stack; those of
// queue 2 still reach the stack; with the socket cleared, those of queue 1
// reach the stack again. Last, a socket bound to queue 2 with package
// xsk's AF_XDP layer receives exactly the allowed frames of queue 2.
func TestXSKVeth(t *testing.T) {
	privtest.Require(t, "root")
	privtest.Require(t, "bpf")
	p := loaded(t, false)
	rnd := rand.New(rand.NewPCG(16, 2))
	pol := diffcorpus.PortPolicyIn(rnd, 12)
	pol.IPv4 = append(pol.IPv4, netip.MustParsePrefix("192.0.2.0/24"))
	pol.Uplink = ""
	// Four MACs that differ in the two bits queueByDstMAC reads: a frame
	// for the guest stays one whichever queue it is sent to.
	m := pol.MACs[0]
	pol.MACs = nil
	for q := range 4 {
		m[5] = m[5]&^3 | byte(q)
		pol.MACs = append(pol.MACs, m)
	}
	f, err := port.NewInbound(pol)
	if err != nil {
		t.Fatal(err)
	}
	xq := Queues{Start: 1, Count: 2}
	if err := p.PublishXSK(pol, xq); err != nil {
		t.Fatal(err)
	}
	// Frames a veth forwards (no longer than its MTU allows), spread over
	// the queues; VLAN-tagged ones only over the port's, which drop them:
	// the stack takes a frame's outer tag off before a capture sees it,
	// or drops it if the tag is cut short.
	var frames [][]byte
	var want []port.Result
	var queue []int
	for len(frames) < 3000 {
		b := diffcorpus.PortFrameIn(rnd, &pol)
		if len(b) < 14 || len(b) > 1514 {
			continue
		}
		q := len(frames) % 4
		if et := uint16(b[12])<<8 | uint16(b[13]); et == 0x8100 || et == 0x88a8 {
			q = xq.Start + len(frames)%xq.Count
		}
		b[5] = b[5]&^3 | byte(q)
		frames = append(frames, b)
		want = append(want, f.Check(b))
		queue = append(queue, q)
	}
	netnstest.Run(t, func() {
		rx, tx := queueVeth(t, "vrssx0", "vrssx1", 4)
		for _, i := range []int{rx, tx} {
			l, err := netlink.LinkByIndex(i)
			if err == nil {
				err = netlink.LinkSetUp(l)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		defer queueByDstMAC(t, tx)()
		l, err := p.Attach(rx)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		stack := openCapture(t, rx)
		defer stack.Close()
		send, err := inject.Open(tx)
		if err != nil {
			t.Fatal(err)
		}
		defer send.Close()
		if err := send.SendBatch(frames); err != nil {
			t.Fatal(err)
		}
		got := stack.Drain()
		var ref port.Counters
		var other, passed int
		for i, b := range frames {
			q, k := queue[i], string(b)
			inRange := q >= xq.Start && q < xq.Start+xq.Count
			switch {
			case !inRange:
				other++
				if got[k] == 0 {
					t.Errorf("frame %d of queue %d (the host's) never reached the stack: %x", i, q, b)
				}
			case want[i].Verdict == port.VerdictPass:
				passed++
				if got[k] == 0 {
					t.Errorf("frame %d of queue %d (%v), no socket there, never reached the stack: %x", i, q, want[i].Reason, b)
				}
			case got[k] > 0:
				t.Errorf("frame %d of queue %d dropped by the reference (%v) reached the stack: %x", i, q, want[i].Reason, b)
			}
			if inRange {
				ref.Add(want[i])
			}
			got[k]--
		}
		noExtra(t, got)
		if c := countersAgree(t, p, ref); c.OtherQueue != uint64(other) || c.XSKRedirected != 0 {
			t.Fatalf("%d frames of other queues counted (want %d), %d redirected (want 0)", c.OtherQueue, other, c.XSKRedirected)
		}
		t.Logf("%d frames sent over 4 queues: %d of queues 0 and 3 reached the stack unjudged; of queues 1-2, %d passed and reached the stack (no socket), %d dropped and counted", len(frames), other, passed, ref.Dropped())

		// An unbound socket at queue 1: the allowed frames of queue 1
		// are redirected to it, and lost.
		xskSocket(t, p, 1)
		var q1, q2 [][]byte
		for i, b := range frames {
			if want[i].Verdict == port.VerdictPass && queue[i] == 1 {
				q1 = append(q1, b)
			} else if want[i].Verdict == port.VerdictPass && queue[i] == 2 {
				q2 = append(q2, b)
			}
		}
		if err := send.SendBatch(append(q1, q2...)); err != nil {
			t.Fatal(err)
		}
		got = stack.Drain()
		for _, b := range q1 {
			if got[string(b)] > 0 {
				t.Errorf("an allowed frame of queue 1 reached the stack with a socket at queue 1: %x", b)
			}
		}
		for _, b := range q2 {
			if got[string(b)] == 0 {
				t.Errorf("an allowed frame of queue 2 (no socket) never reached the stack: %x", b)
			}
		}
		c2, err := p.Counters()
		if err != nil {
			t.Fatal(err)
		}
		if c2.XSKRedirected != uint64(len(q1)) {
			t.Errorf("%d frames redirected to queue 1's socket, want %d", c2.XSKRedirected, len(q1))
		}
		t.Logf("with an unbound socket at queue 1: %d allowed frames of queue 1 redirected to it (none reached the stack), %d of queue 2 reached the stack", len(q1), len(q2))

		// ClearSocket: queue 1's allowed frames reach the stack again.
		if err := p.ClearSocket(1); err != nil {
			t.Fatal(err)
		}
		if err := send.SendBatch(q1); err != nil {
			t.Fatal(err)
		}
		got = stack.Drain()
		for _, b := range q1 {
			if got[string(b)] != 1 {
				t.Errorf("an allowed frame of queue 1 reached the stack %d times once its socket was cleared: %x", got[string(b)], b)
			}
		}

		// A socket bound to queue 2 (package xsk, copy mode) receives
		// queue 2's allowed frames, and only those; queue 0's still
		// reach the stack.
		sock := boundSocket(t, p, rx, 2)
		defer sock.Close()
		var q2all, q0 [][]byte
		for i, b := range frames {
			switch queue[i] {
			case 2:
				q2all = append(q2all, b)
			case 0:
				q0 = append(q0, b)
			}
		}
		if err := send.SendBatch(append(q2all, q0...)); err != nil {
			t.Fatal(err)
		}
		onSocket := map[string]int{}
		for {
			n, err := sock.Receive(200*time.Millisecond, func(b []byte) { onSocket[string(b)]++ })
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				break
			}
		}
		got = stack.Drain()
		for _, b := range q2 {
			if onSocket[string(b)] != 1 || got[string(b)] != 0 {
				t.Errorf("an allowed frame of queue 2: %d times on the socket, %d on the stack; want 1 and 0: %x", onSocket[string(b)], got[string(b)], b)
			}
			onSocket[string(b)]--
		}
		for k, n := range onSocket {
			if n > 0 {
				t.Errorf("%d unexpected frames on the socket: %x", n, k)
			}
		}
		for _, b := range q0 {
			if got[string(b)] == 0 {
				t.Errorf("a frame of queue 0 (the host's) never reached the stack: %x", b)
			}
		}
		t.Logf("with a socket bound to queue 2: it received the %d allowed frames of queue 2 of %d sent there, none on the stack; the %d of queue 0 reached the stack", len(q2), len(q2all), len(q0))
	})
}

// TestPinXSKs pins a program of an AF_XDP port and loads the pins as
// another process would (vrssd after a restart): a socket put in the
// pinned XSKMAP is the one the program redirects to, the policy and its
// queue range are the published ones, and Unpin removes port_xsks with
// the rest.
func TestPinXSKs(t *testing.T) {
	privtest.Require(t, "root")
	privtest.Require(t, "bpf")
	dir, err := os.MkdirTemp("/sys/fs/bpf", "vrss-portxdp-test-")
	if err != nil {
		t.Skipf("no bpf filesystem to pin in: %v", err)
	}
	defer os.RemoveAll(dir)
	p := loaded(t, false)
	if err := p.PublishXSK(BenchPolicy(), Queues{Start: 0, Count: 1}); err != nil {
		t.Fatal(err)
	}
	if err := p.Pin(dir); err != nil {
		t.Fatal(err)
	}
	q, err := LoadPinned(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if g := q.Generation(); g != 1 {
		t.Errorf("the pins' generation is %d, want 1", g)
	}
	f := BenchFrameIn()
	for _, step := range []struct {
		name   string
		do     func() error
		action uint32
	}{
		{"no socket", func() error { return nil }, 2},
		{"a socket put through the pins", func() error { xskSocket(t, q, 0); return nil }, 4},
		{"the socket cleared through the pins", func() error { return q.ClearSocket(0) }, 2},
	} {
		if err := step.do(); err != nil {
			t.Fatal(err)
		}
		if act, err := q.Run(f); err != nil || act != step.action {
			t.Errorf("%s: action %d (%v), want %d", step.name, act, err, step.action)
		}
	}
	if err := Unpin(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, PinXSKs)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s after Unpin: %v", PinXSKs, err)
	}
}

// TestPinOtherLayout: pins whose policy carries another layout stamp (a
// vrssd of layout version 2, which judged an AF_XDP port's frames
// outbound, pinned them) do not load, so that vrssd installs a program of
// this version instead of publishing into the old one.
func TestPinOtherLayout(t *testing.T) {
	privtest.Require(t, "root")
	privtest.Require(t, "bpf")
	dir, err := os.MkdirTemp("/sys/fs/bpf", "vrss-portxdp-test-")
	if err != nil {
		t.Skipf("no bpf filesystem to pin in: %v", err)
	}
	defer os.RemoveAll(dir)
	p := loaded(t, false)
	if err := p.PublishXSK(BenchPolicy(), Queues{Start: 0, Count: 1}); err != nil {
		t.Fatal(err)
	}
	if err := p.Pin(dir); err != nil {
		t.Fatal(err)
	}
	defer Unpin(dir)
	q, err := LoadPinned(dir)
	if err != nil {
		t.Fatalf("pins of this layout: %v", err)
	}
	q.Close()
	atomic.StoreUint32(&p.pub.cfg.Magic, 0x32545250) // "PRT2"
	if q, err := LoadPinned(dir); !errors.Is(err, ErrOtherLayout) {
		if q != nil {
			q.Close()
		}
		t.Fatalf("pins stamped PRT2: %v, want ErrOtherLayout", err)
	}
}
