package steering

import (
	"errors"
	"fmt"
	"structs"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/flow"
	"github.com/vrss-dev/vrss/rss"
)

// ErrNotConfigured is returned when reading a configuration map that no
// configuration has been published to yet.
var ErrNotConfigured = errors.New("steering: no configuration published")

// Publisher writes RSS configurations into the steering program's
// configuration map through a shared memory mapping. It needs only the map's
// file descriptor — no bpf() system call, so no CAP_BPF — which is what lets
// a privileged daemon hand the map to an unprivileged VMM.
//
// Publishing is atomic for the program: it fills the inactive one of two
// slots, bracketed by a sequence number, then flips the active index; the
// program discards any result computed while its slot changed. There must
// be one publisher per map at a time; a Publisher serialises its own calls.
type Publisher struct {
	mu     sync.Mutex
	mem    []byte
	cfg    *configLayout
	flows  *flowLayout // the flow build's map; nil for the plain build's
	queues int
}

// NewPublisher maps the configuration map with file descriptor mapFD. The
// caller keeps ownership of mapFD; the mapping stays valid until Close even
// if mapFD is closed. queues, if not 0, is the number of TAP queues every
// published configuration must stay within.
func NewPublisher(mapFD int, queues int) (*Publisher, error) {
	if queues < 0 || queues > MaxQueues {
		return nil, fmt.Errorf("steering: %d queues, want 0 to %d", queues, MaxQueues)
	}
	var st unix.Stat_t
	if err := unix.Fstat(mapFD, &st); err != nil {
		return nil, fmt.Errorf("steering: map fd %d: %w", mapFD, err)
	}
	// The two builds' maps differ in size; /proc tells which this is
	// without a bpf() call.
	size := ConfigSize
	if vs, err := mapValueSize(mapFD); err == nil && vs == FlowConfigSize {
		size = FlowConfigSize
	}
	mem, err := unix.Mmap(mapFD, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("steering: mmap configuration map (fd %d, %d bytes; is it the vrss config map?): %w", mapFD, size, err)
	}
	p := &Publisher{mem: mem, cfg: (*configLayout)(unsafe.Pointer(&mem[0])), queues: queues}
	if size == FlowConfigSize {
		// The flow layout begins with the plain one (layout_test.go).
		p.flows = (*flowLayout)(unsafe.Pointer(&mem[0]))
	}
	return p, nil
}

// Flows reports whether the map is the flow build's, which holds flow
// rules and RSS contexts besides the RSS configuration.
func (p *Publisher) Flows() bool { return p.flows != nil }

// Publish validates c and, if it is acceptable, makes it the configuration
// the program steers by. On error nothing changes. On the flow build's map
// the rules and RSS contexts stay as they are.
func (p *Publisher) Publish(c rss.Config) error {
	if err := c.Validate(Limits(p.queues)); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cfg == nil {
		return errors.New("steering: publisher closed")
	}
	if p.flows != nil {
		s, err := p.readSet(true)
		if err != nil {
			return err
		}
		s.Default = c
		return p.publishSet(s)
	}
	p.publish(c, nil)
	return nil
}

// PublishSet validates s against FlowLimits and, if it is acceptable and
// fits the map, makes it what the programs steer and drop by, in one
// atomic step: no frame sees part of it. On error nothing changes. Only
// the flow build's map holds rules and contexts (ErrNoFlows).
func (p *Publisher) PublishSet(s flow.Set) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cfg == nil {
		return errors.New("steering: publisher closed")
	}
	if p.flows == nil {
		if len(s.Rules) > 0 || len(s.Contexts) > 0 {
			return ErrNoFlows
		}
		if err := s.Default.Validate(Limits(p.queues)); err != nil {
			return err
		}
		p.publish(s.Default, nil)
		return nil
	}
	return p.publishSet(s)
}

func (p *Publisher) publishSet(s flow.Set) error {
	active := int(atomic.LoadUint32(&p.cfg.Active) & 1)
	var prev map[ruleIdent]uint16
	cursor := uint32(0)
	if atomic.LoadUint32(&p.cfg.Magic) == Magic {
		prev = counterMap(p.flows, active)
		cursor = p.flows.Flows[active].NextCounter
	}
	c, cursor, err := compileFlows(s, p.queues, prev, cursor)
	if err != nil {
		return err
	}
	return p.publish(s.Default, func(next int) error { return c.writeFlows(p.flows, next, cursor) })
}

