package xsk

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Defaults for the Options fields left zero.
const (
	DefaultFrames    = 4096
	DefaultFrameSize = 4096
	DefaultRingSize  = 2048
)

// MinFrameSize is the smallest UMEM frame the kernel accepts in aligned
// mode (XDP_UMEM_MIN_CHUNK_SIZE).
const MinFrameSize = 2048

// Options says how Setup prepares a socket.
type Options struct {
	// Frames is the number of UMEM frames (DefaultFrames if zero), and
	// FrameSize the size of each (DefaultFrameSize if zero): a power of
	// two from MinFrameSize to the page size. The UMEM is Frames ×
	// FrameSize bytes of pinned memory.
	Frames    int
	FrameSize int
	// FillSize, CompSize, RxSize and TxSize are the numbers of entries of
	// the fill, completion, receive and transmit rings: powers of two,
	// DefaultRingSize if zero, except TxSize, whose zero means no transmit
	// ring.
	FillSize int
	CompSize int
	RxSize   int
	TxSize   int
	// Ifindex and Queue are the device and its receive queue to bind to.
	Ifindex int
	Queue   int
	// Copy binds in copy mode (XDP_COPY); otherwise the socket is bound
	// in zero-copy mode (XDP_ZEROCOPY), which fails on a driver without
	// it.
	Copy bool
	// NeedWakeup binds with XDP_USE_NEED_WAKEUP: the kernel then says
	// when it must be woken to refill from the fill ring, and Receive
	// wakes it only then.
	NeedWakeup bool
}

// withDefaults returns o with its zero sizes replaced by the defaults.
func (o Options) withDefaults() Options {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&o.Frames, DefaultFrames)
	def(&o.FrameSize, DefaultFrameSize)
	def(&o.FillSize, DefaultRingSize)
	def(&o.CompSize, DefaultRingSize)
	def(&o.RxSize, DefaultRingSize)
	return o
}

// UMEMBytes returns the memory the UMEM of a socket set up with o pins,
// which counts against the owner's RLIMIT_MEMLOCK.
func (o Options) UMEMBytes() int64 {
	o = o.withDefaults()
	return int64(o.Frames) * int64(o.FrameSize)
}

// check refuses options the kernel would refuse, with a reason.
func (o Options) check() error {
	pow2 := func(v int) bool { return v > 0 && v&(v-1) == 0 }
	page := os.Getpagesize()
	switch {
	case o.Frames <= 0 || o.Frames > 1<<24:
		return fmt.Errorf("frames %d: want 1 to %d", o.Frames, 1<<24)
	case !pow2(o.FrameSize) || o.FrameSize < MinFrameSize || o.FrameSize > page:
		return fmt.Errorf("frame size %d: want a power of two from %d to the page size, %d", o.FrameSize, MinFrameSize, page)
	case o.Ifindex <= 0:
		return fmt.Errorf("ifindex %d: want a device", o.Ifindex)
	case o.Queue < 0:
		return fmt.Errorf("queue %d: want 0 or more", o.Queue)
	}
	for _, r := range []struct {
		name string
		n    int
		zero bool
	}{{"fill", o.FillSize, false}, {"completion", o.CompSize, false}, {"rx", o.RxSize, false}, {"tx", o.TxSize, true}} {
		if r.n == 0 && r.zero {
			continue
		}
		if !pow2(r.n) || r.n > 1<<24 {
			return fmt.Errorf("%s ring size %d: want a power of two up to %d", r.name, r.n, 1<<24)
		}
	}
	return nil
}

// Error is a failure of one step of NewUnbound or Setup.
type Error struct {
	// Step names what failed: "socket", "umem mmap", "XDP_UMEM_REG",
	// "bind" and so on.
	Step string
	// Err is the system's error (a unix.Errno), or a description.
	Err error
	// Hint says what most likely caused it, when that is known.
	Hint string
}

func (e *Error) Error() string {
	s := "xsk: " + e.Step + ": " + e.Err.Error()
	if e.Hint != "" {
		s += " (" + e.Hint + ")"
	}
	return s
}

