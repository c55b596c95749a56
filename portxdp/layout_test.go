package portxdp

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/port"
)

// member is one field of a struct in the policy map: name, byte offset,
// byte size.
type member struct {
	name         string
	offset, size int
}

// The wire format of the policy map (bpf/portmap.h), written out by hand:
// these change only with PORT_MAGIC.
var golden = map[string]struct {
	size    int
	members []member
}{
	"port_config": {12984, []member{{"magic", 0, 4}, {"active", 4, 4}, {"generation", 8, 8}, {"uplink_len", 16, 4}, {"pad", 20, 4}, {"slot", 24, 2 * 6480}}},
	"port_slot": {6480, []member{
		{"seq", 0, 4}, {"nmacs", 4, 4}, {"nv4", 8, 4}, {"nv6", 12, 4}, {"nrules", 16, 4}, {"dflt", 20, 4},
		{"mode", 24, 4}, {"queue_start", 28, 4}, {"queues", 32, 4}, {"pad", 36, 4},
		{"tag", 40, 8}, {"mac", 48, 32}, {"v4", 80, 16 * 8}, {"v6", 208, 20 * 32}, {"rule", 848, 32 * 176},
	}},
	"port_rule":    {176, []member{{"reason", 0, 4}, {"nterms", 4, 4}, {"term", 8, 14 * 12}}},
	"port_term":    {12, []member{{"word", 0, 4}, {"mask", 4, 4}, {"value", 8, 4}}},
	"port_prefix6": {32, []member{{"addr", 0, 16}, {"mask", 16, 16}}},
	"port_debug":   {24, []member{{"reason", 0, 4}, {"rule", 4, 4}, {"action", 8, 4}, {"pad", 12, 4}, {"tag", 16, 8}}},
}

// goMembers lists a Go struct's fields as members, named as in C.
func goMembers(v any) (int, []member) {
	t := reflect.TypeOf(v)
	var ms []member
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Name == "_" && f.Type.Size() == 0 {
			continue
		}
		ms = append(ms, member{cName(f.Name), int(f.Offset), int(f.Type.Size())})
	}
	return int(t.Size()), ms
}

// cName turns bpf2go's field names back into C's (UplinkLen -> uplink_len).
func cName(s string) string {
	var b []byte
	for i, c := range []byte(s) {
		if c >= 'A' && c <= 'Z' {
			if i > 0 {
				b = append(b, '_')
			}
			c += 'a' - 'A'
		}
		b = append(b, c)
	}
	return string(b)
}

// TestLayoutGo checks the Go view of the map against the golden layout.
func TestLayoutGo(t *testing.T) {
	var c configLayout
	var d debugLayout
	for name, v := range map[string]any{"port_config": c, "port_slot": c.Slot[0], "port_rule": c.Slot[0].Rule[0], "port_term": c.Slot[0].Rule[0].Term[0], "port_prefix6": c.Slot[0].V6[0], "port_debug": d} {
		size, ms := goMembers(v)
		g := golden[name]
		if name == "port_debug" {
			ms[3].name = "pad" // Go's blank field
		}
		if size != g.size || !reflect.DeepEqual(ms, g.members) {
			t.Errorf("Go %s: %d bytes %v, want %d bytes %v", name, size, ms, g.size, g.members)
		}
	}
	if ConfigSize != golden["port_config"].size || ConfigSize%8 != 0 {
		t.Errorf("ConfigSize %d", ConfigSize)
	}
	// The limits are the arrays' bounds.
	s := c.Slot[0]
	if len(s.Mac) != port.MaxMACs || len(s.V4) != port.MaxIPv4 || len(s.V6) != port.MaxIPv6+port.MaxMACs || len(s.Rule) != port.MaxRules {
		t.Errorf("bounds: %d MACs, %d IPv4, %d IPv6, %d rules", len(s.Mac), len(s.V4), len(s.V6), len(s.Rule))
	}
	if numStats != statRule+port.MaxRules+6 || statRule < port.NumReasons {
		t.Errorf("counters: %d, rules from %d", numStats, statRule)
	}
	// Publisher lays the production build's type over either build's map.
	if !reflect.TypeOf(portdebugPortConfig{}).ConvertibleTo(reflect.TypeOf(c)) {
		t.Error("the debug build's config differs from the production build's")
	}
}

