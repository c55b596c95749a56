package virtio

import (
	"encoding"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/vrss-dev/vrss/flow"
	"github.com/vrss-dev/vrss/rss"
)

// Group administration commands (virtio 1.4, "Device groups"), sent on an
// administration virtqueue. vrss implements the self group's list, capability
// and resource object commands, which is what flow filters use.
//
// Unlike the control queue's, admin structures have no length errors: a
// device reads bytes missing from a short buffer as zero and ignores bytes
// past the structure, and must not fail a command for its buffer's length
// alone. The Decode* functions of admin structures therefore never fail;
// what they decode is validated where it is used.

// Admin command opcodes (virtio_admin_cmd.opcode).
//
// RESOURCE_OBJ_MODIFY is 0xb and RESOURCE_OBJ_QUERY 0xc, as each command's
// own section says. The opcode table of the same chapter lists them the
// other way round; vrss follows the sections because they are the normative
// definitions (the table only summarises them, and its rows for these two
// are out of numeric order, the mark of a swapped pair), because 0xb/0xc
// keeps the create, modify, query, destroy order in which the chapter
// introduces the four commands, and because no driver depends on the table:
// Linux defines only CREATE (0xa) and DESTROY (0xd).
const (
	AdminCmdListQuery          uint16 = 0x0 // VIRTIO_ADMIN_CMD_LIST_QUERY: reply IDList of opcodes
	AdminCmdListUse            uint16 = 0x1 // VIRTIO_ADMIN_CMD_LIST_USE: data IDList of opcodes
	AdminCmdCapIDListQuery     uint16 = 0x7 // VIRTIO_ADMIN_CMD_CAP_ID_LIST_QUERY: reply IDList of capability ids
	AdminCmdDeviceCapGet       uint16 = 0x8 // VIRTIO_ADMIN_CMD_DEVICE_CAP_GET: data CapData, reply the capability
	AdminCmdDriverCapSet       uint16 = 0x9 // VIRTIO_ADMIN_CMD_DRIVER_CAP_SET: data CapData
	AdminCmdResourceObjCreate  uint16 = 0xa // VIRTIO_ADMIN_CMD_RESOURCE_OBJ_CREATE: data ResourceObjCmd
	AdminCmdResourceObjModify  uint16 = 0xb // VIRTIO_ADMIN_CMD_RESOURCE_OBJ_MODIFY: data ResourceObjCmd
	AdminCmdResourceObjQuery   uint16 = 0xc // VIRTIO_ADMIN_CMD_RESOURCE_OBJ_QUERY: data ResourceObjCmd, reply the object
	AdminCmdResourceObjDestroy uint16 = 0xd // VIRTIO_ADMIN_CMD_RESOURCE_OBJ_DESTROY: data ResourceObjHeader
)

// Admin group types (virtio_admin_cmd.group_type).
const (
	AdminGroupSelf  uint16 = 0 // the owner device itself; member id 0
	AdminGroupSRIOV uint16 = 1 // SR-IOV virtual functions (vrss has none)
)

// Admin status values (virtio_admin_cmd.status). They follow Linux's errno
// numbers. EEXIST is named by the resource object chapter but missing from
// the status table; vrss uses Linux's EEXIST, 17, as the table's rule says.
const (
	AdminStatusOK     uint16 = 0  // VIRTIO_ADMIN_STATUS_OK
	AdminStatusENXIO  uint16 = 6  // no such capability or resource
	AdminStatusEAGAIN uint16 = 11 // try again
	AdminStatusENOMEM uint16 = 12 // insufficient resources
	AdminStatusEBUSY  uint16 = 16 // device busy: the object is in use
	AdminStatusEEXIST uint16 = 17 // the resource id is taken
	AdminStatusEINVAL uint16 = 22 // invalid command; the device state did not change
	AdminStatusENOSPC uint16 = 28 // resources exhausted on device
)

