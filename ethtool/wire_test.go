package ethtool

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"reflect"
	"testing"
)

// The golden images below are written by hand from the C layout of
// include/uapi/linux/ethtool.h on 64-bit Linux (x86_64, arm64): each line
// states the offset and the field. Host-order fields are little-endian
// there; addresses and ports are in network order.

// at builds a structure of size bytes, all zero but for the byte runs
// given at their offsets.
func at(size int, runs map[int][]byte) []byte {
	b := make([]byte, size)
	for off, v := range runs {
		copy(b[off:], v)
	}
	return b
}

func littleEndian(t testing.TB) {
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("the golden images are the little-endian layout")
	}
}

var ones16 = bytes.Repeat([]byte{0xff}, 16)

var goldens = []struct {
	name       string
	value      any // Rxfh, Rxnfc or Channels
	image      []byte
	decodeOnly bool // an answer: encoding the value leaves room for the table
}{{
	name: "rxfh create context", // ETHTOOL_SRSSH, ETH_RXFH_CONTEXT_ALLOC, toy sizes
	value: Rxfh{Cmd: CmdSetRSS, Context: ContextAlloc, IndirSize: 4, KeySize: 8,
		Table: []uint32{2, 3, 2, 3}, Key: []byte{1, 2, 3, 4, 5, 6, 7, 8}},
	image: at(48, map[int][]byte{
		0:  {0x47, 0, 0, 0},          // cmd ETHTOOL_SRSSH
		4:  {0xff, 0xff, 0xff, 0xff}, // rss_context ETH_RXFH_CONTEXT_ALLOC
		8:  {4, 0, 0, 0},             // indir_size
		12: {8, 0, 0, 0},             // key_size
		// 16 hfunc 0 (no change), 17 input_xfrm 0, 18 rsvd8[2], 20 rsvd32
		24: {2, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0}, // rss_config: the table
		40: {1, 2, 3, 4, 5, 6, 7, 8},                         // then the key
	}),
}, {
	name:  "rxfh delete context",
	value: Rxfh{Cmd: CmdSetRSS, Context: 5},
	image: at(24, map[int][]byte{
		0: {0x47, 0, 0, 0}, // cmd ETHTOOL_SRSSH
		4: {5, 0, 0, 0},    // rss_context 5; indir_size 0 at 8 deletes it
	}),
}, {
	name:  "rxfh size answer",
	value: Rxfh{Cmd: CmdGetRSS, IndirSize: 128, KeySize: 40, HFunc: HashToeplitz},
	image: at(24, map[int][]byte{
		0:  {0x46, 0, 0, 0}, // cmd ETHTOOL_GRSSH
		8:  {128, 0, 0, 0},  // indir_size
		12: {40, 0, 0, 0},   // key_size
		16: {1},             // hfunc ETH_RSS_HASH_TOP
	}),
	decodeOnly: true,
}, {
	name: "rxnfc insert IPv4 user rule into context",
	value: Rxnfc{Cmd: CmdInsertRule, Rule: Rule{Type: IPv4UserFlow | FlowRSS,
		Dst: netip.MustParseAddr("10.0.0.2"), DstMask: netip.MustParseAddr("255.255.255.255"),
		Context: 7, Location: LocAny}},
	image: at(192, map[int][]byte{
		0:  {0x32, 0, 0, 0},    // cmd ETHTOOL_SRXCLSRLINS; 4 flow_type 0; 8 data 0
		16: {0x0d, 0, 0, 0x20}, // fs.flow_type IPV4_USER_FLOW | FLOW_RSS
		// fs.h_u (20): usrip4 ip4src 20, ip4dst 24, l4_4_bytes 28, tos 32, ip_ver 33, proto 34
		24: {10, 0, 0, 2},
		33: {1}, // ip_ver ETH_RX_NFC_IP4
		// fs.h_ext 72..92; fs.m_u (92): the masks, same shape
		96: {0xff, 0xff, 0xff, 0xff}, // ip4dst mask
		// fs.m_ext 144..164, padding 164, ring_cookie 168 = 0
		176: {0xff, 0xff, 0xff, 0xff}, // fs.location RX_CLS_LOC_ANY
		184: {7, 0, 0, 0},             // rss_context (union with rule_cnt)
	}),
}, {
	name: "rxnfc insert TCPv6 rule to a queue",
	value: Rxnfc{Cmd: CmdInsertRule, Rule: Rule{Type: TCPv6Flow,
		Src: netip.MustParseAddr("fd00::1"), SrcMask: netip.AddrFrom16([16]byte(ones16)),
		DstPort: 443, DstPortMask: 0xffff, TOS: 0x20, TOSMask: 0xe0, Queue: 3, Location: 5}},
	image: at(192, map[int][]byte{
		0:  {0x32, 0, 0, 0}, // cmd
		16: {0x05, 0, 0, 0}, // fs.flow_type TCP_V6_FLOW
		// fs.h_u (20): tcpip6 ip6src 20, ip6dst 36, psrc 52, pdst 54, tclass 56
		20:  {0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1},
		54:  {0x01, 0xbb},             // pdst 443
		56:  {0x20},                   // tclass
		92:  ones16,                   // m_u (92): ip6src mask
		126: {0xff, 0xff},             // pdst mask
		128: {0xe0},                   // tclass mask
		168: {3, 0, 0, 0, 0, 0, 0, 0}, // ring_cookie: queue 3
		176: {5, 0, 0, 0},             // location 5; rule_cnt 184 = 0
	}),
}, {
	name: "rxnfc insert UDPv4 rule to a queue",
	value: Rxnfc{Cmd: CmdInsertRule, Rule: Rule{Type: UDPv4Flow,
		Src: netip.MustParseAddr("192.168.1.0"), SrcMask: netip.MustParseAddr("255.255.255.0"),
		DstPort: 53, DstPortMask: 0xffff, Queue: 1, Location: 2}},
	image: at(192, map[int][]byte{
		0:  {0x32, 0, 0, 0},
		16: {0x02, 0, 0, 0}, // UDP_V4_FLOW
		// tcpip4: ip4src 20, ip4dst 24, psrc 28, pdst 30, tos 32
		20:  {192, 168, 1, 0},
		30:  {0, 53},
		92:  {0xff, 0xff, 0xff, 0}, // m_u ip4src mask
		102: {0xff, 0xff},          // pdst mask
		168: {1},                   // ring_cookie
		176: {2},                   // location
	}),
}, {
	name:  "rxnfc rule locations answer",
	value: Rxnfc{Cmd: CmdGetRuleLocs, Data: 1024 | LocSpecial, RuleCnt: 3, RuleLocs: []uint32{1, 5, 9}},
	image: at(200, map[int][]byte{
		0:   {0x30, 0, 0, 0},             // cmd ETHTOOL_GRXCLSRLALL
		8:   {0x00, 0x04, 0x00, 0x80},    // data: table size 1024 | RX_CLS_LOC_SPECIAL
		184: {3, 0, 0, 0},                // rule_cnt
		188: {1, 0, 0, 0, 5, 0, 0, 0, 9}, // rule_locs, from offsetof(rule_locs) = 188
	}),
}, {
	name:  "channels",
	value: Channels{Cmd: CmdGetChannels, MaxRX: 4, MaxTX: 4, RXCount: 4, TXCount: 2, CombinedCnt: 1},
	image: at(36, map[int][]byte{
		0:  {0x3c}, // cmd ETHTOOL_GCHANNELS
		4:  {4},    // max_rx
		8:  {4},    // max_tx; 12 max_other, 16 max_combined
		20: {4},    // rx_count
		24: {2},    // tx_count; 28 other_count
		32: {1},    // combined_count
	}),
}}

