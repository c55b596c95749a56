package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// installCNI replaces an older plugin with the new bytes, mode 0755, and
// leaves no temporary file; a missing source or directory is an error.
func TestInstallCNI(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	bin := filepath.Join(dir, "bin")
	os.Mkdir(bin, 0o755)
	os.WriteFile(src, []byte("new plugin"), 0o600)
	os.WriteFile(filepath.Join(bin, cniPlugin), []byte("old"), 0o755)
	if err := installCNI(src, bin); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(bin, cniPlugin))
	if err != nil || string(got) != "new plugin" {
		t.Fatalf("installed %q, %v", got, err)
	}
	if fi, _ := os.Stat(filepath.Join(bin, cniPlugin)); fi.Mode().Perm() != 0o755 {
		t.Errorf("mode %v", fi.Mode())
	}
	if ents, _ := os.ReadDir(bin); len(ents) != 1 {
		t.Errorf("%d files in the directory, want the plugin alone", len(ents))
	}
	if err := installCNI(filepath.Join(dir, "missing"), bin); err == nil {
		t.Error("a missing source was installed")
	}
	if err := installCNI(src, filepath.Join(dir, "nodir")); err == nil {
		t.Error("installed into a missing directory")
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"--install-cni", filepath.Join(dir, "nodir")}, &stdout, &stderr); code != exitFailed || !strings.Contains(stderr.String(), "--install-cni") {
		t.Errorf("vrssd --install-cni into a missing directory: exit %d, stderr %q", code, stderr.String())
	}
}
