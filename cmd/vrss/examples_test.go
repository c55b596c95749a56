package main

import (
	"bytes"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/vrss-dev/vrss/internal/frame"
	"github.com/vrss-dev/vrss/rss"
	"github.com/vrss-dev/vrss/virtio"
)

// The README's examples read the files in docs/examples. rss.json is
// written by hand; traffic.pcap and rss_config.bin are made by the code
// below, and TestExampleFiles holds the committed bytes to it. After a
// change here, rewrite them with
//
//	go test ./cmd/vrss -run '^TestExampleFiles$' -update-examples
var updateExamples = flag.Bool("update-examples", false, "rewrite docs/examples/traffic.pcap and rss_config.bin")

const examplesDir = "../../docs/examples"

// exampleFrames are the frames of docs/examples/traffic.pcap: one of each
// kind a reader meets first, the TCP and UDP flows of the Microsoft RSS
// verification suite among them.
func exampleFrames() [][]byte {
	a := netip.MustParseAddr
	return [][]byte{
		// The addresses and ports of Microsoft's RSS verification suite, so
		// that the hashes can be checked against its tables: TCP, UDP
		// (the TCP hash's input with UDP), ICMP (addresses only), a
		// non-first fragment (no ports to read: addresses only), and TCP
		// behind an 802.1Q tag.
		frame.Build(frame.Spec{Src: a("66.9.149.187"), Dst: a("161.142.100.80"), Proto: frame.ProtoTCP, SrcPort: 2794, DstPort: 1766}),
		frame.Build(frame.Spec{Src: a("199.92.111.2"), Dst: a("65.69.140.83"), Proto: frame.ProtoUDP, SrcPort: 14230, DstPort: 4739, Payload: 16}),
		frame.Build(frame.Spec{Src: a("24.19.198.95"), Dst: a("12.22.207.184"), Proto: frame.ProtoICMP, Payload: 8}),
		frame.Build(frame.Spec{Src: a("38.27.205.30"), Dst: a("209.142.163.6"), Proto: frame.ProtoUDP, FragOffset: 185, Payload: 16}),
		frame.Build(frame.Spec{VLANs: []uint16{0x8100}, Src: a("153.39.163.191"), Dst: a("202.188.127.2"), Proto: frame.ProtoTCP, SrcPort: 44251, DstPort: 1303}),
		// The suite's IPv6 flows, as TCP and UDP.
		frame.Build(frame.Spec{Src: a("3ffe:2501:200:1fff::7"), Dst: a("3ffe:2501:200:3::1"), Proto: frame.ProtoTCP, SrcPort: 2794, DstPort: 1766}),
		frame.Build(frame.Spec{Src: a("3ffe:501:8::260:97ff:fe40:efab"), Dst: a("ff02::1"), Proto: frame.ProtoUDP, SrcPort: 14230, DstPort: 4739, Payload: 16}),
		// TCPv6 with a Home Address option (tcpv6_ex when tcp_ex is on).
		frame.Build(frame.Spec{Src: a("3ffe:2501:200:1fff::7"), Dst: a("3ffe:2501:200:3::1"), Proto: frame.ProtoTCP, SrcPort: 2794, DstPort: 1766,
			Ext: []frame.ExtHeader{frame.HomeAddressOption(a("2001:db8::9"))}}),
		// ARP: not IP, so unclassified.
		{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0, 0xab, 0xcd, 0xef, 0x08, 0x06,
			0, 1, 8, 0, 6, 4, 0, 1, 0x52, 0x54, 0, 0xab, 0xcd, 0xef, 192, 0, 2, 1, 0, 0, 0, 0, 0, 0, 192, 0, 2, 2},
	}
}

// examplePcap returns traffic.pcap: exampleFrames, one a millisecond.
func examplePcap(t *testing.T) []byte {
	var buf bytes.Buffer
	w := pcapgo.NewWriter(&buf)
	if err := w.WriteFileHeader(65536, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	for i, f := range exampleFrames() {
		ci := gopacket.CaptureInfo{Timestamp: time.Unix(1767225600, int64(i)*1e6).UTC(), CaptureLength: len(f), Length: len(f)}
		if err := w.WritePacket(ci, f); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// exampleVirtio returns rss_config.bin: rss.json's configuration as the
// payload of VIRTIO_NET_CTRL_MQ_RSS_CONFIG a driver with 4 queue pairs
// sends.
func exampleVirtio(t *testing.T) []byte {
	js, err := os.ReadFile(filepath.Join(examplesDir, "rss.json"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := rss.ParseConfigJSON(js)
	if err != nil {
		t.Fatal(err)
	}
	b, err := (&virtio.RSSConfig{Config: cfg, MaxTxVQ: 4}).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The committed example files are what the code above makes, and the two
// configuration files describe the same configuration.
func TestExampleFiles(t *testing.T) {
	for name, want := range map[string][]byte{"traffic.pcap": examplePcap(t), "rss_config.bin": exampleVirtio(t)} {
		p := filepath.Join(examplesDir, name)
		if *updateExamples {
			if err := os.WriteFile(p, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("%v (make it with: go test ./cmd/vrss -run '^TestExampleFiles$' -update-examples)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from what examples_test.go makes: run go test ./cmd/vrss -run '^TestExampleFiles$' -update-examples", p)
		}
	}
	fromJSON, err := loadConfig(filepath.Join(examplesDir, "rss.json"), "")
	if err != nil {
		t.Fatal(err)
	}
	fromVirtio, err := loadConfig("", filepath.Join(examplesDir, "rss_config.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(fromJSON, fromVirtio) {
		t.Errorf("rss.json and rss_config.bin differ:\n%+v\n%+v", fromJSON, fromVirtio)
	}
}
