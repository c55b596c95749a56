package agent

import (
	"time"

	"github.com/vrss-dev/vrss/agent/internal/kernel"
)

// monitorInterval is how often vrssd checks that the programs of the TAPs
// it steers are still attached.
const monitorInterval = 250 * time.Millisecond

// A VMM may detach or replace the steering program behind vrssd's back:
// QEMU 7.2 detaches whatever is attached when its device is reset and when
// its guest changes the number of queue pairs. The kernel has no way to
// ask a TAP which program steers it, so vrssd watches for two signs and
// re-attaches its program (through its disabled control queue, whoever
// holds the other queues) whenever the operator wants it attached:
//
//   - tun announces every queue attached, detached, enabled or disabled
//     with a link update (RTM_NEWLINK with new queue counts). QEMU's
//     detach comes with such changes, so vrssd re-attaches at once, and
//     again a moment later in case the detach followed the event.
//   - The program counts every frame it steers (a queue counter, or
//     "unconfigured"), and tun runs it for every frame it transmits while
//     more than one queue is enabled (with one, the stack never asks tun
//     for a queue). So when the TAP's tx_packets grow and the program's
//     count does not, with more than one queue enabled, at two looks with
//     no frame counted in between (tx_packets counts a frame when the VMM
//     reads it, the program when it is queued, so a backlog can fool one
//     look), no program of vrssd's is attached. This catches a detach without queue changes
//     (a device reset) within two monitor intervals of steady traffic.
//
// An explicit detach (vrss tap detach, or qemu_ebpf handing QEMU its own
// program) clears the wish, and vrssd never fights its operator.

// queuesLocked records t's queue counts for d and, when they changed,
// re-attaches d's program. s.mu is held.
func (s *Server) queuesLocked(d *device, t *kernel.Link) {
	before := d.attachedQ + d.disabledQ
	if !d.noteQueues(t) {
		return
	}
	if d.transient && !d.elsewhere() && d.ctl != nil {
		// The VMM is gone: vrssd's control queue must not keep a TAP
		// that lives as long as its queues.
		d.ctl.Close()
		d.ctl = nil
		return
	}
	if n := d.attachedQ + d.disabledQ; n > d.queues && n != before {
		s.log.Warn("more queues are open on the TAP than it has: more than one process opened it, and steering picks queues some do not read", "tap", d.name, "open", n, "enabled", d.attachedQ, "queues", d.queues)
	}
	if d.steering && d.prog != nil && d.attachedQ > 0 {
		s.attachLocked(d, "queues changed")
		// QEMU may detach just after the change that announced it.
		key, index := d.key(), d.index
		time.AfterFunc(100*time.Millisecond, func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if d, ok := s.taps[key]; ok && d.index == index && d.steering && d.prog != nil {
				s.attachLocked(d, "")
			}
		})
	}
}

// attachLocked attaches d's program through its control queue. why, when
// not empty, is logged; a failure is logged. s.mu is held.
func (s *Server) attachLocked(d *device, why string) bool {
	if err := s.controlLocked(d); err != nil {
		s.log.Warn("re-attaching the steering program", "tap", d.name, "err", err)
		return false
	}
	if err := d.ctl.SetSteering(d.prog); err != nil {
		s.log.Warn("re-attaching the steering program", "tap", d.name, "err", err)
		return false
	}
	if why != "" {
		s.log.Debug("attached the steering program again", "tap", d.name, "why", why)
	}
	return true
}

// monitor re-attaches programs found detached (see above); it runs every
// monitorInterval until shutdown.
func (s *Server) monitor() {
	s.mu.Lock()
	s.monitorNetnsLocked()
	steered := false
	for _, d := range s.taps {
		steered = steered || (d.steering && d.netns == nil)
	}
	s.mu.Unlock()
	if !steered {
		return // no link dump for nothing
	}
	// One dump of every link, outside the lock.
	links, err := s.opts.TAPs.Links()
	if err != nil {
		return
	}
	byIndex := make(map[int]*kernel.Link, len(links))
	for _, l := range links {
		if l.Type == tuntap {
			byIndex[l.Index] = l
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range s.taps {
		if tt := byIndex[d.index]; tt != nil && d.netns == nil {
			s.checkSteeringLocked(d, tt)
		}
	}
}

// checkSteeringLocked compares the TAP's transmitted frames with the
// frames its program counted since the last look. s.mu is held.
func (s *Server) checkSteeringLocked(d *device, t *kernel.Link) {
	if !d.steering || d.prog == nil || !t.HasStats {
		d.seen = false
		return
	}
	st, err := d.prog.Stats()
	if err != nil {
		d.seen = false
		return
	}
	var prog uint64
	for _, n := range st.Queues {
		prog += n
	}
	prog += st.Unconfigured
	tx := t.TxPackets
	multi := t.Queues > 1
	// tun counts tx_packets when the VMM reads a frame, the program when
	// the frame is queued: a backlog read after one look makes tx grow
	// while the program's count stands, once. Only two looks with frames
	// sent and none counted, and no frame counted in between, say the
	// program is gone.
	// A look where the program counted frames clears the suspicion; a
	// quiet look keeps it.
	confirmed := false
	switch {
	case !d.seen || !multi || prog != d.progSeen:
		d.suspect = false
	case tx > d.txSeen:
		confirmed, d.suspect = d.suspect, !d.suspect
	}
	if confirmed {
		if s.attachLocked(d, "") {
			d.reattached++
			d.lost = false
			s.log.Warn("the steering program was detached behind vrssd's back (the TAP sent frames it never saw): attached it again", "tap", d.name, "frames_unsteered", tx-d.txSeen, "times", d.reattached)
		} else {
			d.lost = true
		}
	}
	d.progSeen, d.txSeen, d.seen = prog, tx, multi
}
