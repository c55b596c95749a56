package agent

import (
	"encoding"
	"encoding/hex"
	"strings"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/rss"
	"github.com/vrss-dev/vrss/virtio"
)

// A guest's virtio command sequence, shared by the fake-kernel tests and
// the tests against vrssd (package agent_test, which sees these exported
// names only in test builds).

// GuestStep is one guest command with its golden answer: a control
// command (Ctrl set) answered Ack and Reply, or an admin command answered
// Result.
type GuestStep struct {
	Name   string
	Ctrl   *virtio.CtrlCmd
	Admin  []byte
	Ack    uint8
	Reply  []byte
	Result []byte
}

// Unhex reads hex digits, ignoring white space and comments from # to
// the end of a line.
func Unhex(s string) []byte {
	var digits []string
	for _, line := range strings.Split(s, "\n") {
		line, _, _ = strings.Cut(line, "#")
		digits = append(digits, strings.Fields(line)...)
	}
	b, err := hex.DecodeString(strings.Join(digits, ""))
	if err != nil {
		panic(err)
	}
	return b
}

func mustBinary(v encoding.BinaryMarshaler) []byte {
	b, err := v.MarshalBinary()
	if err != nil {
		panic(err)
	}
	return b
}

// AdminCmd returns a self-group admin command with opcode op and data.
func AdminCmd(op uint16, data []byte) []byte {
	return mustBinary(&virtio.AdminCmd{Opcode: op, Data: data})
}

// ObjCmd returns a resource object command (create, modify, query) of
// object obj (nil for none).
func ObjCmd(op, typ uint16, id uint32, obj encoding.BinaryMarshaler) []byte {
	c := virtio.ResourceObjCmd{ResourceObjHeader: virtio.ResourceObjHeader{Type: typ, ID: id}}
	if obj != nil {
		c.Data = mustBinary(obj)
	}
	return AdminCmd(op, mustBinary(&c))
}

// CapSet returns DRIVER_CAP_SET of capability id with value v.
func CapSet(id uint16, v encoding.BinaryMarshaler) []byte {
	return AdminCmd(virtio.AdminCmdDriverCapSet, mustBinary(&virtio.CapData{ID: id, Data: mustBinary(v)}))
}

// GuestClassifier matches IPv4 TCP frames by destination port: an ETH
// selector masking the EtherType (vrss takes the selectors in header
// order, ETH first, as Linux sends them), an IPv4 selector masking the
// protocol and a TCP selector masking the destination port.
var GuestClassifier = virtio.FFClassifier{Selectors: []virtio.Selector{
	{Type: virtio.SelectorETH, Mask: Unhex("000000000000 000000000000 ffff")},
	{Type: virtio.SelectorIPv4, Mask: Unhex("00000000 00000000 00ff0000 00000000 00000000")},
	{Type: virtio.SelectorTCP, Mask: Unhex("0000ffff 00000000 00000000 00000000 00000000")},
}}

// GuestKey is GuestClassifier's key for TCP destination port port.
func GuestKey(port uint16) []byte {
	k := make([]byte, 14+20+20)
	k[12], k[13] = 0x08, 0x00
	k[14+9] = 6
	k[34+2], k[34+3] = byte(port>>8), byte(port)
	return k
}

// GuestContextKey is the key of the guest's RSS context.
var GuestContextKey = Unhex("6d5a56da255b0ec24167253d43a38fb0d0ca2bcbae7b30b477cb2da38030f20c6a42b73bbeac01fa")

// GuestContext is the guest's context 1: TCP and IPv4 hashes over queues
// 2 and 3.
var GuestContext = virtio.RSSContext{ID: 1, RSSConfig: virtio.RSSConfig{
	Config:  rss.Config{HashTypes: rss.HashTCPv4 | rss.HashIPv4, Key: GuestContextKey, Table: []uint16{2, 3}, UnclassifiedQueue: 2},
	MaxTxVQ: 4,
}}

// The guest's rules: TCP port 6001 to receive virtqueue index 2 (receive
// queue 1), TCP port 6003 dropped, both in group 0 (priority 1) with the
// ids 0 and 1.
var (
	GuestQueueRule = virtio.FFRule{Group: 0, Classifier: 0, Priority: 1, Action: virtio.FFActionDirectRxVQ, VQIndex: 2, Key: GuestKey(6001)}
	GuestDropRule  = virtio.FFRule{Group: 0, Classifier: 0, Priority: 1, Action: virtio.FFActionDrop, Key: GuestKey(6003)}
)

