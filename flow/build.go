package flow

// PortRule is rule id of group: frames of EtherType etherType (0x0800 for
// IPv4, 0x86dd for IPv6) carrying IP protocol proto (6 for TCP, 17 for
// UDP) to destination port dstPort, each field matched exactly, get
// action a.
func PortRule(id, group uint32, etherType uint16, proto uint8, dstPort uint16, a Action) Rule {
	var m Match
	m.SetEtherType(etherType, 0xffff)
	m.SetProto(proto, 0xff)
	m.SetDstPort(dstPort, 0xffff)
	return Rule{ID: id, Group: group, Match: m, Action: a}
}
