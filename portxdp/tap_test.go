package portxdp

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/internal/diffcorpus"
	"github.com/vrss-dev/vrss/internal/frame"
	"github.com/vrss-dev/vrss/internal/inject"
	"github.com/vrss-dev/vrss/internal/netnstest"
	"github.com/vrss-dev/vrss/internal/privtest"
	"github.com/vrss-dev/vrss/port"
	"github.com/vrss-dev/vrss/tap"
)

const vnetHdrLen = 12 // virtio_net_hdr_v1, as QEMU sets it

// openCapture opens an inject.Capture of interface ifindex or fails t.
func openCapture(t *testing.T, ifindex int) *inject.Capture {
	t.Helper()
	c, err := inject.OpenCapture(ifindex)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// attachedTAP creates a TAP with queues queues and a virtio-net header in
// the calling thread's namespace, attaches p to it and opens a capture of
// what it receives; the function closes all three.
func attachedTAP(t *testing.T, p *Program, queues int) (*tap.Device, *inject.Capture, func()) {
	t.Helper()
	d, err := tap.Create(tap.Options{Queues: queues, VnetHdrLen: vnetHdrLen, Up: true})
	if err != nil {
		t.Fatal(err)
	}
	l, err := p.Attach(d.Index())
	if err != nil {
		d.Close()
		t.Fatal(err)
	}
	c := openCapture(t, d.Index())
	return d, c, func() { c.Close(); l.Close(); d.Close() }
}

// uplinkVeth makes a veth pair, name and its peer, in the calling
// thread's namespace, and p's uplink name; it returns the peer's ifindex
// and what undoes the rest. A veth takes XDP frames for its peer only in
// NAPI mode, which an XDP program on the peer (one that passes every
// frame) turns on.
func uplinkVeth(t *testing.T, p *Program, name string) (int, func()) {
	t.Helper()
	up := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: "vrsspeer0"}
	if err := netlink.LinkAdd(up); err != nil {
		t.Fatal(err)
	}
	peer, err := netlink.LinkByName("vrsspeer0")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []netlink.Link{up, peer} {
		if err := netlink.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	pass, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, License: "Dual BSD/GPL", Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2), asm.Return()}})
	if err != nil {
		t.Fatal(err)
	}
	pl, err := link.AttachXDP(link.XDPOptions{Program: pass, Interface: peer.Attrs().Index})
	if err != nil {
		pass.Close()
		t.Fatal(err)
	}
	if err := p.SetUplink(up.Attrs().Index); err != nil {
		t.Fatal(err)
	}
	return peer.Attrs().Index, func() { pl.Close(); pass.Close() }
}

// noExtra fails t for each frame got still counts once every expected
// arrival was taken off.
func noExtra(t *testing.T, got map[string]int) {
	t.Helper()
	for k, n := range got {
		if n > 0 {
			t.Errorf("%d unexpected arrivals of %x", n, k)
		}
	}
}

// countersAgree reads p's counters, fails t unless their per-reason and
// per-rule counts are ref's, and returns them.
func countersAgree(t *testing.T, p *Program, ref port.Counters) Counters {
	t.Helper()
	c, err := p.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if c.Reasons != ref.Reasons || c.Rules != ref.Rules {
		t.Errorf("counters\nprogram   %v %v\nreference %v %v", c.Reasons, c.Rules, ref.Reasons, ref.Rules)
	}
	return c
}

// tapFrames draws frames for pol that tun takes (an Ethernet header at
// least), with the reference's judgement of each.
func tapFrames(f *port.Filter, n int) ([][]byte, []port.Result) {
	pol := f.Policy()
	r := rand.New(rand.NewPCG(14, 3))
	var frames [][]byte
	var want []port.Result
	for len(frames) < n {
		b := diffcorpus.PortFrame(r, &pol)
		if len(b) < 14 {
			continue
		}
		frames = append(frames, b)
		want = append(want, f.Check(b))
	}
	return frames, want
}

