package qemu

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// AFXDPUMEMBytes is the memory QEMU's af-xdp backend registers as UMEM for
// each queue (8192 frames of 4 KiB) and must lock: QEMU needs
// RLIMIT_MEMLOCK of at least this much per queue, or CAP_IPC_LOCK.
const AFXDPUMEMBytes = 8192 * 4096

// AFXDPOptions describe QEMU's af-xdp network backend on a vrssd AF_XDP
// port: the port's unbound sockets (one per queue, already in the XSKMAP
// of the program vrssd attached to the device) are inherited at FirstFD,
// FirstFD+1, ... and QEMU, with inhibit=on, loads no program: it registers
// its UMEM on each socket, binds it to Ifname's queue StartQueue+i, and
// finds the attached program itself. It needs no capability.
type AFXDPOptions struct {
	// ID names the netdev; default "vrss0".
	ID string
	// Ifname is the port's device, as QEMU's network namespace names it.
	Ifname string
	// StartQueue is the device queue of socket 0; Queues the number of
	// sockets (queue pairs of the guest's device).
	StartQueue, Queues int
	// FirstFD is the descriptor of socket 0 in QEMU; default FirstFD.
	FirstFD int
	// ForceCopy binds in copy mode (force-copy=on) instead of letting
	// QEMU try zero-copy first.
	ForceCopy bool
	// MapPath, if set, asks for QEMU's map-path form (QEMU 10.1 and
	// later) instead of sock-fds: QEMU creates the sockets itself and puts
	// socket i into the XSKMAP pinned at MapPath at index StartQueue+i
	// (map-start-index), which is how a vrssd port's program finds the
	// socket of receive queue StartQueue+i. QEMU then needs CAP_NET_RAW
	// and read-write access to the pin; FirstFD is not used.
	MapPath string
	// Device, MAC and DeviceProps are as in NetOptions.
	Device      string
	MAC         string
	DeviceProps []string
}

// AFXDPArgs returns the QEMU arguments for an AF_XDP port whose sockets are
// inherited at descriptors FirstFD...:
//
//	-netdev af-xdp,id=vrss0,ifname=eth1,inhibit=on,sock-fds=3:4,queues=2,start-queue=4,force-copy=on
//	-device virtio-net-pci,netdev=vrss0,mq=on,vectors=6
//
// sock-fds, inhibit, queues and start-queue are the names of QEMU's
// NetdevAFXDPOptions (QEMU 8.2 and later); sock-fds is colon-separated.
// With MapPath, map-path and map-start-index (QEMU 10.1) take sock-fds'
// place:
//
//	-netdev af-xdp,id=vrss0,ifname=eth1,inhibit=on,map-path=/run/vrss/xsk/vm0,map-start-index=4,queues=2,start-queue=4,force-copy=on
func AFXDPArgs(o AFXDPOptions) ([]string, error) {
	if o.Queues < 1 || o.Queues > 256 {
		return nil, fmt.Errorf("qemu: %d queues, want 1 to 256", o.Queues)
	}
	if o.StartQueue < 0 {
		return nil, fmt.Errorf("qemu: start queue %d", o.StartQueue)
	}
	if o.Ifname == "" {
		return nil, fmt.Errorf("qemu: af-xdp needs an interface name")
	}
	n := NetOptions{ID: o.ID, Queues: o.Queues, FirstFD: o.FirstFD, Device: o.Device, MAC: o.MAC, DeviceProps: o.DeviceProps}
	if err := n.defaults(o.Ifname); err != nil {
		return nil, err
	}
	sockets := "sock-fds=" + fdList(n.FirstFD, n.Queues)
	if o.MapPath != "" {
		// QEMU's option parser would split a path at a comma.
		if strings.Contains(o.MapPath, ",") || !strings.HasPrefix(o.MapPath, "/") {
			return nil, fmt.Errorf("qemu: map path %q: want an absolute path without commas", o.MapPath)
		}
		sockets = fmt.Sprintf("map-path=%s,map-start-index=%d", o.MapPath, o.StartQueue)
	}
	netdev := fmt.Sprintf("af-xdp,id=%s,ifname=%s,inhibit=on,%s,queues=%d,start-queue=%d",
		n.ID, o.Ifname, sockets, n.Queues, o.StartQueue)
	if o.ForceCopy {
		netdev += ",force-copy=on"
	}
	return []string{"-netdev", netdev, "-device", n.device()}, nil
}

// ExecAFXDP replaces the calling process with QEMU on an AF_XDP port, the
// port's sockets (one per queue, in queue order) at descriptors FirstFD...
// It returns only on failure.
func ExecAFXDP(path string, args []string, o AFXDPOptions, sockets []*os.File) error {
	if len(sockets) != o.Queues {
		return fmt.Errorf("qemu: %d sockets for %d queues", len(sockets), o.Queues)
	}
	o.FirstFD = FirstFD
	netArgs, err := AFXDPArgs(o)
	if err != nil {
		return err
	}
	return execWith(path, args, netArgs, sockets)
}

// ExecAFXDPMapPath replaces the calling process with QEMU on an AF_XDP
// port in the map-path form (o.MapPath set): QEMU inherits nothing, it
// creates its sockets and puts them into the pinned XSKMAP itself. It
// returns only on failure.
func ExecAFXDPMapPath(path string, args []string, o AFXDPOptions) error {
	if o.MapPath == "" {
		return fmt.Errorf("qemu: the map-path form needs a map path")
	}
	netArgs, err := AFXDPArgs(o)
	if err != nil {
		return err
	}
	return execWith(path, args, netArgs, nil)
}

// fdList is "first:first+1:..." for n descriptors.
func fdList(first, n int) string {
	fds := make([]string, n)
	for i := range fds {
		fds[i] = strconv.Itoa(first + i)
	}
	return strings.Join(fds, ":")
}
