package ethtool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Commands (the cmd word every ethtool request starts with), from
// include/uapi/linux/ethtool.h.
const (
	CmdGetRxRings   = 0x2d // ETHTOOL_GRXRINGS: the number of RX rings, in Rxnfc.Data
	CmdGetRuleCount = 0x2e // ETHTOOL_GRXCLSRLCNT: rule count and table size
	CmdGetRule      = 0x2f // ETHTOOL_GRXCLSRULE: the rule at Rxnfc.Rule.Location
	CmdGetRuleLocs  = 0x30 // ETHTOOL_GRXCLSRLALL: the locations of all rules
	CmdDeleteRule   = 0x31 // ETHTOOL_SRXCLSRLDEL: delete the rule at a location
	CmdInsertRule   = 0x32 // ETHTOOL_SRXCLSRLINS: insert a rule
	CmdGetChannels  = 0x3c // ETHTOOL_GCHANNELS: struct ethtool_channels
	CmdGetRSS       = 0x46 // ETHTOOL_GRSSH: struct ethtool_rxfh, read
	CmdSetRSS       = 0x47 // ETHTOOL_SRSSH: struct ethtool_rxfh, write, create or delete a context
)

// Special values of struct ethtool_rxfh's fields.
const (
	// ContextAlloc as Rxfh.Context with CmdSetRSS asks the kernel to
	// create a context; it answers with the new context's id
	// (ETH_RXFH_CONTEXT_ALLOC).
	ContextAlloc = 0xffffffff
	// IndirNoChange as Rxfh.IndirSize with CmdSetRSS leaves the table as
	// it is (ETH_RXFH_INDIR_NO_CHANGE).
	IndirNoChange = 0xffffffff
	// HashNoChange as Rxfh.HFunc leaves the hash function as it is
	// (ETH_RSS_HASH_NO_CHANGE).
	HashNoChange = 0
	// HashToeplitz, HashXOR and HashCRC32 are the hash functions, as bits
	// (ETH_RSS_HASH_TOP, _XOR, _CRC32).
	HashToeplitz = 1 << 0
	HashXOR      = 1 << 1
	HashCRC32    = 1 << 2
)

// FlowType is struct ethtool_rx_flow_spec's flow_type: a base type in the
// low byte and flags in the high bits.
type FlowType uint32

// Flow types and flags.
const (
	TCPv4Flow    FlowType = 0x01 // TCP_V4_FLOW: struct ethtool_tcpip4_spec
	UDPv4Flow    FlowType = 0x02 // UDP_V4_FLOW
	SCTPv4Flow   FlowType = 0x03 // SCTP_V4_FLOW
	TCPv6Flow    FlowType = 0x05 // TCP_V6_FLOW: struct ethtool_tcpip6_spec
	UDPv6Flow    FlowType = 0x06 // UDP_V6_FLOW
	SCTPv6Flow   FlowType = 0x07 // SCTP_V6_FLOW
	IPv4UserFlow FlowType = 0x0d // IPV4_USER_FLOW: struct ethtool_usrip4_spec, any IPv4
	IPv6UserFlow FlowType = 0x0e // IPV6_USER_FLOW: struct ethtool_usrip6_spec, any IPv6
	EtherFlow    FlowType = 0x12 // ETHER_FLOW: not decoded by this package

	FlowExt    FlowType = 0x80000000 // FLOW_EXT: VLAN and user data in the ext fields (encoded as zero here)
	FlowMacExt FlowType = 0x40000000 // FLOW_MAC_EXT: destination MAC in the ext fields (encoded as zero here)
	FlowRSS    FlowType = 0x20000000 // FLOW_RSS: spread over the RSS context in Rxnfc's rss_context
)

// Base is the flow type without its flags.
func (f FlowType) Base() FlowType { return f &^ (FlowExt | FlowMacExt | FlowRSS) }

// IPv6 reports whether the base type's addresses are IPv6.
func (f FlowType) IPv6() bool {
	switch f.Base() {
	case TCPv6Flow, UDPv6Flow, SCTPv6Flow, IPv6UserFlow:
		return true
	}
	return false
}

