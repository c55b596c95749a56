package bench

import (
	"bytes"
	"os/exec"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/vrss-dev/vrss/internal/netnstest"
	"github.com/vrss-dev/vrss/internal/privtest"
	"github.com/vrss-dev/vrss/port"
	"golang.org/x/sys/unix"
)

// TestMeasurePort runs the port benchmark's modes briefly: every frame
// arrives, and the rates are positive.
func TestMeasurePort(t *testing.T) {
	privtest.Require(t, "root")
	privtest.Require(t, "netns")
	privtest.Require(t, "tap")
	privtest.RequireFunc(t, "nft (Debian package nftables)", func() error { _, err := exec.LookPath("nft"); return err })
	r, err := MeasurePort(PortOptions{Frames: 20000, Pairs: 1}, VRSSPort)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range PortModes {
		if r.PPS[m] <= 0 || r.Lost[m] != 0 {
			t.Errorf("%s: %.0f frames/s, %d lost; want a rate and none lost", m, r.PPS[m], r.Lost[m])
		}
	}
	t.Logf("%+v", r)
}

// TestPortRulesetFilters holds both filtering modes to the benchmark's
// policy (PortPolicy, as port.Filter judges it): with the nftables ruleset
// and with vrss's XDP program redirecting to the uplink, the benchmark's
// frames arrive (all of them, read on the uplink's peer), and frames with
// another source MAC, a source outside the guest's prefix, or another port
// do not. For vrss the TAP leaves the bridge, so that only the redirect can
// deliver.
func TestPortRulesetFilters(t *testing.T) {
	privtest.Require(t, "root")
	privtest.Require(t, "netns")
	privtest.Require(t, "tap")
	privtest.RequireFunc(t, "nft (Debian package nftables)", func() error { _, err := exec.LookPath("nft"); return err })
	netnstest.Run(t, func() {
		pt, err := newPortTopology(xdpPass)
		if err != nil {
			t.Fatal(err)
		}
		defer pt.close()
		sock, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(sock)
		if err := unix.Bind(sock, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: pt.peer.Attrs().Index}); err != nil {
			t.Fatal(err)
		}
		if err := unix.SetsockoptTimeval(sock, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 100000}); err != nil {
			t.Fatal(err)
		}
		good := portFrames()[:1]
		spoofMAC := append([]byte(nil), good[0]...)
		spoofMAC[tapVnetHdrLen+11] ^= 1
		spoofIP := append([]byte(nil), good[0]...)
		spoofIP[tapVnetHdrLen+14+12] = 192 // source 192.0.x.y
		otherPort := append([]byte(nil), good[0]...)
		otherPort[tapVnetHdrLen+14+20+3] ^= 1 // destination port 5000
		filter, err := port.New(PortPolicy())
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range []struct {
			name   string
			enable func() (func() error, error)
		}{{PortNftables, pt.nftables}, {PortVRSS, func() (func() error, error) { return VRSSPort(pt.tap.Index(), pt.uplink.Attrs().Index) }}} {
			undo, err := m.enable()
			if err != nil {
				t.Fatalf("%s: %v", m.name, err)
			}
			if m.name == PortVRSS {
				// Out of the bridge: frames can reach the uplink only
				// by the program's redirect.
				if err := netlink.LinkSetNoMaster(pt.tapLink()); err != nil {
					t.Fatal(err)
				}
			}
			for _, c := range []struct {
				name  string
				frame []byte
				want  int
			}{{"allowed", good[0], 100}, {"spoofed MAC", spoofMAC, 0}, {"spoofed IPv4 source", spoofIP, 0}, {"port not in the ACL", otherPort, 0}} {
				if pass := filter.Check(c.frame[tapVnetHdrLen:]).Verdict == port.VerdictPass; pass != (c.want > 0) {
					t.Fatalf("%s: port.Filter says pass %v, the test expects the opposite", c.name, pass)
				}
				if _, _, err := pt.round([][]byte{c.frame}, 100); err != nil {
					t.Fatal(err)
				}
				if got := countFrames(t, sock, c.frame[tapVnetHdrLen:]); got != c.want {
					t.Errorf("%s, %s: %d of 100 arrived, want %d", m.name, c.name, got, c.want)
				}
			}
			if err := undo(); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// countFrames reads sock until it has been quiet for 100 ms and returns
// how many of the frames read were want.
func countFrames(t *testing.T, sock int, want []byte) int {
	t.Helper()
	buf := make([]byte, 65536)
	n := 0
	for {
		k, _, err := unix.Recvfrom(sock, buf, 0)
		if err != nil {
			return n
		}
		if bytes.Equal(buf[:k], want) {
			n++
		}
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
