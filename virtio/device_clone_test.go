package virtio

import (
	"bytes"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/vrss-dev/vrss/rss"
)

// Clone and Commands: a clone is independent of its original and answers
// as it does; the commands a device exports rebuild it exactly.

// cloneSetup brings d to a state with something of everything: the
// prepared admin objects and, with 4 queues or more, a context and a
// default configuration.
func cloneSetup(t *testing.T, d *Device) {
	t.Helper()
	for _, c := range prepared(d.Limits()) {
		if _, err := d.Admin(c); err != nil {
			t.Fatalf("set-up: %v", err)
		}
	}
	if d.Limits().Queues < 4 {
		return
	}
	def := RSSConfig{Config: rss.Config{HashTypes: rss.HashTCPv4, Key: rss.DefaultKey, Table: []uint16{0, 1, 2, 3}}, MaxTxVQ: 3}
	if _, _, err := d.Ctrl(CtrlClassMQ, CmdRSSConfig, mustMarshal(&def)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.Ctrl(CtrlClassRSSContext, CmdRSSContextAdd, goldenContextCmd(2)); err != nil {
		t.Fatal(err)
	}
}

func TestDeviceClone(t *testing.T) {
	d := newTestDevice(t, DefaultDeviceLimits(4))
	cloneSetup(t, d)
	before := snapshot(d)
	c := d.Clone()
	if got := snapshot(c); !reflect.DeepEqual(got, before) {
		t.Fatalf("clone:\n%+v\nwant\n%+v", got, before)
	}
	// Everything done to the clone leaves the original as it was.
	for _, cmd := range [][]byte{
		destroy(ObjFFRule, 0),
		modify(ObjFFClassifier, 1, &ethType),
		create(ObjFFGroup, 1, &FFGroup{Priority: 9}),
		create(ObjFFRule, 3, ruleOn(1, 1, 2)),
		acmd(AdminCmdListUse, unhex("03 00 00 00 00 00 00 00")),
	} {
		if _, err := c.Admin(cmd); err != nil {
			t.Fatalf("% x on the clone: %v", cmd, err)
		}
	}
	if _, _, err := c.Ctrl(CtrlClassRSSContext, CmdRSSContextMod, goldenContextCmd(2)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Ctrl(CtrlClassRSSContext, CmdRSSContextAdd, goldenContextCmd(3)); err != nil {
		t.Fatal(err)
	}
	if got := snapshot(d); !reflect.DeepEqual(got, before) {
		t.Fatal("commands on the clone changed the original")
	}
	c.Reset()
	if got := snapshot(d); !reflect.DeepEqual(got, before) {
		t.Fatal("resetting the clone changed the original")
	}
	// A clone answers every command byte for byte as its original, and
	// they end in the same state.
	c = d.Clone()
	for i, cmd := range probeCommands() {
		r1, err1 := d.Admin(cmd)
		r2, err2 := c.Admin(cmd)
		if !bytes.Equal(r1, r2) || (err1 == nil) != (err2 == nil) {
			t.Fatalf("command %d (% x): original % x (%v), clone % x (%v)", i, cmd, r1, err1, r2, err2)
		}
	}
	for _, cc := range []CtrlCmd{{9, 0, nil}, {9, 1, goldenContextCmd(2)}, {9, 3, unhex("02 00")}, {9, 1, goldenContextCmd(1)}} {
		a1, p1, _ := d.Ctrl(cc.Class, cc.Cmd, cc.Payload)
		a2, p2, _ := c.Ctrl(cc.Class, cc.Cmd, cc.Payload)
		if a1 != a2 || !bytes.Equal(p1, p2) {
			t.Fatalf("control %d/%d: original %d % x, clone %d % x", cc.Class, cc.Cmd, a1, p1, a2, p2)
		}
	}
	if a, b := snapshot(d), snapshot(c); !reflect.DeepEqual(a, b) {
		t.Fatal("original and clone ended apart")
	}
}

// probeCommands are admin commands whose replies tell devices apart: a
// query of every object id the tests use, the list and capability
// queries, and changes that succeed or fail depending on the state.
func probeCommands() [][]byte {
	var out [][]byte
	for _, typ := range []uint16{ObjFFGroup, ObjFFClassifier, ObjFFRule} {
		for id := range uint32(8) {
			out = append(out, query(typ, id))
		}
	}
	out = append(out, acmd(AdminCmdListQuery), acmd(AdminCmdCapIDListQuery), capGet(CapFFResource), capGet(CapFFSelector),
		create(ObjFFGroup, 4, &FFGroup{Priority: 3}),
		create(ObjFFClassifier, 3, &ethSrcMAC),
		create(ObjFFRule, 5, ruleOn(4, 3, 1)),
		create(ObjFFRule, 6, ruleOn(0, 1, 1)),
		destroy(ObjFFClassifier, 0),
		destroy(ObjFFGroup, 0),
		destroy(ObjFFRule, 0),
		destroy(ObjFFGroup, 0),
		capSet(CapFFResource, ptr(DefaultDeviceLimits(4).ResourceCap())),
	)
	return out
}

// randomCommand returns a random admin or control command for a device
// with limits l, valid or not: the shapes the sequence tests and fuzzers
// use, with small ids so that commands meet each other's objects.
func randomCommand(r *rand.Rand, l DeviceLimits) (admin []byte, ctrl *CtrlCmd) {
	id := func(n int) uint32 { return uint32(r.IntN(n)) }
	classifiers := []FFClassifier{goldenClassifierValue, ethDstMAC, ethSrcMAC, ethType}
	rule := func() *FFRule {
		w := &FFRule{Group: id(4), Classifier: id(4), Priority: uint8(r.IntN(5)), Action: FFActionDrop, Key: ethKey}
		if r.IntN(2) == 0 {
			w.Key = goldenRuleKey
		}
		if r.IntN(2) == 0 {
			w.Action, w.VQIndex = FFActionDirectRxVQ, uint16(2*r.IntN(l.Queues))
		}
		return w
	}
	switch n := r.IntN(100); {
	case n < 4:
		return listUseAll, nil
	case n < 5:
		return acmd(AdminCmdListUse, []byte{byte(r.Uint32()) | 1, 0x3f}), nil
	case n < 9:
		return capSet(CapFFResource, ptr(l.ResourceCap())), nil
	case n < 10:
		rc := l.ResourceCap()
		rc.LastRulePriority, rc.GroupsLimit = 3, 3
		return capSet(CapFFResource, &rc), nil
	case n < 13:
		return capSet(CapFFSelector, ptr(SupportedSelectors())), nil
	case n < 14:
		sc := SupportedSelectors()
		sc.Selectors = sc.Selectors[:1]
		return capSet(CapFFSelector, &sc), nil
	case n < 17:
		return capSet(CapFFAction, ptr(SupportedActions())), nil
	case n < 18:
		return capSet(CapFFAction, &FFActionCap{Actions: []uint8{FFActionDrop}}), nil
	case n < 26:
		return objCmd([]uint16{AdminCmdResourceObjCreate, AdminCmdResourceObjModify}[r.IntN(2)], ObjFFGroup, id(5), &FFGroup{Priority: uint16(r.IntN(4))}), nil
	case n < 34:
		return objCmd([]uint16{AdminCmdResourceObjCreate, AdminCmdResourceObjModify}[r.IntN(2)], ObjFFClassifier, id(5), &classifiers[r.IntN(len(classifiers))]), nil
	case n < 52:
		return objCmd([]uint16{AdminCmdResourceObjCreate, AdminCmdResourceObjModify}[r.IntN(2)], ObjFFRule, id(8), rule()), nil
	case n < 62:
		return destroy([]uint16{ObjFFGroup, ObjFFClassifier, ObjFFRule}[r.IntN(3)], id(8)), nil
	case n < 66:
		return query([]uint16{ObjFFGroup, ObjFFClassifier, ObjFFRule}[r.IntN(3)], id(8)), nil
	case n < 68:
		return acmd(AdminCmdListQuery), nil
	case n < 80:
		return nil, &CtrlCmd{CtrlClassRSSContext, uint8(1 + r.IntN(2)), goldenContextCmd(uint16(1 + r.IntN(3)))}
	case n < 86:
		return nil, &CtrlCmd{CtrlClassRSSContext, CmdRSSContextDel, mustMarshal(RSSContextID(1 + r.IntN(3)))}
	case n < 90:
		def := RSSConfig{Config: rss.Config{HashTypes: rss.HashType(r.IntN(1 << 9)), Key: rss.DefaultKey[:20+r.IntN(21)], Table: []uint16{uint16(r.IntN(l.Queues)), 0}}, MaxTxVQ: uint16(1 + r.IntN(l.Queues))}
		return nil, &CtrlCmd{CtrlClassMQ, CmdRSSConfig, mustMarshal(&def)}
	case n < 92:
		return nil, &CtrlCmd{CtrlClassRSSContext, CmdRSSContextCapGet, nil}
	}
	return nil, nil // a reset
}

// replayed returns a fresh device with d's limits after d's Commands,
// failing t if any command is refused.
func replayed(t testing.TB, d *Device) *Device {
	t.Helper()
	ctrl, admin := d.Commands()
	fresh := newTestDevice(t, d.Limits())
	for _, c := range ctrl {
		if ack, _, err := fresh.Ctrl(c.Class, c.Cmd, c.Payload); ack != AckOK {
			t.Fatalf("replaying control %d/%d % x: %v", c.Class, c.Cmd, c.Payload, err)
		}
	}
	for _, c := range admin {
		if _, err := fresh.Admin(c); err != nil {
			t.Fatalf("replaying admin % x: %v", c, err)
		}
	}
	return fresh
}

// sameDevice fails t unless a and b hold the same state (generations
// aside), the same Set, and answer the probe commands alike.
func sameDevice(t testing.TB, a, b *Device) {
	t.Helper()
	sa, sb := snapshot(a), snapshot(b)
	if !reflect.DeepEqual(sa.s, sb.s) {
		t.Fatalf("state\n%+v\nreplayed as\n%+v", sa.s, sb.s)
	}
	if !reflect.DeepEqual(a.Set(), b.Set()) {
		t.Fatalf("Set\n%+v\nreplayed as\n%+v", a.Set(), b.Set())
	}
	if a.MaxTxVQ() != b.MaxTxVQ() {
		t.Fatalf("max_tx_vq %d, replayed %d", a.MaxTxVQ(), b.MaxTxVQ())
	}
	ca, cb := a.Clone(), b.Clone()
	for _, cmd := range probeCommands() {
		r1, _ := ca.Admin(cmd)
		r2, _ := cb.Admin(cmd)
		if !bytes.Equal(r1, r2) {
			t.Fatalf("% x: % x, replayed % x", cmd, r1, r2)
		}
	}
	for id := range uint16(4) {
		for _, cmd := range []uint8{CmdRSSContextAdd, CmdRSSContextMod} {
			a1, _, _ := ca.Ctrl(CtrlClassRSSContext, cmd, goldenContextCmd(id))
			a2, _, _ := cb.Ctrl(CtrlClassRSSContext, cmd, goldenContextCmd(id))
			if a1 != a2 {
				t.Fatalf("context %d command %d: ack %d, replayed %d", id, cmd, a1, a2)
			}
		}
	}
}

// TestDeviceCommands drives devices through random command sequences and,
// every few commands, rebuilds each from its Commands.
func TestDeviceCommands(t *testing.T) {
	for _, l := range []DeviceLimits{DefaultDeviceLimits(4), fuzzLimitsSmall} {
		r := rand.New(rand.NewPCG(uint64(l.Queues), 13))
		for seq := range 200 {
			d := newTestDevice(t, l)
			if seq%2 == 0 {
				cloneSetup(t, d)
			}
			for step := range 60 {
				admin, ctrl := randomCommand(r, l)
				switch {
				case admin != nil:
					d.Admin(admin)
				case ctrl != nil:
					d.Ctrl(ctrl.Class, ctrl.Cmd, ctrl.Payload)
				case r.IntN(4) == 0:
					d.Reset()
				}
				if step%10 == 9 {
					sameDevice(t, d, replayed(t, d))
				}
			}
		}
	}
}

// Commands of a fresh device are none; of a device whose driver only
// narrowed its opcodes, that LIST_USE alone.
func TestDeviceCommandsMinimal(t *testing.T) {
	d := newTestDevice(t, DefaultDeviceLimits(2))
	if ctrl, admin := d.Commands(); len(ctrl) != 0 || len(admin) != 0 {
		t.Fatalf("a fresh device: %v, %x", ctrl, admin)
	}
	d.Admin(acmd(AdminCmdListUse))
	ctrl, admin := d.Commands()
	if len(ctrl) != 0 || len(admin) != 1 || !bytes.Equal(admin[0], acmd(AdminCmdListUse)) {
		t.Fatalf("after an empty LIST_USE: %v, % x", ctrl, admin)
	}
	sameDevice(t, d, replayed(t, d))
}

func FuzzDeviceCommands(f *testing.F) {
	f.Add(seq(1, create(ObjFFRule, 1, ruleOn(0, 1, 2))))
	f.Add(seq(3, destroy(ObjFFRule, 0), acmd(AdminCmdListUse, unhex("01"))))
	f.Add(seq(1, modify(ObjFFClassifier, 1, &ethType), create(ObjFFGroup, 2, &FFGroup{Priority: 2})))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		l := DefaultDeviceLimits(4)
		if data[0]&2 != 0 {
			l = fuzzLimitsSmall
		}
		d := newTestDevice(t, l)
		if data[0]&1 != 0 {
			cloneSetup(t, d)
		}
		for _, cmd := range commands(data[1:]) {
			if len(cmd) > 0 && cmd[0] == 0xff {
				// A control command: class, command, payload.
				if len(cmd) >= 3 {
					d.Ctrl(cmd[1], cmd[2], cmd[3:])
				}
				continue
			}
			d.Admin(cmd)
		}
		sameDevice(t, d, replayed(t, d))
	})
}
