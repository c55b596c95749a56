package virtio

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/vrss-dev/vrss/flow"
	"github.com/vrss-dev/vrss/internal/proto"
)

// hdrField is a header field vrss can match: where it lies in a selector's
// header image and where in a flow.Key.
type hdrField struct {
	name   string
	off, n int // in the header image
	key    int // in flow.Key
	// bits says each bit is a field of its own, so that a mask may pick
	// some of them without partial masks (the TCP flags).
	bits bool
}

// fields returns the fields vrss matches in the header of selector type t:
// exactly what a flow.Key holds. Everything else in a header (IP TTL,
// lengths, checksums, TCP sequence numbers, ...) cannot be masked.
func fields(t uint8) []hdrField {
	switch t {
	case SelectorETH:
		return []hdrField{
			{"destination MAC", 0, 6, flow.OffDstMAC, false},
			{"source MAC", 6, 6, flow.OffSrcMAC, false},
			{"EtherType", 12, 2, flow.OffEtherType, false},
		}
	case SelectorIPv4:
		return []hdrField{
			{"protocol", 9, 1, flow.OffProto, false},
			{"source address", 12, 4, flow.OffSrcIP, false},
			{"destination address", 16, 4, flow.OffDstIP, false},
		}
	case SelectorIPv6:
		return []hdrField{
			{"next header", 6, 1, flow.OffProto, false},
			{"source address", 8, 16, flow.OffSrcIP, false},
			{"destination address", 24, 16, flow.OffDstIP, false},
		}
	case SelectorTCP:
		return []hdrField{
			{"source port", 0, 2, flow.OffSrcPort, false},
			{"destination port", 2, 2, flow.OffDstPort, false},
			{"flags", proto.TCPFlagsOff, 1, flow.OffTCPFlags, true},
		}
	case SelectorUDP:
		return []hdrField{
			{"source port", 0, 2, flow.OffSrcPort, false},
			{"destination port", 2, 2, flow.OffDstPort, false},
		}
	}
	return nil
}

// selectorName returns a selector type's name for error messages.
func selectorName(t uint8) string {
	switch t {
	case SelectorETH:
		return "ETH"
	case SelectorIPv4:
		return "IPv4"
	case SelectorIPv6:
		return "IPv6"
	case SelectorTCP:
		return "TCP"
	case SelectorUDP:
		return "UDP"
	case SelectorESP:
		return "ESP"
	}
	return fmt.Sprintf("type %d", t)
}

// supportedMask returns the mask of every field vrss matches in selector
// type t's header, nil for a type vrss does not support.
func supportedMask(t uint8) []byte {
	f := fields(t)
	if f == nil {
		return nil
	}
	m := make([]byte, SelectorLen(t))
	for _, f := range f {
		for i := range f.n {
			m[f.off+i] = 0xff
		}
	}
	return m
}

// SupportedSelectors returns the selector capability vrss declares: ETH
// (destination and source MAC, EtherType), IPv4 (protocol, source and
// destination address), IPv6 (next header, source and destination address),
// TCP (ports and the flags byte) and UDP (ports), each allowing partial
// masks, since a flow.Match masks bit by bit. These are exactly the header
// fields a flow.Key holds.
func SupportedSelectors() FFSelectorCap {
	var c FFSelectorCap
	for _, t := range []uint8{SelectorETH, SelectorIPv4, SelectorIPv6, SelectorTCP, SelectorUDP} {
		c.Selectors = append(c.Selectors, Selector{Type: t, Flags: SelectorPartialMask, Mask: supportedMask(t)})
	}
	return c
}

// SupportedActions returns the action capability vrss declares: drop and
// direct to a receive queue.
func SupportedActions() FFActionCap {
	return FFActionCap{Actions: []uint8{FFActionDrop, FFActionDirectRxVQ}}
}

// checkMask reports ErrMask if sel's mask has a bit outside allowed, naming
// the fields that may be masked.
func checkMask(i int, sel Selector, allowed []byte, whose string) error {
	for j, m := range sel.Mask {
		var a byte
		if j < len(allowed) {
			a = allowed[j]
		}
		if bad := m &^ a; bad != 0 {
			var names []string
			for _, f := range fields(sel.Type) {
				names = append(names, f.name)
			}
			return fmt.Errorf("%w: selector %d (%s) masks bits %#02x of byte %d; %s allows only %s",
				ErrMask, i, selectorName(sel.Type), bad, j, whose, strings.Join(names, ", "))
		}
	}
	return nil
}

// checkClassifier checks c's structure and masks against what vrss
// supports: one to three selectors in header order (ETH; IPv4 or IPv6; TCP
// or UDP), each with its header's length, and masks only over the fields of
// SupportedSelectors.
func checkClassifier(c *FFClassifier) error {
	n := len(c.Selectors)
	if n == 0 || n > 3 {
		return fmt.Errorf("%w: %d selectors, want 1 to 3 (ETH, IP, L4)", ErrSelector, n)
	}
	for i, sel := range c.Selectors {
		var ok bool
		switch i {
		case 0:
			ok = sel.Type == SelectorETH
		case 1:
			ok = sel.Type == SelectorIPv4 || sel.Type == SelectorIPv6
		case 2:
			ok = sel.Type == SelectorTCP || sel.Type == SelectorUDP
		}
		if !ok {
			return fmt.Errorf("%w: selector %d is %s; the order is ETH, then IPv4 or IPv6, then TCP or UDP (vrss does not support ESP)", ErrSelector, i, selectorName(sel.Type))
		}
		if len(sel.Mask) != SelectorLen(sel.Type) {
			return fmt.Errorf("%w: selector %d (%s) is %d bytes, want %d", ErrSelector, i, selectorName(sel.Type), len(sel.Mask), SelectorLen(sel.Type))
		}
		if err := checkMask(i, sel, supportedMask(sel.Type), "vrss"); err != nil {
			return err
		}
	}
	return nil
}

