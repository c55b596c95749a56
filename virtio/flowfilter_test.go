package virtio

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

var goldenResourceCap = unhex(`
	40 00 00 00   # groups_limit 64
	10 27 00 00   # classifiers_limit 10000
	0f 27 00 00   # rules_limit 9999
	00 01 00 00   # rules_per_group_limit 256
	fe            # last_rule_priority 254
	03            # selectors_per_classifier_limit 3
	00 00         # reserved[2]
`)

var goldenResourceCapValue = FFResourceCap{
	GroupsLimit: 64, ClassifiersLimit: 10000, RulesLimit: 9999, RulesPerGroupLimit: 256,
	LastRulePriority: 254, SelectorsPerClassifierLimit: 3,
}

// goldenSelectorCap is what vrss declares: SupportedSelectors.
var goldenSelectorCap = unhex(`
	05 00 00 00 00 00 00 00        # count 5, reserved[7]
	01 01 00 00 0e 00 00 00        # ETH, partial masks, 14 bytes
	ff ff ff ff ff ff              #   destination MAC
	ff ff ff ff ff ff              #   source MAC
	ff ff                          #   EtherType
	02 01 00 00 14 00 00 00        # IPv4, partial masks, 20 bytes
	00 00 00 00 00 00 00 00 00     #   version/IHL .. TTL
	ff                             #   protocol
	00 00                          #   checksum
	ff ff ff ff                    #   source address
	ff ff ff ff                    #   destination address
	03 01 00 00 28 00 00 00        # IPv6, partial masks, 40 bytes
	00 00 00 00 00 00              #   version .. payload length
	ff                             #   next header
	00                             #   hop limit
	ff ff ff ff ff ff ff ff ff ff ff ff ff ff ff ff # source address
	ff ff ff ff ff ff ff ff ff ff ff ff ff ff ff ff # destination address
	04 01 00 00 14 00 00 00        # TCP, partial masks, 20 bytes
	ff ff ff ff                    #   source and destination port
	00 00 00 00 00 00 00 00 00     #   sequence, acknowledgement, data offset
	ff                             #   flags CWR .. FIN
	00 00 00 00 00 00              #   window, checksum, urgent pointer
	05 01 00 00 08 00 00 00        # UDP, partial masks, 8 bytes
	ff ff ff ff                    #   source and destination port
	00 00 00 00                    #   length, checksum
`)

var goldenActionCap = unhex(`
	02 00 00 00 00 00 00 00        # count 2, reserved[7]
	01 02                          # DROP, DIRECT_RX_VQ
`)

// goldenClassifier is ETH (EtherType), IPv4 (protocol, destination /24),
// TCP (destination port).
var goldenClassifier = unhex(`
	03 00 00 00 00 00 00 00        # count 3, reserved[7]
	01 00 00 00 0e 00 00 00        # ETH, 14 bytes
	00 00 00 00 00 00 00 00 00 00 00 00 ff ff
	02 00 00 00 14 00 00 00        # IPv4, 20 bytes
	00 00 00 00 00 00 00 00 00 ff 00 00 00 00 00 00 ff ff ff 00
	04 00 00 00 14 00 00 00        # TCP, 20 bytes
	00 00 ff ff 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
`)

var goldenClassifierValue = FFClassifier{Selectors: []Selector{
	{Type: SelectorETH, Mask: unhex("00 00 00 00 00 00 00 00 00 00 00 00 ff ff")},
	{Type: SelectorIPv4, Mask: unhex("00 00 00 00 00 00 00 00 00 ff 00 00 00 00 00 00 ff ff ff 00")},
	{Type: SelectorTCP, Mask: unhex("00 00 ff ff 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00")},
}}

// goldenRuleKey matches goldenClassifier: IPv4, TCP, 10.1.2.0/24 port 443.
var goldenRuleKey = unhex(`
	00 00 00 00 00 00 00 00 00 00 00 00 08 00  # ETH: EtherType IPv4
	45 00 00 00 00 00 00 00 00 06 00 00 00 00 00 00 0a 01 02 00  # IPv4: TCP, 10.1.2.0
	00 00 01 bb 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00  # TCP: port 443
`)

