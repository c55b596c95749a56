// Package kernel is what vrssd asks of the kernel, behind small interfaces:
// Programs loads and pins vrss's steering program, TAPs makes, finds,
// opens and deletes TAP devices and watches their links, and Queues are
// the queue descriptors of one TAP that vrssd holds, through which it
// attaches programs. Host is the running kernel; package fake is an
// in-memory stand-in, so that the daemon's request handlers and its
// authorisation can be tested without privileges. (The daemon's tests
// that run vrssd as root stay the proof against the kernel.)
package kernel

import (
	"errors"
	"os"

	"github.com/vrss-dev/vrss/flow"
	"github.com/vrss-dev/vrss/internal/fd"
	"github.com/vrss-dev/vrss/rss"
	"github.com/vrss-dev/vrss/steering"
	"github.com/vrss-dev/vrss/tap"
)

// Programs loads vrss's steering program and keeps instances of it pinned
// in directories of a bpf filesystem, where they outlive the daemon.
type Programs interface {
	// PinRoot makes dir a directory pins can be made under, and reports
	// the directory it mounted a bpf filesystem on, if it had to.
	PinRoot(dir string) (mounted string, err error)
	// Load loads a new instance of the steering program: the flow build
	// (steering.Flows) if flows, else the production build. If eBPF
	// cannot be used, the error is a *steering.UnavailableError.
	Load(flows bool) (Program, error)
	// Pin makes the directory dir (which must not exist) and pins p's
	// programs and maps in it.
	Pin(p Program, dir string) error
	// LoadPinned loads the programs and maps of the build flows says
	// pinned in dir. An error that wraps os.ErrNotExist says pins are
	// gone.
	LoadPinned(dir string, flows bool) (Program, error)
	// Unpin removes the pins Pin and Program.AttachFilter make in dir,
	// then dir if it is empty; nothing else in it. Pins already gone are
	// no error.
	Unpin(dir string) error
}

// Program is one loaded instance of the steering program and its maps, as
// steering.Program is. Closing it leaves the kernel objects to their pins
// and to the TAP it steers.
type Program interface {
	// Publisher maps the configuration map for publishing, to a TAP of
	// queues queues.
	Publisher(queues int) (Publisher, error)
	// Stats reads the program's counters.
	Stats() (steering.Stats, error)
	// FD is the program's descriptor, which TUNSETSTEERINGEBPF takes.
	// The Program keeps it.
	FD() int
	// DupConfigMap returns a close-on-exec duplicate of the
	// configuration map's descriptor, to hand to a VMM.
	DupConfigMap() (*fd.FD, error)
	// Flows reports whether this is the flow build.
	Flows() bool
	// FlowStats reads the flow build's counters, attributing rule
	// counters through pub, a Publisher of this program
	// (steering.ReadFlowStats); steering.ErrNoFlows for another build.
	FlowStats(pub Publisher) (steering.FlowStats, error)
	// AttachFilter makes sure the flow build's filter is attached at the
	// tc egress of the device with index ifindex through a BPF link
	// pinned at pin, so that it outlives the process: it takes the link
	// pinned there if it is one of this filter's at ifindex, and
	// otherwise attaches anew and pins the link (removing what was
	// pinned there). It reports whether it attached anew. The Program
	// keeps the link until Close.
	AttachFilter(ifindex int, pin string) (attached bool, err error)
	// DetachFilter removes the link's pin and lets the link go, which
	// detaches the filter (nothing else holds it).
	DetachFilter(pin string) error
	// Close releases the program and its maps.
	Close() error
}

// Publisher publishes configurations through the program's mmapped
// configuration map; *steering.Publisher is one.
type Publisher interface {
	Publish(rss.Config) error
	Config() (rss.Config, error)
	Generation() uint64
	// Flows reports whether the map holds flow rules and RSS contexts;
	// PublishSet and Set publish and read them (steering.ErrNoFlows on
	// another map).
	Flows() bool
	PublishSet(flow.Set) error
	Set() (flow.Set, error)
	Close() error
}

var _ Publisher = (*steering.Publisher)(nil)

