package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/agent/internal/kernel"
	"github.com/vrss-dev/vrss/agent/internal/wire"
	"github.com/vrss-dev/vrss/ethtool"
	"github.com/vrss-dev/vrss/internal/fd"
	"github.com/vrss-dev/vrss/portxdp"
	"github.com/vrss-dev/vrss/steering"
	"github.com/vrss-dev/vrss/virtio"
)

// Defaults for Options.
const (
	DefaultStateDir        = "/var/lib/vrss"
	DefaultBPFFSDir        = "/sys/fs/bpf/vrss"
	DefaultConfig          = "/etc/vrss/vrssd.json"
	DefaultMaxConns        = 1024
	DefaultIdleTimeout     = 5 * time.Minute
	DefaultShutdownTimeout = 10 * time.Second
)

const (
	// writeTimeout bounds sending one response: a client that stops
	// reading loses its connection instead of holding a goroutine.
	writeTimeout = 5 * time.Second
	// helloTimeout bounds the wait for the handshake, so that connections
	// that never say hello cannot hold a slot for long. A client sends its
	// hello as soon as it connects.
	helloTimeout = 2 * time.Second
	// snapshotInterval is how often vrssd looks for configurations a VMM
	// published through its own mapping, to keep state.json's copy fresh.
	snapshotInterval = 2 * time.Second
)

// Options configure a Server. Zero values take the defaults.
type Options struct {
	Socket   string // unix socket to listen on; api.DefaultSocket
	StateDir string // where state.json lives; DefaultStateDir
	BPFFSDir string // where programs and maps are pinned; DefaultBPFFSDir
	// XSKMapDir is where AF_XDP ports' XSKMAPs are pinned for their
	// owners (a bpf filesystem vrssd mounts, mode 0711); default xsk in
	// Socket's directory.
	XSKMapDir string
	Policy    Policy       // who may do what besides root, and per-user limits
	Logger    *slog.Logger // slog.Default() if nil
	Version   string       // the daemon's version, reported to clients
	// MaxConns bounds the concurrent connections of users other than
	// root and admins; further ones are answered with CodeBusy and closed.
	// Root and admins always get through. Policy.MaxConnsPerUID bounds
	// each user's share.
	MaxConns int
	// IdleTimeout closes a connection that sends nothing for this long.
	IdleTimeout time.Duration
	// ShutdownTimeout bounds how long Serve waits for requests in flight
	// once its context is done.
	ShutdownTimeout time.Duration
	// Programs loads and pins the steering programs, and TAPs makes,
	// opens and watches the TAP devices. nil means the running kernel
	// (kernel.Host), which is all a daemon uses; the package's
	// unprivileged tests put an in-memory fake kernel in their place.
	Programs kernel.Programs
	TAPs     kernel.TAPs
	// Ethtool gives the ethtool driver of an AF_XDP port's device, for
	// --slice. nil means the device itself (ethtool.Device); tests put a
	// model of a NIC with RSS contexts in its place, since no device on
	// the test machines has them.
	Ethtool func(dev string) ethtool.Driver
	// XSKInsert puts an AF_XDP socket in an AF_XDP port's XSKMAP. nil
	// means the kernel's map update (portxdp.Program.SetSocket); tests
	// put one in its place that refuses as Linux 7.2 does
	// (afxdp_pending.go), which this machine's kernel does not.
	XSKInsert func(prog *portxdp.Program, queue, fd int) error
}

// Server is vrssd: it creates and adopts multi-queue TAPs, steers them
// with the vrss program, and hands their file descriptors to their owners
// over a unix socket.
type Server struct {
	opts      Options
	log       *slog.Logger
	ln        *net.UnixListener
	lock      *os.File // flock on the state directory
	bpffsLock *os.File // flock on the bpffs directory

	mu sync.Mutex // guards taps, creating and state.json
	// taps are keyed by tapKey: name and network namespace.
	taps map[string]*device
	// creating are the creates in progress, recorded in state.json
	// before the device is made (see tapState.Creating).
	creating map[string]tapState
	// afxdp are the AF_XDP ports, keyed as taps are (afxdp.go).
	afxdp map[string]*afxdpPort
	// xskMounted says vrssd mounted Options.XSKMapDir, and unmounts it
	// when it stops (afxdp_mappath.go).
	xskMounted bool
	// qemuMu serialises QEMU runs and writes to the qemu-ebpf cache.
	qemuMu sync.Mutex

	connMu  sync.Mutex
	conns   map[*net.UnixConn]int // connection → peer uid, or -1 for root and admins
	byUID   map[int]int           // connections per uid, root and admins excluded
	wg      sync.WaitGroup        // connection goroutines
	closing atomic.Bool
	done    chan struct{} // closed on shutdown; stops the link watcher
	watchWG sync.WaitGroup

	limits  *userLimits    // request rates and refusal logging per uid
	counts  *requestCounts // requests and refusals, for the metrics
	sockIno uint64         // the inode of the socket vrssd bound
	// ownNetns is vrssd's own network namespace.
	ownNetns kernel.NetnsID
}

