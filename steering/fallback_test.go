package steering

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/internal/privtest"
	"github.com/vrss-dev/vrss/rss"
)

// fallbackConfig is the configuration both the unprivileged fallback and
// the eBPF program steer by in TestFallbackMatchesProgram.
func fallbackConfig() rss.Config {
	table := make([]uint16, 256)
	for i := range table {
		table[i] = uint16(i*97) % 13
	}
	return rss.Config{HashTypes: rss.AllHashTypes, Key: rss.DefaultKey, Table: table, UnclassifiedQueue: 5}
}

// TestFallbackMatchesProgram runs what a VMM without privileges does: its
// load fails with a precise reason, it falls back to the rss engine, and
// the queues (and hashes and reports) it computes are the eBPF program's.
func TestFallbackMatchesProgram(t *testing.T) {
	privtest.Require(t, "root")
	privtest.Require(t, "bpf")
	if v, err := os.ReadFile(unprivilegedBPFSysctl); err != nil || strings.TrimSpace(string(v)) == "0" {
		// With the sysctl at 0 an unprivileged socket filter load may even
		// succeed, so there would be no single expected failure.
		t.Skipf("needs %s set to 1 or 2: %q, %v", unprivilegedBPFSysctl, v, err)
	}
	frames := testFrames(3, 3000)
	var in bytes.Buffer
	for _, f := range frames {
		fmt.Fprintf(&in, "%x\n", f)
	}
	out := runUnprivileged(t, "TestHelperProcessFallback", in.Bytes())

	cfg := fallbackConfig()
	prod := loadProgram(t, Production)
	if err := newPublisher(t, prod).Publish(cfg); err != nil {
		t.Fatal(err)
	}
	dbg := loadProgram(t, Debug)
	if err := newPublisher(t, dbg).Publish(cfg); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != len(frames) {
		t.Fatalf("helper steered %d frames, sent %d; output:\n%s", len(lines), len(frames), out)
	}
	reports := map[rss.HashReport]int{}
	for i, f := range frames {
		var fb rss.Result
		if _, err := fmt.Sscanf(lines[i], "%d %d %d", &fb.Queue, &fb.Hash, &fb.Report); err != nil {
			t.Fatalf("helper line %d %q: %v", i, lines[i], err)
		}
		q, err := prod.Run(f)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if _, err := dbg.Run(f); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		got, err := dbg.LastResult()
		if err != nil {
			t.Fatal(err)
		}
		if q != uint32(fb.Queue) || got != fb {
			t.Errorf("frame %d %x: program queue %d, debug %+v; fallback %+v", i, f, q, got, fb)
		}
		reports[fb.Report]++
	}
	t.Logf("%d frames steered identically by the unprivileged fallback and the program; reports %v", len(frames), reports)
}

