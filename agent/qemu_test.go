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
echo "$(id -u) $*" >> ` + log + `
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
	link                       string // a symbolic link to modern
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
	d := newDaemon(t, fmt.Sprintf(`{"create": {"uids": [%d, %d]}, "qemu_binaries": [%q, %q, %q]}`, vmm, other, s.modern, s.old, s.noEBPF))
	if r := d.asUser(vmm, "call", helperArgs{Op: api.OpCreate, Args: mustJSON(api.CreateArgs{Name: "qe0", Queues: 2})}); r.Error != nil {
		t.Fatalf("create: %+v", r)
	}

	t.Run("allowlist", func(t *testing.T) {
		for _, bin := range []string{s.other, "/bin/sh", "/usr/bin/id"} {
			r := d.asUser(vmm, "call", helperArgs{Op: api.OpQEMUEBPF, Args: qemuEBPFArgs("qe0", bin)})
			wantDenied(t, "qemu_ebpf with "+bin, r)
			if !strings.Contains(r.Error.Message, "allowlist") {
				t.Errorf("refusal does not say why: %s", r.Error.Message)
			}
		}
		for _, bin := range []string{"qemu-10", "", s.dir + "/nonexistent"} {
			if r := d.asUser(vmm, "call", helperArgs{Op: api.OpQEMUEBPF, Args: qemuEBPFArgs("qe0", bin)}); r.Error == nil || r.Error.Code != api.CodeBadRequest || r.FDs != 0 {
				t.Errorf("qemu_ebpf with %q: %+v, want bad_request", bin, r)
			}
		}
		if runs := s.runs(t); len(runs) != 0 {
			t.Fatalf("vrssd ran a binary it refused: %q", runs)
		}
	})

	t.Run("not the owner", func(t *testing.T) {
		wantDenied(t, "qemu_ebpf by a third uid", d.asUser(other, "call", helperArgs{Op: api.OpQEMUEBPF, Args: qemuEBPFArgs("qe0", s.modern)}))
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
		// Through the link: vrssd resolves it to an allowlisted binary.
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
		// does not run QEMU, also for another path to the same binary.
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
