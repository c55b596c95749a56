package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/vrss-dev/vrss/flow"
	"github.com/vrss-dev/vrss/internal/frame"
	"github.com/vrss-dev/vrss/internal/netnstest"
	"github.com/vrss-dev/vrss/port"
	"github.com/vrss-dev/vrss/portxdp"
	"github.com/vrss-dev/vrss/tap"
	"github.com/vrss-dev/vrss/xsk/xsktest"
)

// The port benchmark's modes: how a guest's frames get from its TAP to the
// uplink.
const (
	// PortBridge: the TAP and the uplink are ports of a Linux bridge, no
	// filtering.
	PortBridge = "bridge"
	// PortNftables: the same bridge with nftables bridge-family rules
	// equivalent to the port policy, what libvirt's and OpenStack's hosts
	// do.
	PortNftables = "nftables"
	// PortVRSS: vrss's XDP policy on the TAP, allowed frames redirected
	// straight to the uplink (the bridge is still there; the frames skip
	// it).
	PortVRSS = "vrss"
)

// XDP actions the peer's program returns.
const (
	xdpDrop = 1
	xdpPass = 2
)

// PortModes are the modes in the order PortResult lists them.
var PortModes = []string{PortBridge, PortNftables, PortVRSS}

// Issue 14's targets: vrss's rate at least TargetPortOverNftables times
// nftables' and TargetPortOverBridge times the bare bridge's; the policy
// program at most TargetXDPPolicyOverFloor times an XDP program that only
// passes, per frame.
const (
	TargetPortOverNftables   = 1.3
	TargetPortOverBridge     = 1.0
	TargetXDPPolicyOverFloor = 2.0
)

// Issue 16's targets: the policy program with the XSKMAP redirect at most
// TargetAFXDPRedirectOverFloor times the XDP floor; an AF_XDP socket
// receiving at least TargetAFXDPOverAFPacket times the frames per second
// an AF_PACKET socket receives of the same traffic.
const (
	TargetAFXDPRedirectOverFloor = 2.0
	TargetAFXDPOverAFPacket      = 2.0
)

// measureAFXDP fills in the AF_XDP figures: the policy program with its
// XSKMAP redirect next to an XDP floor (portxdp.MeasureAFXDPNs), and the
// receive rates of an AF_XDP and an AF_PACKET socket on veth
// (xsktest.MeasurePPS, with the live-frames sender, faster than either
// receiver, so that the receivers are what is measured).
func measureAFXDP(r *Result, o Options) error {
	x, err := portxdp.MeasureAFXDPNs(o.Rounds, o.Repeat)
	if err != nil {
		return err
	}
	r.AFXDPNs = x
	pps, err := xsktest.MeasurePPS(xsktest.PPSOptions{Frames: o.Frames, Rounds: o.PortRounds})
	if err != nil {
		return err
	}
	r.AFXDPPPS = pps
	return nil
}

// measurePort fills in the port benchmark's figures: the rates of the
// three modes (MeasurePort) and the policy program's cost per frame next
// to an XDP floor (portxdp.MeasureXDPNs).
func measurePort(r *Result, o Options) error {
	pr, err := MeasurePort(PortOptions{Frames: o.Frames, Pairs: o.PortRounds}, VRSSPort)
	if err != nil {
		return err
	}
	r.PortResult = *pr
	x, err := portxdp.MeasureXDPNs(o.Rounds, o.Repeat)
	if err != nil {
		return err
	}
	r.XDPNs = x
	return nil
}

// PortAttach attaches vrss's port policy (BenchPolicy's equivalent:
// PortGuestMAC, PortGuestNet, PortACLPorts, default deny) to the TAP with
// index tapIndex, redirecting allowed frames to uplinkIndex, and returns
// what detaches it.
type PortAttach func(tapIndex, uplinkIndex int) (detach func() error, err error)

// The guest the port benchmark's policy describes, and its traffic.
var (
	// PortGuestMAC is the guest's MAC: frame.Build's source.
	PortGuestMAC = net.HardwareAddr{0x52, 0x54, 0, 0xab, 0xcd, 0xef}
	// PortGuestNet is the guest's IPv4 prefix.
	PortGuestNet = netip.MustParsePrefix("10.0.0.0/16")
	// PortServer is where the guest's frames go.
	PortServer = netip.MustParseAddr("10.1.0.1")
	// PortACLPorts are the ACL's rules, in order: allow TCP to each port.
	// The benchmark's frames go to the last, so that each frame is tried
	// against every rule where rules are tried in order.
	PortACLPorts = []uint16{22, 53, 80, 443, 3306, 5432, 6379, 8080, 9090, 5001}
)