// removeSocket removes the socket file, if it is still the one vrssd
// bound (and not, say, a later daemon's).
func (s *Server) removeSocket() {
	var st unix.Stat_t
	if unix.Lstat(s.opts.Socket, &st) == nil && st.Ino == s.sockIno && st.Mode&unix.S_IFMT == unix.S_IFSOCK {
		os.Remove(s.opts.Socket)
	}
}

// New prepares a server: it checks and locks its directories, makes sure
// the bpffs directory is on a bpf filesystem, re-adopts the TAPs recorded
// in the state directory, and listens on the socket. Serve then answers
// requests.
func New(o Options) (*Server, error) {
	if o.Socket == "" {
		o.Socket = api.DefaultSocket
	}
	if o.StateDir == "" {
		o.StateDir = DefaultStateDir
	}
	if o.BPFFSDir == "" {
		o.BPFFSDir = DefaultBPFFSDir
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxConns <= 0 {
		o.MaxConns = DefaultMaxConns
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = DefaultShutdownTimeout
	}
	if o.Programs == nil {
		o.Programs = kernel.Host{}
	}
	if o.TAPs == nil {
		o.TAPs = kernel.Host{}
	}
	// Every queue vrssd holds is a descriptor. (Go's runtime raises the
	// soft limit already; vrssd does not rely on it.)
	nofile, err := raiseNofile()
	if err != nil {
		o.Logger.Warn("raising RLIMIT_NOFILE", "err", err)
	}
	if o.XSKMapDir == "" {
		o.XSKMapDir = filepath.Join(filepath.Dir(o.Socket), "xsk")
	}
	for _, p := range []*string{&o.Socket, &o.StateDir, &o.BPFFSDir, &o.XSKMapDir} {
		if *p, err = filepath.Abs(*p); err != nil {
			return nil, err
		}
	}
	s := &Server{
		opts: o, log: o.Logger,
		taps: map[string]*device{}, creating: map[string]tapState{}, afxdp: map[string]*afxdpPort{},
		conns: map[*net.UnixConn]int{}, byUID: map[int]int{},
		done:   make(chan struct{}),
		limits: newUserLimits(o.Policy.requestRate(), o.Logger),
		counts: newRequestCounts(),
	}
	if s.ownNetns, err = kernel.OwnNetns(); err != nil {
		return nil, fmt.Errorf("vrssd's network namespace: %w", err)
	}
	if err := os.MkdirAll(o.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	if err := checkOwnDir("state directory", o.StateDir); err != nil {
		return nil, err
	}
	// Two daemons on one state would re-open each other's queues, which
	// changes every packet's queue: make sure this one is alone, before
	// touching anything.
	if s.lock, err = lockState(o.StateDir); err != nil {
		return nil, err
	}
	if s.ln, err = listen(o.Socket); err != nil {
		s.lock.Close()
		return nil, err
	}
	var st unix.Stat_t
	if unix.Lstat(o.Socket, &st) == nil {
		s.sockIno = st.Ino
	}
	mounted, err := o.Programs.PinRoot(o.BPFFSDir)
	if err != nil {
		s.ln.Close()
		s.removeSocket()
		s.lock.Close()
		return nil, fmt.Errorf("bpffs directory: %w", err)
	}
	if mounted != "" {
		s.log.Info("mounted a bpf filesystem", "dir", mounted)
		if privateMountNS() {
			s.log.Warn("the bpf filesystem vrssd mounted is in a private mount namespace (a sandboxed service?): its pins vanish when vrssd exits, and a restarted vrssd re-steers its TAPs from state.json; mount one on the host first", "dir", mounted)
		}
	}
	if err := checkOwnDir("bpffs directory", o.BPFFSDir); err != nil {
		s.ln.Close()
		s.removeSocket()
		s.lock.Close()
		return nil, err
	}
	// A daemon with another state directory but this bpffs directory
	// would see pins it did not record.
	if s.bpffsLock, err = lockDir("bpffs directory", o.BPFFSDir); err != nil {
		s.ln.Close()
		s.removeSocket()
		s.lock.Close()
		return nil, err
	}
	fail := func(err error) (*Server, error) {
		s.ln.Close()
		s.removeSocket()
		s.bpffsLock.Close()
		s.lock.Close()
		return nil, err
	}
	if err := s.restore(); err != nil {
		s.releaseAll()
		return fail(err)
	}
	s.watchWG.Go(s.watch)
	s.watchWG.Go(func() { s.every(snapshotInterval, s.snapshots) })
	s.watchWG.Go(func() { s.every(snapshotInterval, s.filters) })
	s.watchWG.Go(func() { s.every(monitorInterval, s.monitor) })
	s.watchWG.Go(func() { s.every(monitorInterval, s.afxdpMonitor) })
	s.log.Info("vrssd ready", "socket", o.Socket, "state_dir", o.StateDir, "bpffs_dir", o.BPFFSDir,
		"taps", len(s.taps), "abi", steering.ABIStamp(), "version", o.Version, "nofile", nofile)
	return s, nil
}

// lockState takes an exclusive lock on the state directory for the life
// of the process.
func lockState(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("state directory lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("another vrssd uses the state directory %s", dir)
		}
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return f, nil
}

// lockDir takes an exclusive lock on a directory itself (bpffs holds no
// regular files to lock) for the life of the process.
func lockDir(what, dir string) (*os.File, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, dir, err)
	}
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("another vrssd uses the %s %s", what, dir)
		}
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return os.NewFile(uintptr(fd), dir), nil
}

