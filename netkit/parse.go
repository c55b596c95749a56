package netkit

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
)

// Message is one netlink message of a reply.
type Message struct {
	Type, Flags uint16
	Seq, Pid    uint32
	Payload     []byte
}

// SplitMessages cuts a datagram from the kernel into its messages. A
// length that runs past the datagram or under the header is an error.
func SplitMessages(b []byte) ([]Message, error) {
	var out []Message
	for len(b) > 0 {
		if len(b) < nlmsgHdrLen {
			return nil, errShort
		}
		n := int(binary.NativeEndian.Uint32(b))
		if n < nlmsgHdrLen || n > len(b) {
			return nil, fmt.Errorf("netkit: netlink message length %d in %d bytes", n, len(b))
		}
		out = append(out, Message{
			Type:    binary.NativeEndian.Uint16(b[4:]),
			Flags:   binary.NativeEndian.Uint16(b[6:]),
			Seq:     binary.NativeEndian.Uint32(b[8:]),
			Pid:     binary.NativeEndian.Uint32(b[12:]),
			Payload: b[nlmsgHdrLen:n],
		})
		n = align4(n)
		if n > len(b) {
			n = len(b)
		}
		b = b[n:]
	}
	return out, nil
}

func align4(n int) int { return (n + 3) &^ 3 }

// attr is one netlink attribute, its type without the NLA_F_ flags.
type attr struct {
	typ uint16
	v   []byte
}

// attrs parses a run of attributes; one that overruns the bytes is an
// error, trailing padding is not.
func attrs(b []byte) ([]attr, error) {
	var out []attr
	for len(b) >= nlaHdrLen {
		n := int(binary.NativeEndian.Uint16(b))
		if n < nlaHdrLen || n > len(b) {
			return nil, fmt.Errorf("netkit: attribute length %d in %d bytes", n, len(b))
		}
		out = append(out, attr{typ: binary.NativeEndian.Uint16(b[2:]) & nlaTypeMask, v: b[nlaHdrLen:n]})
		n = align4(n)
		if n > len(b) {
			n = len(b)
		}
		b = b[n:]
	}
	return out, nil
}

func (a attr) u32() (uint32, error) {
	if len(a.v) != 4 {
		return 0, fmt.Errorf("netkit: attribute %d: %d bytes, want 4", a.typ, len(a.v))
	}
	return binary.NativeEndian.Uint32(a.v), nil
}

func (a attr) u16() (uint16, error) {
	if len(a.v) != 2 {
		return 0, fmt.Errorf("netkit: attribute %d: %d bytes, want 2", a.typ, len(a.v))
	}
	return binary.NativeEndian.Uint16(a.v), nil
}

// str reads a NUL-terminated string attribute.
func (a attr) str() (string, error) {
	i := bytes.IndexByte(a.v, 0)
	if i < 0 {
		return "", fmt.Errorf("netkit: attribute %d: string without its NUL", a.typ)
	}
	return string(a.v[:i]), nil
}

// Ack is the kernel's answer in an NLMSG_ERROR message: Errno 0 for an
// acknowledgement, else the negated error, with the extended ack's
// message and the offset of the attribute it blames, if any.
type Ack struct {
	Errno  int32
	Msg    string
	Offset uint32
}

// Extended ack attributes (linux/netlink.h).
const (
	nlmFCapped   = 0x100 // NLM_F_CAPPED: the request is not echoed
	nlmFAckTLVs  = 0x200 // NLM_F_ACK_TLVS
	nlmsgerrMsg  = 1     // NLMSGERR_ATTR_MSG
	nlmsgerrOffs = 2     // NLMSGERR_ATTR_OFFS
)

// ParseAck reads an NLMSG_ERROR message (flags are its header's: they
// say whether the request is echoed whole and whether attributes follow).
func ParseAck(flags uint16, p []byte) (Ack, error) {
	if len(p) < 4+nlmsgHdrLen {
		return Ack{}, errShort
	}
	a := Ack{Errno: int32(binary.NativeEndian.Uint32(p))}
	if flags&nlmFAckTLVs == 0 {
		return a, nil
	}
	off := 4 + nlmsgHdrLen
	if flags&nlmFCapped == 0 {
		n := int(binary.NativeEndian.Uint32(p[4:]))
		if n < nlmsgHdrLen || 4+n > len(p) {
			return Ack{}, fmt.Errorf("netkit: echoed request of %d bytes in an error of %d", n, len(p))
		}
		off = 4 + align4(n)
	}
	if off > len(p) {
		return a, nil
	}
	as, err := attrs(p[off:])
	if err != nil {
		return Ack{}, err
	}
	for _, at := range as {
		switch at.typ {
		case nlmsgerrMsg:
			if a.Msg, err = at.str(); err != nil {
				return Ack{}, err
			}
		case nlmsgerrOffs:
			if a.Offset, err = at.u32(); err != nil {
				return Ack{}, err
			}
		}
	}
	return a, nil
}

// Family is a generic netlink family as the controller reports it.
type Family struct {
	ID      uint16
	Name    string
	Version uint32
	// Ops are its operations' command numbers, sorted.
	Ops []uint32
}

