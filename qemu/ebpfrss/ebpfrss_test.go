package ebpfrss

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/internal/frame"
	"github.com/vrss-dev/vrss/internal/privtest"
	"github.com/vrss-dev/vrss/rss"
)

// stubObject is vrssd's stand-in for QEMU's object: QEMU 10.0's maps, and
// a program that returns the configuration's last two bytes (default_queue).
const stubObject = "../../agent/testdata/qemu_rss_stub.o"

func testConfig() Config {
	key := make([]byte, KeySize)
	for i := range key {
		key[i] = byte(i + 1)
	}
	return Config{Redirect: true, HashTypes: rss.HashTCPv4 | rss.HashIPv6, Key: key, Table: []uint16{0, 1, 2, 3}, DefaultQueue: 0x0203}
}

// Golden bytes of the two map values, in the layout of QEMU's
// tools/ebpf/rss.bpf.c (little-endian host).
func TestEncodeGolden(t *testing.T) {
	c := testConfig()
	if got, want := hex.EncodeToString(c.encodeConfig()), "0100"+"0a000000"+"0400"+"0302"; got != want {
		t.Errorf("configuration %s, want %s", got, want)
	}
	wantKey := "04030201" + "05060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728"
	if got := hex.EncodeToString(c.encodeKey()); got != wantKey {
		t.Errorf("key %s, want %s", got, wantKey)
	}

	var d Config
	if err := d.decode(c.encodeConfig(), c.encodeKey()); err != nil {
		t.Fatal(err)
	}
	d.Table = c.Table // read from its own map
	if !reflect.DeepEqual(d, c) {
		t.Errorf("decoded %+v, want %+v", d, c)
	}
}

func TestDecodeRefuses(t *testing.T) {
	c := testConfig()
	var d Config
	if err := d.decode(c.encodeConfig()[:ConfigSize-1], c.encodeKey()); err == nil {
		t.Error("short configuration decoded")
	}
	if err := d.decode(c.encodeConfig(), c.encodeKey()[:KeySize-1]); err == nil {
		t.Error("short key decoded")
	}
	big := c.encodeConfig()
	big[6], big[7] = 0, 1 // 256 entries
	if err := d.decode(big, c.encodeKey()); err == nil || !strings.Contains(err.Error(), "256 table entries") {
		t.Errorf("256-entry table: %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	c := testConfig()
	f.Add(c.encodeConfig(), c.encodeKey())
	f.Add([]byte{}, []byte{})
	f.Fuzz(func(t *testing.T, config, key []byte) {
		var d Config
		if err := d.decode(config, key); err != nil {
			return
		}
		if len(d.Key) != KeySize || len(d.Table) > MaxTable {
			t.Fatalf("decoded key of %d bytes, table of %d", len(d.Key), len(d.Table))
		}
		// The flags are booleans: any non-zero byte reads as 1.
		if d.Redirect != (config[0] != 0) || d.PopulateHash != (config[1] != 0) ||
			!bytes.Equal(d.encodeConfig()[2:], config[2:ConfigSize]) || !bytes.Equal(d.encodeKey(), key[:KeySize]) {
			t.Fatalf("does not round-trip: %x %x", config, key)
		}
	})
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
	}{
		{"short key", func(c *Config) { c.Key = c.Key[:39] }},
		{"long key", func(c *Config) { c.Key = append(c.Key, 0) }},
		{"no table", func(c *Config) { c.Table = nil }},
		{"3 entries", func(c *Config) { c.Table = c.Table[:3] }},
		{"256 entries", func(c *Config) { c.Table = make([]uint16, 256) }},
	} {
		c := testConfig()
		tc.edit(&c)
		if err := c.validate(); err == nil {
			t.Errorf("%s: valid", tc.name)
		}
	}
	if err := testConfig().validate(); err != nil {
		t.Error(err)
	}
}

func TestFromRSS(t *testing.T) {
	c := testConfig()
	if got := FromRSS(c.RSS()); !reflect.DeepEqual(got, c) {
		t.Errorf("FromRSS(RSS()) = %+v, want %+v", got, c)
	}
}

func stubSpec(t *testing.T) *ebpf.CollectionSpec {
	t.Helper()
	obj, err := os.ReadFile(stubObject)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := ParseObject(obj)
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		edit func(*ebpf.CollectionSpec)
		want string
	}{
		{func(s *ebpf.CollectionSpec) {}, ""},
		{func(s *ebpf.CollectionSpec) { s.Programs[ProgramName].Type = ebpf.UnspecifiedProgram }, ""},
		{func(s *ebpf.CollectionSpec) { s.Programs[ProgramName].Type = ebpf.XDP }, "socket filters"},
		{func(s *ebpf.CollectionSpec) { s.Programs["other"] = s.Programs[ProgramName].Copy() }, "2 programs"},
		{func(s *ebpf.CollectionSpec) {
			s.Programs["other"] = s.Programs[ProgramName]
			delete(s.Programs, ProgramName)
		}, "want " + ProgramName},
		{func(s *ebpf.CollectionSpec) { delete(s.Maps, MapNames[1]) }, "no map " + MapNames[1]},
		{func(s *ebpf.CollectionSpec) { s.Maps[MapNames[0]].Flags = 0 }, "BPF_F_MMAPABLE"},
		{func(s *ebpf.CollectionSpec) { s.Maps[MapNames[2]].Type = ebpf.Hash }, "must be an array"},
		{func(s *ebpf.CollectionSpec) { s.Maps[MapNames[1]].ValueSize = 52 }, "52-byte values"},
		{func(s *ebpf.CollectionSpec) { s.Maps[MapNames[2]].MaxEntries = 64 }, "64 entries"},
	} {
		spec := stubSpec(t)
		tc.edit(spec)
		err := Check(spec)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("refused: %v", err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("got %v, want an error saying %q", err, tc.want)
		}
	}
	// vrss's own object is not QEMU's.
	vrss, err := os.ReadFile("../../steering/vrss_bpfel.o")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseObject(vrss); err == nil {
		t.Error("vrss's object passed for QEMU's")
	}
	if _, err := ParseObject([]byte("QEMU")); err == nil {
		t.Error("4 bytes passed for an object")
	}
}

