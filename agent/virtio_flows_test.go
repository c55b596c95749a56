package agent_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/vrss-dev/vrss/agent"
	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/flow"
	"github.com/vrss-dev/vrss/internal/frame"
	"github.com/vrss-dev/vrss/rss"
	"github.com/vrss-dev/vrss/steering"
	"github.com/vrss-dev/vrss/virtio"
)

// guestCalls turns guest steps into requests on TAP name.
func guestCalls(name string, steps []agent.GuestStep) []helperCall {
	var calls []helperCall
	for _, st := range steps {
		if st.Ctrl != nil {
			calls = append(calls, helperCall{Op: api.OpVirtioCtrl, Args: mustJSON(api.VirtioCtrlArgs{Name: name, Class: st.Ctrl.Class, Cmd: st.Ctrl.Cmd, Payload: st.Ctrl.Payload})})
		} else {
			calls = append(calls, helperCall{Op: api.OpVirtioAdmin, Args: mustJSON(api.VirtioAdminArgs{Name: name, Command: st.Admin})})
		}
	}
	return calls
}

// guestAs sends steps as uid, a VMM forwarding its guest's commands, and
// checks every answer against its golden bytes.
func (d *daemon) guestAs(uid int, name string, steps []agent.GuestStep) {
	d.t.Helper()
	r := d.asUser(uid, "calls", helperArgs{Calls: guestCalls(name, steps)})
	if r.Error != nil {
		d.t.Fatalf("guest commands as uid %d: %+v", uid, r.Error)
	}
	var results []helperResult
	if err := json.Unmarshal(r.Result, &results); err != nil || len(results) != len(steps) {
		d.t.Fatalf("guest commands: %s, %v", r.Result, err)
	}
	for i, st := range steps {
		if results[i].Error != nil {
			d.t.Fatalf("%s: %+v", st.Name, results[i].Error)
		}
		if st.Ctrl != nil {
			var cr api.VirtioCtrlResult
			json.Unmarshal(results[i].Result, &cr)
			if cr.Ack != st.Ack || !bytes.Equal(cr.Reply, st.Reply) {
				d.t.Fatalf("%s: ack %d reply % x (%s), want %d % x", st.Name, cr.Ack, cr.Reply, cr.Message, st.Ack, st.Reply)
			}
			continue
		}
		var ar api.VirtioAdminResult
		json.Unmarshal(results[i].Result, &ar)
		if !bytes.Equal(ar.Result, st.Result) {
			d.t.Fatalf("%s: result\n% x (%s)\nwant\n% x", st.Name, ar.Result, ar.Message, st.Result)
		}
	}
}

// guestFrames are frames to the host's ports (5001 queue 1, 5002 context
// 1, 5003 dropped), the guest's (6001 queue 1, 6003 dropped) and others,
// over IPv4 and, every fifth, IPv6 (which the guest's IPv4 rules never
// take).
func guestFrames(n int, seed uint64) [][]byte {
	r := rand.New(rand.NewPCG(seed, 11))
	ports := []uint16{5001, 5002, 5003, 6001, 6003, 80, 6002}
	var frames [][]byte
	for i := range n {
		s := frame.Spec{Src: netip.AddrFrom4([4]byte{10, byte(seed), byte(i >> 8), byte(i)}), Dst: netip.MustParseAddr("192.0.2.9"),
			Proto: frame.ProtoTCP, SrcPort: uint16(r.IntN(60000) + 1024), DstPort: ports[i%len(ports)]}
		if s.DstPort == 5002 {
			s.Proto = frame.ProtoUDP
		}
		if i%5 == 2 {
			s.Src, s.Dst = netip.AddrFrom16([16]byte{0x20, 1, 0xd, 0xb8, 14: byte(seed), 15: byte(i)}), netip.MustParseAddr("2001:db8::9")
		}
		frames = append(frames, frame.Build(s))
	}
	return frames
}

// guestVerdicts counts what the guest's rules do to frames under set:
// frames they steer and frames they drop.
func guestVerdicts(t *testing.T, set flow.Set, frames [][]byte) (steered, dropped int) {
	t.Helper()
	eng, err := flow.NewEngine(set, steering.FlowLimits(4))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range frames {
		v := eng.Steer(f)
		if v.Rule >= 0 && set.Rules[v.Rule].Group&api.GuestGroupBit != 0 {
			if v.Drop {
				dropped++
			} else {
				steered++
			}
		}
	}
	return steered, dropped
}

