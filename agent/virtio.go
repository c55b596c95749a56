package agent

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/flow"
	"github.com/vrss-dev/vrss/internal/fd"
	"github.com/vrss-dev/vrss/steering"
	"github.com/vrss-dev/vrss/virtio"
)

// A guest's raw virtio commands on a TAP with flows (virtio_ctrl,
// virtio_admin, virtio_reset): vrssd keeps a virtio.Device per TAP (the
// guest's state), applies each command to a clone of it, and, if the
// command changed the guest's part of the set, publishes the TAP's set
// with the guest's part replaced by the clone's, in one step; the clone
// replaces the device only once that succeeded and the guest file is
// saved. A command the merged set cannot take is answered ENOSPC
// (VIRTIO_NET_ERR on the control queue) and changes nothing.
//
// Namespaces in the TAP's set: guest group g is api.GuestGroupBit|g,
// Host false (rule ids are per group, so the guest's rules keep theirs);
// guest context c is api.GuestContextBase+c. Host groups stay below
// api.GuestGroupBit (flow_add) and host contexts are 1 to
// api.GuestContextBase (rss_context_*), so neither side can take the
// other's ids. The default configuration is the TAP's: set_rss sets it,
// and so does a guest's VIRTIO_NET_CTRL_MQ_RSS_CONFIG through virtio_ctrl
// (the last one wins); the other guest commands leave it as it is.

// Guest limits: what the device declares to the guest, below the map's
// (steering.FlowLimits) so that the host keeps room of its own: at least
// 16 groups, 2,000 rules, 4 distinct masks, 16,000 words of rule memory
// and 4 contexts when the guest uses all of its share. Either side may use
// more of the map while the other uses less; a change that would take the
// two together over the map's limits is refused to whichever side makes
// it.
const (
	guestGroups   = 48
	guestRules    = 8000
	guestPatterns = 12
	guestWords    = 64000
)

// guestLimits are the limits of the guest device of a TAP with queues
// queues: virtio.DefaultDeviceLimits (40-byte keys, 128-entry tables,
// every hash type, every rule priority, three selectors per classifier)
// with the guest's share of the map.
func guestLimits(queues int) virtio.DeviceLimits {
	l := virtio.DefaultDeviceLimits(queues)
	l.Flow.MaxContexts = flow.MaxContexts - api.GuestContextBase
	l.Flow.MaxGroups = guestGroups
	l.Flow.MaxRules = guestRules
	l.Flow.MaxPatterns = guestPatterns
	l.Flow.MaxRuleWords = guestWords
	l.Classifiers = guestRules
	l.RulesPerGroup = guestRules
	return l
}

// guestGroup reports whether group id is in the guest's namespace.
func guestGroup(id uint32) bool { return id&api.GuestGroupBit != 0 }

// guestContext reports whether context id is in the guest's namespace.
func guestContext(id uint16) bool { return id > api.GuestContextBase }

// split returns set's host part (its default configuration, the host's
// contexts, groups and rules) and its guest part (the rest; no default).
func split(set flow.Set) (host, guest flow.Set) {
	host.Default = set.Default
	for _, c := range set.Contexts {
		if guestContext(c.ID) {
			guest.Contexts = append(guest.Contexts, c)
		} else {
			host.Contexts = append(host.Contexts, c)
		}
	}
	for _, g := range set.Groups {
		if guestGroup(g.ID) {
			guest.Groups = append(guest.Groups, g)
		} else {
			host.Groups = append(host.Groups, g)
		}
	}
	for _, r := range set.Rules {
		if guestGroup(r.Group) {
			guest.Rules = append(guest.Rules, r)
		} else {
			host.Rules = append(host.Rules, r)
		}
	}
	return host, guest
}

// namespaced returns the guest device's set g as the TAP's set holds it:
// groups and rules' groups with api.GuestGroupBit, contexts shifted by
// api.GuestContextBase; no default configuration.
func namespaced(g flow.Set) flow.Set {
	var out flow.Set
	for _, c := range g.Contexts {
		out.Contexts = append(out.Contexts, flow.Context{ID: c.ID + api.GuestContextBase, Config: c.Config})
	}
	for _, gr := range g.Groups {
		out.Groups = append(out.Groups, flow.Group{ID: gr.ID | api.GuestGroupBit, Priority: gr.Priority})
	}
	for _, r := range g.Rules {
		r.Group |= api.GuestGroupBit
		out.Rules = append(out.Rules, r)
	}
	return out
}

// merge returns host's set with guest's contexts, groups and rules added.
func merge(host, guest flow.Set) flow.Set {
	out := flow.Set{Default: host.Default}
	out.Contexts = append(slices.Clone(host.Contexts), guest.Contexts...)
	out.Groups = append(slices.Clone(host.Groups), guest.Groups...)
	out.Rules = append(slices.Clone(host.Rules), guest.Rules...)
	return out
}

