package agent

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/agent/internal/kernel"
	"github.com/vrss-dev/vrss/flow"
	"github.com/vrss-dev/vrss/internal/fd"
	"github.com/vrss-dev/vrss/rss"
	"github.com/vrss-dev/vrss/steering"
)

// The flow operations on the fake kernel: who may do what, refusals that
// change nothing, restarts with the link's pin or every pin lost, and
// state.json's records of TAPs with flows.

func tcpRule(port uint16, a flow.Action) flow.Rule {
	return flow.PortRule(0, 0, 0x0800, 6, port, a)
}

// createFlows makes TAP name with flows, owned by uid, with a context (1,
// over queues 2 and 3) and rule 0 (TCP port 80 to queue 1), as root.
func (f *fakeDaemon) createFlows(name string, queues, uid int) api.TAP {
	f.t.Helper()
	var tp api.TAP
	f.do(rootPeer, api.OpCreate, api.CreateArgs{Name: name, Queues: queues, OwnerUID: ptrTo(uid), OwnerGID: ptrTo(uid), Flows: true}, &tp)
	f.do(rootPeer, api.OpRSSContextAdd, api.ContextArgs{Name: name, Config: &rss.Config{Key: rss.DefaultKey, Table: []uint16{2, 3}}}, nil)
	f.do(rootPeer, api.OpFlowAdd, api.FlowAddArgs{Name: name, Rule: api.RuleOf(tcpRule(80, flow.Action{Kind: flow.ActionQueue, Queue: 1})), AutoID: true}, nil)
	return tp
}

// flowSet reads TAP name's set as root lists it: rules and contexts.
func (f *fakeDaemon) flowSet(name string) (api.FlowList, api.ContextList) {
	f.t.Helper()
	var l api.FlowList
	var c api.ContextList
	f.do(rootPeer, api.OpFlowList, api.FlowListArgs{Name: name}, &l)
	f.do(rootPeer, api.OpRSSContextShow, api.ContextArgs{Name: name}, &c)
	return l, c
}

