package flow

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// The command-line words of `vrss flow add`: ethtool -N's where ethtool has
// them, and the words Match.String writes, so that a match `vrss flow list`
// prints can be given again. RuleArgsHelp documents exactly what is
// accepted; ParseRuleArgs reads it from untrusted input (FuzzFlowWords in
// cmd/vrss), ParseMatchArgs the match's words alone (port ACL files).

// RuleArgsHelp documents the words ParseRuleArgs reads.
const RuleArgsHelp = `Words (after the TAP's name, in any order; each at most once):

  flow-type T        tcp4, udp4, ip4, tcp6, udp6, ip6 or ether: fixes the
                     EtherType (IPv4 0x0800, IPv6 0x86dd) and, for tcp and udp,
                     the protocol (6, 17); the words below must suit it. It
                     may be left out: then name ether-type and proto
                     yourself, as 'vrss flow list' prints rules.
  src-ip ADDR        source address, of the flow type's family: exact, or
                     ADDR/PREFIX (10.0.0.0/8) or ADDR/MASK (10.0.0.0/255.0.0.0)
  dst-ip ADDR        destination address, as src-ip
  src-port N         TCP or UDP source port (tcp and udp flow types)
  dst-port N         TCP or UDP destination port
  proto N            with flow-type ether, the EtherType (as ethtool);
                     otherwise the IP protocol, for IPv6 the last next header
                     (ethtool's l4proto, also accepted); fixed by tcp and udp
  ether-type N       the EtherType, after the VLAN tags (no flow-type, or ether)
  vlan N             the outer VLAN tag's TCI: priority, DEI and VLAN id
                     (vlan 100/0xfff matches VLAN id 100 at any priority)
  src-mac MAC        source MAC address (src, with flow-type ether, as ethtool)
  dst-mac MAC        destination MAC address (dst, with flow-type ether)
  tcp-flags N        the TCP flags byte (tcp flow types): 0x02/0x12 is a SYN
                     without ACK
  flags N            the flag byte of vrss's key (docs/semantics.md); the
                     fields named imply the flags they need
  action Q           the queue the frames go to, 0 to the TAP's queues - 1;
                     action drop, or -1 as ethtool writes it, drops them
  context N          RSS context N (1 to 8: vrss rss context add) steers the
                     frames; without action, or with action 0 (an ethtool
                     context rule's queue offset, which vrss contexts have none of)
  prio N             the rule's priority in its group, 0 to 255, higher first
  loc N              the rule's id (ethtool's location); by default the lowest
                     free one. Equal priorities are tried by id, lower first
  group N            the host group, default 0; a new one is made
  group-prio N       the priority of a group the rule makes, 0 to 65535

Numbers are decimal, or hex with 0x. Every field but flow-type takes a mask:
FIELD VALUE/MASK compares the bits set in MASK (a netmask, or a prefix
length for addresses), and FIELD VALUE m MASK compares the bits clear in
MASK, as ethtool's m does (src-ip 10.1.0.0 m 0.0.255.255 is 10.1.0.0/16).
Exactly one of action and context is required.`

// RuleArgs is a rule as `vrss flow add` reads it.
type RuleArgs struct {
	Rule Rule
	// HasLoc: the rule's id was given (loc); without it the daemon picks
	// the lowest free one.
	HasLoc bool
	// GroupPrio is group-prio, if given.
	GroupPrio *uint16
}

// flowField is one field word with its value and mask.
type flowField struct {
	word, value string
	// emask is ethtool's "m MASK" (bits set are ignored), if given.
	emask  string
	hasM   bool
	parsed bool
}

// flowTypes are the flow types and what they fix: EtherType, protocol
// (0: none), the address family (4, 6, or 0 for ether).
var flowTypes = map[string]struct {
	etherType uint16
	proto     uint8
	family    int
}{
	"tcp4": {0x0800, 6, 4}, "udp4": {0x0800, 17, 4}, "ip4": {0x0800, 0, 4},
	"tcp6": {0x86dd, 6, 6}, "udp6": {0x86dd, 17, 6}, "ip6": {0x86dd, 0, 6},
	"ether": {0, 0, 0},
}

// ruleWords are the words of a rule that are not its match's.
var ruleWords = []string{"action", "context", "prio", "loc", "group", "group-prio"}

// fieldWords are the words that take a value and a mask; aliases map to
// the name the rest of the parser knows.
var fieldWords = map[string]string{
	"src-ip": "src-ip", "dst-ip": "dst-ip", "src-port": "src-port", "dst-port": "dst-port",
	"proto": "proto", "l4proto": "l4proto", "ether-type": "ether-type", "vlan": "vlan",
	"src-mac": "src-mac", "dst-mac": "dst-mac", "src": "src", "dst": "dst",
	"tcp-flags": "tcp-flags", "flags": "flags",
}

