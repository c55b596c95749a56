// Package agent is vrssd, the privileged daemon of vrss: it creates
// multi-queue TAP devices (or adopts existing ones), steers each with its
// own instance of the vrss eBPF program, and hands the TAP's queue fds and
// the program's configuration map to the TAP's owner over a unix socket, so
// that an unprivileged VMM can publish the guest's RSS configuration with
// plain memory writes. The protocol is in package api; package client is
// its Go client.
//
// # Requests
//
// The daemon listens on a SOCK_SEQPACKET unix socket; every message is one
// JSON document (api.Request, api.Response) with file descriptors attached
// as SCM_RIGHTS. A connection starts with a hello that must carry the
// daemon's protocol version and ABI stamp (steering.ABIStamp), so no client
// built against another program or map layout is ever handed fds; a failed
// handshake is answered and the connection closed, and a connection that
// sends no hello within 2 seconds is closed. Malformed, oversized or
// unknown requests are answered with an error and the connection stays
// usable. Only adopt takes file descriptors: any other request that
// carries some, a hello included, is refused with api.CodeBadRequest and
// its descriptors closed (a refused hello closes the connection too).
// Idle connections are closed after Options.IdleTimeout; the client
// library reconnects by itself.
//
// # Limits
//
// No local user can lock others out or take all of vrssd's resources.
// Root and the admins always get through; every other user is bound by
// the configuration file's per-uid limits (see Policy): connections open
// at once (and all such users together by Options.MaxConns; a connection
// past a limit is answered with api.CodeBusy and closed), requests a
// second (past the rate, requests are answered with api.CodeBusy), and the
// TAPs and queues it owns (past them, create and adopt are denied). A
// refusal names the limit and the configuration field that sets it.
//
// # Authorisation
//
// Each connection is authorised by the peer's credentials as the kernel
// recorded them (SO_PEERCRED, SO_PEERGROUPS). Root and the configuration
// file's admins may do everything; the file's creators may create TAPs
// owned by themselves, and adopt TAPs the kernel already lets them attach
// to: their kernel owner (TUNSETOWNER) must be the creator and their group
// (TUNSETGROUP), if set, one of its groups, as tun itself checks; an
// adopted TAP keeps its kernel owner. Every TAP vrssd creates has a kernel
// owner (root when root asked), so that no other process can attach a
// queue to it. Anyone may use the TAPs it owns; a TAP it may not use is
// answered exactly as one that does not exist (api.CodeNotFound), and
// authorisation comes before any work on the device. Refusals are logged
// at warn level, at most a few per user a minute; the rest are counted and
// the count logged with the next line.
//
// # Network namespaces
//
// A TAP may live in another network namespace than vrssd's, a pod's for
// the CNI plugin vrss-cni (docs/cni.md): api.CreateArgs.Netns names it by
// a path (/var/run/netns/NAME, /proc/PID/ns/net), and so do the requests
// on the TAP (NameArgs, OpenArgs, SetRSSArgs: vrss --netns PATH); a request
// that names none means vrssd's own namespace, as before. TAP names are
// per namespace: vrssd keys a TAP by its name and its namespace's inode,
// so every pod's TAP may be called tap0, and two paths of one namespace
// reach the same TAP. vrssd opens /dev/net/tun and talks netlink inside
// the namespace (a locked thread that enters it), and keeps the namespace
// open while it manages the TAP. Only root and the admins may create in a
// namespace (vrssd enters it and makes a device there, which the kernel's
// TAP ownership does not cover); every other operation follows the rules
// above, and vrssd only stats a path a client names, never opens it.
// Adopt and qemu_ebpf are for TAPs of vrssd's own namespace. Everything
// else works in a namespace as in vrssd's own: set_rss, stats, open,
// attach, detach, delete, the port operations, and a TAP created with
// flows (root and admins, as any create there) with its flow rules, RSS
// contexts and its guest's virtio commands (FlowAddArgs, FlowDelArgs,
// FlowListArgs, ContextArgs, VirtioCtrlArgs, VirtioAdminArgs and
// virtio_reset's NameArgs take Netns; vrss flow, vrss rss context and vrss
// virtio take --netns). The flow build's filter is attached in the TAP's
// namespace (a tcx link names its device by an ifindex of the attaching
// thread's namespace), on the namespace's locked thread, at create,
// attach and start, and again there by the monitor that undoes a detach
// behind vrssd's back.
//
// state.json keeps the path and the inode (version 4, which an older
// vrssd refuses); at start vrssd opens the path again, and forgets the TAP
// (and removes its pins) if the path names no namespace or another one.
// Link updates are watched in vrssd's own namespace only, so the monitor
// looks every TAP of another namespace up (every monitorInterval): a TAP
// deleted or renamed there is forgotten, and a TAP whose path no longer
// names its namespace (ip netns delete, the process gone) is deleted and
// forgotten, which lets the namespace go.
//
// # QEMU's own eBPF RSS program
//
// A QEMU of 9.0 or later can steer with its own eBPF program, which follows
// the RSS configuration its guest sets, if it is handed the program and
// its maps (ebpf-rss-fds): loading them needs privileges QEMU should not
// have. qemu_ebpf does it for the owner of a TAP, as libvirt does for its
// QEMUs: vrssd runs the QEMU binary the client names, which must be an
// entry of the configuration file's qemu_binaries allowlist or the file an
// entry links to (vrssd never looks the client's path up, so a refusal is
// the same whatever is there, and never runs a binary a client chose), as
// nobody with no supplementary groups, no capabilities, no_new_privs and no
// descriptors but its standard streams and its own binary's, or not at all
// (if nobody may not execute it, or vrssd cannot switch to nobody, the
// request is refused with api.CodeUnavailable), with no machine, and asks
// it over QMP for its object (request-ebpf); it caches the object under
// StateDir/qemu-ebpf by the binary's SHA-256, loads it, and hands over the
// program and its three maps in ebpf-rss-fds order. vrss's own program is
// detached from the TAP (QEMU attaches its program when the guest enables
// RSS). A QEMU without request-ebpf is refused with api.CodeUnavailable
// and the version it would take.
//
// # Flow rules and RSS contexts
//
// A TAP created (or adopted) with flows (api.CreateArgs.Flows, vrss tap
// create --flows) is steered by the flow build of the program
// (steering.Flows): besides the RSS configuration its map holds RSS
// contexts (whole RSS configurations of their own, ids 1 to
// flow.MaxContexts) and flow rules (package flow: a match over a frame's
// header fields, and an action: a queue, a context, or drop), ordered by
// group, priority and id. Dropping is done by the build's filter, which
// vrssd attaches at the TAP's tc egress (tcx, Linux 6.6 or later) through
// a BPF link it pins beside the program, so that it outlives vrssd; the
// map takes about 1 MB of locked memory instead of about 200 KB
// (steering.MapBytes, api.TAP.MapBytes). A TAP without flows steers as
// before, and is answered api.CodeBadRequest (steering.ErrNoFlows) on the
// operations below.
//
// flow_add, flow_del, flow_list, rss_context_add, rss_context_set,
// rss_context_del and rss_context_show are for the TAP's owner, root and
// the admins, like the other operations on a TAP (others get not_found).
// Every change reads the whole set back from the map (Publisher.Set: what
// a VMM published through its own mapping, a guest's groups and rules
// among them, is kept), changes it and publishes it in one atomic step
// (Publisher.PublishSet), checked against the program's limits
// (steering.FlowLimits: 10,000 rules, 64 groups, 16 distinct masks, 8
// contexts, a queue the TAP has): a change it cannot take is refused with
// api.CodeInvalidConfig saying why, and the TAP steers on by the set it
// had. The operator's rules go into host groups (group 0, priority 0,
// unless a request names another), which are tried before the guest's;
// flow_add makes a host group when a rule names a new one and flow_del
// removes it with its last rule; the guest's rules are not the operator's
// to delete. A rule or context added to a TAP with no RSS configuration
// yet comes with one that sends every other frame to queue 0, as before.
// stats adds the drops, each rule's hits and each context's frames per
// queue (api.FlowStats); flow_list pages the rules in the order they are
// tried, as many as fit a message, with their hits.
//
// The set lives in the pinned map, so it survives restarts; a copy is kept
// in Options.StateDir/flows/KEY.json too (KEY is the TAP's name for one of
// vrssd's own namespace, as an older vrssd named the file, and
// NAME:netnsINODE for one of another namespace; the file says the name and
// the namespace path, and a file that is another TAP's stops the start,
// naming it) (saved within two seconds of a
// change, as a set a VMM publishes is, and checked at start like
// state.json's records), so that a TAP whose pins are lost is steered anew
// with its rules and contexts. At start, and every few seconds while running,
// vrssd checks that the filter's link is pinned and attaches the filter at
// the TAP's egress, and attaches it again (and logs it) if the link or its
// pin was lost. Detaching a TAP's steering (detach, qemu_ebpf) detaches
// its filter too, and attach attaches both; delete removes every pin,
// which lets the link go.
//
// # A guest's own rules and contexts
//
// A VMM forwards its guest's raw virtio commands for a TAP with flows:
// virtio_ctrl (control queue: VIRTIO_NET_CTRL_MQ_RSS_CONFIG and class 9,
// RSS contexts), virtio_admin (admin queue: the flow filter capabilities,
// groups, classifiers and rules) and virtio_reset (the guest reset the
// device), for the TAP's owner, root and the admins like every operation
// on a TAP. vrssd keeps a virtio.Device per TAP, the guest's state, and
// answers the bytes the device writes back (docs/virtio-flows.md). Each
// command is applied to a clone of the device; a command that changed the
// guest's set publishes the TAP's set with the guest's part replaced by
// the clone's, in one step; the clone becomes the device only once that
// succeeded and the guest's state is saved. A command the merged set
// cannot take (over a limit of the map with the host's rules and
// contexts) is answered ENOSPC (VIRTIO_NET_ERR on the control queue) and
// changes nothing. Payloads are bounded (api.MaxVirtioCommand, 16 KiB).
//
// The guest's objects have namespaces of their own in the set: guest
// group g is group 1<<31|g (Host false), whose rules keep the guest's ids
// (ids are per group); guest context c (the device declares
// max_rss_contexts 4) is context 4+c. The host's groups are below 1<<31
// and its contexts 1 to 4, always: flow_add refuses the guest's group ids
// and contexts, rss_context_add's free id is 1 to 4, and ids 5 to 8 are
// refused to the host. flow_list and rss_context_show show the guest's
// rules and contexts (Host false, Guest true); host operations read the
// whole set back and keep them. The default configuration is the TAP's:
// set_rss sets it, and so does a guest's RSS_CONFIG sent through
// virtio_ctrl (the last one wins); virtio_reset leaves it. The guest
// device declares less than the map holds, so that the host keeps room of
// its own: 48 groups, 8,000 classifiers, rules and rules per group, 12
// distinct masks, 64,000 words of rule memory and 4 contexts, against the
// map's 64, 10,000, 16, 80,000 and 8. Either side may use more while the
// other uses less; what would take the two together over the map is
// refused to whichever side asks (the host with api.CodeInvalidConfig).
//
// The guest's state is kept in Options.StateDir/flows/KEY.guest.json, as
// the commands that rebuild it (virtio.Device.Commands), replaced
// atomically whenever a command changes the device, so that it outlives
// vrssd: at start the file is read without following links, bounded like
// the flows file, and replayed into a fresh device, every command of which
// must be accepted (a bad file stops the start, naming it); if the map's
// guest part differs from it (vrssd stopped between publishing a command
// and saving it, so the VMM never heard it was done, or the set was
// steered anew from an older copy), the saved state is published again.
// virtio_reset publishes the host's part alone and removes the file;
// delete removes it too.
//
// # Port security
//
// port_set, port_show, port_stats and port_clear (vrss port) give a TAP a
// port policy (package port: the guest's MAC and IP addresses, an ACL in
// the flow-rule match model, a default, optionally an uplink), enforced
// by the XDP program of package portxdp attached to the TAP: tun runs it
// on every frame the VMM writes, before the kernel builds an skb. The
// policy is there to protect the host and the other guests from the
// guest, whose VMM owns the TAP: only root and the admins may set or clear
// it (the owner is refused with api.CodeDenied), the owner may read it and
// its counters, and anyone else is answered api.CodeNotFound, as for a TAP
// that does not exist. Requests name the TAP as the others do, with a
// namespace path for a TAP in another network namespace.
//
// port_set validates the policy (port.Policy.Validate) and looks its
// uplink up by name in the TAP's network namespace (a DEVMAP redirect
// takes an ifindex; a TUN or TAP device is refused, since a frame
// redirected into a TAP skips its steering): a policy refused for either
// reason is api.CodeInvalidConfig and changes nothing. A TAP without a
// program gets one loaded, the policy published and the uplink set before
// it is pinned and attached (native XDP, through a BPF link entered in the
// TAP's namespace), so it never judges a frame by half a policy; a TAP
// with one has the policy published to it in one atomic step (the uplink
// pointed at before a policy that redirects, cleared after one that does
// not). port_stats reads the counters by reason name and per ACL rule,
// their passed and dropped totals, the frames redirected and those dropped
// before any policy; port_clear detaches the program and removes its pins
// and saved copy.
//
// The program, its maps and the link are pinned in the TAP's pin
// directory (portxdp.PinProg, PinConfig, PinStats, PinUplink, PinLink), so
// that the policy is enforced while vrssd is stopped and the counters go
// on across restarts. The policy is kept in
// Options.StateDir/flows/NAME.port.json too, replaced atomically, and
// read at start like the flows file: a regular file, not followed if a
// link, bounded, the TAP's own, with a valid policy, or the start fails
// naming it. At start vrssd takes the pinned program and link (attaching
// anew if the link was lost) and points the uplink at the device of that
// name again; if the pins were lost it attaches a new program with the
// saved policy; pins without a saved policy are removed. Every few seconds
// while running, it checks that the link still attaches the program to
// the TAP and attaches it again, counting and logging it, if it was
// detached behind vrssd's back (bpftool link detach) or its pin removed,
// and points the fast path at the uplink again if the device of its name
// was deleted or made again.
// Deleting or forgetting the TAP removes the pins, which detaches the
// program, and the file.
//
// # AF_XDP ports
//
// An AF_XDP port (afxdp.go; afxdp_create and the rest) hands receive
// queues QueueStart to QueueStart+Queues-1 of a device, in vrssd's network
// namespace or another (root and admins only), to its owner as AF_XDP
// sockets. Create checks that the device exists, has that many receive
// queues and carries no XDP program; it loads the port-security program
// (package portxdp), publishes the default policy for the port's queues
// in xsk mode (PublishXSK), puts one unbound socket per queue in the
// XSKMAP, pins program, maps and link under BPFFSDir/afxdp/NAME and
// attaches the program in driver mode, in that order, so that it never runs
// without a policy. The program judges the frames of the port's queues
// inbound (port.NewInbound): they arrive for the guest, whose own
// transmissions bypass XDP and are not judged. The default drops every
// frame of the port's queues but broadcast and multicast control frames
// (DHCP server messages, NDP, MLD); the other queues' frames are the
// host's, passed unjudged, so the host keeps working on them. The port
// operations (port_set and the rest) find
// an AF_XDP port by name before a TAP and publish for its queues; a policy
// with an uplink is refused. Authorisation, quotas and names are the
// TAPs': creators create ports of their own, root and admins any; a port
// counts as a TAP of its queues; another user's port is not found; a port
// and a TAP may not share a name.
//
// afxdp_open makes new unbound sockets, replaces the map's entries with
// them and hands them over in queue order: whoever held the previous ones
// stops receiving. vrssd keeps no socket (the map holds them, and a socket
// cannot be read back from it), so open is the same after a restart. The
// pinned XSKMAP keeps the sockets a VMM set up alive: it receives across
// restarts. The port's record, and its policy, are kept in
// StateDir/afxdp/NAME.json, read at start as untrusted input (a regular
// file, no unknown field, valid, named after its own key); a port whose
// pins are lost is installed anew with fresh sockets (its owner must open
// it again), and one whose namespace or device is gone is forgotten. A
// monitor attaches the program again if it is detached behind vrssd's back
// or the device is made again, and forgets a port whose namespace is gone.
// Create writes the record before it touches the device, so a crash leaves
// a port the next start installs, never an unrecorded program. Delete
// detaches it and removes pins and record.
//
// For QEMU 10.1's map-path form (QEMU makes its own sockets and puts them
// into the XSKMAP itself) vrssd also pins each port's XSKMAP at
// Options.XSKMapDir/NAME for its owner alone (the port's uid and gid,
// mode 0600; afxdp_mappath.go), in a bpf filesystem it mounts with mode
// 0711 (default: xsk beside its socket) and unmounts when it stops, on
// create and again at every start, and reports the path as
// AFXDPPort.MapPath. bpf(BPF_OBJ_GET)
// checks the pin's permissions: another uid cannot open it.
//
// With Slice (--slice; afxdp_slice.go) vrssd also slices the device for
// the port through package ethtool: create probes the driver, reading
// only, and refuses a device without RSS contexts or ntuple rules before
// anything is made; then it creates an RSS context over the port's queues,
// and port_set and port_clear make one ntuple rule per policy prefix into
// it; delete removes them. Each step is recorded in the port's record
// before and after it changes the device, only what the records name is
// deleted (read back first), and at start an interrupted create or
// delete is undone and an orphaned slice removed, with a log line.
// Options.Ethtool lets tests put a model of a capable driver in place of
// the device's (no NIC here has RSS contexts; docs/queue-slicing.md).
//
// # State
//
// Each TAP is persistent (TUNSETPERSIST) and its program and maps are
// pinned in bpffs under Options.BPFFSDir/NAME/{prog,config,stats} (a dot
// in NAME is written %2e: bpffs refuses dots), and for a TAP with flows
// also {filter,flowstats,link}: the filter program, its counters and the
// link that attaches it (the build's scratch map needs no pin: its
// programs hold it), and for a TAP with a port policy the port-security
// program's (see Port security); the list of TAPs, with the configuration each was
// last seen steered by, is in Options.StateDir/state.json, replaced
// atomically (and the rules and contexts of a TAP with flows in a file of
// its own, and its guest's virtio state in another, see above).
// state.json says version 3 when a TAP has flows, which an older vrssd
// refuses rather than steer such a TAP without its rules, and version 2
// otherwise. vrssd refuses to start unless the state, bpffs and socket directories are its own (owned by its
// uid, writable by no one else), and it locks the state and bpffs
// directories, so no second daemon shares either. state.json is read
// without following links and every record is validated: an invalid one
// stops the start with a message naming it. The socket is bound in a
// private directory, given mode 0666 there and renamed into place.
//
// # Queues
//
// vrssd holds one queue of each TAP, its control queue, and keeps it
// disabled (TUNSETQUEUE with IFF_DETACH_QUEUE): a disabled queue is never
// one steering picks, and the kernel numbers the enabled queues densely, so
// the queues a VMM opens — through open, or by name as libvirt does for an
// unmanaged TAP — are queues 0 to N-1, the numbers the program answers
// with. The control queue is what TUNSETSTEERINGEBPF needs: through it vrssd
// attaches, detaches and re-attaches the program whoever holds the other
// queues, and it keeps the device's features when the last VMM queue
// closes. open hands the caller N new queues and keeps none, so when the
// VMM exits its queues are gone; it is refused (busy) while another
// process holds queues, since more would change every packet's queue.
// While vrssd opens its control queue (at create, adopt and start) it is
// enabled for a moment as the last queue, so the queues a VMM holds keep
// their numbers. list and stats report the queues the kernel says are
// open, and a TAP with more than it was made for (two processes opened it)
// is reported as a problem.
//
// A VMM may detach the program behind vrssd's back (QEMU 7.2 does at
// device reset and when its guest changes the queue pairs). vrssd attaches
// it again when tun announces a queue change, and when the TAP transmits
// frames the program never counted (see heal.go), counts it (Reattached)
// and logs it; an operator's detach is respected.
//
// # Restarts
//
// When the daemon stops, steering goes on: the kernel keeps the program
// attached and the configuration in the pinned map. When it starts, it
// re-adopts every TAP: it loads the pins and opens its control queue;
// nothing a VMM holds moves. A TAP whose pins are gone is kept and steered
// anew with the configuration state.json recorded (vrssd refreshes that
// copy when a VMM publishes through its own mapping). A start with another
// bpffs directory than the TAPs were pinned in is refused. vrssd removes
// only the pins of TAPs it recorded, so the bpffs directory may be shared
// with other software.
//
// create records its intent in state.json before it makes the device; a
// start that finds such a record (vrssd was killed in between) deletes the
// device it made and the record, so the name is free again. A TAP deleted
// behind the daemon's back (or renamed, or moved to another namespace) is
// noticed through netlink link updates, and on the next request that
// touches it, and forgotten: fds closed, pins removed, state updated.
//
// # Metrics
//
// ListenMetrics serves Prometheus metrics over HTTP (vrssd --metrics;
// docs/metrics.md), and /healthz and /readyz for probes; it listens before
// New, so that /healthz answers while the state loads, and
// MetricsServer.Ready hands it the Server. Each scrape reads every TAP's
// counters under the server's lock through the code the stats operation
// uses, so the two agree; the requests and refusals, by operation and error
// code, are counted as they are answered. TAPs are labelled by name and
// network namespace.
package agent
