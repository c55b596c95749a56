// Package netkit builds and parses the netlink messages that make a
// single-device netkit lease a physical NIC's receive queues (Linux 7.1
// and later), so that an AF_XDP socket in another network namespace can
// bind through the netkit device to the NIC's queue:
//
//   - the generic netlink family "netdev" is resolved (CTRL_CMD_GETFAMILY),
//     and its operations tell whether the kernel has NETDEV_CMD_QUEUE_CREATE;
//   - RTM_NEWLINK creates a netkit in single-device mode
//     (IFLA_NETKIT_PAIRING = NETKIT_DEVICE_SINGLE) with room for the leased
//     queues (IFLA_NUM_RX_QUEUES = 1 + queues: queue 0 is its own);
//   - NETDEV_CMD_QUEUE_CREATE, sent from the netkit's namespace, creates
//     one netkit receive queue leasing one NIC queue (NETDEV_A_QUEUE_LEASE:
//     the NIC's ifindex, its queue, and the namespace id of the NIC's
//     namespace as seen from the netkit's);
//   - RTM_GETNSID and RTM_NEWNSID find or assign that namespace id;
//   - RTM_GETLINK reads a device back, RTM_DELLINK deletes it (a lease ends
//     with its netkit).
//
// The numbers are the 7.2 UAPI's (include/uapi/linux/netdev.h, if_link.h,
// net_namespace.h; docs/afxdp.md lists them with the kernel's checks).
// The builders are pure functions of their arguments, pinned by golden
// bytes; the parsers take the kernel's replies as untrusted bytes and are
// fuzzed. Conn (Linux) sends them.
package netkit

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Netlink header and attribute layout.
const (
	nlmsgHdrLen = 16 // struct nlmsghdr
	genlHdrLen  = 4  // struct genlmsghdr
	ifinfoLen   = 16 // struct ifinfomsg
	rtgenLen    = 4  // struct rtgenmsg, padded to NLMSG_ALIGNTO
	nlaHdrLen   = 4  // struct nlattr

	nlaFNested  = 0x8000 // NLA_F_NESTED
	nlaTypeMask = 0x3fff

	nlmFRequest = 0x1
	nlmFAck     = 0x4
	nlmFExcl    = 0x200
	nlmFCreate  = 0x400

	nlmsgError = 0x2
	nlmsgDone  = 0x3
)

// Generic netlink controller (linux/genetlink.h).
const (
	genlIDCtrl       = 0x10
	ctrlCmdGetFamily = 3
	ctrlAttrFamilyID = 1
	ctrlAttrName     = 2
	ctrlAttrVersion  = 3
	ctrlAttrOps      = 6
	ctrlAttrOpID     = 1
	ctrlAttrOpFlags  = 2
)

// The netdev family (linux/netdev.h, Linux 7.1).
const (
	// FamilyName is the generic netlink family queues are leased through.
	FamilyName = "netdev"
	// CmdQueueCreate is NETDEV_CMD_QUEUE_CREATE: new in Linux 7.1.
	CmdQueueCreate = 16

	netdevVersion    = 1
	queueAttrID      = 1 // NETDEV_A_QUEUE_ID
	queueAttrIfindex = 2 // NETDEV_A_QUEUE_IFINDEX
	queueAttrType    = 3 // NETDEV_A_QUEUE_TYPE
	queueAttrLease   = 8 // NETDEV_A_QUEUE_LEASE
	leaseAttrIfindex = 1 // NETDEV_A_LEASE_IFINDEX
	leaseAttrQueue   = 2 // NETDEV_A_LEASE_QUEUE (nested: queue id, type)
	leaseAttrNetnsID = 3 // NETDEV_A_LEASE_NETNS_ID
	queueTypeRX      = 0 // NETDEV_QUEUE_TYPE_RX
)

// rtnetlink (linux/rtnetlink.h, if_link.h, net_namespace.h).
const (
	rtmNewLink = 16
	rtmDelLink = 17
	rtmGetLink = 18
	rtmNewNSID = 88
	rtmGetNSID = 90

	iflaIfname      = 3
	iflaLinkinfo    = 18
	iflaNumRxQueues = 32
	iflaInfoKind    = 1
	iflaInfoData    = 2

	netkitAttrPrimary = 2  // IFLA_NETKIT_PRIMARY (u8, read-only)
	netkitAttrMode    = 5  // IFLA_NETKIT_MODE
	netkitAttrPairing = 10 // IFLA_NETKIT_PAIRING: new in Linux 7.1

	netnsaNSID = 1 // NETNSA_NSID
	netnsaFD   = 3 // NETNSA_FD

	afUnspec = 0
)

