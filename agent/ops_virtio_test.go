package agent

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/flow"
	"github.com/vrss-dev/vrss/internal/fd"
	"github.com/vrss-dev/vrss/rss"
	"github.com/vrss-dev/vrss/steering"
	"github.com/vrss-dev/vrss/virtio"
)

// A guest's virtio commands on the fake kernel: the namespaces of the
// merged set, host operations that keep the guest's part, refusals that
// change nothing, the guest file across restarts, and reset.

// guestStep sends one step of a guest's sequence as p and checks its
// golden answer.
func (f *fakeDaemon) guestStep(p *peer, name string, st GuestStep) {
	f.t.Helper()
	if st.Ctrl != nil {
		var r api.VirtioCtrlResult
		f.do(p, api.OpVirtioCtrl, api.VirtioCtrlArgs{Name: name, Class: st.Ctrl.Class, Cmd: st.Ctrl.Cmd, Payload: st.Ctrl.Payload}, &r)
		if r.Ack != st.Ack || !bytes.Equal(r.Reply, st.Reply) {
			f.t.Fatalf("%s: ack %d reply % x (%s), want %d % x", st.Name, r.Ack, r.Reply, r.Message, st.Ack, st.Reply)
		}
		return
	}
	r := f.admin(p, name, st.Admin)
	if !bytes.Equal(r.Result, st.Result) {
		f.t.Fatalf("%s: result\n% x (%s)\nwant\n% x", st.Name, r.Result, r.Message, st.Result)
	}
}

func (f *fakeDaemon) admin(p *peer, name string, cmd []byte) api.VirtioAdminResult {
	f.t.Helper()
	var r api.VirtioAdminResult
	f.do(p, api.OpVirtioAdmin, api.VirtioAdminArgs{Name: name, Command: cmd}, &r)
	return r
}

// mapSet reads TAP name's whole set from its map.
func (f *fakeDaemon) mapSet(name string) flow.Set {
	f.t.Helper()
	set, err := f.s.taps[name].pub.Set()
	if err != nil {
		f.t.Fatal(err)
	}
	return set
}

// wantGuest checks the guest's part of TAP name's set: group 0 (priority
// 1) with rules 0 and 1, and context 1 as context 5.
func (f *fakeDaemon) wantGuest(name string) {
	f.t.Helper()
	_, guest := split(f.mapSet(name))
	g := GuestGroup(0)
	if len(guest.Groups) != 1 || guest.Groups[0] != (flow.Group{ID: g, Priority: 1}) {
		f.t.Fatalf("guest groups %+v", guest.Groups)
	}
	if len(guest.Rules) != 2 || guest.Rules[0].Group != g || guest.Rules[1].Group != g || guest.Rules[0].ID != 0 || guest.Rules[1].ID != 1 ||
		guest.Rules[0].Action != (flow.Action{Kind: flow.ActionQueue, Queue: 1}) || guest.Rules[1].Action.Kind != flow.ActionDrop ||
		guest.Rules[0].Match.String() != "ether-type 0x0800 proto 6 dst-port 6001" {
		f.t.Fatalf("guest rules %+v", guest.Rules)
	}
	if len(guest.Contexts) != 1 || guest.Contexts[0].ID != 5 || !reflect.DeepEqual(guest.Contexts[0].Config, GuestContext.Config) {
		f.t.Fatalf("guest contexts %+v", guest.Contexts)
	}
}

