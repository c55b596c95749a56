// Package privtest lets tests that need privileges (root, TAP devices, BPF,
// network namespaces) check for them for real and skip when they are
// missing, or fail when VRSS_REQUIRE_PRIV=1 says the run must exercise them
// (CI running as root, where a silent skip would hide a broken setup).
package privtest

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// EnvRequire is the environment variable that turns a missing requirement
// from a skip into a failure.
const EnvRequire = "VRSS_REQUIRE_PRIV"

// Require checks the capability named by what and skips t, or fails it when
// VRSS_REQUIRE_PRIV=1, if it is missing. Known names:
//
//	root   the effective uid is 0
//	tap    /dev/net/tun opens read-write and CAP_NET_ADMIN is effective
//	netns  a thread can unshare its network namespace
//	bpf    a trivial socket filter program loads (BPF_PROG_LOAD)
//
// Results are probed once per process.
func Require(t testing.TB, what string) {
	t.Helper()
	p, ok := probes[what]
	if !ok {
		t.Fatalf("privtest: unknown requirement %q", what)
		return
	}
	check(t, what, p())
}

// RequireFunc runs probe and skips t (or fails it, as Require does) with the
// probe's error when it returns one. what names the requirement in the
// message.
func RequireFunc(t testing.TB, what string, probe func() error) {
	t.Helper()
	check(t, what, probe())
}

func check(t testing.TB, what string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if required() {
		t.Fatalf("needs %s: %v (%s=1 makes this a failure instead of a skip)", what, err, EnvRequire)
		return
	}
	t.Skipf("needs %s: %v; run as root, or set %s=1 to fail instead of skipping", what, err, EnvRequire)
}

func required() bool {
	v, _ := strconv.ParseBool(os.Getenv(EnvRequire))
	return v
}

var probes = map[string]func() error{
	"root":  sync.OnceValue(probeRoot),
	"tap":   sync.OnceValue(probeTap),
	"netns": sync.OnceValue(probeNetns),
	"bpf":   sync.OnceValue(probeBPF),
}

func probeRoot() error {
	if uid := os.Geteuid(); uid != 0 {
		return fmt.Errorf("running as uid %d", uid)
	}
	return nil
}

func probeTap() error {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open /dev/net/tun: %w", err)
	}
	unix.Close(fd)
	// Opening is not enough where /dev/net/tun is 0666: creating a device
	// (TUNSETIFF) needs CAP_NET_ADMIN.
	return hasCap(unix.CAP_NET_ADMIN, "CAP_NET_ADMIN")
}

func hasCap(c int, name string) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capget: %w", err)
	}
	if data[c/32].Effective&(1<<(c%32)) == 0 {
		return fmt.Errorf("%s is not in the effective capability set", name)
	}
	return nil
}

func probeNetns() error {
	// Unshare on a throwaway locked thread: the goroutine exits without
	// unlocking, so the runtime discards the thread and its namespace.
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare(CLONE_NEWNET): %w", err)
			return
		}
		errc <- nil
	}()
	return <-errc
}

func probeBPF() error {
	fd, err := LoadReturnProgram(0)
	if err != nil {
		if errors.Is(err, unix.EPERM) {
			err = fmt.Errorf("%w (needs CAP_BPF, or kernel.unprivileged_bpf_disabled=0)", err)
		}
		return err
	}
	unix.Close(fd)
	return nil
}

// LoadReturnProgram loads, with a raw bpf() call and no library, a socket
// filter program that returns v, and returns its fd. Tests use it as a
// minimal steering program.
func LoadReturnProgram(v int32) (int, error) {
	// r0 = v; exit. The immediate is the top 32 bits of an instruction.
	insns := []uint64{0xb7 | uint64(uint32(v))<<32, 0x95}
	license := []byte("GPL\x00")
	attr := struct {
		progType uint32
		insnCnt  uint32
		insns    uint64
		license  uint64
	}{
		progType: unix.BPF_PROG_TYPE_SOCKET_FILTER,
		insnCnt:  uint32(len(insns)),
		insns:    uint64(uintptr(unsafe.Pointer(&insns[0]))),
		license:  uint64(uintptr(unsafe.Pointer(&license[0]))),
	}
	for try := 0; ; try++ {
		fd, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_LOAD, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
		runtime.KeepAlive(insns)
		runtime.KeepAlive(license)
		// EAGAIN: a signal (the Go runtime preempts with SIGURG)
		// interrupted verification; the load is simply to be repeated.
		if errno == unix.EAGAIN && try < 10 {
			continue
		}
		if errno != 0 {
			return -1, fmt.Errorf("BPF_PROG_LOAD socket filter: %w", errno)
		}
		return int(fd), nil
	}
}