// Unwrap returns the system's error.
func (e *Error) Unwrap() error { return e.Err }

// ErrNotXDP is the error (wrapped in an *Error) Setup returns for a file
// descriptor that is not an AF_XDP socket.
var ErrNotXDP = errors.New("not an AF_XDP socket")

// stepErr wraps err from step with the hint that its errno most likely
// means there.
func stepErr(step string, err error, o Options) error {
	var hint string
	var errno unix.Errno
	errors.As(err, &errno)
	switch {
	case step == "socket" && (errno == unix.EPERM || errno == unix.EACCES):
		hint = "creating an AF_XDP socket needs CAP_NET_RAW"
	case step == "socket" && errno == unix.EAFNOSUPPORT:
		hint = "the kernel has no AF_XDP (CONFIG_XDP_SOCKETS)"
	case step == "XDP_UMEM_REG" && (errno == unix.ENOBUFS || errno == unix.ENOMEM || errno == unix.EPERM):
		hint = fmt.Sprintf("the UMEM pins %d bytes, charged to RLIMIT_MEMLOCK of the owner's uid (with every other UMEM it holds): raise the limit (systemd LimitMEMLOCK=, ulimit -l) or grant CAP_IPC_LOCK", o.UMEMBytes())
	case step == "XDP_UMEM_REG" && errno == unix.EBUSY:
		hint = "the socket already has a UMEM: it was set up before"
	case step == "bind" && errno == unix.EBUSY:
		hint = fmt.Sprintf("queue %d of ifindex %d is already bound by another AF_XDP socket (or in use by the driver's own zero-copy pool)", o.Queue, o.Ifindex)
	case step == "bind" && (errno == unix.EOPNOTSUPP || errno == unix.ENOTSUP) && !o.Copy:
		hint = "the driver does not support zero-copy AF_XDP on this device: bind in copy mode (Options.Copy)"
	case step == "bind" && errno == unix.EOPNOTSUPP:
		hint = "the device does not support AF_XDP"
	case step == "bind" && errno == unix.ENODEV:
		hint = fmt.Sprintf("no device with ifindex %d in the socket's network namespace", o.Ifindex)
	case step == "bind" && errno == unix.EINVAL:
		hint = fmt.Sprintf("queue %d is beyond the device's receive queues, or the socket is already bound", o.Queue)
	case errno == unix.EBADF || errno == unix.ENOTSOCK:
		hint = "not an open socket"
	}
	return &Error{Step: step, Err: err, Hint: hint}
}

// NewUnbound creates an AF_XDP socket and nothing else, which is what a
// privileged process does before it puts the socket in an XSKMAP and hands
// it to an unprivileged owner, who calls Setup. It needs CAP_NET_RAW. The
// socket is close-on-exec; hand it over with SCM_RIGHTS, or as an
// inherited file.
func NewUnbound() (*os.File, error) {
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, stepErr("socket", err, Options{})
	}
	return os.NewFile(uintptr(fd), "xsk"), nil
}

// Socket is an AF_XDP socket set up for receiving. Receive and Stats may
// not be called concurrently with each other or with Close.
type Socket struct {
	fd        int
	opts      Options
	umem      []byte
	fill      ring
	comp      ring
	rx        ring
	tx        ring
	lent      []bool   // per frame: given to the kernel, not yet back
	free      []uint64 // frame addresses this side holds
	invalid   uint64   // descriptors refused by Receive
	closeOnce sync.Once
}

