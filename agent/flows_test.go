package agent_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/agent/client"
	"github.com/vrss-dev/vrss/flow"
	"github.com/vrss-dev/vrss/internal/frame"
	"github.com/vrss-dev/vrss/internal/inject"
	"github.com/vrss-dev/vrss/rss"
	"github.com/vrss-dev/vrss/steering"
)

// ctxKey is the key of the test's RSS context.
var ctxKey = func() []byte {
	k := make([]byte, 40)
	for i := range k {
		k[i] = byte(i*7 + 3)
	}
	return k
}()

// portRule is a host rule on TCP or UDP over IPv4 to port.
func portRule(proto uint8, port uint16, a flow.Action) flow.Rule {
	return flow.PortRule(0, api.DefaultFlowGroup, 0x0800, proto, port, a)
}

// flowOwnerHelper is the owner of TAP a.Name setting up its flows with the
// client library: an RSS context over queues 2 and 3 (the lowest free id,
// 1), TCP port 5001 to queue 1, UDP port 5002 to the context, TCP port
// 5003 dropped. It reports the rules as FlowList gives them.
func flowOwnerHelper(ctx context.Context, c *client.Client, a helperArgs, res *helperResult) error {
	var na api.NameArgs
	json.Unmarshal(a.Args, &na)
	ci, err := c.RSSContextAdd(ctx, na.Name, 0, rss.Config{HashTypes: rss.AllHashTypes, Key: ctxKey, Table: []uint16{2, 3}, UnclassifiedQueue: 2})
	if err != nil {
		return err
	}
	if ci.ID != 1 {
		return fmt.Errorf("the first context has id %d", ci.ID)
	}
	for _, r := range []flow.Rule{
		portRule(6, 5001, flow.Action{Kind: flow.ActionQueue, Queue: 1}),
		portRule(17, 5002, flow.Action{Kind: flow.ActionContext, Context: ci.ID}),
		portRule(6, 5003, flow.Action{Kind: flow.ActionDrop}),
	} {
		if _, err := c.FlowAdd(ctx, na.Name, r, true, nil); err != nil {
			return err
		}
	}
	l, err := c.FlowList(ctx, na.Name)
	if err != nil {
		return err
	}
	res.Result = mustJSON(l)
	return nil
}

// flowFrames are frames to ports 5001 (TCP), 5002 (UDP), 5003 (TCP) and
// 80 (TCP), every eighth over IPv6, from many sources.
func flowFrames(n int, seed uint64) [][]byte {
	r := rand.New(rand.NewPCG(seed, 7))
	var frames [][]byte
	for i := range n {
		s := frame.Spec{Src: netip.AddrFrom4([4]byte{10, byte(seed), byte(i >> 8), byte(i)}), Dst: netip.MustParseAddr("192.0.2.9"),
			Proto: frame.ProtoTCP, SrcPort: uint16(r.IntN(60000) + 1024), DstPort: []uint16{5001, 5002, 5003, 80}[i%4]}
		if i%4 == 1 {
			s.Proto = frame.ProtoUDP
		}
		if i%8 == 4 {
			s.Src, s.Dst = netip.AddrFrom16([16]byte{0x20, 1, 0xd, 0xb8, 14: byte(seed), 15: byte(i)}), netip.MustParseAddr("2001:db8::9")
		}
		frames = append(frames, frame.Build(s))
	}
	return frames
}

// flowCheck sends frames into the TAP ifindex one by one and reads its
// queues: every frame set keeps must arrive once, on the queue flow.Engine
// predicts, and every frame it drops must be refused at send (the filter's
// drop is the packet socket's ENOBUFS) and never arrive. It returns the
// frames dropped and the hits each rule should have counted.
func (d *daemon) flowCheck(ifindex int, queues []*os.File, set flow.Set, seed uint64) (dropped int, hits map[uint32]uint64) {
	d.t.Helper()
	return d.flowCheckFrames(ifindex, queues, set, flowFrames(400, seed))
}

// flowCheckFrames is flowCheck with the frames given.
func (d *daemon) flowCheckFrames(ifindex int, queues []*os.File, set flow.Set, frames [][]byte) (dropped int, hits map[uint32]uint64) {
	d.t.Helper()
	return d.flowCheckIn(d.inNS, ifindex, queues, set, frames)
}

