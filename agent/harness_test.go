package agent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/agent/client"
	"github.com/vrss-dev/vrss/internal/privtest"
	"github.com/vrss-dev/vrss/rss"
	"github.com/vrss-dev/vrss/steering"
)

// The tests run vrssd as a real process: built once on first use, started
// in a network namespace of the test's own (which outlives any one daemon,
// so a restarted daemon finds its TAPs), with its own socket, state
// directory and bpffs directory. Helpers that must run as another uid are
// this test binary, re-executed with envHelper set.

const envHelper = "VRSS_AGENT_TEST_HELPER"

var (
	vrssdBuildFlags []string // -race under the race detector
	binDir          string   // 0755: vrssd and a copy of this binary, for other uids
	vrssd           string
	selfBin         string
)

func TestMain(m *testing.M) {
	if op := os.Getenv(envHelper); op != "" {
		os.Exit(helperMain(op))
	}
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// buildOnce builds vrssd and copies this binary into a directory other
// uids can read, on first use: tests that skip need neither.
var buildOnce = sync.OnceValue(func() error {
	var err error
	if binDir, err = os.MkdirTemp("", "vrssd-test-bin-"); err != nil {
		return err
	}
	if err := os.Chmod(binDir, 0o755); err != nil {
		return err
	}
	vrssd = filepath.Join(binDir, "vrssd")
	args := append(append([]string{"build"}, vrssdBuildFlags...), "-o", vrssd, "github.com/vrss-dev/vrss/cmd/vrssd")
	out, err := exec.Command("go", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("build vrssd: %v\n%s", err, out)
	}
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		return err
	}
	selfBin = filepath.Join(binDir, "agent.test")
	return os.WriteFile(selfBin, self, 0o755)
})

// requirePriv skips (or, with VRSS_REQUIRE_PRIV=1, fails) without root,
// TAP devices, BPF and network namespaces.
func requirePriv(t testing.TB) {
	t.Helper()
	for _, what := range []string{"root", "tap", "bpf", "netns"} {
		privtest.Require(t, what)
	}
}

// daemon is one vrssd process, and the directories and network namespace
// a restarted one reuses.
type daemon struct {
	t                                  testing.TB
	dir                                string
	socket, stateDir, bpffsDir, config string
	ns                                 netns.NsHandle
	args                               []string
	env                                []string // added to vrssd's environment

	mu     sync.Mutex
	cmd    *exec.Cmd
	stderr *syncBuffer
	exited chan struct{}
	err    error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newDaemon starts vrssd in a fresh network namespace. policy, if not
// empty, is written as its configuration file.
func newDaemon(t testing.TB, policy string, args ...string) *daemon {
	t.Helper()
	requirePriv(t)
	if err := buildOnce(); err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "vrssd-test-")
	if err != nil {
		t.Fatal(err)
	}
	// Other uids must reach the socket.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	d := &daemon{
		t: t, dir: dir,
		socket:   filepath.Join(dir, "run", "vrss.sock"),
		stateDir: filepath.Join(dir, "state"),
		bpffsDir: filepath.Join(dir, "bpf"),
		args:     args,
	}
	if policy != "" {
		d.config = filepath.Join(dir, "vrssd.json")
		if err := os.WriteFile(d.config, []byte(policy), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	d.ns = newNetns(t)
	t.Cleanup(func() {
		d.kill()
		// The pins live in a bpffs instance of the daemon's own: detaching
		// it frees the programs; the namespace takes the TAPs with it.
		unix.Unmount(d.bpffsDir, unix.MNT_DETACH)
		// And the one vrssd mounts beside its socket for the owners' pins
		// of AF_XDP ports' XSKMAPs.
		unix.Unmount(filepath.Join(filepath.Dir(d.socket), "xsk"), unix.MNT_DETACH)
		d.ns.Close()
		os.RemoveAll(dir)
	})
	d.start()
	return d
}

// newNetns returns a new network namespace with lo up and IPv6 off for
// new interfaces, so that no stray traffic mixes with injected frames.
func newNetns(t testing.TB) netns.NsHandle {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.New()
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			panic(err) // the thread is in the wrong namespace
		}
	}()
	if lo, err := netlink.LinkByName("lo"); err == nil {
		netlink.LinkSetUp(lo)
	}
	os.WriteFile("/proc/sys/net/ipv6/conf/default/disable_ipv6", []byte("1"), 0)
	return ns
}

