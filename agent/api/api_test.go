package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/vrss-dev/vrss/rss"
)

func mustJSON(t testing.TB, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ptr(v int) *int { return &v }

// The golden messages pin the wire format: a change to any of them is a
// protocol change, and needs a new ProtocolVersion.
func TestGolden(t *testing.T) {
	cfg := rss.Config{HashTypes: rss.HashTCPv4 | rss.HashIPv4, Key: []byte{0x6d, 0x5a}, Table: []uint16{0, 1, 1, 0}, UnclassifiedQueue: 1}
	for _, tc := range []struct {
		name string
		msg  any
		want string
	}{
		{
			"hello request",
			&Request{ID: 1, Op: OpHello, Args: mustJSON(t, HelloArgs{Protocol: 1, ABI: "vrss1-0123456789abcdef01234567"})},
			`{"id":1,"op":"hello","args":{"protocol":1,"abi":"vrss1-0123456789abcdef01234567"}}`,
		},
		{
			"create request",
			&Request{ID: 2, Op: OpCreate, Args: mustJSON(t, CreateArgs{Name: "vm0", Queues: 4, OwnerUID: ptr(1000)})},
			`{"id":2,"op":"create","args":{"name":"vm0","queues":4,"owner_uid":1000}}`,
		},
		{
			"set_rss request, JSON form",
			&Request{ID: 3, Op: OpSetRSS, Args: mustJSON(t, SetRSSArgs{Name: "vm0", Config: &cfg})},
			`{"id":3,"op":"set_rss","args":{"name":"vm0","config":{"hash_types":["ipv4","tcpv4"],"key":"6d5a","indirection_table":[0,1,1,0],"unclassified_queue":1}}}`,
		},
		{
			"set_rss request, virtio form",
			&Request{ID: 4, Op: OpSetRSS, Args: mustJSON(t, SetRSSArgs{Name: "vm0", VirtioRSS: []byte{1, 0, 0, 0, 3}})},
			`{"id":4,"op":"set_rss","args":{"name":"vm0","virtio_rss":"AQAAAAM="}}`,
		},
		{
			"set_rss request, empty virtio command",
			&Request{ID: 5, Op: OpSetRSS, Args: mustJSON(t, SetRSSArgs{Name: "vm0", VirtioHash: []byte{}})},
			`{"id":5,"op":"set_rss","args":{"name":"vm0","virtio_hash":""}}`,
		},
		{
			"error response",
			&Response{ID: 6, Error: Errorf(CodeDenied, "TAP vm0 belongs to uid %d; uid %d may not use it", 1000, 1001)},
			`{"id":6,"error":{"code":"denied","message":"TAP vm0 belongs to uid 1000; uid 1001 may not use it"}}`,
		},
		{
			"open response",
			&Response{ID: 7, FDs: 5, Result: mustJSON(t, OpenResult{
				TAP: TAP{Name: "vm0", Index: 5, Queues: 4, VnetHdrLen: 12, OwnerUID: 1000, OwnerGID: 1000,
					Steering: true, Generation: 2, ABI: "vrss1-0123456789abcdef01234567"},
				QueueFDs: 4, ConfigSize: 4735000, ABI: "vrss1-0123456789abcdef01234567",
			})},
			`{"id":7,"result":{"tap":{"name":"vm0","index":5,"queues":4,"vnet_hdr_len":12,"owner_uid":1000,"owner_gid":1000,"steering":true,"adopted":false,"generation":2,"abi":"vrss1-0123456789abcdef01234567"},"queue_fds":4,"config_size":4735000,"abi":"vrss1-0123456789abcdef01234567"},"fds":5}`,
		},
		{
			"list response, a TAP held by a VMM",
			&Response{ID: 11, Result: mustJSON(t, ListResult{TAPs: []TAP{{Name: "vm0", Index: 5, Queues: 4, VnetHdrLen: 12, Steering: true,
				ABI: "vrss1-0123456789abcdef01234567", HeldElsewhere: true, AttachedQueues: 4, DisabledQueues: 1, Reattached: 2}}})},
			`{"id":11,"result":{"taps":[{"name":"vm0","index":5,"queues":4,"vnet_hdr_len":12,"owner_uid":0,"owner_gid":0,"steering":true,"adopted":false,"generation":0,"abi":"vrss1-0123456789abcdef01234567","held_elsewhere":true,"attached_queues":4,"disabled_queues":1,"reattached":2}]}}`,
		},
		{
			"qemu_ebpf request",
			&Request{ID: 9, Op: OpQEMUEBPF, Args: mustJSON(t, QEMUEBPFArgs{Name: "vm0", QEMU: "/usr/bin/qemu-system-x86_64"})},
			`{"id":9,"op":"qemu_ebpf","args":{"name":"vm0","qemu":"/usr/bin/qemu-system-x86_64"}}`,
		},
		{
			"qemu_ebpf response",
			&Response{ID: 10, FDs: 4, Result: mustJSON(t, QEMUEBPFResult{
				TAP:              TAP{Name: "vm0", Index: 5, Queues: 2, VnetHdrLen: 12, OwnerUID: 1000, OwnerGID: 1000, ABI: "vrss1-0123456789abcdef01234567"},
				SteeringDetached: true, QEMU: "/usr/bin/qemu-system-x86_64", QEMUVersion: "10.0.2", Digest: "sha256:e8f9", Cached: true,
				Program: "tun_rss_steering_prog", Maps: []string{"c", "k", "t"}, ProgramID: 7, MapIDs: []uint32{8, 9, 10},
			})},
			`{"id":10,"result":{"tap":{"name":"vm0","index":5,"queues":2,"vnet_hdr_len":12,"owner_uid":1000,"owner_gid":1000,"steering":false,"adopted":false,"generation":0,"abi":"vrss1-0123456789abcdef01234567"},"steering_detached":true,"qemu":"/usr/bin/qemu-system-x86_64","qemu_version":"10.0.2","digest":"sha256:e8f9","cached":true,"program":"tun_rss_steering_prog","maps":["c","k","t"],"program_id":7,"map_ids":[8,9,10]},"fds":4}`,
		},
		{
			"open request, config only",
			&Request{ID: 8, Op: OpOpen, Args: mustJSON(t, OpenArgs{Name: "vm0", ConfigOnly: true})},
			`{"id":8,"op":"open","args":{"name":"vm0","config_only":true}}`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := Encode(tc.msg)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tc.want {
				t.Fatalf("encoded\n%s\nwant\n%s", b, tc.want)
			}
			// Requests read back as they were written.
			if r, ok := tc.msg.(*Request); ok {
				got, err := DecodeRequest(b)
				if err != nil || !reflect.DeepEqual(got, r) {
					t.Fatalf("decoded %+v, %v", got, err)
				}
			}
		})
	}
}

