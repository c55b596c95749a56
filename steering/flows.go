package steering

import (
	"encoding/binary"

	"errors"
	"fmt"
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"unsafe"

	"github.com/vrss-dev/vrss/flow"
	"github.com/vrss-dev/vrss/rss"
)

// The flow build's map layout (bpf/flowmap.h); layout_test.go pins it.
const (
	// FlowConfigSize is the flow build's configuration map value size:
	// what a TAP with flow rules and RSS contexts locks (under 1,000,000
	// bytes rounded to pages; docs/flows.md).
	FlowConfigSize = int(unsafe.Sizeof(flowLayout{}))
	// IndexLen is the number of entries of the rule index.
	IndexLen = 16384
	// MaxProbe is how far from its hash the publisher may place a rule.
	MaxProbe = 32

	recMeta        = 3
	fstatOverflow  = flow.MaxRules
	fstatDrop      = flow.MaxRules + 1
	fstatRace      = flow.MaxRules + 2
	fstatNoJump    = flow.MaxRules + 3
	fstatCtx       = flow.MaxRules + 4
	numFlowStats   = fstatCtx + flow.MaxContexts*MaxQueues
	noCounter      = fstatOverflow
	flowSeedTries  = 64
	actionShift    = 16
	patternShift   = 20
	argShift       = 24
	groupShift     = 16
	priorityShift  = 24
	maxIndexEntry  = flow.MaxRuleWords / 2
	rankLimit      = 1 << 16
	contextNibbles = 2 * rss.MaxInputLen
)

// FlowCounters is the number of the flow build's per-CPU counters
// (FlowStatsMap): one per rule counter, the unattributed, drop, race and
// no-rule-path counters, and one per context and queue.
const FlowCounters = numFlowStats

type flowLayout = vrssflowVrssFlowConfig

// ErrNoFlows is returned when a flow operation meets a map of the plain
// build, which has no room for rules or contexts.
var ErrNoFlows = errors.New("steering: this TAP's program has no flow rules or RSS contexts (create it with flows enabled)")

// FlowLimits returns the limits of the flow build for a TAP with the given
// number of queues (0 if not known).
func FlowLimits(queues int) flow.Limits { return flow.DefaultLimits(queues, Limits(0)) }

// mapValueSize reads the value size of the BPF map behind fd from
// /proc/self/fdinfo: no bpf() call, so a VMM without CAP_BPF can tell the
// two layouts apart.
func mapValueSize(fd int) (int, error) {
	b, err := os.ReadFile("/proc/self/fdinfo/" + strconv.Itoa(fd))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "value_size:"); ok {
			return strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return 0, fmt.Errorf("fd %d is not a BPF map", fd)
}

// flowHash is bpf/flow.h's index hash of key under pattern p: the
// pattern's masked key words, padded with zeros to four (flow_probe4).
func flowHash(seed uint32, p int, words []uint32) uint32 {
	if len(words) < 4 {
		words = append(append(make([]uint32, 0, 4), words...), make([]uint32, 4-len(words))...)
	}
	h := seed ^ uint32(p+1)*0x85ebca77
	for _, w := range words {
		h ^= w
		h *= 0x9e3779b1
		h ^= h >> 16
	}
	h ^= h >> 13
	h *= 0xc2b2ae35
	h ^= h >> 16
	return h
}

type pattern struct {
	mask    flow.Key
	words   []int // key words the mask touches
	rules   []int // indexes into the set's rules, in rank order
	minRank int
}

// compiled is a set laid out as the map holds it, ready to copy into a slot.
type compiled struct {
	set      flow.Set
	groups   []flow.Group
	patterns []*pattern
	rank     []int // by rule index
	matches  []flow.Match
	counters []uint16 // by rule index
	hasDrop  bool
}

type ruleIdent struct {
	group, id uint32
}

