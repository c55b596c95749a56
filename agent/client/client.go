// Package client is the Go client of vrssd: a typed call for every
// operation of the protocol in package api.
//
// Dial connects and performs the handshake, which carries this build's ABI
// stamp (steering.ABIStamp): a daemon built against another program or map
// layout refuses it, and Dial returns that refusal as an *api.Error with
// api.CodeABIMismatch. Every refusal by the daemon is an *api.Error; use
// errors.As to read its Code.
//
// After Open, a VMM publishes its guest's RSS configurations through
// Handle.Publisher, which writes the mmapped configuration map directly:
// no system call, no CAP_BPF, no round trip to the daemon.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/agent/internal/wire"
	"github.com/vrss-dev/vrss/rss"
	"github.com/vrss-dev/vrss/steering"
)

// Client is a connection to vrssd. Its methods may be called from several
// goroutines; requests are sent one at a time.
type Client struct {
	mu   sync.Mutex
	path string
	conn *net.UnixConn
	// broken: the daemon closed the connection and reconnecting failed;
	// the next call tries again. closed: Close was called.
	broken, closed bool
	bufs           *wire.Buffers
	id             uint64
	hello          api.HelloResult
}

// SocketPath returns the socket Dial uses for path "": $VRSS_SOCKET if set,
// else api.DefaultSocket.
func SocketPath() string {
	if p := os.Getenv(api.EnvSocket); p != "" {
		return p
	}
	return api.DefaultSocket
}

