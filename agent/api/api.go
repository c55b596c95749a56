// Package api defines the messages vrssd and its clients exchange over a unix
// socket: JSON requests and responses, one per SOCK_SEQPACKET message, with
// file descriptors (TAP queues, the configuration map) attached to responses
// as SCM_RIGHTS. Both agent (the daemon) and agent/client import it.
//
// A connection starts with a hello carrying the protocol version and the ABI
// stamp (steering.ABIStamp) the client was built with; the daemon refuses
// any other request before a hello, and refuses a hello whose stamp differs
// from its own, so no client is ever handed file descriptors of a program or
// map layout it does not know.
package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/vrss-dev/vrss/rss"
)

// Protocol constants.
const (
	// ProtocolVersion is the version of this message set.
	ProtocolVersion = 1
	// MaxMessageSize bounds a request or response; larger requests are
	// refused with CodeTooLarge.
	MaxMessageSize = 64 << 10
	// MaxFDs bounds the file descriptors attached to one message: the
	// kernel's SCM_MAX_FD, the most one SCM_RIGHTS message can carry.
	MaxFDs = 253
	// MaxQueues is the most queues a TAP under vrssd has, so that open
	// can hand every queue and the configuration map in one message.
	MaxQueues = MaxFDs - 1
	// DefaultSocket is where vrssd listens unless told otherwise.
	DefaultSocket = "/run/vrss/vrss.sock"
	// EnvSocket names the environment variable that overrides DefaultSocket
	// for clients.
	EnvSocket = "VRSS_SOCKET"
)

// Op names an operation.
type Op string

// Operations.
const (
	OpHello   Op = "hello"   // HelloArgs → HelloResult; must come first
	OpVersion Op = "version" // → VersionResult
	OpCreate  Op = "create"  // CreateArgs → TAP
	OpAdopt   Op = "adopt"   // AdoptArgs (+ optionally one queue fd) → TAP
	OpSetRSS  Op = "set_rss" // SetRSSArgs → SetRSSResult
	OpGetRSS  Op = "get_rss" // NameArgs → RSSState
	OpStats   Op = "stats"   // NameArgs → Stats
	OpOpen    Op = "open"    // OpenArgs → OpenResult + fds
	OpDetach  Op = "detach"  // NameArgs → TAP (steering detached, TAP kept)
	OpAttach  Op = "attach"  // NameArgs → TAP (steering attached again)
	OpDelete  Op = "delete"  // NameArgs → nothing
	OpList    Op = "list"    // → ListResult
	// OpQEMUEBPF hands the TAP's owner QEMU's own RSS steering program
	// and maps, loaded by the daemon: QEMUEBPFArgs → QEMUEBPFResult + 4
	// fds (program, configuration map, key map, indirection table map:
	// the order of QEMU's ebpf-rss-fds).
	OpQEMUEBPF Op = "qemu_ebpf"
	// Flow rules and RSS contexts, on a TAP created (or adopted) with
	// flows (see flows.go).
	OpFlowAdd        Op = "flow_add"         // FlowAddArgs → FlowRuleInfo
	OpFlowDel        Op = "flow_del"         // FlowDelArgs → nothing
	OpFlowList       Op = "flow_list"        // FlowListArgs → FlowList
	OpRSSContextAdd  Op = "rss_context_add"  // ContextArgs → ContextInfo
	OpRSSContextSet  Op = "rss_context_set"  // ContextArgs → ContextInfo
	OpRSSContextDel  Op = "rss_context_del"  // ContextArgs → nothing
	OpRSSContextShow Op = "rss_context_show" // ContextArgs → ContextList
	// A guest's raw virtio RSS context and flow filter commands, which
	// its VMM forwards (see virtio.go).
	OpVirtioCtrl  Op = "virtio_ctrl"  // VirtioCtrlArgs → VirtioCtrlResult
	OpVirtioAdmin Op = "virtio_admin" // VirtioAdminArgs → VirtioAdminResult
	OpVirtioReset Op = "virtio_reset" // NameArgs → nothing
)

// Request is one client message.
type Request struct {
	ID   uint64          `json:"id"`
	Op   Op              `json:"op"`
	Args json.RawMessage `json:"args,omitempty"`
}

