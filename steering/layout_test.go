package steering

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/rss"
)

// field is one member of a struct in the configuration map's value: its
// byte offset in the enclosing struct, its size and its C shape.
type field struct {
	name   string
	offset int
	size   int
	shape  string
}

// The wire format of the configuration map (bpf/vrss.h), written out by
// hand. A process built from one version of vrss publishes into a map
// loaded by another, so these numbers change only together with the ABI.
const (
	goldenConfigSize = 205360
	goldenSlotSize   = 102672
	goldenSlot0      = 16
	goldenSlot1      = 102688
)

var goldenConfig = []field{
	{"magic", 0, 4, "u32"},
	{"active", 4, 4, "u32"},
	{"generation", 8, 8, "u64"},
	{"slot", 16, 2 * 102672, "struct vrss_slot[2]"},
}

var goldenSlot = []field{
	{"seq", 0, 4, "u32"},
	{"hash_types", 4, 4, "u32"},
	{"table_mask", 8, 4, "u32"},
	{"unclassified_queue", 12, 2, "u16"},
	{"key_len", 14, 2, "u16"},
	{"key", 16, 256, "u8[256]"},
	{"toeplitz", 272, 36 * 256 * 4, "u32[36][256]"},
	{"table", 37136, 32768 * 2, "u16[32768]"},
}

// TestLayoutGo checks the Go view of the map, the type bpf2go generated,
// against the golden layout.
func TestLayoutGo(t *testing.T) {
	var c configLayout
	s := &c.Slot[0]
	got := []field{
		{"magic", int(unsafe.Offsetof(c.Magic)), int(unsafe.Sizeof(c.Magic)), goShape(c.Magic)},
		{"active", int(unsafe.Offsetof(c.Active)), int(unsafe.Sizeof(c.Active)), goShape(c.Active)},
		{"generation", int(unsafe.Offsetof(c.Generation)), int(unsafe.Sizeof(c.Generation)), goShape(c.Generation)},
		{"slot", int(unsafe.Offsetof(c.Slot)), int(unsafe.Sizeof(c.Slot)), goShape(c.Slot)},
	}
	compareFields(t, "Go vrss_config", got, goldenConfig)
	got = []field{
		{"seq", int(unsafe.Offsetof(c.Slot[0].Seq)), int(unsafe.Sizeof(s.Seq)), goShape(s.Seq)},
		{"hash_types", int(unsafe.Offsetof(c.Slot[0].HashTypes)), int(unsafe.Sizeof(s.HashTypes)), goShape(s.HashTypes)},
		{"table_mask", int(unsafe.Offsetof(c.Slot[0].TableMask)), int(unsafe.Sizeof(s.TableMask)), goShape(s.TableMask)},
		{"unclassified_queue", int(unsafe.Offsetof(c.Slot[0].UnclassifiedQueue)), int(unsafe.Sizeof(s.UnclassifiedQueue)), goShape(s.UnclassifiedQueue)},
		{"key_len", int(unsafe.Offsetof(c.Slot[0].KeyLen)), int(unsafe.Sizeof(s.KeyLen)), goShape(s.KeyLen)},
		{"key", int(unsafe.Offsetof(c.Slot[0].Key)), int(unsafe.Sizeof(s.Key)), goShape(s.Key)},
		{"toeplitz", int(unsafe.Offsetof(c.Slot[0].Toeplitz)), int(unsafe.Sizeof(s.Toeplitz)), goShape(s.Toeplitz)},
		{"table", int(unsafe.Offsetof(c.Slot[0].Table)), int(unsafe.Sizeof(s.Table)), goShape(s.Table)},
	}
	compareFields(t, "Go vrss_slot", got, goldenSlot)

	if off := int(uintptr(unsafe.Pointer(&c.Slot[1])) - uintptr(unsafe.Pointer(&c))); off != goldenSlot1 {
		t.Errorf("Go slot[1] at %d, want %d", off, goldenSlot1)
	}
	if n := int(unsafe.Sizeof(c.Slot[0])); n != goldenSlotSize {
		t.Errorf("Go slot size %d, want %d", n, goldenSlotSize)
	}
	if ConfigSize != goldenConfigSize {
		t.Errorf("ConfigSize %d, want %d", ConfigSize, goldenConfigSize)
	}
	// The kernel rounds mmapped array values up to 8 bytes; a size that
	// needed rounding would leave the Go view and the map disagreeing.
	if ConfigSize%8 != 0 {
		t.Errorf("ConfigSize %d is not a multiple of 8", ConfigSize)
	}
	// The exported limits are the array bounds.
	if len(s.Table) != MaxTableLen || len(s.Key) != MaxKeySize+1 || len(s.Toeplitz) != rss.MaxInputLen {
		t.Errorf("array bounds table %d key %d toeplitz %d, want MaxTableLen %d, MaxKeySize+1 %d, rss.MaxInputLen %d",
			len(s.Table), len(s.Key), len(s.Toeplitz), MaxTableLen, MaxKeySize+1, rss.MaxInputLen)
	}
	// Publisher lays configLayout over every variant's map, so the other
	// variants' generated types must be the same type (the bit-serial
	// baseline's is checked in package steering/baseline).
	for _, other := range []any{vrssdebugVrssConfig{}} {
		if ot := reflect.TypeOf(other); !ot.ConvertibleTo(reflect.TypeOf(configLayout{})) {
			t.Errorf("%s differs from the production vrssVrssConfig", ot.Name())
		}
	}
}

