// Package virtio implements the wire formats of the virtio-net RSS and
// hash-report control commands and of the vnet header that precedes every
// received packet.
//
// Decoders are pure functions of their input: they copy what they keep, and
// on error return the zero value, so a device can decode first and apply
// only on success, keeping its previous configuration otherwise.
package virtio

import (
	"encoding"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/vrss-dev/vrss/rss"
)

// Control queue class and commands of the multiqueue class, and the ack
// byte the device writes back.
const (
	CtrlClassMQ   = 4 // VIRTIO_NET_CTRL_MQ
	CmdVQPairsSet = 0 // VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET
	CmdRSSConfig  = 1 // VIRTIO_NET_CTRL_MQ_RSS_CONFIG
	CmdHashConfig = 2 // VIRTIO_NET_CTRL_MQ_HASH_CONFIG

	AckOK  uint8 = 0 // VIRTIO_NET_OK
	AckErr uint8 = 1 // VIRTIO_NET_ERR
)

// Wire format errors, wrapped with details. Decoders also return the rss.Err*
// errors (wrapped) when the decoded configuration is outside the device's
// limits. Every error means the device answers AckErr.
var (
	// ErrTruncated means the input ends before the structure does.
	ErrTruncated = errors.New("virtio: truncated")
	// ErrTrailingBytes means bytes follow the hash key.
	ErrTrailingBytes = errors.New("virtio: trailing bytes")
	// ErrTableMask means indirection_table_mask+1 is not a power of two.
	ErrTableMask = errors.New("virtio: indirection table mask is not a power of two minus one")
	// ErrTxQueues means max_tx_vq is 0 or above the device's queue pairs.
	ErrTxQueues = errors.New("virtio: max_tx_vq out of range")
)

// Sizes of the fixed parts of the control command payloads.
const (
	rssHeaderLen  = 8  // hash_types, indirection_table_mask, unclassified_queue
	rssTrailerLen = 3  // max_tx_vq, hash_key_length
	hashFixedLen  = 13 // hash_types, reserved[4], hash_key_length
	maxWireTable  = 1 << 16
)

var (
	_ encoding.BinaryAppender  = (*RSSConfig)(nil)
	_ encoding.BinaryMarshaler = (*RSSConfig)(nil)
	_ encoding.BinaryAppender  = (*HashConfig)(nil)
	_ encoding.BinaryMarshaler = (*HashConfig)(nil)
)

// RSSConfig is struct virtio_net_rss_config, the payload of
// VIRTIO_NET_CTRL_MQ_RSS_CONFIG.
type RSSConfig struct {
	rss.Config // HashTypes, Key, Table, UnclassifiedQueue
	// MaxTxVQ is max_tx_vq, the number of transmit queues the driver uses.
	MaxTxVQ uint16
}

// Validate reports whether c is acceptable to a device with limits l, where
// l.Queues is the number of queue pairs (0: not checked). Besides what
// rss.Config.Validate checks, max_tx_vq must be at least 1 and, when
// l.Queues is known, at most l.Queues (ErrTxQueues). It shadows the embedded
// rss.Config.Validate so that max_tx_vq cannot be forgotten.
func (c *RSSConfig) Validate(l rss.Limits) error {
	if err := c.Config.Validate(l); err != nil {
		return err
	}
	hi := 1<<16 - 1
	if l.Queues > 0 {
		hi = l.Queues
	}
	if c.MaxTxVQ == 0 || int(c.MaxTxVQ) > hi {
		return fmt.Errorf("%w: %d, want 1 to %d", ErrTxQueues, c.MaxTxVQ, hi)
	}
	return nil
}

