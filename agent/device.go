package agent

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/agent/internal/kernel"
	"github.com/vrss-dev/vrss/internal/fd"
	"github.com/vrss-dev/vrss/rss"
	"github.com/vrss-dev/vrss/steering"
	"github.com/vrss-dev/vrss/virtio"
)

// device is a TAP under vrssd: its steering program and maps (pinned in
// bpffs under its name), and the queue fds vrssd holds, if any.
type device struct {
	name       string
	index      int
	queues     int
	vnetHdrLen int
	owner      int
	group      int
	steering   bool // the program is attached
	adopted    bool
	abi        string
	hash       *api.HashReport
	// flows: the TAP is steered by the flow build (flow rules and RSS
	// contexts), whose filter is attached at its tc egress through a
	// link pinned beside the program (kernel.PinLink).
	flows bool

	prog kernel.Program
	// pub publishes through the mmapped configuration map; nil when the
	// program was loaded by a vrssd with another ABI, whose map layout
	// this one must not touch.
	pub kernel.Publisher
	// ctl is vrssd's control queue: one queue fd, kept disabled
	// (IFF_DETACH_QUEUE) so that steering never picks it, through which
	// vrssd attaches and detaches the program whoever holds the other
	// queues. nil only if it could not be opened.
	ctl kernel.Queues
	// attachedQ and disabledQ are the queues other processes hold, as the
	// kernel last reported them: enabled (the ones steering picks from)
	// and disabled.
	attachedQ, disabledQ int
	// lost: the program was found detached behind vrssd's back (the
	// TAP transmitted frames the program never saw) and not yet
	// re-attached; reattached counts the re-attachments.
	lost       bool
	reattached uint64
	// transient: the TAP is not persistent (adopted from a VMM's fd): it
	// lives as long as its queues, so vrssd lets go of its control queue
	// once the others are gone.
	transient bool
	// progSeen and txSeen are the program's frame count and the TAP's
	// tx_packets at the monitor's last look; seen says they are valid.
	progSeen, txSeen uint64
	seen             bool
	// suspect: the last look saw frames sent that the program never
	// counted; a second such look in a row re-attaches.
	suspect bool
	// problem, when set, says what is wrong with the TAP's steering (its
	// pins could not be loaded or made again); list shows it.
	problem string
	// config is the configuration last saved in state.json, and savedGen
	// the generation it was read at; flowSet, with flows, the rules,
	// groups and contexts read with it (nil for none), which flowsDirty
	// says are not in the TAP's flows file yet.
	config     *rss.Config
	flowSet    *api.FlowSet
	flowsDirty bool
	savedGen   uint64
	// guest is the TAP's virtio device model with flows, when its VMM
	// has forwarded guest commands (virtio_ctrl, virtio_admin) that left
	// state: the guest's contexts, flow filter objects and capabilities,
	// merged into the TAP's set (see virtio.go) and kept in the guest
	// file. nil for none.
	guest *virtio.Device
	// netns is the network namespace the TAP lives in, held open; nil
	// for vrssd's own (see netns.go).
	netns *kernel.Netns
	// port is the TAP's port-security program, nil without a port
	// policy (see ports.go).
	port *portState
}

func (d *device) info() api.TAP {
	t := api.TAP{
		Name: d.name, Index: d.index, Queues: d.queues, VnetHdrLen: d.vnetHdrLen,
		OwnerUID: d.owner, OwnerGID: d.group, Steering: d.steering, Adopted: d.adopted,
		ABI: d.abi, HeldElsewhere: d.elsewhere(), Problem: d.problem,
		AttachedQueues: d.attachedQ, DisabledQueues: d.disabledQ, Reattached: d.reattached,
		Flows: d.flows, MapBytes: steering.MapBytes(d.flows), Netns: d.netnsPath(),
	}
	t.Steering = d.steering && !d.lost
	if t.Problem == "" && d.attachedQ+d.disabledQ > d.queues {
		t.Problem = fmt.Sprintf("%d queues are open on it (%d enabled), more than its %d: more than one process opened it, so steering picks queues some of them do not read", d.attachedQ+d.disabledQ, d.attachedQ, d.queues)
	}
	if d.pub != nil {
		t.Generation = d.pub.Generation()
	}
	return t
}