// Mode is IFLA_NETKIT_MODE.
type Mode uint32

// The netkit modes. vrss uses L2: a VM's frames are Ethernet frames.
const (
	ModeL2 Mode = 0 // NETKIT_L2
	ModeL3 Mode = 1 // NETKIT_L3
)

// Pairing is IFLA_NETKIT_PAIRING.
type Pairing uint32

// The pairings: a pair of devices (the only kind before 7.1), or one.
const (
	PairingPair   Pairing = 0 // NETKIT_DEVICE_PAIR
	PairingSingle Pairing = 1 // NETKIT_DEVICE_SINGLE
)

// NSIDNotAssigned is NETNSA_NSID_NOT_ASSIGNED: the namespace has no id in
// the asking namespace yet.
const NSIDNotAssigned = -1

// MaxQueues is netkit's NETKIT_NUM_RX_QUEUES_MAX less its own queue 0.
const MaxQueues = 1023

const ifNameSize = 16 // IFNAMSIZ, with the NUL

// msg builds one netlink message.
type msg struct{ b []byte }

func newMsg(typ, flags uint16, seq uint32) *msg {
	m := &msg{b: make([]byte, nlmsgHdrLen, 128)}
	binary.NativeEndian.PutUint16(m.b[4:], typ)
	binary.NativeEndian.PutUint16(m.b[6:], flags)
	binary.NativeEndian.PutUint32(m.b[8:], seq)
	return m
}

func (m *msg) raw(p []byte) { m.b = append(m.b, p...) }

// attr appends an attribute with its value padded to 4 bytes.
func (m *msg) attr(typ uint16, v []byte) {
	var h [nlaHdrLen]byte
	binary.NativeEndian.PutUint16(h[0:], uint16(nlaHdrLen+len(v)))
	binary.NativeEndian.PutUint16(h[2:], typ)
	m.b = append(append(m.b, h[:]...), v...)
	for len(m.b)%4 != 0 {
		m.b = append(m.b, 0)
	}
}

func (m *msg) u32(typ uint16, v uint32) {
	m.attr(typ, binary.NativeEndian.AppendUint32(nil, v))
}

func (m *msg) str(typ uint16, s string) { m.attr(typ, append([]byte(s), 0)) }

// nest opens a nested attribute (NLA_F_NESTED set: genetlink's strict
// validation refuses a nest without it); end closes it.
func (m *msg) nest(typ uint16) (end func()) {
	at := len(m.b)
	m.attr(typ|nlaFNested, nil)
	return func() { binary.NativeEndian.PutUint16(m.b[at:], uint16(len(m.b)-at)) }
}

func (m *msg) done() []byte {
	binary.NativeEndian.PutUint32(m.b[0:], uint32(len(m.b)))
	return m.b
}

// GetFamilyRequest asks the generic netlink controller for the family
// name (its id, version and operations).
func GetFamilyRequest(seq uint32, name string) []byte {
	m := newMsg(genlIDCtrl, nlmFRequest|nlmFAck, seq)
	m.raw([]byte{ctrlCmdGetFamily, 1, 0, 0})
	m.str(ctrlAttrName, name)
	return m.done()
}

// Lease is one queue lease: a new receive queue of the netkit device
// Ifindex (in the namespace the request is sent from) leasing receive
// queue Queue of the device PhysIfindex, which lives in the namespace
// whose id, as seen from the netkit's, is NetnsID (NSIDNotAssigned: the
// same namespace; the attribute is then left out).
type Lease struct {
	Ifindex     uint32
	PhysIfindex uint32
	Queue       uint32
	NetnsID     int32
}

// QueueCreateRequest is NETDEV_CMD_QUEUE_CREATE for l, to the netdev
// family whose id is family.
func QueueCreateRequest(seq uint32, family uint16, l Lease) []byte {
	m := newMsg(family, nlmFRequest|nlmFAck, seq)
	m.raw([]byte{CmdQueueCreate, netdevVersion, 0, 0})
	m.u32(queueAttrIfindex, l.Ifindex)
	m.u32(queueAttrType, queueTypeRX)
	end := m.nest(queueAttrLease)
	m.u32(leaseAttrIfindex, l.PhysIfindex)
	endq := m.nest(leaseAttrQueue)
	m.u32(queueAttrID, l.Queue)
	m.u32(queueAttrType, queueTypeRX)
	endq()
	if l.NetnsID >= 0 {
		m.u32(leaseAttrNetnsID, uint32(l.NetnsID))
	}
	end()
	return m.done()
}

