package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/internal/netnstest"
)

// vrss afxdp create --slice on a veth (no RSS contexts, no ntuple rules,
// no RX ring count): refused in one line naming the device and why, with
// nothing left (no port, record, pins or XDP program); the same port
// without --slice is then created on the same queues.
func TestAFXDPSliceRefusedCLI(t *testing.T) {
	sock := startDaemon(t)
	dir := filepath.Dir(sock)
	ok, fails := daemonCLI(t, sock)
	ns := netnstest.Named(t)
	queueVeth(t, ns, "csin", "csout")
	fails(1, "csin cannot be sliced, nothing was created: ethtool: read RX ring count on csin (ETHTOOL_GRXRINGS): operation not supported: the driver of csin does not report its RX ring count",
		"afxdp", "create", "cs0", "--dev", "csin", "--queue-start", "1", "--queues", "2", "--slice", "--netns", ns)
	const empty = "NAME  DEV  QUEUES  OWNER  PROGRAM  POLICY\n"
	if out := ok("afxdp", "list"); out != empty {
		t.Errorf("list after the refusal: %q", out)
	}
	for _, sub := range []string{"state/afxdp", "bpf/afxdp"} {
		if ents, err := os.ReadDir(filepath.Join(dir, sub)); len(ents) != 0 {
			t.Errorf("%s after the refusal: %v, %v", sub, ents, err)
		}
	}
	l, err := netnstest.Link(ns, "csin")
	if err != nil || l == nil {
		t.Fatal(l, err)
	}
	if x := l.Attrs().Xdp; x != nil && x.Attached {
		t.Errorf("XDP attached to csin after the refusal: %+v", x)
	}
	if out := ok("afxdp", "create", "cs0", "--dev", "csin", "--queue-start", "1", "--queues", "2", "--netns", ns); !strings.HasPrefix(out, "created AF_XDP port cs0: csin queues 1-2") || strings.Contains(out, "sliced") {
		t.Errorf("create without --slice: %q", out)
	}
	if out := ok("afxdp", "show", "cs0", "--netns", ns); strings.Contains(out, "sliced") {
		t.Errorf("show of a port without a slice:\n%s", out)
	}
	ok("afxdp", "delete", "cs0", "--netns", ns)
}

// A sliced port in 'vrss afxdp show' and 'list': the table, then a line
// with its context and rules.
func TestPrintAFXDPSlice(t *testing.T) {
	var b strings.Builder
	err := printAFXDP(&b, []api.AFXDPPort{
		{Name: "vm0x", Dev: "eth1", QueueStart: 8, Queues: 4, OwnerUID: 107, OwnerGID: 107, Attached: true, Policy: true,
			Slice: &api.AFXDPSlice{Context: 3, Rules: []api.AFXDPSliceRule{{Location: 0, Prefix: "192.0.2.10/32"}, {Location: 5, Prefix: "2001:db8::/64"}}}},
		{Name: "vm1x", Dev: "eth1", QueueStart: 12, Queues: 2, OwnerUID: 108, OwnerGID: 108, Attached: true, Slice: &api.AFXDPSlice{Context: 4, Rules: []api.AFXDPSliceRule{}}},
	})
	want := `NAME  DEV   QUEUES  OWNER    PROGRAM   POLICY
vm0x  eth1  8-11    107:107  attached  set
vm1x  eth1  12-13   108:108  attached  none (drops all)
vm0x: sliced: RSS context 3 of eth1 over queues 8-11, ntuple rules 0 (to 192.0.2.10/32), 5 (to 2001:db8::/64)
vm1x: sliced: RSS context 4 of eth1 over queues 12-13, no ntuple rule (no address in the port policy)
`
	if err != nil || b.String() != want {
		t.Errorf("got\n%s\nwant\n%s(%v)", b.String(), want, err)
	}
}
