package virtio

import (
	"bytes"
	"errors"
	"testing"

	"github.com/vrss-dev/vrss/rss"
)

// goldenNetHdr is a TCP/IPv6 TSO packet with a partial checksum.
var goldenNetHdr = []byte{
	0x01,       // flags: NEEDS_CSUM
	0x04,       // gso_type: TCPV6
	0x4a, 0x00, // hdr_len 74: Ethernet, IPv6, TCP
	0xa8, 0x05, // gso_size 1448
	0x36, 0x00, // csum_start 54: the TCP header
	0x10, 0x00, // csum_offset 16: TCP checksum field
	0x02, 0x01, // num_buffers 0x0102
}

var goldenNetHdrValue = NetHdr{
	Flags:      FlagNeedsCsum,
	GSOType:    GSOTCPv6,
	HdrLen:     74,
	GSOSize:    1448,
	CsumStart:  54,
	CsumOffset: 16,
	NumBuffers: 0x0102,
}

var goldenNetHdrHash = []byte{
	0x02,       // flags: DATA_VALID
	0x00,       // gso_type: NONE
	0x00, 0x00, // hdr_len 0
	0x00, 0x00, // gso_size 0
	0x00, 0x00, // csum_start 0
	0x00, 0x00, // csum_offset 0
	0x01, 0x00, // num_buffers 1
	0x78, 0x56, 0x34, 0x12, // hash_value 0x12345678
	0x05, 0x00, // hash_report 5: TCPv6
	0x00, 0x00, // padding
}

var goldenNetHdrHashValue = NetHdrHash{
	NetHdr:     NetHdr{Flags: FlagDataValid, GSOType: GSONone, NumBuffers: 1},
	HashValue:  0x12345678,
	HashReport: rss.ReportTCPv6,
}

func TestNetHdrGolden(t *testing.T) {
	h, err := DecodeNetHdr(goldenNetHdr)
	if err != nil || h != goldenNetHdrValue {
		t.Errorf("DecodeNetHdr = %+v, %v; want %+v", h, err, goldenNetHdrValue)
	}
	// The packet that follows the header is not the header's business.
	h, err = DecodeNetHdr(append(bytes.Clone(goldenNetHdr), 0xff, 0xff))
	if err != nil || h != goldenNetHdrValue {
		t.Errorf("DecodeNetHdr with packet = %+v, %v", h, err)
	}
	b := bytes.Repeat([]byte{0xcc}, NetHdrLen+1)
	goldenNetHdrValue.Encode(b)
	if !bytes.Equal(b[:NetHdrLen], goldenNetHdr) || b[NetHdrLen] != 0xcc {
		t.Errorf("Encode = % x\nwant     % x cc", b, goldenNetHdr)
	}
}

func TestNetHdrHashGolden(t *testing.T) {
	h, err := DecodeNetHdrHash(goldenNetHdrHash)
	if err != nil || h != goldenNetHdrHashValue {
		t.Errorf("DecodeNetHdrHash = %+v, %v; want %+v", h, err, goldenNetHdrHashValue)
	}
	// Padding is ignored on decode and zeroed on encode.
	h, err = DecodeNetHdrHash(patch(goldenNetHdrHash, 18, 0xff, 0xff))
	if err != nil || h != goldenNetHdrHashValue {
		t.Errorf("DecodeNetHdrHash with padding = %+v, %v", h, err)
	}
	b := bytes.Repeat([]byte{0xcc}, NetHdrHashLen+1)
	goldenNetHdrHashValue.Encode(b)
	if !bytes.Equal(b[:NetHdrHashLen], goldenNetHdrHash) || b[NetHdrHashLen] != 0xcc {
		t.Errorf("Encode = % x\nwant     % x cc", b, goldenNetHdrHash)
	}
}

func TestNetHdrTruncated(t *testing.T) {
	for i := range NetHdrLen {
		if _, err := DecodeNetHdr(bytes.Clone(goldenNetHdr[:i])); !errors.Is(err, ErrTruncated) {
			t.Errorf("DecodeNetHdr(%d bytes) error = %v", i, err)
		}
	}
	for i := range NetHdrHashLen {
		if _, err := DecodeNetHdrHash(bytes.Clone(goldenNetHdrHash[:i])); !errors.Is(err, ErrTruncated) {
			t.Errorf("DecodeNetHdrHash(%d bytes) error = %v", i, err)
		}
	}
}

func TestEncodeShortPanics(t *testing.T) {
	for _, tc := range []struct {
		name   string
		n      int
		encode func([]byte)
	}{
		{"NetHdr", NetHdrLen - 1, goldenNetHdrValue.Encode},
		{"NetHdrHash", NetHdrHashLen - 1, goldenNetHdrHashValue.Encode},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := make([]byte, tc.n)
			defer func() {
				if recover() == nil {
					t.Error("Encode into a short buffer did not panic")
				}
				if !bytes.Equal(b, make([]byte, tc.n)) {
					t.Errorf("Encode wrote % x before panicking", b)
				}
			}()
			tc.encode(b)
		})
	}
}
