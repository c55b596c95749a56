//go:build linux

package xdptest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestContextRequired checks that the shared headers refuse to compile
// unless the program chose its context first (ctx.h), and refuse two
// contexts. It needs clang, as make generate does, and skips without it.
func TestContextRequired(t *testing.T) {
	clang, err := exec.LookPath("clang")
	if err != nil {
		t.Skip("no clang")
	}
	bpfDir, err := filepath.Abs("../../bpf")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, src, want string }{
		{"none", "#include \"steer.h\"\n", "include ctx/skb.h or ctx/xdp.h"},
		{"eth only", "#include \"eth.h\"\n", "include ctx/skb.h or ctx/xdp.h"},
		{"both", "#include \"ctx/skb.h\"\n#include \"ctx/xdp.h\"\n#include \"steer.h\"\n", "one context per program"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "p.c")
			if err := os.WriteFile(f, []byte(c.src), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(clang, "-target", "bpf", "-O2", "-I", bpfDir,
				"-I/usr/include/x86_64-linux-gnu", "-I/usr/include/aarch64-linux-gnu",
				"-c", f, "-o", filepath.Join(t.TempDir(), "p.o")).CombinedOutput()
			if err == nil {
				t.Fatalf("compiled without error")
			}
			if !strings.Contains(string(out), c.want) {
				t.Errorf("error output lacks %q:\n%s", c.want, out)
			}
		})
	}
}
