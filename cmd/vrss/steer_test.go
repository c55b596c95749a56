package main

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/internal/frame"
	"github.com/vrss-dev/vrss/rss"
)

// testFrames returns a mix of frames that exercises every report and the
// unclassified queue: the classes by hand, then random TCP and UDP flows.
func testFrames() [][]byte {
	a := netip.MustParseAddr
	v4s, v4d := a("192.0.2.1"), a("198.51.100.7")
	v6s, v6d := a("2001:db8::1"), a("2001:db8:1::2")
	frames := [][]byte{
		frame.Build(frame.Spec{Src: v4s, Dst: v4d, Proto: frame.ProtoTCP, SrcPort: 1000, DstPort: 80}),
		frame.Build(frame.Spec{Src: v4s, Dst: v4d, Proto: frame.ProtoUDP, SrcPort: 53, DstPort: 5353, Payload: 20}),
		frame.Build(frame.Spec{Src: v4s, Dst: v4d, Proto: frame.ProtoICMP, Payload: 8}),
		frame.Build(frame.Spec{Src: v4s, Dst: v4d, Proto: frame.ProtoTCP, SrcPort: 1, DstPort: 2, MoreFrags: true}),
		frame.Build(frame.Spec{VLANs: []uint16{0x8100}, Src: v4d, Dst: v4s, Proto: frame.ProtoTCP, SrcPort: 443, DstPort: 5000}),
		frame.Build(frame.Spec{Src: v6s, Dst: v6d, Proto: frame.ProtoTCP, SrcPort: 1000, DstPort: 80}),
		frame.Build(frame.Spec{Src: v6s, Dst: v6d, Proto: frame.ProtoUDP, SrcPort: 1000, DstPort: 80}),
		frame.Build(frame.Spec{Src: v6s, Dst: v6d, Proto: 58, Payload: 8}),
		frame.Build(frame.Spec{Src: v6s, Dst: v6d, Proto: frame.ProtoTCP, SrcPort: 7, DstPort: 8,
			Ext: []frame.ExtHeader{frame.HomeAddressOption(a("2001:db8:2::3"))}}),
		// ARP: not IP, so unclassified.
		append([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0, 0xab, 0xcd, 0xef, 0x08, 0x06}, make([]byte, 28)...),
		{1, 2, 3}, // a runt
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		s := frame.Spec{Proto: frame.ProtoTCP, SrcPort: uint16(rng.Uint32()), DstPort: uint16(rng.Uint32())}
		if rng.IntN(2) == 0 {
			s.Proto = frame.ProtoUDP
		}
		if rng.IntN(2) == 0 {
			s.Src = netip.AddrFrom4([4]byte{10, byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32())})
			s.Dst = netip.AddrFrom4([4]byte{10, 0, 0, byte(rng.Uint32())})
		} else {
			var x, y [16]byte
			for i := range x {
				x[i], y[i] = byte(rng.Uint32()), byte(rng.Uint32())
			}
			s.Src, s.Dst = netip.AddrFrom16(x), netip.AddrFrom16(y)
		}
		frames = append(frames, frame.Build(s))
	}
	return frames
}

// testConfig leaves udpv6 out (UDPv6 falls back to ipv6) and queue 4 unused
// (the histogram still lists it), with the unclassified queue above the
// table's queues.
var testConfig = rss.Config{
	HashTypes:         rss.HashTCPv4 | rss.HashUDPv4 | rss.HashIPv4 | rss.HashTCPv6 | rss.HashIPv6 | rss.HashTCPEx,
	Key:               []byte("a forty byte key for the steer test!...."),
	Table:             []uint16{0, 1, 2, 3, 3, 2, 1, 0},
	UnclassifiedQueue: 5,
}

func writePcap(t *testing.T, frames [][]byte) string {
	t.Helper()
	var buf bytes.Buffer
	w := pcapgo.NewWriter(&buf)
	if err := w.WriteFileHeader(65536, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	for i, f := range frames {
		ci := gopacket.CaptureInfo{Timestamp: time.Unix(1700000000, int64(i)*1000), CaptureLength: len(f), Length: len(f)}
		if err := w.WritePacket(ci, f); err != nil {
			t.Fatal(err)
		}
	}
	return writeFile(t, "frames.pcap", buf.Bytes())
}

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func writeJSONConfig(t *testing.T, c rss.Config) string {
	t.Helper()
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, "config.json", b)
}

