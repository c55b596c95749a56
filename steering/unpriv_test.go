package steering

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/internal/frame"
	"github.com/vrss-dev/vrss/internal/privtest"
	"github.com/vrss-dev/vrss/rss"
)

// helperEnv names the helper test a re-executed test binary is to act as.
// Helper tests return at once unless it names them.
const helperEnv = "VRSS_STEERING_HELPER"

// nobody is the uid and gid helper processes run as.
const nobody = 65534

// loadProgram loads variant v as root, skipping (or failing under
// VRSS_REQUIRE_PRIV=1) when the machine cannot run eBPF.
func loadProgram(t *testing.T, v Variant) *Program {
	t.Helper()
	privtest.Require(t, "root")
	privtest.Require(t, "bpf")
	p, err := LoadVariant(v)
	if err != nil {
		t.Fatalf("load %s: %v", v, err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// newPublisher maps p's configuration map, unmapping it when t ends.
func newPublisher(t *testing.T, p *Program) *Publisher {
	t.Helper()
	pub, err := p.Publisher(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pub.Close() })
	return pub
}

// configA and configB differ in key, hash types, table and unclassified
// queue, so most frames land on different queues under them.
func configA() rss.Config {
	return rss.Config{HashTypes: rss.AllHashTypes, Key: rss.DefaultKey, Table: rss.EqualTable(128, 4), UnclassifiedQueue: 0}
}

func configB() rss.Config {
	key := make([]byte, 52)
	for i := range key {
		key[i] = byte(0x9e ^ i*37)
	}
	table := make([]uint16, 64)
	for i := range table {
		table[i] = uint16(63-i) % 8
	}
	return rss.Config{HashTypes: rss.HashIPv4 | rss.HashTCPv4 | rss.HashIPv6 | rss.HashUDPv6 | rss.HashTCPEx, Key: key, Table: table, UnclassifiedQueue: 7}
}

// runnable reports whether BPF_PROG_TEST_RUN accepts f: it refuses frames
// shorter than an Ethernet header, and untagged IP frames whose fixed IP
// header is cut short.
func runnable(f []byte) bool {
	if len(f) < 14 {
		return false
	}
	et := uint16(f[12])<<8 | uint16(f[13])
	return !(et == 0x0800 && len(f) < 14+20 || et == 0x86dd && len(f) < 14+40)
}

// testFrames returns n frames BPF_PROG_TEST_RUN accepts: well-formed ones
// of every kind and a share of truncated, corrupted and garbage ones.
func testFrames(seed uint64, n int) [][]byte {
	r := rand.New(rand.NewPCG(seed, 2))
	var fs [][]byte
	for len(fs) < n {
		var f []byte
		if len(fs)%2 == 0 {
			f = frame.Build(frame.RandomSpec(r))
		} else {
			f = frame.Random(r)
		}
		if runnable(f) {
			fs = append(fs, f)
		}
	}
	return fs
}

// mapFile returns a duplicate of the map fd as a file, to hand to a
// child process.
func mapFile(t *testing.T, fd int) *os.File {
	t.Helper()
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(dup), "vrss_config")
	t.Cleanup(func() { f.Close() })
	return f
}

// runUnprivileged re-executes the test binary as nobody, with no
// capabilities and no supplementary groups, to run only the helper test
// named helper. stdin is its standard input and files become its fds 3, 4,
// and so on. It fails t unless the helper exits 0, and returns its stdout.
func runUnprivileged(t *testing.T, helper string, stdin []byte, files ...*os.File) []byte {
	t.Helper()
	privtest.Require(t, "root")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// go test may build the binary in a 0700 directory nobody cannot
	// search: run a copy from a directory anyone can.
	dir, err := os.MkdirTemp("", "vrss-unpriv-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "steering.test")
	if err := copyFile(bin, exe, 0o755); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(bin, "-test.run=^"+helper+"$", "-test.count=1")
	cmd.Dir = dir
	cmd.Env = []string{helperEnv + "=" + helper, "PATH=/usr/bin:/bin", "HOME=" + dir}
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.ExtraFiles = files
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// setuid from root to nobody clears the permitted and effective
		// capability sets; Groups empty drops root's supplementary groups.
		Credential:  &syscall.Credential{Uid: nobody, Gid: nobody, Groups: []uint32{}},
		AmbientCaps: nil,
		Pdeathsig:   syscall.SIGKILL,
	}
	if err := cmd.Run(); err != nil {
		t.Fatalf("helper %s as uid %d: %v\nstdout:\n%s\nstderr:\n%s", helper, nobody, err, stdout.Bytes(), stderr.Bytes())
	}
	if stderr.Len() > 0 {
		t.Logf("helper %s stderr:\n%s", helper, stderr.Bytes())
	}
	return stdout.Bytes()
}

func copyFile(dst, src string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chmod(dst, mode) // not narrowed by the umask
}

// requireUnprivileged fails a helper process unless it runs as nobody with
// every capability set empty and cannot become root again.
func requireUnprivileged(t *testing.T) {
	t.Helper()
	if uid, euid, gid := os.Getuid(), os.Geteuid(), os.Getgid(); uid != nobody || euid != nobody || gid != nobody {
		t.Fatalf("running as uid %d euid %d gid %d, want %d", uid, euid, gid, nobody)
	}
	if groups, err := os.Getgroups(); err != nil || len(groups) > 0 {
		t.Fatalf("supplementary groups %v (%v), want none", groups, err)
	}
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		name, val, _ := strings.Cut(line, ":")
		switch name {
		case "CapInh", "CapPrm", "CapEff", "CapAmb":
			if strings.TrimSpace(val) != "0000000000000000" {
				t.Fatalf("%s = %s, want no capabilities", name, strings.TrimSpace(val))
			}
		}
	}
	if err := syscall.Setuid(0); !errors.Is(err, unix.EPERM) {
		t.Fatalf("setuid(0): %v, want EPERM", err)
	}
}