// errArgs marks a refusal of parseArgs.
var errArgs = errors.New("flow")

func wordErr(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errArgs, fmt.Sprintf(format, a...))
}

// ParseRuleArgs reads the words of `vrss flow add` after the TAP's name.
// The rule it returns has a normalized match.
func ParseRuleArgs(args []string) (RuleArgs, error) { return parseArgs(args, false) }

// ParseMatchArgs reads a match in the words of `vrss flow add` without
// the rule's (action, context, prio, loc, group, group-prio): the words
// Match.String writes, or ethtool's. The match is normalized.
func ParseMatchArgs(args []string) (Match, error) {
	w, err := parseArgs(args, true)
	return w.Rule.Match, err
}

// parseArgs reads a rule's words, or with matchOnly its match's alone.
func parseArgs(args []string, matchOnly bool) (RuleArgs, error) {
	var out RuleArgs
	var (
		flowType            string
		fields              = map[string]*flowField{}
		order               []string
		action, contextWord string
		hasAction, hasCtx   bool
	)
	seen := map[string]bool{}
	value := func(i int) (string, error) {
		if i+1 >= len(args) {
			return "", wordErr("%s needs a value", args[i])
		}
		return args[i+1], nil
	}
	for i := 0; i < len(args); {
		w := args[i]
		v, err := value(i)
		if w == "m" {
			return out, wordErr("m MASK must follow a field's value (src-ip 10.0.0.0 m 0.255.255.255)")
		}
		_, isField := fieldWords[w]
		switch {
		case matchOnly && slices.Contains(ruleWords, w):
			return out, wordErr("%s: a match has no %s, only its fields", w, w)
		case !isField && w != "flow-type" && !slices.Contains(ruleWords, w):
			return out, wordErr("unknown word %q (run 'vrss flow add -h')", w)
		}
		if err != nil {
			return out, err
		}
		if seen[w] {
			return out, wordErr("%s given twice", w)
		}
		seen[w] = true
		i += 2
		switch w {
		case "flow-type":
			if _, ok := flowTypes[v]; !ok {
				return out, wordErr("flow-type %q: want tcp4, udp4, ip4, tcp6, udp6, ip6 or ether", v)
			}
			flowType = v
		case "action":
			action, hasAction = v, true
		case "context":
			contextWord, hasCtx = v, true
		case "prio":
			n, err := parseNum(v, 8, "prio")
			if err != nil {
				return out, err
			}
			out.Rule.Priority = uint8(n)
		case "loc":
			n, err := parseNum(v, 32, "loc")
			if err != nil {
				return out, err
			}
			out.Rule.ID, out.HasLoc = uint32(n), true
		case "group":
			n, err := parseNum(v, 32, "group")
			if err != nil {
				return out, err
			}
			out.Rule.Group = uint32(n)
		case "group-prio":
			n, err := parseNum(v, 16, "group-prio")
			if err != nil {
				return out, err
			}
			p := uint16(n)
			out.GroupPrio = &p
		default:
			f := &flowField{word: w, value: v}
			if i < len(args) && args[i] == "m" {
				if i+1 >= len(args) {
					return out, wordErr("m needs a mask")
				}
				if strings.Contains(v, "/") {
					return out, wordErr("%s %s: give a mask as /MASK or as m MASK, not both", w, v)
				}
				f.emask, f.hasM = args[i+1], true
				i += 2
			}
			fields[w] = f
			order = append(order, w)
		}
	}

	// Aliases, as the flow type reads them.
	ft, hasType := flowTypes[flowType]
	rename := func(from, to, why string) error {
		f := fields[from]
		if f == nil {
			return nil
		}
		if fields[to] != nil {
			return wordErr("%s and %s name the same field%s", from, to, why)
		}
		delete(fields, from)
		f.word = to
		fields[to] = f
		for i, w := range order {
			if w == from {
				order[i] = to
			}
		}
		return nil
	}
	switch {
	case flowType == "ether":
		for _, a := range [][2]string{{"src", "src-mac"}, {"dst", "dst-mac"}, {"proto", "ether-type"}} {
			if err := rename(a[0], a[1], " with flow-type ether"); err != nil {
				return out, err
			}
		}
		if fields["l4proto"] != nil {
			return out, wordErr("l4proto: flow-type ether has no IP protocol (proto is the EtherType)")
		}
	default:
		for _, w := range []string{"src", "dst"} {
			if fields[w] != nil {
				return out, wordErr("%s is ethtool's word for a MAC address of flow-type ether: write %s-mac, or %s-ip", w, w, w)
			}
		}
		if err := rename("l4proto", "proto", ""); err != nil {
			return out, err
		}
	}

	// What the flow type fixes, and allows.
	m := &out.Rule.Match
	family := 0
	if hasType {
		if ft.etherType != 0 {
			m.SetEtherType(ft.etherType, 0xffff)
			family = ft.family
			if fields["ether-type"] != nil {
				return out, wordErr("ether-type: flow-type %s fixes it", flowType)
			}
		}
		if ft.proto != 0 {
			m.SetProto(ft.proto, 0xff)
			if fields["proto"] != nil {
				return out, wordErr("proto: flow-type %s fixes the protocol", flowType)
			}
		}
		for w := range fields {
			switch {
			case flowType == "ether" && slices.Contains([]string{"src-ip", "dst-ip", "src-port", "dst-port", "tcp-flags"}, w):
				return out, wordErr("%s: flow-type ether has no IP fields (use ip4, tcp4 ...)", w)
			case ft.proto == 0 && slices.Contains([]string{"src-port", "dst-port"}, w):
				return out, wordErr("%s: flow-type %s has no ports (use tcp%d or udp%d)", w, flowType, max(ft.family, 4), max(ft.family, 4))
			case ft.proto != 6 && w == "tcp-flags":
				return out, wordErr("tcp-flags: flow-type %s is not TCP", flowType)
			}
		}
	}

	// The fields, the EtherType first (it says the family of addresses
	// when no flow type does), then in the order given.
	order = append([]string{"ether-type"}, order...)
	for _, w := range order {
		f := fields[w]
		if f == nil || f.parsed {
			continue
		}
		f.parsed = true
		var err error
		switch f.word {
		case "ether-type":
			var v, mk uint64
			if v, mk, err = numMask(f, 16); err == nil {
				m.SetEtherType(uint16(v), uint16(mk))
			}
		case "proto":
			var v, mk uint64
			if v, mk, err = numMask(f, 8); err == nil {
				m.SetProto(uint8(v), uint8(mk))
			}
		case "vlan":
			var v, mk uint64
			if v, mk, err = numMask(f, 16); err == nil {
				m.SetTCI(uint16(v), uint16(mk))
			}
		case "tcp-flags":
			var v, mk uint64
			if v, mk, err = numMask(f, 8); err == nil {
				m.SetTCPFlags(uint8(v), uint8(mk))
			}
		case "flags":
			var v, mk uint64
			if v, mk, err = numMask(f, 8); err == nil {
				m.Value[OffFlags], m.Mask[OffFlags] = uint8(v)&uint8(mk), uint8(mk)
			}
		case "src-port", "dst-port":
			var v, mk uint64
			if v, mk, err = numMask(f, 16); err == nil {
				if f.word == "src-port" {
					m.SetSrcPort(uint16(v), uint16(mk))
				} else {
					m.SetDstPort(uint16(v), uint16(mk))
				}
			}
		case "src-mac", "dst-mac":
			var v, mk net.HardwareAddr
			if v, mk, err = macMask(f); err == nil {
				if f.word == "src-mac" {
					m.SetSrcMAC(v, mk)
				} else {
					m.SetDstMAC(v, mk)
				}
			}
		case "src-ip", "dst-ip":
			var v, mk netip.Addr
			if v, mk, err = addrMask(f); err != nil {
				break
			}
			fam := 4
			if v.Is6() {
				fam = 6
			}
			if family == 0 {
				// No flow type: the EtherType given says the family.
				et, etm := m.Value[OffEtherType:OffEtherType+2], m.Mask[OffEtherType:OffEtherType+2]
				switch {
				case etm[0] == 0xff && etm[1] == 0xff && et[0] == 0x08 && et[1] == 0x00:
					family = 4
				case etm[0] == 0xff && etm[1] == 0xff && et[0] == 0x86 && et[1] == 0xdd:
					family = 6
				default:
					err = wordErr("%s: IP fields need flow-type tcp4, udp4, ip4 (or 6), or ether-type 0x0800 or 0x86dd", f.word)
				}
			}
			if err == nil && fam != family {
				err = wordErr("%s %s: an IPv%d address, and the rule is for IPv%d", f.word, f.value, fam, family)
			}
			if err == nil {
				if f.word == "src-ip" {
					m.SetSrcIP(v, mk)
				} else {
					m.SetDstIP(v, mk)
				}
			}
		}
		if err != nil {
			return out, err
		}
	}

	// The action.
	switch {
	case matchOnly:
	case hasCtx:
		n, err := parseNum(contextWord, 16, "context")
		if err != nil {
			return out, err
		}
		if n == 0 || n > MaxContexts {
			return out, wordErr("context %d: want an RSS context, 1 to %d (context 0, the default configuration, is where frames no rule takes go)", n, MaxContexts)
		}
		if hasAction && action != "0" {
			return out, wordErr("context %d with action %s: vrss contexts take no queue offset; leave action out (or write action 0)", n, action)
		}
		out.Rule.Action = Action{Kind: ActionContext, Context: uint16(n)}
	case !hasAction:
		return out, wordErr("an action is required: action QUEUE, action drop (or -1), or context N")
	case action == "drop" || action == "-1":
		out.Rule.Action = Action{Kind: ActionDrop}
	default:
		if strings.HasPrefix(action, "-") {
			return out, wordErr("action %s: ethtool's special actions other than -1 (drop) have no meaning here", action)
		}
		n, err := parseNum(action, 16, "action")
		if err != nil {
			return out, wordErr("action %q: want a queue number, drop or -1", action)
		}
		out.Rule.Action = Action{Kind: ActionQueue, Queue: uint16(n)}
	}
	if err := m.Normalize(); err != nil {
		return out, wordErr("%v", err)
	}
	return out, nil
}

