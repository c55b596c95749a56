package e2e

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/internal/frame"
	"github.com/vrss-dev/vrss/internal/inject"
	"github.com/vrss-dev/vrss/port"
)

// Scenario P's names and addresses (192.0.2.0/24 is TEST-NET-1).
const (
	pTAP       = "vrsse2ep0"
	pHostIP    = "192.0.2.1"  // the TAP's host end, in the test's namespace
	pGuestIP   = "192.0.2.10" // the guest's address, the only one the policy allows
	pSpoofMAC  = "52:54:00:66:66:66"
	pSpoofIP   = "192.0.2.99"        // an address the guest takes without owning it
	pClaimIP   = "192.0.2.77"        // the address its gratuitous ARP claims
	pLeaseIP   = "192.0.2.100"       // what its DHCP server offers
	pClientMAC = "02:00:00:00:00:01" // the host's DHCP client
	// pUplink is the fast path's uplink, a veth whose peer pUplinkPeer
	// stands for the network beyond it.
	pUplink, pUplinkPeer = "vrsse2epu", "vrsse2epv"
	pTCPPort             = 5201
	pUDPPort             = 5202
	// pPings and pBad are the echo requests of the ping step, and the
	// frames of each step the policy drops.
	pPings, pBad = 5, 3
	// pSteps is how many steps the guest takes: eight with the stack
	// path, four more with the fast path.
	pSteps = 12
	// pGuestSend is the guest sender's path in the image.
	pGuestSend = "bin/guestsend"
)

// PortACL is scenario P's ACL (vrss port set --acl), with default deny:
// the guest may reach the host's TCP and UDP ports and ping it.
const PortACL = `# scenario P: what the guest may reach on the host
allow flow-type tcp4 dst-ip 192.0.2.1 dst-port 5201
allow flow-type udp4 dst-ip 192.0.2.1 dst-port 5202
allow flow-type ip4 l4proto 1 dst-ip 192.0.2.1
`

// judged is every frame the program has judged or dropped unconfigured.
func judged(s *api.PortStats) uint64 { return s.Passed + s.Dropped + s.Unconfigured }

// ruleHits is rule's hits in s.
func ruleHits(s *api.PortStats, rule int) uint64 {
	for _, r := range s.Rules {
		if r.Index == rule {
			return r.Hits
		}
	}
	return 0
}

// PortStep is one thing scenario P's guest does, and what came of it.
type PortStep struct {
	Name    string // what the guest does
	Command string // the guest's command line
	// Reason is the reason every frame of the step must get (acl_allow
	// for traffic the policy lets through); Rule the ACL rule that must
	// decide it, or -1.
	Reason string
	Rule   int
	// Sent is what the guest's own tool says it sent (ping's
	// transmitted, arping's probes, udhcpd's offers, guestsend's count;
	// for TCP, the frames of the connection, which nc does not count);
	// SentBy names the source. GuestTx is the delta of the guest's eth0
	// tx_packets.
	Sent    int
	SentBy  string
	GuestTx uint64
	// Counted is the delta of vrss's counter for Reason, RuleHits of the
	// rule's hits; Other the deltas of every other reason that moved
	// (none, if the step is exact).
	Counted, RuleHits uint64
	Other             map[string]uint64
	// Uplink says the policy named the fast path's uplink during the
	// step; Redirected is the delta of the program's redirected frames.
	Uplink     bool
	Redirected uint64
	// Arrived counts the guest's frames that reached where the policy
	// sends what it passes, during the step: the host end of the TAP, or
	// with the fast path the uplink's peer (AF_PACKET sockets on both);
	// Elsewhere those that reached the other one.
	Arrived, Elsewhere uint64
	// Delivered says what the host side (or, for ping, the guest)
	// received; DeliveredOK whether that is all of it. Only for allowed
	// steps.
	Delivered   string
	DeliveredOK bool
	// Injected frames the host sent the guest for the step (DHCP
	// discovers).
	Injected int
}

// Pass reports whether the step's frames were all counted under its
// reason and nothing else, as many as the guest sent; allowed ones
// arrived where the policy sends them (redirected, with the fast path)
// and were delivered, dropped ones arrived nowhere.
func (s *PortStep) Pass() bool {
	if s.Sent == 0 || uint64(s.Sent) != s.GuestTx || s.Counted != s.GuestTx || len(s.Other) != 0 || s.Elsewhere != 0 {
		return false
	}
	if s.Rule >= 0 {
		redirected := uint64(0)
		if s.Uplink {
			redirected = s.GuestTx
		}
		return s.RuleHits == s.GuestTx && s.Arrived == s.GuestTx && s.Redirected == redirected && s.DeliveredOK
	}
	return s.Arrived == 0 && s.Redirected == 0
}

