package virtio_test

import (
	"encoding"
	"fmt"

	"github.com/vrss-dev/vrss/virtio"
)

func ExampleDevice() {
	dev, err := virtio.NewDevice(virtio.DefaultDeviceLimits(4))
	if err != nil {
		panic(err)
	}
	// admin plays the guest driver: it sends a command on the admin queue
	// and reads the status the device writes back.
	admin := func(op uint16, data []byte) []byte {
		c := virtio.AdminCmd{Opcode: op, GroupType: virtio.AdminGroupSelf, Data: data}
		b, _ := c.MarshalBinary()
		res, _ := dev.Admin(b)
		r := virtio.DecodeAdminResult(res)
		if r.Status != virtio.AdminStatusOK {
			fmt.Printf("opcode %#x: status %d qualifier %d\n", op, r.Status, r.Qualifier)
		}
		return r.Data
	}
	marshal := func(v encoding.BinaryMarshaler) []byte {
		b, _ := v.MarshalBinary()
		return b
	}

	// The driver enables the commands it uses, then takes the device's
	// flow filter capabilities as they are.
	admin(virtio.AdminCmdListUse, admin(virtio.AdminCmdListQuery, nil))
	for _, id := range []uint16{virtio.CapFFResource, virtio.CapFFSelector, virtio.CapFFAction} {
		c := admin(virtio.AdminCmdDeviceCapGet, marshal(&virtio.CapData{ID: id}))
		admin(virtio.AdminCmdDriverCapSet, marshal(&virtio.CapData{ID: id, Data: c}))
	}
	create := func(typ uint16, id uint32, obj encoding.BinaryMarshaler) {
		admin(virtio.AdminCmdResourceObjCreate, marshal(&virtio.ResourceObjCmd{
			ResourceObjHeader: virtio.ResourceObjHeader{Type: typ, ID: id}, Data: marshal(obj)}))
	}
	// A group, a classifier on the TCP destination port, and a rule sending
	// SSH to receive queue 3 (virtqueue 6).
	create(virtio.ObjFFGroup, 0, &virtio.FFGroup{Priority: 1})
	eth, ip, tcp := make([]byte, 14), make([]byte, 20), make([]byte, 20)
	eth[12], eth[13] = 0xff, 0xff // EtherType
	tcp[2], tcp[3] = 0xff, 0xff   // destination port
	create(virtio.ObjFFClassifier, 0, &virtio.FFClassifier{Selectors: []virtio.Selector{
		{Type: virtio.SelectorETH, Mask: eth}, {Type: virtio.SelectorIPv4, Mask: ip}, {Type: virtio.SelectorTCP, Mask: tcp}}})
	key := make([]byte, 54)
	key[12], key[13] = 0x08, 0x00 // IPv4
	key[34+3] = 22                // port 22
	create(virtio.ObjFFRule, 0, &virtio.FFRule{Group: 0, Classifier: 0, Action: virtio.FFActionDirectRxVQ, VQIndex: 6, Key: key})
	// Destroying the group now would leave the rule without one.
	admin(virtio.AdminCmdResourceObjDestroy, marshal(&virtio.ResourceObjHeader{Type: virtio.ObjFFGroup, ID: 0}))

	// The VMM publishes the guest's part of the steering state.
	set := dev.Set()
	fmt.Println(set.Rules[0].Match.String(), "->", set.Rules[0].Action)
	fmt.Println(set.Validate(dev.Limits().FlowLimits()) == nil, dev.Generation())
	// Output:
	// opcode 0xd: status 16 qualifier 1
	// ether-type 0x0800 proto 6 dst-port 22 -> queue 3
	// true 2
}