// record is d as state.json keeps it. It reads the configuration from
// the map, which a VMM may have published to since the last save.
func (d *device) record() tapState {
	if d.pub != nil {
		gen := d.pub.Generation()
		if d.flows && d.pub.Flows() {
			// Read again only when something was published since.
			if gen != d.savedGen || d.config == nil {
				if s, err := d.pub.Set(); err == nil {
					fs := api.SetOf(s)
					d.config, d.flowSet, d.savedGen, d.flowsDirty = &s.Default, &fs, gen, true
					if fs.Empty() {
						d.flowSet = nil
					}
				}
			}
		} else if c, err := d.pub.Config(); err == nil {
			d.config, d.savedGen = &c, gen
		}
	}
	r := tapState{
		Name: d.name, Index: d.index, Queues: d.queues, VnetHdrLen: d.vnetHdrLen,
		OwnerUID: d.owner, OwnerGID: d.group, Steering: d.steering, Adopted: d.adopted,
		ABI: d.abi, HashReport: d.hash, Config: d.config, Flows: d.flows,
	}
	if d.netns != nil {
		r.Netns, r.NetnsDev, r.NetnsIno = d.netns.Path, d.netns.ID.Dev, d.netns.ID.Ino
	}
	return r
}

// linkPin is where the link of d's flow filter is pinned.
func (d *device) linkPin(bpffsDir string) string {
	return filepath.Join(d.pinDir(bpffsDir), kernel.PinLink)
}

// configSize is the size of d's configuration map's value, which a VMM
// maps.
func (d *device) configSize() int {
	if d.flows {
		return steering.FlowConfigSize
	}
	return steering.ConfigSize
}

// pinDir is where d's program and maps are pinned.
func (d *device) pinDir(bpffsDir string) string { return filepath.Join(bpffsDir, pinDirName(d.key())) }

// release closes what vrssd holds of d. The kernel objects stay: a pinned
// program goes on steering a persistent TAP.
func (d *device) release() {
	if d.pub != nil {
		d.pub.Close()
		d.pub = nil
	}
	if d.prog != nil {
		d.prog.Close()
		d.prog = nil
	}
	if d.ctl != nil {
		d.ctl.Close()
		d.ctl = nil
	}
	d.port.close()
	d.port = nil
	// Closed, but kept: it is part of d's key.
	d.netns.Close()
}

// stale reports, as an error, that d's program has another ABI.
func (d *device) stale() error {
	if d.pub != nil {
		return nil
	}
	if d.prog == nil {
		return api.Errorf(api.CodeUnavailable, "TAP %s: %s", d.name, d.problem)
	}
	return api.Errorf(api.CodeABIMismatch, "TAP %s is steered by a program of another vrssd build (ABI %s, this daemon has %s); it keeps steering, but only list, detach and delete work on it", d.name, d.abi, steering.ABIStamp())
}

// checkName applies the kernel's rules for interface names (dev_valid_name)
// and refuses templates: vrssd must know the name before it asks for it.
func checkName(name string) error {
	switch {
	case name == "":
		return api.Errorf(api.CodeBadRequest, "a TAP name is required")
	case len(name) >= unix.IFNAMSIZ:
		return api.Errorf(api.CodeBadRequest, "TAP name %q is longer than %d bytes", name, unix.IFNAMSIZ-1)
	case name == "." || name == "..", strings.ContainsAny(name, "/:% \t\n\r\v\f"):
		return api.Errorf(api.CodeBadRequest, "TAP name %q: not a valid interface name (no /, :, %%, white space; not . or ..)", name)
	}
	return nil
}

// tuntap is the Type of TUN and TAP links.
const tuntap = "tuntap"

// tuntapByName returns the TAP link name among taps (a namespace's).
func tuntapByName(taps kernel.TAPs, name string) (*kernel.Link, error) {
	l, err := taps.LinkByName(name)
	if errors.Is(err, kernel.ErrNoDevice) {
		return nil, api.Errorf(api.CodeNotFound, "no network device named %s", name)
	}
	if err != nil {
		return nil, fmt.Errorf("netlink lookup %s: %w", name, err)
	}
	return asTAP(l)
}

func asTAP(l *kernel.Link) (*kernel.Link, error) {
	if l.Type != tuntap || !l.TAP {
		return nil, api.Errorf(api.CodeBadRequest, "%s is a %s device, not a TAP", l.Name, l.Type)
	}
	if !l.MultiQueue {
		return nil, api.Errorf(api.CodeBadRequest, "%s is not a multi-queue TAP (IFF_MULTI_QUEUE); steering needs one", l.Name)
	}
	return l, nil
}

