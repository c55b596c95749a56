package qmp_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vrss-dev/vrss/qemu/qmp"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from what the Client does")

// The three commands FetchEBPFRSS writes, in order, as QEMU reads them.
var commands = []string{
	`{"execute":"qmp_capabilities","id":1}`,
	`{"execute":"query-version","id":2}`,
	`{"arguments":{"id":"rss"},"execute":"request-ebpf","id":3}`,
}

func greeting(major, minor, micro int) string {
	return fmt.Sprintf(`{"QMP": {"version": {"qemu": {"micro": %d, "minor": %d, "major": %d}, "package": "test"}, "capabilities": ["oob"]}}`, micro, minor, major)
}

func version(major, minor, micro int) string {
	return fmt.Sprintf(`{"return": {"qemu": {"micro": %d, "minor": %d, "major": %d}, "package": "test"}, "id": 2}`, micro, minor, major)
}

// exchange is one turn of a scripted QEMU: it waits for the line it
// wants from the Client (none if want is ""), then says its lines.
type exchange struct {
	want string
	say  []string
}

// peer plays QEMU on the other end of a Client, over pipes as vrssd's
// QEMU does: it follows script, then exits (closes both its ends). It
// returns the Client and a channel that reports how the script went.
func peer(t *testing.T, script []exchange) (*qmp.Client, <-chan error) {
	t.Helper()
	toClient, fromPeer, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	toPeer, fromClient, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { toClient.Close(); fromClient.Close() })
	done := make(chan error, 1)
	go func() {
		defer fromPeer.Close()
		defer toPeer.Close()
		r := bufio.NewReader(toPeer)
		for i, x := range script {
			if x.want != "" {
				line, err := r.ReadString('\n')
				if err != nil {
					done <- fmt.Errorf("turn %d: waiting for %s: %v", i, x.want, err)
					return
				}
				if line != x.want+"\n" {
					done <- fmt.Errorf("turn %d: the client wrote %q, want %q", i, line, x.want+"\n")
					return
				}
			}
			for _, s := range x.say {
				if _, err := io.WriteString(fromPeer, s+"\n"); err != nil {
					done <- fmt.Errorf("turn %d: %v", i, err)
					return
				}
			}
		}
		done <- nil
	}()
	return qmp.NewClient(toClient, fromClient), done
}

// The conversation with a scripted QEMU that answers each command only
// once it has read it, as QEMU does.
func TestFetchEBPFRSS(t *testing.T) {
	object := []byte("\x7fELF, or so QEMU says")
	objReply := `{"return": {"object": "` + base64.StdEncoding.EncodeToString(object) + `"}, "id": 3}`
	cnf := `{"error": {"class": "CommandNotFound", "desc": "The command request-ebpf has not been found"}, "id": 3}`
	for _, tc := range []struct {
		name    string
		script  []exchange
		version string // of a success
		err     string // else the error
	}{{
		name: "QEMU 10 hands over its object",
		script: []exchange{{say: []string{greeting(10, 0, 2)}},
			{commands[0], []string{`{"return": {}, "id": 1}`}},
			{commands[1], []string{version(10, 0, 2)}},
			{commands[2], []string{objReply}}},
		version: "10.0.2",
	}, {
		name: "events and replies to no command of its are skipped",
		script: []exchange{{say: []string{`{"event": "RESUME", "timestamp": {"seconds": 1, "microseconds": 2}}`, greeting(9, 1, 0), `{"event": "X"}`}},
			{commands[0], []string{`{"return": {}}`, `{"return": {}, "id": 0}`, `{"return": {}, "id": 1}`}},
			{commands[1], []string{`{"error": {"class": "GenericError", "desc": "a stale reply"}, "id": 1}`, version(9, 1, 0)}},
			{commands[2], []string{`{"event": "Y", "data": {"id": 3}}`, objReply}}},
		version: "9.1.0",
	}, {
		name: "QEMU 7.2 has no request-ebpf",
		script: []exchange{{say: []string{greeting(7, 2, 22)}},
			{commands[0], []string{`{"return": {}, "id": 1}`}},
			{commands[1], []string{version(7, 2, 22)}},
			{commands[2], []string{cnf}}},
		err: "QEMU 7.2.22 has no request-ebpf: eBPF RSS fds (ebpf-rss-fds) need QEMU ≥ 9.0",
	}, {
		name: "QEMU 9.1 built without eBPF",
		script: []exchange{{say: []string{greeting(9, 1, 0)}},
			{commands[0], []string{`{"return": {}, "id": 1}`}},
			{commands[1], []string{version(9, 1, 0)}},
			{commands[2], []string{cnf}}},
		err: "QEMU 9.1.0 has no request-ebpf: this build has no eBPF support (CONFIG_EBPF, libbpf); eBPF RSS fds (ebpf-rss-fds) need QEMU ≥ 9.0 built with it",
	}, {
		name:   "QEMU exits after its greeting",
		script: []exchange{{say: []string{greeting(10, 0, 0)}}, {want: commands[0]}},
		err:    "qmp_capabilities: unexpected EOF",
	}, {
		name: "QEMU fails to load its program",
		script: []exchange{{say: []string{greeting(10, 0, 0)}},
			{commands[0], []string{`{"return": {}, "id": 1}`}},
			{commands[1], []string{version(10, 0, 0)}},
			{commands[2], []string{`{"error": {"class": "GenericError", "desc": "no eBPF for you"}, "id": 3}`}}},
		err: "request-ebpf: GenericError: no eBPF for you",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			c, done := peer(t, tc.script)
			r, err := qmp.FetchEBPFRSS(c)
			if perr := <-done; perr != nil {
				t.Fatalf("the peer: %v", perr)
			}
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("got %+v, %v; want error %q", r, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Version.String() != tc.version || r.Version.Package != "test" || !bytes.Equal(r.Object, object) {
				t.Errorf("got version %s package %q object %q", r.Version, r.Version.Package, r.Object)
			}
		})
	}
}

