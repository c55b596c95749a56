package main

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/port"
)

// TestPortPolicyFlags: port set's flags and ACL file make the policy they
// say, and every kind of bad input is refused before vrssd is asked, as
// bad input (exit 2), naming the flag or the file's line.
func TestPortPolicyFlags(t *testing.T) {
	dir := t.TempDir()
	acl := filepath.Join(dir, "acl.txt")
	os.WriteFile(acl, []byte("# DNS and HTTPS\nallow flow-type udp4 dst-port 53\n\ndrop flow-type tcp4 dst-port 25\nallow\n"), 0o600)
	pol, err := portPolicy("52:54:00:12:34:56, 52:54:00:12:34:57", "192.0.2.10,2001:db8::/64,10.0.0.0/8", true, acl, "deny", "eth1")
	if err != nil {
		t.Fatal(err)
	}
	want := port.Policy{
		MACs:      []port.MAC{{0x52, 0x54, 0, 0x12, 0x34, 0x56}, {0x52, 0x54, 0, 0x12, 0x34, 0x57}},
		IPv4:      []netip.Prefix{netip.MustParsePrefix("192.0.2.10/32"), netip.MustParsePrefix("10.0.0.0/8")},
		IPv6:      []netip.Prefix{netip.MustParsePrefix("2001:db8::/64")},
		LinkLocal: true, Default: port.Drop, Uplink: "eth1",
	}
	want.Rules, _ = port.ParseACL("allow flow-type udp4 dst-port 53\ndrop flow-type tcp4 dst-port 25\nallow")
	if !reflect.DeepEqual(pol, want) {
		t.Fatalf("policy\n%+v\nwant\n%+v", pol, want)
	}
	if pol, err := portPolicy("52:54:00:12:34:56", "", false, "", "allow", ""); err != nil || pol.Default != port.Allow || len(pol.IPv4)+len(pol.IPv6)+len(pol.Rules) != 0 {
		t.Fatalf("a MAC alone: %+v, %v", pol, err)
	}
	bad := filepath.Join(dir, "bad.txt")
	os.WriteFile(bad, []byte("allow flow-type tcp4 dst-port 22\npermit flow-type udp4\n"), 0o600)
	for _, c := range []struct {
		macs, ips, acl, dflt, uplink string
		mention                      string
	}{
		{"", "", "", "allow", "", "--mac"},
		{"52:54:00:12:34", "", "", "allow", "", "--mac"},
		{"01:00:5e:00:00:01", "", "", "allow", "", "multicast"},
		{"52:54:00:12:34:56", "192.0.2.300", "", "allow", "", "--ip"},
		{"52:54:00:12:34:56", "192.0.2.1/24", "", "allow", "", "host bits"},
		{"52:54:00:12:34:56", "fe80::1%eth0", "", "allow", "", "--ip"},
		{"52:54:00:12:34:56", "", "", "maybe", "", "--default"},
		{"52:54:00:12:34:56", "", bad, "allow", "", "line 2"},
		{"52:54:00:12:34:56", "", filepath.Join(dir, "none"), "allow", "", "--acl"},
		{"52:54:00:12:34:56", "", "", "allow", "eth/1", "uplink"},
	} {
		_, err := portPolicy(c.macs, c.ips, false, c.acl, c.dflt, c.uplink)
		if err == nil || !strings.Contains(err.Error(), c.mention) {
			t.Errorf("%+v: %v, want an error mentioning %q", c, err, c.mention)
		}
	}
	wantInputError(t, "line 2", "port", "set", "vm0", "--mac", "52:54:00:12:34:56", "--acl", bad)
	wantInputError(t, "want exactly one TAP name", "port", "show")
}

// TestPortJSONShape holds port stats --json and port show --json to the
// shape other tools read: these keys and no others, every reason by name.
func TestPortJSONShape(t *testing.T) {
	pol := port.Policy{MACs: []port.MAC{{2, 0, 0, 0, 0, 1}}, Default: port.Allow}
	pol.Rules, _ = port.ParseACL("allow flow-type udp4 dst-port 53")
	st := api.PortStats{TAP: "vm0", Rules: []api.PortRuleHits{{Index: 0, Rule: pol.Rules[0].String(), Hits: 3}}}
	st.Reasons[port.SrcMAC] = 7
	keys := func(v any) ([]string, map[string]json.RawMessage) {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		var ks []string
		for k := range m {
			ks = append(ks, k)
		}
		sort.Strings(ks)
		return ks, m
	}
	ks, m := keys(st)
	if want := []string{"attached", "dropped", "generation", "netns", "passed", "reasons", "redirected", "rules", "tap", "unconfigured", "uplink"}; !reflect.DeepEqual(ks, want) {
		t.Errorf("port stats keys %v, want %v", ks, want)
	}
	var reasons map[string]uint64
	json.Unmarshal(m["reasons"], &reasons)
	if len(reasons) != port.NumReasons-1 || reasons["src_mac"] != 7 || reasons["acl_allow"] != 0 {
		t.Errorf("reasons %v", reasons)
	}
	if !strings.HasPrefix(string(m["reasons"]), `{"acl_allow":0,`) || !strings.HasSuffix(string(m["reasons"]), `"default_deny":0,"dst_mac":0,"arp_target":0,"dst_ipv4":0,"dst_ipv6":0}`) {
		t.Errorf("reasons not in the reasons' order: %s", m["reasons"])
	}
	if string(m["rules"]) != `[{"index":0,"rule":"allow ether-type 0x0800 proto 17 dst-port 53","hits":3}]` {
		t.Errorf("rules %s", m["rules"])
	}
	var back api.PortStats
	if b, _ := json.Marshal(st); json.Unmarshal(b, &back) != nil || !reflect.DeepEqual(back, st) {
		t.Errorf("stats do not read back: %+v", back)
	}
	ks, m = keys(api.PortInfo{TAP: "vm0", Policy: &pol})
	if want := []string{"attached", "generation", "netns", "policy", "tap"}; !reflect.DeepEqual(ks, want) {
		t.Errorf("port show keys %v, want %v", ks, want)
	}
	var got port.Policy
	err := json.Unmarshal(m["policy"], &got)
	again, _ := json.Marshal(got)
	if err != nil || got.Default != pol.Default || len(got.Rules) != 1 || string(again) != string(m["policy"]) {
		t.Errorf("policy %s reads back as %+v (%v)", m["policy"], got, err)
	}
}