// inNS runs fn on a thread inside the daemon's network namespace.
func (d *daemon) inNS(fn func()) {
	d.t.Helper()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		d.t.Fatal(err)
	}
	defer orig.Close()
	if err := netns.Set(d.ns); err != nil {
		runtime.UnlockOSThread()
		d.t.Fatal(err)
	}
	defer func() {
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
	}()
	fn()
}

// start starts vrssd and waits until it answers.
func (d *daemon) start() {
	d.t.Helper()
	args := []string{"--socket", d.socket, "--state-dir", d.stateDir, "--bpffs-dir", d.bpffsDir, "--log-level", "debug"}
	if d.config != "" {
		args = append(args, "--config", d.config)
	}
	cmd := exec.Command(vrssd, append(args, d.args...)...)
	cmd.Env = append(os.Environ(), d.env...)
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	cmd.Stdout = stderr
	var err error
	// A child process starts in the namespace of the thread that forks it.
	d.inNS(func() { err = cmd.Start() })
	if err != nil {
		d.t.Fatal(err)
	}
	exited := make(chan struct{})
	d.mu.Lock()
	d.cmd, d.stderr, d.exited = cmd, stderr, exited
	d.mu.Unlock()
	go func() {
		err := cmd.Wait()
		d.mu.Lock()
		d.err = err
		d.mu.Unlock()
		close(exited)
	}()
	d.t.Cleanup(func() {
		if d.t.Failed() {
			d.t.Logf("vrssd (pid %d) log:\n%s", cmd.Process.Pid, stderr.String())
		}
	})
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := client.Dial(context.Background(), d.socket)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-exited:
			d.t.Fatalf("vrssd exited at start: %v\n%s", d.err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("vrssd does not answer: %v\n%s", err, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (d *daemon) pid() int { return d.cmd.Process.Pid }

// stop sends SIGTERM and requires a clean exit.
func (d *daemon) stop() {
	d.t.Helper()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(20 * time.Second):
		d.t.Fatal("vrssd did not stop on SIGTERM")
	}
	if d.err != nil {
		d.t.Fatalf("vrssd exited with %v after SIGTERM\n%s", d.err, d.stderr.String())
	}
}

// kill stops vrssd with SIGKILL: no shutdown at all.
func (d *daemon) kill() {
	if d.cmd == nil {
		return
	}
	select {
	case <-d.exited:
	default:
		d.cmd.Process.Kill()
		<-d.exited
	}
}

// log returns what vrssd has logged so far.
func (d *daemon) log() string { return d.stderr.String() }

func (d *daemon) dial() *client.Client {
	d.t.Helper()
	c, err := client.Dial(context.Background(), d.socket)
	if err != nil {
		d.t.Fatal(err)
	}
	d.t.Cleanup(func() { c.Close() })
	return c
}

// fds counts the daemon's open file descriptors.
func (d *daemon) fds() int {
	d.t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", d.pid()))
	if err != nil {
		d.t.Fatal(err)
	}
	return len(ents)
}

// fdsBaseline counts the daemon's fds once the count has stopped moving
// (connections closed just before are torn down asynchronously).
func (d *daemon) fdsBaseline() int {
	n := d.fds()
	for stable := 0; stable < 3; {
		time.Sleep(30 * time.Millisecond)
		m := d.fds()
		if m == n {
			stable++
		} else {
			n, stable = m, 0
		}
	}
	return n
}

// fdsSettle waits up to a few seconds for the daemon's fd count to come
// back to want, and returns the last count.
func (d *daemon) fdsSettle(want int) int {
	n := d.fds()
	for deadline := time.Now().Add(5 * time.Second); n != want && time.Now().Before(deadline); n = d.fds() {
		time.Sleep(50 * time.Millisecond)
	}
	return n
}

// rawConn is a connection that speaks the protocol by hand, for the cases
// the client library never produces.
type rawConn struct {
	t testing.TB
	c *net.UnixConn
}

func (d *daemon) raw() *rawConn {
	d.t.Helper()
	c, err := net.Dial("unixpacket", d.socket)
	if err != nil {
		d.t.Fatal(err)
	}
	d.t.Cleanup(func() { c.Close() })
	return &rawConn{t: d.t, c: c.(*net.UnixConn)}
}

func (r *rawConn) send(msg []byte, fds ...int) {
	r.t.Helper()
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	if _, _, err := r.c.WriteMsgUnix(msg, oob, nil); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rawConn) sendJSON(v any) {
	r.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		r.t.Fatal(err)
	}
	r.send(b)
}

// recv reads one response and the fds that came with it (closing them).
func (r *rawConn) recv() (*api.Response, int) {
	r.t.Helper()
	resp, n, err := r.tryRecv()
	if err != nil {
		r.t.Fatal(err)
	}
	return resp, n
}

func (r *rawConn) tryRecv() (*api.Response, int, error) {
	buf := make([]byte, api.MaxMessageSize+1)
	oob := make([]byte, unix.CmsgSpace(api.MaxFDs*4))
	r.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, oobn, _, _, err := r.c.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, 0, err
	}
	nfds := 0
	if oobn > 0 {
		msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
		for i := range msgs {
			fds, _ := unix.ParseUnixRights(&msgs[i])
			nfds += len(fds)
			for _, fd := range fds {
				unix.Close(fd)
			}
		}
	}
	var resp api.Response
	if err := json.Unmarshal(buf[:n], &resp); err != nil {
		return nil, nfds, fmt.Errorf("response %q: %v", buf[:n], err)
	}
	return &resp, nfds, nil
}

