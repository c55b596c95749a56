package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/agent/internal/kernel"
	"github.com/vrss-dev/vrss/agent/internal/kernel/fake"
	"github.com/vrss-dev/vrss/agent/internal/wire"
	"github.com/vrss-dev/vrss/internal/fd"
	"github.com/vrss-dev/vrss/rss"
	"github.com/vrss-dev/vrss/tap"
)

// The TestOps tests run the daemon in-process on a fake kernel
// (agent/internal/kernel/fake): no root, no TAP device, no eBPF, no vrssd
// process. A request goes through Server.handle, what a connection does
// after it has read a message and its descriptors, with the peer's
// credentials as SO_PEERCRED would have given them. The tests that run
// vrssd as root (harness_test.go) remain the proof against the kernel.

// Peers of the table tests, under fakePolicy.
var (
	rootPeer    = &peer{uid: 0, gid: 0, pid: 1}
	adminPeer   = &peer{uid: 3000, gid: 3000, extra: []int{10}, pid: 2} // in the admin group
	ownerPeer   = &peer{uid: 1000, gid: 1000, pid: 3}                   // owns the TAP, may not create
	creatorPeer = &peer{uid: 1500, gid: 1500, pid: 4}                   // may create, owns no TAP
	otherPeer   = &peer{uid: 2000, gid: 2000, pid: 5}                   // neither
)

const fakePolicy = `{"create": {"uids": [1500]}, "admin": {"gids": [10]}, "qemu_binaries": ["/nonexistent/qemu-system-x86_64"]}`

// fakeDaemon is a Server on a fake kernel, with directories of its own; it
// can be stopped and started again on the same kernel and directories.
type fakeDaemon struct {
	t    *testing.T
	k    *fake.Kernel
	opts Options
	s    *Server
	logs *logBuffer
}

// logBuffer collects the daemon's log; goroutines of the daemon may write
// to it after the test that started it has ended.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// newFakeDaemon starts a daemon with the configuration file policy ("" for
// none) on a new fake kernel.
func newFakeDaemon(t *testing.T, policy string) *fakeDaemon {
	t.Helper()
	k := fake.New()
	t.Cleanup(k.Close)
	return newFakeDaemonOn(t, k, policy)
}

