package bench

import (
	"encoding/json"
	"testing"
	"time"
)

func figures(vrssTCP, floor, bitFactor, ppsNone, ppsVRSS float64) Result {
	r := Result{
		BPF:    map[string]float64{KindTCPv4: vrssTCP, KindUDPv6: 150, KindIPv6Ext: 400},
		Floor:  floor,
		TAPPPS: map[string]float64{"none": ppsNone, "vrss": ppsVRSS},
	}
	r.BitSerial, r.ReadFloor = map[string]float64{}, map[string]float64{}
	for k, v := range r.BPF {
		r.BitSerial[k] = v * bitFactor
		r.ReadFloor[k] = v / 2
	}
	r.evaluate()
	return r
}

func TestEvaluate(t *testing.T) {
	r := figures(100, 40, 5, 1000, 950)
	if !r.TargetsMet.VRSSTCPv4OverFloor || !r.TargetsMet.BitSerialOverVRSS || !r.TargetsMet.TAPVRSSOverNone {
		t.Errorf("figures exactly at the targets: %+v, want all met", r.TargetsMet)
	}
	if r.Ratios.VRSSTCPv4OverFloor != 2.5 || r.Ratios.TAPVRSSOverNone != 0.95 || r.Ratios.BitSerialOverVRSS[KindUDPv6] != 5 || r.Ratios.BitSerialOverReadFloor[KindIPv6Ext] != 10 {
		t.Errorf("ratios %+v", r.Ratios)
	}

	r = figures(101, 40, 4.9, 1000, 949)
	if r.TargetsMet.VRSSTCPv4OverFloor || r.TargetsMet.BitSerialOverVRSS || r.TargetsMet.TAPVRSSOverNone {
		t.Errorf("figures just past the targets: %+v, want all missed", r.TargetsMet)
	}

	// One frame kind short of the bit-serial target misses it.
	r = figures(100, 40, 10, 1000, 1000)
	r.BitSerial[KindIPv6Ext] = 4 * r.BPF[KindIPv6Ext]
	r.evaluate()
	if r.TargetsMet.BitSerialOverVRSS {
		t.Error("bit-serial target met with ipv6_ext only 4x slower")
	}

	// A missing figure never meets a target.
	r = figures(100, 0, 10, 0, 1000)
	if r.TargetsMet.VRSSTCPv4OverFloor || r.TargetsMet.TAPVRSSOverNone {
		t.Errorf("zero floor and rate: %+v, want missed", r.TargetsMet)
	}
}

func TestJSONKeys(t *testing.T) {
	b, err := json.Marshal(figures(100, 40, 5, 1000, 950))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"bpf_ns", "floor_ns", "read_floor_ns", "bitserial_ns", "engine_ns", "tap_pps", "tap_lost", "ratios", "targets_met", "params"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, b)
		}
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
	if o.Frames != 200_000 || o.Repeat != 1_000_000 || o.EngineIters != 1_000_000 || o.Rounds != 5 || o.Duration != 10*time.Second {
		t.Errorf("defaults %+v", o)
	}
	if o := (Options{Frames: 7, Rounds: 1}).withDefaults(); o.Frames != 7 || o.Rounds != 1 {
		t.Errorf("set fields were overridden: %+v", o)
	}
}
