package e2e

import (
	"fmt"
	"io"
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

// prepareBudget is what TestE2EPrepare may take: a cold af-xdp QEMU build
// (6 to 10 minutes on 2 cores) with its downloads, on a fresh machine.
const prepareBudget = 25 * time.Minute

// defaultScenarios are the scenarios TestE2E runs unless
// VRSS_E2E_SCENARIOS picks others.
const defaultScenarios = "A,B,L,R,P,X"

// e2eScenarios returns the scenarios asked for, upper-cased.
func e2eScenarios() string {
	if s := strings.ToUpper(os.Getenv("VRSS_E2E_SCENARIOS")); s != "" {
		return s
	}
	return defaultScenarios
}

// wantScenario says whether the comma-separated list names scenario s
// (X and XM are told apart).
func wantScenario(list, s string) bool {
	for _, n := range strings.Split(list, ",") {
		if strings.TrimSpace(n) == s {
			return true
		}
	}
	return false
}

// TestE2EPrepare builds what the scenarios need that takes minutes to
// build: scenario X's QEMU with af-xdp (BuildAFXDPQEMU), and scenario
// XM's (BuildAFXDPMapPathQEMU) when it is asked for, into the cache,
// once. `make e2e` runs it before TestE2E with its own timeout, so that a
// cold build does not eat the scenarios' budget; a cached build is
// checked and reused in seconds. It does nothing when the scenarios
// asked for include neither.
func TestE2EPrepare(t *testing.T) {
	if os.Getenv(EnvE2E) != "1" {
		t.Skipf("real-guest end-to-end preparation (installs Debian packages, builds QEMU): run `make e2e` or set %s=1", EnvE2E)
	}
	privtest.Require(t, "root")
	list := e2eScenarios()
	if !wantScenario(list, "X") && !wantScenario(list, "XM") {
		t.Skipf("scenarios X and XM are not asked for (VRSS_E2E_SCENARIOS=%s): nothing to build", list)
	}
	start := time.Now()
	for _, b := range []struct {
		scenario string
		build    func(string, io.Writer) (*AFXDPQEMU, error)
	}{{"X", BuildAFXDPQEMU}, {"XM", BuildAFXDPMapPathQEMU}} {
		if !wantScenario(list, b.scenario) {
			continue
		}
		q, err := b.build(CacheDir(), os.Stdout)
		if err != nil {
			t.Fatal(err)
		}
		how := fmt.Sprintf("built in %v", q.Took.Round(time.Second))
		if q.Cached {
			how = "cached"
		}
		fmt.Printf("e2e prepare: scenario %s's QEMU %s with af-xdp (%s, key %s)\n", b.scenario, q.Version, how, q.Key)
	}
	took := time.Since(start)
	fmt.Printf("e2e prepare: done in %v (budget %v)\n", took.Round(time.Millisecond), prepareBudget)
	if took > prepareBudget {
		t.Errorf("the preparation took %v, over the %v budget", took, prepareBudget)
	}
}

// report is what a scenario's run returns.
type report interface {
	String() string
	OK() bool
}

// TestE2E runs the real-guest scenarios: A, the pre-steered TAP created by
// vrssd, QEMU started unprivileged by `vrss qemu exec` and RSS set with
// `vrss rss set` (see RunPreSteered); B, QEMU's own eBPF RSS program handed to an
// unprivileged QEMU by vrssd, with the guest configuring RSS itself (see
// RunGuestRSS); L, a libvirt domain on a vrss TAP that libvirtd opens
// by name (see RunLibvirt); R, flow rules (a queue rule, an RSS
// context, a drop rule) on a guest's TAP (see RunFlows); and P, port
// security on a guest's TAP: its allowed traffic delivered, its spoofing
// dropped and counted per reason (see RunPortSecurity); and X, a vrssd
// AF_XDP port under QEMU's af-xdp netdev, started by uid 4242 with
// CAP_IPC_LOCK alone (see RunAFXDP; `make e2e` builds its QEMU first, in
// TestE2EPrepare, and a build done here instead is left out of the
// budget). It installs Debian packages, downloads a kernel and QEMU 10
// from bookworm-backports and boots QEMU under TCG, so it only runs when
// asked to. Optional settings: VRSS_E2E_SCENARIOS (any of A, B, L, R, P,
// X and XM, comma-separated; default A,B,L,R,P,X; XM is X with QEMU
// 10.2's map-path form, see RunAFXDPMapPath, opt-in as it builds a second
// QEMU), VRSS_E2E_SEED (the random keys), VRSS_E2E_QEMU (a QEMU binary
// for A, R and P), VRSS_E2E_QEMU_B (a QEMU >= 9.0 binary for B; default QEMU from
// bookworm-backports), VRSS_E2E_KERNEL (an exact linux-image package),
// VRSS_E2E_BACKPORTS=qemu[,kernel] (take those from bookworm-backports
// for A and R), VRSS_E2E_CACHE (see CacheDir).
func TestE2E(t *testing.T) {
	if os.Getenv(EnvE2E) != "1" {
		t.Skipf("real-guest end-to-end test (installs Debian packages, boots QEMU): run `make e2e` or set %s=1; "+
			"%s=1 alone does not run it, it is a separate target from `make test`", EnvE2E, privtest.EnvRequire)
	}
	for _, need := range []string{"root", "tap", "netns", "bpf"} {
		privtest.Require(t, need)
	}
	start := time.Now()
	var seed uint64
	if s := os.Getenv("VRSS_E2E_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 0, 64); err != nil {
			t.Fatalf("VRSS_E2E_SEED: %v", err)
		}
	}
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	scenarios := e2eScenarios()
	// A QEMU build that TestE2EPrepare did not do beforehand is not the
	// scenarios' time: it is reported and left out of the budget.
	var built time.Duration
	want := func(s string) bool { return wantScenario(scenarios, s) }
	backports := os.Getenv("VRSS_E2E_BACKPORTS")
	base := Options{Log: os.Stdout, Seed: seed, KernelPackage: os.Getenv("VRSS_E2E_KERNEL"), BackportsKernel: strings.Contains(backports, "kernel")}
	// A, R and P start bookworm's QEMU 7.2 (or VRSS_E2E_QEMU) through vrss
	// qemu exec; B needs QEMU >= 9.0; L runs the system's QEMU.
	vmm, qemuB := base, base
	vmm.QEMU, vmm.BackportsQEMU = os.Getenv("VRSS_E2E_QEMU"), strings.Contains(backports, "qemu")
	qemuB.QEMU = os.Getenv("VRSS_E2E_QEMU_B")
	rerun := fmt.Sprintf(" (rerun with VRSS_E2E_SEED=%d)", seed)
	// Each scenario's run returns its report, whether the report has
	// anything to show, and the error of a run that could not be carried
	// out; why is the failure of a report that is not OK.
	for _, sc := range []struct {
		name string
		run  func() (report, bool, error)
		why  string
	}{
		{"A", func() (report, bool, error) {
			rep, err := RunPreSteered(vmm)
			return rep, rep != nil && len(rep.Results) > 0, err
		}, "the guest's per-queue counters differ from the prediction" + rerun},
		{"B", func() (report, bool, error) {
			rep, err := RunGuestRSS(qemuB)
			return rep, rep != nil && (rep.Main != nil || len(rep.Config.Key) > 0), err
		}, "the guest's per-queue counters differ from the engine's prediction for the guest's configuration, or QEMU's program did not steer every frame" + rerun},
		{"L", func() (report, bool, error) {
			rep, err := RunLibvirt(base)
			return rep, rep != nil && (len(rep.Steps) > 0 || len(rep.Commands) > 0), err
		}, "scenario L: the guest's per-queue counters differ from the prediction, or vrssd did not attach the program again after QEMU detached it" + rerun},
		{"R", func() (report, bool, error) {
			rep, err := RunFlows(vmm)
			return rep, rep != nil && (len(rep.Steps) > 0 || len(rep.Classes) > 0), err
		}, "scenario R: the guest's per-queue counters differ from flow.Engine's prediction, or a dropped frame was not refused, counted and kept from the guest" + rerun},
		{"P", func() (report, bool, error) {
			rep, err := RunPortSecurity(vmm)
			return rep, rep != nil && (len(rep.Steps) > 0 || len(rep.Commands) > 0), err
		}, "scenario P: a step's frames were not all counted under its reason as the guest sent them, or an allowed frame was not delivered, or a dropped one arrived"},
		{"X", func() (report, bool, error) {
			rep, err := RunAFXDP(base)
			if rep != nil && rep.QEMU != nil && !rep.QEMU.Cached {
				built += rep.QEMU.Took
			}
			return rep, rep != nil && (rep.QEMU != nil || len(rep.Commands) > 0), err
		}, "scenario X: the guest's per-queue counters differ from the allowed frames sent to its queues, a denied frame was not counted by its reason, or QEMU did not run as the owner with CAP_IPC_LOCK alone"},
		{"XM", func() (report, bool, error) {
			rep, err := RunAFXDPMapPath(base)
			if rep != nil && rep.QEMU != nil && !rep.QEMU.Cached {
				built += rep.QEMU.Took
			}
			return rep, rep != nil && (rep.QEMU != nil || len(rep.Commands) > 0), err
		}, "scenario XM: the guest's per-queue counters differ from the allowed frames sent to its queues, a denied frame was not counted by its reason, or QEMU did not run as the owner with CAP_IPC_LOCK and CAP_NET_RAW alone"},
	} {
		if !want(sc.name) {
			continue
		}
		t.Run(sc.name, func(t *testing.T) {
			rep, shown, err := sc.run()
			if shown {
				fmt.Print("\n" + rep.String() + "\n")
			}
			if err != nil {
				t.Fatal(err)
			}
			if !rep.OK() {
				t.Fatal(sc.why)
			}
		})
	}
	total := time.Since(start) - built
	if built > 0 {
		fmt.Printf("e2e: the af-xdp QEMU was built during the run (%v, not counted: `make e2e` builds it first in TestE2EPrepare)\n", built.Round(time.Second))
	}
	fmt.Printf("e2e: scenarios %s in %v (budget %v)\n", scenarios, total.Round(time.Millisecond), budget)
	if total > budget {
		t.Errorf("the run took %v, over the %v budget", total, budget)
	}
}