func TestOpsVirtio(t *testing.T) {
	f := newFakeDaemon(t, fakePolicy)
	f.createFlows("t0", 4, ownerPeer.uid)
	f.create("plain0", 2, ownerPeer.uid)
	for _, st := range GuestSequence() {
		f.guestStep(ownerPeer, "t0", st)
	}
	f.wantGuest("t0")
	if !exists(guestPath(f.opts.StateDir, "t0")) {
		t.Fatal("no guest file")
	}

	// flow_list shows the guest's rules as the guest's, after the
	// host's; rule ids are per group, so host rule 0 and guest rule 0
	// live side by side.
	l, c := f.flowSet("t0")
	var got []string
	for _, r := range l.Rules {
		got = append(got, strings.Join([]string{jsonString(r.Group), jsonString(r.ID), jsonString(r.Host), r.Action}, " "))
	}
	if want := []string{"0 0 true queue 1", "2147483648 0 false queue 1", "2147483648 1 false drop"}; !slices.Equal(got, want) {
		t.Fatalf("flow_list: %q, want %q", got, want)
	}
	if len(c.Contexts) != 2 || c.Contexts[0].ID != 1 || c.Contexts[0].Guest || c.Contexts[1].ID != 5 || !c.Contexts[1].Guest {
		t.Fatalf("contexts %+v", c.Contexts)
	}

	// Host changes keep the guest's part.
	var ri api.FlowRuleInfo
	f.do(ownerPeer, api.OpFlowAdd, api.FlowAddArgs{Name: "t0", Rule: api.RuleOf(tcpRule(22, flow.Action{Kind: flow.ActionDrop})), AutoID: true}, &ri)
	if ri.ID != 1 || !ri.Host {
		t.Fatalf("host rule added as %+v: host ids skip only the host's", ri)
	}
	f.do(ownerPeer, api.OpFlowDel, api.FlowDelArgs{Name: "t0", ID: 0}, nil)
	var ci api.ContextInfo
	f.do(ownerPeer, api.OpRSSContextAdd, api.ContextArgs{Name: "t0", Config: &rss.Config{Key: rss.DefaultKey, Table: []uint16{1}}}, &ci)
	if ci.ID != 2 {
		t.Fatalf("host context %d", ci.ID)
	}
	cfg := testConfig(4)
	f.do(ownerPeer, api.OpSetRSS, api.SetRSSArgs{Name: "t0", Config: &cfg}, nil)
	f.wantGuest("t0")
	if set := f.mapSet("t0"); !reflect.DeepEqual(set.Default, cfg) {
		t.Fatalf("default %+v", set.Default)
	}

	// The host may not take the guest's ids, nor touch its objects.
	for _, tc := range []struct {
		op        api.Op
		args      any
		code      api.Code
		mentioned string
	}{
		{api.OpFlowAdd, api.FlowAddArgs{Name: "t0", Rule: func() api.FlowRule {
			r := tcpRule(1, flow.Action{Kind: flow.ActionDrop})
			r.Group = 1 << 31
			return api.RuleOf(r)
		}(), AutoID: true}, api.CodeBadRequest, "groups 2147483648 and up are the guest's"},
		{api.OpFlowAdd, api.FlowAddArgs{Name: "t0", Rule: func() api.FlowRule {
			r := tcpRule(1, flow.Action{Kind: flow.ActionDrop})
			r.Group = GuestGroup(0)
			return api.RuleOf(r)
		}(), AutoID: true}, api.CodeBadRequest, "the guest's"},
		{api.OpFlowAdd, api.FlowAddArgs{Name: "t0", Rule: api.RuleOf(tcpRule(1, flow.Action{Kind: flow.ActionContext, Context: 5})), AutoID: true}, api.CodeInvalidConfig, "context 5 is the guest's"},
		{api.OpFlowDel, api.FlowDelArgs{Name: "t0", ID: 0}, api.CodeBadRequest, "the guest's group 2147483648"},
		{api.OpRSSContextAdd, api.ContextArgs{Name: "t0", ID: 6, Config: &rss.Config{Key: rss.DefaultKey, Table: []uint16{0}}}, api.CodeInvalidConfig, "host contexts are 1 to 4"},
		{api.OpRSSContextSet, api.ContextArgs{Name: "t0", ID: 5, Config: &rss.Config{Key: rss.DefaultKey, Table: []uint16{0}}}, api.CodeInvalidConfig, "5 to 8 are the guest's"},
		{api.OpRSSContextDel, api.ContextArgs{Name: "t0", ID: 5}, api.CodeInvalidConfig, "5 to 8 are the guest's"},
		// Requests that never reach the device.
		{api.OpVirtioAdmin, api.VirtioAdminArgs{Name: "t0", Command: make([]byte, api.MaxVirtioCommand+1)}, api.CodeBadRequest, "at most 16384"},
		{api.OpVirtioCtrl, api.VirtioCtrlArgs{Name: "t0", Class: 9, Payload: make([]byte, api.MaxVirtioCommand+1)}, api.CodeBadRequest, "at most 16384"},
		{api.OpVirtioCtrl, api.VirtioCtrlArgs{Name: "plain0", Class: 9}, api.CodeBadRequest, steering.ErrNoFlows.Error()},
		{api.OpVirtioAdmin, api.VirtioAdminArgs{Name: "plain0"}, api.CodeBadRequest, steering.ErrNoFlows.Error()},
		{api.OpVirtioReset, api.NameArgs{Name: "plain0"}, api.CodeBadRequest, "--flows"},
	} {
		before := f.mapSet("t0")
		msg := f.fails(ownerPeer, tc.op, tc.args, tc.code)
		if !strings.Contains(msg, tc.mentioned) {
			t.Errorf("%s %+v: %q, want it to mention %q", tc.op, tc.args, msg, tc.mentioned)
		}
		if after := f.mapSet("t0"); !reflect.DeepEqual(after, before) {
			t.Errorf("%s was refused and changed the set", tc.op)
		}
	}
	// Host contexts fill 1 to 4, never the guest's ids.
	for want := uint16(3); want <= 4; want++ {
		f.do(ownerPeer, api.OpRSSContextAdd, api.ContextArgs{Name: "t0", Config: &rss.Config{Key: rss.DefaultKey, Table: []uint16{1}}}, &ci)
		if ci.ID != want {
			t.Fatalf("host context %d, want %d", ci.ID, want)
		}
	}
	if msg := f.fails(ownerPeer, api.OpRSSContextAdd, api.ContextArgs{Name: "t0", Config: &rss.Config{Key: rss.DefaultKey, Table: []uint16{1}}}, api.CodeInvalidConfig); !strings.Contains(msg, "5 to 8 are the guest's") {
		t.Errorf("a fifth host context: %s", msg)
	}

	// A guest command the merged set cannot take: the host's groups and
	// the guest's together fill the map's 64; the guest's second group
	// is answered ENOSPC, and nothing changes.
	for g := uint32(1); g < flow.MaxGroups-1; g++ {
		r := tcpRule(uint16(g), flow.Action{Kind: flow.ActionDrop})
		r.Group = g
		f.do(rootPeer, api.OpFlowAdd, api.FlowAddArgs{Name: "t0", Rule: api.RuleOf(r), AutoID: true, GroupPriority: ptrTo16(uint16(g))}, nil)
	}
	before, beforeFile := f.mapSet("t0"), readFile(t, guestPath(f.opts.StateDir, "t0"))
	if n := len(before.Groups); n != flow.MaxGroups {
		t.Fatalf("%d groups", n)
	}
	r := f.admin(ownerPeer, "t0", ObjCmd(virtio.AdminCmdResourceObjCreate, virtio.ObjFFGroup, 1, &virtio.FFGroup{Priority: 2}))
	if !bytes.Equal(r.Result, GuestResultNoSpace) || !strings.Contains(r.Message, "65 groups, at most 64") {
		t.Fatalf("a 65th group: % x (%s)", r.Result, r.Message)
	}
	if after := f.mapSet("t0"); !reflect.DeepEqual(after, before) {
		t.Fatal("the refused group changed the set")
	}
	if after := readFile(t, guestPath(f.opts.StateDir, "t0")); after != beforeFile {
		t.Fatal("the refused group changed the guest file")
	}
	if r := f.admin(ownerPeer, "t0", ObjCmd(virtio.AdminCmdResourceObjQuery, virtio.ObjFFGroup, 1, nil)); r.Result[0] != byte(virtio.AdminStatusENXIO) {
		t.Fatalf("the refused group is in the device: % x", r.Result)
	}
	// Below the limit again, the guest's group goes in.
	f.do(rootPeer, api.OpFlowDel, api.FlowDelArgs{Name: "t0", ID: flow.MaxGroups - 2}, nil)
	if r := f.admin(ownerPeer, "t0", ObjCmd(virtio.AdminCmdResourceObjCreate, virtio.ObjFFGroup, 1, &virtio.FFGroup{Priority: 2})); !bytes.Equal(r.Result, Unhex(resultOK)) {
		t.Fatalf("group 1: % x (%s)", r.Result, r.Message)
	}
	f.admin(ownerPeer, "t0", ObjCmd(virtio.AdminCmdResourceObjDestroy, virtio.ObjFFGroup, 1, nil)[:24+8])

	// A restart rebuilds the guest's device from its file: the same
	// answers, the same set, nothing to publish again.
	f.restart()
	f.wantGuest("t0")
	if r := f.admin(ownerPeer, "t0", GuestQueryRule0); !bytes.Equal(r.Result, GuestQueryRule0Result) {
		t.Fatalf("QUERY after a restart: % x", r.Result)
	}
	if strings.Contains(f.logs.String(), "published the saved state again") {
		t.Fatal("a clean restart published the guest's state again")
	}
	// vrssd stopped between publishing and saving: the set lost the
	// guest's part (or kept an older one); the start publishes the
	// saved state again.
	host, _ := split(f.mapSet("t0"))
	if err := f.s.taps["t0"].pub.PublishSet(host); err != nil {
		t.Fatal(err)
	}
	f.restart()
	f.wantGuest("t0")
	if !strings.Contains(f.logs.String(), "published the saved state again") {
		t.Fatal("the start did not say it published the guest's state again")
	}

	// A bad guest file stops the start, naming it.
	f.stop()
	path := guestPath(f.opts.StateDir, "t0")
	good := readFile(t, path)
	refused := base64.StdEncoding.EncodeToString(ObjCmd(virtio.AdminCmdResourceObjCreate, virtio.ObjFFGroup, 0, &virtio.FFGroup{}))
	for _, bad := range []string{
		`{"name":"t0","queues":4,"admin":["` + refused + `"]}`,               // a command the device refuses
		`{"name":"t0","queues":4,"ctrl":[{"class":9,"cmd":1,"payload":""}]}`, // another
		strings.Replace(good, `"queues":4`, `"queues":2`, 1),                 // another TAP's queues
		strings.Replace(good, `"name":"t0"`, `"name":"t1"`, 1),               // another TAP's
		`{"name":"t0","queues":4,"extra":1}`,
		`{`,
	} {
		if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := New(f.opts)
		if err == nil || !strings.Contains(err.Error(), path) {
			if s != nil {
				f.s = s
				f.stop()
			}
			t.Fatalf("a start with guest file %s: %v", bad, err)
		}
		t.Logf("refused: %v", err)
	}
	if err := os.Symlink("/etc/passwd", path+".tmp"); err == nil {
		os.Remove(path)
		os.Rename(path+".tmp", path)
		if _, err := New(f.opts); err == nil || !strings.Contains(err.Error(), "symbolic link") {
			t.Fatalf("a start with a linked guest file: %v", err)
		}
	}
	os.Remove(path)
	if err := os.WriteFile(path, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	f.start()
	f.wantGuest("t0")

	// virtio_reset: the guest's part goes, the host's stays, the file
	// goes; the device answers as after a reset.
	hostBefore, _ := split(f.mapSet("t0"))
	f.do(ownerPeer, api.OpVirtioReset, api.NameArgs{Name: "t0"}, nil)
	hostAfter, guest := split(f.mapSet("t0"))
	if len(guest.Groups)+len(guest.Rules)+len(guest.Contexts) != 0 || !reflect.DeepEqual(hostAfter, hostBefore) {
		t.Fatalf("after virtio_reset: guest %+v, host %+v", guest, hostAfter)
	}
	if exists(path) {
		t.Fatal("the guest file outlived virtio_reset")
	}
	if r := f.admin(ownerPeer, "t0", GuestQueryRule0); !bytes.Equal(r.Result, GuestResultNoOpcode) {
		t.Fatalf("QUERY after virtio_reset: % x", r.Result)
	}
	f.restart()
	if _, guest := split(f.mapSet("t0")); len(guest.Groups) != 0 {
		t.Fatal("the guest's groups came back")
	}
	// Delete takes the guest file along.
	for _, st := range GuestSequence() {
		f.guestStep(ownerPeer, "t0", st)
	}
	f.do(ownerPeer, api.OpDelete, api.NameArgs{Name: "t0"}, nil)
	if exists(path) {
		t.Fatal("the guest file outlived the TAP")
	}
}

// Who may send a TAP's guest commands: its owner, root and the admins;
// anyone else is answered as for a TAP that does not exist, word for
// word, and changes nothing.
func TestOpsVirtioAuthorisation(t *testing.T) {
	peers := []struct {
		name string
		p    *peer
		ok   bool
	}{{"root", rootPeer, true}, {"admin", adminPeer, true}, {"owner", ownerPeer, true}, {"creator", creatorPeer, false}, {"other", otherPeer, false}}
	ops := []struct {
		op   api.Op
		args any
	}{
		{api.OpVirtioCtrl, api.VirtioCtrlArgs{Name: "t0", Class: virtio.CtrlClassRSSContext, Cmd: virtio.CmdRSSContextAdd, Payload: mustBinary(&GuestContext)}},
		{api.OpVirtioAdmin, api.VirtioAdminArgs{Name: "t0", Command: AdminCmd(virtio.AdminCmdListUse, Unhex("833f"))}},
		{api.OpVirtioReset, api.NameArgs{Name: "t0"}},
	}
	for _, pc := range peers {
		t.Run(pc.name, func(t *testing.T) {
			f := newFakeDaemon(t, fakePolicy)
			f.createFlows("t0", 4, ownerPeer.uid)
			for _, o := range ops {
				before := f.world()
				r, out := f.call(pc.p, o.op, o.args)
				fd.CloseAll(out)
				if pc.ok {
					if r.Error != nil {
						t.Fatalf("%s by %s: %v", o.op, pc.name, r.Error)
					}
					continue
				}
				if r.Error == nil || r.Error.Code != api.CodeNotFound {
					t.Fatalf("%s by %s: %+v", o.op, pc.name, r)
				}
				if after := f.world(); after != before {
					t.Errorf("a refusal changed things")
				}
				args, _ := json.Marshal(o.args)
				none := strings.Replace(string(args), `"t0"`, `"nosuch0"`, 1)
				if msg := f.fails(pc.p, o.op, json.RawMessage(none), api.CodeNotFound); !sameMessage(r.Error.Message, msg, "t0", "nosuch0") {
					t.Errorf("%q for another's TAP, %q for none", r.Error.Message, msg)
				}
			}
			if _, guest := split(f.mapSet("t0")); !pc.ok && len(guest.Contexts) != 0 {
				t.Fatal("a refused peer's context is in the set")
			}
		})
	}
}

// The guest's control commands: the default configuration through
// RSS_CONFIG (the last of it and set_rss wins), the context namespace,
// and refusals answered VIRTIO_NET_ERR with a message.
func TestOpsVirtioCtrl(t *testing.T) {
	f := newFakeDaemon(t, fakePolicy)
	f.createFlows("t0", 4, ownerPeer.uid)
	ctrl := func(class, cmd uint8, payload []byte) api.VirtioCtrlResult {
		t.Helper()
		var r api.VirtioCtrlResult
		f.do(ownerPeer, api.OpVirtioCtrl, api.VirtioCtrlArgs{Name: "t0", Class: class, Cmd: cmd, Payload: payload}, &r)
		return r
	}
	def := virtio.RSSConfig{Config: rss.Config{HashTypes: rss.HashTCPv4, Key: rss.DefaultKey, Table: []uint16{0, 1, 2, 3}}, MaxTxVQ: 4}
	if r := ctrl(virtio.CtrlClassMQ, virtio.CmdRSSConfig, mustBinary(&def)); r.Ack != virtio.AckOK {
		t.Fatalf("RSS_CONFIG: %+v", r)
	}
	if set := f.mapSet("t0"); !reflect.DeepEqual(set.Default, def.Config) || len(set.Contexts) != 1 || len(set.Rules) != 1 {
		t.Fatalf("after RSS_CONFIG: %+v", set)
	}
	for id := uint16(1); id <= 4; id++ {
		c := GuestContext
		c.ID = id
		if r := ctrl(virtio.CtrlClassRSSContext, virtio.CmdRSSContextAdd, mustBinary(&c)); r.Ack != virtio.AckOK {
			t.Fatalf("ADD %d: %+v", id, r)
		}
	}
	c := GuestContext
	c.ID = 5
	r := ctrl(virtio.CtrlClassRSSContext, virtio.CmdRSSContextAdd, mustBinary(&c))
	if r.Ack != virtio.AckErr || r.Reply != nil || !strings.Contains(r.Message, "rss context 5, want 1 to 4") {
		t.Fatalf("ADD 5: %+v", r)
	}
	set := f.mapSet("t0")
	var ids []uint16
	for _, c := range set.Contexts {
		ids = append(ids, c.ID)
	}
	if slices.Sort(ids); !slices.Equal(ids, []uint16{1, 5, 6, 7, 8}) {
		t.Fatalf("contexts %v", ids)
	}
	if r := ctrl(virtio.CtrlClassRSSContext, virtio.CmdRSSContextDel, Unhex("0200")); r.Ack != virtio.AckOK {
		t.Fatalf("DEL 2: %+v", r)
	}
	if r := ctrl(virtio.CtrlClassMQ, virtio.CmdVQPairsSet, Unhex("0200")); r.Ack != virtio.AckErr || !strings.Contains(r.Message, "unsupported") {
		t.Fatalf("VQ_PAIRS_SET: %+v", r)
	}
	// set_rss after the guest's RSS_CONFIG wins, and the guest's
	// contexts stay.
	cfg := testConfig(4)
	f.do(ownerPeer, api.OpSetRSS, api.SetRSSArgs{Name: "t0", Config: &cfg}, nil)
	if r := ctrl(virtio.CtrlClassRSSContext, virtio.CmdRSSContextDel, Unhex("0300")); r.Ack != virtio.AckOK {
		t.Fatalf("DEL 3: %+v", r)
	}
	set = f.mapSet("t0")
	if !reflect.DeepEqual(set.Default, cfg) || len(set.Contexts) != 3 {
		t.Fatalf("after set_rss and DEL 3: %+v", set)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