// Dial connects to vrssd at path ("" for SocketPath()) and performs the
// handshake. ctx bounds both. A daemon that refuses the connection (at its
// connection limit, say) answers why: Dial returns that answer as an
// *api.Error.
func Dial(ctx context.Context, path string) (*Client, error) {
	if path == "" {
		path = SocketPath()
	}
	c := &Client{path: path, bufs: wire.NewBuffers()}
	if err := c.connectLocked(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// connectLocked (re)connects and performs the handshake; c.mu is held or
// c not yet shared.
func (c *Client) connectLocked(ctx context.Context) error {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unixpacket", c.path)
	if err != nil {
		return fmt.Errorf("vrssd: connect to %s: %w", c.path, err)
	}
	c.conn = nc.(*net.UnixConn)
	args := api.HelloArgs{Protocol: api.ProtocolVersion, ABI: steering.ABIStamp(), Client: clientName()}
	var hello api.HelloResult
	if _, err := c.callLocked(ctx, api.OpHello, args, nil, &hello, false); err != nil {
		c.conn.Close()
		return err
	}
	if hello.ABI != steering.ABIStamp() {
		c.conn.Close()
		return api.Errorf(api.CodeABIMismatch, "daemon has steering ABI %q, this client %q", hello.ABI, steering.ABIStamp())
	}
	c.hello, c.broken = hello, false
	return nil
}

func clientName() string {
	exe, _ := os.Executable()
	return fmt.Sprintf("vrss/agent/client pid %d %s", os.Getpid(), exe)
}

// Server returns the daemon's answer to the handshake: its version and
// ABI, and the uid it sees this client as.
func (c *Client) Server() api.HelloResult {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hello
}

// Close closes the connection. Handles opened through it stay valid.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return c.conn.Close()
}

// Call sends one request with files attached and decodes the result into
// result (if not nil). Descriptors that come with the answer are returned;
// the caller owns them. The typed methods are built on it; it is there
// for operations this package does not know yet.
func (c *Client) Call(ctx context.Context, op api.Op, args any, files []*os.File, result any) ([]*os.File, error) {
	fds := make([]int, 0, len(files))
	for _, f := range files {
		rc, err := f.SyscallConn()
		if err != nil {
			return nil, err
		}
		// The raw fd is only needed while sending; Fd would make f blocking.
		if err := rc.Control(func(fd uintptr) { fds = append(fds, int(fd)) }); err != nil {
			return nil, err
		}
	}
	got, err := c.call(ctx, op, args, fds, result)
	// The fds were used by number: the files must not be collected and
	// closed before they were sent.
	runtime.KeepAlive(files)
	if err != nil {
		return nil, err
	}
	out := make([]*os.File, len(got))
	for i, fd := range got {
		out[i] = os.NewFile(uintptr(fd), fmt.Sprintf("vrssd:%s:fd%d", op, i))
	}
	return out, nil
}

// call performs one request; the returned fds belong to the caller. If
// the daemon had closed the connection (its idle timeout, or a restart)
// before the request was sent, it reconnects and sends it again: a request
// that was never delivered is safe to send again, whatever it does.
func (c *Client) call(ctx context.Context, op api.Op, args any, fds []int, result any) ([]int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.callLocked(ctx, op, args, fds, result, true)
}

// connGone reports whether a send failed because the daemon had closed
// the connection: the message was not delivered.
func connGone(err error) bool {
	return errors.Is(err, unix.EPIPE) || errors.Is(err, unix.ECONNRESET) || errors.Is(err, unix.ENOTCONN)
}

// pendingError returns the daemon's last word on a connection it closed,
// if it left one (a refusal at its connection limit, say).
func (c *Client) pendingError() *api.Error {
	c.conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	defer c.conn.SetReadDeadline(time.Time{})
	m, err := wire.Recv(c.conn, c.bufs)
	if err != nil {
		return nil
	}
	wire.CloseFDs(m.FDs)
	var resp api.Response
	if json.Unmarshal(m.Data, &resp) != nil {
		return nil
	}
	return resp.Error
}

func (c *Client) callLocked(ctx context.Context, op api.Op, args any, fds []int, result any, retry bool) ([]int, error) {
	if retry && c.broken && !c.closed {
		// The last reconnect failed: try again, once per call.
		if err := c.connectLocked(ctx); err != nil {
			return nil, fmt.Errorf("vrssd: %s: the connection was closed, and reconnecting failed: %w", op, err)
		}
	}
	c.id++
	req := api.Request{ID: c.id, Op: op}
	if args != nil {
		b, err := json.Marshal(args)
		if err != nil {
			return nil, fmt.Errorf("vrssd: %s arguments: %w", op, err)
		}
		req.Args = b
	}
	b, err := api.Encode(&req)
	if err != nil {
		return nil, err
	}
	// The deadline applies to the socket; a cancelled ctx interrupts it.
	deadline, _ := ctx.Deadline()
	conn := c.conn // a reconnect replaces c.conn; the callback keeps this one
	conn.SetDeadline(deadline)
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		conn.SetDeadline(time.Unix(1, 0))
		close(fired)
	})
	defer func() {
		// Wait for a cancellation in progress, so that it cannot move
		// the next request's deadline.
		if !stop() {
			<-fired
		}
	}()
	wrap := func(err error) error {
		if ctx.Err() != nil {
			return fmt.Errorf("vrssd: %s: %w", op, ctx.Err())
		}
		// The socket's deadline may fire a moment before ctx's timer.
		if errors.Is(err, os.ErrDeadlineExceeded) && !deadline.IsZero() && !time.Now().Before(deadline) {
			return fmt.Errorf("vrssd: %s: %w", op, context.DeadlineExceeded)
		}
		return fmt.Errorf("vrssd: %s: %w", op, err)
	}
	if err := wire.Send(c.conn, b, fds); err != nil {
		if !connGone(err) {
			return nil, wrap(err)
		}
		if ae := c.pendingError(); ae != nil {
			return nil, ae
		}
		if !retry {
			return nil, wrap(fmt.Errorf("vrssd closed the connection: %w", err))
		}
		c.conn.Close()
		if err := c.connectLocked(ctx); err != nil {
			c.broken = true
			return nil, fmt.Errorf("vrssd: %s: the connection was closed (vrssd's idle timeout, or a restart), and reconnecting failed: %w", op, err)
		}
		return c.callLocked(ctx, op, args, fds, result, false)
	}
	for {
		m, err := wire.Recv(c.conn, c.bufs)
		if errors.Is(err, unix.ECONNRESET) {
			// The daemon answered and closed before reading all we
			// sent (a refusal at its connection limit): the reset is
			// reported first, its answer is still there to read.
			if ae := c.pendingError(); ae != nil {
				return nil, ae
			}
		}
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("vrssd: %s: vrssd closed the connection before answering (it stopped, or timed the connection out): the request may or may not have been carried out", op)
		}
		if err != nil {
			return nil, wrap(err)
		}
		if m.TooLarge || m.FDsTruncated {
			wire.CloseFDs(m.FDs)
			return nil, wrap(errors.New("oversized response"))
		}
		var resp api.Response
		if err := json.Unmarshal(m.Data, &resp); err != nil {
			wire.CloseFDs(m.FDs)
			return nil, wrap(fmt.Errorf("malformed response: %w", err))
		}
		// An answer to an earlier request that timed out: drop it. An
		// error with ID 0 answers a request the daemon could not parse.
		if resp.ID != req.ID && !(resp.ID == 0 && resp.Error != nil) {
			wire.CloseFDs(m.FDs)
			continue
		}
		if resp.Error != nil {
			wire.CloseFDs(m.FDs)
			return nil, resp.Error
		}
		if len(m.FDs) != resp.FDs {
			wire.CloseFDs(m.FDs)
			return nil, wrap(fmt.Errorf("response announces %d fds, %d arrived", resp.FDs, len(m.FDs)))
		}
		if result != nil && len(resp.Result) > 0 {
			if err := json.Unmarshal(resp.Result, result); err != nil {
				wire.CloseFDs(m.FDs)
				return nil, wrap(fmt.Errorf("result: %w", err))
			}
		}
		return m.FDs, nil
	}
}

