package e2e

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vrss-dev/vrss/internal/privtest"
)

// EnvE2E set to 1 runs TestE2E; `make e2e` sets it.
const EnvE2E = "VRSS_E2E"

// budget is what `make e2e` may take on the project's machines.
const budget = 10 * time.Minute

// TestE2E is scenario A on a real guest: see RunPreSteered. It installs
// Debian packages, downloads a kernel and boots QEMU under TCG, so it only
// runs when asked to. Optional settings: VRSS_E2E_SEED (the random key),
// VRSS_E2E_QEMU (a QEMU binary), VRSS_E2E_KERNEL (an exact linux-image
// package), VRSS_E2E_BACKPORTS=qemu[,kernel] (take those from
// bookworm-backports), VRSS_E2E_CACHE (see CacheDir).
func TestE2E(t *testing.T) {
	if os.Getenv(EnvE2E) != "1" {
		t.Skipf("real-guest end-to-end test (installs Debian packages, boots QEMU): run `make e2e` or set %s=1; "+
			"%s=1 alone does not run it, it is a separate target from `make test`", EnvE2E, privtest.EnvRequire)
	}
	for _, need := range []string{"root", "tap", "netns", "bpf"} {
		privtest.Require(t, need)
	}
	var seed uint64
	if s := os.Getenv("VRSS_E2E_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 0, 64); err != nil {
			t.Fatalf("VRSS_E2E_SEED: %v", err)
		}
	}
	rep, err := RunPreSteered(Options{
		Log: os.Stdout, Seed: seed,
		QEMU:            os.Getenv("VRSS_E2E_QEMU"),
		KernelPackage:   os.Getenv("VRSS_E2E_KERNEL"),
		BackportsQEMU:   strings.Contains(os.Getenv("VRSS_E2E_BACKPORTS"), "qemu"),
		BackportsKernel: strings.Contains(os.Getenv("VRSS_E2E_BACKPORTS"), "kernel"),
	})
	if rep != nil && len(rep.Results) > 0 {
		fmt.Print("\n" + rep.String())
	}
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Fatalf("the guest's per-queue counters differ from the prediction (rerun with VRSS_E2E_SEED=%d)", rep.Seed)
	}
	if rep.Total > budget {
		t.Errorf("the run took %v, over the %v budget", rep.Total, budget)
	}
}
