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

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/agent/internal/wire"
	"github.com/vrss-dev/vrss/steering"
	"github.com/vrss-dev/vrss/tap"
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
	// helloTimeout bounds the wait for the first message, so that
	// connections that never say hello cannot use up MaxConns for long.
	helloTimeout = 10 * time.Second
)

// Options configure a Server. Zero values take the defaults.
type Options struct {
	Socket   string       // unix socket to listen on; api.DefaultSocket
	StateDir string       // where state.json lives; DefaultStateDir
	BPFFSDir string       // where programs and maps are pinned; DefaultBPFFSDir
	Policy   Policy       // who may do what besides root
	Logger   *slog.Logger // slog.Default() if nil
	Version  string       // the daemon's version, reported to clients
	// MaxConns bounds concurrent connections; further ones are answered
	// with CodeBusy and closed.
	MaxConns int
	// IdleTimeout closes a connection that sends nothing for this long.
	IdleTimeout time.Duration
	// ShutdownTimeout bounds how long Serve waits for requests in flight
	// once its context is done.
	ShutdownTimeout time.Duration
}

// Server is vrssd: it creates and adopts multi-queue TAPs, steers them
// with the vrss program, and hands their file descriptors to their owners
// over a unix socket.
type Server struct {
	opts Options
	log  *slog.Logger
	ln   *net.UnixListener
	lock *os.File // flock on the state directory

	mu   sync.Mutex // guards taps and state.json
	taps map[string]*device
	// qemuMu serialises QEMU runs and writes to the qemu-ebpf cache.
	qemuMu sync.Mutex

	connMu  sync.Mutex
	conns   map[*net.UnixConn]struct{}
	wg      sync.WaitGroup // connection goroutines
	closing atomic.Bool
	done    chan struct{} // closed on shutdown; stops the link watcher
	watchWG sync.WaitGroup
}

// New prepares a server: it makes sure the bpffs directory is on a bpf
// filesystem, re-adopts the TAPs recorded in the state directory (cleaning
// up those that are gone), and listens on the socket. Serve then answers
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
	var err error
	s := &Server{
		opts: o, log: o.Logger,
		taps: map[string]*device{}, conns: map[*net.UnixConn]struct{}{},
		done: make(chan struct{}),
	}
	if err := os.MkdirAll(o.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
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
	fail := func(err error) (*Server, error) {
		s.ln.Close()
		s.lock.Close()
		return nil, err
	}
	mounted, err := ensureBPFFS(o.BPFFSDir)
	if err != nil {
		return fail(fmt.Errorf("bpffs directory: %w", err))
	}
	if mounted != "" {
		s.log.Info("mounted a bpf filesystem", "dir", mounted)
		if privateMountNS() {
			s.log.Warn("the bpf filesystem vrssd mounted is in a private mount namespace (a sandboxed service?): its pins vanish when vrssd exits, and a restarted vrssd cannot re-adopt its TAPs; mount one on the host first", "dir", mounted)
		}
	}
	if err := s.restore(); err != nil {
		s.releaseAll()
		return fail(err)
	}
	s.watchWG.Go(s.watch)
	s.log.Info("vrssd ready", "socket", o.Socket, "state_dir", o.StateDir, "bpffs_dir", o.BPFFSDir,
		"taps", len(s.taps), "abi", steering.ABIStamp(), "version", o.Version)
	return s, nil
}

