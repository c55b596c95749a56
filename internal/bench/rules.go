package bench

import (
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"

	"github.com/vrss-dev/vrss/flow"
	"github.com/vrss-dev/vrss/internal/frame"
	"github.com/vrss-dev/vrss/rss"
	"github.com/vrss-dev/vrss/steering"
)

// Rule cases, the keys of Result.RulesNS: the flow build (steering.Flows)
// on TCPv4 frames with, as its set,
const (
	// RulesNone: no rules at all.
	RulesNone = "none"
	// RulesExact1: one exact IPv4 5-tuple rule, which every frame matches.
	RulesExact1 = "exact_1"
	// RulesExact10: 10 exact 5-tuple rules; the frames cycle through them.
	RulesExact10 = "exact_10"
	// RulesExact10000: 10,000 exact 5-tuple rules (flow.MaxRules); the
	// frames match RuleFrames of them, spread evenly over the set.
	RulesExact10000 = "exact_10000"
	// RulesMasks: 16 masks (flow.MaxPatterns: destination prefixes /17 to
	// /32, each with an exact destination port) of 100 rules each, ranked
	// so that every frame's search looks up all 16; the frames are spread
	// over the patterns and rules.
	RulesMasks = "masks_16x100"
	// RulesContext: one rule sending the frames to an RSS context over
	// queues 2 and 3 with its own key.
	RulesContext = "context"
)

// RuleCases lists the rule cases in the order reports show them.
var RuleCases = []string{RulesNone, RulesExact1, RulesExact10, RulesExact10000, RulesMasks, RulesContext}

// Targets for the flow build, from issue 13.
const (
	// TargetRulesNoneOverPlain is the most the flow build with no rules
	// may cost, as a multiple of the plain production program's cost on
	// the same frames.
	TargetRulesNoneOverPlain = 1.05
	// TargetRulesExact10000OverNone is the most 10,000 exact rules may
	// cost, as a multiple of no rules.
	TargetRulesExact10000OverNone = 1.3
	// TargetRulesExactSpread is how far apart 10 and 10,000 exact rules
	// may be: the larger at most this multiple of the smaller.
	TargetRulesExactSpread = 1.1
)

// RuleFrames is the number of frames each rule case is measured on: each
// BPF_PROG_TEST_RUN repeats one frame Repeat/RuleFrames times, and a
// case's cost is the mean over its frames. The frames of exact_10000 match
// as many different rules, so that the figure is not one rule's; every
// case, the plain program and the read floor alike are measured over that
// many test runs.
const RuleFrames = 1000

// ruleCase is one set and the frames measured with it.
type ruleCase struct {
	name   string
	set    flow.Set
	frames [][]byte
	// rules[i] is the id of the rule frames[i] must match (0: none);
	// context is the RSS context every frame must be steered by.
	rules   []uint32
	context uint16
}

// rulesConfig is the default configuration of every rule case: the
// benchmark's.
func rulesConfig() rss.Config { return benchConfig() }

// contextKey is the RSS context's own key (the one flow_tap_test's demo
// set uses).
func contextKey() []byte {
	key := make([]byte, 40)
	for i := range key {
		key[i] = byte(i*7 + 3)
	}
	return key
}

// tuple is exact rule i's 5-tuple: distinct source addresses and ports,
// one destination.
func tuple(i int) frame.Spec {
	return frame.Spec{
		Src: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), Dst: netip.MustParseAddr("192.0.2.1"),
		Proto: frame.ProtoTCP, SrcPort: uint16(1024 + i%50000), DstPort: 443, Payload: 64,
	}
}

// tcp4 is a match on TCP over IPv4.
func tcp4() flow.Match {
	var m flow.Match
	m.SetEtherType(0x0800, 0xffff)
	m.SetProto(6, 0xff)
	return m
}

func exactRule(i int) flow.Rule {
	s := tuple(i)
	m := tcp4()
	m.SetSrcIP(s.Src, netip.AddrFrom4([4]byte{255, 255, 255, 255}))
	m.SetDstIP(s.Dst, netip.AddrFrom4([4]byte{255, 255, 255, 255}))
	m.SetSrcPort(s.SrcPort, 0xffff)
	m.SetDstPort(s.DstPort, 0xffff)
	return flow.Rule{ID: uint32(i + 1), Group: 1, Match: m, Action: flow.Action{Kind: flow.ActionQueue, Queue: uint16(i % tapQueues)}}
}

