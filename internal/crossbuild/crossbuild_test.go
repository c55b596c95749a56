package crossbuild

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vrss-dev/vrss/internal/buildinfo/buildtest"
)

const module = "github.com/vrss-dev/vrss"

// portable are the packages that build for any system: no Linux system
// call, no eBPF, no TAP, nothing that imports those. Every other package
// has a doc_other.go that fails its build off Linux.
var portable = []string{
	"rss", "flow", "virtio", "port", // the RSS engine, flow rules, the virtio-net wire formats and the port policy
	"qemu/qmp",                         // the QMP client
	"agent/api",                        // vrssd's protocol types
	"internal/frame", "internal/proto", // frame builders, protocol numbers and offsets
	"internal/buildinfo", "internal/buildinfo/buildtest", "internal/crossbuild",
	"internal/diffcorpus", // the differential tests' corpus
	"deploy/kubernetes",   // the manifests (and their test)
	"ethtool",             // the ethtool wire formats and queue slicing (its ioctls are in _linux.go files)
}

// marker is the declaration each Linux-only package's doc_other.go holds,
// and the error it gives.
const (
	marker      = "type _ vrss_requires_Linux"
	markerError = "undefined: vrss_requires_Linux"
)

// goCmd runs the go command in the module's root for goos (and goarch),
// and returns its combined output.
func goCmd(t *testing.T, goos, goarch string, args ...string) (string, error) {
	t.Helper()
	root := buildtest.Root(t)
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS="+goos, "GOARCH="+goarch, "CGO_ENABLED=0")
	cmd.Env = append(cmd.Env, buildtest.TrustCheckout(root)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func pkgs(rel ...string) []string {
	var p []string
	for _, r := range rel {
		p = append(p, "./"+r)
	}
	return p
}

// A pure-Go user of rss and virtio builds anywhere: macOS and Windows
// stand for the rest. Vet also type-checks the packages' tests.
func TestPortableBuildsAnywhere(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-compiles the standard library the first time")
	}
	for _, target := range [][2]string{{"darwin", "arm64"}, {"windows", "amd64"}} {
		if out, err := goCmd(t, target[0], target[1], append([]string{"build"}, pkgs(portable...)...)...); err != nil {
			t.Errorf("GOOS=%s GOARCH=%s go build %s: %v\n%s", target[0], target[1], strings.Join(portable, " "), err, out)
		}
	}
	if out, err := goCmd(t, "windows", "amd64", "vet", "./rss", "./virtio", "./qemu/qmp"); err != nil {
		t.Errorf("GOOS=windows go vet ./rss ./virtio ./qemu/qmp: %v\n%s", err, out)
	}
}

// Everything else fails off Linux, and says first that vrss needs Linux.
func TestLinuxOnlyFailsClearly(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-compiles the standard library the first time")
	}
	out, err := goCmd(t, "darwin", "arm64", "build", "./steering")
	if err == nil || !strings.Contains(firstError(out, module+"/steering"), markerError) {
		t.Errorf("GOOS=darwin go build ./steering: %v, want it to fail first with %q:\n%s", err, markerError, out)
	}

	// Each package of the module is portable, or has the marker.
	list, err := goCmd(t, "darwin", "arm64", "list", "-e", "-f", "{{.ImportPath}} {{.Dir}} {{join .GoFiles \",\"}}", "./...")
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, list)
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(list), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			t.Fatalf("go list: %q", line)
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(f[0], module), "/")
		files := ""
		if len(f) > 2 {
			files = f[2]
		}
		seen[rel] = true
		hasDocOther := slices.Contains(strings.Split(files, ","), "doc_other.go")
		if slices.Contains(portable, rel) {
			if hasDocOther {
				t.Errorf("%s is listed as portable, but has a doc_other.go", f[0])
			}
			continue
		}
		b, err := os.ReadFile(filepath.Join(f[1], "doc_other.go"))
		if !hasDocOther || err != nil || !strings.Contains(string(b), "//go:build !linux\n") || !strings.Contains(string(b), "\n"+marker+"\n") {
			t.Errorf("%s builds only on Linux but has no doc_other.go (//go:build !linux) declaring %q (as steering/doc_other.go does), or it builds anywhere and belongs in this test's portable list", f[0], marker)
		}
	}
	for _, p := range portable {
		if !seen[p] {
			t.Errorf("portable package %s is gone: update the list", p)
		}
	}

	// And the whole module off Linux: every package that fails says it
	// first (those that only import a failing one are not compiled).
	out, err = goCmd(t, "darwin", "arm64", "build", "./...")
	if err == nil {
		t.Fatal("GOOS=darwin go build ./... succeeded")
	}
	n := 0
	for _, line := range strings.Split(out, "\n") {
		if pkg, ok := strings.CutPrefix(line, "# "); ok {
			n++
			if e := firstError(out, pkg); !strings.Contains(e, markerError) {
				t.Errorf("GOOS=darwin go build ./...: %s fails first with %q, want %q", pkg, e, markerError)
			}
		}
	}
	if n == 0 {
		t.Errorf("GOOS=darwin go build ./... failed without a package's errors:\n%s", out)
	}
	t.Logf("GOOS=darwin go build ./...:\n%s", out)
}

// firstError returns the first line after "# pkg" in the go command's
// output.
func firstError(out, pkg string) string {
	_, rest, ok := strings.Cut(out, "# "+pkg+"\n")
	if !ok {
		return ""
	}
	line, _, _ := strings.Cut(rest, "\n")
	return line
}
