package api

// AF_XDP ports (issue 16): some receive queues of a device handed to a VMM
// as AF_XDP sockets, with the port-security program (package portxdp) in
// front of them. The port policy is set, shown and counted with the port
// operations (OpPortSet and the rest), which find an AF_XDP port by its
// name as they find a TAP.
const (
	OpAFXDPCreate Op = "afxdp_create" // AFXDPCreateArgs → AFXDPPort
	OpAFXDPDelete Op = "afxdp_delete" // NameArgs → nothing
	OpAFXDPList   Op = "afxdp_list"   // → AFXDPList
	OpAFXDPShow   Op = "afxdp_show"   // NameArgs → AFXDPPort
	OpAFXDPOpen   Op = "afxdp_open"   // NameArgs → AFXDPOpenResult + one socket per queue
)

// AFXDPCreateArgs ask for an AF_XDP port on receive queues QueueStart to
// QueueStart+Queues-1 of the device Dev.
type AFXDPCreateArgs struct {
	Name       string `json:"name"`
	Dev        string `json:"dev"`
	QueueStart int    `json:"queue_start"`
	Queues     int    `json:"queues"`
	OwnerUID   *int   `json:"owner_uid,omitempty"` // default: the requesting uid
	OwnerGID   *int   `json:"owner_gid,omitempty"` // default: the requesting gid
	// Netns names the network namespace Dev lives in, as for CreateArgs;
	// only root and admins may name one.
	Netns string `json:"netns,omitempty"`
	// Slice asks vrssd to slice Dev's queues for the port: an RSS context
	// over the port's queues, and an ntuple rule per address of the port
	// policy sending that address's traffic into it (docs/queue-slicing.md).
	// A device that cannot (veth, virtio_net, drivers without RSS
	// contexts) is refused and nothing is created.
	Slice bool `json:"slice,omitempty"`
	// Netkit names a network namespace (a path, as Netns) to create a
	// single-device netkit in, named after the port, that leases the
	// port's queues of Dev (Linux 7.1 or later, and a driver with
	// queue-management operations): an AF_XDP socket in that namespace
	// binds through it (docs/afxdp.md). Only root and admins may ask.
	Netkit string `json:"netkit,omitempty"`
}

// AFXDPPort describes an AF_XDP port.
type AFXDPPort struct {
	Name       string `json:"name"`
	Dev        string `json:"dev"`
	Netns      string `json:"netns"`
	QueueStart int    `json:"queue_start"`
	Queues     int    `json:"queues"`
	OwnerUID   int    `json:"owner_uid"`
	OwnerGID   int    `json:"owner_gid"`
	// Attached says the program is attached to Dev (XDP, driver mode).
	Attached bool `json:"attached"`
	// Policy says whether a port policy was set; until one is, every
	// frame of the port's queues is dropped (counted as the default
	// policy's drops) and the other queues' frames pass untouched.
	Policy bool `json:"policy"`
	// Slice is the port's slice of Dev, if it was created with one.
	Slice *AFXDPSlice `json:"slice,omitempty"`
	// MapPath is the port's XSKMAP pinned for its owner alone (mode
	// 0600), for QEMU's map-path form (QEMU 10.1 and later: QEMU creates
	// the sockets and puts socket i at index QueueStart+i); empty if
	// vrssd could not pin it.
	MapPath string `json:"map_path,omitempty"`
	// Netkit is the port's netkit, if it was created with one.
	Netkit *AFXDPNetkit `json:"netkit,omitempty"`
	// Pending are the queues whose sockets were handed out by open but
	// are not in the XSKMAP yet: the kernel (Linux 7.2) refused them
	// unbound. vrssd inserts each once its owner has bound it; until
	// then the queue's frames go to the host's stack.
	Pending []int `json:"pending,omitempty"`
	// Orphaned are the queues that were pending when vrssd stopped: it
	// no longer holds their sockets, so it can never insert them; their
	// frames go to the host's stack until the owner opens the port
	// again.
	Orphaned []int `json:"orphaned,omitempty"`
}

// AFXDPNetkit is an AF_XDP port's single-device netkit: the device Name
// (ifindex Ifindex) in the namespace Netns, whose receive queue
// Queues[i] leases queue QueueStart+i of the port's device. An AF_XDP
// socket in Netns binds to (Ifindex, Queues[i]) to receive that queue.
type AFXDPNetkit struct {
	Netns   string   `json:"netns"`
	Name    string   `json:"name"`
	Ifindex int      `json:"ifindex"`
	Queues  []uint32 `json:"queues"`
}

// AFXDPSlice is what vrssd made on an AF_XDP port's device for it: an RSS
// context spreading over the port's queues, and one ntuple rule per
// address prefix of the port policy into that context.
type AFXDPSlice struct {
	// Context is the RSS context's id on the device.
	Context uint32 `json:"context"`
	// Rules are the ntuple rules, none until a policy with addresses is
	// set.
	Rules []AFXDPSliceRule `json:"rules"`
}

// AFXDPSliceRule is one ntuple rule of a slice: traffic to Prefix goes
// into the slice's RSS context.
type AFXDPSliceRule struct {
	Location uint32 `json:"location"`
	Prefix   string `json:"prefix"`
}

// AFXDPList lists the AF_XDP ports the caller may use.
type AFXDPList struct {
	Ports []AFXDPPort `json:"ports"`
}

// AFXDPOpenResult answers afxdp_open; the sockets come with it, one per
// queue in queue order: unbound AF_XDP sockets already in the port's
// XSKMAP, each to be set up (UMEM, rings, bind to Dev's ifindex and its
// queue) by the caller. Every open makes new sockets and replaces the
// map's entries: whoever held the previous ones stops receiving.
type AFXDPOpenResult struct {
	Port AFXDPPort `json:"port"`
	// Ifindex is Dev's interface index in its namespace, to bind to.
	Ifindex int `json:"ifindex"`
	Sockets int `json:"sockets"`
}