// lockState takes an exclusive lock on the state directory for the life
// of the process.
func lockState(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
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

// listen listens on path, replacing a stale socket file but never a live
// socket or anything that is not a socket.
func listen(path string) (*net.UnixListener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("socket directory: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		if c, err := net.Dial("unixpacket", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("another vrssd is listening on %s", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	}
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		return nil, err
	}
	// Anyone may connect: every request is authorised by the peer's
	// credentials.
	if err := os.Chmod(path, 0o666); err != nil {
		ln.Close()
		return nil, err
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
		if !s.track(c) {
			s.log.Warn("refused a connection: at the connection limit", "limit", s.opts.MaxConns)
			s.reply(c, &api.Response{Error: api.Errorf(api.CodeBusy, "vrssd is serving %d connections, its limit", s.opts.MaxConns)}, nil)
			c.Close()
			continue
		}
		go func() {
			defer s.wg.Done()
			s.serveConn(c)
		}()
	}
}

// track registers a new connection, unless the server is at its limit or
// shutting down. Under connMu, so that no wg.Add can follow shutdown's
// wg.Wait.
func (s *Server) track(c *net.UnixConn) bool {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	if len(s.conns) >= s.opts.MaxConns || s.closing.Load() {
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Server) untrack(c *net.UnixConn) {
	s.connMu.Lock()
	delete(s.conns, c)
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
	s.lock.Close()
	s.log.Info("vrssd stopped; TAPs and steering stay in place", "taps", len(s.taps))
}

// releaseAll closes every fd vrssd holds, leaving the kernel objects.
func (s *Server) releaseAll() {
	for _, d := range s.taps {
		d.release()
	}
}

// session is one connection's state.
type session struct {
	peer  *peer
	hello bool
}

func (s *Server) serveConn(c *net.UnixConn) {
	defer s.untrack(c)
	p, err := peerOf(c)
	if err != nil {
		s.log.Warn("connection without credentials", "err", err)
		return
	}
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
		resp, fds, keep := s.handle(ss, m)
		// No request keeps a received fd: close them all.
		wire.CloseFDs(m.FDs)
		err = s.reply(c, resp, fds)
		wire.CloseFDs(fds)
		if err != nil {
			s.log.Debug("send response", "uid", p.uid, "pid", p.pid, "err", err)
			return
		}
		if !keep {
			return
		}
	}
}

func (s *Server) reply(c *net.UnixConn, r *api.Response, fds []int) error {
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
	return wire.Send(c, b, fds)
}

// handle answers one message. keep is false when the connection must be
// closed after the answer: the handshake failed.
func (s *Server) handle(ss *session, m wire.Message) (resp *api.Response, fds []int, keep bool) {
	p := ss.peer
	fail := func(id uint64, op api.Op, name string, err error) *api.Response {
		var ae *api.Error
		if !errors.As(err, &ae) {
			ae = api.Errorf(api.CodeInternal, "%v", err)
		}
		level := slog.LevelWarn
		if ae.Code == api.CodeInternal {
			level = slog.LevelError
		}
		s.log.Log(context.Background(), level, "refused", "uid", p.uid, "pid", p.pid, "op", op, "tap", name, "code", ae.Code, "reason", ae.Message)
		return &api.Response{ID: id, Error: ae}
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
	name := argName(req.Args)
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
	if len(m.FDs) > 0 && req.Op != api.OpAdopt {
		return fail(req.ID, req.Op, name, api.Errorf(api.CodeBadRequest, "%s takes no file descriptors, %d attached", req.Op, len(m.FDs))), nil, true
	}
	s.log.Debug("request", "uid", p.uid, "pid", p.pid, "op", req.Op, "tap", name)
	res, fds, err := h(s, p, req.Args, m.FDs)
	if err != nil {
		wire.CloseFDs(fds)
		return fail(req.ID, req.Op, name, err), nil, true
	}
	return result(req.ID, res), fds, true
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
// programs and maps, re-opens their queues unless another process holds
// them, and cleans up after those that are gone. Pin directories no TAP
// owns (a crash between pinning and saving) are removed.
func (s *Server) restore() error {
	st, err := readState(s.opts.StateDir)
	if err != nil {
		return err
	}
	for _, rec := range st.TAPs {
		d, err := s.readopt(rec)
		if err != nil {
			s.log.Warn("dropping a TAP from the state", "tap", rec.Name, "reason", err)
			os.RemoveAll(filepath.Join(s.opts.BPFFSDir, rec.Name))
			continue
		}
		s.taps[d.name] = d
		s.log.Info("re-adopted", "tap", d.name, "queues", d.queues, "held_elsewhere", d.dev == nil, "steering", d.steering)
	}
	ents, err := os.ReadDir(s.opts.BPFFSDir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		// Only directories are ours: a new bpffs also holds the kernel's
		// own maps.debug and progs.debug.
		if _, ok := s.taps[e.Name()]; !ok && e.IsDir() {
			s.log.Warn("removing pins no TAP owns", "path", filepath.Join(s.opts.BPFFSDir, e.Name()))
			os.RemoveAll(filepath.Join(s.opts.BPFFSDir, e.Name()))
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.saveLocked()
}

func (s *Server) readopt(rec tapState) (*device, error) {
	l, err := netlink.LinkByName(rec.Name)
	if err != nil {
		return nil, fmt.Errorf("the device is gone: %w", err)
	}
	t, err := asTAP(l)
	if err != nil {
		return nil, err
	}
	if t.Index != rec.Index {
		return nil, fmt.Errorf("the device was replaced (ifindex %d, recorded %d)", t.Index, rec.Index)
	}
	prog, err := loadPinned(filepath.Join(s.opts.BPFFSDir, rec.Name))
	if err != nil {
		return nil, fmt.Errorf("pinned program: %w", err)
	}
	d := &device{
		name: rec.Name, index: rec.Index, queues: rec.Queues, vnetHdrLen: rec.VnetHdrLen,
		owner: rec.OwnerUID, group: rec.OwnerGID, steering: rec.Steering, adopted: rec.Adopted,
		abi: rec.ABI, hash: rec.HashReport, prog: prog,
	}
	if rec.ABI == steering.ABIStamp() {
		if d.pub, err = steering.NewPublisher(prog.ConfigMap.FD(), rec.Queues); err != nil {
			prog.Close()
			return nil, err
		}
	} else {
		s.log.Error("TAP is steered by a program of another vrssd build; it keeps steering as configured, but vrssd will not touch its maps: delete and re-create it to upgrade",
			"tap", rec.Name, "abi", rec.ABI, "daemon_abi", steering.ABIStamp())
	}
	// Attaching queues while a VMM holds some would change the number of
	// queues, and with it every packet's queue (the program's answer is
	// taken modulo that number).
	if n := attached(t); n > 0 {
		d.elsewhere = true
		s.log.Info("another process holds the TAP's queues; open is refused until it releases them", "tap", rec.Name, "attached", n)
	} else if d.dev, err = tap.Open(rec.Name, rec.Queues, rec.VnetHdrLen); err != nil {
		s.log.Warn("re-opening queues", "tap", rec.Name, "err", err)
	}
	return d, nil
}

// saveLocked writes state.json; s.mu is held. A failure is logged: the
// kernel state is right, only a restart would miss it.
func (s *Server) saveLocked() error {
	st := &state{Version: stateVersion, TAPs: []tapState{}}
	for _, d := range s.taps {
		st.TAPs = append(st.TAPs, d.record())
	}
	sort.Slice(st.TAPs, func(i, j int) bool { return st.TAPs[i].Name < st.TAPs[j].Name })
	err := writeState(s.opts.StateDir, st)
	if err != nil {
		s.log.Error("saving state", "err", err)
	}
	return err
}

// forgetLocked drops d: closes what vrssd holds, removes its pins and
// records the change. s.mu is held.
func (s *Server) forgetLocked(d *device, why string) {
	d.release()
	if err := os.RemoveAll(filepath.Join(s.opts.BPFFSDir, d.name)); err != nil {
		s.log.Error("removing pins", "tap", d.name, "err", err)
	}
	delete(s.taps, d.name)
	s.saveLocked()
	s.log.Info("forgot TAP", "tap", d.name, "why", why)
}

// checkLocked makes sure d's device still exists as the one vrssd knows,
// and forgets d if not. It also notes whether its queues are held
// elsewhere. A failing lookup that does not say the device is gone keeps
// d: better stale for a moment than dropped by mistake.
func (s *Server) checkLocked(d *device) bool {
	l, err := netlink.LinkByIndex(d.index)
	if _, ok := err.(netlink.LinkNotFoundError); ok {
		s.forgetLocked(d, "deleted behind vrssd's back")
		return false
	}
	if err != nil {
		s.log.Warn("netlink lookup", "tap", d.name, "err", err)
		return true
	}
	if l.Attrs().Name != d.name {
		s.forgetLocked(d, "renamed behind vrssd's back to "+l.Attrs().Name)
		return false
	}
	if t, ok := l.(*netlink.Tuntap); ok && d.dev == nil {
		d.elsewhere = attached(t) > 0
	}
	return true
}

// watch forgets TAPs as soon as the kernel reports them deleted (or moved
// to another namespace, or renamed). Requests check too, so an event lost
// to a full socket buffer costs nothing but promptness; after one the
// subscription is renewed and every TAP checked.
func (s *Server) watch() {
	for {
		sub := make(chan struct{})
		ch := make(chan netlink.LinkUpdate, 256)
		err := netlink.LinkSubscribeWithOptions(ch, sub, netlink.LinkSubscribeOptions{
			ErrorCallback: func(err error) {
				select {
				case <-sub: // closed on purpose
				default:
					s.log.Warn("link updates", "err", err)
				}
			},
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

func (s *Server) linkUpdate(u netlink.LinkUpdate) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range s.taps {
		if d.index != int(u.Index) {
			continue
		}
		switch {
		case u.Header.Type == unix.RTM_DELLINK:
			s.forgetLocked(d, "deleted behind vrssd's back")
		case u.Link != nil && u.Link.Attrs().Name != d.name:
			s.forgetLocked(d, "renamed behind vrssd's back to "+u.Link.Attrs().Name)
		}
		return
	}
}