// ports reports whether the base type has a port pair (tcpip4/tcpip6 spec).
func (f FlowType) ports() bool {
	switch f.Base() {
	case TCPv4Flow, UDPv4Flow, SCTPv4Flow, TCPv6Flow, UDPv6Flow, SCTPv6Flow:
		return true
	}
	return false
}

// known reports whether this package encodes and decodes the base type's
// fields.
func (f FlowType) known() bool {
	return f.ports() || f.Base() == IPv4UserFlow || f.Base() == IPv6UserFlow
}

// Rule locations and ring cookies with special meanings.
const (
	LocAny     = 0xffffffff // RX_CLS_LOC_ANY: the driver chooses the location
	LocFirst   = 0xfffffffe // RX_CLS_LOC_FIRST: the first (highest-priority) free location
	LocLast    = 0xfffffffd // RX_CLS_LOC_LAST: the last free location
	LocSpecial = 0x80000000 // RX_CLS_LOC_SPECIAL: in CmdGetRuleCount's Data, the driver takes LocAny/First/Last

	RingDiscard = 0xffffffffffffffff // RX_CLS_FLOW_DISC: drop what the rule matches
)

// Sizes of the structures, on 64-bit Linux.
const (
	RxfhHeaderSize = 24  // sizeof(struct ethtool_rxfh), before rss_config[]
	FlowSpecSize   = 168 // sizeof(struct ethtool_rx_flow_spec)
	RxnfcSize      = 192 // sizeof(struct ethtool_rxnfc)
	ChannelsSize   = 36  // sizeof(struct ethtool_channels)

	rxnfcFlowSpec = 16  // offsetof(struct ethtool_rxnfc, fs)
	rxnfcRuleCnt  = 184 // offsetof(struct ethtool_rxnfc, rule_cnt), shared with rss_context
	rxnfcRuleLocs = 188 // offsetof(struct ethtool_rxnfc, rule_locs)

	// Inside struct ethtool_rx_flow_spec.
	fsHU         = 4   // h_u, union ethtool_flow_union (52 bytes)
	fsHExt       = 56  // h_ext, struct ethtool_flow_ext (20 bytes)
	fsMU         = 76  // m_u
	fsMExt       = 128 // m_ext
	fsRingCookie = 152 // after 4 bytes of padding: __u64 is 8-aligned
	fsLocation   = 160 // then 4 bytes of tail padding
	unionSize    = 52
)

// Errors of the decoders and encoders.
var (
	// ErrTruncated: the bytes end before the structure does.
	ErrTruncated = errors.New("ethtool: structure truncated")
	// ErrEncode: a value that the structure cannot carry.
	ErrEncode = errors.New("ethtool: value cannot be encoded")
)

// ne is the byte order of the host-order fields: the kernel reads them
// natively. Network-order fields (addresses, ports) are big-endian.
var ne = binary.NativeEndian

// Rxfh is struct ethtool_rxfh followed by its rss_config: the RSS
// configuration of the default context (0) or of another context.
//
// Layout (24-byte header, then the table, then the key):
//
//	0  cmd          u32
//	4  rss_context  u32
//	8  indir_size   u32   entries of the table that follow, or IndirNoChange
//	12 key_size     u32   bytes of key that follow the table
//	16 hfunc        u8
//	17 input_xfrm   u8
//	18 rsvd8[2]     must be zero
//	20 rsvd32       must be zero
//	24 rss_config   indir_size × u32, then key_size bytes
type Rxfh struct {
	Cmd       uint32
	Context   uint32
	IndirSize uint32   // written as given; Table fills the first entries of the area it sizes
	KeySize   uint32   // written as given; Key fills the first bytes of the area it sizes
	HFunc     uint8    // HashNoChange or one Hash* bit
	InputXfrm uint8    // RXH_XFRM_*; 0 is none
	Table     []uint32 // the indirection table: queue of each hash bucket
	Key       []byte
}

// indirEntries is the number of table entries that follow the header.
func indirEntries(size uint32) uint64 {
	if size == IndirNoChange {
		return 0
	}
	return uint64(size)
}

