package bench

import (
	"encoding/json"
	"testing"
	"time"
)

// figures makes a result whose read floor is 40 ns on every kind, vrss
// costing excess ns above it, the bit-serial build factor times that, and
// TAP pairs at the given ratios.
func figures(vrssTCP, floor, excess, factor float64, pairs ...float64) Result {
	r := Result{
		BPF:       map[string]float64{KindTCPv4: vrssTCP, KindUDPv6: 40 + excess, KindIPv6Ext: 40 + 3*excess},
		ReadFloor: map[string]float64{KindTCPv4: 40, KindUDPv6: 40, KindIPv6Ext: 40},
		Floor:     floor,
		TAPPPS:    map[string]float64{"none": 1000, "vrss": 950},
		TAPPairs:  pairs,
	}
	r.BitSerial = map[string]float64{}
	for k, v := range r.BPF {
		r.BitSerial[k] = 40 + factor*(v-40)
	}
	r.evaluate()
	return r
}

func TestEvaluate(t *testing.T) {
	r := figures(60, 24, 20, 8, 0.9, 0.95, 1.01)
	if !r.TargetsMet.VRSSTCPv4OverFloor || !r.TargetsMet.BitSerialOverVRSSExcess || !r.TargetsMet.TAPVRSSOverNone || !r.TargetsMet.VRSSExcessGoal {
		t.Errorf("figures exactly at the targets: %+v, want all met", r.TargetsMet)
	}
	if r.Ratios.VRSSTCPv4OverFloor != 2.5 || r.Ratios.BitSerialOverVRSSExcess[KindUDPv6] != 8 || r.Ratios.BitSerialOverVRSSExcess[KindTCPv4] != 8 {
		t.Errorf("ratios %+v", r.Ratios)
	}
	if r.Ratios.TAPVRSSOverNone != 0.95 || r.Ratios.TAPPairsMin != 0.9 || r.Ratios.TAPPairsMax != 1.01 {
		t.Errorf("TAP pairs %v: median %v, spread %v-%v; want 0.95, 0.9-1.01", r.TAPPairs, r.Ratios.TAPVRSSOverNone, r.Ratios.TAPPairsMin, r.Ratios.TAPPairsMax)
	}
	if got := r.OverReadFloor["vrss"][KindUDPv6]; got != 20 {
		t.Errorf("vrss over the read floor on UDPv6 = %v, want 20", got)
	}
	if got := r.OverReadFloor["bitserial"][KindIPv6Ext]; got != 480 {
		t.Errorf("bit-serial over the read floor on IPv6-ext = %v, want 480", got)
	}
	if _, ok := r.OverReadFloor["qemu"]; ok || r.Ratios.QEMUOverVRSSExcess != nil {
		t.Error("QEMU figures without QEMU's program")
	}

	r = figures(61, 24, 20.5, 7.9, 0.949, 0.9, 1.2)
	if r.TargetsMet.VRSSTCPv4OverFloor || r.TargetsMet.BitSerialOverVRSSExcess || r.TargetsMet.TAPVRSSOverNone || r.TargetsMet.VRSSExcessGoal {
		t.Errorf("figures just past the targets: %+v, want all missed", r.TargetsMet)
	}

	// The excess target is on TCPv4 and UDPv6: IPv6-ext short of it, or
	// UDPv6's goal, does not decide it.
	r = figures(50, 24, 10, 10, 1)
	r.BitSerial[KindIPv6Ext] = 40 + 2*(r.BPF[KindIPv6Ext]-40)
	r.OverReadFloor = nil
	r.evaluate()
	if !r.TargetsMet.BitSerialOverVRSSExcess || r.Ratios.BitSerialOverVRSSExcess[KindIPv6Ext] != 2 {
		t.Errorf("IPv6-ext only 2x: %+v, %+v; want the target met", r.TargetsMet, r.Ratios)
	}
	r.BitSerial[KindUDPv6] = 40 + 7*(r.BPF[KindUDPv6]-40)
	r.OverReadFloor = nil
	r.evaluate()
	if r.TargetsMet.BitSerialOverVRSSExcess {
		t.Error("excess target met with UDPv6 only 7x")
	}

	// A missing figure never meets a target, and a cost at or below the
	// read floor makes no ratio.
	r = figures(100, 0, 10, 10)
	if r.TargetsMet.VRSSTCPv4OverFloor || r.TargetsMet.TAPVRSSOverNone {
		t.Errorf("zero floor and no TAP pairs: %+v, want missed", r.TargetsMet)
	}
	r.BPF[KindUDPv6] = 39
	r.OverReadFloor = nil
	r.evaluate()
	if r.Ratios.BitSerialOverVRSSExcess[KindUDPv6] != 0 || r.TargetsMet.BitSerialOverVRSSExcess {
		t.Errorf("vrss below the read floor: ratio %v, met %v; want 0, false", r.Ratios.BitSerialOverVRSSExcess[KindUDPv6], r.TargetsMet.BitSerialOverVRSSExcess)
	}

	// With QEMU's program, its excess and ratios too.
	r = figures(50, 24, 10, 10, 1)
	r.QEMU = map[string]float64{KindTCPv4: 240, KindUDPv6: 240, KindIPv6Ext: 440}
	r.OverReadFloor = nil
	r.evaluate()
	if r.OverReadFloor["qemu"][KindTCPv4] != 200 || r.Ratios.QEMUOverVRSSExcess[KindTCPv4] != 20 || r.Ratios.QEMUOverVRSS[KindTCPv4] != 4.8 {
		t.Errorf("QEMU: over %v, ratios %v %v", r.OverReadFloor["qemu"], r.Ratios.QEMUOverVRSSExcess, r.Ratios.QEMUOverVRSS)
	}
}

