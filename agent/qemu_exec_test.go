package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/internal/privtest"
)

// Without CAP_SETUID and CAP_SETGID vrssd cannot switch to nobody, and
// refuses to run QEMU, saying what it needs, instead of running it as
// itself (issue #8: it fell back to its own user, root with every
// capability). The capabilities are dropped on one locked thread only,
// the one that forks.
func TestQEMUNeedsSetuid(t *testing.T) {
	privtest.Require(t, "root")
	dir, log, bin := fakeQEMUScript(t)
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the thread, with its reduced capabilities,
		// ends with this goroutine.
		runtime.LockOSThread()
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var caps [2]unix.CapUserData
		if err := unix.Capget(&hdr, &caps[0]); err != nil {
			errc <- err
			return
		}
		for _, c := range []uint{unix.CAP_SETUID, unix.CAP_SETGID} {
			caps[c/32].Effective &^= 1 << (c % 32)
		}
		if err := unix.Capset(&hdr, &caps[0]); err != nil {
			errc <- err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := askQEMU(ctx, bin, filepath.Join(dir, "qemu"))
		errc <- err
	}()
	err := <-errc
	wantUnavailable(t, err, "give it CAP_SETUID and CAP_SETGID")
	if b, _ := os.ReadFile(log); len(b) != 0 {
		t.Errorf("QEMU ran: %q", b)
	}
}

// A binary nobody may not execute is refused, and says how to fix it.
func TestQEMUNotExecutableByNobody(t *testing.T) {
	privtest.Require(t, "root")
	dir, log, bin := fakeQEMUScript(t)
	if err := os.Chmod(filepath.Join(dir, "qemu"), 0o700); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := askQEMU(ctx, bin, filepath.Join(dir, "qemu"))
	uid, _ := nobody()
	wantUnavailable(t, err, fmt.Sprintf("(mode 0700, owner uid %d, group %d) may not be executed by the user nobody (uid %d): permission denied; vrssd runs QEMU only as nobody, never with its own privileges: make the binary executable by others (chmod o+x %s",
		os.Getuid(), os.Getgid(), uid, filepath.Join(dir, "qemu")))
	if b, _ := os.ReadFile(log); len(b) != 0 {
		t.Errorf("QEMU ran: %q", b)
	}
}

// The stub, here this test binary started as vrssd starts itself, closes
// the descriptors its parent inherited without close-on-exec before it
// executes QEMU, and sets no_new_privs; QEMU runs as nobody with no
// group or capability. TestQEMUConfined checks the same of vrssd.
func TestQEMUStubClosesInherited(t *testing.T) {
	privtest.Require(t, "root")
	// nobody must reach the log.
	dir, err := os.MkdirTemp("", "vrss-qemu-stub-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	log, path := filepath.Join(dir, "probe.log"), filepath.Join(dir, "qemu")
	if err := os.WriteFile(log, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	os.Chmod(log, 0o666)
	script := "#!/bin/sh\n" +
		"echo \"ids $(id -u) $(id -G)\" >> " + log + "\n" +
		"grep -E '^(CapInh|CapPrm|CapEff|CapAmb|NoNewPrivs):' /proc/self/status >> " + log + "\n" +
		"ls /proc/self/fd >> " + log + "\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	bin, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer bin.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	const inherited = 251
	if err := unix.Dup2(int(w.Fd()), inherited); err != nil { // no close-on-exec
		t.Fatal(err)
	}
	defer unix.Close(inherited)
	uid, gid := nobody()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Not QEMU: the conversation fails once the probe has run.
	if _, err := runQMP(ctx, bin, path, uid, gid); err == nil {
		t.Fatal("a script that says nothing answered")
	}
	b, _ := os.ReadFile(log)
	got := strings.Fields(string(b))
	t.Logf("probe: %q", got)
	// ls's own descriptor for /proc/self/fd is 4.
	want := fmt.Sprintf("ids %d %d CapInh: 0000000000000000 CapPrm: 0000000000000000 CapEff: 0000000000000000 CapAmb: 0000000000000000 NoNewPrivs: 1 0 1 2 3 4", uid, gid)
	if strings.Join(got, " ") != want {
		t.Errorf("QEMU ran with\n%q\nwant\n%q", strings.Join(got, " "), want)
	}
}

// fakeQEMUScript writes a QEMU that only logs that it ran, in a
// directory nobody may enter (vrssd runs the binary through its fd), and
// returns the directory, the log and the binary, opened.
func fakeQEMUScript(t *testing.T) (dir, log string, bin *os.File) {
	t.Helper()
	dir = t.TempDir()
	log = filepath.Join(dir, "ran")
	if err := os.WriteFile(filepath.Join(dir, "qemu"), []byte("#!/bin/sh\necho ran >> "+log+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	bin, err := os.Open(filepath.Join(dir, "qemu"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bin.Close() })
	return dir, log, bin
}

func wantUnavailable(t *testing.T, err error, want string) {
	t.Helper()
	ae, ok := err.(*api.Error)
	if !ok || ae.Code != api.CodeUnavailable || !strings.Contains(ae.Message, want) {
		t.Fatalf("got %v, want unavailable: …%s…", err, want)
	}
	t.Logf("refused: %v", err)
}

// cloexecWalk, the stub's way on kernels without CLOSE_RANGE_CLOEXEC,
// marks an inherited descriptor, and leaves those below first alone.
func TestCloexecWalk(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	// Like a descriptor vrssd inherited: high, without close-on-exec.
	const low, high = 300, 301
	for _, fd := range []int{low, high} {
		if err := unix.Dup2(int(w.Fd()), fd); err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
	}
	if err := cloexecWalk(high); err != nil {
		t.Fatal(err)
	}
	for fd, want := range map[int]int{low: 0, high: unix.FD_CLOEXEC} {
		if got, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil || got&unix.FD_CLOEXEC != want {
			t.Errorf("fd %d: flags %#x (%v), want close-on-exec %#x", fd, got, err, want)
		}
	}
}
