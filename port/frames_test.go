package port

import (
	"net"
	"net/netip"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Frames for the tests, built with gopacket: what a guest with MAC
// guestMAC and addresses guest4, guest6 (and guestLL, its EUI-64
// link-local address) sends, and what it must not.

var (
	guestMAC = MAC{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}
	otherMAC = MAC{0x52, 0x54, 0x00, 0x65, 0x43, 0x21}
	gwMAC    = MAC{0x02, 0x00, 0x00, 0x00, 0x00, 0x01}
	bcastMAC = MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

	guest4  = "192.0.2.10"
	net4    = "198.51.100.7" // in the guest's 198.51.100.0/24
	other4  = "192.0.2.99"
	gw4     = "192.0.2.1"
	guest6  = "2001:db8::10"
	other6  = "2001:db8::99"
	gw6     = "2001:db8::1"
	guestLL = "fe80::5054:ff:fe12:3456" // guestMAC.LinkLocal()
	otherLL = "fe80::1"
)

func hw(m MAC) net.HardwareAddr { return net.HardwareAddr(m[:]) }

func ip(s string) net.IP { return netip.MustParseAddr(s).AsSlice() }

// serialize builds a frame of ls with lengths and checksums fixed.
func serialize(ls ...gopacket.SerializableLayer) []byte {
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		panic(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func ether(src, dst MAC, t layers.EthernetType) *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: hw(src), DstMAC: hw(dst), EthernetType: t}
}

// v4 is an IPv4 frame from MAC src; frag sets the fragment offset (in 8
// bytes) and more-fragments.
type v4 struct {
	mac       MAC
	src, dst  string
	proto     layers.IPProtocol
	sp, dp    int
	fragOff   uint16
	moreFrags bool
	opts      bool // 4 bytes of IPv4 options
	payload   int
}

// transport is a UDP or TCP header from port sp to dp over network header
// h, or nothing for another protocol.
func transport(h gopacket.NetworkLayer, p layers.IPProtocol, sp, dp int) []gopacket.SerializableLayer {
	switch p {
	case layers.IPProtocolUDP:
		u := &layers.UDP{SrcPort: layers.UDPPort(sp), DstPort: layers.UDPPort(dp)}
		u.SetNetworkLayerForChecksum(h)
		return []gopacket.SerializableLayer{u}
	case layers.IPProtocolTCP:
		t := &layers.TCP{SrcPort: layers.TCPPort(sp), DstPort: layers.TCPPort(dp), SYN: true, Window: 1024}
		t.SetNetworkLayerForChecksum(h)
		return []gopacket.SerializableLayer{t}
	}
	return nil
}

func (s v4) build() []byte {
	mac := s.mac
	if mac == (MAC{}) {
		mac = guestMAC
	}
	h := &layers.IPv4{Version: 4, TTL: 64, Protocol: s.proto, SrcIP: ip(s.src), DstIP: ip(s.dst), FragOffset: s.fragOff}
	if s.moreFrags {
		h.Flags = layers.IPv4MoreFragments
	}
	if s.opts {
		h.Options = []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}}
	}
	ls := []gopacket.SerializableLayer{ether(mac, gwMAC, layers.EthernetTypeIPv4), h}
	ls = append(ls, transport(h, s.proto, s.sp, s.dp)...)
	if s.proto == layers.IPProtocolICMPv4 {
		ls = append(ls, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0)})
	}
	return serialize(append(ls, gopacket.Payload(make([]byte, s.payload)))...)
}

// v6 is an IPv6 frame from guestMAC: ext are extension headers (hbh,
// dstopts, fragment) before the upper layer, which is UDP or TCP with
// ports, or ICMPv6 message icmp.
type v6 struct {
	src, dst string
	ext      []layers.IPProtocol
	frag     *layers.IPv6Fragment
	proto    layers.IPProtocol
	sp, dp   int
	icmp     uint8
	target   string // NS, NA, redirect
	payload  int
}

