package agent

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/rss"
)

func TestPolicy(t *testing.T) {
	p, err := ParsePolicy([]byte(`{"create": {"uids": [1000], "gids": [107]}, "admin": {"gids": [10]}, "max_queues": 16}`))
	if err != nil {
		t.Fatal(err)
	}
	root := &peer{uid: 0, gid: 0}
	creator := &peer{uid: 1000, gid: 1000}
	kvm := &peer{uid: 2000, gid: 2000, extra: []int{107}}
	wheel := &peer{uid: 3000, gid: 10}
	nobody := &peer{uid: 65534, gid: 65534, extra: []int{5}}
	for _, tc := range []struct {
		p             *peer
		admin, create bool
	}{
		{root, true, true}, {creator, false, true}, {kvm, false, true}, {wheel, true, true}, {nobody, false, false},
	} {
		if p.admin(tc.p) != tc.admin || p.canCreate(tc.p) != tc.create {
			t.Errorf("%+v: admin %v, create %v", tc.p, p.admin(tc.p), p.canCreate(tc.p))
		}
	}
	d := &device{owner: 1000}
	if !p.owns(creator, d) || p.owns(kvm, d) || !p.owns(wheel, d) || !p.owns(root, d) {
		t.Error("ownership")
	}
	if p.maxQueues() != 16 || (&Policy{}).maxQueues() != api.MaxQueues {
		t.Error("max_queues")
	}
	for _, bad := range []string{
		`{"create": {"users": [1]}}`, `{"max_queues": -1}`, `{"max_queues": 253}`,
		`{"admin": {"uids": [-5]}}`, `{} {}`, `[]`, ``,
	} {
		if _, err := ParsePolicy([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestPolicyQEMUBinaries(t *testing.T) {
	p, err := ParsePolicy([]byte(`{}`))
	if err != nil || !reflect.DeepEqual(p.qemuBinaries(), DefaultQEMUBinaries) {
		t.Errorf("absent: %v, %v", p.qemuBinaries(), err)
	}
	p, err = ParsePolicy([]byte(`{"qemu_binaries": []}`))
	if err != nil || len(p.qemuBinaries()) != 0 {
		t.Errorf("empty: %v, %v", p.qemuBinaries(), err)
	}
	p, err = ParsePolicy([]byte(`{"qemu_binaries": ["/opt/qemu/bin/qemu-system-x86_64"]}`))
	if err != nil || !reflect.DeepEqual(p.qemuBinaries(), []string{"/opt/qemu/bin/qemu-system-x86_64"}) {
		t.Errorf("listed: %v, %v", p.qemuBinaries(), err)
	}
	for _, bad := range []string{`{"qemu_binaries": ["qemu-system-x86_64"]}`, `{"qemu_binaries": [""]}`, `{"qemu_binaries": "/usr/bin/qemu"}`} {
		if _, err := ParsePolicy([]byte(bad)); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

// resolveQEMU accepts an allowlist entry, as written or as the file it
// links to, and refuses anything else, before anything is run; the
// client's path itself is never resolved.
func TestResolveQEMU(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "qemu-10")
	os.WriteFile(real, []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(filepath.Join(dir, "other"), []byte("#!/bin/sh\n"), 0o755)
	os.Symlink("qemu-10", filepath.Join(dir, "qemu-link"))
	os.Symlink("qemu-link", filepath.Join(dir, "listed-link"))
	for _, tc := range []struct {
		path  string
		allow []string
		want  string
		code  api.Code
	}{
		{real, []string{real}, real, ""},
		{real, []string{dir + "//qemu-10"}, real, ""},
		// A link the client names is not followed, even to a listed file.
		{filepath.Join(dir, "qemu-link"), []string{real}, "", api.CodeDenied},
		// A listed link is, and its target may be named instead.
		{real, []string{filepath.Join(dir, "listed-link")}, real, ""},
		{filepath.Join(dir, "listed-link"), []string{filepath.Join(dir, "listed-link")}, real, ""},
		{filepath.Join(dir, "qemu-link"), []string{filepath.Join(dir, "listed-link")}, "", api.CodeDenied},
		{filepath.Join(dir, "other"), []string{real}, "", api.CodeDenied},
		{real, nil, "", api.CodeDenied},
		{real, []string{filepath.Join(dir, "missing"), real}, real, ""},
		{dir + "/./qemu-10", []string{real}, "", api.CodeDenied},
		{"qemu-10", []string{real}, "", api.CodeBadRequest},
		{"", []string{real}, "", api.CodeBadRequest},
		{filepath.Join(dir, "missing"), []string{real}, "", api.CodeDenied},
		// A listed binary that is not there is the host's problem.
		{filepath.Join(dir, "missing"), []string{filepath.Join(dir, "missing")}, "", api.CodeUnavailable},
	} {
		got, err := resolveQEMU(tc.path, tc.allow)
		var ae *api.Error
		switch {
		case tc.code == "" && (err != nil || got != tc.want):
			t.Errorf("resolveQEMU(%s, %v) = %q, %v; want %q", tc.path, tc.allow, got, err, tc.want)
		case tc.code != "" && (!errors.As(err, &ae) || ae.Code != tc.code):
			t.Errorf("resolveQEMU(%s, %v) = %q, %v; want %s", tc.path, tc.allow, got, err, tc.code)
		}
	}
}

// resolveQEMU's refusal of a path outside the allowlist says nothing
// about what is there: an existing file, one the client could not read, a
// directory, a link (to a secret, to nowhere, to an allowlisted binary), a
// path through a file or a loop, and nothing at all get the same answer,
// but for the path as the client wrote it. (Issue #7: vrssd resolved the
// client's path as root, so /root/.bashrc was "not in allowlist" while
// /root/nonexistent was "no such file".)
func TestResolveQEMURevealsNothing(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "qemu-10")
	os.WriteFile(real, []byte("#!/bin/sh\n"), 0o755)
	private := filepath.Join(dir, "private")
	os.Mkdir(private, 0o700)
	secret := filepath.Join(private, ".bashrc")
	os.WriteFile(secret, []byte("secret\n"), 0o600)
	os.Symlink(secret, filepath.Join(dir, "to-secret"))
	os.Symlink(filepath.Join(dir, "nowhere"), filepath.Join(dir, "dangling"))
	os.Symlink(real, filepath.Join(private, "to-qemu"))
	os.Symlink("loop", filepath.Join(dir, "loop"))
	allow := []string{real}
	var want string
	for i, p := range []string{
		filepath.Join(private, "nonexistent"), secret, private, filepath.Join(dir, "to-secret"),
		filepath.Join(dir, "dangling"), filepath.Join(private, "to-qemu"), filepath.Join(dir, "loop"),
		secret + "/x", filepath.Join(dir, "no", "such", "dir"), "/proc/self/exe", "/",
	} {
		got, err := resolveQEMU(p, allow)
		var ae *api.Error
		if !errors.As(err, &ae) || ae.Code != api.CodeDenied || got != "" {
			t.Errorf("resolveQEMU(%s) = %q, %v; want denied", p, got, err)
			continue
		}
		msg := strings.Replace(ae.Message, strconv.Quote(p), "PATH", 1)
		if strings.Count(msg, dir) != 1 || !strings.Contains(msg, strconv.Quote(real)) {
			t.Errorf("resolveQEMU(%s): %q names more than the allowlist", p, ae.Message)
		}
		if i == 0 {
			want = msg
			t.Logf("the refusal: %s", ae.Message)
		} else if msg != want {
			t.Errorf("resolveQEMU(%s): %q\nwhile a path that does not exist gets %q", p, msg, want)
		}
	}
}

// An object that is not QEMU's RSS object as vrssd knows it is refused
// before anything is loaded: vrss's own program has other maps.
func TestLoadQEMUObjectRefuses(t *testing.T) {
	vrss, err := os.ReadFile("../steering/vrss_bpfel.o")
	if err != nil {
		t.Fatal(err)
	}
	for name, obj := range map[string][]byte{"vrss's object": vrss, "not ELF": []byte("QEMU"), "empty": nil} {
		if _, fds, err := loadQEMUObject(obj); err == nil || fds != nil {
			t.Errorf("%s: loaded", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	if _, _, err := loadQEMUObject(vrss); err == nil || !strings.Contains(err.Error(), "want tun_rss_steering_prog") {
		t.Errorf("vrss's object: %v", err)
	}
}

func TestLoadPolicy(t *testing.T) {
	dir := t.TempDir()
	if p, err := LoadPolicy(filepath.Join(dir, "none.json"), false); err != nil || !reflect.DeepEqual(p, Policy{}) {
		t.Fatal(p, err)
	}
	if _, err := LoadPolicy(filepath.Join(dir, "none.json"), true); err == nil {
		t.Fatal("a missing explicit file is fine")
	}
}

func TestState(t *testing.T) {
	dir := t.TempDir()
	st, err := readState(dir)
	if err != nil || len(st.TAPs) != 0 {
		t.Fatal(st, err)
	}
	// Without a TAP with flows, the file says version 2, which older
	// vrssds read.
	want := &state{Version: stateVersionPlain, TAPs: []tapState{{
		Name: "vm0", Index: 7, Queues: 4, VnetHdrLen: 12, OwnerUID: 1000, OwnerGID: 100,
		Steering: true, ABI: "vrss1-x", HashReport: &api.HashReport{HashTypes: rss.HashTCPv4, Key: []byte{1, 2}},
	}}}
	if err := writeState(dir, want); err != nil {
		t.Fatal(err)
	}
	got, err := readState(dir)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("%+v, %v", got, err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("temporary files left: %v", ents)
	}
	os.WriteFile(filepath.Join(dir, "state.json"), []byte(`{"version": 99}`), 0o600)
	if _, err := readState(dir); err == nil {
		t.Fatal("a future state version was read")
	}
}

func TestCheckName(t *testing.T) {
	for _, ok := range []string{"tap0", "vm-1.eth0", "a", "123456789012345"} {
		if err := checkName(ok); err != nil {
			t.Error(err)
		}
	}
	for _, bad := range []string{"", ".", "..", "a/b", "a:b", "a b", "tap%d", "1234567890123456"} {
		if err := checkName(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
