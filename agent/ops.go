package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"

	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/agent/internal/kernel"
	"github.com/vrss-dev/vrss/internal/fd"
	"github.com/vrss-dev/vrss/rss"
	"github.com/vrss-dev/vrss/steering"
	"github.com/vrss-dev/vrss/tap"
	"github.com/vrss-dev/vrss/virtio"
)

// handler runs one operation. in are the descriptors the request carried;
// the caller closes them afterwards. The returned descriptors go with the
// answer and are closed by the caller once sent (or, on error, at once).
type handler func(s *Server, p *peer, args json.RawMessage, in []*fd.FD) (result any, out []*fd.FD, err error)

var handlers = map[api.Op]handler{
	api.OpVersion:  (*Server).version,
	api.OpCreate:   (*Server).create,
	api.OpAdopt:    (*Server).adopt,
	api.OpSetRSS:   (*Server).setRSS,
	api.OpGetRSS:   (*Server).getRSS,
	api.OpStats:    (*Server).stats,
	api.OpOpen:     (*Server).open,
	api.OpDetach:   (*Server).detach,
	api.OpAttach:   (*Server).attach,
	api.OpDelete:   (*Server).delete,
	api.OpList:     (*Server).list,
	api.OpQEMUEBPF: (*Server).qemuEBPF,

	api.OpFlowAdd:        (*Server).flowAdd,
	api.OpFlowDel:        (*Server).flowDel,
	api.OpFlowList:       (*Server).flowList,
	api.OpRSSContextAdd:  (*Server).contextAdd,
	api.OpRSSContextSet:  (*Server).contextSet,
	api.OpRSSContextDel:  (*Server).contextDel,
	api.OpRSSContextShow: (*Server).contextShow,

	api.OpVirtioCtrl:  (*Server).virtioCtrl,
	api.OpVirtioAdmin: (*Server).virtioAdmin,
	api.OpVirtioReset: (*Server).virtioReset,

	api.OpPortSet:   (*Server).portSet,
	api.OpPortShow:  (*Server).portShow,
	api.OpPortStats: (*Server).portStats,
	api.OpPortClear: (*Server).portClear,

	api.OpAFXDPCreate: (*Server).afxdpCreate,
	api.OpAFXDPDelete: (*Server).afxdpDelete,
	api.OpAFXDPList:   (*Server).afxdpList,
	api.OpAFXDPShow:   (*Server).afxdpShow,
	api.OpAFXDPOpen:   (*Server).afxdpOpen,
}

// defaultVnetHdrLen is virtio_net_hdr_v1, what a VMM with
// VIRTIO_F_VERSION_1 or mergeable receive buffers uses.
const defaultVnetHdrLen = 12

// virtioLimits are the device limits a VMM advertises to its guest
// (virtio's minimums, as QEMU does): the raw RSS_CONFIG and HASH_CONFIG
// commands a guest sent are checked against these, not against what the
// steering program could hold.
func virtioLimits(queues int) rss.Limits { return rss.DefaultLimits(queues) }

func (s *Server) version(_ *peer, _ json.RawMessage, _ []*fd.FD) (any, []*fd.FD, error) {
	var u unix.Utsname
	unix.Uname(&u)
	return &api.VersionResult{
		Protocol: api.ProtocolVersion, ABI: steering.ABIStamp(), Server: s.opts.Version,
		Kernel: unix.ByteSliceToString(u.Sysname[:]) + " " + unix.ByteSliceToString(u.Release[:]),
	}, nil, nil
}

// owners resolves the owner a peer asks for: by default itself; only
// root and admins may give a TAP to someone else.
func (s *Server) owners(p *peer, uid, gid *int) (int, int, error) {
	ou, og := p.uid, p.gid
	if uid != nil {
		ou = *uid
	}
	if gid != nil {
		og = *gid
	}
	if ou < 0 || og < 0 || ou > 1<<32-2 || og > 1<<32-2 {
		return 0, 0, api.Errorf(api.CodeBadRequest, "owner %d:%d out of range", ou, og)
	}
	if s.opts.Policy.admin(p) {
		return ou, og, nil
	}
	if ou != p.uid {
		return 0, 0, api.Errorf(api.CodeDenied, "uid %d may not create or adopt a TAP for uid %d (only root and admins may)", p.uid, ou)
	}
	if !slices.Contains(p.groups(), og) {
		return 0, 0, api.Errorf(api.CodeDenied, "uid %d may not give a TAP to group %d, which it is not in", p.uid, og)
	}
	return ou, og, nil
}

