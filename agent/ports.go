package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/agent/internal/kernel"
	"github.com/vrss-dev/vrss/internal/fd"
	"github.com/vrss-dev/vrss/port"
	"github.com/vrss-dev/vrss/portxdp"
)

// Port security: a TAP's port policy (package port), enforced by the XDP
// program of package portxdp attached to the TAP, so that it judges every
// frame the guest sends before the kernel builds an skb. Only root and the
// admins set and clear a policy (the point is to protect the host and the
// other guests from the guest, whose VMM owns the TAP); the owner may read
// it. The program, its maps and the XDP link are pinned in the TAP's pin
// directory (portxdp.PinProg and the rest), so that the policy is enforced
// and counted across restarts; the policy is kept in
// StateDir/flows/NAME.port.json too, so that a TAP whose pins were lost is
// enforced anew by it.

// portState is a TAP's port-security program: loaded or taken from its
// pins, with the XDP link that attaches it (pinned) and the policy it was
// last given.
type portState struct {
	prog *portxdp.Program
	link link.Link // nil until attached
	pol  port.Policy
	// uplink is the ifindex the fast path points at, 0 for none.
	uplink int
	// reattached counts the times vrssd found the program detached
	// behind its back and attached it again.
	reattached uint64
}

// close releases what vrssd holds; the pins keep the program attached.
// A nil portState is nothing to close.
func (ps *portState) close() {
	if ps == nil {
		return
	}
	if ps.link != nil {
		ps.link.Close()
	}
	ps.prog.Close()
}

// maxPortSize bounds a port file: a policy at its limits is a few KB.
const maxPortSize = 256 << 10

// portPath is the file of the port policy of the TAP with key key, next to
// its flows file (pinDirName has no dot, so no other file shares it).
func portPath(stateDir, key string) string {
	return filepath.Join(stateDir, flowsDir, pinDirName(key)+".port.json")
}

// portFile is a TAP's port file.
type portFile struct {
	Name   string      `json:"name"`
	Netns  string      `json:"netns,omitempty"`
	Policy port.Policy `json:"policy"`
}

// readPort reads d's port file as untrusted input: a regular file (no
// link followed) of at most maxPortSize bytes, d's own, with a valid
// policy. None is nil; anything else wrong is an error naming the file.
func readPort(stateDir string, d *device) (*port.Policy, error) {
	path := portPath(stateDir, d.key())
	b, err := readStateFile(path, maxPortSize)
	if b == nil || err != nil {
		return nil, err
	}
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%s: %s; fix or remove the file, vrssd will not act on it", path, fmt.Sprintf(format, a...))
	}
	var pf portFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&pf); err != nil {
		return nil, bad("%v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, bad("trailing data after the JSON object")
	}
	if pf.Name != d.name || pf.Netns != d.netnsPath() {
		return nil, bad("the port policy of %q (network namespace %q), not of %q (%q)", pf.Name, pf.Netns, d.name, d.netnsPath())
	}
	if err := pf.Policy.Validate(); err != nil {
		return nil, bad("%v", err)
	}
	return &pf.Policy, nil
}

// writePort replaces d's port file atomically with pol, or removes it for
// nil.
func writePort(stateDir string, d *device, pol *port.Policy) error {
	path := portPath(stateDir, d.key())
	if pol == nil {
		return writeFlowsFile(path, nil)
	}
	b, err := json.Marshal(portFile{Name: d.name, Netns: d.netnsPath(), Policy: *pol})
	if err != nil {
		return err
	}
	return writeFlowsFile(path, b)
}

// inNetns runs fn in d's network namespace: XDP attaches to, and a DEVMAP
// takes, an ifindex of the calling thread's namespace.
func inNetns(d *device, fn func() error) error {
	if d.netns == nil {
		return fn()
	}
	return d.netns.Do(fn)
}

// portLinkPin is where the XDP link of d's port program is pinned.
func (s *Server) portLinkPin(d *device) string {
	return filepath.Join(d.pinDir(s.opts.BPFFSDir), portxdp.PinLink)
}

// xdpAt reports whether l attaches XDP to the device with ifindex (of the
// namespace it was attached in); a detached link reports ifindex 0.
func xdpAt(l link.Link, ifindex int) bool {
	info, err := l.Info()
	if err != nil {
		return false
	}
	x := info.XDP()
	return x != nil && int(x.Ifindex) == ifindex
}

