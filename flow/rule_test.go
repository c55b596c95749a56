package flow_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/vrss-dev/vrss/flow"
	"github.com/vrss-dev/vrss/rss"
)

func rssConfig(queues int) rss.Config {
	return rss.Config{HashTypes: rss.AllHashTypes, Key: rss.DefaultKey, Table: rss.EqualTable(128, queues)}
}

// validSet is a set every limit of testLimits admits: a host group with a
// context rule and a drop rule, a guest group with a queue rule.
func validSet() flow.Set {
	return flow.Set{
		Default: rssConfig(4),
		Contexts: []flow.Context{
			{ID: 1, Config: rss.Config{HashTypes: rss.HashIPv4, Key: rss.DefaultKey, Table: []uint16{2, 3}}},
			{ID: 3, Config: rss.Config{HashTypes: rss.AllHashTypes, Key: rss.DefaultKey[:13], Table: rss.EqualTable(256, 4)}},
		},
		Groups: []flow.Group{{ID: 1, Priority: 5, Host: true}, {ID: 7, Priority: 9}},
		Rules: []flow.Rule{
			{ID: 10, Group: 1, Priority: 1, Match: match(etype(0x0800), protoIs(6), dport(80, 0xffff)), Action: flow.Action{Kind: flow.ActionContext, Context: 1}},
			{ID: 11, Group: 1, Match: match(etype(0x86dd)), Action: flow.Action{Kind: flow.ActionDrop}},
			{ID: 12, Group: 7, Match: match(etype(0x0800), protoIs(17)), Action: flow.Action{Kind: flow.ActionQueue, Queue: 3}},
		},
	}
}

func testLimits() flow.Limits { return flow.DefaultLimits(4, rss.DefaultLimits(4)) }

func TestDefaultLimits(t *testing.T) {
	l := flow.DefaultLimits(6, rss.DefaultLimits(6))
	want := flow.Limits{Queues: 6, RSS: rss.DefaultLimits(6), MaxContexts: 8, MaxContextTable: 256, MaxContextKey: 64, MaxGroups: 64,
		MaxRules: 10000, MaxPatterns: 16, MaxRuleWords: 80000}
	if l != want {
		t.Errorf("DefaultLimits: %+v, want %+v", l, want)
	}
}

