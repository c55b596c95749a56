package port

import (
	"encoding/binary"
	"net/netip"
	"slices"

	"github.com/vrss-dev/vrss/flow"
	"github.com/vrss-dev/vrss/internal/proto"
	"github.com/vrss-dev/vrss/rss"
)

// Protocol numbers the checks read besides internal/proto's.
const (
	etherTypeARP  = 0x0806
	etherTypeRARP = 0x8035

	// ARP for Ethernet and IPv4 (RFC 826), after the Ethernet header:
	// hardware type, protocol type, their lengths, opcode, then sender
	// MAC and IPv4 address, target MAC and IPv4 address.
	arpLen       = 28
	arpOpOff     = 6
	arpSHAOff    = 8
	arpSPAOff    = 14
	arpTHAOff    = 18
	arpTPAOff    = 24
	arpRequest   = 1
	arpReply     = 2
	rarpRequest  = 3                // "request reverse", what QEMU announces itself with
	arpHeaderFix = 0x0001_0800_0604 // hardware 1 (Ethernet), protocol 0x0800, lengths 6 and 4

	ipProtoICMPv6 = 58
	// ICMPv6 types (RFC 4443, 4861, 2710, 3810).
	icmp6MLDQuery    = 130
	icmp6MLDReport   = 131
	icmp6MLDDone     = 132
	icmp6RS          = 133
	icmp6RA          = 134
	icmp6NS          = 135
	icmp6NA          = 136
	icmp6Redirect    = 137
	icmp6MLDv2Report = 143
	icmp6MinLen      = 4  // type, code, checksum
	ndTargetOff      = 8  // NS and NA: the target address after 4 reserved/flag bytes
	ndMinLen         = 24 // NS and NA without options

	dhcpServerPort   = 67
	dhcpClientPort   = 68
	dhcpv6ClientPort = 546
	dhcpv6ServerPort = 547
)

var (
	broadcast4       = netip.AddrFrom4([4]byte{255, 255, 255, 255})
	allDHCPv6Servers = netip.MustParseAddr("ff02::1:2") // All_DHCP_Relay_Agents_and_Servers, RFC 8415
)

// Filter judges frames by a valid Policy. It never changes, so any number
// of goroutines may use one.
type Filter struct {
	p       Policy
	ipv6    []netip.Prefix // the policy's, then each MAC's link-local address if asked
	inbound bool
}

// New validates p and returns its Filter, which keeps a copy of p and
// judges frames the guest sends (a TAP's: outbound).
func New(p Policy) (*Filter, error) { return newFilter(p, false) }

// NewInbound is New for a Filter that judges frames arriving for the
// guest, by their destination: an AF_XDP port's, whose program sees the
// frames of the VM's receive queues and never what the guest sends (AF_XDP
// transmission bypasses XDP). See Check for the checks.
func NewInbound(p Policy) (*Filter, error) { return newFilter(p, true) }

// Inbound reports whether f judges frames arriving for the guest
// (NewInbound) rather than frames it sends (New).
func (f *Filter) Inbound() bool { return f.inbound }

func newFilter(p Policy, inbound bool) (*Filter, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	p.MACs, p.IPv4, p.IPv6, p.Rules = slices.Clone(p.MACs), slices.Clone(p.IPv4), slices.Clone(p.IPv6), slices.Clone(p.Rules)
	f := &Filter{p: p, ipv6: slices.Clone(p.IPv6), inbound: inbound}
	if p.LinkLocal {
		for _, m := range p.MACs {
			f.ipv6 = append(f.ipv6, netip.PrefixFrom(m.LinkLocal(), 128))
		}
	}
	return f, nil
}

// Policy returns a copy of the filter's policy.
func (f *Filter) Policy() Policy {
	p := f.p
	p.MACs, p.IPv4, p.IPv6, p.Rules = slices.Clone(p.MACs), slices.Clone(p.IPv4), slices.Clone(p.IPv6), slices.Clone(p.Rules)
	return p
}

