package flow_test

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/vrss-dev/vrss/flow"
	"github.com/vrss-dev/vrss/internal/frame"
	"github.com/vrss-dev/vrss/internal/proto"
)

// keySeeds are frames of every kind the parser knows.
func keySeeds() [][]byte {
	s4, d4 := ip("10.0.0.1"), ip("10.0.0.2")
	s6, d6 := ip("2001:db8::1"), ip("2001:db8::2")
	dst := frame.ExtHeader{Type: proto.IPProtoDstOpts, Data: make([]byte, 6)}
	seeds := [][]byte{
		frame.Build(frame.Spec{Src: s4, Dst: d4, Proto: frame.ProtoTCP, SrcPort: 1, DstPort: 80}),
		frame.Build(frame.Spec{VLANs: []uint16{0x88a8, 0x8100}, Src: s4, Dst: d4, Proto: frame.ProtoUDP, IPv4Opts: []byte{1, 1, 1, 1}}),
		frame.Build(frame.Spec{Src: s4, Dst: d4, Proto: frame.ProtoTCP, MoreFrags: true}),
		frame.Build(frame.Spec{Src: s4, Dst: d4, Proto: frame.ProtoUDP, FragOffset: 9}),
		frame.Build(frame.Spec{Src: s6, Dst: d6, Proto: frame.ProtoTCP, Ext: []frame.ExtHeader{dst, frame.FragmentHeader(0, true), dst}}),
		frame.Build(frame.Spec{Src: s6, Dst: d6, Proto: frame.ProtoUDP, Ext: []frame.ExtHeader{frame.FragmentHeader(5, false), dst}}),
		frame.Build(frame.Spec{Src: s6, Dst: d6, Proto: 58, Ext: []frame.ExtHeader{{Type: proto.IPProtoAH, Data: make([]byte, 10)}}}),
		frame.Build(frame.Spec{VLANs: []uint16{0x8100, 0x8100, 0x8100}, Src: s6, Dst: d6, Proto: frame.ProtoTCP}),
	}
	r := rand.New(rand.NewPCG(7, 7))
	for i := 0; i < 8; i++ {
		seeds = append(seeds, frame.Random(r))
	}
	return seeds
}

// FuzzKeyOf: for any bytes, and for every prefix of them, KeyOf neither
// panics nor reads past the end (each prefix is a slice without spare
// capacity), and the key is consistent: see checkKey.
func FuzzKeyOf(f *testing.F) {
	for _, s := range keySeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 600 {
			b = b[:600]
		}
		for n := 0; n <= len(b); n++ {
			cut := exact(b[:n])
			checkKey(t, cut, flow.KeyOf(cut))
		}
	})
}

// errContradiction stands for whatever error Normalize gives a match whose
// flags fix to zero a flag its fields imply: no frame has such fields.
var errContradiction = errors.New("an implied flag fixed to zero")

// impliedFlags are the flags the fields m names imply (m's EtherType fixed
// to IPv4 or IPv6 if it names IP fields), from the documentation.
func impliedFlags(m flow.Match) byte {
	named := func(off, n int) bool {
		for _, b := range m.Mask[off : off+n] {
			if b != 0 {
				return true
			}
		}
		return false
	}
	need := byte(0)
	if named(flow.OffTCI, 2) {
		need |= flow.FlagTagged
	}
	if named(flow.OffSrcIP, 32) || named(flow.OffProto, 1) || named(flow.OffSrcPort, 4) || named(flow.OffTCPFlags, 1) {
		if binary.BigEndian.Uint16(m.Value[flow.OffEtherType:])&binary.BigEndian.Uint16(m.Mask[flow.OffEtherType:]) == 0x0800 {
			need |= flow.FlagIPv4
		} else {
			need |= flow.FlagIPv6
		}
	}
	if named(flow.OffProto, 1) {
		need |= flow.FlagProto
	}
	if named(flow.OffSrcPort, 4) {
		need |= flow.FlagPorts
	}
	if named(flow.OffTCPFlags, 1) {
		need |= flow.FlagPorts | flow.FlagTCP
	}
	return need
}

