package portxdp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"unsafe"

	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/flow"
	"github.com/vrss-dev/vrss/port"
	"github.com/vrss-dev/vrss/steering"
)

// Publisher writes policies into the program's map through a shared memory
// mapping, as steering.Publisher writes RSS configurations: it fills the
// inactive one of two slots between two increments of the slot's sequence
// number (odd while writing), then flips the active index; the program
// judges again any frame whose slot changed meanwhile, so every frame is
// judged by one whole policy. One publisher per map at a time; a
// Publisher serialises its own calls.
type Publisher struct {
	mu  sync.Mutex
	mem []byte
	cfg *configLayout
}

// NewPublisher maps the policy map with file descriptor mapFD (a
// Program's ConfigMap, or the same map pinned). The caller keeps mapFD;
// the mapping lasts until Close.
func NewPublisher(mapFD int) (*Publisher, error) {
	// Another map mapped as this one would be overwritten: check the size
	// first, without a bpf() call.
	if vs, err := steering.MapValueSize(mapFD); err != nil || vs != ConfigSize {
		return nil, fmt.Errorf("portxdp: fd %d is not a port_config map (value size %d, want %d): %v", mapFD, vs, ConfigSize, err)
	}
	mem, err := unix.Mmap(mapFD, 0, ConfigSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("portxdp: mmap policy map (fd %d, %d bytes; is it port_config?): %w", mapFD, ConfigSize, err)
	}
	return &Publisher{mem: mem, cfg: (*configLayout)(unsafe.Pointer(&mem[0]))}, nil
}

// Queues are an AF_XDP port's receive queues: Count of them from Start.
type Queues struct{ Start, Count int }

// Validate says whether q is a range of at least one queue below
// MaxQueues.
func (q Queues) Validate() error {
	if q.Start < 0 || q.Count < 1 || q.Start+q.Count > MaxQueues {
		return fmt.Errorf("portxdp: queues %d-%d: want at least one queue, from 0 to %d", q.Start, q.Start+q.Count-1, MaxQueues-1)
	}
	return nil
}

// Publish validates pol (port.Policy.Validate) and, if it is valid, makes
// it the active policy atomically. On error nothing changes.
func (p *Publisher) Publish(pol port.Policy) error { return p.publish(pol, nil) }

// PublishXSK is Publish for an AF_XDP port: the program judges the frames
// that arrive on queues q by pol, inbound (as port.NewInbound's Filter:
// they arrive for the guest, by their destination), and redirects those
// it passes to the
// AF_XDP socket at their queue (SetSocket), or passes them to the stack
// where there is none; frames of other queues are the host's, passed to
// the stack unjudged (Counters.OtherQueue). An AF_XDP port has no uplink:
// pol must name none.
func (p *Publisher) PublishXSK(pol port.Policy, q Queues) error {
	if err := q.Validate(); err != nil {
		return err
	}
	if pol.Uplink != "" {
		return fmt.Errorf("portxdp: an AF_XDP port's policy names uplink %q: its allowed frames go to its sockets", pol.Uplink)
	}
	return p.publish(pol, &q)
}

// publish publishes pol, for an AF_XDP port's queues q if q is not nil.
func (p *Publisher) publish(pol port.Policy, q *Queues) error {
	if err := pol.Validate(); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cfg == nil {
		return errors.New("portxdp: publisher closed")
	}
	cfg := p.cfg
	next := 1 - atomic.LoadUint32(&cfg.Active)&1
	seq := &cfg.Slot[next].Seq
	// Odd while writing: a frame being judged by this slot (active two
	// publishes ago) is judged again.
	atomic.AddUint32(seq, 1)
	fillSlot(cfg, int(next), &pol, q, atomic.LoadUint64(&cfg.Generation)+1)
	atomic.AddUint32(seq, 1)
	atomic.StoreUint32(&cfg.Active, next)
	atomic.AddUint64(&cfg.Generation, 1)
	atomic.StoreUint32(&cfg.Magic, Magic)
	return nil
}

// Generation returns how many policies have been published to the map.
func (p *Publisher) Generation() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cfg == nil {
		return 0
	}
	return atomic.LoadUint64(&p.cfg.Generation)
}

// setUplinkLen sets the longest frame the program redirects.
func (p *Publisher) setUplinkLen(n uint32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cfg != nil {
		atomic.StoreUint32(&p.cfg.UplinkLen, n)
	}
}

// Close unmaps the map. The program goes on with the last policy.
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

// fillSlot lays a valid policy out in slot n of cfg, tagged tag, for an
// AF_XDP port's queues q if q is not nil. Addresses and key words are
// stored as the program loads them from the frame: little-endian words of
// the bytes in network order.
func fillSlot(cfg *configLayout, n int, pol *port.Policy, q *Queues, tag uint64) {
	le := binary.LittleEndian
	s := &cfg.Slot[n]
	s.Tag = tag
	s.Nmacs = uint32(len(pol.MACs))
	s.Mac = [len(s.Mac)]uint64{}
	for i, m := range pol.MACs {
		var b [8]byte
		copy(b[:], m[:])
		s.Mac[i] = le.Uint64(b[:])
	}
	s.Nv4 = uint32(len(pol.IPv4))
	for i, pr := range pol.IPv4 {
		a, m := pr.Addr().As4(), prefixMask(pr.Bits(), 4)
		s.V4[i].Addr, s.V4[i].Mask = le.Uint32(a[:])&le.Uint32(m), le.Uint32(m)
	}
	v6 := pol.IPv6
	if pol.LinkLocal {
		for _, m := range pol.MACs {
			v6 = append(v6[:len(v6):len(v6)], netip.PrefixFrom(m.LinkLocal(), 128))
		}
	}
	s.Nv6 = uint32(len(v6))
	for i, pr := range v6 {
		a, m := pr.Addr().As16(), prefixMask(pr.Bits(), 16)
		for w := range 4 {
			s.V6[i].Mask[w] = le.Uint32(m[4*w:])
			s.V6[i].Addr[w] = le.Uint32(a[4*w:]) & s.V6[i].Mask[w]
		}
	}
	// Each ACL rule: for each key word its mask touches, in order, the
	// word's index, the mask and the value under it.
	s.Nrules = uint32(len(pol.Rules))
	for i, r := range pol.Rules {
		q := &s.Rule[i]
		clear(q.Term[:])
		q.Nterms = 0
		q.Reason = uint32(port.ACLDrop)
		if r.Action == port.Allow {
			q.Reason = uint32(port.ACLAllow)
		}
		for w := range flow.KeyWords {
			m := le.Uint32(r.Match.Mask[4*w:])
			if m == 0 {
				continue
			}
			t := &q.Term[q.Nterms]
			t.Word, t.Mask, t.Value = uint32(w), m, le.Uint32(r.Match.Value[4*w:])&m
			q.Nterms++
		}
	}
	s.Dflt = uint32(port.DefaultDeny)
	if pol.Default == port.Allow {
		s.Dflt = uint32(port.DefaultAllow)
	}
	s.Mode, s.QueueStart, s.Queues = modeStack, 0, 0
	switch {
	case q != nil:
		s.Mode, s.QueueStart, s.Queues = modeXSK, uint32(q.Start), uint32(q.Count)
	case pol.Uplink != "":
		s.Mode = modeUplink
	}
}

// prefixMask returns the n-byte mask of a prefix of bits bits.
func prefixMask(bits, n int) []byte {
	m := make([]byte, n)
	for i := range m {
		switch {
		case bits >= 8:
			m[i] = 0xff
		case bits > 0:
			m[i] = 0xff << (8 - bits)
		}
		bits -= 8
	}
	return m
}
