package virtio

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"testing"

	"github.com/vrss-dev/vrss/flow"
	"github.com/vrss-dev/vrss/rss"
)

// deviceErrors are all the device model may return (wrapped).
var deviceErrors = []error{
	ErrUnsupported, ErrGroupType, ErrMember, ErrDisabled, ErrInvalid, ErrSelector, ErrMask, ErrKey,
	ErrID, ErrExists, ErrNotFound, ErrBusy, ErrNoSpace,
	ErrTruncated, ErrTrailingBytes, ErrTableMask, ErrTxQueues,
	rss.ErrKeySize, rss.ErrTableLength, rss.ErrQueueRange, rss.ErrHashTypes,
	flow.ErrLimit, flow.ErrField, flow.ErrNoFamily, flow.ErrAction,
}

func checkDeviceError(t *testing.T, err error) {
	t.Helper()
	for _, e := range deviceErrors {
		if errors.Is(err, e) {
			return
		}
	}
	t.Fatalf("error %v wraps none of the typed errors", err)
}

// fuzzLimitsSmall make the fuzzer reach every limit quickly.
var fuzzLimitsSmall = DeviceLimits{
	Queues: 2, RSS: rss.DefaultLimits(2),
	Flow:        flow.Limits{MaxContexts: 2, MaxContextTable: 8, MaxGroups: 3, MaxRules: 6, MaxPatterns: 2, MaxRuleWords: 24},
	Classifiers: 4, RulesPerGroup: 3, LastRulePriority: 3, SelectorsPerClassifier: 3,
}

// commands splits fuzz data into commands, each an le16 length and its
// bytes, at most 16.
func commands(b []byte) [][]byte {
	var out [][]byte
	for len(b) >= 2 && len(out) < 16 {
		n := int(binary.LittleEndian.Uint16(b))
		b = b[2:]
		n = min(n, len(b))
		out = append(out, b[:n])
		b = b[n:]
	}
	return out
}

// seq joins commands in the format commands splits.
func seq(mode byte, cmds ...[]byte) []byte {
	b := []byte{mode}
	for _, c := range cmds {
		b = binary.LittleEndian.AppendUint16(b, uint16(len(c)))
		b = append(b, c...)
	}
	return b
}

// prepared returns the command sequence mode bit 0 runs before the fuzz
// input: the driver's set-up for limits l, a group, two classifiers and a
// rule.
func prepared(l DeviceLimits) [][]byte {
	return [][]byte{listUseAll, capSet(CapFFResource, ptr(l.ResourceCap())), fullCaps[1], fullCaps[2],
		create(ObjFFGroup, 0, &FFGroup{Priority: 1}),
		create(ObjFFClassifier, 0, &goldenClassifierValue),
		create(ObjFFClassifier, 1, &ethDstMAC),
		create(ObjFFRule, 0, &FFRule{Group: 0, Classifier: 0, Priority: 1, Action: FFActionDirectRxVQ, VQIndex: 2, Key: goldenRuleKey}),
	}
}

func FuzzAdminCommand(f *testing.F) {
	f.Add(seq(1, create(ObjFFRule, 1, ruleOn(0, 1, 2))))
	f.Add(seq(0, append([][]byte{listUseAll}, fullCaps...)...))
	f.Add(seq(3, destroy(ObjFFGroup, 0), destroy(ObjFFRule, 0), destroy(ObjFFClassifier, 0)))
	f.Add(seq(1, modify(ObjFFClassifier, 1, &ethType), query(ObjFFRule, 0), capGet(CapFFSelector)))
	f.Add(seq(3, create(ObjFFGroup, 2, &FFGroup{Priority: 2}), modify(ObjFFRule, 0, ruleOn(2, 1, 3))))
	f.Add(seq(1, []byte{0x0a, 0, 0, 0}))
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
			for _, c := range prepared(l) {
				if _, err := d.Admin(c); err != nil {
					t.Fatalf("set-up: %v", err)
				}
			}
		}
		for _, cmd := range commands(data[1:]) {
			before := snapshot(d)
			res, err := d.Admin(cmd)
			after := snapshot(d)
			if len(res) < AdminResultHeaderLen || len(res)%8 != 0 {
				t.Fatalf("result of %d bytes", len(res))
			}
			r := DecodeAdminResult(res)
			if st, q := AdminStatus(err); r.Status != st || r.Qualifier != q {
				t.Fatalf("result status %d/%d, error %v", r.Status, r.Qualifier, err)
			}
			if after.gen < before.gen {
				t.Fatal("generation went back")
			}
			if err != nil {
				checkDeviceError(t, err)
				if len(res) != AdminResultHeaderLen {
					t.Fatalf("refused with %d bytes of result", len(res))
				}
				if !reflect.DeepEqual(before, after) {
					t.Fatalf("refused (%v), but the device changed", err)
				}
			} else if c := DecodeAdminCmd(cmd); c.Opcode == AdminCmdResourceObjCreate || c.Opcode == AdminCmdResourceObjModify {
				// What was stored queries back as its canonical form.
				rc := DecodeResourceObjCmd(c.Data)
				qr, err := d.Admin(query(rc.Type, rc.ID))
				if err != nil {
					t.Fatalf("query after %#x: %v", c.Opcode, err)
				}
				if canon := canonical(rc.Type, rc.Data); !bytes.Equal(DecodeAdminResult(qr).Data[:len(canon)], canon) {
					t.Fatalf("query = % x, want % x", qr, canon)
				}
			}
			checkInvariants(t, d)
		}
	})
}