// sameParts reports whether two guest parts hold the same contexts,
// groups and rules, in whatever order.
func sameParts(a, b flow.Set) bool {
	canon := func(s flow.Set) flow.Set {
		s = s.Clone()
		slices.SortFunc(s.Contexts, func(x, y flow.Context) int { return cmp.Compare(x.ID, y.ID) })
		slices.SortFunc(s.Groups, func(x, y flow.Group) int { return cmp.Compare(x.ID, y.ID) })
		slices.SortFunc(s.Rules, func(x, y flow.Rule) int {
			return cmp.Or(cmp.Compare(x.Group, y.Group), cmp.Compare(x.ID, y.ID))
		})
		return s
	}
	x, y := canon(a), canon(b)
	return len(x.Contexts) == len(y.Contexts) && len(x.Groups) == len(y.Groups) && len(x.Rules) == len(y.Rules) &&
		(len(x.Contexts) == 0 || reflect.DeepEqual(x.Contexts, y.Contexts)) &&
		(len(x.Groups) == 0 || reflect.DeepEqual(x.Groups, y.Groups)) &&
		(len(x.Rules) == 0 || reflect.DeepEqual(x.Rules, y.Rules))
}

// guestDevice returns d's guest device, or a fresh one if it has none.
func guestDevice(d *device) (*virtio.Device, error) {
	if d.guest != nil {
		return d.guest, nil
	}
	return virtio.NewDevice(guestLimits(d.queues))
}

// guestDevLocked finds the TAP name in netns for p, as flowDevLocked
// does, and its guest device (guestDevice). s.mu is held.
func (s *Server) guestDevLocked(p *peer, netns, name string) (*device, *virtio.Device, error) {
	d, err := s.flowDevLocked(p, netns, name)
	if err != nil {
		return nil, nil, err
	}
	g, err := guestDevice(d)
	if err != nil {
		return nil, nil, err
	}
	return d, g, nil
}

// commitGuestLocked makes next, prev after a command that changed its
// state, d's guest device: if the guest's set changed it publishes the
// TAP's set with the guest's part replaced (and, for setDefault, next's
// default configuration), then saves the guest file. On error nothing has
// changed, and the error wraps virtio.ErrNoSpace (the device's answer
// when it has no room). s.mu is held.
func (s *Server) commitGuestLocked(p *peer, d *device, prev, next *virtio.Device, setDefault bool, what string) error {
	var before flow.Set
	published := false
	if next.Generation() != prev.Generation() {
		cur, err := currentSet(d)
		if err != nil {
			return fmt.Errorf("%w: %v", virtio.ErrNoSpace, err)
		}
		host, _ := split(cur)
		gs := next.Set()
		set := merge(host, namespaced(gs))
		if setDefault {
			set.Default = gs.Default
		}
		if err := d.pub.PublishSet(set); err != nil {
			return fmt.Errorf("%w: the TAP's rules and contexts with the host's cannot take it: %v", virtio.ErrNoSpace, err)
		}
		before, published = cur, true
	}
	if err := writeGuest(s.opts.StateDir, d, next); err != nil {
		s.log.Error("saving the guest's virtio state; the command is refused", "tap", d.name, "err", err)
		if published {
			if perr := d.pub.PublishSet(before); perr != nil {
				s.log.Error("restoring the TAP's set after a failed save", "tap", d.name, "err", perr)
			}
		}
		return fmt.Errorf("%w: saving the guest's state: %v", virtio.ErrNoSpace, err)
	}
	d.guest = next
	if published {
		s.log.Info("guest flows changed", "tap", d.name, "command", what, "by_uid", p.uid)
	}
	return nil
}

// guestRefused logs, rate-limited per uid, a command the guest device or
// the TAP's set refused.
func (s *Server) guestRefused(p *peer, d *device, what string, err error) {
	s.limits.logRefusal(p.uid, func(suppressed int) {
		s.log.Warn("refused a guest's virtio command", "uid", p.uid, "pid", p.pid, "tap", d.name, "command", what, "reason", err, "suppressed_before", suppressed)
	})
}

