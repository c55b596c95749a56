package bench

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/vrss-dev/vrss/flow"
	"github.com/vrss-dev/vrss/internal/privtest"
	"github.com/vrss-dev/vrss/steering"
)

// Every rule case is what its name says, under the engine: the measured
// frames match the rule (and context) the case names, exact_10000's are
// spread over many rules, and masks_16x100 has 16 masks of 100 rules.
func TestRuleCases(t *testing.T) {
	cases := ruleCases()
	if len(cases) != len(RuleCases) {
		t.Fatalf("%d cases, want %d", len(cases), len(RuleCases))
	}
	for i, c := range cases {
		if c.name != RuleCases[i] {
			t.Errorf("case %d is %s, want %s", i, c.name, RuleCases[i])
		}
		if len(c.frames) != RuleFrames || len(c.rules) != RuleFrames {
			t.Errorf("%s: %d frames, %d rule ids; want %d", c.name, len(c.frames), len(c.rules), RuleFrames)
		}
		if _, err := c.verdicts(); err != nil {
			t.Error(err)
		}
		distinct := map[uint32]bool{}
		for _, id := range c.rules {
			distinct[id] = true
		}
		masks := map[flow.Key]int{}
		for _, r := range c.set.Rules {
			m := r.Match
			if err := m.Normalize(); err != nil {
				t.Fatal(err)
			}
			masks[m.Mask]++
		}
		var wantRules, wantMasks, wantMatched int
		switch c.name {
		case RulesNone:
			wantRules, wantMasks, wantMatched = 0, 0, 1 // id 0: no rule
		case RulesExact1:
			wantRules, wantMasks, wantMatched = 1, 1, 1
		case RulesExact10:
			wantRules, wantMasks, wantMatched = 10, 1, 10
		case RulesExact10000:
			wantRules, wantMasks, wantMatched = 10000, 1, RuleFrames
		case RulesMasks:
			wantRules, wantMasks, wantMatched = 1600, 16, RuleFrames
			for m, n := range masks {
				if n != 100 {
					t.Errorf("%s: mask %x has %d rules, want 100", c.name, m, n)
				}
			}
		case RulesContext:
			wantRules, wantMasks, wantMatched = 1, 1, 1
			if c.context != 1 || len(c.set.Contexts) != 1 {
				t.Errorf("%s: context %d of %d", c.name, c.context, len(c.set.Contexts))
			}
		}
		if len(c.set.Rules) != wantRules || len(masks) != wantMasks || len(distinct) != wantMatched {
			t.Errorf("%s: %d rules, %d masks, frames match %d distinct rules; want %d, %d, %d",
				c.name, len(c.set.Rules), len(masks), len(distinct), wantRules, wantMasks, wantMatched)
		}
	}
}

// A case whose frames do not match what it names fails its check.
func TestRuleCaseMismatch(t *testing.T) {
	c := exactCase(RulesExact10, 10)
	c.rules[3] = 9
	if _, err := c.verdicts(); err == nil {
		t.Error("a frame matching another rule than the case names passed")
	}
	c = contextCase()
	c.context = 0
	if _, err := c.verdicts(); err == nil {
		t.Error("a frame steered by a context the case does not name passed")
	}
}

func TestEvaluateRules(t *testing.T) {
	r := figures(60, 24, 20, 8, 1)
	r.RulesBaseline = 40
	r.RulesNS = map[string]float64{RulesNone: 42, RulesExact10: 50, RulesExact10000: 54.6}
	r.evaluate()
	if r.Ratios.RulesNoneOverPlain != 1.05 || r.Ratios.RulesExact10000OverNone != 1.3 || r.Ratios.RulesExact10000OverExact10 != 1.092 {
		t.Errorf("ratios %+v", r.Ratios)
	}
	if !r.TargetsMet.RulesNoneOverPlain || !r.TargetsMet.RulesExact10000OverNone || !r.TargetsMet.RulesExactSpread {
		t.Errorf("figures at the targets: %+v, want met", r.TargetsMet)
	}
	// Ratios within rounds win over the medians' ratio; the spread target
	// holds both ways.
	r.rulePairs = map[string][]float64{"none_over_plain": {1.2, 1.06, 1.01}, "exact_10000_over_exact_10": {0.9}}
	r.evaluate()
	if r.Ratios.RulesNoneOverPlain != 1.06 || r.TargetsMet.RulesNoneOverPlain || r.TargetsMet.RulesExactSpread {
		t.Errorf("within rounds: %+v, %+v", r.Ratios, r.TargetsMet)
	}
	r.rulePairs = nil
	r.RulesNS[RulesExact10000] = 80
	r.evaluate()
	if r.TargetsMet.RulesExact10000OverNone || r.TargetsMet.RulesExactSpread {
		t.Errorf("10,000 rules at 80 ns: %+v", r.TargetsMet)
	}
}