// normalizeError says which error, if any, Normalize must give m: worked
// out from the documentation, independently of Normalize.
func normalizeError(m flow.Match) error {
	named := func(off, n int) bool {
		for _, b := range m.Mask[off : off+n] {
			if b != 0 {
				return true
			}
		}
		return false
	}
	if m.Mask[flow.OffReserved] != 0 || m.Mask[flow.OffFlags]&0x80 != 0 {
		return flow.ErrField
	}
	if named(flow.OffSrcIP, 32) || named(flow.OffProto, 1) || named(flow.OffSrcPort, 4) || named(flow.OffTCPFlags, 1) {
		et := binary.BigEndian.Uint16(m.Value[flow.OffEtherType:]) & binary.BigEndian.Uint16(m.Mask[flow.OffEtherType:])
		switch {
		case binary.BigEndian.Uint16(m.Mask[flow.OffEtherType:]) != 0xffff || et != 0x0800 && et != 0x86dd:
			return flow.ErrNoFamily
		case et == 0x0800 && (named(flow.OffSrcIP+4, 12) || named(flow.OffDstIP+4, 12)):
			return flow.ErrField
		}
	}
	if impliedFlags(m)&m.Mask[flow.OffFlags]&^m.Value[flow.OffFlags] != 0 {
		return errContradiction
	}
	return nil
}

// FuzzMatchNormalize: Normalize fails exactly when the documentation says,
// leaving the match unchanged; otherwise it clears the value outside the
// mask, adds the implied flags, changes nothing else (it only narrows what
// the match accepts) and is idempotent.
func FuzzMatchNormalize(f *testing.F) {
	add := func(m flow.Match) { f.Add(m.Value[:], m.Mask[:]) }
	add(flow.Match{})
	add(match(etype(0x0800), protoIs(6), dport(80, 0xffff)))
	add(match(etype(0x86dd), srcNet("2001:db8::/32"), tcpFlags(2, 0x12)))
	add(match(tci(100, 0x0fff), etype(0x0800), srcNet("10.0.0.0/8")))
	add(match(protoIs(6)))
	add(match(etype(0x0800), flagsIs(0, fFrag), sport(1, 0xff)))
	f.Fuzz(func(t *testing.T, value, mask []byte) {
		var m flow.Match
		copy(m.Value[:], value)
		copy(m.Mask[:], mask)
		orig := m
		err := m.Normalize()
		want := normalizeError(orig)
		switch {
		case want == errContradiction && err == nil:
			t.Fatalf("Normalize(%x/%x) accepted flags %#x/%#x that exclude the fields named (they imply %#x)",
				orig.Value[:], orig.Mask[:], orig.Value[flow.OffFlags], orig.Mask[flow.OffFlags], impliedFlags(orig))
		case want == errContradiction:
		case !errors.Is(err, want) || (err == nil) != (want == nil):
			t.Fatalf("Normalize(%x/%x) = %v, want %v", orig.Value[:], orig.Mask[:], err, want)
		}
		_ = m.String()
		if err != nil {
			if m != orig {
				t.Fatal("a failed Normalize changed the match")
			}
			return
		}
		fl := flow.OffFlags
		for i := range m.Value {
			if m.Value[i]&^m.Mask[i] != 0 {
				t.Fatalf("byte %d: value %#x outside mask %#x", i, m.Value[i], m.Mask[i])
			}
			if i != fl && (m.Mask[i] != orig.Mask[i] || m.Value[i] != orig.Value[i]&orig.Mask[i]) {
				t.Fatalf("byte %d changed: %#x/%#x → %#x/%#x", i, orig.Value[i], orig.Mask[i], m.Value[i], m.Mask[i])
			}
		}
		if m.Mask[fl]&orig.Mask[fl] != orig.Mask[fl] {
			t.Fatalf("flags mask %#x lost bits of %#x", m.Mask[fl], orig.Mask[fl])
		}
		if (m.Value[fl]^orig.Value[fl])&orig.Mask[fl] != 0 {
			t.Fatalf("flags %#x/%#x turned into %#x/%#x: the match accepts frames the original did not", orig.Value[fl], orig.Mask[fl], m.Value[fl], m.Mask[fl])
		}
		need := impliedFlags(orig)
		if m.Mask[fl]&need != need || m.Value[fl]&need != need {
			t.Fatalf("flags %#x/%#x do not require %#x", m.Value[fl], m.Mask[fl], need)
		}
		if m.Mask[fl] != orig.Mask[fl]|need {
			t.Fatalf("flags mask %#x, want %#x", m.Mask[fl], orig.Mask[fl]|need)
		}
		again := m
		if err := again.Normalize(); err != nil || again != m {
			t.Fatalf("not idempotent: %v", err)
		}
		if w := m.Words(); w < 0 || w > flow.KeyWords || flow.RuleWords(&m)%2 != 0 {
			t.Fatalf("Words %d, RuleWords %d", w, flow.RuleWords(&m))
		}
	})
}
