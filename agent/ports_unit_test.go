package agent

import (
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/port"
)

// TestPortFile: a TAP's port file is written atomically and read back as
// the policy it holds; none reads as nil; a file vrssd will not act on is
// an error naming it and saying why (no privileges needed).
func TestPortFile(t *testing.T) {
	dir := t.TempDir()
	d := &device{name: "t0"}
	pol := port.Policy{MACs: []port.MAC{{0x52, 0x54, 0, 0, 0, 1}}, IPv4: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}, IPv6: []netip.Prefix{}, Default: port.Drop, Uplink: "eth1"}
	pol.Rules, _ = port.ParseACL("allow flow-type tcp4 dst-port 22")
	if got, err := readPort(dir, d); got != nil || err != nil {
		t.Fatalf("no file: %v, %v", got, err)
	}
	if err := writePort(dir, d, &pol); err != nil {
		t.Fatal(err)
	}
	got, err := readPort(dir, d)
	if err != nil || !reflect.DeepEqual(*got, pol) {
		t.Fatalf("read back %+v, %v", got, err)
	}
	path := portPath(dir, "t0")
	good, _ := os.ReadFile(path)
	for _, c := range []struct {
		write func()
		want  string
	}{
		{func() { os.Remove(path); os.Symlink("/etc/passwd", path) }, "symbolic link"},
		{func() { os.Remove(path); os.Mkdir(path, 0o700) }, "not a regular file"},
		{func() { os.WriteFile(path, make([]byte, maxPortSize+1), 0o600) }, "over"},
		{func() { os.WriteFile(path, []byte(strings.Replace(string(good), `"t0"`, `"t1"`, 1)), 0o600) }, `not of "t0"`},
		{func() {
			os.WriteFile(path, []byte(strings.Replace(string(good), `"name"`, `"netns":"/var/run/netns/x","name"`, 1)), 0o600)
		}, "network namespace"},
		{func() { os.WriteFile(path, []byte(strings.Replace(string(good), `"eth1"`, `"eth/1"`, 1)), 0o600) }, "not a Linux interface name"},
		{func() { os.WriteFile(path, []byte(`{"name":"t0","policy":{},"more":1}`), 0o600) }, "unknown field"},
		{func() { os.WriteFile(path, []byte(`{"name":"t0"}`), 0o600) }, "macs"},
		{func() { os.WriteFile(path, append(good, "{}"...), 0o600) }, "trailing data"},
	} {
		os.RemoveAll(path)
		c.write()
		_, err := readPort(dir, d)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), path) {
			t.Errorf("%v: want an error naming %s and saying %q", err, path, c.want)
		}
	}
	os.RemoveAll(path)
	if err := writePort(dir, d, &pol); err != nil {
		t.Fatal(err)
	}
	if err := writePort(dir, d, nil); err != nil || exists(path) {
		t.Fatalf("removal: %v, file left %v", err, exists(path))
	}
}

// TestOpsPortAuthorisation: the port operations on the in-memory kernel,
// up to where they would load a program: who may do what, and the
// refusals that come before any kernel work (the rest needs BPF: see
// TestPortSecurity).
func TestOpsPortAuthorisation(t *testing.T) {
	f := newFakeDaemon(t, fakePolicy)
	f.create("t0", 2, ownerPeer.uid)
	pol := port.Policy{MACs: []port.MAC{{0x52, 0x54, 0, 0, 0, 1}}, Default: port.Allow}
	set := api.PortSetArgs{Name: "t0", Policy: pol}
	named := api.NameArgs{Name: "t0"}
	for _, op := range []api.Op{api.OpPortShow, api.OpPortStats, api.OpPortClear} {
		f.fails(otherPeer, op, named, api.CodeNotFound)
		f.fails(creatorPeer, op, named, api.CodeNotFound)
	}
	f.fails(otherPeer, api.OpPortSet, set, api.CodeNotFound)
	if msg := f.fails(ownerPeer, api.OpPortSet, set, api.CodeDenied); !strings.Contains(msg, "may read the port policy of TAP t0 but not set it") {
		t.Errorf("the owner's set: %q", msg)
	}
	f.fails(ownerPeer, api.OpPortClear, named, api.CodeDenied)
	var info api.PortInfo
	f.do(ownerPeer, api.OpPortShow, named, &info)
	if info.TAP != "t0" || info.Policy != nil || info.Attached {
		t.Errorf("the owner's show of no policy: %+v", info)
	}
	var st api.PortStats
	f.do(ownerPeer, api.OpPortStats, named, &st)
	if st.TAP != "t0" || st.Attached || st.Rules == nil || st.Passed+st.Dropped != 0 {
		t.Errorf("the owner's stats of no policy: %+v", st)
	}
	f.do(adminPeer, api.OpPortClear, named, nil) // nothing to clear
	bad := pol
	bad.MACs = nil
	for _, who := range []*peer{rootPeer, adminPeer} {
		if msg := f.fails(who, api.OpPortSet, api.PortSetArgs{Name: "t0", Policy: bad}, api.CodeInvalidConfig); !strings.Contains(msg, "the active one stays") {
			t.Errorf("an invalid policy: %q", msg)
		}
		withUplink := pol
		withUplink.Uplink = "nosuch0"
		if msg := f.fails(who, api.OpPortSet, api.PortSetArgs{Name: "t0", Policy: withUplink}, api.CodeInvalidConfig); !strings.Contains(msg, "no such device") {
			t.Errorf("an uplink that does not exist: %q", msg)
		}
		withUplink.Uplink = "t0"
		if msg := f.fails(who, api.OpPortSet, api.PortSetArgs{Name: "t0", Policy: withUplink}, api.CodeInvalidConfig); !strings.Contains(msg, "TUN/TAP") {
			t.Errorf("the TAP as its uplink: %q", msg)
		}
	}
	f.fails(rootPeer, api.OpPortShow, api.NameArgs{Name: "t1"}, api.CodeNotFound)
}
