package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/agent/internal/kernel"
	"github.com/vrss-dev/vrss/internal/fd"
	"github.com/vrss-dev/vrss/port"
	"github.com/vrss-dev/vrss/portxdp"
)

// AF_XDP ports: receive queues QueueStart to QueueStart+Queues-1 of a
// device (a NIC, a veth) handed to a VMM as AF_XDP sockets. vrssd attaches
// the port-security program (portxdp, in xsk mode) to the device in driver
// mode, puts one unbound socket per queue in its XSKMAP, and pins the
// program, its maps and the link under BPFFSDir/afxdp/NAME. The XSKMAP
// holds a reference to each socket, so the sockets a VMM set up keep
// receiving while vrssd is stopped or restarted.
//
// The program judges the frames of the port's queues inbound (they arrive
// for the guest; what the guest sends leaves by AF_XDP transmission, which
// no XDP program sees): port.NewInbound's checks. Until a port policy is
// set (the port operations find AF_XDP ports by name), it judges them by
// afxdpDefault, which drops every frame but the broadcast and multicast
// control frames anyone on the segment receives. The device's
// other queues are the host's, passed to the stack unjudged, so that the
// host keeps working on them.
//
// The port's record is kept in StateDir/afxdp/NAME.json (afxdpRecord),
// read as untrusted input at start.

const (
	afxdpDir     = "afxdp"
	maxAFXDPSize = 256 << 10
)

// afxdpRecord is an AF_XDP port's file; Policy is nil until one is set.
type afxdpRecord struct {
	Name       string       `json:"name"`
	Dev        string       `json:"dev"`
	Netns      string       `json:"netns,omitempty"`
	NetnsDev   uint64       `json:"netns_dev,omitempty"`
	NetnsIno   uint64       `json:"netns_ino,omitempty"`
	QueueStart int          `json:"queue_start"`
	Queues     int          `json:"queues"`
	OwnerUID   int          `json:"owner_uid"`
	OwnerGID   int          `json:"owner_gid"`
	Policy     *port.Policy `json:"policy,omitempty"`
	Slice      *afxdpSlice  `json:"slice,omitempty"`  // --slice (afxdp_slice.go)
	Netkit     *afxdpNetkit `json:"netkit,omitempty"` // --netkit (afxdp_netkit.go)
	// Pending are the queues whose sockets went out but are not in the
	// XSKMAP yet (afxdp_pending.go).
	Pending []int `json:"pending,omitempty"`
}

func (r *afxdpRecord) key() string { return tapKey(r.Name, r.NetnsIno) }

func (r *afxdpRecord) queues() portxdp.Queues {
	return portxdp.Queues{Start: r.QueueStart, Count: r.Queues}
}

// validate checks a record read at start.
func (r *afxdpRecord) validate() error {
	for _, n := range []string{r.Name, r.Dev} {
		if err := checkName(n); err != nil {
			return fmt.Errorf("name %q", n)
		}
	}
	switch {
	case r.queues().Validate() != nil:
		return r.queues().Validate()
	case !validID(r.OwnerUID) || !validID(r.OwnerGID):
		return fmt.Errorf("owner %d:%d", r.OwnerUID, r.OwnerGID)
	case r.Netns != "" && (checkNetnsPath(r.Netns) != nil || r.NetnsIno == 0):
		return fmt.Errorf("network namespace %q (inode %d)", r.Netns, r.NetnsIno)
	case r.Netns == "" && (r.NetnsIno != 0 || r.NetnsDev != 0):
		return errors.New("a network namespace inode without its path")
	}
	if r.Policy != nil {
		if err := r.Policy.Validate(); err != nil {
			return err
		}
		if r.Policy.Uplink != "" {
			return errors.New("a policy with an uplink")
		}
	}
	if err := r.validatePending(); err != nil {
		return err
	}
	if r.Netkit != nil {
		if err := r.Netkit.validate(r); err != nil {
			return err
		}
	}
	if r.Slice != nil {
		return r.Slice.validate()
	}
	return nil
}

