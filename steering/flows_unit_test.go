package steering

import (
	"errors"
	"net/netip"
	"slices"
	"testing"
	"unsafe"

	"github.com/vrss-dev/vrss/flow"
	"github.com/vrss-dev/vrss/internal/diffcorpus"
	"github.com/vrss-dev/vrss/internal/frame"
	"github.com/vrss-dev/vrss/rss"
)

// memPublisher is a Publisher over ordinary memory laid out as the flow
// build's map: the publishing logic without a kernel.
func memPublisher(t *testing.T, queues int) *Publisher {
	t.Helper()
	l := new(flowLayout)
	return &Publisher{cfg: (*configLayout)(unsafe.Pointer(l)), flows: l, queues: queues}
}

func tuple4(id uint32, src netip.Addr, sport, dport uint16, a flow.Action) flow.Rule {
	var m flow.Match
	m.SetEtherType(0x0800, 0xffff)
	m.SetProto(6, 0xff)
	m.SetSrcIP(src, netip.AddrFrom4([4]byte{255, 255, 255, 255}))
	m.SetDstIP(netip.AddrFrom4([4]byte{192, 0, 2, 1}), netip.AddrFrom4([4]byte{255, 255, 255, 255}))
	m.SetSrcPort(sport, 0xffff)
	m.SetDstPort(dport, 0xffff)
	return flow.Rule{ID: id, Group: 1, Match: m, Action: a}
}

func normalized(s flow.Set) flow.Set {
	s = s.Clone()
	for i := range s.Rules {
		_ = s.Rules[i].Match.Normalize()
	}
	slices.SortFunc(s.Rules, func(a, b flow.Rule) int { return int(a.ID) - int(b.ID) })
	slices.SortFunc(s.Contexts, func(a, b flow.Context) int { return int(a.ID) - int(b.ID) })
	return s
}

func sameSet(t *testing.T, got, want flow.Set) {
	t.Helper()
	got, want = normalized(got), normalized(want)
	if !slices.Equal(got.Groups, want.Groups) {
		t.Errorf("groups %+v, want %+v", got.Groups, want.Groups)
	}
	if !slices.Equal(got.Rules, want.Rules) {
		t.Errorf("%d rules read back, %d published; first differences: %v", len(got.Rules), len(want.Rules), firstDiff(got.Rules, want.Rules))
	}
	if len(got.Contexts) != len(want.Contexts) {
		t.Fatalf("%d contexts, want %d", len(got.Contexts), len(want.Contexts))
	}
	for i := range got.Contexts {
		g, w := got.Contexts[i], want.Contexts[i]
		if g.ID != w.ID || g.Config.HashTypes != w.Config.HashTypes || g.Config.UnclassifiedQueue != w.Config.UnclassifiedQueue ||
			string(g.Config.Key) != string(w.Config.Key) || !slices.Equal(g.Config.Table, w.Config.Table) {
			t.Errorf("context %d read back %+v, want %+v", w.ID, g, w)
		}
	}
}

func firstDiff(a, b []flow.Rule) []string {
	var out []string
	for i := 0; i < min(len(a), len(b)) && len(out) < 3; i++ {
		if a[i] != b[i] {
			out = append(out, a[i].Match.String()+" / "+b[i].Match.String())
		}
	}
	return out
}

// TestPublishSetReadBack publishes random sets and reads each back whole:
// groups, every rule (shadowed ones too) with its id, group, priority,
// match and action, and every context.
func TestPublishSetReadBack(t *testing.T) {
	p := memPublisher(t, 0)
	r := diffcorpus.Rand()
	for i := 0; i < 40; i++ {
		var sample [][]byte
		for range 32 {
			sample = append(sample, frame.Random(r))
		}
		s := diffcorpus.FlowSet(r, MaxQueues, 400, sample)
		if err := p.PublishSet(s); err != nil {
			t.Fatal(err)
		}
		got, err := p.Set()
		if err != nil {
			t.Fatal(err)
		}
		sameSet(t, got, s)
		if !sameConfigs(got.Default, s.Default) {
			t.Errorf("default configuration read back differs")
		}
	}
}

func sameConfigs(a, b rss.Config) bool {
	return a.HashTypes == b.HashTypes && a.UnclassifiedQueue == b.UnclassifiedQueue && string(a.Key) == string(b.Key) && slices.Equal(a.Table, b.Table)
}

