package virtio

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/vrss-dev/vrss/rss"
)

// goldenKey is rss.DefaultKey written out, so that the golden bytes below do
// not depend on another package's variable.
var goldenKey = []byte{
	0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2,
	0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
	0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4,
	0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
	0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
}

// goldenRSSLimits admits goldenRSS with nothing to spare: 260 queue pairs,
// so that queue numbers above 255 show the byte order of every le16.
var goldenRSSLimits = rss.Limits{MaxKeySize: 40, MaxTableLen: 128, Queues: 260, HashTypes: rss.AllHashTypes}

var goldenRSS = []byte{
	0xb6, 0x01, 0x00, 0x00, // hash_types 0x1b6: tcpv4 udpv4 tcpv6 udpv6 tcp_ex udp_ex
	0x03, 0x00, // indirection_table_mask 3: four entries
	0x02, 0x01, // unclassified_queue 0x0102
	0x00, 0x00, // indirection_table[0] 0
	0x03, 0x01, // indirection_table[1] 0x0103
	0x02, 0x00, // indirection_table[2] 2
	0x01, 0x01, // indirection_table[3] 0x0101
	0x04, 0x01, // max_tx_vq 0x0104 = 260
	0x28, // hash_key_length 40
	// hash_key_data
	0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2,
	0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
	0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4,
	0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
	0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
}

// Offsets into goldenRSS for the error tests.
const (
	offMask    = 4
	offUnclass = 6
	offTable1  = 10
	offMaxTxVQ = 16
	offKeyLen  = 18
)

var goldenRSSConfig = RSSConfig{
	Config: rss.Config{
		HashTypes:         rss.HashTCPv4 | rss.HashUDPv4 | rss.HashTCPv6 | rss.HashUDPv6 | rss.HashTCPEx | rss.HashUDPEx,
		Key:               goldenKey,
		Table:             []uint16{0, 0x0103, 2, 0x0101},
		UnclassifiedQueue: 0x0102,
	},
	MaxTxVQ: 260,
}

// minimalRSS is the smallest config virtio allows: one table entry, a
// one-byte key, no hash types.
var minimalRSS = []byte{
	0x00, 0x00, 0x00, 0x00, // hash_types: none
	0x00, 0x00, // indirection_table_mask 0: one entry
	0x00, 0x00, // unclassified_queue 0
	0x00, 0x00, // indirection_table[0] 0
	0x01, 0x00, // max_tx_vq 1
	0x01, // hash_key_length 1
	0xaa, // hash_key_data
}

var minimalRSSConfig = RSSConfig{
	Config:  rss.Config{Key: []byte{0xaa}, Table: []uint16{0}},
	MaxTxVQ: 1,
}

var goldenHashLimits = rss.Limits{MaxKeySize: 4, MaxTableLen: 128, HashTypes: rss.HashIPv4 | rss.HashIPv6}

var goldenHash = []byte{
	0x09, 0x00, 0x00, 0x00, // hash_types 0x9: ipv4 ipv6
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // reserved[4]
	0x04,                   // hash_key_length 4
	0x01, 0x02, 0x03, 0x04, // hash_key_data
}

var goldenHashConfig = HashConfig{HashTypes: rss.HashIPv4 | rss.HashIPv6, Key: []byte{1, 2, 3, 4}}

// disabledHash turns hash reporting off: no types, no key.
var disabledHash = []byte{
	0x00, 0x00, 0x00, 0x00, // hash_types: none
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // reserved[4]
	0x00, // hash_key_length 0
}

// patch returns a copy of b with v written at off.
func patch(b []byte, off int, v ...byte) []byte {
	b = bytes.Clone(b)
	copy(b[off:], v)
	return b
}

func TestRSSConfigGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		wire []byte
		l    rss.Limits
		c    RSSConfig
	}{
		{"golden", goldenRSS, goldenRSSLimits, goldenRSSConfig},
		{"minimal", minimalRSS, rss.DefaultLimits(1), minimalRSSConfig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := DecodeRSSConfig(tc.wire, tc.l)
			if err != nil {
				t.Fatalf("DecodeRSSConfig: %v", err)
			}
			if !reflect.DeepEqual(c, tc.c) {
				t.Errorf("DecodeRSSConfig = %+v, want %+v", c, tc.c)
			}
			got, err := tc.c.MarshalBinary()
			if err != nil {
				t.Fatalf("MarshalBinary: %v", err)
			}
			if !bytes.Equal(got, tc.wire) {
				t.Errorf("MarshalBinary = % x\nwant            % x", got, tc.wire)
			}
			prefix := []byte{0xee, 0xff}
			got, err = tc.c.AppendBinary(bytes.Clone(prefix))
			if err != nil || !bytes.Equal(got, append(bytes.Clone(prefix), tc.wire...)) {
				t.Errorf("AppendBinary(prefix) = % x, %v", got, err)
			}
		})
	}
}

func TestDecodeRSSConfigCopies(t *testing.T) {
	b := bytes.Clone(goldenRSS)
	c, err := DecodeRSSConfig(b, goldenRSSLimits)
	if err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = 0xff
	}
	if !reflect.DeepEqual(c, goldenRSSConfig) {
		t.Errorf("config changed with its input: %+v", c)
	}
}

func TestDecodeRSSConfigErrors(t *testing.T) {
	// A 256-entry table: over goldenRSSLimits.MaxTableLen.
	big := []byte{0x00, 0x00, 0x00, 0x00, 0xff, 0x00, 0x00, 0x00}
	big = append(big, make([]byte, 2*256)...)
	big = append(big, 0x01, 0x00, 0x01, 0xaa)
	// A 65536-entry table: the largest mask, over rss.MaxTableLen.
	huge := []byte{0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0x00, 0x00}
	huge = append(huge, make([]byte, 2*65536)...)
	huge = append(huge, 0x01, 0x00, 0x01, 0xaa)
	maxLimits := rss.Limits{MaxKeySize: 255, MaxTableLen: rss.MaxTableLen, HashTypes: rss.AllHashTypes}

	for _, tc := range []struct {
		name string
		wire []byte
		l    rss.Limits
		want error
	}{
		{"empty", nil, goldenRSSLimits, ErrTruncated},
		{"short header", goldenRSS[:7], goldenRSSLimits, ErrTruncated},
		{"short key", goldenRSS[:len(goldenRSS)-1], goldenRSSLimits, ErrTruncated},
		{"trailing", append(bytes.Clone(goldenRSS), 0), goldenRSSLimits, ErrTrailingBytes},
		{"mask 2", patch(goldenRSS, offMask, 0x02, 0x00), goldenRSSLimits, ErrTableMask},
		{"mask 0xfffe", patch(goldenRSS, offMask, 0xfe, 0xff), goldenRSSLimits, ErrTableMask},
		{"max_tx_vq 0", patch(goldenRSS, offMaxTxVQ, 0x00, 0x00), goldenRSSLimits, ErrTxQueues},
		{"max_tx_vq 0 unchecked queues", patch(minimalRSS, 10, 0x00, 0x00), rss.DefaultLimits(0), ErrTxQueues},
		{"max_tx_vq 261", patch(goldenRSS, offMaxTxVQ, 0x05, 0x01), goldenRSSLimits, ErrTxQueues},
		{"key 0 bytes", []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00}, rss.DefaultLimits(1), rss.ErrKeySize},
		{"key 41 bytes", append(patch(goldenRSS, offKeyLen, 41), 0x00), goldenRSSLimits, rss.ErrKeySize},
		{"table 256", big, goldenRSSLimits, rss.ErrTableLength},
		{"table 65536", huge, maxLimits, rss.ErrTableLength},
		{"unclassified 260", patch(goldenRSS, offUnclass, 0x04, 0x01), goldenRSSLimits, rss.ErrQueueRange},
		{"table entry 260", patch(goldenRSS, offTable1, 0x04, 0x01), goldenRSSLimits, rss.ErrQueueRange},
		{"undefined hash type", patch(goldenRSS, 0, 0x00, 0x02, 0x00, 0x00), goldenRSSLimits, rss.ErrHashTypes},
		{"unsupported hash type", goldenRSS, rss.Limits{MaxKeySize: 40, MaxTableLen: 128, HashTypes: rss.HashTCPv4}, rss.ErrHashTypes},
		{"invalid limits", goldenRSS, rss.Limits{}, rss.ErrInvalidLimits},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := DecodeRSSConfig(tc.wire, tc.l)
			if !errors.Is(err, tc.want) {
				t.Fatalf("DecodeRSSConfig error = %v, want %v", err, tc.want)
			}
			if !reflect.DeepEqual(c, RSSConfig{}) {
				t.Errorf("DecodeRSSConfig returned %+v with its error", c)
			}
			if Ack(err) != AckErr {
				t.Errorf("Ack = %d, want AckErr", Ack(err))
			}
		})
	}
}

