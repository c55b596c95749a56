package portxdp

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/flow"
	"github.com/vrss-dev/vrss/internal/frame"
	"github.com/vrss-dev/vrss/port"
)

// XDPNs is the xdp_ns benchmark's result: ns per frame as
// BPF_PROG_TEST_RUN measures it, for an XDP program that only returns
// XDP_PASS (Floor) and for the port-security program (Policy) on
// BenchFrame under BenchPolicy; each the median of the rounds.
type XDPNs struct {
	Floor  float64 `json:"floor"`
	Policy float64 `json:"policy"`
	// PolicyOverFloor is the median over rounds of the ratio within a
	// round: a slow spell that falls on one program's measurement of a
	// round moves one ratio, not a median of each.
	PolicyOverFloor float64 `json:"policy_over_floor"`
}

// benchRules are a realistic ten-rule ACL: what a web server guest may
// send besides what the checks pass, with SMTP dropped.
func benchRules() []port.Rule {
	type r struct {
		etype uint16
		proto uint8
		dport uint16 // 0: any
		act   port.Action
	}
	var rules []port.Rule
	for _, x := range []r{
		{0x0800, 6, 25, port.Drop}, {0x0800, 17, 53, port.Allow}, {0x86dd, 17, 53, port.Allow}, {0x0800, 17, 123, port.Allow},
		{0x0800, 1, 0, port.Allow}, {0x86dd, 58, 0, port.Allow}, {0x0800, 6, 22, port.Allow}, {0x0800, 6, 80, port.Allow},
		{0x86dd, 6, 443, port.Allow}, {0x0800, 6, 443, port.Allow},
	} {
		var m flow.Match
		m.SetEtherType(x.etype, 0xffff)
		m.SetProto(x.proto, 0xff)
		if x.dport != 0 {
			m.SetDstPort(x.dport, 0xffff)
		}
		if err := m.Normalize(); err != nil {
			panic(err)
		}
		rules = append(rules, port.Rule{Match: m, Action: x.act})
	}
	return rules
}

var benchMAC = port.MAC{0x52, 0x54, 0, 0xab, 0xcd, 0xef}

// BenchPolicy is the benchmark's policy: one MAC, one IPv4 address, a
// ten-rule ACL (SMTP dropped; DNS, NTP, ICMP, ICMPv6, SSH, HTTP and HTTPS
// allowed), default deny.
func BenchPolicy() port.Policy {
	return port.Policy{MACs: []port.MAC{benchMAC}, IPv4: []netip.Prefix{netip.MustParsePrefix("192.0.2.10/32")}, Rules: benchRules(), Default: port.Drop}
}

// BenchFrame is the benchmark's TCPv4 frame (to port 443, from the
// policy's MAC and address): it passes by the last rule, so the whole ACL
// is tried.
func BenchFrame() []byte {
	b := frame.Build(frame.Spec{Src: netip.MustParseAddr("192.0.2.10"), Dst: netip.MustParseAddr("198.51.100.1"), Proto: frame.ProtoTCP, SrcPort: 40000, DstPort: 443, Payload: 20})
	copy(b[6:12], benchMAC[:])
	return b
}

// BenchFrameIn is BenchFrame as an AF_XDP port's benchmark frame, which
// is judged inbound: a TCPv4 frame arriving for the guest (to the
// policy's MAC and address, port 443), passed by the last rule likewise.
func BenchFrameIn() []byte {
	b := frame.Build(frame.Spec{Src: netip.MustParseAddr("198.51.100.1"), Dst: netip.MustParseAddr("192.0.2.10"), Proto: frame.ProtoTCP, SrcPort: 40000, DstPort: 443, Payload: 20})
	copy(b[0:6], benchMAC[:])
	copy(b[6:12], []byte{0x02, 0, 0, 0, 0, 1})
	return b
}