// ruleGroups is every case's one group, the host's.
func ruleGroups() []flow.Group { return []flow.Group{{ID: 1, Priority: 1, Host: true}} }

// exactCase is n exact rules, with RuleFrames frames spread evenly over
// them.
func exactCase(name string, n int) ruleCase {
	c := ruleCase{name: name, set: flow.Set{Default: rulesConfig(), Groups: ruleGroups()}}
	for i := range n {
		c.set.Rules = append(c.set.Rules, exactRule(i))
	}
	for k := range RuleFrames {
		i := k * n / RuleFrames
		if n < RuleFrames {
			i = k % n
		}
		c.frames = append(c.frames, frame.Build(tuple(i)))
		c.rules = append(c.rules, uint32(i+1))
	}
	return c
}

// masksCase is 16 patterns of 100 rules: pattern p matches TCP to
// (10+p).1.2.3/(17+p) and one destination port per rule. Rule ids
// interleave the patterns (rule j of pattern p is 16j+p+1), so every
// pattern holds a rule ranked near the top and the search, which stops at
// the first pattern that cannot beat what it found, looks up all 16 for
// the frames measured (those of rules j >= 1).
func masksCase() ruleCase {
	const patterns, perPattern = flow.MaxPatterns, 100
	c := ruleCase{name: RulesMasks, set: flow.Set{Default: rulesConfig(), Groups: ruleGroups()}}
	dst := func(p int) netip.Addr { return netip.AddrFrom4([4]byte{byte(10 + p), 1, 2, 3}) }
	for j := range perPattern {
		for p := range patterns {
			m := tcp4()
			pfx := netip.PrefixFrom(dst(p), 17+p)
			m.SetDstIP(pfx.Masked().Addr(), flow.PrefixMask(pfx))
			m.SetDstPort(uint16(1000+j), 0xffff)
			id := uint32(j*patterns + p + 1)
			c.set.Rules = append(c.set.Rules, flow.Rule{ID: id, Group: 1, Match: m, Action: flow.Action{Kind: flow.ActionQueue, Queue: uint16(int(id) % tapQueues)}})
		}
	}
	for k := range RuleFrames {
		p, j := k%patterns, 1+(k/patterns)%(perPattern-1)
		c.frames = append(c.frames, frame.Build(frame.Spec{
			Src: netip.AddrFrom4([4]byte{172, 16, byte(k >> 8), byte(k)}), Dst: dst(p),
			Proto: frame.ProtoTCP, SrcPort: uint16(20000 + k), DstPort: uint16(1000 + j), Payload: 64,
		}))
		c.rules = append(c.rules, uint32(j*patterns+p+1))
	}
	return c
}

// contextCase is one rule sending TCP to port 5001 to an RSS context over
// queues 2 and 3 with its own key; the frames come from many sources.
func contextCase() ruleCase {
	m := tcp4()
	m.SetDstPort(5001, 0xffff)
	c := ruleCase{name: RulesContext, context: 1, set: flow.Set{
		Default:  rulesConfig(),
		Contexts: []flow.Context{{ID: 1, Config: rss.Config{HashTypes: rss.AllHashTypes, Key: contextKey(), Table: []uint16{2, 3}, UnclassifiedQueue: 2}}},
		Groups:   ruleGroups(),
		Rules:    []flow.Rule{{ID: 1, Group: 1, Match: m, Action: flow.Action{Kind: flow.ActionContext, Context: 1}}},
	}}
	for k := range RuleFrames {
		s := tuple(k)
		s.DstPort = 5001
		c.frames = append(c.frames, frame.Build(s))
		c.rules = append(c.rules, 1)
	}
	return c
}

// ruleCases returns the cases in the order of RuleCases. "none" is
// measured on exact_10000's frames, which the plain program and the read
// floor are measured on too.
func ruleCases() []ruleCase {
	big := exactCase(RulesExact10000, flow.MaxRules)
	none := ruleCase{name: RulesNone, set: flow.Set{Default: rulesConfig()}, frames: big.frames, rules: make([]uint32, len(big.frames))}
	return []ruleCase{none, exactCase(RulesExact1, 1), exactCase(RulesExact10, 10), big, masksCase(), contextCase()}
}