// compileFlows checks s against the flow build's limits and orders it for
// the map: ranks, patterns sorted by their best rank, counters kept for
// rules the active set already has (prev) and otherwise taken round-robin
// from cursor among those it does not use.
func compileFlows(s flow.Set, queues int, prev map[ruleIdent]uint16, cursor uint32) (*compiled, uint32, error) {
	if err := s.Validate(FlowLimits(queues)); err != nil {
		return nil, cursor, err
	}
	c := &compiled{set: s.Clone(), groups: slices.Clone(s.Groups), rank: make([]int, len(s.Rules)), matches: make([]flow.Match, len(s.Rules)), counters: make([]uint16, len(s.Rules))}
	for r, i := range s.Order() {
		c.rank[i] = r
	}
	byMask := map[flow.Key]*pattern{}
	for i, r := range s.Rules {
		m := r.Match
		_ = m.Normalize() // Validate checked it
		c.matches[i] = m
		p := byMask[m.Mask]
		if p == nil {
			p = &pattern{mask: m.Mask, minRank: rankLimit}
			for w := 0; w < flow.KeyWords; w++ {
				if binary.LittleEndian.Uint32(m.Mask[4*w:]) != 0 {
					p.words = append(p.words, w)
				}
			}
			byMask[m.Mask] = p
			c.patterns = append(c.patterns, p)
		}
		p.rules = append(p.rules, i)
		p.minRank = min(p.minRank, c.rank[i])
		if r.Action.Kind == flow.ActionDrop {
			c.hasDrop = true
		}
	}
	for _, p := range c.patterns {
		slices.SortFunc(p.rules, func(a, b int) int { return c.rank[a] - c.rank[b] })
	}
	slices.SortFunc(c.patterns, func(a, b *pattern) int { return a.minRank - b.minRank })
	// Counters: a rule the active set has keeps its own; the others take
	// free ones from the cursor on, so a counter a rule just gave up is
	// the last to be handed out again.
	used := map[uint16]bool{}
	for _, v := range prev {
		used[v] = true
	}
	var fresh []int
	for i, r := range s.Rules {
		if v, ok := prev[ruleIdent{r.Group, r.ID}]; ok && v != noCounter {
			c.counters[i] = v
			continue
		}
		fresh = append(fresh, i)
	}
	for _, i := range fresh {
		c.counters[i] = noCounter
		for n := 0; n < flow.MaxRules; n++ {
			v := uint16((cursor + uint32(n)) % flow.MaxRules)
			if !used[v] {
				used[v] = true
				c.counters[i] = v
				cursor = uint32(v) + 1
				break
			}
		}
	}
	return c, cursor % flow.MaxRules, nil
}

// keyWords returns the record's key words: m's value words under its mask.
func keyWords(m *flow.Match, words []int) []uint32 {
	out := make([]uint32, len(words))
	for j, w := range words {
		out[j] = binary.LittleEndian.Uint32(m.Value[4*w:]) & binary.LittleEndian.Uint32(m.Mask[4*w:])
	}
	return out
}