// MarshalBinary encodes r: the header, then IndirSize entries (Table,
// zero-filled after it) and KeySize bytes (Key, zero-filled after it), so
// that a read request leaves room for the kernel's answer.
func (r Rxfh) MarshalBinary() ([]byte, error) {
	n := indirEntries(r.IndirSize)
	if uint64(len(r.Table)) > n {
		return nil, fmt.Errorf("%w: rxfh: %d table entries, indir_size %d", ErrEncode, len(r.Table), r.IndirSize)
	}
	if len(r.Key) > int(min(uint64(r.KeySize), 1<<20)) {
		return nil, fmt.Errorf("%w: rxfh: %d key bytes, key_size %d", ErrEncode, len(r.Key), r.KeySize)
	}
	if n > 1<<20 || r.KeySize > 1<<20 {
		return nil, fmt.Errorf("%w: rxfh: indir_size %d, key_size %d: too large", ErrEncode, r.IndirSize, r.KeySize)
	}
	b := make([]byte, RxfhHeaderSize+4*int(n)+int(r.KeySize))
	ne.PutUint32(b[0:], r.Cmd)
	ne.PutUint32(b[4:], r.Context)
	ne.PutUint32(b[8:], r.IndirSize)
	ne.PutUint32(b[12:], r.KeySize)
	b[16] = r.HFunc
	b[17] = r.InputXfrm
	putWords(b[RxfhHeaderSize:], r.Table)
	copy(b[RxfhHeaderSize+4*int(n):], r.Key)
	return b, nil
}

// UnmarshalRxfh decodes the kernel's answer to CmdGetRSS (or any encoded
// Rxfh). A header alone (24 bytes) decodes without table and key, as the
// kernel answers a size query; otherwise the bytes must hold the table and
// key the header announces (more bytes are ignored: the kernel may shrink
// key_size below the room the request left).
func UnmarshalRxfh(b []byte) (Rxfh, error) {
	if err := need(b, RxfhHeaderSize, "rxfh"); err != nil {
		return Rxfh{}, err
	}
	r := Rxfh{
		Cmd:       ne.Uint32(b[0:]),
		Context:   ne.Uint32(b[4:]),
		IndirSize: ne.Uint32(b[8:]),
		KeySize:   ne.Uint32(b[12:]),
		HFunc:     b[16],
		InputXfrm: b[17],
	}
	if len(b) == RxfhHeaderSize {
		return r, nil
	}
	n := indirEntries(r.IndirSize)
	need := uint64(RxfhHeaderSize) + 4*n + uint64(r.KeySize)
	if uint64(len(b)) < need {
		return Rxfh{}, fmt.Errorf("%w: rxfh: %d bytes, indir_size %d and key_size %d need %d", ErrTruncated, len(b), r.IndirSize, r.KeySize, need)
	}
	if n > 0 {
		r.Table = words(b[RxfhHeaderSize:], int(n))
	}
	if r.KeySize > 0 {
		off := RxfhHeaderSize + 4*int(n)
		r.Key = append([]byte(nil), b[off:off+int(r.KeySize)]...)
	}
	return r, nil
}