// PortReport is scenario P's outcome.
type PortReport struct {
	guestRun
	// Commands are the vrss commands run, each with its user and what it
	// printed.
	Commands []string
	// OwnerRefused is what the TAP's owner got when it tried to clear the
	// policy: refused, as it must be.
	OwnerRefused string
	// Policy is the policy as set.
	Policy port.Policy
	// Exec is the VMM user's `vrss qemu exec` command.
	Exec    string
	QEMUPid int
	Steps   []PortStep
	// Before and After are the TAP's port counters before the guest
	// booted and at the end.
	Before, After *api.PortStats
	// Prepare, Boot and Total are wall times.
	Prepare, Boot, Total time.Duration
}

// OK reports whether the policy was set and every step passed.
func (r *PortReport) OK() bool {
	if len(r.Steps) != pSteps || r.OwnerRefused == "" {
		return false
	}
	for i := range r.Steps {
		if !r.Steps[i].Pass() {
			return false
		}
	}
	return true
}

// PortPolicy is scenario P's policy: the guest's MAC, its one IPv4
// address, its EUI-64 link-local address, PortACL and default deny.
func PortPolicy() (port.Policy, error) {
	mac, err := port.ParseMAC(GuestMAC)
	if err != nil {
		return port.Policy{}, err
	}
	rules, err := port.ParseACL(PortACL)
	if err != nil {
		return port.Policy{}, err
	}
	p := port.Policy{
		MACs: []port.MAC{mac}, IPv4: []netip.Prefix{netip.MustParsePrefix(pGuestIP + "/32")},
		LinkLocal: true, Rules: rules, Default: port.Drop,
	}
	return p, p.Validate()
}

// RunPortSecurity runs scenario P: port security on a real guest's TAP
// (issue 14). In a fresh network namespace a vrssd of the test's own
// creates the TAP for the VMM's user (`vrss tap create`, as in scenario
// A), root sets the port policy (`vrss port set TAP --mac --ip
// --link-local --acl --default deny`; the owner's `vrss port clear` must
// be refused), and the user starts QEMU with `vrss qemu exec`. The TAP's
// host end has 192.0.2.1/24 and the guest 192.0.2.10/24, each with a
// permanent neighbour entry for the other, and the guest runs no IPv6:
// nothing crosses the wire but what each step sends.
//
// The guest then, one step at a time: pings the host, sends it a TCP
// stream (nc) and UDP datagrams (guestsend), all allowed by the ACL; then
// changes its MAC and pings, takes an address it does not own and pings
// from it, claims another address with a gratuitous ARP (arping -U),
// answers DHCP discovers the host injects with its own DHCP server
// (udhcpd), and sends router advertisements (guestsend, AF_PACKET from its
// link-local address). Around each step the harness reads vrss's port
// counters and the guest's eth0 tx_packets until both have settled: the
// counter for the step's reason must have grown by exactly what the
// guest's tool says it sent and what left the guest, no other reason may
// have moved, allowed frames must have reached the host end of the TAP
// (an AF_PACKET socket on it) and been delivered (ping's replies, the
// listener's bytes and datagrams), dropped ones never.
//
// Then the fast path: root sets the same policy with `--uplink` naming a
// veth in the namespace (its peer has the TAP's MAC and an XDP program
// that passes, so that it takes redirected frames), and the guest pings,
// sends TCP and UDP and uses the address it does not own again. The
// allowed frames must now be redirected, every one (vrss's redirected
// counter), arrive at the veth's peer and not at the TAP's host end, and
// be delivered all the same (the answers come back through the TAP); the
// spoofed ones arrive nowhere.
func RunPortSecurity(o Options) (*PortReport, error) {
	start := time.Now()
	o.defaults()
	rep := &PortReport{guestRun: newGuestRun(o, pTAP)}
	var err error
	if rep.Policy, err = PortPolicy(); err != nil {
		return nil, fmt.Errorf("e2e: scenario P's policy: %w", err)
	}
	sender, err := buildGuestSend()
	if err != nil {
		return nil, err
	}
	o.GuestFiles = map[string][]byte{pGuestSend: sender}
	err = prepared(o, "p", func(a *Assets) error { rep.Assets = a; return nil }, func(w *workDir) error {
		rep.Prepare = time.Since(start)
		return runPortSecurity(o, w, rep)
	})
	rep.Total = time.Since(start)
	return rep, err
}

