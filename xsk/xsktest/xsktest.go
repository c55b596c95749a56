// Package xsktest builds what tests and benchmarks of package xsk need: a
// veth pair with several queues, the XDP program that redirects each
// receive queue's frames to its AF_XDP socket (an XSKMAP indexed by
// ctx->rx_queue_index, XDP_PASS when the queue has no socket), a sender
// that picks the queue each frame arrives on, and the AF_XDP against
// AF_PACKET receive-rate measurement (MeasurePPS).
//
// How veth picks a receive queue: veth_xmit delivers a frame on the
// peer's receive queue whose index is the skb's queue_mapping, the
// transmit queue the sending device chose (netdev_pick_tx: XPS if
// configured, else skb_tx_hash, which takes a recorded receive queue,
// queue_mapping - 1, when there is one, else the flow hash scaled to the
// queue count). The sender here records one: a tc egress program on the
// sending veth copies the skb's mark, set per AF_PACKET socket with
// SO_MARK to queue + 1, into queue_mapping, so skb_tx_hash picks queue
// mark - 1. Frames without a mark spread over the queues by flow hash.
//
// Which receive queue the XDP program sees (ctx->rx_queue_index) depends
// on the mode it is attached in. In driver mode it runs in veth's NAPI
// poll of that queue and sees it. In skb (generic) mode it runs in the
// stack, which takes the queue from the skb: veth records none, so the
// transmit queue left in skb->queue_mapping is read as a recorded receive
// queue, queue_mapping - 1 (0 meaning none): transmit queues 0 and 1 both
// arrive as receive queue 0, 2 as 1, 3 as 2, and the last receive queue
// never sees a frame (Linux 6.18, with or without GRO on the peer).
package xsktest

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// XDP actions.
const (
	xdpPass = 2
)

// Offsets in the programs' contexts (struct xdp_md, struct __sk_buff).
const (
	xdpMDRxQueueIndex = 16
	skbMark           = 8
	skbQueueMapping   = 12
)

// Redirect is the XDP program that sends each frame to the AF_XDP socket
// of its receive queue, and its XSKMAP.
type Redirect struct {
	Prog *ebpf.Program
	// Map is the XSKMAP: key the receive queue, value an AF_XDP socket's
	// fd (bound or not; a socket receives only once bound to that queue).
	Map *ebpf.Map
}

// NewRedirect loads the redirect program with an XSKMAP of queues
// entries: bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS), so a
// frame on a queue with no socket in the map goes on to the stack.
func NewRedirect(queues int) (*Redirect, error) {
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.XSKMap, KeySize: 4, ValueSize: 4, MaxEntries: uint32(queues)})
	if err != nil {
		return nil, fmt.Errorf("xsktest: create XSKMAP: %w", err)
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "xsk_redirect", Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{
			asm.LoadMem(asm.R2, asm.R1, xdpMDRxQueueIndex, asm.Word),
			asm.LoadMapPtr(asm.R1, m.FD()),
			asm.Mov.Imm(asm.R3, xdpPass),
			asm.FnRedirectMap.Call(),
			asm.Return(),
		},
	})
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("xsktest: load the redirect program: %w", err)
	}
	return &Redirect{Prog: prog, Map: m}, nil
}

// Put puts the AF_XDP socket fd in the map for queue.
func (r *Redirect) Put(queue int, fd int) error {
	if err := r.Map.Put(uint32(queue), uint32(fd)); err != nil {
		return fmt.Errorf("xsktest: XSKMAP[%d] = socket: %w", queue, err)
	}
	return nil
}

// Close unloads the program and the map.
func (r *Redirect) Close() error {
	return errors.Join(r.Prog.Close(), r.Map.Close())
}

// newQueueByMark loads the tc program that sets a marked skb's
// queue_mapping to its mark (see the package's comment).
func newQueueByMark() (*ebpf.Program, error) {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "queue_by_mark", Type: ebpf.SchedCLS, License: "GPL",
		Instructions: asm.Instructions{
			asm.LoadMem(asm.R2, asm.R1, skbMark, asm.Word),
			asm.JEq.Imm(asm.R2, 0, "out"),
			asm.StoreMem(asm.R1, skbQueueMapping, asm.R2, asm.Word),
			asm.Mov.Imm(asm.R0, -1).WithSymbol("out"), // TCX_NEXT
			asm.Return(),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("xsktest: load the queue-by-mark program: %w", err)
	}
	return prog, nil
}
