package xsktest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/internal/frame"
	"github.com/vrss-dev/vrss/internal/netnstest"
	"github.com/vrss-dev/vrss/xsk"
)

// PPS is the receive-rate benchmark's result: frames per second received
// by each kind of socket, the median over rounds, and the frames sent but
// not received, over all rounds (both should be small: a rate is counted
// over the frames that arrived).
type PPS struct {
	Sender       string  `json:"sender"` // "live" or "af_packet" (PPSOptions)
	AFPacket     float64 `json:"af_packet"`
	AFXDP        float64 `json:"afxdp"`
	LostAFPacket int     `json:"lost_af_packet"`
	LostAFXDP    int     `json:"lost_afxdp"`
}

// PPSOptions sizes MeasurePPS.
type PPSOptions struct {
	Frames int // per round and socket kind; 200,000 if zero
	Rounds int // 5 if zero
	// AFPacketSender sends with an AF_PACKET socket (sendmmsg, 256 frames
	// a call, cycling through 1,024 flows), whose cost per frame (an skb,
	// the transmit path, veth copying it into a page for XDP) bounds both
	// rates, instead of the default: an XDP program that
	// BPF_PROG_TEST_RUN runs in live-frames mode, redirecting every frame
	// into the veth (no socket, no skb: the kernel's cheapest generator,
	// faster than either receiver), one call per round.
	AFPacketSender bool
}

// quiet is how long a round waits for more frames before it counts the
// rest as lost.
const quiet = 200 * time.Millisecond

// MeasurePPS measures, in a new network namespace, the rate at which
// 64-byte UDP frames, sent into one end of a one-queue veth pair by the
// live-frames generator (or an AF_PACKET socket: PPSOptions), are
// received on the other end by an AF_XDP socket set up with package xsk (copy mode; the redirect program
// attached in driver mode) and by an AF_PACKET socket reading batches
// with recvmmsg. The program stays attached for both, so veth delivers
// alike (in NAPI); the AF_PACKET rounds take the socket out of the
// XSKMAP, so the program passes every frame to the stack. Rounds of the
// two alternate, which one goes first alternating too. A receiver slower
// than the sender loses frames (the veth's ring or the socket's fills):
// the rate counts those received, up to the last. It needs root.
func MeasurePPS(o PPSOptions) (PPS, error) {
	if o.Frames <= 0 {
		o.Frames = 200_000
	}
	if o.Rounds <= 0 {
		o.Rounds = 5
	}
	res := PPS{Sender: "live"}
	if o.AFPacketSender {
		res.Sender = "af_packet"
	}
	err := netnstest.Do(func() error {
		b, err := newPPSBench(!o.AFPacketSender)
		if err != nil {
			return err
		}
		defer b.close()
		var xdp, pkt []float64
		for round := -1; round < o.Rounds; round++ { // round -1 warms up
			for i := range 2 {
				afxdp := (i+max(round, 0))%2 == 0
				pps, got, err := b.round(afxdp, o.Frames)
				if err != nil {
					return err
				}
				if round < 0 {
					continue
				}
				if afxdp {
					xdp, res.LostAFXDP = append(xdp, pps), res.LostAFXDP+o.Frames-got
				} else {
					pkt, res.LostAFPacket = append(pkt, pps), res.LostAFPacket+o.Frames-got
				}
			}
		}
		res.AFXDP, res.AFPacket = median(xdp), median(pkt)
		return nil
	})
	return res, err
}

// ppsBench is MeasurePPS's network and sockets.
type ppsBench struct {
	pair   *Pair
	send   *Sender
	xsk    *xsk.Socket
	packet int
	frames [][]byte
	live   *ebpf.Program // the live-frames sender, if used
	// The AF_PACKET socket's recvmmsg buffers.
	bufs [pktBatch][2048]byte
	iov  [pktBatch]unix.Iovec
	hdr  [pktBatch]unix.Mmsghdr
}

// pktBatch is how many frames one recvmmsg takes at most.
const pktBatch = 64

