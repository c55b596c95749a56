package agent

import (
	"errors"
	"fmt"
	"os"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/internal/fd"
	"github.com/vrss-dev/vrss/xsk"
)

// Pending sockets (Linux 7.2). vrssd hands its owner unbound AF_XDP
// sockets, already in the XSKMAP, because QEMU's sock-fds wants them so.
// Linux 7.2's xsk_map_update_elem (net/xdp/xskmap.c) refuses a socket
// without an RX ring with ENOBUFS; 6.12 and 6.18 take it. On such a
// kernel vrssd:
//
//   - at create (and when it installs a port anew) leaves the queues
//     empty: no one holds a socket to set up, and the program passes an
//     empty queue's frames to the stack;
//   - at open clears each queue (the previous holder stops receiving, as
//     on 6.x), hands the socket out, and keeps a descriptor of its own:
//     the socket is pending (afxdpPort.pending, and the record's Pending
//     so that a restarted vrssd can say which queues it lost);
//   - inserts a pending socket once its owner has bound it, from the
//     monitor (every monitorInterval) and on show, list and open.
//
// Inserting only bound sockets keeps what 6.x loses (frames redirected to
// a socket not yet bound are dropped by the kernel) from happening here:
// until the insert, the queue's allowed frames reach the host's stack, so
// the host sees them though the guest misses them.

// afxdpInsert puts the socket fd at queue in the port's XSKMAP.
func (s *Server) afxdpInsert(a *afxdpPort, queue, fd int) error {
	if s.opts.XSKInsert != nil {
		return s.opts.XSKInsert(a.prog, queue, fd)
	}
	return a.prog.SetSocket(queue, fd)
}

// refusedUnbound says err is the kernel's refusal of a socket without an
// RX ring in an XSKMAP (Linux 7.2: ENOBUFS).
func refusedUnbound(err error) bool { return errors.Is(err, unix.ENOBUFS) }

// xskBound says whether the AF_XDP socket fd is past its setup, that is
// bound (or bound once, its device since gone). Asking for an RX ring of
// 0 entries changes nothing: the kernel answers EBUSY on a socket past
// setup and EINVAL (the size) on one still being set up.
func xskBound(fd int) (bool, error) {
	err := unix.SetsockoptInt(fd, unix.SOL_XDP, unix.XDP_RX_RING, 0)
	switch {
	case errors.Is(err, unix.EBUSY):
		return true, nil
	case errors.Is(err, unix.EINVAL):
		return false, nil
	}
	return false, fmt.Errorf("probing whether an AF_XDP socket is bound (XDP_RX_RING 0): %v", err)
}

// afxdpSocketsLocked makes a new unbound AF_XDP socket for each of the
// port's queues and puts it in the XSKMAP, replacing what was there; out,
// if not nil, gets a descriptor of each, in queue order. On 6.x the map
// holds the sockets and vrssd keeps none; a socket the kernel refuses
// unbound is pending (above) if it goes out, and its queue is left empty.
func (s *Server) afxdpSocketsLocked(a *afxdpPort, out *[]*fd.FD) error {
	if out != nil {
		// These sockets are replaced: their holder stops receiving.
		a.closePending()
		// Recorded however the open ends: a restart must not report
		// queues orphaned that this open gave up.
		defer s.afxdpSavePendingLocked(a)
	}
	var empty []int
	for i := range a.rec.Queues {
		q := a.rec.QueueStart + i
		f, err := a.newSocket()
		if err != nil {
			return fmt.Errorf("AF_XDP port %s: %w", a.rec.Name, err)
		}
		err = s.afxdpInsert(a, q, int(f.Fd()))
		keep := false
		if refusedUnbound(err) {
			// The previous socket must not go on receiving.
			err = a.prog.ClearSocket(q)
			keep = err == nil && out != nil
			empty = append(empty, q)
		}
		if err == nil && out != nil {
			var dup *fd.FD
			if dup, err = fd.DupFile(f); err == nil {
				*out = append(*out, dup)
			}
		}
		if err == nil && keep {
			if a.pending == nil {
				a.pending = map[int]*os.File{}
			}
			a.pending[q] = f
		} else {
			f.Close()
		}
		if err != nil {
			return fmt.Errorf("AF_XDP port %s: socket of queue %d: %w", a.rec.Name, q, err)
		}
	}
	if len(empty) > 0 {
		what := "they stay empty until the port is opened"
		if out != nil {
			what = "vrssd inserts each socket once its owner has bound it"
		}
		s.log.Info("AF_XDP port: the kernel refuses unbound AF_XDP sockets in an XSKMAP (Linux 7.2: no RX ring yet, ENOBUFS); until inserted, a queue's frames go to the host's stack; "+what, "port", a.rec.Name, "queues", empty)
	}
	return nil
}