func (s v6) build() []byte {
	h := &layers.IPv6{Version: 6, HopLimit: 255, SrcIP: ip(s.src), DstIP: ip(s.dst)}
	ls := []gopacket.SerializableLayer{ether(guestMAC, gwMAC, layers.EthernetTypeIPv6), h}
	prev := &h.NextHeader
	for _, t := range s.ext {
		*prev = t
		switch t {
		case layers.IPProtocolIPv6HopByHop:
			e := &layers.IPv6HopByHop{Options: []*layers.IPv6HopByHopOption{{OptionType: 1, OptionLength: 4, OptionData: make([]byte, 4)}}}
			ls, prev = append(ls, e), &e.NextHeader
		case layers.IPProtocolIPv6Destination:
			e := &layers.IPv6Destination{Options: []*layers.IPv6DestinationOption{{OptionType: 1, OptionLength: 4, OptionData: make([]byte, 4)}}}
			ls, prev = append(ls, e), &e.NextHeader
		case layers.IPProtocolIPv6Fragment:
			e := *s.frag
			ls, prev = append(ls, &e), &e.NextHeader
		}
	}
	*prev = s.proto
	ls = append(ls, transport(h, s.proto, s.sp, s.dp)...)
	if s.proto == layers.IPProtocolICMPv6 {
		c := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(s.icmp, 0)}
		c.SetNetworkLayerForChecksum(h)
		ls = append(ls, c)
		switch s.icmp {
		case layers.ICMPv6TypeNeighborSolicitation:
			ls = append(ls, &layers.ICMPv6NeighborSolicitation{TargetAddress: ip(s.target)})
		case layers.ICMPv6TypeNeighborAdvertisement:
			ls = append(ls, &layers.ICMPv6NeighborAdvertisement{Flags: 0x20, TargetAddress: ip(s.target),
				Options: layers.ICMPv6Options{{Type: layers.ICMPv6OptTargetAddress, Data: hw(guestMAC)}}})
		case layers.ICMPv6TypeRouterAdvertisement:
			ls = append(ls, &layers.ICMPv6RouterAdvertisement{HopLimit: 64, RouterLifetime: 1800})
		case layers.ICMPv6TypeRouterSolicitation:
			ls = append(ls, &layers.ICMPv6RouterSolicitation{})
		case layers.ICMPv6TypeRedirect:
			ls = append(ls, &layers.ICMPv6Redirect{TargetAddress: ip(s.target), DestinationAddress: ip(other6)})
		case layers.ICMPv6TypeEchoRequest:
			ls = append(ls, &layers.ICMPv6Echo{Identifier: 1, SeqNumber: 1})
		default: // MLD reports: a record count of zero
			ls = append(ls, gopacket.Payload(make([]byte, 4)))
		}
	}
	return serialize(append(ls, gopacket.Payload(make([]byte, s.payload)))...)
}

// arpFrame is an ARP (or, with ethertype 0x8035, RARP) frame from the
// guest's MAC to dst.
type arpFrame struct {
	etype    layers.EthernetType
	dst      MAC
	op       uint16
	sha, tha MAC
	spa, tpa string
	htype    layers.LinkType
}

func (a arpFrame) build() []byte {
	if a.etype == 0 {
		a.etype = layers.EthernetTypeARP
	}
	if a.dst == (MAC{}) {
		a.dst = bcastMAC
	}
	if a.htype == 0 {
		a.htype = layers.LinkTypeEthernet
	}
	return serialize(ether(guestMAC, a.dst, a.etype), &layers.ARP{
		AddrType: a.htype, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4, Operation: a.op,
		SourceHwAddress: hw(a.sha), SourceProtAddress: ip(a.spa), DstHwAddress: hw(a.tha), DstProtAddress: ip(a.tpa),
	})
}

// qemuAnnounce is the RARP frame QEMU sends for the guest after migration.
func qemuAnnounce() arpFrame {
	return arpFrame{etype: 0x8035, op: 3, sha: guestMAC, tha: guestMAC, spa: "0.0.0.0", tpa: "0.0.0.0"}
}