// resultOK is the result header of a successful admin command.
const resultOK = "0000 0000 00000000"

// GuestSequence is a guest driver setting up its flow filters and an RSS
// context on a TAP with flows, as vrssd's guest device answers it: the
// capabilities (the device's resource capability is vrssd's guest share:
// 48 groups, 8,000 classifiers, rules and rules per group, priorities to
// 255, 3 selectors per classifier), group 0, GuestClassifier, the two
// rules, and context 1 over queues 2 and 3.
func GuestSequence() []GuestStep {
	rc := guestLimits(4).ResourceCap()
	return []GuestStep{
		{Name: "RSS context CAP_GET", Ctrl: &virtio.CtrlCmd{Class: virtio.CtrlClassRSSContext, Cmd: virtio.CmdRSSContextCapGet}, Reply: Unhex("0400")},
		{Name: "LIST_QUERY", Admin: AdminCmd(virtio.AdminCmdListQuery, nil), Result: Unhex(resultOK + "833f000000000000")},
		{Name: "LIST_USE", Admin: AdminCmd(virtio.AdminCmdListUse, Unhex("833f000000000000")), Result: Unhex(resultOK)},
		{Name: "DEVICE_CAP_GET resource", Admin: AdminCmd(virtio.AdminCmdDeviceCapGet, mustBinary(&virtio.CapData{ID: virtio.CapFFResource})),
			Result: Unhex(resultOK + "30000000 401f0000 401f0000 401f0000 ff030000 00000000")},
		{Name: "DRIVER_CAP_SET resource", Admin: CapSet(virtio.CapFFResource, &rc), Result: Unhex(resultOK)},
		{Name: "DRIVER_CAP_SET selector", Admin: CapSet(virtio.CapFFSelector, ptrSelectors(virtio.SupportedSelectors())), Result: Unhex(resultOK)},
		{Name: "DRIVER_CAP_SET action", Admin: CapSet(virtio.CapFFAction, ptrActions(virtio.SupportedActions())), Result: Unhex(resultOK)},
		{Name: "group 0", Admin: ObjCmd(virtio.AdminCmdResourceObjCreate, virtio.ObjFFGroup, 0, &virtio.FFGroup{Priority: 1}), Result: Unhex(resultOK)},
		{Name: "classifier 0", Admin: ObjCmd(virtio.AdminCmdResourceObjCreate, virtio.ObjFFClassifier, 0, &GuestClassifier), Result: Unhex(resultOK)},
		{Name: "rule 0: TCP 6001 to vq_index 2", Admin: ObjCmd(virtio.AdminCmdResourceObjCreate, virtio.ObjFFRule, 0, &GuestQueueRule), Result: Unhex(resultOK)},
		{Name: "rule 1: TCP 6003 dropped", Admin: ObjCmd(virtio.AdminCmdResourceObjCreate, virtio.ObjFFRule, 1, &GuestDropRule), Result: Unhex(resultOK)},
		{Name: "RSS context ADD 1", Ctrl: &virtio.CtrlCmd{Class: virtio.CtrlClassRSSContext, Cmd: virtio.CmdRSSContextAdd, Payload: mustBinary(&GuestContext)}},
		{Name: "QUERY rule 0", Admin: GuestQueryRule0, Result: GuestQueryRule0Result},
	}
}

// GuestQueryRule0 queries the guest's rule 0; GuestQueryRule0Result is
// the answer while it exists, GuestResultNoOpcode the answer after a
// device reset (the opcode is not in use any more).
var (
	GuestQueryRule0       = ObjCmd(virtio.AdminCmdResourceObjQuery, virtio.ObjFFRule, 0, nil)
	GuestQueryRule0Result = Unhex(resultOK + `
		00000000 00000000 01 36 02 00 0200 0000
		000000000000 000000000000 0800
		00000000 00000000 00060000 00000000 00000000
		00001771 00000000 00000000 00000000 00000000
		0000 # padding to 8 bytes`)
	GuestResultNoOpcode = Unhex("1600 0200 00000000")
	GuestResultNoSpace  = Unhex("1c00 0100 00000000")
)

func ptrSelectors(c virtio.FFSelectorCap) *virtio.FFSelectorCap { return &c }
func ptrActions(c virtio.FFActionCap) *virtio.FFActionCap       { return &c }

// GuestGroup is the id the guest's group g has in the TAP's set.
func GuestGroup(g uint32) uint32 { return g | api.GuestGroupBit }
