package agent

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vrss-dev/vrss/port"
)

// slicedRecord is a valid record of a sliced port.
func slicedRecord() afxdpRecord {
	pol := port.Policy{MACs: []port.MAC{{0x52, 0x54, 0, 0, 0, 1}}, IPv4: []netip.Prefix{netip.MustParsePrefix("10.0.0.5/32")}, Default: port.Allow}
	return afxdpRecord{Name: "x0", Dev: "eth1", QueueStart: 2, Queues: 2, OwnerUID: 4242, OwnerGID: 4242, Policy: &pol,
		Slice: &afxdpSlice{State: sliceReady, Context: 3, Rules: []sliceRule{{Location: 7, Prefix: netip.MustParsePrefix("10.0.0.5/32")}}}}
}

// TestAFXDPSliceRecord: a sliced port's record reads back; a slice vrssd
// will not act on (it would delete what the record names) is refused,
// naming the file (no privileges needed).
func TestAFXDPSliceRecord(t *testing.T) {
	s := &Server{opts: Options{StateDir: t.TempDir()}}
	rec := slicedRecord()
	if err := s.writeAFXDP(rec.key(), &rec); err != nil {
		t.Fatal(err)
	}
	path := s.afxdpPath(rec.key())
	got, err := readAFXDP(path)
	if err != nil || got.Slice == nil || got.Slice.Context != 3 || got.Slice.Rules[0] != rec.Slice.Rules[0] {
		t.Fatalf("read back %+v, %v", got, err)
	}
	good, _ := os.ReadFile(path)
	if !bytes.Contains(good, []byte(`"slice":{"state":"ready","context":3,"rules":[{"location":7,"prefix":"10.0.0.5/32"}]}`)) {
		t.Errorf("the slice's bytes: %s", good)
	}
	for _, c := range []struct{ from, to, want string }{
		{`"state":"ready"`, `"state":"done"`, "slice state"},
		{`"context":3,`, ``, "ready slice without"},
		{`"context":3`, `"context":4294967295`, "slice context"},
		{`"prefix":"10.0.0.5/32"`, `"prefix":"10.0.0.5/24"`, "slice rule prefix"},
		{`"prefix":"10.0.0.5/32"`, `"prefix":"0.0.0.0/0"`, "slice rule prefix"},
		{`"prefix":"10.0.0.5/32"`, `"prefix":"::ffff:10.0.0.5/128"`, "slice rule prefix"},
		{`"location":7`, `"location":4294967294`, "slice rule location"},
		{`"rules":[{"location":7,"prefix":"10.0.0.5/32"}]`, `"rules":[{"location":7,"prefix":"10.0.0.5/32"},{"location":7,"prefix":"10.0.0.6/32"}]`, "slice rule location 7"},
		{`"state":"ready","context":3,`, `"state":"creating",`, "rules without"},
		{`"rules":[{"location"`, `"pending":["10.0.0.0/8","1.2.3.5/31"],"rules":[{"location"`, "pending prefix"},
		{`"rules":[{"location"`, `"unknown":1,"rules":[{"location"`, "unknown field"},
	} {
		if err := os.WriteFile(path, bytes.Replace(good, []byte(c.from), []byte(c.to), 1), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := readAFXDP(path)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s → %s: %v, want an error naming %s and saying %q", c.from, c.to, err, path, c.want)
		}
	}
	many := make([]string, maxSliceRules+1)
	for i := range many {
		many[i] = `"10.0.0.0/8"`
	}
	os.WriteFile(path, bytes.Replace(good, []byte(`"rules":[{"location"`), []byte(`"pending":[`+strings.Join(many, ",")+`],"rules":[{"location"`), 1), 0o600)
	if _, err := readAFXDP(path); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Errorf("too many pending prefixes: %v", err)
	}
}

// FuzzAFXDPRecord: a port's record, untrusted bytes at start, never
// panics the reader; what it accepts has a slice vrssd can act on and
// writes back to a record that reads the same.
func FuzzAFXDPRecord(f *testing.F) {
	rec := slicedRecord()
	b, _ := json.Marshal(rec)
	f.Add(b)
	rec.Slice = &afxdpSlice{State: sliceCreating}
	b, _ = json.Marshal(rec)
	f.Add(b)
	rec.Slice = &afxdpSlice{State: sliceDeleting, Context: 9, Pending: []netip.Prefix{netip.MustParsePrefix("fd00::/64")}}
	b, _ = json.Marshal(rec)
	f.Add(b)
	dir := f.TempDir()
	s := &Server{opts: Options{StateDir: dir}}
	path := s.afxdpPath(rec.key())
	os.MkdirAll(filepath.Dir(path), 0o700)
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		r, err := readAFXDP(path)
		if err != nil || r == nil {
			return
		}
		if r.key() != rec.key() {
			t.Fatalf("a record of %q accepted from the file of %q", r.Name, rec.Name)
		}
		if r.Slice != nil && r.Slice.State == sliceReady && r.Slice.Context == 0 {
			t.Fatalf("a ready slice without a context: %+v", r.Slice)
		}
		if err := s.writeAFXDP(r.key(), r); err != nil {
			t.Fatal(err)
		}
		back, err := readAFXDP(path)
		if err != nil {
			t.Fatalf("%s: written back, refused: %v", b, err)
		}
		if x, y := must(json.Marshal(r)), must(json.Marshal(back)); !bytes.Equal(x, y) {
			t.Fatalf("round trip:\n%s\n%s", x, y)
		}
	})
}
