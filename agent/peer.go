package agent

import (
	"fmt"
	"net"
	"unsafe"

	"golang.org/x/sys/unix"
)

// peer is the process at the other end of a connection, as the kernel
// recorded it when it connected (SO_PEERCRED, SO_PEERGROUPS): what it
// claims in its messages plays no part in authorisation.
type peer struct {
	uid, gid, pid int
	extra         []int // supplementary groups
}

func (c *peer) groups() []int { return append([]int{c.gid}, c.extra...) }

func peerOf(c *net.UnixConn) (*peer, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var (
		p    *peer
		perr error
	)
	err = rc.Control(func(fd uintptr) {
		var cred *unix.Ucred
		if cred, perr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); perr != nil {
			return
		}
		p = &peer{uid: int(cred.Uid), gid: int(cred.Gid), pid: int(cred.Pid)}
		// Supplementary groups need Linux 4.13; without them only the
		// primary group counts.
		p.extra, _ = peerGroups(int(fd))
	})
	if err == nil {
		err = perr
	}
	if err != nil {
		return nil, fmt.Errorf("peer credentials: %w", err)
	}
	return p, nil
}

// peerGroups reads SO_PEERGROUPS, which x/sys/unix has no helper for.
func peerGroups(fd int) ([]int, error) {
	buf := make([]uint32, 64)
	for {
		n := uint32(len(buf) * 4)
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_PEERGROUPS,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&n)), 0)
		if errno == unix.ERANGE && int(n) > len(buf)*4 {
			buf = make([]uint32, n/4)
			continue
		}
		if errno != 0 {
			return nil, errno
		}
		gids := make([]int, n/4)
		for i := range gids {
			gids[i] = int(buf[i])
		}
		return gids, nil
	}
}
