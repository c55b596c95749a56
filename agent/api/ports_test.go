package api

import (
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/vrss-dev/vrss/port"
)

// testPortPolicy is a policy at every limit: the most MACs, prefixes and
// rules a port takes, and an uplink.
func testPortPolicy(t testing.TB) port.Policy {
	pol := port.Policy{LinkLocal: true, Default: port.Drop, Uplink: "uplink-name-15c"}
	for i := range port.MaxMACs {
		pol.MACs = append(pol.MACs, port.MAC{0x52, 0x54, 0, 0, 0, byte(i + 1)})
	}
	for i := range port.MaxIPv4 {
		pol.IPv4 = append(pol.IPv4, netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), 32))
	}
	for i := range port.MaxIPv6 {
		pol.IPv6 = append(pol.IPv6, netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i)}), 128))
	}
	line := "allow flow-type tcp6 src-ip 2001:db8::1 dst-ip 2001:db8::2 src-port 1000 dst-port 2000\n"
	rules, err := port.ParseACL(strings.Repeat(line, port.MaxRules))
	if err != nil {
		t.Fatal(err)
	}
	pol.Rules = rules
	return pol
}

// The port operations' messages, pinned like TestGolden's, and the
// largest policy fits a request.
func TestPortGolden(t *testing.T) {
	pol := port.Policy{MACs: []port.MAC{{0x52, 0x54, 0, 0x12, 0x34, 0x56}}, IPv4: []netip.Prefix{netip.MustParsePrefix("192.0.2.10/32")}, Default: port.Allow}
	b, err := Encode(&Request{ID: 1, Op: OpPortSet, Args: mustJSON(t, PortSetArgs{Name: "vm0", Policy: pol})})
	want := `{"id":1,"op":"port_set","args":{"name":"vm0","policy":{"macs":["52:54:00:12:34:56"],"ipv4":["192.0.2.10/32"],"ipv6":[],"link_local":false,"rules":[],"default":"allow"}}}`
	if err != nil || string(b) != want {
		t.Fatalf("encoded\n%s\nwant\n%s (%v)", b, want, err)
	}
	var st PortStats
	st.Reasons[port.SrcMAC] = 2
	b, _ = json.Marshal(st)
	want = `{"tap":"","netns":"","attached":false,"generation":0,"uplink":"","passed":0,"dropped":0,"redirected":0,"unconfigured":0,"reasons":{"acl_allow":0,"default_allow":0,"control":0,"malformed":0,"src_mac":2,"vlan":0,"l2_proto":0,"arp_opcode":0,"arp_sender":0,"rarp":0,"src_ipv4":0,"src_ipv6":0,"dhcp_server":0,"dhcpv6_server":0,"router_advert":0,"redirect":0,"ndp_target":0,"acl_drop":0,"default_deny":0,"dst_mac":0,"arp_target":0,"dst_ipv4":0,"dst_ipv6":0},"rules":null}`
	if string(b) != want {
		t.Fatalf("stats\n%s\nwant\n%s", b, want)
	}
	var r PortReasons
	if err := json.Unmarshal([]byte(`{"src_mac":1,"none":2}`), &r); err == nil {
		t.Fatal(`"none" read as a reason`)
	}
	big := testPortPolicy(t)
	if err := big.Validate(); err != nil {
		t.Fatal(err)
	}
	b, err = Encode(&Request{ID: 1 << 62, Op: OpPortSet, Args: mustJSON(t, PortSetArgs{Name: "vm0123456789abc", Netns: "/var/run/netns/" + strings.Repeat("n", 200), Policy: big})})
	if err != nil || len(b) > MaxMessageSize/2 {
		t.Fatalf("the largest policy: %d bytes, %v", len(b), err)
	}
}

// FuzzPortSetArgs: port_set's arguments, untrusted bytes, never panic the
// decoder or the policy's validation; what decodes and validates encodes
// to arguments that decode to the same policy. PortReasons reads any
// bytes without panicking.
func FuzzPortSetArgs(f *testing.F) {
	f.Add([]byte(mustJSON(f, PortSetArgs{Name: "vm0", Policy: testPortPolicy(f)})))
	f.Add([]byte(`{"name":"vm0","netns":"/var/run/netns/a","policy":{"macs":["52:54:00:12:34:56"],"ipv4":["10.0.0.0/8"],"ipv6":["fe80::/10"],"link_local":true,"rules":[{"action":"drop","value":"0000","mask":"00"}],"default":"deny","uplink":"eth0"}}`))
	f.Add([]byte(`{"name":"vm0","policy":{"macs":["52:54:00:12:34:56"],"rules":null,"default":"allow","extra":1}}`))
	f.Add([]byte(`{"name":"vm0","policy":{"macs":[1],"ipv4":["1.2.3.4/40"]}}`))
	f.Add([]byte(`{"acl_allow":1,"src_mac":18446744073709551615}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var r PortReasons
		_ = json.Unmarshal(b, &r)
		var a PortSetArgs
		if err := DecodeArgs(b, &a); err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Code != CodeBadRequest {
				t.Fatalf("untyped refusal %v", err)
			}
			return
		}
		if a.Policy.Validate() != nil {
			return
		}
		enc, err := json.Marshal(a)
		if err != nil {
			t.Fatalf("a valid policy does not encode: %v", err)
		}
		var back PortSetArgs
		if err := DecodeArgs(enc, &back); err != nil {
			t.Fatalf("%s does not decode: %v", enc, err)
		}
		again, _ := json.Marshal(back)
		if string(again) != string(enc) {
			t.Fatalf("not a fixed point: %s then %s", enc, again)
		}
	})
}