func TestDecodeRequestRefuses(t *testing.T) {
	for _, tc := range []struct {
		msg  string
		code Code
	}{
		{``, CodeBadRequest},
		{`{}`, CodeBadRequest},
		{`{"id": 1}`, CodeBadRequest},
		{`{"id": 1, "op": ""}`, CodeBadRequest},
		{`{"id": 1, "op": "list", "extra": 0}`, CodeBadRequest},
		{`{"id": 1, "op": "list"} {}`, CodeBadRequest},
		{`{"id": 1, "op": "list"}]`, CodeBadRequest},
		{`{"id": "1", "op": "list"}`, CodeBadRequest},
		{`{"id": 1.5, "op": "list"}`, CodeBadRequest},
		{`{"id": 1, "op": 5}`, CodeBadRequest},
		{`{"id": 1, "op": "list", "args": [}`, CodeBadRequest},
		{`null`, CodeBadRequest},
		{`"list"`, CodeBadRequest},
		{`{"id": 1, "op": "list", "args": {}}` + strings.Repeat(" ", MaxMessageSize), CodeTooLarge},
	} {
		_, err := DecodeRequest([]byte(tc.msg))
		var e *Error
		if !errors.As(err, &e) || e.Code != tc.code {
			t.Errorf("%.40q: got %v, want %s", tc.msg, err, tc.code)
		}
	}
	// White space around the object is fine; the limit counts it.
	r, err := DecodeRequest([]byte(" \n{\"id\": 1, \"op\": \"list\"}\n"))
	if err != nil || r.Op != OpList || r.ID != 1 || r.Args != nil {
		t.Fatalf("%+v, %v", r, err)
	}
}

