package xsk

import (
	"errors"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Receive hands fn each frame on the receive ring, in order, then gives
// their buffers back to the kernel through the fill ring; it returns how
// many frames fn saw. frame is valid only until fn returns. If the ring
// is empty, Receive waits up to timeout for frames (a negative timeout
// waits as long as it takes, zero does not wait) and returns 0 and no
// error if none came.
//
// A descriptor that does not name bytes inside one frame of the UMEM that
// this socket lent to the kernel is refused, not read, and counted
// (Stats.Refused).
func (s *Socket) Receive(timeout time.Duration, fn func(frame []byte)) (int, error) {
	if s.fd < 0 {
		return 0, &Error{Step: "receive", Err: unix.EBADF, Hint: "the socket is closed"}
	}
	n := s.rxReady()
	if n == 0 {
		if err := s.wait(timeout); err != nil {
			return 0, err
		}
		if n = s.rxReady(); n == 0 {
			return 0, nil
		}
	}
	seen := 0
	fs := uint64(s.opts.FrameSize)
	for i := range n {
		d := *s.rx.desc(s.rx.cached + i) // read once: the ring is shared
		frame, start, end, ok := checkDesc(d, uint64(len(s.umem)), fs)
		if !ok || !s.lent[frame] {
			s.invalid++
			continue
		}
		s.lent[frame] = false
		fn(s.umem[start:end:end])
		s.free = append(s.free, frame*fs)
		seen++
	}
	s.rx.cached += n
	atomic.StoreUint32(s.rx.consumer, s.rx.cached)
	s.refill()
	return seen, nil
}

// rxReady returns how many descriptors the kernel has produced on the
// receive ring that this side has not consumed, at most the ring's size
// (a larger count is not from a correct kernel).
func (s *Socket) rxReady() uint32 {
	n := atomic.LoadUint32(s.rx.producer) - s.rx.cached
	return min(n, s.rx.size)
}

// wait polls the socket for input up to timeout, retrying on EINTR. It
// wakes the kernel first if the fill ring asks for it.
func (s *Socket) wait(timeout time.Duration) error {
	if timeout == 0 {
		if s.opts.NeedWakeup && s.fill.needWakeup() {
			return s.wake()
		}
		return nil
	}
	deadline := time.Now().Add(timeout)
	for {
		ms := -1
		if timeout > 0 {
			left := time.Until(deadline)
			if left <= 0 {
				return nil
			}
			ms = int((left + time.Millisecond - 1) / time.Millisecond)
		}
		_, err := unix.Poll([]unix.PollFd{{Fd: int32(s.fd), Events: unix.POLLIN}}, ms)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return &Error{Step: "poll", Err: err}
		}
		return nil
	}
}

// wake tells the kernel to look at the fill ring again.
func (s *Socket) wake() error {
	_, _, err := unix.Recvfrom(s.fd, nil, unix.MSG_DONTWAIT)
	if err == nil || errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EBUSY) || errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.ENETDOWN) {
		return nil
	}
	return &Error{Step: "wakeup", Err: err}
}

// refill gives the kernel as many free frames as the fill ring has room
// for.
func (s *Socket) refill() {
	used := s.fill.cached - atomic.LoadUint32(s.fill.consumer)
	if used > s.fill.size {
		return // not a correct kernel's consumer index
	}
	k := min(s.fill.size-used, uint32(len(s.free)))
	for i := range k {
		addr := s.free[len(s.free)-1]
		s.free = s.free[:len(s.free)-1]
		*s.fill.addr(s.fill.cached + i) = addr
		s.lent[addr/uint64(s.opts.FrameSize)] = true
	}
	if k > 0 {
		s.fill.cached += k
		atomic.StoreUint32(s.fill.producer, s.fill.cached)
	}
	if s.opts.NeedWakeup && s.fill.needWakeup() {
		s.wake()
	}
}

// checkDesc checks a receive descriptor against a UMEM of size bytes in
// frames of frameSize bytes (a power of two) and returns the index of the
// frame it is in and the range of its bytes. It refuses an empty frame,
// one that starts outside the UMEM or runs past its frame's end, and the
// parts of a multi-buffer frame (XDP_PKT_CONTD; the socket is not bound
// for them).
func checkDesc(d unix.XDPDesc, size, frameSize uint64) (frame, start, end uint64, ok bool) {
	if d.Len == 0 || d.Options&unix.XDP_PKT_CONTD != 0 || d.Addr >= size {
		return 0, 0, 0, false
	}
	base := d.Addr &^ (frameSize - 1)
	if base+frameSize > size || uint64(d.Len) > base+frameSize-d.Addr {
		return 0, 0, 0, false
	}
	return base / frameSize, d.Addr, d.Addr + uint64(d.Len), true
}
