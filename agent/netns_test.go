package agent_test

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/internal/netnstest"
	"github.com/vrss-dev/vrss/rss"
)

// TestNetns: TAPs of one name in vrssd's namespace and in two others are
// three TAPs, each reached by its namespace; every operation works on
// them; only root and admins may create in a namespace, an owner reaches
// its own TAP there, and others find nothing.
func TestNetns(t *testing.T) {
	d := newDaemon(t, `{"create": {"uids": [4601]}, "admin": {"uids": [4603]}}`)
	pod1, pod2 := netnstest.Named(t), netnstest.Named(t)
	c := d.dial()
	ctx := context.Background()
	for _, ns := range []string{"", pod1, pod2} {
		tp, err := c.Create(ctx, api.CreateArgs{Name: "tap0", Queues: 4, OwnerUID: ptr(4601), OwnerGID: ptr(4601), Netns: ns})
		if err != nil {
			t.Fatalf("create tap0 in %q: %v", ns, err)
		}
		if tp.Netns != ns || !tp.Steering || tp.Queues != 4 {
			t.Fatalf("create tap0 in %q: %+v", ns, tp)
		}
	}
	for _, ns := range []string{pod1, pod2} {
		l := netnstest.Tuntap(t, ns, "tap0")
		if l == nil || l.Owner != 4601 || l.Flags&netlink.TUNTAP_MULTI_QUEUE == 0 {
			t.Fatalf("tap0 in %s: %+v", ns, l)
		}
	}
	if !d.hasIface("tap0") {
		t.Fatal("no tap0 in vrssd's namespace")
	}
	taps, err := c.List(ctx)
	if err != nil || len(taps) != 3 {
		t.Fatalf("list: %v %+v", err, taps)
	}
	// The same path again, and a second name for pod1 (/proc/PID/ns/net
	// of no process is at hand; a bind mount of it serves).
	if _, err := c.Create(ctx, api.CreateArgs{Name: "tap0", Queues: 4, Netns: pod1}); err == nil {
		t.Fatal("a second tap0 in pod1 was created")
	} else {
		wantCode(t, err, api.CodeExists)
	}
	cfg := rss.Config{HashTypes: rss.AllHashTypes, Key: rss.DefaultKey, Table: []uint16{3, 2}}
	if _, err := c.Netns(pod1).SetRSS(ctx, "tap0", cfg); err != nil {
		t.Fatal(err)
	}
	for ns, want := range map[string]bool{"": false, pod1: true, pod2: false} {
		st, err := c.Netns(ns).GetRSS(ctx, "tap0")
		if err != nil {
			t.Fatal(err)
		}
		if (st.Config != nil) != want {
			t.Fatalf("get_rss tap0 in %q: %+v, configured %v wanted", ns, st, want)
		}
		if _, err := c.Netns(ns).Stats(ctx, "tap0"); err != nil {
			t.Fatal(err)
		}
		if tp, err := c.Netns(ns).Detach(ctx, "tap0"); err != nil || tp.Steering {
			t.Fatalf("detach in %q: %v %+v", ns, err, tp)
		}
		if tp, err := c.Netns(ns).Attach(ctx, "tap0"); err != nil || !tp.Steering {
			t.Fatalf("attach in %q: %v %+v", ns, err, tp)
		}
	}
	h, err := c.Netns(pod2).Open(ctx, "tap0")
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Queues) != 4 {
		t.Fatalf("open: %d queues", len(h.Queues))
	}
	h.Close()

	// Only root and admins name a namespace to create in; the owner
	// reaches its TAP there, another user finds nothing.
	wantDenied(t, "create in a namespace as a creator", d.asUser(4601, "call", helperArgs{Op: api.OpCreate, Args: mustJSON(api.CreateArgs{Name: "tap1", Queues: 2, Netns: pod1})}))
	if r := d.asUser(4603, "call", helperArgs{Op: api.OpCreate, Args: mustJSON(api.CreateArgs{Name: "tap1", Queues: 2, Netns: pod1})}); r.Error != nil {
		t.Fatalf("an admin's create in a namespace: %+v", r)
	}
	if tt := netnstest.Tuntap(t, pod1, "tap1"); tt == nil || tt.Owner != 4603 {
		t.Fatalf("the admin's tap1: %+v", tt)
	}
	if err := c.Netns(pod1).Delete(ctx, "tap1"); err != nil {
		t.Fatal(err)
	}
	if r := d.asUser(4601, "call", helperArgs{Op: api.OpStats, Args: mustJSON(api.NameArgs{Name: "tap0", Netns: pod1})}); r.Error != nil {
		t.Fatalf("the owner's stats: %+v", r)
	}
	wantHidden(t, "another user's stats", d.asUser(4602, "call", helperArgs{Op: api.OpStats, Args: mustJSON(api.NameArgs{Name: "tap0", Netns: pod1})}))
	wantHidden(t, "a path that is no namespace", d.asUser(4601, "call", helperArgs{Op: api.OpStats, Args: mustJSON(api.NameArgs{Name: "tap0", Netns: "/etc/passwd"})}))
	if _, err := c.Create(ctx, api.CreateArgs{Name: "tap1", Queues: 2, Netns: "/etc/passwd"}); err == nil {
		t.Fatal("created in /etc/passwd")
	}
	if _, err := c.Create(ctx, api.CreateArgs{Name: "tap1", Queues: 2, Netns: "relative/path"}); err == nil {
		t.Fatal("created in a relative path")
	} else {
		wantCode(t, err, api.CodeBadRequest)
	}

	if err := c.Netns(pod1).Delete(ctx, "tap0"); err != nil {
		t.Fatal(err)
	}
	if netnstest.Tuntap(t, pod1, "tap0") != nil {
		t.Fatal("tap0 is still in pod1")
	}
	wantCode(t, c.Netns(pod1).Delete(ctx, "tap0"), api.CodeNotFound)
	if netnstest.Tuntap(t, pod2, "tap0") == nil || !d.hasIface("tap0") {
		t.Fatal("deleting pod1's tap0 took another")
	}
	// A namespace deleted under vrssd: its TAP is deleted and forgotten
	// within a few monitor intervals.
	if err := netnstest.Delete(pod2); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "pod2's tap0 forgotten", func() bool {
		taps, err := c.List(ctx)
		return err == nil && len(taps) == 1 && taps[0].Netns == ""
	})
}