// Admin status qualifiers (virtio_admin_cmd.status_qualifier).
const (
	AdminQualifierOK             uint16 = 0 // with AdminStatusOK
	AdminQualifierInvalidCommand uint16 = 1 // command error, no more detail
	AdminQualifierInvalidOpcode  uint16 = 2 // unsupported, unused or disabled opcode
	AdminQualifierInvalidField   uint16 = 3 // a field of the command's data
	AdminQualifierInvalidGroup   uint16 = 4 // group_type
	AdminQualifierInvalidMember  uint16 = 5 // group_member_id
	AdminQualifierNoResource     uint16 = 6 // out of internal resources, retry
	AdminQualifierTryAgain       uint16 = 7 // command would block too long, retry
)

// Sizes of the admin structures' fixed parts.
const (
	// AdminCmdHeaderLen is the device-readable header: opcode, group_type,
	// reserved[12], group_member_id.
	AdminCmdHeaderLen = 24
	// AdminResultHeaderLen is the device-writable header: status,
	// status_qualifier, reserved[4].
	AdminResultHeaderLen = 8

	capDataHeaderLen  = 8  // id, reserved[6]
	resObjHeaderLen   = 8  // type, reserved[2], id
	resObjCmdFixedLen = 16 // header, flags
)

// Errors of the device model (Device), wrapped with details. Each maps to
// VIRTIO_NET_ERR on the control queue (Ack) and to an admin status and
// qualifier (AdminStatus).
var (
	// ErrUnsupported means a control command vrss does not handle, or an
	// admin opcode it does not support or the driver has not enabled with
	// LIST_USE.
	ErrUnsupported = errors.New("virtio: unsupported command")
	// ErrGroupType means an admin group type other than self.
	ErrGroupType = errors.New("virtio: unsupported admin group type")
	// ErrMember means a group member id other than 0 for the self group.
	ErrMember = errors.New("virtio: invalid group member id")
	// ErrDisabled means a flow filter object command before the driver set
	// all three flow filter capabilities.
	ErrDisabled = errors.New("virtio: flow filter capabilities not set")
	// ErrInvalid means a field of the command's data is invalid.
	ErrInvalid = errors.New("virtio: invalid field")
	// ErrSelector means a selector of a classifier or a selector
	// capability has a bad type, length, flag or place.
	ErrSelector = errors.New("virtio: bad selector")
	// ErrMask means a mask covers bits outside what the device (or the
	// driver's capability) allows: see SupportedSelectors.
	ErrMask = errors.New("virtio: mask covers unsupported header bits")
	// ErrKey means a rule's key does not fit its classifier: wrong length,
	// or an EtherType or protocol the classifier's selectors contradict.
	ErrKey = errors.New("virtio: rule key does not fit its classifier")
	// ErrID means an id outside the range the capabilities allow.
	ErrID = errors.New("virtio: id out of range")
	// ErrExists means the id is already in use.
	ErrExists = errors.New("virtio: id already in use")
	// ErrNotFound means no object or capability has that id.
	ErrNotFound = errors.New("virtio: no such object")
	// ErrBusy means other objects depend on the one to change or destroy,
	// or a capability is changed while objects depend on it.
	ErrBusy = errors.New("virtio: object in use")
	// ErrNoSpace means a limit is reached: rules per group, or what vrss's
	// map holds (flow.Limits).
	ErrNoSpace = errors.New("virtio: no space")
)

// AdminStatus maps the result of an admin command to its status and status
// qualifier: OK for nil; ErrNotFound ENXIO, ErrExists EEXIST, ErrBusy EBUSY,
// ErrNoSpace and flow.ErrLimit ENOSPC; ErrGroupType, ErrUnsupported,
// ErrDisabled and ErrMember EINVAL with their qualifiers; every other
// error, the decoders' and validators' included, EINVAL with
// AdminQualifierInvalidField (or InvalidCommand if it is none of this
// package's, rss's or flow's errors).
func AdminStatus(err error) (status, qualifier uint16) {
	switch {
	case err == nil:
		return AdminStatusOK, AdminQualifierOK
	case errors.Is(err, ErrGroupType):
		return AdminStatusEINVAL, AdminQualifierInvalidGroup
	case errors.Is(err, ErrUnsupported), errors.Is(err, ErrDisabled):
		return AdminStatusEINVAL, AdminQualifierInvalidOpcode
	case errors.Is(err, ErrMember):
		return AdminStatusEINVAL, AdminQualifierInvalidMember
	case errors.Is(err, ErrNotFound):
		return AdminStatusENXIO, AdminQualifierInvalidField
	case errors.Is(err, ErrExists):
		return AdminStatusEEXIST, AdminQualifierInvalidField
	case errors.Is(err, ErrBusy):
		return AdminStatusEBUSY, AdminQualifierInvalidCommand
	case errors.Is(err, ErrNoSpace), errors.Is(err, flow.ErrLimit):
		return AdminStatusENOSPC, AdminQualifierInvalidCommand
	}
	for _, e := range fieldErrors {
		if errors.Is(err, e) {
			return AdminStatusEINVAL, AdminQualifierInvalidField
		}
	}
	return AdminStatusEINVAL, AdminQualifierInvalidCommand
}

