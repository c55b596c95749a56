package virtio

import (
	"bytes"
	"encoding"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/vrss-dev/vrss/flow"
	"github.com/vrss-dev/vrss/rss"
)

// DeviceLimits are what a Device declares to its guest, and so bound the
// guest's part of the steering state.
type DeviceLimits struct {
	// Queues is the number of receive queues (max_virtqueue_pairs), 1 to
	// 32768.
	Queues int
	// RSS bounds the default configuration and the contexts:
	// rss_max_key_size, rss_max_indirection_table_length and
	// supported_hash_types. Its Queues is ignored.
	RSS rss.Limits
	// Flow is the guest's share of what vrss's map holds, at most
	// flow.DefaultLimits: MaxContexts (max_rss_contexts), MaxContextTable
	// (which also bounds context tables), MaxGroups (groups_limit),
	// MaxRules (rules_limit), MaxPatterns and MaxRuleWords (1 or more).
	// Its Queues and RSS are ignored.
	Flow flow.Limits
	// Classifiers is classifiers_limit, at most flow.MaxRules.
	Classifiers uint32
	// RulesPerGroup is rules_per_group_limit, at most Flow.MaxRules.
	RulesPerGroup uint32
	// LastRulePriority is last_rule_priority, the highest rule priority.
	LastRulePriority uint8
	// SelectorsPerClassifier is selectors_per_classifier_limit, 1 to 3.
	SelectorsPerClassifier uint8
}

// DefaultDeviceLimits returns the largest limits vrss can honour for a
// device with the given number of receive queues: the default RSS limits
// (40-byte key, 128-entry table, every hash type), flow.DefaultLimits, as
// many classifiers and rules per group as rules, every rule priority and
// three selectors per classifier.
func DefaultDeviceLimits(queues int) DeviceLimits {
	rl := rss.DefaultLimits(queues)
	return DeviceLimits{
		Queues: queues, RSS: rl, Flow: flow.DefaultLimits(queues, rl),
		Classifiers: flow.MaxRules, RulesPerGroup: flow.MaxRules,
		LastRulePriority: 255, SelectorsPerClassifier: 3,
	}
}

// Validate reports whether l is within what vrss supports; the error wraps
// rss.ErrInvalidLimits.
func (l DeviceLimits) Validate() error {
	f := l.Flow
	bad := func(what string, v, lo, hi int) error {
		if v < lo || v > hi {
			return fmt.Errorf("%w: %s %d, want %d to %d", rss.ErrInvalidLimits, what, v, lo, hi)
		}
		return nil
	}
	for _, err := range []error{
		bad("queues", l.Queues, 1, 1<<15),
		bad("RSS max key size", l.RSS.MaxKeySize, 1, rss.MaxKeySize),
		bad("RSS max table length", l.RSS.MaxTableLen, 1, rss.MaxTableLen),
		bad("max contexts", f.MaxContexts, 0, flow.MaxContexts),
		bad("max context table", f.MaxContextTable, 1, flow.MaxContextTable),
		bad("max groups", f.MaxGroups, 0, flow.MaxGroups),
		bad("max rules", f.MaxRules, 0, flow.MaxRules),
		bad("max patterns", f.MaxPatterns, 0, flow.MaxPatterns),
		bad("max rule words", f.MaxRuleWords, 1, flow.MaxRuleWords),
		bad("classifiers", int(l.Classifiers), 0, flow.MaxRules),
		bad("rules per group", int(l.RulesPerGroup), 0, f.MaxRules),
		bad("selectors per classifier", int(l.SelectorsPerClassifier), 1, 3),
	} {
		if err != nil {
			return err
		}
	}
	return nil
}

// FlowLimits returns the limits the guest's flow.Set is kept within.
func (l DeviceLimits) FlowLimits() flow.Limits {
	f := l.Flow
	f.Queues = l.Queues
	f.RSS = l.RSS
	f.RSS.Queues = l.Queues
	return f
}

// ResourceCap returns the flow filter resource capability the device
// declares.
func (l DeviceLimits) ResourceCap() FFResourceCap {
	return FFResourceCap{
		GroupsLimit: uint32(l.Flow.MaxGroups), ClassifiersLimit: l.Classifiers,
		RulesLimit: uint32(l.Flow.MaxRules), RulesPerGroupLimit: l.RulesPerGroup,
		LastRulePriority: l.LastRulePriority, SelectorsPerClassifierLimit: l.SelectorsPerClassifier,
	}
}

// rssLimits bounds the default configuration, contextLimits the contexts.
func (l DeviceLimits) rssLimits() rss.Limits {
	rl := l.RSS
	rl.Queues = l.Queues
	return rl
}

func (l DeviceLimits) contextLimits() rss.Limits {
	rl := l.rssLimits()
	rl.MaxTableLen = min(rl.MaxTableLen, l.Flow.MaxContextTable)
	return rl
}