func TestOpsFlowsAuthorisation(t *testing.T) {
	const ok, hidden = api.Code(""), api.CodeNotFound
	peers := []struct {
		name string
		p    *peer
	}{{"root", rootPeer}, {"admin", adminPeer}, {"owner", ownerPeer}, {"creator", creatorPeer}, {"other", otherPeer}}
	want := [5]api.Code{ok, ok, ok, hidden, hidden}
	ctxCfg := rss.Config{HashTypes: rss.HashTCPv4, Key: rss.DefaultKey, Table: []uint16{0, 1}}
	for _, tc := range []struct {
		op    api.Op
		args  any
		check func(t *testing.T, f *fakeDaemon, res json.RawMessage)
	}{
		{api.OpFlowAdd, api.FlowAddArgs{Name: "t0", Rule: api.RuleOf(tcpRule(22, flow.Action{Kind: flow.ActionDrop})), AutoID: true}, func(t *testing.T, f *fakeDaemon, res json.RawMessage) {
			var ri api.FlowRuleInfo
			json.Unmarshal(res, &ri)
			if l, _ := f.flowSet("t0"); ri.ID != 1 || len(l.Rules) != 2 || ri.Match != "ether-type 0x0800 proto 6 dst-port 22" || ri.Action != "drop" {
				t.Errorf("added %+v; list %+v", ri, l)
			}
		}},
		{api.OpFlowDel, api.FlowDelArgs{Name: "t0", ID: 0}, func(t *testing.T, f *fakeDaemon, _ json.RawMessage) {
			if l, _ := f.flowSet("t0"); len(l.Rules) != 0 || len(l.Groups) != 0 {
				t.Errorf("after del: %+v", l)
			}
		}},
		{api.OpFlowList, api.FlowListArgs{Name: "t0"}, nil},
		{api.OpRSSContextAdd, api.ContextArgs{Name: "t0", Config: &ctxCfg}, func(t *testing.T, f *fakeDaemon, res json.RawMessage) {
			var ci api.ContextInfo
			json.Unmarshal(res, &ci)
			if _, c := f.flowSet("t0"); ci.ID != 2 || len(c.Contexts) != 2 {
				t.Errorf("added %+v; contexts %+v", ci, c)
			}
		}},
		{api.OpRSSContextSet, api.ContextArgs{Name: "t0", ID: 1, Config: &ctxCfg}, func(t *testing.T, f *fakeDaemon, _ json.RawMessage) {
			if _, c := f.flowSet("t0"); len(c.Contexts) != 1 || !reflect.DeepEqual(c.Contexts[0].Config, ctxCfg) {
				t.Errorf("after set: %+v", c)
			}
		}},
		{api.OpRSSContextDel, api.ContextArgs{Name: "t0", ID: 1}, func(t *testing.T, f *fakeDaemon, _ json.RawMessage) {
			if _, c := f.flowSet("t0"); len(c.Contexts) != 0 {
				t.Errorf("after del: %+v", c)
			}
		}},
		{api.OpRSSContextShow, api.ContextArgs{Name: "t0"}, nil},
	} {
		for i, pc := range peers {
			t.Run(string(tc.op)+"/"+pc.name, func(t *testing.T) {
				f := newFakeDaemon(t, fakePolicy)
				f.createFlows("t0", 4, ownerPeer.uid)
				before := f.world()
				r, out := f.call(pc.p, tc.op, tc.args)
				fd.CloseAll(out)
				var code api.Code
				if r.Error != nil {
					code = r.Error.Code
				}
				if code != want[i] {
					t.Fatalf("%s by %s: %+v, want %q", tc.op, pc.name, r.Error, want[i])
				}
				if code != ok {
					if after := f.world(); after != before {
						t.Errorf("a refusal changed things:\nbefore %s\nafter  %s", before, after)
					}
					// Word for word as for a TAP that does not exist.
					args, _ := json.Marshal(tc.args)
					none := strings.Replace(string(args), `"t0"`, `"nosuch0"`, 1)
					msg := f.fails(pc.p, tc.op, json.RawMessage(none), hidden)
					if !sameMessage(r.Error.Message, msg, "t0", "nosuch0") {
						t.Errorf("%q for another's TAP, %q for none", r.Error.Message, msg)
					}
					return
				}
				if tc.check != nil {
					tc.check(t, f, r.Result)
				}
			})
		}
	}
}

