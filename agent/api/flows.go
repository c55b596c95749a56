package api

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/vrss-dev/vrss/flow"
	"github.com/vrss-dev/vrss/rss"
)

// Flow rules and RSS contexts (package flow) on a TAP with flows
// (CreateArgs.Flows). Every change is made on the whole set the TAP is
// steered by, read back from its configuration map (so that what a VMM
// published through its own mapping is kept), and published in one
// atomic step; a change the set or the program cannot take is refused
// with CodeInvalidConfig and changes nothing. On a TAP without flows these
// operations are refused with CodeBadRequest.
//
// Host rules (the operator's) live in host groups, ids below
// GuestGroupBit; the requests below make and remove those groups as rules
// come and go. Rules in the guest's groups (a VMM's virtio flow filters,
// see virtio.go) are listed, and kept, but not removed by flow_del. Host
// RSS contexts are 1 to GuestContextBase; 5 to 8 are the guest's.

// DefaultFlowGroup is the host group flow_add puts a rule in when the
// request names none; it has priority 0.
const DefaultFlowGroup = 0

// FlowKey is a flow.Key, written in JSON as 112 hex digits.
type FlowKey flow.Key

// MarshalText writes k as 112 lower-case hex digits.
func (k FlowKey) MarshalText() ([]byte, error) {
	return []byte(hex.EncodeToString(k[:])), nil
}

// UnmarshalText reads exactly 112 hex digits.
func (k *FlowKey) UnmarshalText(b []byte) error {
	if len(b) != 2*flow.KeyLen {
		return fmt.Errorf("a flow key is %d hex digits, not %d", 2*flow.KeyLen, len(b))
	}
	var v flow.Key
	if _, err := hex.Decode(v[:], b); err != nil {
		return fmt.Errorf("flow key: %v", err)
	}
	*k = FlowKey(v)
	return nil
}

// FlowRule is a flow.Rule as the protocol carries it.
type FlowRule struct {
	ID       uint32 `json:"id"`
	Group    uint32 `json:"group"`
	Priority uint8  `json:"priority"`
	// Value and Mask are the rule's flow.Match.
	Value FlowKey `json:"value"`
	Mask  FlowKey `json:"mask"`
	// Action is flow.Action.String()'s words: "drop", "queue N" or
	// "context N".
	Action string `json:"action"`
}

// RuleOf returns r as the protocol carries it.
func RuleOf(r flow.Rule) FlowRule {
	return FlowRule{ID: r.ID, Group: r.Group, Priority: r.Priority, Value: FlowKey(r.Match.Value), Mask: FlowKey(r.Match.Mask), Action: r.Action.String()}
}

// Rule returns the flow.Rule r carries, or an error if its action is not
// one of the three forms.
func (r FlowRule) Rule() (flow.Rule, error) {
	a, err := ParseAction(r.Action)
	if err != nil {
		return flow.Rule{}, err
	}
	return flow.Rule{ID: r.ID, Group: r.Group, Priority: r.Priority, Match: flow.Match{Value: flow.Key(r.Value), Mask: flow.Key(r.Mask)}, Action: a}, nil
}

// ParseAction reads what flow.Action.String writes: "drop", "queue N" or
// "context N" (N a decimal number that fits 16 bits).
func ParseAction(s string) (flow.Action, error) {
	f := strings.Fields(s)
	if len(f) == 1 && f[0] == "drop" {
		return flow.Action{Kind: flow.ActionDrop}, nil
	}
	if len(f) == 2 {
		n, err := strconv.ParseUint(f[1], 10, 16)
		if err == nil {
			switch f[0] {
			case "queue":
				return flow.Action{Kind: flow.ActionQueue, Queue: uint16(n)}, nil
			case "context":
				return flow.Action{Kind: flow.ActionContext, Context: uint16(n)}, nil
			}
		}
	}
	return flow.Action{}, fmt.Errorf("action %q: want \"drop\", \"queue N\" or \"context N\"", s)
}

// FlowGroup is a flow.Group.
type FlowGroup struct {
	ID       uint32 `json:"id"`
	Priority uint16 `json:"priority"`
	// Host: the operator's group; the others are the guest's.
	Host bool `json:"host"`
}