// supportedOpcodes are the admin opcodes a Device implements, as a bitmap.
const supportedOpcodes = 1<<AdminCmdListQuery | 1<<AdminCmdListUse | 1<<AdminCmdCapIDListQuery |
	1<<AdminCmdDeviceCapGet | 1<<AdminCmdDriverCapSet | 1<<AdminCmdResourceObjCreate |
	1<<AdminCmdResourceObjModify | 1<<AdminCmdResourceObjQuery | 1<<AdminCmdResourceObjDestroy

// Device is the guest-facing model of a vrss virtio-net device's steering
// state: the default RSS configuration, the RSS contexts (control class 9)
// and the flow filters (admin commands). A VMM hands it the guest's raw
// command bytes, writes back the reply it returns, and publishes Set
// whenever Generation changes. Every command is validated in full before
// it changes anything: a refused command leaves the device as it was, and
// the state always passes flow.Set.Validate under Limits().FlowLimits().
//
// It is safe for concurrent use.
type Device struct {
	mu      sync.Mutex
	lim     DeviceLimits
	flim    flow.Limits
	initial RSSConfig
	gen     uint64
	s       state
}

// state is everything a command can change.
type state struct {
	def      RSSConfig
	contexts map[uint16]rss.Config
	// used is the bitmap of admin opcodes the driver uses (LIST_USE);
	// every opcode vrss supports is below 64.
	used uint64
	// The driver's flow filter capabilities; nil until set.
	res *FFResourceCap
	sel *FFSelectorCap
	act *FFActionCap

	groups      map[uint32]FFGroup
	classifiers map[uint32]FFClassifier
	rules       map[uint32]devRule

	// Derived from rules, kept in step with them: rules per group and per
	// classifier, rules per distinct normalized mask, and the rules'
	// flow.RuleWords. Zero counts are deleted.
	groupRules map[uint32]int
	classUse   map[uint32]int
	masks      map[flow.Key]int
	words      int
}

// devRule is a rule as the driver gave it and as the flow.Set holds it.
type devRule struct {
	wire FFRule
	rule flow.Rule
}

// NewDevice returns a device with limits l, freshly reset: default RSS
// configuration steering everything to receive queue 0 (as a device does
// before the driver configures RSS), no contexts, no flow filter
// capabilities or objects.
func NewDevice(l DeviceLimits) (*Device, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	d := &Device{lim: l, flim: l.FlowLimits()}
	d.initial = RSSConfig{
		Config:  rss.Config{Key: slices.Clone(rss.DefaultKey[:min(len(rss.DefaultKey), l.RSS.MaxKeySize)]), Table: []uint16{0}},
		MaxTxVQ: 1,
	}
	d.s = d.newState()
	return d, nil
}

func (d *Device) newState() state {
	return state{
		def:         RSSConfig{Config: d.initial.Config.Clone(), MaxTxVQ: d.initial.MaxTxVQ},
		contexts:    map[uint16]rss.Config{},
		used:        1<<AdminCmdListQuery | 1<<AdminCmdListUse,
		groups:      map[uint32]FFGroup{},
		classifiers: map[uint32]FFClassifier{},
		rules:       map[uint32]devRule{},
		groupRules:  map[uint32]int{},
		classUse:    map[uint32]int{},
		masks:       map[flow.Key]int{},
	}
}

// Limits returns the device's limits.
func (d *Device) Limits() DeviceLimits { return d.lim }

// Reset returns the device to its state after NewDevice, as a device reset
// does: contexts, driver capabilities, flow filter objects and the admin
// opcodes in use are cleared, the default configuration is the initial one.
// It advances the generation.
func (d *Device) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.s = d.newState()
	d.gen++
}

// Generation returns a counter that advances whenever Set may have
// changed: an accepted command that changes the default configuration, a
// context, a group or a rule, and every Reset.
func (d *Device) Generation() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.gen
}

// Set returns the guest's steering state: the default configuration, the
// contexts, the groups (Host false) and the rules with normalized matches,
// each sorted by id. It is a deep copy.
func (d *Device) Set() flow.Set {
	s, _ := d.Snapshot()
	return s
}

// Snapshot returns Set and Generation read together.
func (d *Device) Snapshot() (flow.Set, uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := flow.Set{Default: d.s.def.Config.Clone()}
	for _, id := range slices.Sorted(maps.Keys(d.s.contexts)) {
		s.Contexts = append(s.Contexts, flow.Context{ID: id, Config: d.s.contexts[id].Clone()})
	}
	for _, id := range slices.Sorted(maps.Keys(d.s.groups)) {
		s.Groups = append(s.Groups, flow.Group{ID: id, Priority: d.s.groups[id].Priority})
	}
	for _, id := range slices.Sorted(maps.Keys(d.s.rules)) {
		s.Rules = append(s.Rules, d.s.rules[id].rule)
	}
	return s, d.gen
}

// MaxTxVQ returns max_tx_vq of the default configuration: the transmit
// queues the driver uses (1 until it sets RSS).
func (d *Device) MaxTxVQ() uint16 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.s.def.MaxTxVQ
}