// listen listens on path, replacing a stale socket file but never a live
// socket or anything that is not a socket. The socket is bound and given
// its mode in a private directory and then renamed into place, so that no
// path vrssd changes can be swapped for a link meanwhile.
func listen(path string) (*net.UnixListener, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("socket directory: %w", err)
	}
	if err := checkOwnDir("socket directory", dir); err != nil {
		return nil, err
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		if c, err := net.Dial("unixpacket", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("another vrssd is listening on %s", path)
		}
	}
	tmp, err := os.MkdirTemp(dir, ".vrssd-bind-")
	if err != nil {
		return nil, fmt.Errorf("socket directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	bound := filepath.Join(tmp, "s")
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: bound, Net: "unixpacket"})
	if err != nil {
		return nil, err
	}
	ln.SetUnlinkOnClose(false)
	// Anyone may connect: every request is authorised by the peer's
	// credentials. tmp is vrssd's own 0700 directory: bound is the socket.
	if err := os.Chmod(bound, 0o666); err != nil {
		ln.Close()
		return nil, err
	}
	if err := os.Rename(bound, path); err != nil {
		ln.Close()
		return nil, fmt.Errorf("socket: %w", err)
	}
	return ln, nil
}

// Serve answers requests until ctx is done, then shuts down gracefully:
// it stops accepting, lets requests in flight finish (up to
// Options.ShutdownTimeout), closes every connection and saves the state.
// TAPs, pins and steering stay, so traffic goes on being steered.
func (s *Server) Serve(ctx context.Context) error {
	acceptErr := make(chan error, 1)
	go func() { acceptErr <- s.accept() }()
	var err error
	select {
	case <-ctx.Done():
	case err = <-acceptErr:
	}
	s.shutdown()
	if err != nil {
		return fmt.Errorf("accept: %w", err)
	}
	return nil
}

func (s *Server) accept() error {
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			if s.closing.Load() {
				return nil
			}
			// Out of fds and the like: wait, rather than spin or die.
			if errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) || errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.ENOMEM) || errors.Is(err, unix.ECONNABORTED) {
				s.log.Warn("accept", "err", err)
				time.Sleep(100 * time.Millisecond)
				continue
			}
			return err
		}
		p, err := peerOf(c)
		if err != nil {
			s.log.Warn("connection without credentials", "err", err)
			c.Close()
			continue
		}
		if err := s.track(c, p); err != nil {
			s.counts.connRefused(err)
			s.limits.logRefusal(p.uid, func(suppressed int) {
				s.log.Warn("refused a connection", "uid", p.uid, "pid", p.pid, "reason", err.Message, "suppressed_before", suppressed)
			})
			s.reply(c, &api.Response{Error: err}, nil)
			c.Close()
			continue
		}
		go func() {
			defer s.wg.Done()
			s.serveConn(c, p)
		}()
	}
}

// track registers a new connection, unless the server is shutting down
// or the peer is at its limits: Options.MaxConns for all users but root
// and admins together, Policy.MaxConnsPerUID for each. Root and admins
// always get through, so that no user can lock them out. Under connMu, so
// that no wg.Add can follow shutdown's wg.Wait.
func (s *Server) track(c *net.UnixConn, p *peer) *api.Error {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	if s.closing.Load() {
		return api.Errorf(api.CodeBusy, "vrssd is shutting down")
	}
	uid := -1
	if !s.opts.Policy.admin(p) {
		uid = p.uid
		if n, max := s.byUID[uid], s.opts.Policy.maxConnsPerUID(); n >= max {
			return api.Errorf(api.CodeBusy, "uid %d has %d connections to vrssd open, the most one user may (max_conns_per_uid); close some", uid, n)
		}
		if n := len(s.conns) - s.byUID[-1]; n >= s.opts.MaxConns {
			return api.Errorf(api.CodeBusy, "vrssd is serving %d connections, its limit for users other than root and admins; try again later", n)
		}
	}
	s.conns[c] = uid
	s.byUID[uid]++
	s.wg.Add(1)
	return nil
}

func (s *Server) untrack(c *net.UnixConn) {
	s.connMu.Lock()
	if uid, ok := s.conns[c]; ok {
		delete(s.conns, c)
		if s.byUID[uid]--; s.byUID[uid] == 0 {
			delete(s.byUID, uid)
		}
	}
	s.connMu.Unlock()
	c.Close()
}

func (s *Server) shutdown() {
	s.connMu.Lock()
	s.closing.Store(true)
	// Wake the idle readers; a connection that is handling a request sees
	// closing when it comes back to read.
	for c := range s.conns {
		c.SetReadDeadline(time.Now())
	}
	s.connMu.Unlock()
	s.ln.Close()
	s.removeSocket()
	finished := make(chan struct{})
	go func() { s.wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(s.opts.ShutdownTimeout):
		s.log.Warn("requests still in flight at the shutdown timeout; closing their connections")
		s.connMu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.connMu.Unlock()
		<-finished
	}
	close(s.done)
	s.watchWG.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.saveLocked()
	s.releaseAll()
	s.unmountXSKMapDirLocked()
	s.bpffsLock.Close()
	s.lock.Close()
	s.log.Info("vrssd stopped; TAPs and steering stay in place", "taps", len(s.taps))
}

