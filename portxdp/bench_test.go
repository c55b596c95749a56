package portxdp

import (
	"testing"

	"github.com/vrss-dev/vrss/internal/privtest"
)

// TestMeasureXDPNs runs the xdp_ns benchmark briefly: both figures exist,
// and the policy costs more than the floor, in the medians and in the
// median of the rounds' ratios.
func TestMeasureXDPNs(t *testing.T) {
	privtest.Require(t, "bpf")
	r, err := MeasureXDPNs(5, 100_000)
	if err != nil {
		t.Fatal(err)
	}
	if r.Floor <= 0 || r.Policy <= r.Floor || r.PolicyOverFloor <= 1 {
		t.Fatalf("floor %v ns, policy %v ns, policy / floor %v", r.Floor, r.Policy, r.PolicyOverFloor)
	}
	t.Logf("xdp_ns: floor %.0f ns, policy %.0f ns (%.2fx, the median of the rounds' ratios)", r.Floor, r.Policy, r.PolicyOverFloor)
}

// TestMeasureAFXDPNs runs the afxdp_ns benchmark briefly: both figures
// exist, and the policy with the XSKMAP redirect costs more than the floor.
func TestMeasureAFXDPNs(t *testing.T) {
	privtest.Require(t, "bpf")
	r, err := MeasureAFXDPNs(5, 100_000)
	if err != nil {
		t.Fatal(err)
	}
	if r.Floor <= 0 || r.Redirect <= r.Floor || r.RedirectOverFloor <= 1 {
		t.Fatalf("floor %v ns, redirect %v ns, redirect / floor %v", r.Floor, r.Redirect, r.RedirectOverFloor)
	}
	t.Logf("afxdp_ns: floor %.0f ns, redirect %.0f ns (%.2fx, the median of the rounds' ratios)", r.Floor, r.Redirect, r.RedirectOverFloor)
}
