package ethtool

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/internal/netnstest"
)

// onVeth runs fn with a 4-queue veth pair (va, vb) in a throwaway network
// namespace.
func onVeth(t *testing.T, fn func(dev Device)) {
	t.Helper()
	netnstest.Run(t, func() {
		v := &netlink.Veth{
			LinkAttrs: netlink.LinkAttrs{Name: "va", NumRxQueues: 4, NumTxQueues: 4},
			PeerName:  "vb", PeerNumRxQueues: 4, PeerNumTxQueues: 4,
		}
		if err := netlink.LinkAdd(v); err != nil {
			t.Fatalf("veth: %v", err)
		}
		defer netlink.LinkDel(v)
		fn(Device("va"))
	})
}

// wantRefused checks that err is the typed not-supported refusal of op on
// va, with the meaning in its message.
func wantRefused(t *testing.T, what string, err error, meaning string) {
	t.Helper()
	if !errors.Is(err, ErrNotSupported) || !errors.Is(err, unix.EOPNOTSUPP) {
		t.Fatalf("%s on veth: %v, want ErrNotSupported (EOPNOTSUPP)", what, err)
	}
	var e *Error
	if !errors.As(err, &e) || e.Device != "va" {
		t.Fatalf("%s on veth: %v is not an *Error on va", what, err)
	}
	if !strings.Contains(err.Error(), meaning) {
		t.Errorf("%s on veth: %q does not say %q", what, err, meaning)
	}
	t.Logf("%s: %v", what, err)
}

// What veth answers, asserted: it has channels, but no RX ring count, no
// RSS configuration, no contexts and no ntuple rules; every slicing step
// is refused with ErrNotSupported and nothing is left behind.
func TestVethRefuses(t *testing.T) {
	onVeth(t, func(dev Device) {
		ch, err := dev.Channels()
		if err != nil {
			t.Fatalf("Channels on veth: %v", err)
		}
		if ch.Cmd != CmdGetChannels || ch.RX() != 4 || ch.TXCount != 4 || ch.MaxRX < 4 {
			t.Errorf("Channels on veth: %+v, want 4 RX and 4 TX queues", ch)
		}

		_, err = dev.Rings()
		wantRefused(t, "Rings", err, "does not report its RX ring count")
		_, err = dev.RSS(0)
		wantRefused(t, "RSS(0)", err, "exposes no RSS configuration")
		_, err = dev.CreateContext(EqualTable(128, 0, 2), nil)
		wantRefused(t, "CreateContext", err, "the driver of va supports no RSS contexts")
		_, err = CreateContext("va", nil, nil) // the driver's default table
		wantRefused(t, "CreateContext(nil)", err, "supports no RSS contexts")
		err = dev.DeleteContext(1)
		wantRefused(t, "DeleteContext", err, "supports no RSS contexts")
		r, err := DestinationRule(netip.MustParsePrefix("10.0.0.2/32"), 1, LocAny)
		if err != nil {
			t.Fatal(err)
		}
		_, err = dev.AddRule(r)
		wantRefused(t, "AddRule", err, "supports no ntuple rules")
		r.Type = TCPv4Flow // a plain rule to queue 1
		r.Queue = 1
		_, err = AddRule("va", r)
		wantRefused(t, "AddRule(queue)", err, "supports no ntuple rules")
		err = dev.DeleteRule(0)
		wantRefused(t, "DeleteRule", err, "supports no ntuple rules")
		_, err = Rules("va")
		wantRefused(t, "Rules", err, "supports no ntuple rules")

		var steps []SliceState
		_, err = Slice(dev, SliceSpec{QueueStart: 0, Queues: 2,
			Prefixes: []netip.Prefix{netip.MustParsePrefix("10.0.0.2/32"), netip.MustParsePrefix("fd00::2/128")},
			Progress: func(s SliceState) { steps = append(steps, s) },
		})
		wantRefused(t, "Slice", err, "slice queues 0-1 of va")
		if len(steps) != 1 || steps[0].Context != 0 || len(steps[0].Rules) != 0 {
			t.Errorf("Slice on veth recorded %+v, want one record of nothing", steps)
		}
		// Nothing behind: no context 1 (the first id the kernel gives)
		// and still no rules.
		_, err = dev.RSS(1)
		wantRefused(t, "RSS(1) after Slice", err, "RSS")
		_, err = Sliced(dev)
		wantRefused(t, "Sliced", err, "supports no ntuple rules")
	})
}

// The other refusals that need no special device: no such device, and
// the guards before any ioctl.
func TestRefusalsWithoutDevice(t *testing.T) {
	onVeth(t, func(Device) {
		_, err := Rings("nosuch0")
		if !errors.Is(err, ErrNoDevice) || !strings.Contains(err.Error(), "no device nosuch0 in this network namespace") {
			t.Errorf("Rings(nosuch0): %v, want ErrNoDevice", err)
		}
		if _, err := Rings("a-name-far-too-long"); !errors.Is(err, ErrNoDevice) {
			t.Errorf("Rings(long name): %v, want ErrNoDevice", err)
		}
		if err := DeleteContext("va", 0); !errors.Is(err, ErrInvalid) {
			t.Errorf("DeleteContext(va, 0): %v, want ErrInvalid before any ioctl (0 would reset the default table)", err)
		}
		if _, err := AddRule("va", Rule{Type: EtherFlow}); !errors.Is(err, ErrInvalid) || !errors.Is(err, ErrEncode) {
			t.Errorf("AddRule(ETHER_FLOW): %v, want ErrInvalid wrapping ErrEncode", err)
		}
	})
}

// withoutNetAdmin runs fn on the calling (locked) thread with
// CAP_NET_ADMIN dropped from its effective set, then raises it again.
func withoutNetAdmin(t *testing.T, fn func()) {
	t.Helper()
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		t.Fatal(err)
	}
	saved := data
	data[0].Effective &^= 1 << unix.CAP_NET_ADMIN
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := unix.Capset(&hdr, &saved[0]); err != nil {
			t.Fatalf("raising CAP_NET_ADMIN again: %v", err)
		}
	}()
	fn()
}

// Without CAP_NET_ADMIN the kernel refuses every change before asking the
// driver (EPERM), but lets anyone read (the driver's own answer, here
// EOPNOTSUPP).
func TestPermission(t *testing.T) {
	onVeth(t, func(dev Device) {
		withoutNetAdmin(t, func() {
			_, err := dev.CreateContext(EqualTable(128, 0, 2), nil)
			if !errors.Is(err, ErrPermission) || !strings.Contains(err.Error(), "needs CAP_NET_ADMIN in the network namespace of va") {
				t.Errorf("CreateContext without CAP_NET_ADMIN: %v, want ErrPermission", err)
			}
			if _, err := dev.AddRule(Rule{Type: TCPv4Flow, Location: LocAny}); !errors.Is(err, ErrPermission) {
				t.Errorf("AddRule without CAP_NET_ADMIN: %v, want ErrPermission", err)
			}
			if err := dev.DeleteRule(0); !errors.Is(err, ErrPermission) {
				t.Errorf("DeleteRule without CAP_NET_ADMIN: %v, want ErrPermission", err)
			}
			if _, err := dev.Rings(); !errors.Is(err, ErrNotSupported) {
				t.Errorf("Rings without CAP_NET_ADMIN: %v, want veth's own ErrNotSupported", err)
			}
			if _, err := dev.Channels(); err != nil {
				t.Errorf("Channels without CAP_NET_ADMIN: %v", err)
			}
		})
	})
}
