package e2e

import (
	"strings"
	"testing"
)

func TestUnitAFXDPReportOK(t *testing.T) {
	good := func() *AFXDPReport {
		r := &AFXDPReport{
			guestRun: guestRun{UID: 4242, Queues: 2},
			Sent:     []int{200, 200, 200, 200},
			Denied:   map[string]int{"dst_mac": 40, "dst_ipv4": 40},
			Expected: []uint64{200, 200}, Observed: []uint64{200, 200},
			Counted:       map[string]uint64{"dst_mac": 40, "dst_ipv4": 40, "default_allow": 400},
			XSKRedirected: 400, OtherQueue: 400,
			QEMUUid: 4242, QEMUCapEff: 1 << 14, QEMUCapAmb: 1 << 14,
		}
		return r
	}
	if r := good(); !r.OK() || !strings.HasSuffix(r.String(), "PASS") {
		t.Fatalf("a good run fails:\n%s", r)
	}
	for name, spoil := range map[string]func(r *AFXDPReport){
		"a queue short":            func(r *AFXDPReport) { r.Observed = []uint64{199, 200} },
		"queues swapped":           func(r *AFXDPReport) { r.Expected = []uint64{150, 250}; r.Observed = []uint64{250, 150} },
		"a denied frame uncounted": func(r *AFXDPReport) { r.Counted["dst_mac"] = 39 },
		"another reason moved":     func(r *AFXDPReport) { r.Counted["malformed"] = 1 },
		"allowed miscounted":       func(r *AFXDPReport) { r.Counted["default_allow"] = 401 },
		"other queues short":       func(r *AFXDPReport) { r.OtherQueue = 399 },
		"QEMU as root":             func(r *AFXDPReport) { r.QEMUUid = 0 },
		"QEMU with more caps":      func(r *AFXDPReport) { r.QEMUCapEff |= 1 << 12 },
		"no guest counters":        func(r *AFXDPReport) { r.Observed = nil },
	} {
		r := good()
		spoil(r)
		if r.OK() {
			t.Errorf("%s: OK", name)
		}
	}
}
