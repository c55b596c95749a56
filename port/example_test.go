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