// TestHelperProcessFallback is the child of TestFallbackMatchesProgram: it
// fails to load the program, then steers the hex frames on stdin with the
// rss engine, printing "queue hash report" for each.
func TestHelperProcessFallback(t *testing.T) {
	if os.Getenv(helperEnv) != t.Name() {
		return
	}
	requireUnprivileged(t)
	_, err := LoadVariant(Production)
	var uerr *UnavailableError
	if !errors.As(err, &uerr) {
		t.Fatalf("LoadVariant as nobody: %v (%T), want an *UnavailableError", err, err)
	}
	// The parent runs this only where the sysctl forbids unprivileged
	// bpf(): that, not a missing capability, is what to fix.
	if uerr.Reason != ReasonUnprivDisabled {
		t.Fatalf("reason %q, want %q: %v", uerr.Reason, ReasonUnprivDisabled, err)
	}
	if !strings.Contains(err.Error(), string(ReasonUnprivDisabled)) || !strings.Contains(err.Error(), unprivilegedBPFSysctl) {
		t.Fatalf("message %q names neither the reason nor the sysctl", err)
	}
	if !errors.Is(err, unix.EPERM) {
		t.Fatalf("%v does not wrap EPERM", err)
	}
	fmt.Fprintf(os.Stderr, "LoadVariant as uid %d: %v\n", os.Getuid(), err)

	eng, err := rss.New(fallbackConfig())
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(nil, 1<<20)
	w := bufio.NewWriter(os.Stdout)
	for sc.Scan() {
		f, err := hex.DecodeString(sc.Text())
		if err != nil {
			t.Fatal(err)
		}
		r := eng.Steer(f)
		fmt.Fprintf(w, "%d %d %d\n", r.Queue, r.Hash, r.Report)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	// Exit before the testing package prints its summary on stdout.
	os.Exit(0)
}

// TestClassifyLoadError checks the reason for each kind of load failure,
// faking the effective uid and the unprivileged_bpf_disabled sysctl.
func TestClassifyLoadError(t *testing.T) {
	oldEuid, oldSysctl := geteuid, readUnprivSysctl
	t.Cleanup(func() { geteuid, readUnprivSysctl = oldEuid, oldSysctl })

	eperm := fmt.Errorf("map create: %w", unix.EPERM)
	verifier := fmt.Errorf("load program: %w", &ebpf.VerifierError{Cause: unix.EACCES, Log: []string{"0: (95) exit", "R0 !read_ok"}})
	for _, c := range []struct {
		name   string
		err    error
		euid   int
		sysctl string // "" cannot be read
		want   Reason
	}{
		{"EPERM non-root sysctl 2", eperm, 1000, "2\n", ReasonUnprivDisabled},
		{"EPERM non-root sysctl 1", eperm, 1000, "1\n", ReasonUnprivDisabled},
		{"EACCES non-root sysctl 2", fmt.Errorf("map create: %w", unix.EACCES), 1000, "2\n", ReasonUnprivDisabled},
		// Unprivileged bpf() is allowed, so a capability is what is missing.
		{"EPERM non-root sysctl 0", eperm, 1000, "0\n", ReasonNoCapBPF},
		{"EPERM non-root sysctl unreadable", eperm, 1000, "", ReasonNoCapBPF},
		// Root without CAP_BPF: a container with its capabilities dropped.
		{"EPERM root sysctl 2", eperm, 0, "2\n", ReasonNoCapBPF},
		{"EPERM root sysctl 0", eperm, 0, "0\n", ReasonNoCapBPF},
		// What cilium/ebpf reports when RLIMIT_MEMLOCK (kernels < 5.11) runs out.
		{"EPERM root memlock", fmt.Errorf("map create: %w (MEMLOCK may be too low, consider rlimit.RemoveMemlock)", unix.EPERM), 0, "2\n", ReasonMemlock},
		{"verifier root", verifier, 0, "2\n", ReasonVerifierRejected},
		{"verifier non-root", verifier, 1000, "2\n", ReasonVerifierRejected},
		// EPERM with a log is a permission failure that a log came with.
		{"verifier EPERM non-root", &ebpf.VerifierError{Cause: unix.EPERM}, 1000, "2\n", ReasonUnprivDisabled},
		// Out of descriptors: not an old kernel, whatever a probe says.
		{"EMFILE", fmt.Errorf("map create: %w", unix.EMFILE), 0, "2\n", ReasonNoFDs},
		{"ENFILE", fmt.Errorf("load program: %w", unix.ENFILE), 1000, "0\n", ReasonNoFDs},
	} {
		t.Run(c.name, func(t *testing.T) {
			geteuid = func() int { return c.euid }
			readUnprivSysctl = func() ([]byte, error) {
				if c.sysctl == "" {
					return nil, os.ErrPermission
				}
				return []byte(c.sysctl), nil
			}
			err := classifyLoadError(c.err)
			var uerr *UnavailableError
			if !errors.As(err, &uerr) {
				t.Fatalf("%v (%T), want an *UnavailableError", err, err)
			}
			if uerr.Reason != c.want {
				t.Errorf("reason %q, want %q", uerr.Reason, c.want)
			}
			if !errors.Is(err, c.err) {
				t.Errorf("%v does not wrap the load error", err)
			}
			if !strings.Contains(err.Error(), string(c.want)) {
				t.Errorf("message %q does not name the reason", err)
			}
			if c.want == ReasonUnprivDisabled && !strings.Contains(uerr.Detail, unprivilegedBPFSysctl+" = "+strings.TrimSpace(c.sysctl)) {
				t.Errorf("detail %q does not show the sysctl", uerr.Detail)
			}
		})
	}
}

// TestClassifyRealVerifierError classifies a rejection by this kernel's
// verifier, not a constructed one.
func TestClassifyRealVerifierError(t *testing.T) {
	privtest.Require(t, "root")
	privtest.Require(t, "bpf")
	// exit without setting r0: "R0 !read_ok".
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SocketFilter, License: "GPL", Instructions: asm.Instructions{asm.Return()}})
	if err == nil {
		prog.Close()
		t.Fatal("the verifier accepted a program that never sets r0")
	}
	var verr *ebpf.VerifierError
	if !errors.As(err, &verr) {
		t.Fatalf("load error %v (%T) is not a VerifierError", err, err)
	}
	var uerr *UnavailableError
	if !errors.As(classifyLoadError(err), &uerr) || uerr.Reason != ReasonVerifierRejected {
		t.Fatalf("classified as %v, want %q", uerr, ReasonVerifierRejected)
	}
	if !strings.Contains(uerr.Detail, "Linux ") {
		t.Errorf("detail %q does not name the kernel", uerr.Detail)
	}
}