func newPPSBench(live bool) (_ *ppsBench, err error) {
	b := &ppsBench{packet: -1}
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	if b.pair, err = NewPair("xskb", 1, false); err != nil {
		return nil, err
	}
	if b.send, err = b.pair.NewSender(1); err != nil {
		return nil, err
	}
	f, err := xsk.NewUnbound()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fd, err := unix.Dup(int(f.Fd()))
	if err != nil {
		return nil, err
	}
	b.xsk, err = xsk.Setup(fd, xsk.Options{Frames: 8192, FrameSize: 2048, FillSize: 8192, RxSize: 8192, Ifindex: b.pair.In.Attrs().Index, Copy: true})
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	proto := int(binary.BigEndian.Uint16(binary.NativeEndian.AppendUint16(nil, unix.ETH_P_ALL)))
	if b.packet, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto); err != nil {
		return nil, fmt.Errorf("xsktest: AF_PACKET socket: %w", err)
	}
	if err := unix.Bind(b.packet, &unix.SockaddrLinklayer{Protocol: uint16(proto), Ifindex: b.pair.In.Attrs().Index}); err != nil {
		return nil, fmt.Errorf("xsktest: bind AF_PACKET: %w", err)
	}
	if err := unix.SetsockoptInt(b.packet, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20); err != nil {
		return nil, fmt.Errorf("xsktest: SO_RCVBUFFORCE: %w", err)
	}
	if live {
		if b.live, err = ebpf.NewProgram(&ebpf.ProgramSpec{
			Name: "xsk_live_send", Type: ebpf.XDP, License: "GPL",
			Instructions: asm.Instructions{
				asm.Mov.Imm(asm.R1, int32(b.pair.Out.Attrs().Index)),
				asm.Mov.Imm(asm.R2, 0),
				asm.FnRedirect.Call(), // bpf_redirect(Out, 0): out of Out, into In
				asm.Return(),
			},
		}); err != nil {
			return nil, fmt.Errorf("xsktest: load the live-frames sender: %w", err)
		}
	}
	for i := range b.hdr {
		b.iov[i].Base = &b.bufs[i][0]
		b.iov[i].SetLen(len(b.bufs[i]))
		b.hdr[i].Hdr.Iov, b.hdr[i].Hdr.Iovlen = &b.iov[i], 1
	}
	for i := range 1024 {
		b.frames = append(b.frames, frame.Build(frame.Spec{
			Src: netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), Dst: netip.AddrFrom4([4]byte{10, 2, 0, 1}),
			Proto: frame.ProtoUDP, SrcPort: uint16(1024 + i), DstPort: 4789, Payload: 64 - 42,
		}))
	}
	return b, nil
}

func (b *ppsBench) close() {
	if b.live != nil {
		b.live.Close()
	}
	if b.xsk != nil {
		b.xsk.Close()
	}
	if b.packet >= 0 {
		unix.Close(b.packet)
	}
	if b.send != nil {
		b.send.Close()
	}
	if b.pair != nil {
		b.pair.Close()
	}
}

// round sends n frames and receives them on the AF_XDP socket (afxdp) or
// the AF_PACKET socket, and returns the rate from the first arrival to
// the last (a test run's setup and teardown stay out of it), and how many
// arrived.
func (b *ppsBench) round(afxdp bool, n int) (float64, int, error) {
	if afxdp {
		if err := b.pair.Redirect.Put(0, b.xsk.Fd()); err != nil {
			return 0, 0, err
		}
	} else if err := b.pair.Redirect.Map.Delete(uint32(0)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return 0, 0, err
	}
	recv := b.packetBatch
	if afxdp {
		recv = b.xskBatch
	}
	type result struct {
		got         int
		first, last time.Time
		err         error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		r.last = time.Now()
		for r.got < n && time.Since(r.last) < quiet {
			k, err := recv()
			if err != nil {
				r.err = err
				break
			}
			if k > 0 {
				if r.got == 0 {
					r.first = time.Now()
				}
				r.got += k
				r.last = time.Now()
			}
		}
		done <- r
	}()
	if err := b.sendAll(n); err != nil {
		<-done
		return 0, 0, err
	}
	r := <-done
	if r.err != nil {
		return 0, 0, r.err
	}
	// Frames still coming (a live run the kernel restarted after a
	// signal sends some again) must not count in the next round.
	for {
		if k, err := recv(); k == 0 || err != nil {
			break
		}
	}
	got := min(r.got, n)
	if got < 2 || !r.last.After(r.first) {
		return 0, got, fmt.Errorf("xsktest: %d of %d frames received: too few for a rate", got, n)
	}
	return float64(got) / r.last.Sub(r.first).Seconds(), got, nil
}

// sendAll sends n frames: with the live-frames program in one call (on
// this thread, which is in the benchmark's namespace: the test run
// resolves the redirect's ifindex in the caller's), or with the AF_PACKET
// sender in batches, cycling through b.frames.
func (b *ppsBench) sendAll(n int) error {
	if b.live != nil {
		_, err := b.live.Run(&ebpf.RunOptions{Data: b.frames[0], Repeat: uint32(n), Flags: unix.BPF_F_TEST_XDP_LIVE_FRAMES})
		if err != nil {
			return fmt.Errorf("xsktest: live frames: %w", err)
		}
		return nil
	}
	for sent := 0; sent < n; {
		k := min(n-sent, 256)
		batch := make([][]byte, k)
		for i := range batch {
			batch[i] = b.frames[(sent+i)%len(b.frames)]
		}
		if err := b.send.Send(0, batch); err != nil {
			return err
		}
		sent += k
	}
	return nil
}

// xskBatch receives what the AF_XDP socket has, waiting up to 10 ms.
func (b *ppsBench) xskBatch() (int, error) {
	return b.xsk.Receive(10*time.Millisecond, func([]byte) {})
}

// packetBatch receives up to 64 frames from the AF_PACKET socket with one
// recvmmsg, waiting up to 10 ms for the first.
func (b *ppsBench) packetBatch() (int, error) {
	if _, err := unix.Poll([]unix.PollFd{{Fd: int32(b.packet), Events: unix.POLLIN}}, 10); err != nil && !errors.Is(err, unix.EINTR) {
		return 0, err
	}
	k, _, e := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(b.packet), uintptr(unsafe.Pointer(&b.hdr[0])), pktBatch, unix.MSG_DONTWAIT, 0, 0)
	switch e {
	case 0:
		return int(k), nil
	case unix.EAGAIN, unix.EINTR:
		return 0, nil
	}
	return 0, fmt.Errorf("xsktest: recvmmsg: %w", e)
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