// Handles reports whether Ctrl implements control command class/cmd:
// VIRTIO_NET_CTRL_MQ_RSS_CONFIG and the RSS context class. The VMM answers
// every other control command itself.
func (d *Device) Handles(class, cmd uint8) bool {
	return class == CtrlClassMQ && cmd == CmdRSSConfig || class == CtrlClassRSSContext && cmd <= CmdRSSContextDel
}

// Ctrl executes a control queue command: class and cmd from its header,
// payload its command-specific data. It returns the ack byte to write
// back, the reply to write before it (CAP_GET's max_rss_contexts, else
// nil) and, for the VMM's logs, why a command was refused. Commands:
// VIRTIO_NET_CTRL_MQ_RSS_CONFIG sets the default configuration; class 9
// queries max_rss_contexts and adds, modifies and deletes contexts 1 to
// max_rss_contexts. The VMM checks that the features (RSS, RSS_CONTEXT)
// were negotiated before passing the commands on; any other command is
// refused with ErrUnsupported.
func (d *Device) Ctrl(class, cmd uint8, payload []byte) (ack uint8, reply []byte, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	reply, err = d.ctrl(class, cmd, payload)
	return Ack(err), reply, err
}

func (d *Device) ctrl(class, cmd uint8, payload []byte) ([]byte, error) {
	if !d.Handles(class, cmd) {
		return nil, errorf(ErrUnsupported, "control class %d command %d", class, cmd)
	}
	if class == CtrlClassMQ {
		c, err := DecodeRSSConfig(payload, d.lim.rssLimits())
		if err != nil {
			return nil, err
		}
		d.s.def = c
		d.gen++
		return nil, nil
	}
	switch cmd {
	case CmdRSSContextCapGet:
		if len(payload) != 0 {
			return nil, fmt.Errorf("%w: rss context CAP_GET has no payload, got %d bytes", ErrTrailingBytes, len(payload))
		}
		c := RSSContextCap{MaxContexts: uint16(d.lim.Flow.MaxContexts)}
		return c.MarshalBinary()
	case CmdRSSContextDel:
		id, err := DecodeRSSContextID(payload)
		if err != nil {
			return nil, err
		}
		if err := d.contextID(uint16(id)); err != nil {
			return nil, err
		}
		if _, ok := d.s.contexts[uint16(id)]; !ok {
			return nil, errorf(ErrNotFound, "rss context %d", id)
		}
		delete(d.s.contexts, uint16(id))
		d.gen++
		return nil, nil
	}
	c, err := DecodeRSSContext(payload, d.lim.contextLimits())
	if err != nil {
		return nil, err
	}
	if err := d.contextID(c.ID); err != nil {
		return nil, err
	}
	_, exists := d.s.contexts[c.ID]
	switch {
	case cmd == CmdRSSContextAdd && exists:
		return nil, errorf(ErrExists, "rss context %d", c.ID)
	case cmd == CmdRSSContextMod && !exists:
		return nil, errorf(ErrNotFound, "rss context %d", c.ID)
	}
	// The flow package has the last word on what the map can hold.
	check := flow.Set{Default: d.s.def.Config, Contexts: []flow.Context{{ID: c.ID, Config: c.Config}}}
	if err := check.Validate(d.flim); err != nil {
		return nil, err
	}
	d.s.contexts[c.ID] = c.Config
	d.gen++
	return nil, nil
}

func (d *Device) contextID(id uint16) error {
	if id == 0 || int(id) > d.lim.Flow.MaxContexts {
		return errorf(ErrID, "rss context %d, want 1 to %d", id, d.lim.Flow.MaxContexts)
	}
	return nil
}

// Admin executes an administration command: cmd is the device-readable
// part of struct virtio_admin_cmd (header and command-specific data). It
// returns the device-writable part to write back (status, qualifier and
// result, a multiple of 8 bytes; the VMM writes what fits the driver's
// buffer and reports that length) and, for the VMM's logs, why a command
// failed. Only the self group is supported. After a reset only LIST_QUERY
// and LIST_USE are accepted until LIST_USE enables the others; flow filter
// objects also need all three flow filter capabilities set by
// DRIVER_CAP_SET first (else EINVAL with AdminQualifierInvalidOpcode).
// docs/virtio-flows.md lists every status.
func (d *Device) Admin(cmd []byte) (result []byte, err error) {
	c := DecodeAdminCmd(cmd)
	d.mu.Lock()
	defer d.mu.Unlock()
	data, err := d.admin(&c)
	return adminResult(err, data), err
}

