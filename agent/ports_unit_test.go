package agent

import (
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"

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
