package ethtool_test

import (
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"testing"

	"github.com/vrss-dev/vrss/ethtool"
	"github.com/vrss-dev/vrss/ethtool/ethtooltest"
)

// The model of a capable driver is ethtooltest.Model, shared with vrssd's
// --slice tests.

var guest = []netip.Prefix{netip.MustParsePrefix("10.0.0.2/32"), netip.MustParsePrefix("fd00:1::/64")}

func TestSliceOnModel(t *testing.T) {
	for _, special := range []bool{true, false} {
		t.Run(fmt.Sprint("special locations ", special), func(t *testing.T) {
			m := ethtooltest.NewModel()
			m.Special = special
			m.Rules[0] = ethtool.Rule{Type: ethtool.TCPv4Flow, Queue: 1} // someone else's rule at 0
			var steps []ethtool.SliceState
			st, err := ethtool.Slice(m, ethtool.SliceSpec{QueueStart: 4, Queues: 2, Prefixes: guest, Progress: func(s ethtool.SliceState) { steps = append(steps, s) }})
			if err != nil {
				t.Fatal(err)
			}
			want := ethtool.SliceState{Device: "m0", Context: 1, QueueStart: 4, Queues: 2, Rules: []uint32{1, 2}}
			if !reflect.DeepEqual(st, want) {
				t.Fatalf("Slice: %+v, want %+v", st, want)
			}
			if !reflect.DeepEqual(m.Contexts[1], ethtool.EqualTable(128, 4, 2)) {
				t.Errorf("context table %v", m.Contexts[1])
			}
			r4 := m.Rules[1]
			if r4.Type != ethtool.IPv4UserFlow|ethtool.FlowRSS || r4.Context != 1 || r4.Dst != netip.MustParseAddr("10.0.0.2") || r4.DstMask != netip.MustParseAddr("255.255.255.255") || r4.Queue != 0 {
				t.Errorf("IPv4 rule %+v", r4)
			}
			r6 := m.Rules[2]
			if r6.Type != ethtool.IPv6UserFlow|ethtool.FlowRSS || r6.Dst != netip.MustParseAddr("fd00:1::") || r6.DstMask != netip.MustParseAddr("ffff:ffff:ffff:ffff::") {
				t.Errorf("IPv6 rule %+v", r6)
			}
			// Each created object was recorded before the next step.
			wantSteps := []ethtool.SliceState{
				{Device: "m0", Context: 1, QueueStart: 4, Queues: 2},
				{Device: "m0", Context: 1, QueueStart: 4, Queues: 2, Rules: []uint32{1}},
				want,
			}
			if !reflect.DeepEqual(steps, wantSteps) {
				t.Errorf("progress %+v, want %+v", steps, wantSteps)
			}

			found, err := ethtool.Sliced(m)
			if err != nil || !reflect.DeepEqual(found, []ethtool.SliceState{want}) {
				t.Errorf("Sliced: %+v, %v, want %+v", found, err, want)
			}
			if o := ethtool.Orphans(found, []ethtool.SliceState{want}); len(o) != 0 {
				t.Errorf("Orphans with the state known: %+v", o)
			}
			if o := ethtool.Orphans(found, nil); !reflect.DeepEqual(o, []ethtool.SliceState{want}) {
				t.Errorf("Orphans with nothing known: %+v", o)
			}

			if err := ethtool.Unslice(m, st); err != nil {
				t.Fatal(err)
			}
			if len(m.Contexts) != 0 || len(m.Rules) != 1 {
				t.Errorf("after ethtool.Unslice: contexts %v, rules %v", m.Contexts, m.Rules)
			}
			if err := ethtool.Unslice(m, st); err != nil {
				t.Errorf("Unslice twice: %v (what is gone counts as removed)", err)
			}
		})
	}
}

// Whichever step fails, ethtool.Slice returns that refusal and leaves the model
// as it found it.
func TestSliceUndoes(t *testing.T) {
	for _, step := range []string{"Rings#1", "RSS#1", "CreateContext#1", "RuleTable#1", "AddRule#1", "RuleTable#2", "AddRule#2"} {
		for _, kind := range []error{ethtool.ErrNotSupported, ethtool.ErrInvalid, ethtool.ErrNoSpace} {
			m := ethtooltest.NewModel()
			m.Fail[step] = ethtooltest.Refusal(kind, step)
			var last ethtool.SliceState
			st, err := ethtool.Slice(m, ethtool.SliceSpec{QueueStart: 0, Queues: 8, Prefixes: guest, Progress: func(s ethtool.SliceState) { last = s }})
			if !errors.Is(err, kind) {
				t.Errorf("%s fails with %v: ethtool.Slice returned %v", step, kind, err)
			}
			if !reflect.DeepEqual(st, ethtool.SliceState{}) || len(m.Contexts) != 0 || len(m.Rules) != 0 {
				t.Errorf("%s fails: state %+v, contexts %v, rules %v left", step, st, m.Contexts, m.Rules)
			}
			if last.Context != 0 || len(last.Rules) != 0 {
				t.Errorf("%s fails: last record %+v, want nothing left", step, last)
			}
		}
	}
}