// releaseAll closes every fd vrssd holds, leaving the kernel objects.
func (s *Server) releaseAll() {
	for _, d := range s.taps {
		d.release()
	}
	for _, a := range s.afxdp {
		a.close()
	}
}

// session is one connection's state.
type session struct {
	peer  *peer
	hello bool
}

func (s *Server) serveConn(c *net.UnixConn, p *peer) {
	defer s.untrack(c)
	s.log.Debug("connection", "uid", p.uid, "pid", p.pid)
	ss := &session{peer: p}
	bufs := wire.NewBuffers()
	for {
		timeout := s.opts.IdleTimeout
		if !ss.hello {
			timeout = min(timeout, helloTimeout)
		}
		c.SetReadDeadline(time.Now().Add(timeout))
		// After the deadline, so that shutdown's deadline is never lost.
		if s.closing.Load() {
			return
		}
		m, err := wire.Recv(c, bufs)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && !s.closing.Load() {
				s.log.Debug("closing an idle connection", "uid", p.uid, "pid", p.pid)
			}
			return
		}
		in := fd.NewAll(m.FDs)
		resp, out, keep := s.handle(ss, m, in)
		// No request keeps a received fd: close them all.
		fd.CloseAll(in)
		err = s.reply(c, resp, out)
		fd.CloseAll(out)
		if err != nil {
			s.log.Debug("send response", "uid", p.uid, "pid", p.pid, "err", err)
			return
		}
		if !keep {
			return
		}
	}
}

func (s *Server) reply(c *net.UnixConn, r *api.Response, fds []*fd.FD) error {
	r.FDs = len(fds)
	b, err := api.Encode(r)
	if err != nil {
		r = &api.Response{ID: r.ID, Error: api.Errorf(api.CodeInternal, "response: %v", err)}
		fds = nil
		if b, err = api.Encode(r); err != nil {
			return err
		}
	}
	c.SetWriteDeadline(time.Now().Add(writeTimeout))
	return wire.Send(c, b, fd.Ints(fds))
}

// handle answers one message, whose descriptors are in (the caller closes
// them). The descriptors returned go with the answer; the caller closes
// them once it is sent. keep is false when the connection must be closed
// after the answer: the handshake failed.
func (s *Server) handle(ss *session, m wire.Message, in []*fd.FD) (resp *api.Response, out []*fd.FD, keep bool) {
	p := ss.peer
	var op api.Op // the request's, once decoded
	defer func() { s.counts.answered(op, resp) }()
	fail := func(id uint64, op api.Op, name string, err error) *api.Response {
		var ae *api.Error
		if !errors.As(err, &ae) {
			ae = api.Errorf(api.CodeInternal, "%v", err)
		}
		level := slog.LevelWarn
		if ae.Code == api.CodeInternal {
			level = slog.LevelError
		}
		// One user's refusals must not fill the log: a few per minute
		// are written, the rest counted and summarised.
		s.limits.logRefusal(p.uid, func(suppressed int) {
			s.log.Log(context.Background(), level, "refused", "uid", p.uid, "pid", p.pid, "op", op, "tap", name, "code", ae.Code, "reason", ae.Message, "suppressed_before", suppressed)
		})
		return &api.Response{ID: id, Error: ae}
	}
	if !s.opts.Policy.admin(p) && !s.limits.allow(p.uid) {
		return fail(0, "", "", api.Errorf(api.CodeBusy, "uid %d sends more than %g requests a second (requests_per_second_per_uid); slow down", p.uid, s.opts.Policy.requestRate())), nil, ss.hello
	}
	switch {
	case m.TooLarge:
		return fail(0, "", "", api.Errorf(api.CodeTooLarge, "message over %d bytes", api.MaxMessageSize)), nil, ss.hello
	case m.FDsTruncated:
		return fail(0, "", "", api.Errorf(api.CodeBadRequest, "more than %d file descriptors attached", api.MaxFDs)), nil, ss.hello
	}
	req, err := api.DecodeRequest(m.Data)
	if err != nil {
		return fail(0, "", "", err), nil, ss.hello
	}
	op = req.Op
	name := argName(req.Args)
	// Only adopt takes a descriptor: any other request that carries some
	// is refused (and its descriptors closed by the caller), a hello too.
	if len(in) > 0 && req.Op != api.OpAdopt {
		return fail(req.ID, req.Op, name, api.Errorf(api.CodeBadRequest, "%s takes no file descriptors, %d attached", req.Op, len(in))), nil, ss.hello
	}
	if req.Op == api.OpHello {
		res, err := s.hello(p, req)
		if err != nil {
			return fail(req.ID, req.Op, "", err), nil, false
		}
		ss.hello = true
		s.log.Debug("request", "uid", p.uid, "pid", p.pid, "op", req.Op)
		return result(req.ID, res), nil, true
	}
	if !ss.hello {
		return fail(req.ID, req.Op, name, api.Errorf(api.CodeNeedHello, "the first request on a connection must be %q", api.OpHello)), nil, false
	}
	h, ok := handlers[req.Op]
	if !ok {
		return fail(req.ID, req.Op, name, api.Errorf(api.CodeUnknownOp, "unknown operation %q", req.Op)), nil, true
	}
	s.log.Debug("request", "uid", p.uid, "pid", p.pid, "op", req.Op, "tap", name)
	res, out, err := h(s, p, req.Args, in)
	if err != nil {
		fd.CloseAll(out)
		return fail(req.ID, req.Op, name, err), nil, true
	}
	return result(req.ID, res), out, true
}

