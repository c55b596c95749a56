package agent_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/internal/netnstest"
	"github.com/vrss-dev/vrss/netkit"
)

// kernelLeases says whether the running kernel has netdev queue-create
// (Linux 7.1): the answer TestAFXDPNetkitRefused expects from vrssd
// depends on it.
func kernelLeases(t *testing.T) bool {
	t.Helper()
	g, err := netkit.Dial(unix.NETLINK_GENERIC)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	_, err = netkit.CheckLeasing(g)
	if err != nil && !errors.Is(err, netkit.ErrNoLeasing) {
		t.Fatal(err)
	}
	return err == nil
}

// TestAFXDPNetkitRefused: vrssd (a real process, as root) asked for an
// AF_XDP port with --netkit on a 4-queue veth refuses in one line and
// leaves nothing behind: no record, no pins, no program on the veth, no
// netkit in either namespace, the name free. On this machine's kernel
// (before 7.1) the refusal is the kernel's lack of queue leasing, found
// before anything is made; on 7.1 or later it would be the kernel's
// refusal to lease a virtual device's queues, after the netkit was made
// and deleted again. A non-admin creator may not ask for a netkit.
func TestAFXDPNetkitRefused(t *testing.T) {
	const creator = 4242
	d := newDaemon(t, `{"create": {"uids": [4242]}}`)
	d.inNS(func() {
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "nkout", NumTxQueues: 4, NumRxQueues: 4}, PeerName: "nkin", PeerNumTxQueues: 4, PeerNumRxQueues: 4}
		if err := netlink.LinkAdd(v); err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"nkin", "nkout"} {
			l, err := netlink.LinkByName(n)
			if err == nil {
				err = netlink.LinkSetUp(l)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	})
	vm := netnstest.Named(t) // the namespace the netkit would go to
	leases := kernelLeases(t)
	args := api.AFXDPCreateArgs{Name: "nkp0", Dev: "nkin", QueueStart: 1, Queues: 2, Netkit: vm}

	if r := d.asUser(creator, "call", helperArgs{Op: api.OpAFXDPCreate, Args: mustJSON(args)}); r.Error == nil || r.Error.Code != api.CodeDenied || !strings.Contains(r.Error.Message, "netkit") {
		t.Fatalf("--netkit by a creator who is no admin: %+v", r)
	}

	c := d.dial()
	defer c.Close()
	ctx := context.Background()
	_, err := c.AFXDPCreate(ctx, args)
	var ae *api.Error
	if !errors.As(err, &ae) {
		t.Fatalf("create with --netkit: %v", err)
	}
	t.Logf("refusal (%s): %s", ae.Code, ae.Message)
	if strings.Contains(ae.Message, "\n") || !strings.HasPrefix(ae.Message, "AF_XDP port nkp0: --netkit: ") {
		t.Errorf("not one line naming the port and --netkit: %q", ae.Message)
	}
	if leases {
		if ae.Code != api.CodeInvalidConfig || !strings.Contains(ae.Message, "nkin is a virtual device") {
			t.Fatalf("on a kernel with leasing: %+v", ae)
		}
	} else if ae.Code != api.CodeUnavailable || !strings.Contains(ae.Message, "Linux 7.1 or later is needed for netkit queue leasing (this kernel: "+netkit.Release()+";") {
		t.Fatalf("on a kernel without leasing: %+v", ae)
	}

	// Nothing is left.
	if ents, _ := os.ReadDir(filepath.Join(d.stateDir, "afxdp")); len(ents) != 0 {
		t.Errorf("records left: %v", ents)
	}
	if _, err := os.Stat(filepath.Join(d.bpffsDir, "afxdp", "nkp0")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pins left: %v", err)
	}
	noNetkit := func(where string) {
		ls, err := netlink.LinkList()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range ls {
			if l.Type() == "netkit" || l.Attrs().Name == "nkp0" {
				t.Errorf("%s: %s (%s) left", where, l.Attrs().Name, l.Type())
			}
		}
	}
	d.inNS(func() {
		l, err := netlink.LinkByName("nkin")
		if err != nil {
			t.Fatal(err)
		}
		if x := l.Attrs().Xdp; x != nil && (x.Attached || x.ProgId != 0) {
			t.Errorf("an XDP program left on nkin: %+v", x)
		}
		noNetkit("vrssd's namespace")
	})
	if err := netnstest.In(vm, func() error { noNetkit("the netkit's namespace"); return nil }); err != nil {
		t.Fatal(err)
	}
	if ports, err := c.AFXDPList(ctx); err != nil || len(ports) != 0 {
		t.Fatalf("list after the refusal: %+v, %v", ports, err)
	}
	// The name and the queues are free: the same port without --netkit.
	args.Netkit = ""
	if p, err := c.AFXDPCreate(ctx, args); err != nil || p.Netkit != nil || !p.Attached {
		t.Fatalf("the port without --netkit: %+v, %v", p, err)
	}
	if err := c.AFXDPDelete(ctx, "nkp0"); err != nil {
		t.Fatal(err)
	}
}

