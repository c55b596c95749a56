package port

import (
	"testing"

	"github.com/gopacket/gopacket/layers"

	"github.com/vrss-dev/vrss/flow"
)

// FuzzCheck holds Check to what the XDP program must also hold to, on any
// bytes: it never panics or reads past the frame, it is deterministic, the
// verdict is the reason's, an ACL reason names the first rule whose match
// the frame's key satisfies, a default reason means no rule matches; an
// outbound Filter drops a frame from a MAC not the guest's for it and
// never gives an inbound reason, an inbound Filter (inbound true) drops a
// unicast frame to a MAC not the guest's for it (unless VLAN-tagged) and
// never gives an outbound reason.
func FuzzCheck(f *testing.F) {
	for _, b := range [][]byte{
		v4{src: guest4, dst: gw4, proto: 17, sp: 1, dp: 53}.build(),
		v4{src: "0.0.0.0", dst: "255.255.255.255", proto: 17, sp: 68, dp: 67}.build(),
		v4{src: guest4, dst: gw4, proto: 6, sp: 1, dp: 22, moreFrags: true}.build(),
		v6{src: guest6, dst: gw6, proto: 17, sp: 1, dp: 53, ext: []layers.IPProtocol{0, 60, 44}, frag: &layers.IPv6Fragment{MoreFragments: true}}.build(),
		v6{src: guestLL, dst: "ff02::1", proto: 58, icmp: 134}.build(),
		v6{src: "::", dst: "ff02::1", proto: 58, icmp: 135, target: guest6}.build(),
		v6{src: guest6, dst: "ff02::1", proto: 58, icmp: 136, target: other6, ext: []layers.IPProtocol{60}}.build(),
		v6{src: otherLL, dst: "ff02::1:2", proto: 17, sp: 546, dp: 547}.build(),
		arpFrame{op: 1, sha: guestMAC, spa: guest4, tpa: gw4}.build(),
		qemuAnnounce().build(),
		patch(v4{src: guest4, dst: gw4, proto: 17, sp: 1, dp: 53}.build(), 12, 0x81, 0x00),
		inbound(v4{src: gw4, dst: guest4, proto: 17, sp: 1, dp: 53}.build(), guestMAC),
		inbound(v4{src: gw4, dst: "255.255.255.255", proto: 17, sp: 67, dp: 68}.build(), bcastMAC),
		inbound(v4{src: gw4, dst: other4, proto: 6, sp: 1, dp: 22}.build(), otherMAC),
		inbound(v6{src: otherLL, dst: "ff02::1", proto: 58, icmp: 134}.build(), MAC{0x33, 0x33, 0, 0, 0, 1}),
		inbound(v6{src: otherLL, dst: guestLL, proto: 17, sp: 547, dp: 546}.build(), guestMAC),
		inbound(arpFrame{op: 1, sha: gwMAC, spa: gw4, tpa: guest4}.build(), bcastMAC),
		{},
	} {
		for _, in := range []bool{false, true} {
			f.Add(b, false, in)
			f.Add(b, true, in)
		}
	}
	var filters [2][2]*Filter // [inbound][defaultAllow]
	for i, newFilter := range []func(Policy) (*Filter, error){New, NewInbound} {
		for j, d := range []Action{Drop, Allow} {
			p := testPolicy()
			p.Default = d
			var err error
			if filters[i][j], err = newFilter(p); err != nil {
				f.Fatal(err)
			}
		}
	}
	f.Fuzz(func(t *testing.T, frame []byte, defaultAllow, inbound bool) {
		flt := filters[b2i(inbound)][b2i(defaultAllow)]
		frame = exact(frame)
		r := flt.Check(frame)
		if again := flt.Check(frame); again != r {
			t.Fatalf("not deterministic: %+v then %+v", r, again)
		}
		if r.Reason == 0 || r.Reason >= NumReasons {
			t.Fatalf("reason %d", r.Reason)
		}
		if (r.Verdict == VerdictPass) != r.Reason.Pass() || r.Verdict != VerdictPass && r.Verdict != VerdictDrop {
			t.Fatalf("verdict %v for reason %v", r.Verdict, r.Reason)
		}
		if !inbound && len(frame) >= 12 && MAC(frame[6:12]) != guestMAC && r.Reason != SrcMAC && r.Reason != Malformed {
			t.Fatalf("a frame from %v: %v", MAC(frame[6:12]), r.Reason)
		}
		if !inbound && r.Reason >= DstMAC {
			t.Fatalf("outbound: %v", r.Reason)
		}
		if inbound && (r.Reason == SrcMAC || r.Reason >= ARPSender && r.Reason <= NDPTarget) {
			t.Fatalf("inbound: %v", r.Reason)
		}
		if inbound && len(frame) >= 14 && frame[0]&1 == 0 && MAC(frame[0:6]) != guestMAC && r.Reason != DstMAC && r.Reason != VLAN {
			t.Fatalf("a frame to %v: %v", MAC(frame[0:6]), r.Reason)
		}
		rules := flt.p.Rules
		k := flow.KeyOf(frame)
		first := -1
		for i := range rules {
			if rules[i].Match.Matches(&k) {
				first = i
				break
			}
		}
		switch r.Reason {
		case ACLAllow, ACLDrop:
			if r.Rule != first || (rules[first].Action == Allow) != (r.Reason == ACLAllow) {
				t.Fatalf("%v by rule %d; the first matching rule is %d", r.Reason, r.Rule, first)
			}
		case DefaultAllow, DefaultDeny:
			if first >= 0 || (r.Reason == DefaultAllow) != defaultAllow {
				t.Fatalf("%v, but rule %d matches", r.Reason, first)
			}
			fallthrough
		default:
			if r.Rule != -1 {
				t.Fatalf("%v with rule %d", r.Reason, r.Rule)
			}
		}
	})
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
