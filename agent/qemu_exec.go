package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/agent/api"
)

// How vrssd runs a QEMU binary (qemu_ebpf): never with any privilege.
//
// The binary runs as nobody, with no supplementary groups, no
// capabilities, no_new_privs set, and no file descriptor but its standard
// streams (QMP pipes) and fd 3, the binary itself, which it is executed
// through (a script's interpreter opens it by that name). If that cannot
// be arranged, the request is refused: vrssd never falls back to its own
// user.
//
// Go's os/exec switches the user (setgroups, setgid, setuid) between fork
// and exec, but has no hook for no_new_privs, nor closes descriptors that
// vrssd inherited without close-on-exec. So vrssd starts its own binary
// (/proc/self/exe) as nobody, with argv[0] qemuExecArg0 and qemuExecEnv in
// the environment; in that process the init function below runs before
// anything else of vrssd's: on the current thread (prctl and capset act
// on the calling thread, and execve keeps what that thread has) it sets
// no_new_privs, empties the capability sets, checks that nothing
// privileged is left, marks every descriptor above 4 close-on-exec, and
// executes the QEMU binary. The stub never runs privileged: the user is
// switched before it starts. If anything fails it writes "STAGE ERRNO
// TEXT" on fd 4, a close-on-exec pipe whose other end vrssd reads, and
// exits; end of file on the pipe means QEMU was executed.
//
// The stub stays in package agent, which only vrssd and its tests link,
// rather than moving to qemu/ with the QMP conversation (package qmp): an
// init that re-executes the process when it sees an argv[0] and an
// environment variable would otherwise come along into every program that
// imports a qemu package for its command lines or its QMP client.
//
// No mount namespace or seccomp filter: as nobody with no_new_privs, the
// binary cannot mount anything, and a namespace that only copies the
// host's mounts hides nothing; hiding paths would take mounts made before
// the switch to nobody, where Go has no hook. A seccomp filter would have
// to follow QEMU's own system calls across its versions.

const (
	// qemuExecArg0 and qemuExecEnv mark vrssd's own binary started as the
	// stub; both must be present.
	qemuExecArg0 = "vrssd-qemu-exec"
	qemuExecEnv  = "VRSSD_QEMU_EXEC"

	qemuExecBinFD    = 3 // the QEMU binary, kept open across its exec
	qemuExecStatusFD = 4 // the status pipe, close-on-exec
)

// qemuEnv is the whole environment QEMU gets.
var qemuEnv = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/", "LC_ALL=C"}

func init() {
	if len(os.Args) < 2 || os.Args[0] != qemuExecArg0 || os.Getenv(qemuExecEnv) != "1" {
		return
	}
	os.Exit(qemuExecStub(os.Args[1:]))
}

// qemuExecStub confines the current process and executes the QEMU binary
// at fd 3 with argv (argv[0] is the path the binary is known by). It
// returns only on failure, after reporting it on fd 4.
func qemuExecStub(argv []string) int {
	runtime.LockOSThread()
	report := func(stage string, err error) int {
		var errno syscall.Errno
		errors.As(err, &errno)
		msg := fmt.Sprintf("%s %d %v", stage, int(errno), err)
		unix.Write(qemuExecStatusFD, []byte(msg))
		return 127
	}
	if _, err := unix.FcntlInt(qemuExecStatusFD, unix.F_SETFD, unix.FD_CLOEXEC); err != nil {
		return 127 // no status pipe: vrssd reads end of file without an exec, and refuses
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return report("no_new_privs", err)
	}
	// Linux before 4.3 has no ambient set.
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && err != unix.EINVAL {
		return report("capabilities", err)
	}
	// The switch to nobody emptied the permitted and effective sets, but
	// not the inheritable one.
	var caps [2]unix.CapUserData
	if err := unix.Capset(&unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}, &caps[0]); err != nil {
		return report("capabilities", err)
	}
	if err := unprivileged(); err != nil {
		return report("unprivileged", err)
	}
	if err := cloexecFrom(qemuExecStatusFD + 1); err != nil {
		return report("descriptors", err)
	}
	env := make([]string, 0, len(os.Environ()))
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, qemuExecEnv+"=") {
			env = append(env, e)
		}
	}
	err := syscall.Exec("/proc/self/fd/"+strconv.Itoa(qemuExecBinFD), argv, env)
	return report("exec", err)
}

// unprivileged checks that the calling thread has no root id, no
// supplementary group, no capability, and no_new_privs set.
func unprivileged() error {
	r, e, s := unix.Getresuid()
	if r == 0 || e == 0 || s == 0 {
		return fmt.Errorf("still uid %d/%d/%d", r, e, s)
	}
	r, e, s = unix.Getresgid()
	if r == 0 || e == 0 || s == 0 {
		return fmt.Errorf("still gid %d/%d/%d", r, e, s)
	}
	if g, err := unix.Getgroups(); err != nil || len(g) != 0 {
		return fmt.Errorf("supplementary groups %v (%v)", g, err)
	}
	var caps [2]unix.CapUserData
	if err := unix.Capget(&unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}, &caps[0]); err != nil {
		return err
	}
	for _, c := range caps {
		if c.Effective|c.Permitted|c.Inheritable != 0 {
			return fmt.Errorf("capabilities left: %+v", caps)
		}
	}
	if v, err := unix.PrctlRetInt(unix.PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0); err != nil || v != 1 {
		return fmt.Errorf("no_new_privs is %d (%v)", v, err)
	}
	return nil
}