// buildGuestSend builds the guest sender (internal/e2e/guestsend) static.
func buildGuestSend() ([]byte, error) {
	dir, err := os.MkdirTemp("", "vrss-e2e-guestsend-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "guestsend")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "github.com/vrss-dev/vrss/internal/e2e/guestsend")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("e2e: go build guestsend: %v\n%s", err, out)
	}
	return os.ReadFile(bin)
}

// portCounters reads the TAP's port counters (`vrss port stats --json`).
type portCounters func() (*api.PortStats, error)

func runPortSecurity(o Options, w *workDir, rep *PortReport) error {
	vd, err := startVRSSD(w, o.VMMUID)
	if err != nil {
		return err
	}
	defer vd.stop()
	owner := &vrssCLI{bin: w.vrss, socket: w.socket, uid: o.VMMUID}
	root := &vrssCLI{bin: w.vrss, socket: w.socket, uid: 0}
	record := func(c *vrssCLI, args []string, out string) {
		line := fmt.Sprintf("uid %d: %s", c.uid, c.line(args...))
		if out = strings.TrimSpace(out); out != "" {
			line += "  -> " + strings.Join(strings.Fields(out), " ")
		}
		rep.Commands = append(rep.Commands, line)
		fmt.Fprintf(o.Log, "e2e: P: %s\n", line)
	}
	create := []string{"tap", "create", pTAP, "--queues", strconv.Itoa(o.Queues)}
	out, err := owner.run(create...)
	if err != nil {
		return vd.fail(err)
	}
	record(owner, create, out)
	link, err := tapLink(pTAP)
	if err != nil {
		return err
	}
	index := link.Attrs().Index
	hostMAC := link.Attrs().HardwareAddr
	if err := hostEnd(link); err != nil {
		return err
	}
	peer, closePeer, err := uplinkVeth(hostMAC)
	if err != nil {
		return err
	}
	defer closePeer()

	// The policy, as an operator sets it.
	counters, err := setPortCLI(w, root, owner, rep, record)
	if err != nil {
		return vd.fail(err)
	}
	setUplink := func() error { // the same policy with the fast path to pUplink
		set := portSetArgs(filepath.Join(w.dir, "port.acl"), pUplink)
		out, err := root.run(set...)
		if err == nil {
			record(root, set, out)
		}
		return err
	}
	if rep.Before, err = counters(); err != nil {
		return vd.fail(err)
	}

	// What reaches the host: the TAP's host end (the stack path) and the
	// uplink's peer (the fast path).
	atTAP, err := inject.OpenCapture(index)
	if err != nil {
		return err
	}
	defer atTAP.Close()
	atPeer, err := inject.OpenCapture(peer)
	if err != nil {
		return err
	}
	defer atPeer.Close()
	ls, err := listen()
	if err != nil {
		return err
	}
	defer ls.close()
	inj, err := inject.Open(index)
	if err != nil {
		return err
	}
	defer inj.Close()

	boot, shown := execBoot(o, w, rep.Assets, pTAP, "console-p.log")
	fmt.Fprintf(o.Log, "e2e: P: booting %s with %s as uid %d through vrss qemu exec (TCG, %d vCPUs)\n", rep.Assets.KernelRelease, boot.QEMU, o.VMMUID, o.CPUs)
	bootStart := time.Now()
	g, err := Boot(boot)
	if err != nil {
		return vd.fail(err)
	}
	defer g.Close()
	rep.Boot = time.Since(bootStart)
	rep.Release = g.Release
	rep.QEMUPid = g.Pid()
	rep.Exec = owner.line(shown...)
	fmt.Fprintf(o.Log, "e2e: P: uid %d: %s; guest READY after %v\n", o.VMMUID, rep.Exec, rep.Boot.Round(time.Millisecond))

	// The guest's address, and a permanent neighbour entry on each side:
	// no ARP, no IPv6 (off since init), nothing on the wire but the steps.
	if _, err := g.MustRun(fmt.Sprintf("ip addr add %s/24 dev %s && %s", pGuestIP, guestIface, guestNeigh(hostMAC)), time.Minute); err != nil {
		return err
	}

	r := &portRun{g: g, counters: counters, tap: atTAP, peer: atPeer, log: o.Log}
	pingLine := fmt.Sprintf("ping -c %d -i 0.5 -W 5 %s", pPings, pHostIP)
	badPing := fmt.Sprintf("ping -c %d -i 0.5 -W 2", pBad)
	steps := []struct {
		name, reason string
		rule         int
		command      string
		sent         func(out string, s *PortStep) error
	}{
		{"ping the host", "acl_allow", 2, pingLine, func(out string, s *PortStep) error {
			tx, rx, err := pingCounts(out)
			s.Sent, s.SentBy = tx, "ping: transmitted"
			s.Delivered, s.DeliveredOK = fmt.Sprintf("%d echo replies back in the guest", rx), rx == tx
			return err
		}},
		{"TCP to the host", "acl_allow", 0, fmt.Sprintf("printf '%s' | nc -w 10 %s %d", pTCPPayload, pHostIP, pTCPPort), func(out string, s *PortStep) error {
			n := ls.tcpBytes.Load()
			s.Sent, s.SentBy = -1, "the connection's frames (nc does not count them)"
			s.Delivered, s.DeliveredOK = fmt.Sprintf("%d of %d bytes received by the host's listener", n, len(pTCPPayload)), n == int64(len(pTCPPayload))
			return nil
		}},
		{"UDP to the host", "acl_allow", 1, fmt.Sprintf("guestsend udp %s:%d %d", pHostIP, pUDPPort, pPings), func(out string, s *PortStep) error {
			n := ls.udpDatagrams.Load()
			err := guestSent(out, s)
			s.Delivered, s.DeliveredOK = fmt.Sprintf("%d datagrams received by the host's listener", n), n == int64(s.Sent)
			return err
		}},
		{"another MAC", "src_mac", -1, fmt.Sprintf("ip link set dev %s address %s && %s && %s %s; ip link set dev %s address %s && %s",
			guestIface, pSpoofMAC, guestNeigh(hostMAC), badPing, pHostIP, guestIface, GuestMAC, guestNeigh(hostMAC)), pingSent},
		{"an address it does not own", "src_ipv4", -1, fmt.Sprintf("ip addr add %s/32 dev %s && %s -I %s %s; ip addr del %s/32 dev %s",
			pSpoofIP, guestIface, badPing, pSpoofIP, pHostIP, pSpoofIP, guestIface), pingSent},
		{"gratuitous ARP for another address", "arp_sender", -1, fmt.Sprintf("sysctl -qw net.ipv4.ip_nonlocal_bind=1 && arping -U -c %d -I %s %s", pBad, guestIface, pClaimIP), func(out string, s *PortStep) error {
			m := regexp.MustCompile(`Sent (\d+) probe`).FindStringSubmatch(out)
			if m == nil {
				return fmt.Errorf("e2e: arping said:\n%s", out)
			}
			s.Sent, s.SentBy = atoi(m[1]), "arping: probes sent"
			return nil
		}},
		{"a DHCP server answering the host's discovers", "dhcp_server", -1, "", nil},
		{"router advertisements", "router_advert", -1, fmt.Sprintf("guestsend ra %s %d", guestIface, pBad), guestSent},
	}
	// The fast path: the same policy naming the uplink; the allowed
	// steps again, and one that is dropped all the same.
	fast := []int{0, 1, 2, 4}
	for i := range pSteps - len(steps) {
		steps = append(steps, steps[fast[i]])
	}
	for i, st := range steps {
		if i == len(steps)-len(fast) {
			if err := setUplink(); err != nil {
				return vd.fail(err)
			}
			r.uplink = true
		}
		if r.uplink {
			st.name += " (fast path)"
		}
		if st.reason == "dhcp_server" {
			s, err := r.dhcpStep(st.name, inj)
			if err != nil {
				return vd.fail(err)
			}
			rep.Steps = append(rep.Steps, *s)
			continue
		}
		s, err := r.step(st.name, st.reason, st.rule, st.command, st.sent)
		if err != nil {
			return vd.fail(err)
		}
		rep.Steps = append(rep.Steps, *s)
	}
	if rep.After, err = counters(); err != nil {
		return vd.fail(err)
	}
	return g.Shutdown(30 * time.Second)
}