// parseNum reads a number of bits bits: decimal, or hex with 0x (also 0o,
// 0b).
func parseNum(s string, bits int, what string) (uint64, error) {
	n, err := strconv.ParseUint(s, 0, bits)
	if err != nil {
		return 0, wordErr("%s %q: want a number from 0 to %d", what, s, uint64(1)<<bits-1)
	}
	return n, nil
}

// numMask reads a number field's value and mask.
func numMask(f *flowField, bits int) (v, mk uint64, err error) {
	full := uint64(1)<<bits - 1
	val, maskStr, hasSlash := strings.Cut(f.value, "/")
	if v, err = parseNum(val, bits, f.word); err != nil {
		return 0, 0, err
	}
	switch {
	case hasSlash:
		mk, err = parseNum(maskStr, bits, f.word+" mask")
	case f.hasM:
		mk, err = parseNum(f.emask, bits, f.word+" m")
		mk = ^mk & full
	default:
		mk = full
	}
	return v, mk, err
}

// macMask reads a MAC address field's value and mask.
func macMask(f *flowField) (v, mk net.HardwareAddr, err error) {
	parse := func(s, what string) (net.HardwareAddr, error) {
		a, err := net.ParseMAC(s)
		if err != nil || len(a) != 6 {
			return nil, wordErr("%s %q: want a MAC address like 52:54:00:12:34:56", what, s)
		}
		return a, nil
	}
	val, maskStr, hasSlash := strings.Cut(f.value, "/")
	if v, err = parse(val, f.word); err != nil {
		return nil, nil, err
	}
	switch {
	case hasSlash:
		mk, err = parse(maskStr, f.word+" mask")
	case f.hasM:
		if mk, err = parse(f.emask, f.word+" m"); err == nil {
			for i := range mk {
				mk[i] = ^mk[i]
			}
		}
	}
	return v, mk, err
}