// TestLayoutBTF checks the structs the compiler laid out, as each object's
// BTF describes them, against the golden layout, and the maps' kinds.
func TestLayoutBTF(t *testing.T) {
	for name, load := range map[string]func() (*ebpf.CollectionSpec, error){"production": loadPort, "debug": loadPortdebug} {
		t.Run(name, func(t *testing.T) {
			spec, err := load()
			if err != nil {
				t.Fatal(err)
			}
			m := spec.Maps["port_config"]
			if m == nil || m.Type != ebpf.Array || m.KeySize != 4 || m.MaxEntries != 1 || int(m.ValueSize) != ConfigSize || m.Flags&unix.BPF_F_MMAPABLE == 0 {
				t.Fatalf("port_config is %+v, want a one-element mmapable array of %d bytes", m, ConfigSize)
			}
			seen := map[string]bool{}
			var walk func(typ btf.Type)
			walk = func(typ btf.Type) {
				switch v := btf.UnderlyingType(typ).(type) {
				case *btf.Array:
					walk(v.Type)
				case *btf.Struct:
					g, ok := golden[v.Name]
					if !ok || seen[v.Name] {
						return
					}
					seen[v.Name] = true
					var ms []member
					for _, f := range v.Members {
						sz, err := btf.Sizeof(f.Type)
						if err != nil {
							t.Fatal(err)
						}
						ms = append(ms, member{f.Name, int(f.Offset.Bytes()), sz})
						walk(f.Type)
					}
					if int(v.Size) != g.size || !reflect.DeepEqual(ms, g.members) {
						t.Errorf("BTF %s: %d bytes %v, want %d bytes %v", v.Name, v.Size, ms, g.size, g.members)
					}
				}
			}
			walk(m.Value)
			if name == "debug" {
				walk(spec.Maps["port_debug"].Value)
			}
			for n := range golden {
				if !seen[n] && (n != "port_debug" || name == "debug") {
					t.Errorf("struct %s not found in the BTF", n)
				}
			}
			if st := spec.Maps["port_stats"]; st == nil || st.Type != ebpf.PerCPUArray || st.ValueSize != 8 || st.MaxEntries != numStats {
				t.Errorf("port_stats is %+v, want a per-CPU array of %d u64", st, numStats)
			}
			if up := spec.Maps["port_uplink"]; up == nil || up.Type != ebpf.DevMap || up.MaxEntries != 1 {
				t.Errorf("port_uplink is %+v, want a one-entry DEVMAP", up)
			}
			if x := spec.Maps["port_xsks"]; x == nil || x.Type != ebpf.XSKMap || x.KeySize != 4 || x.ValueSize != 4 || x.MaxEntries != MaxQueues {
				t.Errorf("port_xsks is %+v, want an XSKMAP of %d entries", x, MaxQueues)
			}
			var hasMagic bool
			for _, ins := range spec.Programs["vrss_port"].Instructions {
				hasMagic = hasMagic || ins.Constant == Magic
			}
			if !hasMagic {
				t.Errorf("the program never uses Magic %#x: PORT_MAGIC changed?", uint32(Magic))
			}
		})
	}
}