// pTCPPayload is what the guest sends over TCP.
//
// printf sends it as it is: no quote, backslash or per cent sign.
const pTCPPayload = "vrss scenario P: a TCP stream from the guest, from its own address"

// guestNeigh is the guest's command that makes the host's address a
// permanent neighbour (busybox's arp -s; its ip has no neigh replace). A
// MAC change flushes even permanent entries, so the steps that change it
// run this again.
func guestNeigh(hostMAC net.HardwareAddr) string {
	return fmt.Sprintf("arp -i %s -s %s %s", guestIface, pHostIP, hostMAC)
}

// hostEnd gives the TAP's host end its address and a permanent entry for
// the guest, turns IPv6 off on it and brings it up.
func hostEnd(link netlink.Link) error {
	addr, err := netlink.ParseAddr(pHostIP + "/24")
	if err != nil {
		return err
	}
	if err := netlink.AddrAdd(link, addr); err != nil {
		return fmt.Errorf("e2e: address on %s: %w", pTAP, err)
	}
	mac, _ := net.ParseMAC(GuestMAC)
	if err := netlink.NeighSet(&netlink.Neigh{LinkIndex: link.Attrs().Index, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT,
		IP: net.ParseIP(pGuestIP), HardwareAddr: mac}); err != nil {
		return fmt.Errorf("e2e: neighbour on %s: %w", pTAP, err)
	}
	// The thread is in the test's namespace: /proc/sys/net is its.
	if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+pTAP+"/disable_ipv6", []byte("1"), 0); err != nil {
		return err
	}
	return netlink.LinkSetUp(link)
}