// PortPolicy is the benchmark's policy as package port states it, the
// policy portRuleset expresses in nftables: the guest's MAC and prefix, an
// ACL allowing TCPv4 to each of PortACLPorts in order, default deny.
func PortPolicy() port.Policy {
	var mac port.MAC
	copy(mac[:], PortGuestMAC)
	p := port.Policy{MACs: []port.MAC{mac}, IPv4: []netip.Prefix{PortGuestNet}, Default: port.Drop}
	for _, dport := range PortACLPorts {
		var m flow.Match
		m.SetEtherType(0x0800, 0xffff)
		m.SetProto(6, 0xff)
		m.SetDstPort(dport, 0xffff)
		if err := m.Normalize(); err != nil {
			panic(err) // a fixed, valid match
		}
		p.Rules = append(p.Rules, port.Rule{Match: m, Action: port.Allow})
	}
	return p
}

// VRSSPort is the vrss mode's PortAttach: vrss's port-security program
// (package portxdp) with PortPolicy, in XDP on the TAP, redirecting what
// it allows to the uplink.
func VRSSPort(tapIndex, uplinkIndex int) (func() error, error) {
	p, err := portxdp.Load()
	if err != nil {
		return nil, err
	}
	fail := func(err error) (func() error, error) {
		p.Close()
		return nil, err
	}
	up, err := net.InterfaceByIndex(uplinkIndex)
	if err != nil {
		return fail(err)
	}
	pol := PortPolicy()
	pol.Uplink = up.Name // the policy's word that allowed frames go there
	if err := p.Publish(pol); err != nil {
		return fail(err)
	}
	if err := p.SetUplink(uplinkIndex); err != nil {
		return fail(err)
	}
	l, err := p.Attach(tapIndex)
	if err != nil {
		return fail(err)
	}
	return func() error { return errors.Join(l.Close(), p.Close()) }, nil
}

// PortOptions says how long the port benchmark runs.
type PortOptions struct {
	Frames int // frames a round writes
	Pairs  int // rounds of each mode, after one warm-up round each
}

// PortResult is the port benchmark's figures.
type PortResult struct {
	// PPS is each mode's rate in frames per second from the first write
	// into the TAP to the last arrival on the uplink's peer: the median
	// over rounds.
	PPS map[string]float64 `json:"port_pps"`
	// Lost counts frames written but not arrived, over all rounds of each
	// mode; it should be 0.
	Lost map[string]int `json:"port_lost"`
	// Error says why a mode was not measured (nft missing, or no vrss
	// program given).
	Error map[string]string `json:"port_error,omitempty"`
}

// MeasurePort measures the rate at which TCPv4 frames written into a TAP
// the way a VMM writes them (a virtio-net header, then the frame) reach
// the peer of a veth that stands for the uplink, in each mode, in a new
// network namespace. Rounds of the modes alternate, so that the machine's
// drift affects them alike. vrss may be nil: that mode is then skipped.
func MeasurePort(o PortOptions, vrss PortAttach) (*PortResult, error) {
	res := &PortResult{PPS: map[string]float64{}, Lost: map[string]int{}, Error: map[string]string{}}
	err := netnstest.Do(func() error {
		pt, err := newPortTopology(xdpDrop)
		if err != nil {
			return err
		}
		defer pt.close()
		frames := portFrames()
		type mode struct {
			name    string
			enable  func() (func() error, error)
			samples []float64
		}
		modes := []*mode{{name: PortBridge, enable: func() (func() error, error) { return func() error { return nil }, nil }}}
		if _, err := exec.LookPath("nft"); err != nil {
			res.Error[PortNftables] = "nft not found (Debian package nftables)"
		} else {
			modes = append(modes, &mode{name: PortNftables, enable: func() (func() error, error) { return pt.nftables() }})
		}
		if vrss == nil {
			res.Error[PortVRSS] = "no vrss program given"
		} else {
			modes = append(modes, &mode{name: PortVRSS, enable: func() (func() error, error) { return vrss(pt.tap.Index(), pt.uplink.Attrs().Index) }})
		}
		for round := -1; round < o.Pairs; round++ {
			for i := range modes {
				m := modes[(i+max(round, 0))%len(modes)]
				disable, err := m.enable()
				if err != nil {
					return fmt.Errorf("port benchmark, %s: %w", m.name, err)
				}
				pps, got, err := pt.round(frames, o.Frames)
				if derr := disable(); err == nil && derr != nil {
					err = fmt.Errorf("port benchmark, %s: undo: %w", m.name, derr)
				}
				if err != nil {
					return err
				}
				if round >= 0 {
					m.samples = append(m.samples, pps)
					res.Lost[m.name] += o.Frames - got
				}
			}
		}
		for _, m := range modes {
			res.PPS[m.name] = median(m.samples)
		}
		return nil
	})
	if len(res.Error) == 0 {
		res.Error = nil
	}
	return res, err
}

