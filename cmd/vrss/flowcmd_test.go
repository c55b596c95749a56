package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/flow"
	"github.com/vrss-dev/vrss/internal/netnstest"
	"github.com/vrss-dev/vrss/rss"
)

// The golden outputs of flow list, rss context show and stats' flow part
// are in testdata; after a deliberate change, rewrite them with
//
//	go test ./cmd/vrss -run 'Golden' -update-golden
var updateGolden = flag.Bool("update-golden", false, "rewrite cmd/vrss/testdata/*.golden")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *updateGolden {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (-update-golden rewrites it):\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

// listRule is a rule as flow_list reports it, from words.
func listRule(t *testing.T, words string, id uint32, host bool, hits uint64) api.FlowRuleInfo {
	w, err := parseFlowWords(strings.Fields(words))
	if err != nil {
		t.Fatal(err)
	}
	w.Rule.ID = id
	return api.FlowRuleInfo{FlowRule: api.RuleOf(w.Rule), Match: w.Rule.Match.String(), Host: host, GroupPriority: 0, Hits: hits}
}

func TestFlowListGolden(t *testing.T) {
	guest := listRule(t, "flow-type udp6 dst-ip 2001:db8::/32 action 3 group 7 prio 2", 40, false, 0)
	l := api.FlowList{Name: "vm0", Generation: 9, Total: 4, Dropped: 1234,
		Groups: []api.FlowGroup{{ID: 7, Priority: 3}, {ID: 0, Priority: 0, Host: true}},
		Rules: []api.FlowRuleInfo{
			listRule(t, "flow-type tcp4 dst-port 5001 action 1", 0, true, 50),
			listRule(t, "flow-type udp4 src-ip 10.0.0.0/8 dst-port 4789 context 1", 1, true, 100),
			listRule(t, "flow-type tcp4 src-ip 192.0.2.0 m 0.0.0.255 dst-port 22 action -1", 2, true, 1234),
			guest,
		}}
	var b bytes.Buffer
	if err := printFlowList(&b, l); err != nil {
		t.Fatal(err)
	}
	golden(t, "flow_list.golden", b.Bytes())

	b.Reset()
	printFlowList(&b, api.FlowList{Name: "vm1", Groups: []api.FlowGroup{}, Rules: []api.FlowRuleInfo{}})
	if b.String() != "vm1: 0 rules, 0 frames dropped\n" {
		t.Errorf("no rules: %q", b.String())
	}
	// --json: what the daemon answered, value and mask in hex.
	b.Reset()
	writeJSON(&b, l)
	golden(t, "flow_list.json.golden", b.Bytes())
	var back api.FlowList
	if err := json.Unmarshal(b.Bytes(), &back); err != nil || !reflect.DeepEqual(back, l) {
		t.Errorf("the JSON reads back as %+v, %v", back, err)
	}
}

func TestContextShowGolden(t *testing.T) {
	key := make([]byte, 40)
	for i := range key {
		key[i] = byte(i*7 + 3)
	}
	l := api.ContextList{Name: "vm0", Contexts: []api.ContextInfo{
		{ID: 1, Config: rss.Config{HashTypes: rss.HashTCPv4 | rss.HashUDPv4, Key: key, Table: []uint16{2, 3, 2, 3, 2, 3, 2, 3, 2, 3}[:8], UnclassifiedQueue: 2},
			Frames: []uint64{0, 0, 51, 49}, Rules: []uint32{1, 5}},
		{ID: 3, Config: rss.Config{HashTypes: rss.AllHashTypes, Key: rss.DefaultKey, Table: []uint16{0}}, Frames: []uint64{0, 0, 0, 0}},
	}}
	var b bytes.Buffer
	printContexts(&b, l)
	golden(t, "context_show.golden", b.Bytes())
	b.Reset()
	printContexts(&b, api.ContextList{Name: "vm1"})
	if b.String() != "vm1: no RSS contexts\n" {
		t.Errorf("no contexts: %q", b.String())
	}
}

func TestStatsFlowsGolden(t *testing.T) {
	st := api.Stats{Name: "vm0", Queues: []uint64{100, 50, 51, 49}, AttachedQueues: 4, Flows: &api.FlowStats{
		Dropped: 1234, Raced: 1,
		Rules:        []api.RuleHits{{ID: 0, Group: 0, Hits: 50}, {ID: 1, Group: 0, Hits: 100}, {ID: 2, Group: 0, Hits: 1234}},
		RulesOmitted: 2,
		Contexts:     []api.ContextFrames{{ID: 1, Frames: []uint64{0, 0, 51, 49}}, {ID: 2, Frames: []uint64{0, 0, 0, 0}}},
	}}
	var b bytes.Buffer
	printStats(&b, st, nil, 0)
	golden(t, "stats_flows.golden", b.Bytes())
}

func TestSplitFlags(t *testing.T) {
	flags, pos := splitFlags(strings.Fields("vm0 --socket /s flow-type tcp4 action -1 -socket=/t --json -h prio 3 -- x"), []string{"socket"}, []string{"json"})
	if want := strings.Fields("--socket /s -socket=/t --json -h"); !reflect.DeepEqual(flags, want) {
		t.Errorf("flags %q, want %q", flags, want)
	}
	if want := strings.Fields("vm0 flow-type tcp4 action -1 prio 3 -- x"); !reflect.DeepEqual(pos, want) {
		t.Errorf("words %q, want %q", pos, want)
	}
}

// The flow commands' help explains the words, limits and an example; their
// input errors are one line with exit status 2, before any daemon is asked.
func TestFlowHelpAndInput(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"flow", "add", "-h"}, []string{"usage: vrss flow add TAP", "flow-type T", "m MASK", "action drop", "10,000 rules", "vrss flow add vm0 flow-type tcp4 dst-port 5001 action 1", "--flows"}},
		{[]string{"flow", "list", "--help"}, []string{"usage: vrss flow list TAP [--json] [--netns PATH]", "HITS", "-netns PATH"}},
		{[]string{"flow", "del", "-h"}, []string{"usage: vrss flow del TAP ID [--netns PATH]", "-netns PATH"}},
		{[]string{"flow", "add", "-h"}, []string{"[--netns PATH]", "-netns PATH"}},
		{[]string{"flow", "-h"}, []string{"usage: vrss flow (add", "usage: vrss flow del"}},
		{[]string{"rss", "context", "add", "-h"}, []string{"usage: vrss rss context add TAP", "--queues A-B", "at most 8", "vrss rss context add vm0 --queues 2-3"}},
		{[]string{"rss", "context", "show", "-h"}, []string{"usage: vrss rss context show TAP [ID] [--json] [--netns PATH]", "-netns PATH"}},
		{[]string{"rss", "context", "add", "-h"}, []string{"[--netns PATH]", "-netns PATH"}},
		{[]string{"rss", "context", "set", "-h"}, []string{"[--netns PATH]", "-netns PATH"}},
		{[]string{"rss", "context", "del", "-h"}, []string{"usage: vrss rss context del TAP ID [--netns PATH]", "-netns PATH"}},
		{[]string{"rss", "-h"}, []string{"usage: vrss rss context add"}},
		{[]string{"tap", "create", "-h"}, []string{"--flows", "about 1 MB", "--flows --netns /var/run/netns/pod2"}},
		{[]string{"stats", "-h"}, []string{"drop", "RSS context"}},
	} {
		code, out, errOut := vrss(t, tc.args...)
		if code != exitOK || errOut != "" {
			t.Errorf("vrss %q: exit %d, stderr %q", tc.args, code, errOut)
		}
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("vrss %q lacks %q:\n%s", tc.args, w, out)
			}
		}
	}
	for _, tc := range []struct {
		mention string
		args    []string
	}{
		{"want a TAP name", []string{"flow", "add"}},
		{"an action is required", []string{"flow", "add", "vm0", "flow-type", "tcp4"}},
		{`unknown word "tos" (run 'vrss flow add -h')`, []string{"flow", "add", "vm0", "flow-type", "tcp4", "tos", "1", "action", "1"}},
		{"want a TAP name and a rule id", []string{"flow", "del", "vm0"}},
		{`rule id "x"`, []string{"flow", "del", "vm0", "x"}},
		{"want exactly one TAP name", []string{"flow", "list"}},
		{`RSS context "9"`, []string{"rss", "context", "del", "vm0", "9"}},
		{"--id 9: want 1 to 4 (5 to 8 are the guest's)", []string{"rss", "context", "add", "vm0", "--id", "9"}},
		{"--id 5: want 1 to 4", []string{"rss", "context", "add", "vm0", "--id", "5"}},
		{"exclude each other", []string{"rss", "context", "add", "vm0", "--queues", "1-2", "--equal", "2"}},
		{"--size 512", []string{"rss", "context", "add", "vm0", "--size", "512"}},
		{"unknown rss context command", []string{"rss", "context", "frob"}},
	} {
		wantInputError(t, tc.mention, tc.args...)
	}
	// A rule that reads back: what list prints is what add takes.
	w, err := parseFlowWords(strings.Fields("ether-type 0x0800 proto 6 src-ip 10.0.0.0/8 dst-port 5001 action 2"))
	if err != nil || w.Rule.Action != (flow.Action{Kind: flow.ActionQueue, Queue: 2}) {
		t.Fatal(w, err)
	}
}

