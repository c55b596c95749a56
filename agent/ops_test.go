package agent

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/agent/internal/kernel"
	"github.com/vrss-dev/vrss/internal/fd"
	"github.com/vrss-dev/vrss/rss"
	"github.com/vrss-dev/vrss/steering"
	"github.com/vrss-dev/vrss/tap"
	"github.com/vrss-dev/vrss/virtio"
)

// Every operation by every kind of peer: root, an admin, the TAP's owner,
// a creator who does not own it, and anyone else. A refusal changes
// nothing; a TAP the peer may not use is not found.
func TestOpsAuthorisation(t *testing.T) {
	const (
		ok     = api.Code("")
		denied = api.CodeDenied
		hidden = api.CodeNotFound
	)
	peers := []struct {
		name string
		p    *peer
	}{{"root", rootPeer}, {"admin", adminPeer}, {"owner", ownerPeer}, {"creator", creatorPeer}, {"other", otherPeer}}
	cfg := testConfig(4)
	t0 := api.NameArgs{Name: "t0"}
	mayUse := [5]api.Code{ok, ok, ok, hidden, hidden}
	for _, tc := range []struct {
		op   api.Op
		args any
		want [5]api.Code // root, admin, owner, creator, other
		// check, if set, checks a success.
		check func(t *testing.T, f *fakeDaemon, p *peer, res json.RawMessage, out []*fd.FD)
	}{
		{op: api.OpVersion, want: [5]api.Code{ok, ok, ok, ok, ok}},
		{op: api.OpList, want: [5]api.Code{ok, ok, ok, ok, ok}, check: func(t *testing.T, f *fakeDaemon, p *peer, res json.RawMessage, _ []*fd.FD) {
			want := `{"taps":[]}`
			if p != creatorPeer && p != otherPeer {
				want = `"name":"t0"`
			}
			if !strings.Contains(string(res), want) {
				t.Errorf("lists %s, want %s", res, want)
			}
		}},
		{op: api.OpCreate, args: api.CreateArgs{Name: "n0", Queues: 2}, want: [5]api.Code{ok, ok, denied, ok, denied},
			check: func(t *testing.T, f *fakeDaemon, p *peer, res json.RawMessage, _ []*fd.FD) {
				var tp api.TAP
				json.Unmarshal(res, &tp)
				l := f.k.Link("n0")
				if tp.OwnerUID != p.uid || l == nil || int(l.Owner) != p.uid || !l.Persistent || f.k.Steering("n0") == 0 {
					t.Errorf("created %+v; the kernel's %+v", tp, l)
				}
			}},
		// Only root and admins give a TAP to someone else.
		{op: api.OpCreate, args: api.CreateArgs{Name: "n0", Queues: 2, OwnerUID: ptrTo(otherPeer.uid)}, want: [5]api.Code{ok, ok, denied, denied, denied}},
		{op: api.OpCreate, args: api.CreateArgs{Name: "n0", Queues: 2, OwnerGID: ptrTo(otherPeer.gid)}, want: [5]api.Code{ok, ok, denied, denied, denied}},
		{op: api.OpAdopt, args: api.AdoptArgs{Name: "ext0", Queues: 2}, want: [5]api.Code{ok, ok, denied, ok, denied},
			check: func(t *testing.T, f *fakeDaemon, p *peer, res json.RawMessage, _ []*fd.FD) {
				var tp api.TAP
				json.Unmarshal(res, &tp)
				if !tp.Adopted || tp.OwnerUID != creatorPeer.uid || f.k.Steering("ext0") == 0 {
					t.Errorf("adopted %+v", tp)
				}
			}},
		{op: api.OpOpen, args: t0, want: mayUse, check: func(t *testing.T, f *fakeDaemon, _ *peer, _ json.RawMessage, out []*fd.FD) {
			if len(out) != 5 {
				t.Fatalf("%d fds", len(out))
			}
			for _, q := range out[:4] {
				if name, on := f.k.QueueOf(q.Int()); name != "t0" || !on {
					t.Errorf("fd %d is a queue of %q (enabled %v)", q.Int(), name, on)
				}
			}
		}},
		{op: api.OpSetRSS, args: api.SetRSSArgs{Name: "t0", Config: &cfg}, want: mayUse, check: func(t *testing.T, f *fakeDaemon, _ *peer, _ json.RawMessage, _ []*fd.FD) {
			if c, err := f.k.Config("t0"); err != nil || !reflect.DeepEqual(c, cfg) {
				t.Errorf("the TAP is steered by %+v, %v", c, err)
			}
		}},
		{op: api.OpGetRSS, args: t0, want: mayUse},
		{op: api.OpStats, args: t0, want: mayUse},
		{op: api.OpDetach, args: t0, want: mayUse, check: func(t *testing.T, f *fakeDaemon, _ *peer, _ json.RawMessage, _ []*fd.FD) {
			if f.k.Steering("t0") != 0 {
				t.Error("still steering")
			}
		}},
		{op: api.OpAttach, args: t0, want: mayUse},
		{op: api.OpDelete, args: t0, want: mayUse, check: func(t *testing.T, f *fakeDaemon, _ *peer, _ json.RawMessage, _ []*fd.FD) {
			if f.k.Link("t0") != nil || exists(f.pinDir("t0")) {
				t.Error("the TAP or its pins are left")
			}
		}},
		// The allowlist refuses, but only those who may use the TAP
		// learn that.
		{op: api.OpQEMUEBPF, args: api.QEMUEBPFArgs{Name: "t0", QEMU: "/usr/bin/qemu-system-x86_64"}, want: [5]api.Code{denied, denied, denied, hidden, hidden}},
	} {
		for i, pc := range peers {
			t.Run(string(tc.op)+"/"+pc.name, func(t *testing.T) {
				f := newFakeDaemon(t, fakePolicy)
				f.create("t0", 4, ownerPeer.uid)
				extTAP(t, f.k, "ext0", creatorPeer.uid, -1)
				before := f.world()
				r, out := f.call(pc.p, tc.op, tc.args)
				defer fd.CloseAll(out)
				var code api.Code
				if r.Error != nil {
					code = r.Error.Code
				}
				if code != tc.want[i] {
					t.Fatalf("%s by %s: %+v, want %q", tc.op, pc.name, r.Error, tc.want[i])
				}
				if code != ok {
					if after := f.world(); after != before {
						t.Errorf("a refusal changed things:\nbefore %s\nafter  %s", before, after)
					}
					return
				}
				if tc.check != nil {
					tc.check(t, f, pc.p, r.Result, out)
				}
			})
		}
	}
}

