package api

import (
	"reflect"
	"testing"
)

// The virtio operations' messages, pinned like TestGolden's: raw bytes
// are base64, an empty control payload is present.
func TestVirtioGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		msg  any
		want string
	}{
		{
			"virtio_ctrl request, CAP_GET",
			&Request{ID: 1, Op: OpVirtioCtrl, Args: mustJSON(t, VirtioCtrlArgs{Name: "vm0", Class: 9, Payload: []byte{}})},
			`{"id":1,"op":"virtio_ctrl","args":{"name":"vm0","class":9,"cmd":0,"payload":""}}`,
		},
		{
			"virtio_ctrl request, DEL 1",
			&Request{ID: 2, Op: OpVirtioCtrl, Args: mustJSON(t, VirtioCtrlArgs{Name: "vm0", Class: 9, Cmd: 3, Payload: []byte{1, 0}})},
			`{"id":2,"op":"virtio_ctrl","args":{"name":"vm0","class":9,"cmd":3,"payload":"AQA="}}`,
		},
		{
			"virtio_ctrl response",
			&Response{ID: 1, Result: mustJSON(t, VirtioCtrlResult{Ack: 0, Reply: []byte{4, 0}})},
			`{"id":1,"result":{"ack":0,"reply":"BAA="}}`,
		},
		{
			"virtio_ctrl response, refused",
			&Response{ID: 2, Result: mustJSON(t, VirtioCtrlResult{Ack: 1, Message: "virtio: no such object: rss context 1"})},
			`{"id":2,"result":{"ack":1,"message":"virtio: no such object: rss context 1"}}`,
		},
		{
			"virtio_admin request, LIST_QUERY",
			&Request{ID: 3, Op: OpVirtioAdmin, Args: mustJSON(t, VirtioAdminArgs{Name: "vm0", Command: make([]byte, 24)})},
			`{"id":3,"op":"virtio_admin","args":{"name":"vm0","command":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}}`,
		},
		{
			"virtio_admin response",
			&Response{ID: 3, Result: mustJSON(t, VirtioAdminResult{Result: []byte{0, 0, 0, 0, 0, 0, 0, 0, 0x83, 0x3f, 0, 0, 0, 0, 0, 0}})},
			`{"id":3,"result":{"result":"AAAAAAAAAACDPwAAAAAAAA=="}}`,
		},
		{
			"virtio_reset request",
			&Request{ID: 4, Op: OpVirtioReset, Args: mustJSON(t, NameArgs{Name: "vm0"})},
			`{"id":4,"op":"virtio_reset","args":{"name":"vm0"}}`,
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
			if r, ok := tc.msg.(*Request); ok {
				got, err := DecodeRequest(b)
				if err != nil || !reflect.DeepEqual(got, r) {
					t.Fatalf("decoded %+v, %v", got, err)
				}
			}
		})
	}
	// The largest command fits a message, base64 and all.
	b, err := Encode(&Request{ID: 1 << 62, Op: OpVirtioAdmin, Args: mustJSON(t, VirtioAdminArgs{Name: "vm0123456789abc", Command: make([]byte, MaxVirtioCommand)})})
	if err != nil || len(b) > MaxMessageSize/2 {
		t.Fatalf("a %d-byte command: %d bytes, %v", MaxVirtioCommand, len(b), err)
	}
}