// The configuration maps stay within issue 13's memory limits.
func TestMapBytesLimits(t *testing.T) {
	if n := steering.MapBytes(false); n <= 0 || n > MaxPlainMapBytes {
		t.Errorf("plain build's map: %d bytes, want at most %d", n, MaxPlainMapBytes)
	}
	if n := steering.MapBytes(true); n <= 0 || n > MaxFlowMapBytes {
		t.Errorf("flow build's map: %d bytes, want at most %d", n, MaxFlowMapBytes)
	}
}

// Without the flow build, measureRules records why and measureMemory
// still reports the configuration maps.
func TestRulesNotLoaded(t *testing.T) {
	p := &programs{flowsErr: errors.New("load the flows program: refused")}
	var r Result
	if err := measureRules(&r, p, Options{}.withDefaults()); err != nil || r.RulesError != "load the flows program: refused" || r.RulesNS != nil {
		t.Errorf("measureRules: %v, error %q, figures %v", err, r.RulesError, r.RulesNS)
	}
	if err := measureMemory(&r, p); err != nil || r.MapBytes.Plain != steering.MapBytes(false) || r.MapBytes.Flows != steering.MapBytes(true) || r.MapBytes.FlowCounters != 0 {
		t.Errorf("measureMemory: %v, %+v", err, r.MapBytes)
	}
	r.evaluate()
	if r.TargetsMet.RulesNoneOverPlain || r.TargetsMet.RulesExact10000OverNone || r.TargetsMet.RulesExactSpread {
		t.Errorf("rule targets met without figures: %+v", r.TargetsMet)
	}
}

// measureRules and measureMemory on the real programs, briefly: every
// figure present and positive, the memory what the steering package and
// the loaded map say (not timing assertions).
func TestMeasureRules(t *testing.T) {
	privtest.Require(t, "bpf")
	o := Options{Repeat: RuleFrames * 2, Rounds: 2}.withDefaults()
	p, err := loadPrograms(o)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	var r Result
	start := time.Now()
	if err := measureRules(&r, p, o); err != nil {
		t.Fatal(err)
	}
	if err := measureMemory(&r, p); err != nil {
		t.Fatal(err)
	}
	t.Logf("took %v", time.Since(start))
	r.evaluate()
	for _, k := range RuleCases {
		if r.RulesNS[k] <= 0 {
			t.Errorf("rules_ns.%s = %v", k, r.RulesNS[k])
		}
	}
	if r.RulesBaseline <= 0 || r.RulesReadFloor <= 0 || r.Ratios.RulesNoneOverPlain <= 0 || r.Ratios.RulesExact10000OverNone <= 0 || r.Ratios.RulesExact10000OverExact10 <= 0 {
		t.Errorf("baseline %v, read floor %v, ratios %+v", r.RulesBaseline, r.RulesReadFloor, r.Ratios)
	}
	m := r.MapBytes
	if m.Plain > MaxPlainMapBytes || m.Flows > MaxFlowMapBytes || m.PossibleCPUs < 1 || m.FlowCountersPerCPU != 8*steering.FlowCounters || m.FlowCounters != m.PossibleCPUs*m.FlowCountersPerCPU {
		t.Errorf("map bytes %+v", m)
	}
	b, _ := json.Marshal(r)
	t.Logf("%s", b)
}
