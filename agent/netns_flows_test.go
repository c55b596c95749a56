package agent_test

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/agent/client"
	"github.com/vrss-dev/vrss/flow"
	"github.com/vrss-dev/vrss/internal/netnstest"
	"github.com/vrss-dev/vrss/rss"
)

// TestNetnsFlows: a TAP with flows in vrssd's namespace and one of the same
// name in a named namespace, each with its own rules, steer and drop by
// their own set (frames injected into each land where flow.Engine puts
// them for that set; drops are refused and counted); a restart keeps both
// sets and the namespace's filter, lost pins are steered anew from the
// namespace's own flows file, a detach of that filter behind vrssd's back
// is undone; another uid finds neither TAP, and the owner adds rules to
// its own in the namespace.
func TestNetnsFlows(t *testing.T) {
	const owner, stranger = 4711, 4712
	d := newDaemon(t, "")
	pod := netnstest.Named(t)
	inPod := func(fn func()) {
		if err := netnstest.In(pod, func() error { fn(); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	var st unix.Stat_t
	if err := unix.Stat(pod, &st); err != nil {
		t.Fatal(err)
	}
	podKey := "fl0:netns" + strconv.FormatUint(st.Ino, 10)
	c := d.dial()
	ctx := context.Background()
	own, inNS := c.Netns(""), c.Netns(pod)
	def := rss.Config{HashTypes: rss.AllHashTypes, Key: rss.DefaultKey, Table: rss.EqualTable(128, 4)}
	index := map[string]int{}
	for _, ns := range []string{"", pod} {
		n := c.Netns(ns)
		tp, err := c.Create(ctx, api.CreateArgs{Name: "fl0", Queues: 4, Flows: true, OwnerUID: ptr(owner), OwnerGID: ptr(owner), Netns: ns})
		if err != nil {
			t.Fatalf("create fl0 with flows in %q: %v", ns, err)
		}
		if !tp.Flows || !tp.Steering || tp.Netns != ns {
			t.Fatalf("created %+v", tp)
		}
		index[ns] = tp.Index
		if _, err := n.SetRSS(ctx, "fl0", def); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"prog", "filter", "link"} {
		if _, err := os.Stat(filepath.Join(d.bpffsDir, podKey, f)); err != nil {
			t.Error(err)
		}
	}

	// Different rules on each: vrssd's own TAP takes TCP 5001 to queue 1
	// and drops TCP 5003; the namespace's sends UDP 5002 to a context over
	// queues 2 and 3, TCP 5001 to queue 3 and drops TCP 80, the last two
	// added by the owner.
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	_, err := own.FlowAdd(ctx, "fl0", portRule(6, 5001, flow.Action{Kind: flow.ActionQueue, Queue: 1}), true, nil)
	must("own: rule 5001", err)
	_, err = own.FlowAdd(ctx, "fl0", portRule(6, 5003, flow.Action{Kind: flow.ActionDrop}), true, nil)
	must("own: rule 5003", err)
	ci, err := inNS.RSSContextAdd(ctx, "fl0", 0, rss.Config{HashTypes: rss.AllHashTypes, Key: ctxKey, Table: []uint16{2, 3}, UnclassifiedQueue: 2})
	must("pod: context", err)
	_, err = inNS.FlowAdd(ctx, "fl0", portRule(17, 5002, flow.Action{Kind: flow.ActionContext, Context: ci.ID}), true, nil)
	must("pod: rule 5002", err)
	for _, r := range []flow.Rule{
		portRule(6, 5001, flow.Action{Kind: flow.ActionQueue, Queue: 3}),
		portRule(6, 80, flow.Action{Kind: flow.ActionDrop}),
	} {
		res := d.asUser(owner, "call", helperArgs{Op: api.OpFlowAdd, Args: mustJSON(api.FlowAddArgs{Name: "fl0", Netns: pod, Rule: api.RuleOf(r), AutoID: true})})
		if res.Error != nil {
			t.Fatalf("the owner's flow_add in the namespace: %+v", res)
		}
	}
	matches := func(n *client.Netns) string {
		t.Helper()
		l, err := n.FlowList(ctx, "fl0")
		if err != nil {
			t.Fatal(err)
		}
		var m []string
		for _, ri := range l.Rules {
			m = append(m, ri.Match+": "+ri.Action)
		}
		return strings.Join(m, "; ")
	}
	wantOwn := "ether-type 0x0800 proto 6 dst-port 5001: queue 1; ether-type 0x0800 proto 6 dst-port 5003: drop"
	wantPod := "ether-type 0x0800 proto 17 dst-port 5002: context 1; ether-type 0x0800 proto 6 dst-port 5001: queue 3; ether-type 0x0800 proto 6 dst-port 80: drop"
	checkLists := func(when string) {
		t.Helper()
		if got := matches(own); got != wantOwn {
			t.Fatalf("%s: vrssd's own fl0 lists %s, want %s", when, got, wantOwn)
		}
		if got := matches(inNS); got != wantPod {
			t.Fatalf("%s: the namespace's fl0 lists %s, want %s", when, got, wantPod)
		}
	}
	checkLists("after set-up")

	// Another uid finds neither TAP; every flow operation is answered as
	// for none.
	for _, ns := range []string{"", pod} {
		for _, tc := range []struct {
			op   api.Op
			args any
		}{
			{api.OpFlowAdd, api.FlowAddArgs{Name: "fl0", Netns: ns, Rule: api.RuleOf(portRule(6, 22, flow.Action{Kind: flow.ActionDrop}))}},
			{api.OpFlowDel, api.FlowDelArgs{Name: "fl0", Netns: ns, ID: 0}},
			{api.OpFlowList, api.FlowListArgs{Name: "fl0", Netns: ns}},
			{api.OpRSSContextShow, api.ContextArgs{Name: "fl0", Netns: ns}},
			{api.OpRSSContextDel, api.ContextArgs{Name: "fl0", Netns: ns, ID: 1}},
			{api.OpVirtioReset, api.NameArgs{Name: "fl0", Netns: ns}},
		} {
			wantHidden(t, string(tc.op)+" by another uid in "+ns, d.asUser(stranger, "call", helperArgs{Op: tc.op, Args: mustJSON(tc.args)}))
		}
	}
	if res := d.asUser(owner, "call", helperArgs{Op: api.OpRSSContextShow, Args: mustJSON(api.ContextArgs{Name: "fl0", Netns: pod})}); res.Error != nil {
		t.Fatalf("the owner's rss_context_show in the namespace: %+v", res)
	}

	// Frames: each TAP steers and drops by its own set.
	type tapQ struct {
		ns string
		in func(func())
		n  *client.Netns
		h  *client.Handle
	}
	taps := []*tapQ{{ns: "", in: d.inNS}, {ns: pod, in: inPod}}
	reopen := func() {
		t.Helper()
		for _, tq := range taps {
			tq.n = c.Netns(tq.ns)
			if tq.h != nil {
				tq.h.Close()
			}
			if tq.h, err = tq.n.Open(ctx, "fl0"); err != nil {
				t.Fatal(err)
			}
		}
	}
	reopen()
	defer func() {
		for _, tq := range taps {
			tq.h.Close()
		}
	}()
	totals := make([]int, len(taps))
	check := func(when string, seed uint64) {
		t.Helper()
		for i, tq := range taps {
			set, err := tq.h.Publisher.Set()
			if err != nil {
				t.Fatal(err)
			}
			frames := flowFrames(200, seed+uint64(i)*100)
			// Port 80 is every fourth frame's: the namespace's drop.
			dropped, _ := d.flowCheckIn(tq.in, index[tq.ns], tq.h.Queues, set, frames)
			if dropped == 0 {
				t.Fatalf("%s: no frame of the check is dropped by TAP %d's rules", when, i)
			}
			totals[i] += dropped
			stats, err := tq.n.Stats(ctx, "fl0")
			if err != nil {
				t.Fatal(err)
			}
			if stats.Flows == nil || stats.Flows.Dropped != uint64(totals[i]) {
				t.Fatalf("%s: TAP %d's flow stats %+v, want %d dropped", when, i, stats.Flows, totals[i])
			}
			t.Logf("%s: fl0 in %q: %d frames dropped of %d, %d in all", when, tq.ns, dropped, len(frames), totals[i])
		}
	}
	check("after set-up", 1)

	// A restart keeps both sets, and the namespace's filter drops.
	c.Close()
	d.stop()
	for _, f := range []string{"fl0.json", podKey + ".json"} {
		if _, err := os.Stat(filepath.Join(d.stateDir, "flows", f)); err != nil {
			t.Errorf("flows file after a stop: %v", err)
		}
	}
	d.start()
	c = d.dial()
	own, inNS = c.Netns(""), c.Netns(pod)
	checkLists("after a restart")
	reopen()
	check("after a restart", 2)

	// The namespace's pins lost while vrssd is stopped: it steers that TAP
	// anew from the namespace's own flows file, filter and all.
	c.Close()
	d.stop()
	if err := os.RemoveAll(filepath.Join(d.bpffsDir, podKey)); err != nil {
		t.Fatal(err)
	}
	d.start()
	c = d.dial()
	own, inNS = c.Netns(""), c.Netns(pod)
	if !strings.Contains(d.log(), "steered it anew") {
		t.Error("vrssd did not say it steered the namespace's TAP anew")
	}
	checkLists("after losing the namespace's pins")
	reopen()
	totals[1] = 0 // new counters
	check("after losing the namespace's pins", 3)

	// The namespace's filter detached behind vrssd's back: attached again
	// within seconds.
	before := strings.Count(d.log(), "the flow filter was not attached")
	l, err := link.LoadPinnedLink(filepath.Join(d.bpffsDir, podKey, "link"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Detach(); err != nil {
		t.Fatal(err)
	}
	l.Close()
	waitFor(t, "the namespace's filter attached again", func() bool {
		return strings.Count(d.log(), "the flow filter was not attached") > before
	})
	check("after a detach behind vrssd's back", 4)

	// The guest's virtio reset and a context change reach the
	// namespace's TAP by its path.
	if err := inNS.VirtioReset(ctx, "fl0"); err != nil {
		t.Fatal(err)
	}
	if _, err := inNS.RSSContextSet(ctx, "fl0", ci.ID, rss.Config{HashTypes: rss.AllHashTypes, Key: ctxKey, Table: []uint16{3}}); err != nil {
		t.Fatal(err)
	}
	if cl, err := inNS.RSSContexts(ctx, "fl0", ci.ID); err != nil || !reflect.DeepEqual(cl.Contexts[0].Config.Table, []uint16{3}) {
		t.Fatalf("the namespace's context after set: %+v, %v", cl, err)
	}
	if cl, err := own.RSSContexts(ctx, "fl0", 0); err != nil || len(cl.Contexts) != 0 {
		t.Fatalf("vrssd's own fl0 has contexts: %+v, %v", cl, err)
	}

	// Delete: the namespace's TAP goes with its pins and files; the
	// other stays.
	taps[1].h.Close()
	if err := inNS.Delete(ctx, "fl0"); err != nil {
		t.Fatal(err)
	}
	taps = taps[:1]
	if _, err := os.Stat(filepath.Join(d.bpffsDir, podKey)); !os.IsNotExist(err) {
		t.Errorf("the namespace's pins after delete: %v", err)
	}
	if _, err := os.Stat(filepath.Join(d.stateDir, "flows", podKey+".json")); !os.IsNotExist(err) {
		t.Errorf("the namespace's flows file after delete: %v", err)
	}
	if got := matches(own); got != wantOwn {
		t.Fatalf("vrssd's own fl0 after the namespace's was deleted: %s", got)
	}
}