// publish writes c, and with extra whatever else belongs in the slot, into
// the inactive slot and makes it active. If extra fails, the slot is left
// odd-sequenced and inactive (the programs never pick it) and nothing
// changes for them.
func (p *Publisher) publish(c rss.Config, extra func(next int) error) error {
	tz := rss.NewToeplitz(c.Key)
	cfg := p.cfg
	next := 1 - atomic.LoadUint32(&cfg.Active)&1
	s := &cfg.Slot[next]
	// Odd while writing: a program reading this slot (it was active two
	// publishes ago) will notice and re-read.
	atomic.AddUint32(&s.Seq, 1)
	if extra != nil {
		if err := extra(int(next)); err != nil {
			atomic.AddUint32(&s.Seq, 1)
			return err
		}
	}
	s.HashTypes = uint32(c.HashTypes)
	s.TableMask = uint32(len(c.Table) - 1)
	s.UnclassifiedQueue = c.UnclassifiedQueue
	s.KeyLen = uint16(len(c.Key))
	s.Key = [256]uint8{}
	copy(s.Key[:], c.Key)
	s.Toeplitz = tz.Tables()
	copy(s.Table[:], c.Table)
	atomic.AddUint32(&s.Seq, 1)
	atomic.StoreUint32(&cfg.Active, next)
	atomic.AddUint64(&cfg.Generation, 1)
	atomic.StoreUint32(&cfg.Magic, Magic)
	return nil
}

// Set reads back everything the programs currently steer by: the default
// configuration and, on the flow build's map, the RSS contexts, groups and
// rules (matches normalized; ids, priorities and actions as published).
func (p *Publisher) Set() (flow.Set, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cfg == nil {
		return flow.Set{}, errors.New("steering: publisher closed")
	}
	return p.readSet(false)
}

// readSet reads the active slot under its sequence number. With empty, an
// unconfigured map reads as an empty set (so that a first Publish on a
// flow map has something to start from).
func (p *Publisher) readSet(empty bool) (flow.Set, error) {
	if atomic.LoadUint32(&p.cfg.Magic) != Magic {
		if empty {
			return flow.Set{}, nil
		}
		return flow.Set{}, ErrNotConfigured
	}
	for range 100 {
		n := int(atomic.LoadUint32(&p.cfg.Active) & 1)
		slot := &p.cfg.Slot[n]
		seq := atomic.LoadUint32(&slot.Seq)
		if seq&1 != 0 {
			continue
		}
		def, err := slotConfig(slot)
		if err != nil {
			return flow.Set{}, err
		}
		s := flow.Set{Default: def}
		if p.flows != nil {
			if err := readFlows(p.flows, n, &s); err != nil {
				if atomic.LoadUint32(&slot.Seq) != seq {
					continue
				}
				return flow.Set{}, err
			}
		}
		if atomic.LoadUint32(&slot.Seq) == seq {
			return s, nil
		}
	}
	return flow.Set{}, errors.New("steering: configuration kept changing while being read")
}

// Config reads back the configuration the program currently steers by.
func (p *Publisher) Config() (rss.Config, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cfg == nil {
		return rss.Config{}, errors.New("steering: publisher closed")
	}
	return readConfig(p.cfg)
}

// Generation returns how many configurations have been published to the map.
func (p *Publisher) Generation() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cfg == nil {
		return 0
	}
	return atomic.LoadUint64(&p.cfg.Generation)
}

func readConfig(cfg *configLayout) (rss.Config, error) {
	if atomic.LoadUint32(&cfg.Magic) != Magic {
		return rss.Config{}, ErrNotConfigured
	}
	for range 100 {
		s := &cfg.Slot[atomic.LoadUint32(&cfg.Active)&1]
		seq := atomic.LoadUint32(&s.Seq)
		if seq&1 != 0 {
			continue
		}
		c, err := slotConfig(s)
		if err != nil {
			return rss.Config{}, err
		}
		if atomic.LoadUint32(&s.Seq) == seq {
			return c, nil
		}
	}
	return rss.Config{}, errors.New("steering: configuration kept changing while being read")
}

type slotLayout = struct {
	_                 structs.HostLayout
	Seq               uint32
	HashTypes         uint32
	TableMask         uint32
	UnclassifiedQueue uint16
	KeyLen            uint16
	Key               [256]uint8
	Toeplitz          [36][256]uint32
	Table             [32768]uint16
}

// slotConfig reads a slot's RSS configuration, checking its bounds.
func slotConfig(s *slotLayout) (rss.Config, error) {
	n := int(s.TableMask) + 1
	kl := int(s.KeyLen)
	if n > MaxTableLen || kl > MaxKeySize {
		return rss.Config{}, fmt.Errorf("steering: corrupt configuration map (table %d, key %d)", n, kl)
	}
	return rss.Config{
		HashTypes:         rss.HashType(s.HashTypes),
		Key:               append([]byte(nil), s.Key[:kl]...),
		Table:             append([]uint16(nil), s.Table[:n]...),
		UnclassifiedQueue: s.UnclassifiedQueue,
	}, nil
}

// Close unmaps the configuration map. Steering goes on with the last
// published configuration.
func (p *Publisher) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mem == nil {
		return nil
	}
	err := unix.Munmap(p.mem)
	p.mem, p.cfg, p.flows = nil, nil, nil
	return err
}
