package inject

import (
	"bytes"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/internal/frame"
	"github.com/vrss-dev/vrss/internal/netnstest"
	"github.com/vrss-dev/vrss/internal/privtest"
	"github.com/vrss-dev/vrss/tap"
)

const hdrLen = 12

// flows returns n frames of distinct flows: IPv4 and IPv6, UDP and TCP.
func flows(n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		s := frame.Spec{
			Proto:   frame.ProtoUDP,
			SrcPort: uint16(1024 + i),
			DstPort: uint16(4789 + i%7),
			Payload: 18 + i%64,
		}
		if i%3 == 2 {
			s.Proto = frame.ProtoTCP
		}
		if i%2 == 0 {
			s.Src = netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
			s.Dst = netip.AddrFrom4([4]byte{10, 1, 0, 1})
		} else {
			s.Src = netip.AddrFrom16([16]byte{0: 0xfd, 14: byte(i >> 8), 15: byte(i)})
			s.Dst = netip.MustParseAddr("fd00::1")
		}
		out[i] = frame.Build(s)
	}
	return out
}

// setup creates a TAP with the given queues and a 12-byte vnet header, up,
// and an injector on it, in the calling thread's namespace.
func setup(t *testing.T, queues int) (*tap.Device, *Injector) {
	t.Helper()
	d, err := tap.Create(tap.Options{Queues: queues, VnetHdrLen: hdrLen, Up: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	inj, err := Open(d.Index())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inj.Close() })
	return d, inj
}

// sendAndDrain sends frames (half one by one, half in a batch) while
// draining d, and checks that exactly the sent frames arrived, byte for
// byte. It returns the queue each sent frame landed on.
func sendAndDrain(t *testing.T, d *tap.Device, inj *Injector, frames [][]byte) []int {
	t.Helper()
	type result struct {
		got [][][]byte
		err error
	}
	done := make(chan result)
	go func() {
		got, err := DrainQueues(d, hdrLen, len(frames), 5*time.Second)
		done <- result{got, err}
	}()
	half := len(frames) / 2
	for _, f := range frames[:half] {
		if err := inj.Send(f); err != nil {
			t.Fatal(err)
		}
	}
	if err := inj.SendBatch(frames[half:]); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}

	where := make(map[string][]int) // frame -> queues it arrived on
	total := 0
	for q, fs := range r.got {
		for _, f := range fs {
			where[string(f)] = append(where[string(f)], q)
			total++
		}
	}
	if total != len(frames) {
		t.Errorf("%d frames arrived, sent %d", total, len(frames))
	}
	queues := make([]int, len(frames))
	for i, f := range frames {
		qs := where[string(f)]
		if len(qs) != 1 {
			t.Fatalf("frame %d arrived %d times, want once, byte-identical", i, len(qs))
		}
		queues[i] = qs[0]
	}
	return queues
}

func perQueue(queues []int, n int) []int {
	c := make([]int, n)
	for _, q := range queues {
		c[q]++
	}
	return c
}

