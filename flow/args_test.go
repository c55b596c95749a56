package flow

import (
	"strings"
	"testing"
)

// The rule parser's own tests are cmd/vrss's (TestParseFlowWords,
// FuzzFlowWords); here, what ParseMatchArgs adds: the same match without
// the rule's words, which it refuses.
func TestParseMatchArgs(t *testing.T) {
	const match = "flow-type tcp4 src-ip 10.1.0.0 m 0.0.255.255 dst-port 80"
	m, err := ParseMatchArgs(strings.Fields(match))
	if err != nil {
		t.Fatal(err)
	}
	r, err := ParseRuleArgs(strings.Fields(match + " action drop prio 3"))
	if err != nil || r.Rule.Match != m {
		t.Fatalf("%v: %s, want %s", err, r.Rule.Match.String(), m.String())
	}
	if m, err := ParseMatchArgs(nil); err != nil || m != (Match{}) {
		t.Errorf("no words: %v %v", m.String(), err)
	}
	for _, w := range ruleWords {
		if _, err := ParseMatchArgs(strings.Fields(match + " " + w + " 1")); err == nil || !strings.Contains(err.Error(), "a match has no "+w) {
			t.Errorf("%s: %v", w, err)
		}
	}
}
