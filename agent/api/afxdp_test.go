package api

import (
	"encoding/json"
	"testing"
)

// The AF_XDP port operations' messages, pinned as TestGolden's are.
func TestAFXDPGolden(t *testing.T) {
	uid := 4242
	b, err := Encode(&Request{ID: 3, Op: OpAFXDPCreate, Args: mustJSON(t, AFXDPCreateArgs{Name: "vm0x", Dev: "eth1", QueueStart: 2, Queues: 2, OwnerUID: &uid, Netns: "/var/run/netns/a"})})
	want := `{"id":3,"op":"afxdp_create","args":{"name":"vm0x","dev":"eth1","queue_start":2,"queues":2,"owner_uid":4242,"netns":"/var/run/netns/a"}}`
	if err != nil || string(b) != want {
		t.Fatalf("create\n%s\nwant\n%s (%v)", b, want, err)
	}
	b, err = Encode(&Request{ID: 4, Op: OpAFXDPCreate, Args: mustJSON(t, AFXDPCreateArgs{Name: "vm0x", Dev: "eth1", QueueStart: 8, Queues: 4, Slice: true})})
	want = `{"id":4,"op":"afxdp_create","args":{"name":"vm0x","dev":"eth1","queue_start":8,"queues":4,"slice":true}}`
	if err != nil || string(b) != want {
		t.Fatalf("create with --slice\n%s\nwant\n%s (%v)", b, want, err)
	}
	b, err = Encode(&Request{ID: 5, Op: OpAFXDPCreate, Args: mustJSON(t, AFXDPCreateArgs{Name: "vm0x", Dev: "eth1", QueueStart: 2, Queues: 2, Netkit: "/var/run/netns/vm0"})})
	want = `{"id":5,"op":"afxdp_create","args":{"name":"vm0x","dev":"eth1","queue_start":2,"queues":2,"netkit":"/var/run/netns/vm0"}}`
	if err != nil || string(b) != want {
		t.Fatalf("create with --netkit\n%s\nwant\n%s (%v)", b, want, err)
	}
	b, _ = json.Marshal(AFXDPPort{Name: "vm0x", Dev: "eth1", QueueStart: 2, Queues: 2, OwnerUID: 107, OwnerGID: 107, Attached: true,
		Netkit: &AFXDPNetkit{Netns: "/var/run/netns/vm0", Name: "vm0x", Ifindex: 9, Queues: []uint32{1, 2}}})
	want = `{"name":"vm0x","dev":"eth1","netns":"","queue_start":2,"queues":2,"owner_uid":107,"owner_gid":107,"attached":true,"policy":false,"netkit":{"netns":"/var/run/netns/vm0","name":"vm0x","ifindex":9,"queues":[1,2]}}`
	if string(b) != want {
		t.Fatalf("port with a netkit\n%s\nwant\n%s", b, want)
	}
	sliced := AFXDPPort{Name: "vm0x", Dev: "eth1", QueueStart: 8, Queues: 4, OwnerUID: 107, OwnerGID: 107, Attached: true, Policy: true,
		Slice: &AFXDPSlice{Context: 3, Rules: []AFXDPSliceRule{{Location: 0, Prefix: "192.0.2.10/32"}, {Location: 5, Prefix: "2001:db8::/64"}}}}
	b, _ = json.Marshal(sliced)
	want = `{"name":"vm0x","dev":"eth1","netns":"","queue_start":8,"queues":4,"owner_uid":107,"owner_gid":107,"attached":true,"policy":true,"slice":{"context":3,"rules":[{"location":0,"prefix":"192.0.2.10/32"},{"location":5,"prefix":"2001:db8::/64"}]}}`
	if string(b) != want {
		t.Fatalf("sliced port\n%s\nwant\n%s", b, want)
	}
	res := AFXDPOpenResult{Port: AFXDPPort{Name: "vm0x", Dev: "eth1", QueueStart: 2, Queues: 2, OwnerUID: 4242, OwnerGID: 4242, Attached: true, Policy: true}, Ifindex: 7, Sockets: 2}
	b, _ = json.Marshal(res)
	want = `{"port":{"name":"vm0x","dev":"eth1","netns":"","queue_start":2,"queues":2,"owner_uid":4242,"owner_gid":4242,"attached":true,"policy":true},"ifindex":7,"sockets":2}`
	if string(b) != want {
		t.Fatalf("open result\n%s\nwant\n%s", b, want)
	}
	b, _ = json.Marshal(AFXDPList{Ports: []AFXDPPort{}})
	if string(b) != `{"ports":[]}` {
		t.Fatalf("empty list: %s", b)
	}
	// PortStats' AF_XDP counters appear only when set.
	b, _ = json.Marshal(PortStats{XSKRedirected: 5, OtherQueue: 6})
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil || string(m["xsk_redirected"]) != "5" || string(m["other_queue"]) != "6" {
		t.Fatalf("port stats with AF_XDP counters: %s", b)
	}
}

// FuzzAFXDPCreateArgs: afxdp_create's arguments, untrusted bytes, never
// panic the decoder; what decodes encodes to arguments that decode to the
// same.
func FuzzAFXDPCreateArgs(f *testing.F) {
	f.Add([]byte(`{"name":"vm0x","dev":"eth1","queue_start":2,"queues":2,"owner_uid":4242,"owner_gid":4242,"netns":"/var/run/netns/a"}`))
	f.Add([]byte(`{"name":"vm0x","dev":"eth1","queue_start":-1,"queues":1e3,"extra":1}`))
	f.Add([]byte(`{"name":"","dev":null}`))
	f.Add([]byte(`{"name":"vm0x","dev":"eth1","queue_start":8,"queues":4,"slice":true}`))
	f.Add([]byte(`{"name":"vm0x","dev":"eth1","queues":4,"slice":"yes"}`))
	f.Add([]byte(`{"name":"vm0x","dev":"eth1","queue_start":2,"queues":2,"netkit":"/var/run/netns/vm0"}`))
	f.Add([]byte(`{"name":"vm0x","dev":"eth1","queues":2,"netkit":7}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var a AFXDPCreateArgs
		if err := DecodeArgs(b, &a); err != nil {
			return
		}
		var back AFXDPCreateArgs
		if err := DecodeArgs(mustJSON(t, a), &back); err != nil {
			t.Fatalf("re-decoding %+v: %v", a, err)
		}
		if string(mustJSON(t, back)) != string(mustJSON(t, a)) {
			t.Fatalf("round trip: %+v became %+v", a, back)
		}
	})
}
