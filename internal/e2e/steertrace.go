package e2e

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

// tunSetSteeringEBPF is TUNSETSTEERINGEBPF, _IOR('T', 224, int): the ioctl
// that attaches (a program fd) or detaches (-1) a TAP's steering program,
// through any of its queue fds.
const tunSetSteeringEBPF = 0x800454e0

// steerEvent is one TUNSETSTEERINGEBPF call, as the kernel saw it enter.
type steerEvent struct {
	At   time.Duration // CLOCK_MONOTONIC (bpf_ktime_get_ns)
	PID  int           // the calling process (thread group)
	FD   int           // the queue fd it went through
	Prog int32         // the program fd it passed: -1 detaches
}

// steerTracer records every TUNSETSTEERINGEBPF call on the machine with a
// raw tracepoint on sys_enter, so that the harness sees when a VMM
// detaches the steering program and when vrssd attaches it again, with
// the kernel's clock: the ground truth for "how long was steering
// missing", which neither QEMU nor vrssd reports. The program reads the
// ioctl's arguments from the syscall's registers and the int its third
// argument points to, and hands them over a ring buffer. Other processes
// on the machine (other tests) may call the ioctl too: callers are told
// apart by process id.
type steerTracer struct {
	prog   *ebpf.Program
	events *ebpf.Map
	link   link.Link
	rd     *ringbuf.Reader
	done   chan struct{}

	mu  sync.Mutex
	got []steerEvent
}

// x86-64 struct pt_regs offsets of the syscall argument registers, and the
// syscall number of ioctl. The raw sys_enter tracepoint's arguments are
// the task's registers and the syscall number.
const (
	ptRegsDI     = 112
	ptRegsSI     = 104
	ptRegsDX     = 96
	sysIoctlAMD6 = 16
)

func steerTraceProgram(events *ebpf.Map) asm.Instructions {
	// Stack: the event at fp-24 (ts 8, pid_tgid 8, fd 4, prog 4 = 24
	// bytes), scratch at fp-32.
	const ev, scratch = -24, -32
	cmd := uint32(tunSetSteeringEBPF) // compared as 32 bits: the ioctl's cmd is an int
	readKernel := func(off int16, dst int16) asm.Instructions {
		return asm.Instructions{
			asm.Mov.Reg(asm.R1, asm.RFP),
			asm.Add.Imm(asm.R1, int32(dst)),
			asm.Mov.Imm(asm.R2, 8),
			asm.Mov.Reg(asm.R3, asm.R7),
			asm.Add.Imm(asm.R3, int32(off)),
			asm.FnProbeReadKernel.Call(),
			asm.JNE.Imm(asm.R0, 0, "exit"),
		}
	}
	var ins asm.Instructions
	ins = append(ins,
		asm.Mov.Reg(asm.R6, asm.R1),
		// args[1]: the syscall number.
		asm.LoadMem(asm.R2, asm.R6, 8, asm.DWord),
		asm.JNE.Imm(asm.R2, sysIoctlAMD6, "exit"),
		// args[0]: the registers.
		asm.LoadMem(asm.R7, asm.R6, 0, asm.DWord),
	)
	// cmd (rsi) into scratch.
	ins = append(ins, readKernel(ptRegsSI, scratch)...)
	ins = append(ins,
		asm.LoadMem(asm.R2, asm.RFP, scratch, asm.DWord),
		asm.JNE.Imm32(asm.R2, int32(cmd), "exit"),
	)
	// fd (rdi) into scratch, then its low 32 bits into the event.
	ins = append(ins, readKernel(ptRegsDI, scratch)...)
	ins = append(ins,
		asm.LoadMem(asm.R2, asm.RFP, scratch, asm.DWord),
		asm.StoreMem(asm.RFP, ev+16, asm.R2, asm.Word),
	)
	// arg (rdx): the address of the program fd.
	ins = append(ins, readKernel(ptRegsDX, scratch)...)
	ins = append(ins,
		asm.Mov.Reg(asm.R1, asm.RFP),
		asm.Add.Imm(asm.R1, ev+20),
		asm.Mov.Imm(asm.R2, 4),
		asm.LoadMem(asm.R3, asm.RFP, scratch, asm.DWord),
		asm.FnProbeReadUser.Call(),
		asm.JNE.Imm(asm.R0, 0, "exit"),
		asm.FnKtimeGetNs.Call(),
		asm.StoreMem(asm.RFP, ev, asm.R0, asm.DWord),
		asm.FnGetCurrentPidTgid.Call(),
		asm.StoreMem(asm.RFP, ev+8, asm.R0, asm.DWord),
		asm.LoadMapPtr(asm.R1, events.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, ev),
		asm.Mov.Imm(asm.R3, 24),
		asm.Mov.Imm(asm.R4, 0),
		asm.FnRingbufOutput.Call(),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("exit"),
		asm.Return(),
	)
	return ins
}