func (d *Device) admin(c *AdminCmd) ([]byte, error) {
	// The order of these checks is virtio's: group, opcode, member.
	if c.GroupType != AdminGroupSelf {
		return nil, errorf(ErrGroupType, "%d", c.GroupType)
	}
	if c.Opcode >= 64 || supportedOpcodes&(1<<c.Opcode) == 0 {
		return nil, errorf(ErrUnsupported, "admin opcode %#x", c.Opcode)
	}
	if d.s.used&(1<<c.Opcode) == 0 {
		return nil, errorf(ErrUnsupported, "admin opcode %#x is not in the driver's LIST_USE", c.Opcode)
	}
	// The list commands do not use the member id; the others take 0.
	if c.Opcode != AdminCmdListQuery && c.Opcode != AdminCmdListUse && c.GroupMemberID != 0 {
		return nil, errorf(ErrMember, "%d, the self group's member is 0", c.GroupMemberID)
	}
	switch c.Opcode {
	case AdminCmdListQuery:
		return opcodeList(supportedOpcodes).MarshalBinary()
	case AdminCmdListUse:
		var use uint64
		for _, op := range DecodeIDList(c.Data) {
			if op >= 64 || supportedOpcodes&(1<<op) == 0 {
				return nil, errorf(ErrInvalid, "LIST_USE names opcode %#x, which the device does not support", op)
			}
			use |= 1 << op
		}
		d.s.used = use
		return nil, nil
	case AdminCmdCapIDListQuery:
		return IDList{CapFFResource, CapFFSelector, CapFFAction}.MarshalBinary()
	case AdminCmdDeviceCapGet:
		switch id := DecodeCapData(c.Data).ID; id {
		case CapFFResource:
			rc := d.lim.ResourceCap()
			return rc.MarshalBinary()
		case CapFFSelector:
			sc := SupportedSelectors()
			return sc.MarshalBinary()
		case CapFFAction:
			ac := SupportedActions()
			return ac.MarshalBinary()
		default:
			return nil, errorf(ErrNotFound, "capability %#x", id)
		}
	case AdminCmdDriverCapSet:
		return nil, d.setCap(DecodeCapData(c.Data))
	case AdminCmdResourceObjDestroy:
		h := DecodeResourceObjHeader(c.Data)
		if err := d.objectsEnabled(h.Type); err != nil {
			return nil, err
		}
		return nil, d.destroy(h)
	}
	rc := DecodeResourceObjCmd(c.Data)
	if err := d.objectsEnabled(rc.Type); err != nil {
		return nil, err
	}
	switch c.Opcode {
	case AdminCmdResourceObjCreate:
		return nil, d.put(&rc, false)
	case AdminCmdResourceObjModify:
		return nil, d.put(&rc, true)
	}
	return d.query(rc.ResourceObjHeader)
}

// opcodeList returns the opcodes of a bitmap.
func opcodeList(bits uint64) IDList {
	var l IDList
	for op := range uint16(64) {
		if bits&(1<<op) != 0 {
			l = append(l, op)
		}
	}
	return l
}

// setCap executes DRIVER_CAP_SET: the driver's capability must be within
// the device's. While flow filter objects exist the capabilities cannot
// change (ErrBusy), though setting one to its current value is accepted.
func (d *Device) setCap(cd CapData) error {
	busy := len(d.s.groups)+len(d.s.classifiers)+len(d.s.rules) > 0
	unchanged := func(cur, next encoding.BinaryMarshaler) error {
		if !busy {
			return nil
		}
		if cur != nil {
			a, err1 := cur.MarshalBinary()
			b, err2 := next.MarshalBinary()
			if err1 == nil && err2 == nil && bytes.Equal(a, b) {
				return nil
			}
		}
		return errorf(ErrBusy, "capability %#x cannot change while flow filter objects exist", cd.ID)
	}
	switch cd.ID {
	case CapFFResource:
		rc := DecodeFFResourceCap(cd.Data)
		if err := checkResourceCap(&rc, d.lim.ResourceCap()); err != nil {
			return err
		}
		if err := unchanged(marshaler(d.s.res), &rc); err != nil {
			return err
		}
		d.s.res = &rc
	case CapFFSelector:
		sc := DecodeFFSelectorCap(cd.Data)
		if err := checkSelectorCap(&sc, SupportedSelectors()); err != nil {
			return err
		}
		if err := unchanged(marshaler(d.s.sel), &sc); err != nil {
			return err
		}
		d.s.sel = &sc
	case CapFFAction:
		ac := DecodeFFActionCap(cd.Data)
		if err := checkActionCap(&ac, SupportedActions()); err != nil {
			return err
		}
		if err := unchanged(marshaler(d.s.act), &ac); err != nil {
			return err
		}
		d.s.act = &ac
	default:
		return errorf(ErrNotFound, "capability %#x", cd.ID)
	}
	return nil
}

// marshaler returns p as an interface, nil (not a typed nil) if p is nil.
func marshaler[T any, P interface {
	*T
	encoding.BinaryMarshaler
}](p P) encoding.BinaryMarshaler {
	if p == nil {
		return nil
	}
	return p
}