var goldenRule = append(unhex(`
	04 03 02 01                    # group_id 0x01020304
	05 00 00 00                    # classifier_id 5
	07                             # rule_priority 7
	36                             # key_length 54
	02                             # action DIRECT_RX_VQ
	00                             # reserved
	06 00                          # vq_index 6: receive queue 3
	00 00                          # reserved1[2]
`), goldenRuleKey...)

var goldenRuleValue = FFRule{Group: 0x01020304, Classifier: 5, Priority: 7, Action: FFActionDirectRxVQ, VQIndex: 6, Key: goldenRuleKey}

func TestFlowFilterGolden(t *testing.T) {
	if c := DecodeFFResourceCap(goldenResourceCap); c != goldenResourceCapValue {
		t.Errorf("DecodeFFResourceCap = %+v", c)
	}
	checkWire(t, &goldenResourceCapValue, goldenResourceCap)
	// The 18-byte form from before the padding was added.
	if c := DecodeFFResourceCap(goldenResourceCap[:18]); c != goldenResourceCapValue {
		t.Errorf("DecodeFFResourceCap(18 bytes) = %+v", c)
	}

	sc := SupportedSelectors()
	if got := DecodeFFSelectorCap(goldenSelectorCap); !reflect.DeepEqual(got, sc) {
		t.Errorf("DecodeFFSelectorCap = %+v\nwant %+v", got, sc)
	}
	checkWire(t, &sc, goldenSelectorCap)

	ac := SupportedActions()
	if got := DecodeFFActionCap(goldenActionCap); !reflect.DeepEqual(got, ac) {
		t.Errorf("DecodeFFActionCap = %+v", got)
	}
	checkWire(t, &ac, goldenActionCap)

	g := FFGroup{Priority: 0x0102}
	if got := DecodeFFGroup(unhex("02 01")); got != g {
		t.Errorf("DecodeFFGroup = %+v", got)
	}
	checkWire(t, &g, unhex("02 01"))

	if got := DecodeFFClassifier(goldenClassifier); !reflect.DeepEqual(got, goldenClassifierValue) {
		t.Errorf("DecodeFFClassifier = %+v", got)
	}
	checkWire(t, &goldenClassifierValue, goldenClassifier)

	if got := DecodeFFRule(goldenRule); !reflect.DeepEqual(got, goldenRuleValue) {
		t.Errorf("DecodeFFRule = %+v", got)
	}
	checkWire(t, &goldenRuleValue, goldenRule)
}