func result(id uint64, v any) *api.Response {
	r := &api.Response{ID: id}
	if v == nil {
		return r
	}
	b, err := json.Marshal(v)
	if err != nil {
		return &api.Response{ID: id, Error: api.Errorf(api.CodeInternal, "result: %v", err)}
	}
	r.Result = b
	return r
}

// argName picks the TAP name out of any request's arguments, for the log.
func argName(raw json.RawMessage) string {
	var a struct {
		Name string `json:"name"`
	}
	json.Unmarshal(raw, &a)
	return a.Name
}

func (s *Server) hello(p *peer, req *api.Request) (*api.HelloResult, error) {
	var a api.HelloArgs
	if err := api.DecodeArgs(req.Args, &a); err != nil {
		return nil, err
	}
	if a.Protocol != api.ProtocolVersion {
		return nil, api.Errorf(api.CodeABIMismatch, "client speaks protocol %d, vrssd speaks %d", a.Protocol, api.ProtocolVersion)
	}
	if abi := steering.ABIStamp(); a.ABI != abi {
		return nil, api.Errorf(api.CodeABIMismatch, "client was built for steering ABI %q, vrssd has %q: rebuild the client against the same vrss version", a.ABI, abi)
	}
	return &api.HelloResult{Protocol: api.ProtocolVersion, ABI: steering.ABIStamp(), Server: s.opts.Version, UID: p.uid}, nil
}

