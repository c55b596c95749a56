package agent

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
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

// resolveQEMU resolves symbolic links on both sides and refuses anything
// not listed, before anything is run.
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
		{filepath.Join(dir, "qemu-link"), []string{real}, real, ""},
		{real, []string{filepath.Join(dir, "listed-link")}, real, ""},
		{filepath.Join(dir, "other"), []string{real}, "", api.CodeDenied},
		{real, nil, "", api.CodeDenied},
		{real, []string{filepath.Join(dir, "missing"), real}, real, ""},
		{"qemu-10", []string{real}, "", api.CodeBadRequest},
		{filepath.Join(dir, "missing"), []string{real}, "", api.CodeBadRequest},
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
	want := &state{Version: stateVersion, TAPs: []tapState{{
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

func TestUnder(t *testing.T) {
	for _, tc := range []struct {
		path, dir string
		want      bool
	}{
		{"/sys/fs/bpf/vrss", "/sys/fs/bpf", true},
		{"/sys/fs/bpf/a/b", "/sys/fs/bpf", true},
		{"/sys/fs/bpf", "/sys/fs/bpf", true},
		{"/sys/fs/bpffoo", "/sys/fs/bpf", false},
		{"/tmp/x", "/sys/fs/bpf", false},
		{"/sys/fs/bpf/../x", "/sys/fs/bpf", false},
	} {
		if got := under(tc.path, tc.dir); got != tc.want {
			t.Errorf("under(%q, %q) = %v", tc.path, tc.dir, got)
		}
	}
}