// Setup prepares the AF_XDP socket fd, as an unprivileged owner does with
// a socket handed to it: it maps Frames × FrameSize bytes of anonymous
// memory and registers it as the socket's UMEM, sizes and maps the rings,
// binds the socket to (Ifindex, Queue) and gives the kernel as many frames
// as the fill ring holds. On success the Socket owns fd and closes it;
// on failure fd stays open, but a socket whose Setup failed after its UMEM
// was registered cannot be set up again.
func Setup(fd int, o Options) (*Socket, error) {
	o = o.withDefaults()
	if err := o.check(); err != nil {
		return nil, &Error{Step: "options", Err: err}
	}
	domain, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return nil, stepErr("SO_DOMAIN", err, o)
	}
	if domain != unix.AF_XDP {
		return nil, &Error{Step: "SO_DOMAIN", Err: ErrNotXDP, Hint: fmt.Sprintf("the socket's family is %d, not AF_XDP (%d)", domain, unix.AF_XDP)}
	}
	s := &Socket{fd: -1, opts: o}
	ok := false
	defer func() {
		if !ok {
			s.unmap()
		}
	}()
	size := o.UMEMBytes()
	if s.umem, err = unix.Mmap(-1, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE); err != nil {
		return nil, stepErr("umem mmap", err, o)
	}
	reg := umemReg(uint64(uintptr(unsafe.Pointer(&s.umem[0]))), uint64(size), uint32(o.FrameSize))
	if err := setsockopt(fd, unix.XDP_UMEM_REG, unsafe.Pointer(&reg), unsafe.Sizeof(reg)); err != nil {
		return nil, stepErr("XDP_UMEM_REG", err, o)
	}
	for _, r := range []struct {
		opt, n int
		name   string
	}{
		{unix.XDP_UMEM_FILL_RING, o.FillSize, "XDP_UMEM_FILL_RING"},
		{unix.XDP_UMEM_COMPLETION_RING, o.CompSize, "XDP_UMEM_COMPLETION_RING"},
		{unix.XDP_RX_RING, o.RxSize, "XDP_RX_RING"},
		{unix.XDP_TX_RING, o.TxSize, "XDP_TX_RING"},
	} {
		if r.n == 0 {
			continue
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_XDP, r.opt, r.n); err != nil {
			return nil, stepErr(r.name, err, o)
		}
	}
	off, err := mmapOffsets(fd)
	if err != nil {
		return nil, stepErr("XDP_MMAP_OFFSETS", err, o)
	}
	for _, r := range []struct {
		ring  *ring
		off   unix.XDPRingOffset
		pgoff int64
		n     int
		entry uintptr
		name  string
	}{
		{&s.fill, off.Fr, unix.XDP_UMEM_PGOFF_FILL_RING, o.FillSize, 8, "fill ring mmap"},
		{&s.comp, off.Cr, unix.XDP_UMEM_PGOFF_COMPLETION_RING, o.CompSize, 8, "completion ring mmap"},
		{&s.rx, off.Rx, unix.XDP_PGOFF_RX_RING, o.RxSize, unsafe.Sizeof(unix.XDPDesc{}), "rx ring mmap"},
		{&s.tx, off.Tx, unix.XDP_PGOFF_TX_RING, o.TxSize, unsafe.Sizeof(unix.XDPDesc{}), "tx ring mmap"},
	} {
		if r.n == 0 {
			continue
		}
		if err := r.ring.mmap(fd, r.off, r.pgoff, uint32(r.n), r.entry); err != nil {
			return nil, stepErr(r.name, err, o)
		}
	}
	var flags uint16
	if o.Copy {
		flags |= unix.XDP_COPY
	} else {
		flags |= unix.XDP_ZEROCOPY
	}
	if o.NeedWakeup {
		flags |= unix.XDP_USE_NEED_WAKEUP
	}
	if err := unix.Bind(fd, &unix.SockaddrXDP{Flags: flags, Ifindex: uint32(o.Ifindex), QueueID: uint32(o.Queue)}); err != nil {
		return nil, stepErr("bind", err, o)
	}
	s.lent = make([]bool, o.Frames)
	s.free = make([]uint64, 0, o.Frames)
	for i := o.Frames - 1; i >= 0; i-- {
		s.free = append(s.free, uint64(i)*uint64(o.FrameSize))
	}
	s.refill()
	s.fd = fd
	ok = true
	return s, nil
}