// restore re-adopts the TAPs recorded in state.json: it loads their pinned
// programs and maps (or steers them anew from the recorded configuration
// if the pins are gone), re-opens their queues unless another process
// holds them, undoes creates a crash interrupted, and forgets TAPs that
// were deleted. It touches no pin directory state.json does not name:
// the bpffs directory may be shared with other software.
func (s *Server) restore() error {
	st, err := readState(s.opts.StateDir)
	if err != nil {
		return err
	}
	if len(st.TAPs) > 0 && st.BPFFSDir != "" && st.BPFFSDir != s.opts.BPFFSDir {
		return fmt.Errorf("the TAPs in %s were pinned under %s, and this vrssd was given --bpffs-dir %s: start it with the same directory (it would find none of their pins, and would re-steer all of them)",
			filepath.Join(s.opts.StateDir, "state.json"), st.BPFFSDir, s.opts.BPFFSDir)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rec := range st.TAPs {
		if rec.Creating {
			s.undoCreateLocked(rec)
			continue
		}
		d, err := s.readopt(rec)
		if errors.Is(err, errKeep) || errors.Is(err, errBadFlows) {
			return err
		}
		if err != nil {
			s.log.Warn("forgetting a TAP recorded in the state", "tap", rec.Name, "netns", rec.Netns, "reason", err)
			s.removePins(rec.key())
			s.removeFlowFiles(rec.key())
			continue
		}
		s.taps[d.key()] = d
		if err := s.restorePortLocked(d); err != nil {
			return err
		}
		s.syncGuestLocked(d)
		if d.problem != "" {
			s.log.Error("TAP needs attention", "tap", d.name, "problem", d.problem)
		}
		s.log.Info("re-adopted", "tap", d.name, "queues", d.queues, "held_elsewhere", d.elsewhere(), "steering", d.steering)
	}
	if err := s.restoreAFXDPLocked(); err != nil {
		return err
	}
	return s.saveLocked()
}

// undoCreateLocked finishes a create that a crash interrupted by undoing
// it: the client never heard of success. The device is deleted only if
// it is what that create made (a persistent multi-queue TAP with the
// owner recorded); s.mu is held.
func (s *Server) undoCreateLocked(rec tapState) {
	defer s.removePins(rec.key())
	ns, err := reopenNetns(&rec)
	if err != nil {
		s.log.Warn("undid a create that vrssd was interrupted in: the TAP went with its network namespace", "tap", rec.Name, "netns", rec.Netns, "reason", err)
		return
	}
	defer ns.Close()
	taps := s.tapsIn(ns)
	t, err := tuntapByName(taps, rec.Name)
	var ae *api.Error
	switch {
	case err != nil && !(errors.As(err, &ae) && ae.Code == api.CodeNotFound):
		s.log.Warn("an interrupted create's name belongs to a device vrssd did not make; leaving it", "tap", rec.Name, "err", err)
	case err == nil && !t.Persistent:
		s.log.Warn("an interrupted create left a device vrssd did not make persistent; leaving it", "tap", rec.Name)
	case err == nil && int(t.Owner) == rec.OwnerUID:
		if err := taps.Delete(rec.Name); err != nil {
			s.log.Error("undoing an interrupted create", "tap", rec.Name, "err", err)
		} else {
			s.log.Warn("undid a create that vrssd was interrupted in: deleted the TAP", "tap", rec.Name, "owner", rec.OwnerUID)
		}
	case err == nil:
		s.log.Warn("an interrupted create's name is taken by a device vrssd did not make; leaving it", "tap", rec.Name, "kernel_owner", t.Owner)
	default:
		s.log.Warn("undid a create that vrssd was interrupted in: the TAP was not made yet", "tap", rec.Name)
	}
}

// errBadFlows marks a TAP's flows file that restore will not act on (see
// readFlows): the start fails.
var errBadFlows = errors.New("invalid flows file")

// badFlows is an errBadFlows that says what readFlows said.
type badFlows struct{ err error }

func (e *badFlows) Error() string   { return e.err.Error() }
func (e *badFlows) Unwrap() []error { return []error{e.err, errBadFlows} }

// errKeep marks a restore failure that must not forget the TAP: the start
// fails instead.
var errKeep = errors.New("cannot tell whether a recorded TAP still exists")

// removePins removes the pins of TAP name (a validated name): the files
// vrssd pins (the port-security program's too), then the directory if
// nothing else is in it. Nothing
// else is ever removed from the bpffs directory.
func (s *Server) removePins(name string) {
	s.removePortPins(name)
	if err := s.opts.Programs.Unpin(filepath.Join(s.opts.BPFFSDir, pinDirName(name))); err != nil {
		s.log.Error("removing pins", "tap", name, "err", err)
	}
}

func (s *Server) readopt(rec tapState) (*device, error) {
	var flowSet *api.FlowSet
	var guest *virtio.Device
	if rec.Flows {
		var err error
		if flowSet, err = readFlows(s.opts.StateDir, &rec); err != nil {
			// As for an invalid record: the start fails, naming it.
			return nil, &badFlows{err}
		}
		if guest, err = readGuest(s.opts.StateDir, &rec); err != nil {
			return nil, &badFlows{err}
		}
	}
	ns, err := reopenNetns(&rec)
	if err != nil {
		return nil, err
	}
	taps := s.tapsIn(ns)
	l, err := taps.LinkByName(rec.Name)
	if err == nil && l.Index != rec.Index {
		err = fmt.Errorf("the device was replaced (ifindex %d, recorded %d)", l.Index, rec.Index)
	} else if errors.Is(err, kernel.ErrNoDevice) {
		err = fmt.Errorf("the device is gone: %w", err)
	} else if err != nil {
		// Not known to be gone: refuse to start rather than forget it.
		err = fmt.Errorf("%w: looking up TAP %s: %v", errKeep, rec.Name, err)
	}
	var t *kernel.Link
	if err == nil {
		t, err = asTAP(l)
	}
	if err != nil {
		ns.Close()
		return nil, err
	}
	d := &device{
		name: rec.Name, index: rec.Index, queues: rec.Queues, vnetHdrLen: rec.VnetHdrLen,
		owner: rec.OwnerUID, group: rec.OwnerGID, steering: rec.Steering, adopted: rec.Adopted,
		abi: rec.ABI, hash: rec.HashReport, config: rec.Config, flows: rec.Flows, flowSet: flowSet, guest: guest,
		netns: ns,
	}
	if !d.adopted {
		// A TAP an older vrssd made has the default qdisc, ~6.5 MiB of
		// kernel memory (docs/tap-memory.md); adopted TAPs keep their
		// owner's choice.
		if err := taps.SetNoqueue(d.name); err != nil {
			s.log.Warn("setting the noqueue qdisc", "tap", d.name, "err", err)
		}
	}
	// The queues others hold, before vrssd's control queue is added.
	d.noteQueues(t)
	d.transient = !t.Persistent
	if d.ctl, err = openControl(taps, d.name, d.vnetHdrLen); err != nil {
		s.log.Warn("opening the control queue; attach and detach will try again", "tap", d.name, "err", err)
	}
	prog, err := s.opts.Programs.LoadPinned(d.pinDir(s.opts.BPFFSDir), d.flows)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			err = s.resteer(d)
		}
		if err != nil {
			// The device is there: keep it, and its record, and say
			// what is wrong; the next start tries again.
			d.problem = fmt.Sprintf("its pins could not be loaded and steering it anew failed (%v); vrssd tries again at its next start, or delete it", err)
		}
		return d, nil
	}
	d.prog = prog
	if rec.ABI == steering.ABIStamp() {
		if d.pub, err = prog.Publisher(rec.Queues); err != nil {
			d.release()
			return nil, err
		}
		d.savedGen = d.pub.Generation()
		if d.pub.Flows() != d.flows || prog.Flows() != d.flows {
			// Not what state.json says was pinned: keep the TAP, touch
			// nothing, and say so.
			d.pub.Close()
			d.prog.Close()
			d.pub, d.prog = nil, nil
			d.problem = fmt.Sprintf("state.json says the TAP has flows %v, and its pinned configuration map says otherwise; delete and create it again", d.flows)
			return d, nil
		}
		if d.flows && d.steering {
			s.filterLocked(d, "at start")
		}
	} else {
		s.log.Error("TAP is steered by a program of another vrssd build; it keeps steering as configured, but vrssd will not touch its maps: delete and re-create it to upgrade",
			"tap", rec.Name, "abi", rec.ABI, "daemon_abi", steering.ABIStamp())
	}
	if d.elsewhere() {
		s.log.Info("another process holds the TAP's queues; open hands only the configuration map until it releases them", "tap", rec.Name, "enabled", d.attachedQ, "disabled", d.disabledQ)
	}
	return d, nil
}

