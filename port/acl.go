package port

import (
	"fmt"
	"strings"

	"github.com/vrss-dev/vrss/flow"
)

// ParseACL reads an ACL file: one rule per line, `allow` or `drop` then a
// match in the words of `vrss flow add` without the rule's own (no action,
// context, prio, loc or group): "drop flow-type tcp4 dst-port 22", or as
// Rule.String writes it, "allow ether-type 0x0800 proto 17 dst-port 53".
// A rule with no match words matches every frame. Blank lines and lines
// starting with # are skipped. The rules keep the file's order.
func ParseACL(text string) ([]Rule, error) {
	var rules []Rule
	for n, line := range strings.Split(text, "\n") {
		words := strings.Fields(line)
		if len(words) == 0 || strings.HasPrefix(words[0], "#") {
			continue
		}
		if len(rules) == MaxRules {
			return nil, fmt.Errorf("%w ACL rules: line %d is rule %d, the limit is %d", ErrLimit, n+1, MaxRules+1, MaxRules)
		}
		if words[0] != "allow" && words[0] != "drop" {
			return nil, invalid("ACL line %d: %q: a rule starts with allow or drop", n+1, words[0])
		}
		a, _ := ParseAction(words[0])
		m, err := flow.ParseMatchArgs(words[1:])
		if err != nil {
			return nil, invalid("ACL line %d: %v", n+1, err)
		}
		rules = append(rules, Rule{Match: m, Action: a})
	}
	return rules, nil
}