// setPortCLI sets the policy as an operator does and checks that the
// TAP's owner may read it but not clear it.
func setPortCLI(w *workDir, root, owner *vrssCLI, rep *PortReport, record func(*vrssCLI, []string, string)) (portCounters, error) {
	acl := filepath.Join(w.dir, "port.acl")
	if err := os.WriteFile(acl, []byte(PortACL), 0o644); err != nil {
		return nil, err
	}
	set := portSetArgs(acl, "")
	out, err := root.run(set...)
	if err != nil {
		return nil, err
	}
	record(root, set, out)
	show := []string{"port", "show", pTAP}
	if out, err = owner.run(show...); err != nil {
		return nil, err
	}
	record(owner, show, out)
	clear := []string{"port", "clear", pTAP}
	if out, err := owner.run(clear...); err == nil {
		return nil, fmt.Errorf("e2e: the TAP's owner (uid %d) cleared its port policy: %s", owner.uid, out)
	} else {
		rep.OwnerRefused = lastLine(err.Error())
		record(owner, clear, "refused: "+rep.OwnerRefused)
	}
	return func() (*api.PortStats, error) {
		var s api.PortStats
		if err := root.json(&s, "port", "stats", pTAP, "--json"); err != nil {
			return nil, err
		}
		if !s.Attached {
			return nil, fmt.Errorf("e2e: vrss port stats: the program is not attached to %s", pTAP)
		}
		return &s, nil
	}, nil
}

func lastLine(s string) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(l[len(l)-1])
}

// portSetArgs are the `vrss port set` arguments of PortPolicy, with the
// ACL in the file acl and the fast path to uplink if not empty.
func portSetArgs(acl, uplink string) []string {
	a := []string{"port", "set", pTAP, "--mac", GuestMAC, "--ip", pGuestIP + "/32", "--link-local", "--acl", acl, "--default", "deny"}
	if uplink != "" {
		a = append(a, "--uplink", uplink)
	}
	return a
}

// uplinkVeth makes the fast path's uplink: a veth pair whose peer has
// the TAP's MAC (the guest's neighbour entry names it) and IPv6 and the
// reverse-path filter off, so that the guest's frames the program
// redirects to the uplink reach the host's address (192.0.2.1, on the
// TAP) through the peer; the answers go back through the TAP. A veth
// takes redirected frames only when its peer runs NAPI: the peer gets an
// XDP program that passes everything. It returns the peer's ifindex.
func uplinkVeth(mac net.HardwareAddr) (int, func(), error) {
	up := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: pUplink}, PeerName: pUplinkPeer}
	if err := netlink.LinkAdd(up); err != nil {
		return 0, nil, fmt.Errorf("e2e: veth %s: %w", pUplink, err)
	}
	peer, err := netlink.LinkByName(pUplinkPeer)
	if err == nil {
		err = netlink.LinkSetHardwareAddr(peer, mac)
	}
	for _, f := range []string{"ipv6/conf/" + pUplink + "/disable_ipv6", "ipv6/conf/" + pUplinkPeer + "/disable_ipv6",
		"ipv4/conf/all/rp_filter", "ipv4/conf/" + pUplinkPeer + "/rp_filter"} {
		if err == nil {
			v := "0"
			if strings.HasSuffix(f, "disable_ipv6") {
				v = "1"
			}
			err = os.WriteFile("/proc/sys/net/"+f, []byte(v), 0)
		}
	}
	for _, l := range []netlink.Link{up, peer} {
		if err == nil {
			err = netlink.LinkSetUp(l)
		}
	}
	if err != nil {
		return 0, nil, fmt.Errorf("e2e: uplink veth: %w", err)
	}
	pass, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2), asm.Return()}}) // XDP_PASS
	if err != nil {
		return 0, nil, err
	}
	l, err := link.AttachXDP(link.XDPOptions{Program: pass, Interface: peer.Attrs().Index})
	if err != nil {
		pass.Close()
		return 0, nil, fmt.Errorf("e2e: XDP on %s: %w", pUplinkPeer, err)
	}
	return peer.Attrs().Index, func() { l.Close(); pass.Close() }, nil
}