// virtioBytes encodes c as struct virtio_net_rss_config by hand.
func virtioBytes(c rss.Config, maxTxVQ uint16) []byte {
	le := binary.LittleEndian
	b := le.AppendUint32(nil, uint32(c.HashTypes))
	b = le.AppendUint16(b, uint16(len(c.Table)-1))
	b = le.AppendUint16(b, c.UnclassifiedQueue)
	for _, q := range c.Table {
		b = le.AppendUint16(b, q)
	}
	b = le.AppendUint16(b, maxTxVQ)
	b = append(b, byte(len(c.Key)))
	return append(b, c.Key...)
}

// checkSteerText checks the text output line by line against the engine.
func checkSteerText(t *testing.T, out string, c rss.Config, frames [][]byte) {
	t.Helper()
	e, err := rss.New(c)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) < len(frames)+2 {
		t.Fatalf("%d lines of output for %d frames:\n%s", len(lines), len(frames), out)
	}
	hist := make([]int, 6)
	for i, f := range frames {
		r := e.Steer(f)
		hist[r.Queue]++
		want := fmt.Sprintf("%d queue %d hash 0x%08x report %s", i+1, r.Queue, r.Hash, r.Report)
		if lines[i] != want {
			t.Errorf("frame %d: got %q, want %q", i+1, lines[i], want)
		}
	}
	rest := lines[len(frames):]
	if rest[0] != "" || rest[1] != fmt.Sprintf("queue histogram, %d frames:", len(frames)) {
		t.Fatalf("histogram header: got %q", rest[:2])
	}
	rest = rest[2:]
	if len(rest) != len(hist) {
		t.Fatalf("histogram has %d lines, want one for each of queues 0 to %d:\n%s", len(rest), len(hist)-1, strings.Join(rest, "\n"))
	}
	total := 0
	for q, line := range rest {
		f := strings.Fields(line)
		if len(f) < 4 || f[0] != "queue" || f[1] != strconv.Itoa(q) {
			t.Fatalf("histogram line %q", line)
		}
		n, _ := strconv.Atoi(f[2])
		total += n
		if n != hist[q] {
			t.Errorf("queue %d: %d frames, want %d", q, n, hist[q])
		}
		if want := fmt.Sprintf("%.1f%%", 100*float64(n)/float64(len(frames))); f[3] != want {
			t.Errorf("queue %d: %s, want %s", q, f[3], want)
		}
		bars := 0
		if len(f) == 5 {
			bars = strings.Count(f[4], "#")
		}
		if (bars > 0) != (n > 0) || bars > 50 {
			t.Errorf("queue %d: %d frames but %d '#'", q, n, bars)
		}
	}
	if total != len(frames) {
		t.Errorf("histogram total %d, want %d", total, len(frames))
	}
	if hist[4] != 0 || hist[5] == 0 {
		t.Errorf("test frames do not cover the unused and unclassified queues: %v", hist)
	}
}

func TestSteerJSONConfig(t *testing.T) {
	frames := testFrames()
	pcap := writePcap(t, frames)
	code, out, errOut := vrss(t, "steer", "--config", writeJSONConfig(t, testConfig), "--pcap", pcap)
	if code != 0 || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	checkSteerText(t, out, testConfig, frames)
}

func TestSteerVirtioConfig(t *testing.T) {
	frames := testFrames()
	cfg := writeFile(t, "rss_config.bin", virtioBytes(testConfig, 4))
	code, out, errOut := vrss(t, "steer", "--pcap", writePcap(t, frames), "--virtio", cfg)
	if code != 0 || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	checkSteerText(t, out, testConfig, frames)
}

// pcapng and gzip-compressed captures are recognised by their magic.
func TestSteerCaptureFormats(t *testing.T) {
	frames := testFrames()
	cfg := writeJSONConfig(t, testConfig)

	var ng bytes.Buffer
	w, err := pcapgo.NewNgWriter(&ng, layers.LinkTypeEthernet)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range frames {
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: time.Unix(1, 0), CaptureLength: len(f), Length: len(f)}, f); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	pcapData, err := os.ReadFile(writePcap(t, frames))
	if err != nil {
		t.Fatal(err)
	}
	gz := func(b []byte) []byte {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write(b)
		zw.Close()
		return buf.Bytes()
	}
	for name, data := range map[string][]byte{
		"frames.pcapng":    ng.Bytes(),
		"frames.pcap.gz":   gz(pcapData),
		"frames.pcapng.gz": gz(ng.Bytes()),
	} {
		code, out, errOut := vrss(t, "steer", "--config", cfg, "--pcap", writeFile(t, name, data))
		if code != 0 || errOut != "" {
			t.Fatalf("%s: exit %d, stderr %q", name, code, errOut)
		}
		checkSteerText(t, out, testConfig, frames)
	}
}

