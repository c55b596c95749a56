package demo

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/flow"
	"github.com/vrss-dev/vrss/internal/frame"
	"github.com/vrss-dev/vrss/internal/inject"
	"github.com/vrss-dev/vrss/rss"
	"github.com/vrss-dev/vrss/steering"
	"github.com/vrss-dev/vrss/tap"
)

// RulesMinQueues is the fewest queues a run with rules takes: its RSS
// context spreads over queues 2 and 3.
const RulesMinQueues = 4

// The rules of RulesSet, by id, and the ports they match.
const (
	RuleQueue   = 1 // TCP to port PortQueue goes to queue 1
	RuleContext = 2 // UDP to port PortContext goes to RSS context 1
	RuleDrop    = 3 // TCP to port PortDrop is dropped

	PortQueue   = 5001
	PortContext = 5002
	PortDrop    = 5003
)

// ContextKey is RSS context 1's own key.
func ContextKey() []byte {
	key := make([]byte, 40)
	for i := range key {
		key[i] = byte(i*7 + 3)
	}
	return key
}

// RulesSet is the set a run with rules steers by, for a TAP with n >= 4
// queues: RSS by cfg for everything, except in one host group a rule
// sending TCP over IPv4 to port 5001 to queue 1, one sending UDP over IPv4
// to port 5002 to RSS context 1 (every hash type, its own key, a table of
// queues 2 and 3), and one dropping TCP over IPv4 to port 5003.
func RulesSet(n int, cfg rss.Config) flow.Set {
	rule := func(id uint32, proto uint8, port uint16, a flow.Action) flow.Rule {
		return flow.PortRule(id, 1, 0x0800, proto, port, a)
	}
	return flow.Set{
		Default:  cfg.Clone(),
		Contexts: []flow.Context{{ID: 1, Config: rss.Config{HashTypes: rss.AllHashTypes, Key: ContextKey(), Table: []uint16{2, 3}, UnclassifiedQueue: 2}}},
		Groups:   []flow.Group{{ID: 1, Priority: 1, Host: true}},
		Rules: []flow.Rule{
			rule(RuleQueue, frame.ProtoTCP, PortQueue, flow.Action{Kind: flow.ActionQueue, Queue: 1}),
			rule(RuleContext, frame.ProtoUDP, PortContext, flow.Action{Kind: flow.ActionContext, Context: 1}),
			rule(RuleDrop, frame.ProtoTCP, PortDrop, flow.Action{Kind: flow.ActionDrop}),
		},
	}
}

// RuleFlowsPer is the number of flows a run with rules adds for each rule
// to the flows of Frames: an eighth of them, at least one.
func RuleFlowsPer(flows int) int { return max(1, flows/8) }

// RulesFrames returns the frames of Frames(flows, perFlow, seed) and
// perFlow frames of RuleFlowsPer(flows) flows for each rule of RulesSet
// (random IPv4 addresses and source ports, the rule's protocol and
// destination port), the flows in a random order, numbered as Frames
// numbers them.
func RulesFrames(flows, perFlow int, seed uint64) [][]byte {
	r := rand.New(rand.NewPCG(seed, 0x76727373))
	specs := make([]func() []byte, flows)
	for i := range specs {
		specs[i] = flowTemplate(i, r)
	}
	for _, rule := range []struct {
		proto uint8
		port  uint16
	}{{frame.ProtoTCP, PortQueue}, {frame.ProtoUDP, PortContext}, {frame.ProtoTCP, PortDrop}} {
		for range RuleFlowsPer(flows) {
			s := frame.Spec{Src: frame.RandomAddr4(r), Dst: frame.RandomAddr4(r), Proto: rule.proto,
				SrcPort: uint16(1024 + r.IntN(64512)), DstPort: rule.port, Payload: 16}
			specs = append(specs, func() []byte { return frame.Build(s) })
		}
	}
	r.Shuffle(len(specs), func(i, j int) { specs[i], specs[j] = specs[j], specs[i] })
	return number(specs, perFlow)
}

// FlowResult is what a run with rules saw besides the queues.
type FlowResult struct {
	// Set is what the run steered by.
	Set flow.Set
	// Rules are the rules of Set, in its order.
	Rules []RuleCount
	// Contexts are Set's RSS contexts, in its order.
	Contexts []ContextCount
	// Drops are the frames the engine drops.
	Drops DropCount
	// Raced counts frames the steering program found a drop rule for
	// (the filter let them through); it must be 0.
	Raced uint64
}

