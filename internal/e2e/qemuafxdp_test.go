package e2e

import (
	"os"
	"strings"
	"testing"
)

// TestE2EBuildAFXDPQEMU builds (or finds in the cache) the QEMU with
// af-xdp that scenario X runs, and checks that it lists the netdev. It
// downloads Debian sources and compiles for minutes, so it runs only with
// VRSS_E2E=1, as root.
func TestE2EBuildAFXDPQEMU(t *testing.T) {
	if os.Getenv(EnvE2E) != "1" {
		t.Skipf("builds QEMU from Debian sources: set %s=1", EnvE2E)
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root (apt-get)")
	}
	q, err := BuildAFXDPQEMU(CacheDir(), os.Stdout)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s (%s), cached %v, built in %v, key %s", q.Binary, q.Version, q.Cached, q.Took, q.Key)
	if err := AFXDPQEMUListed(q.Binary); err != nil {
		t.Fatal(err)
	}
	again, err := BuildAFXDPQEMU(CacheDir(), os.Stdout)
	if err != nil {
		t.Fatal(err)
	}
	if !again.Cached || again.Binary != q.Binary {
		t.Fatalf("a second call built again (cached %v, %s then %s)", again.Cached, q.Binary, again.Binary)
	}
}

func TestUnitAFXDPInputsKey(t *testing.T) {
	a := map[string]string{"src:qemu": "1:10.0.2+ds-1~bpo12+1", "recipe": afxdpRecipe}
	b := map[string]string{"recipe": afxdpRecipe, "src:qemu": "1:10.0.2+ds-1~bpo12+1"}
	la, ka := afxdpInputs(a)
	lb, kb := afxdpInputs(b)
	if la != lb || ka != kb {
		t.Fatalf("same inputs, different keys: %q %s, %q %s", la, ka, lb, kb)
	}
	if la != "recipe="+afxdpRecipe+"\nsrc:qemu=1:10.0.2+ds-1~bpo12+1\n" {
		t.Fatalf("lines %q", la)
	}
	b["src:qemu"] = "1:10.0.3+ds-1~bpo12+1"
	if _, kc := afxdpInputs(b); kc == ka {
		t.Fatal("another QEMU source, same key")
	}
}

func TestUnitStaticPC(t *testing.T) {
	in := "prefix=/x\nlibdir=${prefix}/lib\n\nName: libxdp\nLibs: -L${libdir} -lxdp\nRequires.private: libbpf\n"
	out := staticPC(in)
	if !strings.Contains(out, "\nLibs: -L${libdir} -lxdp -lbpf -lelf -lz\n") {
		t.Fatalf("got %q", out)
	}
	if staticPC(out) != out {
		t.Fatal("not idempotent")
	}
}

func TestUnitPickSource(t *testing.T) {
	v, err := pickSource([]string{"1:10.1.2+ds-1", "1:10.0.2+ds-1~bpo12+1", "1:9.2.0+ds-1~bpo12+1"}, "~bpo12")
	if err != nil || v != "1:10.0.2+ds-1~bpo12+1" {
		t.Fatalf("got %q, %v", v, err)
	}
	if _, err := pickSource([]string{"1.6.3-1"}, "~bpo12"); err == nil {
		t.Fatal("no version with the marker, no error")
	}
}

func TestUnitOrigURI(t *testing.T) {
	out := `Need to get 39.6 MB of source archives.
'http://deb.debian.org/debian/pool/main/q/qemu/qemu_10.0.2%2bds-2%2bdeb13u1%7ebpo12%2b1.dsc' qemu_10.0.2+ds-2+deb13u1~bpo12+1.dsc 11887 SHA256:a9eec32b6ddeda8f7e3472b3e9662358a0a764fb2ba9551a8c158c012072bc96
'http://deb.debian.org/debian/pool/main/q/qemu/qemu_10.0.2%2bds.orig.tar.xz' qemu_10.0.2+ds.orig.tar.xz 39449628 SHA256:0901da33844a331bf8b3602b9c1fbd178e60b737c8e3ade678255bd090c9b9f1
'http://deb.debian.org/debian/pool/main/q/qemu/qemu_10.0.2%2bds-2%2bdeb13u1%7ebpo12%2b1.debian.tar.xz' qemu_10.0.2+ds-2+deb13u1~bpo12+1.debian.tar.xz 139220 SHA256:dd04c78b36212c1b463595028c234e8c18241ef25923e7a135671f76d8ec5547
`
	uri, name, hash, err := origURI(out)
	if err != nil || uri != "http://deb.debian.org/debian/pool/main/q/qemu/qemu_10.0.2%2bds.orig.tar.xz" ||
		name != "qemu_10.0.2+ds.orig.tar.xz" || hash != "SHA256:0901da33844a331bf8b3602b9c1fbd178e60b737c8e3ade678255bd090c9b9f1" {
		t.Fatalf("got %q %q %q %v", uri, name, hash, err)
	}
	if _, _, _, err := origURI("nothing\n"); err == nil {
		t.Fatal("no tarball, no error")
	}
}