// Refused changes leave the set, the map's generation and state.json as
// they were, and say what is wrong.
func TestOpsFlowsRefusals(t *testing.T) {
	f := newFakeDaemon(t, fakePolicy)
	f.createFlows("t0", 4, ownerPeer.uid)
	f.create("plain0", 2, ownerPeer.uid)
	before := f.world()
	l0, c0 := f.flowSet("t0")
	for _, tc := range []struct {
		op        api.Op
		args      any
		code      api.Code
		mentioned string
	}{
		{api.OpFlowAdd, api.FlowAddArgs{Name: "t0", Rule: api.RuleOf(tcpRule(1, flow.Action{Kind: flow.ActionQueue, Queue: 4})), AutoID: true}, api.CodeInvalidConfig, "queue out of range"},
		{api.OpFlowAdd, api.FlowAddArgs{Name: "t0", Rule: api.RuleOf(tcpRule(1, flow.Action{Kind: flow.ActionContext, Context: 3})), AutoID: true}, api.CodeInvalidConfig, "no such RSS context"},
		{api.OpFlowAdd, api.FlowAddArgs{Name: "t0", Rule: api.RuleOf(tcpRule(1, flow.Action{Kind: flow.ActionQueue}))}, api.CodeExists, "has a rule 0 already"},
		{api.OpFlowAdd, api.FlowAddArgs{Name: "t0", Rule: api.FlowRule{Action: "teleport"}}, api.CodeBadRequest, `action "teleport"`},
		{api.OpFlowAdd, api.FlowAddArgs{Name: "t0", Rule: func() api.FlowRule {
			r := tcpRule(1, flow.Action{Kind: flow.ActionDrop})
			r.Match.Mask[flow.OffReserved] = 1
			return api.RuleOf(r)
		}(), AutoID: true}, api.CodeInvalidConfig, "unused field"},
		{api.OpFlowAdd, api.FlowAddArgs{Name: "t0", Rule: api.RuleOf(tcpRule(1, flow.Action{Kind: flow.ActionDrop})), AutoID: true, GroupPriority: ptrTo16(4)}, api.CodeBadRequest, "host group 0 has priority 0, not 4"},
		{api.OpFlowDel, api.FlowDelArgs{Name: "t0", ID: 7}, api.CodeNotFound, "has no rule 7"},
		{api.OpRSSContextAdd, api.ContextArgs{Name: "t0", ID: 1, Config: &rss.Config{Key: rss.DefaultKey, Table: []uint16{0}}}, api.CodeExists, "has an RSS context 1 already"},
		{api.OpRSSContextAdd, api.ContextArgs{Name: "t0", ID: 9, Config: &rss.Config{Key: rss.DefaultKey, Table: []uint16{0}}}, api.CodeInvalidConfig, "RSS context id 9"},
		{api.OpRSSContextAdd, api.ContextArgs{Name: "t0", Config: &rss.Config{Key: rss.DefaultKey, Table: make([]uint16, 512)}}, api.CodeInvalidConfig, "bad indirection table length"},
		{api.OpRSSContextAdd, api.ContextArgs{Name: "t0"}, api.CodeBadRequest, "needs the context's configuration"},
		{api.OpRSSContextSet, api.ContextArgs{Name: "t0", ID: 2, Config: &rss.Config{Key: rss.DefaultKey, Table: []uint16{0}}}, api.CodeNotFound, "has no RSS context 2"},
		{api.OpRSSContextSet, api.ContextArgs{Name: "t0", Config: &rss.Config{Key: rss.DefaultKey, Table: []uint16{0}}}, api.CodeBadRequest, "needs a context id"},
		{api.OpRSSContextDel, api.ContextArgs{Name: "t0", ID: 2}, api.CodeNotFound, "has no RSS context 2"},
		{api.OpRSSContextShow, api.ContextArgs{Name: "t0", ID: 2}, api.CodeNotFound, "has no RSS context 2"},
		{api.OpFlowList, api.FlowListArgs{Name: "t0", Start: 5}, api.CodeBadRequest, "start 5"},
		// A TAP without flows says so, and how to get one.
		{api.OpFlowAdd, api.FlowAddArgs{Name: "plain0", Rule: api.RuleOf(tcpRule(1, flow.Action{Kind: flow.ActionDrop}))}, api.CodeBadRequest, steering.ErrNoFlows.Error()},
		{api.OpFlowList, api.FlowListArgs{Name: "plain0"}, api.CodeBadRequest, "vrss tap create plain0 --flows"},
		{api.OpRSSContextShow, api.ContextArgs{Name: "plain0"}, api.CodeBadRequest, steering.ErrNoFlows.Error()},
	} {
		msg := f.fails(ownerPeer, tc.op, tc.args, tc.code)
		if !strings.Contains(msg, tc.mentioned) {
			t.Errorf("%s %+v: %q, want it to mention %q", tc.op, tc.args, msg, tc.mentioned)
		}
	}
	if after := f.world(); after != before {
		t.Errorf("refusals changed things:\nbefore %s\nafter  %s", before, after)
	}
	if l, c := f.flowSet("t0"); !reflect.DeepEqual(l, l0) || !reflect.DeepEqual(c, c0) {
		t.Errorf("refusals changed the set:\n%+v %+v\nwas\n%+v %+v", l, c, l0, c0)
	}
	var st api.Stats
	f.do(ownerPeer, api.OpStats, api.NameArgs{Name: "plain0"}, &st)
	if st.Flows != nil {
		t.Errorf("stats of a TAP without flows: %+v", st.Flows)
	}
}

func ptrTo16(v uint16) *uint16 { return &v }