// writeFlows lays c out in slot n of cfg. It fails (leaving the slot
// half-written: the caller writes only an inactive slot) if no seed places
// every rule within MaxProbe of its hash.
func (c *compiled) writeFlows(cfg *flowLayout, n int, cursor uint32) error {
	f := &cfg.Flows[n]
	gidx := map[uint32]int{}
	f.Ngroups = uint32(len(c.groups))
	for i, g := range c.groups {
		gidx[g.ID] = i
		f.Group[i].Id, f.Group[i].Priority = g.ID, g.Priority
		f.Group[i].Host = 0
		if g.Host {
			f.Group[i].Host = 1
		}
	}
	// The heap: each pattern's records together, every rule stored (also
	// those a better rule with the same key shadows, so that reading the
	// set back gives it whole); the index points at the best per key.
	off := 0
	type entry struct {
		p    int
		off  int
		keys []uint32
	}
	var best []entry
	for pi, p := range c.patterns {
		stride := (recMeta + len(p.words) + 1) &^ 1
		pat := &f.Pattern[pi]
		pat.Mask, pat.Words, pat.Cmask = [16]uint32{}, [16]uint8{}, [4]uint32{}
		for w := range flow.KeyWords {
			pat.Mask[w] = binary.LittleEndian.Uint32(p.mask[4*w:])
		}
		for j, w := range p.words {
			pat.Words[j] = uint8(w)
			if j < len(pat.Cmask) {
				pat.Cmask[j] = pat.Mask[w]
			}
		}
		pat.Nwords, pat.MinRank, pat.HeapStart, pat.Nrules, pat.Stride = uint32(len(p.words)), uint32(p.minRank), uint32(off), uint32(len(p.rules)), uint32(stride)
		seen := map[string]bool{}
		for _, i := range p.rules {
			r := &c.set.Rules[i]
			keys := keyWords(&c.matches[i], p.words)
			f.Heap[off] = uint32(c.rank[i]) | uint32(r.Action.Kind)<<actionShift | uint32(pi)<<patternShift | uint32(actionArg(r.Action))<<argShift
			f.Heap[off+1] = r.ID
			f.Heap[off+2] = uint32(c.counters[i]) | uint32(gidx[r.Group])<<groupShift | uint32(r.Priority)<<priorityShift
			copy(f.Heap[off+recMeta:], keys)
			for k := off + recMeta + len(keys); k < off+stride; k++ {
				f.Heap[k] = 0
			}
			kb := fmt.Sprint(keys)
			if !seen[kb] {
				seen[kb] = true
				best = append(best, entry{pi, off, keys})
			}
			off += stride
		}
	}
	f.Npatterns = 0 // set last, below
	f.Nrules = uint32(len(c.set.Rules))
	f.HasDrop = 0
	if c.hasDrop {
		f.HasDrop = 1
	}
	f.NextCounter = cursor
	seed := uint32(0)
	for try := 0; ; try++ {
		if try == flowSeedTries {
			return fmt.Errorf("%w: cannot place %d rules in the index within %d probes", flow.ErrLimit, len(best), MaxProbe)
		}
		seed = uint32(try)*0x9e3779b9 + 0x7f4a7c15
		clear(f.Index[:])
		ok := true
		for _, e := range best {
			h := flowHash(seed, e.p, e.keys)
			placed := false
			for i := range MaxProbe {
				slot := &f.Index[(h+uint32(i))&(IndexLen-1)]
				if *slot == 0 {
					*slot = uint16(e.off/2 + 1)
					placed = true
					break
				}
			}
			if !placed {
				ok = false
				break
			}
		}
		if ok {
			break
		}
	}
	f.Seed = seed
	for ci := range f.Context {
		f.Context[ci].Valid = 0
	}
	for _, ctx := range c.set.Contexts {
		x := &f.Context[ctx.ID-1]
		cc := ctx.Config
		tz := rss.NewToeplitz(cc.Key)
		for pos := range rss.MaxInputLen {
			for v := range 16 {
				// The hash is linear: a byte's contribution is its
				// high nibble's XOR its low nibble's.
				x.Nibble[2*pos][v] = tz.Table(pos, byte(v<<4))
				x.Nibble[2*pos+1][v] = tz.Table(pos, byte(v))
			}
		}
		x.HashTypes, x.TableMask, x.UnclassifiedQueue, x.KeyLen = uint32(cc.HashTypes), uint32(len(cc.Table)-1), cc.UnclassifiedQueue, uint16(len(cc.Key))
		x.Key = [flow.MaxContextKey]uint8{}
		copy(x.Key[:], cc.Key)
		x.Table = [flow.MaxContextTable]uint16{}
		copy(x.Table[:], cc.Table)
		x.Valid = 1
	}
	f.Npatterns = uint32(len(c.patterns))
	return nil
}

func actionArg(a flow.Action) uint16 {
	switch a.Kind {
	case flow.ActionQueue:
		return a.Queue
	case flow.ActionContext:
		return a.Context
	}
	return 0
}

