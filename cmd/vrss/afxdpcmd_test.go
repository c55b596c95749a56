package main

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/internal/netnstest"
)

// The afxdp commands end to end against vrssd, on a veth with 4 queues in
// a named network namespace: create, list, show, port set on the port,
// delete, and the refusals.
func TestAFXDPCommands(t *testing.T) {
	sock := startDaemon(t)
	ok, fails := daemonCLI(t, sock)
	ns := netnstest.Named(t)
	queueVeth(t, ns, "cxin", "cxout")
	fails(2, "--dev is required", "afxdp", "create", "cx0", "--queues", "2")
	fails(2, "--queues 0", "afxdp", "create", "cx0", "--dev", "cxin")
	fails(1, "receive queues", "afxdp", "create", "cx0", "--dev", "cxin", "--queue-start", "3", "--queues", "2", "--netns", ns)
	fails(1, "not_found", "afxdp", "create", "cx0", "--dev", "cxin", "--queues", "2") // not in vrssd's namespace
	if out := ok("afxdp", "create", "cx0", "--dev", "cxin", "--queue-start", "1", "--queues", "2", "--owner", "4242", "--group", "4242", "--netns", ns); !strings.HasPrefix(out, "created AF_XDP port cx0: cxin queues 1-2, owner 4242:4242;") {
		t.Errorf("create: %q", out)
	}
	fails(1, "exists", "afxdp", "create", "cx0", "--dev", "cxin", "--queue-start", "1", "--queues", "2", "--netns", ns)
	if out := ok("afxdp", "list"); !strings.Contains(out, "cx0   cxin  1-2     4242:4242  attached  none (drops all)\n") || !strings.Contains(out, "cx0: in network namespace "+ns+"\n") {
		t.Errorf("list:\n%s", out)
	}
	ok("port", "set", "cx0", "--mac", "52:54:00:12:34:56", "--ip", "192.0.2.10", "--default", "allow", "--netns", ns)
	fails(2, "uplink", "port", "set", "cx0", "--mac", "52:54:00:12:34:56", "--uplink", "cxout", "--netns", ns)
	var p api.AFXDPPort
	if err := json.Unmarshal([]byte(ok("afxdp", "show", "cx0", "--json", "--netns", ns)), &p); err != nil || !p.Attached || !p.Policy || p.Dev != "cxin" || p.QueueStart != 1 || p.Queues != 2 || p.Netns != ns {
		t.Errorf("show --json: %+v, %v", p, err)
	}
	var ports []api.AFXDPPort
	if err := json.Unmarshal([]byte(ok("afxdp", "list", "--json")), &ports); err != nil || len(ports) != 1 || !reflect.DeepEqual(ports[0], p) {
		t.Errorf("list --json: %+v, %v", ports, err)
	}
	if out := ok("port", "show", "cx0", "--netns", ns); !strings.Contains(out, "192.0.2.10") {
		t.Errorf("port show:\n%s", out)
	}
	fails(1, "not_found", "afxdp", "show", "nope")
	if out := ok("afxdp", "delete", "cx0", "--netns", ns); out != "deleted AF_XDP port cx0\n" {
		t.Errorf("delete: %q", out)
	}
	l, err := netnstest.Link(ns, "cxin")
	if err != nil || l == nil {
		t.Fatal(l, err)
	}
	if x := l.Attrs().Xdp; x != nil && x.Attached {
		t.Errorf("XDP still attached to cxin after delete: %+v", x)
	}
	const empty = "NAME  DEV  QUEUES  OWNER  PROGRAM  POLICY\n"
	if out := ok("afxdp", "list"); out != empty {
		t.Errorf("list after delete: %q", out)
	}
	// A port whose namespace is deleted is forgotten.
	ok("afxdp", "create", "cx1", "--dev", "cxin", "--queues", "1", "--netns", ns)
	if err := netnstest.Delete(ns); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ok("afxdp", "list") != empty; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("a port whose namespace was deleted is still listed")
		}
	}
}
