package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/internal/netnstest"
	"github.com/vrss-dev/vrss/netkit"
)

// TestAFXDPNetkitRefusedCLI: vrss afxdp create --netkit through vrssd on
// a 4-queue veth is refused in one line and leaves no port, record, pins
// or XDP program; the port is then made without it. On a kernel before
// 7.1 (this machine's) the refusal is the kernel's lack of queue
// leasing; on 7.1 or later, the veth's queues (a virtual device's).
func TestAFXDPNetkitRefusedCLI(t *testing.T) {
	sock := startDaemon(t)
	dir := filepath.Dir(sock)
	ok, fails := daemonCLI(t, sock)
	ns := netnstest.Named(t)
	vm := netnstest.Named(t)
	queueVeth(t, ns, "cnin", "cnout")
	want := "AF_XDP port cn0: --netkit: Linux 7.1 or later is needed for netkit queue leasing (this kernel: " + netkit.Release() + ";"
	if g, err := netkit.Dial(unix.NETLINK_GENERIC); err == nil {
		if _, err := netkit.CheckLeasing(g); err == nil {
			want = "AF_XDP port cn0: --netkit: netkit: leasing queue 1 of cnin: cnin is a virtual device"
		} else if !errors.Is(err, netkit.ErrNoLeasing) {
			t.Fatal(err)
		}
		g.Close()
	}
	fails(1, want, "afxdp", "create", "cn0", "--dev", "cnin", "--queue-start", "1", "--queues", "2", "--netkit", vm, "--netns", ns)
	const empty = "NAME  DEV  QUEUES  OWNER  PROGRAM  POLICY\n"
	if out := ok("afxdp", "list"); out != empty {
		t.Errorf("list after the refusal: %q", out)
	}
	for _, sub := range []string{"state/afxdp", "bpf/afxdp"} {
		if ents, err := os.ReadDir(filepath.Join(dir, sub)); len(ents) != 0 {
			t.Errorf("%s after the refusal: %v, %v", sub, ents, err)
		}
	}
	l, err := netnstest.Link(ns, "cnin")
	if err != nil || l == nil {
		t.Fatal(l, err)
	}
	if x := l.Attrs().Xdp; x != nil && x.Attached {
		t.Errorf("XDP attached to cnin after the refusal: %+v", x)
	}
	if l, err := netnstest.Link(vm, "cn0"); l != nil {
		t.Errorf("a device cn0 in the netkit's namespace after the refusal: %v", err)
	}
	if out := ok("afxdp", "create", "cn0", "--dev", "cnin", "--queue-start", "1", "--queues", "2", "--netns", ns); !strings.HasPrefix(out, "created AF_XDP port cn0: cnin queues 1-2") || strings.Contains(out, "netkit") {
		t.Errorf("create without --netkit: %q", out)
	}
	ok("afxdp", "delete", "cn0", "--netns", ns)
}

// A port's netkit in 'vrss afxdp show' and 'list', after the table.
func TestPrintAFXDPNetkit(t *testing.T) {
	var b strings.Builder
	err := printAFXDP(&b, []api.AFXDPPort{
		{Name: "vm0x", Dev: "eth1", QueueStart: 2, Queues: 2, OwnerUID: 107, OwnerGID: 107, Attached: true,
			Netkit: &api.AFXDPNetkit{Netns: "/var/run/netns/vm0", Name: "vm0x", Ifindex: 9, Queues: []uint32{1, 2}}},
	})
	want := `NAME  DEV   QUEUES  OWNER    PROGRAM   POLICY
vm0x  eth1  2-3     107:107  attached  none (drops all)
vm0x: netkit vm0x (ifindex 9) in /var/run/netns/vm0, queues 1,2 leasing eth1 queues 2-3
`
	if err != nil || b.String() != want {
		t.Errorf("got\n%s\nwant\n%s(%v)", b.String(), want, err)
	}
}