// Groups: a rule may name a host group (made with the priority asked),
// not the guest's; deleting a group's last rule removes the group; stats
// and list report the counters the program keeps.
func TestOpsFlowsGroupsAndStats(t *testing.T) {
	f := newFakeDaemon(t, fakePolicy)
	f.createFlows("t0", 4, ownerPeer.uid)
	r := tcpRule(443, flow.Action{Kind: flow.ActionContext, Context: 1})
	r.Group, r.ID, r.Priority = 5, 100, 7
	var ri api.FlowRuleInfo
	f.do(ownerPeer, api.OpFlowAdd, api.FlowAddArgs{Name: "t0", Rule: api.RuleOf(r), GroupPriority: ptrTo16(9)}, &ri)
	if ri.ID != 100 || ri.Group != 5 || ri.GroupPriority != 9 || !ri.Host || ri.Priority != 7 {
		t.Fatalf("added %+v", ri)
	}
	l, c := f.flowSet("t0")
	// Group 5 (priority 9) is tried before group 0.
	if len(l.Rules) != 2 || l.Rules[0].ID != 100 || l.Rules[1].ID != 0 || len(l.Groups) != 2 {
		t.Fatalf("list %+v", l)
	}
	if len(c.Contexts) != 1 || !reflect.DeepEqual(c.Contexts[0].Rules, []uint32{100}) {
		t.Fatalf("contexts %+v", c)
	}
	// The counters the program keeps, through list, context show and
	// stats.
	if err := f.k.SetFlowStats(f.pinDir("t0"), steering.FlowStats{
		Dropped: 5, Rules: []steering.RuleHits{{Group: 5, ID: 100, Hits: 12}, {Group: 0, ID: 0, Hits: 3}},
		Contexts: map[uint16][]uint64{1: append([]uint64{0, 0, 7, 5}, make([]uint64, steering.MaxQueues-4)...)},
	}); err != nil {
		t.Fatal(err)
	}
	l, c = f.flowSet("t0")
	if l.Dropped != 5 || l.Rules[0].Hits != 12 || l.Rules[1].Hits != 3 || !reflect.DeepEqual(c.Contexts[0].Frames, []uint64{0, 0, 7, 5}) {
		t.Fatalf("counters: %+v %+v", l, c)
	}
	var st api.Stats
	f.do(ownerPeer, api.OpStats, api.NameArgs{Name: "t0"}, &st)
	if st.Flows == nil || st.Flows.Dropped != 5 || !reflect.DeepEqual(st.Flows.Rules, []api.RuleHits{{ID: 100, Group: 5, Hits: 12}, {ID: 0, Group: 0, Hits: 3}}) ||
		len(st.Flows.Contexts) != 1 || !reflect.DeepEqual(st.Flows.Contexts[0].Frames, []uint64{0, 0, 7, 5}) {
		t.Fatalf("stats %+v", st.Flows)
	}
	// A group the guest made takes no host rule, and its rules are the
	// guest's to delete. (A VMM publishes its groups through its own
	// mapping; here the daemon's publisher stands in for it.)
	d := f.s.taps["t0"]
	set, err := d.pub.Set()
	if err != nil {
		t.Fatal(err)
	}
	set.Groups = append(set.Groups, flow.Group{ID: 6, Priority: 1})
	g := tcpRule(8080, flow.Action{Kind: flow.ActionQueue, Queue: 2})
	g.Group, g.ID = 6, 200
	set.Rules = append(set.Rules, g)
	if err := d.pub.PublishSet(set); err != nil {
		t.Fatal(err)
	}
	r2 := tcpRule(1, flow.Action{Kind: flow.ActionDrop})
	r2.Group = 6
	if msg := f.fails(ownerPeer, api.OpFlowAdd, api.FlowAddArgs{Name: "t0", Rule: api.RuleOf(r2), AutoID: true}, api.CodeBadRequest); !strings.Contains(msg, "group 6 is the guest's") {
		t.Errorf("a host rule into the guest's group: %s", msg)
	}
	if msg := f.fails(ownerPeer, api.OpFlowDel, api.FlowDelArgs{Name: "t0", ID: 200}, api.CodeBadRequest); !strings.Contains(msg, "the guest's group 6") {
		t.Errorf("deleting the guest's rule: %s", msg)
	}
	// Host changes keep the guest's rules; auto ids skip theirs.
	f.do(ownerPeer, api.OpFlowDel, api.FlowDelArgs{Name: "t0", ID: 100}, nil)
	l, _ = f.flowSet("t0")
	if len(l.Rules) != 2 || l.Rules[0].ID != 0 || l.Rules[1].ID != 200 || len(l.Groups) != 2 {
		t.Fatalf("after deleting group 5's last rule: %+v", l)
	}
}