// RuleCount is one rule's frames.
type RuleCount struct {
	ID     uint32
	Match  string      // in the words of `vrss flow add`
	Action flow.Action //
	// Predicted counts the frames the engine sends through the rule;
	// AsPredicted those of them that arrived, once, on the queue it
	// predicts, or, for a drop, never arrived.
	Predicted, AsPredicted int
	// Counted is the rule's hit counter in the flow build (the steering
	// program's, or for a drop rule the filter's).
	Counted uint64
}

// ContextCount is one RSS context's frames, per queue.
type ContextCount struct {
	ID     uint16
	Config rss.Config
	// Predicted[q] counts the frames the engine sends to queue q through
	// this context, Observed[q] those of them that arrived there, and
	// Counted[q] is the program's counter of them.
	Predicted, Observed []int
	Counted             []uint64
}

// DropCount is what became of the frames the engine drops.
type DropCount struct {
	// Predicted counts the frames the engine drops.
	Predicted int
	// Refused counts the sends the kernel refused with ENOBUFS: the
	// filter's drop, as a packet socket reports it.
	Refused int
	// Received counts frames the engine drops that arrived on a queue.
	Received int
	// Counted is the filter's drop counter.
	Counted uint64
}

// CountersAgree reports whether the flow build's counters equal what the
// engine predicts: every rule's hits, every context's frames per queue,
// the drops; and no frame met a drop rule in the steering program.
func (f *FlowResult) CountersAgree() bool {
	for _, r := range f.Rules {
		if r.Counted != uint64(r.Predicted) {
			return false
		}
	}
	for _, c := range f.Contexts {
		for q := range c.Predicted {
			if c.Counted[q] != uint64(c.Predicted[q]) {
				return false
			}
		}
	}
	return f.Drops.Counted == uint64(f.Drops.Predicted) && f.Raced == 0
}