// addrMask reads an address field's value and mask: ADDR, ADDR/PREFIX,
// ADDR/MASK or ADDR with m MASK.
func addrMask(f *flowField) (v, mk netip.Addr, err error) {
	val, maskStr, hasSlash := strings.Cut(f.value, "/")
	v, perr := netip.ParseAddr(val)
	if perr != nil || v.Zone() != "" {
		return v, mk, wordErr("%s %q: want an IPv4 or IPv6 address", f.word, val)
	}
	bits := v.BitLen()
	switch {
	case hasSlash:
		if n, nerr := strconv.Atoi(maskStr); nerr == nil && !strings.ContainsAny(maskStr, "+-") {
			if n < 0 || n > bits {
				return v, mk, wordErr("%s %s: a prefix of %d bits, want 0 to %d", f.word, f.value, n, bits)
			}
			return v, PrefixMask(netip.PrefixFrom(v, n)), nil
		}
		mk, perr = netip.ParseAddr(maskStr)
		if perr != nil || mk.BitLen() != bits || mk.Zone() != "" {
			return v, mk, wordErr("%s %s: the mask must be a prefix length or an address of the same family", f.word, f.value)
		}
	case f.hasM:
		inv, perr := netip.ParseAddr(f.emask)
		if perr != nil || inv.BitLen() != bits || inv.Zone() != "" {
			return v, mk, wordErr("%s %s m %s: the mask must be an address of the same family", f.word, f.value, f.emask)
		}
		b := inv.AsSlice()
		for i := range b {
			b[i] = ^b[i]
		}
		mk, _ = netip.AddrFromSlice(b)
	default:
		mk = PrefixMask(netip.PrefixFrom(v, bits))
	}
	return v, mk, nil
}