// readFlows reads slot n's rules, groups and contexts into s, checking
// every bound (the map is writable by whoever holds its fd).
func readFlows(cfg *flowLayout, n int, s *flow.Set) error {
	f := &cfg.Flows[n]
	ng, np := int(f.Ngroups), int(f.Npatterns)
	if ng > flow.MaxGroups || np > flow.MaxPatterns {
		return fmt.Errorf("steering: corrupt flow slot (%d groups, %d patterns)", ng, np)
	}
	s.Groups = make([]flow.Group, ng)
	for i := range s.Groups {
		g := &f.Group[i]
		s.Groups[i] = flow.Group{ID: g.Id, Priority: g.Priority, Host: g.Host != 0}
	}
	s.Rules = nil
	for pi := range np {
		p := &f.Pattern[pi]
		nw, start, nr, stride := int(p.Nwords), int(p.HeapStart), int(p.Nrules), int(p.Stride)
		if nw > flow.KeyWords || stride < recMeta+nw || start+nr*stride > flow.MaxRuleWords {
			return fmt.Errorf("steering: corrupt flow pattern %d", pi)
		}
		var mask flow.Key
		for w := range flow.KeyWords {
			binary.LittleEndian.PutUint32(mask[4*w:], p.Mask[w])
		}
		for r := range nr {
			o := start + r*stride
			m0, m2 := f.Heap[o], f.Heap[o+2]
			rule := flow.Rule{ID: f.Heap[o+1], Priority: uint8(m2 >> priorityShift), Match: flow.Match{Mask: mask}}
			gi := int(m2>>groupShift) & 0xff
			if gi >= ng {
				return fmt.Errorf("steering: corrupt flow rule %d: group index %d", rule.ID, gi)
			}
			rule.Group = s.Groups[gi].ID
			rule.Action.Kind = flow.ActionKind(m0 >> actionShift & 15)
			switch arg := uint16(m0 >> argShift); rule.Action.Kind {
			case flow.ActionQueue:
				rule.Action.Queue = arg
			case flow.ActionContext:
				rule.Action.Context = arg
			}
			for j := range nw {
				w := int(p.Words[j])
				if w >= flow.KeyWords {
					return fmt.Errorf("steering: corrupt flow pattern %d", pi)
				}
				binary.LittleEndian.PutUint32(rule.Match.Value[4*w:], f.Heap[o+recMeta+j])
			}
			s.Rules = append(s.Rules, rule)
		}
	}
	s.Contexts = nil
	for i := range f.Context {
		x := &f.Context[i]
		if x.Valid == 0 {
			continue
		}
		n, kl := int(x.TableMask)+1, int(x.KeyLen)
		if n > flow.MaxContextTable || kl > flow.MaxContextKey {
			return fmt.Errorf("steering: corrupt RSS context %d", i+1)
		}
		s.Contexts = append(s.Contexts, flow.Context{ID: uint16(i + 1), Config: rss.Config{
			HashTypes: rss.HashType(x.HashTypes), Key: append([]byte(nil), x.Key[:kl]...),
			Table: append([]uint16(nil), x.Table[:n]...), UnclassifiedQueue: x.UnclassifiedQueue,
		}})
	}
	return nil
}

// counterMap returns the counters the rules of slot n use, by rule.
func counterMap(cfg *flowLayout, n int) map[ruleIdent]uint16 {
	f := &cfg.Flows[n]
	out := map[ruleIdent]uint16{}
	np, ng := int(f.Npatterns), int(f.Ngroups)
	if np > flow.MaxPatterns || ng > flow.MaxGroups {
		return out
	}
	for pi := range np {
		p := &f.Pattern[pi]
		start, nr, stride := int(p.HeapStart), int(p.Nrules), int(p.Stride)
		if stride < recMeta || start+nr*stride > flow.MaxRuleWords {
			continue
		}
		for r := range nr {
			o := start + r*stride
			gi := int(f.Heap[o+2]>>groupShift) & 0xff
			if gi < ng {
				out[ruleIdent{f.Group[gi].Id, f.Heap[o+1]}] = uint16(f.Heap[o+2])
			}
		}
	}
	return out
}