func TestSteerJSONOutput(t *testing.T) {
	frames := testFrames()
	code, out, errOut := vrss(t, "steer", "--json", "--config", writeJSONConfig(t, testConfig), "--pcap", writePcap(t, frames))
	if code != 0 || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	var got struct {
		Frames []struct {
			Index  int    `json:"index"`
			Queue  uint16 `json:"queue"`
			Hash   string `json:"hash"`
			Report string `json:"report"`
		} `json:"frames"`
		Histogram []int `json:"histogram"`
		Total     int   `json:"total"`
	}
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("%v in %s", err, out)
	}
	if dec.More() {
		t.Fatal("more than one JSON value")
	}
	e, _ := rss.New(testConfig)
	hist := make([]int, 6)
	if len(got.Frames) != len(frames) || got.Total != len(frames) {
		t.Fatalf("%d frames, total %d, want %d", len(got.Frames), got.Total, len(frames))
	}
	for i, f := range frames {
		r := e.Steer(f)
		hist[r.Queue]++
		g := got.Frames[i]
		if g.Index != i+1 || g.Queue != r.Queue || g.Hash != fmt.Sprintf("0x%08x", r.Hash) || g.Report != r.Report.String() {
			t.Errorf("frame %d: got %+v, want %+v", i+1, g, r)
		}
	}
	if fmt.Sprint(got.Histogram) != fmt.Sprint(hist) {
		t.Errorf("histogram %v, want %v", got.Histogram, hist)
	}
}

// An empty capture is valid: no frame lines, every queue at 0.
func TestSteerEmptyCapture(t *testing.T) {
	cfg := writeJSONConfig(t, rss.Config{HashTypes: rss.AllHashTypes, Key: rss.DefaultKey, Table: []uint16{0, 1}})
	code, out, errOut := vrss(t, "steer", "--config", cfg, "--pcap", writePcap(t, nil))
	want := "\nqueue histogram, 0 frames:\nqueue 0 0   0.0%\nqueue 1 0   0.0%\n"
	if code != 0 || errOut != "" || out != want {
		t.Fatalf("exit %d, stderr %q, stdout %q, want %q", code, errOut, out, want)
	}
	code, out, _ = vrss(t, "steer", "--json", "--config", cfg, "--pcap", writePcap(t, nil))
	if want := `{"frames":[],"histogram":[0,0],"total":0}` + "\n"; code != 0 || out != want {
		t.Fatalf("--json: exit %d, stdout %q, want %q", code, out, want)
	}
}

func TestSteerErrors(t *testing.T) {
	frames := testFrames()
	pcap := writePcap(t, frames)
	cfg := writeJSONConfig(t, testConfig)
	pcapData, _ := os.ReadFile(pcap)

	var raw bytes.Buffer // a capture of raw IP packets, not Ethernet
	w := pcapgo.NewWriter(&raw)
	w.WriteFileHeader(65536, layers.LinkTypeRaw)
	w.WritePacket(gopacket.CaptureInfo{CaptureLength: 20, Length: 20}, make([]byte, 20))

	missing := filepath.Join(t.TempDir(), "missing")
	wantInputError(t, "no such file", "steer", "--config", cfg, "--pcap", missing)
	wantInputError(t, "not a valid pcap", "steer", "--config", cfg, "--pcap", writeFile(t, "garbage.pcap", []byte("this is not a capture file at all")))
	wantInputError(t, "empty", "steer", "--config", cfg, "--pcap", writeFile(t, "empty.pcap", nil))
	wantInputError(t, "truncated", "steer", "--config", cfg, "--pcap", writeFile(t, "cut.pcap", pcapData[:len(pcapData)-5]))
	wantInputError(t, "only Ethernet", "steer", "--config", cfg, "--pcap", writeFile(t, "raw.pcap", raw.Bytes()))
	wantInputError(t, "no such file", "steer", "--config", missing, "--pcap", pcap)
	wantInputError(t, "no such file", "steer", "--virtio", missing, "--pcap", pcap)
	wantInputError(t, "unknown field", "steer", "--config", writeFile(t, "bad.json", []byte(`{"hash_types":"all","queues":2,"x":1}`)), "--pcap", pcap)
	wantInputError(t, "bad indirection table length", "steer", "--config", writeFile(t, "bad.json", []byte(`{"hash_types":"all","indirection_table":[0,1,2]}`)), "--pcap", pcap)
	vb := virtioBytes(testConfig, 4)
	wantInputError(t, "rss_config.bin", "steer", "--virtio", writeFile(t, "rss_config.bin", vb[:len(vb)-1]), "--pcap", pcap)
	wantInputError(t, "rss_config.bin", "steer", "--virtio", writeFile(t, "rss_config.bin", virtioBytes(testConfig, 0)), "--pcap", pcap)
	wantInputError(t, "not both", "steer", "--config", cfg, "--virtio", cfg, "--pcap", pcap)
	wantInputError(t, "--config or --virtio is required", "steer", "--pcap", pcap)
	wantInputError(t, "--pcap is required", "steer", "--config", cfg)
	wantInputError(t, `unexpected argument "x"`, "steer", "--config", cfg, "x", "--pcap", pcap)
}

