package ethtool

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"testing"
)

// model is a device whose driver has RSS contexts and ntuple rules, as
// the kernel's ethtool core and such a driver behave (net/ethtool/ioctl.c:
// context ids from 1, the table must have the device's size and name
// queues below the ring count, a context that rules use cannot be
// deleted). It is a model of the success path, which no NIC on the test
// machines can run; it proves Slice's bookkeeping, not a driver.
type model struct {
	rings, tableSize int
	special          bool   // LocAny works
	ruleSlots        uint32 // rule table size
	contexts         map[uint32][]uint32
	rules            map[uint32]Rule
	next             uint32
	calls            []string
	fail             map[string]error // op#n (1-based) -> refusal
	count            map[string]int
}

func newModel() *model {
	return &model{rings: 8, tableSize: 128, special: true, ruleSlots: 16,
		contexts: map[uint32][]uint32{}, rules: map[uint32]Rule{}, next: 1,
		fail: map[string]error{}, count: map[string]int{}}
}

func refusal(kind error, op string) error {
	return &Error{Op: op, Cmd: "model", Device: "m0", Kind: kind, Err: fmt.Errorf("model: %v", kind)}
}

// step counts a call of op and returns the refusal injected for it.
func (m *model) step(op string) error {
	m.count[op]++
	m.calls = append(m.calls, op)
	return m.fail[fmt.Sprintf("%s#%d", op, m.count[op])]
}

func (m *model) Name() string { return "m0" }

func (m *model) Rings() (int, error) {
	if err := m.step("Rings"); err != nil {
		return 0, err
	}
	return m.rings, nil
}

func (m *model) RSS(ctx uint32) (Rxfh, error) {
	if err := m.step("RSS"); err != nil {
		return Rxfh{}, err
	}
	if ctx == 0 {
		return Rxfh{Cmd: CmdGetRSS, IndirSize: uint32(m.tableSize), KeySize: 40, Table: EqualTable(m.tableSize, 0, m.rings)}, nil
	}
	t, ok := m.contexts[ctx]
	if !ok {
		return Rxfh{}, refusal(ErrNotFound, "rss")
	}
	return Rxfh{Cmd: CmdGetRSS, Context: ctx, IndirSize: uint32(len(t)), Table: slices.Clone(t)}, nil
}

func (m *model) CreateContext(table []uint32, key []byte) (uint32, error) {
	if err := m.step("CreateContext"); err != nil {
		return 0, err
	}
	if len(table) != m.tableSize || (key != nil && len(key) != 40) {
		return 0, refusal(ErrInvalid, "create")
	}
	for _, q := range table {
		if int(q) >= m.rings {
			return 0, refusal(ErrInvalid, "create")
		}
	}
	id := m.next
	m.next++
	m.contexts[id] = slices.Clone(table)
	return id, nil
}

func (m *model) DeleteContext(ctx uint32) error {
	if err := m.step("DeleteContext"); err != nil {
		return err
	}
	if _, ok := m.contexts[ctx]; !ok {
		return refusal(ErrNotFound, "delete context")
	}
	for _, r := range m.rules {
		if r.Type&FlowRSS != 0 && r.Context == ctx {
			return refusal(ErrBusy, "delete context")
		}
	}
	delete(m.contexts, ctx)
	return nil
}

func (m *model) AddRule(r Rule) (uint32, error) {
	if err := m.step("AddRule"); err != nil {
		return 0, err
	}
	if r.Type&FlowRSS != 0 {
		if _, ok := m.contexts[r.Context]; !ok || r.Queue != 0 {
			return 0, refusal(ErrInvalid, "add rule")
		}
	}
	loc := r.Location
	if loc == LocAny {
		if !m.special {
			return 0, refusal(ErrInvalid, "add rule")
		}
		for loc = 0; loc < m.ruleSlots; loc++ {
			if _, used := m.rules[loc]; !used {
				break
			}
		}
	}
	if loc >= m.ruleSlots {
		return 0, refusal(ErrNoSpace, "add rule")
	}
	r.Location = loc
	m.rules[loc] = r
	return loc, nil
}

func (m *model) DeleteRule(loc uint32) error {
	if err := m.step("DeleteRule"); err != nil {
		return err
	}
	if _, ok := m.rules[loc]; !ok {
		return refusal(ErrNotFound, "delete rule")
	}
	delete(m.rules, loc)
	return nil
}

func (m *model) RuleTable() (RuleTable, error) {
	if err := m.step("RuleTable"); err != nil {
		return RuleTable{}, err
	}
	return RuleTable{Size: m.ruleSlots, Special: m.special, Locations: slices.Collect(maps.Keys(m.rules))}, nil
}

func (m *model) Rule(loc uint32) (Rule, error) {
	if err := m.step("Rule"); err != nil {
		return Rule{}, err
	}
	r, ok := m.rules[loc]
	if !ok {
		return Rule{}, refusal(ErrNotFound, "rule")
	}
	return r, nil
}