// Rule is struct ethtool_rx_flow_spec: one ntuple rule, for the flow types
// this package knows (TCP, UDP and SCTP over IPv4 and IPv6, and the IPv4
// and IPv6 "user" flows that match any protocol). A mask bit set means the
// value's bit must match; a zero address and mask (the zero netip.Addr
// here) match anything.
//
// Layout (168 bytes; offsets inside the structure):
//
//	0   flow_type    u32      Type
//	4   h_u          52 bytes the values, by flow type:
//	      tcpip4: ip4src@4 ip4dst@8 psrc@12 pdst@14 tos@16
//	      usrip4: ip4src@4 ip4dst@8 l4_4_bytes@12 tos@16 ip_ver@17 proto@18
//	      tcpip6: ip6src@4 ip6dst@20 psrc@36 pdst@38 tclass@40
//	      usrip6: ip6src@4 ip6dst@20 l4_4_bytes@36 tclass@40 l4_proto@41
//	56  h_ext        20 bytes (zero here)
//	76  m_u          52 bytes the masks, as h_u
//	128 m_ext        20 bytes (zero here)
//	148 padding      4 bytes
//	152 ring_cookie  u64      Queue
//	160 location     u32      Location
//	164 padding      4 bytes
//
// Addresses, ports and l4_4_bytes are in network byte order.
type Rule struct {
	Type                 FlowType // flow_type, flags included; FlowRSS makes Context count
	Src, SrcMask         netip.Addr
	Dst, DstMask         netip.Addr
	SrcPort, SrcPortMask uint16 // source port and its mask (TCP/UDP/SCTP types)
	DstPort, DstPortMask uint16 // destination port and its mask
	TOS, TOSMask         uint8  // IPv4 TOS or IPv6 traffic class
	Proto, ProtoMask     uint8  // user flows: the L4 protocol (IPv4: the mask must be 0)
	L4, L4Mask           uint32 // user flows: the first four bytes of the L4 header
	// Queue is ring_cookie: the queue the rule delivers to, RingDiscard,
	// or, with FlowRSS, an offset added to the context's table entry (0
	// unless the driver adds them).
	Queue    uint64
	Location uint32 // the rule's place in the table, or LocAny/LocFirst/LocLast
	// Context is the RSS context the rule spreads over when Type has
	// FlowRSS. It is not in struct ethtool_rx_flow_spec but in
	// struct ethtool_rxnfc's rss_context.
	Context uint32
}

// putAddr writes a at b: 4 bytes for an IPv4 type, 16 for IPv6.
func putAddr(b []byte, a netip.Addr, v6 bool, what string) error {
	if !a.IsValid() {
		return nil // zero bytes
	}
	if v6 {
		if !a.Is6() { // IPv4-mapped bytes are 16 bytes too (a mask may look like one)
			return fmt.Errorf("%w: %s %v in an IPv6 rule", ErrEncode, what, a)
		}
		s := a.As16()
		copy(b, s[:])
		return nil
	}
	if !a.Is4() {
		return fmt.Errorf("%w: %s %v in an IPv4 rule", ErrEncode, what, a)
	}
	s := a.As4()
	copy(b, s[:])
	return nil
}

// getAddrs decodes an address and its mask: the zero Addr for both when
// both are all zero bytes.
func getAddrs(v, m []byte) (netip.Addr, netip.Addr) {
	zero := true
	for i := range v {
		if v[i] != 0 || m[i] != 0 {
			zero = false
			break
		}
	}
	if zero {
		return netip.Addr{}, netip.Addr{}
	}
	if len(v) == 4 {
		return netip.AddrFrom4([4]byte(v)), netip.AddrFrom4([4]byte(m))
	}
	return netip.AddrFrom16([16]byte(v)), netip.AddrFrom16([16]byte(m))
}

// putUnion writes the values (mask false) or masks (mask true) of r into
// u, a 52-byte union ethtool_flow_union.
func (r Rule) putUnion(u []byte, mask bool) error {
	src, dst, sp, dp, tos, proto, l4 := r.Src, r.Dst, r.SrcPort, r.DstPort, r.TOS, r.Proto, r.L4
	if mask {
		src, dst, sp, dp, tos, proto, l4 = r.SrcMask, r.DstMask, r.SrcPortMask, r.DstPortMask, r.TOSMask, r.ProtoMask, r.L4Mask
	}
	v6 := r.Type.IPv6()
	alen := 4
	if v6 {
		alen = 16
	}
	if err := putAddr(u[0:], src, v6, "source"); err != nil {
		return err
	}
	if err := putAddr(u[alen:], dst, v6, "destination"); err != nil {
		return err
	}
	at := 2 * alen // ports or l4_4_bytes
	if r.Type.ports() {
		binary.BigEndian.PutUint16(u[at:], sp)
		binary.BigEndian.PutUint16(u[at+2:], dp)
		u[at+4] = tos
		return nil
	}
	binary.BigEndian.PutUint32(u[at:], l4)
	u[at+4] = tos
	if v6 {
		u[at+5] = proto // l4_proto
		return nil
	}
	if !mask {
		u[at+5] = 1 // ip_ver: ETH_RX_NFC_IP4, its mask 0
	}
	u[at+6] = proto
	return nil
}