// FlowResult is what the FlowsDebug build recorded for the last frame its
// steering program saw.
type FlowResult struct {
	rss.Result
	// HasRule says a rule matched; RuleID is its id.
	HasRule bool
	RuleID  uint32
	// Context is the RSS context that steered the frame (0: default).
	Context uint16
	// Drop says the matching rule drops: the filter drops such frames,
	// and the steering program, meeting one, steers it by RSS.
	Drop bool
}

// LastFlowResult returns what the FlowsDebug variant recorded for the last
// frame its steering program steered.
func (p *Program) LastFlowResult() (FlowResult, error) {
	if p.DebugMap == nil || p.Variant != FlowsDebug {
		return FlowResult{}, errors.New("steering: LastFlowResult needs the flowsdebug variant")
	}
	var d vrssflowdebugVrssFlowDebug
	if err := p.DebugMap.Lookup(uint32(0), &d); err != nil {
		return FlowResult{}, err
	}
	return FlowResult{Result: rss.Result{Queue: d.Queue, Hash: d.Hash, Report: rss.HashReport(d.Report)},
		HasRule: d.HasRule != 0, RuleID: d.RuleId, Context: d.Context, Drop: d.Drop != 0}, nil
}

// FilterDrop is the filter program's return value for a frame it drops
// (TC_ACT_SHOT); it returns FilterPass (TC_ACT_UNSPEC, "next") otherwise.
const (
	FilterDrop = 2
	FilterPass = -1
)

// RunFilter runs the flow build's filter on one frame with
// BPF_PROG_TEST_RUN and returns its verdict: FilterDrop or FilterPass.
func (p *Program) RunFilter(frame []byte) (int32, error) {
	if p.Filter == nil {
		return 0, ErrNoFlows
	}
	ret, err := p.Filter.Run(&ebpf.RunOptions{Data: frame})
	return int32(ret), err
}

// AttachFilter attaches the flow build's filter at the egress of the
// network device with the given index (tcx, Linux 6.6+), where it drops
// what drop rules match before tun picks a queue. The link holds the
// attachment: pin it to keep it past the process, close it to detach.
func (p *Program) AttachFilter(ifindex int) (link.Link, error) {
	if p.Filter == nil {
		return nil, ErrNoFlows
	}
	l, err := link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: p.Filter, Attach: ebpf.AttachTCXEgress})
	if err != nil {
		return nil, fmt.Errorf("steering: attach the flow filter at ifindex %d's tc egress: %w", ifindex, err)
	}
	return l, nil
}

// RuleHits is one rule's hit count: frames it steered or dropped.
type RuleHits struct {
	Group, ID uint32
	Hits      uint64
}

// FlowStats are the flow build's counters, summed over CPUs.
type FlowStats struct {
	// Rules are the hits of the active set's rules, in the order Set
	// returns them.
	Rules []RuleHits
	// Dropped counts frames the filter dropped.
	Dropped uint64
	// Raced counts frames the steering program found a drop rule for: the
	// set changed between the filter and the steering program; they were
	// steered by RSS.
	Raced uint64
	// Unattributed counts hits of rules that got no counter of their own
	// (more than flow.MaxRules new rules since their counters were free).
	Unattributed uint64
	// NoRulePath counts frames of a set with rules that the steering
	// program could not hand to the rule path (Program.JumpMap emptied:
	// its last fd and pin gone); they went to the unclassified queue.
	NoRulePath uint64
	// Contexts[id][q] counts frames context id sent to queue q.
	Contexts map[uint16][]uint64
}

// MapBytes is the locked kernel memory of a TAP's configuration map: the
// value rounded up to pages.
func MapBytes(flows bool) int {
	n := ConfigSize
	if flows {
		n = FlowConfigSize
	}
	pg := os.Getpagesize()
	return (n + pg - 1) / pg * pg
}