// The flow commands end to end against vrssd, as a user types them.
func TestFlowCommands(t *testing.T) {
	sock := startDaemon(t)
	ok, fails := daemonCLI(t, sock)
	if out := ok("tap", "create", "fl0", "--queues", "4", "--flows"); !strings.Contains(out, "created fl0: 4 queues") || !strings.Contains(out, "flow rules and RSS contexts") {
		t.Errorf("create --flows: %q", out)
	}
	ok("tap", "create", "plain0", "--queues", "2")
	if out := ok("tap", "list"); !strings.Contains(out, "FLOWS") || !strings.Contains(out, "  yes\n") {
		t.Errorf("list:\n%s", out)
	}
	var taps []api.TAP
	if err := json.Unmarshal([]byte(ok("tap", "list", "--json")), &taps); err != nil || len(taps) != 2 || !taps[0].Flows || taps[1].Flows || taps[0].MapBytes <= taps[1].MapBytes {
		t.Errorf("list --json: %+v, %v", taps, err)
	}

	ok("rss", "set", "fl0", "--equal", "4")
	if out := ok("rss", "context", "add", "fl0", "--queues", "2-3"); out != "fl0: RSS context 1\n" {
		t.Errorf("context add: %q", out)
	}
	if out := ok("flow", "add", "fl0", "flow-type", "tcp4", "dst-port", "5001", "action", "1"); out != "fl0: added rule 0 (group 0, priority 0): ether-type 0x0800 proto 6 dst-port 5001: queue 1\n" {
		t.Errorf("flow add: %q", out)
	}
	ok("flow", "add", "fl0", "flow-type", "udp4", "dst-port", "5002", "context", "1")
	ok("flow", "add", "fl0", "flow-type", "tcp4", "src-ip", "10.0.0.0", "m", "0.255.255.255", "dst-port", "5003", "action", "-1", "loc", "9", "prio", "5")
	out := ok("flow", "list", "fl0")
	for _, want := range []string{
		"fl0: 3 rules, 0 frames dropped\n",
		"groups, in the order tried: host 0 (priority 0)\n",
		"ID  GROUP   PRIO  ACTION     HITS  MATCH\n",
		"9   host 0  5     drop       0     ether-type 0x0800 proto 6 src-ip 10.0.0.0/8 dst-port 5003\n",
		"0   host 0  0     queue 1    0     ether-type 0x0800 proto 6 dst-port 5001\n",
		"1   host 0  0     context 1  0     ether-type 0x0800 proto 17 dst-port 5002\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("flow list lacks %q:\n%s", want, out)
		}
	}
	var l api.FlowList
	if err := json.Unmarshal([]byte(ok("flow", "list", "fl0", "--json")), &l); err != nil || len(l.Rules) != 3 || l.Rules[0].ID != 9 {
		t.Errorf("flow list --json: %+v, %v", l, err)
	}
	out = ok("rss", "context", "show", "fl0")
	for _, want := range []string{"RSS context 1 of fl0, used by rule 1\n", "RX flow hash indirection table for fl0 context 1 with 4 RX ring(s):\n", "    0:      2     3     2     3", "Unclassified queue: 2\n", "Frames steered: 0\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("context show lacks %q:\n%s", want, out)
		}
	}
	ok("rss", "context", "set", "fl0", "1", "--queues", "1-3", "--types", "tcpv4,udpv4")
	var cl api.ContextList
	if err := json.Unmarshal([]byte(ok("rss", "context", "show", "fl0", "1", "--json")), &cl); err != nil || len(cl.Contexts) != 1 || cl.Contexts[0].Config.HashTypes != rss.HashTCPv4|rss.HashUDPv4 || cl.Contexts[0].Config.Table[2] != 3 || cl.Contexts[0].Config.UnclassifiedQueue != 1 {
		t.Errorf("context show --json after set: %+v, %v", cl, err)
	}
	if out := ok("stats", "fl0"); !strings.Contains(out, "flow rules: 3, frames dropped: 0\n") || !strings.Contains(out, "RSS context 1: 0 frames\n") {
		t.Errorf("stats:\n%s", out)
	}

	// Refusals: bad input exits 2 and changes nothing.
	fails(2, "queue out of range", "flow", "add", "fl0", "flow-type", "tcp4", "dst-port", "1", "action", "4")
	fails(2, "no such RSS context", "flow", "add", "fl0", "flow-type", "tcp4", "dst-port", "1", "context", "2")
	fails(1, "exists", "flow", "add", "fl0", "flow-type", "tcp4", "dst-port", "1", "action", "0", "loc", "9")
	fails(2, "is the action of rules [1]", "rss", "context", "del", "fl0", "1")
	fails(2, "queue out of range", "rss", "context", "add", "fl0", "--queues", "3-4")
	fails(2, "create it with flows", "flow", "add", "plain0", "flow-type", "tcp4", "dst-port", "1", "action", "0")
	fails(2, "create it with flows", "rss", "context", "show", "plain0")
	fails(1, "not_found", "flow", "list", "nope")
	if l2 := ok("flow", "list", "fl0"); l2 != ok("flow", "list", "fl0") || !strings.Contains(l2, "3 rules") {
		t.Errorf("after refusals:\n%s", l2)
	}

	if out := ok("flow", "del", "fl0", "1"); out != "fl0: deleted rule 1\n" {
		t.Errorf("flow del: %q", out)
	}
	fails(1, "has no rule 1", "flow", "del", "fl0", "1")
	if out := ok("rss", "context", "del", "fl0", "1"); out != "fl0: RSS context 1 deleted\n" {
		t.Errorf("context del: %q", out)
	}
	if out := ok("rss", "context", "show", "fl0"); out != "fl0: no RSS contexts\n" {
		t.Errorf("context show after del: %q", out)
	}
	ok("tap", "delete", "fl0")
}