// portAttachedLocked reports whether d's port program is attached to it.
func portAttachedLocked(d *device) bool {
	return d.port != nil && d.port.link != nil && xdpAt(d.port.link, d.index)
}

// portAttachLocked makes sure d's port program is attached to d through
// its pinned link: it takes the link pinned there if it still attaches the
// program to d (pinning it again if its pin was removed), and otherwise
// attaches anew and pins the link. It reports whether it attached anew.
// s.mu is held.
func (s *Server) portAttachLocked(d *device) (bool, error) {
	ps, pin := d.port, s.portLinkPin(d)
	if ps.link == nil {
		if l, err := link.LoadPinnedLink(pin, nil); err == nil {
			ps.link = l
		}
	}
	if ps.link != nil && xdpAt(ps.link, d.index) {
		if _, err := os.Lstat(pin); errors.Is(err, os.ErrNotExist) {
			ps.link.Unpin()
			if err := ps.link.Pin(pin); err != nil {
				return false, fmt.Errorf("pin %s: %w", portxdp.PinLink, err)
			}
		}
		return false, nil
	}
	if ps.link != nil {
		// Detached (bpftool link detach): replaced.
		ps.link.Close()
		ps.link = nil
	}
	if err := os.Remove(pin); err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, err
	}
	var l link.Link
	err := inNetns(d, func() error {
		var err error
		// A link whose last reference was a pin removed just now is
		// freed (and its program detached) from a work queue: the TAP
		// is busy for a moment.
		for try := 0; ; try++ {
			l, err = ps.prog.Attach(d.index)
			if !errors.Is(err, unix.EBUSY) || try == 20 {
				return err
			}
			time.Sleep(25 * time.Millisecond)
		}
	})
	if err != nil {
		return false, api.Errorf(api.CodeUnavailable, "TAP %s: attaching the port-security program (XDP): %v", d.name, err)
	}
	if err := l.Pin(pin); err != nil {
		l.Close()
		return false, fmt.Errorf("pin %s: %w", portxdp.PinLink, err)
	}
	ps.link = l
	return true, nil
}

// uplinkLocked resolves a policy's uplink in d's namespace to its ifindex;
// none is 0. The TAP itself, and any TUN or TAP device, is refused: a
// frame redirected into a TAP skips its steering (docs/port-security.md).
func (s *Server) uplinkLocked(d *device, name string) (int, error) {
	if name == "" {
		return 0, nil
	}
	l, err := s.tapsOf(d).LinkByName(name)
	where := "vrssd's network namespace"
	if d.netns != nil {
		where = "network namespace " + d.netns.Path
	}
	switch {
	case errors.Is(err, kernel.ErrNoDevice):
		return 0, api.Errorf(api.CodeInvalidConfig, "TAP %s: uplink %s: no such device in %s", d.name, name, where)
	case err != nil:
		return 0, fmt.Errorf("TAP %s: looking up uplink %s: %w", d.name, name, err)
	case l.Index == d.index || l.Type == tuntap:
		return 0, api.Errorf(api.CodeInvalidConfig, "TAP %s: uplink %s is a TUN/TAP device; the uplink is a NIC or a veth (a frame redirected into a TAP skips its steering)", d.name, name)
	}
	return l.Index, nil
}

// setUplinkLocked points d's fast path at the device with ifindex (0 for
// none), in d's namespace.
func setUplinkLocked(d *device, ifindex int) error {
	err := inNetns(d, func() error { return d.port.prog.SetUplink(ifindex) })
	if err == nil {
		d.port.uplink = ifindex
	}
	return err
}

// installPortLocked gives d a new port program enforcing pol, redirecting
// to the uplink with ifindex uplink (0 none): prog, or one it loads if nil,
// published, pinned and attached, in that order, so that the program never
// judges a frame without the whole policy. It takes prog over; on error
// nothing is left. s.mu is held.
func (s *Server) installPortLocked(d *device, prog *portxdp.Program, pol port.Policy, uplink int) (err error) {
	if prog == nil {
		if prog, err = portxdp.Load(); err != nil {
			return loadError(err)
		}
	}
	dir := d.pinDir(s.opts.BPFFSDir)
	d.port = &portState{prog: prog, pol: pol}
	defer func() {
		if err != nil {
			d.port.close()
			d.port = nil
			if uerr := portxdp.Unpin(dir); uerr != nil {
				s.log.Warn("removing the port program's pins", "tap", d.name, "err", uerr)
			}
		}
	}()
	if err := prog.Publish(pol); err != nil {
		return api.Errorf(api.CodeInvalidConfig, "TAP %s: %v", d.name, err)
	}
	if err := setUplinkLocked(d, uplink); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	// Leftovers of vrssd's own names (a crash while pinning) go.
	if err := portxdp.Unpin(dir); err != nil {
		return err
	}
	if err := prog.Pin(dir); err != nil {
		return err
	}
	_, err = s.portAttachLocked(d)
	return err
}

