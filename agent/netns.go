package agent

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/agent/internal/kernel"
)

// TAPs in other network namespaces: a TAP created with api.CreateArgs.Netns
// lives in the namespace that path names (a pod's, for the CNI plugin).
// TAP names are per namespace, so vrssd keys its TAPs by name and
// namespace (tapKey): a request that names no namespace means vrssd's own,
// as before. vrssd keeps the namespace open while it manages the TAP and
// does all its work on the device in it (kernel.Netns.Do); link updates
// are watched in vrssd's own namespace only, so the monitor looks such a
// TAP up every monitorInterval instead.

// tapKey is the key of TAP name in the namespace with inode ino (0 for
// vrssd's own) in Server.taps, and the base name of its pin directory and
// state files: ':' is in no interface name, so no two TAPs share one.
func tapKey(name string, ino uint64) string {
	if ino == 0 {
		return name
	}
	return name + ":netns" + strconv.FormatUint(ino, 10)
}

// key is d's tapKey.
func (d *device) key() string {
	if d.netns == nil {
		return d.name
	}
	return tapKey(d.name, d.netns.ID.Ino)
}

// key is r's tapKey.
func (r *tapState) key() string { return tapKey(r.Name, r.NetnsIno) }

// netnsPath returns d's namespace path, empty for vrssd's own.
func (d *device) netnsPath() string {
	if d.netns == nil {
		return ""
	}
	return d.netns.Path
}

// tapsOf returns the TAPs of d's namespace.
func (s *Server) tapsOf(d *device) kernel.TAPs { return s.tapsIn(d.netns) }

// tapsIn returns the TAPs of ns, vrssd's own for nil.
func (s *Server) tapsIn(ns *kernel.Netns) kernel.TAPs {
	if ns == nil {
		return s.opts.TAPs
	}
	return s.opts.TAPs.In(ns)
}

// checkNetnsPath refuses a namespace path that is not absolute and clean:
// it is recorded, and compared as a string once the namespace is gone.
func checkNetnsPath(path string) error {
	if !filepath.IsAbs(path) || filepath.Clean(path) != path {
		return api.Errorf(api.CodeBadRequest, "network namespace %q: want an absolute, clean path (/var/run/netns/NAME, /proc/PID/ns/net)", path)
	}
	return nil
}

// openNetns opens the namespace a create names, for p, who must be root
// or an admin: vrssd enters it and makes a device there, which the
// kernel's owner checks on TAPs say nothing about. nil (no error) is
// vrssd's own namespace, named or not.
func (s *Server) openNetns(p *peer, path string) (*kernel.Netns, error) {
	if path == "" {
		return nil, nil
	}
	if !s.opts.Policy.admin(p) {
		return nil, api.Errorf(api.CodeDenied, "uid %d may not create TAPs in another network namespace (only root and admins may)", p.uid)
	}
	if err := checkNetnsPath(path); err != nil {
		return nil, err
	}
	ns, err := kernel.OpenNetns(path)
	if err != nil {
		return nil, api.Errorf(api.CodeNotFound, "network namespace %s: %v", path, err)
	}
	if ns.ID == s.ownNetns {
		ns.Close()
		return nil, nil
	}
	return ns, nil
}

// keyOfLocked resolves a request's TAP, name in the namespace path names,
// to its key. The path is only stat'ed, never opened: it is the caller's
// choice, and a TAP the caller may not use is refused afterwards as one
// that does not exist. A path that names no namespace any more (deleted,
// its process gone) finds the TAP recorded with that path. s.mu is held.
func (s *Server) keyOfLocked(path, name string) (string, error) {
	if path == "" {
		return name, nil
	}
	if err := checkNetnsPath(path); err != nil {
		return "", err
	}
	id, err := kernel.StatNetns(path)
	switch {
	case err == nil && id == s.ownNetns:
		return name, nil
	case err == nil:
		return tapKey(name, id.Ino), nil
	}
	for k, d := range s.taps {
		if d.name == name && d.netnsPath() == path {
			return k, nil
		}
	}
	return tapKey(name, 0) + ":" + path, nil // no such key
}

// netnsGoneLocked reports whether d's namespace path no longer names the
// namespace d lives in, and if so deletes the TAP (in the namespace vrssd
// still holds) and forgets it: nothing else would ever delete it, and
// vrssd's descriptors keep the namespace alive. s.mu is held.
func (s *Server) netnsGoneLocked(d *device) bool {
	if d.netns == nil {
		return false
	}
	id, err := kernel.StatNetns(d.netns.Path)
	if err == nil && id == d.netns.ID {
		return false
	}
	why := "its network namespace is gone"
	if err == nil {
		why = "its network namespace path names another namespace now"
	}
	if derr := s.tapsOf(d).Delete(d.name); derr != nil && !errors.Is(derr, kernel.ErrNoDevice) {
		s.log.Warn("deleting a TAP whose network namespace is gone", "tap", d.name, "netns", d.netns.Path, "err", derr)
	}
	s.forgetLocked(d, why)
	return true
}

// monitorNetnsLocked checks the TAPs in other namespaces, whose link
// updates vrssd does not see: gone namespaces and devices, queue changes,
// and the program detached behind vrssd's back. s.mu is held.
func (s *Server) monitorNetnsLocked() {
	for _, d := range s.taps {
		if d.netns == nil {
			continue
		}
		if l, ok := s.linkLocked(d); ok && l != nil {
			s.checkSteeringLocked(d, l)
		}
	}
}

// reopenNetns opens the namespace rec was recorded in, at start: it must
// still be the one its path named (same inode).
func reopenNetns(rec *tapState) (*kernel.Netns, error) {
	if rec.Netns == "" {
		return nil, nil
	}
	ns, err := kernel.OpenNetns(rec.Netns)
	if err != nil {
		return nil, fmt.Errorf("its network namespace is gone: %w", err)
	}
	if ns.ID.Ino != rec.NetnsIno || ns.ID.Dev != rec.NetnsDev {
		ns.Close()
		return nil, fmt.Errorf("its network namespace path %s names another namespace now", rec.Netns)
	}
	return ns, nil
}