// checkResourceCap checks the driver's limits against the device's.
func checkResourceCap(c *FFResourceCap, dev FFResourceCap) error {
	for _, f := range []struct {
		name    string
		v, most uint32
	}{
		{"groups_limit", c.GroupsLimit, dev.GroupsLimit},
		{"classifiers_limit", c.ClassifiersLimit, dev.ClassifiersLimit},
		{"rules_limit", c.RulesLimit, dev.RulesLimit},
		{"rules_per_group_limit", c.RulesPerGroupLimit, dev.RulesPerGroupLimit},
		{"last_rule_priority", uint32(c.LastRulePriority), uint32(dev.LastRulePriority)},
		{"selectors_per_classifier_limit", uint32(c.SelectorsPerClassifierLimit), uint32(dev.SelectorsPerClassifierLimit)},
	} {
		if f.v > f.most {
			return errorf(ErrInvalid, "%s %d, the device's is %d", f.name, f.v, f.most)
		}
	}
	return nil
}

// checkSelectorCap checks the driver's selector capability against the
// device's: types ascending, each offered by the device, with the same
// length, no flag or mask bit the device lacks.
func checkSelectorCap(c *FFSelectorCap, dev FFSelectorCap) error {
	for i, s := range c.Selectors {
		if i > 0 && s.Type <= c.Selectors[i-1].Type {
			return errorf(ErrSelector, "selector %d (%s) after %s: types must ascend, each once", i, selectorName(s.Type), selectorName(c.Selectors[i-1].Type))
		}
		ds, ok := dev.selector(s.Type)
		switch {
		case !ok:
			return errorf(ErrSelector, "selector %d (%s) is not in the device's capability", i, selectorName(s.Type))
		case len(s.Mask) != len(ds.Mask):
			return errorf(ErrSelector, "selector %d (%s) is %d bytes, want %d", i, selectorName(s.Type), len(s.Mask), len(ds.Mask))
		case s.Flags&^ds.Flags != 0:
			return errorf(ErrSelector, "selector %d (%s) flags %#x, the device offers %#x", i, selectorName(s.Type), s.Flags, ds.Flags)
		}
		if err := checkMask(i, s, ds.Mask, "the device's selector capability"); err != nil {
			return err
		}
	}
	return nil
}

// checkActionCap checks the driver's actions against the device's:
// ascending, each offered.
func checkActionCap(c *FFActionCap, dev FFActionCap) error {
	for i, a := range c.Actions {
		if i > 0 && a <= c.Actions[i-1] {
			return errorf(ErrInvalid, "action %d after %d: actions must ascend, each once", a, c.Actions[i-1])
		}
		if !slices.Contains(dev.Actions, a) {
			return errorf(ErrInvalid, "action %d is not in the device's capability", a)
		}
	}
	return nil
}

// objectsEnabled checks that t is a flow filter object type and that the
// driver has set the three flow filter capabilities.
func (d *Device) objectsEnabled(t uint16) error {
	if t != ObjFFGroup && t != ObjFFClassifier && t != ObjFFRule {
		return errorf(ErrInvalid, "resource object type %#x", t)
	}
	if d.s.res == nil || d.s.sel == nil || d.s.act == nil {
		return errorf(ErrDisabled, "DRIVER_CAP_SET of capabilities %#x, %#x and %#x comes before any flow filter object", CapFFResource, CapFFSelector, CapFFAction)
	}
	return nil
}

// checkID checks an object id against its limit and its existence.
func checkID(kind string, id, limit uint32, exists, modify bool) error {
	switch {
	case id >= limit:
		return errorf(ErrID, "%s %d, ids run from 0 to the driver's limit %d minus one", kind, id, limit)
	case modify && !exists:
		return errorf(ErrNotFound, "%s %d", kind, id)
	case !modify && exists:
		return errorf(ErrExists, "%s %d", kind, id)
	}
	return nil
}

// put executes RESOURCE_OBJ_CREATE (modify false) or _MODIFY.
func (d *Device) put(rc *ResourceObjCmd, modify bool) error {
	s := &d.s
	id := rc.ID
	switch rc.Type {
	case ObjFFGroup:
		_, exists := s.groups[id]
		if err := checkID("group", id, s.res.GroupsLimit, exists, modify); err != nil {
			return err
		}
		if s.groupRules[id] > 0 {
			return errorf(ErrBusy, "group %d has %d rules", id, s.groupRules[id])
		}
		g := DecodeFFGroup(rc.Data)
		for oid, og := range s.groups {
			if oid != id && og.Priority == g.Priority {
				return errorf(ErrInvalid, "group %d already has priority %d", oid, g.Priority)
			}
		}
		if !exists && len(s.groups) >= d.flim.MaxGroups {
			return errorf(ErrNoSpace, "%d groups", len(s.groups))
		}
		s.groups[id] = g
		d.gen++
	case ObjFFClassifier:
		_, exists := s.classifiers[id]
		if err := checkID("classifier", id, s.res.ClassifiersLimit, exists, modify); err != nil {
			return err
		}
		if s.classUse[id] > 0 {
			return errorf(ErrBusy, "classifier %d is used by %d rules", id, s.classUse[id])
		}
		c := DecodeFFClassifier(rc.Data)
		if err := checkClassifier(&c); err != nil {
			return err
		}
		if err := checkClassifierCap(&c, s.sel, s.res.SelectorsPerClassifierLimit); err != nil {
			return err
		}
		s.classifiers[id] = c
	case ObjFFRule:
		old, exists := s.rules[id]
		if err := checkID("rule", id, s.res.RulesLimit, exists, modify); err != nil {
			return err
		}
		r, err := d.rule(id, DecodeFFRule(rc.Data))
		if err != nil {
			return err
		}
		var prev *devRule
		if exists {
			prev = &old
		}
		if err := d.fits(prev, &r); err != nil {
			return err
		}
		if prev != nil {
			s.unaccount(prev)
		}
		s.rules[id] = r
		s.account(&r, 1)
		d.gen++
	}
	return nil
}