// updatePortLocked publishes pol to d's attached program (publishPortLocked)
// and makes sure the program is attached. s.mu is held.
func (s *Server) updatePortLocked(d *device, pol port.Policy, uplink int) error {
	if err := publishPortLocked(d, pol, uplink); err != nil {
		return err
	}
	_, err := s.portAttachLocked(d)
	return err
}

// publishPortLocked publishes pol to d's program in one atomic step,
// pointing the fast path at uplink first when the policy names one (and
// clearing it after, when it names none), so that no frame is judged by a
// policy naming an uplink the program does not know, nor redirected to an
// uplink the active policy no longer names. s.mu is held.
func publishPortLocked(d *device, pol port.Policy, uplink int) error {
	if uplink != 0 {
		if err := setUplinkLocked(d, uplink); err != nil {
			return err
		}
	}
	if err := d.port.prog.Publish(pol); err != nil {
		return api.Errorf(api.CodeInvalidConfig, "TAP %s: %v", d.name, err)
	}
	d.port.pol = pol
	if uplink == 0 {
		return setUplinkLocked(d, 0)
	}
	return nil
}

// portAdminLocked looks the TAP up for p as lookupInLocked does (others'
// TAPs are not found), and refuses a TAP p may read but not change: only
// root and the admins set and clear port policies.
func (s *Server) portAdminLocked(p *peer, netns, name, verb string) (*device, error) {
	d, err := s.lookupInLocked(p, netns, name)
	if err != nil {
		return nil, err
	}
	if !s.opts.Policy.admin(p) {
		return nil, api.Errorf(api.CodeDenied, "uid %d may read the port policy of TAP %s but not %s it: only root and the admins may (the policy protects the host from the guest)", p.uid, name, verb)
	}
	return d, nil
}

// portCheckSetLocked checks a port_set request: the TAP is p's to set
// (portAdminLocked), the policy valid and its uplink a device of the TAP's
// namespace, whose ifindex it returns (0 for none). s.mu is held.
func (s *Server) portCheckSetLocked(p *peer, a *api.PortSetArgs) (*device, int, error) {
	d, err := s.portAdminLocked(p, a.Netns, a.Name, "set")
	if err != nil {
		return nil, 0, err
	}
	if err := a.Policy.Validate(); err != nil {
		return nil, 0, api.Errorf(api.CodeInvalidConfig, "TAP %s: port policy refused, the active one stays: %v", d.name, err)
	}
	uplink, err := s.uplinkLocked(d, a.Policy.Uplink)
	if err != nil {
		return nil, 0, err
	}
	return d, uplink, nil
}