// closeRangeCloexec is CLOSE_RANGE_CLOEXEC (Linux 5.11).
const closeRangeCloexec = 1 << 2

// cloexecFrom marks every descriptor from first on close-on-exec: those
// vrssd inherited without the flag would otherwise reach QEMU. Marked,
// not closed, since the Go runtime may hold some of them until the exec.
func cloexecFrom(first int) error {
	if unix.CloseRange(uint(first), ^uint(0), closeRangeCloexec) == nil {
		return nil
	}
	return cloexecWalk(first)
}

// cloexecWalk is cloexecFrom for kernels without close_range's
// CLOSE_RANGE_CLOEXEC: the open descriptors are those in /proc/self/fd
// (the stub's own threads open none while it reads it).
func cloexecWalk(first int) error {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return err
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd < first {
			continue
		}
		// The directory's own descriptor is gone by now: EBADF.
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC); err != nil && err != unix.EBADF {
			return err
		}
	}
	return nil
}

// qemuCommand is a QEMU binary (bin, opened from path) to be started with
// args, confined as described above, as uid and gid. Set its standard
// streams, then start it with start.
type qemuCommand struct {
	*exec.Cmd
	path             string
	uid              uint32
	bin              *os.File
	statusR, statusW *os.File
}

func newQEMUCommand(ctx context.Context, bin *os.File, path string, args []string, uid, gid uint32) (*qemuCommand, error) {
	if uid == 0 || gid == 0 {
		return nil, api.Errorf(api.CodeUnavailable, "cannot run QEMU %s: the user nobody is uid %d, gid %d on this host, and vrssd runs QEMU only as an unprivileged user", path, uid, gid)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, "/proc/self/exe", append([]string{path}, args...)...)
	cmd.Args[0] = qemuExecArg0
	cmd.ExtraFiles = []*os.File{bin, w} // qemuExecBinFD, qemuExecStatusFD
	cmd.Env = append(append([]string(nil), qemuEnv...), qemuExecEnv+"=1")
	cmd.Dir = "/"
	// No supplementary groups: Groups is empty and NoSetGroups false.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}, Setsid: true}
	return &qemuCommand{Cmd: cmd, path: path, uid: uid, bin: bin, statusR: r, statusW: w}, nil
}

// close releases the status pipe, if start has not.
func (q *qemuCommand) close() {
	q.statusR.Close()
	q.statusW.Close()
}

// start starts the stub and waits until it has executed QEMU, or refuses
// with what stopped it. On error, nothing is left running.
func (q *qemuCommand) start(ctx context.Context) error {
	defer q.close()
	err := q.Cmd.Start()
	q.statusW.Close()
	if err != nil {
		return q.startError(err)
	}
	if dl, ok := ctx.Deadline(); ok {
		q.statusR.SetReadDeadline(dl)
	}
	msg, err := io.ReadAll(io.LimitReader(q.statusR, 4096))
	if err == nil && len(msg) == 0 {
		return nil
	}
	q.Process.Kill()
	q.Wait()
	if err != nil {
		return api.Errorf(api.CodeUnavailable, "QEMU %s did not start: %v", q.path, err)
	}
	f := strings.SplitN(string(msg), " ", 3)
	if len(f) != 3 {
		return api.Errorf(api.CodeUnavailable, "QEMU %s did not start: %q", q.path, msg)
	}
	stage, text := f[0], f[2]
	errno, _ := strconv.Atoi(f[1])
	if stage == "exec" && (syscall.Errno(errno) == unix.EACCES || syscall.Errno(errno) == unix.EPERM) {
		mode := ""
		if fi, err := q.bin.Stat(); err == nil {
			st := fi.Sys().(*syscall.Stat_t)
			mode = fmt.Sprintf(" (mode %04o, owner uid %d, group %d)", fi.Mode().Perm(), st.Uid, st.Gid)
		}
		return api.Errorf(api.CodeUnavailable, "QEMU binary %s%s may not be executed by the user nobody (uid %d): %s; vrssd runs QEMU only as nobody, never with its own privileges: make the binary executable by others (chmod o+x %s; a script's interpreter too), or allowlist one that is", q.path, mode, q.uid, text, q.path)
	}
	if stage == "exec" {
		return api.Errorf(api.CodeUnavailable, "cannot run QEMU %s as the user nobody: %s", q.path, text)
	}
	return api.Errorf(api.CodeUnavailable, "cannot confine QEMU %s (%s: %s), so vrssd does not run it", q.path, stage, text)
}

// startError explains a stub that could not be started: Go reports the
// errno of the failed step between fork and exec.
func (q *qemuCommand) startError(err error) error {
	switch {
	case errors.Is(err, unix.EPERM):
		return api.Errorf(api.CodeUnavailable, "cannot run QEMU %s: vrssd cannot switch to the user nobody (uid %d) (%v); it runs QEMU only as nobody, never as itself: run vrssd as root, or give it CAP_SETUID and CAP_SETGID", q.path, q.uid, err)
	case errors.Is(err, unix.EACCES):
		self, _ := os.Executable()
		return api.Errorf(api.CodeUnavailable, "cannot run QEMU %s: vrssd starts it through its own binary %s as the user nobody (uid %d), who may not execute that (%v): make vrssd executable by others (chmod o+x %s)", q.path, self, q.uid, err, self)
	}
	return api.Errorf(api.CodeUnavailable, "cannot run QEMU %s: %v", q.path, err)
}
