package api

import (
	"encoding/json"
	"testing"
)

// AFXDPPort's map_path: the owner's pin of the port's XSKMAP, for QEMU's
// map-path form; left out when vrssd has none.
func TestAFXDPMapPathGolden(t *testing.T) {
	p := AFXDPPort{Name: "vm0x", Dev: "eth1", QueueStart: 2, Queues: 2, OwnerUID: 107, OwnerGID: 107, Attached: true, Policy: true,
		MapPath: "/run/vrss/xsk/vm0x"}
	b, err := json.Marshal(p)
	want := `{"name":"vm0x","dev":"eth1","netns":"","queue_start":2,"queues":2,"owner_uid":107,"owner_gid":107,"attached":true,"policy":true,"map_path":"/run/vrss/xsk/vm0x"}`
	if err != nil || string(b) != want {
		t.Fatalf("port with a map path\n%s\nwant\n%s (%v)", b, want, err)
	}
	var back AFXDPPort
	if err := json.Unmarshal(b, &back); err != nil || back.MapPath != p.MapPath {
		t.Fatalf("decoded %+v, %v", back, err)
	}
	p.MapPath = ""
	if b, _ := json.Marshal(p); string(b) != `{"name":"vm0x","dev":"eth1","netns":"","queue_start":2,"queues":2,"owner_uid":107,"owner_gid":107,"attached":true,"policy":true}` {
		t.Fatalf("port without a map path: %s", b)
	}
}
