package portxdp

import (
	"testing"

	"github.com/vrss-dev/vrss/internal/privtest"
)

// TestMeasure runs the xdp_ns and afxdp_ns benchmarks briefly: each
// figure exists, and the program (the policy; the policy with the XSKMAP
// redirect) costs more than the floor, in the medians and in the median
// of the rounds' ratios.
func TestMeasure(t *testing.T) {
	privtest.Require(t, "bpf")
	x, err := MeasureXDPNs(5, 100_000)
	if err != nil {
		t.Fatal(err)
	}
	a, err := MeasureAFXDPNs(5, 100_000)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct {
		name, prog           string
		floor, ns, overFloor float64
	}{{"xdp_ns", "policy", x.Floor, x.Policy, x.PolicyOverFloor}, {"afxdp_ns", "redirect", a.Floor, a.Redirect, a.RedirectOverFloor}} {
		if r.floor <= 0 || r.ns <= r.floor || r.overFloor <= 1 {
			t.Errorf("%s: floor %v ns, %s %v ns, %s / floor %v", r.name, r.floor, r.prog, r.ns, r.prog, r.overFloor)
		}
		t.Logf("%s: floor %.0f ns, %s %.0f ns (%.2fx, the median of the rounds' ratios)", r.name, r.floor, r.prog, r.ns, r.overFloor)
	}
	// The redirect alone is measured, and costs less than the policy
	// with it.
	if a.RedirectOnly <= 0 || a.RedirectOnly >= a.Redirect {
		t.Errorf("afxdp_ns: redirect_only %v ns, redirect %v ns", a.RedirectOnly, a.Redirect)
	}
	t.Logf("afxdp_ns: redirect_only %.0f ns", a.RedirectOnly)
}
