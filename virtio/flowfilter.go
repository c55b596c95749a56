package virtio

import (
	"encoding"
	"encoding/binary"
	"fmt"
	"slices"
)

// Flow filters (virtio 1.4, "Flow filter"): the capabilities and resource
// objects a driver manages with admin commands on the self group. Like all
// admin structures they decode without length errors (see AdminCmd).

// Flow filter capability ids (CapData.ID).
const (
	CapFFResource uint16 = 0x800 // VIRTIO_NET_FF_RESOURCE_CAP: FFResourceCap
	CapFFSelector uint16 = 0x801 // VIRTIO_NET_FF_SELECTOR_CAP: FFSelectorCap
	CapFFAction   uint16 = 0x802 // VIRTIO_NET_FF_ACTION_CAP: FFActionCap
)

// Flow filter resource object types (ResourceObjHeader.Type).
const (
	ObjFFGroup      uint16 = 0x200 // VIRTIO_NET_RESOURCE_OBJ_FF_GROUP: FFGroup
	ObjFFClassifier uint16 = 0x201 // VIRTIO_NET_RESOURCE_OBJ_FF_CLASSIFIER: FFClassifier
	ObjFFRule       uint16 = 0x202 // VIRTIO_NET_RESOURCE_OBJ_FF_RULE: FFRule
)

// Selector types (Selector.Type, VIRTIO_NET_FF_MASK_TYPE_*). A selector's
// mask and a rule's key bytes for it are an image of that header in network
// byte order; SelectorLen gives its length.
const (
	SelectorETH  uint8 = 1 // Ethernet header: destination, source, EtherType
	SelectorIPv4 uint8 = 2 // IPv4 header without options
	SelectorIPv6 uint8 = 3 // IPv6 fixed header; next header is the last one of the chain
	SelectorTCP  uint8 = 4 // TCP header without options
	SelectorUDP  uint8 = 5 // UDP header
	SelectorESP  uint8 = 6 // ESP header (vrss does not support it)
)

// SelectorPartialMask is Selector.Flags' VIRTIO_NET_FF_MASK_F_PARTIAL_MASK:
// in a selector capability, that masks may cover part of a field; without
// it each field is masked whole or not at all (TCP flag bits always count
// as fields of their own).
const SelectorPartialMask uint8 = 1 << 0

// Flow filter rule actions (FFRule.Action, FFActionCap.Actions).
const (
	FFActionDrop       uint8 = 1 // VIRTIO_NET_FF_ACTION_DROP
	FFActionDirectRxVQ uint8 = 2 // VIRTIO_NET_FF_ACTION_DIRECT_RX_VQ: FFRule.VQIndex
)

// SelectorLen returns the length of the header image of selector type t,
// or 0 for a type virtio does not define.
func SelectorLen(t uint8) int {
	switch t {
	case SelectorETH:
		return 14
	case SelectorIPv4, SelectorTCP:
		return 20
	case SelectorIPv6:
		return 40
	case SelectorUDP, SelectorESP:
		return 8
	}
	return 0
}

// Sizes of the flow filter structures' fixed parts.
const (
	ffResourceCapLen = 20 // four le32 limits, two u8, reserved[2]
	ffListHeaderLen  = 8  // count, reserved[7]
	ffSelectorHdrLen = 8  // type, flags, reserved[2], length, reserved1[3]
	ffGroupLen       = 2  // group_priority
	ffRuleFixedLen   = 16 // ids, priority, key_length, action, reserved, vq_index, reserved1[2]
	maxFFList        = 255
)