// TestSlotBytes checks what Publish writes for a known policy, word by
// word, as the program loads it: MACs and addresses as little-endian words
// of their bytes in network order, rules as their touched key words.
func TestSlotBytes(t *testing.T) {
	var c configLayout
	pol := BenchPolicy()
	pol.IPv4 = append(pol.IPv4, netip.MustParsePrefix("198.51.100.0/24"))
	pol.IPv6 = []netip.Prefix{netip.MustParsePrefix("2001:db8::/32")}
	pol.LinkLocal = true
	pol.Uplink = "eth0"
	fillSlot(&c, 1, &pol, nil, 7)
	s := c.Slot[1]
	for _, x := range []struct {
		name      string
		got, want uint64
	}{
		{"tag", s.Tag, 7},
		{"nmacs", uint64(s.Nmacs), 1},
		{"mac 52:54:00:ab:cd:ef", s.Mac[0], 0x0000_efcd_ab00_5452},
		{"nv4", uint64(s.Nv4), 2},
		{"192.0.2.10", uint64(s.V4[0].Addr), 0x0a02_00c0},
		{"/32", uint64(s.V4[0].Mask), 0xffff_ffff},
		{"198.51.100.0", uint64(s.V4[1].Addr), 0x0064_33c6},
		{"/24", uint64(s.V4[1].Mask), 0x00ff_ffff},
		{"nv6 (one prefix, one link-local address)", uint64(s.Nv6), 2},
		{"2001:db8:: word 0", uint64(s.V6[0].Addr[0]), 0xb80d_0120},
		{"/32 word 0", uint64(s.V6[0].Mask[0]), 0xffff_ffff},
		{"/32 word 1", uint64(s.V6[0].Mask[1]), 0},
		{"fe80::5054:ff:feab:cdef word 0", uint64(s.V6[1].Addr[0]), 0x0000_80fe},
		{"link-local word 2", uint64(s.V6[1].Addr[2]), 0xff00_5450},
		{"link-local word 3", uint64(s.V6[1].Addr[3]), 0xefcd_abfe},
		{"nrules", uint64(s.Nrules), 10},
		{"default deny", uint64(s.Dflt), uint64(port.DefaultDeny)},
		{"mode: uplink", uint64(s.Mode), modeUplink},
		{"queue_start", uint64(s.QueueStart), 0},
		{"queues", uint64(s.Queues), 0},
		// Rule 9: allow IPv4 TCP to port 443.
		{"rule 9 reason", uint64(s.Rule[9].Reason), uint64(port.ACLAllow)},
		{"rule 9 terms", uint64(s.Rule[9].Nterms), 2},
		{"rule 9 term 0 word (EtherType, flags, protocol)", uint64(s.Rule[9].Term[0].Word), 3},
		{"rule 9 term 1 word (ports)", uint64(s.Rule[9].Term[1].Word), 13},
		{"rule 9 term 1 mask (destination port)", uint64(s.Rule[9].Term[1].Mask), 0xffff_0000},
		{"rule 9 term 1 value (443)", uint64(s.Rule[9].Term[1].Value), 0xbb01_0000},
	} {
		if x.got != x.want {
			t.Errorf("%s: %#x, want %#x", x.name, x.got, x.want)
		}
	}
	// The EtherType and protocol bytes of term 0, whatever flags the
	// match's normalization added.
	if m, v := s.Rule[9].Term[0].Mask, s.Rule[9].Term[0].Value; m&0xff00_ffff != 0xff00_ffff || v&0xff00_ffff != 0x0600_0008 {
		t.Errorf("rule 9 term 0: mask %#x value %#x, want EtherType 0x0800 and protocol 6 under a full mask", m, v)
	}
}

// TestSlotModes checks the mode and queue range each kind of port's slot
// gets, the same slot filled again for another kind: a TAP's (the stack,
// or the uplink its policy names) and an AF_XDP port's.
func TestSlotModes(t *testing.T) {
	var c configLayout
	pol := BenchPolicy()
	for _, x := range []struct {
		uplink               string
		q                    *Queues
		mode, start, nqueues uint32
	}{{"", &Queues{Start: 3, Count: 5}, modeXSK, 3, 5}, {"eth0", nil, modeUplink, 0, 0}, {"", nil, modeStack, 0, 0}, {"", &Queues{Start: 0, Count: MaxQueues}, modeXSK, 0, MaxQueues}} {
		pol.Uplink = x.uplink
		fillSlot(&c, 0, &pol, x.q, 1)
		if s := c.Slot[0]; s.Mode != x.mode || s.QueueStart != x.start || s.Queues != x.nqueues {
			t.Errorf("uplink %q, queues %v: mode %d, queues %d+%d; want %d, %d+%d", x.uplink, x.q, s.Mode, s.QueueStart, s.Queues, x.mode, x.start, x.nqueues)
		}
	}
}

// TestQueuesValidate: an AF_XDP port has at least one queue, all of them
// below MaxQueues, and a policy without an uplink.
func TestQueuesValidate(t *testing.T) {
	for _, x := range []struct {
		q  Queues
		ok bool
	}{{Queues{0, 1}, true}, {Queues{1, 2}, true}, {Queues{255, 1}, true}, {Queues{0, 256}, true}, {Queues{0, 0}, false}, {Queues{-1, 2}, false}, {Queues{255, 2}, false}, {Queues{3, -1}, false}} {
		if err := x.q.Validate(); (err == nil) != x.ok {
			t.Errorf("%+v: %v", x.q, err)
		}
	}
	var p Publisher // closed: the checks come first
	pol := BenchPolicy()
	pol.Uplink = "eth0"
	if err := p.PublishXSK(pol, Queues{0, 1}); err == nil || !strings.Contains(err.Error(), "uplink") {
		t.Errorf("a policy with an uplink for an AF_XDP port: %v", err)
	}
}
