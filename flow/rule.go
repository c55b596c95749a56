package flow

import (
	"errors"
	"fmt"
	"slices"

	"github.com/vrss-dev/vrss/rss"
)

// ActionKind says what happens to a frame a rule matches. Drop and Queue
// have virtio's values (VIRTIO_NET_FF_ACTION_DROP, _DIRECT_RX_VQ); Context
// is vrss's extension, for host rules.
type ActionKind uint8

// The actions.
const (
	ActionDrop    ActionKind = 1 // the frame reaches no queue
	ActionQueue   ActionKind = 2 // the frame goes to Action.Queue
	ActionContext ActionKind = 3 // RSS context Action.Context steers the frame
)

// String returns "drop", "queue" or "context".
func (k ActionKind) String() string {
	switch k {
	case ActionDrop:
		return "drop"
	case ActionQueue:
		return "queue"
	case ActionContext:
		return "context"
	}
	return fmt.Sprintf("action(%d)", uint8(k))
}

// Action is a rule's action and its argument.
type Action struct {
	Kind    ActionKind
	Queue   uint16 // receive queue, for ActionQueue
	Context uint16 // RSS context id (1..), for ActionContext
}

// String returns the action in the words of `vrss flow add`.
func (a Action) String() string {
	switch a.Kind {
	case ActionQueue:
		return fmt.Sprintf("queue %d", a.Queue)
	case ActionContext:
		return fmt.Sprintf("context %d", a.Context)
	}
	return a.Kind.String()
}

// Group is a group of rules with a priority. Host groups are the host
// operator's (vrss flow add); the others are the guest's (virtio flow
// filter groups).
type Group struct {
	ID       uint32
	Priority uint16
	Host     bool
}

// Rule is one flow rule.
type Rule struct {
	// ID names the rule in its group: (Group, ID) is unique in a Set, so
	// the host's rules and the guest's never collide.
	ID uint32
	// Group is the id of the rule's group.
	Group uint32
	// Priority orders rules in a group: higher first.
	Priority uint8
	Match    Match
	Action   Action
}

// Context is an RSS context: a whole RSS configuration, with its own key,
// hash types and indirection table over its own queues.
type Context struct {
	// ID is 1 or more; 0 is the default configuration.
	ID     uint16
	Config rss.Config
}

// Set is everything that steers a TAP's frames: the default RSS
// configuration, the RSS contexts and the flow rules with their groups.
type Set struct {
	Default  rss.Config
	Contexts []Context
	Groups   []Group
	Rules    []Rule
}

// Clone returns a deep copy of s.
func (s Set) Clone() Set {
	s.Default = s.Default.Clone()
	s.Contexts = slices.Clone(s.Contexts)
	for i := range s.Contexts {
		s.Contexts[i].Config = s.Contexts[i].Config.Clone()
	}
	s.Groups = slices.Clone(s.Groups)
	s.Rules = slices.Clone(s.Rules)
	return s
}

// Limits bound a Set. The eBPF program's layout fixes the largest values
// (steering.FlowLimits); a device may declare smaller ones.
type Limits struct {
	// Queues is the number of receive queues (0: not checked).
	Queues int
	// RSS bounds the default configuration.
	RSS rss.Limits
	// MaxContexts is the highest context id (ids run 1..MaxContexts).
	MaxContexts int
	// MaxContextTable is the longest indirection table of a context.
	MaxContextTable int
	// MaxContextKey is the longest key of a context (0: RSS.MaxKeySize).
	MaxContextKey int
	// MaxGroups and MaxRules bound the number of groups and rules.
	MaxGroups, MaxRules int
	// MaxPatterns bounds the distinct masks among the rules: the eBPF
	// program makes one hash lookup per mask.
	MaxPatterns int
	// MaxRuleWords bounds the sum over all rules of RuleWords, the 32-bit
	// words the eBPF program stores them in (0: not checked).
	MaxRuleWords int
}

// Errors of Set.Validate, wrapped with details. rss.Config.Validate's
// errors are wrapped too.
var (
	ErrLimit     = errors.New("flow: over a limit")
	ErrDuplicate = errors.New("flow: duplicate id")
	ErrNoGroup   = errors.New("flow: rule names a group that does not exist")
	ErrNoContext = errors.New("flow: no such RSS context")
	ErrAction    = errors.New("flow: bad action")
)