// rule converts a driver's rule to the flow rule it stands for, checking
// it against the driver's capabilities and the objects it names.
func (d *Device) rule(id uint32, w FFRule) (devRule, error) {
	s := &d.s
	if _, ok := s.groups[w.Group]; !ok {
		return devRule{}, errorf(ErrInvalid, "rule %d names group %d, which does not exist", id, w.Group)
	}
	c, ok := s.classifiers[w.Classifier]
	if !ok {
		return devRule{}, errorf(ErrInvalid, "rule %d names classifier %d, which does not exist", id, w.Classifier)
	}
	if w.Priority > s.res.LastRulePriority {
		return devRule{}, errorf(ErrInvalid, "rule %d priority %d, last_rule_priority is %d", id, w.Priority, s.res.LastRulePriority)
	}
	if !slices.Contains(s.act.Actions, w.Action) {
		return devRule{}, errorf(ErrInvalid, "rule %d action %d is not in the driver's action capability", id, w.Action)
	}
	r := flow.Rule{ID: id, Group: w.Group, Priority: w.Priority}
	switch w.Action {
	case FFActionDrop:
		r.Action = flow.Action{Kind: flow.ActionDrop}
	case FFActionDirectRxVQ:
		// vq_index is a virtqueue index: receive queue n is virtqueue 2n.
		if w.VQIndex%2 != 0 || int(w.VQIndex/2) >= d.lim.Queues {
			return devRule{}, errorf(ErrInvalid, "rule %d vq_index %d is not a receive virtqueue (0, 2, ... %d)", id, w.VQIndex, 2*(d.lim.Queues-1))
		}
		r.Action = flow.Action{Kind: flow.ActionQueue, Queue: w.VQIndex / 2}
	}
	m, err := MatchOf(&c, w.Key)
	if err != nil {
		return devRule{}, fmt.Errorf("rule %d: %w", id, err)
	}
	r.Match = m
	// The flow package has the last word on a rule's validity.
	check := flow.Set{Default: minimalDefault, Groups: []flow.Group{{ID: w.Group, Priority: s.groups[w.Group].Priority}}, Rules: []flow.Rule{r}}
	if err := check.Validate(d.flim); err != nil {
		return devRule{}, err
	}
	return devRule{wire: w.Clone(), rule: r}, nil
}

// minimalDefault is a default configuration every device limit admits,
// standing in for the real one when a rule is validated on its own.
var minimalDefault = rss.Config{Key: []byte{0}, Table: []uint16{0}}

// fits checks that replacing prev (nil for a new rule) by r keeps the
// rules within the group's, the driver's and vrss's map limits: the
// counts flow.Set.Validate checks, kept incrementally so that a command
// costs the same with 10 rules as with 10,000.
func (d *Device) fits(prev, r *devRule) error {
	s := &d.s
	n, inGroup, masks, words := len(s.rules), s.groupRules[r.rule.Group], len(s.masks), s.words
	if prev != nil {
		n--
		if prev.rule.Group == r.rule.Group {
			inGroup--
		}
		if s.masks[prev.rule.Match.Mask] == 1 && prev.rule.Match.Mask != r.rule.Match.Mask {
			masks--
		}
		words -= flow.RuleWords(&prev.rule.Match)
	}
	if s.masks[r.rule.Match.Mask] == 0 {
		masks++
	}
	words += flow.RuleWords(&r.rule.Match)
	switch {
	case uint32(inGroup) >= s.res.RulesPerGroupLimit:
		return errorf(ErrNoSpace, "group %d has %d rules, rules_per_group_limit is %d", r.rule.Group, inGroup, s.res.RulesPerGroupLimit)
	case n >= d.flim.MaxRules:
		return errorf(ErrNoSpace, "%d rules, at most %d", n, d.flim.MaxRules)
	case masks > d.flim.MaxPatterns:
		return errorf(ErrNoSpace, "%d distinct masks, at most %d: rules must share their classifiers' masks", masks, d.flim.MaxPatterns)
	case words > d.flim.MaxRuleWords:
		return errorf(ErrNoSpace, "the rules would take %d words of rule memory, at most %d", words, d.flim.MaxRuleWords)
	}
	return nil
}