// Restarts: the set lives in the map, and the filter stays attached; a
// lost link pin, or a filter detached behind vrssd's back, is attached
// again (at start, and while running); lost pins are steered anew with
// the set state.json recorded, filter and all.
func TestOpsFlowsRestart(t *testing.T) {
	f := newFakeDaemon(t, fakePolicy)
	tp := f.createFlows("t0", 4, ownerPeer.uid)
	f.do(rootPeer, api.OpFlowAdd, api.FlowAddArgs{Name: "t0", Rule: api.RuleOf(tcpRule(22, flow.Action{Kind: flow.ActionDrop})), AutoID: true}, nil)
	cfg := testConfig(4)
	f.do(rootPeer, api.OpSetRSS, api.SetRSSArgs{Name: "t0", Config: &cfg}, nil)
	l0, c0 := f.flowSet("t0")
	link := filepath.Join(f.pinDir("t0"), kernel.PinLink)
	if f.k.Filter("t0") != tp.Index || !exists(link) {
		t.Fatalf("filter at %d (TAP %d), link pinned %v", f.k.Filter("t0"), tp.Index, exists(link))
	}
	// state.json's copy is saved by the snapshot loop, or at shutdown.
	var rec tapState
	var copied *api.FlowSet
	eventually(t, "the copy of the rules", func() bool {
		rec, _ = f.record("t0")
		copied, _ = readFlows(f.opts.StateDir, &rec)
		return copied != nil && len(copied.Rules) == 2
	})
	if !rec.Flows || len(copied.Contexts) != 1 || !reflect.DeepEqual(*rec.Config, cfg) || f.state().Version != 3 {
		t.Fatalf("state.json's record: %+v, flows file %+v", rec, copied)
	}
	same := func(when string) {
		t.Helper()
		l, c := f.flowSet("t0")
		l.Generation, l0.Generation = 0, 0
		if !reflect.DeepEqual(l, l0) || !reflect.DeepEqual(c, c0) {
			t.Fatalf("%s: %+v %+v\nwant %+v %+v", when, l, c, l0, c0)
		}
		var st api.RSSState
		f.do(rootPeer, api.OpGetRSS, api.NameArgs{Name: "t0"}, &st)
		if !reflect.DeepEqual(*st.Config, cfg) {
			t.Fatalf("%s: configuration %+v", when, st.Config)
		}
		if f.k.Filter("t0") != tp.Index || !exists(link) {
			t.Fatalf("%s: filter at %d, link pinned %v", when, f.k.Filter("t0"), exists(link))
		}
	}
	prog := f.k.Steering("t0")
	f.restart()
	same("after a restart")
	if f.k.Steering("t0") != prog {
		t.Fatal("a restart replaced the program")
	}

	// The link's pin lost, and the filter with it, while vrssd was
	// stopped.
	f.stop()
	os.Remove(link)
	f.k.DetachFilterBehind("t0")
	f.start()
	same("after losing the link")
	if !strings.Contains(f.logs.String(), "the flow filter was not attached") {
		t.Error("vrssd did not say it attached the filter again")
	}
	// While running: noticed within a few seconds.
	f.k.DetachFilterBehind("t0")
	eventually(t, "the filter attached again", func() bool { return f.k.Filter("t0") == tp.Index })

	// Every pin lost: steered anew from state.json, rules and all.
	f.stop()
	if err := os.RemoveAll(f.pinDir("t0")); err != nil {
		t.Fatal(err)
	}
	f.start()
	same("after losing every pin")
	if f.k.Steering("t0") == prog {
		t.Fatal("the program was not replaced")
	}
	if !strings.Contains(f.logs.String(), "flow_rules=true") {
		t.Error("the re-steering did not say it kept the rules")
	}

	// Detach takes the filter, attach brings it back; delete removes
	// every pin.
	f.do(rootPeer, api.OpDetach, api.NameArgs{Name: "t0"}, nil)
	if f.k.Filter("t0") != 0 || exists(link) {
		t.Fatal("the filter survived detach")
	}
	f.restart()
	if f.k.Filter("t0") != 0 {
		t.Fatal("a restart attached the filter of a detached TAP")
	}
	f.do(rootPeer, api.OpAttach, api.NameArgs{Name: "t0"}, nil)
	if f.k.Filter("t0") != tp.Index || !exists(link) {
		t.Fatal("attach did not bring the filter back")
	}
	f.do(rootPeer, api.OpDelete, api.NameArgs{Name: "t0"}, nil)
	if exists(f.pinDir("t0")) || exists(flowsPath(f.opts.StateDir, "t0")) {
		t.Fatal("pins or the flows file left after delete")
	}
	if f.state().Version != 2 {
		t.Errorf("state.json says version %d with no TAP with flows", f.state().Version)
	}
}