// RSSContext is a flow.Context: an RSS configuration of its own, which
// rules send frames to by its id (1 to flow.MaxContexts: the host's 1 to
// GuestContextBase, the guest's above).
type RSSContext struct {
	ID     uint16     `json:"id"`
	Config rss.Config `json:"config"`
}

// FlowSet is a flow.Set without its default configuration (which get_rss
// and set_rss handle).
type FlowSet struct {
	Contexts []RSSContext `json:"contexts,omitempty"`
	Groups   []FlowGroup  `json:"groups,omitempty"`
	Rules    []FlowRule   `json:"rules,omitempty"`
}

// SetOf returns s without its default configuration.
func SetOf(s flow.Set) FlowSet {
	var out FlowSet
	for _, c := range s.Contexts {
		out.Contexts = append(out.Contexts, RSSContext{ID: c.ID, Config: c.Config.Clone()})
	}
	for _, g := range s.Groups {
		out.Groups = append(out.Groups, FlowGroup(g))
	}
	for _, r := range s.Rules {
		out.Rules = append(out.Rules, RuleOf(r))
	}
	return out
}

// Set returns the flow.Set of fs with the default configuration def.
func (fs FlowSet) Set(def rss.Config) (flow.Set, error) {
	s := flow.Set{Default: def.Clone()}
	for _, c := range fs.Contexts {
		s.Contexts = append(s.Contexts, flow.Context{ID: c.ID, Config: c.Config.Clone()})
	}
	for _, g := range fs.Groups {
		s.Groups = append(s.Groups, flow.Group(g))
	}
	for _, r := range fs.Rules {
		fr, err := r.Rule()
		if err != nil {
			return flow.Set{}, fmt.Errorf("rule %d: %w", r.ID, err)
		}
		s.Rules = append(s.Rules, fr)
	}
	return s, nil
}

// Empty reports whether fs has no context, group or rule.
func (fs FlowSet) Empty() bool {
	return len(fs.Contexts) == 0 && len(fs.Groups) == 0 && len(fs.Rules) == 0
}

// FlowAddArgs add one rule to a TAP's host rules.
type FlowAddArgs struct {
	Name string `json:"name"`
	// Netns names the network namespace the TAP lives in, by a path;
	// empty for the daemon's own. See NameArgs.Netns.
	Netns string   `json:"netns,omitempty"`
	Rule  FlowRule `json:"rule"`
	// AutoID: the daemon gives the rule the lowest id no host rule of
	// the TAP has (Rule.ID is ignored). Without it, an id a host rule has
	// already is refused with CodeExists. (The guest's rules have ids of
	// their own, per group.)
	AutoID bool `json:"auto_id,omitempty"`
	// GroupPriority is the priority of Rule.Group when the request makes
	// that host group (default 0); naming an existing group with another
	// priority is refused. The guest's groups (and ids from GuestGroupBit
	// up) take no host rules, and a host rule names no guest context.
	GroupPriority *uint16 `json:"group_priority,omitempty"`
}

// FlowDelArgs remove the host rule with id ID; a host group left empty
// goes with it.
type FlowDelArgs struct {
	Name string `json:"name"`
	// Netns names the network namespace the TAP lives in, by a path;
	// empty for the daemon's own. See NameArgs.Netns.
	Netns string `json:"netns,omitempty"`
	ID    uint32 `json:"id"`
}

// FlowListArgs ask for a TAP's rules from the Start-th on (in the order
// they are tried), as many as fit one message; FlowList.Next says where
// the next page starts.
type FlowListArgs struct {
	Name string `json:"name"`
	// Netns names the network namespace the TAP lives in, by a path;
	// empty for the daemon's own. See NameArgs.Netns.
	Netns string `json:"netns,omitempty"`
	Start int    `json:"start,omitempty"`
}

// FlowRuleInfo is a rule as flow_add and flow_list report it.
type FlowRuleInfo struct {
	FlowRule
	// Match is flow.Match.String(): the match in the words of `vrss flow
	// add` ("any" for a rule that names no field).
	Match string `json:"match"`
	// Host and GroupPriority describe the rule's group.
	Host          bool   `json:"host"`
	GroupPriority uint16 `json:"group_priority"`
	// Hits counts the frames the rule steered or dropped.
	Hits uint64 `json:"hits"`
}

