package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/internal/buildinfo/buildtest"
	"github.com/vrss-dev/vrss/internal/privtest"
)

// startDaemon builds vrssd and runs it in a network namespace of its own,
// with private socket, state and bpffs directories, for the CLI to talk to.
func startDaemon(t *testing.T) string {
	for _, need := range []string{"root", "tap", "bpf", "netns"} {
		privtest.Require(t, need)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "vrssd")
	build := exec.Command("go", "build", "-o", bin, "../vrssd")
	build.Env = append(os.Environ(), buildtest.TrustCheckout(buildtest.Root(t))...)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build vrssd: %v\n%s", err, out)
	}
	sock := filepath.Join(dir, "vrss.sock")
	bpffs := filepath.Join(dir, "bpf")
	cmd := exec.Command(bin, "--socket", sock, "--state-dir", filepath.Join(dir, "state"), "--bpffs-dir", bpffs)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	var logs strings.Builder
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		syscall.Unmount(bpffs, syscall.MNT_DETACH)
		// vrssd's bpf filesystem for AF_XDP map pins, beside its socket.
		syscall.Unmount(filepath.Join(dir, "xsk"), syscall.MNT_DETACH)
		if t.Failed() {
			t.Logf("vrssd log:\n%s", logs.String())
		}
	})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("vrssd did not listen:\n%s", logs.String())
		}
	}
	return sock
}

// daemonCLI returns two ways to run the CLI against the daemon at sock: ok
// wants success and returns stdout; fails wants exit status code and one
// line on stderr that mentions mention.
func daemonCLI(t *testing.T, sock string) (ok func(args ...string) string, fails func(code int, mention string, args ...string)) {
	ok = func(args ...string) string {
		t.Helper()
		code, out, errOut := vrss(t, append(args, "--socket", sock)...)
		if code != 0 {
			t.Fatalf("vrss %q: exit %d: %s", args, code, errOut)
		}
		return out
	}
	fails = func(code int, mention string, args ...string) {
		t.Helper()
		c, out, errOut := vrss(t, append(args, "--socket", sock)...)
		if c != code || out != "" || !strings.HasPrefix(errOut, "vrss: ") || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, mention) {
			t.Fatalf("vrss %q: exit %d, stdout %q, stderr %q; want exit %d mentioning %q", args, c, out, errOut, code, mention)
		}
	}
	return ok, fails
}