// DecodeRSSConfig parses the little-endian payload of
// VIRTIO_NET_CTRL_MQ_RSS_CONFIG, which must be exactly b, and validates it
// against l (see RSSConfig.Validate). The result shares no memory with b.
// On error it returns the zero RSSConfig; the error wraps ErrTruncated,
// ErrTrailingBytes, ErrTableMask, ErrTxQueues or one of rss.Validate's
// errors.
func DecodeRSSConfig(b []byte, l rss.Limits) (RSSConfig, error) {
	if len(b) < rssHeaderLen {
		return RSSConfig{}, fmt.Errorf("%w: rss config is %d bytes, header needs %d", ErrTruncated, len(b), rssHeaderLen)
	}
	n := int(binary.LittleEndian.Uint16(b[4:])) + 1
	if n&(n-1) != 0 {
		return RSSConfig{}, fmt.Errorf("%w: mask %#x", ErrTableMask, n-1)
	}
	// end is where the key starts; checking it before the allocation below
	// bounds the table by the input's size.
	end := rssHeaderLen + 2*n + rssTrailerLen
	if len(b) < end {
		return RSSConfig{}, fmt.Errorf("%w: rss config is %d bytes, %d-entry table needs %d before the key", ErrTruncated, len(b), n, end)
	}
	klen := int(b[end-1])
	switch {
	case len(b) < end+klen:
		return RSSConfig{}, fmt.Errorf("%w: rss config is %d bytes, %d-byte key needs %d", ErrTruncated, len(b), klen, end+klen)
	case len(b) > end+klen:
		return RSSConfig{}, fmt.Errorf("%w: %d after the key", ErrTrailingBytes, len(b)-end-klen)
	}
	c := RSSConfig{
		Config: rss.Config{
			HashTypes:         rss.HashType(binary.LittleEndian.Uint32(b)),
			UnclassifiedQueue: binary.LittleEndian.Uint16(b[6:]),
			Table:             make([]uint16, n),
			// Copied: the control buffer belongs to the driver.
			Key: append([]byte(nil), b[end:]...),
		},
		MaxTxVQ: binary.LittleEndian.Uint16(b[end-rssTrailerLen:]),
	}
	for i := range c.Table {
		c.Table[i] = binary.LittleEndian.Uint16(b[rssHeaderLen+2*i:])
	}
	if err := c.Validate(l); err != nil {
		return RSSConfig{}, fmt.Errorf("virtio: rss config: %w", err)
	}
	return c, nil
}

// AppendBinary appends the wire form of c to b. It does not check c against
// any device limits, only that the wire format can express it: the table
// length must be a power of two from 1 to 65536 (rss.ErrTableLength) and
// the key at most 255 bytes (rss.ErrKeySize). On error b is returned
// unchanged.
func (c *RSSConfig) AppendBinary(b []byte) ([]byte, error) {
	n := len(c.Table)
	if n == 0 || n&(n-1) != 0 || n > maxWireTable {
		return b, fmt.Errorf("%w: %d entries, wire format needs a power of two from 1 to %d", rss.ErrTableLength, n, maxWireTable)
	}
	if len(c.Key) > rss.MaxKeySize {
		return b, fmt.Errorf("%w: %d bytes, wire format holds at most %d", rss.ErrKeySize, len(c.Key), rss.MaxKeySize)
	}
	le := binary.LittleEndian
	b = le.AppendUint32(b, uint32(c.HashTypes))
	b = le.AppendUint16(b, uint16(n-1))
	b = le.AppendUint16(b, c.UnclassifiedQueue)
	for _, q := range c.Table {
		b = le.AppendUint16(b, q)
	}
	b = le.AppendUint16(b, c.MaxTxVQ)
	b = append(b, uint8(len(c.Key)))
	return append(b, c.Key...), nil
}

// MarshalBinary returns the wire form of c; see AppendBinary.
func (c *RSSConfig) MarshalBinary() ([]byte, error) {
	return c.AppendBinary(nil)
}

// HashConfig is struct virtio_net_hash_config, the payload of
// VIRTIO_NET_CTRL_MQ_HASH_CONFIG, which a driver with VIRTIO_NET_F_HASH_REPORT
// but without VIRTIO_NET_F_RSS uses to choose what the device hashes and
// reports without steering by it.
type HashConfig struct {
	// HashTypes are the hash types to compute and report; 0 disables
	// hash reporting.
	HashTypes rss.HashType
	// Key is the Toeplitz key; empty only when HashTypes is 0.
	Key []byte
}

