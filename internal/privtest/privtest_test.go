package privtest

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// recorder captures Skipf and Fatalf instead of stopping the goroutine.
type recorder struct {
	testing.TB
	skipped, failed string
}

func (r *recorder) Helper() {}

func (r *recorder) Skipf(format string, args ...any) { r.skipped = fmt.Sprintf(format, args...) }

func (r *recorder) Fatalf(format string, args ...any) { r.failed = fmt.Sprintf(format, args...) }

func TestRequireFunc(t *testing.T) {
	missing := func() error { return errors.New("running as uid 1000") }

	t.Setenv(EnvRequire, "")
	r := &recorder{TB: t}
	RequireFunc(r, "root", func() error { return nil })
	if r.skipped != "" || r.failed != "" {
		t.Fatalf("satisfied requirement: skipped %q, failed %q", r.skipped, r.failed)
	}
	RequireFunc(r, "root", missing)
	if !strings.HasPrefix(r.skipped, "needs root: running as uid 1000") || r.failed != "" {
		t.Fatalf("missing requirement without %s: skipped %q, failed %q", EnvRequire, r.skipped, r.failed)
	}

	t.Setenv(EnvRequire, "1")
	r = &recorder{TB: t}
	RequireFunc(r, "root", missing)
	if !strings.HasPrefix(r.failed, "needs root: running as uid 1000") || r.skipped != "" {
		t.Fatalf("missing requirement with %s=1: skipped %q, failed %q", EnvRequire, r.skipped, r.failed)
	}
}

func TestRequireUnknown(t *testing.T) {
	r := &recorder{TB: t}
	Require(r, "magic")
	if !strings.Contains(r.failed, `unknown requirement "magic"`) {
		t.Fatalf("failed %q", r.failed)
	}
}

// TestProbes reports what this machine offers; it never fails on a missing
// capability, only on a probe that panics.
func TestProbes(t *testing.T) {
	for name, p := range probes {
		t.Logf("%s: %v", name, p())
	}
}
