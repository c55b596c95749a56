package virtio

import (
	"bytes"
	"encoding"
	"errors"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"testing"

	"github.com/vrss-dev/vrss/flow"
	"github.com/vrss-dev/vrss/internal/frame"
	"github.com/vrss-dev/vrss/rss"
)

// Admin command builders for the tests.

func mustMarshal(v encoding.BinaryMarshaler) []byte {
	b, err := v.MarshalBinary()
	if err != nil {
		panic(err)
	}
	return b
}

// acmd returns a self-group admin command with opcode op and data.
func acmd(op uint16, data ...[]byte) []byte {
	c := AdminCmd{Opcode: op, Data: bytes.Join(data, nil)}
	return mustMarshal(&c)
}

func capGet(id uint16) []byte { return acmd(AdminCmdDeviceCapGet, mustMarshal(&CapData{ID: id})) }

func capSet(id uint16, v encoding.BinaryMarshaler) []byte {
	return acmd(AdminCmdDriverCapSet, mustMarshal(&CapData{ID: id, Data: mustMarshal(v)}))
}

func objCmd(op, typ uint16, id uint32, obj encoding.BinaryMarshaler) []byte {
	c := ResourceObjCmd{ResourceObjHeader: ResourceObjHeader{Type: typ, ID: id}}
	if obj != nil {
		c.Data = mustMarshal(obj)
	}
	return acmd(op, mustMarshal(&c))
}

func create(typ uint16, id uint32, obj encoding.BinaryMarshaler) []byte {
	return objCmd(AdminCmdResourceObjCreate, typ, id, obj)
}

func modify(typ uint16, id uint32, obj encoding.BinaryMarshaler) []byte {
	return objCmd(AdminCmdResourceObjModify, typ, id, obj)
}

func query(typ uint16, id uint32) []byte { return objCmd(AdminCmdResourceObjQuery, typ, id, nil) }

func destroy(typ uint16, id uint32) []byte {
	return acmd(AdminCmdResourceObjDestroy, mustMarshal(&ResourceObjHeader{Type: typ, ID: id}))
}

// listUseAll enables every opcode the device supports.
var listUseAll = acmd(AdminCmdListUse, unhex("83 3f 00 00 00 00 00 00"))

// Result headers of the statuses, for golden replies.
var (
	resOK         = unhex("00 00 00 00 00 00 00 00")
	resBadOpcode  = unhex("16 00 02 00 00 00 00 00") // EINVAL, INVALID_OPCODE
	resBadField   = unhex("16 00 03 00 00 00 00 00") // EINVAL, INVALID_FIELD
	resBadGroup   = unhex("16 00 04 00 00 00 00 00") // EINVAL, INVALID_GROUP
	resBadMember  = unhex("16 00 05 00 00 00 00 00") // EINVAL, INVALID_MEMBER
	resNotFound   = unhex("06 00 03 00 00 00 00 00") // ENXIO
	resExists     = unhex("11 00 03 00 00 00 00 00") // EEXIST
	resBusy       = unhex("10 00 01 00 00 00 00 00") // EBUSY
	resNoSpace    = unhex("1c 00 01 00 00 00 00 00") // ENOSPC
	resOKWith     = func(data []byte) []byte { r := AdminResult{Data: data}; return mustMarshal(&r) }
	testRule      = FFRule{Group: 0, Classifier: 0, Priority: 7, Action: FFActionDirectRxVQ, VQIndex: 2, Key: goldenRuleKey}
	testRuleMatch = func() flow.Match { m, _ := MatchOf(&goldenClassifierValue, goldenRuleKey); return m }()
	fullCaps      = [][]byte{capSet(CapFFResource, ptr(DefaultDeviceLimits(4).ResourceCap())), capSet(CapFFSelector, ptr(SupportedSelectors())), capSet(CapFFAction, ptr(SupportedActions()))}
	ethDstMAC     = FFClassifier{Selectors: []Selector{sel(SelectorETH, [2]int{0, 6})}}
	ethSrcMAC     = FFClassifier{Selectors: []Selector{sel(SelectorETH, [2]int{6, 12})}}
	ethType       = FFClassifier{Selectors: []Selector{sel(SelectorETH, [2]int{12, 14})}}
	ethKey        = unhex("02 00 00 00 00 01 02 00 00 00 00 02 08 06")
	ruleOn        = func(group, classifier uint32, prio uint8) *FFRule {
		return &FFRule{Group: group, Classifier: classifier, Priority: prio, Action: FFActionDrop, Key: ethKey}
	}
)

func ptr[T any](v T) *T { return &v }

// deviceState is a deep copy of everything a device holds.
type deviceState struct {
	s   state
	gen uint64
}

func snapshot(d *Device) deviceState {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.s
	s.def = RSSConfig{Config: s.def.Config.Clone(), MaxTxVQ: s.def.MaxTxVQ}
	s.contexts = maps.Clone(s.contexts)
	for id, c := range s.contexts {
		s.contexts[id] = c.Clone()
	}
	if s.res != nil {
		s.res = ptr(*s.res)
	}
	if s.sel != nil {
		s.sel = ptr(s.sel.Clone())
	}
	if s.act != nil {
		s.act = &FFActionCap{Actions: slices.Clone(s.act.Actions)}
	}
	s.groups = maps.Clone(s.groups)
	s.classifiers = maps.Clone(s.classifiers)
	for id, c := range s.classifiers {
		s.classifiers[id] = c.Clone()
	}
	s.rules = maps.Clone(s.rules)
	for id, r := range s.rules {
		r.wire = r.wire.Clone()
		s.rules[id] = r
	}
	s.groupRules, s.classUse, s.masks = maps.Clone(s.groupRules), maps.Clone(s.classUse), maps.Clone(s.masks)
	return deviceState{s, d.gen}
}