// The flow and context commands with --netns: TAPs of one name with flows
// in vrssd's namespace and in a named one keep rules and contexts of their
// own, each reached by its path.
func TestFlowCommandsNetns(t *testing.T) {
	sock := startDaemon(t)
	pod := netnstest.Named(t)
	ok, fails := daemonCLI(t, sock)
	ok("tap", "create", "fl0", "--queues", "4", "--flows")
	if out := ok("tap", "create", "fl0", "--queues", "4", "--flows", "--netns", pod); !strings.Contains(out, "flow rules and RSS contexts") || !strings.Contains(out, "in network namespace "+pod) {
		t.Errorf("create --flows --netns: %q", out)
	}
	ok("flow", "add", "fl0", "flow-type", "tcp4", "dst-port", "5001", "action", "1")
	if out := ok("rss", "context", "add", "fl0", "--queues", "2-3", "--netns", pod); out != "fl0: RSS context 1\n" {
		t.Errorf("context add --netns: %q", out)
	}
	ok("flow", "add", "--netns", pod, "fl0", "flow-type", "udp4", "dst-port", "5002", "context", "1")
	ok("flow", "add", "fl0", "flow-type", "tcp4", "dst-port", "80", "action", "drop", "--netns", pod)
	var own, inPod api.FlowList
	if err := json.Unmarshal([]byte(ok("flow", "list", "fl0", "--json")), &own); err != nil || len(own.Rules) != 1 || own.Rules[0].Match != "ether-type 0x0800 proto 6 dst-port 5001" {
		t.Errorf("flow list in vrssd's namespace: %+v, %v", own, err)
	}
	if err := json.Unmarshal([]byte(ok("flow", "list", "fl0", "--json", "--netns", pod)), &inPod); err != nil || len(inPod.Rules) != 2 || inPod.Rules[0].Action != "context 1" || inPod.Rules[1].Action != "drop" {
		t.Errorf("flow list --netns: %+v, %v", inPod, err)
	}
	if out := ok("flow", "list", "fl0", "--netns", pod); !strings.Contains(out, "fl0: 2 rules, 0 frames dropped\n") || !strings.Contains(out, "dst-port 80") || strings.Contains(out, "5001") {
		t.Errorf("flow list --netns:\n%s", out)
	}
	ok("rss", "context", "set", "fl0", "1", "--queues", "3", "--netns", pod)
	if out := ok("rss", "context", "show", "fl0", "1", "--netns", pod); !strings.Contains(out, "RSS context 1 of fl0, used by rule 0\n") || !strings.Contains(out, "    0:      3     3") {
		t.Errorf("context show --netns:\n%s", out)
	}
	if out := ok("rss", "context", "show", "fl0"); out != "fl0: no RSS contexts\n" {
		t.Errorf("context show in vrssd's namespace: %q", out)
	}
	fails(1, "not_found", "flow", "list", "fl0", "--netns", "/var/run/netns/none")
	fails(2, "is the action of rules [0]", "rss", "context", "del", "fl0", "1", "--netns", pod)
	if out := ok("flow", "del", "fl0", "0", "--netns", pod); out != "fl0: deleted rule 0\n" {
		t.Errorf("flow del --netns: %q", out)
	}
	ok("rss", "context", "del", "fl0", "1", "--netns", pod)
	if out := ok("flow", "list", "fl0"); !strings.Contains(out, "fl0: 1 rule") {
		t.Errorf("vrssd's own fl0 after the namespace's changes:\n%s", out)
	}
	// The guest's raw virtio commands reach the namespace's TAP too.
	var vr api.VirtioCtrlResult
	if err := json.Unmarshal([]byte(ok("virtio", "ctrl", "fl0", "9", "0", "--json", "--netns", pod)), &vr); err != nil || vr.Ack != 0 || len(vr.Reply) == 0 {
		t.Errorf("virtio ctrl CAP_GET --netns: %+v, %v", vr, err)
	}
	ok("virtio", "reset", "fl0", "--netns", pod)
	ok("tap", "delete", "fl0", "--netns", pod)
	ok("tap", "delete", "fl0")
}