// The copies of flow sets are checked like state.json's records: a file
// vrssd will not act on stops the start, naming it.
func TestStateFlows(t *testing.T) {
	good := tcpRule(80, flow.Action{Kind: flow.ActionQueue, Queue: 1})
	rec := tapState{Name: "t0", Index: 3, Queues: 4, VnetHdrLen: 12, Flows: true}
	for _, tc := range []struct {
		name  string
		flows bool
		fs    api.FlowSet
		want  string
	}{
		{"rules without flows", false, api.FlowSet{Groups: []api.FlowGroup{{Host: true}}, Rules: []api.FlowRule{api.RuleOf(good)}}, "without flows"},
		{"a queue out of range", true, api.FlowSet{Groups: []api.FlowGroup{{Host: true}},
			Rules: []api.FlowRule{api.RuleOf(tcpRule(80, flow.Action{Kind: flow.ActionQueue, Queue: 9}))}}, "queue out of range"},
		{"a rule without its group", true, api.FlowSet{Rules: []api.FlowRule{api.RuleOf(good)}}, "group"},
		{"a bad action", true, api.FlowSet{Groups: []api.FlowGroup{{Host: true}}, Rules: []api.FlowRule{{Action: "fly"}}}, "action"},
		{"a bad context", true, api.FlowSet{Contexts: []api.RSSContext{{ID: 1, Config: rss.Config{Key: rss.DefaultKey, Table: []uint16{7}}}}}, "queue out of range"},
	} {
		r := rec
		r.Flows = tc.flows
		if err := r.validateFlows(&tc.fs); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error mentioning %q", tc.name, err, tc.want)
		}
	}
	okSet := &api.FlowSet{Groups: []api.FlowGroup{{Host: true}}, Rules: []api.FlowRule{api.RuleOf(good)}}
	if err := rec.validateFlows(okSet); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := writeFlows(dir, &device{name: "t0"}, okSet); err != nil {
		t.Fatal(err)
	}
	if got, err := readFlows(dir, &rec); err != nil || !reflect.DeepEqual(got, okSet) {
		t.Fatalf("read back %+v, %v", got, err)
	}
	// An older vrssd's file, which says no namespace, is the file of the
	// TAP of that name in vrssd's own.
	old, _ := json.Marshal(struct {
		Name string `json:"name"`
		api.FlowSet
	}{"t0", *okSet})
	if err := os.WriteFile(flowsPath(dir, "t0"), old, 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := readFlows(dir, &rec); err != nil || !reflect.DeepEqual(got, okSet) {
		t.Fatalf("an older vrssd's file read back %+v, %v", got, err)
	}
	// The TAP of that name in another namespace has a file of its own,
	// keyed as its pins are, and neither TAP takes the other's.
	inNS := rec
	inNS.Netns, inNS.NetnsDev, inNS.NetnsIno = "/var/run/netns/pod1", 4, 4026532999
	nsDev := &device{name: "t0", netns: &kernel.Netns{Path: inNS.Netns, ID: kernel.NetnsID{Dev: 4, Ino: 4026532999}}}
	nsSet := &api.FlowSet{Groups: []api.FlowGroup{{Host: true}}, Rules: []api.FlowRule{api.RuleOf(tcpRule(443, flow.Action{Kind: flow.ActionQueue, Queue: 2}))}}
	if err := writeFlows(dir, nsDev, nsSet); err != nil {
		t.Fatal(err)
	}
	if p := flowsPath(dir, inNS.key()); !strings.HasSuffix(p, "/t0:netns4026532999.json") || !exists(p) {
		t.Fatalf("the namespace's TAP's file: %s", p)
	}
	if got, err := readFlows(dir, &inNS); err != nil || !reflect.DeepEqual(got, nsSet) {
		t.Fatalf("the namespace's TAP's file read back %+v, %v", got, err)
	}
	if got, err := readFlows(dir, &rec); err != nil || !reflect.DeepEqual(got, okSet) {
		t.Fatalf("vrssd's own TAP's file after the namespace's was written: %+v, %v", got, err)
	}
	os.Rename(flowsPath(dir, inNS.key()), flowsPath(dir, "t0"))
	if _, err := readFlows(dir, &rec); err == nil || !strings.Contains(err.Error(), `network namespace "/var/run/netns/pod1"`) {
		t.Fatalf("another namespace's file in place of vrssd's own TAP's: %v", err)
	}
	if err := writeFlows(dir, &device{name: "t0"}, okSet); err != nil {
		t.Fatal(err)
	}
	other := rec
	other.Name = "t1"
	os.Rename(flowsPath(dir, "t0"), flowsPath(dir, "t1"))
	if _, err := readFlows(dir, &other); err == nil || !strings.Contains(err.Error(), `the flow set of "t0"`) {
		t.Fatalf("another TAP's file: %v", err)
	}
	os.Symlink(flowsPath(dir, "t1"), flowsPath(dir, "t0"))
	if _, err := readFlows(dir, &rec); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("a link: %v", err)
	}
	if err := writeFlows(dir, &device{name: "t9"}, nil); err != nil {
		t.Fatalf("removing a file that is not there: %v", err)
	}

	// A vrssd refuses to start on a bad file.
	f := newFakeDaemon(t, fakePolicy)
	f.createFlows("t0", 4, ownerPeer.uid)
	f.stop()
	bad := *okSet
	bad.Rules = []api.FlowRule{api.RuleOf(tcpRule(80, flow.Action{Kind: flow.ActionQueue, Queue: 9}))}
	if err := writeFlows(f.opts.StateDir, &device{name: "t0"}, &bad); err != nil {
		t.Fatal(err)
	}
	if _, err := New(f.opts); err == nil || !strings.Contains(err.Error(), "flows/t0.json") || !strings.Contains(err.Error(), "queue out of range") {
		t.Fatalf("start on a bad flows file: %v", err)
	}
	os.Remove(flowsPath(f.opts.StateDir, "t0"))
	f.start()
}