// afxdpPort is an AF_XDP port under vrssd.
type afxdpPort struct {
	rec     afxdpRecord
	netns   *kernel.Netns // nil: vrssd's own
	ifindex int
	prog    *portxdp.Program
	link    link.Link
	// reattached counts the times vrssd found the program detached and
	// attached it again; gone says the device was missing at the last
	// check (logged once).
	reattached uint64
	gone       bool
	// mapPath is the owner's pin of the XSKMAP, "" if there is none
	// (afxdp_mappath.go).
	mapPath string
	// nkns is the namespace of the port's netkit while it is being
	// created (afxdp_netkit.go); nil for vrssd's own, none, or after.
	nkns *kernel.Netns
	// pending holds vrssd's descriptor of each socket handed out that
	// the kernel has not taken into the XSKMAP yet, by queue;
	// pendingErr the last error inserting it, logged once
	// (afxdp_pending.go).
	pending    map[int]*os.File
	pendingErr map[int]string
}

func (a *afxdpPort) close() {
	a.closePending()
	if a.link != nil {
		a.link.Close()
	}
	if a.prog != nil {
		a.prog.Close()
	}
	a.netns.Close()
	a.nkns.Close()
}

func (a *afxdpPort) do(fn func() error) error {
	if a.netns == nil {
		return fn()
	}
	return a.netns.Do(fn)
}

func (a *afxdpPort) info() api.AFXDPPort {
	r := a.rec
	info := api.AFXDPPort{
		Name: r.Name, Dev: r.Dev, Netns: r.Netns, QueueStart: r.QueueStart, Queues: r.Queues,
		OwnerUID: r.OwnerUID, OwnerGID: r.OwnerGID, Policy: r.Policy != nil,
		Attached: a.link != nil && xdpAt(a.link, a.ifindex),
		MapPath:  a.mapPath,
		Pending:  a.pendingQueues(), Orphaned: a.orphaned(),
	}
	if r.Slice != nil {
		info.Slice = r.Slice.info()
	}
	if r.Netkit != nil && r.Netkit.State == netkitReady {
		info.Netkit = r.Netkit.info(r.Name)
	}
	return info
}

// afxdpDefault is the policy of a port none was set for: a MAC no frame
// is sent to, no address and a default of drop, so that every frame of
// the port's queues is dropped but broadcast and multicast DHCP server
// messages, NDP and MLD, which the inbound checks pass as control to any
// guest (anyone on the segment receives them).
func afxdpDefault() port.Policy {
	return port.Policy{MACs: []port.MAC{{0x02, 0, 0, 0, 0, 0}}, Default: port.Drop}
}

// policy is the policy the port's program enforces.
func (a *afxdpPort) policy() port.Policy {
	if a.rec.Policy != nil {
		return *a.rec.Policy
	}
	return afxdpDefault()
}

func (s *Server) afxdpPinDir(key string) string {
	return filepath.Join(s.opts.BPFFSDir, afxdpDir, pinDirName(key))
}

func (s *Server) afxdpPath(key string) string {
	return filepath.Join(s.opts.StateDir, afxdpDir, pinDirName(key)+".json")
}

