package tap_test

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/internal/frame"
	"github.com/vrss-dev/vrss/internal/inject"
	"github.com/vrss-dev/vrss/internal/netnstest"
	"github.com/vrss-dev/vrss/internal/privtest"
	"github.com/vrss-dev/vrss/tap"
)

// TestNoqueueDropsNoMore checks the premise of Create's noqueue default: a
// qdisc in front of a TAP holds no frame back, because tun_net_xmit never
// stops its transmit queues but drops a frame when the queue's ring
// (tx_queue_len frames) is full. A burst of three rings' worth of one flow
// into a TAP nobody reads must deliver as many frames with noqueue as with
// the kernel's default qdisc. A kernel whose tun stops the queue when a
// qdisc is present, so that the qdisc absorbs the burst, fails this test:
// then noqueue loses frames the default would deliver, and the default in
// tap.Create must be reconsidered (docs/tap-memory.md).
func TestNoqueueDropsNoMore(t *testing.T) {
	privtest.Require(t, "tap")
	burst := func(keep bool) (arrived, sent, dropped int, qdisc string) {
		netnstest.Run(t, func() {
			d, err := tap.Create(tap.Options{Queues: 4, VnetHdrLen: 12, Up: true, KeepDefaultQdisc: keep})
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			l, err := netlink.LinkByIndex(d.Index())
			if err != nil {
				t.Fatal(err)
			}
			if qs, err := netlink.QdiscList(l); err == nil && len(qs) > 0 {
				qdisc = qs[0].Type()
			}
			inj, err := inject.Open(d.Index())
			if err != nil {
				t.Fatal(err)
			}
			defer inj.Close()
			f := frame.Build(frame.Spec{
				Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"),
				Proto: frame.ProtoUDP, SrcPort: 1000, DstPort: 2000, Payload: 64,
			})
			sent = 3 * l.Attrs().TxQLen
			for range sent {
				// With noqueue the sender learns of a drop.
				if err := inj.Send(f); err != nil && !errors.Is(err, unix.ENOBUFS) {
					t.Fatal(err)
				}
			}
			frames, err := inject.DrainQueues(d, 12, 0, 300*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			for _, q := range frames {
				arrived += len(q)
			}
			if l, err = netlink.LinkByIndex(d.Index()); err != nil {
				t.Fatal(err)
			}
			dropped = int(l.Attrs().Statistics.TxDropped)
		})
		return
	}
	dflt, sent, dfltDropped, kind := burst(true)
	nq, _, nqDropped, nqKind := burst(false)
	t.Logf("burst of %d frames of one flow into an unread TAP: root qdisc %s delivered %d (tx_dropped %d), %s delivered %d (tx_dropped %d)",
		sent, kind, dflt, dfltDropped, nqKind, nq, nqDropped)
	if nqKind != "noqueue" {
		t.Fatalf("Create attached %s, want noqueue", nqKind)
	}
	if dflt == 0 || dflt >= sent {
		t.Fatalf("with the default qdisc %d of %d frames arrived: the burst did not overflow one queue's ring", dflt, sent)
	}
	if nq < dflt {
		t.Errorf("noqueue delivered %d frames, the kernel's default qdisc (%s) %d: this kernel's tun pushes back on a qdisc, so noqueue now loses frames and should not be tap.Create's default", nq, kind, dflt)
	}
}