// canonical returns the wire form an object decodes and re-encodes to.
func canonical(typ uint16, data []byte) []byte {
	switch typ {
	case ObjFFGroup:
		g := DecodeFFGroup(data)
		return mustMarshal(&g)
	case ObjFFClassifier:
		c := DecodeFFClassifier(data)
		return mustMarshal(&c)
	}
	r := DecodeFFRule(data)
	return mustMarshal(&r)
}

// ctrlSeq joins control commands: class, command, le16 length, payload.
func ctrlSeq(cmds ...[]byte) []byte { return bytes.Join(cmds, nil) }

func ctrlCmd(class, cmd uint8, payload []byte) []byte {
	b := []byte{class, cmd}
	b = binary.LittleEndian.AppendUint16(b, uint16(len(payload)))
	return append(b, payload...)
}

func FuzzCtrlCommand(f *testing.F) {
	def := RSSConfig{Config: rss.Config{HashTypes: rss.HashTCPv4, Key: rss.DefaultKey, Table: []uint16{0, 1, 2, 3}}, MaxTxVQ: 4}
	f.Add(ctrlSeq(ctrlCmd(9, 1, goldenContextCmd(1)), ctrlCmd(9, 2, goldenContextCmd(1)), ctrlCmd(9, 3, unhex("01 00"))))
	f.Add(ctrlSeq(ctrlCmd(9, 0, nil), ctrlCmd(4, 1, mustMarshal(&def))))
	f.Add(ctrlSeq(ctrlCmd(9, 1, goldenContextCmd(2)[:30]), ctrlCmd(9, 1, goldenContextCmd(9))))
	f.Add(ctrlSeq(ctrlCmd(4, 0, unhex("02 00"))))
	f.Fuzz(func(t *testing.T, data []byte) {
		d := newTestDevice(t, DefaultDeviceLimits(4))
		for n := 0; len(data) >= 4 && n < 16; n++ {
			class, cmd, size := data[0], data[1], int(binary.LittleEndian.Uint16(data[2:]))
			data = data[4:]
			size = min(size, len(data))
			payload := data[:size]
			data = data[size:]

			before := snapshot(d)
			ack, reply, err := d.Ctrl(class, cmd, payload)
			after := snapshot(d)
			if ack != Ack(err) {
				t.Fatalf("ack %d with error %v", ack, err)
			}
			if err != nil {
				checkDeviceError(t, err)
				if reply != nil || !reflect.DeepEqual(before, after) {
					t.Fatalf("refused (%v), but replied % x or changed", err, reply)
				}
			} else if (after.gen == before.gen) != (class == CtrlClassRSSContext && cmd == CmdRSSContextCapGet) {
				t.Fatalf("class %d command %d accepted, generation %d -> %d", class, cmd, before.gen, after.gen)
			}
			checkInvariants(t, d)
		}
	})
}

// FuzzMatchOf feeds arbitrary classifier and rule bytes to the decoders
// and MatchOf: no panic, canonical re-encoding, and an accepted match is
// normalized and valid in a flow.Set.
func FuzzMatchOf(f *testing.F) {
	f.Add(goldenClassifier, goldenRule)
	f.Add(mustMarshal(&ethDstMAC), mustMarshal(ruleOn(0, 0, 0)))
	f.Add(goldenClassifier[:20], goldenRule[:20])
	f.Add(patch(goldenClassifier, 8+8+14+8+8, 0xff), goldenRule)
	f.Fuzz(func(t *testing.T, cb, rb []byte) {
		c := DecodeFFClassifier(cb)
		r := DecodeFFRule(rb)
		if out, err := c.MarshalBinary(); err != nil {
			t.Fatalf("decoded classifier does not encode: %v", err)
		} else if c2 := DecodeFFClassifier(out); !reflect.DeepEqual(c, c2) {
			t.Fatalf("classifier re-decodes as %+v, want %+v", c2, c)
		}
		if out, err := r.MarshalBinary(); err != nil {
			t.Fatalf("decoded rule does not encode: %v", err)
		} else if r2 := DecodeFFRule(out); !reflect.DeepEqual(r, r2) {
			t.Fatalf("rule re-decodes as %+v, want %+v", r2, r)
		}
		m, err := MatchOf(&c, r.Key)
		if err != nil {
			if !errors.Is(err, ErrSelector) && !errors.Is(err, ErrMask) && !errors.Is(err, ErrKey) {
				t.Fatalf("MatchOf error %v", err)
			}
			if m != (flow.Match{}) {
				t.Fatal("non-zero match with an error")
			}
			return
		}
		n := m
		if err := n.Normalize(); err != nil || n != m {
			t.Fatalf("match not normalized: %v", err)
		}
		s := flow.Set{Default: minimalDefault, Groups: []flow.Group{{ID: 1}}, Rules: []flow.Rule{{ID: 1, Group: 1, Match: m, Action: flow.Action{Kind: flow.ActionDrop}}}}
		if err := s.Validate(flow.DefaultLimits(1, rss.DefaultLimits(1))); err != nil {
			t.Fatalf("match %s refused by flow: %v", m.String(), err)
		}
	})
}