// A QEMU that stops reading fails the command being written.
func TestFetchEBPFRSSWriteFails(t *testing.T) {
	c, done := peer(t, []exchange{{say: []string{greeting(10, 0, 0)}}})
	<-done // the peer has exited: its read end is closed
	_, err := qmp.FetchEBPFRSS(c)
	var qe *qmp.Error
	if !errors.As(err, &qe) || qe.Step != "qmp_capabilities" {
		t.Fatalf("got %v, want the write of qmp_capabilities to fail", err)
	}
	t.Logf("%v", err)
}

// The typed errors: a failed step names it and wraps its cause, QEMU's
// error reply included; a QEMU without request-ebpf is a NoEBPFError.
func TestErrors(t *testing.T) {
	run := func(lines ...string) error {
		_, err := qmp.FetchEBPFRSS(qmp.NewClient(strings.NewReader(strings.Join(lines, "\n")+"\n"), io.Discard))
		return err
	}
	err := run(greeting(10, 0, 0), `{"return": {}, "id": 1}`, version(10, 0, 0), `{"error": {"class": "GenericError", "desc": "d"}, "id": 3}`)
	var qe *qmp.Error
	var ce *qmp.CommandError
	if !errors.As(err, &qe) || qe.Step != "request-ebpf" || !errors.As(err, &ce) || *ce != (qmp.CommandError{Class: "GenericError", Desc: "d"}) {
		t.Errorf("request-ebpf refused: %#v", err)
	}
	err = run(greeting(10, 0, 0), `{"return": {}, "id": 1}`)
	if !errors.As(err, &qe) || qe.Step != "query-version" || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("end of file: %#v", err)
	}
	err = run(greeting(8, 2, 0), `{"return": {}, "id": 1}`, version(8, 2, 1), `{"error": {"class": "CommandNotFound", "desc": "d"}, "id": 3}`)
	var no *qmp.NoEBPFError
	if !errors.As(err, &no) || no.Version.String() != "8.2.1" || no.Reason() != "eBPF RSS fds (ebpf-rss-fds) need QEMU ≥ "+qmp.EBPFMinVersion || errors.As(err, &qe) {
		t.Errorf("no request-ebpf: %#v", err)
	}
}

// A line may be MaxLine bytes long, its line end included, and no longer:
// the object is one line of base64, and the rest is bounded with it.
func TestMaxLine(t *testing.T) {
	if testing.Short() {
		t.Skip("reads 64 MiB")
	}
	g := greeting(10, 0, 0)
	for _, tc := range []struct {
		pad  int
		want string
	}{{qmp.MaxLine - len(g) - 2, "qmp_capabilities: unexpected EOF"}, {qmp.MaxLine - len(g) - 1, "QMP greeting: bufio.Scanner: token too long"}} {
		r := io.MultiReader(strings.NewReader(g), &spaces{tc.pad}, strings.NewReader("\r\n"))
		if _, err := qmp.FetchEBPFRSS(qmp.NewClient(r, io.Discard)); err == nil || err.Error() != tc.want {
			t.Errorf("a line of %d bytes: %v, want %s", len(g)+tc.pad+2, err, tc.want)
		}
	}
}

