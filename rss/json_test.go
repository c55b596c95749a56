package rss_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/vrss-dev/vrss/rss"
)

const defaultKeyHex = "6d5a56da255b0ec24167253d43a38fb0d0ca2bcbae7b30b477cb2da38030f20c6a42b73bbeac01fa"

func TestParseConfigJSON(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want rss.Config
	}{
		{
			name: "full",
			in:   `{"hash_types": ["tcpv4", "ipv4"], "key": "0102030405", "indirection_table": [3, 2, 1, 0], "unclassified_queue": 5}`,
			want: rss.Config{HashTypes: rss.HashTCPv4 | rss.HashIPv4, Key: []byte{1, 2, 3, 4, 5}, Table: []uint16{3, 2, 1, 0}, UnclassifiedQueue: 5},
		},
		{
			name: "string types, default key, queues",
			in:   `{"hash_types": "all", "queues": 4}`,
			want: rss.Config{HashTypes: rss.AllHashTypes, Key: rss.DefaultKey, Table: rss.EqualTable(128, 4)},
		},
		{
			name: "comma string, colon key",
			in:   `{"hash_types": "TCPv6, udpv6", "key": "6D:5a:56 da", "indirection_table": [0]}`,
			want: rss.Config{HashTypes: rss.HashTCPv6 | rss.HashUDPv6, Key: []byte{0x6d, 0x5a, 0x56, 0xda}, Table: []uint16{0}},
		},
		{
			name: "no hashing",
			in:   `{"hash_types": [], "indirection_table": [0, 1], "unclassified_queue": 1}`,
			want: rss.Config{Key: rss.DefaultKey, Table: []uint16{0, 1}, UnclassifiedQueue: 1},
		},
		{
			name: "queues, last queue unclassified",
			in:   `{"hash_types": "all", "queues": 4, "unclassified_queue": 3}`,
			want: rss.Config{HashTypes: rss.AllHashTypes, Key: rss.DefaultKey, Table: rss.EqualTable(128, 4), UnclassifiedQueue: 3},
		},
		{
			name: "none string",
			in:   `{"hash_types": "none", "queues": 65536}`,
			want: rss.Config{Key: rss.DefaultKey, Table: rss.EqualTable(128, 65536)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := rss.ParseConfigJSON([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v\nwant %+v", got, tt.want)
			}
			if _, err := rss.New(got); err != nil {
				t.Fatalf("New rejects parsed config: %v", err)
			}
		})
	}
}

func TestParseConfigJSONErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		is   error  // a typed error to match, or nil
		msg  string // a substring of the message
	}{
		{"unknown field", `{"hash_types": "all", "queues": 2, "colour": "red"}`, nil, "unknown field"},
		{"both tables", `{"hash_types": "all", "queues": 2, "indirection_table": [0]}`, nil, "not both"},
		{"no table", `{"hash_types": "all"}`, nil, "required"},
		{"null table", `{"hash_types": "all", "indirection_table": null}`, nil, "required"},
		{"no types", `{"queues": 2}`, nil, "hash_types is required"},
		{"unknown type", `{"hash_types": ["tcpv4", "sctp"], "queues": 2}`, nil, "sctp"},
		{"unknown type string", `{"hash_types": "tcpv4,sctp", "queues": 2}`, nil, "sctp"},
		{"comma in list", `{"hash_types": ["tcpv4,udpv4"], "queues": 2}`, nil, "bad element"},
		{"types not strings", `{"hash_types": 3, "queues": 2}`, nil, "list of names"},
		{"bad hex", `{"hash_types": "all", "key": "zz", "queues": 2}`, nil, "hex"},
		{"odd hex", `{"hash_types": "all", "key": "6d5", "queues": 2}`, nil, "hex"},
		{"empty key", `{"hash_types": "all", "key": "", "queues": 2}`, rss.ErrKeySize, ""},
		{"long key", `{"hash_types": "all", "key": "` + strings.Repeat("ab", 256) + `", "queues": 2}`, rss.ErrKeySize, ""},
		{"empty table", `{"hash_types": "all", "indirection_table": []}`, rss.ErrTableLength, ""},
		{"table not power of two", `{"hash_types": "all", "indirection_table": [0, 1, 2]}`, rss.ErrTableLength, ""},
		{"zero queues", `{"hash_types": "all", "queues": 0}`, rss.ErrQueueRange, ""},
		{"too many queues", `{"hash_types": "all", "queues": 65537}`, rss.ErrQueueRange, ""},
		{"queue too big", `{"hash_types": "all", "indirection_table": [65536]}`, nil, "indirection_table"},
		{"negative queue", `{"hash_types": "all", "unclassified_queue": -1, "queues": 1}`, nil, "unclassified_queue"},
		{"unclassified queue too big", `{"hash_types": "all", "unclassified_queue": 65536, "indirection_table": [0]}`, nil, "unclassified_queue"},
		// With queues the configuration names its queues: the unclassified
		// queue must be one of them, like every table entry.
		{"unclassified beyond queues", `{"hash_types": "all", "queues": 4, "unclassified_queue": 9}`, rss.ErrQueueRange, "unclassified_queue is 9, want 0 to 3"},
		{"unclassified just beyond queues", `{"hash_types": "all", "queues": 1, "unclassified_queue": 1}`, rss.ErrQueueRange, "unclassified_queue"},
		{"trailing data", `{"hash_types": "all", "queues": 1} {}`, nil, "after"},
		{"not an object", `[1, 2]`, nil, "config JSON"},
		{"empty", ``, nil, "config JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := rss.ParseConfigJSON([]byte(tt.in))
			if err == nil {
				t.Fatal("accepted")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %q does not wrap %q", err, tt.is)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not mention %q", err, tt.msg)
			}
		})
	}
}

