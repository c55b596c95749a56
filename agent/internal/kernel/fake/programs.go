package fake

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/agent/internal/kernel"
	"github.com/vrss-dev/vrss/internal/fd"
	"github.com/vrss-dev/vrss/steering"
)

// object is a loaded program and its maps, which live while anything
// refers to them (here: as long as the Kernel).
type object struct {
	id    int
	prog  *fd.FD // a stand-in for the program's descriptor
	cfg   *fd.FD // the configuration map: a memfd of steering.ConfigSize bytes
	view  *steering.Publisher
	stats steering.Stats
}

func (o *object) close() {
	o.view.Close()
	o.prog.Close()
	o.cfg.Close()
}

// Pin file names, as kernel.Host pins.
var pinNames = [...]string{"prog", "config", "stats"}

// PinRoot makes dir, a plain directory: the fake's pins are files.
func (k *Kernel) PinRoot(dir string) (string, error) { return "", os.MkdirAll(dir, 0o700) }

// FailLoad makes every Load fail with err from now on; nil lets them
// succeed again.
func (k *Kernel) FailLoad(err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.loadErr = err
}

// Load loads a new program.
func (k *Kernel) Load() (kernel.Program, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.loadErr != nil {
		return nil, k.loadErr
	}
	if k.closed {
		return nil, errors.New("fake: kernel closed")
	}
	o := &object{id: k.nextObj, stats: steering.Stats{Queues: make([]uint64, steering.MaxQueues)}}
	var err error
	if o.prog, err = memfd("vrss-prog", 0); err == nil {
		o.cfg, err = memfd("vrss-config", steering.ConfigSize)
	}
	if err == nil {
		o.view, err = steering.NewPublisher(o.cfg.Int(), 0)
	}
	if err != nil {
		o.prog.Close()
		o.cfg.Close()
		return nil, err
	}
	k.nextObj++
	k.objs[o.id] = o
	return k.handle(o)
}

func memfd(name string, size int) (*fd.FD, error) {
	raw, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("fake: memfd: %w", err)
	}
	f := fd.New(raw)
	if err := unix.Ftruncate(raw, int64(size)); err != nil {
		f.Close()
		return nil, fmt.Errorf("fake: memfd: %w", err)
	}
	return f, nil
}

// handle returns a new Program for o, with descriptors of its own; k.mu
// is held.
func (k *Kernel) handle(o *object) (kernel.Program, error) {
	p := &program{k: k, obj: o}
	var err error
	if p.prog, err = o.prog.Dup(); err == nil {
		p.cfg, err = o.cfg.Dup()
	}
	if err != nil {
		p.prog.Close()
		return nil, err
	}
	k.handles++
	return p, nil
}

// Programs returns how many Program values are open: loaded or loaded
// from pins, and not closed.
func (k *Kernel) Programs() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.handles
}

// Pin makes dir and writes the three pins into it, each naming p.
func (k *Kernel) Pin(p kernel.Program, dir string) error {
	fp, ok := p.(*program)
	if !ok || fp.k != k {
		return fmt.Errorf("fake: %T is not a program of this kernel", p)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if fp.obj == nil {
		return errors.New("fake: pin a closed program")
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	for _, n := range pinNames {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(pinText(n, fp.obj.id)), 0o600); err != nil {
			return fmt.Errorf("pin %s: %w", n, err)
		}
	}
	return nil
}

func pinText(name string, id int) string { return fmt.Sprintf("fake-bpf %s %d\n", name, id) }

// LoadPinned loads the program the pins in dir name. A missing pin is an
// error wrapping os.ErrNotExist; a file that is not a pin of a program of
// this kernel is EINVAL, as bpf(BPF_OBJ_GET) answers for a file that is no
// pin.
func (k *Kernel) LoadPinned(dir string) (kernel.Program, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	id := 0
	for _, n := range pinNames {
		path := filepath.Join(dir, n)
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		f := strings.Fields(string(b))
		i := 0
		if len(f) == 3 && f[0] == "fake-bpf" && f[1] == n {
			i, _ = strconv.Atoi(f[2])
		}
		if k.objs[i] == nil || (id != 0 && i != id) {
			return nil, fmt.Errorf("fake: load pinned %s: %w", path, unix.EINVAL)
		}
		id = i
	}
	return k.handle(k.objs[id])
}

// Unpin removes the three pins in dir, then dir if it is empty.
func (k *Kernel) Unpin(dir string) error {
	var errs []error
	for _, n := range pinNames {
		if err := os.Remove(filepath.Join(dir, n)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Pinned returns the id of the program pinned in dir, 0 if none is.
func (k *Kernel) Pinned(dir string) int {
	p, err := k.LoadPinned(dir)
	if err != nil {
		return 0
	}
	defer p.Close()
	return p.(*program).id()
}

// program is a Program: a handle on an object, with descriptors of its
// own.
type program struct {
	k         *Kernel
	obj       *object // nil once closed
	prog, cfg *fd.FD
}

func (p *program) id() int {
	p.k.mu.Lock()
	defer p.k.mu.Unlock()
	if p.obj == nil {
		return 0
	}
	return p.obj.id
}

// Publisher maps the configuration map, as steering does.
func (p *program) Publisher(queues int) (kernel.Publisher, error) {
	p.k.mu.Lock()
	defer p.k.mu.Unlock()
	if p.obj == nil {
		return nil, errors.New("fake: program closed")
	}
	pub, err := steering.NewPublisher(p.cfg.Int(), queues)
	if err != nil {
		return nil, err
	}
	return pub, nil
}

// Stats returns the program's counters (see Transmit).
func (p *program) Stats() (steering.Stats, error) {
	p.k.mu.Lock()
	defer p.k.mu.Unlock()
	if p.obj == nil {
		return steering.Stats{}, errors.New("fake: program closed")
	}
	st := p.obj.stats
	st.Queues = append([]uint64(nil), st.Queues...)
	return st, nil
}

// FD returns the handle's stand-in program descriptor.
func (p *program) FD() int { return p.prog.Int() }

// DupConfigMap duplicates the configuration map's descriptor: the memfd,
// which a VMM maps as it maps the real map.
func (p *program) DupConfigMap() (*fd.FD, error) {
	p.k.mu.Lock()
	defer p.k.mu.Unlock()
	if p.obj == nil {
		return nil, errors.New("fake: program closed")
	}
	return p.cfg.Dup()
}

// Close closes the handle; the program lives on.
func (p *program) Close() error {
	p.k.mu.Lock()
	defer p.k.mu.Unlock()
	if p.obj == nil {
		return nil
	}
	p.obj = nil
	p.prog.Close()
	p.cfg.Close()
	p.k.handles--
	return nil
}