// closed reports whether the daemon closed the connection.
func (r *rawConn) closed() bool {
	r.t.Helper()
	_, _, err := r.tryRecv()
	return errors.Is(err, io.EOF)
}

func (r *rawConn) hello() {
	r.t.Helper()
	r.sendJSON(api.Request{ID: 1, Op: api.OpHello, Args: mustJSON(api.HelloArgs{Protocol: api.ProtocolVersion, ABI: steering.ABIStamp()})})
	if resp, _ := r.recv(); resp.Error != nil {
		r.t.Fatal(resp.Error)
	}
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// wantCode fails t unless err is an *api.Error with code.
func wantCode(t *testing.T, err error, code api.Code) {
	t.Helper()
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Code != code {
		t.Fatalf("got error %v, want code %s", err, code)
	}
}

// wantDenied fails t unless a helper's request was refused as denied, with
// no fds handed over.
func wantDenied(t *testing.T, what string, r helperResult) {
	t.Helper()
	if r.Error == nil || r.Error.Code != api.CodeDenied || r.FDs != 0 {
		t.Fatalf("%s: got %+v, want denied", what, r)
	}
}

// wantHidden fails t unless a helper's request about another user's TAP
// was answered exactly as one about a TAP that does not exist: not_found,
// naming neither the owner nor the TAP's existence.
func wantHidden(t *testing.T, what string, r helperResult) {
	t.Helper()
	if r.Error == nil || r.Error.Code != api.CodeNotFound || r.FDs != 0 || strings.Contains(r.Error.Message, "belongs") {
		t.Fatalf("%s: got %+v, want not_found", what, r)
	}
}

// helperResult is what a helper process prints.
type helperResult struct {
	Error  *api.Error      `json:"error,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
	FDs    int             `json:"fds"`
	Fail   string          `json:"fail,omitempty"` // the helper itself failed
}

// helperArgs tell a helper process what to do.
type helperArgs struct {
	Socket string          `json:"socket"`
	Op     api.Op          `json:"op"`
	Args   json.RawMessage `json:"args,omitempty"`
	// Publish, for the "open" helper: a configuration to publish through
	// the mmapped map, as an unprivileged VMM does.
	Publish json.RawMessage `json:"publish,omitempty"`
	FDs     int             `json:"fds,omitempty"` // for "die": fds to attach
	// Frames, for the "vmm" and "qemuvmm" helpers: how many frames to
	// read from the queues after it printed READY.
	Frames int `json:"frames,omitempty"`
	// Queue, for the "qemuvmm" helper: the queue to write into the
	// configuration map handed by qemu_ebpf.
	Queue int `json:"queue,omitempty"`
	// Conns, for the "hold" helper: connections to open (each with a
	// hello) and hold until the helper's standard input closes.
	Conns int `json:"conns,omitempty"`
	// Name, for the "tunsetiff" helper: the TAP to attach a queue to.
	Name string `json:"name,omitempty"`
	// Calls, for the "calls" helper: requests to make one after the
	// other on one connection; its result is their results, in order.
	Calls []helperCall `json:"calls,omitempty"`
}

// helperCall is one request of the "calls" helper.
type helperCall struct {
	Op   api.Op          `json:"op"`
	Args json.RawMessage `json:"args,omitempty"`
}

// asUser runs the helper action as uid (gid = uid) and returns its result.
func (d *daemon) asUser(uid int, action string, a helperArgs) helperResult {
	d.t.Helper()
	a.Socket = d.socket
	cmd := execHelper(action, a)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid), NoSetGroups: false}}
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			d.t.Fatalf("helper %s as uid %d: %v\n%s%s", action, uid, err, out, ee.Stderr)
		}
		d.t.Fatalf("helper %s as uid %d: %v", action, uid, err)
	}
	var r helperResult
	if err := json.Unmarshal(out, &r); err != nil {
		d.t.Fatalf("helper %s as uid %d printed %q: %v", action, uid, out, err)
	}
	if r.Fail != "" {
		d.t.Fatalf("helper %s as uid %d: %s", action, uid, r.Fail)
	}
	return r
}

// execHelper prepares a helper process: this test binary, which runs
// helperMain instead of the tests.
func execHelper(action string, a helperArgs) *exec.Cmd {
	cmd := exec.Command(selfBin)
	cmd.Env = append(os.Environ(), envHelper+"="+action, "VRSS_HELPER_ARGS="+string(mustJSON(a)))
	cmd.Dir = "/"
	return cmd
}

// dieHelper runs a process that sends a request with a.FDs fds attached
// and exits without waiting for the answer.
func (d *daemon) dieHelper(a helperArgs) {
	d.t.Helper()
	a.Socket = d.socket
	if out, err := execHelper("die", a).CombinedOutput(); err != nil {
		d.t.Fatalf("die helper: %v\n%s", err, out)
	}
}

// helperMain runs in a helper process.
func helperMain(action string) int {
	var a helperArgs
	out := json.NewEncoder(os.Stdout)
	if err := json.Unmarshal([]byte(os.Getenv("VRSS_HELPER_ARGS")), &a); err != nil {
		out.Encode(helperResult{Fail: err.Error()})
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res := helperResult{}
	err := func() error {
		switch action {
		case "call", "open", "vmm", "qemuvmm", "flowowner", "calls", "afxdpvmm":
		case "hold":
			os.Exit(holdHelper(ctx, a))
		case "flood":
			os.Exit(floodHelper(ctx, a))
		case "tunsetiff":
			return tunsetiffHelper(a, &res)
		case "afxdpmappath":
			return afxdpMapPathHelper(a, &res)
		case "die":
			// Send a request with fds attached, then exit without
			// reading the answer.
			c, err := net.Dial("unixpacket", a.Socket)
			if err != nil {
				return err
			}
			uc := c.(*net.UnixConn)
			hello := mustJSON(api.Request{ID: 1, Op: api.OpHello, Args: mustJSON(api.HelloArgs{Protocol: api.ProtocolVersion, ABI: steering.ABIStamp()})})
			if _, err := uc.Write(hello); err != nil {
				return err
			}
			var fds []int
			for range a.FDs {
				fd, err := unix.Open("/dev/null", unix.O_RDONLY, 0)
				if err != nil {
					return err
				}
				fds = append(fds, fd)
			}
			req := mustJSON(api.Request{ID: 2, Op: a.Op, Args: a.Args})
			_, _, err = uc.WriteMsgUnix(req, unix.UnixRights(fds...), nil)
			if err != nil {
				return err
			}
			os.Exit(0)
		default:
			return fmt.Errorf("unknown helper action %q", action)
		}
		c, err := client.Dial(ctx, a.Socket)
		if err != nil {
			return err
		}
		defer c.Close()
		if action == "vmm" {
			return vmmHelper(ctx, c, a, &res)
		}
		if action == "qemuvmm" {
			return qemuVMMHelper(ctx, c, a, &res)
		}
		if action == "afxdpvmm" {
			return afxdpVMMHelper(ctx, c, a, &res)
		}
		if action == "flowowner" {
			return flowOwnerHelper(ctx, c, a, &res)
		}
		if action == "calls" {
			var all []helperResult
			for _, hc := range a.Calls {
				var raw json.RawMessage
				var r helperResult
				_, err := c.Call(ctx, hc.Op, hc.Args, nil, &raw)
				var ae *api.Error
				switch {
				case errors.As(err, &ae):
					r.Error = ae
				case err != nil:
					return err
				}
				r.Result = raw
				all = append(all, r)
			}
			res.Result = mustJSON(all)
			return nil
		}
		if action == "open" {
			var na api.NameArgs
			json.Unmarshal(a.Args, &na)
			h, err := c.Open(ctx, na.Name)
			if err != nil {
				return err
			}
			defer h.Close()
			res.FDs = len(h.Queues) + 1
			if a.Publish != nil {
				c, err := rss.ParseConfigJSON(a.Publish)
				if err != nil {
					return err
				}
				if err := h.Publisher.Publish(c); err != nil {
					return err
				}
			}
			res.Result = mustJSON(map[string]any{"tap": h.TAP, "generation": h.Publisher.Generation()})
			return nil
		}
		var raw json.RawMessage
		var args any
		if a.Args != nil {
			args = a.Args
		}
		files, err := c.Call(ctx, a.Op, args, nil, &raw)
		res.FDs = len(files)
		for _, f := range files {
			f.Close()
		}
		res.Result = raw
		return err
	}()
	var ae *api.Error
	switch {
	case errors.As(err, &ae):
		res.Error = ae
	case err != nil:
		res.Fail = err.Error()
	}
	out.Encode(res)
	return 0
}

// ifaces lists the interface names in the daemon's namespace.
func (d *daemon) ifaces() []string {
	var names []string
	d.inNS(func() {
		links, err := netlink.LinkList()
		if err != nil {
			d.t.Fatal(err)
		}
		for _, l := range links {
			names = append(names, l.Attrs().Name)
		}
	})
	return names
}

func (d *daemon) hasIface(name string) bool {
	for _, n := range d.ifaces() {
		if n == name {
			return true
		}
	}
	return false
}

func (d *daemon) pinDirExists(name string) bool {
	_, err := os.Stat(filepath.Join(d.bpffsDir, name))
	return err == nil
}

func (d *daemon) stateFile() string {
	b, _ := os.ReadFile(filepath.Join(d.stateDir, "state.json"))
	return string(b)
}

func listNames(taps []api.TAP) string {
	var names []string
	for _, t := range taps {
		names = append(names, t.Name)
	}
	return strings.Join(names, ",")
}

func execCommand(name string, args ...string) *exec.Cmd { return exec.Command(name, args...) }

// exitCode is a finished command's exit status (0 for a nil error).
func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}