func (s *Server) checkQueues(n int) error {
	if max := s.opts.Policy.maxQueues(); n < 1 || n > max {
		return api.Errorf(api.CodeBadRequest, "%d queues: want 1 to %d", n, max)
	}
	return nil
}

func (s *Server) mayCreate(p *peer, what string) error {
	if s.opts.Policy.canCreate(p) {
		return nil
	}
	return api.Errorf(api.CodeDenied, "uid %d may not %s TAPs: it is not root, and the vrssd configuration file lists it neither under \"create\" nor under \"admin\"", p.uid, what)
}

func (s *Server) create(p *peer, raw json.RawMessage, _ []*fd.FD) (any, []*fd.FD, error) {
	var a api.CreateArgs
	if err := api.DecodeArgs(raw, &a); err != nil {
		return nil, nil, err
	}
	if err := s.mayCreate(p, "create"); err != nil {
		return nil, nil, err
	}
	if err := checkName(a.Name); err != nil {
		return nil, nil, err
	}
	if err := s.checkQueues(a.Queues); err != nil {
		return nil, nil, err
	}
	if a.VnetHdrLen == 0 {
		a.VnetHdrLen = defaultVnetHdrLen
	}
	switch a.VnetHdrLen {
	case 10, 12, 20:
	default:
		return nil, nil, api.Errorf(api.CodeBadRequest, "vnet header length %d: want 10, 12 or 20", a.VnetHdrLen)
	}
	uid, gid, err := s.owners(p, a.OwnerUID, a.OwnerGID)
	if err != nil {
		return nil, nil, err
	}
	ns, err := s.openNetns(p, a.Netns)
	if err != nil {
		return nil, nil, err
	}
	// Until the device takes it over.
	defer func() { ns.Close() }()
	taps := s.tapsIn(ns)
	s.mu.Lock()
	err = s.quotaLocked(p, uid, a.Queues)
	s.mu.Unlock()
	if err != nil {
		return nil, nil, err
	}
	// Loading (the verifier) is the slow part: not under the lock.
	prog, err := s.opts.Programs.Load(a.Flows)
	if err != nil {
		return nil, nil, loadError(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Again under the lock: another create may have taken the room.
	if err := s.quotaLocked(p, uid, a.Queues); err != nil {
		prog.Close()
		return nil, nil, err
	}
	rec := tapState{Name: a.Name, Queues: a.Queues, VnetHdrLen: a.VnetHdrLen, OwnerUID: uid, OwnerGID: gid, Creating: true}
	if ns != nil {
		rec.Netns, rec.NetnsDev, rec.NetnsIno = ns.Path, ns.ID.Dev, ns.ID.Ino
	}
	key := rec.key()
	if err := s.nameFreeLocked(taps, key, a.Name); err != nil {
		prog.Close()
		return nil, nil, err
	}
	// Record the intent before making the device: a crash from here on
	// leaves a record that the next start undoes, never an orphan.
	s.creating[key] = rec
	defer func() {
		if _, ok := s.creating[key]; ok {
			delete(s.creating, key)
			s.saveLocked()
		}
	}()
	if err := s.saveLocked(); err != nil {
		prog.Close()
		return nil, nil, fmt.Errorf("recording the create: %w", err)
	}
	// The device is made with one queue, vrssd's control queue, which
	// is disabled at once: the queues its VMM opens (through open, or by
	// name as libvirt does) are then queues 0 to N-1, the ones steering
	// picks from.
	ctl, err := taps.Create(tap.Options{
		Name: a.Name, Queues: 1, VnetHdrLen: a.VnetHdrLen,
		Owner: uid, Group: gid, Persist: true, Up: true,
	})
	if err != nil {
		prog.Close()
		return nil, nil, tapError(err)
	}
	faultPoint("create-made")
	d := &device{
		name: ctl.Name(), index: ctl.Index(), queues: a.Queues, vnetHdrLen: a.VnetHdrLen,
		owner: uid, group: gid, ctl: ctl, flows: a.Flows, netns: ns,
	}
	ns = nil
	err = disableControl(ctl)
	if err == nil {
		err = s.steerLocked(d, prog)
	} else {
		prog.Close()
	}
	if err != nil {
		ctl.Close()
		taps.Delete(d.name)
		d.netns.Close()
		return nil, nil, err
	}
	s.log.Info("created", "tap", d.name, "netns", d.netnsPath(), "queues", d.queues, "owner", uid, "group", gid, "flows", d.flows, "by_uid", p.uid)
	return d.info(), nil, nil
}

// quotaLocked checks that uid may own one more TAP of queues queues under
// the per-uid limits, unless p (who asks) is root or an admin. s.mu is
// held.
func (s *Server) quotaLocked(p *peer, uid, queues int) error {
	if s.opts.Policy.admin(p) {
		return nil
	}
	taps, qs := 0, 0
	for _, d := range s.taps {
		if d.owner == uid {
			taps, qs = taps+1, qs+d.queues
		}
	}
	for _, r := range s.creating {
		if r.OwnerUID == uid {
			taps, qs = taps+1, qs+r.Queues
		}
	}
	// An AF_XDP port counts as a TAP of its queues.
	for _, a := range s.afxdp {
		if a.rec.OwnerUID == uid {
			taps, qs = taps+1, qs+a.rec.Queues
		}
	}
	if max := s.opts.Policy.maxTAPsPerUID(); taps >= max {
		return api.Errorf(api.CodeDenied, "uid %d owns %d TAPs under vrssd, the most one user may (max_taps_per_uid in vrssd's configuration file)", uid, taps)
	}
	if max := s.opts.Policy.maxQueuesPerUID(); qs+queues > max {
		return api.Errorf(api.CodeDenied, "uid %d owns TAPs with %d queues under vrssd; %d more would pass its limit of %d (max_queues_per_uid in vrssd's configuration file)", uid, qs, queues, max)
	}
	return nil
}

// nameFreeLocked checks that no network device of taps (a namespace's)
// is called name, and that vrssd has no TAP of that key.
func (s *Server) nameFreeLocked(taps kernel.TAPs, key, name string) error {
	if _, ok := s.taps[key]; ok {
		return api.Errorf(api.CodeExists, "TAP %s is already under vrssd", name)
	}
	if _, ok := s.creating[key]; ok {
		return api.Errorf(api.CodeExists, "TAP %s is being created", name)
	}
	if _, ok := s.afxdp[key]; ok {
		return api.Errorf(api.CodeExists, "%s is an AF_XDP port under vrssd", name)
	}
	_, err := tuntapByName(taps, name)
	var ae *api.Error
	switch {
	case err == nil:
		return api.Errorf(api.CodeExists, "a TAP named %s exists; adopt it instead", name)
	case errors.As(err, &ae) && ae.Code == api.CodeNotFound:
		return nil
	case errors.As(err, &ae) && ae.Code == api.CodeBadRequest:
		return api.Errorf(api.CodeExists, "a network device named %s exists", name)
	}
	return err
}

// steerLocked pins prog and its maps for d and attaches it through d's
// control queue; then it records d. It takes prog over: on error it is
// closed, and nothing is left behind but the device.
func (s *Server) steerLocked(d *device, prog kernel.Program) (err error) {
	pinned := false
	defer func() {
		if err != nil {
			if d.pub != nil {
				d.pub.Close()
			}
			d.pub, d.prog = nil, nil
			prog.Close()
			if pinned {
				s.removePins(d.key())
			}
		}
	}()
	if d.pub, err = prog.Publisher(d.queues); err != nil {
		return err
	}
	d.prog, d.abi = prog, steering.ABIStamp()
	// The directory is vrssd's only if it records it: anything else
	// there belongs to someone else (the bpffs directory may be shared).
	dir := d.pinDir(s.opts.BPFFSDir)
	if _, err := os.Lstat(dir); err == nil {
		return api.Errorf(api.CodeExists, "%s exists in the bpffs directory and is not vrssd's: remove it, or choose another TAP name", dir)
	}
	pinned = true
	if err := s.opts.Programs.Pin(prog, dir); err != nil {
		return err
	}
	faultPoint("steer-pinned")
	if d.flows {
		// Before the steering program: with no rule yet, the filter
		// passes every frame. Its link is pinned with the program, and
		// removing the pins (on any failure below) detaches it.
		if _, err := s.attachFilter(d, prog); err != nil {
			return filterError(d.name, err)
		}
	}
	if err := d.ctl.SetSteering(prog); err != nil {
		return err
	}
	d.steering = true
	d.savedGen = d.pub.Generation()
	// A new TAP has no guest state or port policy: a file left by an
	// earlier TAP of this name (forgotten while vrssd was stopped) is not
	// its.
	if err := writeGuest(s.opts.StateDir, d, nil); err != nil {
		return err
	}
	if err := writePort(s.opts.StateDir, d, nil); err != nil {
		return err
	}
	s.taps[d.key()] = d
	delete(s.creating, d.key())
	if err := s.saveLocked(); err != nil {
		delete(s.taps, d.key())
		return err
	}
	return nil
}

func (s *Server) adopt(p *peer, raw json.RawMessage, in []*fd.FD) (any, []*fd.FD, error) {
	var a api.AdoptArgs
	if err := api.DecodeArgs(raw, &a); err != nil {
		return nil, nil, err
	}
	if err := s.mayCreate(p, "adopt"); err != nil {
		return nil, nil, err
	}
	switch {
	case a.FromFD && len(in) != 1:
		return nil, nil, api.Errorf(api.CodeBadRequest, "adopt from_fd takes exactly one queue fd, %d attached", len(in))
	case !a.FromFD && len(in) != 0:
		return nil, nil, api.Errorf(api.CodeBadRequest, "adopt by name takes no fd (set from_fd to adopt from one), %d attached", len(in))
	case !a.FromFD:
		if err := checkName(a.Name); err != nil {
			return nil, nil, err
		}
		if err := s.checkQueues(a.Queues); err != nil {
			return nil, nil, err
		}
	}
	var q kernel.QueueInfo
	var err error
	if a.FromFD {
		if q, err = s.inspectQueue(in[0]); err != nil {
			return nil, nil, err
		}
		if a.Name != "" && a.Name != q.Name {
			return nil, nil, api.Errorf(api.CodeBadRequest, "the fd passed is a queue of %s, not of %s", q.Name, a.Name)
		}
		a.Name = q.Name
	}
	prog, err := s.opts.Programs.Load(a.Flows)
	if err != nil {
		return nil, nil, loadError(err)
	}
	// Until steerLocked takes prog over, every failure must close it.
	handed := false
	defer func() {
		if !handed {
			prog.Close()
		}
	}()
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.taps[a.Name]; ok {
		return nil, nil, api.Errorf(api.CodeExists, "TAP %s is already under vrssd", a.Name)
	}
	t, err := tuntapByName(s.opts.TAPs, a.Name)
	if err != nil {
		return nil, nil, err
	}
	if !s.opts.Policy.admin(p) && !kernelOwner(p, t) {
		return nil, nil, api.Errorf(api.CodeDenied, "uid %d may adopt only TAPs the kernel lets it attach to: their owner (TUNSETOWNER) must be uid %d, and their group (TUNSETGROUP), if set, one of its groups", p.uid, p.uid)
	}
	// The TAP keeps the owner the kernel gave it, unless root or an admin
	// names another.
	if a.OwnerUID == nil && t.Owner != kernel.Unset {
		a.OwnerUID = ptrTo(int(t.Owner))
	}
	if a.OwnerGID == nil && t.Group != kernel.Unset {
		a.OwnerGID = ptrTo(int(t.Group))
	}
	uid, gid, err := s.owners(p, a.OwnerUID, a.OwnerGID)
	if err != nil {
		return nil, nil, err
	}
	queues := a.Queues
	if a.FromFD {
		queues = attached(t)
	}
	if err := s.quotaLocked(p, uid, queues); err != nil {
		return nil, nil, err
	}
	d := &device{name: t.Name, index: t.Index, owner: uid, group: gid, adopted: true, transient: !t.Persistent, flows: a.Flows}
	if a.FromFD {
		d.queues, d.vnetHdrLen = attached(t), q.VnetHdrLen
		if err := s.checkQueues(d.queues); err != nil {
			return nil, nil, err
		}
	} else {
		if n := attached(t); n > 0 {
			return nil, nil, api.Errorf(api.CodeBusy, "%d queues of %s are attached by another process; adopt it from one of their fds (from_fd), or close them first", n, a.Name)
		}
		d.queues, d.vnetHdrLen = a.Queues, a.VnetHdrLen
		if d.vnetHdrLen == 0 && t.VnetHdr {
			d.vnetHdrLen = defaultVnetHdrLen
		}
	}
	// vrssd's control queue: appended after any queue a VMM holds, for
	// a moment, then disabled.
	d.noteQueues(t)
	if d.ctl, err = openControl(s.opts.TAPs, a.Name, d.vnetHdrLen); err != nil {
		return nil, nil, api.Errorf(api.CodeBadRequest, "%v", err)
	}
	handed = true
	if err := s.steerLocked(d, prog); err != nil {
		d.ctl.Close()
		return nil, nil, err
	}
	s.log.Info("adopted", "tap", d.name, "queues", d.queues, "from_fd", a.FromFD, "owner", uid, "flows", d.flows, "by_uid", p.uid)
	return d.info(), nil, nil
}

func ptrTo(v int) *int { return &v }

// lookupLocked finds the TAP name of vrssd's own network namespace for
// p, as lookupInLocked does.
func (s *Server) lookupLocked(p *peer, name string) (*device, error) {
	return s.lookupInLocked(p, "", name)
}

// lookupInLocked finds the TAP name in the network namespace netns (a
// path; empty for vrssd's own) for p: it must exist, still be the device
// vrssd knows, and be p's (or p an admin). A TAP p may not use is
// answered as one that does not exist, as list hides it: p learns neither
// that it exists nor whose it is. Authorisation comes first, so that no
// caller makes vrssd look up devices that are not its own.
func (s *Server) lookupInLocked(p *peer, netns, name string) (*device, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	key, err := s.keyOfLocked(netns, name)
	if err != nil {
		return nil, err
	}
	d, ok := s.taps[key]
	if !ok || !s.opts.Policy.owns(p, d) || !s.checkLocked(d) {
		if netns != "" {
			return nil, api.Errorf(api.CodeNotFound, "no TAP %s in network namespace %s under vrssd that uid %d may use", name, netns, p.uid)
		}
		return nil, api.Errorf(api.CodeNotFound, "no TAP %s under vrssd that uid %d may use", name, p.uid)
	}
	return d, nil
}

// namedLocked decodes a request's NameArgs and looks the TAP up for p, as
// lookupInLocked does. s.mu must be held.
func (s *Server) namedLocked(p *peer, raw json.RawMessage) (*device, error) {
	var a api.NameArgs
	if err := api.DecodeArgs(raw, &a); err != nil {
		return nil, err
	}
	return s.lookupInLocked(p, a.Netns, a.Name)
}

func (s *Server) setRSS(p *peer, raw json.RawMessage, _ []*fd.FD) (any, []*fd.FD, error) {
	var a api.SetRSSArgs
	if err := api.DecodeArgs(raw, &a); err != nil {
		return nil, nil, err
	}
	forms := 0
	for _, set := range []bool{a.Config != nil, a.VirtioRSS != nil, a.VirtioHash != nil} {
		if set {
			forms++
		}
	}
	if forms != 1 {
		return nil, nil, api.Errorf(api.CodeBadRequest, "set_rss takes exactly one of config, virtio_rss and virtio_hash; %d given", forms)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.lookupInLocked(p, a.Netns, a.Name)
	if err != nil {
		return nil, nil, err
	}
	if err := d.stale(); err != nil {
		return nil, nil, err
	}
	switch {
	case a.Config != nil:
		if err := d.pub.Publish(*a.Config); err != nil {
			return nil, nil, api.Errorf(api.CodeInvalidConfig, "%v", err)
		}
		s.saveLocked()
	case a.VirtioRSS != nil:
		c, err := virtio.DecodeRSSConfig(a.VirtioRSS, virtioLimits(d.queues))
		if err == nil {
			err = d.pub.Publish(c.Config)
		}
		if err != nil {
			s.limits.logRefusal(p.uid, func(suppressed int) {
				s.log.Warn("refused a virtio RSS configuration", "uid", p.uid, "pid", p.pid, "tap", d.name, "reason", err, "suppressed_before", suppressed)
			})
			return &api.SetRSSResult{Ack: virtio.AckErr, AckMessage: err.Error(), Generation: d.pub.Generation()}, nil, nil
		}
		s.saveLocked()
	case a.VirtioHash != nil:
		c, err := virtio.DecodeHashConfig(a.VirtioHash, virtioLimits(d.queues))
		if err != nil {
			s.limits.logRefusal(p.uid, func(suppressed int) {
				s.log.Warn("refused a virtio hash configuration", "uid", p.uid, "pid", p.pid, "tap", d.name, "reason", err, "suppressed_before", suppressed)
			})
			return &api.SetRSSResult{Ack: virtio.AckErr, AckMessage: err.Error(), Generation: d.pub.Generation()}, nil, nil
		}
		d.hash = &api.HashReport{HashTypes: c.HashTypes, Key: c.Key}
		s.saveLocked()
	}
	return &api.SetRSSResult{Ack: virtio.AckOK, Generation: d.pub.Generation()}, nil, nil
}

func (s *Server) getRSS(p *peer, raw json.RawMessage, _ []*fd.FD) (any, []*fd.FD, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.namedLocked(p, raw)
	if err != nil {
		return nil, nil, err
	}
	if err := d.stale(); err != nil {
		return nil, nil, err
	}
	st := &api.RSSState{Name: d.name, Generation: d.pub.Generation(), HashReport: d.hash}
	// The map is the truth: a VMM may have published through its own
	// mapping since.
	c, err := d.pub.Config()
	switch {
	case err == nil:
		st.Config = &c
	case !errors.Is(err, steering.ErrNotConfigured):
		return nil, nil, err
	}
	return st, nil, nil
}

func (s *Server) stats(p *peer, raw json.RawMessage, _ []*fd.FD) (any, []*fd.FD, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.namedLocked(p, raw)
	if err != nil {
		return nil, nil, err
	}
	out, err := statsLocked(d)
	if err != nil {
		return nil, nil, err
	}
	return out, nil, nil
}

// statsLocked reads d's counters, for the stats op and the metrics;
// s.mu is held.
func statsLocked(d *device) (*api.Stats, error) {
	if err := d.stale(); err != nil {
		return nil, err
	}
	st, err := d.prog.Stats()
	if err != nil {
		return nil, err
	}
	out := &api.Stats{
		Name: d.name, Queues: make([]uint64, d.queues),
		Unclassified: st.Unclassified, Retries: st.Retries, Torn: st.Torn, Unconfigured: st.Unconfigured,
		AttachedQueues: d.attachedQ, Reattached: d.reattached,
	}
	// The program's answers are taken modulo the queues by the kernel.
	for q, n := range st.Queues {
		out.Queues[q%d.queues] += n
	}
	if d.flows && d.pub.Flows() {
		if out.Flows, err = flowStats(d); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// controlLocked makes sure vrssd holds d's control queue, opening it if
// it could not be before. s.mu is held.
func (s *Server) controlLocked(d *device) error {
	if d.ctl != nil {
		return nil
	}
	var err error
	if d.ctl, err = openControl(s.tapsOf(d), d.name, d.vnetHdrLen); err != nil {
		return fmt.Errorf("opening vrssd's control queue: %w", err)
	}
	return nil
}

func (s *Server) open(p *peer, raw json.RawMessage, _ []*fd.FD) (res any, out []*fd.FD, err error) {
	var a api.OpenArgs
	if err := api.DecodeArgs(raw, &a); err != nil {
		return nil, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.lookupInLocked(p, a.Netns, a.Name)
	if err != nil {
		return nil, nil, err
	}
	if err := d.stale(); err != nil {
		return nil, nil, err
	}
	defer func() {
		if err != nil {
			fd.CloseAll(out)
			out = nil
		}
	}()
	if !a.ConfigOnly {
		// New queues, kept by no one but the caller: when it closes
		// them they are gone, and the next VMM (or libvirt opening the
		// TAP by name) gets queues 0 to N-1 again.
		if d.elsewhere() {
			return nil, nil, api.Errorf(api.CodeBusy, "another process holds %d queues of %s (%d enabled), and more would change every packet's queue: open it with config_only, or close them first", d.attachedQ+d.disabledQ, d.name, d.attachedQ)
		}
		q, err := s.tapsOf(d).Open(d.name, d.queues, d.vnetHdrLen)
		if err != nil {
			return nil, nil, err
		}
		defer q.Close()
		for i, f := range q.Files() {
			dup, err := fd.DupFile(f)
			if err != nil {
				return nil, out, fmt.Errorf("dup queue %d: %w", i, err)
			}
			out = append(out, dup)
		}
	}
	m, err := d.prog.DupConfigMap()
	if err != nil {
		return nil, out, fmt.Errorf("dup configuration map: %w", err)
	}
	out = append(out, m)
	s.log.Info("opened", "tap", d.name, "uid", p.uid, "pid", p.pid, "queue_fds", len(out)-1)
	return &api.OpenResult{TAP: d.info(), QueueFDs: len(out) - 1, ConfigSize: d.configSize(), ABI: d.abi}, out, nil
}

func (s *Server) detach(p *peer, raw json.RawMessage, _ []*fd.FD) (any, []*fd.FD, error) {
	return s.setSteering(p, raw, false)
}

func (s *Server) attach(p *peer, raw json.RawMessage, _ []*fd.FD) (any, []*fd.FD, error) {
	return s.setSteering(p, raw, true)
}

// setSteering attaches or detaches the TAP's program. Attaching always
// issues the ioctl, even if vrssd believes the program is attached: a VMM
// may have replaced or removed it (QEMU 7.2 detaches any program when its
// guest changes queues). Detaching what is not attached does nothing.
func (s *Server) setSteering(p *peer, raw json.RawMessage, on bool) (any, []*fd.FD, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.namedLocked(p, raw)
	if err != nil {
		return nil, nil, err
	}
	if !on && !d.steering {
		return d.info(), nil, nil
	}
	if d.prog == nil {
		return nil, nil, d.stale()
	}
	verb, prog := "detach", kernel.Program(nil)
	if on {
		verb, prog = "attach", d.prog
	}
	// TUNSETSTEERINGEBPF needs a queue fd: vrssd's disabled control
	// queue serves, whoever holds the others.
	if err := s.controlLocked(d); err != nil {
		return nil, nil, err
	}
	if d.flows && on {
		if _, err := s.attachFilter(d, d.prog); err != nil {
			return nil, nil, filterError(d.name, err)
		}
	}
	if err := d.ctl.SetSteering(prog); err != nil {
		return nil, nil, err
	}
	if d.flows && !on {
		if err := d.prog.DetachFilter(d.linkPin(s.opts.BPFFSDir)); err != nil {
			s.log.Warn("detaching the flow filter", "tap", d.name, "err", err)
		}
	}
	d.steering, d.lost = on, false
	s.saveLocked()
	s.log.Info(verb+"ed", "tap", d.name, "by_uid", p.uid)
	return d.info(), nil, nil
}

func (s *Server) delete(p *peer, raw json.RawMessage, _ []*fd.FD) (any, []*fd.FD, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.namedLocked(p, raw)
	if err != nil {
		return nil, nil, err
	}
	if err := s.tapsOf(d).Delete(d.name); err != nil && !errors.Is(err, kernel.ErrNoDevice) {
		return nil, nil, err
	}
	s.forgetLocked(d, fmt.Sprintf("deleted by uid %d", p.uid))
	return nil, nil, nil
}

func (s *Server) list(p *peer, raw json.RawMessage, _ []*fd.FD) (any, []*fd.FD, error) {
	if err := api.DecodeArgs(raw, &struct{}{}); err != nil {
		return nil, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	res := &api.ListResult{TAPs: []api.TAP{}}
	// Ownership first: a caller's list costs a lookup only for its own
	// TAPs, never for other users'.
	for _, d := range s.taps {
		if s.opts.Policy.owns(p, d) && s.checkLocked(d) {
			res.TAPs = append(res.TAPs, d.info())
		}
	}
	sort.Slice(res.TAPs, func(i, j int) bool { return res.TAPs[i].Name < res.TAPs[j].Name })
	return res, nil, nil
}