// checkClassifierCap checks c against the selector capability and
// selectors-per-classifier limit the driver set: every selector's type in
// the capability, its mask within the capability's, and, where the
// capability does not allow partial masks, each field masked whole or not at
// all (TCP flag bits are fields of their own). c must pass checkClassifier.
func checkClassifierCap(c *FFClassifier, sc *FFSelectorCap, maxSelectors uint8) error {
	if len(c.Selectors) > int(maxSelectors) {
		return fmt.Errorf("%w: %d selectors, the driver's selectors_per_classifier_limit is %d", ErrSelector, len(c.Selectors), maxSelectors)
	}
	for i, sel := range c.Selectors {
		cs, ok := sc.selector(sel.Type)
		if !ok {
			return fmt.Errorf("%w: selector %d (%s) is not in the driver's selector capability", ErrSelector, i, selectorName(sel.Type))
		}
		if err := checkMask(i, sel, cs.Mask, "the driver's selector capability"); err != nil {
			return err
		}
		if cs.Flags&SelectorPartialMask != 0 {
			continue
		}
		for _, f := range fields(sel.Type) {
			if f.bits {
				continue
			}
			m := sel.Mask[f.off : f.off+f.n]
			all, none := true, true
			for _, b := range m {
				all, none = all && b == 0xff, none && b == 0
			}
			if !all && !none {
				return fmt.Errorf("%w: selector %d (%s) masks part of the %s (% x) without partial masks in the driver's capability",
					ErrMask, i, selectorName(sel.Type), f.name, m)
			}
		}
	}
	return nil
}

// MatchOf returns the flow.Match that a rule with key under classifier c
// stands for. The classifier must pass vrss's checks (ErrSelector,
// ErrMask: see SupportedSelectors) and the key must be the sum of the
// selectors' lengths (ErrKey). Each masked field is copied to its place in
// the key; an IPv4 or IPv6 selector fixes the EtherType to 0x0800 or
// 0x86dd, a TCP or UDP selector the protocol to 6 or 17, whatever the
// classifier masks, and a key whose masked EtherType or protocol says
// otherwise is refused (ErrKey), since such a rule could never match. The
// result is normalized (flow.Match.Normalize, whose errors are wrapped).
// On error it is the zero Match.
func MatchOf(c *FFClassifier, key []byte) (flow.Match, error) {
	if err := checkClassifier(c); err != nil {
		return flow.Match{}, err
	}
	total := 0
	for _, sel := range c.Selectors {
		total += len(sel.Mask)
	}
	if len(key) != total {
		return flow.Match{}, fmt.Errorf("%w: %d-byte key, the classifier's selectors take %d", ErrKey, len(key), total)
	}
	var m flow.Match
	parts := make([][]byte, len(c.Selectors))
	off := 0
	for i, sel := range c.Selectors {
		k := key[off : off+len(sel.Mask)]
		parts[i] = k
		off += len(sel.Mask)
		for _, f := range fields(sel.Type) {
			copy(m.Value[f.key:], k[f.off:f.off+f.n])
			copy(m.Mask[f.key:], sel.Mask[f.off:f.off+f.n])
		}
	}
	if len(c.Selectors) >= 2 {
		et := uint16(proto.EtherTypeIPv4)
		if c.Selectors[1].Type == SelectorIPv6 {
			et = proto.EtherTypeIPv6
		}
		be := binary.BigEndian
		if v, mk := be.Uint16(parts[0][12:]), be.Uint16(c.Selectors[0].Mask[12:]); (v^et)&mk != 0 {
			return flow.Match{}, fmt.Errorf("%w: key EtherType %#04x (mask %#04x) contradicts the %s selector", ErrKey, v, mk, selectorName(c.Selectors[1].Type))
		}
		m.SetEtherType(et, 0xffff)
	}
	if len(c.Selectors) >= 3 {
		p := uint8(proto.IPProtoTCP)
		if c.Selectors[2].Type == SelectorUDP {
			p = proto.IPProtoUDP
		}
		at := 9 // IPv4 protocol
		if c.Selectors[1].Type == SelectorIPv6 {
			at = 6 // IPv6 next header
		}
		if v, mk := parts[1][at], c.Selectors[1].Mask[at]; (v^p)&mk != 0 {
			return flow.Match{}, fmt.Errorf("%w: key protocol %d (mask %#02x) contradicts the %s selector", ErrKey, v, mk, selectorName(c.Selectors[2].Type))
		}
		m.SetProto(p, 0xff)
	}
	if err := m.Normalize(); err != nil {
		return flow.Match{}, fmt.Errorf("virtio: rule match: %w", err)
	}
	return m, nil
}