// flowCheckIn is flowCheckFrames for the TAP ifindex of the network
// namespace in runs its function in (an ifindex is the namespace's own).
func (d *daemon) flowCheckIn(in func(func()), ifindex int, queues []*os.File, set flow.Set, frames [][]byte) (dropped int, hits map[uint32]uint64) {
	d.t.Helper()
	eng, err := flow.NewEngine(set, steering.FlowLimits(len(queues)))
	if err != nil {
		d.t.Fatal(err)
	}
	want := make([]flow.Verdict, len(frames))
	hits = map[uint32]uint64{}
	for i, f := range frames {
		want[i] = eng.Steer(f)
		if want[i].Drop {
			dropped++
		}
		if want[i].Rule >= 0 {
			hits[set.Rules[want[i].Rule].ID]++
		}
	}
	kept := len(frames) - dropped
	var inj *inject.Injector
	in(func() { inj, err = inject.Open(ifindex) })
	if err != nil {
		d.t.Fatal(err)
	}
	defer inj.Close()
	done := make(chan [][][]byte)
	go func() {
		got, err := inject.DrainFiles("flows", queues, 12, kept, 5*time.Second)
		if err != nil {
			d.t.Error(err)
		}
		done <- got
	}()
	for i, f := range frames {
		err := inj.Send(f)
		switch {
		case want[i].Drop && !errors.Is(err, unix.ENOBUFS):
			d.t.Errorf("frame %d: a drop rule takes it, and its send returned %v", i, err)
		case !want[i].Drop && err != nil:
			d.t.Errorf("frame %d: %v", i, err)
		}
		if i%32 == 31 {
			time.Sleep(time.Millisecond) // stay well below a queue's ring
		}
	}
	got := <-done
	late, _ := inject.DrainFiles("flows", queues, 12, 0, 100*time.Millisecond)
	where := map[string][]int{}
	for q := range got {
		for _, f := range append(got[q], late[q]...) {
			where[string(f)] = append(where[string(f)], q)
		}
	}
	bad := 0
	for i, f := range frames {
		qs := where[string(f)]
		if want[i].Drop && len(qs) != 0 || !want[i].Drop && (len(qs) != 1 || qs[0] != int(want[i].Queue)) {
			if bad < 5 {
				d.t.Errorf("frame %d: arrived on %v, engine's verdict %+v", i, qs, want[i])
			}
			bad++
		}
	}
	if bad > 0 {
		d.t.Fatalf("%d of %d frames not where the engine puts them", bad, len(frames))
	}
	return dropped, hits
}