// TestPublishTenThousand places 10,000 exact IPv4 5-tuple rules (the
// bench's largest case, and flow.MaxRules) and 16 masks × 100 rules, and
// measures how far from its hash the farthest rule lies.
func TestPublishTenThousand(t *testing.T) {
	p := memPublisher(t, 4)
	def := rss.Config{HashTypes: rss.AllHashTypes, Key: rss.DefaultKey, Table: rss.EqualTable(128, 4)}
	s := flow.Set{Default: def, Groups: []flow.Group{{ID: 1, Host: true}}}
	for i := range flow.MaxRules {
		s.Rules = append(s.Rules, tuple4(uint32(i), netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), uint16(1024+i), 80, flow.Action{Kind: flow.ActionQueue, Queue: uint16(i % 4)}))
	}
	if err := p.PublishSet(s); err != nil {
		t.Fatal(err)
	}
	f := &p.flows.Flows[p.cfg.Active&1]
	if f.Nrules != flow.MaxRules || f.Npatterns != 1 {
		t.Fatalf("%d rules in %d patterns", f.Nrules, f.Npatterns)
	}
	t.Logf("10,000 exact rules: farthest %d entries from its hash (limit %d)", maxDisplacement(f.Seed, int(f.Pattern[0].Nwords), f.Index[:], f.Heap[:], 0), MaxProbe)
	// One more rule is over the limit, and changes nothing.
	gen := p.cfg.Generation
	s.Rules = append(s.Rules, tuple4(flow.MaxRules, netip.AddrFrom4([4]byte{10, 9, 9, 9}), 1, 1, flow.Action{Kind: flow.ActionDrop}))
	if err := p.PublishSet(s); !errors.Is(err, flow.ErrLimit) {
		t.Fatalf("10,001 rules: %v, want flow.ErrLimit", err)
	}
	if p.cfg.Generation != gen {
		t.Error("a refused set was published")
	}
}

// maxDisplacement returns the largest distance between a record's hash
// slot and where the index holds it, for pattern pi's records.
func maxDisplacement(seed uint32, nwords int, index []uint16, heap []uint32, pi int) int {
	worst := 0
	for i, e := range index {
		if e == 0 {
			continue
		}
		o := int(e-1) * 2
		if int(heap[o]>>patternShift&15) != pi {
			continue
		}
		h := flowHash(seed, pi, heap[o+recMeta:o+recMeta+nwords])
		d := (i - int(h&(IndexLen-1)) + IndexLen) % IndexLen
		worst = max(worst, d)
	}
	return worst
}