// fieldErrors are the errors that name a bad field of a command's data.
var fieldErrors = []error{
	ErrInvalid, ErrSelector, ErrMask, ErrKey, ErrID,
	ErrTruncated, ErrTrailingBytes, ErrTableMask, ErrTxQueues,
	rss.ErrKeySize, rss.ErrTableLength, rss.ErrQueueRange, rss.ErrHashTypes,
	flow.ErrField, flow.ErrNoFamily, flow.ErrDuplicate, flow.ErrNoGroup, flow.ErrNoContext, flow.ErrAction,
}

var (
	_ encoding.BinaryAppender  = (*AdminCmd)(nil)
	_ encoding.BinaryMarshaler = (*AdminCmd)(nil)
	_ encoding.BinaryAppender  = (*AdminResult)(nil)
	_ encoding.BinaryMarshaler = (*AdminResult)(nil)
	_ encoding.BinaryAppender  = IDList(nil)
	_ encoding.BinaryMarshaler = IDList(nil)
	_ encoding.BinaryAppender  = (*CapData)(nil)
	_ encoding.BinaryMarshaler = (*CapData)(nil)
	_ encoding.BinaryAppender  = (*ResourceObjHeader)(nil)
	_ encoding.BinaryMarshaler = (*ResourceObjHeader)(nil)
	_ encoding.BinaryAppender  = (*ResourceObjCmd)(nil)
	_ encoding.BinaryMarshaler = (*ResourceObjCmd)(nil)
)

// padded returns b if it has at least n bytes, else a copy zero-extended to
// n: how an admin device reads a short buffer.
func padded(b []byte, n int) []byte {
	if len(b) >= n {
		return b
	}
	p := make([]byte, n)
	copy(p, b)
	return p
}

// AdminCmd is the device-readable part of struct virtio_admin_cmd.
type AdminCmd struct {
	Opcode        uint16
	GroupType     uint16
	GroupMemberID uint64
	// Data is command_specific_data.
	Data []byte
}

// DecodeAdminCmd parses the device-readable part of an admin command. A
// buffer shorter than the header reads as zero-extended; Data is a copy of
// everything after the header (nil if nothing). It never fails.
func DecodeAdminCmd(b []byte) AdminCmd {
	p := padded(b, AdminCmdHeaderLen)
	c := AdminCmd{
		Opcode:        binary.LittleEndian.Uint16(p),
		GroupType:     binary.LittleEndian.Uint16(p[2:]),
		GroupMemberID: binary.LittleEndian.Uint64(p[16:]),
	}
	if len(b) > AdminCmdHeaderLen {
		c.Data = slices.Clone(b[AdminCmdHeaderLen:])
	}
	return c
}

// AppendBinary appends the wire form of c, reserved bytes zero, to b. It
// never fails. (Drivers pad the whole to a multiple of 8 bytes; devices do
// not require it.)
func (c *AdminCmd) AppendBinary(b []byte) ([]byte, error) {
	le := binary.LittleEndian
	b = le.AppendUint16(b, c.Opcode)
	b = le.AppendUint16(b, c.GroupType)
	b = append(b, make([]byte, 12)...)
	b = le.AppendUint64(b, c.GroupMemberID)
	return append(b, c.Data...), nil
}

// MarshalBinary returns the wire form of c.
func (c *AdminCmd) MarshalBinary() ([]byte, error) { return c.AppendBinary(nil) }