// TestTAP attaches the program to a real TAP and writes frames into its
// queue fds as a VMM does (a zeroed virtio-net header first, fds
// non-blocking as QEMU's): every frame the reference passes arrives, once,
// on the far side — the TAP's receive path into the stack, or, with an
// uplink, the peer of a veth by the devmap redirect (and then not the
// stack) — every frame it drops arrives nowhere, and the counters are the
// reference's. Blocking writes, which tun hands to generic XDP after
// building an skb, must give the same.
func TestTAP(t *testing.T) {
	privtest.Require(t, "root")
	privtest.Require(t, "tap")
	privtest.Require(t, "bpf")
	for _, c := range []struct {
		name     string
		uplink   bool
		blocking bool
	}{{"stack", false, false}, {"stack-blocking", false, true}, {"uplink", true, false}, {"uplink-blocking", true, true}} {
		t.Run(c.name, func(t *testing.T) {
			p := loaded(t, false)
			pol := diffcorpus.PortPolicy(rand.New(rand.NewPCG(14, 4)), 12)
			pol.IPv4 = append(pol.IPv4, netip.MustParsePrefix("192.0.2.0/24"))
			if c.uplink {
				pol.Uplink = "vrssup0"
			}
			f, err := port.New(pol)
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Publish(pol); err != nil {
				t.Fatal(err)
			}
			frames, want := tapFrames(f, 2000)
			netnstest.Run(t, func() {
				d, stack, done := attachedTAP(t, p, 2)
				defer done()
				far := stack
				if c.uplink {
					peer, done := uplinkVeth(t, p, pol.Uplink)
					defer done()
					far = openCapture(t, peer)
					defer far.Close()
				}
				hdr := make([]byte, vnetHdrLen)
				for i, b := range frames {
					q := d.Queue(i % d.NumQueues())
					fd := int(q.Fd())
					if err := unix.SetNonblock(fd, !c.blocking); err != nil {
						t.Fatal(err)
					}
					if _, err := unix.Writev(fd, [][]byte{hdr, b}); err != nil && !errors.Is(err, unix.EINVAL) {
						t.Fatalf("frame %d: write: %v", i, err)
					}
				}
				got := far.Drain()
				var onStack map[string]int
				if c.uplink {
					onStack = stack.Drain()
				}
				var ref port.Counters
				for i, b := range frames {
					ref.Add(want[i])
					k := string(b)
					switch {
					case want[i].Verdict == port.VerdictPass && got[k] == 0:
						t.Errorf("frame %d (%v) passed by the reference, never arrived: %x", i, want[i].Reason, b)
					case want[i].Verdict == port.VerdictDrop && got[k] > 0:
						t.Errorf("frame %d (%v) dropped by the reference, arrived: %x", i, want[i].Reason, b)
					case onStack[k] > 0:
						t.Errorf("frame %d redirected to the uplink also reached the stack", i)
					}
					got[k]--
				}
				noExtra(t, got)
				cs := countersAgree(t, p, ref)
				if c.uplink && cs.Redirected != ref.Passed() {
					t.Errorf("%d frames redirected, the reference passed %d", cs.Redirected, ref.Passed())
				}
				t.Logf("%d frames written: %d passed and arrived, %d dropped and counted; %d redirected", len(frames), ref.Passed(), ref.Dropped(), cs.Redirected)
			})
		})
	}
}