// MeasureXDPNs loads the production program and an XDP_PASS floor,
// publishes BenchPolicy, checks that BenchFrame passes by the last rule,
// and measures both on it, interleaved round by round (so the machine's
// drift affects both alike), repeat runs a measurement.
func MeasureXDPNs(rounds, repeat int) (XDPNs, error) {
	p, err := Load()
	if err != nil {
		return XDPNs{}, err
	}
	defer p.Close()
	if err := p.Publish(BenchPolicy()); err != nil {
		return XDPNs{}, err
	}
	fl, po, ratio, err := p.measure(2, BenchFrame(), port.New, rounds, repeat) // XDP_PASS
	if err != nil {
		return XDPNs{}, err
	}
	return XDPNs{Floor: fl, Policy: po[0], PolicyOverFloor: ratio}, nil
}

// AFXDPNs is the afxdp_ns benchmark's result: ns per frame as
// BPF_PROG_TEST_RUN measures it for the XDP_PASS floor (Floor) and for the
// port-security program of an AF_XDP port (Redirect) on BenchFrameIn under
// BenchPolicy, which it passes and redirects to the AF_XDP socket at its
// receive queue; each the median of the rounds.
type AFXDPNs struct {
	Floor    float64 `json:"floor"`
	Redirect float64 `json:"redirect"`
	// RedirectOnly is a reference measured in the same rounds: a program
	// that does nothing but the XSKMAP redirect by receive queue (no
	// parse, no policy), the least any AF_XDP port's program costs.
	RedirectOnly float64 `json:"redirect_only"`
	// RedirectOverFloor is the median over rounds of the ratio within a
	// round, as XDPNs.PolicyOverFloor.
	RedirectOverFloor float64 `json:"redirect_over_floor"`
}

// MeasureAFXDPNs is MeasureXDPNs for an AF_XDP port: the program publishes
// BenchPolicy for receive queue 0 (the queue of a test run's frame) with
// an AF_XDP socket there, unbound, and returns XDP_REDIRECT for
// BenchFrameIn. A test run does not carry the redirect out: Redirect is the
// program's cost up to and including bpf_redirect_map, without the
// kernel's copy into the socket that follows.
func MeasureAFXDPNs(rounds, repeat int) (AFXDPNs, error) {
	p, err := Load()
	if err != nil {
		return AFXDPNs{}, err
	}
	defer p.Close()
	if err := p.PublishXSK(BenchPolicy(), Queues{Start: 0, Count: 1}); err != nil {
		return AFXDPNs{}, err
	}
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return AFXDPNs{}, fmt.Errorf("portxdp: AF_XDP socket: %w", err)
	}
	defer unix.Close(fd)
	// An RX ring, which Linux 7.2 wants of a socket in an XSKMAP
	// (ENOBUFS otherwise) and 6.x does not mind.
	if err := unix.SetsockoptInt(fd, unix.SOL_XDP, unix.XDP_RX_RING, 64); err != nil {
		return AFXDPNs{}, fmt.Errorf("portxdp: AF_XDP socket's RX ring: %w", err)
	}
	if err := p.SetSocket(0, fd); err != nil {
		return AFXDPNs{}, err
	}
	only, err := redirectOnly(fd)
	if err != nil {
		return AFXDPNs{}, err
	}
	defer only.Close()
	fl, re, ratio, err := p.measure(4, BenchFrameIn(), port.NewInbound, rounds, repeat, only) // XDP_REDIRECT
	if err != nil {
		return AFXDPNs{}, err
	}
	return AFXDPNs{Floor: fl, Redirect: re[0], RedirectOnly: re[1], RedirectOverFloor: ratio}, nil
}