// Validate reports whether c is acceptable to a device with limits l. Only
// l.MaxKeySize and l.HashTypes matter. The key must be 1 to l.MaxKeySize
// bytes, or empty when HashTypes is 0 (rss.ErrKeySize); the hash types
// must be supported (rss.ErrHashTypes). Limits with MaxKeySize outside 1..255
// give rss.ErrInvalidLimits.
func (c *HashConfig) Validate(l rss.Limits) error {
	if l.MaxKeySize < 1 || l.MaxKeySize > rss.MaxKeySize {
		return fmt.Errorf("%w: max key size %d", rss.ErrInvalidLimits, l.MaxKeySize)
	}
	if len(c.Key) > l.MaxKeySize || len(c.Key) == 0 && c.HashTypes != 0 {
		return fmt.Errorf("%w: %d bytes with hash types %s, want 1 to %d", rss.ErrKeySize, len(c.Key), c.HashTypes, l.MaxKeySize)
	}
	if bad := c.HashTypes &^ l.HashTypes; bad != 0 {
		return fmt.Errorf("%w: %s not in supported set %s", rss.ErrHashTypes, bad, l.HashTypes)
	}
	return nil
}

// DecodeHashConfig parses the little-endian payload of
// VIRTIO_NET_CTRL_MQ_HASH_CONFIG, which must be exactly b, and validates it
// against l (see HashConfig.Validate). The reserved field is ignored. The
// result shares no memory with b; an empty key decodes as nil. On error it
// returns the zero HashConfig.
func DecodeHashConfig(b []byte, l rss.Limits) (HashConfig, error) {
	if len(b) < hashFixedLen {
		return HashConfig{}, fmt.Errorf("%w: hash config is %d bytes, needs at least %d", ErrTruncated, len(b), hashFixedLen)
	}
	klen := int(b[hashFixedLen-1])
	switch {
	case len(b) < hashFixedLen+klen:
		return HashConfig{}, fmt.Errorf("%w: hash config is %d bytes, %d-byte key needs %d", ErrTruncated, len(b), klen, hashFixedLen+klen)
	case len(b) > hashFixedLen+klen:
		return HashConfig{}, fmt.Errorf("%w: %d after the key", ErrTrailingBytes, len(b)-hashFixedLen-klen)
	}
	c := HashConfig{
		HashTypes: rss.HashType(binary.LittleEndian.Uint32(b)),
		Key:       append([]byte(nil), b[hashFixedLen:]...),
	}
	if err := c.Validate(l); err != nil {
		return HashConfig{}, fmt.Errorf("virtio: hash config: %w", err)
	}
	return c, nil
}

// AppendBinary appends the wire form of c to b, with the reserved field
// zero. The key must be at most 255 bytes (rss.ErrKeySize); nothing else
// is checked. On error b is returned unchanged.
func (c *HashConfig) AppendBinary(b []byte) ([]byte, error) {
	if len(c.Key) > rss.MaxKeySize {
		return b, fmt.Errorf("%w: %d bytes, wire format holds at most %d", rss.ErrKeySize, len(c.Key), rss.MaxKeySize)
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(c.HashTypes))
	b = append(b, 0, 0, 0, 0, 0, 0, 0, 0, uint8(len(c.Key)))
	return append(b, c.Key...), nil
}

// MarshalBinary returns the wire form of c; see AppendBinary.
func (c *HashConfig) MarshalBinary() ([]byte, error) {
	return c.AppendBinary(nil)
}

// Ack maps the result of decoding and applying a control command to the
// byte the device writes back: AckOK for nil, AckErr for any error.
func Ack(err error) uint8 {
	if err != nil {
		return AckErr
	}
	return AckOK
}
