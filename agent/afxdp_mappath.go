package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// The map-path form of QEMU's af-xdp backend (QEMU 10.1 and later:
// -netdev af-xdp,inhibit=on,map-path=PATH,map-start-index=N) has QEMU
// create its own sockets and put them into the port's XSKMAP itself, at
// index map-start-index+i for queue start-queue+i. For that, vrssd pins
// each AF_XDP port's XSKMAP a second time, for its owner alone:
//
//	XSKMapDir/NAME    owner's uid and gid, mode 0600
//
// XSKMapDir (default: xsk beside vrssd's socket, whose directory every
// client can already reach) is a bpf filesystem of its own that vrssd
// mounts with mode 0711 (everyone may traverse it, no one but root may
// list or write it) while it runs. bpf(BPF_OBJ_GET) checks the pin's permissions, so
// another uid cannot open the map; the owner can open it read-write and
// update it (unprivileged_bpf_disabled refuses only map and program
// creation since Linux 6.5). What the owner can do with it is what it can
// do through afxdp_open anyway: replace or remove the sockets of its
// port's queues. The program redirects only the port's queues, by their
// receive queue, and the kernel delivers a frame only to a socket bound to
// that device and queue, so an entry elsewhere receives nothing.

// xskMapMode is the owner's pin's mode.
const xskMapMode = 0o600

// afxdpMapPath is where the owner's pin of the port's XSKMAP lives.
func (s *Server) afxdpMapPath(key string) string {
	return filepath.Join(s.opts.XSKMapDir, pinDirName(key))
}

// ensureXSKMapDir makes dir a bpf filesystem with mode 0711 if it is not
// one yet (mounted says it mounted one), and checks that it is vrssd's
// and writable by no one else.
func ensureXSKMapDir(dir string) (mounted bool, err error) {
	if err := os.Mkdir(dir, 0o711); err != nil && !errors.Is(err, os.ErrExist) {
		return false, err
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return false, err
	}
	if st.Type != unix.BPF_FS_MAGIC {
		if err := unix.Mount("bpf", dir, "bpf", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0711"); err != nil {
			return false, fmt.Errorf("mount a bpf filesystem on %s: %w", dir, err)
		}
		mounted = true
	}
	return mounted, checkOwnDir("AF_XDP map directory", dir)
}

// unmountXSKMapDirLocked unmounts the map directory if this vrssd mounted
// it: the owners' pins last as long as vrssd runs (a QEMU holds the map
// it opened; the pins are made again at the next start), and test
// daemons leave no mount behind. One vrssd did not mount (left by a
// killed one, or an administrator's) stays.
func (s *Server) unmountXSKMapDirLocked() {
	if !s.xskMounted {
		return
	}
	if err := unix.Unmount(s.opts.XSKMapDir, unix.MNT_DETACH); err != nil {
		s.log.Warn("unmounting the AF_XDP map directory", "dir", s.opts.XSKMapDir, "err", err)
	}
	s.xskMounted = false
}

// afxdpPinMapLocked pins the port's XSKMAP for its owner at
// afxdpMapPath, replacing an older pin, and records the path for the
// port's info. A failure is logged, not returned: the port works without
// it (the sock-fds form), and its info shows no map path.
func (s *Server) afxdpPinMapLocked(a *afxdpPort) {
	a.mapPath = ""
	path := s.afxdpMapPath(a.rec.key())
	mounted, err := ensureXSKMapDir(s.opts.XSKMapDir)
	s.xskMounted = s.xskMounted || mounted
	if err == nil {
		err = pinXSKMap(a.prog.XSKMap, path, a.rec.OwnerUID, a.rec.OwnerGID)
	}
	if err != nil {
		s.log.Warn("AF_XDP port: no pin of its XSKMAP for the owner (QEMU's map-path form is unavailable; sock-fds works)", "port", a.rec.Name, "err", err)
		return
	}
	a.mapPath = path
}

// pinXSKMap pins m at path, in the map directory, for uid and gid.
func pinXSKMap(m *ebpf.Map, path string, uid, gid int) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	// A map pinned already would move to the new path: pin a fresh
	// handle on the same map instead.
	fd, err := unix.FcntlInt(uintptr(m.FD()), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return err
	}
	h, err := ebpf.NewMapFromFD(fd)
	if err != nil {
		unix.Close(fd)
		return err
	}
	defer h.Close()
	if err := h.Pin(path); err != nil {
		return err
	}
	// The pin is root's, mode 0600, until here: nobody else could open it
	// in between.
	if err := os.Chown(path, uid, gid); err == nil {
		err = os.Chmod(path, xskMapMode)
	}
	if err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

// afxdpUnpinMap removes the owner's pin of a port's XSKMAP, if any.
func (s *Server) afxdpUnpinMap(key string) {
	if err := os.Remove(s.afxdpMapPath(key)); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("removing the owner's pin of an AF_XDP port's XSKMAP", "path", s.afxdpMapPath(key), "err", err)
	}
}