// AdminResult is the device-writable part of struct virtio_admin_cmd.
type AdminResult struct {
	Status    uint16
	Qualifier uint16
	// Data is command_specific_result.
	Data []byte
}

// DecodeAdminResult parses the device-writable part of an admin command,
// zero-extending a short buffer; Data is a copy of everything after the
// header, padding included. It never fails.
func DecodeAdminResult(b []byte) AdminResult {
	p := padded(b, AdminResultHeaderLen)
	r := AdminResult{Status: binary.LittleEndian.Uint16(p), Qualifier: binary.LittleEndian.Uint16(p[2:])}
	if len(b) > AdminResultHeaderLen {
		r.Data = slices.Clone(b[AdminResultHeaderLen:])
	}
	return r
}

// AppendBinary appends the wire form of r to b: the header, then Data
// zero-padded to a multiple of 8 bytes, since a device writes the result in
// whole 64-bit words. It never fails.
func (r *AdminResult) AppendBinary(b []byte) ([]byte, error) {
	b = binary.LittleEndian.AppendUint16(b, r.Status)
	b = binary.LittleEndian.AppendUint16(b, r.Qualifier)
	b = append(b, 0, 0, 0, 0)
	b = append(b, r.Data...)
	return append(b, make([]byte, -len(r.Data)&7)...), nil
}

// MarshalBinary returns the wire form of r.
func (r *AdminResult) MarshalBinary() ([]byte, error) { return r.AppendBinary(nil) }

// IDList is a set of admin opcodes (struct virtio_admin_cmd_list) or of
// capability ids (struct virtio_admin_cmd_query_cap_id_result): on the wire
// an array of le64 words in which bit i%64 of word i/64 says id i is in the
// set. The slice is ascending and without duplicates.
type IDList []uint16

// maxIDListLen bounds the bitmap decoded: 1024 words hold every le16 id.
const maxIDListLen = 8 << 10

// DecodeIDList returns the ids whose bits are set, ascending. A trailing
// partial word reads as zero-extended and bytes past the 65536th bit are
// ignored (no le16 id lies there). It never fails.
func DecodeIDList(b []byte) IDList {
	if len(b) > maxIDListLen {
		b = b[:maxIDListLen]
	}
	b = padded(b, (len(b)+7)&^7)
	var l IDList
	for w := 0; w < len(b); w += 8 {
		v := binary.LittleEndian.Uint64(b[w:])
		for i := 0; v != 0; i++ {
			if v&1 != 0 {
				l = append(l, uint16(w*8+i))
			}
			v >>= 1
		}
	}
	return l
}

// Contains reports whether id is in l.
func (l IDList) Contains(id uint16) bool {
	_, ok := slices.BinarySearch(l, id)
	return ok
}

// AppendBinary appends the bitmap of l to b: just enough words for its
// largest id (none for an empty list). Order and duplicates do not matter.
// It never fails.
func (l IDList) AppendBinary(b []byte) ([]byte, error) {
	if len(l) == 0 {
		return b, nil
	}
	words := make([]uint64, int(slices.Max(l))/64+1)
	for _, id := range l {
		words[id/64] |= 1 << (id % 64)
	}
	for _, w := range words {
		b = binary.LittleEndian.AppendUint64(b, w)
	}
	return b, nil
}

// MarshalBinary returns the bitmap of l.
func (l IDList) MarshalBinary() ([]byte, error) { return l.AppendBinary(nil) }

// CapData is struct virtio_admin_cmd_cap_get_data (Data empty), the data of
// DEVICE_CAP_GET, and struct virtio_admin_cmd_cap_set_data, the data of
// DRIVER_CAP_SET: a capability id, six reserved bytes and, for the latter,
// the capability itself.
type CapData struct {
	ID   uint16
	Data []byte
}

// DecodeCapData parses capability get or set data, zero-extending a short
// buffer and ignoring the reserved bytes. Data is a copy of what follows the
// header (nil if nothing). It never fails.
func DecodeCapData(b []byte) CapData {
	c := CapData{ID: binary.LittleEndian.Uint16(padded(b, 2))}
	if len(b) > capDataHeaderLen {
		c.Data = slices.Clone(b[capDataHeaderLen:])
	}
	return c
}