// TestFlows is flow rules and RSS contexts through vrssd, as a VMM's user
// lives them: uid 4242 creates a TAP with flows and sets up a context and
// three rules with the client library; frames land where flow.Engine says
// and the drop rule drops them (counted); another uid is refused
// everything; bad changes are refused and change nothing; a restart (with
// the filter's link pin lost meanwhile) keeps the rules, the counters and
// the dropping; detach and attach take the filter along; delete removes
// every pin.
func TestFlows(t *testing.T) {
	requirePriv(t)
	const alice, bob = 4242, 4343
	d := newDaemon(t, fmt.Sprintf(`{"create": {"uids": [%d, %d]}}`, alice, bob))
	r := d.asUser(alice, "call", helperArgs{Op: api.OpCreate, Args: mustJSON(api.CreateArgs{Name: "fl0", Queues: 4, Flows: true})})
	if r.Error != nil {
		t.Fatalf("create with flows as uid %d: %+v", alice, r)
	}
	var tp api.TAP
	json.Unmarshal(r.Result, &tp)
	if !tp.Flows || tp.MapBytes != steering.MapBytes(true) || !tp.Steering || tp.OwnerUID != alice {
		t.Fatalf("created %+v", tp)
	}
	for _, f := range []string{"prog", "config", "stats", "filter", "flowstats", "jump", "link"} {
		if _, err := os.Stat(filepath.Join(d.bpffsDir, "fl0", f)); err != nil {
			t.Error(err)
		}
	}
	if !strings.Contains(d.stateFile(), `"flows": true`) || !strings.Contains(d.stateFile(), `"version": 3`) {
		t.Errorf("state.json does not record the flows:\n%s", d.stateFile())
	}

	r = d.asUser(alice, "flowowner", helperArgs{Args: mustJSON(api.NameArgs{Name: "fl0"})})
	if r.Error != nil {
		t.Fatalf("the owner's flow setup: %+v", r)
	}
	var owned api.FlowList
	json.Unmarshal(r.Result, &owned)
	var matches []string
	for _, ri := range owned.Rules {
		matches = append(matches, fmt.Sprintf("%d %s: %s", ri.ID, ri.Match, ri.Action))
	}
	if got, want := strings.Join(matches, "; "), "0 ether-type 0x0800 proto 6 dst-port 5001: queue 1; 1 ether-type 0x0800 proto 17 dst-port 5002: context 1; 2 ether-type 0x0800 proto 6 dst-port 5003: drop"; got != want {
		t.Fatalf("the owner lists\n%s\nwant\n%s", got, want)
	}

	// Another uid: every flow operation answered as for no TAP.
	for _, tc := range []struct {
		op   api.Op
		args any
	}{
		{api.OpFlowAdd, api.FlowAddArgs{Name: "fl0", Rule: api.RuleOf(portRule(6, 22, flow.Action{Kind: flow.ActionDrop}))}},
		{api.OpFlowDel, api.FlowDelArgs{Name: "fl0", ID: 2}},
		{api.OpFlowList, api.FlowListArgs{Name: "fl0"}},
		{api.OpRSSContextAdd, api.ContextArgs{Name: "fl0", Config: &rss.Config{Key: rss.DefaultKey, Table: []uint16{0}}}},
		{api.OpRSSContextSet, api.ContextArgs{Name: "fl0", ID: 1, Config: &rss.Config{Key: rss.DefaultKey, Table: []uint16{0}}}},
		{api.OpRSSContextDel, api.ContextArgs{Name: "fl0", ID: 1}},
		{api.OpRSSContextShow, api.ContextArgs{Name: "fl0"}},
	} {
		wantHidden(t, string(tc.op)+" by another uid", d.asUser(bob, "call", helperArgs{Op: tc.op, Args: mustJSON(tc.args)}))
	}

	c := d.dial()
	h, err := c.Open(ctx, "fl0")
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if !h.Publisher.Flows() {
		t.Fatal("the map handed over is not the flow build's")
	}
	// The VMM's mapping reads what the owner set up.
	set, err := h.Publisher.Set()
	if err != nil || len(set.Rules) != 3 || len(set.Contexts) != 1 || !reflect.DeepEqual(set.Default.Table, []uint16{0}) {
		t.Fatalf("the VMM's mapping reads %+v, %v", set, err)
	}
	// Steering: the default configuration spreads the rest over every
	// queue.
	def := rss.Config{HashTypes: rss.AllHashTypes, Key: rss.DefaultKey, Table: rss.EqualTable(128, 4)}
	if _, err := c.SetRSS(ctx, "fl0", def); err != nil {
		t.Fatal(err)
	}
	if set, err = h.Publisher.Set(); err != nil || len(set.Rules) != 3 || !reflect.DeepEqual(set.Default, def) {
		t.Fatalf("set_rss on a TAP with flows: %+v, %v", set, err)
	}
	dropped, hits := d.flowCheck(tp.Index, h.Queues, set, 1)
	checkFlowStats := func(when string, dropped int, hits map[uint32]uint64) {
		t.Helper()
		st, err := c.Stats(ctx, "fl0")
		if err != nil {
			t.Fatal(err)
		}
		if st.Flows == nil || st.Flows.Dropped != uint64(dropped) {
			t.Fatalf("%s: flow stats %+v, want %d dropped", when, st.Flows, dropped)
		}
		for _, rh := range st.Flows.Rules {
			if rh.Hits != hits[rh.ID] {
				t.Errorf("%s: rule %d counted %d hits, want %d", when, rh.ID, rh.Hits, hits[rh.ID])
			}
		}
		l, err := c.FlowList(ctx, "fl0")
		if err != nil || l.Dropped != uint64(dropped) || len(l.Rules) != 3 {
			t.Fatalf("%s: list %+v, %v", when, l, err)
		}
		for _, ri := range l.Rules {
			if ri.Hits != hits[ri.ID] {
				t.Errorf("%s: list: rule %d has %d hits, want %d", when, ri.ID, ri.Hits, hits[ri.ID])
			}
		}
		cl, err := c.RSSContexts(ctx, "fl0", 1)
		if err != nil || len(cl.Contexts) != 1 || !reflect.DeepEqual(cl.Contexts[0].Rules, []uint32{1}) {
			t.Fatalf("%s: contexts %+v, %v", when, cl, err)
		}
		if f := cl.Contexts[0].Frames; f[0] != 0 || f[1] != 0 || f[2]+f[3] != hits[1] || f[2] == 0 || f[3] == 0 {
			t.Errorf("%s: context 1 counted %v on the TAP's queues, want %d on queues 2 and 3", when, f, hits[1])
		}
		t.Logf("%s: %d dropped, hits %v, context 1's frames per queue %v", when, dropped, hits, cl.Contexts[0].Frames)
	}
	checkFlowStats("after the owner's set-up", dropped, hits)

	// Refused changes change nothing: a queue the TAP does not have, a
	// context it does not have, a 17th distinct mask, a context over
	// queue 4.
	before, _ := c.FlowList(ctx, "fl0")
	beforeSet, _ := h.Publisher.Set()
	refused := func(what string, err error) {
		t.Helper()
		wantCode(t, err, api.CodeInvalidConfig)
		after, _ := c.FlowList(ctx, "fl0")
		afterSet, _ := h.Publisher.Set()
		if !reflect.DeepEqual(after.Rules, before.Rules) || !reflect.DeepEqual(afterSet, beforeSet) || after.Generation != before.Generation {
			t.Fatalf("%s was refused (%v) and changed the set", what, err)
		}
		t.Logf("refused %s: %v", what, err)
	}
	_, err = c.FlowAdd(ctx, "fl0", portRule(6, 7000, flow.Action{Kind: flow.ActionQueue, Queue: 4}), true, nil)
	refused("a rule to queue 4 of 4", err)
	_, err = c.FlowAdd(ctx, "fl0", portRule(6, 7000, flow.Action{Kind: flow.ActionContext, Context: 5}), true, nil)
	refused("a rule to context 5", err)
	_, err = c.RSSContextAdd(ctx, "fl0", 0, rss.Config{Key: ctxKey, Table: []uint16{3, 4}})
	refused("a context over queue 4", err)
	err = c.RSSContextDel(ctx, "fl0", 1)
	refused("deleting a context a rule uses", err)
	// Fifteen more masks are fine (the rules have one), a seventeenth is
	// not.
	var added []uint32
	for i := range 15 {
		r := portRule(6, 8000, flow.Action{Kind: flow.ActionQueue, Queue: 0})
		r.Match.SetDstPort(8000, 0xfffe<<uint(i))
		ri, err := c.FlowAdd(ctx, "fl0", r, true, nil)
		if err != nil {
			t.Fatalf("mask %d: %v", i+2, err)
		}
		added = append(added, ri.ID)
	}
	before, _ = c.FlowList(ctx, "fl0")
	beforeSet, _ = h.Publisher.Set()
	r17 := portRule(6, 8000, flow.Action{Kind: flow.ActionQueue, Queue: 0})
	r17.Match.SetSrcPort(1, 0xffff)
	_, err = c.FlowAdd(ctx, "fl0", r17, true, nil)
	refused("a 17th distinct mask", err)
	for _, id := range added {
		if err := c.FlowDel(ctx, "fl0", id); err != nil {
			t.Fatal(err)
		}
	}
	kept, _ := c.FlowList(ctx, "fl0")
	if len(kept.Rules) != 3 || len(kept.Groups) != 1 {
		t.Fatalf("after deleting the masks: %+v", kept)
	}

	// A restart, with the filter's link pin lost while vrssd is stopped
	// (which detaches the filter): the rules stay, and vrssd attaches the
	// filter again. The rule path's program array is pinned: with vrssd
	// stopped that pin alone keeps it filled, and the frames checked
	// below take the rule path.
	c.Close()
	d.stop()
	if err := os.Remove(filepath.Join(d.bpffsDir, "fl0", "link")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(d.bpffsDir, "fl0", "jump")); err != nil {
		t.Fatal(err)
	}
	d.start()
	c = d.dial()
	if !strings.Contains(d.log(), "the flow filter was not attached") {
		t.Error("vrssd did not say it attached the filter again")
	}
	if l, err := c.FlowList(ctx, "fl0"); err != nil || !reflect.DeepEqual(l.Rules, mustRulesWithHits(kept.Rules, l.Rules)) {
		t.Fatalf("after a restart: %+v, %v", l, err)
	}
	set, _ = h.Publisher.Set()
	dropped2, hits2 := d.flowCheck(tp.Index, h.Queues, set, 2)
	for id, n := range hits {
		hits2[id] += n
	}
	checkFlowStats("after a restart", dropped+dropped2, hits2)

	// A crash: nothing is lost either.
	d.kill()
	d.start()
	c = d.dial()
	if l, err := c.FlowList(ctx, "fl0"); err != nil || len(l.Rules) != 3 || l.Dropped != uint64(dropped+dropped2) {
		t.Fatalf("after a crash: %+v, %v", l, err)
	}

	// The rule path's pin lost while vrssd is stopped empties its program
	// array: vrssd, finding the pin gone, steers the TAP anew, rules and
	// all, and frames take the rule path again.
	c.Close()
	d.stop()
	if err := os.Remove(filepath.Join(d.bpffsDir, "fl0", "jump")); err != nil {
		t.Fatal(err)
	}
	d.start()
	c = d.dial()
	if _, err := os.Stat(filepath.Join(d.bpffsDir, "fl0", "jump")); err != nil {
		t.Fatalf("after a restart with the rule path's pin lost: %v", err)
	}
	h.Close()
	if h, err = c.Open(ctx, "fl0"); err != nil {
		t.Fatal(err)
	}
	set, _ = h.Publisher.Set()
	d.flowCheck(tp.Index, h.Queues, set, 3)

	// Detach takes the filter along: frames of the drop rule arrive (on
	// the queue RSS picks, the steering program being detached too only
	// the kernel's own choice); attach brings it back.
	if tp, err := c.Detach(ctx, "fl0"); err != nil || tp.Steering {
		t.Fatalf("detach: %+v, %v", tp, err)
	}
	if _, err := os.Stat(filepath.Join(d.bpffsDir, "fl0", "link")); !os.IsNotExist(err) {
		t.Errorf("the filter's link is pinned after detach: %v", err)
	}
	d.sendDropped(tp.Index, false)
	if _, err := c.Attach(ctx, "fl0"); err != nil {
		t.Fatal(err)
	}
	d.sendDropped(tp.Index, true)

	h.Close()
	if err := c.Delete(ctx, "fl0"); err != nil {
		t.Fatal(err)
	}
	if d.hasIface("fl0") || d.pinDirExists("fl0") || strings.Contains(d.stateFile(), "fl0") {
		t.Fatal("device, pins or state left after delete")
	}
}