// A failure to undo is reported with the refusal, and the last record
// says what is left.
func TestSliceUndoFails(t *testing.T) {
	m := ethtooltest.NewModel()
	m.Fail["AddRule#2"] = ethtooltest.Refusal(ethtool.ErrNoSpace, "add")
	m.Fail["DeleteRule#1"] = ethtooltest.Refusal(ethtool.ErrPermission, "delete")
	var last ethtool.SliceState
	_, err := ethtool.Slice(m, ethtool.SliceSpec{QueueStart: 2, Queues: 2, Prefixes: guest, Progress: func(s ethtool.SliceState) { last = s }})
	if !errors.Is(err, ethtool.ErrNoSpace) || !errors.Is(err, ethtool.ErrPermission) {
		t.Fatalf("Slice: %v, want the refusal and the undo failure", err)
	}
	if last.Context != 1 || !reflect.DeepEqual(last.Rules, []uint32{0}) {
		t.Errorf("last record %+v, want context 1 and rule 0 left", last)
	}
	if len(m.Contexts) != 1 || len(m.Rules) != 1 {
		t.Errorf("model: contexts %v, rules %v", m.Contexts, m.Rules)
	}
	// What the record says is what a later ethtool.Unslice removes.
	if err := ethtool.Unslice(m, last); err != nil || len(m.Contexts) != 0 || len(m.Rules) != 0 {
		t.Errorf("Unslice of the record: %v, contexts %v, rules %v", err, m.Contexts, m.Rules)
	}
}

func TestSliceRefusesBeforeAnyChange(t *testing.T) {
	for name, spec := range map[string]ethtool.SliceSpec{
		"no queues":         {QueueStart: 0, Queues: 0, Prefixes: guest},
		"beyond the rings":  {QueueStart: 6, Queues: 4, Prefixes: guest},
		"no prefix":         {QueueStart: 0, Queues: 2},
		"default route":     {QueueStart: 0, Queues: 2, Prefixes: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}},
		"IPv4-mapped":       {QueueStart: 0, Queues: 2, Prefixes: []netip.Prefix{netip.MustParsePrefix("::ffff:10.0.0.2/128")}},
		"invalid prefix":    {QueueStart: 0, Queues: 2, Prefixes: []netip.Prefix{{}}},
		"negative start":    {QueueStart: -1, Queues: 2, Prefixes: guest},
		"key of wrong size": {QueueStart: 0, Queues: 2, Prefixes: guest, Key: []byte{1}},
	} {
		m := ethtooltest.NewModel()
		_, err := ethtool.Slice(m, ethtool.SliceSpec{QueueStart: spec.QueueStart, Queues: spec.Queues, Prefixes: spec.Prefixes, Key: spec.Key})
		if !errors.Is(err, ethtool.ErrInvalid) {
			t.Errorf("%s: %v, want ethtool.ErrInvalid", name, err)
		}
		if len(m.Contexts) != 0 || len(m.Rules) != 0 {
			t.Errorf("%s: left contexts %v, rules %v", name, m.Contexts, m.Rules)
		}
	}
}

func TestUnsliceBusyContext(t *testing.T) {
	m := ethtooltest.NewModel()
	st, err := ethtool.Slice(m, ethtool.SliceSpec{QueueStart: 0, Queues: 2, Prefixes: guest[:1]})
	if err != nil {
		t.Fatal(err)
	}
	// Someone else's rule into the same context: the context stays.
	m.Rules[9] = ethtool.Rule{Type: ethtool.TCPv4Flow | ethtool.FlowRSS, Context: st.Context, Location: 9}
	if err := ethtool.Unslice(m, st); !errors.Is(err, ethtool.ErrBusy) {
		t.Errorf("Unslice: %v, want ethtool.ErrBusy", err)
	}
	if _, ok := m.Rules[st.Rules[0]]; ok || len(m.Contexts) != 1 {
		t.Errorf("after ethtool.Unslice: rules %v, contexts %v: want our rule gone, the context kept", m.Rules, m.Contexts)
	}
	// ethtool.Sliced finds the stranger's rule, and ethtool.Orphans reports it.
	found, err := ethtool.Sliced(m)
	if err != nil || len(found) != 1 || !reflect.DeepEqual(found[0].Rules, []uint32{9}) {
		t.Fatalf("Sliced: %+v, %v", found, err)
	}
	if o := ethtool.Orphans(found, []ethtool.SliceState{{Device: "m0", Context: st.Context}}); len(o) != 1 || o[0].Context != 0 || !reflect.DeepEqual(o[0].Rules, []uint32{9}) {
		t.Errorf("Orphans: %+v, want rule 9 without the known context", o)
	}
}

func TestDestinationRule(t *testing.T) {
	r, err := ethtool.DestinationRule(netip.MustParsePrefix("192.0.2.77/24"), 3, 11)
	want := ethtool.Rule{Type: ethtool.IPv4UserFlow | ethtool.FlowRSS, Dst: netip.MustParseAddr("192.0.2.0"), DstMask: netip.MustParseAddr("255.255.255.0"), Context: 3, Location: 11}
	if err != nil || !reflect.DeepEqual(r, want) {
		t.Errorf("DestinationRule: %+v, %v, want %+v", r, err, want)
	}
	// It encodes.
	if _, err := (ethtool.Rxnfc{Cmd: ethtool.CmdInsertRule, Rule: r}).MarshalBinary(); err != nil {
		t.Error(err)
	}
}

func TestFreeLocation(t *testing.T) {
	for _, c := range []struct {
		t    ethtool.RuleTable
		want uint32
		err  error
	}{
		{ethtool.RuleTable{Special: true, Size: 2, Locations: []uint32{0, 1}}, ethtool.LocAny, nil},
		{ethtool.RuleTable{Size: 3, Locations: []uint32{0, 2}}, 1, nil},
		{ethtool.RuleTable{Size: 2, Locations: []uint32{1, 0}}, 0, ethtool.ErrNoSpace},
		{ethtool.RuleTable{}, 0, ethtool.ErrNoSpace},
	} {
		got, err := c.t.FreeLocation()
		if got != c.want || !errors.Is(err, c.err) {
			t.Errorf("%+v: %d, %v, want %d, %v", c.t, got, err, c.want, c.err)
		}
	}
}