func TestValidate(t *testing.T) {
	if s := validSet(); s.Validate(testLimits()) != nil {
		t.Fatalf("valid set: %v", s.Validate(testLimits()))
	}
	if s := (flow.Set{Default: rssConfig(1)}); s.Validate(testLimits()) != nil {
		t.Fatalf("no rules: %v", s.Validate(testLimits()))
	}
	bad := func(f func(s *flow.Set, l *flow.Limits)) (flow.Set, flow.Limits) {
		s, l := validSet().Clone(), testLimits()
		f(&s, &l)
		return s, l
	}
	manyMasks := func(n int) []flow.Rule {
		var rs []flow.Rule
		for i := 0; i < n; i++ {
			// Each a different mask on the destination port.
			rs = append(rs, flow.Rule{ID: uint32(100 + i), Group: 7, Match: match(etype(0x0800), dport(0, 0xffff<<(i%16))),
				Action: flow.Action{Kind: flow.ActionDrop}})
		}
		return rs
	}
	cases := []struct {
		name string
		f    func(s *flow.Set, l *flow.Limits)
		want error
		text string // in the message
	}{
		{"default table names queue 4", func(s *flow.Set, l *flow.Limits) { s.Default.Table[3] = 4 }, rss.ErrQueueRange, "default configuration"},
		{"default hash types unsupported", func(s *flow.Set, l *flow.Limits) { l.RSS.HashTypes = rss.HashIPv4 }, rss.ErrHashTypes, "default configuration"},
		{"default table too long", func(s *flow.Set, l *flow.Limits) { s.Default.Table = rss.EqualTable(256, 4) }, rss.ErrTableLength, "default"},
		{"too many contexts", func(s *flow.Set, l *flow.Limits) { l.MaxContexts = 1 }, flow.ErrLimit, "2 RSS contexts"},
		{"context id 0", func(s *flow.Set, l *flow.Limits) { s.Contexts[0].ID = 0 }, flow.ErrLimit, "context id 0"},
		{"context id past the limit", func(s *flow.Set, l *flow.Limits) { s.Contexts[1].ID = 9 }, flow.ErrLimit, "context id 9"},
		{"duplicate context", func(s *flow.Set, l *flow.Limits) { s.Contexts[1].ID = 1 }, flow.ErrDuplicate, "RSS context 1"},
		{"context table longer than MaxContextTable", func(s *flow.Set, l *flow.Limits) { l.MaxContextTable = 128 }, rss.ErrTableLength, "RSS context 3"},
		{"context table names queue 4", func(s *flow.Set, l *flow.Limits) { s.Contexts[0].Config.Table[1] = 4 }, rss.ErrQueueRange, "RSS context 1"},
		{"context unclassified queue 4", func(s *flow.Set, l *flow.Limits) { s.Contexts[0].Config.UnclassifiedQueue = 4 }, rss.ErrQueueRange, "RSS context 1"},
		{"context key too long", func(s *flow.Set, l *flow.Limits) { s.Contexts[0].Config.Key = make([]byte, 41) }, rss.ErrKeySize, "RSS context 1"},
		{"context hash types unsupported", func(s *flow.Set, l *flow.Limits) { l.RSS.HashTypes &^= rss.HashTCPEx; s.Default.HashTypes = 0 }, rss.ErrHashTypes, "RSS context 3"},
		{"context table not a power of two", func(s *flow.Set, l *flow.Limits) { s.Contexts[0].Config.Table = []uint16{0, 1, 2} }, rss.ErrTableLength, "RSS context 1"},
		{"no context table limit", func(s *flow.Set, l *flow.Limits) { l.MaxContextTable = 0 }, rss.ErrInvalidLimits, "RSS context"},
		{"too many groups", func(s *flow.Set, l *flow.Limits) { l.MaxGroups = 1 }, flow.ErrLimit, "2 groups"},
		{"duplicate group", func(s *flow.Set, l *flow.Limits) { s.Groups[1].ID = 1 }, flow.ErrDuplicate, "group 1"},
		{"duplicate group, other host flag", func(s *flow.Set, l *flow.Limits) { s.Groups = append(s.Groups, flow.Group{ID: 7, Host: true}) }, flow.ErrDuplicate, "group 7"},
		{"too many rules", func(s *flow.Set, l *flow.Limits) { l.MaxRules = 2 }, flow.ErrLimit, "3 rules"},
		{"duplicate rule", func(s *flow.Set, l *flow.Limits) { s.Rules[1].ID = 10 }, flow.ErrDuplicate, "rule 10 in group 1"},
		{"missing group", func(s *flow.Set, l *flow.Limits) { s.Rules[2].Group = 8 }, flow.ErrNoGroup, "group 8"},
		{"match without family", func(s *flow.Set, l *flow.Limits) { s.Rules[1].Match = match(protoIs(6)) }, flow.ErrNoFamily, "rule 11"},
		{"match on an unused field", func(s *flow.Set, l *flow.Limits) { s.Rules[1].Match.Mask[flow.OffReserved] = 1 }, flow.ErrField, "rule 11"},
		{"missing context", func(s *flow.Set, l *flow.Limits) { s.Rules[0].Action.Context = 2 }, flow.ErrNoContext, "context 2"},
		{"context 0", func(s *flow.Set, l *flow.Limits) { s.Rules[0].Action.Context = 0 }, flow.ErrNoContext, "context 0"},
		{"context action in a guest group", func(s *flow.Set, l *flow.Limits) { s.Rules[0].Group = 7 }, flow.ErrAction, "only host rules"},
		{"queue out of range", func(s *flow.Set, l *flow.Limits) { s.Rules[2].Action.Queue = 4 }, rss.ErrQueueRange, "queue 4"},
		{"action 0", func(s *flow.Set, l *flow.Limits) { s.Rules[1].Action = flow.Action{} }, flow.ErrAction, "action(0)"},
		{"action 4", func(s *flow.Set, l *flow.Limits) { s.Rules[1].Action = flow.Action{Kind: 4} }, flow.ErrAction, "action(4)"},
		{"17 masks", func(s *flow.Set, l *flow.Limits) { s.Rules = append(s.Rules, manyMasks(14)...) }, flow.ErrLimit, "17 distinct masks"},
		{"fewer patterns allowed", func(s *flow.Set, l *flow.Limits) { l.MaxPatterns = 2 }, flow.ErrLimit, "3 distinct masks"},
		{"rule words", func(s *flow.Set, l *flow.Limits) { l.MaxRuleWords = 6 + 4 + 4 - 1 }, flow.ErrLimit, "14 words"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, l := bad(c.f)
			before := s.Clone()
			err := s.Validate(l)
			if !errors.Is(err, c.want) {
				t.Fatalf("error %v, want %v", err, c.want)
			}
			if !strings.Contains(err.Error(), c.text) {
				t.Errorf("error %q does not say %q", err, c.text)
			}
			if _, err := flow.NewEngine(s, l); !errors.Is(err, c.want) {
				t.Errorf("NewEngine: %v, want %v", err, c.want)
			}
			if fmt.Sprint(s) != fmt.Sprint(before) {
				t.Error("Validate changed the set")
			}
		})
	}

	// At the limits exactly: fine.
	ok := func(name string, f func(s *flow.Set, l *flow.Limits)) {
		t.Helper()
		s, l := bad(f)
		if err := s.Validate(l); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	ok("16 masks", func(s *flow.Set, l *flow.Limits) { s.Rules = append(s.Rules, manyMasks(13)...) })
	ok("two contexts at MaxContexts 3", func(s *flow.Set, l *flow.Limits) { l.MaxContexts = 3 })
	ok("rule words exactly", func(s *flow.Set, l *flow.Limits) { l.MaxRuleWords = 6 + 4 + 4 })
	ok("rule words unchecked", func(s *flow.Set, l *flow.Limits) { l.MaxRuleWords = 0 })
	ok("queues unchecked", func(s *flow.Set, l *flow.Limits) {
		l.Queues, l.RSS.Queues = 0, 0
		s.Rules[2].Action.Queue = 999
		s.Contexts[0].Config.Table[0] = 999
	})
	ok("rules exactly", func(s *flow.Set, l *flow.Limits) { l.MaxRules = 3 })
	ok("groups exactly", func(s *flow.Set, l *flow.Limits) { l.MaxGroups = 2 })
	ok("an empty group", func(s *flow.Set, l *flow.Limits) { s.Groups = append(s.Groups, flow.Group{ID: 99}) })
	ok("queue rule in a host group", func(s *flow.Set, l *flow.Limits) { s.Rules[2].Group = 1 })
	ok("context table at MaxContextTable", func(s *flow.Set, l *flow.Limits) { l.MaxContextTable = 256 })
	// l.Queues, not l.RSS.Queues, bounds the queues.
	ok("l.RSS.Queues is overridden", func(s *flow.Set, l *flow.Limits) { l.RSS.Queues = 2 })
	// Masks count after Normalize: a rule that spells out its implied
	// flags has the same mask as one that does not.
	ok("same mask after Normalize", func(s *flow.Set, l *flow.Limits) {
		l.MaxPatterns = 3
		m := s.Rules[2].Match
		if err := m.Normalize(); err != nil {
			t.Fatal(err)
		}
		m.SetProto(6, 0xff)
		s.Rules = append(s.Rules, flow.Rule{ID: 13, Group: 7, Match: m, Action: flow.Action{Kind: flow.ActionDrop}})
	})
	// Validate does not normalize the caller's matches.
	s := validSet()
	before := s.Rules[0].Match
	if err := s.Validate(testLimits()); err != nil || s.Rules[0].Match != before {
		t.Errorf("Validate: %v, match changed %v", err, s.Rules[0].Match != before)
	}
}