// portRun drives scenario P's steps.
type portRun struct {
	g         *Guest
	counters  portCounters
	tap, peer *inject.Capture // the TAP's host end, the uplink's peer
	// atTAP and atPeer count the frames they received so far.
	atTAP, atPeer uint64
	uplink        bool // the policy names the uplink
	log           io.Writer
}

// snapshot is what a step is measured against.
type snapshot struct {
	stats         *api.PortStats
	tx            uint64
	atTAP, atPeer uint64
}

func (r *portRun) snap() (snapshot, error) {
	var s snapshot
	var err error
	if s.stats, err = r.counters(); err != nil {
		return s, err
	}
	out, err := r.g.MustRun("cat /sys/class/net/"+guestIface+"/statistics/tx_packets", time.Minute)
	if err != nil {
		return s, err
	}
	if s.tx, err = strconv.ParseUint(strings.TrimSpace(out), 10, 64); err != nil {
		return s, fmt.Errorf("e2e: guest tx_packets %q", out)
	}
	for c, n := range map[*inject.Capture]*uint64{r.tap: &r.atTAP, r.peer: &r.atPeer} {
		for _, k := range c.Drain() {
			*n += uint64(k)
		}
	}
	s.atTAP, s.atPeer = r.atTAP, r.atPeer
	return s, nil
}

// settle waits until what left the guest since s0 has all been judged by
// the program and nothing more comes: the guest's tx_packets delta equals
// the program's judged delta, twice in a row a second apart.
func (r *portRun) settle(s0 snapshot) (snapshot, error) {
	var prev snapshot
	deadline := time.Now().Add(stallTimeout)
	for i := 0; ; i++ {
		s, err := r.snap()
		if err != nil {
			return s, err
		}
		agree := s.tx-s0.tx == judged(s.stats)-judged(s0.stats)
		if agree && i > 0 && s.tx == prev.tx && judged(s.stats) == judged(prev.stats) && s.atTAP == prev.atTAP && s.atPeer == prev.atPeer {
			return s, nil
		}
		if time.Now().After(deadline) {
			return s, nil // the report shows the difference
		}
		prev = s
		time.Sleep(time.Second)
	}
}

// step runs one guest command and measures it.
func (r *portRun) step(name, reason string, rule int, command string, sent func(string, *PortStep) error) (*PortStep, error) {
	s0, err := r.snap()
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(r.log, "e2e: P: %s: %s\n", name, command)
	out, _, err := r.g.Run(command, 2*time.Minute)
	if err != nil {
		return nil, err
	}
	s1, err := r.settle(s0)
	if err != nil {
		return nil, err
	}
	st := r.measure(name, reason, rule, command, s0, s1)
	if err := sent(out, st); err != nil {
		return nil, err
	}
	if st.Sent < 0 { // TCP: the frames of the connection
		st.Sent = int(st.GuestTx)
	}
	fmt.Fprintf(r.log, "e2e: P: %s: sent %d (%s), tx %d, %s %d, arrived %d %s\n", name, st.Sent, st.SentBy, st.GuestTx, reason, st.Counted, st.Arrived, st.Delivered)
	return st, nil
}

func (r *portRun) measure(name, reason string, rule int, command string, s0, s1 snapshot) *PortStep {
	st := &PortStep{Name: name, Command: command, Reason: reason, Rule: rule, GuestTx: s1.tx - s0.tx, Uplink: r.uplink,
		Redirected: s1.stats.Redirected - s0.stats.Redirected, Arrived: s1.atTAP - s0.atTAP, Elsewhere: s1.atPeer - s0.atPeer}
	if r.uplink {
		st.Arrived, st.Elsewhere = st.Elsewhere, st.Arrived
	}
	for i, v := range s1.stats.Reasons {
		k, d := port.Reason(i).String(), v-s0.stats.Reasons[i]
		switch {
		case k == reason:
			st.Counted = d
		case d != 0:
			if st.Other == nil {
				st.Other = map[string]uint64{}
			}
			st.Other[k] = d
		}
	}
	if u := s1.stats.Unconfigured - s0.stats.Unconfigured; u != 0 {
		if st.Other == nil {
			st.Other = map[string]uint64{}
		}
		st.Other["unconfigured"] = u
	}
	if rule >= 0 {
		st.RuleHits = ruleHits(s1.stats, rule) - ruleHits(s0.stats, rule)
	}
	return st
}