// getUnion decodes the values and masks of the unions h and m into r.
func (r *Rule) getUnion(h, m []byte) {
	alen := 4
	if r.Type.IPv6() {
		alen = 16
	}
	r.Src, r.SrcMask = getAddrs(h[0:alen], m[0:alen])
	r.Dst, r.DstMask = getAddrs(h[alen:2*alen], m[alen:2*alen])
	at := 2 * alen
	r.TOS, r.TOSMask = h[at+4], m[at+4]
	if r.Type.ports() {
		r.SrcPort, r.SrcPortMask = binary.BigEndian.Uint16(h[at:]), binary.BigEndian.Uint16(m[at:])
		r.DstPort, r.DstPortMask = binary.BigEndian.Uint16(h[at+2:]), binary.BigEndian.Uint16(m[at+2:])
		return
	}
	r.L4, r.L4Mask = binary.BigEndian.Uint32(h[at:]), binary.BigEndian.Uint32(m[at:])
	if r.Type.IPv6() {
		r.Proto, r.ProtoMask = h[at+5], m[at+5]
		return
	}
	r.Proto, r.ProtoMask = h[at+6], m[at+6]
}

// putFlowSpec writes r as struct ethtool_rx_flow_spec into b (168 bytes,
// zeroed). A zero Type writes an empty spec (for commands that only carry
// a location). Flow types this package does not know are refused.
func (r Rule) putFlowSpec(b []byte) error {
	ne.PutUint32(b[0:], uint32(r.Type))
	ne.PutUint64(b[fsRingCookie:], r.Queue)
	ne.PutUint32(b[fsLocation:], r.Location)
	if r.Type.Base() == 0 {
		return nil
	}
	if !r.Type.known() {
		return fmt.Errorf("%w: flow type %#x", ErrEncode, uint32(r.Type))
	}
	if err := r.putUnion(b[fsHU:fsHU+unionSize], false); err != nil {
		return err
	}
	return r.putUnion(b[fsMU:fsMU+unionSize], true)
}

// getFlowSpec decodes struct ethtool_rx_flow_spec (168 bytes of b). The
// fields of unknown flow types stay zero; the ext fields are not decoded.
func getFlowSpec(b []byte) Rule {
	r := Rule{
		Type:     FlowType(ne.Uint32(b[0:])),
		Queue:    ne.Uint64(b[fsRingCookie:]),
		Location: ne.Uint32(b[fsLocation:]),
	}
	if r.Type.known() {
		r.getUnion(b[fsHU:fsHU+unionSize], b[fsMU:fsMU+unionSize])
	}
	return r
}

// Rxnfc is struct ethtool_rxnfc: the receive flow classification command
// (rules, rule counts, the RX ring count).
//
// Layout (192 bytes, then rule_locs for CmdGetRuleLocs):
//
//	0   cmd         u32
//	4   flow_type   u32
//	8   data        u64      ring count, rule table size (| LocSpecial)
//	16  fs          struct ethtool_rx_flow_spec (168 bytes, see Rule)
//	184 rule_cnt    u32      shared with rss_context
//	188 rule_locs   rule_cnt × u32 (overlapping the 4 bytes of tail padding)
type Rxnfc struct {
	Cmd      uint32
	FlowType uint32
	Data     uint64
	Rule     Rule
	// RuleCnt is rule_cnt, which shares its place with rss_context: when
	// Rule.Type has FlowRSS, Rule.Context is encoded there instead, and
	// decoded from it (RuleCnt is then 0).
	RuleCnt  uint32
	RuleLocs []uint32
}

