package port

import (
	"encoding/json"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/vrss-dev/vrss/flow"
)

func TestLinkLocal(t *testing.T) {
	if got := guestMAC.LinkLocal().String(); got != guestLL {
		t.Errorf("%v.LinkLocal() = %s, want %s", guestMAC, got, guestLL)
	}
	// The universal/local bit is flipped, not set.
	if got := (MAC{0x02, 0, 0, 0, 0, 1}).LinkLocal().String(); got != "fe80::ff:fe00:1" {
		t.Errorf("got %s", got)
	}
}

func TestValidate(t *testing.T) {
	pfx := netip.MustParsePrefix
	var bad flow.Match
	bad.SetDstPort(22, 0xffff) // no EtherType: Normalize refuses it
	var raw flow.Match
	raw.SetEtherType(0x0800, 0xffff)
	raw.SetProto(6, 0xff) // not normalized: the flags are missing
	for _, c := range []struct {
		name string
		set  func(p *Policy)
		err  error
		msg  string
	}{
		{"no MAC", func(p *Policy) { p.MACs = nil }, ErrInvalid, "macs: at least one"},
		{"five MACs", func(p *Policy) {
			p.MACs = []MAC{{2, 0, 0, 0, 0, 1}, {2, 0, 0, 0, 0, 2}, {2, 0, 0, 0, 0, 3}, {2, 0, 0, 0, 0, 4}, {2, 0, 0, 0, 0, 5}}
		}, ErrLimit, "macs: 5, the limit is 4"},
		{"zero MAC", func(p *Policy) { p.MACs = append(p.MACs, MAC{}) }, ErrInvalid, "macs[1] 00:00:00:00:00:00: the zero address"},
		{"multicast MAC", func(p *Policy) { p.MACs[0] = MAC{0x01, 0, 0x5e, 0, 0, 1} }, ErrInvalid, "macs[0] 01:00:5e:00:00:01: a multicast address"},
		{"MAC twice", func(p *Policy) { p.MACs = append(p.MACs, guestMAC) }, ErrInvalid, "macs[1] 52:54:00:12:34:56: given twice"},
		{"17 IPv4 prefixes", func(p *Policy) { p.IPv4 = make([]netip.Prefix, 17) }, ErrLimit, "ipv4 prefixes: 17, the limit is 16"},
		{"17 IPv6 prefixes", func(p *Policy) { p.IPv6 = make([]netip.Prefix, 17) }, ErrLimit, "ipv6 prefixes: 17, the limit is 16"},
		{"zero prefix", func(p *Policy) { p.IPv4 = []netip.Prefix{{}} }, ErrInvalid, "ipv4[0]: not a prefix"},
		{"IPv6 among IPv4", func(p *Policy) { p.IPv4 = append(p.IPv4, pfx("2001:db8::/32")) }, ErrInvalid, "ipv4[2] 2001:db8::/32: not an IPv4 prefix"},
		{"IPv4 among IPv6", func(p *Policy) { p.IPv6 = append(p.IPv6, pfx("10.0.0.0/8")) }, ErrInvalid, "ipv6[1] 10.0.0.0/8: not an IPv6 prefix"},
		{"IPv4-mapped IPv6", func(p *Policy) { p.IPv6 = []netip.Prefix{pfx("::ffff:10.0.0.1/128")} }, ErrInvalid, "ipv6[0] ::ffff:10.0.0.1/128: not an IPv6 prefix"},
		{"host bits", func(p *Policy) { p.IPv4 = []netip.Prefix{pfx("10.1.2.3/8")} }, ErrInvalid, "ipv4[0] 10.1.2.3/8: host bits set (the prefix is 10.0.0.0/8)"},
		{"prefix twice", func(p *Policy) { p.IPv6 = append(p.IPv6, p.IPv6[0]) }, ErrInvalid, "ipv6[1] 2001:db8::10/128: given twice"},
		{"33 rules", func(p *Policy) { p.Rules = make([]Rule, 33) }, ErrLimit, "rules: 33, the limit is 32"},
		{"rule without action", func(p *Policy) { p.Rules[2].Action = 0 }, ErrInvalid, "rules[2] (ether-type 0x86dd proto 17 dst-port 53): action must be allow or drop"},
		{"rule the flow model refuses", func(p *Policy) { p.Rules[0].Match = bad }, ErrInvalid, "rules[0] (dst-port 22): flow: IP and port fields need the EtherType"},
		{"rule not normalized", func(p *Policy) { p.Rules[0].Match = raw }, ErrInvalid, "rules[0] (ether-type 0x0800 proto 6): match not normalized"},
		{"no default", func(p *Policy) { p.Default = 0 }, ErrInvalid, "default: must be allow or deny"},
		{"uplink too long", func(p *Policy) { p.Uplink = "abcdefghijklmnop" }, ErrInvalid, `uplink "abcdefghijklmnop": not a Linux interface name`},
		{"uplink with a slash", func(p *Policy) { p.Uplink = "a/b" }, ErrInvalid, `uplink "a/b"`},
		{"uplink ..", func(p *Policy) { p.Uplink = ".." }, ErrInvalid, `uplink ".."`},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := testPolicy()
			c.set(&p)
			err := p.Validate()
			if !errors.Is(err, c.err) || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("got %v, want %v containing %q", err, c.err, c.msg)
			}
			if f, err2 := New(p); f != nil || err2 == nil || err2.Error() != err.Error() {
				t.Errorf("New: %v, %v", f, err2)
			}
		})
	}
	p := testPolicy()
	p.Uplink = "veth-up0"
	if err := p.Validate(); err != nil {
		t.Errorf("the test policy: %v", err)
	}
}