var (
	_ encoding.BinaryAppender  = (*FFResourceCap)(nil)
	_ encoding.BinaryMarshaler = (*FFResourceCap)(nil)
	_ encoding.BinaryAppender  = (*FFSelectorCap)(nil)
	_ encoding.BinaryMarshaler = (*FFSelectorCap)(nil)
	_ encoding.BinaryAppender  = (*FFActionCap)(nil)
	_ encoding.BinaryMarshaler = (*FFActionCap)(nil)
	_ encoding.BinaryAppender  = (*FFGroup)(nil)
	_ encoding.BinaryMarshaler = (*FFGroup)(nil)
	_ encoding.BinaryAppender  = (*FFClassifier)(nil)
	_ encoding.BinaryMarshaler = (*FFClassifier)(nil)
	_ encoding.BinaryAppender  = (*FFRule)(nil)
	_ encoding.BinaryMarshaler = (*FFRule)(nil)
)

// zread returns a copy of the n bytes of b at off, zero-extended past b's
// end (nil for n == 0).
func zread(b []byte, off, n int) []byte {
	if n == 0 {
		return nil
	}
	out := make([]byte, n)
	if off < len(b) {
		copy(out, b[off:])
	}
	return out
}

// FFResourceCap is struct virtio_net_ff_cap_data, the flow filter resource
// capability: the device's limits, or the lower ones the driver sets.
type FFResourceCap struct {
	// GroupsLimit, ClassifiersLimit and RulesLimit bound the number of
	// objects of each type; ids run from 0 to the limit minus one.
	GroupsLimit      uint32
	ClassifiersLimit uint32
	RulesLimit       uint32
	// RulesPerGroupLimit bounds the rules of one group.
	RulesPerGroupLimit uint32
	// LastRulePriority is the highest rule priority.
	LastRulePriority uint8
	// SelectorsPerClassifierLimit bounds a classifier's selectors.
	SelectorsPerClassifierLimit uint8
}

// DecodeFFResourceCap parses a resource capability. The 18-byte form from
// before virtio added the two reserved bytes decodes like the 20-byte one,
// as any short buffer does (zero-extended). It never fails.
func DecodeFFResourceCap(b []byte) FFResourceCap {
	p := padded(b, ffResourceCapLen)
	le := binary.LittleEndian
	return FFResourceCap{
		GroupsLimit:                 le.Uint32(p),
		ClassifiersLimit:            le.Uint32(p[4:]),
		RulesLimit:                  le.Uint32(p[8:]),
		RulesPerGroupLimit:          le.Uint32(p[12:]),
		LastRulePriority:            p[16],
		SelectorsPerClassifierLimit: p[17],
	}
}

// AppendBinary appends the 20-byte wire form of c, reserved bytes zero. It
// never fails.
func (c *FFResourceCap) AppendBinary(b []byte) ([]byte, error) {
	le := binary.LittleEndian
	b = le.AppendUint32(b, c.GroupsLimit)
	b = le.AppendUint32(b, c.ClassifiersLimit)
	b = le.AppendUint32(b, c.RulesLimit)
	b = le.AppendUint32(b, c.RulesPerGroupLimit)
	return append(b, c.LastRulePriority, c.SelectorsPerClassifierLimit, 0, 0), nil
}

// MarshalBinary returns the wire form of c.
func (c *FFResourceCap) MarshalBinary() ([]byte, error) { return c.AppendBinary(nil) }

// Selector is struct virtio_net_ff_selector: a header type and a mask over
// that header's image in network byte order (length = len(Mask)).
type Selector struct {
	Type  uint8
	Flags uint8 // SelectorPartialMask
	Mask  []byte
}

// decodeSelectors parses a count, seven reserved bytes and count selectors,
// zero-extending what is missing. Each selector is read with its own length
// byte; types and lengths are checked where the selectors are used.
func decodeSelectors(b []byte) []Selector {
	n := int(zread(b, 0, 1)[0])
	if n == 0 {
		return nil
	}
	s := make([]Selector, n)
	off := ffListHeaderLen
	for i := range s {
		h := zread(b, off, ffSelectorHdrLen)
		s[i] = Selector{Type: h[0], Flags: h[1], Mask: zread(b, off+ffSelectorHdrLen, int(h[4]))}
		off += ffSelectorHdrLen + int(h[4])
	}
	return s
}

