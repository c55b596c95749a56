package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/internal/fd"
	"github.com/vrss-dev/vrss/qemu/ebpfrss"
	"github.com/vrss-dev/vrss/qemu/qmp"
)

// QEMUEBPFMinVersion is the first QEMU with request-ebpf and ebpf-rss-fds,
// which return and take its eBPF RSS object (see package ebpfrss).
const QEMUEBPFMinVersion = qmp.EBPFMinVersion

// qmpTimeout bounds one conversation with a QEMU started to ask for its
// object: it starts with qmp.StdioArgs (-machine none), so it answers in
// well under a second even on a loaded machine.
const qmpTimeout = 30 * time.Second

// qemuEBPFCacheDir is where objects are cached, under the state directory,
// named by the digest of the QEMU binary they came from.
const qemuEBPFCacheDir = "qemu-ebpf"

// qemuEBPF loads the eBPF RSS program and maps of the QEMU binary the peer
// names, for a TAP the peer may use, and hands over their fds. It detaches
// vrss's own program from the TAP: QEMU attaches its program itself.
func (s *Server) qemuEBPF(p *peer, raw json.RawMessage, _ []*fd.FD) (any, []*fd.FD, error) {
	var a api.QEMUEBPFArgs
	if err := api.DecodeArgs(raw, &a); err != nil {
		return nil, nil, err
	}
	// Authorise before doing anything slow; the lookup is repeated once
	// the object is loaded, since the TAP may be gone by then.
	s.mu.Lock()
	_, err := s.lookupLocked(p, a.Name)
	s.mu.Unlock()
	if err != nil {
		return nil, nil, err
	}
	resolved, err := resolveQEMU(a.QEMU, s.opts.Policy.qemuBinaries())
	if err != nil {
		return nil, nil, err
	}
	obj, err := s.qemuObject(resolved)
	if err != nil {
		return nil, nil, err
	}
	res, fds, err := loadQEMUObject(obj.data)
	if err != nil {
		return nil, nil, api.Errorf(api.CodeUnavailable, "QEMU %s's eBPF RSS object (%s): %v", obj.version, obj.digest, err)
	}
	closeFDs := func() { fd.CloseAll(fds) }
	res.QEMU, res.QEMUVersion, res.QEMUPackage, res.Digest, res.Cached = resolved, obj.version, obj.pkg, obj.digest, obj.cached

	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.lookupLocked(p, a.Name)
	if err != nil {
		closeFDs()
		return nil, nil, err
	}
	// Two programs cannot steer one TAP: QEMU replaces whatever is
	// attached when its guest enables RSS, and detaches it when RSS is
	// turned off. Detach vrss's now, so that vrssd's state says so.
	if d.steering {
		if err := s.controlLocked(d); err != nil {
			closeFDs()
			return nil, nil, err
		}
		if err := d.ctl.SetSteering(nil); err != nil {
			closeFDs()
			return nil, nil, err
		}
		// With vrss's program goes its flow filter: QEMU's program
		// steers by the guest's configuration alone.
		if d.flows && d.prog != nil {
			if err := d.prog.DetachFilter(d.linkPin(s.opts.BPFFSDir)); err != nil {
				s.log.Warn("detaching the flow filter", "tap", d.name, "err", err)
			}
		}
		d.steering = false
		res.SteeringDetached = true
		s.saveLocked()
	}
	res.TAP = d.info()
	s.log.Info("handed QEMU's eBPF RSS program", "tap", d.name, "uid", p.uid, "pid", p.pid, "qemu", resolved,
		"qemu_version", obj.version, "digest", obj.digest, "cached", obj.cached, "program_id", res.ProgramID,
		"vrss_steering_detached", res.SteeringDetached)
	return res, fds, nil
}

// resolveQEMU returns the file vrssd runs for the QEMU binary path a
// client names: path must be, as written, an entry of the allowlist or
// the file an entry resolves to (symbolic links are resolved on the
// allowlist's side only). The client's path is never looked up: vrssd
// resolves paths as root, so any answer that depended on what is at path
// (no such file, permission denied, a link to somewhere) would tell the
// client about files it may not see. Every path not listed gets the same
// refusal, and vrssd runs nothing a client chose.
func resolveQEMU(path string, allow []string) (string, error) {
	if !filepath.IsAbs(path) {
		return "", api.Errorf(api.CodeBadRequest, "QEMU binary %q: want an absolute path", path)
	}
	for _, a := range allow {
		r, err := filepath.EvalSymlinks(a)
		if path != a && path != filepath.Clean(a) && (err != nil || path != r) {
			continue
		}
		if err != nil {
			return "", api.Errorf(api.CodeUnavailable, "QEMU binary %s is in vrssd's qemu_binaries allowlist but cannot be used: %v", a, err)
		}
		return r, nil
	}
	return "", api.Errorf(api.CodeDenied, "QEMU binary %q is not in vrssd's qemu_binaries allowlist %q: vrssd runs only the QEMU binaries its configuration file names, given by those paths or the files they link to", path, allow)
}

