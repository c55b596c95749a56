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
	for _, afp := range []bool{false, true} {
		r, err := MeasurePPS(PPSOptions{Frames: frames, Rounds: rounds, AFPacketSender: afp})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%+v, afxdp/af_packet %.2fx", r, r.AFXDP/r.AFPacket)
		if r.AFXDP <= 0 || r.AFPacket <= 0 || r.Sender != map[bool]string{false: "live", true: "af_packet"}[afp] {
			t.Errorf("%+v", r)
		}
		// The live sender outruns the receivers, which lose some; most
		// must arrive for a rate to mean anything.
		if r.LostAFXDP > frames*rounds/2 || r.LostAFPacket > frames*rounds/2 {
			t.Errorf("lost %d (AF_XDP) and %d (AF_PACKET) of %d", r.LostAFXDP, r.LostAFPacket, frames*rounds)
		}
	}
}