func TestDecodeArgs(t *testing.T) {
	var a NameArgs
	if err := DecodeArgs(nil, &a); err != nil || a.Name != "" {
		t.Fatal(a, err)
	}
	if err := DecodeArgs(json.RawMessage("null"), &a); err != nil {
		t.Fatal(err)
	}
	if err := DecodeArgs(json.RawMessage(`{"name": "x"}`), &a); err != nil || a.Name != "x" {
		t.Fatal(a, err)
	}
	for _, bad := range []string{`{"name": "x", "queues": 1}`, `{"name": 1}`, `[]`, `{"name": "x"} 1`} {
		var e *Error
		if err := DecodeArgs(json.RawMessage(bad), &a); !errors.As(err, &e) || e.Code != CodeBadRequest {
			t.Errorf("%s: %v", bad, err)
		}
	}
	// A configuration is checked as it is parsed.
	var s SetRSSArgs
	if err := DecodeArgs(json.RawMessage(`{"name": "x", "config": {"hash_types": "all", "queues": 0}}`), &s); err == nil {
		t.Error("a config with 0 queues decoded")
	}
	if err := DecodeArgs(json.RawMessage(`{"name": "x", "config": {"hash_types": "all", "queues": 2}}`), &s); err != nil || len(s.Config.Table) != 128 {
		t.Error(s, err)
	}
}

func TestErrorString(t *testing.T) {
	err := error(Errorf(CodeNotFound, "no TAP %s", "x"))
	if err.Error() != "vrssd: not_found: no TAP x" {
		t.Fatal(err)
	}
}

// FuzzDecodeRequest: DecodeRequest never panics, refuses with a typed
// error, and what it accepts encodes to a message that decodes to the same
// request, and then re-encodes to the same bytes.
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{
		`{"id":1,"op":"hello","args":{"protocol":1,"abi":"vrss1-0123"}}`,
		`{"id":2,"op":"open","args":{"name":"vm0"}}`,
		`{"id":3,"op":"set_rss","args":{"name":"vm0","virtio_rss":"AQAAAAM="}}`,
		`{"id":4,"op":"list","args":null}`,
		`{"id":5,"op":"x<y>&z","args":{"a":["\u2028",1e400]}}`,
		`{"id":18446744073709551615,"op":"create","args":{"name":"a","queues":4,"owner_uid":0}}`,
		"{\"id\":1,\"op\":\"\xff\"}",
		`{"id":1,"op":"list"} x`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeRequest(b)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || (e.Code != CodeBadRequest && e.Code != CodeTooLarge) {
				t.Fatalf("untyped refusal %v", err)
			}
			if r != nil {
				t.Fatal("a request with an error")
			}
			return
		}
		if r.Op == "" {
			t.Fatal("accepted a request without op")
		}
		enc, err := Encode(r)
		if err != nil {
			// HTML escaping may grow arguments past the limit.
			var e *Error
			if errors.As(err, &e) && e.Code == CodeTooLarge {
				return
			}
			t.Fatalf("re-encode %+v: %v", r, err)
		}
		r2, err := DecodeRequest(enc)
		if err != nil {
			t.Fatalf("%q re-encoded as %q, which does not decode: %v", b, enc, err)
		}
		if r2.ID != r.ID || r2.Op != r.Op || !sameJSON(t, r.Args, r2.Args) {
			t.Fatalf("%q decoded as %+v, then as %+v", b, r, r2)
		}
		enc2, err := Encode(r2)
		if err != nil || string(enc2) != string(enc) {
			t.Fatalf("not a fixed point: %q then %q (%v)", enc, enc2, err)
		}
	})
}

func sameJSON(t *testing.T, a, b json.RawMessage) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	return reflect.DeepEqual(jsonValue(t, a), jsonValue(t, b))
}

// jsonValue decodes b keeping numbers as written (1e400 is valid JSON).
func jsonValue(t *testing.T, b []byte) any {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("args %q are not JSON: %v", b, err)
	}
	return v
}