// qemuObj is a QEMU build's eBPF RSS object and where it came from.
type qemuObj struct {
	data         []byte
	version, pkg string
	digest       string // "sha256:<hex>" of the binary
	cached       bool
}

// qemuMeta is what the cache keeps next to an object.
type qemuMeta struct {
	QEMU        string    `json:"qemu"`
	QEMUVersion string    `json:"qemu_version"`
	QEMUPackage string    `json:"qemu_package,omitempty"`
	Fetched     time.Time `json:"fetched"`
}

// qemuObject returns the eBPF RSS object of the QEMU binary at path (an
// allowlisted, resolved path): from the cache, by the binary's digest, or
// by running it and asking over QMP. The binary is opened once: the digest
// and the run are of the same file, even if path is replaced meanwhile.
func (s *Server) qemuObject(path string) (*qemuObj, error) {
	// One QEMU run at a time, and no two writers of one cache entry.
	s.qemuMu.Lock()
	defer s.qemuMu.Unlock()
	bin, err := os.Open(path)
	if err != nil {
		return nil, api.Errorf(api.CodeBadRequest, "QEMU binary: %v", err)
	}
	defer bin.Close()
	if fi, err := bin.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, api.Errorf(api.CodeBadRequest, "QEMU binary %s is not a regular file", path)
	}
	h := sha256.New()
	if _, err := io.Copy(h, bin); err != nil {
		return nil, fmt.Errorf("read QEMU binary %s: %w", path, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	o := &qemuObj{digest: "sha256:" + sum}
	dir := filepath.Join(s.opts.StateDir, qemuEBPFCacheDir)
	objPath, metaPath := filepath.Join(dir, sum+".o"), filepath.Join(dir, sum+".json")
	if mb, err := os.ReadFile(metaPath); err == nil {
		var m qemuMeta
		if json.Unmarshal(mb, &m) == nil && m.QEMUVersion != "" {
			if o.data, err = os.ReadFile(objPath); err == nil && len(o.data) > 0 {
				o.version, o.pkg, o.cached = m.QEMUVersion, m.QEMUPackage, true
				return o, nil
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), qmpTimeout)
	defer cancel()
	a, err := askQEMU(ctx, bin, path)
	if err != nil {
		return nil, err
	}
	o.data, o.version, o.pkg = a.object, a.version, a.pkg
	// The object is the expensive part to get again; a failure to cache
	// it costs only a QEMU run next time.
	meta, _ := json.MarshalIndent(qemuMeta{QEMU: path, QEMUVersion: a.version, QEMUPackage: a.pkg, Fetched: time.Now().UTC()}, "", "  ")
	if err := os.MkdirAll(dir, 0o700); err == nil {
		// The object first: the metadata file marks a complete entry.
		err = writeFileAtomic(objPath, o.data)
		if err == nil {
			err = writeFileAtomic(metaPath, append(meta, '\n'))
		}
		if err != nil {
			s.log.Warn("caching QEMU's eBPF object", "dir", dir, "err", err)
		}
	}
	return o, nil
}

// writeFileAtomic replaces path with data: a crash leaves the old file or
// the new one.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// qmpAnswer is what a QEMU told askQEMU.
type qmpAnswer struct {
	object       []byte
	version, pkg string
}

// askQEMU runs the QEMU binary bin (opened from path) and asks it, over
// QMP, for its version and its eBPF RSS object. It runs as nobody and
// confined (see qemu_exec.go), or not at all, and is executed through its
// open descriptor (/proc/self/fd), so that the file digested is the file
// run and path's directories need not be searchable by nobody.
func askQEMU(ctx context.Context, bin *os.File, path string) (*qmpAnswer, error) {
	uid, gid := nobody()
	return runQMP(ctx, bin, path, uid, gid)
}

// nobody returns the uid and gid of the user nobody (65534 if unknown).
func nobody() (uint32, uint32) {
	uid, gid := uint32(65534), uint32(65534)
	if u, err := user.Lookup("nobody"); err == nil {
		if v, err := strconv.ParseUint(u.Uid, 10, 32); err == nil {
			uid = uint32(v)
		}
		if v, err := strconv.ParseUint(u.Gid, 10, 32); err == nil {
			gid = uint32(v)
		}
	}
	return uid, gid
}

// runQMP starts the QEMU binary bin, confined, as uid and gid with
// qmp.StdioArgs, and has the conversation of qmp.FetchEBPFRSS with it on
// its standard input and output. QEMU is killed when it returns.
func runQMP(ctx context.Context, bin *os.File, path string, uid, gid uint32) (*qmpAnswer, error) {
	cmd, err := newQEMUCommand(ctx, bin, path, qmp.StdioArgs(), uid, gid)
	if err != nil {
		return nil, err
	}
	cmd.WaitDelay = time.Second
	stderr := &limitedWriter{n: 4096}
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		cmd.close()
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		cmd.close()
		return nil, err
	}
	if err := cmd.start(ctx); err != nil {
		return nil, err
	}
	// Whatever happens, QEMU does not outlive the request. It runs no
	// machine and holds nothing, so there is nothing to shut down cleanly.
	defer func() {
		cmd.Process.Kill()
		stdin.Close()
		cmd.Wait()
	}()
	r, err := qmp.FetchEBPFRSS(qmp.NewClient(stdout, stdin))
	if err != nil {
		return nil, qmpError(path, err, ctx.Err() != nil, stderr.String())
	}
	return &qmpAnswer{object: r.Object, version: r.Version.String(), pkg: r.Version.Package}, nil
}

// qmpError is the refusal for a failed conversation with the QEMU at path:
// its step, what went wrong (nothing but the time limit if timedOut) and
// what QEMU said on its standard error.
func qmpError(path string, err error, timedOut bool, stderr string) error {
	var no *qmp.NoEBPFError
	if errors.As(err, &no) {
		return api.Errorf(api.CodeUnavailable, "QEMU %s (%s) has no request-ebpf: %s", no.Version, path, no.Reason())
	}
	step := "QMP"
	var qe *qmp.Error
	if errors.As(err, &qe) {
		step, err = qe.Step, qe.Err
	}
	if timedOut {
		err = fmt.Errorf("no answer within %v", qmpTimeout)
	}
	msg := fmt.Sprintf("QEMU %s: %s: %v", path, step, err)
	if e := strings.TrimSpace(stderr); e != "" {
		msg += " (QEMU said: " + e + ")"
	}
	return api.Errorf(api.CodeUnavailable, "%s", msg)
}

// limitedWriter keeps the first n bytes written to it. os/exec copies
// QEMU's standard error into it from a goroutine of its own while the
// conversation runs, hence the lock.
type limitedWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
	n   int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n > 0 {
		k := min(len(p), l.n)
		l.buf.Write(p[:k])
		l.n -= k
	}
	return len(p), nil
}

