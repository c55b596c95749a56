package fd

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

func pipe(t *testing.T) (*os.File, *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return r, w
}

func isOpen(raw int) bool {
	_, err := unix.FcntlInt(uintptr(raw), unix.F_GETFD, 0)
	return err == nil
}

func cloexec(t *testing.T, raw int) bool {
	t.Helper()
	flags, err := unix.FcntlInt(uintptr(raw), unix.F_GETFD, 0)
	if err != nil {
		t.Fatal(err)
	}
	return flags&unix.FD_CLOEXEC != 0
}

func TestCloseOnce(t *testing.T) {
	r, _ := pipe(t)
	f, err := DupFile(r)
	if err != nil {
		t.Fatal(err)
	}
	raw := f.Int()
	if !isOpen(raw) || !cloexec(t, raw) {
		t.Fatal("the duplicate is not open, or not close-on-exec")
	}
	if err := f.Close(); err != nil || isOpen(raw) || f.Int() != -1 {
		t.Fatalf("close: %v, still open %v, Int %d", err, isOpen(raw), f.Int())
	}
	// A second close must not close whatever took the number since.
	other, err := DupFile(r)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := f.Close(); err != nil || !isOpen(other.Int()) {
		t.Fatalf("second close: %v; the next descriptor open: %v", err, isOpen(other.Int()))
	}
	var none *FD
	if none.Close() != nil || none.Int() != -1 {
		t.Fatal("a nil FD")
	}
}

// DupFile leaves the file nonblocking (f.Fd would not), and the duplicate
// shares the open file.
func TestDupFileKeepsNonblocking(t *testing.T) {
	r, w := pipe(t)
	f, err := DupFile(r)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rc, _ := r.SyscallConn()
	var flags int
	rc.Control(func(raw uintptr) { flags, _ = unix.FcntlInt(raw, unix.F_GETFL, 0) })
	if flags&unix.O_NONBLOCK == 0 {
		t.Fatal("the original became blocking")
	}
	w.Write([]byte("x"))
	b := make([]byte, 1)
	if n, err := unix.Read(f.Int(), b); n != 1 || err != nil || b[0] != 'x' {
		t.Fatalf("read through the duplicate: %d, %v", n, err)
	}
}

func TestDupAbove(t *testing.T) {
	r, _ := pipe(t)
	f, err := DupFileAbove(r, 100)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Int() < 100 || !cloexec(t, f.Int()) {
		t.Fatalf("fd %d", f.Int())
	}
	g, err := f.Dup()
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if g.Int() == f.Int() || !cloexec(t, g.Int()) {
		t.Fatalf("Dup: %d of %d", g.Int(), f.Int())
	}
	f.Close()
	if _, err := f.Dup(); err == nil {
		t.Fatal("Dup of a closed FD")
	}
}

func TestFileTakesOwnership(t *testing.T) {
	r, _ := pipe(t)
	f, err := DupFile(r)
	if err != nil {
		t.Fatal(err)
	}
	raw := f.Int()
	file := f.File("x")
	if file == nil || f.Int() != -1 || f.File("y") != nil {
		t.Fatal("File did not take the descriptor over")
	}
	f.Close() // must not close the file's descriptor
	if !isOpen(raw) {
		t.Fatal("closing the FD closed the file's descriptor")
	}
	file.Close()
	if isOpen(raw) {
		t.Fatal("the file did not own the descriptor")
	}
}

func TestAll(t *testing.T) {
	r, _ := pipe(t)
	var raw []int
	for range 3 {
		f, err := DupFile(r)
		if err != nil {
			t.Fatal(err)
		}
		raw = append(raw, f.Int()) // handed over below
	}
	fds := NewAll(raw)
	if got := Ints(fds); len(got) != 3 || got[0] != raw[0] || got[2] != raw[2] {
		t.Fatalf("Ints %v, want %v", got, raw)
	}
	CloseAll(fds)
	for _, n := range raw {
		if isOpen(n) {
			t.Fatalf("%d still open", n)
		}
	}
	if NewAll(nil) != nil || Ints(nil) != nil {
		t.Fatal("empty")
	}
}