// startSteerTrace loads and attaches the tracer and starts collecting.
func startSteerTrace() (*steerTracer, error) {
	events, err := ebpf.NewMap(&ebpf.MapSpec{Name: "vrss_e2e_steer", Type: ebpf.RingBuf, MaxEntries: 1 << 16})
	if err != nil {
		return nil, fmt.Errorf("e2e: steering tracer ring buffer: %w", err)
	}
	t := &steerTracer{events: events, done: make(chan struct{})}
	t.prog, err = ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "vrss_e2e_steer", Type: ebpf.RawTracepoint, License: "Dual BSD/GPL",
		Instructions: steerTraceProgram(events),
	})
	if err == nil {
		t.link, err = link.AttachRawTracepoint(link.RawTracepointOptions{Name: "sys_enter", Program: t.prog})
	}
	if err == nil {
		t.rd, err = ringbuf.NewReader(events)
	}
	if err != nil {
		t.Close()
		return nil, fmt.Errorf("e2e: steering tracer (raw tracepoint sys_enter): %w", err)
	}
	go t.read()
	return t, nil
}

func (t *steerTracer) read() {
	defer close(t.done)
	for {
		rec, err := t.rd.Read()
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			continue
		}
		s := rec.RawSample
		if len(s) < 24 {
			continue
		}
		e := steerEvent{
			At:   time.Duration(binary.NativeEndian.Uint64(s[0:])),
			PID:  int(binary.NativeEndian.Uint64(s[8:]) >> 32),
			FD:   int(int32(binary.NativeEndian.Uint32(s[16:]))),
			Prog: int32(binary.NativeEndian.Uint32(s[20:])),
		}
		t.mu.Lock()
		t.got = append(t.got, e)
		t.mu.Unlock()
	}
}

// Events returns the calls recorded so far by the given processes (all
// when pids is empty), in time order. The ring buffer is read
// asynchronously: wait a moment (settle) after a call for it to show.
func (t *steerTracer) Events(settle time.Duration, pids ...int) []steerEvent {
	time.Sleep(settle)
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []steerEvent
	for _, e := range t.got {
		if len(pids) == 0 || slices.Contains(pids, e.PID) {
			out = append(out, e)
		}
	}
	slices.SortStableFunc(out, func(a, b steerEvent) int { return int(a.At - b.At) })
	return out
}

// Close detaches the tracer and stops collecting.
func (t *steerTracer) Close() {
	if t.link != nil {
		t.link.Close()
	}
	if t.rd != nil {
		t.rd.Close()
		<-t.done
	}
	if t.prog != nil {
		t.prog.Close()
	}
	t.events.Close()
}

// monotonic is CLOCK_MONOTONIC now, the tracer's clock.
func monotonic() time.Duration {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return time.Duration(ts.Nano())
}

// steerGap is one detach by the VMM and what followed it: vrssd's next
// attach, if any.
type steerGap struct {
	Detach   time.Duration // when the VMM detached (monotonic)
	Attached bool          // vrssd attached a program afterwards
	Missing  time.Duration // from the detach to vrssd's attach
	Why      string        // what the detach came with, if known
}

// steerGaps pairs every detach (-1) by vmm with vrssd's first attach after
// it. Several detaches before one attach count once, from the first.
func steerGaps(events []steerEvent, vmm, vrssd int) []steerGap {
	var gaps []steerGap
	open := -1
	for _, e := range events {
		switch {
		case e.PID == vmm && e.Prog < 0:
			if open < 0 {
				gaps = append(gaps, steerGap{Detach: e.At})
				open = len(gaps) - 1
			}
		case e.PID == vmm && e.Prog >= 0:
			// The VMM attached a program of its own: not vrss's.
			if open < 0 {
				gaps = append(gaps, steerGap{Detach: e.At, Why: "the VMM attached its own program"})
				open = len(gaps) - 1
			}
		case e.PID == vrssd && e.Prog >= 0 && open >= 0:
			gaps[open].Attached = true
			gaps[open].Missing = e.At - gaps[open].Detach
			open = -1
		}
	}
	return gaps
}

// describeGaps is a one-line account of gaps, times relative to base.
func describeGaps(gaps []steerGap, base time.Duration) string {
	if len(gaps) == 0 {
		return "the VMM never detached the program"
	}
	var s []string
	for _, g := range gaps {
		at := fmt.Sprintf("detached at +%v", (g.Detach - base).Round(time.Millisecond))
		if g.Attached {
			s = append(s, fmt.Sprintf("%s, re-attached by vrssd %v later", at, fmtMissing(g.Missing)))
		} else {
			s = append(s, at+", never re-attached")
		}
	}
	return strings.Join(s, "; ")
}

// fmtMissing prints a duration with a precision that suits it.
func fmtMissing(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(10 * time.Microsecond).String()
	}
	return d.Round(time.Millisecond).String()
}

// maxMissing is the longest gap, and whether every gap was closed.
func maxMissing(gaps []steerGap) (time.Duration, bool) {
	var m time.Duration
	for _, g := range gaps {
		if !g.Attached {
			return 0, false
		}
		m = max(m, g.Missing)
	}
	return m, true
}