// String returns what was kept so far.
func (l *limitedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// loadQEMUObject loads QEMU's object and returns the fds of its program
// and its three maps in ebpf-rss-fds order, with a description. The maps
// must be mmapable arrays: QEMU maps them and writes the guest's
// configuration into them without a bpf() call.
func loadQEMUObject(obj []byte) (*api.QEMUEBPFResult, []*fd.FD, error) {
	spec, err := ebpfrss.ParseObject(obj)
	if err != nil {
		return nil, nil, err
	}
	// Before Linux 5.11 maps count against RLIMIT_MEMLOCK.
	_ = rlimit.RemoveMemlock()
	o, err := ebpfrss.Load(spec)
	if err != nil {
		return nil, nil, err
	}
	defer o.Close()
	res := &api.QEMUEBPFResult{Program: ebpfrss.ProgramName, Maps: ebpfrss.MapNames[:]}
	var fds []*fd.FD
	dup := func(raw int) error {
		f, err := fd.Dup(raw)
		if err != nil {
			return err
		}
		fds = append(fds, f)
		return nil
	}
	err = dup(o.Program.FD())
	if info, ierr := o.Program.Info(); ierr == nil {
		if id, ok := info.ID(); ok {
			res.ProgramID = uint32(id)
		}
	}
	for _, m := range []*ebpf.Map{o.Config, o.Key, o.Table} {
		if err != nil {
			break
		}
		err = dup(m.FD())
		if info, ierr := m.Info(); ierr == nil {
			if id, ok := info.ID(); ok {
				res.MapIDs = append(res.MapIDs, uint32(id))
			}
		}
	}
	if err != nil {
		fd.CloseAll(fds)
		return nil, nil, fmt.Errorf("dup: %w", err)
	}
	return res, fds, nil
}