// Write puts the configuration where the program reads it, Read gets it
// back, and FromFDs takes over another holder's descriptors.
func TestWriteRead(t *testing.T) {
	privtest.Require(t, "bpf")
	o, err := Load(stubSpec(t))
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	c := testConfig()
	c.Table = []uint16{7, 6, 5, 4, 3, 2, 1, 0}
	if err := o.Write(c); err != nil {
		t.Fatal(err)
	}
	got, err := o.Read()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, c) {
		t.Errorf("read %+v, want %+v", got, c)
	}
	f := frame.Build(frame.Spec{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), Proto: frame.ProtoTCP, SrcPort: 1, DstPort: 2})
	if q, err := o.Program.Run(&ebpf.RunOptions{Data: f}); err != nil || q != uint32(c.DefaultQueue) {
		t.Errorf("stub program returned %d, %v; want the written default queue %d", q, err, c.DefaultQueue)
	}

	bad := c
	bad.Key = bad.Key[:16]
	if err := o.Write(bad); err == nil {
		t.Error("16-byte key written")
	}
	if got, err := o.Read(); err != nil || !reflect.DeepEqual(got, c) {
		t.Errorf("after a refused write: %+v, %v; want %+v", got, err, c)
	}

	var fds [4]int
	for i, fd := range []int{o.Program.FD(), o.Config.FD(), o.Key.FD(), o.Table.FD()} {
		if fds[i], err = unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0); err != nil {
			t.Fatal(err)
		}
	}
	o2, err := FromFDs(fds)
	if err != nil {
		t.Fatal(err)
	}
	defer o2.Close()
	if got, err := o2.Read(); err != nil || !slices.Equal(got.Table, c.Table) {
		t.Errorf("through FromFDs: %+v, %v", got, err)
	}
	mapFD, err := unix.FcntlInt(uintptr(o.Config.FD()), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := FromFDs([4]int{mapFD, -1, -1, -1}); err == nil {
		t.Error("a map fd taken for a program")
	}
}