// TestPortShowGolden pins port show's and port stats' text.
func TestPortShowGolden(t *testing.T) {
	pol, err := portPolicy("52:54:00:12:34:56", "192.0.2.10,2001:db8::/64", true, "", "deny", "eth1")
	if err != nil {
		t.Fatal(err)
	}
	pol.Rules, _ = port.ParseACL("allow flow-type udp4 dst-port 53\ndrop flow-type tcp4 dst-port 25")
	var b bytes.Buffer
	printPort(&b, api.PortInfo{TAP: "vm0", Attached: true, Generation: 3, Policy: &pol})
	printPort(&b, api.PortInfo{TAP: "vm1"})
	st := api.PortStats{TAP: "vm0", Attached: true, Generation: 3, Uplink: "eth1", Passed: 12, Dropped: 5, Redirected: 12,
		Rules: []api.PortRuleHits{{Index: 0, Rule: pol.Rules[0].String(), Hits: 10}, {Index: 1, Rule: pol.Rules[1].String(), Hits: 1}}}
	st.Reasons[port.ACLAllow], st.Reasons[port.Control], st.Reasons[port.SrcIPv4], st.Reasons[port.ACLDrop], st.Reasons[port.DefaultDeny] = 10, 2, 3, 1, 1
	printPortStats(&b, st)
	// An AF_XDP port's: judged inbound, with its sockets' counters.
	xs := api.PortStats{TAP: "vm0x", Attached: true, Generation: 2, Passed: 400, Dropped: 24, XSKRedirected: 400, OtherQueue: 400}
	xs.Reasons[port.DefaultAllow], xs.Reasons[port.DstMAC], xs.Reasons[port.ARPTarget], xs.Reasons[port.DstIPv4], xs.Reasons[port.DstIPv6] = 400, 8, 8, 6, 2
	printPortStats(&b, xs)
	golden(t, "port.golden", b.Bytes())
}

// The port commands end to end against vrssd, as an operator types them.
func TestPortCommands(t *testing.T) {
	sock := startDaemon(t)
	ok, fails := daemonCLI(t, sock)
	ok("tap", "create", "pt0", "--queues", "2")
	acl := filepath.Join(t.TempDir(), "acl.txt")
	os.WriteFile(acl, []byte("allow flow-type udp4 dst-port 53\ndrop flow-type tcp4 dst-port 25\n"), 0o600)
	if out := ok("port", "set", "pt0", "--mac", "52:54:00:12:34:56", "--ip", "192.0.2.10", "--acl", acl, "--default", "deny"); out != "pt0: port policy set (generation 1): 1 MAC, 1 IPv4, 0 IPv6 prefixes, 2 ACL rules, default drop\n" {
		t.Errorf("port set: %q", out)
	}
	if out := ok("port", "show", "pt0"); !strings.Contains(out, "pt0: port policy, attached, generation 1\n") || !strings.Contains(out, "drop ether-type 0x0800 proto 6 dst-port 25\n") {
		t.Errorf("port show:\n%s", out)
	}
	var info api.PortInfo
	if err := json.Unmarshal([]byte(ok("port", "show", "pt0", "--json")), &info); err != nil || !info.Attached || info.TAP != "pt0" || info.Policy == nil || len(info.Policy.Rules) != 2 {
		t.Errorf("port show --json: %+v, %v", info, err)
	}
	var st map[string]json.RawMessage
	if err := json.Unmarshal([]byte(ok("port", "stats", "pt0", "--json")), &st); err != nil || len(st) != 11 || string(st["attached"]) != "true" || string(st["rules"]) == "[]" {
		t.Errorf("port stats --json: %v, %v", st, err)
	}
	if out := ok("port", "stats", "pt0"); !strings.HasPrefix(out, "pt0: attached, generation 1\npassed 0  dropped 0  redirected 0  unconfigured 0\n") {
		t.Errorf("port stats:\n%s", out)
	}
	fails(2, "no such device", "port", "set", "pt0", "--mac", "52:54:00:12:34:56", "--uplink", "nosuch0")
	fails(2, "TUN/TAP", "port", "set", "pt0", "--mac", "52:54:00:12:34:56", "--uplink", "pt0")
	fails(2, "multicast", "port", "set", "pt0", "--mac", "01:00:5e:00:00:01")
	fails(1, "not_found", "port", "show", "nope")
	if out := ok("port", "show", "pt0"); !strings.Contains(out, "generation 1\n") {
		t.Errorf("a refused policy changed the active one:\n%s", out)
	}
	if out := ok("port", "clear", "pt0"); out != "pt0: port policy cleared\n" {
		t.Errorf("port clear: %q", out)
	}
	if out := ok("port", "show", "pt0"); out != "pt0: no port policy\n" {
		t.Errorf("port show after clear: %q", out)
	}
}