// A JSON configuration with "queues": N names its queues: an unclassified
// queue outside them is refused, not steered to (issue 9, defect 10), and
// a number beyond a queue's 16 bits is refused, not truncated.
func TestSteerConfigQueueRange(t *testing.T) {
	pcap := writePcap(t, testFrames())
	cfg := func(s string) string { return writeFile(t, "rss.json", []byte(s)) }
	wantInputError(t, "unclassified_queue is 9, want 0 to 3 (queues is 4)", "steer", "--config", cfg(`{"hash_types":"all","queues":4,"unclassified_queue":9}`), "--pcap", pcap)
	wantInputError(t, "queue out of range", "steer", "--config", cfg(`{"hash_types":"all","queues":4,"unclassified_queue":4}`), "--pcap", pcap)
	wantInputError(t, "unclassified_queue", "steer", "--config", cfg(`{"hash_types":"all","queues":4,"unclassified_queue":65540}`), "--pcap", pcap)
	wantInputError(t, "indirection_table", "steer", "--config", cfg(`{"hash_types":"all","indirection_table":[65536]}`), "--pcap", pcap)
	wantInputError(t, "queues is 65537", "steer", "--config", cfg(`{"hash_types":"all","queues":65537}`), "--pcap", pcap)
	// The last of the N queues is fine: the histogram has N lines.
	code, out, errOut := vrss(t, "steer", "--config", cfg(`{"hash_types":"none","queues":4,"unclassified_queue":3}`), "--pcap", pcap, "--json")
	var res steerJSON
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || len(res.Histogram) != 4 || res.Histogram[3] != res.Total {
		t.Errorf("unclassified queue 3 of 4: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// What 'vrss rss show --json' prints (api.RSSState) is a configuration
// file steer reads: one JSON shape for a configuration.
func TestSteerAcceptsRSSShow(t *testing.T) {
	pcap := writePcap(t, testFrames())
	cfg := rss.Config{HashTypes: rss.AllHashTypes, Key: rss.DefaultKey, Table: rss.WeightedTable(128, []int{5, 3, 1, 1}), UnclassifiedQueue: 3}
	bare, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	shown, err := json.MarshalIndent(api.RSSState{Name: "vm0", Config: &cfg, Generation: 7, HashReport: &api.HashReport{HashTypes: rss.HashTCPv4, Key: []byte{1}}}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	c1, out1, e1 := vrss(t, "steer", "--config", writeFile(t, "bare.json", bare), "--pcap", pcap)
	c2, out2, e2 := vrss(t, "steer", "--config", writeFile(t, "shown.json", shown), "--pcap", pcap)
	if c1 != 0 || c2 != 0 || out1 != out2 || out1 == "" {
		t.Fatalf("bare: exit %d %q %q; rss show output: exit %d %q %q", c1, out1, e1, c2, out2, e2)
	}
	wantInputError(t, "no configuration was published", "steer", "--config", writeFile(t, "none.json", []byte(`{"name":"vm0","generation":0,"config":null}`)), "--pcap", pcap)
	wantInputError(t, "unknown field", "steer", "--config", writeFile(t, "odd.json", []byte(`{"name":"vm0","config":{"hash_types":"all","queues":2},"extra":1}`)), "--pcap", pcap)
}