func marshal(t *testing.T, v any) []byte {
	t.Helper()
	var (
		b   []byte
		err error
	)
	switch v := v.(type) {
	case Rxfh:
		b, err = v.MarshalBinary()
	case Rxnfc:
		b, err = v.MarshalBinary()
	case Channels:
		b, err = v.MarshalBinary()
	}
	if err != nil {
		t.Fatalf("marshal %+v: %v", v, err)
	}
	return b
}

func unmarshalLike(v any, b []byte) (any, error) {
	switch v.(type) {
	case Rxfh:
		return UnmarshalRxfh(b)
	case Rxnfc:
		return UnmarshalRxnfc(b)
	}
	return UnmarshalChannels(b)
}

func TestGolden(t *testing.T) {
	littleEndian(t)
	for _, g := range goldens {
		t.Run(g.name, func(t *testing.T) {
			if b := marshal(t, g.value); !g.decodeOnly && !bytes.Equal(b, g.image) {
				t.Errorf("encoded\n% x\nwant\n% x", b, g.image)
			}
			v, err := unmarshalLike(g.value, g.image)
			if err != nil || !reflect.DeepEqual(v, g.value) {
				t.Errorf("decoded %+v, %v\nwant %+v", v, err, g.value)
			}
		})
	}
}

// The sizes and offsets the package states are the C layout's.
func TestLayoutSizes(t *testing.T) {
	littleEndian(t)
	if b := marshal(t, Rxnfc{Cmd: CmdGetRule}); len(b) != RxnfcSize || RxnfcSize != 192 {
		t.Errorf("rxnfc: %d bytes", len(b))
	}
	if b := marshal(t, Rxfh{}); len(b) != RxfhHeaderSize || RxfhHeaderSize != 24 {
		t.Errorf("rxfh: %d bytes", len(b))
	}
	if rxnfcRuleCnt-rxnfcFlowSpec != FlowSpecSize || FlowSpecSize != 168 {
		t.Errorf("flow spec: %d bytes", rxnfcRuleCnt-rxnfcFlowSpec)
	}
	if fsHExt != fsHU+unionSize || fsMU != fsHExt+20 || fsMExt != fsMU+unionSize || fsRingCookie != fsMExt+20+4 {
		t.Error("flow spec offsets inconsistent")
	}
}