// MarshalBinary encodes x, with room for RuleCnt locations when the
// command is CmdGetRuleLocs (the kernel writes them there).
func (x Rxnfc) MarshalBinary() ([]byte, error) {
	n := len(x.RuleLocs)
	if x.Cmd == CmdGetRuleLocs {
		n = max(n, int(min(x.RuleCnt, 1<<20)))
	}
	size := max(RxnfcSize, rxnfcRuleLocs+4*n)
	b := make([]byte, size)
	ne.PutUint32(b[0:], x.Cmd)
	ne.PutUint32(b[4:], x.FlowType)
	ne.PutUint64(b[8:], x.Data)
	if err := x.Rule.putFlowSpec(b[rxnfcFlowSpec : rxnfcFlowSpec+FlowSpecSize]); err != nil {
		return nil, err
	}
	cnt := x.RuleCnt
	if x.Rule.Type&FlowRSS != 0 {
		cnt = x.Rule.Context
	}
	ne.PutUint32(b[rxnfcRuleCnt:], cnt)
	putWords(b[rxnfcRuleLocs:], x.RuleLocs)
	return b, nil
}

// UnmarshalRxnfc decodes the kernel's answer. For CmdGetRuleLocs it also
// decodes RuleCnt locations, which must be in b.
func UnmarshalRxnfc(b []byte) (Rxnfc, error) {
	if err := need(b, RxnfcSize, "rxnfc"); err != nil {
		return Rxnfc{}, err
	}
	x := Rxnfc{
		Cmd:      ne.Uint32(b[0:]),
		FlowType: ne.Uint32(b[4:]),
		Data:     ne.Uint64(b[8:]),
		Rule:     getFlowSpec(b[rxnfcFlowSpec : rxnfcFlowSpec+FlowSpecSize]),
	}
	if x.Rule.Type&FlowRSS != 0 {
		x.Rule.Context = ne.Uint32(b[rxnfcRuleCnt:])
	} else {
		x.RuleCnt = ne.Uint32(b[rxnfcRuleCnt:])
	}
	if x.Cmd == CmdGetRuleLocs && x.RuleCnt > 0 {
		if uint64(len(b)) < rxnfcRuleLocs+4*uint64(x.RuleCnt) {
			return Rxnfc{}, fmt.Errorf("%w: rxnfc: %d bytes cannot hold %d rule locations", ErrTruncated, len(b), x.RuleCnt)
		}
		x.RuleLocs = words(b[rxnfcRuleLocs:], int(x.RuleCnt))
	}
	return x, nil
}

// Channels is struct ethtool_channels (CmdGetChannels): the device's queue
// counts, maxima and current.
//
// Layout (36 bytes): cmd, max_rx, max_tx, max_other, max_combined,
// rx_count, tx_count, other_count, combined_count, each a u32 in this
// order.
type Channels struct {
	Cmd                                       uint32
	MaxRX, MaxTX, MaxOther, MaxCombined       uint32
	RXCount, TXCount, OtherCount, CombinedCnt uint32
}

// RX is the number of queues that receive: RX-only plus combined.
func (c Channels) RX() int { return int(c.RXCount) + int(c.CombinedCnt) }

// MarshalBinary encodes c.
func (c Channels) MarshalBinary() ([]byte, error) {
	b := make([]byte, ChannelsSize)
	putWords(b, []uint32{c.Cmd, c.MaxRX, c.MaxTX, c.MaxOther, c.MaxCombined, c.RXCount, c.TXCount, c.OtherCount, c.CombinedCnt})
	return b, nil
}

// UnmarshalChannels decodes struct ethtool_channels.
func UnmarshalChannels(b []byte) (Channels, error) {
	if err := need(b, ChannelsSize, "channels"); err != nil {
		return Channels{}, err
	}
	w := words(b, 9)
	return Channels{w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7], w[8]}, nil
}

// need checks that b holds at least n bytes of the structure what.
func need(b []byte, n int, what string) error {
	if len(b) < n {
		return fmt.Errorf("%w: %s: %d bytes, want at least %d", ErrTruncated, what, len(b), n)
	}
	return nil
}

// putWords writes host-order u32s from the start of b.
func putWords(b []byte, w []uint32) {
	for i, v := range w {
		ne.PutUint32(b[4*i:], v)
	}
}

// words reads n host-order u32s from the start of b, which holds them.
func words(b []byte, n int) []uint32 {
	w := make([]uint32, n)
	for i := range w {
		w[i] = ne.Uint32(b[4*i:])
	}
	return w
}