// TestLayoutBTF checks the layout the compiler gave the C structs, as the
// BTF in each embedded object describes them, against the golden layout:
// a change to bpf/vrss.h that the Go side does not follow fails here.
func TestLayoutBTF(t *testing.T) {
	for _, v := range []struct {
		name string
		load func() (*ebpf.CollectionSpec, error)
	}{
		{"production", loadVrss},
		{"debug", loadVrssdebug},
	} {
		t.Run(v.name, func(t *testing.T) {
			spec, err := v.load()
			if err != nil {
				t.Fatal(err)
			}
			m := spec.Maps["vrss_config"]
			if m == nil {
				t.Fatal("no vrss_config map")
			}
			if m.Type != ebpf.Array || m.KeySize != 4 || m.MaxEntries != 1 {
				t.Errorf("vrss_config is %s, key size %d, %d entries; want a one-element Array with a 4-byte key", m.Type, m.KeySize, m.MaxEntries)
			}
			if int(m.ValueSize) != ConfigSize {
				t.Errorf("vrss_config value size %d, ConfigSize %d", m.ValueSize, ConfigSize)
			}
			if m.Flags&unix.BPF_F_MMAPABLE == 0 {
				t.Errorf("vrss_config flags %#x lack BPF_F_MMAPABLE", m.Flags)
			}

			cfg, ok := btf.UnderlyingType(m.Value).(*btf.Struct)
			if !ok || cfg.Name != "vrss_config" {
				t.Fatalf("vrss_config value is %v, want struct vrss_config", m.Value)
			}
			if cfg.Size != goldenConfigSize {
				t.Errorf("BTF struct vrss_config is %d bytes, want %d", cfg.Size, goldenConfigSize)
			}
			compareFields(t, "BTF vrss_config", btfFields(t, cfg), goldenConfig)

			slots, ok := btf.UnderlyingType(cfg.Members[len(cfg.Members)-1].Type).(*btf.Array)
			if !ok {
				t.Fatal("vrss_config's last member is not an array")
			}
			slot, ok := btf.UnderlyingType(slots.Type).(*btf.Struct)
			if !ok || slot.Name != "vrss_slot" {
				t.Fatalf("slot element is %v, want struct vrss_slot", slots.Type)
			}
			if slot.Size != goldenSlotSize {
				t.Errorf("BTF struct vrss_slot is %d bytes, want %d", slot.Size, goldenSlotSize)
			}
			compareFields(t, "BTF vrss_slot", btfFields(t, slot), goldenSlot)

			stats := spec.Maps["vrss_stats"]
			if stats == nil || stats.Type != ebpf.PerCPUArray || stats.ValueSize != 8 || stats.MaxEntries != numStats {
				t.Errorf("vrss_stats is %+v, want a per-CPU array of %d u64", stats, numStats)
			}
			// VRSS_MAGIC is a #define, so not in BTF: look for it as the
			// constant the program compares the map's magic with.
			var hasMagic bool
			for _, ins := range spec.Programs["vrss_steer"].Instructions {
				hasMagic = hasMagic || ins.Constant == Magic
			}
			if !hasMagic {
				t.Errorf("program never uses the constant Magic %#x: VRSS_MAGIC changed?", Magic)
			}
		})
	}
}