// check holds the case to what it claims, twice: every frame's verdict
// under flow.Engine is the rule (and context) the case says, not a drop;
// and the flow program, given the set, steers every frame to the engine's
// queue and counts each rule's and context's hits as the engine predicts.
// It leaves the set published.
func (c *ruleCase) check(prog *steering.Program, pub *steering.Publisher) error {
	want, err := c.verdicts()
	if err != nil {
		return err
	}
	hits := map[uint32]uint64{}
	ctxHits := make([]uint64, steering.MaxQueues)
	for _, v := range want {
		if v.Rule >= 0 {
			hits[c.set.Rules[v.Rule].ID]++
		}
		if v.Context != 0 {
			ctxHits[v.Queue]++
		}
	}
	if err := pub.PublishSet(c.set); err != nil {
		return fmt.Errorf("rule case %s: publish: %w", c.name, err)
	}
	before, err := prog.FlowStats()
	if err != nil {
		return err
	}
	for i, f := range c.frames {
		q, err := prog.Run(f)
		if err != nil {
			return fmt.Errorf("rule case %s, frame %d: %w", c.name, i, err)
		}
		if q != uint32(want[i].Queue) {
			return fmt.Errorf("rule case %s, frame %d: the flow program steers it to queue %d, the engine to %d", c.name, i, q, want[i].Queue)
		}
	}
	after, err := prog.FlowStats()
	if err != nil {
		return err
	}
	was := map[uint32]uint64{}
	for _, h := range before.Rules {
		was[h.ID] = h.Hits
	}
	for _, h := range after.Rules {
		if n := h.Hits - was[h.ID]; n != hits[h.ID] {
			return fmt.Errorf("rule case %s: the flow program counted %d hits of rule %d, the engine predicts %d", c.name, n, h.ID, hits[h.ID])
		}
	}
	if len(after.Rules) != len(c.set.Rules) {
		return fmt.Errorf("rule case %s: %d rules counted, %d published", c.name, len(after.Rules), len(c.set.Rules))
	}
	for id, qs := range after.Contexts {
		for q, n := range qs {
			if d := n - before.Contexts[id][q]; d != ctxHits[q] {
				return fmt.Errorf("rule case %s: the flow program counted %d frames of context %d on queue %d, the engine predicts %d", c.name, d, id, q, ctxHits[q])
			}
		}
	}
	return nil
}

// verdicts returns the engine's verdict on each frame, or an error if one
// is not what the case says: the rule (and context) it names, not a drop.
func (c *ruleCase) verdicts() ([]flow.Verdict, error) {
	eng, err := flow.NewEngine(c.set, steering.FlowLimits(tapQueues))
	if err != nil {
		return nil, fmt.Errorf("rule case %s: %w", c.name, err)
	}
	want := make([]flow.Verdict, len(c.frames))
	for i, f := range c.frames {
		v := eng.Steer(f)
		id := uint32(0)
		if v.Rule >= 0 {
			id = c.set.Rules[v.Rule].ID
		}
		if v.Drop || id != c.rules[i] || v.Context != c.context {
			return nil, fmt.Errorf("rule case %s, frame %d: the engine gives rule %d, context %d, drop %v; the case wants rule %d, context %d", c.name, i, id, v.Context, v.Drop, c.rules[i], c.context)
		}
		want[i] = v
	}
	return want, nil
}

// meanRun returns prog's mean cost per run in ns over frames, each run
// repeat times.
func meanRun(prog benchmarker, frames [][]byte, repeat int) (float64, error) {
	var sum float64
	for _, f := range frames {
		ns, err := testRun(prog, f, repeat)
		if err != nil {
			return 0, err
		}
		sum += ns
	}
	return sum / float64(len(frames)), nil
}

// ruleChunks is how many parts a round splits each case's frames into.
// A round measures the first part of every case, then the second, and so
// on: the cases' measurements lie a few milliseconds apart, not hundreds,
// and the drift of a shared machine's speed affects them alike.
const ruleChunks = 10

