package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/agent/internal/kernel"
	"github.com/vrss-dev/vrss/flow"
	"github.com/vrss-dev/vrss/internal/fd"
	"github.com/vrss-dev/vrss/rss"
	"github.com/vrss-dev/vrss/steering"
)

// Flow rules and RSS contexts, on TAPs created or adopted with flows
// (steered by steering.Flows). Every change reads the whole set the TAP
// steers by from its map (Publisher.Set: what a VMM published through its
// own mapping is kept), changes it, and publishes it in one step
// (Publisher.PublishSet): a change the set or the program's layout cannot
// take is refused with api.CodeInvalidConfig, and the TAP steers on as
// before. The set lives in the pinned map, so it outlives vrssd; state.json
// keeps a copy for a TAP whose pins are lost.

// unconfigured is the default configuration of a TAP with flows that had
// none when its first rule or context came: every frame no rule takes goes
// to queue 0, as before any configuration.
func unconfigured() rss.Config {
	return rss.Config{Key: rss.DefaultKey, Table: []uint16{0}}
}

// flowDevLocked looks up the TAP name in the network namespace netns for
// p, as lookupInLocked does, and checks that it has flows. s.mu is held.
func (s *Server) flowDevLocked(p *peer, netns, name string) (*device, error) {
	d, err := s.lookupInLocked(p, netns, name)
	if err != nil {
		return nil, err
	}
	if err := d.stale(); err != nil {
		return nil, err
	}
	if !d.flows || !d.pub.Flows() {
		return nil, api.Errorf(api.CodeBadRequest, "TAP %s: %v; delete it and create it again with flows (vrss tap create %s --flows)", d.name, steering.ErrNoFlows, d.name)
	}
	return d, nil
}

// currentSet reads the set d steers by; a TAP with no configuration yet
// starts from unconfigured.
func currentSet(d *device) (flow.Set, error) {
	set, err := d.pub.Set()
	if errors.Is(err, steering.ErrNotConfigured) {
		return flow.Set{Default: unconfigured()}, nil
	}
	if err != nil {
		return flow.Set{}, fmt.Errorf("TAP %s: reading its rules: %w", d.name, err)
	}
	return set, nil
}

// flowSetLocked finds the TAP name in netns for p, as flowDevLocked does,
// and the set it steers by (currentSet). s.mu is held.
func (s *Server) flowSetLocked(p *peer, netns, name string) (*device, flow.Set, error) {
	d, err := s.flowDevLocked(p, netns, name)
	if err != nil {
		return nil, flow.Set{}, err
	}
	set, err := currentSet(d)
	if err != nil {
		return nil, flow.Set{}, err
	}
	return d, set, nil
}

// publishSetLocked publishes set on d, or refuses it changing nothing.
// s.mu is held.
//
// state.json is not written here: the set lives in the pinned map, and
// the snapshot loop saves its copy (there for lost pins) within
// snapshotInterval, as for a set a VMM publishes. A user's stream of rule
// changes, each of which would rewrite up to a few MB of state.json, so
// costs one write per interval.
func (s *Server) publishSetLocked(p *peer, d *device, set flow.Set, what string) error {
	if err := d.pub.PublishSet(set); err != nil {
		s.limits.logRefusal(p.uid, func(suppressed int) {
			s.log.Warn("refused a flow change", "uid", p.uid, "pid", p.pid, "tap", d.name, "change", what, "reason", err, "suppressed_before", suppressed)
		})
		return api.Errorf(api.CodeInvalidConfig, "TAP %s: %s refused, nothing changed: %v", d.name, what, err)
	}
	s.log.Info("flows changed", "tap", d.name, "change", what, "rules", len(set.Rules), "contexts", len(set.Contexts), "by_uid", p.uid)
	return nil
}

// attachFilter makes sure prog's flow filter is attached at d's tc egress
// through the link pinned in d's pin directory (Program.AttachFilter), in
// d's network namespace: the link names the device by its ifindex, which
// is the namespace's own. It reports whether it attached anew.
func (s *Server) attachFilter(d *device, prog kernel.Program) (attached bool, err error) {
	err = inNetns(d, func() error {
		var aerr error
		attached, aerr = prog.AttachFilter(d.index, d.linkPin(s.opts.BPFFSDir))
		return aerr
	})
	return attached, err
}

