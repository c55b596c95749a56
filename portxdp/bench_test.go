package portxdp

import (
	"testing"

	"github.com/vrss-dev/vrss/internal/privtest"
)

// TestMeasureXDPNs runs the xdp_ns benchmark briefly: both figures exist
// and the policy costs more than the floor.
func TestMeasureXDPNs(t *testing.T) {
	privtest.Require(t, "bpf")
	r, err := MeasureXDPNs(5, 100_000)
	if err != nil {
		t.Fatal(err)
	}
	if r.Floor <= 0 || r.Policy <= r.Floor {
		t.Fatalf("floor %v ns, policy %v ns", r.Floor, r.Policy)
	}
	t.Logf("xdp_ns: floor %.0f ns, policy %.0f ns (%.2fx)", r.Floor, r.Policy, r.Policy/r.Floor)
}