// The daemon commands end to end: tap create/list/detach/attach/delete, rss
// set/show, stats, qemu args, as a user types them.
func TestDaemonCommands(t *testing.T) {
	sock := startDaemon(t)
	ok, fails := daemonCLI(t, sock)

	if out := ok("tap", "create", "cli0", "--queues", "4"); !strings.Contains(out, "created cli0: 4 queues") {
		t.Errorf("create: %q", out)
	}
	fails(1, "exists", "tap", "create", "cli0", "--queues", "4")
	if out := ok("rss", "show", "cli0"); !strings.Contains(out, "no RSS configuration") {
		t.Errorf("show before set: %q", out)
	}
	ok("rss", "set", "cli0", "--weights", "5,3,1,1", "--types", "tcpv4,udpv4,ipv4", "--unclassified", "3")
	out := ok("rss", "show", "cli0")
	for _, want := range []string{
		"RX flow hash indirection table for cli0 with 4 RX ring(s):",
		"    0:      0     0     0     0     0     0     0     0\n",
		"   64:      1     1     1     1     1     1     1     1\n",
		"  120:      3     3     3     3     3     3     3     3\n",
		"RSS hash key:\n6d:5a:56:da:",
		"Hash types: ipv4,tcpv4,udpv4\n",
		"Unclassified queue: 3\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("rss show lacks %q:\n%s", want, out)
		}
	}
	// What was left out is kept: only the key changes.
	ok("rss", "set", "cli0", "--key", "01:02:03:04")
	var st api.RSSState
	if err := json.Unmarshal([]byte(ok("rss", "show", "cli0", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	if st.Config == nil || string(st.Config.Key) != "\x01\x02\x03\x04" || st.Config.UnclassifiedQueue != 3 || st.Config.Table[127] != 3 || st.Generation != 2 {
		t.Errorf("after --key: %+v", st)
	}
	fails(2, "queue out of range", "rss", "set", "cli0", "--table", "0,9")
	fails(2, "bad indirection table length", "rss", "set", "cli0", "--table", "0,1,2")
	fails(2, "exclude each other", "rss", "set", "cli0", "--equal", "2", "--weights", "1,1")
	fails(1, "not_found", "rss", "show", "nope")

	if out := ok("stats", "cli0"); !strings.Contains(out, "cli0: 0 packets steered, 0 unclassified") || !strings.Contains(out, "queues enabled in the kernel: 0 of 4") || strings.Count(out, "\n") != 7 {
		t.Errorf("stats:\n%s", out)
	}
	var stats api.Stats
	if err := json.Unmarshal([]byte(ok("stats", "cli0", "--json")), &stats); err != nil || len(stats.Queues) != 4 {
		t.Errorf("stats --json: %+v, %v", stats, err)
	}
	if out := ok("tap", "detach", "cli0"); out != "detached steering of cli0\n" {
		t.Errorf("detach: %q", out)
	}
	if out := ok("tap", "list"); !strings.Contains(out, "cli0  4       0        0:0    detached  0           2") {
		t.Errorf("list after detach:\n%s", out)
	}
	ok("tap", "attach", "cli0")
	var taps []api.TAP
	if err := json.Unmarshal([]byte(ok("tap", "list", "--json")), &taps); err != nil || len(taps) != 1 || !taps[0].Steering {
		t.Errorf("list --json after attach: %+v, %v", taps, err)
	}
	if out := ok("qemu", "args", "--tap", "cli0"); out != "-netdev tap,id=vrss0,fds=3:4:5:6,vhost=off -device virtio-net-pci,netdev=vrss0,mq=on,vectors=10\n" {
		t.Errorf("qemu args: %q", out)
	}
	ok("tap", "delete", "cli0")
	if out := ok("tap", "list"); strings.Contains(out, "cli0") {
		t.Errorf("list after delete:\n%s", out)
	}
	// No daemon at all: a failed operation, with a hint.
	c, _, errOut := vrss(t, "tap", "list", "--socket", sock+".none")
	if c != 1 || !strings.Contains(errOut, "cannot reach vrssd") {
		t.Errorf("no daemon: exit %d, %q", c, errOut)
	}
}

// Numbers are checked against the TAP before anything is sent, and a refused
// one changes nothing (issue 9, defect 10): --unclassified 65536 used to
// wrap to queue 0 and be published, --vnet-hdr 0 to create a TAP with a
// 12-byte header, and tap create's help to promise 256 queues.
func TestDaemonRangeChecks(t *testing.T) {
	sock := startDaemon(t)
	ok, fails := daemonCLI(t, sock)
	show := func(name string) api.RSSState {
		t.Helper()
		var st api.RSSState
		if err := json.Unmarshal([]byte(ok("rss", "show", name, "--json")), &st); err != nil || st.Config == nil {
			t.Fatalf("rss show %s: %+v, %v", name, st, err)
		}
		return st
	}

	ok("tap", "create", "rng0", "--queues", "4")
	ok("rss", "set", "rng0", "--unclassified", "3")
	for _, f := range []struct{ mention, flag, value string }{
		{"--unclassified 65536: want a queue from 0 to 65535", "--unclassified", "65536"},
		{"--unclassified 70000: want a queue from 0 to 65535", "--unclassified", "70000"},
		{"--unclassified 4: rss: queue out of range: want 0 to 3 (rng0 has 4 queues)", "--unclassified", "4"},
		{"--equal 5: rss: queue out of range: want 1 to 4 (rng0 has 4 queues)", "--equal", "5"},
		{"--weights: rss: queue out of range: 5 weights, want at most one a queue (rng0 has 4 queues)", "--weights", "1,1,1,1,1"},
		{"--table: rss: queue out of range: entry 1 is queue 9, want 0 to 3 (rng0 has 4 queues)", "--table", "0,9"},
	} {
		fails(exitInput, f.mention, "rss", "set", "rng0", f.flag, f.value)
	}
	if st := show("rng0"); st.Generation != 1 || st.Config.UnclassifiedQueue != 3 {
		t.Errorf("refused values changed the configuration: generation %d, unclassified queue %d; want 1 and 3", st.Generation, st.Config.UnclassifiedQueue)
	}
	ok("rss", "set", "rng0", "--unclassified", "0", "--equal", "4")
	if st := show("rng0"); st.Generation != 2 || st.Config.UnclassifiedQueue != 0 || st.Config.Table[3] != 3 {
		t.Errorf("after --unclassified 0 --equal 4: %+v", st)
	}

	fails(exitInput, "--vnet-hdr 0: vrssd TAPs always carry a virtio-net header: want 10, 12 or 20", "tap", "create", "rng1", "--queues", "2", "--vnet-hdr", "0")
	fails(exitInput, "--queues 253: want 1 to 252", "tap", "create", "rng1", "--queues", "253")
	var taps []api.TAP
	if err := json.Unmarshal([]byte(ok("tap", "list", "--json")), &taps); err != nil || len(taps) != 1 {
		t.Fatalf("list after refused creates: %+v, %v", taps, err)
	}
	// The header lengths the CLI takes are the ones the daemon makes, and
	// the most queues the CLI takes is the most the daemon makes.
	ok("tap", "create", "rng1", "--queues", "2", "--vnet-hdr", "10")
	if out := ok("tap", "create", "rng2", "--queues", "252", "--vnet-hdr", "20"); !strings.Contains(out, "created rng2: 252 queues") {
		t.Errorf("create with 252 queues: %q", out)
	}
	if err := json.Unmarshal([]byte(ok("tap", "list", "--json")), &taps); err != nil || len(taps) != 3 {
		t.Fatalf("list: %+v, %v", taps, err)
	}
	for _, tp := range taps {
		if want := map[string]int{"rng0": 12, "rng1": 10, "rng2": 20}[tp.Name]; tp.VnetHdrLen != want {
			t.Errorf("%s: vnet header %d bytes, want %d", tp.Name, tp.VnetHdrLen, want)
		}
	}
	for _, name := range []string{"rng0", "rng1", "rng2"} {
		ok("tap", "delete", name)
	}
}
