package agent_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/vrss-dev/vrss/agent/api"
)

// TestAFXDPSliceRefusedOnVeth: a vrssd process asked for an AF_XDP port
// with --slice on a 4-queue veth in its throwaway namespace (veth has no
// RSS contexts, ntuple rules or RX ring count) refuses in one line naming
// the device and why, and leaves nothing: no port, no state record, no
// pins under its bpffs directory, no XDP program on the veth; nor after a
// restart. The same port without --slice is then made and deleted.
func TestAFXDPSliceRefusedOnVeth(t *testing.T) {
	d := newDaemon(t, "")
	ctx := context.Background()
	d.inNS(func() {
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "svout", NumTxQueues: 4, NumRxQueues: 4}, PeerName: "svin", PeerNumTxQueues: 4, PeerNumRxQueues: 4}
		if err := netlink.LinkAdd(v); err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"svin", "svout"} {
			l, err := netlink.LinkByName(n)
			if err == nil {
				err = netlink.LinkSetUp(l)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	})
	nothingLeft := func(when string) {
		t.Helper()
		for _, dir := range []string{filepath.Join(d.stateDir, "afxdp"), filepath.Join(d.bpffsDir, "afxdp")} {
			if ents, err := os.ReadDir(dir); len(ents) != 0 {
				t.Errorf("%s: %s holds %v (%v)", when, dir, ents, err)
			}
		}
		d.inNS(func() {
			l, err := netlink.LinkByName("svin")
			if err != nil {
				t.Fatal(err)
			}
			if x := l.Attrs().Xdp; x != nil && x.Attached {
				t.Errorf("%s: XDP program %d on svin", when, x.ProgId)
			}
		})
	}
	c := d.dial()
	defer c.Close()
	args := api.AFXDPCreateArgs{Name: "xs0", Dev: "svin", QueueStart: 1, Queues: 2, Slice: true}
	_, err := c.AFXDPCreate(ctx, args)
	wantCode(t, err, api.CodeUnavailable)
	if msg := err.Error(); !strings.Contains(msg, "svin cannot be sliced, nothing was created") || !strings.Contains(msg, "does not report its RX ring count") || strings.Contains(msg, "\n") {
		t.Errorf("refusal: %q", msg)
	}
	t.Logf("refused: %v", err)
	if ports, err := c.AFXDPList(ctx); err != nil || len(ports) != 0 {
		t.Errorf("list after the refusal: %+v, %v", ports, err)
	}
	nothingLeft("after the refusal")
	c.Close()
	d.kill()
	d.start()
	nothingLeft("after a restart")
	c = d.dial()
	args.Slice = false
	if p, err := c.AFXDPCreate(ctx, args); err != nil || p.Slice != nil || !p.Attached {
		t.Fatalf("the same port without --slice: %+v, %v", p, err)
	}
	if err := c.AFXDPDelete(ctx, "xs0"); err != nil {
		t.Fatal(err)
	}
	nothingLeft("after the delete")
}
