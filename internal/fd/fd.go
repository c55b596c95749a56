// Package fd gives a file descriptor one owner. The descriptors vrss moves
// around (TAP queues, eBPF programs and maps, everything passed over a unix
// socket with SCM_RIGHTS) are plain ints to the kernel and to the libraries
// that make them; an FD says who must close one, closes it once, and makes
// the close-on-exec duplicates the daemon hands to other processes.
package fd

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// FD owns one file descriptor. Its methods are not safe for concurrent
// use; one goroutine owns an FD at a time.
type FD struct {
	raw int // -1 once closed or given away
}

// New takes ownership of raw, which must be open: the FD closes it.
func New(raw int) *FD {
	if raw < 0 {
		panic(fmt.Sprintf("fd: New(%d)", raw))
	}
	return &FD{raw: raw}
}

// NewAll takes ownership of every descriptor in raw, as New does.
func NewAll(raw []int) []*FD {
	if len(raw) == 0 {
		return nil
	}
	fds := make([]*FD, len(raw))
	for i, r := range raw {
		fds[i] = New(r)
	}
	return fds
}

// Int returns the descriptor, or -1 once f is closed or given away. f
// keeps ownership: the number is valid only as long as f is open.
func (f *FD) Int() int {
	if f == nil {
		return -1
	}
	return f.raw
}

// Close closes the descriptor. Closing a closed FD, or a nil one, does
// nothing and returns nil.
func (f *FD) Close() error {
	if f == nil || f.raw < 0 {
		return nil
	}
	raw := f.raw
	f.raw = -1
	// Linux releases the descriptor whatever close returns.
	return unix.Close(raw)
}

// Dup returns a new FD owning a duplicate of f's descriptor, close-on-exec
// (F_DUPFD_CLOEXEC): what vrssd hands another process keeps pointing at the
// same open file, and no child it executes inherits it.
func (f *FD) Dup() (*FD, error) {
	if f.Int() < 0 {
		return nil, errors.New("fd: dup of a closed descriptor")
	}
	return Dup(f.raw)
}

// File gives f's descriptor to a new *os.File named name, which then owns
// it; f is left closed. It returns nil if f is closed.
func (f *FD) File(name string) *os.File {
	if f.Int() < 0 {
		return nil
	}
	raw := f.raw
	f.raw = -1
	return os.NewFile(uintptr(raw), name)
}

// Dup returns an FD owning a close-on-exec duplicate of raw, a descriptor
// someone else owns and keeps (such as an ebpf.Map's or ebpf.Program's).
func Dup(raw int) (*FD, error) {
	return dupAbove(uintptr(raw), 0)
}

// DupFile returns an FD owning a close-on-exec duplicate of f's
// descriptor. It does not call f.Fd, which would switch f to blocking mode
// and stop its deadlines from working (the queues of package tap are
// nonblocking and registered with the runtime poller).
func DupFile(f *os.File) (*FD, error) { return DupFileAbove(f, 0) }

// DupFileAbove is DupFile with a duplicate numbered lowest or above, out of
// the way of descriptors about to be placed at fixed numbers.
func DupFileAbove(f *os.File, lowest int) (*FD, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	var (
		dup  *FD
		derr error
	)
	if err := rc.Control(func(raw uintptr) { dup, derr = dupAbove(raw, lowest) }); err != nil {
		return nil, err
	}
	return dup, derr
}

func dupAbove(raw uintptr, lowest int) (*FD, error) {
	n, err := unix.FcntlInt(raw, unix.F_DUPFD_CLOEXEC, lowest)
	if err != nil {
		return nil, err
	}
	return New(n), nil
}

// CloseAll closes every FD in fds.
func CloseAll(fds []*FD) {
	for _, f := range fds {
		f.Close()
	}
}

// Ints returns the descriptors of fds (for SCM_RIGHTS); fds keep
// ownership.
func Ints(fds []*FD) []int {
	if len(fds) == 0 {
		return nil
	}
	raw := make([]int, len(fds))
	for i, f := range fds {
		raw[i] = f.Int()
	}
	return raw
}