// policyGolden is testPolicy with an uplink, as MarshalJSON writes it.
// vrssd persists policies in this form: a change here is a change of its
// state format.
const policyGolden = `{"macs":["52:54:00:12:34:56"],"ipv4":["192.0.2.10/32","198.51.100.0/24"],"ipv6":["2001:db8::10/128"],"link_local":true,` +
	`"rules":[` +
	`{"action":"drop","value":"00000000000000000000000008001a0600000000000000000000000000000000000000000000000000000000000000000000000000000016","mask":"000000000000000000000000ffff1aff0000000000000000000000000000000000000000000000000000000000000000000000000000ffff","match":"ether-type 0x0800 proto 6 dst-port 22"},` +
	`{"action":"allow","value":"00000000000000000000000008001a1100000000000000000000000000000000000000000000000000000000000000000000000000000035","mask":"000000000000000000000000ffff1aff0000000000000000000000000000000000000000000000000000000000000000000000000000ffff","match":"ether-type 0x0800 proto 17 dst-port 53"},` +
	`{"action":"allow","value":"00000000000000000000000086dd1c1100000000000000000000000000000000000000000000000000000000000000000000000000000035","mask":"000000000000000000000000ffff1cff0000000000000000000000000000000000000000000000000000000000000000000000000000ffff","match":"ether-type 0x86dd proto 17 dst-port 53"},` +
	`{"action":"allow","value":"00000000000000000000000008000a0100000000000000000000000000000000000000000000000000000000000000000000000000000000","mask":"000000000000000000000000ffff0aff00000000000000000000000000000000000000000000000000000000000000000000000000000000","match":"ether-type 0x0800 proto 1"},` +
	`{"action":"allow","value":"00000000000000000000000086dd0c3a00000000000000000000000000000000000000000000000000000000000000000000000000000000","mask":"000000000000000000000000ffff0cff00000000000000000000000000000000000000000000000000000000000000000000000000000000","match":"ether-type 0x86dd proto 58"}],` +
	`"default":"drop","uplink":"veth-up0"}`

func TestPolicyJSON(t *testing.T) {
	p := testPolicy()
	p.Uplink = "veth-up0"
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != policyGolden {
		t.Errorf("got\n%s\nwant\n%s", b, policyGolden)
	}
	var back Policy
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, p) {
		t.Errorf("read back\n%+v\nwant\n%+v", back, p)
	}

	// The smallest policy: empty lists are [], no uplink.
	min := Policy{MACs: []MAC{guestMAC}, Default: Allow}
	const minGolden = `{"macs":["52:54:00:12:34:56"],"ipv4":[],"ipv6":[],"link_local":false,"rules":[],"default":"allow"}`
	if b, _ := json.Marshal(min); string(b) != minGolden {
		t.Errorf("got %s, want %s", b, minGolden)
	}
	// "deny" reads as drop; the match words are not read.
	var d Policy
	if err := json.Unmarshal([]byte(`{"macs":["52-54-00-12-34-56"],"default":"deny","rules":[{"action":"allow","value":"`+strings.Repeat("0", 112)+`","mask":"`+strings.Repeat("0", 112)+`","match":"nonsense"}]}`), &d); err != nil {
		t.Fatal(err)
	}
	if d.Default != Drop || d.MACs[0] != guestMAC || len(d.Rules) != 1 || d.Rules[0].Action != Allow || d.Validate() != nil {
		t.Errorf("got %+v", d)
	}

	for _, bad := range []string{
		`{"macs":["52:54:00:12:34"]}`,
		`{"macs":["52:54:00:12:34:56:78:9a"]}`,
		`{"default":"maybe"}`,
		`{"ipv4":["10.0.0.1"]}`,
		`{"rules":[{"action":"allow","value":"00","mask":"00"}]}`,
		`{"rules":[{"action":"allow","value":"` + strings.Repeat("g", 112) + `"}]}`,
		`{"rules":[{"action":"","value":"` + strings.Repeat("0", 112) + `"}]}`,
		`[]`,
	} {
		var p Policy
		if err := json.Unmarshal([]byte(bad), &p); err == nil {
			t.Errorf("%s: read as %+v", bad, p)
		}
	}
	// An invalid action cannot be written.
	p.Rules[0].Action = 0
	if _, err := json.Marshal(p); err == nil {
		t.Error("a rule without an action was written")
	}
}

