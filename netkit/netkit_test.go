package netkit

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"
)

// hexBytes reads bytes written by hand: hex digits, with spaces, newlines
// and #-comments ignored. Numbers are little-endian (netlink is in host
// order; these tests pin the x86 and arm64 layout).
func hexBytes(t *testing.T, s string) []byte {
	t.Helper()
	var b strings.Builder
	for _, line := range strings.Split(s, "\n") {
		line, _, _ = strings.Cut(line, "#")
		b.WriteString(strings.Join(strings.Fields(line), ""))
	}
	out, err := hex.DecodeString(b.String())
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func same(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Errorf("%s:\n got %x\nwant %x", what, got, want)
	}
}

// The requests, byte for byte, from the 7.2 UAPI headers (netdev.h,
// if_link.h, genetlink.h, net_namespace.h, netlink.h).
func TestGoldenRequests(t *testing.T) {
	same(t, "CTRL_CMD_GETFAMILY netdev", GetFamilyRequest(7, "netdev"), hexBytes(t, `
		20000000 1000 0500 07000000 00000000 # nlmsghdr: len 32, GENL_ID_CTRL, REQUEST|ACK, seq 7, pid 0
		03 01 0000                           # genlmsghdr: CTRL_CMD_GETFAMILY, version 1
		0b00 0200 6e657464657600 00          # CTRL_ATTR_FAMILY_NAME "netdev\0", padded
	`))

	// ifindex 5 (the netkit), type rx, lease {ifindex 2, queue {id 3,
	// rx}, netns-id 0}, to family 0x1d.
	same(t, "NETDEV_CMD_QUEUE_CREATE with a lease", QueueCreateRequest(9, 0x1d, Lease{Ifindex: 5, PhysIfindex: 2, Queue: 3, NetnsID: 0}), hexBytes(t, `
		4c000000 1d00 0500 09000000 00000000 # len 76, family 0x1d, REQUEST|ACK, seq 9
		10 01 0000                           # NETDEV_CMD_QUEUE_CREATE (16), version 1
		0800 0200 05000000                   # NETDEV_A_QUEUE_IFINDEX 5
		0800 0300 00000000                   # NETDEV_A_QUEUE_TYPE rx
		2800 0880                            # NETDEV_A_QUEUE_LEASE (8) | NLA_F_NESTED, 40 bytes
		  0800 0100 02000000                 #   NETDEV_A_LEASE_IFINDEX 2
		  1400 0280                          #   NETDEV_A_LEASE_QUEUE (2) | NLA_F_NESTED, 20 bytes
		    0800 0100 03000000               #     NETDEV_A_QUEUE_ID 3
		    0800 0300 00000000               #     NETDEV_A_QUEUE_TYPE rx
		  0800 0300 00000000                 #   NETDEV_A_LEASE_NETNS_ID 0
	`))
	// The same namespace: no NETDEV_A_LEASE_NETNS_ID.
	same(t, "NETDEV_CMD_QUEUE_CREATE in one namespace", QueueCreateRequest(10, 0x1d, Lease{Ifindex: 5, PhysIfindex: 2, Queue: 1, NetnsID: NSIDNotAssigned}), hexBytes(t, `
		44000000 1d00 0500 0a000000 00000000 # len 68
		10 01 0000
		0800 0200 05000000
		0800 0300 00000000
		2000 0880                            # the lease, 32 bytes
		  0800 0100 02000000
		  1400 0280
		    0800 0100 01000000
		    0800 0300 00000000
	`))

	nl, err := NewLinkRequest(11, Spec{Name: "nk0", Queues: 2, Mode: ModeL2})
	if err != nil {
		t.Fatal(err)
	}
	same(t, "RTM_NEWLINK netkit single", nl, hexBytes(t, `
		54000000 1000 0506 0b000000 00000000 # len 84, RTM_NEWLINK, REQUEST|ACK|EXCL|CREATE, seq 11
		00 00 0000 00000000 00000000 00000000 # ifinfomsg: AF_UNSPEC, index 0, flags 0, change 0
		0800 0300 6e6b3000                   # IFLA_IFNAME "nk0\0"
		0800 2000 03000000                   # IFLA_NUM_RX_QUEUES 3 (its own and 2 leased)
		2400 1280                            # IFLA_LINKINFO (18) | NLA_F_NESTED, 36 bytes
		  0b00 0100 6e65746b697400 00        #   IFLA_INFO_KIND "netkit\0"
		  1400 0280                          #   IFLA_INFO_DATA (2) | NLA_F_NESTED, 20 bytes
		    0800 0500 00000000               #     IFLA_NETKIT_MODE NETKIT_L2
		    0800 0a00 01000000               #     IFLA_NETKIT_PAIRING NETKIT_DEVICE_SINGLE
	`))

	same(t, "RTM_GETLINK by name", GetLinkRequest(12, "nk0"), hexBytes(t, `
		28000000 1200 0500 0c000000 00000000 # len 40, RTM_GETLINK, REQUEST|ACK
		00 00 0000 00000000 00000000 00000000
		0800 0300 6e6b3000
	`))
	same(t, "RTM_DELLINK by index", DelLinkRequest(13, 42), hexBytes(t, `
		20000000 1100 0500 0d000000 00000000 # len 32, RTM_DELLINK, REQUEST|ACK
		00 00 0000 2a000000 00000000 00000000 # ifinfomsg index 42
	`))
	same(t, "RTM_GETNSID", GetNSIDRequest(14, 6), hexBytes(t, `
		1c000000 5a00 0500 0e000000 00000000 # len 28, RTM_GETNSID (90)
		00 000000                            # rtgenmsg, padded
		0800 0300 06000000                   # NETNSA_FD 6
	`))
	same(t, "RTM_NEWNSID", NewNSIDRequest(15, 6), hexBytes(t, `
		24000000 5800 0500 0f000000 00000000 # len 36, RTM_NEWNSID (88)
		00 000000
		0800 0100 ffffffff                   # NETNSA_NSID -1: the kernel's choice
		0800 0300 06000000                   # NETNSA_FD 6
	`))
}