// resteer steers d, whose pins are gone, with a new program configured
// as state.json last recorded, attached through vrssd's control queue
// (whoever holds the others).
func (s *Server) resteer(d *device) error {
	prog, err := s.opts.Programs.Load(d.flows)
	if err != nil {
		return loadError(err)
	}
	if d.pub, err = prog.Publisher(d.queues); err != nil {
		prog.Close()
		return err
	}
	d.prog, d.abi = prog, steering.ABIStamp()
	fail := func(err error) error {
		d.pub.Close()
		d.prog.Close()
		d.pub, d.prog = nil, nil
		s.removePins(d.key())
		return err
	}
	switch {
	case d.flowSet != nil:
		def := unconfigured()
		if d.config != nil {
			def = *d.config
		}
		set, err := d.flowSet.Set(def)
		if err == nil {
			err = d.pub.PublishSet(set)
		}
		if err != nil {
			return fail(fmt.Errorf("the recorded flow rules and RSS contexts: %w", err))
		}
	case d.config != nil:
		if err := d.pub.Publish(*d.config); err != nil {
			return fail(fmt.Errorf("the recorded configuration: %w", err))
		}
	}
	d.savedGen = d.pub.Generation()
	// Some pins may be left (a crash while pinning): only vrssd's own
	// names are removed (a flow filter's link among them, which detaches
	// the filter it held).
	s.removePins(d.key())
	if err := s.opts.Programs.Pin(prog, d.pinDir(s.opts.BPFFSDir)); err != nil {
		return fail(err)
	}
	if d.steering {
		if d.ctl == nil {
			return fail(errors.New("no control queue to attach it through"))
		}
		if d.flows {
			if _, err := s.attachFilter(d, prog); err != nil {
				return fail(filterError(d.name, err))
			}
		}
		if err := d.ctl.SetSteering(prog); err != nil {
			return fail(err)
		}
	}
	s.log.Warn("the TAP's pins were lost while vrssd was stopped: steered it anew with the configuration state.json recorded", "tap", d.name, "configured", d.config != nil, "flow_rules", d.flowSet != nil, "steering", d.steering)
	return nil
}

// filterLocked makes sure the flow filter of d (with flows, steering) is
// attached through its pinned link, attaching it again if the link or
// its pin was lost (bpffs, a detach behind vrssd's back); why says when,
// for the log. s.mu is held.
func (s *Server) filterLocked(d *device, why string) {
	if !d.flows || !d.steering || d.prog == nil {
		return
	}
	attached, err := s.attachFilter(d, d.prog)
	switch {
	case err != nil:
		s.log.Warn("attaching the flow filter; vrssd tries again", "tap", d.name, "err", err)
	case attached:
		s.log.Warn("the flow filter was not attached (its link or its pin was lost): attached it again", "tap", d.name, "when", why)
	}
}

// filters checks the flow filters of the TAPs with flows (see
// filterLocked) and the port-security programs (portCheckLocked); it runs
// every snapshotInterval until shutdown.
func (s *Server) filters() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range s.taps {
		s.filterLocked(d, "while running")
		s.portCheckLocked(d, "while running")
	}
}

// saveLocked writes state.json; s.mu is held. A failure is logged: the
// kernel state is right, only a restart would miss it.
func (s *Server) saveLocked() error {
	st := &state{Version: stateVersion, BPFFSDir: s.opts.BPFFSDir, TAPs: []tapState{}}
	for _, d := range s.taps {
		st.TAPs = append(st.TAPs, d.record())
	}
	for _, rec := range s.creating {
		st.TAPs = append(st.TAPs, rec)
	}
	sort.Slice(st.TAPs, func(i, j int) bool { return st.TAPs[i].Name < st.TAPs[j].Name })
	err := writeState(s.opts.StateDir, st)
	if err != nil {
		s.log.Error("saving state", "err", err)
	}
	for _, d := range s.taps {
		if d.flowsDirty {
			if ferr := writeFlows(s.opts.StateDir, d, d.flowSet); ferr != nil {
				s.log.Error("saving the copy of the TAP's flow rules", "tap", d.name, "err", ferr)
				err = errors.Join(err, ferr)
				continue
			}
			d.flowsDirty = false
		}
	}
	return err
}

// snapshots saves the state whenever a VMM has published a configuration
// through its own mapping since the last save, so that state.json holds
// what a TAP whose pins are lost must be steered by again. It runs every
// snapshotInterval until shutdown.
func (s *Server) snapshots() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range s.taps {
		if d.pub != nil && d.pub.Generation() != d.savedGen {
			s.saveLocked()
			return
		}
	}
}