// attached is the number of queue fds open on a TAP, enabled or not.
func attached(t *kernel.Link) int { return t.Queues + t.DisabledQueues }

// elsewhere reports whether other processes hold queues of d.
func (d *device) elsewhere() bool { return d.attachedQ+d.disabledQ > 0 }

// noteQueues records the kernel's queue counts of t, less vrssd's own
// (disabled) control queue; it reports whether they changed.
func (d *device) noteQueues(t *kernel.Link) bool {
	a, dis := t.Queues, t.DisabledQueues
	if d.ctl != nil {
		// vrssd's control queue is disabled, but for the moment after
		// it was opened, when it is the last enabled one.
		if dis > 0 {
			dis--
		} else if a > 0 {
			a--
		}
	}
	changed := a != d.attachedQ || dis != d.disabledQ
	d.attachedQ, d.disabledQ = a, dis
	return changed
}

// openControl opens vrssd's control queue on TAP name of taps (a
// namespace's) and disables it. While it is enabled, for a moment, it is
// the last queue: the queues a VMM holds keep their numbers.
func openControl(taps kernel.TAPs, name string, vnetHdrLen int) (kernel.Queues, error) {
	// Not TUNSETVNETHDRSZ: it applies to every queue, and a VMM holding
	// the others may have set another length.
	c, err := taps.OpenQueue(name, vnetHdrLen != 0)
	if err != nil {
		return nil, err
	}
	if err := disableControl(c); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// disableControl disables the one queue of c, which must be the last one
// enabled, so that no other queue moves.
func disableControl(c kernel.Queues) error { return c.SetQueueEnabled(0, false) }

// kernelOwner reports whether the kernel would let c attach to t without
// CAP_NET_ADMIN (tun_not_capable): c must be its owner, when one is set,
// and in its group, when one is set. vrssd asks one thing more: that an
// owner is set. A TAP without one lets every process (or every member of
// its group) attach, so it has no single user vrssd could give it to: only
// root and admins may adopt it.
func kernelOwner(c *peer, t *kernel.Link) bool {
	if t.Owner == kernel.Unset || int(t.Owner) != c.uid {
		return false
	}
	return t.Group == kernel.Unset || slices.Contains(c.groups(), int(t.Group))
}

// inspectQueue identifies the TAP of queue fd q, received from a client,
// and checks that it lives in vrssd's network namespace, where its name
// means the same device.
func (s *Server) inspectQueue(q *fd.FD) (kernel.QueueInfo, error) {
	info, err := s.opts.TAPs.InspectQueue(q)
	switch {
	case errors.Is(err, kernel.ErrNotQueue):
		return info, api.Errorf(api.CodeBadRequest, "the fd passed is not an attached TAP queue (%v)", err)
	case err != nil:
		return info, err
	case !info.TAP:
		return info, api.Errorf(api.CodeBadRequest, "the fd passed is a queue of TUN device %s, not a TAP", info.Name)
	case !info.MultiQueue:
		return info, api.Errorf(api.CodeBadRequest, "%s is not a multi-queue TAP (IFF_MULTI_QUEUE); steering needs one", info.Name)
	case !info.SameNetns:
		return info, api.Errorf(api.CodeBadRequest, "TAP %s is in another network namespace than vrssd", info.Name)
	}
	return info, nil
}

// tapError classifies a failure of the tap package for the client.
func tapError(err error) error {
	switch {
	case errors.Is(err, unix.EBUSY), errors.Is(err, unix.EEXIST):
		return api.Errorf(api.CodeExists, "%v", err)
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES), errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENODEV):
		return api.Errorf(api.CodeUnavailable, "%v", err)
	}
	return err
}

// filterError classifies a failure to attach the flow build's filter.
func filterError(name string, err error) error {
	if errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) {
		return loadError(err)
	}
	return api.Errorf(api.CodeUnavailable, "TAP %s: the flow filter (tcx, Linux 6.6 or later): %v", name, err)
}

// loadError classifies a failure to load the steering program.
func loadError(err error) error {
	if errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) {
		return api.Errorf(api.CodeBusy, "vrssd is out of file descriptors (%v): too many TAPs or connections; try again later", err)
	}
	var ue *steering.UnavailableError
	if errors.As(err, &ue) {
		return api.Errorf(api.CodeUnavailable, "%v", err)
	}
	return err
}