// portTopology is the benchmark's network: a TAP and a veth (uplink, and
// its peer where frames are counted) in a bridge.
type portTopology struct {
	tap    *tap.Device
	uplink netlink.Link
	peer   netlink.Link
	bridge netlink.Link
	pass   link.Link
	prog   *ebpf.Program
}

func newPortTopology(peerAction int) (_ *portTopology, err error) {
	pt := &portTopology{}
	defer func() {
		if err != nil {
			pt.close()
		}
	}()
	// br_netfilter, where it is loaded, would pass bridged IPv4 through
	// iptables; no mode here uses it (nftables hooks the bridge itself).
	for _, f := range []string{"bridge-nf-call-iptables", "bridge-nf-call-ip6tables", "bridge-nf-call-arptables"} {
		if err := os.WriteFile("/proc/sys/net/bridge/"+f, []byte("0"), 0); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("turn off %s: %w", f, err)
		}
	}
	if pt.tap, err = tap.Create(tap.Options{Queues: 1, VnetHdrLen: tapVnetHdrLen, Up: true}); err != nil {
		return nil, err
	}
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "vrssbr0"}}
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "vrssup0", TxQLen: tapTxQueueLen}, PeerName: "vrsspeer0"}
	for _, l := range []netlink.Link{br, veth} {
		if err := netlink.LinkAdd(l); err != nil {
			return nil, fmt.Errorf("add %s: %w", l.Attrs().Name, err)
		}
	}
	if pt.bridge, err = netlink.LinkByName(br.Name); err == nil {
		if pt.uplink, err = netlink.LinkByName(veth.Name); err == nil {
			pt.peer, err = netlink.LinkByName(veth.PeerName)
		}
	}
	if err != nil {
		return nil, err
	}
	tl, err := netlink.LinkByIndex(pt.tap.Index())
	if err != nil {
		return nil, err
	}
	for _, l := range []netlink.Link{tl, pt.uplink} {
		if err := netlink.LinkSetMaster(l, pt.bridge); err != nil {
			return nil, fmt.Errorf("put %s in the bridge: %w", l.Attrs().Name, err)
		}
	}
	for _, l := range []netlink.Link{pt.bridge, pt.uplink, pt.peer} {
		if err := netlink.LinkSetUp(l); err != nil {
			return nil, fmt.Errorf("set %s up: %w", l.Attrs().Name, err)
		}
	}
	// A veth receives frames redirected to its peer by XDP only if it
	// runs in NAPI mode, which an XDP program on it turns on: the same
	// program in every mode, so that all of them deliver alike. It returns
	// peerAction: XDP_DROP for the benchmark (a frame has arrived once the
	// peer counts it; what the peer's stack would do with it is the same
	// work in every mode), XDP_PASS where a test reads the frames.
	if pt.prog, err = ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, int32(peerAction)), asm.Return()},
	}); err != nil {
		return nil, fmt.Errorf("load the peer's XDP program: %w", err)
	}
	if pt.pass, err = link.AttachXDP(link.XDPOptions{Program: pt.prog, Interface: pt.peer.Attrs().Index}); err != nil {
		return nil, fmt.Errorf("attach XDP to %s: %w", pt.peer.Attrs().Name, err)
	}
	return pt, nil
}

func (pt *portTopology) close() {
	if pt.pass != nil {
		pt.pass.Close()
	}
	if pt.prog != nil {
		pt.prog.Close()
	}
	if pt.tap != nil {
		pt.tap.Close()
	}
}

// tapLink returns the TAP as netlink sees it.
func (pt *portTopology) tapLink() netlink.Link {
	return &netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: pt.tap.Name(), Index: pt.tap.Index()}}
}

// received returns how many frames the uplink's peer has received.
func (pt *portTopology) received() (uint64, error) {
	l, err := netlink.LinkByIndex(pt.peer.Attrs().Index)
	if err != nil {
		return 0, err
	}
	if l.Attrs().Statistics == nil {
		return 0, errors.New("no statistics for " + l.Attrs().Name)
	}
	return l.Attrs().Statistics.RxPackets, nil
}

