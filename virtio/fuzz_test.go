package virtio

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/vrss-dev/vrss/rss"
)

// fuzzLimits are as generous as the engine allows, so that the fuzzer
// reaches the accept path.
var fuzzLimits = rss.Limits{MaxKeySize: rss.MaxKeySize, MaxTableLen: rss.MaxTableLen, HashTypes: rss.AllHashTypes}

// knownErrors are all a decoder may return (wrapped).
var knownErrors = []error{
	ErrTruncated, ErrTrailingBytes, ErrTableMask, ErrTxQueues,
	rss.ErrKeySize, rss.ErrTableLength, rss.ErrQueueRange, rss.ErrHashTypes, rss.ErrInvalidLimits,
}

func checkKnown(t *testing.T, err error) {
	t.Helper()
	for _, e := range knownErrors {
		if errors.Is(err, e) {
			return
		}
	}
	t.Fatalf("error %v wraps none of the typed errors", err)
}

func FuzzDecodeRSSConfig(f *testing.F) {
	f.Add(goldenRSS)
	f.Add(minimalRSS)
	f.Add(goldenRSS[:20])
	f.Add(patch(goldenRSS, offMask, 0x02))
	f.Add(patch(goldenRSS, offMaxTxVQ, 0x00, 0x00))
	f.Add(append(bytes.Clone(minimalRSS), 0x00))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeRSSConfig(b, fuzzLimits)
		if err != nil {
			checkKnown(t, err)
			if !reflect.DeepEqual(c, RSSConfig{}) {
				t.Fatalf("non-zero result %+v with error %v", c, err)
			}
			return
		}
		out, err := c.MarshalBinary()
		if err != nil {
			t.Fatalf("accepted %+v but MarshalBinary: %v", c, err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("re-encoded\n% x\nfrom\n% x", out, b)
		}
		c2, err := DecodeRSSConfig(out, fuzzLimits)
		if err != nil || !reflect.DeepEqual(c, c2) {
			t.Fatalf("second decode = %+v, %v; want %+v", c2, err, c)
		}
		// Tighter limits can only turn acceptance into rejection.
		if c3, err := DecodeRSSConfig(b, rss.DefaultLimits(4)); err == nil && !reflect.DeepEqual(c, c3) {
			t.Fatalf("decode under device limits = %+v, want %+v", c3, c)
		}
	})
}

func FuzzDecodeHashConfig(f *testing.F) {
	f.Add(goldenHash)
	f.Add(disabledHash)
	f.Add(patch(goldenHash, 4, 0xde, 0xad, 0xbe, 0xef))
	f.Add(goldenHash[:13])
	f.Add(patch(disabledHash, 0, 0x01))
	f.Add(append(bytes.Clone(goldenHash), 0x00))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeHashConfig(b, fuzzLimits)
		if err != nil {
			checkKnown(t, err)
			if !reflect.DeepEqual(c, HashConfig{}) {
				t.Fatalf("non-zero result %+v with error %v", c, err)
			}
			return
		}
		out, err := c.MarshalBinary()
		if err != nil {
			t.Fatalf("accepted %+v but MarshalBinary: %v", c, err)
		}
		// Reserved is ignored on decode and written as zero.
		want := bytes.Clone(b)
		clear(want[4:12])
		if !bytes.Equal(out, want) {
			t.Fatalf("re-encoded\n% x\nfrom\n% x", out, b)
		}
		c2, err := DecodeHashConfig(out, fuzzLimits)
		if err != nil || !reflect.DeepEqual(c, c2) {
			t.Fatalf("second decode = %+v, %v; want %+v", c2, err, c)
		}
	})
}

func FuzzDecodeNetHdrHash(f *testing.F) {
	f.Add(goldenNetHdrHash)
	f.Add(patch(goldenNetHdrHash, 18, 0xff, 0xff))
	f.Add(append(bytes.Clone(goldenNetHdrHash), 0xaa, 0xbb))
	f.Add(goldenNetHdrHash[:19])
	f.Add(goldenNetHdr)
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := DecodeNetHdrHash(b)
		if len(b) < NetHdrHashLen {
			if !errors.Is(err, ErrTruncated) || h != (NetHdrHash{}) {
				t.Fatalf("%d bytes: %+v, %v; want ErrTruncated", len(b), h, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("%d bytes: %v", len(b), err)
		}
		// The header re-encodes to the input's first 20 bytes, padding
		// zeroed; what follows is the packet, not the header.
		out := make([]byte, NetHdrHashLen)
		h.Encode(out)
		want := bytes.Clone(b[:NetHdrHashLen])
		clear(want[18:])
		if !bytes.Equal(out, want) {
			t.Fatalf("re-encoded\n% x\nfrom\n% x", out, b)
		}
		if h2, err := DecodeNetHdrHash(out); err != nil || h2 != h {
			t.Fatalf("second decode = %+v, %v; want %+v", h2, err, h)
		}
		// The v1 header is the same bytes.
		if h1, err := DecodeNetHdr(b); err != nil || h1 != h.NetHdr {
			t.Fatalf("DecodeNetHdr = %+v, %v; want %+v", h1, err, h.NetHdr)
		}
	})
}

// TestSeedCorpus keeps the committed seeds honest: files named valid_* must
// decode under fuzzLimits and invalid_* must not.
func TestSeedCorpus(t *testing.T) {
	decoders := map[string]func([]byte) error{
		"FuzzDecodeRSSConfig":  func(b []byte) error { _, err := DecodeRSSConfig(b, fuzzLimits); return err },
		"FuzzDecodeHashConfig": func(b []byte) error { _, err := DecodeHashConfig(b, fuzzLimits); return err },
		"FuzzDecodeNetHdrHash": func(b []byte) error { _, err := DecodeNetHdrHash(b); return err },
	}
	for target, decode := range decoders {
		files, err := filepath.Glob(filepath.Join("testdata", "fuzz", target, "*"))
		if err != nil || len(files) == 0 {
			t.Fatalf("%s: no seed corpus (%v)", target, err)
		}
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			// The format is a version line, then one []byte("...") line.
			header, lit, _ := strings.Cut(strings.TrimSpace(string(data)), "\n")
			lit, ok := strings.CutPrefix(lit, "[]byte(")
			lit, ok2 := strings.CutSuffix(lit, ")")
			s, err := strconv.Unquote(lit)
			if header != "go test fuzz v1" || !ok || !ok2 || err != nil {
				t.Errorf("%s: not a go test fuzz v1 []byte file", file)
				continue
			}
			name := filepath.Base(file)
			err = decode([]byte(s))
			switch {
			case strings.HasPrefix(name, "valid_") && err != nil:
				t.Errorf("%s: rejected: %v", file, err)
			case strings.HasPrefix(name, "invalid_") && err == nil:
				t.Errorf("%s: accepted", file)
			}
		}
	}
}
