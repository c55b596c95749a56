package portxdp

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"

	"github.com/vrss-dev/vrss/port"
)

// Program is a loaded port-security program and its maps.
type Program struct {
	// Prog is the XDP program to attach to a TAP (Attach).
	Prog *ebpf.Program
	// ConfigMap is the mmapable policy map (one element, two slots).
	ConfigMap *ebpf.Map
	// StatsMap holds the per-CPU counters (Counters).
	StatsMap *ebpf.Map
	// UplinkMap is the one-entry DEVMAP of the fast path (SetUplink).
	UplinkMap *ebpf.Map
	// XSKMap is an AF_XDP port's XSKMAP: its sockets by receive queue
	// (SetSocket).
	XSKMap *ebpf.Map
	// DebugMap holds the last frame's judgement; only in the debug build
	// (LoadDebug).
	DebugMap *ebpf.Map

	mu  sync.Mutex
	pub *Publisher
}

// objects are what a program needs of its collection: bpf2go's objects
// name every map of the headers it includes (the flow build's too), and
// LoadAndAssign creates only those asked for.
type objects struct {
	Prog   *ebpf.Program `ebpf:"vrss_port"`
	Config *ebpf.Map     `ebpf:"port_config"`
	Stats  *ebpf.Map     `ebpf:"port_stats"`
	Uplink *ebpf.Map     `ebpf:"port_uplink"`
	XSKs   *ebpf.Map     `ebpf:"port_xsks"`
}

type debugObjects struct {
	objects
	Debug *ebpf.Map `ebpf:"port_debug"`
}

// Load loads the production program. No policy is published yet: until
// Publish, the program drops every frame (and counts it as unconfigured).
func Load() (*Program, error) { return load(false) }

// LoadDebug loads the debug build, which also records each frame's
// judgement (LastResult), for tests.
func LoadDebug() (*Program, error) { return load(true) }

func load(debug bool) (*Program, error) {
	_ = rlimit.RemoveMemlock() // before Linux 5.11 only; root may
	var (
		spec *ebpf.CollectionSpec
		err  error
		o    debugObjects
		to   any = &o.objects
	)
	if debug {
		spec, err = loadPortdebug()
		to = &o
	} else {
		spec, err = loadPort()
	}
	if err != nil {
		return nil, fmt.Errorf("portxdp: %w", err)
	}
	if err := spec.LoadAndAssign(to, nil); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("portxdp: load: %+v", ve)
		}
		return nil, fmt.Errorf("portxdp: load: %w", err)
	}
	p := &Program{Prog: o.Prog, ConfigMap: o.Config, StatsMap: o.Stats, UplinkMap: o.Uplink, XSKMap: o.XSKs, DebugMap: o.Debug}
	if p.pub, err = NewPublisher(p.ConfigMap.FD()); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// Publish validates pol and, if it is valid, makes it the policy the
// program judges by, in one atomic step; on error the active policy stays.
// A policy that names an uplink makes the program redirect the frames it
// passes to the device SetUplink names (until then they pass to the
// stack).
func (p *Program) Publish(pol port.Policy) error {
	pub := p.publisher()
	if pub == nil {
		return errors.New("portxdp: program closed")
	}
	return pub.Publish(pol)
}

// PublishXSK is Publish for an AF_XDP port, whose receive queues q are
// handed to a VMM as AF_XDP sockets (Publisher.PublishXSK).
func (p *Program) PublishXSK(pol port.Policy, q Queues) error {
	pub := p.publisher()
	if pub == nil {
		return errors.New("portxdp: program closed")
	}
	return pub.PublishXSK(pol, q)
}

// SetSocket puts the AF_XDP socket fd at receive queue queue of the
// XSKMAP: the frames the policy passes on that queue go to it. The kernel
// takes an unbound socket (a VMM binds it to the device and queue later);
// until it is bound there, the frames redirected to it are lost, not
// passed to the stack. The map holds its own reference: the caller may
// close fd.
func (p *Program) SetSocket(queue, fd int) error {
	if queue < 0 || queue >= MaxQueues {
		return fmt.Errorf("portxdp: queue %d: want 0 to %d", queue, MaxQueues-1)
	}
	if err := p.XSKMap.Put(uint32(queue), uint32(fd)); err != nil {
		return fmt.Errorf("portxdp: socket fd %d at queue %d: %w", fd, queue, err)
	}
	return nil
}

// ClearSocket removes the socket at receive queue queue, if any: the
// frames the policy passes on that queue then go to the stack.
func (p *Program) ClearSocket(queue int) error {
	if queue < 0 || queue >= MaxQueues {
		return fmt.Errorf("portxdp: queue %d: want 0 to %d", queue, MaxQueues-1)
	}
	if err := p.XSKMap.Delete(uint32(queue)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("portxdp: clear the socket at queue %d: %w", queue, err)
	}
	return nil
}

// Generation returns how many policies have been published.
func (p *Program) Generation() uint64 {
	if pub := p.publisher(); pub != nil {
		return pub.Generation()
	}
	return 0
}

func (p *Program) publisher() *Publisher {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pub
}

// SetUplink makes the device with ifindex the fast path's uplink: frames
// the policy passes go to it by XDP redirect when the policy names an
// uplink. 0 removes it (frames then pass to the stack). The device must
// take XDP frames (ndo_xdp_xmit: a NIC's driver, a veth whose peer runs an
// XDP program or GRO); never a guest's TAP, where a redirected frame skips
// the steering program (docs/port-security.md). Frames longer than the uplink's MTU allows
// (a guest's GSO frames) pass to the stack, which segments them: call
// SetUplink again after changing the uplink's MTU.
func (p *Program) SetUplink(ifindex int) error { return SetUplink(p.UplinkMap, p.publisher(), ifindex) }

