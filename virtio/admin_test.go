package virtio

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/vrss-dev/vrss/flow"
	"github.com/vrss-dev/vrss/rss"
)

var goldenAdminCmd = unhex(`
	0a 00                      # opcode RESOURCE_OBJ_CREATE
	01 00                      # group_type 1
	00 00 00 00 00 00 00 00 00 00 00 00 # reserved1[12]
	01 02 03 04 05 06 07 08    # group_member_id 0x0807060504030201
	aa bb                      # command_specific_data
`)

var goldenAdminCmdValue = AdminCmd{Opcode: 0xa, GroupType: 1, GroupMemberID: 0x0807060504030201, Data: []byte{0xaa, 0xbb}}

var goldenAdminResult = unhex(`
	16 00                      # status 22 EINVAL
	03 00                      # status_qualifier 3 INVALID_FIELD
	00 00 00 00                # reserved2[4]
	01 02 03 00 00 00 00 00    # command_specific_result, padded to 8 bytes
`)

var goldenAdminResultValue = AdminResult{Status: 22, Qualifier: 3, Data: []byte{1, 2, 3}}

func TestAdminCmdGolden(t *testing.T) {
	c := DecodeAdminCmd(goldenAdminCmd)
	if !reflect.DeepEqual(c, goldenAdminCmdValue) {
		t.Errorf("DecodeAdminCmd = %+v", c)
	}
	checkWire(t, &goldenAdminCmdValue, goldenAdminCmd)

	// Reserved bytes are ignored; the data is a copy.
	b := patch(goldenAdminCmd, 4, 0xff, 0xff, 0xff)
	c = DecodeAdminCmd(b)
	b[24] = 0
	if !reflect.DeepEqual(c, goldenAdminCmdValue) {
		t.Errorf("with reserved bytes set, then the input changed: %+v", c)
	}

	r := DecodeAdminResult(goldenAdminResult)
	want := goldenAdminResultValue
	want.Data = []byte{1, 2, 3, 0, 0, 0, 0, 0} // the padding is data to a decoder
	if !reflect.DeepEqual(r, want) {
		t.Errorf("DecodeAdminResult = %+v", r)
	}
	checkWire(t, &goldenAdminResultValue, goldenAdminResult)
	ok := AdminResult{}
	checkWire(t, &ok, make([]byte, 8))
}

// TestAdminShortBuffers checks the admin rule for short and long buffers:
// missing bytes read as zero, extra bytes are ignored, nothing fails.
func TestAdminShortBuffers(t *testing.T) {
	for i := range len(goldenAdminCmd) {
		c := DecodeAdminCmd(bytes.Clone(goldenAdminCmd[:i]))
		full := append(bytes.Clone(goldenAdminCmd[:i]), make([]byte, 26-i)...)
		want := DecodeAdminCmd(full)
		if i <= AdminCmdHeaderLen {
			want.Data = nil
		} else {
			want.Data = want.Data[:i-AdminCmdHeaderLen]
		}
		if !reflect.DeepEqual(c, want) {
			t.Errorf("%d bytes: %+v, want %+v", i, c, want)
		}
	}
	if r := DecodeAdminResult([]byte{0x10}); r.Status != 0x10 || r.Qualifier != 0 || r.Data != nil {
		t.Errorf("DecodeAdminResult(1 byte) = %+v", r)
	}
	if h := DecodeResourceObjHeader([]byte{0x01, 0x02, 0xff, 0xff, 0x05}); h != (ResourceObjHeader{Type: 0x0201, ID: 5}) {
		t.Errorf("DecodeResourceObjHeader(5 bytes) = %+v", h)
	}
	if c := DecodeCapData([]byte{0x02}); c.ID != 2 || c.Data != nil {
		t.Errorf("DecodeCapData(1 byte) = %+v", c)
	}
}

func TestIDListGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		l    IDList
		wire []byte
	}{
		{"empty", nil, nil},
		{"device opcodes", IDList{0, 1, 7, 8, 9, 0xa, 0xb, 0xc, 0xd}, unhex("83 3f 00 00 00 00 00 00")},
		{"opcode 64", IDList{0, 1, 64}, unhex("03 00 00 00 00 00 00 00  01 00 00 00 00 00 00 00")},
		{"flow filter caps", IDList{CapFFResource, CapFFSelector, CapFFAction},
			append(make([]byte, 32*8), unhex("07 00 00 00 00 00 00 00")...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if l := DecodeIDList(tc.wire); !reflect.DeepEqual(l, tc.l) {
				t.Errorf("DecodeIDList = %v, want %v", l, tc.l)
			}
			checkWire(t, tc.l, tc.wire)
		})
	}
	// Zero words may follow; a partial word reads zero-extended; bits of
	// ids past 65535 are ignored.
	if l := DecodeIDList(unhex("83 3f 00 00 00 00 00 00 00 00 00 00 00 00 00 00")); !reflect.DeepEqual(l, IDList{0, 1, 7, 8, 9, 10, 11, 12, 13}) {
		t.Errorf("with a zero word: %v", l)
	}
	if l := DecodeIDList(unhex("02 80")); !reflect.DeepEqual(l, IDList{1, 15}) {
		t.Errorf("partial word: %v", l)
	}
	huge := make([]byte, maxIDListLen+8)
	huge[maxIDListLen-1] = 0x80
	huge[maxIDListLen] = 0xff
	if l := DecodeIDList(huge); !reflect.DeepEqual(l, IDList{0xffff}) {
		t.Errorf("past 65535: %v", l)
	}
	if !(IDList{1, 7, 9}).Contains(7) || (IDList{1, 7, 9}).Contains(8) {
		t.Error("Contains")
	}
}