// world describes what requests may change, to compare before and after
// a refusal.
func (f *fakeDaemon) world() string {
	f.t.Helper()
	b, _ := json.Marshal(f.list(rootPeer))
	var s strings.Builder
	s.Write(b)
	for _, name := range []string{"t0", "n0", "ext0"} {
		fmt.Fprintf(&s, " %s:%v,%d,%v", name, f.k.Link(name) != nil, f.k.Steering(name), exists(f.pinDir(name)))
	}
	st, _ := os.ReadFile(filepath.Join(f.opts.StateDir, "state.json"))
	fmt.Fprintf(&s, " state:%q", st)
	return s.String()
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// A TAP another user owns is answered word for word as one that does not
// exist, whatever else is wrong with the request or the TAP.
func TestOpsNotFoundHides(t *testing.T) {
	f := newFakeDaemon(t, fakePolicy)
	f.create("t0", 4, ownerPeer.uid)
	f.openByName("t0", 4) // busy for open
	bad := testConfig(4)
	bad.Table[0] = 9 // invalid for 4 queues
	for _, tc := range []struct {
		op   api.Op
		args func(name string) any
	}{
		{api.OpOpen, func(n string) any { return api.OpenArgs{Name: n} }},
		{api.OpOpen, func(n string) any { return api.OpenArgs{Name: n, ConfigOnly: true} }},
		{api.OpSetRSS, func(n string) any { return api.SetRSSArgs{Name: n, Config: &bad} }},
		{api.OpSetRSS, func(n string) any { return api.SetRSSArgs{Name: n, VirtioRSS: []byte{1}} }},
		{api.OpGetRSS, func(n string) any { return api.NameArgs{Name: n} }},
		{api.OpStats, func(n string) any { return api.NameArgs{Name: n} }},
		{api.OpDetach, func(n string) any { return api.NameArgs{Name: n} }},
		{api.OpAttach, func(n string) any { return api.NameArgs{Name: n} }},
		{api.OpDelete, func(n string) any { return api.NameArgs{Name: n} }},
		{api.OpQEMUEBPF, func(n string) any { return api.QEMUEBPFArgs{Name: n, QEMU: "/nonexistent/qemu-system-x86_64"} }},
	} {
		theirs := f.fails(otherPeer, tc.op, tc.args("t0"), api.CodeNotFound)
		none := f.fails(otherPeer, tc.op, tc.args("nosuch0"), api.CodeNotFound)
		if !sameMessage(theirs, none, "t0", "nosuch0") {
			t.Errorf("%s: %q for another's TAP, %q for none", tc.op, theirs, none)
		}
	}
	if taps := f.list(otherPeer); len(taps) != 0 {
		t.Errorf("another user lists %+v", taps)
	}
	if f.k.Steering("t0") == 0 || f.k.Link("t0") == nil {
		t.Error("the TAP changed")
	}
}

// Per-uid limits on TAPs, queues and requests bind everyone but root and
// admins; a TAP's queues are bounded by max_queues.
func TestOpsQuotas(t *testing.T) {
	f := newFakeDaemon(t, `{"create": {"uids": [1500]}, "max_taps_per_uid": 2, "max_queues_per_uid": 5, "max_queues": 8}`)
	create := func(p *peer, name string, queues int) *api.Response {
		r, _ := f.call(p, api.OpCreate, api.CreateArgs{Name: name, Queues: queues})
		return r
	}
	wantRefused := func(r *api.Response, code api.Code, field string) {
		t.Helper()
		if r.Error == nil || r.Error.Code != code || !strings.Contains(r.Error.Message, field) {
			t.Fatalf("%+v, want %s naming %s", r.Error, code, field)
		}
	}
	if r := create(creatorPeer, "q0", 2); r.Error != nil {
		t.Fatal(r.Error)
	}
	wantRefused(create(creatorPeer, "q1", 4), api.CodeDenied, "max_queues_per_uid")
	if r := create(creatorPeer, "q1", 3); r.Error != nil {
		t.Fatal(r.Error)
	}
	wantRefused(create(creatorPeer, "q2", 1), api.CodeDenied, "max_taps_per_uid")
	if f.k.Link("q2") != nil || exists(f.pinDir("q2")) {
		t.Fatal("a refused create left its TAP or pins")
	}
	if _, ok := f.record("q2"); ok {
		t.Fatal("a refused create left its record")
	}
	// Adopting counts too.
	extTAP(t, f.k, "ext0", creatorPeer.uid, -1)
	r, _ := f.call(creatorPeer, api.OpAdopt, api.AdoptArgs{Name: "ext0", Queues: 1})
	wantRefused(r, api.CodeDenied, "max_taps_per_uid")
	// Root is not bound, by its own quota or the owner's.
	wantRefused(create(rootPeer, "r0", 9), api.CodeBadRequest, "want 1 to 8")
	f.do(rootPeer, api.OpCreate, api.CreateArgs{Name: "r0", Queues: 8, OwnerUID: ptrTo(creatorPeer.uid), OwnerGID: ptrTo(creatorPeer.gid)}, nil)
	if taps := f.list(creatorPeer); len(taps) != 3 {
		t.Fatalf("the creator owns %d TAPs", len(taps))
	}
	// Deleting frees room.
	f.do(creatorPeer, api.OpDelete, api.NameArgs{Name: "r0"}, nil)
	f.do(creatorPeer, api.OpDelete, api.NameArgs{Name: "q1"}, nil)
	if r := create(creatorPeer, "q2", 3); r.Error != nil {
		t.Fatal(r.Error)
	}

	// Requests a second: the bucket holds two seconds' worth.
	g := newFakeDaemon(t, `{"requests_per_second_per_uid": 2}`)
	busy := 0
	for range 10 {
		if r, _ := g.call(otherPeer, api.OpList, nil); r.Error != nil {
			if r.Error.Code != api.CodeBusy || !strings.Contains(r.Error.Message, "requests_per_second_per_uid") {
				t.Fatal(r.Error)
			}
			busy++
		}
	}
	if busy != 6 {
		t.Fatalf("%d of 10 requests refused at 2/s, want 6", busy)
	}
	for range 10 {
		g.do(rootPeer, api.OpList, nil, nil)
	}
}

// The queues a VMM gets are queues 0 to N-1 while vrssd's control queue
// stays disabled; open hands new queues and keeps none, and is refused
// while another process holds queues.
func TestOpsOpen(t *testing.T) {
	f := newFakeDaemon(t, fakePolicy)
	f.create("t0", 4, ownerPeer.uid)
	if l := f.k.Link("t0"); l.Queues != 0 || l.DisabledQueues != 1 {
		t.Fatalf("after create: %d queues enabled, %d disabled; want vrssd's control queue alone, disabled", l.Queues, l.DisabledQueues)
	}
	r, out := f.call(ownerPeer, api.OpOpen, api.OpenArgs{Name: "t0"})
	if r.Error != nil || len(out) != 5 {
		t.Fatalf("open: %+v, %d fds", r.Error, len(out))
	}
	var res api.OpenResult
	json.Unmarshal(r.Result, &res)
	if res.QueueFDs != 4 || res.ConfigSize != steering.ConfigSize || res.ABI != steering.ABIStamp() {
		t.Fatalf("%+v", res)
	}
	if l := f.k.Link("t0"); l.Queues != 4 || l.DisabledQueues != 1 {
		t.Fatalf("after open: %d queues enabled, %d disabled", l.Queues, l.DisabledQueues)
	}
	// The VMM publishes through the map with plain memory writes; the
	// map is the truth vrssd reports.
	cfg := testConfig(4)
	pub, err := steering.NewPublisher(out[4].Int(), 4)
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(cfg); err != nil {
		t.Fatal(err)
	}
	pub.Close()
	var st api.RSSState
	f.do(ownerPeer, api.OpGetRSS, api.NameArgs{Name: "t0"}, &st)
	if st.Generation != 1 || !reflect.DeepEqual(*st.Config, cfg) {
		t.Fatalf("get_rss after the VMM published: %+v", st)
	}
	tp, _ := f.tap("t0")
	if !tp.HeldElsewhere || tp.AttachedQueues != 4 || tp.DisabledQueues != 0 {
		t.Fatalf("listed %+v", tp)
	}
	msg := f.fails(ownerPeer, api.OpOpen, api.OpenArgs{Name: "t0"}, api.CodeBusy)
	if !strings.Contains(msg, "config_only") {
		t.Fatalf("busy: %q", msg)
	}
	r2, cfgOnly := f.call(ownerPeer, api.OpOpen, api.OpenArgs{Name: "t0", ConfigOnly: true})
	if r2.Error != nil || len(cfgOnly) != 1 {
		t.Fatalf("config_only: %+v, %d fds", r2.Error, len(cfgOnly))
	}
	fd.CloseAll(cfgOnly)

	// When the VMM's queues are closed, they are gone: vrssd kept none.
	fd.CloseAll(out)
	f.k.Refresh()
	if l := f.k.Link("t0"); l.Queues != 0 || l.DisabledQueues != 1 {
		t.Fatalf("after the VMM closed its queues: %d enabled, %d disabled", l.Queues, l.DisabledQueues)
	}
	_, out = f.call(ownerPeer, api.OpOpen, api.OpenArgs{Name: "t0"})
	if len(out) != 5 {
		t.Fatalf("open again: %d fds", len(out))
	}
	fd.CloseAll(out)

	// A VMM that opened the TAP by name holds queues too.
	vmm := f.openByName("t0", 4)
	f.fails(ownerPeer, api.OpOpen, api.OpenArgs{Name: "t0"}, api.CodeBusy)
	// A second one makes more queues than the TAP has: a problem.
	f.openByName("t0", 2)
	tp, _ = f.tap("t0")
	if !strings.Contains(tp.Problem, "more than one process opened it") {
		t.Fatalf("problem %q", tp.Problem)
	}
	vmm.Close()
	f.k.Refresh()
	if tp, _ = f.tap("t0"); tp.Problem != "" || tp.AttachedQueues != 2 {
		t.Fatalf("after the first VMM left: %+v", tp)
	}
}

// attach and detach work through vrssd's control queue whoever holds the
// other queues; detaching twice is fine.
func TestOpsAttachDetach(t *testing.T) {
	f := newFakeDaemon(t, fakePolicy)
	f.create("t0", 2, ownerPeer.uid)
	prog := f.k.Steering("t0")
	if prog == 0 || f.k.Pinned(f.pinDir("t0")) != prog {
		t.Fatalf("the program attached (%d) is not the one pinned (%d)", prog, f.k.Pinned(f.pinDir("t0")))
	}
	vmm := f.openByName("t0", 2)
	for range 2 {
		var tp api.TAP
		f.do(ownerPeer, api.OpDetach, api.NameArgs{Name: "t0"}, &tp)
		if tp.Steering || f.k.Steering("t0") != 0 {
			t.Fatalf("after detach: %+v, kernel %d", tp, f.k.Steering("t0"))
		}
	}
	if r, _ := f.record("t0"); r.Steering {
		t.Fatal("state.json says steering after a detach")
	}
	var tp api.TAP
	f.do(ownerPeer, api.OpAttach, api.NameArgs{Name: "t0"}, &tp)
	if !tp.Steering || f.k.Steering("t0") != prog {
		t.Fatalf("after attach: %+v, kernel %d", tp, f.k.Steering("t0"))
	}
	// A VMM detached it behind vrssd's back: attach issues the ioctl
	// anyway.
	if err := vmm.SetSteering(nil); err != nil {
		t.Fatal(err)
	}
	f.do(ownerPeer, api.OpAttach, api.NameArgs{Name: "t0"}, nil)
	if f.k.Steering("t0") != prog {
		t.Fatal("attach did not attach again what a VMM detached")
	}
	if r, _ := f.record("t0"); !r.Steering {
		t.Fatal("state.json says not steering")
	}
}

// set_rss takes exactly one of its three forms; a configuration the
// program refuses is invalid_config, a virtio command the device refuses
// is acknowledged with VIRTIO_NET_ERR.
func TestOpsSetRSS(t *testing.T) {
	f := newFakeDaemon(t, fakePolicy)
	f.create("t0", 4, ownerPeer.uid)
	set := func(a api.SetRSSArgs) (api.SetRSSResult, *api.Error) {
		t.Helper()
		a.Name = "t0"
		r, _ := f.call(ownerPeer, api.OpSetRSS, a)
		var res api.SetRSSResult
		if r.Error == nil {
			json.Unmarshal(r.Result, &res)
		}
		return res, r.Error
	}
	get := func() api.RSSState {
		t.Helper()
		var st api.RSSState
		f.do(ownerPeer, api.OpGetRSS, api.NameArgs{Name: "t0"}, &st)
		return st
	}
	if st := get(); st.Config != nil || st.Generation != 0 {
		t.Fatalf("before any: %+v", st)
	}
	cfg := testConfig(4)
	badCfg := testConfig(4)
	badCfg.Table[3] = 4
	rssWire, _ := (&virtio.RSSConfig{Config: testConfig(2), MaxTxVQ: 2}).MarshalBinary()
	badRSSWire, _ := (&virtio.RSSConfig{Config: testConfig(2), MaxTxVQ: 5}).MarshalBinary()
	hashWire, _ := (&virtio.HashConfig{HashTypes: rss.HashUDPv4, Key: rss.DefaultKey}).MarshalBinary()

	for _, tc := range []struct {
		name string
		args api.SetRSSArgs
		code api.Code // of an error
		ack  uint8
		gen  uint64
		want *rss.Config // the configuration after
	}{
		{"none", api.SetRSSArgs{}, api.CodeBadRequest, 0, 0, nil},
		{"two", api.SetRSSArgs{Config: &cfg, VirtioHash: hashWire}, api.CodeBadRequest, 0, 0, nil},
		{"config", api.SetRSSArgs{Config: &cfg}, "", virtio.AckOK, 1, &cfg},
		{"bad config", api.SetRSSArgs{Config: &badCfg}, api.CodeInvalidConfig, 0, 1, &cfg},
		{"virtio_rss", api.SetRSSArgs{VirtioRSS: rssWire}, "", virtio.AckOK, 2, ptrConfig(testConfig(2))},
		{"bad virtio_rss", api.SetRSSArgs{VirtioRSS: badRSSWire}, "", virtio.AckErr, 2, ptrConfig(testConfig(2))},
		{"short virtio_rss", api.SetRSSArgs{VirtioRSS: rssWire[:5]}, "", virtio.AckErr, 2, ptrConfig(testConfig(2))},
		{"virtio_hash", api.SetRSSArgs{VirtioHash: hashWire}, "", virtio.AckOK, 2, ptrConfig(testConfig(2))},
		{"bad virtio_hash", api.SetRSSArgs{VirtioHash: hashWire[:3]}, "", virtio.AckErr, 2, ptrConfig(testConfig(2))},
	} {
		res, err := set(tc.args)
		switch {
		case tc.code != "" && (err == nil || err.Code != tc.code):
			t.Errorf("%s: %+v, want %s", tc.name, err, tc.code)
		case tc.code == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.code == "" && (res.Ack != tc.ack || res.Generation != tc.gen || (tc.ack == virtio.AckErr) != (res.AckMessage != "")):
			t.Errorf("%s: %+v, want ack %d at generation %d", tc.name, res, tc.ack, tc.gen)
		}
		st := get()
		if st.Generation != tc.gen || !reflect.DeepEqual(st.Config, tc.want) {
			t.Errorf("%s: then %+v", tc.name, st)
		}
	}
	st := get()
	if st.HashReport == nil || st.HashReport.HashTypes != rss.HashUDPv4 {
		t.Errorf("hash report %+v", st.HashReport)
	}
	// What steers, and what a restart would steer by.
	if c, err := f.k.Config("t0"); err != nil || !reflect.DeepEqual(c, testConfig(2)) {
		t.Errorf("the kernel's program: %+v, %v", c, err)
	}
	if r, _ := f.record("t0"); r.Config == nil || !reflect.DeepEqual(*r.Config, testConfig(2)) || r.HashReport == nil {
		t.Errorf("state.json: %+v", r)
	}
}

func ptrConfig(c rss.Config) *rss.Config { return &c }

// adopt by name, and from a queue fd of a VMM's TAP; the kernel's
// ownership rule for creators; what adopt refuses.
func TestOpsAdopt(t *testing.T) {
	f := newFakeDaemon(t, fakePolicy)
	k := f.k
	extTAP(t, k, "mine", creatorPeer.uid, -1)
	extTAP(t, k, "notmine", otherPeer.uid, -1)
	extTAP(t, k, "grp", creatorPeer.uid, 4444) // a group the creator is not in
	extTAP(t, k, "unowned", -1, -1)
	k.AddLink("veth0", "veth")
	const kernelRule = "may adopt only TAPs the kernel lets it attach to"
	for _, tc := range []struct {
		p    *peer
		name string
		code api.Code
		want string
	}{
		{creatorPeer, "notmine", api.CodeDenied, kernelRule},
		{creatorPeer, "grp", api.CodeDenied, kernelRule},
		{creatorPeer, "unowned", api.CodeDenied, kernelRule},
		{creatorPeer, "veth0", api.CodeBadRequest, "is a veth device, not a TAP"},
		{creatorPeer, "nosuch0", api.CodeNotFound, "no network device named nosuch0"},
		{ownerPeer, "mine", api.CodeDenied, "may not adopt TAPs"},
	} {
		if msg := f.fails(tc.p, api.OpAdopt, api.AdoptArgs{Name: tc.name, Queues: 2}, tc.code); !strings.Contains(msg, tc.want) {
			t.Errorf("adopt %s by uid %d: %q, want %q", tc.name, tc.p.uid, msg, tc.want)
		}
	}
	// Nor may a creator give what it adopts to someone else.
	msg := f.fails(creatorPeer, api.OpAdopt, api.AdoptArgs{Name: "mine", Queues: 2, OwnerUID: ptrTo(otherPeer.uid)}, api.CodeDenied)
	if !strings.Contains(msg, "only root and admins may") {
		t.Errorf("adopt for another: %q", msg)
	}
	var tp api.TAP
	f.do(creatorPeer, api.OpAdopt, api.AdoptArgs{Name: "mine", Queues: 2}, &tp)
	if !tp.Adopted || tp.OwnerUID != creatorPeer.uid || tp.VnetHdrLen != 12 || !tp.Steering {
		t.Fatalf("adopted %+v", tp)
	}
	if k.Noqueue("mine") != true { // extTAP made it so; adopt leaves it
		t.Fatal("qdisc")
	}
	f.fails(creatorPeer, api.OpAdopt, api.AdoptArgs{Name: "mine", Queues: 2}, api.CodeExists)
	// Root adopts an unowned TAP, and gives it to someone.
	f.do(rootPeer, api.OpAdopt, api.AdoptArgs{Name: "unowned", Queues: 2, OwnerUID: ptrTo(otherPeer.uid), OwnerGID: ptrTo(otherPeer.gid)}, &tp)
	if tp.OwnerUID != otherPeer.uid {
		t.Fatalf("%+v", tp)
	}
	// By name while a VMM holds queues: busy; from one of its fds instead.
	extTAP(t, k, "held", creatorPeer.uid, -1)
	vmm := f.openByName("held", 3)
	f.fails(creatorPeer, api.OpAdopt, api.AdoptArgs{Name: "held", Queues: 3}, api.CodeBusy)

	// From a VMM's queue: a TAP that lives as long as its queues.
	q, err := k.Create(tap.Options{Name: "vm0", Queues: 2, VnetHdrLen: 12, Owner: creatorPeer.uid})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	dup := func(q kernel.Queues) *fd.FD {
		d, err := fd.DupFile(q.Files()[0])
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	for _, tc := range []struct {
		args api.AdoptArgs
		in   []*fd.FD
		want string
	}{
		{api.AdoptArgs{FromFD: true}, nil, "exactly one queue fd"},
		{api.AdoptArgs{FromFD: true}, []*fd.FD{dup(q), dup(q)}, "exactly one queue fd"},
		{api.AdoptArgs{Name: "vm0", Queues: 2}, []*fd.FD{dup(q)}, "takes no fd"},
		{api.AdoptArgs{Name: "held", FromFD: true}, []*fd.FD{dup(q)}, "a queue of vm0, not of held"},
		{api.AdoptArgs{FromFD: true}, []*fd.FD{pipeFD(t)}, "not an attached TAP queue"},
	} {
		r, _ := f.call(creatorPeer, api.OpAdopt, tc.args, tc.in...)
		if r.Error == nil || r.Error.Code != api.CodeBadRequest || !strings.Contains(r.Error.Message, tc.want) {
			t.Errorf("adopt %+v with %d fds: %+v, want %q", tc.args, len(tc.in), r.Error, tc.want)
		}
	}
	// Only adopt takes descriptors.
	r, _ := f.call(creatorPeer, api.OpList, nil, dup(q))
	if r.Error == nil || r.Error.Code != api.CodeBadRequest || !strings.Contains(r.Error.Message, "takes no file descriptors") {
		t.Errorf("list with an fd: %+v", r.Error)
	}
	r, _ = f.call(creatorPeer, api.OpAdopt, api.AdoptArgs{FromFD: true}, dup(q))
	if r.Error != nil {
		t.Fatal(r.Error)
	}
	json.Unmarshal(r.Result, &tp)
	if tp.Name != "vm0" || tp.Queues != 2 || tp.VnetHdrLen != 12 || !tp.HeldElsewhere || k.Steering("vm0") == 0 {
		t.Fatalf("adopted from an fd: %+v", tp)
	}
	// The VMM exits: vrssd lets go of its control queue, the TAP
	// vanishes, and vrssd forgets it.
	q.Close()
	k.Refresh()
	eventually(t, "vrssd forgets a TAP that went with its VMM", func() bool {
		_, listed := f.tap("vm0")
		return !listed && k.Link("vm0") == nil && !exists(f.pinDir("vm0"))
	})
	vmm.Close()
}

func pipeFD(t *testing.T) *fd.FD {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	d, err := fd.DupFile(r)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// A failed load leaves nothing: no device, no pins, no record; the
// client learns why (unavailable, or busy when vrssd is out of fds).
func TestOpsLoadFails(t *testing.T) {
	f := newFakeDaemon(t, fakePolicy)
	for _, tc := range []struct {
		err  error
		code api.Code
	}{
		{&steering.UnavailableError{Reason: steering.ReasonNoCapBPF, Err: unix.EPERM}, api.CodeUnavailable},
		{&steering.UnavailableError{Reason: steering.ReasonNoFDs, Err: unix.EMFILE}, api.CodeBusy},
	} {
		f.k.FailLoad(tc.err)
		f.fails(creatorPeer, api.OpCreate, api.CreateArgs{Name: "c0", Queues: 2}, tc.code)
		if f.k.Link("c0") != nil || exists(f.pinDir("c0")) {
			t.Fatal("a failed create left its TAP or pins")
		}
		if _, ok := f.record("c0"); ok {
			t.Fatal("a failed create left its record")
		}
	}
	f.k.FailLoad(nil)
	f.create("c0", 2, creatorPeer.uid)
	// A name taken by a device vrssd does not know.
	f.k.AddLink("br0", "bridge")
	f.fails(rootPeer, api.OpCreate, api.CreateArgs{Name: "br0", Queues: 2}, api.CodeExists)
	f.fails(rootPeer, api.OpCreate, api.CreateArgs{Name: "c0", Queues: 2}, api.CodeExists)
	// A pin directory vrssd did not make is someone else's: refused, and
	// left alone.
	os.Mkdir(f.pinDir("c1"), 0o700)
	msg := f.fails(rootPeer, api.OpCreate, api.CreateArgs{Name: "c1", Queues: 2}, api.CodeExists)
	if !strings.Contains(msg, "is not vrssd's") || !exists(f.pinDir("c1")) || f.k.Link("c1") != nil {
		t.Fatalf("%q", msg)
	}
	if n := f.k.Programs(); n != 1 {
		t.Fatalf("%d programs open, want c0's", n)
	}
}

// A restart re-adopts every TAP: it loads the pins and opens its control
// queue again, moving nothing a VMM holds; lost pins are steered anew by
// the configuration state.json recorded; an interrupted create is undone.
func TestOpsRestore(t *testing.T) {
	cfg := testConfig(4)
	setup := func(t *testing.T) *fakeDaemon {
		f := newFakeDaemon(t, fakePolicy)
		f.create("t0", 4, ownerPeer.uid)
		f.do(ownerPeer, api.OpSetRSS, api.SetRSSArgs{Name: "t0", Config: &cfg}, nil)
		return f
	}
	t.Run("pins kept", func(t *testing.T) {
		f := setup(t)
		prog := f.k.Steering("t0")
		vmm := f.openByName("t0", 4)
		f.stop()
		if n := f.k.Programs(); n != 0 {
			t.Fatalf("a stopped vrssd holds %d programs", n)
		}
		if l := f.k.Link("t0"); l.Queues != 4 || l.DisabledQueues != 0 || f.k.Steering("t0") != prog {
			t.Fatalf("while vrssd is stopped: %+v, steering %d", l, f.k.Steering("t0"))
		}
		f.start()
		tp, ok := f.tap("t0")
		if !ok || !tp.Steering || tp.Problem != "" || tp.Generation != 1 || !tp.HeldElsewhere || f.k.Steering("t0") != prog {
			t.Fatalf("after the restart: %+v", tp)
		}
		if l := f.k.Link("t0"); l.Queues != 4 || l.DisabledQueues != 1 {
			t.Fatalf("after the restart: %d enabled, %d disabled", l.Queues, l.DisabledQueues)
		}
		vmm.Close()
		f.k.Refresh()
		f.do(ownerPeer, api.OpOpen, api.OpenArgs{Name: "t0"}, nil)
	})
	t.Run("pins lost", func(t *testing.T) {
		f := setup(t)
		old := f.k.Steering("t0")
		f.openByName("t0", 4)
		f.stop()
		os.RemoveAll(f.pinDir("t0"))
		f.start()
		prog := f.k.Steering("t0")
		if prog == 0 || prog == old || f.k.Pinned(f.pinDir("t0")) != prog {
			t.Fatalf("steering %d (was %d), pinned %d", prog, old, f.k.Pinned(f.pinDir("t0")))
		}
		if c, err := f.k.Config("t0"); err != nil || !reflect.DeepEqual(c, cfg) {
			t.Fatalf("re-steered with %+v, %v", c, err)
		}
		if tp, _ := f.tap("t0"); tp.Problem != "" || !tp.Steering || !tp.HeldElsewhere {
			t.Fatalf("%+v", tp)
		}
		if !strings.Contains(f.logs.String(), "pins were lost") {
			t.Fatal("not logged")
		}
	})
	t.Run("pins lost while detached", func(t *testing.T) {
		f := setup(t)
		f.do(ownerPeer, api.OpDetach, api.NameArgs{Name: "t0"}, nil)
		f.stop()
		os.RemoveAll(f.pinDir("t0"))
		f.start()
		if f.k.Steering("t0") != 0 || f.k.Pinned(f.pinDir("t0")) == 0 {
			t.Fatal("re-steering attached what the operator had detached, or pinned nothing")
		}
		f.do(ownerPeer, api.OpAttach, api.NameArgs{Name: "t0"}, nil)
		if c, err := f.k.Config("t0"); err != nil || !reflect.DeepEqual(c, cfg) {
			t.Fatalf("%+v, %v", c, err)
		}
	})
	t.Run("pins spoiled", func(t *testing.T) {
		f := setup(t)
		f.stop()
		os.WriteFile(filepath.Join(f.pinDir("t0"), "stats"), []byte("not a pin"), 0o600)
		f.start()
		tp, ok := f.tap("t0")
		if !ok || !strings.Contains(tp.Problem, "pins could not be loaded") {
			t.Fatalf("%+v", tp)
		}
		f.fails(ownerPeer, api.OpGetRSS, api.NameArgs{Name: "t0"}, api.CodeUnavailable)
		if _, ok := f.record("t0"); !ok {
			t.Fatal("the record was dropped")
		}
		f.do(ownerPeer, api.OpDelete, api.NameArgs{Name: "t0"}, nil)
	})
	t.Run("device gone", func(t *testing.T) {
		f := setup(t)
		f.stop()
		f.k.Delete("t0")
		f.start()
		if _, ok := f.tap("t0"); ok || exists(f.pinDir("t0")) {
			t.Fatal("a TAP deleted while vrssd was stopped is remembered")
		}
		if _, ok := f.record("t0"); ok {
			t.Fatal("its record is kept")
		}
	})
	t.Run("device replaced", func(t *testing.T) {
		f := setup(t)
		f.stop()
		f.k.Delete("t0")
		extTAP(t, f.k, "t0", ownerPeer.uid, -1)
		f.start()
		if _, ok := f.tap("t0"); ok || f.k.Link("t0") == nil {
			t.Fatal("a TAP replaced while vrssd was stopped: re-adopted, or deleted")
		}
	})
	t.Run("another ABI", func(t *testing.T) {
		f := setup(t)
		f.stop()
		st := f.state()
		st.TAPs[0].ABI = "vrss1-000000000000000000000000"
		if err := writeState(f.opts.StateDir, st); err != nil {
			t.Fatal(err)
		}
		f.start()
		for _, op := range []api.Op{api.OpGetRSS, api.OpStats, api.OpOpen} {
			f.fails(ownerPeer, op, api.NameArgs{Name: "t0"}, api.CodeABIMismatch)
		}
		f.do(ownerPeer, api.OpDetach, api.NameArgs{Name: "t0"}, nil)
		f.do(ownerPeer, api.OpDelete, api.NameArgs{Name: "t0"}, nil)
	})
	t.Run("interrupted creates", func(t *testing.T) {
		f := setup(t)
		f.stop()
		extTAP(t, f.k, "c0", creatorPeer.uid, -1) // what the create made
		extTAP(t, f.k, "c1", otherPeer.uid, -1)   // someone else's since
		q, err := f.k.Create(tap.Options{Name: "c2", Queues: 1, VnetHdrLen: 12, Owner: creatorPeer.uid})
		if err != nil { // not persistent: not vrssd's
			t.Fatal(err)
		}
		defer q.Close()
		st := f.state()
		for _, name := range []string{"c0", "c1", "c2", "c3"} { // c3: never made
			st.TAPs = append(st.TAPs, tapState{Name: name, Queues: 2, VnetHdrLen: 12, OwnerUID: creatorPeer.uid, OwnerGID: creatorPeer.gid, Creating: true})
			os.Mkdir(f.pinDir(name), 0o700)
		}
		if err := writeState(f.opts.StateDir, st); err != nil {
			t.Fatal(err)
		}
		f.start()
		if f.k.Link("c0") != nil || f.k.Link("c1") == nil || f.k.Link("c2") == nil {
			t.Fatalf("c0 %v, c1 %v, c2 %v: only c0 is what the create made", f.k.Link("c0"), f.k.Link("c1"), f.k.Link("c2"))
		}
		for _, name := range []string{"c0", "c1", "c2", "c3"} {
			if _, ok := f.record(name); ok || exists(f.pinDir(name)) {
				t.Errorf("%s: record or pin directory left", name)
			}
		}
		if _, ok := f.tap("t0"); !ok {
			t.Error("t0 lost")
		}
		f.do(creatorPeer, api.OpCreate, api.CreateArgs{Name: "c0", Queues: 2}, nil)
	})
}

// A program detached behind vrssd's back is attached again: at once when
// tun announces a queue change, and by the monitor when the TAP sends
// frames the program never counted. An operator's detach is respected.
func TestOpsReattach(t *testing.T) {
	f := newFakeDaemon(t, fakePolicy)
	f.create("t0", 2, ownerPeer.uid)
	prog := f.k.Steering("t0")
	vmm := f.openByName("t0", 2)

	// QEMU 7.2 detaches, then its guest changes the queue pairs.
	vmm.SetSteering(nil)
	vmm.SetQueueEnabled(1, false)
	eventually(t, "re-attached on a queue change", func() bool { return f.k.Steering("t0") == prog })
	vmm.SetQueueEnabled(1, true)

	// A device reset: detached, no queue change, frames keep coming.
	eventually(t, "the monitor has looked", func() bool { f.k.Transmit("t0", 1); return reattached(f) == 0 && monitored(f) })
	vmm.SetSteering(nil)
	eventually(t, "re-attached by the monitor", func() bool {
		f.k.Transmit("t0", 1)
		return f.k.Steering("t0") == prog && reattached(f) == 1
	})
	var st api.Stats
	f.do(ownerPeer, api.OpStats, api.NameArgs{Name: "t0"}, &st)
	if st.Reattached != 1 || st.AttachedQueues != 2 || st.Unconfigured == 0 {
		t.Fatalf("stats %+v", st)
	}
	if !strings.Contains(f.logs.String(), "detached behind vrssd's back") {
		t.Fatal("not logged")
	}

	// The operator's detach stands, through queue changes and frames
	// over several of the monitor's looks.
	f.do(ownerPeer, api.OpDetach, api.NameArgs{Name: "t0"}, nil)
	vmm.SetQueueEnabled(1, false)
	vmm.SetQueueEnabled(1, true)
	for range 4 {
		f.k.Transmit("t0", 1)
		time.Sleep(monitorInterval)
	}
	if f.k.Steering("t0") != 0 || reattached(f) != 1 {
		t.Fatal("vrssd attached what its operator detached")
	}
}

func reattached(f *fakeDaemon) uint64 {
	tp, _ := f.tap("t0")
	return tp.Reattached
}

// monitored reports whether the monitor has taken a look at t0.
func monitored(f *fakeDaemon) bool {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	d := f.s.taps["t0"]
	return d != nil && d.seen
}

// TAPs deleted or renamed behind vrssd's back are forgotten as soon as
// the kernel announces it, with no request touching them.
func TestOpsForgetsWhatIsGone(t *testing.T) {
	f := newFakeDaemon(t, fakePolicy)
	f.create("t0", 2, ownerPeer.uid)
	f.create("t1", 2, ownerPeer.uid)
	held := func(name string) bool {
		f.s.mu.Lock()
		defer f.s.mu.Unlock()
		_, ok := f.s.taps[name]
		return ok
	}
	if err := f.k.Delete("t0"); err != nil {
		t.Fatal(err)
	}
	if err := f.k.Rename("t1", "t9"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "t0 and t1 forgotten", func() bool { return !held("t0") && !held("t1") })
	if exists(f.pinDir("t0")) || exists(f.pinDir("t1")) || len(f.state().TAPs) != 0 {
		t.Fatal("pins or records left")
	}
	if n := f.k.Programs(); n != 0 {
		t.Fatalf("%d programs still open", n)
	}
	f.fails(ownerPeer, api.OpGetRSS, api.NameArgs{Name: "t0"}, api.CodeNotFound)

	// With the kernel's announcements lost, the next request that
	// touches a TAP notices.
	f.create("t2", 2, ownerPeer.uid)
	f.k.DropUpdates(true)
	f.k.Delete("t2")
	if !held("t2") {
		t.Fatal("an update was not lost")
	}
	f.fails(ownerPeer, api.OpStats, api.NameArgs{Name: "t2"}, api.CodeNotFound)
	if held("t2") || exists(f.pinDir("t2")) {
		t.Fatal("a request found t2 gone and kept it")
	}
}

// Every program, queue and descriptor vrssd takes, it gives back.
func TestOpsNoLeaks(t *testing.T) {
	f := newFakeDaemon(t, fakePolicy)
	before := openFDs(t)
	for i := range 3 {
		name := fmt.Sprintf("t%d", i)
		f.create(name, 4, ownerPeer.uid)
		_, out := f.call(ownerPeer, api.OpOpen, api.OpenArgs{Name: name})
		fd.CloseAll(out)
		f.do(ownerPeer, api.OpSetRSS, api.SetRSSArgs{Name: name, Config: ptrConfig(testConfig(4))}, nil)
		f.do(ownerPeer, api.OpDetach, api.NameArgs{Name: name}, nil)
		f.do(ownerPeer, api.OpAttach, api.NameArgs{Name: name}, nil)
	}
	if n := f.k.Programs(); n != 3 {
		t.Fatalf("%d programs open for 3 TAPs", n)
	}
	for i := range 3 {
		f.do(ownerPeer, api.OpDelete, api.NameArgs{Name: fmt.Sprintf("t%d", i)}, nil)
	}
	if n := f.k.Programs(); n != 0 {
		t.Fatalf("%d programs open after deleting every TAP", n)
	}
	// The fake kernel keeps its programs' descriptors, 2 each.
	if after := openFDs(t); after > before+6 {
		t.Fatalf("%d descriptors open, %d before", after, before)
	}
}

func openFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip(err)
	}
	return len(ents)
}
