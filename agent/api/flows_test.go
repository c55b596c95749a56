package api

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/vrss-dev/vrss/flow"
	"github.com/vrss-dev/vrss/rss"
)

// The flow operations' messages, pinned like TestGolden's.
func TestFlowGolden(t *testing.T) {
	var m flow.Match
	m.SetEtherType(0x0800, 0xffff)
	m.SetProto(6, 0xff)
	m.SetDstPort(5001, 0xffff)
	m.Normalize()
	rule := flow.Rule{ID: 3, Group: 0, Priority: 2, Match: m, Action: flow.Action{Kind: flow.ActionQueue, Queue: 1}}
	const value = `"00000000000000000000000008001a0600000000000000000000000000000000000000000000000000000000000000000000000000001389"`
	const mask = `"000000000000000000000000ffff1aff0000000000000000000000000000000000000000000000000000000000000000000000000000ffff"`
	for _, tc := range []struct {
		name string
		msg  any
		want string
	}{
		{
			"create request with flows",
			&Request{ID: 1, Op: OpCreate, Args: mustJSON(t, CreateArgs{Name: "vm0", Queues: 4, Flows: true})},
			`{"id":1,"op":"create","args":{"name":"vm0","queues":4,"flows":true}}`,
		},
		{
			"flow_add request",
			&Request{ID: 2, Op: OpFlowAdd, Args: mustJSON(t, FlowAddArgs{Name: "vm0", Rule: RuleOf(rule), AutoID: true})},
			`{"id":2,"op":"flow_add","args":{"name":"vm0","rule":{"id":3,"group":0,"priority":2,"value":` + value + `,"mask":` + mask + `,"action":"queue 1"},"auto_id":true}}`,
		},
		{
			"flow_del request",
			&Request{ID: 3, Op: OpFlowDel, Args: mustJSON(t, FlowDelArgs{Name: "vm0", ID: 3})},
			`{"id":3,"op":"flow_del","args":{"name":"vm0","id":3}}`,
		},
		{
			"flow_list response",
			&Response{ID: 4, Result: mustJSON(t, FlowList{Name: "vm0", Generation: 5, Total: 1, Dropped: 7,
				Rules:  []FlowRuleInfo{{FlowRule: RuleOf(rule), Match: rule.Match.String(), Host: true, Hits: 9}},
				Groups: []FlowGroup{{ID: 0, Host: true}}})},
			`{"id":4,"result":{"name":"vm0","generation":5,"total":1,"start":0,"rules":[{"id":3,"group":0,"priority":2,"value":` + value + `,"mask":` + mask + `,"action":"queue 1","match":"ether-type 0x0800 proto 6 dst-port 5001","host":true,"group_priority":0,"hits":9}],"groups":[{"id":0,"priority":0,"host":true}],"dropped":7}}`,
		},
		{
			"rss_context_add request",
			&Request{ID: 5, Op: OpRSSContextAdd, Args: mustJSON(t, ContextArgs{Name: "vm0", Config: &rss.Config{HashTypes: rss.HashTCPv4, Key: []byte{1, 2}, Table: []uint16{2, 3}, UnclassifiedQueue: 2}})},
			`{"id":5,"op":"rss_context_add","args":{"name":"vm0","config":{"hash_types":["tcpv4"],"key":"0102","indirection_table":[2,3],"unclassified_queue":2}}}`,
		},
		{
			"stats response with flows",
			&Response{ID: 6, Result: mustJSON(t, Stats{Name: "vm0", Queues: []uint64{1, 2}, Flows: &FlowStats{Dropped: 3, Rules: []RuleHits{{ID: 3, Hits: 4}},
				Contexts: []ContextFrames{{ID: 1, Frames: []uint64{0, 5}}}}})},
			`{"id":6,"result":{"name":"vm0","queues":[1,2],"unclassified":0,"retries":0,"torn":0,"unconfigured":0,"flows":{"dropped":3,"rules":[{"id":3,"group":0,"hits":4}],"contexts":[{"id":1,"frames":[0,5]}]}}}`,
		},
		{
			"list response, a TAP with flows",
			&Response{ID: 7, Result: mustJSON(t, ListResult{TAPs: []TAP{{Name: "vm0", Index: 5, Queues: 4, VnetHdrLen: 12, Steering: true, ABI: "vrss1-x", Flows: true, MapBytes: 1003520}}})},
			`{"id":7,"result":{"taps":[{"name":"vm0","index":5,"queues":4,"vnet_hdr_len":12,"owner_uid":0,"owner_gid":0,"steering":true,"adopted":false,"generation":0,"abi":"vrss1-x","flows":true,"map_bytes":1003520}]}}`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := Encode(tc.msg)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tc.want {
				t.Fatalf("encoded\n%s\nwant\n%s", b, tc.want)
			}
			if r, ok := tc.msg.(*Request); ok {
				got, err := DecodeRequest(b)
				if err != nil || !reflect.DeepEqual(got, r) {
					t.Fatalf("decoded %+v, %v", got, err)
				}
			}
		})
	}
}

func TestFlowRuleRoundTrip(t *testing.T) {
	var m flow.Match
	m.SetEtherType(0x86dd, 0xffff)
	m.SetSrcPort(1, 0xff00)
	for _, a := range []flow.Action{{Kind: flow.ActionDrop}, {Kind: flow.ActionQueue, Queue: 65535}, {Kind: flow.ActionContext, Context: 8}} {
		r := flow.Rule{ID: 1 << 31, Group: 7, Priority: 255, Match: m, Action: a}
		b, err := json.Marshal(RuleOf(r))
		if err != nil {
			t.Fatal(err)
		}
		var fr FlowRule
		if err := DecodeArgs(b, &fr); err != nil {
			t.Fatal(err)
		}
		back, err := fr.Rule()
		if err != nil || back != r {
			t.Fatalf("%s read back as %+v, %v", b, back, err)
		}
	}
	set := flow.Set{Default: rss.Config{Key: rss.DefaultKey, Table: []uint16{0}},
		Contexts: []flow.Context{{ID: 2, Config: rss.Config{Key: []byte{1}, Table: []uint16{1}}}},
		Groups:   []flow.Group{{ID: 1, Priority: 3, Host: true}},
		Rules:    []flow.Rule{{ID: 4, Group: 1, Match: m, Action: flow.Action{Kind: flow.ActionContext, Context: 2}}}}
	fs := SetOf(set)
	back, err := fs.Set(set.Default)
	if err != nil || !reflect.DeepEqual(back, set) || fs.Empty() || !(FlowSet{}).Empty() {
		t.Fatalf("%+v read back as %+v, %v", set, back, err)
	}
}

func TestFlowKeyAndActionRefused(t *testing.T) {
	for _, bad := range []string{`{"value":"00"}`, `{"value":"` + strings.Repeat("zz", 56) + `"}`, `{"mask":12}`} {
		var r FlowRule
		if err := DecodeArgs(json.RawMessage(bad), &r); err == nil {
			t.Errorf("%s decoded", bad)
		}
	}
	for _, bad := range []string{"", "queue", "queue -1", "queue 65536", "context x", "drop 1", "Drop", "queue 1 2"} {
		if _, err := ParseAction(bad); err == nil {
			t.Errorf("action %q accepted", bad)
		}
	}
}