// Version describes the daemon.
func (c *Client) Version(ctx context.Context) (api.VersionResult, error) {
	var r api.VersionResult
	_, err := c.call(ctx, api.OpVersion, nil, nil, &r)
	return r, err
}

// Create asks for a new persistent multi-queue TAP with steering attached.
// Unset owner fields default to the caller's uid and gid.
func (c *Client) Create(ctx context.Context, a api.CreateArgs) (api.TAP, error) {
	var t api.TAP
	_, err := c.call(ctx, api.OpCreate, a, nil, &t)
	return t, err
}

// Adopt puts an existing TAP under vrssd by name; no process may hold its
// queues (a.FromFD must be false; see AdoptFD).
func (c *Client) Adopt(ctx context.Context, a api.AdoptArgs) (api.TAP, error) {
	var t api.TAP
	_, err := c.call(ctx, api.OpAdopt, a, nil, &t)
	return t, err
}

// AdoptFD puts the TAP that queue is a queue of under vrssd, for a caller
// that holds its queues. The daemon attaches steering through queue and
// does not keep it.
func (c *Client) AdoptFD(ctx context.Context, a api.AdoptArgs, queue *os.File) (api.TAP, error) {
	a.FromFD = true
	var t api.TAP
	_, err := c.Call(ctx, api.OpAdopt, a, []*os.File{queue}, &t)
	return t, err
}

// Netns is the client's view of the TAPs of one network namespace
// (api.CreateArgs.Netns): its methods are the Client's methods of the same
// names, for the TAP of that name in that namespace.
type Netns struct {
	c    *Client
	path string
}

// Netns returns the view of the TAPs in the network namespace path names
// (/var/run/netns/NAME, /proc/PID/ns/net); "" is vrssd's own namespace,
// which the Client's own methods use.
func (c *Client) Netns(path string) *Netns { return &Netns{c: c, path: path} }

// SetRSS publishes cfg as the TAP's RSS configuration. A configuration the
// steering program cannot hold is refused with api.CodeInvalidConfig.
func (c *Client) SetRSS(ctx context.Context, name string, cfg rss.Config) (api.SetRSSResult, error) {
	return c.Netns("").SetRSS(ctx, name, cfg)
}

// SetRSS is Client.SetRSS in n.
func (n *Netns) SetRSS(ctx context.Context, name string, cfg rss.Config) (api.SetRSSResult, error) {
	var r api.SetRSSResult
	_, err := n.c.call(ctx, api.OpSetRSS, api.SetRSSArgs{Name: name, Netns: n.path, Config: &cfg}, nil, &r)
	return r, err
}

// SetVirtioRSS applies a VIRTIO_NET_CTRL_MQ_RSS_CONFIG command body as a
// guest sent it. The result's Ack is what the VMM answers the guest; a
// refused configuration (Ack virtio.AckErr) changes nothing and is not an
// error.
func (c *Client) SetVirtioRSS(ctx context.Context, name string, cmd []byte) (api.SetRSSResult, error) {
	var r api.SetRSSResult
	_, err := c.call(ctx, api.OpSetRSS, api.SetRSSArgs{Name: name, VirtioRSS: nonNil(cmd)}, nil, &r)
	return r, err
}

// SetVirtioHash records a VIRTIO_NET_CTRL_MQ_HASH_CONFIG command body (hash
// reporting only; it does not steer), answered like SetVirtioRSS.
func (c *Client) SetVirtioHash(ctx context.Context, name string, cmd []byte) (api.SetRSSResult, error) {
	var r api.SetRSSResult
	_, err := c.call(ctx, api.OpSetRSS, api.SetRSSArgs{Name: name, VirtioHash: nonNil(cmd)}, nil, &r)
	return r, err
}

// nonNil keeps an empty command distinguishable from an absent one.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// GetRSS returns the configuration the TAP is steered by, read from its
// map, so it includes what a VMM published through its own mapping.
func (c *Client) GetRSS(ctx context.Context, name string) (api.RSSState, error) {
	return c.Netns("").GetRSS(ctx, name)
}

