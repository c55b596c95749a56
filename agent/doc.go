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
// handshake is answered and the connection closed. Malformed, oversized or
// unknown requests are answered with an error and the connection stays
// usable; file descriptors attached to a request that takes none are
// closed. Idle connections are closed after Options.IdleTimeout, and at
// most Options.MaxConns are served at once.
//
// # Authorisation
//
// Each connection is authorised by the peer's credentials as the kernel
// recorded them (SO_PEERCRED, SO_PEERGROUPS). Root and the configuration
// file's admins may do everything; the file's creators may create TAPs
// owned by themselves and adopt TAPs the kernel already lets them use;
// anyone may use the TAPs it owns. Every refusal is answered with
// api.CodeDenied (or another code) and logged at warn level.
//
// # QEMU's own eBPF RSS program
//
// A QEMU of 9.0 or later can steer with its own eBPF program, which follows
// the RSS configuration its guest sets, if it is handed the program and
// its maps (ebpf-rss-fds): loading them needs privileges QEMU should not
// have. qemu_ebpf does it for the owner of a TAP, as libvirt does for its
// QEMUs: vrssd runs the QEMU binary the client names, which must be in the
// configuration file's qemu_binaries allowlist (symbolic links resolved;
// vrssd never runs a binary a client chose), as nobody, with no machine,
// and asks it over QMP for its object (request-ebpf); it caches the object
// under StateDir/qemu-ebpf by the binary's SHA-256, loads it, and hands
// over the program and its three maps in ebpf-rss-fds order. vrss's own
// program is detached from the TAP (QEMU attaches its program when the
// guest enables RSS). A QEMU without request-ebpf is refused with
// api.CodeUnavailable and the version it would take.
//
// # State
//
// Each TAP is persistent (TUNSETPERSIST) and its program and maps are
// pinned in bpffs under Options.BPFFSDir/NAME/{prog,config,stats}; the list
// of TAPs is in Options.StateDir/state.json, replaced atomically (a lock in
// that directory, and the live socket, keep a second daemon off). When the
// daemon stops, steering goes on: the kernel keeps the program attached
// and the configuration in the pinned map. When it starts, it re-adopts
// every TAP: it loads the pins, and re-opens the queues unless another
// process (a VMM) still holds some, in which case it does not attach any,
// since that would change the number of queues and with it every packet's
// queue; open hands only the configuration map (config_only) until they
// are released. A TAP deleted behind the
// daemon's back (or renamed, or moved to another namespace) is noticed
// through netlink link updates, and on the next request that touches it,
// and forgotten: fds closed, pins removed, state updated.
package agent
