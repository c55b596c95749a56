package e2e

import (
	"os"
	"slices"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/vrss-dev/vrss/internal/netnstest"
	"github.com/vrss-dev/vrss/internal/privtest"
	"github.com/vrss-dev/vrss/tap"
)

// TestSteerTrace checks the harness's TUNSETSTEERINGEBPF tracer on a TAP
// of its own: an attach and a detach, with the fds and program fds
// passed, in order.
func TestSteerTrace(t *testing.T) {
	for _, need := range []string{"root", "tap", "netns", "bpf"} {
		privtest.Require(t, need)
	}
	tr, err := startSteerTrace()
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SocketFilter, License: "Dual BSD/GPL", Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	var fds []int
	before := monotonic()
	netnstest.Run(t, func() {
		d, err := tap.Create(tap.Options{Name: "vrsstrace0", Queues: 2})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		fds = []int{int(d.Queue(0).Fd()), int(d.Queue(1).Fd())}
		if err := d.SetSteering(prog.FD()); err != nil {
			t.Fatal(err)
		}
		if err := d.DetachSteering(); err != nil {
			t.Fatal(err)
		}
	})
	ev := tr.Events(100*time.Millisecond, os.Getpid())
	if len(ev) != 2 {
		t.Fatalf("traced %d calls, want 2: %+v", len(ev), ev)
	}
	if ev[0].Prog != int32(prog.FD()) || ev[1].Prog != -1 || ev[0].At < before || ev[1].At < ev[0].At {
		t.Fatalf("traced %+v, want an attach of fd %d then a detach after %v", ev, prog.FD(), before)
	}
	if !slices.Contains(fds, ev[0].FD) || !slices.Contains(fds, ev[1].FD) {
		t.Fatalf("traced calls through fds %d and %d, the TAP's queues are %v", ev[0].FD, ev[1].FD, fds)
	}
	gaps := steerGaps([]steerEvent{
		{At: 10, PID: 1, Prog: -1}, {At: 12, PID: 1, Prog: -1}, {At: 15, PID: 2, Prog: 7}, {At: 16, PID: 2, Prog: 7},
		{At: 20, PID: 1, Prog: -1},
	}, 1, 2)
	if len(gaps) != 2 || !gaps[0].Attached || gaps[0].Missing != 5 || gaps[1].Attached {
		t.Fatalf("steerGaps: %+v", gaps)
	}
}