// goShape spells the type of a Go field as btfShape spells its C type. The
// only struct in the layout is the slot.
func goShape(v any) string {
	typ := reflect.TypeOf(v)
	var dims string
	for typ.Kind() == reflect.Array {
		dims += fmt.Sprintf("[%d]", typ.Len())
		typ = typ.Elem()
	}
	switch typ.Kind() {
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return fmt.Sprintf("u%d%s", typ.Bits(), dims)
	case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return fmt.Sprintf("s%d%s", typ.Bits(), dims)
	case reflect.Struct:
		return "struct vrss_slot" + dims
	}
	return typ.String() + dims
}

// btfFields lists the members of a BTF struct as byte offsets, sizes and
// shapes.
func btfFields(t *testing.T, s *btf.Struct) []field {
	t.Helper()
	var fs []field
	for _, m := range s.Members {
		if m.BitfieldSize != 0 || m.Offset%8 != 0 {
			t.Errorf("%s.%s is a bitfield or not byte aligned (bit offset %d)", s.Name, m.Name, m.Offset)
		}
		size, err := btf.Sizeof(m.Type)
		if err != nil {
			t.Fatalf("%s.%s: %v", s.Name, m.Name, err)
		}
		// Member offsets are in bits.
		fs = append(fs, field{m.Name, int(m.Offset / 8), size, btfShape(m.Type)})
	}
	return fs
}

// btfShape spells a member's type the way the golden tables do: "u32",
// "u32[36][256]", "struct vrss_slot[2]".
func btfShape(typ btf.Type) string {
	var dims string
	for {
		switch tt := btf.UnderlyingType(typ).(type) {
		case *btf.Array:
			dims += fmt.Sprintf("[%d]", tt.Nelems)
			typ = tt.Type
			continue
		case *btf.Int:
			sign := "u"
			if tt.Encoding&btf.Signed != 0 {
				sign = "s"
			}
			return fmt.Sprintf("%s%d%s", sign, tt.Size*8, dims)
		case *btf.Struct:
			return "struct " + tt.Name + dims
		default:
			return fmt.Sprintf("%T%s", tt, dims)
		}
	}
}

func compareFields(t *testing.T, what string, got, want []field) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		var b strings.Builder
		for i := 0; i < max(len(got), len(want)); i++ {
			var g, w field
			if i < len(got) {
				g = got[i]
			}
			if i < len(want) {
				w = want[i]
			}
			mark := "  "
			if g != w {
				mark = "!!"
			}
			fmt.Fprintf(&b, "\n%s got %-20s @%-6d %-6d %-20s want %-20s @%-6d %-6d %s", mark, g.name, g.offset, g.size, g.shape, w.name, w.offset, w.size, w.shape)
		}
		t.Errorf("%s layout differs from bpf/vrss.h's golden layout:%s", what, b.String())
	}
}

// goldenConfig1 is the small configuration whose published bytes
// TestGoldenBytes spells out.
func goldenConfig1() rss.Config {
	return rss.Config{
		HashTypes:         0x1ff,
		Key:               []byte{0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d},
		Table:             []uint16{3, 1, 2, 0},
		UnclassifiedQueue: 2,
	}
}