// TestKernelSelection injects 400 frames with no steering program: the
// kernel spreads flows by its own hash, and nothing is lost or changed.
func TestKernelSelection(t *testing.T) {
	privtest.Require(t, "tap")
	for _, tc := range []struct {
		name  string
		proto uint16
	}{{"proto0", 0}, {"ETH_P_ALL", htons(unix.ETH_P_ALL)}} {
		t.Run(tc.name, func(t *testing.T) {
			netnstest.Run(t, func() {
				d, _ := setup(t, 4)
				inj, err := open(d.Index(), tc.proto)
				if err != nil {
					t.Fatal(err)
				}
				defer inj.Close()
				c := perQueue(sendAndDrain(t, d, inj, flows(400)), 4)
				t.Logf("frames per queue: %v", c)
				used := 0
				for _, n := range c {
					if n > 0 {
						used++
					}
				}
				// All on one queue would mean the flow dissector never saw
				// the IP headers (skb->protocol left unparsed).
				if used < 2 {
					t.Errorf("frames per queue %v: want flows spread over queues", c)
				}
			})
		})
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// TestSteeringPath checks that frames sent with and without
// PACKET_QDISC_BYPASS go through the steering program.
func TestSteeringPath(t *testing.T) {
	privtest.Require(t, "tap")
	privtest.Require(t, "bpf")
	for _, bypass := range []bool{false, true} {
		t.Run(fmt.Sprintf("bypass=%v", bypass), func(t *testing.T) {
			netnstest.Run(t, func() {
				d, inj := setup(t, 4)
				if bypass {
					if err := unix.SetsockoptInt(inj.fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1); err != nil {
						t.Fatal(err)
					}
				}
				// 6 % 4 = 2: the kernel takes the result modulo the queues.
				for _, ret := range []int32{2, 6} {
					prog := loadReturn(t, ret)
					if err := d.SetSteering(prog); err != nil {
						t.Fatal(err)
					}
					unix.Close(prog) // the device holds its own reference
					c := perQueue(sendAndDrain(t, d, inj, flows(64)), 4)
					if c[2] != 64 {
						t.Errorf("program returning %d: frames per queue %v, want all on queue 2", ret, c)
					}
				}
				if err := d.DetachSteering(); err != nil {
					t.Fatal(err)
				}
				c := perQueue(sendAndDrain(t, d, inj, flows(64)), 4)
				if c[2] == 64 {
					t.Errorf("after DetachSteering: frames per queue %v, still all on queue 2", c)
				}
			})
		})
	}
}

// TestQueueRenumbering pins down how the kernel renumbers queues when one is
// disabled: the highest enabled queue takes the freed slot, and a
// re-enabled queue goes to the end.
func TestQueueRenumbering(t *testing.T) {
	privtest.Require(t, "tap")
	privtest.Require(t, "bpf")
	netnstest.Run(t, func() {
		d, inj := setup(t, 4)
		steer := func(ret int32) {
			prog := loadReturn(t, ret)
			defer unix.Close(prog)
			if err := d.SetSteering(prog); err != nil {
				t.Fatal(err)
			}
		}
		if err := d.SetQueueEnabled(1, false); err != nil {
			t.Fatal(err)
		}
		steer(1)
		c := perQueue(sendAndDrain(t, d, inj, flows(32)), 4)
		if c[3] != 32 {
			t.Errorf("queue 1 disabled, program returns 1: frames per queue %v, want all on fd 3", c)
		}
		if err := d.SetQueueEnabled(1, true); err != nil {
			t.Fatal(err)
		}
		steer(3)
		c = perQueue(sendAndDrain(t, d, inj, flows(32)), 4)
		if c[1] != 32 {
			t.Errorf("queue 1 re-enabled, program returns 3: frames per queue %v, want all on fd 1", c)
		}
	})
}

func TestDrainNothing(t *testing.T) {
	privtest.Require(t, "tap")
	netnstest.Run(t, func() {
		d, _ := setup(t, 2)
		got, err := DrainQueues(d, hdrLen, 0, 100*time.Millisecond)
		if err != nil || len(got[0])+len(got[1]) != 0 {
			t.Errorf("idle device: %v, %v", got, err)
		}
		_, err = DrainQueues(d, hdrLen, 1, 50*time.Millisecond)
		if err == nil {
			t.Error("want a timeout error when nothing arrives")
		}
	})
}

func TestSendErrors(t *testing.T) {
	privtest.Require(t, "tap")
	netnstest.Run(t, func() {
		d, inj := setup(t, 1)
		if err := inj.Send([]byte{1, 2, 3}); err == nil {
			t.Error("a 3-byte frame was accepted")
		}
		if err := inj.SendBatch([][]byte{{}}); err == nil {
			t.Error("an empty frame was accepted")
		}
		if err := inj.Send(bytes.Repeat([]byte{0xff}, 9000)); err == nil {
			t.Errorf("a frame above the %s MTU was accepted", d.Name())
		}
	})
}

// loadReturn loads a socket filter program that returns v.
func loadReturn(t *testing.T, v int32) int {
	t.Helper()
	fd, err := privtest.LoadReturnProgram(v)
	if err != nil {
		t.Fatal(err)
	}
	return fd
}
