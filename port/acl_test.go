package port

import (
	"errors"
	"strings"
	"testing"
)

func TestParseACL(t *testing.T) {
	const file = `# the test policy's rules
drop flow-type tcp4 dst-port 22
  allow ether-type 0x0800 proto 17 dst-port 53

allow flow-type udp6 dst-port 53
allow flow-type ip4 l4proto 1
allow ether-type 0x86dd proto 58
`
	rules, err := ParseACL(file)
	if err != nil {
		t.Fatal(err)
	}
	want := testPolicy().Rules
	if len(rules) != len(want) {
		t.Fatalf("%d rules, want %d", len(rules), len(want))
	}
	var printed []string
	for i := range want {
		if rules[i] != want[i] {
			t.Errorf("rule %d: %s, want %s", i, rules[i], want[i])
		}
		printed = append(printed, rules[i].String())
	}
	// What Rule.String writes reads back the same.
	again, err := ParseACL(strings.Join(printed, "\n"))
	if err != nil || len(again) != len(rules) {
		t.Fatalf("%v, %d rules", err, len(again))
	}
	for i := range again {
		if again[i] != rules[i] {
			t.Errorf("rule %d read back as %s", i, again[i])
		}
	}
	if r, err := ParseACL("allow\n"); err != nil || len(r) != 1 || r[0].Match.Mask != ([56]byte{}) {
		t.Errorf("a rule matching everything: %v %v", r, err)
	}
	if r, err := ParseACL("\n# nothing\n"); err != nil || len(r) != 0 {
		t.Errorf("an empty file: %v %v", r, err)
	}

	for _, c := range []struct {
		text, msg string
		err       error
	}{
		{"accept flow-type tcp4", `ACL line 1: "accept": a rule starts with allow or drop`, ErrInvalid},
		{"# x\ndrop flow-type tcp4 dst-port 22 action 1", "ACL line 2: flow: action: a match has no action", ErrInvalid},
		{"drop flow-type tcp4 context 1", "a match has no context", ErrInvalid},
		{"allow flow-type tcp4 dst-port 70000", `dst-port "70000"`, ErrInvalid},
		{"allow proto 6", "EtherType fixed", ErrInvalid},
		{"allow tos 4", `unknown word "tos"`, ErrInvalid},
		{strings.Repeat("allow\n", MaxRules+1), "line 33 is rule 33, the limit is 32", ErrLimit},
	} {
		_, err := ParseACL(c.text)
		if !errors.Is(err, c.err) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%q: %v, want %q", c.text, err, c.msg)
		}
	}
}
