// Package buildtest builds vrss's commands the way a user does, for tests
// of what the built binaries say about themselves.
package buildtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/vrss-dev/vrss/internal/buildinfo"
)

// Root returns the repository's root directory: the module's.
func Root(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("buildtest: cannot locate the source tree")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "../../.."))
}

// TrustCheckout is the environment that lets git, and go build's VCS
// stamping through it, read the checkout at root when another user owns it
// (root testing a user's checkout under sudo), as the Makefile does.
func TrustCheckout(root string) []string {
	return []string{"GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=safe.directory", "GIT_CONFIG_VALUE_0=" + root}
}

func git(root string, args ...string) (string, error) {
	cmd := exec.Command("git", append([]string{"-C", root}, args...)...)
	cmd.Env = append(os.Environ(), TrustCheckout(root)...)
	out, err := cmd.Output()
	return strings.TrimSpace(string(out)), err
}

// Stamped builds the command ./cmd/NAME with go build in the git checkout,
// as a user does (with the VCS stamping go build does there by default),
// and returns the first line of its --version. It skips the test where
// there is no git checkout to stamp a revision from.
func Stamped(t testing.TB, name string) string {
	t.Helper()
	root := Root(t)
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git to stamp a revision with")
	}
	if _, err := git(root, "rev-parse", "HEAD"); err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	bin := filepath.Join(t.TempDir(), name)
	// -buildvcs=true overrides a GOFLAGS=-buildvcs=false, and fails rather
	// than build without the revision.
	build := exec.Command("go", "build", "-buildvcs=true", "-o", bin, "./cmd/"+name)
	build.Dir = root
	build.Env = append(os.Environ(), TrustCheckout(root)...)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/%s: %v\n%s", name, err, out)
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatalf("%s --version: %v", name, err)
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return line
}

// CheckStamped checks the first line of a stamped binary's --version: NAME
// and a version that names the checkout's HEAD, by its revision (Go's
// pseudo-version, or the revision and time) or by a tag at it.
func CheckStamped(t testing.TB, name, line string) {
	t.Helper()
	root := Root(t)
	rev, err := git(root, "rev-parse", "HEAD")
	if err != nil || len(rev) < 12 {
		t.Fatalf("git rev-parse HEAD: %q, %v", rev, err)
	}
	v, ok := strings.CutPrefix(line, name+" ")
	if !ok || v == "" || v == buildinfo.Devel {
		t.Fatalf("%s --version: %q, want %q and a version", name, line, name+" ")
	}
	if strings.Contains(v, rev[:12]) {
		return
	}
	tags, _ := git(root, "tag", "--points-at", "HEAD")
	for _, tag := range strings.Fields(tags) {
		if strings.HasPrefix(v, tag) {
			return
		}
	}
	t.Errorf("%s --version: %q names neither HEAD (%s) nor a tag at it", name, line, rev[:12])
}