// measureRules fills in RulesNS, RulesBaseline and RulesOverReadFloor, and
// the rule ratios' within-round values. Each round measures the plain
// program, every case (its set published just before) and the read floor
// on their frames, a tenth of the frames at a time, forwards and backwards
// in turn, so that no measurement always follows another; a round's
// figure is the mean over its frames, a case's the median over rounds,
// and a ratio the median over rounds of the ratio within a round.
func measureRules(r *Result, p *programs, o Options) error {
	if p.flows == nil {
		r.RulesError = p.flowsErr.Error()
		return nil
	}
	cases := ruleCases()
	pub, err := p.flows.Publisher(tapQueues)
	if err != nil {
		return err
	}
	defer pub.Close()
	for i := range cases {
		if err := cases[i].check(p.flows, pub); err != nil {
			return err
		}
	}
	repeat := max(1, o.Repeat/RuleFrames)
	base := cases[0].frames
	type step struct {
		name  string
		prog  benchmarker
		c     *ruleCase
		frame [][]byte
	}
	steps := []step{{name: "plain", prog: p.vrss, frame: base}}
	for i := range cases {
		steps = append(steps, step{name: cases[i].name, prog: p.flows, c: &cases[i], frame: cases[i].frames})
	}
	steps = append(steps, step{name: "read_floor", prog: p.readFloor, frame: base})
	hl, err := newHashLookup()
	if err != nil {
		return err
	}
	defer hl.close()
	steps = append(steps, step{name: "hash_lookup", prog: hl, frame: base}, step{name: "floor", prog: p.floor, frame: base})
	samples := map[string][]float64{}
	per := RuleFrames / ruleChunks
	for range o.Rounds {
		sum := map[string]float64{}
		for chunk := range ruleChunks {
			for j := range steps {
				s := steps[j]
				if chunk%2 == 1 {
					s = steps[len(steps)-1-j]
				}
				if s.c != nil {
					if err := pub.PublishSet(s.c.set); err != nil {
						return fmt.Errorf("rule case %s: publish: %w", s.name, err)
					}
				}
				ns, err := meanRun(s.prog, s.frame[chunk*per:(chunk+1)*per], repeat)
				if err != nil {
					return err
				}
				sum[s.name] += ns / ruleChunks
			}
		}
		for name, ns := range sum {
			samples[name] = append(samples[name], ns)
		}
	}
	r.RulesNS = map[string]float64{}
	r.RulesOverReadFloor = map[string]float64{"plain": medianOver(samples["plain"], samples["read_floor"])}
	for _, k := range RuleCases {
		r.RulesNS[k] = median(samples[k])
		r.RulesOverReadFloor[k] = medianOver(samples[k], samples["read_floor"])
	}
	r.RulesBaseline = median(samples["plain"])
	r.HashLookupNS = medianOver(samples["hash_lookup"], samples["floor"])
	r.RulesReadFloor = median(samples["read_floor"])
	r.rulePairs = map[string][]float64{
		"none_over_plain":           ratios(samples[RulesNone], samples["plain"]),
		"exact_10000_over_none":     ratios(samples[RulesExact10000], samples[RulesNone]),
		"exact_10000_over_exact_10": ratios(samples[RulesExact10000], samples[RulesExact10]),
	}
	return nil
}

// ratios returns a[i] / b[i] for each round.
func ratios(a, b []float64) []float64 {
	out := make([]float64, len(a))
	for i := range a {
		out[i] = ratio(a[i], b[i])
	}
	return out
}

// measureMemory fills in MapBytes: the configuration map each build locks
// per TAP, and the flow build's per-CPU counters as the loaded map
// declares them.
func measureMemory(r *Result, p *programs) error {
	r.MapBytes = MapBytes{Plain: steering.MapBytes(false), Flows: steering.MapBytes(true)}
	if p.flows == nil {
		return nil
	}
	info, err := p.flows.FlowStatsMap.Info()
	if err != nil {
		return fmt.Errorf("flow counters map: %w", err)
	}
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return err
	}
	// The kernel stores per-CPU values rounded up to 8 bytes.
	per := int((info.ValueSize+7)&^7) * int(info.MaxEntries)
	r.MapBytes.FlowCounters, r.MapBytes.FlowCountersPerCPU, r.MapBytes.PossibleCPUs = per*cpus, per, cpus
	return nil
}