// TestDecodeRSSConfigTruncated cuts a valid config at every offset.
func TestDecodeRSSConfigTruncated(t *testing.T) {
	for _, wire := range [][]byte{goldenRSS, minimalRSS} {
		for i := range len(wire) {
			// A fresh slice of exact capacity, so that reading past the
			// end would be caught rather than see the rest of wire.
			b := bytes.Clone(wire[:i])
			if _, err := DecodeRSSConfig(b, rss.DefaultLimits(0)); !errors.Is(err, ErrTruncated) {
				t.Errorf("%d of %d bytes: error %v, want ErrTruncated", i, len(wire), err)
			}
		}
	}
}

func TestRSSConfigAppendBinaryErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    RSSConfig
		want error
	}{
		{"no table", RSSConfig{Config: rss.Config{Key: []byte{1}}}, rss.ErrTableLength},
		{"table 3", RSSConfig{Config: rss.Config{Key: []byte{1}, Table: make([]uint16, 3)}}, rss.ErrTableLength},
		{"table 131072", RSSConfig{Config: rss.Config{Key: []byte{1}, Table: make([]uint16, 1<<17)}}, rss.ErrTableLength},
		{"key 256", RSSConfig{Config: rss.Config{Key: make([]byte, 256), Table: make([]uint16, 1)}}, rss.ErrKeySize},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prefix := []byte{0xee}
			b, err := tc.c.AppendBinary(prefix)
			if !errors.Is(err, tc.want) {
				t.Errorf("AppendBinary error = %v, want %v", err, tc.want)
			}
			if !bytes.Equal(b, prefix) {
				t.Errorf("AppendBinary changed b to % x", b)
			}
			if b, err := tc.c.MarshalBinary(); b != nil || err == nil {
				t.Errorf("MarshalBinary = % x, %v", b, err)
			}
		})
	}
}

// TestRSSConfigWireLimits encodes the largest table and key the wire format
// holds: more than the engine accepts, which is for the decoder to reject.
func TestRSSConfigWireLimits(t *testing.T) {
	c := RSSConfig{Config: rss.Config{Key: make([]byte, 255), Table: make([]uint16, 1<<16)}, MaxTxVQ: 1}
	b, err := c.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 8+2<<16+3+255 || b[offMask] != 0xff || b[offMask+1] != 0xff || b[len(b)-256] != 255 {
		t.Errorf("%d bytes, mask % x, key length %d", len(b), b[offMask:offMask+2], b[len(b)-256])
	}
}

func TestHashConfigGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		wire []byte
		c    HashConfig
	}{
		{"golden", goldenHash, goldenHashConfig},
		{"disabled", disabledHash, HashConfig{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := DecodeHashConfig(tc.wire, goldenHashLimits)
			if err != nil {
				t.Fatalf("DecodeHashConfig: %v", err)
			}
			if !reflect.DeepEqual(c, tc.c) {
				t.Errorf("DecodeHashConfig = %+v, want %+v", c, tc.c)
			}
			got, err := tc.c.MarshalBinary()
			if err != nil {
				t.Fatalf("MarshalBinary: %v", err)
			}
			if !bytes.Equal(got, tc.wire) {
				t.Errorf("MarshalBinary = % x\nwant            % x", got, tc.wire)
			}
			got, err = tc.c.AppendBinary([]byte{0xee})
			if err != nil || !bytes.Equal(got, append([]byte{0xee}, tc.wire...)) {
				t.Errorf("AppendBinary(prefix) = % x, %v", got, err)
			}
		})
	}
}