func TestStrings(t *testing.T) {
	want := []string{"none", "acl_allow", "default_allow", "control", "malformed", "src_mac", "vlan", "l2_proto", "arp_opcode", "arp_sender", "rarp",
		"src_ipv4", "src_ipv6", "dhcp_server", "dhcpv6_server", "router_advert", "redirect", "ndp_target", "acl_drop", "default_deny",
		"dst_mac", "arp_target", "dst_ipv4", "dst_ipv6"}
	for r := Reason(0); r < NumReasons; r++ {
		if r.String() != want[r] {
			t.Errorf("reason %d: %q, want %q", r, r, want[r])
		}
		if r.Pass() != (r >= 1 && r <= 3) {
			t.Errorf("reason %v: Pass %v", r, r.Pass())
		}
	}
	if s := Reason(NumReasons).String(); s != "reason(24)" {
		t.Error(s)
	}
	if VerdictPass.String() != "pass" || VerdictDrop.String() != "drop" || Verdict(0).String() != "verdict(0)" {
		t.Error("verdict names")
	}
	if Allow.String() != "allow" || Drop.String() != "drop" || Action(9).String() != "action(9)" {
		t.Error("action names")
	}
	if s := testPolicy().Rules[0].String(); s != "drop ether-type 0x0800 proto 6 dst-port 22" {
		t.Error(s)
	}
	if _, err := ParseMAC("52:54:00:12:34"); err == nil {
		t.Error("a 5-byte MAC parsed")
	}
}

func TestCounters(t *testing.T) {
	f, err := New(testPolicy())
	if err != nil {
		t.Fatal(err)
	}
	var c Counters
	frames := [][]byte{
		v4{src: guest4, dst: gw4, proto: 17, sp: 1, dp: 53}.build(),
		v4{src: guest4, dst: gw4, proto: 17, sp: 2, dp: 53}.build(),
		v4{src: guest4, dst: gw4, proto: 6, sp: 1, dp: 22}.build(),
		v4{src: other4, dst: gw4, proto: 6, sp: 1, dp: 22}.build(),
		qemuAnnounce().build(),
	}
	for _, b := range frames {
		c.Add(f.Check(b))
	}
	var want Counters
	want.Reasons[ACLAllow], want.Reasons[ACLDrop], want.Reasons[SrcIPv4], want.Reasons[Control] = 2, 1, 1, 1
	want.Rules[ruleDNS4], want.Rules[ruleDropSSH] = 2, 1
	if c != want {
		t.Errorf("got %+v\nwant %+v", c, want)
	}
	if c.Passed() != 3 || c.Dropped() != 2 {
		t.Errorf("passed %d, dropped %d", c.Passed(), c.Dropped())
	}
}

// The filter keeps its own copy of the policy.
func TestFilterCopies(t *testing.T) {
	p := testPolicy()
	f, err := New(p)
	if err != nil {
		t.Fatal(err)
	}
	p.MACs[0], p.Rules[ruleDNS4].Action = otherMAC, Drop
	dns := v4{src: guest4, dst: gw4, proto: 17, sp: 1, dp: 53}.build()
	if r := f.Check(dns); r.Reason != ACLAllow {
		t.Errorf("after changing the caller's policy: %v", r.Reason)
	}
	q := f.Policy()
	q.MACs[0] = otherMAC
	if r := f.Check(dns); r.Reason != ACLAllow || !reflect.DeepEqual(f.Policy(), testPolicy()) {
		t.Errorf("after changing Policy()'s copy: %v", r.Reason)
	}
}