// Check judges frame, an Ethernet frame (without the virtio-net header).
// An outbound Filter (New) judges a frame as the guest sent it; the checks
// run in this order, the first that decides ending it: the Ethernet
// header, the source MAC, VLAN tags, the EtherType; then ARP, RARP, IPv4
// or IPv6 by their own checks, which pass control frames (Control) without
// the ACL; then the ACL, then the default. An inbound Filter (NewInbound)
// judges a frame arriving for the guest: the Ethernet header, VLAN tags,
// the destination MAC (DstMAC), the EtherType (RARP is L2Proto); then ARP
// (ARPOpcode, ARPTarget), IPv4 (DstIPv4) or IPv6 (DstIPv6), which pass
// control frames without the ACL; then the ACL and the default, as
// outbound. It never reads outside frame.
func (f *Filter) Check(frame []byte) Result {
	if len(frame) < proto.EthHeaderLen {
		return result(Malformed)
	}
	if f.inbound {
		return f.checkIn(frame)
	}
	src := MAC(frame[6:12])
	if !slices.Contains(f.p.MACs, src) {
		return result(SrcMAC)
	}
	var r Reason
	switch binary.BigEndian.Uint16(frame[proto.EthTypeOff:]) {
	case proto.EtherTypeVLAN, proto.EtherTypeQinQ:
		r = VLAN
	case etherTypeARP:
		r = f.arp(frame, src)
	case etherTypeRARP:
		r = rarp(frame, src)
	case proto.EtherTypeIPv4:
		r = f.ipv4(frame)
	case proto.EtherTypeIPv6:
		r = f.ipv6Check(frame)
	default:
		r = L2Proto
	}
	if r != 0 {
		return result(r)
	}
	return f.acl(frame)
}

// acl judges frame by the ACL, then the default.
func (f *Filter) acl(frame []byte) Result {
	k := flow.KeyOf(frame)
	for i := range f.p.Rules {
		if f.p.Rules[i].Match.Matches(&k) {
			res := result(ACLAllow)
			if f.p.Rules[i].Action == Drop {
				res = result(ACLDrop)
			}
			res.Rule = i
			return res
		}
	}
	if f.p.Default == Allow {
		return result(DefaultAllow)
	}
	return result(DefaultDeny)
}

// arpBody returns the ARP (or RARP) body for Ethernet and IPv4, or nil.
func arpBody(frame []byte) []byte {
	b := frame[proto.EthHeaderLen:]
	if len(b) < arpLen || uint64(binary.BigEndian.Uint32(b))<<16|uint64(binary.BigEndian.Uint16(b[4:])) != arpHeaderFix {
		return nil
	}
	return b
}

// arp passes requests and replies whose sender is the guest: its frame's
// source MAC, and one of its IPv4 addresses, or 0.0.0.0 in a request (an
// RFC 5227 probe, which no neighbour learns from).
func (f *Filter) arp(frame []byte, src MAC) Reason {
	b := arpBody(frame)
	if b == nil {
		return Malformed
	}
	op := binary.BigEndian.Uint16(b[arpOpOff:])
	if op != arpRequest && op != arpReply {
		return ARPOpcode
	}
	spa := netip.AddrFrom4([4]byte(b[arpSPAOff:]))
	if MAC(b[arpSHAOff:]) != src || !f.owns4(spa) && !(op == arpRequest && spa.IsUnspecified()) {
		return ARPSender
	}
	return Control
}

// rarp passes exactly QEMU's self-announcement after migration: a
// broadcast RARP request whose sender and target MAC are the frame's
// source and whose addresses are 0.0.0.0.
func rarp(frame []byte, src MAC) Reason {
	b := arpBody(frame)
	switch {
	case len(frame) < proto.EthHeaderLen+arpLen:
		return Malformed
	case b == nil, MAC(frame[0:6]) != MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		binary.BigEndian.Uint16(b[arpOpOff:]) != rarpRequest,
		MAC(b[arpSHAOff:]) != src, MAC(b[arpTHAOff:]) != src,
		binary.BigEndian.Uint32(b[arpSPAOff:]) != 0, binary.BigEndian.Uint32(b[arpTPAOff:]) != 0:
		return RARP
	}
	return Control
}

func (f *Filter) owns4(a netip.Addr) bool { return containsAddr(f.p.IPv4, a) }
func (f *Filter) owns6(a netip.Addr) bool { return containsAddr(f.ipv6, a) }