// AppendBinary appends the wire form of c, reserved bytes zero, to b. It
// never fails.
func (c *CapData) AppendBinary(b []byte) ([]byte, error) {
	b = binary.LittleEndian.AppendUint16(b, c.ID)
	b = append(b, 0, 0, 0, 0, 0, 0)
	return append(b, c.Data...), nil
}

// MarshalBinary returns the wire form of c.
func (c *CapData) MarshalBinary() ([]byte, error) { return c.AppendBinary(nil) }

// ResourceObjHeader is struct virtio_admin_cmd_resource_obj_cmd_hdr, the
// data of RESOURCE_OBJ_DESTROY and the start of the other resource object
// commands' data.
type ResourceObjHeader struct {
	// Type is the resource object type (ObjFFGroup, ...).
	Type uint16
	// ID is the driver-chosen id, unique per type, from 0 to the type's
	// limit minus one.
	ID uint32
}

// DecodeResourceObjHeader parses a resource object header, zero-extending a
// short buffer and ignoring the reserved bytes and anything after the
// header. It never fails.
func DecodeResourceObjHeader(b []byte) ResourceObjHeader {
	p := padded(b, resObjHeaderLen)
	return ResourceObjHeader{Type: binary.LittleEndian.Uint16(p), ID: binary.LittleEndian.Uint32(p[4:])}
}

// AppendBinary appends the 8-byte wire form of h to b. It never fails.
func (h *ResourceObjHeader) AppendBinary(b []byte) ([]byte, error) {
	b = binary.LittleEndian.AppendUint16(b, h.Type)
	b = append(b, 0, 0)
	return binary.LittleEndian.AppendUint32(b, h.ID), nil
}

// MarshalBinary returns the wire form of h.
func (h *ResourceObjHeader) MarshalBinary() ([]byte, error) { return h.AppendBinary(nil) }

// ResourceObjCmd is the data of RESOURCE_OBJ_CREATE
// (virtio_admin_cmd_resource_obj_create_data), RESOURCE_OBJ_MODIFY
// (virtio_admin_cmd_resource_modify_data) and RESOURCE_OBJ_QUERY
// (virtio_admin_cmd_resource_obj_query_data, with Data empty): the header,
// le64 flags and the object.
type ResourceObjCmd struct {
	ResourceObjHeader
	// Flags are optional object attributes; no flow filter object defines
	// one that changes what vrss does (see docs/virtio-flows.md).
	Flags uint64
	// Data is resource_obj_specific_data: FFGroup, FFClassifier or FFRule.
	Data []byte
}

// DecodeResourceObjCmd parses create, modify or query data, zero-extending
// a short buffer. Data is a copy of what follows the flags (nil if
// nothing). It never fails.
func DecodeResourceObjCmd(b []byte) ResourceObjCmd {
	p := padded(b, resObjCmdFixedLen)
	c := ResourceObjCmd{ResourceObjHeader: DecodeResourceObjHeader(p), Flags: binary.LittleEndian.Uint64(p[8:])}
	if len(b) > resObjCmdFixedLen {
		c.Data = slices.Clone(b[resObjCmdFixedLen:])
	}
	return c
}

// AppendBinary appends the wire form of c to b. It never fails.
func (c *ResourceObjCmd) AppendBinary(b []byte) ([]byte, error) {
	b, _ = c.ResourceObjHeader.AppendBinary(b)
	b = binary.LittleEndian.AppendUint64(b, c.Flags)
	return append(b, c.Data...), nil
}

// MarshalBinary returns the wire form of c.
func (c *ResourceObjCmd) MarshalBinary() ([]byte, error) { return c.AppendBinary(nil) }

// adminResult returns the device-writable bytes for err and, when err is
// nil, the result data.
func adminResult(err error, data []byte) []byte {
	st, q := AdminStatus(err)
	if err != nil {
		data = nil
	}
	r := AdminResult{Status: st, Qualifier: q, Data: data}
	b, _ := r.AppendBinary(make([]byte, 0, AdminResultHeaderLen+len(data)+7))
	return b
}

// errorf wraps a sentinel with details.
func errorf(sentinel error, format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{sentinel}, args...)...)
}