// Response answers the request with the same ID. Exactly one of Error and
// Result is set (Result may be absent for operations without one). FDs is
// the number of file descriptors attached to the message.
type Response struct {
	ID     uint64          `json:"id"`
	Error  *Error          `json:"error,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
	FDs    int             `json:"fds,omitempty"`
}

// Code classifies an error.
type Code string

// Error codes.
const (
	CodeBadRequest    Code = "bad_request"    // malformed message or arguments
	CodeTooLarge      Code = "too_large"      // message over MaxMessageSize
	CodeUnknownOp     Code = "unknown_op"     // an operation this daemon does not have
	CodeNeedHello     Code = "need_hello"     // a request before the hello
	CodeABIMismatch   Code = "abi_mismatch"   // client built against another program/map layout
	CodeDenied        Code = "denied"         // the peer may not do this
	CodeNotFound      Code = "not_found"      // no such TAP
	CodeExists        Code = "exists"         // a TAP of that name exists
	CodeInvalidConfig Code = "invalid_config" // RSS configuration refused (VIRTIO_NET_ERR)
	CodeUnavailable   Code = "unavailable"    // eBPF or TAP support missing on the host
	CodeBusy          Code = "busy"           // another process holds the TAP's queues, or the daemon is at its connection limit
	CodeInternal      Code = "internal"       // anything else
)

// Error is a refusal or failure.
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
}

// Error formats the refusal as "vrssd: CODE: message".
func (e *Error) Error() string { return fmt.Sprintf("vrssd: %s: %s", e.Code, e.Message) }

// Errorf returns an *Error with a formatted message.
func Errorf(code Code, format string, a ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, a...)}
}

// HelloArgs open a connection.
type HelloArgs struct {
	Protocol int    `json:"protocol"`
	ABI      string `json:"abi"`
	Client   string `json:"client,omitempty"` // free text for the daemon's log
}

// HelloResult is the daemon's side of the handshake.
type HelloResult struct {
	Protocol int    `json:"protocol"`
	ABI      string `json:"abi"`
	Server   string `json:"server"` // daemon version
	UID      int    `json:"uid"`    // the peer's uid as the daemon sees it
}

// VersionResult describes the daemon.
type VersionResult struct {
	Protocol int    `json:"protocol"`
	ABI      string `json:"abi"`
	Server   string `json:"server"`
	Kernel   string `json:"kernel"`
}

// NameArgs name one TAP.
type NameArgs struct {
	Name string `json:"name"`
	// Netns names the network namespace the TAP lives in, by a path
	// (/var/run/netns/NAME, /proc/PID/ns/net); empty for vrssd's own.
	// TAP names are per namespace. See CreateArgs.Netns.
	Netns string `json:"netns,omitempty"`
}

// CreateArgs ask for a new multi-queue TAP with steering attached.
type CreateArgs struct {
	Name       string `json:"name"`
	Queues     int    `json:"queues"`
	OwnerUID   *int   `json:"owner_uid,omitempty"` // default: the requesting uid
	OwnerGID   *int   `json:"owner_gid,omitempty"` // default: the requesting gid
	VnetHdrLen int    `json:"vnet_hdr_len,omitempty"`
	// Flows steers the TAP with the flow build of the program: flow
	// rules and RSS contexts besides RSS, and a filter at the TAP's tc
	// egress that drops what drop rules match (Linux 6.6 or later). Its
	// configuration map takes about 1 MB of locked memory instead of
	// about 200 KB (TAP.MapBytes).
	Flows bool `json:"flows,omitempty"`
	// Netns, when set, is the path of the network namespace to create
	// the TAP in (/var/run/netns/NAME, /proc/PID/ns/net), as a CNI
	// plugin asks for a pod's TAP; empty is vrssd's own namespace.
	// Only root and the admins may create in a namespace, with Flows or
	// without (the filter is attached in that namespace). vrssd keeps the namespace open while it manages the TAP, and
	// forgets (and deletes) the TAP once the path no longer names that
	// namespace.
	Netns string `json:"netns,omitempty"`
}

// AdoptArgs put an existing TAP under vrssd's steering: by name (the daemon
// opens it), or by the one queue fd attached to the request.
type AdoptArgs struct {
	Name       string `json:"name"`
	Queues     int    `json:"queues,omitempty"`
	VnetHdrLen int    `json:"vnet_hdr_len,omitempty"`
	FromFD     bool   `json:"from_fd,omitempty"`
	OwnerUID   *int   `json:"owner_uid,omitempty"`
	OwnerGID   *int   `json:"owner_gid,omitempty"`
	// Flows: as CreateArgs.Flows.
	Flows bool `json:"flows,omitempty"`
}

// TAP describes a TAP device under vrssd.
type TAP struct {
	Name       string `json:"name"`
	Index      int    `json:"index"`
	Queues     int    `json:"queues"`
	VnetHdrLen int    `json:"vnet_hdr_len"`
	OwnerUID   int    `json:"owner_uid"`
	OwnerGID   int    `json:"owner_gid"`
	Steering   bool   `json:"steering"`   // the vrss program is attached (as far as vrssd can tell: see Reattached)
	Adopted    bool   `json:"adopted"`    // it existed before vrssd took it over
	Generation uint64 `json:"generation"` // configurations published so far
	// ABI is the stamp of the program and maps steering the TAP. It
	// differs from the daemon's own only after an upgrade; such a TAP
	// keeps steering, but only list, detach and delete work on it.
	ABI string `json:"abi"`
	// HeldElsewhere says that another process (a VMM that opened the
	// TAP before vrssd restarted, or one that adopted it from a fd) holds
	// the queues and vrssd holds none: open then hands only the
	// configuration map (OpenArgs.ConfigOnly) until they are released.
	HeldElsewhere bool `json:"held_elsewhere,omitempty"`
	// AttachedQueues and DisabledQueues are the queues the kernel reports
	// open on the TAP by processes other than vrssd (whose own control
	// queue is always disabled): enabled ones, which steering picks from,
	// and disabled ones.
	AttachedQueues int `json:"attached_queues,omitempty"`
	DisabledQueues int `json:"disabled_queues,omitempty"`
	// Reattached counts the times vrssd found the program detached
	// behind its back (a VMM reset) and attached it again.
	Reattached uint64 `json:"reattached,omitempty"`
	// Problem, when set, says what is wrong with the TAP's steering: for
	// example that its pins were lost while vrssd was stopped and the
	// program it pinned anew waits for a queue to be attached through.
	Problem string `json:"problem,omitempty"`
	// Flows says the TAP is steered by the flow build (CreateArgs.Flows):
	// it takes flow rules and RSS contexts.
	Flows bool `json:"flows,omitempty"`
	// MapBytes is the kernel memory the TAP's configuration map locks
	// (steering.MapBytes).
	MapBytes int `json:"map_bytes,omitempty"`
	// Netns is the path of the TAP's network namespace as it was
	// created with (CreateArgs.Netns); empty for vrssd's own.
	Netns string `json:"netns,omitempty"`
}

// OpenArgs ask for a TAP's file descriptors.
type OpenArgs struct {
	Name string `json:"name"`
	// Netns names the network namespace the TAP lives in, by a path
	// (/var/run/netns/NAME, /proc/PID/ns/net); empty for vrssd's own.
	// TAP names are per namespace. See CreateArgs.Netns.
	Netns string `json:"netns,omitempty"`
	// ConfigOnly asks for the configuration map alone, for a VMM that
	// already holds the queue fds.
	ConfigOnly bool `json:"config_only,omitempty"`
}

// SetRSSArgs carry a configuration in exactly one of three forms.
type SetRSSArgs struct {
	Name string `json:"name"`
	// Netns names the network namespace the TAP lives in, by a path
	// (/var/run/netns/NAME, /proc/PID/ns/net); empty for vrssd's own.
	// TAP names are per namespace. See CreateArgs.Netns.
	Netns string `json:"netns,omitempty"`
	// Config is the JSON form (the one `vrss steer --config` reads).
	Config *rss.Config `json:"config,omitempty"`
	// VirtioRSS is a raw VIRTIO_NET_CTRL_MQ_RSS_CONFIG command body
	// (base64 in JSON). omitzero, not omitempty: an empty command, which
	// a guest may send, is present and answered with VIRTIO_NET_ERR.
	VirtioRSS []byte `json:"virtio_rss,omitzero"`
	// VirtioHash is a raw VIRTIO_NET_CTRL_MQ_HASH_CONFIG command body: hash
	// reporting only; it is validated and recorded but does not steer.
	VirtioHash []byte `json:"virtio_hash,omitzero"`
}

// SetRSSResult answers SetRSS. For the virtio forms Ack is the byte the VMM
// writes back to the guest (VIRTIO_NET_OK 0 or VIRTIO_NET_ERR 1) and a
// refused configuration is reported here, not as an Error; AckMessage then
// says why. The previous configuration stays in force on refusal.
type SetRSSResult struct {
	Ack        uint8  `json:"ack"`
	AckMessage string `json:"ack_message,omitempty"`
	Generation uint64 `json:"generation"`
}

// RSSState is a TAP's current configuration.
type RSSState struct {
	Name       string      `json:"name"`
	Config     *rss.Config `json:"config,omitempty"` // nil until one is published
	Generation uint64      `json:"generation"`
	// HashReport is the last HASH_CONFIG accepted, if any.
	HashReport *HashReport `json:"hash_report,omitempty"`
}

// HashReport is a recorded VIRTIO_NET_CTRL_MQ_HASH_CONFIG.
type HashReport struct {
	HashTypes rss.HashType `json:"hash_types"`
	Key       []byte       `json:"key"`
}

// Stats are a TAP's steering counters.
type Stats struct {
	Name         string   `json:"name"`
	Queues       []uint64 `json:"queues"` // packets steered to each of the TAP's queues
	Unclassified uint64   `json:"unclassified"`
	Retries      uint64   `json:"retries"`
	Torn         uint64   `json:"torn"`
	Unconfigured uint64   `json:"unconfigured"` // packets seen before any configuration; they went to queue 0
	// AttachedQueues is the number of enabled queues the kernel reports:
	// the program's answers are taken modulo it.
	AttachedQueues int `json:"attached_queues,omitempty"`
	// Reattached counts the times vrssd found the program detached behind
	// its back and attached it again.
	Reattached uint64 `json:"reattached,omitempty"`
	// Flows are the flow rule, drop and RSS context counters of a TAP
	// with flows; nil for another.
	Flows *FlowStats `json:"flows,omitempty"`
}

// OpenResult accompanies the fds handed to a TAP's owner: first one fd per
// queue, in queue order (none for OpenArgs.ConfigOnly), then the
// configuration map's fd, which the client mmaps (ConfigSize bytes:
// steering.ConfigSize, or steering.FlowConfigSize for a TAP with flows) to
// publish configurations itself.
type OpenResult struct {
	TAP        TAP    `json:"tap"`
	QueueFDs   int    `json:"queue_fds"`
	ConfigSize int    `json:"config_size"`
	ABI        string `json:"abi"`
}

// QEMUEBPFArgs ask for QEMU's eBPF RSS program and maps for a TAP.
type QEMUEBPFArgs struct {
	Name string `json:"name"` // the TAP QEMU will use; the peer must own it
	// QEMU is the absolute path of the QEMU binary that will run: the
	// program must come from that very build. The daemon runs it (as
	// nobody, confined) to ask for the object, so it must be one of the
	// binaries the daemon's configuration file allows (qemu_binaries): an
	// entry as written, or the file it links to; the daemon does not
	// resolve this path (client.QEMUEBPF resolves it as the caller).
	QEMU string `json:"qemu"`
}

// QEMUEBPFResult accompanies the four fds of QEMU's steering program and
// maps, in the order QEMU's ebpf-rss-fds property takes them: program,
// configuration map, Toeplitz key map, indirection table map.
type QEMUEBPFResult struct {
	// TAP is the TAP after the request; its Steering is false: QEMU
	// attaches its own program (TUNSETSTEERINGEBPF through its queue fds)
	// when the guest enables RSS, so vrss's is detached first.
	TAP TAP `json:"tap"`
	// SteeringDetached says that this request detached vrss's program.
	SteeringDetached bool   `json:"steering_detached"`
	QEMU             string `json:"qemu"`         // the binary, symbolic links resolved
	QEMUVersion      string `json:"qemu_version"` // as QMP query-version reports it, e.g. "10.0.2"
	QEMUPackage      string `json:"qemu_package,omitempty"`
	// Digest identifies the binary ("sha256:<hex>"); the object is cached
	// under it, and Cached says the daemon did not need to run QEMU.
	Digest string `json:"digest"`
	Cached bool   `json:"cached"`
	// Program and Maps name the objects in fd order (Maps: configuration,
	// key, indirection table); ProgramID and MapIDs are their kernel ids
	// (bpftool prog show id N).
	Program   string   `json:"program"`
	Maps      []string `json:"maps"`
	ProgramID uint32   `json:"program_id"`
	MapIDs    []uint32 `json:"map_ids"`
}

// ListResult lists the TAPs the peer may see.
type ListResult struct {
	TAPs []TAP `json:"taps"`
}

// DecodeRequest parses one request message strictly: a single JSON object,
// known fields only, a non-empty op, at most MaxMessageSize bytes. It never
// panics on any input (see FuzzDecodeRequest).
func DecodeRequest(b []byte) (*Request, error) {
	if len(b) > MaxMessageSize {
		return nil, Errorf(CodeTooLarge, "request of %d bytes, limit %d", len(b), MaxMessageSize)
	}
	var r Request
	if err := decodeStrict(b, &r); err != nil {
		return nil, Errorf(CodeBadRequest, "%v", err)
	}
	if r.Op == "" {
		return nil, Errorf(CodeBadRequest, "request has no op")
	}
	return &r, nil
}

// DecodeArgs parses a request's arguments into v strictly; absent arguments
// leave v as it is.
func DecodeArgs(raw json.RawMessage, v any) error {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	if err := decodeStrict(raw, v); err != nil {
		return Errorf(CodeBadRequest, "arguments: %v", err)
	}
	return nil
}

func decodeStrict(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if _, err := d.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

// Encode marshals a message (Request or Response).
func Encode(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	if len(b) > MaxMessageSize {
		return nil, Errorf(CodeTooLarge, "message of %d bytes, limit %d", len(b), MaxMessageSize)
	}
	return b, nil
}