func TestDecodeHashConfigReserved(t *testing.T) {
	b := patch(goldenHash, 4, 0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03, 0x04)
	c, err := DecodeHashConfig(b, goldenHashLimits)
	if err != nil || !reflect.DeepEqual(c, goldenHashConfig) {
		t.Fatalf("DecodeHashConfig = %+v, %v; want %+v", c, err, goldenHashConfig)
	}
	for i := range b {
		b[i] = 0xff
	}
	if !reflect.DeepEqual(c, goldenHashConfig) {
		t.Errorf("config changed with its input: %+v", c)
	}
}

func TestDecodeHashConfigDisabledWithKey(t *testing.T) {
	// No hash types but a key: reporting is off, the key is kept.
	b := patch(goldenHash, 0, 0x00)
	c, err := DecodeHashConfig(b, goldenHashLimits)
	if err != nil || c.HashTypes != 0 || !bytes.Equal(c.Key, goldenHashConfig.Key) {
		t.Errorf("DecodeHashConfig = %+v, %v", c, err)
	}
}

func TestDecodeHashConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		wire []byte
		l    rss.Limits
		want error
	}{
		{"empty", nil, goldenHashLimits, ErrTruncated},
		{"short fixed part", goldenHash[:12], goldenHashLimits, ErrTruncated},
		{"short key", goldenHash[:len(goldenHash)-1], goldenHashLimits, ErrTruncated},
		{"trailing", append(bytes.Clone(goldenHash), 0), goldenHashLimits, ErrTrailingBytes},
		{"trailing after no key", append(bytes.Clone(disabledHash), 0), goldenHashLimits, ErrTrailingBytes},
		{"types without key", patch(disabledHash, 0, 0x01), goldenHashLimits, rss.ErrKeySize},
		{"key over limit", goldenHash, rss.Limits{MaxKeySize: 3, HashTypes: rss.AllHashTypes}, rss.ErrKeySize},
		{"unsupported hash type", patch(goldenHash, 0, 0x0b), goldenHashLimits, rss.ErrHashTypes},
		{"undefined hash type", patch(goldenHash, 0, 0x09, 0x00, 0x00, 0x80), rss.Limits{MaxKeySize: 40, HashTypes: rss.AllHashTypes}, rss.ErrHashTypes},
		{"invalid limits", goldenHash, rss.Limits{}, rss.ErrInvalidLimits},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := DecodeHashConfig(tc.wire, tc.l)
			if !errors.Is(err, tc.want) {
				t.Fatalf("DecodeHashConfig error = %v, want %v", err, tc.want)
			}
			if !reflect.DeepEqual(c, HashConfig{}) {
				t.Errorf("DecodeHashConfig returned %+v with its error", c)
			}
			if Ack(err) != AckErr {
				t.Errorf("Ack = %d, want AckErr", Ack(err))
			}
		})
	}
}

func TestDecodeHashConfigTruncated(t *testing.T) {
	for i := range len(goldenHash) {
		if _, err := DecodeHashConfig(bytes.Clone(goldenHash[:i]), goldenHashLimits); !errors.Is(err, ErrTruncated) {
			t.Errorf("%d of %d bytes: error %v, want ErrTruncated", i, len(goldenHash), err)
		}
	}
}

func TestHashConfigAppendBinaryError(t *testing.T) {
	c := HashConfig{HashTypes: rss.HashIPv4, Key: make([]byte, 256)}
	b, err := c.AppendBinary([]byte{0xee})
	if !errors.Is(err, rss.ErrKeySize) || !bytes.Equal(b, []byte{0xee}) {
		t.Errorf("AppendBinary = % x, %v; want ErrKeySize and b unchanged", b, err)
	}
}

func TestAck(t *testing.T) {
	if Ack(nil) != AckOK {
		t.Errorf("Ack(nil) = %d", Ack(nil))
	}
	if Ack(ErrTruncated) != AckErr {
		t.Errorf("Ack(ErrTruncated) = %d", Ack(ErrTruncated))
	}
	// The wire values virtio defines.
	if AckOK != 0 || AckErr != 1 || CtrlClassMQ != 4 || CmdVQPairsSet != 0 || CmdRSSConfig != 1 || CmdHashConfig != 2 {
		t.Error("control constants differ from virtio")
	}
}