// afxdpInsertPendingLocked inserts the port's pending sockets whose owner
// has bound them; the others stay pending.
func (s *Server) afxdpInsertPendingLocked(a *afxdpPort) {
	if len(a.pending) == 0 || a.prog == nil {
		return
	}
	var done []int
	for q, f := range a.pending {
		bound, err := xskBound(int(f.Fd()))
		if err == nil && !bound {
			continue
		}
		// A probe that fails says nothing: try the insert anyway.
		if err = s.afxdpInsert(a, q, int(f.Fd())); err != nil {
			if !refusedUnbound(err) && a.pendingErr[q] != err.Error() {
				s.log.Warn("AF_XDP port: inserting a pending socket failed; vrssd tries again", "port", a.rec.Name, "queue", q, "err", err)
				if a.pendingErr == nil {
					a.pendingErr = map[int]string{}
				}
				a.pendingErr[q] = err.Error()
			}
			continue
		}
		f.Close()
		delete(a.pending, q)
		delete(a.pendingErr, q)
		done = append(done, q)
	}
	if len(done) > 0 {
		slices.Sort(done)
		s.log.Info("AF_XDP port: pending sockets bound by their owner are in the XSKMAP now", "port", a.rec.Name, "queues", done, "still_pending", a.pendingQueues())
		s.afxdpSavePendingLocked(a)
	}
}

// afxdpSavePendingLocked records the pending queues, so that a restarted
// vrssd knows which queues it can no longer serve. A failure is logged:
// the sockets are in hand, only a restart's report would be wrong.
func (s *Server) afxdpSavePendingLocked(a *afxdpPort) {
	p := a.pendingQueues()
	if slices.Equal(p, a.rec.Pending) {
		return
	}
	a.rec.Pending = p
	if err := s.writeAFXDP(a.rec.key(), &a.rec); err != nil {
		s.log.Warn("AF_XDP port: recording its pending queues failed", "port", a.rec.Name, "pending", p, "err", err)
	}
}

// afxdpRestorePending reports, at start, the queues that were pending
// when vrssd stopped: their sockets died with its descriptors (the map
// never held them), so no one receives those queues' frames, which go to
// the stack, until the owner opens the port again.
func (s *Server) afxdpRestorePending(a *afxdpPort) {
	if len(a.rec.Pending) > 0 {
		s.log.Warn("AF_XDP port: queues were pending when vrssd stopped: it no longer holds their sockets and cannot insert them; their frames go to the host's stack until the owner opens the port again", "port", a.rec.Name, "orphaned", a.rec.Pending)
	}
}

// pendingQueues lists the pending queues in order; nil if none.
func (a *afxdpPort) pendingQueues() []int {
	if len(a.pending) == 0 {
		return nil
	}
	q := make([]int, 0, len(a.pending))
	for k := range a.pending {
		q = append(q, k)
	}
	slices.Sort(q)
	return q
}

// orphaned lists the recorded pending queues vrssd holds no socket of
// (those of a previous vrssd).
func (a *afxdpPort) orphaned() []int {
	var o []int
	for _, q := range a.rec.Pending {
		if a.pending[q] == nil {
			o = append(o, q)
		}
	}
	return o
}

// closePending closes vrssd's descriptors of the pending sockets.
func (a *afxdpPort) closePending() {
	for _, f := range a.pending {
		f.Close()
	}
	a.pending, a.pendingErr = nil, nil
}

// validatePending checks a record's pending queues: in the port's range,
// ascending, once each.
func (r *afxdpRecord) validatePending() error {
	for i, q := range r.Pending {
		if q < r.QueueStart || q >= r.QueueStart+r.Queues || (i > 0 && q <= r.Pending[i-1]) {
			return fmt.Errorf("pending queues %v: want ascending queues of %d-%d", r.Pending, r.QueueStart, r.QueueStart+r.Queues-1)
		}
	}
	return nil
}

// newSocket makes an unbound AF_XDP socket in the port's network
// namespace: the kernel looks the ifindex its owner binds it to up in the
// namespace the socket was made in, not the owner's.
func (a *afxdpPort) newSocket() (*os.File, error) {
	if a.netns == nil {
		return xsk.NewUnbound()
	}
	var f *os.File
	err := a.netns.Do(func() (err error) {
		f, err = xsk.NewUnbound()
		return err
	})
	return f, err
}