// adopt with flows steers the TAP it takes over with the flow build, its
// filter attached; without, as before.
func TestOpsFlowsAdopt(t *testing.T) {
	f := newFakeDaemon(t, fakePolicy)
	extTAP(t, f.k, "ext0", creatorPeer.uid, -1)
	extTAP(t, f.k, "ext1", creatorPeer.uid, -1)
	var tp api.TAP
	f.do(creatorPeer, api.OpAdopt, api.AdoptArgs{Name: "ext0", Queues: 2, Flows: true}, &tp)
	if !tp.Flows || tp.MapBytes != steering.MapBytes(true) || f.k.Filter("ext0") != tp.Index || !exists(filepath.Join(f.pinDir("ext0"), kernel.PinLink)) {
		t.Fatalf("adopted with flows: %+v, filter at %d", tp, f.k.Filter("ext0"))
	}
	f.do(creatorPeer, api.OpFlowAdd, api.FlowAddArgs{Name: "ext0", Rule: api.RuleOf(tcpRule(80, flow.Action{Kind: flow.ActionQueue, Queue: 1})), AutoID: true}, nil)
	tp = api.TAP{}
	f.do(creatorPeer, api.OpAdopt, api.AdoptArgs{Name: "ext1", Queues: 2}, &tp)
	if tp.Flows || f.k.Filter("ext1") != 0 || exists(filepath.Join(f.pinDir("ext1"), kernel.PinLink)) {
		t.Fatalf("adopted without flows: %+v", tp)
	}
	f.fails(creatorPeer, api.OpFlowList, api.FlowListArgs{Name: "ext1"}, api.CodeBadRequest)
	f.restart()
	if l, _ := f.flowSet("ext0"); len(l.Rules) != 1 {
		t.Fatalf("after a restart: %+v", l)
	}
}