// runRules is run with the flow build: the steering program and the
// filter that drops, both by set, checked against flow.Engine.
func runRules(o Options, set flow.Set) (*Result, error) {
	eng, err := flow.NewEngine(set, steering.FlowLimits(o.Queues))
	if err != nil {
		return nil, err
	}
	dev, err := tap.Create(tap.Options{Name: "vrssdemo%d", Queues: o.Queues, VnetHdrLen: vnetHdrLen, Up: true})
	if err != nil {
		return nil, err
	}
	defer dev.Close()
	prog, err := steering.LoadVariant(steering.Flows)
	if err != nil {
		return nil, err
	}
	defer prog.Close()
	pub, err := prog.Publisher(o.Queues)
	if err != nil {
		return nil, err
	}
	defer pub.Close()
	if err := pub.PublishSet(set); err != nil {
		return nil, err
	}
	if err := dev.SetSteering(prog.Prog.FD()); err != nil {
		return nil, err
	}
	filter, err := prog.AttachFilter(dev.Index())
	if err != nil {
		return nil, err
	}
	defer filter.Close()
	inj, err := inject.Open(dev.Index())
	if err != nil {
		return nil, err
	}
	defer inj.Close()

	frames := RulesFrames(o.Flows, o.PerFlow, o.Seed)
	fr := &FlowResult{Set: set}
	res := &Result{
		Device: dev.Name(), Queues: o.Queues, Config: set.Default, Sent: len(frames),
		Predicted: make([]int, o.Queues), Observed: make([]int, o.Queues),
		Reports: map[rss.HashReport]int{}, Flows: fr,
	}
	for _, r := range set.Rules {
		fr.Rules = append(fr.Rules, RuleCount{ID: r.ID, Match: r.Match.String(), Action: r.Action})
	}
	ctxIndex := map[uint16]int{}
	for i, c := range set.Contexts {
		ctxIndex[c.ID] = i
		fr.Contexts = append(fr.Contexts, ContextCount{ID: c.ID, Config: c.Config,
			Predicted: make([]int, o.Queues), Observed: make([]int, o.Queues), Counted: make([]uint64, o.Queues)})
	}
	want := make([]flow.Verdict, len(frames))
	for i, f := range frames {
		v := eng.Steer(f)
		v.Queue %= uint16(o.Queues) // tun takes the program's answer modulo the queues
		want[i] = v
		if v.Rule >= 0 {
			fr.Rules[v.Rule].Predicted++
		}
		if v.Drop {
			fr.Drops.Predicted++
			continue
		}
		res.Predicted[v.Queue]++
		res.Reports[v.Report]++
		if v.Context != 0 {
			fr.Contexts[ctxIndex[v.Context]].Predicted[v.Queue]++
		}
	}

	rx := startReceiver(dev)
	start := time.Now()
	// One frame a send: a frame the filter drops fails its send with
	// ENOBUFS (the packet socket reports NET_XMIT_DROP), and a batch
	// would stop there. Stay at most a window ahead of the readers.
	const window = 256
	refused := make([]bool, len(frames))
	accepted := 0
	for i, f := range frames {
		err := inj.Send(f)
		if errors.Is(err, unix.ENOBUFS) {
			refused[i] = true
			fr.Drops.Refused++
			continue
		}
		if err != nil {
			rx.stop()
			return nil, err
		}
		accepted++
		for deadline := time.Now().Add(o.Timeout); rx.total.Load() < int64(accepted-window) && time.Now().Before(deadline); {
			time.Sleep(50 * time.Microsecond)
		}
	}
	for deadline := time.Now().Add(o.Timeout); rx.total.Load() < int64(accepted) && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	// A short grace period shows duplicates, strays or dropped frames
	// arriving late, should there be any.
	time.Sleep(20 * time.Millisecond)
	seen, err := rx.stop()
	res.Elapsed = time.Since(start)
	if err != nil {
		return nil, err
	}
	if res.Stats, err = prog.Stats(); err != nil {
		return nil, err
	}
	st, err := prog.FlowStats()
	if err != nil {
		return nil, err
	}

	wrong := func(format string, args ...any) {
		if len(res.Wrong) < 10 {
			res.Wrong = append(res.Wrong, fmt.Sprintf(format, args...))
		}
	}
	head := func(id int) []byte { return frames[id][:min(len(frames[id]), 40)] }
	got := make([]int, len(frames)) // times each frame arrived
	for q, ids := range seen {
		for _, id := range ids {
			if id < 0 || id >= len(frames) {
				res.Foreign++
				continue
			}
			res.Observed[q]++
			res.Received++
			got[id]++
			v := want[id]
			switch {
			case v.Drop:
				fr.Drops.Received++
				wrong("frame %d (%x...) on queue %d, but rule %d drops it (arrival %d)", id, head(id), q, fr.Rules[v.Rule].ID, got[id])
			case q == int(v.Queue) && got[id] == 1:
				res.Correct++
				if v.Rule >= 0 {
					fr.Rules[v.Rule].AsPredicted++
				}
				if v.Context != 0 {
					fr.Contexts[ctxIndex[v.Context]].Observed[q]++
				}
			default:
				wrong("frame %d (%x...) on queue %d, predicted %d (arrival %d)", id, head(id), q, v.Queue, got[id])
			}
		}
	}
	for id, n := range got {
		v := want[id]
		switch {
		case v.Drop && n == 0:
			res.Correct++
			fr.Rules[v.Rule].AsPredicted++
		case !v.Drop && n == 0 && refused[id]:
			wrong("frame %d (%x...): its send was refused (ENOBUFS), but the engine keeps it for queue %d", id, head(id), v.Queue)
		case !v.Drop && n == 0:
			wrong("frame %d lost, predicted queue %d", id, v.Queue)
		}
	}

	// The flow build's own counters must say the same, without a cap on
	// what is reported: they are few.
	hits := map[uint32]uint64{}
	for _, h := range st.Rules {
		hits[h.ID] = h.Hits
	}
	for i := range fr.Rules {
		r := &fr.Rules[i]
		r.Counted = hits[r.ID]
		if r.Counted != uint64(r.Predicted) {
			res.Wrong = append(res.Wrong, fmt.Sprintf("rule %d: the program counted %d hits, the engine predicts %d", r.ID, r.Counted, r.Predicted))
		}
	}
	for i := range fr.Contexts {
		c := &fr.Contexts[i]
		counted := st.Contexts[c.ID]
		for q := range c.Counted {
			if q < len(counted) {
				c.Counted[q] = counted[q]
			}
			if c.Counted[q] != uint64(c.Predicted[q]) {
				res.Wrong = append(res.Wrong, fmt.Sprintf("context %d, queue %d: the program counted %d frames, the engine predicts %d", c.ID, q, c.Counted[q], c.Predicted[q]))
			}
		}
	}
	fr.Drops.Counted, fr.Raced = st.Dropped, st.Raced
	if fr.Drops.Counted != uint64(fr.Drops.Predicted) {
		res.Wrong = append(res.Wrong, fmt.Sprintf("the filter counted %d drops, the engine predicts %d", fr.Drops.Counted, fr.Drops.Predicted))
	}
	if fr.Raced != 0 {
		res.Wrong = append(res.Wrong, fmt.Sprintf("the steering program met a drop rule %d times (the filter let those frames through)", fr.Raced))
	}
	return res, nil
}