func TestRuleRoundTrip(t *testing.T) {
	a4 := netip.MustParseAddr
	rules := []Rule{
		{Type: TCPv4Flow, Src: a4("1.2.3.4"), SrcMask: a4("255.255.0.0"), Dst: a4("5.6.7.8"), DstMask: a4("255.255.255.255"),
			SrcPort: 1000, SrcPortMask: 0xff00, DstPort: 80, DstPortMask: 0xffff, TOS: 0x10, TOSMask: 0xff, Queue: 9, Location: 17},
		{Type: SCTPv4Flow | FlowRSS, Dst: a4("10.1.0.0"), DstMask: a4("255.255.0.0"), Context: 3, Location: LocFirst},
		{Type: UDPv6Flow, Dst: a4("2001:db8::1"), DstMask: netip.AddrFrom16([16]byte(ones16)), DstPort: 4789, DstPortMask: 0xffff, Queue: RingDiscard},
		{Type: SCTPv6Flow | FlowRSS, Src: a4("fe80::1"), SrcMask: a4("ffff:ffff::"), Context: 1 << 20, Location: LocLast},
		{Type: IPv4UserFlow, Src: a4("192.0.2.1"), SrcMask: a4("255.255.255.255"), Proto: 50, L4: 0xdeadbeef, L4Mask: 0xffffffff, Queue: 2},
		{Type: IPv6UserFlow | FlowRSS, Dst: a4("fd00::"), DstMask: a4("ffff:ff00::"), Proto: 17, ProtoMask: 0xff, L4: 1, L4Mask: 2, TOS: 3, TOSMask: 4, Context: 2},
	}
	for _, r := range rules {
		b := marshal(t, Rxnfc{Cmd: CmdInsertRule, Rule: r})
		x, err := UnmarshalRxnfc(b)
		if err != nil || !reflect.DeepEqual(x.Rule, r) {
			t.Errorf("rule round trip: %+v, %v\nwant %+v", x.Rule, err, r)
		}
	}
}

func TestRxfhRoundTrip(t *testing.T) {
	for _, r := range []Rxfh{
		{Cmd: CmdGetRSS, Context: 4, IndirSize: 8, KeySize: 40, HFunc: HashXOR, InputXfrm: 1,
			Table: EqualTable(8, 2, 3), Key: bytes.Repeat([]byte{0xa5}, 40)},
		{Cmd: CmdSetRSS, Context: 4, IndirSize: IndirNoChange, KeySize: 4, Key: []byte{1, 2, 3, 4}},
		{Cmd: CmdSetRSS, Context: ContextAlloc, IndirSize: 2, Table: []uint32{7, 8}},
	} {
		b := marshal(t, r)
		got, err := UnmarshalRxfh(b)
		if err != nil || !reflect.DeepEqual(got, r) {
			t.Errorf("rxfh round trip: %+v, %v\nwant %+v", got, err, r)
		}
	}
	// A read request leaves zeroed room for the answer.
	b := marshal(t, Rxfh{Cmd: CmdGetRSS, IndirSize: 3, KeySize: 2})
	if len(b) != RxfhHeaderSize+12+2 || !bytes.Equal(b[RxfhHeaderSize:], make([]byte, 14)) {
		t.Errorf("read request: % x", b)
	}
}

func TestEncodeRefusals(t *testing.T) {
	a := netip.MustParseAddr
	for name, v := range map[string]any{
		"v6 address in v4 rule": Rxnfc{Rule: Rule{Type: TCPv4Flow, Src: a("::1")}},
		"v4 address in v6 rule": Rxnfc{Rule: Rule{Type: IPv6UserFlow, Dst: a("1.2.3.4")}},
		"unknown flow type":     Rxnfc{Rule: Rule{Type: EtherFlow}},
		"table beyond size":     Rxfh{IndirSize: 1, Table: []uint32{1, 2}},
		"key beyond size":       Rxfh{KeySize: 1, Key: []byte{1, 2}},
		"huge sizes":            Rxfh{IndirSize: 1 << 30},
	} {
		var err error
		switch v := v.(type) {
		case Rxfh:
			_, err = v.MarshalBinary()
		case Rxnfc:
			_, err = v.MarshalBinary()
		}
		if err == nil {
			t.Errorf("%s: encoded", name)
		}
	}
}

func TestDecodeTruncated(t *testing.T) {
	littleEndian(t)
	for _, g := range goldens {
		short := g.image[:len(g.image)-1]
		if _, ok := g.value.(Rxfh); ok && len(short) == RxfhHeaderSize {
			continue // a header alone is a size answer
		}
		if v, err := unmarshalLike(g.value, short); err == nil {
			t.Errorf("%s: one byte short decoded as %+v", g.name, v)
		}
	}
}