func TestCapDataAndResourceObjGolden(t *testing.T) {
	capSet := unhex(`
		01 08                   # id 0x801
		00 00 00 00 00 00       # reserved[6]
		05 06                   # cap_specific_data
	`)
	cd := CapData{ID: 0x801, Data: []byte{5, 6}}
	if c := DecodeCapData(capSet); !reflect.DeepEqual(c, cd) {
		t.Errorf("DecodeCapData = %+v", c)
	}
	checkWire(t, &cd, capSet)

	hdr := unhex(`
		02 02                   # type 0x202 (rule)
		00 00                   # reserved[2]
		01 02 03 04             # id 0x04030201
	`)
	h := ResourceObjHeader{Type: ObjFFRule, ID: 0x04030201}
	if got := DecodeResourceObjHeader(hdr); got != h {
		t.Errorf("DecodeResourceObjHeader = %+v", got)
	}
	checkWire(t, &h, hdr)

	create := append(bytes.Clone(hdr), unhex(`
		01 00 00 00 00 00 00 00 # flags 1
		aa bb cc                # resource_obj_specific_data
	`)...)
	rc := ResourceObjCmd{ResourceObjHeader: h, Flags: 1, Data: []byte{0xaa, 0xbb, 0xcc}}
	if got := DecodeResourceObjCmd(create); !reflect.DeepEqual(got, rc) {
		t.Errorf("DecodeResourceObjCmd = %+v", got)
	}
	checkWire(t, &rc, create)
	// A destroy's header read as create data: flags zero, no object.
	if got := DecodeResourceObjCmd(hdr); !reflect.DeepEqual(got, ResourceObjCmd{ResourceObjHeader: h}) {
		t.Errorf("DecodeResourceObjCmd(header only) = %+v", got)
	}
}

func TestAdminStatus(t *testing.T) {
	for _, tc := range []struct {
		err       error
		status, q uint16
	}{
		{nil, 0, 0},
		{ErrGroupType, 22, 4},
		{ErrUnsupported, 22, 2},
		{ErrDisabled, 22, 2},
		{ErrMember, 22, 5},
		{ErrNotFound, 6, 3},
		{ErrExists, 17, 3},
		{ErrBusy, 16, 1},
		{ErrNoSpace, 28, 1},
		{flow.ErrLimit, 28, 1},
		{ErrInvalid, 22, 3},
		{ErrMask, 22, 3},
		{ErrSelector, 22, 3},
		{ErrKey, 22, 3},
		{ErrID, 22, 3},
		{rss.ErrQueueRange, 22, 3},
		{flow.ErrField, 22, 3},
		{errors.New("other"), 22, 1},
	} {
		wrapped := tc.err
		if wrapped != nil {
			wrapped = fmt.Errorf("context: %w", tc.err)
		}
		if s, q := AdminStatus(wrapped); s != tc.status || q != tc.q {
			t.Errorf("AdminStatus(%v) = %d/%d, want %d/%d", tc.err, s, q, tc.status, tc.q)
		}
	}
	// The wire values virtio defines.
	if AdminCmdListQuery != 0 || AdminCmdListUse != 1 || AdminCmdCapIDListQuery != 7 || AdminCmdDeviceCapGet != 8 ||
		AdminCmdDriverCapSet != 9 || AdminCmdResourceObjCreate != 0xa || AdminCmdResourceObjModify != 0xb ||
		AdminCmdResourceObjQuery != 0xc || AdminCmdResourceObjDestroy != 0xd {
		t.Error("admin opcodes differ from virtio")
	}
	if AdminStatusOK != 0 || AdminStatusENXIO != 6 || AdminStatusEAGAIN != 11 || AdminStatusENOMEM != 12 ||
		AdminStatusEBUSY != 16 || AdminStatusEEXIST != 17 || AdminStatusEINVAL != 22 || AdminStatusENOSPC != 28 {
		t.Error("admin statuses differ from virtio")
	}
	if AdminQualifierInvalidCommand != 1 || AdminQualifierInvalidOpcode != 2 || AdminQualifierInvalidField != 3 ||
		AdminQualifierInvalidGroup != 4 || AdminQualifierInvalidMember != 5 || AdminQualifierNoResource != 6 || AdminQualifierTryAgain != 7 {
		t.Error("admin status qualifiers differ from virtio")
	}
}
