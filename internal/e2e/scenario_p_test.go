package e2e

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/vrss-dev/vrss/internal/frame"
	"github.com/vrss-dev/vrss/port"
)

// TestPortScenarioFrames checks scenario P's policy without a guest: what
// each step sends gets, from the port reference, the reason (and rule) the
// step expects, and the DHCPDISCOVER the host injects is a well-formed
// DHCP client message.
func TestPortScenarioFrames(t *testing.T) {
	pol, err := PortPolicy()
	if err != nil {
		t.Fatal(err)
	}
	f, err := port.New(pol)
	if err != nil {
		t.Fatal(err)
	}
	guest, _ := net.ParseMAC(GuestMAC)
	spoof, _ := net.ParseMAC(pSpoofMAC)
	from := func(mac net.HardwareAddr, s frame.Spec) []byte {
		b := frame.Build(s)
		copy(b[6:12], mac)
		return b
	}
	g, h := netip.MustParseAddr(pGuestIP), netip.MustParseAddr(pHostIP)
	arp := func(sender netip.Addr) []byte {
		b := append(make([]byte, 6), guest...)
		b = append(b, 0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1)
		b = append(append(b, guest...), sender.AsSlice()...)
		return append(append(b, make([]byte, 6)...), sender.AsSlice()...)
	}
	for _, c := range []struct {
		name   string
		frame  []byte
		reason port.Reason
		rule   int
	}{
		{"ping", from(guest, frame.Spec{Src: g, Dst: h, Proto: 1, Payload: 64}), port.ACLAllow, 2},
		{"tcp", from(guest, frame.Spec{Src: g, Dst: h, Proto: frame.ProtoTCP, SrcPort: 40000, DstPort: pTCPPort}), port.ACLAllow, 0},
		{"udp", from(guest, frame.Spec{Src: g, Dst: h, Proto: frame.ProtoUDP, SrcPort: 40000, DstPort: pUDPPort}), port.ACLAllow, 1},
		{"udp to another port", from(guest, frame.Spec{Src: g, Dst: h, Proto: frame.ProtoUDP, SrcPort: 40000, DstPort: 53}), port.DefaultDeny, -1},
		{"another MAC", from(spoof, frame.Spec{Src: g, Dst: h, Proto: 1, Payload: 64}), port.SrcMAC, -1},
		{"another address", from(guest, frame.Spec{Src: netip.MustParseAddr(pSpoofIP), Dst: h, Proto: 1, Payload: 64}), port.SrcIPv4, -1},
		{"gratuitous ARP", arp(netip.MustParseAddr(pClaimIP)), port.ARPSender, -1},
		{"its own ARP", arp(g), port.Control, -1},
		{"DHCP offer", from(guest, frame.Spec{Src: g, Dst: netip.MustParseAddr("255.255.255.255"), Proto: frame.ProtoUDP, SrcPort: 67, DstPort: 68, Payload: 300}), port.DHCPServer, -1},
	} {
		if r := f.Check(c.frame); r.Reason != c.reason || r.Rule != c.rule {
			t.Errorf("%s: %v rule %d, want %v rule %d", c.name, r.Reason, r.Rule, c.reason, c.rule)
		}
	}

	client, _ := net.ParseMAC(pClientMAC)
	d := dhcpDiscover(client, 7)
	cm, _ := port.ParseMAC(pClientMAC)
	cf, _ := port.New(port.Policy{MACs: []port.MAC{cm}, Default: port.Drop})
	if r := cf.Check(d); r.Reason != port.Control {
		t.Errorf("the DHCPDISCOVER, judged as its client's: %v, want control", r.Reason)
	}
	if frame.IPv4Checksum(d[14:34]) != 0 {
		t.Error("the DHCPDISCOVER's IPv4 checksum does not verify")
	}
	if binary.BigEndian.Uint32(d[14+20+8+236:]) != 0x63825363 || d[14+20+8+240] != 53 {
		t.Error("no magic cookie and message type")
	}
}

// TestPortStepPass checks the step verdict: an exact step passes, and any
// one disagreement fails it.
func TestPortStepPass(t *testing.T) {
	allowed := PortStep{Reason: "acl_allow", Rule: 0, Sent: 5, GuestTx: 5, Counted: 5, RuleHits: 5, Arrived: 5, DeliveredOK: true}
	fast := allowed
	fast.Uplink, fast.Redirected = true, 5
	dropped := PortStep{Reason: "src_mac", Rule: -1, Sent: 3, GuestTx: 3, Counted: 3}
	for _, s := range []PortStep{allowed, fast, dropped} {
		if !s.Pass() {
			t.Errorf("%+v fails", s)
		}
	}
	for i, bad := range []func(*PortStep){
		func(s *PortStep) { s.Counted-- },
		func(s *PortStep) { s.GuestTx++ },
		func(s *PortStep) { s.Sent = 0 },
		func(s *PortStep) { s.Other = map[string]uint64{"control": 1} },
		func(s *PortStep) { s.Elsewhere = 1 },
		func(s *PortStep) { s.Arrived = 1 },
		func(s *PortStep) { s.Redirected = 1 },
	} {
		s := dropped
		bad(&s)
		if s.Pass() {
			t.Errorf("dropped step, change %d: passes", i)
		}
	}
	for i, bad := range []func(*PortStep){
		func(s *PortStep) { s.RuleHits-- },
		func(s *PortStep) { s.Arrived-- },
		func(s *PortStep) { s.DeliveredOK = false },
		func(s *PortStep) { s.Redirected = 0 },
	} {
		s := fast
		bad(&s)
		if s.Pass() {
			t.Errorf("fast-path step, change %d: passes", i)
		}
	}
}