// The exact bytes MarshalJSON writes; the daemon and documentation rely on
// this form.
func TestMarshalJSONGolden(t *testing.T) {
	c := rss.Config{
		HashTypes:         rss.HashUDPEx | rss.HashIPv4 | rss.HashTCPv4,
		Key:               rss.DefaultKey,
		Table:             []uint16{0, 1, 2, 3, 3, 2, 1, 0},
		UnclassifiedQueue: 2,
	}
	got, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"hash_types":["ipv4","tcpv4","udp_ex"],"key":"` + defaultKeyHex + `","indirection_table":[0,1,2,3,3,2,1,0],"unclassified_queue":2}`
	if string(got) != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}

	empty, err := json.Marshal(rss.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"hash_types":[],"key":"","indirection_table":[],"unclassified_queue":0}`; string(empty) != want {
		t.Fatalf("got  %s\nwant %s", empty, want)
	}
}

func TestMarshalJSONRoundTrip(t *testing.T) {
	configs := []rss.Config{
		{HashTypes: rss.AllHashTypes, Key: rss.DefaultKey, Table: rss.EqualTable(128, 4)},
		{HashTypes: 0, Key: []byte{0}, Table: []uint16{65535}, UnclassifiedQueue: 65535},
		{HashTypes: rss.HashIPv6 | rss.HashTCPEx, Key: bytes.Repeat([]byte{0xab}, rss.MaxKeySize), Table: rss.EqualTable(rss.MaxTableLen, 300), UnclassifiedQueue: 9},
	}
	for _, c := range configs {
		b, err := c.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		got, err := rss.ParseConfigJSON(b)
		if err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		if !reflect.DeepEqual(got, c) {
			t.Fatalf("round trip changed the config:\n got %+v\nwant %+v", got, c)
		}
	}
}

func TestMarshalJSONUndefinedTypes(t *testing.T) {
	_, err := rss.Config{HashTypes: 1 << 9, Key: []byte{1}, Table: []uint16{0}}.MarshalJSON()
	if !errors.Is(err, rss.ErrHashTypes) {
		t.Fatalf("got %v, want ErrHashTypes", err)
	}
}

// A Config inside a larger document uses the same form both ways.
func TestConfigJSONEmbedded(t *testing.T) {
	type doc struct {
		Name   string
		Config rss.Config
	}
	in := doc{"eth0", rss.Config{HashTypes: rss.HashTCPv4, Key: []byte{1, 2}, Table: []uint16{1, 0}}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out doc
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("got %+v, want %+v", out, in)
	}
	if err := json.Unmarshal([]byte(`{"Config": {"hash_types": "all"}}`), &out); err == nil {
		t.Fatal("Unmarshal accepted a config without a table")
	}
}

func FuzzParseConfigJSON(f *testing.F) {
	f.Add([]byte(`{"hash_types": ["tcpv4", "udpv4", "ipv4"], "key": "` + defaultKeyHex + `", "indirection_table": [0, 1, 2, 3], "unclassified_queue": 1}`))
	f.Add([]byte(`{"hash_types": "all", "queues": 3}`))
	f.Add([]byte(`{"hash_types": "tcpv6,ip_ex", "key": "6d:5a", "indirection_table": [7], "unclassified_queue": 65535}`))
	f.Add([]byte(`{"hash_types": [], "queues": 1, "indirection_table": [0]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := rss.ParseConfigJSON(data)
		if err != nil {
			return
		}
		if _, err := rss.New(c); err != nil {
			t.Fatalf("accepted config that New rejects: %v", err)
		}
		b, err := c.MarshalJSON()
		if err != nil {
			t.Fatalf("MarshalJSON: %v", err)
		}
		back, err := rss.ParseConfigJSON(b)
		if err != nil {
			t.Fatalf("reparse of %s: %v", b, err)
		}
		if !reflect.DeepEqual(back, c) {
			t.Fatalf("round trip changed the config:\n got %+v\nwant %+v", back, c)
		}
	})
}