func TestSpecCheck(t *testing.T) {
	good := Spec{Name: "nk0", Queues: 2}
	if err := good.Check(); err != nil {
		t.Fatal(err)
	}
	for _, s := range []Spec{
		{Name: "", Queues: 1}, {Name: "sixteen-bytes-xx", Queues: 1}, {Name: "a/b", Queues: 1},
		{Name: "a b", Queues: 1}, {Name: "nk%d", Queues: 1}, {Name: "..", Queues: 1},
		{Name: "nk0", Queues: 0}, {Name: "nk0", Queues: MaxQueues + 1}, {Name: "nk0", Queues: 1, Mode: 2},
	} {
		if s.Check() == nil {
			t.Errorf("%+v accepted", s)
		}
		if _, err := NewLinkRequest(1, s); err == nil {
			t.Errorf("%+v built", s)
		}
	}
}

// Replies as the kernel writes them (7.2: ctrl_fill_info, netkit_fill_info,
// rtnl_net_fill, netlink_ack with extended acks), by hand.
func TestParseReplies(t *testing.T) {
	fam, err := ParseFamily(hexBytes(t, `
		01 02 0000                               # CTRL_CMD_NEWFAMILY, version 2
		0b00 0200 6e657464657600 00              # name "netdev"
		0600 0100 1d00 0000                      # id 0x1d
		0800 0300 01000000                       # version 1
		3000 0600                                # CTRL_ATTR_OPS, 48 bytes
		  1400 0100 0800 0100 01000000 0800 0200 0a000000 # op 1 (DEV_GET), flags
		  1400 0200 0800 0100 10000000 0800 0200 0b000000 # op 16 (QUEUE_CREATE)
		  0400 0300                              # an empty entry
	`))
	if err != nil || fam.ID != 0x1d || fam.Name != "netdev" || fam.Version != 1 || !fam.Has(CmdQueueCreate) || !fam.Has(1) || fam.Has(2) {
		t.Fatalf("family %+v, %v", fam, err)
	}
	old, err := ParseFamily(hexBytes(t, `
		01 02 0000
		0600 0100 1d00 0000
		1800 0600 1400 0100 0800 0100 0d000000 0800 0200 0a000000 # only BIND_RX (13)
	`))
	if err != nil || old.Has(CmdQueueCreate) {
		t.Fatalf("a 6.x family %+v, %v", old, err)
	}
	if _, err := ParseFamily(hexBytes(t, `01 02 0000 0b00 0200 6e657464657600 00`)); err == nil {
		t.Fatal("a family without its id parsed")
	}

	id, err := ParseQueueCreate(hexBytes(t, `10 01 0000 0800 0100 01000000`))
	if err != nil || id != 1 {
		t.Fatalf("queue-create reply: %d, %v", id, err)
	}
	if _, err := ParseQueueCreate(hexBytes(t, `10 01 0000 0600 0100 0100 0000`)); err == nil {
		t.Fatal("a 2-byte queue id parsed")
	}

	single := hexBytes(t, `
		00 00 0100 07000000 02100000 00000000    # ifinfomsg: index 7
		0800 0300 6e6b3000                       # IFLA_IFNAME nk0
		0800 2000 03000000                       # IFLA_NUM_RX_QUEUES 3
		3400 1200                                # IFLA_LINKINFO
		  0b00 0100 6e65746b697400 00            #   kind netkit
		  2400 0200                              #   data
		    0500 0200 01 000000                  #     PRIMARY 1
		    0800 0500 00000000                   #     MODE l2
		    0800 0a00 01000000                   #     PAIRING single
		    0600 0800 0000 0000                  #     HEADROOM 0
	`)
	l, err := ParseLink(single)
	if err != nil || l.Index != 7 || l.Name != "nk0" || l.RxQueues != 3 || !l.Single() || !l.Primary || l.Mode != ModeL2 {
		t.Fatalf("single netkit %+v, %v", l, err)
	}
	pair, err := ParseLink(hexBytes(t, `
		00 00 0100 08000000 02100000 00000000
		0800 0300 6e6b3000
		2c00 1200
		  0b00 0100 6e65746b697400 00
		  1c00 0200
		    0500 0200 01 000000
		    0800 0500 00000000
		    0800 0300 00000000                   #     POLICY pass; no PAIRING (6.18)
	`))
	if err != nil || pair.Single() || pair.HasPairing || pair.Kind != "netkit" {
		t.Fatalf("a 6.18 netkit %+v, %v", pair, err)
	}

	nsid, err := ParseNSID(hexBytes(t, `00 000000 0800 0100 ffffffff`))
	if err != nil || nsid != NSIDNotAssigned {
		t.Fatalf("nsid %d, %v", nsid, err)
	}

	// An extended ack: errno -EINVAL, the capped request's header, the
	// message and the offset.
	ack, err := ParseAck(nlmFCapped|nlmFAckTLVs, hexBytes(t, `
		eaffffff                                 # -22
		48000000 1d00 0500 09000000 00000000     # the request's header
		3e00 0100 4c65617365206465766963652064 6f6573206e6f7420737570706f7274207175657565206d616e6167656d656e74206f7065726174696f6e7300 0000
		0800 0200 24000000
	`))
	if err != nil || ack.Errno != -22 || ack.Msg != "Lease device does not support queue management operations" || ack.Offset != 0x24 {
		t.Fatalf("ack %+v, %v", ack, err)
	}
	// An uncapped ack echoes the request whole before the attributes.
	ack, err = ParseAck(nlmFAckTLVs, hexBytes(t, `
		edffffff
		14000000 1000 0500 01000000 00000000 aabbccdd
		0800 0100 6869 0000
	`))
	if err != nil || ack.Errno != -19 || ack.Msg != "hi" {
		t.Fatalf("uncapped ack %+v, %v", ack, err)
	}
	ack, err = ParseAck(0, hexBytes(t, `00000000 14000000 1000 0500 01000000 00000000`))
	if err != nil || ack.Errno != 0 {
		t.Fatalf("plain ack %+v, %v", ack, err)
	}

	ms, err := SplitMessages(append(GetLinkRequest(1, "a"), DelLinkRequest(2, 3)...))
	if err != nil || len(ms) != 2 || ms[0].Type != rtmGetLink || ms[1].Seq != 2 || len(ms[1].Payload) != ifinfoLen {
		t.Fatalf("split %+v, %v", ms, err)
	}
	if _, err := SplitMessages([]byte{0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}); err == nil {
		t.Fatal("an overlong message split")
	}
}