// ReadFlowStats reads the flow counters in statsMap (a flow build's
// FlowStatsMap) and attributes rule counters through pub, a publisher of
// the same program's configuration map.
func ReadFlowStats(statsMap *ebpf.Map, pub *Publisher) (FlowStats, error) {
	var st FlowStats
	if pub.flows == nil {
		return st, ErrNoFlows
	}
	set, counters, err := pub.setCounters()
	if err != nil {
		return st, err
	}
	sums, err := sumCounters(statsMap)
	if err != nil {
		return st, err
	}
	read := func(i uint32) (uint64, error) {
		if int(i) >= len(sums) {
			return 0, fmt.Errorf("steering: flow counter %d of %d", i, len(sums))
		}
		return sums[i], nil
	}
	for _, r := range set.Rules {
		h := RuleHits{Group: r.Group, ID: r.ID}
		if c, ok := counters[ruleIdent{r.Group, r.ID}]; ok && c != noCounter {
			if h.Hits, err = read(uint32(c)); err != nil {
				return st, err
			}
		}
		st.Rules = append(st.Rules, h)
	}
	for _, x := range []struct {
		i   uint32
		dst *uint64
	}{{fstatDrop, &st.Dropped}, {fstatRace, &st.Raced}, {fstatOverflow, &st.Unattributed}, {fstatNoJump, &st.NoRulePath}} {
		if *x.dst, err = read(x.i); err != nil {
			return st, err
		}
	}
	st.Contexts = map[uint16][]uint64{}
	for _, c := range set.Contexts {
		q := make([]uint64, MaxQueues)
		for i := range q {
			if q[i], err = read(uint32(fstatCtx + (int(c.ID)-1)*MaxQueues + i)); err != nil {
				return st, err
			}
		}
		st.Contexts[c.ID] = q
	}
	return st, nil
}

// FlowStats reads the program's flow counters (flow builds only).
func (p *Program) FlowStats() (FlowStats, error) {
	if p.FlowStatsMap == nil {
		return FlowStats{}, ErrNoFlows
	}
	pub, err := p.Publisher(0)
	if err != nil {
		return FlowStats{}, err
	}
	defer pub.Close()
	return ReadFlowStats(p.FlowStatsMap, pub)
}

// setCounters reads the active set and its rules' counters together.
func (p *Publisher) setCounters() (flow.Set, map[ruleIdent]uint16, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cfg == nil {
		return flow.Set{}, nil, errors.New("steering: publisher closed")
	}
	for range 100 {
		n := int(atomic.LoadUint32(&p.cfg.Active) & 1)
		seq := atomic.LoadUint32(&p.cfg.Slot[n].Seq)
		s, err := p.readSet(false)
		if err != nil {
			return s, nil, err
		}
		c := counterMap(p.flows, n)
		if seq&1 == 0 && atomic.LoadUint32(&p.cfg.Slot[n].Seq) == seq && int(atomic.LoadUint32(&p.cfg.Active)&1) == n {
			return s, c, nil
		}
	}
	return flow.Set{}, nil, errors.New("steering: configuration kept changing while being read")
}

// sumCounters reads every counter of the per-CPU array m, summed over CPUs,
// in one batch (BPF_MAP_LOOKUP_BATCH; 12,052 lookups one by one took a
// system call each), or one by one where the kernel has no batch lookup.
func sumCounters(m *ebpf.Map) ([]uint64, error) {
	n := int(m.MaxEntries())
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, err
	}
	sums := make([]uint64, n)
	keys := make([]uint32, n)
	vals := make([]uint64, n*cpus)
	var cursor ebpf.MapBatchCursor
	got, err := m.BatchLookup(&cursor, keys, vals, nil)
	if err == nil || errors.Is(err, ebpf.ErrKeyNotExist) && got == n {
		for i := 0; i < got; i++ {
			for c := 0; c < cpus; c++ {
				sums[keys[i]] += vals[i*cpus+c]
			}
		}
		return sums, nil
	}
	for i := range sums {
		var per []uint64
		if err := m.Lookup(uint32(i), &per); err != nil {
			return nil, fmt.Errorf("steering: read flow counter %d: %w", i, err)
		}
		for _, v := range per {
			sums[i] += v
		}
	}
	return sums, nil
}