func newFakeDaemonOn(t *testing.T, k *fake.Kernel, policy string) *fakeDaemon {
	t.Helper()
	var pol Policy
	if policy != "" {
		var err error
		if pol, err = ParsePolicy([]byte(policy)); err != nil {
			t.Fatal(err)
		}
	}
	// Not t.TempDir: a subtest's name would make the socket's path longer
	// than a unix socket address holds.
	dir, err := os.MkdirTemp("", "vrssd-fake-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	f := &fakeDaemon{t: t, k: k, logs: &logBuffer{}}
	f.opts = Options{
		Socket: filepath.Join(dir, "run", "vrss.sock"), StateDir: filepath.Join(dir, "state"), BPFFSDir: filepath.Join(dir, "bpf"),
		Policy: pol, Logger: slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Version: "fake", Programs: k, TAPs: k,
	}
	t.Cleanup(func() {
		f.stop()
		if t.Failed() {
			t.Logf("vrssd's log:\n%s", f.logs)
		}
	})
	f.start()
	return f
}

// start starts the daemon, which must start.
func (f *fakeDaemon) start() {
	f.t.Helper()
	s, err := New(f.opts)
	if err != nil {
		f.t.Fatalf("start: %v", err)
	}
	f.s = s
}

// stop shuts the daemon down as Serve does when its context is done.
func (f *fakeDaemon) stop() {
	if f.s == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f.s.Serve(ctx)
	f.s = nil
}

func (f *fakeDaemon) restart() {
	f.t.Helper()
	f.stop()
	f.start()
}

// call makes request op with args as peer p, with descriptors in (which it
// closes, as a connection does), on a connection that has said hello. It
// returns the answer and the descriptors that came with it, which the
// caller owns.
func (f *fakeDaemon) call(p *peer, op api.Op, args any, in ...*fd.FD) (*api.Response, []*fd.FD) {
	f.t.Helper()
	req := api.Request{ID: 7, Op: op}
	if args != nil {
		b, err := json.Marshal(args)
		if err != nil {
			f.t.Fatal(err)
		}
		req.Args = b
	}
	b, err := json.Marshal(req)
	if err != nil {
		f.t.Fatal(err)
	}
	resp, out, _ := f.s.handle(&session{peer: p, hello: true}, wire.Message{Data: b}, in)
	fd.CloseAll(in)
	// Refusals before the request is decoded (rate limits) answer id 0.
	if resp.ID != req.ID && !(resp.ID == 0 && resp.Error != nil) {
		f.t.Fatalf("%s: answer to request %d, want %d", op, resp.ID, req.ID)
	}
	if resp.Error != nil && len(out) > 0 {
		f.t.Fatalf("%s: an error with %d descriptors", op, len(out))
	}
	return resp, out
}

// do makes a request that must succeed, closes any descriptors that come
// with it, and decodes the result into res (if not nil).
func (f *fakeDaemon) do(p *peer, op api.Op, args any, res any) {
	f.t.Helper()
	r, out := f.call(p, op, args)
	fd.CloseAll(out)
	if r.Error != nil {
		f.t.Fatalf("%s by uid %d: %v", op, p.uid, r.Error)
	}
	if res != nil {
		if err := json.Unmarshal(r.Result, res); err != nil {
			f.t.Fatalf("%s: %v: %s", op, err, r.Result)
		}
	}
}

// fails makes a request that must fail with code, and returns the message.
func (f *fakeDaemon) fails(p *peer, op api.Op, args any, code api.Code) string {
	f.t.Helper()
	r, out := f.call(p, op, args)
	fd.CloseAll(out)
	if r.Error == nil || r.Error.Code != code {
		f.t.Fatalf("%s by uid %d: %+v (%s), want %s", op, p.uid, r.Error, r.Result, code)
	}
	return r.Error.Message
}

// create makes TAP name, owned by uid, with queues queues, as root.
func (f *fakeDaemon) create(name string, queues, uid int) api.TAP {
	f.t.Helper()
	var tp api.TAP
	f.do(rootPeer, api.OpCreate, api.CreateArgs{Name: name, Queues: queues, OwnerUID: ptrTo(uid), OwnerGID: ptrTo(uid)}, &tp)
	return tp
}

// list returns what p lists.
func (f *fakeDaemon) list(p *peer) []api.TAP {
	f.t.Helper()
	var l api.ListResult
	f.do(p, api.OpList, nil, &l)
	return l.TAPs
}

// tap returns what root lists of TAP name; ok is false if it lists none.
func (f *fakeDaemon) tap(name string) (api.TAP, bool) {
	f.t.Helper()
	for _, tp := range f.list(rootPeer) {
		if tp.Name == name {
			return tp, true
		}
	}
	return api.TAP{}, false
}

func (f *fakeDaemon) pinDir(name string) string {
	return filepath.Join(f.opts.BPFFSDir, pinDirName(name))
}

func (f *fakeDaemon) state() *state {
	f.t.Helper()
	st, err := readState(f.opts.StateDir)
	if err != nil {
		f.t.Fatal(err)
	}
	return st
}

// record returns state.json's record of TAP name.
func (f *fakeDaemon) record(name string) (tapState, bool) {
	f.t.Helper()
	for _, r := range f.state().TAPs {
		if r.Name == name {
			return r, true
		}
	}
	return tapState{}, false
}

// openByName is a VMM opening n queues of TAP name itself, as libvirt
// does for an unmanaged TAP; they are closed at the end of the test, if
// not before.
func (f *fakeDaemon) openByName(name string, n int) kernel.Queues {
	f.t.Helper()
	q, err := f.k.Open(name, n, 12)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { q.Close() })
	return q
}

// eventually waits up to 5 seconds for cond.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after 5 s: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// testConfig is a configuration for a TAP of queues queues.
func testConfig(queues int) rss.Config {
	table := make([]uint16, 16)
	for i := range table {
		table[i] = uint16((i * 3) % queues)
	}
	return rss.Config{HashTypes: rss.HashTCPv4 | rss.HashIPv4, Key: rss.DefaultKey, Table: table}
}

// extTAP makes a persistent TAP outside vrssd, with the kernel owner and
// group given (-1: unset), and no queue attached.
func extTAP(t *testing.T, k *fake.Kernel, name string, owner, group int) {
	t.Helper()
	if group < 0 {
		group = 0
	}
	q, err := k.Create(tap.Options{Name: name, Queues: 1, VnetHdrLen: 12, Owner: owner, Group: group, Persist: true})
	if err != nil {
		t.Fatal(err)
	}
	q.Close()
}

// sameMessage reports whether two refusals say the same but for a name.
func sameMessage(a, b, nameA, nameB string) bool {
	return strings.ReplaceAll(a, nameA, "NAME") == strings.ReplaceAll(b, nameB, "NAME")
}