// FlowList is one page of a TAP's rules, in the order they are tried
// (flow.Set.Order: host groups first, then by group priority, rule
// priority and id).
type FlowList struct {
	Name string `json:"name"`
	// Generation is the configuration map's generation the page was read
	// at: pages of different generations may not fit together.
	Generation uint64 `json:"generation"`
	// Total is the number of rules; Start the index of the first rule of
	// this page; Next that of the next page's first, 0 after the last.
	Total int            `json:"total"`
	Start int            `json:"start"`
	Next  int            `json:"next,omitempty"`
	Rules []FlowRuleInfo `json:"rules"`
	// Groups are every group of the set.
	Groups []FlowGroup `json:"groups"`
	// Dropped counts frames drop rules dropped.
	Dropped uint64 `json:"dropped"`
}

// ContextArgs name an RSS context of a TAP and, for rss_context_add and
// rss_context_set, carry its configuration. The host's contexts are 1 to
// GuestContextBase: add, set and del refuse the guest's ids
// (CodeInvalidConfig). For rss_context_add, ID 0 asks for the lowest free
// host id; for rss_context_show, ID 0 shows every context, the guest's
// too.
type ContextArgs struct {
	Name string `json:"name"`
	// Netns names the network namespace the TAP lives in, by a path;
	// empty for the daemon's own. See NameArgs.Netns.
	Netns  string      `json:"netns,omitempty"`
	ID     uint16      `json:"id,omitempty"`
	Config *rss.Config `json:"config,omitempty"`
}

// ContextInfo is one RSS context.
type ContextInfo struct {
	ID     uint16     `json:"id"`
	Config rss.Config `json:"config"`
	// Frames counts the frames the context steered to each of the TAP's
	// queues.
	Frames []uint64 `json:"frames"`
	// Rules are the ids of the rules that send frames to the context, in
	// the order they are tried: the first MaxContextRules, and
	// RulesOmitted says how many more there are.
	Rules        []uint32 `json:"rules,omitempty"`
	RulesOmitted int      `json:"rules_omitted,omitempty"`
	// Guest: the guest's context (GuestContextBase plus its virtio
	// context id), which its VMM manages (virtio_ctrl).
	Guest bool `json:"guest,omitempty"`
}

// MaxContextRules is the most rule ids ContextInfo lists.
const MaxContextRules = 32

// ContextList are a TAP's RSS contexts, by id.
type ContextList struct {
	Name     string        `json:"name"`
	Contexts []ContextInfo `json:"contexts"`
}

// MaxStatsRules is the most rules Stats reports hits of: those with the
// most hits (a TAP may have flow.MaxRules rules, more than one message
// holds beside the per-queue counters). flow_list reports every rule's.
const MaxStatsRules = 128

// FlowStats are a TAP's flow counters.
type FlowStats struct {
	// Dropped counts frames drop rules dropped (at the TAP's tc egress).
	Dropped uint64 `json:"dropped"`
	// Raced counts frames that met a drop rule in the steering program:
	// the rules changed between the filter and the program; they were
	// steered by RSS.
	Raced uint64 `json:"raced,omitempty"`
	// Unattributed counts hits of rules that got no counter of their own.
	Unattributed uint64 `json:"unattributed,omitempty"`
	// NoRulePath counts frames of a set with rules that the steering
	// program could not hand to its rule path (its program array emptied:
	// the TAP's jump pin and every fd gone); they went to the unclassified
	// queue. It stays 0 while vrssd keeps the pins.
	NoRulePath uint64 `json:"no_rule_path,omitempty"`
	// Rules are the hits of the TAP's rules, in the order they are tried;
	// with more than MaxStatsRules rules, only the MaxStatsRules with the
	// most hits, and RulesOmitted says how many are left out.
	Rules        []RuleHits `json:"rules"`
	RulesOmitted int        `json:"rules_omitted,omitempty"`
	// Contexts are the frames each RSS context steered, per queue.
	Contexts []ContextFrames `json:"contexts,omitempty"`
}

// RuleHits are one rule's hits.
type RuleHits struct {
	ID    uint32 `json:"id"`
	Group uint32 `json:"group"`
	Hits  uint64 `json:"hits"`
}

// ContextFrames are the frames one RSS context sent to each queue.
type ContextFrames struct {
	ID     uint16   `json:"id"`
	Frames []uint64 `json:"frames"`
}