// ruleInfo describes rule r of set for flow_add and flow_list.
func ruleInfo(r flow.Rule, g flow.Group, hits uint64) api.FlowRuleInfo {
	return api.FlowRuleInfo{FlowRule: api.RuleOf(r), Match: r.Match.String(), Host: g.Host, GroupPriority: g.Priority, Hits: hits}
}

func groupOf(set *flow.Set, id uint32) (flow.Group, int) {
	for i, g := range set.Groups {
		if g.ID == id {
			return g, i
		}
	}
	return flow.Group{}, -1
}

func (s *Server) flowAdd(p *peer, raw json.RawMessage, _ []*fd.FD) (any, []*fd.FD, error) {
	var a api.FlowAddArgs
	if err := api.DecodeArgs(raw, &a); err != nil {
		return nil, nil, err
	}
	rule, err := a.Rule.Rule()
	if err != nil {
		return nil, nil, api.Errorf(api.CodeBadRequest, "%v", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.flowDevLocked(p, a.Netns, a.Name)
	if err != nil {
		return nil, nil, err
	}
	switch {
	case guestGroup(rule.Group):
		return nil, nil, api.Errorf(api.CodeBadRequest, "TAP %s: group %d: groups %d and up are the guest's (its VMM's virtio flow filters); host groups are 0 to %d", d.name, rule.Group, uint32(api.GuestGroupBit), uint32(api.GuestGroupBit-1))
	case rule.Action.Kind == flow.ActionContext && guestContext(rule.Action.Context):
		return nil, nil, api.Errorf(api.CodeInvalidConfig, "TAP %s: context %d is the guest's (contexts %d to %d are its VMM's virtio RSS contexts): host rules send frames to host contexts, 1 to %d", d.name, rule.Action.Context, api.GuestContextBase+1, flow.MaxContexts, api.GuestContextBase)
	}
	// Checked here, so that the refusal names the rule's fields rather
	// than a rule the set does not have yet.
	if err := rule.Match.Normalize(); err != nil {
		return nil, nil, api.Errorf(api.CodeInvalidConfig, "TAP %s: the rule's match: %v", d.name, err)
	}
	set, err := currentSet(d)
	if err != nil {
		return nil, nil, err
	}
	g, gi := groupOf(&set, rule.Group)
	switch {
	case gi < 0:
		g = flow.Group{ID: rule.Group, Host: true}
		if a.GroupPriority != nil {
			g.Priority = *a.GroupPriority
		}
		set.Groups = append(set.Groups, g)
	case !g.Host:
		return nil, nil, api.Errorf(api.CodeBadRequest, "TAP %s: group %d is the guest's (its VMM's flow filters): host rules go into host groups; name another group", d.name, rule.Group)
	case a.GroupPriority != nil && *a.GroupPriority != g.Priority:
		return nil, nil, api.Errorf(api.CodeBadRequest, "TAP %s: host group %d has priority %d, not %d: leave the group priority out, or name another group", d.name, rule.Group, g.Priority, *a.GroupPriority)
	}
	// Host rules are named by id alone (flow_del): an id is unique
	// among them. The guest's rules have ids of their own.
	used := make(map[uint32]bool, len(set.Rules))
	for _, r := range set.Rules {
		if hg, _ := groupOf(&set, r.Group); hg.Host {
			used[r.ID] = true
		}
	}
	if a.AutoID {
		rule.ID = 0
		for used[rule.ID] {
			rule.ID++
		}
	} else if used[rule.ID] {
		return nil, nil, api.Errorf(api.CodeExists, "TAP %s has a rule %d already: delete it first (vrss flow del), or leave the id out", d.name, rule.ID)
	}
	set.Rules = append(set.Rules, rule)
	if err := s.publishSetLocked(p, d, set, fmt.Sprintf("adding rule %d (%s: %s)", rule.ID, rule.Match.String(), rule.Action)); err != nil {
		return nil, nil, err
	}
	return ruleInfo(rule, g, 0), nil, nil
}

func (s *Server) flowDel(p *peer, raw json.RawMessage, _ []*fd.FD) (any, []*fd.FD, error) {
	var a api.FlowDelArgs
	if err := api.DecodeArgs(raw, &a); err != nil {
		return nil, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d, set, err := s.flowSetLocked(p, a.Netns, a.Name)
	if err != nil {
		return nil, nil, err
	}
	host := func(r flow.Rule) bool { g, _ := groupOf(&set, r.Group); return g.Host }
	i := slices.IndexFunc(set.Rules, func(r flow.Rule) bool { return r.ID == a.ID && host(r) })
	if i < 0 {
		if j := slices.IndexFunc(set.Rules, func(r flow.Rule) bool { return r.ID == a.ID }); j >= 0 {
			return nil, nil, api.Errorf(api.CodeBadRequest, "TAP %s: rule %d is in the guest's group %d: its VMM removes it", d.name, a.ID, set.Rules[j].Group)
		}
		return nil, nil, api.Errorf(api.CodeNotFound, "TAP %s has no rule %d", d.name, a.ID)
	}
	r := set.Rules[i]
	set.Rules = slices.Delete(set.Rules, i, i+1)
	// A host group goes with its last rule.
	if !slices.ContainsFunc(set.Rules, func(o flow.Rule) bool { return o.Group == r.Group }) {
		_, gi := groupOf(&set, r.Group)
		set.Groups = slices.Delete(set.Groups, gi, gi+1)
	}
	if err := s.publishSetLocked(p, d, set, fmt.Sprintf("deleting rule %d", r.ID)); err != nil {
		return nil, nil, err
	}
	return nil, nil, nil
}

// flowListBudget bounds the rules of one flow_list answer, in encoded
// bytes: what is left of a message for the rest of the answer (up to
// flow.MaxGroups groups and the envelope) stays well under the limit.
const flowListBudget = api.MaxMessageSize - 8<<10

func (s *Server) flowList(p *peer, raw json.RawMessage, _ []*fd.FD) (any, []*fd.FD, error) {
	var a api.FlowListArgs
	if err := api.DecodeArgs(raw, &a); err != nil {
		return nil, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d, set, err := s.flowSetLocked(p, a.Netns, a.Name)
	if err != nil {
		return nil, nil, err
	}
	st, err := d.prog.FlowStats(d.pub)
	if err != nil && !errors.Is(err, steering.ErrNotConfigured) {
		return nil, nil, fmt.Errorf("TAP %s: flow counters: %w", d.name, err)
	}
	hits := map[[2]uint32]uint64{}
	for _, h := range st.Rules {
		hits[[2]uint32{h.Group, h.ID}] = h.Hits
	}
	order := set.Order()
	if a.Start < 0 || a.Start > len(order) {
		return nil, nil, api.Errorf(api.CodeBadRequest, "start %d: TAP %s has %d rules", a.Start, d.name, len(order))
	}
	out := &api.FlowList{Name: d.name, Generation: d.pub.Generation(), Total: len(order), Start: a.Start, Rules: []api.FlowRuleInfo{}, Groups: []api.FlowGroup{}, Dropped: st.Dropped}
	for _, g := range set.Groups {
		out.Groups = append(out.Groups, api.FlowGroup(g))
	}
	used := 0
	for i := a.Start; i < len(order); i++ {
		r := set.Rules[order[i]]
		g, _ := groupOf(&set, r.Group)
		info := ruleInfo(r, g, hits[[2]uint32{r.Group, r.ID}])
		b, err := json.Marshal(info)
		if err != nil {
			return nil, nil, err
		}
		if used+len(b)+1 > flowListBudget && len(out.Rules) > 0 {
			out.Next = i
			break
		}
		used += len(b) + 1
		out.Rules = append(out.Rules, info)
	}
	return out, nil, nil
}

// flowStats returns the flow counters of d for stats: the rules in the
// order they are tried (at most api.MaxStatsRules, those with the most
// hits), drops, and each context's frames per queue.
func flowStats(d *device) (*api.FlowStats, error) {
	st, err := d.prog.FlowStats(d.pub)
	if errors.Is(err, steering.ErrNotConfigured) {
		return &api.FlowStats{Rules: []api.RuleHits{}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("TAP %s: flow counters: %w", d.name, err)
	}
	out := &api.FlowStats{Dropped: st.Dropped, Raced: st.Raced, Unattributed: st.Unattributed, NoRulePath: st.NoRulePath, Rules: []api.RuleHits{}}
	set, err := currentSet(d)
	if err != nil {
		return nil, err
	}
	hits := map[[2]uint32]uint64{}
	for _, h := range st.Rules {
		hits[[2]uint32{h.Group, h.ID}] = h.Hits
	}
	for _, i := range set.Order() {
		r := set.Rules[i]
		out.Rules = append(out.Rules, api.RuleHits{ID: r.ID, Group: r.Group, Hits: hits[[2]uint32{r.Group, r.ID}]})
	}
	if n := len(out.Rules); n > api.MaxStatsRules {
		// Keep the ones with the most hits, in the order they are tried.
		idx := make([]int, n)
		for i := range idx {
			idx[i] = i
		}
		sort.SliceStable(idx, func(a, b int) bool { return out.Rules[idx[a]].Hits > out.Rules[idx[b]].Hits })
		keep := idx[:api.MaxStatsRules]
		sort.Ints(keep)
		rules := make([]api.RuleHits, len(keep))
		for j, i := range keep {
			rules[j] = out.Rules[i]
		}
		out.Rules, out.RulesOmitted = rules, n-len(keep)
	}
	for _, c := range set.Contexts {
		out.Contexts = append(out.Contexts, api.ContextFrames{ID: c.ID, Frames: perQueue(st.Contexts[c.ID], d.queues)})
	}
	return out, nil
}

// perQueue folds counters by the program's queue numbers into the TAP's
// queues, as the kernel takes the program's answers modulo them.
func perQueue(counts []uint64, queues int) []uint64 {
	out := make([]uint64, queues)
	for q, n := range counts {
		out[q%queues] += n
	}
	return out
}

// hostContext refuses context ids in the guest's namespace: the host's
// contexts are 1 to api.GuestContextBase.
func hostContext(d *device, id uint16) error {
	if !guestContext(id) {
		return nil
	}
	return api.Errorf(api.CodeInvalidConfig, "TAP %s: RSS context id %d: host contexts are 1 to %d (%d to %d are the guest's, the virtio RSS contexts its VMM forwards)", d.name, id, api.GuestContextBase, api.GuestContextBase+1, flow.MaxContexts)
}

func contextIndex(set *flow.Set, id uint16) int {
	return slices.IndexFunc(set.Contexts, func(c flow.Context) bool { return c.ID == id })
}

// contextRules returns the ids of the rules of set that send frames to
// context id.
func contextRules(set *flow.Set, id uint16) []uint32 {
	var ids []uint32
	for _, i := range set.Order() {
		if r := set.Rules[i]; r.Action.Kind == flow.ActionContext && r.Action.Context == id {
			ids = append(ids, r.ID)
		}
	}
	return ids
}

func (s *Server) contextAdd(p *peer, raw json.RawMessage, _ []*fd.FD) (any, []*fd.FD, error) {
	return s.contextChange(p, raw, true)
}

func (s *Server) contextSet(p *peer, raw json.RawMessage, _ []*fd.FD) (any, []*fd.FD, error) {
	return s.contextChange(p, raw, false)
}

// contextChange adds an RSS context (add) or replaces one's
// configuration.
func (s *Server) contextChange(p *peer, raw json.RawMessage, add bool) (any, []*fd.FD, error) {
	var a api.ContextArgs
	if err := api.DecodeArgs(raw, &a); err != nil {
		return nil, nil, err
	}
	op := api.OpRSSContextSet
	if add {
		op = api.OpRSSContextAdd
	}
	switch {
	case a.Config == nil:
		return nil, nil, api.Errorf(api.CodeBadRequest, "%s needs the context's configuration", op)
	case !add && a.ID == 0:
		return nil, nil, api.Errorf(api.CodeBadRequest, "%s needs a context id, 1 to %d (0 is the default configuration: set_rss)", op, api.GuestContextBase)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d, set, err := s.flowSetLocked(p, a.Netns, a.Name)
	if err != nil {
		return nil, nil, err
	}
	if err := hostContext(d, a.ID); err != nil {
		return nil, nil, err
	}
	i := contextIndex(&set, a.ID)
	switch {
	case add && a.ID == 0:
		for id := uint16(1); id <= api.GuestContextBase; id++ {
			if contextIndex(&set, id) < 0 {
				a.ID = id
				break
			}
		}
		if a.ID == 0 {
			return nil, nil, api.Errorf(api.CodeInvalidConfig, "TAP %s has %d host RSS contexts, the most it may (ids 1 to %d; %d to %d are the guest's): delete one first", d.name, api.GuestContextBase, api.GuestContextBase, api.GuestContextBase+1, flow.MaxContexts)
		}
	case add && i >= 0:
		return nil, nil, api.Errorf(api.CodeExists, "TAP %s has an RSS context %d already: change it with rss_context_set (vrss rss context set)", d.name, a.ID)
	case !add && i < 0:
		return nil, nil, api.Errorf(api.CodeNotFound, "TAP %s has no RSS context %d", d.name, a.ID)
	}
	c := flow.Context{ID: a.ID, Config: a.Config.Clone()}
	verb := "changing"
	if add {
		verb = "adding"
		set.Contexts = append(set.Contexts, c)
	} else {
		set.Contexts[i] = c
	}
	if err := s.publishSetLocked(p, d, set, fmt.Sprintf("%s RSS context %d", verb, a.ID)); err != nil {
		return nil, nil, err
	}
	info := &api.ContextInfo{ID: c.ID, Config: c.Config, Frames: make([]uint64, d.queues)}
	info.Rules, info.RulesOmitted = firstRules(contextRules(&set, c.ID))
	return info, nil, nil
}

// firstRules returns the first api.MaxContextRules ids of ids, and how many
// are left out.
func firstRules(ids []uint32) ([]uint32, int) {
	if len(ids) > api.MaxContextRules {
		return ids[:api.MaxContextRules], len(ids) - api.MaxContextRules
	}
	return ids, 0
}

func (s *Server) contextDel(p *peer, raw json.RawMessage, _ []*fd.FD) (any, []*fd.FD, error) {
	var a api.ContextArgs
	if err := api.DecodeArgs(raw, &a); err != nil {
		return nil, nil, err
	}
	if a.ID == 0 || a.Config != nil {
		return nil, nil, api.Errorf(api.CodeBadRequest, "%s takes a context id, 1 to %d, and no configuration", api.OpRSSContextDel, api.GuestContextBase)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d, set, err := s.flowSetLocked(p, a.Netns, a.Name)
	if err != nil {
		return nil, nil, err
	}
	if err := hostContext(d, a.ID); err != nil {
		return nil, nil, err
	}
	i := contextIndex(&set, a.ID)
	if i < 0 {
		return nil, nil, api.Errorf(api.CodeNotFound, "TAP %s has no RSS context %d", d.name, a.ID)
	}
	if ids := contextRules(&set, a.ID); len(ids) > 0 {
		more := ""
		if len(ids) > 10 {
			ids, more = ids[:10], fmt.Sprintf(" and %d more", len(ids)-10)
		}
		return nil, nil, api.Errorf(api.CodeInvalidConfig, "TAP %s: RSS context %d is the action of rules %v%s: delete them first (vrss flow del)", d.name, a.ID, ids, more)
	}
	set.Contexts = slices.Delete(set.Contexts, i, i+1)
	if err := s.publishSetLocked(p, d, set, fmt.Sprintf("deleting RSS context %d", a.ID)); err != nil {
		return nil, nil, err
	}
	return nil, nil, nil
}

func (s *Server) contextShow(p *peer, raw json.RawMessage, _ []*fd.FD) (any, []*fd.FD, error) {
	var a api.ContextArgs
	if err := api.DecodeArgs(raw, &a); err != nil {
		return nil, nil, err
	}
	if a.Config != nil {
		return nil, nil, api.Errorf(api.CodeBadRequest, "%s takes no configuration", api.OpRSSContextShow)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d, set, err := s.flowSetLocked(p, a.Netns, a.Name)
	if err != nil {
		return nil, nil, err
	}
	if a.ID != 0 && contextIndex(&set, a.ID) < 0 {
		return nil, nil, api.Errorf(api.CodeNotFound, "TAP %s has no RSS context %d", d.name, a.ID)
	}
	st, err := d.prog.FlowStats(d.pub)
	if err != nil && !errors.Is(err, steering.ErrNotConfigured) {
		return nil, nil, fmt.Errorf("TAP %s: flow counters: %w", d.name, err)
	}
	out := &api.ContextList{Name: d.name, Contexts: []api.ContextInfo{}}
	for _, c := range set.Contexts {
		if a.ID == 0 || a.ID == c.ID {
			info := api.ContextInfo{ID: c.ID, Config: c.Config, Frames: perQueue(st.Contexts[c.ID], d.queues), Guest: guestContext(c.ID)}
			info.Rules, info.RulesOmitted = firstRules(contextRules(&set, c.ID))
			out.Contexts = append(out.Contexts, info)
		}
	}
	sort.Slice(out.Contexts, func(i, j int) bool { return out.Contexts[i].ID < out.Contexts[j].ID })
	return out, nil, nil
}
