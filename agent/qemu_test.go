package agent_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/agent/client"
	"github.com/vrss-dev/vrss/internal/demo"
	"github.com/vrss-dev/vrss/internal/inject"
	"github.com/vrss-dev/vrss/tap"
)

// stubObject is a stand-in for QEMU's eBPF RSS object: QEMU's program and
// map names and shapes, built from testdata/qemu_rss_stub.c.
const stubObject = "testdata/qemu_rss_stub.o"

// fakeQEMU writes a shell script that plays QEMU for vrssd: it logs every
// run (uid and arguments) to log, and speaks just enough QMP on standard
// input and output: the greeting, qmp_capabilities, query-version with
// version, and request-ebpf, which returns object (base64) or, if object
// is nil, fails as a QEMU without the command does.
func fakeQEMU(t *testing.T, path, log, version string, object []byte) {
	t.Helper()
	fakeQEMUProbe(t, path, log, version, object, "")
}

// fakeQEMUProbe is fakeQEMU with probe, shell commands, run first.
func fakeQEMUProbe(t *testing.T, path, log, version string, object []byte, probe string) {
	t.Helper()
	v := strings.Split(version, ".")
	if len(v) != 3 {
		t.Fatalf("version %q", version)
	}
	ver := fmt.Sprintf(`{"qemu": {"major": %s, "minor": %s, "micro": %s}, "package": "vrss test stub"}`, v[0], v[1], v[2])
	ebpf := `{"error": {"class": "CommandNotFound", "desc": "The command request-ebpf has not been found"}, "id": $id}`
	if object != nil {
		ebpf = `{"return": {"object": "` + base64.StdEncoding.EncodeToString(object) + `"}, "id": $id}`
	}
	// vrssd marshals a map, so "id" is the last key of every command.
	script := `#!/bin/sh
` + probe + `echo "$(id -u) $*" >> ` + log + `
echo '{"QMP": {"version": ` + ver + `, "capabilities": ["oob"]}}'
while read -r line; do
	id=$(echo "$line" | sed -n 's/.*"id":\([0-9][0-9]*\)}$/\1/p')
	case "$line" in
	*'"qmp_capabilities"'*) echo "{\"return\": {}, \"id\": $id}";;
	*'"query-version"'*) echo "{\"return\": $(echo '` + ver + `'), \"id\": $id}";;
	*'"request-ebpf"'*) echo "` + strings.ReplaceAll(ebpf, `"`, `\"`) + `";;
	*) echo "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"no\"}, \"id\": $id}";;
	esac
done
`
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
}

// qemuStubs is a directory of fake QEMUs that vrssd (as nobody) may run
// and log into.
type qemuStubs struct {
	dir, log                   string
	modern, old, noEBPF, other string // QEMU 10 with request-ebpf; 7.2; 9.1 without eBPF; 10, not allowlisted
	link                       string // a symbolic link to modern, which TestQEMUEBPF allowlists
	object                     []byte
}

func newQEMUStubs(t *testing.T) *qemuStubs {
	t.Helper()
	obj, err := os.ReadFile(stubObject)
	if err != nil {
		t.Fatal(err)
	}
	// Not t.TempDir: nobody must reach the log, and its parent is 0700.
	dir, err := os.MkdirTemp("", "vrss-qemu-stubs-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s := &qemuStubs{
		dir: dir, log: filepath.Join(dir, "runs.log"), object: obj,
		modern: filepath.Join(dir, "qemu-10"), old: filepath.Join(dir, "qemu-7.2"),
		noEBPF: filepath.Join(dir, "qemu-9-noebpf"), other: filepath.Join(dir, "qemu-elsewhere"),
		link: filepath.Join(dir, "qemu-system-x86_64"),
	}
	if err := os.WriteFile(s.log, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	os.Chmod(s.log, 0o666) // past the umask
	fakeQEMU(t, s.modern, s.log, "10.0.0", obj)
	fakeQEMU(t, s.old, s.log, "7.2.0", nil)
	fakeQEMU(t, s.noEBPF, s.log, "9.1.0", nil)
	fakeQEMU(t, s.other, s.log, "10.0.1", obj)
	if err := os.Symlink("qemu-10", s.link); err != nil {
		t.Fatal(err)
	}
	return s
}

// runs returns the stub runs logged so far, one "uid args" line each.
func (s *qemuStubs) runs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(s.log)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(strings.ReplaceAll(strings.TrimSpace(string(b)), " ", "_"))
}

