package e2e

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/vrss-dev/vrss/internal/frame"
	"github.com/vrss-dev/vrss/rss"
	"github.com/vrss-dev/vrss/steering"
)

// cpioEntry is an entry read back from a newc archive.
type cpioEntry struct {
	name                    string
	mode, nlink, rmaj, rmin uint32
	data                    string
}

// readNewc parses a newc archive up to its trailer.
func readNewc(t *testing.T, b []byte) []cpioEntry {
	t.Helper()
	var out []cpioEntry
	off := 0
	align := func() { off = (off + 3) &^ 3 }
	for {
		if off+110 > len(b) || string(b[off:off+6]) != "070701" {
			t.Fatalf("bad header at %d", off)
		}
		f := make([]uint32, 13)
		for i := range f {
			v, err := strconv.ParseUint(string(b[off+6+8*i:off+14+8*i]), 16, 32)
			if err != nil {
				t.Fatal(err)
			}
			f[i] = uint32(v)
		}
		off += 110
		name := string(b[off : off+int(f[11])-1])
		if b[off+int(f[11])-1] != 0 {
			t.Fatalf("%s: name not NUL-terminated", name)
		}
		off += int(f[11])
		align()
		data := string(b[off : off+int(f[6])])
		off += int(f[6])
		align()
		if name == "TRAILER!!!" {
			if off != len(b) {
				t.Fatalf("%d bytes after the trailer", len(b)-off)
			}
			return out
		}
		out = append(out, cpioEntry{name: name, mode: f[1], nlink: f[4], rmaj: f[9], rmin: f[10], data: data})
	}
}

func TestArchiveNewc(t *testing.T) {
	a := NewArchive()
	a.File("/sbin/ethtool", []byte("elf!"), 0o755)
	a.Symlink("bin/sh", "busybox")
	a.CharDev("dev/console", 5, 1)
	a.File("init", []byte("#!/bin/sh\n"), 0o755)
	a.Dir("proc")
	var buf bytes.Buffer
	n, err := a.WriteTo(&buf)
	if err != nil || n != int64(buf.Len()) || n%4 != 0 {
		t.Fatalf("WriteTo = %d, %v (buffer %d)", n, err, buf.Len())
	}
	got := readNewc(t, buf.Bytes())
	var names []string
	byName := map[string]cpioEntry{}
	for _, e := range got {
		names = append(names, e.name)
		byName[e.name] = e
	}
	// Parents first, implicitly created, sorted.
	want := []string{"bin", "bin/sh", "dev", "dev/console", "init", "proc", "sbin", "sbin/ethtool"}
	if !slices.Equal(names, want) {
		t.Fatalf("entries %v, want %v", names, want)
	}
	check := func(name string, mode uint32, data string) {
		t.Helper()
		e := byName[name]
		if e.mode != mode || e.data != data {
			t.Errorf("%s: mode %o data %q, want %o %q", name, e.mode, e.data, mode, data)
		}
	}
	check("sbin/ethtool", 0o100755, "elf!")
	check("bin/sh", 0o120777, "busybox")
	check("dev", 0o040755, "")
	check("init", 0o100755, "#!/bin/sh\n")
	if c := byName["dev/console"]; c.mode != 0o020600 || c.rmaj != 5 || c.rmin != 1 {
		t.Errorf("dev/console: %+v", c)
	}
	if !a.Has("/dev/console") || a.Has("nothing") {
		t.Error("Has")
	}

	// Where the host has GNU or busybox cpio, it must agree.
	if cpio, err := exec.LookPath("cpio"); err == nil {
		cmd := exec.Command(cpio, "-t")
		cmd.Stdin = bytes.NewReader(buf.Bytes())
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("cpio -t: %v", err)
		}
		if l := strings.Fields(string(out)); !slices.Equal(l, want) {
			t.Errorf("cpio -t lists %v", l)
		}
	}
}