// GetRSS is Client.GetRSS in n.
func (n *Netns) GetRSS(ctx context.Context, name string) (api.RSSState, error) {
	var r api.RSSState
	_, err := n.c.call(ctx, api.OpGetRSS, n.args(name), nil, &r)
	return r, err
}

// args names the TAP name of n.
func (n *Netns) args(name string) api.NameArgs { return api.NameArgs{Name: name, Netns: n.path} }

// Stats returns the TAP's steering counters.
func (c *Client) Stats(ctx context.Context, name string) (api.Stats, error) {
	return c.Netns("").Stats(ctx, name)
}

// Stats is Client.Stats in n.
func (n *Netns) Stats(ctx context.Context, name string) (api.Stats, error) {
	var r api.Stats
	_, err := n.c.call(ctx, api.OpStats, n.args(name), nil, &r)
	return r, err
}

// Detach removes the steering program from the TAP; the TAP, its maps and
// its configuration stay.
func (c *Client) Detach(ctx context.Context, name string) (api.TAP, error) {
	return c.Netns("").Detach(ctx, name)
}

// Detach is Client.Detach in n.
func (n *Netns) Detach(ctx context.Context, name string) (api.TAP, error) {
	var t api.TAP
	_, err := n.c.call(ctx, api.OpDetach, n.args(name), nil, &t)
	return t, err
}

// Attach attaches the TAP's steering program again, after Detach or after
// a VMM removed it.
func (c *Client) Attach(ctx context.Context, name string) (api.TAP, error) {
	return c.Netns("").Attach(ctx, name)
}

// Attach is Client.Attach in n.
func (n *Netns) Attach(ctx context.Context, name string) (api.TAP, error) {
	var t api.TAP
	_, err := n.c.call(ctx, api.OpAttach, n.args(name), nil, &t)
	return t, err
}

// Delete removes the TAP, its program and its pins.
func (c *Client) Delete(ctx context.Context, name string) error {
	return c.Netns("").Delete(ctx, name)
}

// Delete is Client.Delete in n.
func (n *Netns) Delete(ctx context.Context, name string) error {
	_, err := n.c.call(ctx, api.OpDelete, n.args(name), nil, nil)
	return err
}

// List returns the TAPs the caller may see: its own, or all for root and
// admins.
func (c *Client) List(ctx context.Context) ([]api.TAP, error) {
	var r api.ListResult
	_, err := c.call(ctx, api.OpList, nil, nil, &r)
	return r.TAPs, err
}

// QEMUEBPF asks vrssd for QEMU's own eBPF RSS steering program and maps,
// for a QEMU (9.0 or later) that will run on the TAP name with the
// ebpf-rss-fds property: the daemon obtains the object from the QEMU binary
// at qemuPath (which its configuration must allow) over QMP request-ebpf,
// loads it, and hands over four files in the order ebpf-rss-fds takes them:
// program, configuration map, Toeplitz key map, indirection table map. The
// caller must own the TAP (or be root or an admin). vrss's own program is
// detached from the TAP, since QEMU attaches its program itself when its
// guest enables RSS. A QEMU without request-ebpf is refused with
// api.CodeUnavailable and a message naming the version required.
func (c *Client) QEMUEBPF(ctx context.Context, name, qemuPath string) (api.QEMUEBPFResult, []*os.File, error) {
	// The daemon compares the path with its allowlist without looking it
	// up (a lookup as root would tell the caller about paths it cannot
	// see): resolve links here, as the caller, so that a QEMU reached
	// through a link to an allowed binary is accepted.
	if p, err := filepath.EvalSymlinks(qemuPath); err == nil && filepath.IsAbs(qemuPath) {
		qemuPath = p
	}
	var r api.QEMUEBPFResult
	fds, err := c.call(ctx, api.OpQEMUEBPF, api.QEMUEBPFArgs{Name: name, QEMU: qemuPath}, nil, &r)
	if err != nil {
		return r, nil, err
	}
	if len(fds) != 1+len(r.Maps) || len(r.Maps) != 3 {
		wire.CloseFDs(fds)
		return r, nil, fmt.Errorf("vrssd: qemu_ebpf %s: %d fds for a program and %d maps, want 4", name, len(fds), len(r.Maps))
	}
	files := make([]*os.File, len(fds))
	files[0] = os.NewFile(uintptr(fds[0]), "bpf-prog:"+r.Program)
	for i, m := range r.Maps {
		files[i+1] = os.NewFile(uintptr(fds[i+1]), "bpf-map:"+m)
	}
	return r, files, nil
}