// writeAFXDP replaces the port's file, or removes it for nil.
func (s *Server) writeAFXDP(key string, r *afxdpRecord) error {
	path := s.afxdpPath(key)
	if r == nil {
		return writeFlowsFile(path, nil)
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return writeFlowsFile(path, b)
}

// readAFXDP reads a port's file as untrusted input: a regular file, no
// link followed, bounded, no unknown field, valid, and named after its
// record's key.
func readAFXDP(path string) (*afxdpRecord, error) {
	b, err := readStateFile(path, maxAFXDPSize)
	if err != nil || b == nil {
		return nil, err
	}
	var r afxdpRecord
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err = dec.Decode(&r); err == nil {
		if _, terr := dec.Token(); !errors.Is(terr, io.EOF) {
			err = errors.New("trailing data after the JSON object")
		}
	}
	if err == nil {
		err = r.validate()
	}
	if err == nil && filepath.Base(path) != pinDirName(r.key())+".json" {
		err = fmt.Errorf("the record of %q, not of the port the file is named for", r.Name)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %v; fix or remove the file, vrssd will not act on it", path, err)
	}
	return &r, nil
}

// afxdpLookupLocked finds the AF_XDP port name in netns for p: another
// user's port is not found, as with TAPs. ok false with no error means
// there is no port of that key at all (the port ops then look for a TAP).
func (s *Server) afxdpLookupLocked(p *peer, netns, name string) (*afxdpPort, bool, error) {
	if err := checkName(name); err != nil {
		return nil, false, err
	}
	key, err := s.keyOfLocked(netns, name)
	if err != nil {
		return nil, false, err
	}
	a, ok := s.afxdp[key]
	if !ok {
		return nil, false, nil
	}
	if !s.opts.Policy.admin(p) && a.rec.OwnerUID != p.uid {
		return nil, true, api.Errorf(api.CodeNotFound, "no AF_XDP port or TAP %s under vrssd that uid %d may use", name, p.uid)
	}
	return a, true, nil
}

// afxdpNamedLocked is afxdpLookupLocked for a request's NameArgs, with
// a port that is not there not found.
func (s *Server) afxdpNamedLocked(p *peer, raw json.RawMessage) (*afxdpPort, error) {
	var a api.NameArgs
	if err := api.DecodeArgs(raw, &a); err != nil {
		return nil, err
	}
	port, ok, err := s.afxdpLookupLocked(p, a.Netns, a.Name)
	if err == nil && !ok {
		err = api.Errorf(api.CodeNotFound, "no AF_XDP port %s under vrssd that uid %d may use", a.Name, p.uid)
	}
	return port, err
}

// dev looks the port's device up in its namespace.
func (a *afxdpPort) dev() (netlink.Link, error) {
	var l netlink.Link
	err := a.do(func() error {
		var err error
		l, err = netlink.LinkByName(a.rec.Dev)
		return err
	})
	return l, err
}

// checkDevice checks the device a create names: it exists, has enough
// receive queues, and carries no XDP program. It sets a.ifindex.
func (a *afxdpPort) checkDevice() error {
	r := &a.rec
	l, err := a.dev()
	if err != nil {
		return api.Errorf(api.CodeNotFound, "AF_XDP port %s: device %s: %v", r.Name, r.Dev, err)
	}
	at := l.Attrs()
	if at.NumRxQueues < r.QueueStart+r.Queues {
		return api.Errorf(api.CodeInvalidConfig, "AF_XDP port %s: %s has %d receive queues, queues %d-%d asked for", r.Name, r.Dev, at.NumRxQueues, r.QueueStart, r.QueueStart+r.Queues-1)
	}
	if at.Xdp != nil && (at.Xdp.Attached || at.Xdp.ProgId != 0) {
		return api.Errorf(api.CodeBusy, "AF_XDP port %s: %s already carries an XDP program (id %d): vrssd will not replace it", r.Name, r.Dev, at.Xdp.ProgId)
	}
	a.ifindex = at.Index
	return nil
}

// attach attaches the port's program to its device (driver mode) and pins
// the link at pin.
func (a *afxdpPort) attach(pin string) error {
	err := a.do(func() error {
		var err error
		a.link, err = a.prog.Attach(a.ifindex)
		return err
	})
	if err != nil {
		return api.Errorf(api.CodeUnavailable, "AF_XDP port %s: attaching the program to %s (XDP, driver mode): %v", a.rec.Name, a.rec.Dev, err)
	}
	return a.link.Pin(pin)
}

func (s *Server) afxdpCreate(p *peer, raw json.RawMessage, _ []*fd.FD) (any, []*fd.FD, error) {
	var a api.AFXDPCreateArgs
	if err := api.DecodeArgs(raw, &a); err != nil {
		return nil, nil, err
	}
	if err := s.mayCreate(p, "create"); err != nil {
		return nil, nil, err
	}
	for _, n := range []string{a.Name, a.Dev} {
		if err := checkName(n); err != nil {
			return nil, nil, err
		}
	}
	if err := s.checkQueues(a.Queues); err != nil {
		return nil, nil, err
	}
	q := portxdp.Queues{Start: a.QueueStart, Count: a.Queues}
	if err := q.Validate(); err != nil {
		return nil, nil, api.Errorf(api.CodeBadRequest, "%v", err)
	}
	uid, gid, err := s.owners(p, a.OwnerUID, a.OwnerGID)
	if err != nil {
		return nil, nil, err
	}
	ns, err := s.openNetns(p, a.Netns)
	if err != nil {
		return nil, nil, err
	}
	port := &afxdpPort{netns: ns, rec: afxdpRecord{Name: a.Name, Dev: a.Dev, QueueStart: a.QueueStart, Queues: a.Queues, OwnerUID: uid, OwnerGID: gid}}
	if ns != nil {
		port.rec.Netns, port.rec.NetnsDev, port.rec.NetnsIno = ns.Path, ns.ID.Dev, ns.ID.Ino
	}
	key := port.rec.key()
	done := false
	defer func() {
		if !done {
			port.close()
		}
	}()
	s.mu.Lock()
	err = s.afxdpFreeLocked(p, key, uid, a.Queues)
	s.mu.Unlock()
	if err != nil {
		return nil, nil, err
	}
	if err := port.checkDevice(); err != nil {
		return nil, nil, err
	}
	if a.Slice {
		if err := s.afxdpSliceProbe(port); err != nil {
			return nil, nil, err
		}
		port.rec.Slice = &afxdpSlice{State: sliceCreating}
	}
	if a.Netkit != "" {
		if err := s.afxdpNetkitProbe(p, port, a.Netkit); err != nil {
			return nil, nil, err
		}
	}
	if port.prog, err = portxdp.Load(); err != nil {
		return nil, nil, loadError(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.afxdpFreeLocked(p, key, uid, a.Queues); err != nil {
		return nil, nil, err
	}
	// The record goes first: a crash after it leaves a port that the
	// next start installs (or takes back from its pins), never a program
	// attached to the device with nothing recording it.
	if err := s.writeAFXDP(key, &port.rec); err != nil {
		return nil, nil, fmt.Errorf("AF_XDP port %s: saving its record: %w", a.Name, err)
	}
	if err := s.afxdpInstallNetkitLocked(port); err != nil {
		if rerr := s.writeAFXDP(key, nil); rerr != nil {
			s.log.Warn("removing the record of an AF_XDP port whose create failed", "port", a.Name, "err", rerr)
		}
		return nil, nil, err
	}
	s.afxdp[key] = port
	done = true
	s.log.Info("AF_XDP port created", "port", a.Name, "dev", a.Dev, "netns", a.Netns, "queue_start", a.QueueStart, "queues", a.Queues, "owner", uid, "by_uid", p.uid)
	return port.info(), nil, nil
}

// afxdpFreeLocked checks that key names neither a port nor a TAP under
// vrssd, and the owner's quota (a port's queues count as a TAP's do).
func (s *Server) afxdpFreeLocked(p *peer, key string, uid, queues int) error {
	if _, ok := s.afxdp[key]; ok {
		return api.Errorf(api.CodeExists, "AF_XDP port %s is already under vrssd", key)
	}
	if _, ok := s.taps[key]; ok {
		return api.Errorf(api.CodeExists, "a TAP named %s is under vrssd", key)
	}
	return s.quotaLocked(p, uid, queues)
}

// afxdpInstallLocked publishes the port's policy for its queues, puts a
// fresh unbound socket at each of its queues, pins the program and its
// maps, and attaches it to the device in driver mode, pinning the link:
// in that order, so that the program never runs without a policy. On
// error its pins are removed.
func (s *Server) afxdpInstallLocked(a *afxdpPort) (err error) {
	dir := s.afxdpPinDir(a.rec.key())
	defer func() {
		if err != nil {
			s.afxdpRemoveLocked(a)
		}
	}()
	if err := a.prog.PublishXSK(a.policy(), a.rec.queues()); err != nil {
		return api.Errorf(api.CodeInvalidConfig, "AF_XDP port %s: %v", a.rec.Name, err)
	}
	if err := s.afxdpSocketsLocked(a, nil); err != nil {
		return err
	}
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Mkdir(d, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
	}
	if err := portxdp.Unpin(dir); err != nil {
		return err
	}
	if err := a.prog.Pin(dir); err != nil {
		return err
	}
	s.afxdpPinMapLocked(a)
	return a.attach(filepath.Join(dir, portxdp.PinLink))
}

// afxdpRemoveLocked detaches the port's program, removes its pins and
// closes what vrssd holds of it.
func (s *Server) afxdpRemoveLocked(a *afxdpPort) {
	dir := s.afxdpPinDir(a.rec.key())
	if a.link != nil {
		if err := a.link.Detach(); err != nil {
			s.log.Warn("detaching an AF_XDP port's program", "port", a.rec.Name, "err", err)
		}
	}
	if err := portxdp.Unpin(dir); err != nil {
		s.log.Warn("removing an AF_XDP port's pins", "port", a.rec.Name, "err", err)
	}
	s.afxdpUnpinMap(a.rec.key())
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("removing an AF_XDP port's pin directory", "port", a.rec.Name, "err", err)
	}
	a.close()
	a.link, a.prog, a.netns = nil, nil, nil
}

func (s *Server) afxdpDelete(p *peer, raw json.RawMessage, _ []*fd.FD) (any, []*fd.FD, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, err := s.afxdpNamedLocked(p, raw)
	if err != nil {
		return nil, nil, err
	}
	key := a.rec.key()
	if err := s.afxdpDeleteNetkitLocked(a); err != nil {
		return nil, nil, err
	}
	if err := s.afxdpDeleteSliceLocked(a); err != nil {
		return nil, nil, err
	}
	if err := s.writeAFXDP(key, nil); err != nil {
		return nil, nil, fmt.Errorf("AF_XDP port %s: removing its record: %w", a.rec.Name, err)
	}
	delete(s.afxdp, key)
	s.afxdpRemoveLocked(a)
	s.log.Info("AF_XDP port deleted", "port", a.rec.Name, "dev", a.rec.Dev, "by_uid", p.uid)
	return nil, nil, nil
}

func (s *Server) afxdpList(p *peer, raw json.RawMessage, _ []*fd.FD) (any, []*fd.FD, error) {
	if err := api.DecodeArgs(raw, &struct{}{}); err != nil {
		return nil, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	res := &api.AFXDPList{Ports: []api.AFXDPPort{}}
	for _, a := range s.afxdp {
		if s.opts.Policy.admin(p) || a.rec.OwnerUID == p.uid {
			s.afxdpInsertPendingLocked(a)
			res.Ports = append(res.Ports, a.info())
		}
	}
	sort.Slice(res.Ports, func(i, j int) bool { return res.Ports[i].Name < res.Ports[j].Name })
	return res, nil, nil
}

func (s *Server) afxdpShow(p *peer, raw json.RawMessage, _ []*fd.FD) (any, []*fd.FD, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, err := s.afxdpNamedLocked(p, raw)
	if err != nil {
		return nil, nil, err
	}
	s.afxdpInsertPendingLocked(a)
	return a.info(), nil, nil
}

// afxdpOpen hands the caller new unbound sockets, one per queue in queue
// order, after putting them in the XSKMAP in place of the previous ones.
// It is the same before and after a restart: vrssd keeps no socket (it
// could not read one back from the map anyway), so whoever held the
// previous ones stops receiving; but for the sockets a kernel refuses
// unbound (afxdp_pending.go), which it holds until their owner bound them.
func (s *Server) afxdpOpen(p *peer, raw json.RawMessage, _ []*fd.FD) (res any, out []*fd.FD, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, err := s.afxdpNamedLocked(p, raw)
	if err != nil {
		return nil, nil, err
	}
	if err := s.afxdpSocketsLocked(a, &out); err != nil {
		fd.CloseAll(out)
		return nil, nil, err
	}
	s.log.Info("AF_XDP port opened", "port", a.rec.Name, "uid", p.uid, "pid", p.pid, "sockets", len(out))
	return &api.AFXDPOpenResult{Port: a.info(), Ifindex: a.ifindex, Sockets: len(out)}, out, nil
}

// afxdpPortOp serves a port operation on an AF_XDP port, if name is one:
// handled false sends it on to the TAPs.
func (s *Server) afxdpPortOp(p *peer, op api.Op, raw json.RawMessage) (res any, handled bool, err error) {
	var na api.NameArgs
	if json.Unmarshal(raw, &na) != nil {
		return nil, false, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok, err := s.afxdpLookupLocked(p, na.Netns, na.Name)
	if !ok || err != nil {
		return nil, ok, err
	}
	if (op == api.OpPortSet || op == api.OpPortClear) && !s.opts.Policy.admin(p) {
		return nil, true, api.Errorf(api.CodeDenied, "uid %d may read the port policy of AF_XDP port %s but not change it: only root and the admins may", p.uid, na.Name)
	}
	switch op {
	case api.OpPortSet:
		var args api.PortSetArgs
		if err := api.DecodeArgs(raw, &args); err != nil {
			return nil, true, err
		}
		return s.afxdpSetPolicyLocked(a, &args.Policy, p)
	case api.OpPortClear:
		_, _, err := s.afxdpSetPolicyLocked(a, nil, p)
		return nil, true, err
	case api.OpPortShow:
		return afxdpPortInfo(a), true, nil
	}
	c, err := a.prog.Counters()
	if err != nil {
		return nil, true, fmt.Errorf("AF_XDP port %s: counters: %w", na.Name, err)
	}
	out := &api.PortStats{TAP: a.rec.Name, Netns: a.rec.Netns, Rules: []api.PortRuleHits{}, Attached: a.info().Attached, Generation: a.prog.Generation()}
	var rules []port.Rule
	if a.rec.Policy != nil {
		rules = a.rec.Policy.Rules
	}
	fillPortStats(out, c, rules)
	return out, true, nil
}

func afxdpPortInfo(a *afxdpPort) *api.PortInfo {
	return &api.PortInfo{TAP: a.rec.Name, Netns: a.rec.Netns, Attached: a.info().Attached, Generation: a.prog.Generation(), Policy: a.rec.Policy}
}

// afxdpSetPolicyLocked publishes pol (nil: afxdpDefault) for the port's
// queues in one atomic step and saves it.
func (s *Server) afxdpSetPolicyLocked(a *afxdpPort, pol *port.Policy, p *peer) (any, bool, error) {
	next := afxdpDefault()
	if pol != nil {
		next = *pol
	}
	commit, undo, err := s.afxdpSlicePolicyLocked(a, pol)
	if err != nil {
		return nil, true, err
	}
	if err := a.prog.PublishXSK(next, a.rec.queues()); err != nil {
		undo()
		return nil, true, api.Errorf(api.CodeInvalidConfig, "AF_XDP port %s: port policy refused, the active one stays: %v", a.rec.Name, err)
	}
	a.rec.Policy = pol
	commit()
	faultPoint("afxdp-published")
	if err := s.writeAFXDP(a.rec.key(), &a.rec); err != nil {
		return nil, true, fmt.Errorf("AF_XDP port %s: the policy is enforced, but saving it for restarts failed: %w", a.rec.Name, err)
	}
	s.log.Info("AF_XDP port policy set", "port", a.rec.Name, "set", pol != nil, "by_uid", p.uid)
	return afxdpPortInfo(a), true, nil
}

// restoreAFXDPLocked takes the AF_XDP ports recorded in the state
// directory back: their pinned program, maps (the sockets VMMs hold are
// in the pinned XSKMAP) and link. A port whose pins were lost is
// installed anew with fresh sockets (its owner must open it again); one
// whose namespace or device is gone is forgotten. A record vrssd will not
// act on fails the start. s.mu is held.
func (s *Server) restoreAFXDPLocked() error {
	dir := filepath.Join(s.opts.StateDir, afxdpDir)
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := checkOwnDir("AF_XDP port directory", dir); err != nil {
		return err
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		rec, err := readAFXDP(filepath.Join(dir, e.Name()))
		if err != nil {
			return err
		}
		if rec == nil || s.afxdpNetkitInterruptedLocked(rec) || s.afxdpSliceInterruptedLocked(rec) {
			continue
		}
		if err := s.restoreAFXDPPortLocked(rec); err != nil {
			s.log.Warn("forgetting an AF_XDP port", "port", rec.Name, "dev", rec.Dev, "reason", err)
			if rec.Slice != nil {
				s.afxdpAbandonLocked(rec, "its port could not be restored")
			}
			s.afxdpNetkitAbandonLocked(rec, "its port could not be restored")
			s.writeAFXDP(rec.key(), nil)
			portxdp.Unpin(s.afxdpPinDir(rec.key()))
			os.Remove(s.afxdpPinDir(rec.key()))
			s.afxdpUnpinMap(rec.key())
		}
	}
	return nil
}

func (s *Server) restoreAFXDPPortLocked(rec *afxdpRecord) error {
	ns, err := reopenNetns(&tapState{Netns: rec.Netns, NetnsDev: rec.NetnsDev, NetnsIno: rec.NetnsIno})
	if err != nil {
		return err
	}
	a := &afxdpPort{rec: *rec, netns: ns}
	l, err := a.dev()
	if err != nil {
		a.close()
		return fmt.Errorf("device %s: %w", rec.Dev, err)
	}
	a.ifindex = l.Attrs().Index
	if err := s.afxdpNetkitRestore(a); err != nil {
		a.close()
		return err
	}
	dir := s.afxdpPinDir(rec.key())
	if a.prog, err = portxdp.LoadPinned(dir); err == nil {
		a.link, err = link.LoadPinnedLink(filepath.Join(dir, portxdp.PinLink), nil)
		if err == nil && !xdpAt(a.link, a.ifindex) {
			err = errors.New("the pinned link no longer attaches the program to the device")
		}
	}
	// The recorded policy is published again: a kill between a set's
	// publish and its save left the pinned program enforcing a policy
	// the record does not name and whose client got no answer. The same
	// policy again changes no verdict; only the generation grows.
	if err == nil {
		if err = a.prog.PublishXSK(a.policy(), a.rec.queues()); err != nil {
			err = fmt.Errorf("publishing the recorded policy: %w", err)
		}
	}
	if err != nil {
		s.log.Warn("an AF_XDP port's pins are lost or stale: installing it anew; its owner must open it again", "port", rec.Name, "err", err)
		if a.link != nil {
			a.link.Close()
			a.link = nil
		}
		if a.prog != nil {
			a.prog.Close()
		}
		portxdp.Unpin(dir)
		if a.prog, err = portxdp.Load(); err != nil {
			a.close()
			return err
		}
		if err := s.afxdpInstallLocked(a); err != nil {
			return err
		}
	} else {
		s.afxdpPinMapLocked(a)
	}
	s.afxdpRestorePending(a)
	s.afxdp[rec.key()] = a
	if a.rec.Slice != nil {
		s.afxdpSliceStartLocked(a)
	}
	s.log.Info("AF_XDP port restored", "port", rec.Name, "dev", rec.Dev, "attached", a.info().Attached)
	return nil
}

// afxdpMonitor makes sure every AF_XDP port's program is attached to its
// device, as portCheckLocked does for TAPs: one detached behind vrssd's
// back (bpftool link detach), or a device made again under the same name,
// gets the program attached anew. A device that is gone, or that carries
// another XDP program now, is logged once and left alone.
func (s *Server) afxdpMonitor() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for key, a := range s.afxdp {
		if s.afxdpNetnsGoneLocked(key, a) {
			continue
		}
		s.afxdpCheckLocked(a)
		s.afxdpInsertPendingLocked(a)
	}
}

// afxdpNetnsGoneLocked forgets a port whose namespace path no longer names
// the namespace it was made in (deleted, its process gone), as
// netnsGoneLocked does a TAP: its program is detached and its pins and
// record removed.
func (s *Server) afxdpNetnsGoneLocked(key string, a *afxdpPort) bool {
	if a.netns == nil {
		return false
	}
	if id, err := kernel.StatNetns(a.netns.Path); err == nil && id == a.netns.ID {
		return false
	}
	if err := s.writeAFXDP(key, nil); err != nil {
		s.log.Warn("removing the record of an AF_XDP port whose namespace is gone", "port", a.rec.Name, "err", err)
		return false
	}
	delete(s.afxdp, key)
	s.log.Warn("forgetting an AF_XDP port: its network namespace is gone", "port", a.rec.Name, "netns", a.rec.Netns)
	s.afxdpSliceNetnsGoneLocked(a)
	s.afxdpNetkitAbandonLocked(&a.rec, "the port's namespace is gone")
	s.afxdpRemoveLocked(a)
	return true
}

func (s *Server) afxdpCheckLocked(a *afxdpPort) {
	if a.link != nil && xdpAt(a.link, a.ifindex) {
		return
	}
	l, err := a.dev()
	if err != nil {
		if !a.gone {
			s.log.Warn("an AF_XDP port's device is gone: its program attaches again when it is back", "port", a.rec.Name, "dev", a.rec.Dev, "err", err)
		}
		a.gone = true
		return
	}
	a.gone = false
	a.ifindex = l.Attrs().Index
	if a.link != nil && xdpAt(a.link, a.ifindex) {
		return
	}
	if x := l.Attrs().Xdp; x != nil && x.Attached {
		return // someone else's program: create refused it, vrssd does not replace it
	}
	pin := filepath.Join(s.afxdpPinDir(a.rec.key()), portxdp.PinLink)
	if a.link != nil {
		a.link.Close()
		a.link = nil
	}
	if err := os.Remove(pin); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("removing an AF_XDP port's stale link pin", "port", a.rec.Name, "err", err)
		return
	}
	if err := a.attach(pin); err != nil {
		s.log.Warn("attaching an AF_XDP port's program again; vrssd tries again", "port", a.rec.Name, "dev", a.rec.Dev, "err", err)
		return
	}
	a.reattached++
	s.log.Warn("an AF_XDP port's program was not attached: attached it again", "port", a.rec.Name, "dev", a.rec.Dev, "reattached", a.reattached)
}