// appendSelectors appends the wire form of s; see FFClassifier.AppendBinary.
func appendSelectors(b []byte, s []Selector) ([]byte, error) {
	if len(s) > maxFFList {
		return b, fmt.Errorf("%w: %d selectors, the count is a byte", ErrSelector, len(s))
	}
	for i, sel := range s {
		if len(sel.Mask) > maxFFList {
			return b, fmt.Errorf("%w: selector %d: %d-byte mask, the length is a byte", ErrSelector, i, len(sel.Mask))
		}
	}
	b = append(b, uint8(len(s)), 0, 0, 0, 0, 0, 0, 0)
	for _, sel := range s {
		b = append(b, sel.Type, sel.Flags, 0, 0, uint8(len(sel.Mask)), 0, 0, 0)
		b = append(b, sel.Mask...)
	}
	return b, nil
}

// cloneSelectors returns a deep copy of s.
func cloneSelectors(s []Selector) []Selector {
	s = slices.Clone(s)
	for i := range s {
		s[i].Mask = slices.Clone(s[i].Mask)
	}
	return s
}

// FFSelectorCap is struct virtio_net_ff_cap_mask_data, the selector
// capability: the selector types the device supports, ascending, each with
// the mask bits it can match and whether partial masks are allowed.
type FFSelectorCap struct {
	Selectors []Selector
}

// DecodeFFSelectorCap parses a selector capability. It never fails.
func DecodeFFSelectorCap(b []byte) FFSelectorCap {
	return FFSelectorCap{Selectors: decodeSelectors(b)}
}

// AppendBinary appends the wire form of c to b: at most 255 selectors with
// masks of at most 255 bytes (ErrSelector). On error b is unchanged.
func (c *FFSelectorCap) AppendBinary(b []byte) ([]byte, error) {
	return appendSelectors(b, c.Selectors)
}

// MarshalBinary returns the wire form of c; see AppendBinary.
func (c *FFSelectorCap) MarshalBinary() ([]byte, error) { return c.AppendBinary(nil) }

// Clone returns a deep copy of c.
func (c FFSelectorCap) Clone() FFSelectorCap {
	return FFSelectorCap{Selectors: cloneSelectors(c.Selectors)}
}

// selector returns c's selector of type t, if any.
func (c *FFSelectorCap) selector(t uint8) (Selector, bool) {
	for _, s := range c.Selectors {
		if s.Type == t {
			return s, true
		}
	}
	return Selector{}, false
}

// FFActionCap is struct virtio_net_ff_actions, the action capability: the
// actions the device supports, ascending.
type FFActionCap struct {
	Actions []uint8
}

// DecodeFFActionCap parses an action capability. It never fails.
func DecodeFFActionCap(b []byte) FFActionCap {
	n := int(zread(b, 0, 1)[0])
	return FFActionCap{Actions: zread(b, ffListHeaderLen, n)}
}

// AppendBinary appends the wire form of c to b: at most 255 actions
// (ErrInvalid). On error b is unchanged.
func (c *FFActionCap) AppendBinary(b []byte) ([]byte, error) {
	if len(c.Actions) > maxFFList {
		return b, fmt.Errorf("%w: %d actions, the count is a byte", ErrInvalid, len(c.Actions))
	}
	b = append(b, uint8(len(c.Actions)), 0, 0, 0, 0, 0, 0, 0)
	return append(b, c.Actions...), nil
}

// MarshalBinary returns the wire form of c; see AppendBinary.
func (c *FFActionCap) MarshalBinary() ([]byte, error) { return c.AppendBinary(nil) }

// FFGroup is struct virtio_net_resource_obj_ff_group.
type FFGroup struct {
	// Priority is group_priority: groups are tried from the highest
	// priority down, and no two groups share one.
	Priority uint16
}