// dhcpStep starts udhcpd in the guest with a static lease for the host's
// client, injects pBad DHCPDISCOVERs into the TAP, and counts the offers
// udhcpd says it sent.
func (r *portRun) dhcpStep(name string, inj *inject.Injector) (*PortStep, error) {
	conf := fmt.Sprintf(`interface %s\nstart %s\nend %s\nmax_leases 4\nlease_file /tmp/udhcpd.leases\nstatic_lease %s %s\noption subnet 255.255.255.0\n`,
		guestIface, pLeaseIP, pLeaseIP, pClientMAC, pLeaseIP)
	start := fmt.Sprintf("printf '%s' > /tmp/udhcpd.conf && touch /tmp/udhcpd.leases && (udhcpd -f /tmp/udhcpd.conf > /tmp/udhcpd.log 2>&1 &) && sleep 2", conf)
	if _, err := r.g.MustRun(start, time.Minute); err != nil {
		return nil, err
	}
	s0, err := r.snap()
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(r.log, "e2e: P: %s: udhcpd -f /tmp/udhcpd.conf; the host injects %d DHCPDISCOVERs\n", name, pBad)
	client, _ := net.ParseMAC(pClientMAC)
	for i := range pBad {
		if err := inj.Send(dhcpDiscover(client, 0x76727300+uint32(i))); err != nil {
			return nil, err
		}
		time.Sleep(500 * time.Millisecond)
	}
	s1, err := r.settle(s0)
	if err != nil {
		return nil, err
	}
	st := r.measure(name, "dhcp_server", -1, "udhcpd -f /tmp/udhcpd.conf (static_lease "+pClientMAC+" "+pLeaseIP+")", s0, s1)
	st.Injected = pBad
	out, err := r.g.MustRun("killall udhcpd; cat /tmp/udhcpd.log", time.Minute)
	if err != nil {
		return nil, err
	}
	st.Sent, st.SentBy = strings.Count(out, "sending OFFER"), "udhcpd: offers logged"
	fmt.Fprintf(r.log, "e2e: P: %s: udhcpd said:\n%s\n", name, out)
	return st, nil
}

// dhcpDiscover is a broadcast DHCPDISCOVER from client (0.0.0.0:68 to
// 255.255.255.255:67, the broadcast flag set), as a DHCP client without
// an address sends it.
func dhcpDiscover(client net.HardwareAddr, xid uint32) []byte {
	bootp := make([]byte, 300)
	bootp[0], bootp[1], bootp[2] = 1, 1, 6 // BOOTREQUEST, Ethernet, 6-byte addresses
	binary.BigEndian.PutUint32(bootp[4:], xid)
	binary.BigEndian.PutUint16(bootp[10:], 0x8000) // broadcast
	copy(bootp[28:], client)
	copy(bootp[236:], []byte{99, 130, 83, 99, 53, 1, 1, 255}) // magic cookie, message type DISCOVER, end
	udp := make([]byte, 8, 8+len(bootp))
	binary.BigEndian.PutUint16(udp[0:], 68)
	binary.BigEndian.PutUint16(udp[2:], 67)
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(bootp))) // no checksum (IPv4 allows 0)
	udp = append(udp, bootp...)
	ip := []byte{0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255}
	binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)+len(udp)))
	binary.BigEndian.PutUint16(ip[10:], frame.IPv4Checksum(ip))
	f := append(bytes.Repeat([]byte{0xff}, 6), client...)
	f = append(f, 0x08, 0x00)
	return append(append(f, ip...), udp...)
}

var pingRe = regexp.MustCompile(`(\d+) packets transmitted, (\d+) packets received`)

func pingCounts(out string) (tx, rx int, err error) {
	m := pingRe.FindStringSubmatch(out)
	if m == nil {
		return 0, 0, fmt.Errorf("e2e: no ping statistics in:\n%s", out)
	}
	return atoi(m[1]), atoi(m[2]), nil
}

// pingSent reads what a ping that gets no answer sent.
func pingSent(out string, s *PortStep) error {
	tx, _, err := pingCounts(out)
	s.Sent, s.SentBy = tx, "ping: transmitted"
	return err
}

// guestSent reads guestsend's "sent N".
func guestSent(out string, s *PortStep) error {
	m := regexp.MustCompile(`(?m)^sent (\d+)$`).FindStringSubmatch(out)
	if m == nil {
		return fmt.Errorf("e2e: guestsend said:\n%s", out)
	}
	s.Sent, s.SentBy = atoi(m[1]), "guestsend: sent"
	return nil
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// listeners are the host's TCP and UDP ends in the test's namespace.
type listeners struct {
	tcp          net.Listener
	udp          net.PacketConn
	tcpBytes     atomic.Int64
	udpDatagrams atomic.Int64
}

func listen() (*listeners, error) {
	var l listeners
	var err error
	if l.tcp, err = net.Listen("tcp4", fmt.Sprintf("%s:%d", pHostIP, pTCPPort)); err != nil {
		return nil, err
	}
	if l.udp, err = net.ListenPacket("udp4", fmt.Sprintf("%s:%d", pHostIP, pUDPPort)); err != nil {
		l.tcp.Close()
		return nil, err
	}
	go func() {
		for {
			c, err := l.tcp.Accept()
			if err != nil {
				return
			}
			// Read to the guest's end of the stream, then close: nc exits.
			c.SetDeadline(time.Now().Add(time.Minute))
			n, _ := io.Copy(io.Discard, c)
			l.tcpBytes.Add(n)
			c.Close()
		}
	}()
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := l.udp.ReadFrom(buf); err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			l.udpDatagrams.Add(1)
		}
	}()
	return &l, nil
}