var guest = []netip.Prefix{netip.MustParsePrefix("10.0.0.2/32"), netip.MustParsePrefix("fd00:1::/64")}

func TestSliceOnModel(t *testing.T) {
	for _, special := range []bool{true, false} {
		t.Run(fmt.Sprint("special locations ", special), func(t *testing.T) {
			m := newModel()
			m.special = special
			m.rules[0] = Rule{Type: TCPv4Flow, Queue: 1} // someone else's rule at 0
			var steps []SliceState
			st, err := Slice(m, SliceSpec{QueueStart: 4, Queues: 2, Prefixes: guest, Progress: func(s SliceState) { steps = append(steps, s) }})
			if err != nil {
				t.Fatal(err)
			}
			want := SliceState{Device: "m0", Context: 1, QueueStart: 4, Queues: 2, Rules: []uint32{1, 2}}
			if !reflect.DeepEqual(st, want) {
				t.Fatalf("Slice: %+v, want %+v", st, want)
			}
			if !reflect.DeepEqual(m.contexts[1], EqualTable(128, 4, 2)) {
				t.Errorf("context table %v", m.contexts[1])
			}
			r4 := m.rules[1]
			if r4.Type != IPv4UserFlow|FlowRSS || r4.Context != 1 || r4.Dst != netip.MustParseAddr("10.0.0.2") || r4.DstMask != netip.MustParseAddr("255.255.255.255") || r4.Queue != 0 {
				t.Errorf("IPv4 rule %+v", r4)
			}
			r6 := m.rules[2]
			if r6.Type != IPv6UserFlow|FlowRSS || r6.Dst != netip.MustParseAddr("fd00:1::") || r6.DstMask != netip.MustParseAddr("ffff:ffff:ffff:ffff::") {
				t.Errorf("IPv6 rule %+v", r6)
			}
			// Each created object was recorded before the next step.
			wantSteps := []SliceState{
				{Device: "m0", Context: 1, QueueStart: 4, Queues: 2},
				{Device: "m0", Context: 1, QueueStart: 4, Queues: 2, Rules: []uint32{1}},
				want,
			}
			if !reflect.DeepEqual(steps, wantSteps) {
				t.Errorf("progress %+v, want %+v", steps, wantSteps)
			}

			found, err := Sliced(m)
			if err != nil || !reflect.DeepEqual(found, []SliceState{want}) {
				t.Errorf("Sliced: %+v, %v, want %+v", found, err, want)
			}
			if o := Orphans(found, []SliceState{want}); len(o) != 0 {
				t.Errorf("Orphans with the state known: %+v", o)
			}
			if o := Orphans(found, nil); !reflect.DeepEqual(o, []SliceState{want}) {
				t.Errorf("Orphans with nothing known: %+v", o)
			}

			if err := Unslice(m, st); err != nil {
				t.Fatal(err)
			}
			if len(m.contexts) != 0 || len(m.rules) != 1 {
				t.Errorf("after Unslice: contexts %v, rules %v", m.contexts, m.rules)
			}
			if err := Unslice(m, st); err != nil {
				t.Errorf("Unslice twice: %v (what is gone counts as removed)", err)
			}
		})
	}
}

