package rss

import (
	"errors"
	"fmt"
)

// Engine-wide bounds. Device limits (Limits) are usually much smaller.
const (
	// MaxKeySize is the longest Toeplitz key the engine accepts: the largest
	// length the virtio hash_key_length byte can express. Only the first
	// MinKeySize bytes ever influence a hash (see docs/semantics.md).
	MaxKeySize = 255
	// MinKeySize is the key length that covers the longest hash input
	// (36 bytes of IPv6 addresses and ports) plus the 32-bit window.
	MinKeySize = MaxInputLen + 4
	// MaxTableLen is the longest indirection table the engine accepts: the
	// largest power of two a le16 rss_max_indirection_table_length can hold.
	MaxTableLen = 1 << 15
	// MaxInputLen is the longest Toeplitz input: two IPv6 addresses and two
	// ports.
	MaxInputLen = 36
)

// Errors returned by Config.Validate, wrapped with details. Every one of them
// means the device must answer VIRTIO_NET_ERR and keep its previous
// configuration.
var (
	ErrKeySize       = errors.New("rss: bad key size")
	ErrTableLength   = errors.New("rss: bad indirection table length")
	ErrQueueRange    = errors.New("rss: queue out of range")
	ErrHashTypes     = errors.New("rss: unsupported hash types")
	ErrInvalidLimits = errors.New("rss: invalid device limits")
)

// Limits describes what a device supports; a Config is checked against them.
type Limits struct {
	// MaxKeySize is the device's rss_max_key_size (virtio requires ≥ 40).
	MaxKeySize int
	// MaxTableLen is rss_max_indirection_table_length (virtio requires ≥ 128).
	MaxTableLen int
	// Queues is the number of receive queues; every queue a Config names
	// must be below it. Zero means the number is not known and not checked.
	Queues int
	// HashTypes is the device's supported_hash_types.
	HashTypes HashType
}

// DefaultLimits returns the limits of a device with the given number of
// receive queues that supports every hash type, the 40-byte key virtio
// requires and a 128-entry indirection table.
func DefaultLimits(queues int) Limits {
	return Limits{MaxKeySize: 40, MaxTableLen: 128, Queues: queues, HashTypes: AllHashTypes}
}

// Config is an RSS configuration as a guest driver gives it to the device.
type Config struct {
	// HashTypes are the enabled hash types.
	HashTypes HashType
	// Key is the Toeplitz key. Bits past its end count as zero.
	Key []byte
	// Table is the indirection table; its length is a power of two.
	Table []uint16
	// UnclassifiedQueue receives frames no enabled hash type applies to.
	UnclassifiedQueue uint16
}

// Validate reports whether c is acceptable to a device with limits l. The
// error wraps one of ErrKeySize, ErrTableLength, ErrQueueRange, ErrHashTypes
// or ErrInvalidLimits.
func (c *Config) Validate(l Limits) error {
	if l.MaxKeySize < 1 || l.MaxKeySize > MaxKeySize || l.MaxTableLen < 1 || l.MaxTableLen > MaxTableLen || l.Queues < 0 || l.Queues > 1<<16 {
		return fmt.Errorf("%w: %+v", ErrInvalidLimits, l)
	}
	if len(c.Key) == 0 || len(c.Key) > l.MaxKeySize {
		return fmt.Errorf("%w: %d bytes, want 1 to %d", ErrKeySize, len(c.Key), l.MaxKeySize)
	}
	n := len(c.Table)
	if n == 0 || n&(n-1) != 0 || n > l.MaxTableLen {
		return fmt.Errorf("%w: %d entries, want a power of two from 1 to %d", ErrTableLength, n, l.MaxTableLen)
	}
	if bad := c.HashTypes &^ l.HashTypes; bad != 0 {
		return fmt.Errorf("%w: %s not in supported set %s", ErrHashTypes, bad, l.HashTypes)
	}
	if l.Queues > 0 {
		if int(c.UnclassifiedQueue) >= l.Queues {
			return fmt.Errorf("%w: unclassified queue %d, device has %d queues", ErrQueueRange, c.UnclassifiedQueue, l.Queues)
		}
		for i, q := range c.Table {
			if int(q) >= l.Queues {
				return fmt.Errorf("%w: indirection table entry %d is queue %d, device has %d queues", ErrQueueRange, i, q, l.Queues)
			}
		}
	}
	return nil
}

// Clone returns a deep copy of c.
func (c Config) Clone() Config {
	c.Key = append([]byte(nil), c.Key...)
	c.Table = append([]uint16(nil), c.Table...)
	return c
}

// EqualTable returns an indirection table of length n that spreads its
// entries round-robin over queues 0..queues-1, as drivers do by default.
func EqualTable(n, queues int) []uint16 {
	t := make([]uint16, n)
	for i := range t {
		t[i] = uint16(i % queues)
	}
	return t
}

// DefaultKey is the 40-byte key of Microsoft's RSS verification suite, which
// many drivers also use as their default. vrss uses it when no key is given.
var DefaultKey = []byte{
	0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2,
	0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
	0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4,
	0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
	0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
}

// WeightedTable returns an indirection table of length n in which queue i
// owns a share of the entries proportional to weights[i], in contiguous
// runs, as `ethtool -X weight` lays them out. A weight of 0 gives a queue no
// entries. It returns nil if no weight is positive or one is negative.
func WeightedTable(n int, weights []int) []uint16 {
	sum := 0
	for _, w := range weights {
		if w < 0 {
			return nil
		}
		sum += w
	}
	if sum == 0 || n <= 0 {
		return nil
	}
	t := make([]uint16, n)
	q, cum := 0, weights[0]
	for i := range t {
		// Entry i belongs to the first queue whose cumulative share,
		// rounded down as ethtool rounds it, ends after it.
		for i >= n*cum/sum {
			q++
			cum += weights[q]
		}
		t[i] = uint16(q)
	}
	return t
}