// every calls fn every interval until shutdown.
func (s *Server) every(interval time.Duration, fn func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
			fn()
		}
	}
}

// forgetLocked drops d: closes what vrssd holds, removes its pins and
// records the change. s.mu is held.
func (s *Server) forgetLocked(d *device, why string) {
	// Before release, which lets the namespace go.
	key, netns := d.key(), d.netnsPath()
	d.release()
	s.removePins(key)
	s.removeFlowFiles(key)
	delete(s.taps, key)
	s.saveLocked()
	s.log.Info("forgot TAP", "tap", d.name, "netns", netns, "why", why)
}

// removeFlowFiles removes the flows file, guest file and port file of the
// TAP with key key, if any.
func (s *Server) removeFlowFiles(key string) {
	for _, f := range []struct{ path, what string }{
		{flowsPath(s.opts.StateDir, key), "the copy of the TAP's flow rules"},
		{guestPath(s.opts.StateDir, key), "the guest's saved virtio state"},
		{portPath(s.opts.StateDir, key), "the saved port policy"},
	} {
		if err := writeFlowsFile(f.path, nil); err != nil {
			s.log.Error("removing "+f.what, "tap", key, "err", err)
		}
	}
}

// checkLocked makes sure d's device still exists as the one vrssd knows,
// and forgets d if not. It also notes whether its queues are held
// elsewhere. A failing lookup that does not say the device is gone keeps
// d: better stale for a moment than dropped by mistake.
func (s *Server) checkLocked(d *device) bool {
	_, ok := s.linkLocked(d)
	return ok
}

// linkLocked is checkLocked, and returns the device's link too (nil if
// the lookup failed but d is kept). A TAP whose network namespace is
// gone is deleted and forgotten (netnsGoneLocked).
func (s *Server) linkLocked(d *device) (*kernel.Link, bool) {
	if s.netnsGoneLocked(d) {
		return nil, false
	}
	l, err := s.tapsOf(d).LinkByIndex(d.index)
	if errors.Is(err, kernel.ErrNoDevice) {
		s.forgetLocked(d, "deleted behind vrssd's back")
		return nil, false
	}
	if err != nil {
		s.log.Warn("netlink lookup", "tap", d.name, "err", err)
		return nil, true
	}
	if l.Name != d.name {
		s.forgetLocked(d, "renamed behind vrssd's back to "+l.Name)
		return nil, false
	}
	if l.Type == tuntap {
		s.queuesLocked(d, l)
	}
	return l, true
}

// watch forgets TAPs as soon as the kernel reports them deleted (or moved
// to another namespace, or renamed). Requests check too, so an event lost
// to a full socket buffer costs nothing but promptness; after one the
// subscription is renewed and every TAP checked.
func (s *Server) watch() {
	for {
		sub := make(chan struct{})
		ch := make(chan kernel.LinkUpdate, 256)
		err := s.opts.TAPs.WatchLinks(ch, sub, func(err error) {
			select {
			case <-sub: // closed on purpose
			default:
				s.log.Warn("link updates", "err", err)
			}
		})
		if err != nil {
			s.log.Error("subscribing to link updates", "err", err)
			close(sub)
		} else {
			s.checkAll()
			stopped := false
			for !stopped {
				select {
				case u, ok := <-ch:
					if !ok {
						stopped = true
						break
					}
					s.linkUpdate(u)
				case <-s.done:
					close(sub)
					for range ch {
					}
					return
				}
			}
			close(sub)
		}
		select {
		case <-s.done:
			return
		case <-time.After(time.Second):
		}
	}
}

func (s *Server) checkAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range s.taps {
		s.checkLocked(d)
	}
}

func (s *Server) linkUpdate(u kernel.LinkUpdate) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range s.taps {
		// Updates are of vrssd's own namespace, where indexes are its.
		if d.index != u.Index || d.netns != nil {
			continue
		}
		switch {
		case u.Deleted:
			s.forgetLocked(d, "deleted behind vrssd's back")
		case u.Link != nil && u.Link.Name != d.name:
			s.forgetLocked(d, "renamed behind vrssd's back to "+u.Link.Name)
		default:
			// tun announces every queue attached, detached, enabled or
			// disabled with a link update.
			if u.Link != nil && u.Link.Type == tuntap {
				s.queuesLocked(d, u.Link)
			}
		}
		return
	}
}

// raiseNofile raises the soft RLIMIT_NOFILE to the hard limit and returns
// it.
func raiseNofile() (uint64, error) {
	var l unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &l); err != nil {
		return 0, err
	}
	if l.Cur < l.Max {
		raised := unix.Rlimit{Cur: l.Max, Max: l.Max}
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &raised); err != nil {
			return l.Cur, err
		}
		l = raised
	}
	return l.Cur, nil
}

// privateMountNS reports whether vrssd runs in another mount namespace
// than init, where its mounts are invisible to (and outlived by) the host.
func privateMountNS() bool {
	var self, init unix.Stat_t
	if unix.Stat("/proc/self/ns/mnt", &self) != nil || unix.Stat("/proc/1/ns/mnt", &init) != nil {
		return false
	}
	return self.Ino != init.Ino || self.Dev != init.Dev
}