func (l *listeners) close() {
	l.tcp.Close()
	l.udp.Close()
}

// String is scenario P's report: how the policy was set, then per step
// what the guest sent and what vrss counted.
func (r *PortReport) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "vrss e2e, scenario P (port security on a real guest's TAP: vrssd's TAP, QEMU unprivileged via vrss qemu exec, the guest's own tools)\n")
	if r.Assets != nil {
		r.Assets.writeHeader(&b, r.CPUs, r.UID, r.Release)
	}
	fmt.Fprintf(&b, "  virtio-net %d queue pairs on TAP %s (host end %s/24, guest %s/24, MAC %s)\n", r.Queues, r.Device, pHostIP, pGuestIP, GuestMAC)
	fmt.Fprintf(&b, "  policy: set by root with vrss port set through the test's vrssd, counters from vrss port stats --json\n")
	p := r.Policy
	fmt.Fprintf(&b, "    macs %v, ipv4 %v, link-local %v, default %s; ACL:\n", p.MACs, p.IPv4, p.LinkLocal, p.Default)
	for i, rl := range p.Rules {
		fmt.Fprintf(&b, "      %d: %s\n", i, rl)
	}
	for _, c := range r.Commands {
		fmt.Fprintf(&b, "    %s\n", c)
	}
	if r.Exec != "" {
		fmt.Fprintf(&b, "  as uid %d: %s (QEMU pid %d)\n", r.UID, r.Exec, r.QEMUPid)
	}
	if len(r.Steps) > 0 {
		fmt.Fprintf(&b, "\nP steps: sent = the guest's own count (its tool's), tx = its eth0 tx_packets delta, counted = vrss's counter for the reason,\n")
		fmt.Fprintf(&b, "  redirected = vrss's redirected delta, arrived = guest frames at the TAP's host end (stack path) or at the uplink's peer (fast path)\n")
		fmt.Fprintf(&b, "  %-56s %-18s %4s %4s %7s %10s %7s\n", "step", "reason", "sent", "tx", "counted", "redirected", "arrived")
	}
	for i := range r.Steps {
		s := &r.Steps[i]
		reason := s.Reason
		if s.Rule >= 0 {
			reason = fmt.Sprintf("%s (rule %d)", s.Reason, s.Rule)
		}
		verdict := "PASS"
		if !s.Pass() {
			verdict = "FAIL"
		}
		fmt.Fprintf(&b, "  %-56s %-18s %4d %4d %7d %10d %7d  %s\n", s.Name, reason, s.Sent, s.GuestTx, s.Counted, s.Redirected, s.Arrived, verdict)
		fmt.Fprintf(&b, "      guest: %s\n      sent: %s", s.Command, s.SentBy)
		if s.Injected > 0 {
			fmt.Fprintf(&b, " (answering %d DHCPDISCOVERs the host injected)", s.Injected)
		}
		if s.Rule >= 0 {
			fmt.Fprintf(&b, "; rule %d hits %d; delivered: %s", s.Rule, s.RuleHits, s.Delivered)
		}
		if s.Elsewhere > 0 {
			fmt.Fprintf(&b, "; %d arrived where they should not", s.Elsewhere)
		}
		if len(s.Other) > 0 {
			fmt.Fprintf(&b, "; other reasons moved: %v", s.Other)
		}
		fmt.Fprintln(&b)
	}
	if r.After != nil {
		var rs []string
		for i, v := range r.After.Reasons {
			if v != 0 {
				rs = append(rs, fmt.Sprintf("%s %d", port.Reason(i), v))
			}
		}
		fmt.Fprintf(&b, "  counters at the end: passed %d, dropped %d, redirected %d, unconfigured %d; %s\n",
			r.After.Passed, r.After.Dropped, r.After.Redirected, r.After.Unconfigured, strings.Join(rs, ", "))
	}
	writeEnd(&b, "boot", r.Prepare, r.Boot, r.Total, r.OK())
	return b.String()
}
