package steering

import (
	"reflect"
	"testing"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"github.com/vrss-dev/vrss/flow"
)

// The flow build's map (bpf/flowmap.h), written out by hand: a VMM built
// from one version of vrss publishes into a map loaded by another.
const (
	goldenFlowConfigSize = 999024
	goldenFlows0         = 205360
	goldenFlowsSize      = 396832
)

var goldenFlows = []field{
	{"seed", 0, 4, "u32"},
	{"npatterns", 4, 4, "u32"},
	{"nrules", 8, 4, "u32"},
	{"ngroups", 12, 4, "u32"},
	{"has_drop", 16, 4, "u32"},
	{"next_counter", 20, 4, "u32"},
	{"pad", 24, 8, "u32[2]"},
	{"group", 32, 64 * 8, "struct vrss_group[64]"},
	{"pattern", 544, 16 * 120, "struct vrss_pattern[16]"},
	{"context", 2464, 8 * 5200, "struct vrss_context[8]"},
	{"index", 44064, 16384 * 2, "u16[16384]"},
	{"heap", 76832, 80000 * 4, "u32[80000]"},
}

var goldenPattern = []field{
	{"mask", 0, 64, "u32[16]"},
	{"words", 64, 16, "u8[16]"},
	{"cmask", 80, 16, "u32[4]"},
	{"nwords", 96, 4, "u32"},
	{"min_rank", 100, 4, "u32"},
	{"heap_start", 104, 4, "u32"},
	{"nrules", 108, 4, "u32"},
	{"stride", 112, 4, "u32"},
	{"pad", 116, 4, "u32"},
}

var goldenContext = []field{
	{"valid", 0, 4, "u32"},
	{"hash_types", 4, 4, "u32"},
	{"table_mask", 8, 4, "u32"},
	{"unclassified_queue", 12, 2, "u16"},
	{"key_len", 14, 2, "u16"},
	{"key", 16, 64, "u8[64]"},
	{"nibble", 80, 72 * 16 * 4, "u32[72][16]"},
	{"table", 4688, 256 * 2, "u16[256]"},
}

// TestFlowLayout checks the flow build's map against the golden layout, in
// the BTF of both flow objects and in the Go type bpf2go generated, and
// that its first part is the plain build's map, which Publisher lays over
// it.
func TestFlowLayout(t *testing.T) {
	var c flowLayout
	if FlowConfigSize != goldenFlowConfigSize || FlowConfigSize%8 != 0 {
		t.Errorf("FlowConfigSize %d, want %d", FlowConfigSize, goldenFlowConfigSize)
	}
	if off := int(unsafe.Offsetof(c.Flows)); off != goldenFlows0 || ConfigSize != goldenFlows0 {
		t.Errorf("flows[0] at %d, want %d (= ConfigSize %d)", off, goldenFlows0, ConfigSize)
	}
	if n := int(unsafe.Sizeof(c.Flows[0])); n != goldenFlowsSize {
		t.Errorf("struct vrss_flows is %d bytes, want %d", n, goldenFlowsSize)
	}
	if !reflect.TypeOf(c.Base).ConvertibleTo(reflect.TypeOf(configLayout{})) {
		t.Error("the flow map's base differs from the plain map")
	}
	if MapBytes(true) > 1_000_000 {
		t.Errorf("a flow TAP locks %d bytes, over 1,000,000", MapBytes(true))
	}
	f := &c.Flows[0]
	if len(f.Heap) != flow.MaxRuleWords || len(f.Index) != IndexLen || len(f.Pattern) != flow.MaxPatterns ||
		len(f.Group) != flow.MaxGroups || len(f.Context) != flow.MaxContexts || len(f.Context[0].Table) != flow.MaxContextTable || len(f.Context[0].Key) != flow.MaxContextKey {
		t.Error("the map's array bounds differ from package flow's limits")
	}
	for _, v := range []struct {
		name string
		load func() (*ebpf.CollectionSpec, error)
	}{{"flows", loadVrssflow}, {"flowsdebug", loadVrssflowdebug}} {
		t.Run(v.name, func(t *testing.T) {
			spec, err := v.load()
			if err != nil {
				t.Fatal(err)
			}
			m := spec.Maps["vrss_config"]
			if m == nil || int(m.ValueSize) != FlowConfigSize {
				t.Fatalf("vrss_config %+v, want value size %d", m, FlowConfigSize)
			}
			cfg := btf.UnderlyingType(m.Value).(*btf.Struct)
			flows := btf.UnderlyingType(btf.UnderlyingType(cfg.Members[1].Type).(*btf.Array).Type).(*btf.Struct)
			compareFields(t, "BTF vrss_flows", btfFields(t, flows), goldenFlows)
			for _, mem := range flows.Members {
				arr, ok := btf.UnderlyingType(mem.Type).(*btf.Array)
				if !ok {
					continue
				}
				if st, ok := btf.UnderlyingType(arr.Type).(*btf.Struct); ok {
					switch st.Name {
					case "vrss_pattern":
						compareFields(t, "BTF vrss_pattern", btfFields(t, st), goldenPattern)
					case "vrss_context":
						compareFields(t, "BTF vrss_context", btfFields(t, st), goldenContext)
					}
				}
			}
			st := spec.Maps["vrss_flow_stats"]
			if st == nil || st.Type != ebpf.PerCPUArray || st.MaxEntries != numFlowStats {
				t.Errorf("vrss_flow_stats is %+v, want a per-CPU array of %d", st, numFlowStats)
			}
		})
	}
}
