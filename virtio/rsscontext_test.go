package virtio

import (
	"bytes"
	"encoding"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/vrss-dev/vrss/rss"
)

// unhex decodes the hex digits of s, ignoring white space and comments
// from # to the end of a line, so that golden bytes can be laid out field
// by field.
func unhex(s string) []byte {
	var b []byte
	var hi int = -1
	for _, line := range strings.Split(s, "\n") {
		line, _, _ = strings.Cut(line, "#")
		for _, r := range line {
			var v int
			switch {
			case r >= '0' && r <= '9':
				v = int(r - '0')
			case r >= 'a' && r <= 'f':
				v = int(r-'a') + 10
			case r == ' ' || r == '\t':
				continue
			default:
				panic("unhex: bad character " + string(r))
			}
			if hi < 0 {
				hi = v
			} else {
				b = append(b, byte(hi<<4|v))
				hi = -1
			}
		}
	}
	if hi >= 0 {
		panic("unhex: odd number of digits")
	}
	return b
}

// checkWire checks that v marshals to wire, and appends it after a prefix.
func checkWire(t *testing.T, v interface {
	encoding.BinaryMarshaler
	encoding.BinaryAppender
}, wire []byte) {
	t.Helper()
	got, err := v.MarshalBinary()
	if err != nil || !bytes.Equal(got, wire) {
		t.Errorf("MarshalBinary = % x, %v\nwant            % x", got, err, wire)
	}
	prefix := []byte{0xee, 0xff}
	got, err = v.AppendBinary(bytes.Clone(prefix))
	if err != nil || !bytes.Equal(got, append(bytes.Clone(prefix), wire...)) {
		t.Errorf("AppendBinary(prefix) = % x, %v", got, err)
	}
}

var goldenRSSContext = append(unhex(`
	02 01                # rss_ctx_id 0x0102
	00 00 00 00 00 00    # reserved[6]
`), goldenRSS...)

var goldenRSSContextValue = RSSContext{ID: 0x0102, RSSConfig: goldenRSSConfig}

func TestRSSContextGolden(t *testing.T) {
	c, err := DecodeRSSContext(goldenRSSContext, goldenRSSLimits)
	if err != nil || !reflect.DeepEqual(c, goldenRSSContextValue) {
		t.Fatalf("DecodeRSSContext = %+v, %v", c, err)
	}
	checkWire(t, &goldenRSSContextValue, goldenRSSContext)

	// The reserved bytes are ignored.
	c, err = DecodeRSSContext(patch(goldenRSSContext, 2, 1, 2, 3, 4, 5, 6), goldenRSSLimits)
	if err != nil || !reflect.DeepEqual(c, goldenRSSContextValue) {
		t.Errorf("with reserved bytes set: %+v, %v", c, err)
	}

	// The result shares no memory with its input.
	b := bytes.Clone(goldenRSSContext)
	c, _ = DecodeRSSContext(b, goldenRSSLimits)
	clear(b)
	if !reflect.DeepEqual(c, goldenRSSContextValue) {
		t.Errorf("context changed with its input: %+v", c)
	}

	capWire := unhex("08 01") // max_rss_contexts 0x0108
	cp, err := DecodeRSSContextCap(capWire)
	if err != nil || cp.MaxContexts != 0x0108 {
		t.Errorf("DecodeRSSContextCap = %+v, %v", cp, err)
	}
	checkWire(t, &cp, capWire)

	delWire := unhex("03 02") // rss_ctx_id 0x0203
	id, err := DecodeRSSContextID(delWire)
	if err != nil || id != 0x0203 {
		t.Errorf("DecodeRSSContextID = %d, %v", id, err)
	}
	checkWire(t, id, delWire)
}

func TestRSSContextErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		wire []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"header only", goldenRSSContext[:8], ErrTruncated},
		{"short header", goldenRSSContext[:7], ErrTruncated},
		{"short key", goldenRSSContext[:len(goldenRSSContext)-1], ErrTruncated},
		{"trailing", append(bytes.Clone(goldenRSSContext), 0), ErrTrailingBytes},
		{"mask 2", patch(goldenRSSContext, 8+offMask, 2, 0), ErrTableMask},
		{"max_tx_vq 0", patch(goldenRSSContext, 8+offMaxTxVQ, 0, 0), ErrTxQueues},
		{"queue 260", patch(goldenRSSContext, 8+offTable1, 0x04, 0x01), rss.ErrQueueRange},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := DecodeRSSContext(tc.wire, goldenRSSLimits)
			if !errors.Is(err, tc.want) || !reflect.DeepEqual(c, RSSContext{}) {
				t.Errorf("DecodeRSSContext = %+v, %v; want %v", c, err, tc.want)
			}
		})
	}
	for _, b := range [][]byte{nil, {1}, {1, 2, 3}} {
		if c, err := DecodeRSSContextCap(b); err == nil || c != (RSSContextCap{}) {
			t.Errorf("DecodeRSSContextCap(% x) = %+v, %v", b, c, err)
		}
		if id, err := DecodeRSSContextID(b); err == nil || id != 0 {
			t.Errorf("DecodeRSSContextID(% x) = %d, %v", b, id, err)
		}
	}
	if _, err := DecodeRSSContextID([]byte{1, 2, 3}); !errors.Is(err, ErrTrailingBytes) {
		t.Errorf("3 bytes: %v, want ErrTrailingBytes", err)
	}

	bad := RSSContext{ID: 1, RSSConfig: RSSConfig{Config: rss.Config{Key: []byte{1}, Table: make([]uint16, 3)}}}
	if b, err := bad.AppendBinary([]byte{0xee}); !errors.Is(err, rss.ErrTableLength) || !bytes.Equal(b, []byte{0xee}) {
		t.Errorf("AppendBinary of a 3-entry table = % x, %v", b, err)
	}
}

func TestRSSContextConstants(t *testing.T) {
	if FeatureRSSContext != 64 || CtrlClassRSSContext != 9 || CmdRSSContextCapGet != 0 ||
		CmdRSSContextAdd != 1 || CmdRSSContextMod != 2 || CmdRSSContextDel != 3 {
		t.Error("RSS context constants differ from virtio 1.4")
	}
}
