package steering

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

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
	mem, err := unix.Mmap(mapFD, 0, ConfigSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("steering: mmap configuration map (fd %d, %d bytes; is it the vrss config map?): %w", mapFD, ConfigSize, err)
	}
	return &Publisher{mem: mem, cfg: (*configLayout)(unsafe.Pointer(&mem[0])), queues: queues}, nil
}

// Publish validates c and, if it is acceptable, makes it the configuration
// the program steers by. On error nothing changes.
func (p *Publisher) Publish(c rss.Config) error {
	if err := c.Validate(Limits(p.queues)); err != nil {
		return err
	}
	tz := rss.NewToeplitz(c.Key)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cfg == nil {
		return errors.New("steering: publisher closed")
	}
	cfg := p.cfg
	next := 1 - atomic.LoadUint32(&cfg.Active)&1
	s := &cfg.Slot[next]
	// Odd while writing: a program reading this slot (it was active two
	// publishes ago) will notice and re-read.
	atomic.AddUint32(&s.Seq, 1)
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
		n := int(s.TableMask) + 1
		kl := int(s.KeyLen)
		if n > MaxTableLen || kl > MaxKeySize {
			return rss.Config{}, fmt.Errorf("steering: corrupt configuration map (table %d, key %d)", n, kl)
		}
		c := rss.Config{
			HashTypes:         rss.HashType(s.HashTypes),
			Key:               append([]byte(nil), s.Key[:kl]...),
			Table:             append([]uint16(nil), s.Table[:n]...),
			UnclassifiedQueue: s.UnclassifiedQueue,
		}
		if atomic.LoadUint32(&s.Seq) == seq {
			return c, nil
		}
	}
	return rss.Config{}, errors.New("steering: configuration kept changing while being read")
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
	p.mem, p.cfg = nil, nil
	return err
}