func TestUnitEDK2Placeholders(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(dir+"/pc-bios", 0o755); err != nil {
		t.Fatal(err)
	}
	mb := "if unpack_edk2_blobs\n  fds = [\n    'edk2-aarch64-code.fd',\n    'edk2-x86_64-code.fd',\n  ]\nendif\nblobs = [\n  'bios.bin',\n]\n"
	if err := os.WriteFile(dir+"/pc-bios/meson.build", []byte(mb), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir+"/pc-bios/edk2-x86_64-code.fd.bz2", []byte("real"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := edk2Placeholders(dir); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(dir + "/pc-bios/edk2-aarch64-code.fd.bz2"); err != nil || len(b) != 0 {
		t.Fatalf("placeholder: %q, %v", b, err)
	}
	if b, _ := os.ReadFile(dir + "/pc-bios/edk2-x86_64-code.fd.bz2"); string(b) != "real" {
		t.Fatalf("an existing file was replaced: %q", b)
	}
	if _, err := os.Stat(dir + "/pc-bios/bios.bin.bz2"); err == nil {
		t.Fatal("a placeholder for a blob that is not edk2's")
	}
}

func TestUnitPatchReadPoll(t *testing.T) {
	src := "    for (i = 0; i < queues; i++) {\n        if (af_xdp_umem_create(s, -1, errp)) {\n            s->n_queues = i;\n            goto err;\n        }\n    }\n\n    if (nc0) {\n    }\n"
	out, err := patchReadPoll(src)
	if err != nil || !strings.Contains(out, "goto err;\n        }\n        af_xdp_read_poll(s, true);") {
		t.Fatalf("got %q, %v", out, err)
	}
	if _, err := patchReadPoll(out); err == nil {
		t.Fatal("patched twice")
	}
}

// TestE2EBuildAFXDPMapPathQEMU builds (or finds in the cache) the QEMU
// 10.2 with af-xdp that scenario XM runs.
func TestE2EBuildAFXDPMapPathQEMU(t *testing.T) {
	if os.Getenv(EnvE2E) != "1" {
		t.Skipf("builds QEMU from Debian sources: set %s=1", EnvE2E)
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root (apt-get)")
	}
	q, err := BuildAFXDPMapPathQEMU(CacheDir(), os.Stdout)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s (%s), cached %v, built in %v, key %s", q.Binary, q.Version, q.Cached, q.Took, q.Key)
}

// The read-poll patch for QEMU 10.1 and later finds its one anchor, in
// net/af-xdp.c as QEMU 10.2.2 has it, and refuses a source without it.
func TestUnitAFXDPReadPollMapPath(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(dir+"/net", 0o755); err != nil {
		t.Fatal(err)
	}
	src := "    for (i = 0; i < queues; i++) {\n        if (af_xdp_umem_create(s, sock_fds ? sock_fds[i] : -1, &err) ||\n            af_xdp_update_xsk_map(s, &err)) {\n" + afxdpPollAnchorMapPath + "\n"
	if err := os.WriteFile(dir+"/net/af-xdp.c", []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := patchAFXDPReadPollMapPath(dir); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(dir + "/net/af-xdp.c")
	if !strings.Contains(string(b), "        af_xdp_read_poll(s, true); /* vrss e2e: every queue, not only the last */\n    }\n\n    if (nc0 && !inhibit) {") {
		t.Fatalf("patched:\n%s", b)
	}
	if err := patchAFXDPReadPollMapPath(dir); err == nil {
		t.Fatal("a source patched already was patched again")
	}
}

// Scenario names are told apart whole: XM is not X.
func TestUnitWantScenario(t *testing.T) {
	for _, c := range []struct {
		list, s string
		want    bool
	}{{"A,B,L,R,P,X", "X", true}, {"XM", "X", false}, {"X", "XM", false}, {"A, XM", "XM", true}, {"A,B", "B", true}} {
		if got := wantScenario(c.list, c.s); got != c.want {
			t.Errorf("wantScenario(%q, %q) = %v", c.list, c.s, got)
		}
	}
}
