package agent

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/agent/internal/kernel"
	"github.com/vrss-dev/vrss/netkit"
	"github.com/vrss-dev/vrss/portxdp"
)

// An AF_XDP port's netkit (--netkit NETNS, Linux 7.1 and later): a
// single-device netkit named after the port, in the namespace NETNS, with
// one receive queue leasing each of the port's queues of its device
// (package netkit), so that an AF_XDP socket in NETNS binds through it to
// the device's queue. The port's program on the device and its XSKMAP
// are as without it.
//
// Before anything is made, create checks that the kernel can lease
// (netkit.CheckLeasing: the netdev family's queue-create operation); a
// kernel before 7.1 is refused there and nothing is created. The record
// says a netkit is being created (state creating, its name and
// namespace) before the device is made, and gets its ifindex and leased
// queues after: a SIGKILL meanwhile leaves a record from which the next
// start deletes it, and the port with it. A lease the kernel refuses (a
// driver without queue-management operations: only gve, mlx5, bnxt,
// fbnic and netdevsim have them in 7.2) deletes the netkit again, and the
// create fails with the kernel's reason. Delete removes the netkit (only
// if the device of that name is still the single-device netkit of the
// recorded ifindex), which ends its leases; the kernel itself deletes it
// with its namespace or with the leased device.

// The states of a port's netkit in its record.
const (
	netkitCreating = "creating"
	netkitReady    = "ready"
	netkitDeleting = "deleting"
)

// afxdpNetkit is a port's netkit in its record, read as untrusted input.
type afxdpNetkit struct {
	State    string   `json:"state"`
	Netns    string   `json:"netns,omitempty"` // "" : vrssd's own
	NetnsDev uint64   `json:"netns_dev,omitempty"`
	NetnsIno uint64   `json:"netns_ino,omitempty"`
	Ifindex  int32    `json:"ifindex,omitempty"` // 0 until created
	Queues   []uint32 `json:"queues,omitempty"`  // the netkit's queue leasing QueueStart+i
}

func (nk *afxdpNetkit) validate(r *afxdpRecord) error {
	switch nk.State {
	case netkitCreating, netkitReady, netkitDeleting:
	default:
		return fmt.Errorf("netkit state %q", nk.State)
	}
	switch {
	case nk.Netns != "" && (checkNetnsPath(nk.Netns) != nil || nk.NetnsIno == 0):
		return fmt.Errorf("netkit network namespace %q (inode %d)", nk.Netns, nk.NetnsIno)
	case nk.Netns == "" && (nk.NetnsIno != 0 || nk.NetnsDev != 0):
		return errors.New("a netkit namespace inode without its path")
	case nk.Ifindex < 0 || (nk.State == netkitReady && nk.Ifindex == 0):
		return fmt.Errorf("netkit ifindex %d", nk.Ifindex)
	case len(nk.Queues) > r.Queues || (nk.State == netkitReady && len(nk.Queues) != r.Queues):
		return fmt.Errorf("netkit with %d leased queues for a port of %d", len(nk.Queues), r.Queues)
	case len(nk.Queues) > 0 && nk.Ifindex == 0:
		return errors.New("netkit leases without its ifindex")
	}
	for _, q := range nk.Queues {
		if q == 0 || q > netkit.MaxQueues {
			return fmt.Errorf("netkit queue %d", q)
		}
	}
	return nil
}

func (nk *afxdpNetkit) info(name string) *api.AFXDPNetkit {
	return &api.AFXDPNetkit{Netns: nk.Netns, Name: name, Ifindex: int(nk.Ifindex), Queues: append([]uint32{}, nk.Queues...)}
}

// nkDo runs fn in the namespace ns (nil: vrssd's own).
func nkDo(ns *kernel.Netns, fn func() error) error {
	if ns == nil {
		return fn()
	}
	return ns.Do(fn)
}