// TestAFXDPNetkitRestart: records a vrssd left with a netkit (no kernel
// here can make one, so they are written into the state of a real port,
// its program attached to a veth, while vrssd is stopped) are acted on
// at start: a ready netkit that is not in its namespace any more makes
// the port one vrssd forgets (program detached, pins and record removed);
// a netkit whose delete was under way has the port's delete finished; one
// whose create was under way before its ifindex was recorded has the
// port undone and a possible leftover netkit logged.
func TestAFXDPNetkitRestart(t *testing.T) {
	d := newDaemon(t, "")
	d.inNS(func() {
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "nrout", NumTxQueues: 4, NumRxQueues: 4}, PeerName: "nrin", PeerNumTxQueues: 4, PeerNumRxQueues: 4}
		if err := netlink.LinkAdd(v); err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"nrin", "nrout"} {
			l, err := netlink.LinkByName(n)
			if err == nil {
				err = netlink.LinkSetUp(l)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	})
	vm := netnstest.Named(t)
	var st unix.Stat_t
	if err := unix.Stat(vm, &st); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	attached := func() bool {
		var on bool
		d.inNS(func() {
			l, err := netlink.LinkByName("nrin")
			if err != nil {
				t.Fatal(err)
			}
			on = l.Attrs().Xdp != nil && l.Attrs().Xdp.Attached
		})
		return on
	}
	record := filepath.Join(d.stateDir, "afxdp", "nrp0.json")
	for _, c := range []struct {
		name   string
		netkit map[string]any
		log    string
	}{
		{"ready, gone from its namespace", map[string]any{"state": "ready", "netns": vm, "netns_dev": st.Dev, "netns_ino": st.Ino, "ifindex": 77, "queues": []int{1, 2}},
			"forgetting an AF_XDP port"},
		{"delete under way", map[string]any{"state": "deleting", "netns": vm, "netns_dev": st.Dev, "netns_ino": st.Ino, "ifindex": 77, "queues": []int{1, 2}},
			"netkit delete was under way"},
		{"create under way, no ifindex yet", map[string]any{"state": "creating", "netns": vm, "netns_dev": st.Dev, "netns_ino": st.Ino},
			"a netkit named after the port may be left in its namespace"},
	} {
		c2 := d.dial()
		if _, err := c2.AFXDPCreate(ctx, api.AFXDPCreateArgs{Name: "nrp0", Dev: "nrin", QueueStart: 1, Queues: 2}); err != nil {
			t.Fatalf("%s: create: %v", c.name, err)
		}
		c2.Close()
		if !attached() {
			t.Fatalf("%s: no program on nrin after the create", c.name)
		}
		d.stop()
		b, err := os.ReadFile(record)
		if err != nil {
			t.Fatal(err)
		}
		var rec map[string]any
		if err := json.Unmarshal(b, &rec); err != nil {
			t.Fatal(err)
		}
		rec["netkit"] = c.netkit
		if b, err = json.Marshal(rec); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(record, b, 0o600); err != nil {
			t.Fatal(err)
		}
		d.start()
		c2 = d.dial()
		ports, err := c2.AFXDPList(ctx)
		c2.Close()
		if err != nil || len(ports) != 0 {
			t.Fatalf("%s: ports after the start: %+v, %v\n%s", c.name, ports, err, d.log())
		}
		if _, err := os.Stat(record); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: record left: %v", c.name, err)
		}
		if _, err := os.Stat(filepath.Join(d.bpffsDir, "afxdp", "nrp0")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: pins left: %v", c.name, err)
		}
		if attached() {
			t.Errorf("%s: the program stays on nrin", c.name)
		}
		if !strings.Contains(d.log(), c.log) {
			t.Errorf("%s: vrssd did not log %q:\n%s", c.name, c.log, d.log())
		}
		if gone := strings.Contains(d.log(), "AF_XDP port's netkit was already gone"); gone != (c.netkit["ifindex"] != nil) {
			t.Errorf("%s: vrssd's log says the recorded netkit was already gone: %v:\n%s", c.name, gone, d.log())
		}
	}
}