// Spec describes a single-device netkit to create.
type Spec struct {
	Name string
	// Queues is how many NIC queues it will lease: it gets 1+Queues
	// receive queues (its own queue 0 and one per lease).
	Queues int
	Mode   Mode
}

// Check refuses a spec the kernel would.
func (s Spec) Check() error {
	if s.Name == "" || len(s.Name) >= ifNameSize {
		return fmt.Errorf("netkit: device name %q: want 1 to %d bytes", s.Name, ifNameSize-1)
	}
	for _, c := range []byte(s.Name) {
		if c == '/' || c == ':' || c <= ' ' || c == 0x7f || c == '%' {
			return fmt.Errorf("netkit: device name %q: no '/', ':', '%%', spaces or control characters", s.Name)
		}
	}
	if s.Name == "." || s.Name == ".." {
		return fmt.Errorf("netkit: device name %q", s.Name)
	}
	if s.Queues < 1 || s.Queues > MaxQueues {
		return fmt.Errorf("netkit: %d queues: want 1 to %d", s.Queues, MaxQueues)
	}
	if s.Mode != ModeL2 && s.Mode != ModeL3 {
		return fmt.Errorf("netkit: mode %d", s.Mode)
	}
	return nil
}

// NewLinkRequest is RTM_NEWLINK creating s (NLM_F_CREATE|NLM_F_EXCL: an
// existing device of that name is refused, never changed). In single
// mode netkit refuses peer attributes, scrubbing and a policy other than
// pass, so none is sent.
func NewLinkRequest(seq uint32, s Spec) ([]byte, error) {
	if err := s.Check(); err != nil {
		return nil, err
	}
	m := newMsg(rtmNewLink, nlmFRequest|nlmFAck|nlmFCreate|nlmFExcl, seq)
	m.raw(make([]byte, ifinfoLen))
	m.str(iflaIfname, s.Name)
	m.u32(iflaNumRxQueues, uint32(1+s.Queues))
	end := m.nest(iflaLinkinfo)
	m.str(iflaInfoKind, "netkit")
	endd := m.nest(iflaInfoData)
	m.u32(netkitAttrMode, uint32(s.Mode))
	m.u32(netkitAttrPairing, uint32(PairingSingle))
	endd()
	end()
	return m.done(), nil
}

func ifinfo(index int32) []byte {
	b := make([]byte, ifinfoLen)
	binary.NativeEndian.PutUint32(b[4:], uint32(index))
	return b
}

// GetLinkRequest is RTM_GETLINK for the device named name.
func GetLinkRequest(seq uint32, name string) []byte {
	m := newMsg(rtmGetLink, nlmFRequest|nlmFAck, seq)
	m.raw(ifinfo(0))
	m.str(iflaIfname, name)
	return m.done()
}

// DelLinkRequest is RTM_DELLINK for the device whose index is ifindex.
func DelLinkRequest(seq uint32, ifindex int32) []byte {
	m := newMsg(rtmDelLink, nlmFRequest|nlmFAck, seq)
	m.raw(ifinfo(ifindex))
	return m.done()
}

// GetNSIDRequest is RTM_GETNSID: the id, in the sender's namespace, of
// the namespace fd refers to.
func GetNSIDRequest(seq uint32, fd int) []byte {
	m := newMsg(rtmGetNSID, nlmFRequest|nlmFAck, seq)
	m.raw(make([]byte, rtgenLen))
	m.u32(netnsaFD, uint32(fd))
	return m.done()
}

// NewNSIDRequest is RTM_NEWNSID assigning the namespace fd refers to an
// id in the sender's namespace, the kernel's choice (NETNSA_NSID -1).
func NewNSIDRequest(seq uint32, fd int) []byte {
	m := newMsg(rtmNewNSID, nlmFRequest|nlmFAck, seq)
	m.raw(make([]byte, rtgenLen))
	m.u32(netnsaNSID, uint32(0xffffffff))
	m.u32(netnsaFD, uint32(fd))
	return m.done()
}

var errShort = errors.New("netkit: truncated netlink message")