// round writes n frames into the TAP, cycling through frames, and returns
// the rate from the first write to the last arrival on the peer, and how
// many arrived. Frames not arrived once none has for tapQuiet are lost.
func (pt *portTopology) round(frames [][]byte, n int) (pps float64, got int, err error) {
	before, err := pt.received()
	if err != nil {
		return 0, 0, err
	}
	q := pt.tap.Queue(0)
	start := time.Now()
	for i := range n {
		if _, err := q.Write(frames[i%len(frames)]); err != nil {
			return 0, 0, fmt.Errorf("write into %s: %w", pt.tap.Name(), err)
		}
	}
	last, lastAt := uint64(0), time.Now()
	for {
		now, err := pt.received()
		if err != nil {
			return 0, 0, err
		}
		if now-before != last {
			last, lastAt = now-before, time.Now()
		}
		if last >= uint64(n) || time.Since(lastAt) > tapQuiet {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	got = int(min(last, uint64(n)))
	return float64(got) / lastAt.Sub(start).Seconds(), got, nil
}

// portFrames returns the benchmark's frames, each after an empty
// virtio-net header: TCPv4 from addresses of the guest's prefix to
// PortServer's last ACL port, 64-byte payloads, from 1,024 flows.
func portFrames() [][]byte {
	out := make([][]byte, tapFlows)
	for i := range out {
		f := frame.Build(frame.Spec{
			Src: netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), Dst: PortServer,
			Proto: frame.ProtoTCP, SrcPort: uint16(1024 + i), DstPort: PortACLPorts[len(PortACLPorts)-1], Payload: 64,
		})
		ip := f[14:34]
		binary.BigEndian.PutUint16(ip[10:], frame.IPv4Checksum(ip))
		out[i] = append(make([]byte, tapVnetHdrLen), f...)
	}
	return out
}

// nftables installs bridge-family rules equivalent to the benchmark's
// port policy on frames from the TAP (see port's clean-traffic
// comparison), and returns what removes them.
func (pt *portTopology) nftables() (func() error, error) {
	if err := nft(portRuleset(pt.tap.Name())); err != nil {
		return nil, err
	}
	return func() error { return nft("delete table bridge vrssbench\n") }, nil
}

// portRuleset is the nftables ruleset for frames from the TAP named
// tapName: source MAC, no VLAN tags, ARP and IPv4 only, ARP sender and
// IPv4 source in the guest's prefix (DHCP discovery from 0.0.0.0 let
// through), no DHCP server replies, then the ACL in order and a default
// of drop.
func portRuleset(tapName string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "table bridge vrssbench {\n")
	fmt.Fprintf(&b, "\tchain forward {\n\t\ttype filter hook forward priority 0; policy accept;\n")
	fmt.Fprintf(&b, "\t\tiifname %q jump guest\n\t}\n", tapName)
	fmt.Fprintf(&b, "\tchain guest {\n")
	fmt.Fprintf(&b, "\t\tether saddr != %s drop\n", PortGuestMAC)
	fmt.Fprintf(&b, "\t\tether type != { ip, arp } drop\n")
	fmt.Fprintf(&b, "\t\tether type arp arp htype != 1 drop\n")
	fmt.Fprintf(&b, "\t\tether type arp arp operation != { request, reply } drop\n")
	fmt.Fprintf(&b, "\t\tether type arp arp saddr ether != %s drop\n", PortGuestMAC)
	fmt.Fprintf(&b, "\t\tether type arp arp saddr ip != %s drop\n", PortGuestNet)
	fmt.Fprintf(&b, "\t\tether type arp accept\n")
	fmt.Fprintf(&b, "\t\tip saddr 0.0.0.0 udp sport 68 udp dport 67 accept\n")
	fmt.Fprintf(&b, "\t\tip saddr != %s drop\n", PortGuestNet)
	fmt.Fprintf(&b, "\t\tudp sport 67 drop\n")
	for _, p := range PortACLPorts {
		fmt.Fprintf(&b, "\t\tip protocol tcp tcp dport %d accept\n", p)
	}
	fmt.Fprintf(&b, "\t\tdrop\n\t}\n}\n")
	return b.String()
}

// nft runs nft -f with ruleset on its standard input.
func nft(ruleset string) error {
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(ruleset)
	cmd.Stderr = os.Stderr
	if out, err := cmd.Output(); err != nil {
		return fmt.Errorf("nft -f: %w: %s", err, out)
	}
	return nil
}
