package main

import (
	"testing"

	"github.com/vrss-dev/vrss/port"
)

// TestRouterAdvert checks the frame guestsend ra writes: the port
// reference drops it as a router advertisement from the guest's own
// link-local address (not as a spoofed source or a malformed frame), and
// its ICMPv6 checksum verifies.
func TestRouterAdvert(t *testing.T) {
	mac := port.MAC{0x52, 0x54, 0, 0x12, 0x34, 0x56}
	f := routerAdvert(mac)
	pol := port.Policy{MACs: []port.MAC{mac}, LinkLocal: true, Default: port.Allow}
	flt, err := port.New(pol)
	if err != nil {
		t.Fatal(err)
	}
	if r := flt.Check(f); r.Reason != port.RouterAdvert {
		t.Errorf("judged %v %v, want router_advert", r.Verdict, r.Reason)
	}
	pol.LinkLocal = false
	if flt, _ = port.New(pol); flt.Check(f).Reason != port.SrcIPv6 {
		t.Errorf("without the link-local address: %v, want src_ipv6", flt.Check(f).Reason)
	}
	src, dst := [16]byte(f[22:38]), [16]byte(f[38:54])
	if src != mac.LinkLocal().As16() {
		t.Errorf("source %x, want %v", src, mac.LinkLocal())
	}
	if c := icmp6Checksum(src, dst, f[54:]); c != 0 {
		t.Errorf("the checksum does not verify: %#04x", c)
	}
}