// Has says whether the family has the operation cmd.
func (f Family) Has(cmd uint32) bool {
	_, ok := slices.BinarySearch(f.Ops, cmd)
	return ok
}

// ParseFamily reads the controller's CTRL_CMD_NEWFAMILY reply (the
// payload after the netlink header).
func ParseFamily(p []byte) (Family, error) {
	var f Family
	if len(p) < genlHdrLen {
		return f, errShort
	}
	as, err := attrs(p[genlHdrLen:])
	if err != nil {
		return f, err
	}
	seenID := false
	for _, a := range as {
		switch a.typ {
		case ctrlAttrFamilyID:
			if f.ID, err = a.u16(); err != nil {
				return f, err
			}
			seenID = true
		case ctrlAttrName:
			if f.Name, err = a.str(); err != nil {
				return f, err
			}
		case ctrlAttrVersion:
			if f.Version, err = a.u32(); err != nil {
				return f, err
			}
		case ctrlAttrOps:
			ops, err := attrs(a.v)
			if err != nil {
				return f, err
			}
			for _, op := range ops {
				in, err := attrs(op.v)
				if err != nil {
					return f, err
				}
				for _, x := range in {
					if x.typ != ctrlAttrOpID {
						continue
					}
					id, err := x.u32()
					if err != nil {
						return f, err
					}
					f.Ops = append(f.Ops, id)
				}
			}
		}
	}
	if !seenID || f.ID == 0 {
		return f, fmt.Errorf("netkit: family reply without a family id")
	}
	slices.Sort(f.Ops)
	f.Ops = slices.Compact(f.Ops)
	return f, nil
}

// ParseQueueCreate reads NETDEV_CMD_QUEUE_CREATE's reply: the id of the
// netkit's new receive queue.
func ParseQueueCreate(p []byte) (uint32, error) {
	if len(p) < genlHdrLen {
		return 0, errShort
	}
	as, err := attrs(p[genlHdrLen:])
	if err != nil {
		return 0, err
	}
	for _, a := range as {
		if a.typ == queueAttrID {
			return a.u32()
		}
	}
	return 0, fmt.Errorf("netkit: queue-create reply without a queue id")
}

// Link is a device as RTM_NEWLINK (the reply to RTM_GETLINK) describes
// it; the netkit fields are zero for other kinds.
type Link struct {
	Index    int32
	Name     string
	Kind     string
	RxQueues uint32
	// Mode, Pairing and Primary are netkit's; HasPairing is false on a
	// kernel before 7.1, which reports no pairing (and has only pairs).
	Mode       Mode
	Pairing    Pairing
	HasPairing bool
	Primary    bool
}

// Single says the device is a single-device netkit.
func (l Link) Single() bool {
	return l.Kind == "netkit" && l.HasPairing && l.Pairing == PairingSingle
}

// ParseLink reads an RTM_NEWLINK message's payload.
func ParseLink(p []byte) (Link, error) {
	var l Link
	if len(p) < ifinfoLen {
		return l, errShort
	}
	l.Index = int32(binary.NativeEndian.Uint32(p[4:]))
	as, err := attrs(p[ifinfoLen:])
	if err != nil {
		return l, err
	}
	for _, a := range as {
		switch a.typ {
		case iflaIfname:
			if l.Name, err = a.str(); err != nil {
				return l, err
			}
		case iflaNumRxQueues:
			if l.RxQueues, err = a.u32(); err != nil {
				return l, err
			}
		case iflaLinkinfo:
			if err := l.linkinfo(a.v); err != nil {
				return l, err
			}
		}
	}
	return l, nil
}

func (l *Link) linkinfo(b []byte) error {
	as, err := attrs(b)
	if err != nil {
		return err
	}
	var data []byte
	for _, a := range as {
		switch a.typ {
		case iflaInfoKind:
			if l.Kind, err = a.str(); err != nil {
				return err
			}
		case iflaInfoData:
			data = a.v
		}
	}
	if l.Kind != "netkit" || data == nil {
		return nil
	}
	ds, err := attrs(data)
	if err != nil {
		return err
	}
	for _, a := range ds {
		var v uint32
		switch a.typ {
		case netkitAttrMode:
			v, err = a.u32()
			l.Mode = Mode(v)
		case netkitAttrPairing:
			v, err = a.u32()
			l.Pairing, l.HasPairing = Pairing(v), true
		case netkitAttrPrimary:
			if len(a.v) != 1 {
				return fmt.Errorf("netkit: IFLA_NETKIT_PRIMARY of %d bytes", len(a.v))
			}
			l.Primary = a.v[0] != 0
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// ParseNSID reads RTM_GETNSID's reply: the id, or NSIDNotAssigned.
func ParseNSID(p []byte) (int32, error) {
	if len(p) < rtgenLen {
		return 0, errShort
	}
	as, err := attrs(p[rtgenLen:])
	if err != nil {
		return 0, err
	}
	for _, a := range as {
		if a.typ == netnsaNSID {
			v, err := a.u32()
			return int32(v), err
		}
	}
	return 0, fmt.Errorf("netkit: nsid reply without NETNSA_NSID")
}