// TAPs are the TAP devices of vrssd's network namespace and the links
// the kernel reports.
type TAPs interface {
	// Create makes the TAP o describes (tap.Create) and returns the
	// queues it attached.
	Create(o tap.Options) (Queues, error)
	// Open attaches n more queues to the TAP name (tap.Open).
	Open(name string, n, vnetHdrLen int) (Queues, error)
	// OpenQueue attaches one more queue to the TAP name without changing
	// its vnet header length (tap.OpenQueue).
	OpenQueue(name string, vnetHdr bool) (Queues, error)
	// Delete removes the TAP name (tap.Delete); an error wrapping
	// ErrNoDevice says there is none.
	Delete(name string) error
	// SetNoqueue makes noqueue the TAP's root qdisc (tap.SetNoqueue).
	SetNoqueue(name string) error
	// LinkByName and LinkByIndex look a network device up; an error
	// wrapping ErrNoDevice says there is none.
	LinkByName(name string) (*Link, error)
	LinkByIndex(index int) (*Link, error)
	// Links lists every network device.
	Links() ([]*Link, error)
	// WatchLinks sends link updates to ch until stop is closed or the
	// subscription fails (onError is told why), then closes ch.
	WatchLinks(ch chan<- LinkUpdate, stop <-chan struct{}, onError func(error)) error
	// InspectQueue identifies the device a queue descriptor received
	// from a client belongs to. An error wrapping ErrNotQueue says it
	// is no attached TUN or TAP queue.
	InspectQueue(q *fd.FD) (QueueInfo, error)
	// In returns the TAPs of the network namespace ns, whose names and
	// indexes are its own.
	In(ns *Netns) TAPs
}

// Queues are queue descriptors of one TAP that this process holds, as
// *tap.Device is.
type Queues interface {
	// Name and Index identify the device.
	Name() string
	Index() int
	// Files are the queues, in order; Queues owns them.
	Files() []*os.File
	// SetSteering attaches p as the device's steering program through
	// the first queue, replacing any; nil detaches.
	SetSteering(p Program) error
	// SetQueueEnabled enables or disables queue i (TUNSETQUEUE).
	SetQueueEnabled(i int, on bool) error
	// Close closes the queues: a persistent device stays, and a queue
	// stays attached while another process holds a duplicate.
	Close() error
}

// Unset is a Link's Owner or Group when none is set.
const Unset = ^uint32(0)

// Link is a network device as the kernel reports it: for a TUN or TAP
// device (Type "tuntap"), with its flags, owner and queues.
type Link struct {
	Name  string
	Index int
	Type  string // "tuntap" for TUN and TAP devices
	// The rest is set for "tuntap" devices only.
	TAP        bool   // a TAP (IFF_TAP), not a TUN
	MultiQueue bool   // IFF_MULTI_QUEUE
	VnetHdr    bool   // IFF_VNET_HDR
	Persistent bool   // TUNSETPERSIST
	Owner      uint32 // TUNSETOWNER; Unset if none
	Group      uint32 // TUNSETGROUP; Unset if none
	// Queues and DisabledQueues count the queue descriptors attached:
	// enabled (the ones steering picks from) and disabled.
	Queues, DisabledQueues int
	// TxPackets counts the frames the device transmitted (to its
	// queues), if HasStats.
	TxPackets uint64
	HasStats  bool
}

// LinkUpdate is one change the kernel announced (RTM_NEWLINK,
// RTM_DELLINK).
type LinkUpdate struct {
	Index int
	// Deleted: the device is gone from the namespace (deleted, or moved
	// to another).
	Deleted bool
	// Link is the device as announced, nil if the update carried none.
	Link *Link
}

// QueueInfo describes the device of a queue descriptor.
type QueueInfo struct {
	Name       string
	TAP        bool // IFF_TAP
	MultiQueue bool // IFF_MULTI_QUEUE
	// VnetHdrLen is the vnet header length, 0 without IFF_VNET_HDR.
	// Like SameNetns, it is found only for a multi-queue TAP.
	VnetHdrLen int
	// SameNetns: the device lives in this process's network namespace,
	// where its name means the same device.
	SameNetns bool
}

var (
	// ErrNoDevice: no network device has that name or index.
	ErrNoDevice = errors.New("no such network device")
	// ErrNotQueue: the descriptor is no attached TUN or TAP queue.
	ErrNotQueue = errors.New("not an attached TUN/TAP queue")
)