// SetUplink is Program.SetUplink for a process that did not load the
// program: uplinkMap is its UplinkMap (or the same map pinned), pub a
// publisher of its ConfigMap.
func SetUplink(uplinkMap *ebpf.Map, pub *Publisher, ifindex int) error {
	switch {
	case pub == nil:
		return errors.New("portxdp: program closed")
	case ifindex < 0:
		return fmt.Errorf("portxdp: uplink ifindex %d", ifindex)
	case ifindex == 0:
		pub.setUplinkLen(0)
		if err := uplinkMap.Delete(uint32(0)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("portxdp: clear uplink: %w", err)
		}
		return nil
	}
	ifi, err := net.InterfaceByIndex(ifindex)
	if err != nil {
		return fmt.Errorf("portxdp: uplink: %w", err)
	}
	if err := uplinkMap.Put(uint32(0), uint32(ifindex)); err != nil {
		return fmt.Errorf("portxdp: uplink %s (ifindex %d): %w", ifi.Name, ifindex, err)
	}
	// What the kernel forwards by redirect (xdp_ok_fwd_dev): the MTU, the
	// Ethernet header and a VLAN tag. Longer frames (GSO) pass to the
	// stack instead of being dropped by the redirect.
	pub.setUplinkLen(uint32(ifi.MTU + 14 + 4))
	return nil
}

// Attach attaches the program to the interface with ifindex (a TAP) in
// native (driver) mode, which tun implements: it then runs on every frame
// the VMM writes. Closing the link detaches it.
func (p *Program) Attach(ifindex int) (link.Link, error) {
	l, err := link.AttachXDP(link.XDPOptions{Program: p.Prog, Interface: ifindex, Flags: link.XDPDriverMode})
	if err != nil {
		return nil, fmt.Errorf("portxdp: attach to ifindex %d: %w", ifindex, err)
	}
	return l, nil
}

// Run runs the program once on frame (an Ethernet frame, at least 14
// bytes) with BPF_PROG_TEST_RUN and returns the XDP action: 1 drop, 2
// pass, 4 redirect.
func (p *Program) Run(frame []byte) (uint32, error) {
	return p.Prog.Run(&ebpf.RunOptions{Data: frame})
}

// xdpMd is struct xdp_md, BPF_PROG_TEST_RUN's context of an XDP program.
type xdpMd struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

// rxOptions are the options of a test run of frame as if it had arrived
// on receive queue queue of the device with ifindex (in the calling
// thread's network namespace, with more than queue receive queues).
func rxOptions(frame []byte, ifindex, queue int) *ebpf.RunOptions {
	return &ebpf.RunOptions{Data: frame, Context: xdpMd{DataEnd: uint32(len(frame)), IngressIfindex: uint32(ifindex), RxQueueIndex: uint32(queue)}}
}

// RunQueue is Run as if frame had arrived on receive queue queue of the
// device with ifindex, in the calling thread's network namespace (the
// kernel refuses a queue the device does not have).
func (p *Program) RunQueue(frame []byte, ifindex, queue int) (uint32, error) {
	return p.Prog.Run(rxOptions(frame, ifindex, queue))
}

// Benchmark runs the program repeat times on frame with BPF_PROG_TEST_RUN
// and returns the mean time per run.
func (p *Program) Benchmark(frame []byte, repeat int) (time.Duration, error) {
	_, d, err := p.Prog.Benchmark(frame, repeat, nil)
	return d, err
}

// Result is the debug build's record of one frame's judgement. A frame an
// AF_XDP port's program did not judge (another queue's) has reason 0 and
// rule -1, and passes.
type Result struct {
	port.Result
	// Action is the XDP action returned (1 drop, 2 pass, 4 redirect).
	Action uint32
	// Tag is the published policy that judged the frame: the
	// Generation after its Publish.
	Tag uint64
}

// LastResult returns the judgement of the last frame the debug build ran
// on (on this CPU's last run under BPF_PROG_TEST_RUN).
func (p *Program) LastResult() (Result, error) {
	if p.DebugMap == nil {
		return Result{}, errors.New("portxdp: not the debug build")
	}
	var d debugLayout
	if err := p.DebugMap.Lookup(uint32(0), &d); err != nil {
		return Result{}, fmt.Errorf("portxdp: read debug map: %w", err)
	}
	r := Result{Result: port.Result{Verdict: port.VerdictDrop, Reason: port.Reason(d.Reason), Rule: int(d.Rule)}, Action: d.Action, Tag: d.Tag}
	// Reason 0: not judged (an AF_XDP port's frame of another queue),
	// passed.
	if r.Reason.Pass() || r.Reason == 0 {
		r.Verdict = port.VerdictPass
	}
	return r, nil
}

// Close unmaps the policy map and releases the program and maps (an
// attached link keeps the program running until it is closed).
func (p *Program) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	if p.pub != nil {
		errs = append(errs, p.pub.Close())
		p.pub = nil
	}
	if p.Prog != nil {
		errs = append(errs, p.Prog.Close())
	}
	for _, m := range []*ebpf.Map{p.ConfigMap, p.StatsMap, p.UplinkMap, p.XSKMap, p.DebugMap} {
		if m != nil {
			errs = append(errs, m.Close())
		}
	}
	return errors.Join(errs...)
}
