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
	"github.com/vrss-dev/vrss/flow"
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
	// The flow build: its rules, groups and contexts live here (the
	// memfd holds the default configuration; a real flow map's layout is
	// told from the map's value size, which a memfd has none of); filter
	// is the ifindex its filter is attached at through a link (0: none).
	flows     bool
	set       flow.Set
	filter    int
	flowStats steering.FlowStats
}

func (o *object) close() {
	o.view.Close()
	o.prog.Close()
	o.cfg.Close()
}

// Pin file names, as kernel.Host pins: the first three for every
// program, the next two for the flow build, and its filter's link.
var (
	pinNames     = [...]string{"prog", "config", "stats"}
	flowPinNames = [...]string{"filter", "flowstats", "jump"}
	linkPin      = kernel.PinLink
)

// PinRoot makes dir, a plain directory: the fake's pins are files.
func (k *Kernel) PinRoot(dir string) (string, error) { return "", os.MkdirAll(dir, 0o700) }

// FailLoad makes every Load fail with err from now on; nil lets them
// succeed again.
func (k *Kernel) FailLoad(err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.loadErr = err
}

// Load loads a new program, of the flow build if flows.
func (k *Kernel) Load(flows bool) (kernel.Program, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.loadErr != nil {
		return nil, k.loadErr
	}
	if k.closed {
		return nil, errors.New("fake: kernel closed")
	}
	o := &object{id: k.nextObj, stats: steering.Stats{Queues: make([]uint64, steering.MaxQueues)}, flows: flows}
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
	for _, n := range fp.obj.pinNames() {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(pinText(n, fp.obj.id)), 0o600); err != nil {
			return fmt.Errorf("pin %s: %w", n, err)
		}
	}
	return nil
}

// pinNames are the pins of o's programs and maps.
func (o *object) pinNames() []string {
	names := pinNames[:]
	if o.flows {
		names = append(names, flowPinNames[:]...)
	}
	return names
}

func pinText(name string, id int) string { return fmt.Sprintf("fake-bpf %s %d\n", name, id) }