// Validate reports whether s is acceptable under l: every configuration
// valid, ids unique and in range, every rule's group and context present,
// every queue below l.Queues, context actions only in host groups, and the
// counts within the limits. Matches are normalized copies: Validate does
// not change s, and a rule whose match Normalize rejects is an error.
func (s *Set) Validate(l Limits) error {
	rl := l.RSS
	rl.Queues = l.Queues
	if err := s.Default.Validate(rl); err != nil {
		return fmt.Errorf("default configuration: %w", err)
	}
	if len(s.Contexts) > l.MaxContexts {
		return fmt.Errorf("%w: %d RSS contexts, at most %d", ErrLimit, len(s.Contexts), l.MaxContexts)
	}
	ctxs := map[uint16]bool{}
	cl := rss.Limits{MaxKeySize: rl.MaxKeySize, MaxTableLen: l.MaxContextTable, Queues: l.Queues, HashTypes: rl.HashTypes}
	if l.MaxContextKey > 0 {
		cl.MaxKeySize = min(cl.MaxKeySize, l.MaxContextKey)
	}
	for _, c := range s.Contexts {
		if c.ID == 0 || int(c.ID) > l.MaxContexts {
			return fmt.Errorf("%w: RSS context id %d, want 1 to %d", ErrLimit, c.ID, l.MaxContexts)
		}
		if ctxs[c.ID] {
			return fmt.Errorf("%w: RSS context %d", ErrDuplicate, c.ID)
		}
		ctxs[c.ID] = true
		if err := c.Config.Validate(cl); err != nil {
			return fmt.Errorf("RSS context %d: %w", c.ID, err)
		}
	}
	if len(s.Groups) > l.MaxGroups {
		return fmt.Errorf("%w: %d groups, at most %d", ErrLimit, len(s.Groups), l.MaxGroups)
	}
	groups := map[uint32]Group{}
	for _, g := range s.Groups {
		if _, dup := groups[g.ID]; dup {
			return fmt.Errorf("%w: group %d", ErrDuplicate, g.ID)
		}
		groups[g.ID] = g
	}
	if len(s.Rules) > l.MaxRules {
		return fmt.Errorf("%w: %d rules, at most %d", ErrLimit, len(s.Rules), l.MaxRules)
	}
	type ident struct{ group, id uint32 }
	ids := map[ident]bool{}
	masks := map[Key]bool{}
	words := 0
	for _, r := range s.Rules {
		if ids[ident{r.Group, r.ID}] {
			return fmt.Errorf("%w: rule %d in group %d", ErrDuplicate, r.ID, r.Group)
		}
		ids[ident{r.Group, r.ID}] = true
		g, ok := groups[r.Group]
		if !ok {
			return fmt.Errorf("%w: rule %d, group %d", ErrNoGroup, r.ID, r.Group)
		}
		m := r.Match
		if err := m.Normalize(); err != nil {
			return fmt.Errorf("rule %d: %w", r.ID, err)
		}
		masks[m.Mask] = true
		words += RuleWords(&m)
		switch r.Action.Kind {
		case ActionDrop:
		case ActionQueue:
			if l.Queues > 0 && int(r.Action.Queue) >= l.Queues {
				return fmt.Errorf("%w: rule %d sends to queue %d, the device has %d", rss.ErrQueueRange, r.ID, r.Action.Queue, l.Queues)
			}
		case ActionContext:
			if !g.Host {
				return fmt.Errorf("%w: rule %d: only host rules may name an RSS context", ErrAction, r.ID)
			}
			if !ctxs[r.Action.Context] {
				return fmt.Errorf("%w: rule %d names context %d", ErrNoContext, r.ID, r.Action.Context)
			}
		default:
			return fmt.Errorf("%w: rule %d: %s", ErrAction, r.ID, r.Action.Kind)
		}
	}
	if len(masks) > l.MaxPatterns {
		return fmt.Errorf("%w: %d distinct masks, at most %d", ErrLimit, len(masks), l.MaxPatterns)
	}
	if l.MaxRuleWords > 0 && words > l.MaxRuleWords {
		return fmt.Errorf("%w: the rules take %d words of rule memory, at most %d (see flow.RuleWords: 8 for an IPv4 5-tuple, 14 for an IPv6 one)", ErrLimit, words, l.MaxRuleWords)
	}
	return nil
}

// Order returns the indexes of s.Rules in the order they are tried: host
// groups before the guest's, then groups by priority (higher first) and id
// (lower first), then rules by priority (higher first) and id (lower first).
// Rules whose group is missing are left out.
func (s *Set) Order() []int {
	groups := make(map[uint32]Group, len(s.Groups))
	for _, g := range s.Groups {
		groups[g.ID] = g
	}
	var idx []int
	for i, r := range s.Rules {
		if _, ok := groups[r.Group]; ok {
			idx = append(idx, i)
		}
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		ra, rb := &s.Rules[a], &s.Rules[b]
		ga, gb := groups[ra.Group], groups[rb.Group]
		switch {
		case ga.Host != gb.Host:
			if ga.Host {
				return -1
			}
			return 1
		case ga.Priority != gb.Priority:
			return int(gb.Priority) - int(ga.Priority)
		case ga.ID != gb.ID:
			if ga.ID < gb.ID {
				return -1
			}
			return 1
		case ra.Priority != rb.Priority:
			return int(rb.Priority) - int(ra.Priority)
		case ra.ID < rb.ID:
			return -1
		case ra.ID > rb.ID:
			return 1
		}
		return 0
	})
	return idx
}

// RuleWords returns the 32-bit words the eBPF program stores a rule with
// match m in: three of metadata and one per key word the mask touches,
// rounded up to an even number. An IPv4 5-tuple takes 8, an IPv6 one 14.
func RuleWords(m *Match) int { return (3 + m.Words() + 1) &^ 1 }

// The largest limits: what the eBPF program's map holds (bpf/flow.h). A
// TAP at all of them costs under 1,000,000 bytes of locked configuration
// memory (docs/flows.md).
const (
	MaxRules        = 10000
	MaxRuleWords    = 80000
	MaxGroups       = 64
	MaxPatterns     = 16
	MaxContexts     = 8
	MaxContextTable = 256
	// MaxContextKey is the longest context key the map stores: more than
	// the 40 bytes that can influence a hash (rss.MinKeySize).
	MaxContextKey = 64
)

// DefaultLimits returns the largest limits for a device with the given
// number of queues, with the default configuration bounded by rl.
func DefaultLimits(queues int, rl rss.Limits) Limits {
	return Limits{Queues: queues, RSS: rl, MaxContexts: MaxContexts, MaxContextTable: MaxContextTable, MaxContextKey: MaxContextKey,
		MaxGroups: MaxGroups, MaxRules: MaxRules, MaxPatterns: MaxPatterns, MaxRuleWords: MaxRuleWords}
}