// netkitError is a refusal of --netkit for port name, in one line.
func netkitError(name string, err error) error {
	code := api.CodeInternal
	var le *netkit.LeaseError
	switch {
	case errors.Is(err, netkit.ErrNoLeasing), errors.Is(err, netkit.ErrNoDriver):
		code = api.CodeUnavailable
	case errors.As(err, &le):
		code = api.CodeInvalidConfig
	case errors.Is(err, unix.EEXIST):
		code = api.CodeExists // a device of the port's name in NETNS
	}
	return api.Errorf(code, "AF_XDP port %s: --netkit: %v", name, err)
}

// afxdpNetkitProbe opens the namespace a create's --netkit names (root
// and admins only) and checks that the kernel can lease queues to a
// netkit. It changes nothing; on success a.rec.Netkit says a netkit is to
// be created and a.nkns holds the namespace.
func (s *Server) afxdpNetkitProbe(p *peer, a *afxdpPort, path string) error {
	if !s.opts.Policy.admin(p) {
		return api.Errorf(api.CodeDenied, "uid %d may not create a netkit for AF_XDP port %s (only root and admins may)", p.uid, a.rec.Name)
	}
	var ns *kernel.Netns
	if path != "" {
		var err error
		if ns, err = s.openNetns(p, path); err != nil {
			return err
		}
	}
	err := nkDo(ns, func() error {
		g, err := netkit.Dial(unix.NETLINK_GENERIC)
		if err != nil {
			return err
		}
		defer g.Close()
		_, err = netkit.CheckLeasing(g)
		return err
	})
	if err != nil {
		ns.Close()
		return netkitError(a.rec.Name, err)
	}
	a.nkns = ns
	a.rec.Netkit = &afxdpNetkit{State: netkitCreating}
	if ns != nil {
		a.rec.Netkit.Netns, a.rec.Netkit.NetnsDev, a.rec.Netkit.NetnsIno = ns.Path, ns.ID.Dev, ns.ID.Ino
	}
	return nil
}

// afxdpNetkitCreateLocked makes the port's netkit and its leases, after
// the record saying one is being created was written, recording its
// ifindex and queues. On error the netkit is deleted again and nothing of
// it is left.
func (s *Server) afxdpNetkitCreateLocked(a *afxdpPort) error {
	nk, r := a.rec.Netkit, &a.rec
	// The device's namespace, for its id as the netkit's namespace sees it.
	var devNS *os.File
	if err := a.do(func() error {
		var err error
		devNS, err = netkit.ThreadNetns()
		return err
	}); err != nil {
		return netkitError(r.Name, err)
	}
	defer devNS.Close()
	devID, nkID := s.ownNetns, s.ownNetns
	if a.netns != nil {
		devID = a.netns.ID
	}
	if a.nkns != nil {
		nkID = a.nkns.ID
	}
	err := nkDo(a.nkns, func() error {
		rt, err := netkit.Dial(unix.NETLINK_ROUTE)
		if err != nil {
			return err
		}
		defer rt.Close()
		g, err := netkit.Dial(unix.NETLINK_GENERIC)
		if err != nil {
			return err
		}
		defer g.Close()
		fam, err := netkit.CheckLeasing(g)
		if err != nil {
			return err
		}
		nsid := int32(netkit.NSIDNotAssigned)
		if devID != nkID {
			if nsid, err = netkit.NSID(rt, int(devNS.Fd())); err != nil {
				return err
			}
		}
		l, err := netkit.Create(rt, netkit.Spec{Name: r.Name, Queues: r.Queues, Mode: netkit.ModeL2})
		if err != nil {
			return err
		}
		nk.Ifindex = l.Index
		err = s.writeAFXDP(r.key(), r)
		for i := 0; err == nil && i < r.Queues; i++ {
			var q uint32
			q, err = netkit.LeaseQueue(g, fam, r.Dev, netkit.Lease{Ifindex: uint32(l.Index), PhysIfindex: uint32(a.ifindex), Queue: uint32(r.QueueStart + i), NetnsID: nsid})
			if err == nil {
				nk.Queues = append(nk.Queues, q)
			}
		}
		if err == nil {
			nk.State = netkitReady
			err = s.writeAFXDP(r.key(), r)
		}
		if err != nil {
			if _, derr := netkit.DeleteSingle(rt, r.Name, l.Index); derr != nil {
				s.log.Warn("deleting the netkit of an AF_XDP port whose create failed", "port", r.Name, "netkit_ifindex", l.Index, "err", derr)
			}
			nk.Ifindex, nk.Queues, nk.State = 0, nil, netkitCreating
		}
		return err
	})
	if err != nil {
		return netkitError(r.Name, err)
	}
	s.log.Info("AF_XDP port's netkit created", "port", r.Name, "netns", nk.Netns, "ifindex", nk.Ifindex, "queues", nk.Queues)
	return nil
}

