package port_test

import (
	"fmt"
	"net/netip"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/vrss-dev/vrss/flow"
	"github.com/vrss-dev/vrss/port"
)

// A guest with one MAC and one IPv4 address, which may reach TCP port 443
// and nothing else; everything it claims about itself is checked first.
func Example() {
	mac, _ := port.ParseMAC("52:54:00:12:34:56")
	var https flow.Match
	https.SetEtherType(0x0800, 0xffff)
	https.SetProto(6, 0xff)
	https.SetDstPort(443, 0xffff)
	_ = https.Normalize()
	f, err := port.New(port.Policy{
		MACs:    []port.MAC{mac},
		IPv4:    []netip.Prefix{netip.MustParsePrefix("192.0.2.10/32")},
		Rules:   []port.Rule{{Match: https, Action: port.Allow}},
		Default: port.Drop,
	})
	if err != nil {
		panic(err)
	}
	tcp := func(src string, dport layers.TCPPort) []byte {
		eth := &layers.Ethernet{SrcMAC: mac[:], DstMAC: []byte{2, 0, 0, 0, 0, 1}, EthernetType: layers.EthernetTypeIPv4}
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: netip.MustParseAddr(src).AsSlice(), DstIP: []byte{203, 0, 113, 1}}
		t := &layers.TCP{SrcPort: 40000, DstPort: dport, SYN: true}
		_ = t.SetNetworkLayerForChecksum(ip)
		buf := gopacket.NewSerializeBuffer()
		_ = gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, t)
		return buf.Bytes()
	}
	var c port.Counters
	for _, frame := range [][]byte{tcp("192.0.2.10", 443), tcp("192.0.2.10", 25), tcp("192.0.2.66", 443)} {
		r := f.Check(frame)
		c.Add(r)
		fmt.Println(r.Verdict, r.Reason, r.Rule)
	}
	fmt.Println("passed", c.Passed(), "dropped", c.Dropped(), "by rule 0:", c.Rules[0])
	// Output:
	// pass acl_allow 0
	// drop default_deny -1
	// drop src_ipv4 -1
	// passed 1 dropped 2 by rule 0: 1
}

// The same policy on an AF_XDP port, judged inbound: what may reach the
// guest. HTTPS to its address passes by the rule, a frame to another
// address or another MAC is dropped for it, and an ARP request for its
// address passes the checks (control), whatever the default.
func ExampleNewInbound() {
	mac, _ := port.ParseMAC("52:54:00:12:34:56")
	var https flow.Match
	https.SetEtherType(0x0800, 0xffff)
	https.SetProto(6, 0xff)
	https.SetDstPort(443, 0xffff)
	_ = https.Normalize()
	f, err := port.NewInbound(port.Policy{
		MACs:    []port.MAC{mac},
		IPv4:    []netip.Prefix{netip.MustParsePrefix("192.0.2.10/32")},
		Rules:   []port.Rule{{Match: https, Action: port.Allow}},
		Default: port.Drop,
	})
	if err != nil {
		panic(err)
	}
	router := []byte{2, 0, 0, 0, 0, 1}
	serialize := func(ls ...gopacket.SerializableLayer) []byte {
		buf := gopacket.NewSerializeBuffer()
		_ = gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...)
		return buf.Bytes()
	}
	tcp := func(dstMAC []byte, dst string, dport layers.TCPPort) []byte {
		eth := &layers.Ethernet{SrcMAC: router, DstMAC: dstMAC, EthernetType: layers.EthernetTypeIPv4}
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: []byte{203, 0, 113, 1}, DstIP: netip.MustParseAddr(dst).AsSlice()}
		t := &layers.TCP{SrcPort: 40000, DstPort: dport, SYN: true}
		_ = t.SetNetworkLayerForChecksum(ip)
		return serialize(eth, ip, t)
	}
	arp := serialize(&layers.Ethernet{SrcMAC: router, DstMAC: []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, EthernetType: layers.EthernetTypeARP},
		&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4, Operation: 1,
			SourceHwAddress: router, SourceProtAddress: []byte{192, 0, 2, 1}, DstHwAddress: make([]byte, 6), DstProtAddress: []byte{192, 0, 2, 10}})
	for _, frame := range [][]byte{tcp(mac[:], "192.0.2.10", 443), tcp(mac[:], "192.0.2.66", 443), tcp(router, "192.0.2.10", 443), arp} {
		r := f.Check(frame)
		fmt.Println(r.Verdict, r.Reason, r.Rule)
	}
	// Output:
	// pass acl_allow 0
	// drop dst_ipv4 -1
	// drop dst_mac -1
	// pass control -1
}