func qemuEBPFArgs(name, qemu string) json.RawMessage {
	return mustJSON(api.QEMUEBPFArgs{Name: name, QEMU: qemu})
}

// TestQEMUEBPF: vrssd hands the owner of a TAP QEMU's own eBPF RSS program
// and maps (qemu_ebpf), for allowlisted QEMU binaries only, run as nobody
// over QMP; the object is cached by the binary's digest; a QEMU without
// request-ebpf is refused with the version it would take; and the four
// fds are what an unprivileged QEMU needs: it maps the configuration,
// attaches the program through its queue, and every frame lands where the
// configuration says.
func TestQEMUEBPF(t *testing.T) {
	requirePriv(t)
	const vmm, other = 4242, 4343
	s := newQEMUStubs(t)
	// The link is listed, not the file: a client may name either.
	d := newDaemon(t, fmt.Sprintf(`{"create": {"uids": [%d, %d]}, "qemu_binaries": [%q, %q, %q]}`, vmm, other, s.link, s.old, s.noEBPF))
	if r := d.asUser(vmm, "call", helperArgs{Op: api.OpCreate, Args: mustJSON(api.CreateArgs{Name: "qe0", Queues: 2})}); r.Error != nil {
		t.Fatalf("create: %+v", r)
	}

	t.Run("allowlist", func(t *testing.T) {
		// A link of the client's own to a listed binary is not followed,
		// and a path outside the allowlist gets the same refusal whatever
		// is there (issue #7: vrssd resolved it as root).
		mine := filepath.Join(s.dir, "my-qemu")
		if err := os.Symlink("qemu-10", mine); err != nil {
			t.Fatal(err)
		}
		private := filepath.Join(d.stateDir, "state.json") // root's, 0600, in a 0700 directory
		var want string
		for _, bin := range []string{s.dir + "/nonexistent", s.other, "/bin/sh", "/usr/bin/id", mine, private, d.stateDir + "/nonexistent", private + "/x"} {
			r := d.asUser(vmm, "call", helperArgs{Op: api.OpQEMUEBPF, Args: qemuEBPFArgs("qe0", bin)})
			wantDenied(t, "qemu_ebpf with "+bin, r)
			if !strings.Contains(r.Error.Message, "allowlist") {
				t.Errorf("refusal does not say why: %s", r.Error.Message)
			}
			msg := strings.Replace(r.Error.Message, strconv.Quote(bin), "PATH", 1)
			if want == "" {
				want = msg
			} else if msg != want {
				t.Errorf("qemu_ebpf with %s: %q, while a path that does not exist gets %q", bin, msg, want)
			}
		}
		for _, bin := range []string{"qemu-10", ""} {
			if r := d.asUser(vmm, "call", helperArgs{Op: api.OpQEMUEBPF, Args: qemuEBPFArgs("qe0", bin)}); r.Error == nil || r.Error.Code != api.CodeBadRequest || r.FDs != 0 {
				t.Errorf("qemu_ebpf with %q: %+v, want bad_request", bin, r)
			}
		}
		if runs := s.runs(t); len(runs) != 0 {
			t.Fatalf("vrssd ran a binary it refused: %q", runs)
		}
	})

	t.Run("not the owner", func(t *testing.T) {
		// denied, or not_found where vrssd hides TAPs a uid may not see.
		if r := d.asUser(other, "call", helperArgs{Op: api.OpQEMUEBPF, Args: qemuEBPFArgs("qe0", s.modern)}); r.Error == nil ||
			(r.Error.Code != api.CodeDenied && r.Error.Code != api.CodeNotFound) || r.FDs != 0 {
			t.Fatalf("qemu_ebpf by a third uid: got %+v, want it refused", r)
		}
		if runs := s.runs(t); len(runs) != 0 {
			t.Fatalf("vrssd ran QEMU for a peer that may not use the TAP: %q", runs)
		}
	})

	t.Run("QEMU without request-ebpf", func(t *testing.T) {
		for _, tc := range []struct{ bin, want string }{
			{s.old, "QEMU 7.2.0 (" + s.old + ") has no request-ebpf: eBPF RSS fds (ebpf-rss-fds) need QEMU ≥ 9.0"},
			{s.noEBPF, "QEMU 9.1.0 (" + s.noEBPF + ") has no request-ebpf: this build has no eBPF support"},
		} {
			r := d.asUser(vmm, "call", helperArgs{Op: api.OpQEMUEBPF, Args: qemuEBPFArgs("qe0", tc.bin)})
			if r.Error == nil || r.Error.Code != api.CodeUnavailable || r.FDs != 0 || !strings.Contains(r.Error.Message, tc.want) {
				t.Errorf("qemu_ebpf with %s: %+v, want unavailable: %q", tc.bin, r, tc.want)
			}
		}
	})

	t.Run("handover", func(t *testing.T) {
		before := len(s.runs(t))
		// Through the allowlisted link: vrssd runs the file it links to.
		cmd := execHelper("qemuvmm", helperArgs{Socket: d.socket, Args: qemuEBPFArgs("qe0", s.link), Frames: 40, Queue: 1})
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: vmm, Gid: vmm}}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Wait()
		out := bufio.NewReader(stdout)
		line, err := out.ReadString('\n')
		if line != "READY\n" {
			rest, _ := out.ReadString(0)
			t.Fatalf("qemuvmm helper: %q %v %s", line, err, rest)
		}
		frames := demo.Frames(20, 2, 3)
		d.inNS(func() {
			ifi, err := net.InterfaceByName("qe0")
			if err != nil {
				t.Fatal(err)
			}
			inj, err := inject.Open(ifi.Index)
			if err != nil {
				t.Fatal(err)
			}
			defer inj.Close()
			if err := inj.SendBatch(frames); err != nil {
				t.Fatal(err)
			}
		})
		var r helperResult
		if err := json.NewDecoder(out).Decode(&r); err != nil {
			t.Fatal(err)
		}
		if r.Error != nil || r.Fail != "" {
			t.Fatalf("qemuvmm helper: %+v", r)
		}
		var got struct {
			Result  api.QEMUEBPFResult `json:"result"`
			FDInfo  []string           `json:"fdinfo"`
			PerQueu []int              `json:"per_queue"`
		}
		if err := json.Unmarshal(r.Result, &got); err != nil {
			t.Fatal(err)
		}
		res := got.Result
		sum := sha256.Sum256(mustRead(t, s.modern))
		if res.QEMU != s.modern || res.QEMUVersion != "10.0.0" || res.QEMUPackage != "vrss test stub" || res.Digest != "sha256:"+hex.EncodeToString(sum[:]) || res.Cached {
			t.Errorf("result %+v", res)
		}
		if res.Program != "tun_rss_steering_prog" || strings.Join(res.Maps, " ") != "tap_rss_map_configurations tap_rss_map_toeplitz_key tap_rss_map_indirection_table" ||
			res.ProgramID == 0 || len(res.MapIDs) != 3 {
			t.Errorf("objects %+v", res)
		}
		if !res.SteeringDetached || res.TAP.Steering {
			t.Errorf("vrss's program not detached: %+v", res)
		}
		// The kernel's view of the fds, in ebpf-rss-fds order: a socket
		// filter, then mmapable arrays of QEMU's shapes.
		for i, want := range []string{"prog_type:\t1", "map_type:\t2 value_size:\t10 max_entries:\t1 map_flags:\t0x400",
			"map_type:\t2 value_size:\t40 max_entries:\t1 map_flags:\t0x400", "map_type:\t2 value_size:\t2 max_entries:\t128 map_flags:\t0x400"} {
			for _, w := range strings.Split(want, " ") {
				if i >= len(got.FDInfo) || !strings.Contains(got.FDInfo[i], w) {
					t.Errorf("fd %d: %q missing from fdinfo", i, w)
				}
			}
		}
		if want := []int{0, len(frames)}; fmt.Sprint(got.PerQueu) != fmt.Sprint(want) {
			t.Errorf("frames per queue %v, want %v: the program handed over does not steer by the map handed over", got.PerQueu, want)
		}
		runs := s.runs(t)[before:]
		if len(runs) != 1 || !strings.HasPrefix(runs[0], "65534_") || !strings.Contains(runs[0], "-machine_none") || !strings.Contains(runs[0], "-qmp_stdio") {
			t.Errorf("stub runs %q, want one, as nobody (65534), -machine none -qmp stdio", runs)
		}

		// The cache: the object under the binary's digest; asking again
		// does not run QEMU, also for the other allowed path to the same
		// binary, the link's target.
		cached, err := os.ReadFile(filepath.Join(d.stateDir, "qemu-ebpf", hex.EncodeToString(sum[:])+".o"))
		if err != nil || !bytes.Equal(cached, s.object) {
			t.Errorf("cache holds %d bytes (%v), want the %d-byte object", len(cached), err, len(s.object))
		}
		r = d.asUser(vmm, "call", helperArgs{Op: api.OpQEMUEBPF, Args: qemuEBPFArgs("qe0", s.modern)})
		var again api.QEMUEBPFResult
		if r.Error != nil || r.FDs != 4 || json.Unmarshal(r.Result, &again) != nil || !again.Cached || again.QEMUVersion != "10.0.0" || again.SteeringDetached || again.ProgramID == res.ProgramID {
			t.Errorf("second qemu_ebpf: %+v %+v", r, again)
		}
		if n := len(s.runs(t)); n != before+1 {
			t.Errorf("QEMU ran %d times for one binary", n-before)
		}
	})

	taps, err := d.dial().List(ctx)
	if err != nil || len(taps) != 1 || taps[0].Steering {
		t.Errorf("after qemu_ebpf: %+v %v, want qe0 with steering detached", taps, err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestQEMUEBPFRealOldQEMU asks a real QEMU without request-ebpf (Debian
// bookworm's 7.2, which `make e2e` installs), through vrssd's default
// allowlist.
func TestQEMUEBPFRealOldQEMU(t *testing.T) {
	requirePriv(t)
	const bin = "/usr/bin/qemu-system-x86_64"
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Skipf("no QEMU at %s (install qemu-system-x86): %v", bin, err)
	}
	var major int
	if f := strings.Fields(string(out)); len(f) >= 4 {
		major, _ = strconv.Atoi(strings.Split(f[3], ".")[0])
	}
	d := newDaemon(t, "")
	c := d.dial()
	if _, err := c.Create(ctx, api.CreateArgs{Name: "qo0", Queues: 2}); err != nil {
		t.Fatal(err)
	}
	res, files, err := c.QEMUEBPF(ctx, "qo0", bin)
	if major >= 9 {
		// A newer QEMU: whatever its build has, the answer is a clear one.
		for _, f := range files {
			f.Close()
		}
		t.Logf("QEMU %d: %+v, %v", major, res, err)
		return
	}
	wantCode(t, err, api.CodeUnavailable)
	if !strings.Contains(err.Error(), "has no request-ebpf: eBPF RSS fds (ebpf-rss-fds) need QEMU ≥ 9.0") || !strings.Contains(err.Error(), fmt.Sprintf("QEMU %d.", major)) {
		t.Errorf("error %q does not name the version required", err)
	}
}

// qemuVMMHelper is an unprivileged QEMU's part, done by hand: open the
// TAP, get QEMU's program and maps (qemu_ebpf), write a.Queue into the
// configuration map through a memory mapping, attach the program through
// a queue fd, say READY, and count a.Frames frames per queue.
func qemuVMMHelper(ctx context.Context, c *client.Client, a helperArgs, res *helperResult) error {
	var qa api.QEMUEBPFArgs
	json.Unmarshal(a.Args, &qa)
	h, err := c.Open(ctx, qa.Name)
	if err != nil {
		return err
	}
	defer h.Close()
	r, files, err := c.QEMUEBPF(ctx, qa.Name, qa.QEMU)
	if err != nil {
		return err
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	var info []string
	for _, f := range files {
		b, err := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", f.Fd()))
		if err != nil {
			return err
		}
		info = append(info, string(b))
	}
	// As QEMU does: no bpf() call, which this user may not make.
	mem, err := unix.Mmap(int(files[1].Fd()), 0, os.Getpagesize(), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("mmap the configuration map: %w", err)
	}
	defer unix.Munmap(mem)
	binary.LittleEndian.PutUint16(mem[8:], uint16(a.Queue))
	rc, err := h.Queues[0].SyscallConn()
	if err != nil {
		return err
	}
	var aerr error
	rc.Control(func(fd uintptr) { aerr = tap.SetSteeringFD(fd, int(files[0].Fd())) })
	if aerr != nil {
		return fmt.Errorf("attach QEMU's program: %w", aerr)
	}
	os.Stdout.WriteString("READY\n")
	frames, err := inject.DrainFiles(qa.Name, h.Queues, h.TAP.VnetHdrLen, a.Frames, 10*time.Second)
	if err != nil {
		return err
	}
	perQueue := make([]int, len(frames))
	for q, fs := range frames {
		perQueue[q] = len(fs)
	}
	res.FDs = len(files)
	res.Result = mustJSON(map[string]any{"result": r, "fdinfo": info, "per_queue": perQueue})
	return nil
}

// qemuProbe are shell commands a fake QEMU runs first: they log, to log,
// what the QEMU process was given: its uid, its groups, its capability
// sets and no_new_privs (of a child, which inherits them), and its open
// descriptors (ls's, which inherits them: the one ls opens itself names
// /proc/PID/fd).
func qemuProbe(log string) string {
	return `echo "uid $(id -u)" >> ` + log + `
echo "groups $(id -G)" >> ` + log + `
grep -E '^(CapInh|CapPrm|CapEff|CapAmb|NoNewPrivs):' /proc/self/status >> ` + log + `
ls -l /proc/self/fd >> ` + log + `
`
}

// qemuProbed is what qemuProbe logged.
type qemuProbed struct {
	fields map[string]string // uid, groups, CapEff, NoNewPrivs, ...
	fds    map[int]string    // descriptor → what it is
}

func parseQEMUProbe(t *testing.T, log string) qemuProbed {
	t.Helper()
	p := qemuProbed{fields: map[string]string{}, fds: map[int]string{}}
	for _, line := range strings.Split(strings.TrimSpace(string(mustRead(t, log))), "\n") {
		if before, after, ok := strings.Cut(line, " -> "); ok {
			f := strings.Fields(before)
			fd, err := strconv.Atoi(f[len(f)-1])
			if err != nil {
				t.Fatalf("probe: %q", line)
			}
			p.fds[fd] = after
			continue
		}
		if k, v, ok := strings.Cut(line, " "); ok && !strings.HasSuffix(k, ":") {
			p.fields[k] = v
		} else if k, v, ok := strings.Cut(line, ":"); ok {
			p.fields[k] = strings.TrimSpace(v)
		}
	}
	return p
}

// check requires what vrssd promises of every QEMU it runs: the user
// nobody with no supplementary group, no capability, no_new_privs, and no
// descriptor but 0, 1, 2 and 3, the binary (bin).
func (p qemuProbed) check(t *testing.T, bin string) {
	t.Helper()
	want := map[string]string{"uid": "65534", "groups": "65534", "NoNewPrivs": "1",
		"CapInh": "0000000000000000", "CapPrm": "0000000000000000", "CapEff": "0000000000000000", "CapAmb": "0000000000000000"}
	for k, v := range want {
		if p.fields[k] != v {
			t.Errorf("QEMU ran with %s %q, want %q", k, p.fields[k], v)
		}
	}
	lsDir := regexp.MustCompile(`^/proc/[0-9]+/fd$`)
	ownDirs := 0
	for fd, what := range p.fds {
		switch {
		case fd <= 2:
		case fd == 3 && what == bin:
		case lsDir.MatchString(what) && ownDirs == 0:
			ownDirs++ // ls's own
		default:
			t.Errorf("QEMU got fd %d: %s", fd, what)
		}
	}
	if _, ok := p.fds[3]; !ok || len(p.fds) < 4 {
		t.Errorf("the probe saw fds %v: want 0, 1, 2, 3 and ls's own", p.fds)
	}
}

// TestQEMUConfined: vrssd runs QEMU as nobody, with no supplementary
// group, no capability, no_new_privs and only the descriptors it needs,
// also when vrssd itself inherited others; and a binary nobody may not
// execute is refused, not run as vrssd's user (issue #8: vrssd ran it as
// root with every capability, and both runs inherited vrssd's inherited
// fds, without no_new_privs).
func TestQEMUConfined(t *testing.T) {
	requirePriv(t)
	const vmm = 4242
	s := newQEMUStubs(t)
	probe, probeLog := filepath.Join(s.dir, "qemu-probe"), filepath.Join(s.dir, "probe.log")
	if err := os.WriteFile(probeLog, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	os.Chmod(probeLog, 0o666)
	fakeQEMUProbe(t, probe, s.log, "10.0.0", s.object, qemuProbe(probeLog))
	private := filepath.Join(s.dir, "qemu-private")
	fakeQEMU(t, private, s.log, "10.0.0", s.object)
	if err := os.Chmod(private, 0o700); err != nil {
		t.Fatal(err)
	}

	// vrssd inherits what a careless parent leaves open without
	// close-on-exec: a file and a pipe's write end, at high numbers.
	canary := filepath.Join(s.dir, "inherited")
	inherited := inheritFDs(t, canary)
	d := newDaemon(t, fmt.Sprintf(`{"create": {"uids": [%d]}, "qemu_binaries": [%q, %q]}`, vmm, probe, private))
	for _, fd := range inherited {
		unix.Close(fd)
		if what, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", d.pid(), fd)); err != nil {
			t.Logf("vrssd does not hold fd %d it was given (%v): the stub's part is TestQEMUStubClosesInherited's", fd, err)
		} else {
			t.Logf("vrssd inherited fd %d: %s", fd, what)
		}
	}
	if r := d.asUser(vmm, "call", helperArgs{Op: api.OpCreate, Args: mustJSON(api.CreateArgs{Name: "qc0", Queues: 2})}); r.Error != nil {
		t.Fatalf("create: %+v", r)
	}

	t.Run("not executable by nobody", func(t *testing.T) {
		r := d.asUser(vmm, "call", helperArgs{Op: api.OpQEMUEBPF, Args: qemuEBPFArgs("qc0", private)})
		if r.Error == nil || r.Error.Code != api.CodeUnavailable || r.FDs != 0 ||
			!strings.Contains(r.Error.Message, "may not be executed by the user nobody") || !strings.Contains(r.Error.Message, "chmod o+x "+private) {
			t.Errorf("qemu_ebpf with a binary at mode 0700: %+v, want unavailable, saying to make it executable by others", r)
		} else {
			t.Logf("refused: %s", r.Error.Message)
		}
		if runs := s.runs(t); len(runs) != 0 {
			t.Errorf("vrssd ran it: %q", runs)
		}
		if strings.Contains(d.log(), "as vrssd's user") {
			t.Errorf("vrssd fell back to its own user:\n%s", d.log())
		}
	})

	t.Run("confined", func(t *testing.T) {
		before := len(s.runs(t))
		r := d.asUser(vmm, "call", helperArgs{Op: api.OpQEMUEBPF, Args: qemuEBPFArgs("qc0", probe)})
		if r.Error != nil || r.FDs != 4 {
			t.Fatalf("qemu_ebpf: %+v", r)
		}
		if runs := s.runs(t)[before:]; len(runs) != 1 {
			t.Fatalf("runs %q, want one", runs)
		}
		t.Logf("the probe:\n%s", mustRead(t, probeLog))
		parseQEMUProbe(t, probeLog).check(t, probe)
	})
}

// inheritFDs puts, in this process, a file (canary, created) and a pipe's
// write end at fds 251 and 250 without close-on-exec, so that the next
// process started inherits them; the caller closes them once it has.
func inheritFDs(t *testing.T, canary string) []int {
	t.Helper()
	f, err := os.Create(canary)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	t.Cleanup(func() { r.Close() })
	fds := []int{251, 250}
	for i, from := range []*os.File{f, w} {
		// dup2 (dup3 with no flags): no close-on-exec.
		if err := unix.Dup2(int(from.Fd()), fds[i]); err != nil {
			t.Fatal(err)
		}
		fd := fds[i]
		t.Cleanup(func() { unix.Close(fd) })
	}
	return fds
}