func TestParseLdd(t *testing.T) {
	out := `	linux-vdso.so.1 (0x00007ffd)
	libm.so.6 => /lib/x86_64-linux-gnu/libm.so.6 (0x00007f79)
	libmnl.so.0 => /lib/x86_64-linux-gnu/libmnl.so.0 (0x00007f79)
	libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f79)
	/lib64/ld-linux-x86-64.so.2 (0x00007f79)
`
	got, err := parseLdd(out)
	want := []string{"/lib/x86_64-linux-gnu/libm.so.6", "/lib/x86_64-linux-gnu/libmnl.so.0", "/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("parseLdd = %v, %v", got, err)
	}
	if _, err := parseLdd("\tlibfoo.so.1 => not found\n"); err == nil {
		t.Error("a missing library was not reported")
	}
}

func TestOrderModules(t *testing.T) {
	deps := map[string][]string{
		"virtio_net":            {"virtio_ring", "virtio", "net_failover"},
		"net_failover":          {"failover"},
		"failover":              nil,
		"virtio":                nil,
		"virtio_ring":           nil,
		"virtio_pci":            {"virtio_ring", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio"},
		"virtio_pci_modern_dev": nil,
	}
	builtin := map[string]bool{"virtio_pci_legacy_dev": true}
	load := func(n string) (module, error) {
		d, ok := deps[n]
		if !ok {
			return module{}, fmt.Errorf("no %s", n)
		}
		return module{name: n, deps: d}, nil
	}
	mods, err := orderModules([]string{"virtio-pci", "virtio_net"}, builtin, load)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range mods {
		got = append(got, m.name)
	}
	want := []string{"virtio_ring", "virtio_pci_modern_dev", "virtio", "virtio_pci", "failover", "net_failover", "virtio_net"}
	if !slices.Equal(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
	deps["failover"] = []string{"virtio_net"}
	if _, err := orderModules([]string{"virtio_net"}, nil, load); err == nil {
		t.Error("a dependency cycle was not reported")
	}
	if _, err := orderModules([]string{"nope"}, nil, load); err == nil {
		t.Error("a missing module was not reported")
	}
}

func TestModuleName(t *testing.T) {
	for in, want := range map[string]string{"virtio_net.ko": "virtio_net", "net-failover.ko.xz": "net_failover", "a.ko.zst": "a", "b.ko.gz": "b"} {
		if got, ok := moduleName(in); !ok || got != want {
			t.Errorf("moduleName(%q) = %q, %v", in, got, ok)
		}
	}
	if _, ok := moduleName("modules.dep"); ok {
		t.Error("modules.dep is not a module")
	}
}

// TestModuleDeps reads .modinfo from a minimal ELF object built here.
func TestModuleDeps(t *testing.T) {
	ko := minimalELF(".modinfo", []byte("license=GPL\x00depends=virtio_ring,virtio\x00name=virtio_pci\x00"))
	got, err := moduleDeps(ko)
	if err != nil || !slices.Equal(got, []string{"virtio_ring", "virtio"}) {
		t.Fatalf("moduleDeps = %v, %v", got, err)
	}
	got, err = moduleDeps(minimalELF(".modinfo", []byte("depends=\x00")))
	if err != nil || got != nil {
		t.Fatalf("empty depends = %v, %v", got, err)
	}
}

// minimalELF returns a 64-bit little-endian relocatable ELF file with one
// named section besides the null section and the section name table.
func minimalELF(name string, data []byte) []byte {
	shstr := append([]byte("\x00"+name+"\x00.shstrtab\x00"), 0)
	var b bytes.Buffer
	hdr := make([]byte, 64)
	copy(hdr, "\x7fELF\x02\x01\x01")
	binary.LittleEndian.PutUint16(hdr[16:], 1)  // ET_REL
	binary.LittleEndian.PutUint16(hdr[18:], 62) // x86-64
	binary.LittleEndian.PutUint32(hdr[20:], 1)
	dataOff := 64
	strOff := dataOff + len(data)
	shOff := (strOff + len(shstr) + 7) &^ 7
	binary.LittleEndian.PutUint64(hdr[40:], uint64(shOff))
	binary.LittleEndian.PutUint16(hdr[52:], 64)
	binary.LittleEndian.PutUint16(hdr[58:], 64)
	binary.LittleEndian.PutUint16(hdr[60:], 3)
	binary.LittleEndian.PutUint16(hdr[62:], 2)
	b.Write(hdr)
	b.Write(data)
	b.Write(shstr)
	for b.Len() < shOff {
		b.WriteByte(0)
	}
	sh := func(nameOff, typ uint32, off, size int) {
		s := make([]byte, 64)
		binary.LittleEndian.PutUint32(s[0:], nameOff)
		binary.LittleEndian.PutUint32(s[4:], typ)
		binary.LittleEndian.PutUint64(s[24:], uint64(off))
		binary.LittleEndian.PutUint64(s[32:], uint64(size))
		binary.LittleEndian.PutUint64(s[48:], 1)
		b.Write(s)
	}
	sh(0, 0, 0, 0)
	sh(1, 1, dataOff, len(data))                   // SHT_PROGBITS
	sh(uint32(2+len(name)), 3, strOff, len(shstr)) // SHT_STRTAB
	return b.Bytes()
}

func TestMachineArgs(t *testing.T) {
	m := Machine{Kernel: "/k", Initrd: "/i", Queues: 4, TapFDs: []int{3, 4, 5, 6}}
	args, err := m.Args()
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Join(args, " ")
	for _, want := range []string{
		"-accel tcg", "-smp 2", "-m 256", "-nodefaults", "-no-reboot",
		"-netdev tap,id=n0,fds=3:4:5:6,vhost=off",
		"-device virtio-net-pci,netdev=n0,mq=on,vectors=10,mac=52:54:00:12:34:56,romfile=",
		"-append console=ttyS0 panic=-1 quiet",
	} {
		if !strings.Contains(line, want) {
			t.Errorf("%q missing from %s", want, line)
		}
	}
	if strings.Contains(line, "rss=") {
		t.Errorf("rss offered by default: %s", line)
	}
	// Scenario B's shape: the guest configures RSS, QEMU steers with a
	// program and maps it was handed.
	m.RSS, m.HashReport, m.EBPFRSSFDs, m.QMP = true, true, []int{7, 8, 9, 10}, "/run/q.sock"
	args, err = m.Args()
	if err != nil {
		t.Fatal(err)
	}
	line = strings.Join(args, " ")
	// ebpf-rss-fds is an array property: QEMU takes it only in the JSON
	// form of -device.
	for _, want := range []string{
		`-device {"driver":"virtio-net-pci","netdev":"n0","mq":true,"vectors":10,"mac":"52:54:00:12:34:56","romfile":"","hash":true,"rss":true,"ebpf-rss-fds":["7","8","9","10"]}`,
		"-qmp unix:/run/q.sock,server=on,wait=off",
	} {
		if !strings.Contains(line, want) {
			t.Errorf("%q missing from %s", want, line)
		}
	}
	// Software or QEMU-loaded RSS: the key=value form.
	m.EBPFRSSFDs = nil
	if args, err = m.Args(); err != nil || !strings.Contains(strings.Join(args, " "), ",romfile=,rss=on,hash=on") {
		t.Errorf("rss without ebpf-rss-fds: %q, %v", args, err)
	}
	// A wrapper adds the network device.
	m.ExternalNet, m.TapFDs, m.Queues = true, nil, 0
	if args, err = m.Args(); err != nil || strings.Contains(strings.Join(args, " "), "-netdev") {
		t.Errorf("external net: %q, %v", args, err)
	}
	if _, err := (Machine{Queues: 2, TapFDs: []int{3, 4}, RSS: true, EBPFRSSFDs: []int{6, 7, 8, 9}}).Args(); err == nil {
		t.Error("ebpf-rss-fds not right after the TAP fds accepted")
	}
	if _, err := (Machine{Queues: 4, TapFDs: []int{3}}).Args(); err == nil {
		t.Error("fd count mismatch accepted")
	}
	if _, err := (Machine{Queues: 1, TapFDs: []int{3}, EBPFRSSFDs: []int{4}}).Args(); err == nil {
		t.Error("ebpf-rss-fds without rss=on accepted")
	}
}

func TestParseQEMUVersion(t *testing.T) {
	v, major, minor, err := parseQEMUVersion("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright ...")
	if err != nil || v != "7.2.22" || major != 7 || minor != 2 {
		t.Fatalf("= %q %d %d %v", v, major, minor, err)
	}
	if _, _, _, err := parseQEMUVersion("nothing"); err == nil {
		t.Error("no error")
	}
}

func TestParseEthtool(t *testing.T) {
	stats := `NIC statistics:
     rx_queue_0_packets: 634
     rx_queue_0_bytes: 50720
     rx_queue_1_packets: 12
     rx_queue_2_packets: 0
     rx_queue_3_packets: 9
     tx_queue_0_packets: 3
`
	c, err := parseRxQueuePackets(stats, 4)
	if err != nil || !slices.Equal(c, []uint64{634, 12, 0, 9}) {
		t.Fatalf("= %v, %v", c, err)
	}
	if _, err := parseRxQueuePackets(stats, 5); err == nil {
		t.Error("a missing queue was not reported")
	}
	// Linux 6.9's names.
	if c, err := parseRxQueuePackets("     rx0_packets: 5\n     rx0_xdp_packets: 7\n     rx1_packets: 6\n", 2); err != nil || !slices.Equal(c, []uint64{5, 6}) {
		t.Fatalf("rxN_packets = %v, %v", c, err)
	}
	channels := `Channel parameters for eth0:
Pre-set maximums:
RX:		n/a
TX:		n/a
Other:		n/a
Combined:	4
Current hardware settings:
RX:		n/a
TX:		n/a
Other:		n/a
Combined:	2
`
	if n, err := parseCurrentCombined(channels); err != nil || n != 2 {
		t.Fatalf("parseCurrentCombined = %d, %v", n, err)
	}
}

// TestInitScriptSyntax checks the guest's init with the host's busybox (or
// sh) in syntax-only mode.
func TestInitScriptSyntax(t *testing.T) {
	s := initScript([]string{"virtio", "virtio_net"}, []string{"/lib/x86_64-linux-gnu"}, "eth0", 4)
	for _, want := range []string{"insmod /lib/modules/$m.ko", "for m in virtio virtio_net;", "ethtool -L eth0 combined 4", markerReady, markerBegin, markerEnd} {
		if !strings.Contains(s, want) {
			t.Errorf("init lacks %q", want)
		}
	}
	sh, args := "/bin/busybox", []string{"sh", "-n"}
	if _, err := os.Stat(sh); err != nil {
		sh, args = "sh", []string{"-n"}
	}
	cmd := exec.Command(sh, args...)
	cmd.Stdin = strings.NewReader(s)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", sh, args, err, out)
	}
}

func TestDefaultScenarios(t *testing.T) {
	sc := DefaultScenarios(4, 42)
	if len(sc) != 2 {
		t.Fatalf("%d scenarios", len(sc))
	}
	for _, s := range sc {
		if s.Flows < 200 || s.Flows*s.PerFlow < 2000 {
			t.Errorf("%s: %d flows, %d frames", s.Name, s.Flows, s.Flows*s.PerFlow)
		}
		if err := s.Config.Validate(steering.Limits(4)); err != nil {
			t.Errorf("%s: %v", s.Name, err)
		}
	}
	if got := tableShares(sc[1].Config.Table, 4); got != "64:38:13:13" {
		t.Errorf("skewed table shares %s", got)
	}
	if bytes.Equal(sc[1].Config.Key, DefaultScenarios(4, 43)[1].Config.Key) {
		t.Error("the key does not depend on the seed")
	}
	// The `vrss rss set` flags name the whole configuration (the table
	// explicitly or by --weights; the e2e run reads back what vrssd
	// published).
	want := map[string][]string{"A1 equal": {"--table", strings.Repeat("0,1,2,3,", 32)[:4*2*32-1]}, "A2 skewed": {"--weights", "5,3,1,1"}}
	for _, s := range sc {
		f := setFlags(t, s.SetArgs)
		if k, err := rss.ParseKey(f["--key"]); err != nil || !bytes.Equal(k, s.Config.Key) {
			t.Errorf("%s: --key %s, config key %x", s.Name, f["--key"], s.Config.Key)
		}
		if ht, err := rss.ParseHashTypes(f["--types"]); err != nil || ht != s.Config.HashTypes {
			t.Errorf("%s: --types %s, config %s", s.Name, f["--types"], s.Config.HashTypes)
		}
		if f["--unclassified"] != strconv.Itoa(int(s.Config.UnclassifiedQueue)) {
			t.Errorf("%s: --unclassified %s, config %d", s.Name, f["--unclassified"], s.Config.UnclassifiedQueue)
		}
		if w := want[s.Name]; f[w[0]] != w[1] {
			t.Errorf("%s: %s %q, want %q", s.Name, w[0], f[w[0]], w[1])
		}
	}
}

// setFlags maps each flag of `vrss rss set` arguments to its value.
func setFlags(t *testing.T, args []string) map[string]string {
	t.Helper()
	if len(args)%2 != 0 {
		t.Fatalf("odd arguments %q", args)
	}
	f := map[string]string{}
	for i := 0; i < len(args); i += 2 {
		if !strings.HasPrefix(args[i], "--") {
			t.Fatalf("%q is not a flag in %q", args[i], args)
		}
		f[args[i]] = args[i+1]
	}
	return f
}

func TestRSSSetArgs(t *testing.T) {
	for _, c := range []rss.Config{
		{HashTypes: rss.AllHashTypes, Key: rss.DefaultKey, Table: rss.EqualTable(128, 4)},
		{HashTypes: rss.HashTCPv4 | rss.HashIPv6, Key: []byte{1, 2, 0xab}, Table: []uint16{3, 0, 1, 2}, UnclassifiedQueue: 2},
		{HashTypes: 0, Key: make([]byte, 40), Table: []uint16{7}},
	} {
		f := setFlags(t, rssSetArgs(c))
		var got rss.Config
		var err error
		if got.Key, err = rss.ParseKey(f["--key"]); err != nil {
			t.Fatal(err)
		}
		if got.HashTypes, err = rss.ParseHashTypes(f["--types"]); err != nil {
			t.Fatal(err)
		}
		for _, e := range strings.Split(f["--table"], ",") {
			q, err := strconv.ParseUint(e, 10, 16)
			if err != nil {
				t.Fatalf("--table %s: %v", f["--table"], err)
			}
			got.Table = append(got.Table, uint16(q))
		}
		u, err := strconv.ParseUint(f["--unclassified"], 10, 16)
		if err != nil {
			t.Fatal(err)
		}
		got.UnclassifiedQueue = uint16(u)
		if !sameConfig(got, c) {
			t.Errorf("rssSetArgs(%+v) = %q, which says %+v", c, rssSetArgs(c), got)
		}
	}
	a := rss.Config{HashTypes: rss.HashIPv4, Key: []byte{1}, Table: []uint16{0, 1}}
	for _, b := range []rss.Config{
		{HashTypes: rss.HashIPv6, Key: []byte{1}, Table: []uint16{0, 1}},
		{HashTypes: rss.HashIPv4, Key: []byte{2}, Table: []uint16{0, 1}},
		{HashTypes: rss.HashIPv4, Key: []byte{1}, Table: []uint16{1, 0}},
		{HashTypes: rss.HashIPv4, Key: []byte{1}, Table: []uint16{0, 1}, UnclassifiedQueue: 1},
	} {
		if sameConfig(a, b) {
			t.Errorf("sameConfig(%+v, %+v)", a, b)
		}
	}
	if !sameConfig(a, a.Clone()) {
		t.Error("a configuration differs from its clone")
	}
}

func TestShortArgs(t *testing.T) {
	key := strings.Repeat("ab", 40)
	if got, want := shortArgs("vrss rss set tap0 --key "+key+" --types all"), "vrss rss set tap0 --key abababababababab… --types all"; got != want {
		t.Errorf("shortArgs = %q, want %q", got, want)
	}
}

func TestProcessUID(t *testing.T) {
	if uid, err := processUID(os.Getpid()); err != nil || uid != os.Getuid() {
		t.Errorf("processUID(self) = %d, %v; want %d", uid, err, os.Getuid())
	}
}

func TestParseEthtoolX(t *testing.T) {
	out := `RX flow hash indirection table for eth0 with 4 RX ring(s):
    0:      0     1     0     1     0     1     0     1
    8:      2     3     2     3     2     3     2     3
RSS hash key:
6d:5a:56:da:25:5b:0e:c2:41:67:25:3d:43:a3:8f:b0:d0:ca:2b:cb:ae:7b:30:b4:77:cb:2d:a3:80:30:f2:0c:6a:42:b7:3b:be:ac:01:fa
RSS hash function:
    toeplitz: on
    xor: off
    crc32: off`
	table, key, err := parseEthtoolX(out)
	if err != nil {
		t.Fatal(err)
	}
	if want := []uint16{0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2, 3}; !slices.Equal(table, want) {
		t.Errorf("table %v", table)
	}
	if !bytes.Equal(key, rss.DefaultKey) {
		t.Errorf("key %x", key)
	}
	// What a driver without VIRTIO_NET_F_RSS answers.
	if _, _, err := parseEthtoolX("RX flow hash indirection table for eth0 with 4 RX ring(s):\nOperation not supported\nRSS hash key:\nOperation not supported\n"); err == nil {
		t.Error("no configuration accepted")
	}
}

func TestParseRxFlowHash(t *testing.T) {
	for _, tc := range []struct {
		out    string
		ip, l4 bool
	}{
		{"TCP over IPV4 flows use these fields for computing Hash flow key:\nIP SA\nIP DA\nL4 bytes 0 & 1 [TCP/UDP src port]\nL4 bytes 2 & 3 [TCP/UDP dst port]\n", true, true},
		{"UDP over IPV4 flows use these fields for computing Hash flow key:\nIP SA\nIP DA\n", true, false},
		{"TCP over IPV6 flows use these fields for computing Hash flow key:\nNone\n", false, false},
	} {
		if ip, l4 := parseRxFlowHash(tc.out); ip != tc.ip || l4 != tc.l4 {
			t.Errorf("%q: ip %v l4 %v", tc.out, ip, l4)
		}
	}
}

func TestParseFeature(t *testing.T) {
	out := "Features for eth0:\nrx-checksumming: on [fixed]\nreceive-hashing: off\nhighdma: on [fixed]\n"
	if on, err := parseFeature(out, "receive-hashing"); on || err != nil {
		t.Errorf("receive-hashing: %v %v", on, err)
	}
	if on, err := parseFeature(out, "highdma"); !on || err != nil {
		t.Errorf("highdma: %v %v", on, err)
	}
	if _, err := parseFeature(out, "rx-hashing"); err == nil {
		t.Error("a missing feature found")
	}
}

// The zero-hash addresses scenario B's characterisation sends do hash to
// 0, under any key, and differ from one another.
func TestZeroHashAddrs(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	for range 5 {
		key := make([]byte, 40)
		for i := range key {
			key[i] = byte(r.Uint32())
		}
		eng, err := rss.New(rss.Config{HashTypes: rss.HashIPv4, Key: key, Table: []uint16{0}})
		if err != nil {
			t.Fatal(err)
		}
		gen := zeroHashAddrs(key)
		seen := map[string]bool{}
		for range 8 {
			src, dst := gen(r)
			f := frame.Build(frame.Spec{Src: src, Dst: dst, Proto: frame.ProtoICMP, Payload: 8})
			if res := eng.Steer(f); res.Hash != 0 || res.Report != rss.ReportIPv4 {
				t.Fatalf("%v -> %v: hash %#x, report %s", src, dst, res.Hash, res.Report)
			}
			seen[src.String()+dst.String()] = true
		}
		if len(seen) < 4 {
			t.Errorf("only %d different address pairs", len(seen))
		}
	}
}

// The frame kinds build what their names say, as the engine sees them.
func TestFrameKinds(t *testing.T) {
	key := make([]byte, 40)
	for i := range key {
		key[i] = byte(i * 7)
	}
	cfg := rss.Config{HashTypes: rss.AllHashTypes, Key: key, Table: rss.EqualTable(128, 4)}
	eng, err := rss.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 1))
	want := map[string]rss.HashReport{
		"tcpv4": rss.ReportTCPv4, "udpv6": rss.ReportUDPv6, "icmpv6 echo request": rss.ReportIPv6,
		"non-IP (EtherType 0x88b5)": rss.ReportNone, "ipv4 IHL 4 (TCP)": rss.ReportNone,
		"ipv6 atomic fragment (TCP)": rss.ReportTCPv6Ex, "ipv6 9 extension headers (TCP)": rss.ReportNone,
		"802.1Q + 802.1Q (TCPv4)": rss.ReportTCPv4, "icmpv4, Toeplitz hash 0": rss.ReportIPv4,
	}
	main := 0
	for _, k := range frameKinds(key) {
		if k.main {
			main++
		}
		rep := eng.Steer(k.build(r)).Report
		if w, ok := want[k.name]; ok && rep != w {
			t.Errorf("%s: report %s, want %s", k.name, rep, w)
		}
		delete(want, k.name)
	}
	if len(want) != 0 || main != 7 {
		t.Errorf("kinds missing: %v; %d main kinds", want, main)
	}
	for _, k := range exKinds() {
		if rep := eng.Steer(k.build(r)).Report; rep == rss.ReportNone {
			t.Errorf("%s: unclassified under every hash type", k.name)
		}
	}
}

