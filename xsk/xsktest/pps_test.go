//go:build linux

package xsktest

import (
	"testing"

	"github.com/vrss-dev/vrss/internal/privtest"
)

// A short MeasurePPS: both kinds of socket receive (nearly) every frame.
func TestMeasurePPS(t *testing.T) {
	privtest.Require(t, "root")
	privtest.Require(t, "bpf")
	privtest.Require(t, "netns")
	const frames, rounds = 20_000, 2
	r, err := MeasurePPS(PPSOptions{Frames: frames, Rounds: rounds})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v, afxdp/af_packet %.2fx", r, r.AFXDP/r.AFPacket)
	if r.AFXDP <= 0 || r.AFPacket <= 0 {
		t.Errorf("rates %+v", r)
	}
	// A busy machine may drop some; most must arrive for a rate to mean
	// anything.
	if r.LostAFXDP > frames*rounds/10 || r.LostAFPacket > frames*rounds/10 {
		t.Errorf("lost %d (AF_XDP) and %d (AF_PACKET) of %d", r.LostAFXDP, r.LostAFPacket, frames*rounds)
	}
}