// denyBPFSyscall installs a seccomp filter that fails every bpf() system
// call of this process with ENOSYS, as on a kernel without eBPF. Since
// Linux 6.5 the unprivileged_bpf_disabled sysctl only guards creating maps
// and programs, so without this a map fd would still allow bpf() updates:
// the filter is what proves publishing needs no bpf() at all.
func denyBPFSyscall(t *testing.T) {
	t.Helper()
	// No architecture check: this filter constrains the test's own Go
	// code, which only makes native system calls.
	prog := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0}, // seccomp_data.nr
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: unix.SYS_BPF, Jt: 0, Jf: 1},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	// no_new_privs is per thread; TSYNC copies it with the filter to
	// every thread of the process.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		t.Fatalf("PR_SET_NO_NEW_PRIVS: %v", err)
	}
	if _, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog))); errno != 0 {
		t.Fatalf("seccomp: %v", errno)
	}
	runtime.KeepAlive(prog)
}

// mapLookup reads the configuration map with the bpf() system call
// BPF_MAP_LOOKUP_ELEM, which needs no capability once the fd is held.
func mapLookup(mapFD int) error {
	key := uint32(0)
	val := make([]byte, ConfigSize)
	attr := struct {
		mapFD uint32
		_     uint32
		key   uint64
		value uint64
		flags uint64
	}{mapFD: uint32(mapFD), key: uint64(uintptr(unsafe.Pointer(&key))), value: uint64(uintptr(unsafe.Pointer(&val[0])))}
	_, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_MAP_LOOKUP_ELEM, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	runtime.KeepAlive(&key)
	runtime.KeepAlive(val)
	if errno != 0 {
		return errno
	}
	return nil
}

// TestUnprivilegedPublish hands the configuration map's fd to a process
// running as nobody without capabilities and barred from bpf() altogether,
// as a privileged daemon hands it to a VMM; that process publishes a new
// configuration through mmap, and the loaded program steers by it.
func TestUnprivilegedPublish(t *testing.T) {
	p := loadProgram(t, Production)
	pub := newPublisher(t, p)
	a, b := configA(), configB()
	if err := pub.Publish(a); err != nil {
		t.Fatal(err)
	}
	engA, err := rss.New(a)
	if err != nil {
		t.Fatal(err)
	}
	engB, err := rss.New(b)
	if err != nil {
		t.Fatal(err)
	}
	frames := testFrames(1, 400)
	for i, f := range frames {
		if q, err := p.Run(f); err != nil || q != uint32(engA.Steer(f).Queue) {
			t.Fatalf("before the helper, frame %d: queue %d (%v), engine %d for config A", i, q, err, engA.Steer(f).Queue)
		}
	}

	runUnprivileged(t, "TestHelperProcessUnprivPublish", nil, mapFile(t, p.ConfigMap.FD()))

	var moved int
	for i, f := range frames {
		q, err := p.Run(f)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if want := engB.Steer(f).Queue; q != uint32(want) {
			t.Errorf("frame %d %x: queue %d, engine %d for config B", i, f, q, want)
		}
		if q != uint32(engA.Steer(f).Queue) {
			moved++
		}
	}
	if moved == 0 {
		t.Error("no frame changed queue: config B did not take effect")
	}
	got, err := pub.Config()
	if err != nil {
		t.Fatal(err)
	}
	if !sameConfig(got, b) {
		t.Errorf("config read back %+v, want config B %+v", got, b)
	}
	if g := pub.Generation(); g != 2 {
		t.Errorf("generation %d, want 2", g)
	}
	t.Logf("%d of %d frames moved queue when the unprivileged helper published", moved, len(frames))
}

// TestHelperProcessUnprivPublish is the child of TestUnprivilegedPublish:
// with fd 3 the configuration map, it publishes config B.
func TestHelperProcessUnprivPublish(t *testing.T) {
	if os.Getenv(helperEnv) != t.Name() {
		return
	}
	requireUnprivileged(t)
	// No capabilities: loading the program must fail for want of them.
	var uerr *UnavailableError
	if _, err := LoadVariant(Production); !errors.As(err, &uerr) || uerr.Reason != ReasonUnprivDisabled && uerr.Reason != ReasonNoCapBPF {
		t.Fatalf("LoadVariant as nobody: %v, want an UnavailableError for missing privilege", err)
	}
	denyBPFSyscall(t)
	if err := mapLookup(3); !errors.Is(err, unix.ENOSYS) {
		t.Fatalf("bpf(BPF_MAP_LOOKUP_ELEM) after the seccomp filter: %v, want ENOSYS", err)
	}
	pub, err := NewPublisher(3, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(configB()); err != nil {
		t.Fatal(err)
	}
	if err := pub.Close(); err != nil {
		t.Fatal(err)
	}
	// Exit before the testing package prints its summary.
	os.Exit(0)
}

func sameConfig(a, b rss.Config) bool {
	return a.HashTypes == b.HashTypes && a.UnclassifiedQueue == b.UnclassifiedQueue &&
		bytes.Equal(a.Key, b.Key) && slices.Equal(a.Table, b.Table)
}
