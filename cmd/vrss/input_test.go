package main

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vrss-dev/vrss/internal/demo"
)

// Every number a flag takes is range-checked before it is converted or sent
// (issue 9, defect 10). These run without a daemon: the socket named does
// not exist, so a value the command let through would end in "cannot reach
// vrssd" (exit 1) rather than in the input error (exit 2) they expect.

// noDaemon returns a --socket flag naming a socket nobody listens on.
func noDaemon(t *testing.T) []string {
	return []string{"--socket", filepath.Join(t.TempDir(), "none.sock")}
}

// wantReachesDaemon checks that the arguments pass the command's own checks:
// it tries the (absent) daemon.
func wantReachesDaemon(t *testing.T, args ...string) {
	t.Helper()
	code, out, errOut := vrss(t, args...)
	if code != exitFailed || out != "" || !strings.Contains(errOut, "cannot reach vrssd") {
		t.Errorf("vrss %q: exit %d, stdout %q, stderr %q; want the values accepted and exit 1 for the missing daemon", args, code, out, errOut)
	}
}

// rss set --unclassified 65536 wrapped to 0 and was published; 70000 was
// reported as "unclassified queue 4464".
func TestRSSSetRangeChecks(t *testing.T) {
	sock := noDaemon(t)
	set := func(args ...string) []string { return append(append([]string{"rss", "set", "vm42"}, args...), sock...) }
	wantInputError(t, "--unclassified 65536: want a queue from 0 to 65535", set("--unclassified", "65536")...)
	wantInputError(t, "--unclassified 70000: want a queue from 0 to 65535", set("--unclassified", "70000")...)
	wantInputError(t, "--unclassified -1: want a queue from 0 to 65535", set("--unclassified", "-1")...)
	wantInputError(t, "--unclassified 4294967296: want", set("--unclassified", "4294967296")...)
	wantReachesDaemon(t, set("--unclassified", "0")...)
	wantReachesDaemon(t, set("--unclassified", "65535")...) // then checked against the TAP's queues

	wantInputError(t, "--equal 0: want a positive number of queues", set("--equal", "0")...)
	wantInputError(t, "--equal -3: want a positive number of queues", set("--equal", "-3")...)
	wantInputError(t, "--equal, --table and --weights exclude each other", set("--equal", "0", "--table", "0")...)
	wantInputError(t, `--table: "65536" is not a number from 0 to 65535`, set("--table", "0,65536")...)
	wantInputError(t, `--table: "" is not a number`, set("--table", "")...)
	wantInputError(t, `--weights: "-1" is not a number`, set("--weights", "1,-1")...)
	wantInputError(t, "--weights 0,0: want at least one positive weight", set("--weights", "0,0")...)
	wantInputError(t, "--size 3: want a power of two", set("--size", "3")...)

	// Key errors name the flag, an empty key too.
	wantInputError(t, "--key: rss: bad key size: 0 bytes, want 1 to 255", set("--key", "")...)
	wantInputError(t, "--key: rss: bad key size: 256 bytes", set("--key", strings.Repeat("ab", 256))...)
	wantInputError(t, "--key: bad hex key", set("--key", "xy")...)
	wantInputError(t, "--key and --random-key exclude each other", set("--key", "", "--random-key")...)
	wantReachesDaemon(t, set("--key", "01:02", "--equal", "1")...)
	wantReachesDaemon(t, set("--weights", "0,1", "--size", "1")...)
}

// tap create --vnet-hdr 0 reported success for a TAP that had a vnet header
// after all; its help promised 256 queues where vrssd takes 252.
func TestTapCreateRangeChecks(t *testing.T) {
	sock := noDaemon(t)
	create := func(args ...string) []string {
		return append(append([]string{"tap", "create", "vm42"}, args...), sock...)
	}
	wantInputError(t, "--vnet-hdr 0: vrssd TAPs always carry a virtio-net header: want 10, 12 or 20", create("--queues", "2", "--vnet-hdr", "0")...)
	wantInputError(t, "--vnet-hdr 7: want 10, 12 or 20", create("--queues", "2", "--vnet-hdr", "7")...)
	wantInputError(t, "--vnet-hdr -12: want 10, 12 or 20", create("--queues", "2", "--vnet-hdr", "-12")...)
	for _, n := range []string{"10", "12", "20"} {
		wantReachesDaemon(t, create("--queues", "2", "--vnet-hdr", n)...)
	}

	wantInputError(t, "--queues 253: want 1 to 252 (vrssd hands a TAP's queue fds and its configuration map in one SCM_RIGHTS message of at most 253 fds)", create("--queues", "253")...)
	wantInputError(t, "--queues 256: want 1 to 252", create("--queues", "256")...)
	wantInputError(t, "--queues 0: want 1 to 252", create()...)
	wantReachesDaemon(t, create("--queues", "252")...)
	wantReachesDaemon(t, create("--queues", "1")...)
	code, out, _ := vrss(t, "tap", "create", "-h")
	if code != 0 || !strings.Contains(out, "number of queues, 1 to 252 (required)") || !strings.Contains(out, "at most 253 fds") || strings.Contains(out, "1 to 256") {
		t.Errorf("tap create -h does not give vrssd's 252 queues and why:\n%s", out)
	}

	// Owners are 32-bit ids; -1 ((uid_t)-1) means none, and a negative
	// --owner used to mean "me" silently.
	wantInputError(t, "--owner -5: want a uid from 0 to 4294967294", create("--queues", "2", "--owner", "-5")...)
	wantInputError(t, "--owner -1: want a uid", create("--queues", "2", "--owner", "-1")...)
	wantInputError(t, "--owner 4294967295: want a uid from 0 to 4294967294", create("--queues", "2", "--owner", "4294967295")...)
	wantInputError(t, "--group 4294967296: want a gid from 0 to 4294967294", create("--queues", "2", "--group", "4294967296")...)
	wantReachesDaemon(t, create("--queues", "2", "--owner", "0", "--group", "4294967294")...)
}

func TestQEMUArgsRangeChecks(t *testing.T) {
	args := append([]string{"qemu", "args", "--tap", "vm42"}, noDaemon(t)...)
	for _, fd := range []string{"0", "2", "-1", "2147483648"} {
		wantInputError(t, "--first-fd "+fd+": want a descriptor from 3 to 2147483647", append(args, "--first-fd", fd)...)
	}
	wantReachesDaemon(t, append(args, "--first-fd", "3")...)
}

// Runs as any user: the flags are checked before the demo looks for root,
// and never reach the demo itself (20 million frames would).
func TestDemoRangeChecks(t *testing.T) {
	defer func(run func(demo.Options) (*demo.Result, error)) { demoRun = run }(demoRun)
	demoRun = func(o demo.Options) (*demo.Result, error) {
		t.Errorf("the demo ran with %+v", o)
		return nil, errors.New("not run in this test")
	}
	wantInputError(t, "--queues 257: want 1 to 256", "demo", "--queues", "257")
	wantInputError(t, "--queues 0: want 1 to 256", "demo", "--queues", "0")
	wantInputError(t, "--flows 2000000 × --per-flow 10: want at most 16777216 frames", "demo", "--flows", "2000000", "--per-flow", "10")
	// A product beyond 64 bits must not wrap into range.
	wantInputError(t, "want at most 16777216 frames", "demo", "--flows", "4294967296", "--per-flow", "4294967296")
	wantInputError(t, "--per-flow 0: want at least 1", "demo", "--per-flow", "0")
}