// afxdpInstallNetkitLocked is afxdpInstallSlicedLocked for a port that
// may have a netkit: the netkit and its leases first, then the rest; on
// error the netkit is deleted again. The netkit's namespace is let go
// once made: later steps open it again by its recorded path.
func (s *Server) afxdpInstallNetkitLocked(a *afxdpPort) error {
	if a.rec.Netkit == nil {
		return s.afxdpInstallSlicedLocked(a)
	}
	err := s.afxdpNetkitCreateLocked(a)
	a.nkns.Close()
	a.nkns = nil
	if err != nil {
		return err
	}
	if err := s.afxdpInstallSlicedLocked(a); err != nil {
		s.afxdpNetkitAbandonLocked(&a.rec, "its port's create failed")
		return err
	}
	return nil
}

// netkitNetns opens the recorded namespace of a port's netkit (nil:
// vrssd's own), checking it is still the one it was made in.
func netkitNetns(nk *afxdpNetkit) (*kernel.Netns, error) {
	return reopenNetns(&tapState{Netns: nk.Netns, NetnsDev: nk.NetnsDev, NetnsIno: nk.NetnsIno})
}

// afxdpNetkitRemove deletes the netkit rec records, in ns (the netkit's
// namespace; nil: vrssd's own). One that is gone is no error; a device
// of that name that is not the recorded netkit is left alone.
func (s *Server) afxdpNetkitRemove(rec *afxdpRecord, ns *kernel.Netns) error {
	nk := rec.Netkit
	if nk == nil || nk.Ifindex == 0 {
		return nil
	}
	var deleted bool
	err := nkDo(ns, func() error {
		rt, err := netkit.Dial(unix.NETLINK_ROUTE)
		if err != nil {
			return err
		}
		defer rt.Close()
		deleted, err = netkit.DeleteSingle(rt, rec.Name, nk.Ifindex)
		return err
	})
	if err != nil {
		return fmt.Errorf("AF_XDP port %s: deleting its netkit %s (ifindex %d): %w", rec.Name, rec.Name, nk.Ifindex, err)
	}
	if deleted {
		s.log.Info("AF_XDP port's netkit deleted", "port", rec.Name, "netns", nk.Netns, "ifindex", nk.Ifindex)
	} else {
		s.log.Info("AF_XDP port's netkit was already gone", "port", rec.Name, "netns", nk.Netns, "ifindex", nk.Ifindex)
	}
	return nil
}

// afxdpDeleteNetkitLocked removes a port's netkit before its delete, the
// record saying so first. A netkit whose namespace is gone went with it.
func (s *Server) afxdpDeleteNetkitLocked(a *afxdpPort) error {
	nk := a.rec.Netkit
	if nk == nil {
		return nil
	}
	state := nk.State
	nk.State = netkitDeleting
	if err := s.writeAFXDP(a.rec.key(), &a.rec); err != nil {
		nk.State = state
		return fmt.Errorf("AF_XDP port %s: recording its delete: %w", a.rec.Name, err)
	}
	ns, err := netkitNetns(nk)
	if err != nil {
		s.log.Info("an AF_XDP port's netkit went with its namespace", "port", a.rec.Name, "netns", nk.Netns, "reason", err)
		return nil
	}
	defer ns.Close()
	if err := s.afxdpNetkitRemove(&a.rec, ns); err != nil {
		nk.State = state
		s.writeAFXDP(a.rec.key(), &a.rec)
		return err
	}
	return nil
}

