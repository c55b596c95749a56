package port

import (
	"testing"

	"github.com/gopacket/gopacket/layers"

	"github.com/vrss-dev/vrss/flow"
)

// FuzzCheck holds Check to what the XDP program must also hold to, on any
// bytes: it never panics or reads past the frame, it is deterministic, the
// verdict is the reason's, an ACL reason names the first rule whose match
// the frame's key satisfies, a default reason means no rule matches, and a
// frame from a MAC not the guest's is dropped for it.
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
		{},
	} {
		f.Add(b, false)
		f.Add(b, true)
	}
	deny, err := New(testPolicy())
	if err != nil {
		f.Fatal(err)
	}
	p := testPolicy()
	p.Default = Allow
	allow, err := New(p)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, frame []byte, defaultAllow bool) {
		flt := deny
		if defaultAllow {
			flt = allow
		}
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
		if len(frame) >= 12 && MAC(frame[6:12]) != guestMAC && r.Reason != SrcMAC && r.Reason != Malformed {
			t.Fatalf("a frame from %v: %v", MAC(frame[6:12]), r.Reason)
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