// mustRulesWithHits returns want with the hits of got, for comparing
// rules whose counters moved.
func mustRulesWithHits(want, got []api.FlowRuleInfo) []api.FlowRuleInfo {
	out := append([]api.FlowRuleInfo(nil), want...)
	for i := range out {
		if i < len(got) {
			out[i].Hits = got[i].Hits
		}
	}
	return out
}

// sendDropped sends a frame to TCP port 5003 (the drop rule) into the TAP
// and checks that the send is refused, or not.
func (d *daemon) sendDropped(ifindex int, refused bool) {
	d.t.Helper()
	f := frame.Build(frame.Spec{Src: netip.MustParseAddr("10.9.9.9"), Dst: netip.MustParseAddr("192.0.2.9"), Proto: frame.ProtoTCP, SrcPort: 1234, DstPort: 5003})
	d.inNS(func() {
		inj, err := inject.Open(ifindex)
		if err != nil {
			d.t.Fatal(err)
		}
		defer inj.Close()
		err = inj.Send(f)
		if got := errors.Is(err, unix.ENOBUFS); got != refused {
			d.t.Fatalf("a frame for the drop rule: send returned %v, want refused %v", err, refused)
		}
	})
}

// A TAP made without flows refuses every flow and context operation, and
// says why.
func TestFlowsNeedFlows(t *testing.T) {
	d := newDaemon(t, "")
	c := d.dial()
	tp, err := c.Create(ctx, api.CreateArgs{Name: "plain0", Queues: 2})
	if err != nil {
		t.Fatal(err)
	}
	if tp.Flows || tp.MapBytes != steering.MapBytes(false) {
		t.Fatalf("created %+v", tp)
	}
	if _, err := os.Stat(filepath.Join(d.bpffsDir, "plain0", "link")); !os.IsNotExist(err) {
		t.Fatalf("a TAP without flows has a filter link: %v", err)
	}
	for what, err := range map[string]error{
		"flow add": func() error {
			_, err := c.FlowAdd(ctx, "plain0", portRule(6, 1, flow.Action{Kind: flow.ActionDrop}), true, nil)
			return err
		}(),
		"flow del":  c.FlowDel(ctx, "plain0", 0),
		"flow list": func() error { _, err := c.FlowList(ctx, "plain0"); return err }(),
		"context add": func() error {
			_, err := c.RSSContextAdd(ctx, "plain0", 0, rss.Config{Key: rss.DefaultKey, Table: []uint16{0}})
			return err
		}(),
		"context set": func() error {
			_, err := c.RSSContextSet(ctx, "plain0", 1, rss.Config{Key: rss.DefaultKey, Table: []uint16{0}})
			return err
		}(),
		"context del":  c.RSSContextDel(ctx, "plain0", 1),
		"context show": func() error { _, err := c.RSSContexts(ctx, "plain0", 0); return err }(),
	} {
		var ae *api.Error
		if !errors.As(err, &ae) || ae.Code != api.CodeBadRequest || !strings.Contains(ae.Message, steering.ErrNoFlows.Error()) || !strings.Contains(ae.Message, "--flows") {
			t.Errorf("%s on a TAP without flows: %v", what, err)
		}
	}
	if st, err := c.Stats(ctx, "plain0"); err != nil || st.Flows != nil {
		t.Errorf("stats of a TAP without flows: %+v, %v", st, err)
	}
}