// afxdpNetkitInterruptedLocked handles, at start, a record whose netkit's
// create or delete was interrupted: the netkit is deleted (if it is still
// the recorded one), and the port with it, its slice, pins and record
// (true: the caller skips the record). A ready netkit is left to the
// port's restore. One window is not covered: a SIGKILL between the
// kernel creating the netkit and vrssd recording its ifindex leaves a
// netkit named after the port that no record names; the log says so.
func (s *Server) afxdpNetkitInterruptedLocked(rec *afxdpRecord) bool {
	if rec.Netkit == nil || rec.Netkit.State == netkitReady {
		return false
	}
	why := "vrssd stopped while the port's netkit " + strings.TrimSuffix(rec.Netkit.State, "ing") + "e was under way"
	if rec.Netkit.Ifindex == 0 {
		s.log.Warn("an AF_XDP port's create was interrupted before its netkit was recorded: if vrssd was killed while the kernel made it, a netkit named after the port may be left in its namespace (ip link del it)", "port", rec.Name, "netns", rec.Netkit.Netns)
	}
	s.afxdpNetkitAbandonLocked(rec, why)
	if rec.Slice != nil {
		s.afxdpAbandonLocked(rec, why)
	}
	dir := s.afxdpPinDir(rec.key())
	portxdp.Unpin(dir)
	os.Remove(dir)
	s.afxdpUnpinMap(rec.key())
	s.writeAFXDP(rec.key(), nil)
	return true
}

// afxdpNetkitAbandonLocked deletes the netkit of a port vrssd forgets.
func (s *Server) afxdpNetkitAbandonLocked(rec *afxdpRecord, why string) {
	nk := rec.Netkit
	if nk == nil {
		return
	}
	ns, err := netkitNetns(nk)
	if err != nil {
		s.log.Warn("forgetting an AF_XDP port's netkit: its namespace is gone", "port", rec.Name, "why", why)
		return
	}
	defer ns.Close()
	if err := s.afxdpNetkitRemove(rec, ns); err != nil {
		s.log.Warn("forgetting an AF_XDP port's netkit: could not delete it (ip link del it by hand)", "port", rec.Name, "netns", nk.Netns, "ifindex", nk.Ifindex, "why", why, "err", err)
		return
	}
	s.log.Warn("forgetting an AF_XDP port's netkit: deleted unless already gone", "port", rec.Name, "why", why)
}

// afxdpNetkitRestore checks, for a port being restored, that its ready
// netkit is still there (the single-device netkit of the recorded
// ifindex, in its namespace). A netkit that is gone makes the port one
// that cannot be restored.
func (s *Server) afxdpNetkitRestore(a *afxdpPort) error {
	nk := a.rec.Netkit
	if nk == nil {
		return nil
	}
	ns, err := netkitNetns(nk)
	if err != nil {
		return fmt.Errorf("netkit: %w", err)
	}
	defer ns.Close()
	err = nkDo(ns, func() error {
		rt, err := netkit.Dial(unix.NETLINK_ROUTE)
		if err != nil {
			return err
		}
		defer rt.Close()
		l, err := netkit.GetLink(rt, a.rec.Name)
		if err == nil && (l.Index != nk.Ifindex || !l.Single()) {
			err = fmt.Errorf("%s is no longer the netkit %d", a.rec.Name, nk.Ifindex)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("netkit: %w", err)
	}
	return nil
}