func TestAddressQueue(t *testing.T) {
	key := make([]byte, 40)
	for i := range key {
		key[i] = byte(i*13 + 1)
	}
	table := make([]uint16, 128)
	for i := range table {
		table[i] = uint16(i)
	}
	cfg := rss.Config{HashTypes: rss.HashIPv4 | rss.HashIPv6, Key: key, Table: table}
	eng, _ := rss.New(cfg)
	r := rand.New(rand.NewPCG(2, 2))
	for _, s := range []frame.Spec{
		{Src: frame.RandomAddr4(r), Dst: frame.RandomAddr4(r), Proto: frame.ProtoICMP, Payload: 8},
		{Src: frame.RandomAddr6(r), Dst: frame.RandomAddr6(r), Proto: 58, Payload: 8, VLANs: []uint16{0x8100, 0x8100}},
	} {
		f := frame.Build(s)
		s.VLANs = nil
		q, ok := addressQueue(f, cfg)
		if want := int(eng.Steer(frame.Build(s)).Queue); !ok || q != want {
			t.Errorf("%v: %d %v, want %d", s, q, ok, want)
		}
	}
	if _, ok := addressQueue([]byte{1, 2, 3}, cfg); ok {
		t.Error("a 3-byte frame has addresses")
	}
}

func TestQEMUMapsMatches(t *testing.T) {
	cfg := rss.Config{HashTypes: rss.HashIPv4 | rss.HashTCPv4, Key: []byte{1, 2, 3, 4}, Table: []uint16{0, 1}}
	m := QEMUMaps{Redirect: true, HashTypes: cfg.HashTypes, Key: cfg.Key, Table: cfg.Table}
	if err := mapsMatch(m, cfg); err != nil {
		t.Fatal(err)
	}
	m.HashTypes |= rss.HashIPv6
	m.Redirect = false
	if err := mapsMatch(m, cfg); err == nil || !strings.Contains(err.Error(), "hash types") || !strings.Contains(err.Error(), "redirect") {
		t.Errorf("differences not reported: %v", err)
	}
}