func (s *Server) portSet(p *peer, raw json.RawMessage, _ []*fd.FD) (any, []*fd.FD, error) {
	if res, ok, err := s.afxdpPortOp(p, api.OpPortSet, raw); ok {
		return res, nil, err
	}
	var a api.PortSetArgs
	if err := api.DecodeArgs(raw, &a); err != nil {
		return nil, nil, err
	}
	// Loading a program (the verifier, a fraction of a second) is done
	// outside the lock, once the request is known to be good.
	s.mu.Lock()
	d, _, err := s.portCheckSetLocked(p, &a)
	fresh := err == nil && d.port == nil
	s.mu.Unlock()
	if err != nil {
		return nil, nil, err
	}
	var prog *portxdp.Program
	if fresh {
		if prog, err = portxdp.Load(); err != nil {
			return nil, nil, loadError(err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Again: the TAP or the uplink may have gone, or the TAP got a
	// program, meanwhile.
	d, uplink, err := s.portCheckSetLocked(p, &a)
	switch {
	case err != nil:
	case d.port == nil:
		err = s.installPortLocked(d, prog, a.Policy, uplink)
		prog = nil // taken over
	default:
		err = s.updatePortLocked(d, a.Policy, uplink)
	}
	if prog != nil {
		prog.Close()
	}
	if err != nil {
		return nil, nil, err
	}
	faultPoint("port-published")
	if err := writePort(s.opts.StateDir, d, &a.Policy); err != nil {
		s.log.Error("saving the TAP's port policy", "tap", d.name, "err", err)
		return nil, nil, fmt.Errorf("TAP %s: the port policy is enforced, but saving it for restarts failed: %w", d.name, err)
	}
	s.log.Info("port policy set", "tap", d.name, "netns", d.netnsPath(), "macs", len(a.Policy.MACs), "rules", len(a.Policy.Rules), "default", a.Policy.Default, "uplink", a.Policy.Uplink, "by_uid", p.uid)
	return portInfo(d), nil, nil
}

// portInfo describes d's port policy.
func portInfo(d *device) *api.PortInfo {
	out := &api.PortInfo{TAP: d.name, Netns: d.netnsPath()}
	if d.port != nil {
		pol := d.port.pol
		out.Policy, out.Attached, out.Generation = &pol, portAttachedLocked(d), d.port.prog.Generation()
	}
	return out
}

func (s *Server) portShow(p *peer, raw json.RawMessage, _ []*fd.FD) (any, []*fd.FD, error) {
	if res, ok, err := s.afxdpPortOp(p, api.OpPortShow, raw); ok {
		return res, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.namedLocked(p, raw)
	if err != nil {
		return nil, nil, err
	}
	return portInfo(d), nil, nil
}

func (s *Server) portStats(p *peer, raw json.RawMessage, _ []*fd.FD) (any, []*fd.FD, error) {
	if res, ok, err := s.afxdpPortOp(p, api.OpPortStats, raw); ok {
		return res, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.namedLocked(p, raw)
	if err != nil {
		return nil, nil, err
	}
	out := &api.PortStats{TAP: d.name, Netns: d.netnsPath(), Rules: []api.PortRuleHits{}}
	if d.port == nil {
		return out, nil, nil
	}
	c, err := d.port.prog.Counters()
	if err != nil {
		return nil, nil, fmt.Errorf("TAP %s: port counters: %w", d.name, err)
	}
	out.Attached, out.Generation, out.Uplink = portAttachedLocked(d), d.port.prog.Generation(), d.port.pol.Uplink
	fillPortStats(out, c, d.port.pol.Rules)
	return out, nil, nil
}

// fillPortStats puts the program's counters c into out: totals, reasons,
// and the hits of each of rules, the policy's ACL. A counter a mode never
// moves (the uplink's redirects on an AF_XDP port, the XSKMAP's on a TAP)
// is 0.
func fillPortStats(out *api.PortStats, c portxdp.Counters, rules []port.Rule) {
	out.Passed, out.Dropped, out.Unconfigured = c.Passed(), c.Dropped(), c.Unconfigured
	out.Redirected, out.XSKRedirected, out.OtherQueue = c.Redirected, c.XSKRedirected, c.OtherQueue
	out.Reasons = api.PortReasons(c.Reasons)
	for i, r := range rules {
		out.Rules = append(out.Rules, api.PortRuleHits{Index: i, Rule: r.String(), Hits: c.Rules[i]})
	}
}

func (s *Server) portClear(p *peer, raw json.RawMessage, _ []*fd.FD) (any, []*fd.FD, error) {
	if res, ok, err := s.afxdpPortOp(p, api.OpPortClear, raw); ok {
		return res, nil, err
	}
	var a api.NameArgs
	if err := api.DecodeArgs(raw, &a); err != nil {
		return nil, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.portAdminLocked(p, a.Netns, a.Name, "clear")
	if err != nil {
		return nil, nil, err
	}
	if d.port == nil {
		return nil, nil, nil
	}
	// The saved policy goes first (a crash after it leaves pins that the
	// next start removes), then the program is detached and vrssd's hold
	// on the link and its pins go.
	err = writePort(s.opts.StateDir, d, nil)
	if l := d.port.link; l != nil {
		// Detached now: the kernel frees a link whose last reference
		// was its pin later, from a work queue.
		if derr := l.Detach(); derr != nil {
			s.log.Warn("detaching the port-security program", "tap", d.name, "err", derr)
		}
	}
	d.port.close()
	d.port = nil
	if err = errors.Join(err, portxdp.Unpin(d.pinDir(s.opts.BPFFSDir))); err != nil {
		return nil, nil, fmt.Errorf("TAP %s: clearing its port policy: %w", d.name, err)
	}
	s.log.Info("port policy cleared", "tap", d.name, "netns", d.netnsPath(), "by_uid", p.uid)
	return nil, nil, nil
}

// restorePortLocked enforces d's saved port policy at start: through the
// pinned program and link when they are there (attaching it again if the
// link was lost), or with a new program if the pins were lost while vrssd
// was stopped. Port pins without a port file are removed. Only a port file
// vrssd will not act on is an error (the start fails, naming it); a
// failure to enforce is logged, and the next start tries again. s.mu is
// held.
func (s *Server) restorePortLocked(d *device) error {
	pol, err := readPort(s.opts.StateDir, d)
	if err != nil {
		return err
	}
	dir := d.pinDir(s.opts.BPFFSDir)
	if pol == nil {
		if err := portxdp.Unpin(dir); err != nil {
			s.log.Warn("removing port pins without a saved policy", "tap", d.name, "err", err)
		}
		return nil
	}
	uplink, err := s.uplinkLocked(d, pol.Uplink)
	if err != nil {
		s.log.Warn("the port policy's uplink is gone: allowed frames pass to the stack until the policy is set again", "tap", d.name, "uplink", pol.Uplink, "err", err)
	}
	prog, err := portxdp.LoadPinned(dir)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("loading the port program's pins; enforcing the saved policy anew", "tap", d.name, "err", err)
		}
		if err := s.installPortLocked(d, nil, *pol, uplink); err != nil {
			s.log.Error("the TAP's port policy could not be enforced; vrssd tries again at its next start", "tap", d.name, "err", err)
			return nil
		}
		s.log.Warn("the port program's pins were lost while vrssd was stopped: attached it anew with the saved policy", "tap", d.name, "netns", d.netnsPath())
		return nil
	}
	d.port = &portState{prog: prog, pol: *pol}
	// The saved policy is published again: a kill between a set's
	// publish and its save left the pinned program enforcing a policy
	// the record does not name and whose client got no answer. The same
	// policy again changes no verdict; only the generation grows.
	if err := publishPortLocked(d, *pol, uplink); err != nil {
		// Without the uplink, at least the saved policy: its allowed
		// frames pass to the stack until the uplink is set again
		// (portUplinkLocked tries).
		s.log.Warn("publishing the saved port policy with its uplink; publishing it without", "tap", d.name, "uplink", pol.Uplink, "err", err)
		if err := publishPortLocked(d, *pol, 0); err != nil {
			s.log.Error("publishing the saved port policy into the pinned program; it may enforce another until the policy is set again", "tap", d.name, "err", err)
		}
	}
	s.portCheckLocked(d, "at start")
	return nil
}

// portCheckLocked makes sure d's port program, if it has one, is attached,
// attaching it again (and counting and logging it) if it was detached
// behind vrssd's back or its link lost; why says when, for the log. s.mu
// is held.
func (s *Server) portCheckLocked(d *device, why string) {
	if d.port == nil {
		return
	}
	attached, err := s.portAttachLocked(d)
	switch {
	case err != nil:
		s.log.Warn("attaching the port-security program; vrssd tries again", "tap", d.name, "err", err)
	case attached:
		d.port.reattached++
		s.log.Warn("the port-security program was not attached (detached, or its link or pin lost): attached it again", "tap", d.name, "netns", d.netnsPath(), "when", why, "reattached", d.port.reattached)
	}
	s.portUplinkLocked(d)
}

// portUplinkLocked points d's fast path at its policy's uplink again when
// the device of that name changed (deleted, made again): the kernel
// removes a device's DEVMAP entry when it goes. While there is none,
// allowed frames pass to the stack. s.mu is held.
func (s *Server) portUplinkLocked(d *device) {
	name := d.port.pol.Uplink
	if name == "" {
		return
	}
	idx, err := s.uplinkLocked(d, name)
	var ae *api.Error
	if err != nil && !errors.As(err, &ae) {
		return // not known to be gone
	}
	if idx == d.port.uplink {
		return
	}
	if err := setUplinkLocked(d, idx); err != nil {
		s.log.Warn("pointing the port's fast path at its uplink", "tap", d.name, "uplink", name, "err", err)
		return
	}
	s.log.Warn("the port policy's uplink changed: the fast path follows it (ifindex 0: none, frames pass to the stack)", "tap", d.name, "uplink", name, "ifindex", idx)
}

// removePortPins removes the port program's pins of the TAP with key key
// (its link's too, which detaches the program).
func (s *Server) removePortPins(key string) {
	if err := portxdp.Unpin(filepath.Join(s.opts.BPFFSDir, pinDirName(key))); err != nil {
		s.log.Error("removing the port program's pins", "tap", key, "err", err)
	}
}