// TestTAPGSO writes GSO frames (a TCPv4 segment of 4000 bytes with
// VIRTIO_NET_HDR_GSO_TCPV4, as a guest with TSO sends). tun runs no native
// XDP on them (tun_build_skb leaves a frame with a gso_type to generic XDP
// on the skb it builds), and the program judges each one all the same: an
// allowed one reaches the stack whole, one from a foreign address is
// dropped and counted. With an uplink too: a redirect of a frame longer
// than the uplink's MTU would be dropped by the kernel (xdp_ok_fwd_dev), so
// the program passes it to the stack, which segments it.
func TestTAPGSO(t *testing.T) {
	privtest.Require(t, "root")
	privtest.Require(t, "tap")
	privtest.Require(t, "bpf")
	for _, uplink := range []bool{false, true} {
		p := loaded(t, false)
		pol := BenchPolicy()
		if uplink {
			pol.Uplink = "vrssup0"
		}
		if err := p.Publish(pol); err != nil {
			t.Fatal(err)
		}
		good := BenchFrame()
		good = append(good[:len(good)-20], make([]byte, 4000)...)
		good[16], good[17] = byte((len(good)-14)>>8), byte(len(good)-14) // IPv4 total length
		bad := append([]byte(nil), good...)
		bad[26] ^= 0xff // source address
		// virtio_net_hdr_v1: NEEDS_CSUM, GSO_TCPV4, hdr_len 54, gso_size
		// 1460, csum_start 34 (the TCP header), csum_offset 16.
		hdr := []byte{1, 1, 54, 0, 0xb4, 0x05, 34, 0, 16, 0, 0, 0}
		netnstest.Run(t, func() {
			d, stack, done := attachedTAP(t, p, 1)
			defer done()
			var peerCap *inject.Capture
			if uplink {
				peer, done := uplinkVeth(t, p, pol.Uplink)
				defer done()
				peerCap = openCapture(t, peer)
				defer peerCap.Close()
			}
			fd := int(d.Queue(0).Fd())
			if err := unix.SetNonblock(fd, true); err != nil {
				t.Fatal(err)
			}
			for _, b := range [][]byte{good, bad, good} {
				if _, err := unix.Writev(fd, [][]byte{hdr, b}); err != nil {
					t.Fatalf("write a GSO frame: %v", err)
				}
			}
			got := stack.Drain()
			if got[string(good)] != 2 || got[string(bad)] != 0 || len(got) != 1 {
				t.Errorf("arrived: %d allowed (want 2), %d spoofed (want 0), %d kinds", got[string(good)], got[string(bad)], len(got))
			}
			if peerCap != nil {
				if n := len(peerCap.Drain()); n != 0 {
					t.Errorf("%d GSO frames on the uplink's peer", n)
				}
			}
			c, err := p.Counters()
			if err != nil {
				t.Fatal(err)
			}
			if c.Reasons[port.ACLAllow] != 2 || c.Reasons[port.SrcIPv4] != 1 || c.Redirected != 0 {
				t.Errorf("counted %v, %d redirected", c.Reasons, c.Redirected)
			}
		})
	}
}

// TestTAPLongChain writes IPv6 frames whose eight extension headers of
// 2,048 bytes put the ICMPv6 header past 16 KB (tun runs generic XDP on
// frames that long): the program still finds the upper-layer header, and
// an MLD report from the guest's address arrives while a router
// advertisement is dropped, as the reference says.
func TestTAPLongChain(t *testing.T) {
	privtest.Require(t, "root")
	privtest.Require(t, "tap")
	privtest.Require(t, "bpf")
	p := loaded(t, false)
	pol := BenchPolicy()
	pol.IPv6 = []netip.Prefix{netip.MustParsePrefix("2001:db8::10/128")}
	f, err := port.New(pol)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(pol); err != nil {
		t.Fatal(err)
	}
	build := func(icmpType byte) []byte {
		var ext []frame.ExtHeader
		for range 8 {
			ext = append(ext, frame.ExtHeader{Type: 60, Data: make([]byte, 2046)})
		}
		b := frame.Build(frame.Spec{Src: netip.MustParseAddr("2001:db8::10"), Dst: netip.MustParseAddr("ff02::16"), Proto: 58, Ext: ext, Payload: 24})
		copy(b[6:12], benchMAC[:])
		b[len(b)-24] = icmpType
		return b
	}
	mld, ra := build(143), build(134)
	if w := f.Check(mld); w.Reason != port.Control {
		t.Fatalf("the reference says %v for the MLD report", w.Reason)
	}
	if w := f.Check(ra); w.Reason != port.RouterAdvert {
		t.Fatalf("the reference says %v for the RA", w.Reason)
	}
	netnstest.Run(t, func() {
		d, stack, done := attachedTAP(t, p, 1)
		defer done()
		fd := int(d.Queue(0).Fd())
		if err := unix.SetNonblock(fd, true); err != nil {
			t.Fatal(err)
		}
		for _, b := range [][]byte{mld, ra} {
			if _, err := unix.Writev(fd, [][]byte{make([]byte, vnetHdrLen), b}); err != nil {
				t.Fatalf("write a %d-byte frame: %v", len(b), err)
			}
		}
		got := stack.Drain()
		if got[string(mld)] != 1 || len(got) != 1 {
			t.Errorf("%d MLD reports of %d bytes arrived (want 1), %d kinds of frame", got[string(mld)], len(mld), len(got))
		}
		c, err := p.Counters()
		if err != nil {
			t.Fatal(err)
		}
		if c.Reasons[port.Control] != 1 || c.Reasons[port.RouterAdvert] != 1 {
			t.Errorf("counted %v", c.Reasons)
		}
	})
}