// DecodeFFGroup parses a group object. It never fails.
func DecodeFFGroup(b []byte) FFGroup {
	return FFGroup{Priority: binary.LittleEndian.Uint16(padded(b, ffGroupLen))}
}

// AppendBinary appends the 2-byte wire form of g. It never fails.
func (g *FFGroup) AppendBinary(b []byte) ([]byte, error) {
	return binary.LittleEndian.AppendUint16(b, g.Priority), nil
}

// MarshalBinary returns the wire form of g.
func (g *FFGroup) MarshalBinary() ([]byte, error) { return g.AppendBinary(nil) }

// FFClassifier is struct virtio_net_resource_obj_ff_classifier: the
// selectors a rule's key is matched under, in header order: ETH, then IPv4
// or IPv6, then TCP, UDP (or ESP).
type FFClassifier struct {
	Selectors []Selector
}

// DecodeFFClassifier parses a classifier object. It never fails; MatchOf
// and the device check its selectors.
func DecodeFFClassifier(b []byte) FFClassifier {
	return FFClassifier{Selectors: decodeSelectors(b)}
}

// AppendBinary appends the wire form of c to b: at most 255 selectors with
// masks of at most 255 bytes (ErrSelector). On error b is unchanged.
func (c *FFClassifier) AppendBinary(b []byte) ([]byte, error) { return appendSelectors(b, c.Selectors) }

// MarshalBinary returns the wire form of c; see AppendBinary.
func (c *FFClassifier) MarshalBinary() ([]byte, error) { return c.AppendBinary(nil) }

// Clone returns a deep copy of c.
func (c FFClassifier) Clone() FFClassifier {
	return FFClassifier{Selectors: cloneSelectors(c.Selectors)}
}

// FFRule is struct virtio_net_resource_obj_ff_rule.
type FFRule struct {
	// Group and Classifier are the ids of the rule's group and classifier.
	Group      uint32
	Classifier uint32
	// Priority orders the rules of a group, highest first.
	Priority uint8
	// Action is FFActionDrop or FFActionDirectRxVQ.
	Action uint8
	// VQIndex is, for FFActionDirectRxVQ, the virtqueue index of the
	// receive queue: 2n for receive queue n (receiveq n+1).
	VQIndex uint16
	// Key is keys[][]: for each of the classifier's selectors in turn, a
	// header image its mask is applied to (key_length = len(Key)).
	Key []byte
}

// DecodeFFRule parses a rule object; the key is key_length bytes,
// zero-extended if the buffer ends first. It never fails.
func DecodeFFRule(b []byte) FFRule {
	p := padded(b, ffRuleFixedLen)
	le := binary.LittleEndian
	return FFRule{
		Group:      le.Uint32(p),
		Classifier: le.Uint32(p[4:]),
		Priority:   p[8],
		Action:     p[10],
		VQIndex:    le.Uint16(p[12:]),
		Key:        zread(b, ffRuleFixedLen, int(p[9])),
	}
}

// AppendBinary appends the wire form of r, reserved bytes zero, to b; the
// key must be at most 255 bytes (ErrKey). On error b is unchanged.
func (r *FFRule) AppendBinary(b []byte) ([]byte, error) {
	if len(r.Key) > maxFFList {
		return b, fmt.Errorf("%w: %d-byte key, key_length is a byte", ErrKey, len(r.Key))
	}
	le := binary.LittleEndian
	b = le.AppendUint32(b, r.Group)
	b = le.AppendUint32(b, r.Classifier)
	b = append(b, r.Priority, uint8(len(r.Key)), r.Action, 0)
	b = le.AppendUint16(b, r.VQIndex)
	b = append(b, 0, 0)
	return append(b, r.Key...), nil
}

// MarshalBinary returns the wire form of r; see AppendBinary.
func (r *FFRule) MarshalBinary() ([]byte, error) { return r.AppendBinary(nil) }

// Clone returns a deep copy of r.
func (r FFRule) Clone() FFRule {
	r.Key = slices.Clone(r.Key)
	return r
}
