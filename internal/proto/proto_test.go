package proto

import (
	"os"
	"regexp"
	"strconv"
	"testing"
)

// cNames maps every #define of bpf/proto.h to its Go constant.
var cNames = map[string]int64{
	"VRSS_ETH_ALEN":          EthAddrLen,
	"VRSS_ETH_TYPE_OFF":      EthTypeOff,
	"VRSS_ETH_HLEN":          EthHeaderLen,
	"VRSS_VLAN_HLEN":         VLANHeaderLen,
	"VRSS_ETH_P_IPV4":        EtherTypeIPv4,
	"VRSS_ETH_P_IPV6":        EtherTypeIPv6,
	"VRSS_ETH_P_8021Q":       EtherTypeVLAN,
	"VRSS_ETH_P_8021AD":      EtherTypeQinQ,
	"VRSS_IPV4_MIN_HLEN":     IPv4MinHeaderLen,
	"VRSS_IPV4_FRAG_OFF":     IPv4FragOff,
	"VRSS_IPV4_FRAG_MASK":    IPv4FragMask,
	"VRSS_IPV4_OFFSET_MASK":  IPv4OffsetMask,
	"VRSS_IPV4_PROTO_OFF":    IPv4ProtoOff,
	"VRSS_IPV4_SRC_OFF":      IPv4SrcOff,
	"VRSS_IPV4_DST_OFF":      IPv4DstOff,
	"VRSS_IPV4_ADDR_LEN":     IPv4AddrLen,
	"VRSS_IPV6_HLEN":         IPv6HeaderLen,
	"VRSS_IPV6_NEXT_OFF":     IPv6NextOff,
	"VRSS_IPV6_SRC_OFF":      IPv6SrcOff,
	"VRSS_IPV6_DST_OFF":      IPv6DstOff,
	"VRSS_IPV6_ADDR_LEN":     IPv6AddrLen,
	"VRSS_IPPROTO_HOPOPTS":   IPProtoHopOpts,
	"VRSS_IPPROTO_TCP":       IPProtoTCP,
	"VRSS_IPPROTO_UDP":       IPProtoUDP,
	"VRSS_IPPROTO_ROUTING":   IPProtoRouting,
	"VRSS_IPPROTO_FRAGMENT":  IPProtoFragment,
	"VRSS_IPPROTO_AH":        IPProtoAH,
	"VRSS_IPPROTO_DSTOPTS":   IPProtoDstOpts,
	"VRSS_IPPROTO_MH":        IPProtoMH,
	"VRSS_IPPROTO_HIP":       IPProtoHIP,
	"VRSS_IPPROTO_SHIM6":     IPProtoShim6,
	"VRSS_IPPROTO_EXP1":      IPProtoExp1,
	"VRSS_IPPROTO_EXP2":      IPProtoExp2,
	"VRSS_IPV6_EXT_MIN_HLEN": IPv6ExtMinHeaderLen,
	"VRSS_IPV6_FRAG_HLEN":    IPv6FragHeaderLen,
	"VRSS_IPV6_FRAG_MASK":    IPv6FragMask,
	"VRSS_IPV6_OFFSET_MASK":  IPv6OffsetMask,
	"VRSS_IPV6_RT2_TYPE":     IPv6RT2Type,
	"VRSS_IPV6_RT2_EXTLEN":   IPv6RT2ExtLen,
	"VRSS_IPV6_RT2_ADDR_OFF": IPv6RT2AddrOff,
	"VRSS_IPV6_OPT_PAD1":     IPv6OptPad1,
	"VRSS_IPV6_OPT_HOME":     IPv6OptHomeAddress,
	"VRSS_TCP_MIN_HLEN":      TCPMinHeaderLen,
	"VRSS_TCP_FLAGS_OFF":     TCPFlagsOff,
	"VRSS_UDP_HLEN":          UDPHeaderLen,
	"VRSS_PORTS_LEN":         PortsLen,
}

// TestCHeaderMatches parses bpf/proto.h's #defines and checks that each has
// a Go constant of the same value, and that no Go constant of the table is
// missing from the header.
func TestCHeaderMatches(t *testing.T) {
	src, err := os.ReadFile("../../bpf/proto.h")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^#define\s+(\w+)\s+(\S+)`)
	seen := map[string]bool{}
	for _, m := range re.FindAllStringSubmatch(string(src), -1) {
		name, val := m[1], m[2]
		if name == "VRSS_PROTO_H" {
			continue
		}
		v, err := strconv.ParseInt(val, 0, 64)
		if err != nil {
			t.Errorf("bpf/proto.h: %s = %q: not a number (keep the header's values literal)", name, val)
			continue
		}
		seen[name] = true
		want, ok := cNames[name]
		if !ok {
			t.Errorf("bpf/proto.h defines %s = %d, which has no Go constant: add one to package proto and to cNames", name, v)
			continue
		}
		if v != want {
			t.Errorf("bpf/proto.h: %s = %#x, Go constant = %#x", name, v, want)
		}
	}
	for name := range cNames {
		if !seen[name] {
			t.Errorf("%s is in cNames but not defined in bpf/proto.h", name)
		}
	}
	if len(seen) < 40 {
		t.Errorf("only %d #defines parsed from bpf/proto.h", len(seen))
	}
}

// TestIsIPv6ExtHeader checks the walk's list against the named values.
func TestIsIPv6ExtHeader(t *testing.T) {
	ext := map[uint8]bool{IPProtoHopOpts: true, IPProtoRouting: true, IPProtoFragment: true, IPProtoAH: true, IPProtoDstOpts: true, IPProtoMH: true, IPProtoHIP: true, IPProtoShim6: true, IPProtoExp1: true, IPProtoExp2: true}
	for v := 0; v < 256; v++ {
		if got := IsIPv6ExtHeader(uint8(v)); got != ext[uint8(v)] {
			t.Errorf("IsIPv6ExtHeader(%d) = %v", v, got)
		}
	}
}
