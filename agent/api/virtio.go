package api

// A guest's own flow rules and RSS contexts, on a TAP with flows: the
// VMM forwards its guest's raw virtio commands (control queue class 9,
// VIRTNET_RSS_CTX_CTRL, and VIRTIO_NET_CTRL_MQ_RSS_CONFIG; admin queue
// flow filter commands, see docs/virtio-flows.md) to vrssd, which applies
// them to the TAP's virtio device model (virtio.Device), publishes the
// guest's groups, rules and contexts merged with the host's in one atomic
// step, keeps the guest's state across its own restarts, and answers the
// bytes the VMM writes back to the guest. They are for the TAP's owner,
// root and the admins, like every operation on a TAP; on a TAP without
// flows they are refused with CodeBadRequest.
//
// The guest's objects live in namespaces of their own in the TAP's set:
// guest group g is group GuestGroupBit|g (Host false), whose rules keep
// the guest's ids; guest RSS context c is context GuestContextBase+c.
// Host groups are below GuestGroupBit and host contexts are 1 to
// GuestContextBase.
//
// A command the device model refuses is answered as the device would
// (VIRTIO_NET_ERR, an admin status), and so is one the merged set cannot
// take (over a limit of the TAP's map together with the host's rules:
// ENOSPC, VIRTIO_NET_ERR); either way nothing changes. Errors (Error) are
// for requests that never reach the device: a TAP the peer may not use,
// one without flows, a command longer than MaxVirtioCommand.

// GuestGroupBit is set in the id of every guest group as the TAP's set
// holds it.
const GuestGroupBit = 1 << 31

// GuestContextBase is added to a guest context's id in the TAP's set:
// guest contexts 1 to 4 are contexts 5 to 8, host contexts are 1 to 4.
const GuestContextBase = 4

// MaxVirtioCommand bounds the payload of virtio_ctrl and the command of
// virtio_admin. Every command vrss accepts is far shorter (an RSS
// configuration with a 128-entry table is 307 bytes, a LIST_USE naming
// every 16-bit opcode 8 KiB); a control command that is longer is one the
// device refuses, and a VMM answers it VIRTIO_NET_ERR itself. An admin
// device ignores bytes past the structure a command needs, so a VMM may
// pass the first MaxVirtioCommand bytes of a longer admin command.
const MaxVirtioCommand = 16 << 10

// VirtioCtrlArgs carry one control queue command of the guest: the class
// and command of its header and its command-specific data (base64 in
// JSON). vrssd takes VIRTIO_NET_CTRL_MQ_RSS_CONFIG (class 4, command 1)
// and class 9 (RSS contexts, commands 0 to 3); the VMM answers every other
// command itself, and checks that the guest negotiated the features
// (VIRTIO_NET_F_RSS, VIRTIO_NET_F_RSS_CONTEXT) first.
type VirtioCtrlArgs struct {
	Name string `json:"name"`
	// Netns names the network namespace the TAP lives in, by a path;
	// empty for the daemon's own. See NameArgs.Netns.
	Netns string `json:"netns,omitempty"`
	Class uint8  `json:"class"`
	Cmd   uint8  `json:"cmd"`
	// Payload is the command's data; omitzero, not omitempty: an empty
	// payload (CAP_GET's) is present.
	Payload []byte `json:"payload,omitzero"`
}

// VirtioCtrlResult is what the VMM writes back: Reply (CAP_GET's
// max_rss_contexts, else nothing) and then the ack byte (VIRTIO_NET_OK 0
// or VIRTIO_NET_ERR 1). Message says, for the VMM's logs, why a command
// was refused.
type VirtioCtrlResult struct {
	Ack     uint8  `json:"ack"`
	Reply   []byte `json:"reply,omitempty"`
	Message string `json:"message,omitempty"`
}

// VirtioAdminArgs carry one admin command of the guest: the
// device-readable part of struct virtio_admin_cmd (header and
// command-specific data, base64 in JSON).
type VirtioAdminArgs struct {
	Name string `json:"name"`
	// Netns names the network namespace the TAP lives in, by a path;
	// empty for the daemon's own. See NameArgs.Netns.
	Netns   string `json:"netns,omitempty"`
	Command []byte `json:"command,omitzero"`
}

// VirtioAdminResult is the device-writable part of the command: status,
// status qualifier, reserved bytes and the command's result, a multiple
// of 8 bytes (the VMM writes what fits the driver's buffer). Message
// says, for the VMM's logs, why a command failed.
type VirtioAdminResult struct {
	Result  []byte `json:"result"`
	Message string `json:"message,omitempty"`
}