// Hundreds of rules through the client: FlowList reads them page by page,
// whole and in order; stats lists the ones with the most hits.
func TestFlowsManyRules(t *testing.T) {
	d := newDaemon(t, "")
	c := d.dial()
	if _, err := c.Create(ctx, api.CreateArgs{Name: "many0", Queues: 2, Flows: true}); err != nil {
		t.Fatal(err)
	}
	const n = 600
	for i := range n {
		r := portRule(17, uint16(10000+i), flow.Action{Kind: flow.ActionQueue, Queue: uint16(i % 2)})
		r.Match.SetSrcIP(netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("ffff:ffff::"))
		r.Match.SetEtherType(0x86dd, 0xffff)
		if _, err := c.FlowAdd(ctx, "many0", r, true, nil); err != nil {
			t.Fatalf("rule %d: %v", i, err)
		}
	}
	l, err := c.FlowList(ctx, "many0")
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Rules) != n || l.Total != n {
		t.Fatalf("%d rules listed of %d", len(l.Rules), l.Total)
	}
	for i, r := range l.Rules {
		if r.ID != uint32(i) || !strings.Contains(r.Match, fmt.Sprintf("dst-port %d", 10000+i)) {
			t.Fatalf("rule %d listed as %+v", i, r)
		}
	}
	st, err := c.Stats(ctx, "many0")
	if err != nil || len(st.Flows.Rules) != api.MaxStatsRules || st.Flows.RulesOmitted != n-api.MaxStatsRules {
		t.Fatalf("stats: %+v, %v", st.Flows, err)
	}
}