func (s *Server) virtioCtrl(p *peer, raw json.RawMessage, _ []*fd.FD) (any, []*fd.FD, error) {
	var a api.VirtioCtrlArgs
	if err := api.DecodeArgs(raw, &a); err != nil {
		return nil, nil, err
	}
	if len(a.Payload) > api.MaxVirtioCommand {
		return nil, nil, api.Errorf(api.CodeBadRequest, "a control command payload of %d bytes: at most %d (no command vrss takes is that long: answer it VIRTIO_NET_ERR)", len(a.Payload), api.MaxVirtioCommand)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d, prev, err := s.guestDevLocked(p, a.Netns, a.Name)
	if err != nil {
		return nil, nil, err
	}
	what := fmt.Sprintf("control class %d command %d", a.Class, a.Cmd)
	next := prev.Clone()
	ack, reply, err := next.Ctrl(a.Class, a.Cmd, a.Payload)
	if err == nil && !(a.Class == virtio.CtrlClassRSSContext && a.Cmd == virtio.CmdRSSContextCapGet) {
		rssConfig := a.Class == virtio.CtrlClassMQ && a.Cmd == virtio.CmdRSSConfig
		err = s.commitGuestLocked(p, d, prev, next, rssConfig, what)
	}
	if err != nil {
		s.guestRefused(p, d, what, err)
		return &api.VirtioCtrlResult{Ack: virtio.AckErr, Message: err.Error()}, nil, nil
	}
	return &api.VirtioCtrlResult{Ack: ack, Reply: reply}, nil, nil
}

// adminChanges reports whether an accepted admin command with opcode op
// changes the device's state.
func adminChanges(op uint16) bool {
	switch op {
	case virtio.AdminCmdListUse, virtio.AdminCmdDriverCapSet, virtio.AdminCmdResourceObjCreate,
		virtio.AdminCmdResourceObjModify, virtio.AdminCmdResourceObjDestroy:
		return true
	}
	return false
}

func (s *Server) virtioAdmin(p *peer, raw json.RawMessage, _ []*fd.FD) (any, []*fd.FD, error) {
	var a api.VirtioAdminArgs
	if err := api.DecodeArgs(raw, &a); err != nil {
		return nil, nil, err
	}
	if len(a.Command) > api.MaxVirtioCommand {
		return nil, nil, api.Errorf(api.CodeBadRequest, "an admin command of %d bytes: at most %d (pass the first %d: a device ignores the bytes past a command's structure)", len(a.Command), api.MaxVirtioCommand, api.MaxVirtioCommand)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d, prev, err := s.guestDevLocked(p, a.Netns, a.Name)
	if err != nil {
		return nil, nil, err
	}
	op := virtio.DecodeAdminCmd(a.Command).Opcode
	what := fmt.Sprintf("admin opcode %#x", op)
	next := prev.Clone()
	result, err := next.Admin(a.Command)
	if err == nil && adminChanges(op) {
		if err = s.commitGuestLocked(p, d, prev, next, false, what); err != nil {
			st, q := virtio.AdminStatus(err)
			r := virtio.AdminResult{Status: st, Qualifier: q}
			result, _ = r.MarshalBinary()
		}
	}
	if err != nil {
		s.guestRefused(p, d, what, err)
		return &api.VirtioAdminResult{Result: result, Message: err.Error()}, nil, nil
	}
	return &api.VirtioAdminResult{Result: result}, nil, nil
}

func (s *Server) virtioReset(p *peer, raw json.RawMessage, _ []*fd.FD) (any, []*fd.FD, error) {
	var a api.NameArgs
	if err := api.DecodeArgs(raw, &a); err != nil {
		return nil, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d, cur, err := s.flowSetLocked(p, a.Netns, a.Name)
	if err != nil {
		return nil, nil, err
	}
	host, guest := split(cur)
	if !sameParts(guest, flow.Set{}) {
		if err := d.pub.PublishSet(host); err != nil {
			return nil, nil, fmt.Errorf("TAP %s: publishing its host rules alone: %w", d.name, err)
		}
	}
	d.guest = nil
	if err := writeGuest(s.opts.StateDir, d, nil); err != nil {
		return nil, nil, fmt.Errorf("TAP %s: removing the guest's saved state: %w", d.name, err)
	}
	s.log.Info("guest's virtio device reset", "tap", d.name, "by_uid", p.uid, "guest_rules", len(guest.Rules), "guest_contexts", len(guest.Contexts))
	return nil, nil, nil
}

// syncGuestLocked makes sure the TAP's set holds d's guest state, as the
// guest file has it, at start: vrssd may have stopped between publishing
// a guest's command and saving its state (the VMM then never heard that
// the command was done), or the set may have been steered anew from an
// older copy. s.mu is held.
func (s *Server) syncGuestLocked(d *device) {
	if d.guest == nil || d.pub == nil || !d.pub.Flows() {
		return
	}
	cur, err := currentSet(d)
	if err != nil {
		s.log.Error("reading the TAP's set to check the guest's part", "tap", d.name, "err", err)
		return
	}
	host, guest := split(cur)
	want := namespaced(d.guest.Set())
	if sameParts(guest, want) {
		return
	}
	if err := d.pub.PublishSet(merge(host, want)); err != nil {
		s.log.Error("the guest's part of the TAP's set differs from its saved state, which cannot be published again", "tap", d.name, "err", err)
		return
	}
	s.log.Warn("the guest's part of the TAP's set differed from its saved state (vrssd stopped between the two): published the saved state again", "tap", d.name,
		"guest_rules", len(want.Rules), "guest_contexts", len(want.Contexts))
}

// The guest file: the commands that rebuild a TAP's guest device
// (virtio.Device.Commands), next to its flows file, replaced atomically
// whenever a guest's command changes the device, removed when it is
// reset or the TAP is deleted.

// guestPath is the guest file of the TAP with key key (tapKey), next to
// its flows file (pinDirName has no dot, so no other file of the flows
// directory has this name).
func guestPath(stateDir, key string) string {
	return filepath.Join(stateDir, flowsDir, pinDirName(key)+".guest.json")
}

// guestFile is a guest file's content: the TAP's name and network
// namespace path (none for vrssd's own), and its guest's commands.
type guestFile struct {
	Name   string `json:"name"`
	Netns  string `json:"netns,omitempty"`
	Queues int    `json:"queues"`
	// Ctrl and Admin are the commands, replayed in this order.
	Ctrl  []guestCtrl `json:"ctrl,omitempty"`
	Admin [][]byte    `json:"admin,omitempty"`
}

type guestCtrl struct {
	Class   uint8  `json:"class"`
	Cmd     uint8  `json:"cmd"`
	Payload []byte `json:"payload,omitempty"`
}

// writeGuest replaces d's guest file with g's commands, atomically, or
// removes it for nil or a device with nothing to rebuild.
func writeGuest(stateDir string, d *device, g *virtio.Device) error {
	path := guestPath(stateDir, d.key())
	var gf guestFile
	if g != nil {
		ctrl, admin := g.Commands()
		gf = guestFile{Name: d.name, Netns: d.netnsPath(), Queues: g.Limits().Queues, Admin: admin}
		for _, c := range ctrl {
			gf.Ctrl = append(gf.Ctrl, guestCtrl{Class: c.Class, Cmd: c.Cmd, Payload: c.Payload})
		}
	}
	if len(gf.Ctrl)+len(gf.Admin) == 0 {
		return writeFlowsFile(path, nil)
	}
	b, err := json.Marshal(&gf)
	if err != nil {
		return err
	}
	if len(b) > maxFlowsSize {
		return fmt.Errorf("the guest's state takes %d bytes, over %d", len(b), maxFlowsSize)
	}
	return writeFlowsFile(path, b)
}

// readGuest rebuilds the guest device of r from its guest file, which must
// be a regular file (no link is followed) of at most maxFlowsSize bytes,
// r's, for r's queues, whose every command the device accepts; none is
// nil. Anything else is an error naming the file.
func readGuest(stateDir string, r *tapState) (*virtio.Device, error) {
	path := guestPath(stateDir, r.key())
	b, err := readStateFile(path, maxFlowsSize)
	if b == nil || err != nil {
		return nil, err
	}
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%s: %s; fix or remove the file, vrssd will not act on it", path, fmt.Sprintf(format, a...))
	}
	var gf guestFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&gf); err != nil {
		return nil, bad("%v", err)
	}
	switch {
	case !r.Flows:
		return nil, bad("a guest's virtio state kept for a TAP without flows")
	case gf.Name != r.Name || gf.Netns != r.Netns:
		return nil, bad("the guest state of %q (network namespace %q), not of %q (%q)", gf.Name, gf.Netns, r.Name, r.Netns)
	case gf.Queues != r.Queues:
		return nil, bad("the guest state of a TAP with %d queues, and %s has %d", gf.Queues, r.Name, r.Queues)
	}
	g, err := virtio.NewDevice(guestLimits(r.Queues))
	if err != nil {
		return nil, bad("%v", err)
	}
	for i, c := range gf.Ctrl {
		if len(c.Payload) > api.MaxVirtioCommand {
			return nil, bad("control command %d is %d bytes", i, len(c.Payload))
		}
		if _, _, err := g.Ctrl(c.Class, c.Cmd, c.Payload); err != nil {
			return nil, bad("control command %d (class %d command %d): %v", i, c.Class, c.Cmd, err)
		}
	}
	for i, c := range gf.Admin {
		if len(c) > api.MaxVirtioCommand {
			return nil, bad("admin command %d is %d bytes", i, len(c))
		}
		if _, err := g.Admin(c); err != nil {
			return nil, bad("admin command %d (opcode %#x): %v", i, virtio.DecodeAdminCmd(c).Opcode, err)
		}
	}
	// The device keeps its set within its limits; the map's are checked
	// too, as for the flows file.
	gs := namespaced(g.Set())
	gs.Default = unconfigured()
	if err := gs.Validate(steering.FlowLimits(r.Queues)); err != nil {
		return nil, bad("the guest's rules and contexts: %v", err)
	}
	return g, nil
}