// TestVirtioFlows is a guest's own flow filters and RSS context through
// vrssd, beside the host's: uid 4242 owns a TAP with flows and sets up
// host rules, then, as its VMM, forwards its guest's commands (the
// capabilities, a group, an IPv4/TCP classifier, a rule to receive
// virtqueue index 2, a drop rule, a context over queues 2 and 3), each
// answered with its golden bytes; frames land where flow.Engine puts them
// for the merged set; another uid is refused; a guest command the merged
// set cannot take is answered ENOSPC and changes nothing; a restart and a
// crash keep the guest's state (the same answers, the same steering);
// virtio_reset clears it.
func TestVirtioFlows(t *testing.T) {
	requirePriv(t)
	const alice, bob = 4242, 4343
	d := newDaemon(t, fmt.Sprintf(`{"create": {"uids": [%d, %d]}}`, alice, bob))
	r := d.asUser(alice, "call", helperArgs{Op: api.OpCreate, Args: mustJSON(api.CreateArgs{Name: "vf0", Queues: 4, Flows: true})})
	if r.Error != nil {
		t.Fatalf("create: %+v", r)
	}
	var tp api.TAP
	json.Unmarshal(r.Result, &tp)
	if r := d.asUser(alice, "flowowner", helperArgs{Args: mustJSON(api.NameArgs{Name: "vf0"})}); r.Error != nil {
		t.Fatalf("the owner's host rules: %+v", r)
	}
	d.guestAs(alice, "vf0", agent.GuestSequence())
	guestFile := filepath.Join(d.stateDir, "flows", "vf0.guest.json")
	if _, err := os.Stat(guestFile); err != nil {
		t.Fatal(err)
	}

	// Another uid: every guest operation answered as for no TAP.
	for _, call := range append(guestCalls("vf0", agent.GuestSequence()[:2]), helperCall{Op: api.OpVirtioReset, Args: mustJSON(api.NameArgs{Name: "vf0"})}) {
		wantHidden(t, string(call.Op)+" by another uid", d.asUser(bob, "call", helperArgs{Op: call.Op, Args: call.Args}))
	}

	c := d.dial()
	h, err := c.Open(ctx, "vf0")
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	def := rss.Config{HashTypes: rss.AllHashTypes, Key: rss.DefaultKey, Table: rss.EqualTable(128, 4)}
	if _, err := c.SetRSS(ctx, "vf0", def); err != nil {
		t.Fatal(err)
	}
	// The merged set, as the map holds it: the host's context 1 and
	// rules, the guest's group, rules and context 5.
	set, err := h.Publisher.Set()
	if err != nil {
		t.Fatal(err)
	}
	var groups, contexts []string
	for _, g := range set.Groups {
		groups = append(groups, fmt.Sprintf("%d/%d/%v", g.ID, g.Priority, g.Host))
	}
	for _, cx := range set.Contexts {
		contexts = append(contexts, fmt.Sprint(cx.ID))
	}
	if got := strings.Join(groups, " ") + "; " + strings.Join(contexts, " "); got != "0/0/true 2147483648/1/false; 1 5" || len(set.Rules) != 5 {
		t.Fatalf("the merged set: %s, %d rules", got, len(set.Rules))
	}
	l, err := c.FlowList(ctx, "vf0")
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, ri := range l.Rules {
		listed = append(listed, fmt.Sprintf("%d/%d %v %s: %s", ri.Group, ri.ID, ri.Host, ri.Match, ri.Action))
	}
	if got, want := strings.Join(listed, "; "), "0/0 true ether-type 0x0800 proto 6 dst-port 5001: queue 1; 0/1 true ether-type 0x0800 proto 17 dst-port 5002: context 1; 0/2 true ether-type 0x0800 proto 6 dst-port 5003: drop; "+
		"2147483648/0 false ether-type 0x0800 proto 6 dst-port 6001: queue 1; 2147483648/1 false ether-type 0x0800 proto 6 dst-port 6003: drop"; got != want {
		t.Fatalf("flow list:\n%s\nwant\n%s", got, want)
	}
	cl, err := c.RSSContexts(ctx, "vf0", 5)
	if err != nil || len(cl.Contexts) != 1 || !cl.Contexts[0].Guest || !reflect.DeepEqual(cl.Contexts[0].Config, agent.GuestContext.Config) {
		t.Fatalf("the guest's context: %+v, %v", cl, err)
	}
	frames := guestFrames(420, 1)
	if steered, dropped := guestVerdicts(t, set, frames); steered == 0 || dropped == 0 {
		t.Fatalf("the guest's rules steer %d and drop %d of the frames", steered, dropped)
	}
	d.flowCheckFrames(tp.Index, h.Queues, set, frames)

	// A guest command the merged set cannot take: with 62 more host
	// groups, the host's 63 and the guest's one fill the map's 64, and
	// the guest's second group is refused ENOSPC; nothing changes.
	for g := uint32(1); g < flow.MaxGroups-1; g++ {
		r := portRule(6, uint16(g), flow.Action{Kind: flow.ActionDrop})
		r.Group = g
		if _, err := c.FlowAdd(ctx, "vf0", r, true, ptrTo16(uint16(g))); err != nil {
			t.Fatalf("host group %d: %v", g, err)
		}
	}
	before, _ := h.Publisher.Set()
	beforeGen := h.Publisher.Generation()
	beforeFile, _ := os.ReadFile(guestFile)
	d.guestAs(alice, "vf0", []agent.GuestStep{
		{Name: "a 65th group", Admin: agent.ObjCmd(virtio.AdminCmdResourceObjCreate, virtio.ObjFFGroup, 1, &virtio.FFGroup{Priority: 2}), Result: agent.GuestResultNoSpace},
		{Name: "QUERY of the refused group", Admin: agent.ObjCmd(virtio.AdminCmdResourceObjQuery, virtio.ObjFFGroup, 1, nil), Result: agent.Unhex("0600 0300 00000000")},
	})
	after, _ := h.Publisher.Set()
	afterFile, _ := os.ReadFile(guestFile)
	if !reflect.DeepEqual(after, before) || h.Publisher.Generation() != beforeGen || !bytes.Equal(afterFile, beforeFile) {
		t.Fatal("the refused guest command changed the set or the guest file")
	}
	for g := uint32(1); g < flow.MaxGroups-1; g++ {
		l, _ := c.FlowList(ctx, "vf0")
		for _, ri := range l.Rules {
			if ri.Group == g {
				if err := c.FlowDel(ctx, "vf0", ri.ID); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	set, _ = h.Publisher.Set()
	if len(set.Groups) != 2 || len(set.Rules) != 5 {
		t.Fatalf("after deleting the host groups: %d groups, %d rules", len(set.Groups), len(set.Rules))
	}

	// A restart: the guest's device is rebuilt from its file; it answers
	// as before, and the map, which outlived vrssd, is as it was.
	query := []agent.GuestStep{{Name: "QUERY rule 0", Admin: agent.GuestQueryRule0, Result: agent.GuestQueryRule0Result}}
	c.Close()
	d.stop()
	d.start()
	c = d.dial()
	d.guestAs(alice, "vf0", query)
	if again, _ := h.Publisher.Set(); !reflect.DeepEqual(again, set) {
		t.Fatalf("after a restart the set is\n%+v\nwas\n%+v", again, set)
	}
	if strings.Contains(d.log(), "published the saved state again") {
		t.Fatal("vrssd published the guest's state again at a clean start: the map's copy reads back differently")
	}
	d.flowCheckFrames(tp.Index, h.Queues, set, guestFrames(420, 2))
	// A crash: the same.
	d.kill()
	d.start()
	c = d.dial()
	d.guestAs(alice, "vf0", query)
	// The guest deletes its drop rule: the frames to 6003 pass.
	d.guestAs(alice, "vf0", []agent.GuestStep{{Name: "destroy rule 1", Admin: agent.AdminCmd(virtio.AdminCmdResourceObjDestroy, agent.Unhex("0202 0000 01000000")), Result: agent.Unhex("0000 0000 00000000")}})
	set, _ = h.Publisher.Set()
	if _, dropped := guestVerdicts(t, set, frames); dropped != 0 || len(set.Rules) != 4 {
		t.Fatalf("after destroying the drop rule: %d rules, %d guest drops", len(set.Rules), dropped)
	}
	d.flowCheckFrames(tp.Index, h.Queues, set, guestFrames(420, 3))

	// virtio_reset: the host's rules alone steer; the guest's device is
	// fresh, and its file gone.
	if r := d.asUser(alice, "call", helperArgs{Op: api.OpVirtioReset, Args: mustJSON(api.NameArgs{Name: "vf0"})}); r.Error != nil {
		t.Fatalf("virtio_reset: %+v", r.Error)
	}
	set, _ = h.Publisher.Set()
	if len(set.Groups) != 1 || !set.Groups[0].Host || len(set.Rules) != 3 || len(set.Contexts) != 1 {
		t.Fatalf("after virtio_reset: %+v", set)
	}
	if _, err := os.Stat(guestFile); !os.IsNotExist(err) {
		t.Fatalf("the guest file after virtio_reset: %v", err)
	}
	d.guestAs(alice, "vf0", []agent.GuestStep{{Name: "QUERY after the reset", Admin: agent.GuestQueryRule0, Result: agent.GuestResultNoOpcode}})
	d.flowCheckFrames(tp.Index, h.Queues, set, guestFrames(420, 4))

	h.Close()
	if err := c.Delete(ctx, "vf0"); err != nil {
		t.Fatal(err)
	}
}

func ptrTo16(v uint16) *uint16 { return &v }