// spaces reads as n spaces.
type spaces struct{ n int }

func (s *spaces) Read(p []byte) (int, error) {
	if s.n == 0 {
		return 0, io.EOF
	}
	k := min(len(p), s.n)
	for i := range p[:k] {
		p[i] = ' '
	}
	s.n -= k
	return k, nil
}

func TestStdioArgs(t *testing.T) {
	a := qmp.StdioArgs()
	if got := strings.Join(a, " "); got != "-machine none -nodefaults -no-user-config -display none -S -qmp stdio" {
		t.Errorf("StdioArgs() = %s", got)
	}
	a[0] = "-changed"
	if qmp.StdioArgs()[0] != "-machine" {
		t.Error("StdioArgs returns a shared slice")
	}
}

// transcript runs FetchEBPFRSS over what a QEMU wrote, and describes what
// the Client wrote and what it returned, as the golden files hold it.
func transcript(qemu []byte) (string, error) {
	var wrote bytes.Buffer
	r, err := qmp.FetchEBPFRSS(qmp.NewClient(bytes.NewReader(qemu), &wrote))
	var b strings.Builder
	b.WriteString("wrote:\n")
	b.Write(wrote.Bytes())
	switch {
	case err == nil:
		sum := sha256.Sum256(r.Object)
		fmt.Fprintf(&b, "returned:\nversion %s, package %q\nobject of %d bytes, sha256 %x\n", r.Version, r.Version.Package, len(r.Object), sum)
	default:
		fmt.Fprintf(&b, "failed (%T):\n%s\n", err, err)
		var qe *qmp.Error
		if errors.As(err, &qe) {
			fmt.Fprintf(&b, "step %q, cause %T\n", qe.Step, qe.Err)
		}
	}
	return b.String(), err
}

// TestGolden: real QEMUs' output (Debian's 7.2 and 10.0) and the ways it
// can go wrong, each with what the Client writes and returns.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.qmp")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata/*.qmp: %v", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".qmp")
		t.Run(name, func(t *testing.T) {
			in, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := transcript(in)
			golden := strings.TrimSuffix(f, ".qmp") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (go test -run TestGolden -update writes it)", err)
			}
			if got != string(want) {
				t.Errorf("%s:\ngot\n%s\nwant\n%s", f, got, want)
			}
		})
	}
}

// The steps an *Error may name.
var steps = []string{"QMP greeting", "qmp_capabilities", "query-version", "request-ebpf", "request-ebpf object"}

// FuzzFetchEBPFRSS feeds the Client arbitrary QEMU output. Whatever it
// reads, it writes nothing but its three commands, in order, stops at the
// first failure, and returns an object only if it asked for one and got
// a non-empty one, or a typed error; an error quotes untrusted bytes only
// from QEMU's error reply (desc, class) or a bounded excerpt of a line.
func FuzzFetchEBPFRSS(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.qmp")
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, qemu []byte) {
		var wrote bytes.Buffer
		r, err := qmp.FetchEBPFRSS(qmp.NewClient(bytes.NewReader(qemu), &wrote))
		lines := strings.SplitAfter(wrote.String(), "\n")
		lines = lines[:len(lines)-1] // after the last newline
		if len(lines) > len(commands) || wrote.Len() > 0 && !strings.HasSuffix(wrote.String(), "\n") {
			t.Fatalf("wrote %q", wrote.String())
		}
		for i, l := range lines {
			if l != commands[i]+"\n" {
				t.Fatalf("command %d: wrote %q, want %q", i, l, commands[i])
			}
		}
		var qe *qmp.Error
		var no *qmp.NoEBPFError
		var ce *qmp.CommandError
		switch {
		case err == nil:
			if r == nil || len(r.Object) == 0 || len(lines) != 3 {
				t.Fatalf("success with %+v after %d commands", r, len(lines))
			}
		case errors.As(err, &no):
			if len(lines) != 3 {
				t.Fatalf("%v after %d commands", err, len(lines))
			}
		case errors.As(err, &qe):
			if !slices.Contains(steps, qe.Step) || qe.Err == nil {
				t.Fatalf("error %#v", err)
			}
			// 120 bytes quoted are at most 480 (\x90), and the rest is ours.
			if !errors.As(err, &ce) && len(err.Error()) > 600 {
				t.Fatalf("a %d-byte error: %.500s", len(err.Error()), err)
			}
		default:
			t.Fatalf("untyped error %#v", err)
		}
	})
}
