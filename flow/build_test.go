package flow_test

import (
	"fmt"
	"testing"

	"github.com/vrss-dev/vrss/flow"
)

// TCP over IPv4 to port 5001 goes to queue 1.
func ExamplePortRule() {
	r := flow.PortRule(1, 2, 0x0800, 6, 5001, flow.Action{Kind: flow.ActionQueue, Queue: 1})
	fmt.Printf("rule %d, group %d: %s: %s\n", r.ID, r.Group, r.Match.String(), r.Action)
	// Output: rule 1, group 2: ether-type 0x0800 proto 6 dst-port 5001: queue 1
}

// PortRule is the match built field by field.
func TestPortRule(t *testing.T) {
	a := flow.Action{Kind: flow.ActionDrop}
	var m flow.Match
	m.SetEtherType(0x86dd, 0xffff)
	m.SetProto(17, 0xff)
	m.SetDstPort(53, 0xffff)
	want := flow.Rule{ID: 7, Group: 3, Match: m, Action: a}
	if got := flow.PortRule(7, 3, 0x86dd, 17, 53, a); got != want {
		t.Errorf("PortRule = %+v, want %+v", got, want)
	}
}