func TestActionStrings(t *testing.T) {
	for a, want := range map[flow.Action]string{
		{Kind: flow.ActionDrop}:                "drop",
		{Kind: flow.ActionQueue, Queue: 3}:     "queue 3",
		{Kind: flow.ActionContext, Context: 2}: "context 2",
		{Kind: 9}:                              "action(9)",
	} {
		if got := a.String(); got != want {
			t.Errorf("%+v: %q, want %q", a, got, want)
		}
	}
	if flow.ActionDrop != 1 || flow.ActionQueue != 2 {
		t.Error("drop and queue must keep virtio's values 1 and 2")
	}
}

func TestClone(t *testing.T) {
	s := validSet()
	c := s.Clone()
	c.Default.Table[0] = 3
	c.Default.Key[0]++
	c.Contexts[0].Config.Table[0] = 0
	c.Contexts[0].ID = 5
	c.Groups[0].Priority = 0
	c.Rules[0].Priority = 9
	if fmt.Sprint(s) != fmt.Sprint(validSet()) {
		t.Error("changing a clone changed the original")
	}
}

func TestOrder(t *testing.T) {
	s := flow.Set{
		Groups: []flow.Group{
			{ID: 1, Priority: 1},              // guest, low
			{ID: 2, Priority: 100},            // guest, high
			{ID: 3, Priority: 0, Host: true},  // host, lowest priority: still first
			{ID: 4, Priority: 100},            // guest, ties group 2 by priority: after it by id
			{ID: 5, Priority: 50, Host: true}, // host, before group 3
		},
		Rules: []flow.Rule{
			{ID: 0, Group: 1},                // 0
			{ID: 9, Group: 2, Priority: 1},   // 1
			{ID: 3, Group: 2, Priority: 1},   // 2: same priority as rule 9, lower id
			{ID: 8, Group: 2, Priority: 200}, // 3: highest in group 2
			{ID: 7, Group: 3},                // 4
			{ID: 6, Group: 4, Priority: 255}, // 5
			{ID: 5, Group: 5},                // 6
			{ID: 4, Group: 6},                // 7: no such group, left out
			{ID: 2, Group: 5, Priority: 3},   // 8
		},
	}
	want := []int{8, 6, 4, 3, 2, 1, 5, 0}
	if got := s.Order(); !slices.Equal(got, want) {
		t.Errorf("Order %v, want %v", got, want)
	}
	// Deterministic: any permutation of the rules and groups gives the same
	// sequence of rule ids.
	ids := func(s flow.Set) []uint32 {
		var r []uint32
		for _, i := range s.Order() {
			r = append(r, s.Rules[i].ID)
		}
		return r
	}
	wantIDs := ids(s)
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 100; i++ {
		p := s.Clone()
		r.Shuffle(len(p.Rules), func(i, j int) { p.Rules[i], p.Rules[j] = p.Rules[j], p.Rules[i] })
		r.Shuffle(len(p.Groups), func(i, j int) { p.Groups[i], p.Groups[j] = p.Groups[j], p.Groups[i] })
		if got := ids(p); !slices.Equal(got, wantIDs) {
			t.Fatalf("permuted: ids %v, want %v", got, wantIDs)
		}
	}
	if got := (&flow.Set{}).Order(); len(got) != 0 {
		t.Errorf("empty set: %v", got)
	}
}

// TestRuleIDsPerGroup: rule ids are unique within a group only, so the
// host's rules and the guest's may use the same numbers.
func TestRuleIDsPerGroup(t *testing.T) {
	s := validSet()
	s.Rules[2].ID = s.Rules[0].ID
	if s.Rules[2].Group == s.Rules[0].Group {
		t.Fatal("test set changed: rules 0 and 2 share a group")
	}
	if err := s.Validate(testLimits()); err != nil {
		t.Fatalf("the same rule id in two groups: %v", err)
	}
}