// TestPublishSetRefusedKeepsActive: a set over a limit, or one whose
// actions name what does not exist, is refused and the active set stays.
func TestPublishSetRefusedKeepsActive(t *testing.T) {
	p := memPublisher(t, 4)
	def := rss.Config{HashTypes: rss.AllHashTypes, Key: rss.DefaultKey, Table: rss.EqualTable(128, 4)}
	good := flow.Set{Default: def, Groups: []flow.Group{{ID: 1, Host: true}},
		Rules: []flow.Rule{tuple4(1, netip.MustParseAddr("10.0.0.1"), 1, 2, flow.Action{Kind: flow.ActionQueue, Queue: 3})}}
	if err := p.PublishSet(good); err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string]func(s *flow.Set){
		"queue out of range": func(s *flow.Set) { s.Rules[0].Action.Queue = 4 },
		"no such context":    func(s *flow.Set) { s.Rules[0].Action = flow.Action{Kind: flow.ActionContext, Context: 3} },
		"too many patterns": func(s *flow.Set) {
			for i := range 17 {
				var m flow.Match
				m.SetDstPort(0, uint16(1)<<i|1)
				m.SetEtherType(0x0800, 0xffff)
				s.Rules = append(s.Rules, flow.Rule{ID: uint32(100 + i), Group: 1, Match: m, Action: flow.Action{Kind: flow.ActionDrop}})
			}
		},
		"context key too long": func(s *flow.Set) {
			c := def.Clone()
			c.Key = make([]byte, flow.MaxContextKey+1)
			c.Table = []uint16{0}
			s.Contexts = []flow.Context{{ID: 1, Config: c}}
		},
	} {
		s := good.Clone()
		bad(&s)
		gen := p.cfg.Generation
		if err := p.PublishSet(s); err == nil {
			t.Errorf("%s: published", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
		if p.cfg.Generation != gen {
			t.Errorf("%s: the generation moved", name)
		}
		got, err := p.Set()
		if err != nil {
			t.Fatal(err)
		}
		sameSet(t, got, good)
	}
}

// TestPublishKeepsRules: Publish (an RSS configuration alone) on a flow
// map replaces the default configuration and keeps the rules and
// contexts; rules keep their counters across publishes, and a new rule
// takes a counter no rule of the active set holds.
func TestPublishKeepsRules(t *testing.T) {
	p := memPublisher(t, 4)
	def := rss.Config{HashTypes: rss.AllHashTypes, Key: rss.DefaultKey, Table: rss.EqualTable(128, 4)}
	s := flow.Set{Default: def, Groups: []flow.Group{{ID: 1, Host: true}},
		Rules: []flow.Rule{tuple4(1, netip.MustParseAddr("10.0.0.1"), 1, 2, flow.Action{Kind: flow.ActionDrop}), tuple4(2, netip.MustParseAddr("10.0.0.2"), 1, 2, flow.Action{Kind: flow.ActionQueue, Queue: 1})}}
	if err := p.PublishSet(s); err != nil {
		t.Fatal(err)
	}
	before := counterMap(p.flows, int(p.cfg.Active&1))
	other := def.Clone()
	other.Table = rss.EqualTable(64, 2)
	if err := p.Publish(other); err != nil {
		t.Fatal(err)
	}
	got, err := p.Set()
	if err != nil {
		t.Fatal(err)
	}
	if !sameConfigs(got.Default, other) {
		t.Error("Publish did not replace the default configuration")
	}
	sameSet(t, got, s)
	after := counterMap(p.flows, int(p.cfg.Active&1))
	if len(before) != 2 || before[ruleIdent{1, 1}] != after[ruleIdent{1, 1}] || before[ruleIdent{1, 2}] != after[ruleIdent{1, 2}] {
		t.Errorf("counters moved: %v then %v", before, after)
	}
	s.Rules = append(s.Rules[1:], tuple4(3, netip.MustParseAddr("10.0.0.3"), 1, 2, flow.Action{Kind: flow.ActionDrop}))
	if err := p.PublishSet(s); err != nil {
		t.Fatal(err)
	}
	third := counterMap(p.flows, int(p.cfg.Active&1))
	if third[ruleIdent{1, 2}] != before[ruleIdent{1, 2}] || third[ruleIdent{1, 3}] == before[ruleIdent{1, 1}] || third[ruleIdent{1, 3}] == before[ruleIdent{1, 2}] {
		t.Errorf("counters %v after %v: rule 3 must not take rule 1's just-freed counter, rule 2 keeps its own", third, before)
	}
}

// TestCorruptFlowSlot fills the active slot with random bytes, as a VMM
// holding the map fd may: reading the set back (vrssd's flow list, its
// snapshots) and publishing over it must fail or succeed cleanly, never
// panic or read outside the slot.
func TestCorruptFlowSlot(t *testing.T) {
	r := diffcorpus.Rand()
	for i := 0; i < 200; i++ {
		p := memPublisher(t, 4)
		def := rss.Config{HashTypes: rss.AllHashTypes, Key: rss.DefaultKey, Table: rss.EqualTable(128, 4)}
		if err := p.PublishSet(flow.Set{Default: def}); err != nil {
			t.Fatal(err)
		}
		f := &p.flows.Flows[p.cfg.Active&1]
		b := unsafe.Slice((*byte)(unsafe.Pointer(f)), unsafe.Sizeof(*f))
		// Mostly small numbers in the header and tables (so that reads get
		// past the first checks), random bytes elsewhere.
		for j := range b {
			if r.IntN(4) == 0 {
				b[j] = byte(r.Uint32())
			} else {
				b[j] = byte(r.IntN(3))
			}
		}
		_, _ = p.Set()
		_ = counterMap(p.flows, int(p.cfg.Active&1))
		if err := p.PublishSet(flow.Set{Default: def}); err != nil {
			t.Fatalf("publishing over a corrupt slot: %v", err)
		}
		if s, err := p.Set(); err != nil || len(s.Rules) != 0 {
			t.Fatalf("after publishing over a corrupt slot: %+v, %v", s, err)
		}
	}
}