// TestGoldenBytesMemfd publishes into a memfd, which mmaps like the
// configuration map but needs no privilege, and reads the bytes back with
// pread, independently of the Publisher's mapping.
func TestGoldenBytesMemfd(t *testing.T) {
	fd, err := unix.MemfdCreate("vrss-config", unix.MFD_CLOEXEC)
	if err != nil {
		t.Skipf("memfd_create: %v", err)
	}
	defer unix.Close(fd)
	if err := unix.Ftruncate(fd, int64(ConfigSize)); err != nil {
		t.Fatal(err)
	}
	pub, err := NewPublisher(fd, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	checkGoldenBytes(t, pub, func() []byte {
		b := make([]byte, ConfigSize)
		if n, err := unix.Pread(fd, b, 0); err != nil || n != ConfigSize {
			t.Fatalf("pread: %d bytes, %v", n, err)
		}
		return b
	})
}

// TestGoldenBytesMap publishes into the real map through mmap and reads
// the value back with BPF_MAP_LOOKUP_ELEM: the kernel's view of the value
// must be exactly the bytes written at the start of the mapping.
func TestGoldenBytesMap(t *testing.T) {
	p := loadProgram(t, Production)
	pub := newPublisher(t, p)
	checkGoldenBytes(t, pub, func() []byte {
		b := make([]byte, ConfigSize)
		if err := p.ConfigMap.Lookup(uint32(0), b); err != nil {
			t.Fatalf("lookup: %v", err)
		}
		return b
	})
}

// checkGoldenBytes publishes three configurations through pub, which
// starts out zeroed, reading the whole value with read after each, and
// checks literal bytes at literal offsets.
func checkGoldenBytes(t *testing.T, pub *Publisher, read func() []byte) {
	t.Helper()
	b := read()
	expectZero(t, b, "fresh map", 0, goldenConfigSize)
	if _, err := pub.Config(); !errors.Is(err, ErrNotConfigured) {
		t.Errorf("Config before any publish: %v, want ErrNotConfigured", err)
	}

	// First publish: fills slot 1 (the inactive one) and activates it.
	c1 := goldenConfig1()
	if err := pub.Publish(c1); err != nil {
		t.Fatal(err)
	}
	b = read()
	expectBytes(t, b, "magic", 0, 0x56, 0x52, 0x53, 0x53) // "VRSS"
	expectBytes(t, b, "active", 4, 0x01, 0x00, 0x00, 0x00)
	expectBytes(t, b, "generation", 8, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00)
	expectZero(t, b, "slot 0", 16, 102688)
	const s1 = 102688
	expectBytes(t, b, "slot 1 seq", s1+0, 0x02, 0x00, 0x00, 0x00) // one write: odd, then even
	expectBytes(t, b, "slot 1 hash_types", s1+4, 0xff, 0x01, 0x00, 0x00)
	expectBytes(t, b, "slot 1 table_mask", s1+8, 0x03, 0x00, 0x00, 0x00)
	expectBytes(t, b, "slot 1 unclassified_queue", s1+12, 0x02, 0x00)
	expectBytes(t, b, "slot 1 key_len", s1+14, 0x0d, 0x00)
	expectBytes(t, b, "slot 1 key", s1+16, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d)
	expectZero(t, b, "slot 1 key past key_len", s1+16+13, s1+272)
	// toeplitz[pos][v] at s1 + 272 + 4*(256*pos + v): the input bit b of
	// byte pos contributes the 32 key bits from bit 8*pos+b on.
	expectBytes(t, b, "toeplitz[0][0x00]", s1+272, 0x00, 0x00, 0x00, 0x00)
	expectBytes(t, b, "toeplitz[0][0x80]", s1+272+4*0x80, 0x04, 0x03, 0x02, 0x01)       // key bits 0..31: 0x01020304
	expectBytes(t, b, "toeplitz[0][0x01]", s1+272+4*0x01, 0x02, 0x82, 0x01, 0x81)       // key bits 7..38: 0x81018202
	expectBytes(t, b, "toeplitz[0][0xff]", s1+272+4*0xff, 0xff, 0x02, 0xff, 0xfe)       // XOR of bits 0..7's windows
	expectBytes(t, b, "toeplitz[1][0x80]", s1+272+4*(256+0x80), 0x05, 0x04, 0x03, 0x02) // key bits 8..39
	expectBytes(t, b, "toeplitz[12][0x80]", s1+272+4*(12*256+0x80), 0x00, 0x00, 0x00, 0x0d)
	expectBytes(t, b, "toeplitz[12][0x01]", s1+272+4*(12*256+0x01), 0x00, 0x00, 0x00, 0x80) // the key's last bit
	expectZero(t, b, "toeplitz rows 13..35 (past the key)", s1+272+13*1024, s1+37136)
	expectBytes(t, b, "slot 1 table", s1+37136, 0x03, 0x00, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00)
	expectZero(t, b, "slot 1 table past the mask", s1+37136+8, goldenConfigSize)
	expectConfig(t, pub, c1)

	// Second publish: slot 0 this time.
	c2 := rss.Config{HashTypes: 0x3f, Key: rss.DefaultKey, Table: []uint16{0, 1, 2, 3, 0, 1, 2, 3}, UnclassifiedQueue: 1}
	if err := pub.Publish(c2); err != nil {
		t.Fatal(err)
	}
	prev := b
	b = read()
	expectBytes(t, b, "magic", 0, 0x56, 0x52, 0x53, 0x53)
	expectBytes(t, b, "active", 4, 0x00, 0x00, 0x00, 0x00)
	expectBytes(t, b, "generation", 8, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00)
	expectBytes(t, b, "slot 0 seq", 16+0, 0x02, 0x00, 0x00, 0x00)
	expectBytes(t, b, "slot 0 hash_types", 16+4, 0x3f, 0x00, 0x00, 0x00)
	expectBytes(t, b, "slot 0 table_mask", 16+8, 0x07, 0x00, 0x00, 0x00)
	expectBytes(t, b, "slot 0 unclassified_queue", 16+12, 0x01, 0x00)
	expectBytes(t, b, "slot 0 key_len", 16+14, 0x28, 0x00)
	expectBytes(t, b, "slot 0 key", 16+16, 0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2)
	expectBytes(t, b, "slot 0 toeplitz[0][0x80]", 16+272+4*0x80, 0xda, 0x56, 0x5a, 0x6d)
	expectBytes(t, b, "slot 0 table", 16+37136, 0x00, 0x00, 0x01, 0x00, 0x02, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01, 0x00, 0x02, 0x00, 0x03, 0x00)
	if !bytes.Equal(b[s1:], prev[s1:]) {
		t.Error("publishing into slot 0 changed slot 1")
	}
	expectConfig(t, pub, c2)

	// Third publish: slot 1 again, with a shorter key. Key bytes past
	// key_len must be zero, not left over: the bit-serial variant reads
	// up to 40 key bytes whatever key_len says.
	c3 := rss.Config{HashTypes: 0x1, Key: []byte{0xaa, 0xbb, 0xcc, 0xdd, 0xee}, Table: []uint16{1}, UnclassifiedQueue: 0}
	if err := pub.Publish(c3); err != nil {
		t.Fatal(err)
	}
	b = read()
	expectBytes(t, b, "active", 4, 0x01, 0x00, 0x00, 0x00)
	expectBytes(t, b, "generation", 8, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00)
	expectBytes(t, b, "slot 1 seq", s1+0, 0x04, 0x00, 0x00, 0x00)
	expectBytes(t, b, "slot 1 hash_types", s1+4, 0x01, 0x00, 0x00, 0x00)
	expectBytes(t, b, "slot 1 table_mask", s1+8, 0x00, 0x00, 0x00, 0x00)
	expectBytes(t, b, "slot 1 unclassified_queue", s1+12, 0x00, 0x00)
	expectBytes(t, b, "slot 1 key_len", s1+14, 0x05, 0x00)
	expectBytes(t, b, "slot 1 key", s1+16, 0xaa, 0xbb, 0xcc, 0xdd, 0xee)
	expectZero(t, b, "slot 1 key past key_len", s1+16+5, s1+272)
	expectBytes(t, b, "slot 1 toeplitz[0][0x80]", s1+272+4*0x80, 0xdd, 0xcc, 0xbb, 0xaa)
	expectBytes(t, b, "slot 1 table[0]", s1+37136, 0x01, 0x00)
	expectConfig(t, pub, c3)
}

func expectBytes(t *testing.T, b []byte, what string, off int, want ...byte) {
	t.Helper()
	if got := b[off : off+len(want)]; !bytes.Equal(got, want) {
		t.Errorf("%s at %d: % x, want % x", what, off, got, want)
	}
}

func expectZero(t *testing.T, b []byte, what string, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if b[i] != 0 {
			t.Errorf("%s: byte %d is %#02x, want all of %d..%d zero", what, i, b[i], from, to)
			return
		}
	}
}

func expectConfig(t *testing.T, pub *Publisher, want rss.Config) {
	t.Helper()
	got, err := pub.Config()
	if err != nil {
		t.Fatal(err)
	}
	if !sameConfig(got, want) {
		t.Errorf("Config() = %+v, want %+v", got, want)
	}
}

// TestABIStamp checks that the stamp is a pure function of the build and
// has its documented form.
func TestABIStamp(t *testing.T) {
	s1, s2 := ABIStamp(), ABIStamp()
	if s1 != s2 {
		t.Errorf("ABIStamp changed between calls: %s, %s", s1, s2)
	}
	if !regexp.MustCompile(`^vrss1-[0-9a-f]{24}$`).MatchString(s1) {
		t.Errorf("ABIStamp %q, want vrss1- and 24 hex digits", s1)
	}
}