// A TAP with thousands of rules: flow_list answers page by page, every
// page well within a message; stats and context show list at most their
// limits and say how many they leave out; a refusal names a few rules.
func TestOpsFlowsMany(t *testing.T) {
	f := newFakeDaemon(t, fakePolicy)
	f.createFlows("t0", 4, ownerPeer.uid)
	d := f.s.taps["t0"]
	set, err := d.pub.Set()
	if err != nil {
		t.Fatal(err)
	}
	const n = 3000
	for i := range n {
		r := tcpRule(uint16(1000+i), flow.Action{Kind: flow.ActionContext, Context: 1})
		r.ID, r.Priority = 1<<31+uint32(i), uint8(i)
		r.Match.SetSrcIP(netip.MustParseAddr("203.0.113.7"), netip.MustParseAddr("255.255.255.255"))
		set.Rules = append(set.Rules, r)
	}
	if err := d.pub.PublishSet(set); err != nil {
		t.Fatal(err)
	}
	seen, pages := map[uint32]bool{}, 0
	for start := 0; ; {
		r, out := f.call(ownerPeer, api.OpFlowList, api.FlowListArgs{Name: "t0", Start: start})
		fd.CloseAll(out)
		if r.Error != nil {
			t.Fatal(r.Error)
		}
		if b, _ := api.Encode(r); len(b) > api.MaxMessageSize-4<<10 {
			t.Fatalf("a page of %d bytes", len(b))
		}
		var l api.FlowList
		json.Unmarshal(r.Result, &l)
		if l.Total != n+1 || l.Start != start {
			t.Fatalf("page at %d: total %d, start %d", start, l.Total, l.Start)
		}
		for _, ri := range l.Rules {
			if seen[ri.ID] {
				t.Fatalf("rule %d on two pages", ri.ID)
			}
			seen[ri.ID] = true
		}
		pages++
		if l.Next == 0 {
			break
		}
		start = l.Next
	}
	if len(seen) != n+1 || pages < 2 {
		t.Fatalf("%d rules in %d pages", len(seen), pages)
	}
	var st api.Stats
	r, _ := f.call(ownerPeer, api.OpStats, api.NameArgs{Name: "t0"})
	json.Unmarshal(r.Result, &st)
	if b, _ := api.Encode(r); len(st.Flows.Rules) != api.MaxStatsRules || st.Flows.RulesOmitted != n+1-api.MaxStatsRules || len(b) > api.MaxMessageSize/2 {
		t.Fatalf("stats: %d rules, %d left out, %d bytes", len(st.Flows.Rules), st.Flows.RulesOmitted, len(b))
	}
	var c api.ContextList
	f.do(ownerPeer, api.OpRSSContextShow, api.ContextArgs{Name: "t0"}, &c)
	if len(c.Contexts[0].Rules) != api.MaxContextRules || c.Contexts[0].RulesOmitted != n-api.MaxContextRules {
		t.Fatalf("context show: %d rules, %d left out", len(c.Contexts[0].Rules), c.Contexts[0].RulesOmitted)
	}
	if msg := f.fails(ownerPeer, api.OpRSSContextDel, api.ContextArgs{Name: "t0", ID: 1}, api.CodeInvalidConfig); !strings.Contains(msg, fmt.Sprintf("and %d more", n-10)) || len(msg) > 500 {
		t.Fatalf("refusal: %s", msg)
	}
}