// TestFlowFilterShortBuffers checks that missing bytes read as zero and
// extra bytes are ignored, and that decoded objects share no memory with
// their input.
func TestFlowFilterShortBuffers(t *testing.T) {
	// Count 3 but one selector: the others read as zero-length type 0.
	c := DecodeFFClassifier(goldenClassifier[:8+8+14])
	if len(c.Selectors) != 3 || !reflect.DeepEqual(c.Selectors[0], goldenClassifierValue.Selectors[0]) ||
		!reflect.DeepEqual(c.Selectors[1], Selector{}) || !reflect.DeepEqual(c.Selectors[2], Selector{}) {
		t.Errorf("classifier cut after its first selector: %+v", c)
	}
	// A selector cut in its mask: the rest of the mask is zero.
	c = DecodeFFClassifier(goldenClassifier[:8+8+13])
	if want := unhex("00 00 00 00 00 00 00 00 00 00 00 00 ff 00"); len(c.Selectors) != 3 || !bytes.Equal(c.Selectors[0].Mask, want) {
		t.Errorf("mask cut short: % x", c.Selectors[0].Mask)
	}
	// A rule cut in its key: the key keeps its length, zero-extended.
	r := DecodeFFRule(goldenRule[:20])
	if len(r.Key) != 54 || !bytes.Equal(r.Key[:4], goldenRuleKey[:4]) || !bytes.Equal(r.Key[4:], make([]byte, 50)) {
		t.Errorf("rule cut in its key: % x", r.Key)
	}
	if r := DecodeFFRule(nil); !reflect.DeepEqual(r, FFRule{}) {
		t.Errorf("DecodeFFRule(nil) = %+v", r)
	}
	if a := DecodeFFActionCap([]byte{3, 0, 0, 0, 0, 0, 0, 0, 1}); !reflect.DeepEqual(a.Actions, []uint8{1, 0, 0}) {
		t.Errorf("action cap cut short: %v", a.Actions)
	}
	// Trailing bytes are ignored.
	if got := DecodeFFRule(append(bytes.Clone(goldenRule), 0xff)); !reflect.DeepEqual(got, goldenRuleValue) {
		t.Errorf("rule with a trailing byte: %+v", got)
	}
	if got := DecodeFFClassifier(append(bytes.Clone(goldenClassifier), 0xff)); !reflect.DeepEqual(got, goldenClassifierValue) {
		t.Errorf("classifier with a trailing byte: %+v", got)
	}
	// Copies.
	b := bytes.Clone(goldenRule)
	r = DecodeFFRule(b)
	clear(b)
	if !reflect.DeepEqual(r, goldenRuleValue) {
		t.Error("rule changed with its input")
	}
	b = bytes.Clone(goldenClassifier)
	c = DecodeFFClassifier(b)
	clear(b)
	if !reflect.DeepEqual(c, goldenClassifierValue) {
		t.Error("classifier changed with its input")
	}
}

func TestFlowFilterAppendErrors(t *testing.T) {
	prefix := []byte{0xee}
	check := func(name string, b []byte, err, want error) {
		t.Helper()
		if !errors.Is(err, want) || !bytes.Equal(b, prefix) {
			t.Errorf("%s: % x, %v; want %v and b unchanged", name, b, err, want)
		}
	}
	many := FFClassifier{Selectors: make([]Selector, 256)}
	b, err := many.AppendBinary(prefix)
	check("256 selectors", b, err, ErrSelector)
	long := FFSelectorCap{Selectors: []Selector{{Type: 1, Mask: make([]byte, 256)}}}
	b, err = long.AppendBinary(prefix)
	check("256-byte mask", b, err, ErrSelector)
	acts := FFActionCap{Actions: make([]uint8, 256)}
	b, err = acts.AppendBinary(prefix)
	check("256 actions", b, err, ErrInvalid)
	key := FFRule{Key: make([]byte, 256)}
	b, err = key.AppendBinary(prefix)
	check("256-byte key", b, err, ErrKey)
	if b, err := key.MarshalBinary(); b != nil || err == nil {
		t.Errorf("MarshalBinary = % x, %v", b, err)
	}
}

func TestFlowFilterConstants(t *testing.T) {
	if CapFFResource != 0x800 || CapFFSelector != 0x801 || CapFFAction != 0x802 ||
		ObjFFGroup != 0x200 || ObjFFClassifier != 0x201 || ObjFFRule != 0x202 ||
		SelectorETH != 1 || SelectorIPv4 != 2 || SelectorIPv6 != 3 || SelectorTCP != 4 || SelectorUDP != 5 || SelectorESP != 6 ||
		SelectorPartialMask != 1 || FFActionDrop != 1 || FFActionDirectRxVQ != 2 {
		t.Error("flow filter constants differ from virtio 1.4")
	}
	for typ, n := range map[uint8]int{0: 0, 1: 14, 2: 20, 3: 40, 4: 20, 5: 8, 6: 8, 7: 0} {
		if SelectorLen(typ) != n {
			t.Errorf("SelectorLen(%d) = %d, want %d", typ, SelectorLen(typ), n)
		}
	}
}
