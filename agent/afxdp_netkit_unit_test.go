package agent

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// A port's netkit in its record is read back as written and refused,
// naming the file, when it is inconsistent.
func TestAFXDPNetkitFile(t *testing.T) {
	s := &Server{opts: Options{StateDir: t.TempDir()}}
	rec := afxdpRecord{Name: "x0", Dev: "eth1", QueueStart: 2, Queues: 2, OwnerUID: 4242, OwnerGID: 4242,
		Netkit: &afxdpNetkit{State: netkitReady, Netns: "/var/run/netns/vm0", NetnsDev: 4, NetnsIno: 4026532999, Ifindex: 9, Queues: []uint32{1, 2}}}
	if err := s.writeAFXDP(rec.key(), &rec); err != nil {
		t.Fatal(err)
	}
	path := s.afxdpPath(rec.key())
	got, err := readAFXDP(path)
	if err != nil || string(must(json.Marshal(got))) != string(must(json.Marshal(rec))) {
		t.Fatalf("read back %+v, %v", got, err)
	}
	p := &afxdpPort{rec: rec}
	if in := p.info(); in.Netkit == nil || in.Netkit.Ifindex != 9 || in.Netkit.Name != "x0" || len(in.Netkit.Queues) != 2 {
		t.Fatalf("info of a ready netkit: %+v", in.Netkit)
	}
	p.rec.Netkit = &afxdpNetkit{State: netkitCreating}
	if in := p.info(); in.Netkit != nil {
		t.Fatalf("a netkit being created is shown: %+v", in.Netkit)
	}
	good, _ := os.ReadFile(path)
	for _, c := range []struct{ from, to, want string }{
		{`"state":"ready"`, `"state":"up"`, `netkit state "up"`},
		{`"ifindex":9`, `"ifindex":-9`, "netkit ifindex -9"},
		{`"ifindex":9,`, ``, "netkit ifindex 0"},
		{`"queues":[1,2]`, `"queues":[1]`, "1 leased queues for a port of 2"},
		{`"queues":[1,2]`, `"queues":[1,2,3]`, "3 leased queues"},
		{`"queues":[1,2]`, `"queues":[0,2]`, "netkit queue 0"},
		{`"netns":"/var/run/netns/vm0"`, `"netns":"vm0"`, "netkit network namespace"},
		{`"netns":"/var/run/netns/vm0",`, ``, "namespace inode without its path"},
		{`"state":"ready"`, `"state":"creating","more":1`, "unknown field"},
	} {
		os.WriteFile(path, []byte(strings.Replace(string(good), c.from, c.to, 1)), 0o600)
		_, err := readAFXDP(path)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s -> %s: %v; want an error naming %s and saying %q", c.from, c.to, err, path, c.want)
		}
	}
	// A netkit being created may have no ifindex and no queues yet.
	os.WriteFile(path, []byte(strings.Replace(strings.Replace(string(good), `"state":"ready"`, `"state":"creating"`, 1), `"ifindex":9,"queues":[1,2]`, `"ifindex":0`, 1)), 0o600)
	if _, err := readAFXDP(path); err != nil {
		t.Fatalf("a netkit being created: %v", err)
	}
}