// TestNetnsRestart: a TAP in another namespace survives vrssd's restart,
// found by its path; a TAP whose namespace went while vrssd was stopped is
// dropped at start, pins and all.
func TestNetnsRestart(t *testing.T) {
	d := newDaemon(t, "")
	pod1, pod2 := netnstest.Named(t), netnstest.Named(t)
	c := d.dial()
	ctx := context.Background()
	cfg := rss.Config{HashTypes: rss.AllHashTypes, Key: rss.DefaultKey, Table: []uint16{1, 0}}
	for _, ns := range []string{pod1, pod2} {
		if _, err := c.Create(ctx, api.CreateArgs{Name: "eth0", Queues: 2, Netns: ns}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Netns(ns).SetRSS(ctx, "eth0", cfg); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	d.stop()
	if err := netnstest.Delete(pod2); err != nil {
		t.Fatal(err)
	}
	d.start()
	c = d.dial()
	taps, err := c.List(ctx)
	if err != nil || len(taps) != 1 || taps[0].Netns != pod1 || !taps[0].Steering {
		t.Fatalf("after the restart: %v %+v\n%s", err, taps, d.log())
	}
	st, err := c.Netns(pod1).GetRSS(ctx, "eth0")
	if err != nil || st.Config == nil || st.Config.Table[0] != 1 {
		t.Fatalf("get_rss after the restart: %v %+v", err, st)
	}
	b := []byte(d.stateFile())
	var state struct {
		Version int               `json:"version"`
		TAPs    []json.RawMessage `json:"taps"`
	}
	if err := json.Unmarshal(b, &state); err != nil || state.Version != 4 || len(state.TAPs) != 1 {
		t.Fatalf("state.json: %v\n%s", err, b)
	}
	ents, err := os.ReadDir(d.bpffsDir)
	if err != nil {
		t.Fatal(err)
	}
	// bpffs has maps.debug and progs.debug of its own.
	var names []string
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".debug") {
			names = append(names, e.Name())
		}
	}
	if len(names) != 1 {
		t.Fatalf("bpffs directory: %q, want the one TAP's", names)
	}
	if err := c.Netns(pod1).Delete(ctx, "eth0"); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond for up to five seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
