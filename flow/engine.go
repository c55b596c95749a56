package flow

import (
	"fmt"

	"github.com/vrss-dev/vrss/rss"
)

// Verdict is what becomes of one frame.
type Verdict struct {
	// Drop says the frame reaches no queue; Queue, Hash and Report are
	// then zero.
	Drop bool
	// Queue is the receive queue the frame goes to.
	Queue uint16
	// Hash and Report are the hash and hash report the device gives the
	// frame: those of the context that steered it, or, for a frame a
	// queue rule sent, of the default configuration.
	Hash   uint32
	Report rss.HashReport
	// Rule is the index in Set.Rules of the rule that matched, or -1.
	Rule int
	// Context is the RSS context that chose the queue: 0 for the default
	// configuration (also for a queue rule, whose hash it gave).
	Context uint16
}

// Engine steers frames by a Set. It is immutable after NewEngine and safe
// for concurrent use.
type Engine struct {
	set      Set
	def      *rss.Engine
	contexts map[uint16]*rss.Engine
	order    []int
	matches  []Match // normalized, indexed like set.Rules
}

// NewEngine returns an engine for s, which must pass s.Validate(l).
func NewEngine(s Set, l Limits) (*Engine, error) {
	if err := s.Validate(l); err != nil {
		return nil, err
	}
	s = s.Clone()
	def, err := rss.New(s.Default)
	if err != nil {
		return nil, fmt.Errorf("default configuration: %w", err)
	}
	e := &Engine{set: s, def: def, contexts: map[uint16]*rss.Engine{}, order: s.Order(), matches: make([]Match, len(s.Rules))}
	for _, c := range s.Contexts {
		if e.contexts[c.ID], err = rss.New(c.Config); err != nil {
			return nil, fmt.Errorf("RSS context %d: %w", c.ID, err)
		}
	}
	for i, r := range s.Rules {
		e.matches[i] = r.Match
		_ = e.matches[i].Normalize() // Validate checked it
	}
	return e, nil
}

// Set returns a copy of the engine's set.
func (e *Engine) Set() Set { return e.set.Clone() }

// Steer returns the verdict for an Ethernet frame: the first rule in Order
// that matches the frame's key decides; a frame no rule matches is steered
// by the default configuration. A frame shorter than an Ethernet header
// matches no rule.
func (e *Engine) Steer(frame []byte) Verdict {
	if len(e.order) > 0 && len(frame) >= 14 {
		k := KeyOf(frame)
		for _, i := range e.order {
			if !e.matches[i].Matches(&k) {
				continue
			}
			a := e.set.Rules[i].Action
			switch a.Kind {
			case ActionDrop:
				return Verdict{Drop: true, Rule: i}
			case ActionQueue:
				r := e.def.Steer(frame)
				return Verdict{Queue: a.Queue, Hash: r.Hash, Report: r.Report, Rule: i}
			case ActionContext:
				r := e.contexts[a.Context].Steer(frame)
				return Verdict{Queue: r.Queue, Hash: r.Hash, Report: r.Report, Rule: i, Context: a.Context}
			}
		}
	}
	r := e.def.Steer(frame)
	return Verdict{Queue: r.Queue, Hash: r.Hash, Report: r.Report, Rule: -1}
}