// Handle is what Open hands a TAP's owner.
type Handle struct {
	TAP api.TAP
	// Queues are the TAP's queue fds in queue order (none after
	// OpenConfig). They are nonblocking and registered with the runtime
	// poller, so read deadlines work; each Read returns one frame after
	// the vnet header.
	Queues []*os.File
	// ConfigMap is the steering program's configuration map.
	ConfigMap *os.File
	// Publisher writes configurations through ConfigMap's memory mapping.
	// There must be one publisher per TAP at a time: after Open, publish
	// here or through the daemon (SetRSS), not both at once. On a TAP
	// with flows (Publisher.Flows), Publish keeps the rules and RSS
	// contexts, and PublishSet replaces everything (the host's rules
	// too: read Publisher.Set first to keep them).
	Publisher *steering.Publisher
}

// Open hands the caller, who must own the TAP (or be root or an admin),
// the TAP's queue fds and its configuration map, mapped for publishing.
func (c *Client) Open(ctx context.Context, name string) (*Handle, error) {
	return c.open(ctx, api.OpenArgs{Name: name})
}

// Open is Client.Open in n.
func (n *Netns) Open(ctx context.Context, name string) (*Handle, error) {
	return n.c.open(ctx, api.OpenArgs{Name: name, Netns: n.path})
}

// OpenConfig is Open for a VMM that already holds the queues: it hands
// only the configuration map.
func (c *Client) OpenConfig(ctx context.Context, name string) (*Handle, error) {
	return c.open(ctx, api.OpenArgs{Name: name, ConfigOnly: true})
}

func (c *Client) open(ctx context.Context, a api.OpenArgs) (*Handle, error) {
	var r api.OpenResult
	fds, err := c.call(ctx, api.OpOpen, a, nil, &r)
	if err != nil {
		return nil, err
	}
	if len(fds) != r.QueueFDs+1 {
		wire.CloseFDs(fds)
		return nil, fmt.Errorf("vrssd: open %s: %d fds for %d queues and the map", a.Name, len(fds), r.QueueFDs)
	}
	files := make([]*os.File, len(fds))
	for i, fd := range fds {
		if i < r.QueueFDs {
			// Nonblocking, so that the runtime poller takes the queue
			// and read deadlines work. (The flag belongs to the open
			// file, which the daemon shares but never reads.)
			unix.SetNonblock(fd, true)
			files[i] = os.NewFile(uintptr(fd), fmt.Sprintf("tap:%s:q%d", a.Name, i))
		} else {
			files[i] = os.NewFile(uintptr(fd), fmt.Sprintf("vrss:%s:config", a.Name))
		}
	}
	h := &Handle{TAP: r.TAP}
	fail := func(err error) (*Handle, error) {
		for _, f := range files {
			f.Close()
		}
		return nil, err
	}
	switch {
	case r.ABI != steering.ABIStamp():
		return fail(api.Errorf(api.CodeABIMismatch, "TAP %s has steering ABI %q, this client %q", a.Name, r.ABI, steering.ABIStamp()))
	case r.ConfigSize != steering.ConfigSize && r.ConfigSize != steering.FlowConfigSize:
		return fail(api.Errorf(api.CodeABIMismatch, "TAP %s has a %d-byte configuration map, this client expects %d (or %d with flows)", a.Name, r.ConfigSize, steering.ConfigSize, steering.FlowConfigSize))
	}
	h.Queues, h.ConfigMap = files[:r.QueueFDs], files[r.QueueFDs]
	rc, err := h.ConfigMap.SyscallConn()
	if err != nil {
		return fail(err)
	}
	var perr error
	if err := rc.Control(func(fd uintptr) { h.Publisher, perr = steering.NewPublisher(int(fd), r.TAP.Queues) }); err != nil {
		return fail(err)
	}
	if perr != nil {
		return fail(perr)
	}
	if h.Publisher.Flows() != (r.ConfigSize == steering.FlowConfigSize) {
		h.Publisher.Close()
		return fail(api.Errorf(api.CodeABIMismatch, "TAP %s: the configuration map handed over is not the %d-byte map announced", a.Name, r.ConfigSize))
	}
	return h, nil
}

// Close unmaps the configuration map and closes every fd. Steering goes on
// with the last published configuration.
func (h *Handle) Close() error {
	var errs []error
	if h.Publisher != nil {
		errs = append(errs, h.Publisher.Close())
	}
	for _, f := range h.Queues {
		errs = append(errs, f.Close())
	}
	if h.ConfigMap != nil {
		errs = append(errs, h.ConfigMap.Close())
	}
	return errors.Join(errs...)
}