// account adds (delta 1) or removes (delta -1) r's share of the counters.
func (s *state) account(r *devRule, delta int) {
	bump := func(m map[uint32]int, k uint32) {
		if m[k] += delta; m[k] == 0 {
			delete(m, k)
		}
	}
	bump(s.groupRules, r.rule.Group)
	bump(s.classUse, r.wire.Classifier)
	if s.masks[r.rule.Match.Mask] += delta; s.masks[r.rule.Match.Mask] == 0 {
		delete(s.masks, r.rule.Match.Mask)
	}
	s.words += delta * flow.RuleWords(&r.rule.Match)
}

// unaccount removes rule r.
func (s *state) unaccount(r *devRule) {
	s.account(r, -1)
	delete(s.rules, r.rule.ID)
}

// destroy executes RESOURCE_OBJ_DESTROY.
func (d *Device) destroy(h ResourceObjHeader) error {
	s := &d.s
	switch h.Type {
	case ObjFFGroup:
		if _, ok := s.groups[h.ID]; !ok {
			return errorf(ErrNotFound, "group %d", h.ID)
		}
		if n := s.groupRules[h.ID]; n > 0 {
			return errorf(ErrBusy, "group %d has %d rules", h.ID, n)
		}
		delete(s.groups, h.ID)
		d.gen++
	case ObjFFClassifier:
		if _, ok := s.classifiers[h.ID]; !ok {
			return errorf(ErrNotFound, "classifier %d", h.ID)
		}
		if n := s.classUse[h.ID]; n > 0 {
			return errorf(ErrBusy, "classifier %d is used by %d rules", h.ID, n)
		}
		delete(s.classifiers, h.ID)
	case ObjFFRule:
		r, ok := s.rules[h.ID]
		if !ok {
			return errorf(ErrNotFound, "rule %d", h.ID)
		}
		s.unaccount(&r)
		d.gen++
	}
	return nil
}

// query executes RESOURCE_OBJ_QUERY: the object as last created or
// modified, in its canonical wire form (reserved bytes zero).
func (d *Device) query(h ResourceObjHeader) ([]byte, error) {
	s := &d.s
	switch h.Type {
	case ObjFFGroup:
		if g, ok := s.groups[h.ID]; ok {
			return g.MarshalBinary()
		}
	case ObjFFClassifier:
		if c, ok := s.classifiers[h.ID]; ok {
			return c.MarshalBinary()
		}
	case ObjFFRule:
		if r, ok := s.rules[h.ID]; ok {
			return r.wire.MarshalBinary()
		}
	}
	return nil, errorf(ErrNotFound, "object type %#x id %d", h.Type, h.ID)
}

// Clone returns a deep copy of d: its limits, its generation and its
// whole state (configurations, contexts, capabilities, opcodes in use,
// objects). Commands given to the copy leave d as it was, and the copy
// answers every command exactly as d would. A VMM (or vrssd) applies a
// command to a clone, publishes the clone's Set, and keeps the clone only
// if publishing succeeded.
func (d *Device) Clone() *Device {
	d.mu.Lock()
	defer d.mu.Unlock()
	return &Device{
		lim: d.lim, flim: d.flim, gen: d.gen,
		initial: RSSConfig{Config: d.initial.Config.Clone(), MaxTxVQ: d.initial.MaxTxVQ},
		s:       d.s.clone(),
	}
}

// clone returns a deep copy of s.
func (s *state) clone() state {
	c := *s
	c.def = RSSConfig{Config: s.def.Config.Clone(), MaxTxVQ: s.def.MaxTxVQ}
	c.contexts = make(map[uint16]rss.Config, len(s.contexts))
	for id, cfg := range s.contexts {
		c.contexts[id] = cfg.Clone()
	}
	if s.res != nil {
		res := *s.res
		c.res = &res
	}
	if s.sel != nil {
		sel := s.sel.Clone()
		c.sel = &sel
	}
	if s.act != nil {
		c.act = &FFActionCap{Actions: slices.Clone(s.act.Actions)}
	}
	c.groups = maps.Clone(s.groups)
	c.classifiers = make(map[uint32]FFClassifier, len(s.classifiers))
	for id, cl := range s.classifiers {
		c.classifiers[id] = cl.Clone()
	}
	c.rules = make(map[uint32]devRule, len(s.rules))
	for id, r := range s.rules {
		r.wire = r.wire.Clone()
		c.rules[id] = r
	}
	c.groupRules = maps.Clone(s.groupRules)
	c.classUse = maps.Clone(s.classUse)
	c.masks = maps.Clone(s.masks)
	return c
}

// CtrlCmd is one control queue command: the class and command of its
// header, and its command-specific data.
type CtrlCmd struct {
	Class, Cmd uint8
	Payload    []byte
}