func TestRound(t *testing.T) {
	r := figures(50.04, 24, 10.26, 10, 0.95449, 1.0001)
	r.round()
	if got := r.OverReadFloor["vrss"][KindUDPv6]; got != 10.3 {
		t.Errorf("over read floor %v, want 10.3", got)
	}
	if r.TAPPairs[0] != 0.954 || r.Ratios.TAPPairsMax != 1 {
		t.Errorf("pairs %v, max %v", r.TAPPairs, r.Ratios.TAPPairsMax)
	}
}

func TestJSONKeys(t *testing.T) {
	b, err := json.Marshal(figures(60, 24, 20, 8, 1))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"bpf_ns", "floor_ns", "read_floor_ns", "bitserial_ns", "over_read_floor_ns", "engine_ns", "tap_pps", "tap_pair_ratios", "tap_lost", "ratios", "targets_met", "params"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, b)
		}
	}
}

// The cost above the read floor is paired within each round: a machine
// that slows down between rounds slows both alike.
func TestMedianOver(t *testing.T) {
	prog := []float64{30, 60, 31, 29, 62}
	floor := []float64{10, 40, 11, 19, 41}
	if got := medianOver(prog, floor); got != 20 || median(prog)-median(floor) != 12 {
		t.Errorf("medianOver = %v, want 20 (the difference of the medians is %v)", got, median(prog)-median(floor))
	}
	r := Result{ReadFloor: map[string]float64{KindTCPv4: 10}, BPF: map[string]float64{KindTCPv4: 40},
		OverReadFloor: map[string]map[string]float64{"vrss": {KindTCPv4: 25}, "bitserial": {KindTCPv4: 250}}}
	r.evaluate()
	if r.OverReadFloor["vrss"][KindTCPv4] != 25 || r.Ratios.BitSerialOverVRSSExcess[KindTCPv4] != 10 {
		t.Errorf("measured costs above the read floor were replaced: %v, ratio %v", r.OverReadFloor, r.Ratios.BitSerialOverVRSSExcess)
	}
}

func TestMedian(t *testing.T) {
	for _, tt := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestDefaults(t *testing.T) {
	o := Options{}.withDefaults()
	if o.Frames != 200_000 || o.Repeat != 1_000_000 || o.EngineIters != 1_000_000 || o.Rounds != 5 || o.TAPPairs != 9 || o.Duration != 10*time.Second {
		t.Errorf("defaults %+v", o)
	}
	if o := (Options{Frames: 7, Rounds: 1}).withDefaults(); o.Frames != 7 || o.Rounds != 1 {
		t.Errorf("set fields were overridden: %+v", o)
	}
}