func containsAddr(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ipPacket is what the IP checks read from a frame.
type ipPacket struct {
	rss.Headers
	upper        int // the upper-layer header's offset, or 0
	src, dst     netip.Addr
	udp          bool // the frame shows UDP ports
	sport, dport uint16
}

// parseIP parses an IP frame of family fam, or returns ok false for a
// malformed one: one the parser rejects, a first IPv6 fragment whose
// header chain does not reach the upper layer (RFC 7112), a first fragment
// whose TCP or UDP header is cut off, an ICMPv6 header shorter than 4
// bytes.
func parseIP(frame []byte, fam uint8) (p ipPacket, ok bool) {
	h, upper := rss.ParseUpperLayer(frame)
	switch {
	case h.Family != fam, !h.HasProto:
		return p, false
	case upper != 0 && (h.Proto == proto.IPProtoTCP || h.Proto == proto.IPProtoUDP) && h.Ports == 0:
		return p, false
	case upper != 0 && fam == 6 && h.Proto == ipProtoICMPv6 && len(frame) < upper+icmp6MinLen:
		return p, false
	}
	n := proto.IPv4AddrLen
	if fam == 6 {
		n = proto.IPv6AddrLen
	}
	p = ipPacket{Headers: h, upper: upper}
	p.src, _ = netip.AddrFromSlice(frame[h.Src : h.Src+n])
	p.dst, _ = netip.AddrFromSlice(frame[h.Dst : h.Dst+n])
	if h.Ports != 0 && h.Transport == proto.IPProtoUDP {
		p.udp = true
		p.sport, p.dport = binary.BigEndian.Uint16(frame[h.Ports:]), binary.BigEndian.Uint16(frame[h.Ports+2:])
	}
	return p, true
}

// udpWhole reports whether p is a whole UDP datagram from port sport to
// port dport.
func (p *ipPacket) udpWhole(sport, dport uint16) bool {
	return p.udp && !p.Fragment && p.sport == sport && p.dport == dport
}

// ipv4 checks the source address, with one exception for a DHCP client
// that has none yet, and drops DHCP server replies. It returns 0 for a
// frame the ACL decides.
func (f *Filter) ipv4(frame []byte) Reason {
	p, ok := parseIP(frame, 4)
	if !ok {
		return Malformed
	}
	dhcpClient := p.udpWhole(dhcpClientPort, dhcpServerPort)
	switch {
	case !f.owns4(p.src):
		if p.src.IsUnspecified() && p.dst == broadcast4 && dhcpClient {
			return Control // DHCPDISCOVER, or DHCPREQUEST before the lease
		}
		return SrcIPv4
	case p.udp && p.sport == dhcpServerPort:
		return DHCPServer
	case dhcpClient:
		return Control
	}
	return 0
}

// ipv6Check checks the source address, with exceptions for a DHCPv6 client
// on any link-local address and for the messages RFC 4861/4862 and MLD
// send from the unspecified address; then drops DHCPv6 server messages,
// router advertisements, redirects, and neighbour advertisements for
// another's address. It returns 0 for a frame the ACL decides.
func (f *Filter) ipv6Check(frame []byte) Reason {
	p, ok := parseIP(frame, 6)
	if !ok {
		return Malformed
	}
	src, upper := p.src, p.upper
	dhcpClient := p.udpWhole(dhcpv6ClientPort, dhcpv6ServerPort) && p.dst == allDHCPv6Servers
	icmp := -1 // the ICMPv6 type, when the frame shows it
	if upper != 0 && p.Proto == ipProtoICMPv6 {
		icmp = int(frame[upper])
	}
	var target netip.Addr // NS and NA
	if icmp == icmp6NS || icmp == icmp6NA {
		if len(frame) < upper+ndMinLen {
			return Malformed
		}
		target = netip.AddrFrom16([16]byte(frame[upper+ndTargetOff:]))
	}
	if !f.owns6(src) {
		switch {
		case dhcpClient && src.IsLinkLocalUnicast():
			return Control // SOLICIT and the rest, from any link-local address (RFC 8415)
		case !src.IsUnspecified() || p.Fragment:
			return SrcIPv6
		case icmp == icmp6NS && !f.owns6(target):
			return NDPTarget // duplicate address detection for another's address
		case icmp == icmp6NS, icmp == icmp6RS, icmp == icmp6MLDReport, icmp == icmp6MLDv2Report:
			return Control // DAD (RFC 4862), RS and MLD reports before an address is ready
		}
		return SrcIPv6
	}
	switch {
	case p.udp && p.sport == dhcpv6ServerPort:
		return DHCPv6Server
	case icmp == icmp6RA:
		return RouterAdvert
	case icmp == icmp6Redirect:
		return Redirect
	case icmp == icmp6NA && !f.owns6(target):
		return NDPTarget
	case p.Fragment:
		return 0 // neighbour discovery is never fragmented (RFC 6980): the ACL decides
	case dhcpClient, icmp == icmp6MLDReport, icmp == icmp6MLDDone, icmp == icmp6MLDv2Report, icmp == icmp6RS, icmp == icmp6NS, icmp == icmp6NA:
		return Control
	}
	return 0
}

// checkIn is Check for an inbound Filter, for a frame of at least an
// Ethernet header.
func (f *Filter) checkIn(frame []byte) Result {
	etype := binary.BigEndian.Uint16(frame[proto.EthTypeOff:])
	if etype == proto.EtherTypeVLAN || etype == proto.EtherTypeQinQ {
		return result(VLAN)
	}
	// Broadcast and multicast (the group bit) are everyone's.
	if dst := MAC(frame[0:6]); dst[0]&1 == 0 && !slices.Contains(f.p.MACs, dst) {
		return result(DstMAC)
	}
	var r Reason
	switch etype {
	case etherTypeARP:
		r = f.arpIn(frame)
	case proto.EtherTypeIPv4:
		r = f.ipv4In(frame)
	case proto.EtherTypeIPv6:
		r = f.ipv6In(frame)
	default:
		r = L2Proto // RARP too: only QEMU's announcement of the guest is known, and that is outbound
	}
	if r != 0 {
		return result(r)
	}
	return f.acl(frame)
}

// arpIn passes requests and replies for one of the guest's IPv4 addresses.
func (f *Filter) arpIn(frame []byte) Reason {
	b := arpBody(frame)
	if b == nil {
		return Malformed
	}
	if op := binary.BigEndian.Uint16(b[arpOpOff:]); op != arpRequest && op != arpReply {
		return ARPOpcode
	}
	if !f.owns4(netip.AddrFrom4([4]byte(b[arpTPAOff:]))) {
		return ARPTarget
	}
	return Control
}

// ipv4In passes a DHCP server's message to the client port whatever its
// destination address (a server unicasts an offer to the address it
// offers, which the policy may not hold yet: RFC 2131, 4.1), then checks
// the destination. It returns 0 for a frame the ACL decides.
func (f *Filter) ipv4In(frame []byte) Reason {
	p, ok := parseIP(frame, 4)
	switch {
	case !ok:
		return Malformed
	case p.udpWhole(dhcpServerPort, dhcpClientPort):
		return Control
	case !f.owns4(p.dst) && p.dst != broadcast4 && !p.dst.IsMulticast():
		return DstIPv4
	}
	return 0
}

// ipv6In checks the destination, then passes neighbour discovery, MLD and
// DHCPv6 server messages to the client port, unless fragmented (RFC 6980).
// It returns 0 for a frame the ACL decides.
func (f *Filter) ipv6In(frame []byte) Reason {
	p, ok := parseIP(frame, 6)
	if !ok {
		return Malformed
	}
	icmp := -1
	if p.upper != 0 && p.Proto == ipProtoICMPv6 {
		icmp = int(frame[p.upper])
	}
	if (icmp == icmp6NS || icmp == icmp6NA) && len(frame) < p.upper+ndMinLen {
		return Malformed // as outbound
	}
	switch {
	case !f.owns6(p.dst) && !p.dst.IsMulticast():
		return DstIPv6
	case p.Fragment:
		return 0
	case p.udpWhole(dhcpv6ServerPort, dhcpv6ClientPort),
		icmp >= icmp6MLDQuery && icmp <= icmp6Redirect, icmp == icmp6MLDv2Report:
		return Control
	}
	return 0
}