// setsockopt sets a struct-valued SOL_XDP option.
func setsockopt(fd, opt int, p unsafe.Pointer, n uintptr) error {
	_, _, errno := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.SOL_XDP, uintptr(opt), uintptr(p), n, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// getsockopt reads a struct-valued SOL_XDP option into b and returns how
// many bytes the kernel wrote.
func getsockopt(fd, opt int, b []byte) (int, error) {
	n := uint32(len(b))
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_XDP, uintptr(opt), uintptr(unsafe.Pointer(&b[0])), uintptr(unsafe.Pointer(&n)), 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// umemReg returns the XDP_UMEM_REG argument for an aligned UMEM at addr of
// size bytes in frames of frameSize, with no headroom.
func umemReg(addr, size uint64, frameSize uint32) unix.XDPUmemReg {
	return unix.XDPUmemReg{Addr: addr, Len: size, Size: frameSize}
}

// mmapOffsets reads XDP_MMAP_OFFSETS.
func mmapOffsets(fd int) (unix.XDPMmapOffsets, error) {
	var b [unsafe.Sizeof(unix.XDPMmapOffsets{})]byte
	n, err := getsockopt(fd, unix.XDP_MMAP_OFFSETS, b[:])
	if err != nil {
		return unix.XDPMmapOffsets{}, err
	}
	return parseMmapOffsets(b[:n])
}

// Fd returns the socket's file descriptor (for poll, or to hand on), valid
// until Close.
func (s *Socket) Fd() int { return s.fd }

// Options returns the options the socket was set up with, defaults filled
// in.
func (s *Socket) Options() Options { return s.opts }

// ZeroCopy says whether the kernel bound the socket in zero-copy mode
// (XDP_OPTIONS).
func (s *Socket) ZeroCopy() (bool, error) {
	var b [4]byte
	if _, err := getsockopt(s.fd, unix.XDP_OPTIONS, b[:]); err != nil {
		return false, stepErr("XDP_OPTIONS", err, s.opts)
	}
	return *(*uint32)(unsafe.Pointer(&b[0]))&unix.XDP_OPTIONS_ZEROCOPY != 0, nil
}

// Stats are a socket's counters.
type Stats struct {
	// The kernel's (XDP_STATISTICS). RxDropped: frames dropped for
	// reasons other than the two below (such as a frame larger than a
	// UMEM frame); RxInvalidDescs: bad addresses in the fill ring;
	// RxRingFull: frames dropped because the receive ring was full;
	// RxFillRingEmpty: times the kernel found no buffer in the fill ring.
	// Kernels before 5.9 report only the first three.
	RxDropped       uint64
	RxInvalidDescs  uint64
	TxInvalidDescs  uint64
	RxRingFull      uint64
	RxFillRingEmpty uint64
	TxRingEmpty     uint64
	// Refused counts descriptors Receive found on the receive ring and
	// refused (outside the UMEM, across a frame's end, a frame not lent
	// to the kernel, or part of a multi-buffer frame): never the work of
	// a correct kernel.
	Refused uint64
}

// Stats returns the socket's counters.
func (s *Socket) Stats() (Stats, error) {
	var b [unsafe.Sizeof(unix.XDPStatistics{})]byte
	n, err := getsockopt(s.fd, unix.XDP_STATISTICS, b[:])
	if err != nil {
		return Stats{}, stepErr("XDP_STATISTICS", err, s.opts)
	}
	st := parseStatistics(b[:n])
	st.Refused = s.invalid
	return st, nil
}

// Close unmaps the rings and the UMEM and closes the socket. Calling it
// again does nothing.
func (s *Socket) Close() error {
	var err error
	s.closeOnce.Do(func() {
		if s.fd >= 0 {
			err = unix.Close(s.fd)
			s.fd = -1
		}
		s.unmap()
	})
	return err
}

// unmap unmaps what Setup mapped.
func (s *Socket) unmap() {
	for _, r := range []*ring{&s.fill, &s.comp, &s.rx, &s.tx} {
		r.unmap()
	}
	if s.umem != nil {
		unix.Munmap(s.umem)
		s.umem = nil
	}
	runtime.KeepAlive(s)
}