// Commands returns a sequence of commands that rebuilds d's state: given
// to a device fresh from NewDevice (or Reset) with the same limits, the
// control commands with Ctrl and then the admin commands with Admin, each
// in order, every one is accepted and the device ends in d's state: the
// same Set, the same capabilities, objects and opcodes in use, and so the
// same reply to any command (only Generation differs). It is how a VMM or
// vrssd keeps a guest's steering state across its own restarts.
//
// The control commands are VIRTIO_NET_CTRL_MQ_RSS_CONFIG of the default
// configuration (if it is not the initial one) and an ADD per context, by
// id (a context keeps no max_tx_vq of its own: ADD carries 1). The admin
// commands are a LIST_USE of every opcode (if there is anything to set
// up), DRIVER_CAP_SET of each capability set, a CREATE of each group,
// classifier and rule, by id, in the canonical forms RESOURCE_OBJ_QUERY
// answers, and last a LIST_USE of the opcodes the driver uses, if that is
// not what is in use by then.
func (d *Device) Commands() (ctrl []CtrlCmd, admin [][]byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := &d.s
	def, err1 := s.def.MarshalBinary()
	initial, err2 := d.initial.MarshalBinary()
	if err1 == nil && err2 == nil && !bytes.Equal(def, initial) {
		ctrl = append(ctrl, CtrlCmd{Class: CtrlClassMQ, Cmd: CmdRSSConfig, Payload: def})
	}
	for _, id := range slices.Sorted(maps.Keys(s.contexts)) {
		c := RSSContext{ID: id, RSSConfig: RSSConfig{Config: s.contexts[id], MaxTxVQ: 1}}
		if b, err := c.MarshalBinary(); err == nil {
			ctrl = append(ctrl, CtrlCmd{Class: CtrlClassRSSContext, Cmd: CmdRSSContextAdd, Payload: b})
		}
	}

	// One buffer holds every admin command, each a capped slice of it,
	// built with AppendBinary: a device with 10,000 rules exports its
	// commands in a few milliseconds.
	admin = make([][]byte, 0, len(s.groups)+len(s.classifiers)+len(s.rules)+5)
	size := 1 << 10
	size += len(s.groups) * (AdminCmdHeaderLen + resObjCmdFixedLen + ffGroupLen)
	for _, c := range s.classifiers {
		size += AdminCmdHeaderLen + resObjCmdFixedLen + ffListHeaderLen
		for _, sel := range c.Selectors {
			size += ffSelectorHdrLen + len(sel.Mask)
		}
	}
	for _, r := range s.rules {
		size += AdminCmdHeaderLen + resObjCmdFixedLen + ffRuleFixedLen + len(r.wire.Key)
	}
	buf := make([]byte, 0, size)
	cmd := func(op uint16, data func(b []byte) ([]byte, error)) {
		start := len(buf)
		c := AdminCmd{Opcode: op}
		buf, _ = c.AppendBinary(buf)
		var err error
		if buf, err = data(buf); err != nil {
			buf = buf[:start]
			return
		}
		admin = append(admin, buf[start:len(buf):len(buf)])
	}
	listUse := func(bits uint64) {
		cmd(AdminCmdListUse, opcodeList(bits).AppendBinary)
	}
	capSet := func(id uint16, v encoding.BinaryAppender) {
		cmd(AdminCmdDriverCapSet, func(b []byte) ([]byte, error) {
			b = binary.LittleEndian.AppendUint16(b, id)
			b = append(b, 0, 0, 0, 0, 0, 0)
			return v.AppendBinary(b)
		})
	}
	create := func(typ uint16, id uint32, v encoding.BinaryAppender) {
		cmd(AdminCmdResourceObjCreate, func(b []byte) ([]byte, error) {
			h := ResourceObjHeader{Type: typ, ID: id}
			b, _ = h.AppendBinary(b)
			b = binary.LittleEndian.AppendUint64(b, 0)
			return v.AppendBinary(b)
		})
	}
	used := d.newState().used
	if s.res != nil || s.sel != nil || s.act != nil || len(s.groups)+len(s.classifiers)+len(s.rules) > 0 {
		listUse(supportedOpcodes)
		used = supportedOpcodes
	}
	if s.res != nil {
		capSet(CapFFResource, s.res)
	}
	if s.sel != nil {
		capSet(CapFFSelector, s.sel)
	}
	if s.act != nil {
		capSet(CapFFAction, s.act)
	}
	for _, id := range slices.Sorted(maps.Keys(s.groups)) {
		g := s.groups[id]
		create(ObjFFGroup, id, &g)
	}
	for _, id := range slices.Sorted(maps.Keys(s.classifiers)) {
		c := s.classifiers[id]
		create(ObjFFClassifier, id, &c)
	}
	for _, id := range slices.Sorted(maps.Keys(s.rules)) {
		w := s.rules[id].wire
		create(ObjFFRule, id, &w)
	}
	if s.used != used {
		listUse(s.used)
	}
	return ctrl, admin
}