// checkInvariants checks what every accepted state must satisfy: the Set
// passes flow's validation, the counters agree with the rules, every rule's
// objects exist, group priorities are distinct.
func checkInvariants(t testing.TB, d *Device) {
	t.Helper()
	lim := d.Limits()
	set := d.Set()
	if err := set.Validate(lim.FlowLimits()); err != nil {
		t.Fatalf("device state fails flow.Set.Validate: %v\n%+v", err, set)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	s := &d.s
	groupRules, classUse, masks, words := map[uint32]int{}, map[uint32]int{}, map[flow.Key]int{}, 0
	for id, r := range s.rules {
		if r.rule.ID != id {
			t.Fatalf("rule %d holds id %d", id, r.rule.ID)
		}
		if _, ok := s.groups[r.wire.Group]; !ok {
			t.Fatalf("rule %d in missing group %d", id, r.wire.Group)
		}
		if _, ok := s.classifiers[r.wire.Classifier]; !ok {
			t.Fatalf("rule %d uses missing classifier %d", id, r.wire.Classifier)
		}
		groupRules[r.wire.Group]++
		classUse[r.wire.Classifier]++
		masks[r.rule.Match.Mask]++
		words += flow.RuleWords(&r.rule.Match)
	}
	if !reflect.DeepEqual(groupRules, s.groupRules) || !reflect.DeepEqual(classUse, s.classUse) || !reflect.DeepEqual(masks, s.masks) || words != s.words {
		t.Fatalf("counters out of step with the rules")
	}
	prios := map[uint16]bool{}
	for _, g := range s.groups {
		if prios[g.Priority] {
			t.Fatalf("two groups with priority %d", g.Priority)
		}
		prios[g.Priority] = true
	}
	if (len(s.groups)+len(s.classifiers)+len(s.rules) > 0) && (s.res == nil || s.sel == nil || s.act == nil) {
		t.Fatal("objects without capabilities")
	}
}

func newTestDevice(t testing.TB, l DeviceLimits) *Device {
	t.Helper()
	d, err := NewDevice(l)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// step is one admin command of a sequence: its golden result, the error it
// wraps, and whether it changes the flow.Set.
type step struct {
	name    string
	cmd     []byte
	want    []byte
	wantErr error
	changes bool
}

func runSteps(t *testing.T, d *Device, steps []step) {
	t.Helper()
	for _, st := range steps {
		before := snapshot(d)
		res, err := d.Admin(st.cmd)
		if !bytes.Equal(res, st.want) {
			t.Errorf("%s: result\n% x\nwant\n% x (%v)", st.name, res, st.want, err)
		}
		if !errors.Is(err, st.wantErr) || (err == nil) != (st.wantErr == nil) {
			t.Errorf("%s: error %v, want %v", st.name, err, st.wantErr)
		}
		after := snapshot(d)
		if err != nil && !reflect.DeepEqual(before, after) {
			t.Errorf("%s: refused, but the device changed", st.name)
		}
		if changed := after.gen != before.gen; changed != st.changes {
			t.Errorf("%s: generation %d -> %d, want a change: %v", st.name, before.gen, after.gen, st.changes)
		}
		checkInvariants(t, d)
	}
}

// TestAdminSequence follows a driver through the spec's order of commands,
// with every error path on the way and the golden result of each command.
func TestAdminSequence(t *testing.T) {
	d := newTestDevice(t, DefaultDeviceLimits(4))
	rc := DefaultDeviceLimits(4).ResourceCap()
	other := rc
	other.GroupsLimit = 8
	tooMany := rc
	tooMany.GroupsLimit = 65
	ipTTL := FFClassifier{Selectors: []Selector{sel(SelectorETH, [2]int{12, 14}), sel(SelectorIPv4, [2]int{8, 9})}}
	dropRule := testRule
	dropRule.Action, dropRule.VQIndex = FFActionDrop, 0
	oddVQ := testRule
	oddVQ.VQIndex = 3
	farVQ := testRule
	farVQ.VQIndex = 8
	cmdSRIOV := AdminCmd{Opcode: AdminCmdCapIDListQuery, GroupType: AdminGroupSRIOV}
	cmdMember := AdminCmd{Opcode: AdminCmdCapIDListQuery, GroupMemberID: 1}

	runSteps(t, d, []step{
		{"CAP_ID_LIST_QUERY before LIST_USE", acmd(AdminCmdCapIDListQuery), resBadOpcode, ErrUnsupported, false},
		{"LIST_QUERY", acmd(AdminCmdListQuery), resOKWith(unhex("83 3f 00 00 00 00 00 00")), nil, false},
		{"LIST_USE of a legacy opcode", acmd(AdminCmdListUse, unhex("87 3f 00 00 00 00 00 00")), resBadField, ErrInvalid, false},
		{"LIST_USE", listUseAll, resOK, nil, false},
		{"SR-IOV group", mustMarshal(&cmdSRIOV), resBadGroup, ErrGroupType, false},
		{"member 1", mustMarshal(&cmdMember), resBadMember, ErrMember, false},
		{"legacy opcode 2", acmd(2), resBadOpcode, ErrUnsupported, false},
		{"opcode 0x8000", acmd(0x8000), resBadOpcode, ErrUnsupported, false},
		{"CAP_ID_LIST_QUERY", acmd(AdminCmdCapIDListQuery), resOKWith(append(make([]byte, 256), unhex("07 00 00 00 00 00 00 00")...)), nil, false},
		{"DEVICE_CAP_GET resource", capGet(CapFFResource), resOKWith(unhex("40 00 00 00 10 27 00 00 10 27 00 00 10 27 00 00 ff 03 00 00")), nil, false},
		{"DEVICE_CAP_GET selector", capGet(CapFFSelector), resOKWith(goldenSelectorCap), nil, false},
		{"DEVICE_CAP_GET action", capGet(CapFFAction), resOKWith(goldenActionCap), nil, false},
		{"DEVICE_CAP_GET 0x803", capGet(0x803), resNotFound, ErrNotFound, false},
		{"group before the capabilities", create(ObjFFGroup, 0, &FFGroup{Priority: 1}), resBadOpcode, ErrDisabled, false},
		{"resource capability over the device's", capSet(CapFFResource, &tooMany), resBadField, ErrInvalid, false},
		{"DRIVER_CAP_SET 0x803", capSet(0x803, &rc), resNotFound, ErrNotFound, false},
		{"DRIVER_CAP_SET resource", fullCaps[0], resOK, nil, false},
		{"DRIVER_CAP_SET selector", fullCaps[1], resOK, nil, false},
		{"group with one capability missing", create(ObjFFGroup, 0, &FFGroup{Priority: 1}), resBadOpcode, ErrDisabled, false},
		{"DRIVER_CAP_SET action", fullCaps[2], resOK, nil, false},
		{"unknown object type", create(0x203, 0, &FFGroup{Priority: 1}), resBadField, ErrInvalid, false},
		{"group 0", create(ObjFFGroup, 0, &FFGroup{Priority: 1}), resOK, nil, true},
		{"group 0 again", create(ObjFFGroup, 0, &FFGroup{Priority: 2}), resExists, ErrExists, false},
		{"group 1 with group 0's priority", create(ObjFFGroup, 1, &FFGroup{Priority: 1}), resBadField, ErrInvalid, false},
		{"group 64: ids are 0 to 63", create(ObjFFGroup, 64, &FFGroup{Priority: 2}), resBadField, ErrID, false},
		{"classifier 0", create(ObjFFClassifier, 0, &goldenClassifierValue), resOK, nil, false},
		{"classifier masking the IPv4 TTL", create(ObjFFClassifier, 1, &ipTTL), resBadField, ErrMask, false},
		{"rule on a missing group", create(ObjFFRule, 0, &FFRule{Group: 5, Key: goldenRuleKey, Action: FFActionDrop}), resBadField, ErrInvalid, false},
		{"rule 0 to receive queue 1", create(ObjFFRule, 0, &testRule), resOK, nil, true},
		{"rule to an odd vq_index", create(ObjFFRule, 1, &oddVQ), resBadField, ErrInvalid, false},
		{"rule to receive queue 4 of 4", create(ObjFFRule, 1, &farVQ), resBadField, ErrInvalid, false},
		{"QUERY rule 0", query(ObjFFRule, 0), resOKWith(mustMarshal(&testRule)), nil, false},
		{"QUERY group 0", query(ObjFFGroup, 0), resOKWith(unhex("01 00")), nil, false},
		{"QUERY classifier 9", query(ObjFFClassifier, 9), resNotFound, ErrNotFound, false},
		{"destroy group 0, which has a rule", destroy(ObjFFGroup, 0), resBusy, ErrBusy, false},
		{"destroy classifier 0, which a rule uses", destroy(ObjFFClassifier, 0), resBusy, ErrBusy, false},
		{"modify group 0, which has a rule", modify(ObjFFGroup, 0, &FFGroup{Priority: 3}), resBusy, ErrBusy, false},
		{"modify classifier 0, which a rule uses", modify(ObjFFClassifier, 0, &goldenClassifierValue), resBusy, ErrBusy, false},
		{"change a capability with objects", capSet(CapFFResource, &other), resBusy, ErrBusy, false},
		{"set a capability to its value with objects", fullCaps[0], resOK, nil, false},
		{"modify rule 0 to drop", modify(ObjFFRule, 0, &dropRule), resOK, nil, true},
		{"modify missing rule 1", modify(ObjFFRule, 1, &dropRule), resNotFound, ErrNotFound, false},
		{"destroy rule 0", destroy(ObjFFRule, 0), resOK, nil, true},
		{"destroy rule 0 again", destroy(ObjFFRule, 0), resNotFound, ErrNotFound, false},
		{"modify group 0", modify(ObjFFGroup, 0, &FFGroup{Priority: 3}), resOK, nil, true},
		{"destroy classifier 0", destroy(ObjFFClassifier, 0), resOK, nil, false},
		{"destroy group 0", destroy(ObjFFGroup, 0), resOK, nil, true},
		{"destroy of type 0x203", destroy(0x203, 0), resBadField, ErrInvalid, false},
		{"LIST_USE without the capability commands", acmd(AdminCmdListUse, unhex("03 3c 00 00 00 00 00 00")), resOK, nil, false},
		{"CAP_ID_LIST_QUERY not in use", acmd(AdminCmdCapIDListQuery), resBadOpcode, ErrUnsupported, false},
	})
}

// TestAdminSet checks the flow.Set the commands build.
func TestAdminSet(t *testing.T) {
	d := newTestDevice(t, DefaultDeviceLimits(4))
	runSteps(t, d, []step{
		{"LIST_USE", listUseAll, resOK, nil, false},
		{"caps", fullCaps[0], resOK, nil, false},
		{"caps", fullCaps[1], resOK, nil, false},
		{"caps", fullCaps[2], resOK, nil, false},
		{"group 3", create(ObjFFGroup, 3, &FFGroup{Priority: 9}), resOK, nil, true},
		{"group 1", create(ObjFFGroup, 1, &FFGroup{Priority: 4}), resOK, nil, true},
		{"classifier", create(ObjFFClassifier, 0, &goldenClassifierValue), resOK, nil, false},
		{"classifier ETH", create(ObjFFClassifier, 1, &ethDstMAC), resOK, nil, false},
		{"rule 5", create(ObjFFRule, 5, &FFRule{Group: 1, Classifier: 1, Priority: 2, Action: FFActionDrop, Key: ethKey}), resOK, nil, true},
		{"rule 2", create(ObjFFRule, 2, &FFRule{Group: 3, Classifier: 0, Priority: 255, Action: FFActionDirectRxVQ, VQIndex: 6, Key: goldenRuleKey}), resOK, nil, true},
	})
	var mac flow.Match
	mac.SetDstMAC(ethKey[:6], nil)
	want := flow.Set{
		Default: rss.Config{Key: rss.DefaultKey, Table: []uint16{0}},
		Groups:  []flow.Group{{ID: 1, Priority: 4}, {ID: 3, Priority: 9}},
		Rules: []flow.Rule{
			{ID: 2, Group: 3, Priority: 255, Match: testRuleMatch, Action: flow.Action{Kind: flow.ActionQueue, Queue: 3}},
			{ID: 5, Group: 1, Priority: 2, Match: mac, Action: flow.Action{Kind: flow.ActionDrop}},
		},
	}
	if got := d.Set(); !reflect.DeepEqual(got, want) {
		t.Errorf("Set =\n%+v\nwant\n%+v", got, want)
	}
	// The set steers: a frame to 10.1.2.3:443 goes to queue 3.
	e, err := flow.NewEngine(d.Set(), d.Limits().FlowLimits())
	if err != nil {
		t.Fatal(err)
	}
	f := tcpFrame("10.1.2.3", 443)
	if v := e.Steer(f); v.Queue != 3 || v.Rule != 0 {
		t.Errorf("Steer = %+v", v)
	}
}

// TestAdminLimits runs into every limit the device enforces.
func TestAdminLimits(t *testing.T) {
	small := DeviceLimits{
		Queues: 2, RSS: rss.DefaultLimits(2),
		Flow:        flow.Limits{MaxContexts: 1, MaxContextTable: 128, MaxGroups: 2, MaxRules: 4, MaxPatterns: 2, MaxRuleWords: 18},
		Classifiers: 4, RulesPerGroup: 3, LastRulePriority: 10, SelectorsPerClassifier: 3,
	}
	setup := func(t *testing.T, rc FFResourceCap, sc FFSelectorCap) *Device {
		d := newTestDevice(t, small)
		runSteps(t, d, []step{
			{"LIST_USE", listUseAll, resOK, nil, false},
			{"resource cap", capSet(CapFFResource, &rc), resOK, nil, false},
			{"selector cap", capSet(CapFFSelector, &sc), resOK, nil, false},
			{"action cap", capSet(CapFFAction, ptr(SupportedActions())), resOK, nil, false},
			{"group 0", create(ObjFFGroup, 0, &FFGroup{Priority: 1}), resOK, nil, true},
			{"group 1", create(ObjFFGroup, 1, &FFGroup{Priority: 2}), resOK, nil, true},
			{"classifier dst MAC", create(ObjFFClassifier, 0, &ethDstMAC), resOK, nil, false},
			{"classifier src MAC", create(ObjFFClassifier, 1, &ethSrcMAC), resOK, nil, false},
			{"classifier EtherType", create(ObjFFClassifier, 2, &ethType), resOK, nil, false},
		})
		return d
	}
	rc := small.ResourceCap()
	t.Run("patterns", func(t *testing.T) {
		runSteps(t, setup(t, rc, SupportedSelectors()), []step{
			{"dst MAC", create(ObjFFRule, 0, ruleOn(0, 0, 1)), resOK, nil, true},
			{"src MAC", create(ObjFFRule, 1, ruleOn(0, 1, 1)), resOK, nil, true},
			{"a third mask", create(ObjFFRule, 2, ruleOn(1, 2, 1)), resNoSpace, ErrNoSpace, false},
			{"dst MAC again", create(ObjFFRule, 2, ruleOn(1, 0, 1)), resOK, nil, true},
			{"rule 1 to the third mask", modify(ObjFFRule, 1, ruleOn(1, 2, 1)), resOK, nil, true},
			{"rule 2 to the second mask", modify(ObjFFRule, 2, ruleOn(1, 1, 1)), resNoSpace, ErrNoSpace, false},
		})
	})
	t.Run("rules per group", func(t *testing.T) {
		runSteps(t, setup(t, rc, SupportedSelectors()), []step{
			{"1", create(ObjFFRule, 0, ruleOn(0, 2, 1)), resOK, nil, true},
			{"2", create(ObjFFRule, 1, ruleOn(0, 2, 1)), resOK, nil, true},
			{"3", create(ObjFFRule, 2, ruleOn(0, 2, 1)), resOK, nil, true},
			{"4 in the same group", create(ObjFFRule, 3, ruleOn(0, 2, 1)), resNoSpace, ErrNoSpace, false},
			{"4 in another group", create(ObjFFRule, 3, ruleOn(1, 2, 1)), resOK, nil, true},
			{"move 4 into the full group", modify(ObjFFRule, 3, ruleOn(0, 2, 1)), resNoSpace, ErrNoSpace, false},
			{"rule 2 stays in its full group", modify(ObjFFRule, 2, ruleOn(0, 2, 5)), resOK, nil, true},
			{"rule id 4: ids are 0 to 3", create(ObjFFRule, 4, ruleOn(1, 2, 1)), resBadField, ErrID, false},
		})
	})
	t.Run("rule words", func(t *testing.T) {
		// An EtherType rule takes 4 words, a MAC rule 6; 18 in all.
		runSteps(t, setup(t, rc, SupportedSelectors()), []step{
			{"MAC", create(ObjFFRule, 0, ruleOn(0, 0, 1)), resOK, nil, true},
			{"MAC", create(ObjFFRule, 1, ruleOn(0, 0, 1)), resOK, nil, true},
			{"MAC", create(ObjFFRule, 2, ruleOn(1, 0, 1)), resOK, nil, true},
			{"MAC over the words", create(ObjFFRule, 3, ruleOn(1, 0, 1)), resNoSpace, ErrNoSpace, false},
		})
	})
	t.Run("priority and selectors", func(t *testing.T) {
		two := rc
		two.SelectorsPerClassifierLimit = 2
		whole := SupportedSelectors()
		for i := range whole.Selectors {
			whole.Selectors[i].Flags = 0
		}
		address := FFClassifier{Selectors: []Selector{sel(SelectorETH), sel(SelectorIPv4, [2]int{12, 16})}}
		half := FFClassifier{Selectors: []Selector{{Type: SelectorETH, Mask: unhex("ff ff ff 00 00 00 00 00 00 00 00 00 00 00")}}}
		runSteps(t, setup(t, two, whole), []step{
			{"priority 10", create(ObjFFRule, 0, ruleOn(0, 0, 10)), resOK, nil, true},
			{"priority 11", create(ObjFFRule, 1, ruleOn(0, 0, 11)), resBadField, ErrInvalid, false},
			{"three selectors, limit two", create(ObjFFClassifier, 3, &goldenClassifierValue), resBadField, ErrSelector, false},
			{"whole IPv4 address", create(ObjFFClassifier, 3, &address), resOK, nil, false},
			{"half a MAC without partial masks", modify(ObjFFClassifier, 3, &half), resBadField, ErrMask, false},
			{"classifier id 4: ids are 0 to 3", create(ObjFFClassifier, 4, &ethType), resBadField, ErrID, false},
			{"group id 2: ids are 0 to 1", create(ObjFFGroup, 2, &FFGroup{Priority: 7}), resBadField, ErrID, false},
		})
	})
}

func TestDriverCapSetErrors(t *testing.T) {
	d := newTestDevice(t, DefaultDeviceLimits(4))
	dev := SupportedSelectors()
	esp := FFSelectorCap{Selectors: []Selector{{Type: SelectorESP, Flags: 1, Mask: make([]byte, 8)}}}
	order := FFSelectorCap{Selectors: []Selector{dev.Selectors[1], dev.Selectors[0]}}
	twice := FFSelectorCap{Selectors: []Selector{dev.Selectors[0], dev.Selectors[0]}}
	flag := dev.Clone()
	flag.Selectors[0].Flags = 2
	ttl := dev.Clone()
	ttl.Selectors[1].Mask[8] = 0xff
	short := dev.Clone()
	short.Selectors[4].Mask = short.Selectors[4].Mask[:7]
	runSteps(t, d, []step{
		{"LIST_USE", listUseAll, resOK, nil, false},
		{"ESP", capSet(CapFFSelector, &esp), resBadField, ErrSelector, false},
		{"descending types", capSet(CapFFSelector, &order), resBadField, ErrSelector, false},
		{"a type twice", capSet(CapFFSelector, &twice), resBadField, ErrSelector, false},
		{"flag 2", capSet(CapFFSelector, &flag), resBadField, ErrSelector, false},
		{"IPv4 TTL", capSet(CapFFSelector, &ttl), resBadField, ErrMask, false},
		{"7-byte UDP", capSet(CapFFSelector, &short), resBadField, ErrSelector, false},
		{"action 3", capSet(CapFFAction, &FFActionCap{Actions: []uint8{1, 3}}), resBadField, ErrInvalid, false},
		{"actions descending", capSet(CapFFAction, &FFActionCap{Actions: []uint8{2, 1}}), resBadField, ErrInvalid, false},
		{"no actions", capSet(CapFFAction, &FFActionCap{}), resOK, nil, false},
		{"no selectors", capSet(CapFFSelector, &FFSelectorCap{}), resOK, nil, false},
		{"resource", fullCaps[0], resOK, nil, false},
		{"group", create(ObjFFGroup, 0, &FFGroup{}), resOK, nil, true},
		{"classifier with no selector enabled", create(ObjFFClassifier, 0, &ethType), resBadField, ErrSelector, false},
	})
}

// TestLinuxDriverSequence replays what the Linux flow filter patches (v13,
// unmerged) send, to pin down where vrss's reading of the spec and theirs
// part: an 18-byte resource capability and an action capability padded
// with zeros are accepted; the driver's group id 1 under its own
// groups_limit of 1 is refused (ids are 0 to limit-1); its vq_index is a
// queue number, so ethtool's queue 1 reads as virtqueue 1, a transmit
// queue, and is refused.
func TestLinuxDriverSequence(t *testing.T) {
	d := newTestDevice(t, DefaultDeviceLimits(4))
	rc := DefaultDeviceLimits(4).ResourceCap()
	rc.GroupsLimit = 1
	res18 := mustMarshal(&rc)[:18]
	actions := append(mustMarshal(ptr(SupportedActions())), 0, 0, 0) // 8 + VIRTIO_NET_FF_ACTION_MAX
	rule := FFRule{Group: 1, Classifier: 0, Action: FFActionDirectRxVQ, VQIndex: 1, Key: ethKey}
	runSteps(t, d, []step{
		{"LIST_USE", listUseAll, resOK, nil, false},
		{"resource, 18 bytes", acmd(AdminCmdDriverCapSet, mustMarshal(&CapData{ID: CapFFResource, Data: res18})), resOK, nil, false},
		{"selector", fullCaps[1], resOK, nil, false},
		{"action, padded", acmd(AdminCmdDriverCapSet, mustMarshal(&CapData{ID: CapFFAction, Data: actions})), resOK, nil, false},
		{"group 1 with groups_limit 1", create(ObjFFGroup, 1, &FFGroup{Priority: 1}), resBadField, ErrID, false},
		{"group 0", create(ObjFFGroup, 0, &FFGroup{Priority: 1}), resOK, nil, true},
		{"classifier, flags 0, partial mask", create(ObjFFClassifier, 0, &ethDstMAC), resOK, nil, false},
		{"rule to 'queue 1'", create(ObjFFRule, 0, &FFRule{Group: 0, Action: rule.Action, VQIndex: 1, Key: ethKey}), resBadField, ErrInvalid, false},
		{"rule to virtqueue 2", create(ObjFFRule, 0, &FFRule{Group: 0, Action: rule.Action, VQIndex: 2, Key: ethKey}), resOK, nil, true},
	})
	if s := d.Set(); len(s.Rules) != 1 || s.Rules[0].Action.Queue != 1 {
		t.Errorf("rules %+v", s.Rules)
	}
}

func TestAdminReset(t *testing.T) {
	d := newTestDevice(t, DefaultDeviceLimits(4))
	runSteps(t, d, []step{
		{"LIST_USE", listUseAll, resOK, nil, false},
		{"caps", fullCaps[0], resOK, nil, false},
		{"caps", fullCaps[1], resOK, nil, false},
		{"caps", fullCaps[2], resOK, nil, false},
		{"group", create(ObjFFGroup, 0, &FFGroup{Priority: 1}), resOK, nil, true},
		{"classifier", create(ObjFFClassifier, 0, &goldenClassifierValue), resOK, nil, false},
		{"rule", create(ObjFFRule, 0, &testRule), resOK, nil, true},
	})
	if ack, _, err := d.Ctrl(CtrlClassRSSContext, CmdRSSContextAdd, goldenContextCmd(1)); ack != AckOK {
		t.Fatal(err)
	}
	gen := d.Generation()
	d.Reset()
	if d.Generation() == gen {
		t.Error("Reset kept the generation")
	}
	fresh := newTestDevice(t, DefaultDeviceLimits(4))
	a, b := snapshot(d), snapshot(fresh)
	a.gen, b.gen = 0, 0
	if !reflect.DeepEqual(a, b) {
		t.Errorf("after Reset:\n%+v\nwant\n%+v", a, b)
	}
	runSteps(t, d, []step{
		{"CAP_ID_LIST_QUERY needs LIST_USE again", acmd(AdminCmdCapIDListQuery), resBadOpcode, ErrUnsupported, false},
		{"LIST_USE", listUseAll, resOK, nil, false},
		{"group needs the capabilities again", create(ObjFFGroup, 0, &FFGroup{Priority: 1}), resBadOpcode, ErrDisabled, false},
	})
}

// TestAdminShortCommands checks that short and padded commands are read as
// the admin chapter says: missing bytes zero, extra bytes ignored.
func TestAdminShortCommands(t *testing.T) {
	d := newTestDevice(t, DefaultDeviceLimits(4))
	// Nothing at all reads as LIST_QUERY of the self group.
	if res, err := d.Admin(nil); err != nil || !bytes.Equal(res, resOKWith(unhex("83 3f 00 00 00 00 00 00"))) {
		t.Errorf("empty command: % x, %v", res, err)
	}
	// An empty LIST_USE disables every opcode, itself included.
	if res, err := d.Admin(acmd(AdminCmdListUse)); err != nil || !bytes.Equal(res, resOK) {
		t.Errorf("empty LIST_USE: % x, %v", res, err)
	}
	if res, err := d.Admin(acmd(AdminCmdListQuery)); !errors.Is(err, ErrUnsupported) || !bytes.Equal(res, resBadOpcode) {
		t.Errorf("LIST_QUERY after an empty LIST_USE: % x, %v", res, err)
	}
	d.Reset()
	runSteps(t, d, []step{
		{"LIST_USE padded", append(bytes.Clone(listUseAll), make([]byte, 16)...), resOK, nil, false},
		{"caps", fullCaps[0], resOK, nil, false},
		{"caps", fullCaps[1], resOK, nil, false},
		{"caps", fullCaps[2], resOK, nil, false},
		// A group without its priority has priority 0.
		{"group, object missing", acmd(AdminCmdResourceObjCreate, mustMarshal(&ResourceObjHeader{Type: ObjFFGroup, ID: 0})), resOK, nil, true},
		{"QUERY group 0", query(ObjFFGroup, 0), resOKWith(unhex("00 00")), nil, false},
		// A destroy with create-sized data: the flags and object are ignored.
		{"destroy with trailing bytes", append(destroy(ObjFFGroup, 0), make([]byte, 10)...), resOK, nil, true},
	})
}

// goldenContextCmd returns an ADD/MOD payload for context id on a 4-queue
// device: queues 1 and 2, TCP hash types.
func goldenContextCmd(id uint16) []byte {
	c := RSSContext{ID: id, RSSConfig: RSSConfig{Config: rss.Config{HashTypes: rss.HashTCPv4 | rss.HashTCPv6, Key: rss.DefaultKey, Table: []uint16{1, 2, 1, 2}, UnclassifiedQueue: 1}, MaxTxVQ: 4}}
	return mustMarshal(&c)
}

func TestCtrlSequence(t *testing.T) {
	d := newTestDevice(t, DefaultDeviceLimits(4))
	defRSS := RSSConfig{Config: rss.Config{HashTypes: rss.HashTCPv4, Key: rss.DefaultKey, Table: rss.EqualTable(128, 4)}, MaxTxVQ: 4}
	badQueue := goldenContextCmd(1)
	badQueue[8+8] = 4 // table entry 0: queue 4 of 4
	bigTable := RSSContext{ID: 1, RSSConfig: RSSConfig{Config: rss.Config{Key: rss.DefaultKey, Table: make([]uint16, 256)}, MaxTxVQ: 1}}
	for _, st := range []struct {
		name       string
		class, cmd uint8
		payload    []byte
		reply      []byte
		wantErr    error
		changes    bool
	}{
		{"CAP_GET", CtrlClassRSSContext, CmdRSSContextCapGet, nil, unhex("08 00"), nil, false},
		{"CAP_GET with a payload", CtrlClassRSSContext, CmdRSSContextCapGet, []byte{0}, nil, ErrTrailingBytes, false},
		{"ADD 1", CtrlClassRSSContext, CmdRSSContextAdd, goldenContextCmd(1), nil, nil, true},
		{"ADD 1 again", CtrlClassRSSContext, CmdRSSContextAdd, goldenContextCmd(1), nil, ErrExists, false},
		{"ADD 0", CtrlClassRSSContext, CmdRSSContextAdd, goldenContextCmd(0), nil, ErrID, false},
		{"ADD 9 of 8", CtrlClassRSSContext, CmdRSSContextAdd, goldenContextCmd(9), nil, ErrID, false},
		{"ADD 8", CtrlClassRSSContext, CmdRSSContextAdd, goldenContextCmd(8), nil, nil, true},
		{"ADD with queue 4", CtrlClassRSSContext, CmdRSSContextAdd, badQueue, nil, rss.ErrQueueRange, false},
		{"ADD with a 256-entry table", CtrlClassRSSContext, CmdRSSContextAdd, mustMarshal(&bigTable), nil, rss.ErrTableLength, false},
		{"ADD cut short", CtrlClassRSSContext, CmdRSSContextAdd, goldenContextCmd(2)[:20], nil, ErrTruncated, false},
		{"MOD 2, absent", CtrlClassRSSContext, CmdRSSContextMod, goldenContextCmd(2), nil, ErrNotFound, false},
		{"MOD 8", CtrlClassRSSContext, CmdRSSContextMod, goldenContextCmd(8), nil, nil, true},
		{"DEL 8", CtrlClassRSSContext, CmdRSSContextDel, unhex("08 00"), nil, nil, true},
		{"DEL 8 again", CtrlClassRSSContext, CmdRSSContextDel, unhex("08 00"), nil, ErrNotFound, false},
		{"DEL 0", CtrlClassRSSContext, CmdRSSContextDel, unhex("00 00"), nil, ErrID, false},
		{"DEL, 3 bytes", CtrlClassRSSContext, CmdRSSContextDel, unhex("01 00 00"), nil, ErrTrailingBytes, false},
		{"command 4", CtrlClassRSSContext, 4, nil, nil, ErrUnsupported, false},
		{"RSS_CONFIG", CtrlClassMQ, CmdRSSConfig, mustMarshal(&defRSS), nil, nil, true},
		{"RSS_CONFIG with max_tx_vq 5", CtrlClassMQ, CmdRSSConfig, patch(mustMarshal(&defRSS), 8+256, 5), nil, ErrTxQueues, false},
		{"VQ_PAIRS_SET is the VMM's", CtrlClassMQ, CmdVQPairsSet, unhex("04 00"), nil, ErrUnsupported, false},
		{"HASH_CONFIG is the VMM's", CtrlClassMQ, CmdHashConfig, goldenHash, nil, ErrUnsupported, false},
	} {
		before := snapshot(d)
		ack, reply, err := d.Ctrl(st.class, st.cmd, st.payload)
		if ack != Ack(st.wantErr) || !bytes.Equal(reply, st.reply) || !errors.Is(err, st.wantErr) || (err == nil) != (st.wantErr == nil) {
			t.Errorf("%s: ack %d, reply % x, error %v; want reply % x, error %v", st.name, ack, reply, err, st.reply, st.wantErr)
		}
		if d.Handles(st.class, st.cmd) != !errors.Is(st.wantErr, ErrUnsupported) {
			t.Errorf("%s: Handles = %v", st.name, d.Handles(st.class, st.cmd))
		}
		after := snapshot(d)
		if err != nil && !reflect.DeepEqual(before, after) {
			t.Errorf("%s: refused, but the device changed", st.name)
		}
		if (after.gen != before.gen) != st.changes {
			t.Errorf("%s: generation %d -> %d", st.name, before.gen, after.gen)
		}
		checkInvariants(t, d)
	}
	want := flow.Set{
		Default:  defRSS.Config,
		Contexts: []flow.Context{{ID: 1, Config: rss.Config{HashTypes: rss.HashTCPv4 | rss.HashTCPv6, Key: rss.DefaultKey, Table: []uint16{1, 2, 1, 2}, UnclassifiedQueue: 1}}},
	}
	if got := d.Set(); !reflect.DeepEqual(got, want) {
		t.Errorf("Set = %+v\nwant %+v", got, want)
	}
	if d.MaxTxVQ() != 4 {
		t.Errorf("MaxTxVQ = %d", d.MaxTxVQ())
	}
	d.Reset()
	if s := d.Set(); len(s.Contexts) != 0 || !reflect.DeepEqual(s.Default, rss.Config{Key: rss.DefaultKey, Table: []uint16{0}}) || d.MaxTxVQ() != 1 {
		t.Errorf("after Reset: %+v, max_tx_vq %d", s, d.MaxTxVQ())
	}
}

func TestDeviceLimits(t *testing.T) {
	l := DefaultDeviceLimits(4)
	if err := l.Validate(); err != nil {
		t.Fatal(err)
	}
	if rc := l.ResourceCap(); rc != (FFResourceCap{GroupsLimit: 64, ClassifiersLimit: 10000, RulesLimit: 10000, RulesPerGroupLimit: 10000, LastRulePriority: 255, SelectorsPerClassifierLimit: 3}) {
		t.Errorf("ResourceCap = %+v", rc)
	}
	fl := l.FlowLimits()
	if fl.Queues != 4 || fl.RSS.Queues != 4 || fl.MaxPatterns != flow.MaxPatterns {
		t.Errorf("FlowLimits = %+v", fl)
	}
	for _, mod := range []func(*DeviceLimits){
		func(l *DeviceLimits) { l.Queues = 0 },
		func(l *DeviceLimits) { l.Queues = 1<<15 + 1 },
		func(l *DeviceLimits) { l.RSS.MaxKeySize = 0 },
		func(l *DeviceLimits) { l.Flow.MaxRules = flow.MaxRules + 1 },
		func(l *DeviceLimits) { l.Flow.MaxPatterns = flow.MaxPatterns + 1 },
		func(l *DeviceLimits) { l.Flow.MaxRuleWords = 0 },
		func(l *DeviceLimits) { l.Flow.MaxContexts = flow.MaxContexts + 1 },
		func(l *DeviceLimits) { l.Flow.MaxGroups = flow.MaxGroups + 1 },
		func(l *DeviceLimits) { l.RulesPerGroup = flow.MaxRules + 1 },
		func(l *DeviceLimits) { l.Classifiers = flow.MaxRules + 1 },
		func(l *DeviceLimits) { l.SelectorsPerClassifier = 0 },
		func(l *DeviceLimits) { l.SelectorsPerClassifier = 4 },
	} {
		l := DefaultDeviceLimits(4)
		mod(&l)
		if _, err := NewDevice(l); !errors.Is(err, rss.ErrInvalidLimits) {
			t.Errorf("NewDevice(%+v) error %v", l, err)
		}
	}
}

// tcpFrame returns an IPv4 TCP frame to dst:port.
func tcpFrame(dst string, port uint16) []byte {
	return frame.Build(frame.Spec{Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr(dst), Proto: frame.ProtoTCP, SrcPort: 1000, DstPort: port})
}