// LoadPinned loads the program the pins in dir name. A missing pin is an
// error wrapping os.ErrNotExist; a file that is not a pin of a program of
// this kernel is EINVAL, as bpf(BPF_OBJ_GET) answers for a file that is no
// pin.
func (k *Kernel) LoadPinned(dir string, flows bool) (kernel.Program, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	id := 0
	names := pinNames[:]
	if flows {
		names = append(names, flowPinNames[:]...)
	}
	for _, n := range names {
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
	if k.objs[id].flows != flows {
		return nil, fmt.Errorf("fake: load pinned %s: the program is not of the build asked for: %w", dir, unix.EINVAL)
	}
	return k.handle(k.objs[id])
}

// Unpin removes the pins in dir, then dir if it is empty.
func (k *Kernel) Unpin(dir string) error {
	var errs []error
	for _, n := range append(append(pinNames[:], flowPinNames[:]...), linkPin) {
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
	p, err := k.LoadPinned(dir, false)
	if err != nil {
		if p, err = k.LoadPinned(dir, true); err != nil {
			return 0
		}
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
	if p.obj.flows {
		return &flowPublisher{Publisher: pub, k: p.k, obj: p.obj, queues: queues}, nil
	}
	return pub, nil
}

// flowPublisher is a Publisher of a flow build: the default configuration
// goes into the memfd, the rest into the object.
type flowPublisher struct {
	*steering.Publisher
	k      *Kernel
	obj    *object
	queues int
}

func (p *flowPublisher) Flows() bool { return true }

// PublishSet checks s as steering does and publishes it: the default
// configuration (a new generation) and then the rest.
func (p *flowPublisher) PublishSet(s flow.Set) error {
	if err := s.Validate(steering.FlowLimits(p.queues)); err != nil {
		return err
	}
	for _, r := range s.Rules {
		if err := r.Match.Normalize(); err != nil {
			return err
		}
	}
	if err := p.Publisher.Publish(s.Default); err != nil {
		return err
	}
	s = s.Clone()
	for i := range s.Rules {
		s.Rules[i].Match.Normalize()
	}
	p.k.mu.Lock()
	defer p.k.mu.Unlock()
	p.obj.set = s
	return nil
}

// Set reads back the default configuration and the rest.
func (p *flowPublisher) Set() (flow.Set, error) {
	def, err := p.Publisher.Config()
	if err != nil {
		return flow.Set{}, err
	}
	p.k.mu.Lock()
	defer p.k.mu.Unlock()
	s := p.obj.set.Clone()
	s.Default = def
	return s, nil
}

// Flows reports whether this is the flow build.
func (p *program) Flows() bool {
	p.k.mu.Lock()
	defer p.k.mu.Unlock()
	return p.obj != nil && p.obj.flows
}

// FlowStats returns the counters SetFlowStats set, with a zero count for
// every rule of the set that has none.
func (p *program) FlowStats(kernel.Publisher) (steering.FlowStats, error) {
	p.k.mu.Lock()
	defer p.k.mu.Unlock()
	switch {
	case p.obj == nil:
		return steering.FlowStats{}, errors.New("fake: program closed")
	case !p.obj.flows:
		return steering.FlowStats{}, steering.ErrNoFlows
	}
	st := p.obj.flowStats
	hits := map[[2]uint32]uint64{}
	for _, h := range st.Rules {
		hits[[2]uint32{h.Group, h.ID}] = h.Hits
	}
	st.Rules = nil
	for _, r := range p.obj.set.Rules {
		st.Rules = append(st.Rules, steering.RuleHits{Group: r.Group, ID: r.ID, Hits: hits[[2]uint32{r.Group, r.ID}]})
	}
	ctxs := map[uint16][]uint64{}
	for _, c := range p.obj.set.Contexts {
		q := make([]uint64, steering.MaxQueues)
		copy(q, st.Contexts[c.ID])
		ctxs[c.ID] = q
	}
	st.Contexts = ctxs
	return st, nil
}

// SetFlowStats sets the flow counters of the program pinned in dir, for
// tests: FlowStats reports them.
func (k *Kernel) SetFlowStats(dir string, st steering.FlowStats) error {
	p, err := k.LoadPinned(dir, true)
	if err != nil {
		return err
	}
	defer p.Close()
	k.mu.Lock()
	defer k.mu.Unlock()
	p.(*program).obj.flowStats = st
	return nil
}

// AttachFilter attaches the filter at ifindex, as the kernel's tcx link
// does, and pins the link: a file at pin naming the program and ifindex.
func (p *program) AttachFilter(ifindex int, pin string) (bool, error) {
	p.k.mu.Lock()
	defer p.k.mu.Unlock()
	switch {
	case p.obj == nil:
		return false, errors.New("fake: program closed")
	case !p.obj.flows:
		return false, steering.ErrNoFlows
	case p.k.devs[ifindex] == nil:
		return false, fmt.Errorf("fake: attach the flow filter at ifindex %d: %w", ifindex, unix.ENODEV)
	}
	text := fmt.Sprintf("fake-bpf %s %d %d\n", linkPin, p.obj.id, ifindex)
	b, err := os.ReadFile(pin)
	if p.obj.filter == ifindex && err == nil && string(b) == text {
		return false, nil
	}
	attached := p.obj.filter != ifindex
	p.obj.filter = ifindex
	os.Remove(pin)
	if err := os.WriteFile(pin, []byte(text), 0o600); err != nil {
		return false, err
	}
	return attached, nil
}

// DetachFilter removes the link's pin and detaches the filter.
func (p *program) DetachFilter(pin string) error {
	p.k.mu.Lock()
	defer p.k.mu.Unlock()
	if p.obj != nil {
		p.obj.filter = 0
	}
	if err := os.Remove(pin); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// Filter returns the ifindex the flow filter of the program steering the
// TAP name is attached at, 0 if none.
func (k *Kernel) Filter(name string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	if d := k.byName(name); d != nil && d.prog != nil {
		return d.prog.filter
	}
	return 0
}

// DetachFilterBehind detaches the flow filter of the program steering the
// TAP name without touching its pin, as bpftool link detach does.
func (k *Kernel) DetachFilterBehind(name string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if d := k.byName(name); d != nil && d.prog != nil {
		d.prog.filter = 0
	}
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