// redirectOnly loads the redirect-only reference program, with its own
// XSKMAP holding the socket fd at queue 0:
// bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS).
func redirectOnly(fd int) (*ebpf.Program, error) {
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.XSKMap, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		return nil, fmt.Errorf("portxdp: the reference's XSKMAP: %w", err)
	}
	defer m.Close() // the program holds it
	if err := m.Put(uint32(0), uint32(fd)); err != nil {
		return nil, fmt.Errorf("portxdp: the reference's XSKMAP: %w", err)
	}
	const rxQueueIndex = 16 // offsetof(struct xdp_md, rx_queue_index)
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, License: "Dual BSD/GPL", Instructions: asm.Instructions{
		asm.LoadMem(asm.R2, asm.R1, rxQueueIndex, asm.Word),
		asm.LoadMapPtr(asm.R1, m.FD()),
		asm.Mov.Imm(asm.R3, 2), // XDP_PASS if the entry is empty
		asm.FnRedirectMap.Call(),
		asm.Return(),
	}})
	if err != nil {
		return nil, fmt.Errorf("portxdp: load the redirect-only reference: %w", err)
	}
	if act, _, err := prog.Test(BenchFrameIn()); err != nil || act != 4 {
		prog.Close()
		return nil, fmt.Errorf("portxdp: the redirect-only reference returned %d (%v), want XDP_REDIRECT", act, err)
	}
	return prog, nil
}

// measure checks that f passes BenchPolicy by its last rule (judged by
// the Filter newFilter makes) and that the program, with that policy
// published, returns action for it,
// then measures an XDP_PASS floor, the program and the references on it,
// interleaved round by round (so the machine's drift affects all alike),
// repeat runs a measurement. It returns the medians of the floor's ns per
// frame, of the program's and each reference's (in progNs after the
// program's), and the median of the rounds' program/floor ratios.
func (p *Program) measure(action uint32, f []byte, newFilter func(port.Policy) (*port.Filter, error), rounds, repeat int, refs ...*ebpf.Program) (floorNs float64, progNs []float64, ratio float64, err error) {
	floor, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, License: "Dual BSD/GPL", Instructions: asm.Instructions{
		asm.Mov.Imm(asm.R0, 2), // XDP_PASS
		asm.Return(),
	}})
	if err != nil {
		return 0, nil, 0, fmt.Errorf("portxdp: load the XDP_PASS floor: %w", err)
	}
	defer floor.Close()
	pol := BenchPolicy()
	ref, err := newFilter(pol)
	if err != nil {
		return 0, nil, 0, err
	}
	if want := ref.Check(f); want.Reason != port.ACLAllow || want.Rule != len(pol.Rules)-1 {
		return 0, nil, 0, fmt.Errorf("portxdp: the benchmark frame is judged %+v, not by the last rule", want)
	}
	if act, err := p.Run(f); err != nil || act != action {
		return 0, nil, 0, fmt.Errorf("portxdp: the program returned %d (%v) for the benchmark frame, want %d", act, err, action)
	}
	var fl, po, ratios []float64
	refNs := make([][]float64, len(refs))
	for range max(rounds, 1) {
		_, d, err := floor.Benchmark(f, repeat, nil)
		if err != nil {
			return 0, nil, 0, fmt.Errorf("portxdp: BPF_PROG_TEST_RUN of the floor: %w", err)
		}
		fl = append(fl, float64(d.Nanoseconds()))
		d, err = p.Benchmark(f, repeat)
		if err != nil {
			return 0, nil, 0, fmt.Errorf("portxdp: BPF_PROG_TEST_RUN of the policy: %w", err)
		}
		po = append(po, float64(d.Nanoseconds()))
		for i, r := range refs {
			_, d, err := r.Benchmark(f, repeat, nil)
			if err != nil {
				return 0, nil, 0, fmt.Errorf("portxdp: BPF_PROG_TEST_RUN of a reference: %w", err)
			}
			refNs[i] = append(refNs[i], float64(d.Nanoseconds()))
		}
		if f := fl[len(fl)-1]; f > 0 {
			ratios = append(ratios, po[len(po)-1]/f)
		}
	}
	if len(ratios) > 0 {
		ratio = median(ratios)
	}
	progNs = []float64{median(po)}
	for _, r := range refNs {
		progNs = append(progNs, median(r))
	}
	return median(fl), progNs, ratio, nil
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