// Whichever step fails, Slice returns that refusal and leaves the model
// as it found it.
func TestSliceUndoes(t *testing.T) {
	for _, step := range []string{"Rings#1", "RSS#1", "CreateContext#1", "RuleTable#1", "AddRule#1", "RuleTable#2", "AddRule#2"} {
		for _, kind := range []error{ErrNotSupported, ErrInvalid, ErrNoSpace} {
			m := newModel()
			m.fail[step] = refusal(kind, step)
			var last SliceState
			st, err := Slice(m, SliceSpec{QueueStart: 0, Queues: 8, Prefixes: guest, Progress: func(s SliceState) { last = s }})
			if !errors.Is(err, kind) {
				t.Errorf("%s fails with %v: Slice returned %v", step, kind, err)
			}
			if !reflect.DeepEqual(st, SliceState{}) || len(m.contexts) != 0 || len(m.rules) != 0 {
				t.Errorf("%s fails: state %+v, contexts %v, rules %v left", step, st, m.contexts, m.rules)
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
	m := newModel()
	m.fail["AddRule#2"] = refusal(ErrNoSpace, "add")
	m.fail["DeleteRule#1"] = refusal(ErrPermission, "delete")
	var last SliceState
	_, err := Slice(m, SliceSpec{QueueStart: 2, Queues: 2, Prefixes: guest, Progress: func(s SliceState) { last = s }})
	if !errors.Is(err, ErrNoSpace) || !errors.Is(err, ErrPermission) {
		t.Fatalf("Slice: %v, want the refusal and the undo failure", err)
	}
	if last.Context != 1 || !reflect.DeepEqual(last.Rules, []uint32{0}) {
		t.Errorf("last record %+v, want context 1 and rule 0 left", last)
	}
	if len(m.contexts) != 1 || len(m.rules) != 1 {
		t.Errorf("model: contexts %v, rules %v", m.contexts, m.rules)
	}
	// What the record says is what a later Unslice removes.
	if err := Unslice(m, last); err != nil || len(m.contexts) != 0 || len(m.rules) != 0 {
		t.Errorf("Unslice of the record: %v, contexts %v, rules %v", err, m.contexts, m.rules)
	}
}

func TestSliceRefusesBeforeAnyChange(t *testing.T) {
	for name, spec := range map[string]SliceSpec{
		"no queues":         {QueueStart: 0, Queues: 0, Prefixes: guest},
		"beyond the rings":  {QueueStart: 6, Queues: 4, Prefixes: guest},
		"no prefix":         {QueueStart: 0, Queues: 2},
		"default route":     {QueueStart: 0, Queues: 2, Prefixes: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}},
		"IPv4-mapped":       {QueueStart: 0, Queues: 2, Prefixes: []netip.Prefix{netip.MustParsePrefix("::ffff:10.0.0.2/128")}},
		"invalid prefix":    {QueueStart: 0, Queues: 2, Prefixes: []netip.Prefix{{}}},
		"negative start":    {QueueStart: -1, Queues: 2, Prefixes: guest},
		"key of wrong size": {QueueStart: 0, Queues: 2, Prefixes: guest, Key: []byte{1}},
	} {
		m := newModel()
		_, err := Slice(m, SliceSpec{QueueStart: spec.QueueStart, Queues: spec.Queues, Prefixes: spec.Prefixes, Key: spec.Key})
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
		if len(m.contexts) != 0 || len(m.rules) != 0 {
			t.Errorf("%s: left contexts %v, rules %v", name, m.contexts, m.rules)
		}
	}
}

func TestUnsliceBusyContext(t *testing.T) {
	m := newModel()
	st, err := Slice(m, SliceSpec{QueueStart: 0, Queues: 2, Prefixes: guest[:1]})
	if err != nil {
		t.Fatal(err)
	}
	// Someone else's rule into the same context: the context stays.
	m.rules[9] = Rule{Type: TCPv4Flow | FlowRSS, Context: st.Context, Location: 9}
	if err := Unslice(m, st); !errors.Is(err, ErrBusy) {
		t.Errorf("Unslice: %v, want ErrBusy", err)
	}
	if _, ok := m.rules[st.Rules[0]]; ok || len(m.contexts) != 1 {
		t.Errorf("after Unslice: rules %v, contexts %v: want our rule gone, the context kept", m.rules, m.contexts)
	}
	// Sliced finds the stranger's rule, and Orphans reports it.
	found, err := Sliced(m)
	if err != nil || len(found) != 1 || !reflect.DeepEqual(found[0].Rules, []uint32{9}) {
		t.Fatalf("Sliced: %+v, %v", found, err)
	}
	if o := Orphans(found, []SliceState{{Device: "m0", Context: st.Context}}); len(o) != 1 || o[0].Context != 0 || !reflect.DeepEqual(o[0].Rules, []uint32{9}) {
		t.Errorf("Orphans: %+v, want rule 9 without the known context", o)
	}
}

func TestDestinationRule(t *testing.T) {
	r, err := DestinationRule(netip.MustParsePrefix("192.0.2.77/24"), 3, 11)
	want := Rule{Type: IPv4UserFlow | FlowRSS, Dst: netip.MustParseAddr("192.0.2.0"), DstMask: netip.MustParseAddr("255.255.255.0"), Context: 3, Location: 11}
	if err != nil || !reflect.DeepEqual(r, want) {
		t.Errorf("DestinationRule: %+v, %v, want %+v", r, err, want)
	}
	// It encodes.
	if _, err := (Rxnfc{Cmd: CmdInsertRule, Rule: r}).MarshalBinary(); err != nil {
		t.Error(err)
	}
}

func TestFreeLocation(t *testing.T) {
	for _, c := range []struct {
		t    RuleTable
		want uint32
		err  error
	}{
		{RuleTable{Special: true, Size: 2, Locations: []uint32{0, 1}}, LocAny, nil},
		{RuleTable{Size: 3, Locations: []uint32{0, 2}}, 1, nil},
		{RuleTable{Size: 2, Locations: []uint32{1, 0}}, 0, ErrNoSpace},
		{RuleTable{}, 0, ErrNoSpace},
	} {
		got, err := c.t.FreeLocation()
		if got != c.want || !errors.Is(err, c.err) {
			t.Errorf("%+v: %d, %v, want %d, %v", c.t, got, err, c.want, c.err)
		}
	}
}
