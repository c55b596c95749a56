// Package qemu connects QEMU to TAP devices that vrss steers.
//
// A pre-steered TAP needs nothing from QEMU but its queue file descriptors:
// QEMU's `-netdev tap,fds=...` takes already open queues, one per queue pair,
// and reads queue i into receive virtqueue i. Since vrss's program already
// put each packet on the queue the RSS configuration names, any QEMU — with no
// privileges and no eBPF support of its own — delivers it to the right guest
// queue. Args builds those arguments; Exec starts QEMU with the queues
// inherited at the descriptor numbers the arguments name.
package qemu

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// FirstFD is the descriptor number the first queue gets in QEMU: the one
// after standard input, output and error.
const FirstFD = 3

// NetOptions describe the QEMU network device for a TAP.
type NetOptions struct {
	// ID names the netdev; default "vrss0".
	ID string
	// Queues is the number of TAP queues (queue pairs of the device).
	Queues int
	// FirstFD is the descriptor of queue 0 in QEMU; the others follow.
	// Default FirstFD.
	FirstFD int
	// Device is the device model; default "virtio-net-pci".
	Device string
	// MAC, if set, is the guest's MAC address.
	MAC string
	// DeviceProps are extra properties for the device, such as "rss=on".
	DeviceProps []string
}

// Args returns the QEMU arguments that attach the TAP's queues (inherited at
// descriptors FirstFD...) to a multi-queue virtio-net device:
//
//	-netdev tap,id=vrss0,fds=3:4:5:6,vhost=off
//	-device virtio-net-pci,netdev=vrss0,mq=on,vectors=10
//
// vhost stays off: vhost-net would bypass nothing here, but it needs
// /dev/vhost-net, which an unprivileged QEMU usually cannot open. vectors is
// two per queue pair plus one for configuration changes and one for the
// control queue, as QEMU's documentation advises for mq=on.
func Args(o NetOptions) ([]string, error) {
	if o.Queues < 1 || o.Queues > 256 {
		return nil, fmt.Errorf("qemu: %d queues, want 1 to 256", o.Queues)
	}
	if o.ID == "" {
		o.ID = "vrss0"
	}
	if o.FirstFD == 0 {
		o.FirstFD = FirstFD
	}
	if o.Device == "" {
		o.Device = "virtio-net-pci"
	}
	for _, s := range append([]string{o.ID, o.Device, o.MAC}, o.DeviceProps...) {
		if strings.ContainsAny(s, ", \t\n") {
			return nil, fmt.Errorf("qemu: %q: commas and spaces are not allowed in an option value", s)
		}
	}
	fds := make([]string, o.Queues)
	for i := range fds {
		fds[i] = strconv.Itoa(o.FirstFD + i)
	}
	dev := fmt.Sprintf("%s,netdev=%s,mq=on,vectors=%d", o.Device, o.ID, 2*o.Queues+2)
	if o.MAC != "" {
		dev += ",mac=" + o.MAC
	}
	for _, p := range o.DeviceProps {
		dev += "," + p
	}
	return []string{
		"-netdev", fmt.Sprintf("tap,id=%s,fds=%s,vhost=off", o.ID, strings.Join(fds, ":")),
		"-device", dev,
	}, nil
}

// Command returns an exec.Cmd that runs QEMU (path and its own args, with
// the network arguments appended) with files inherited at descriptors
// FirstFD, FirstFD+1, ... in order.
func Command(path string, args []string, net NetOptions, files []*os.File) (*exec.Cmd, error) {
	if len(files) != net.Queues {
		return nil, fmt.Errorf("qemu: %d queue files for %d queues", len(files), net.Queues)
	}
	net.FirstFD = FirstFD
	netArgs, err := Args(net)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, append(append([]string(nil), args...), netArgs...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.ExtraFiles = files // ExtraFiles[i] becomes descriptor 3+i
	return cmd, nil
}

// Exec replaces the calling process with QEMU, its queue files at
// descriptors FirstFD..., so QEMU is the process the caller's supervisor
// sees and signals. It returns only on failure.
func Exec(path string, args []string, net NetOptions, files []*os.File) error {
	if len(files) != net.Queues {
		return fmt.Errorf("qemu: %d queue files for %d queues", len(files), net.Queues)
	}
	net.FirstFD = FirstFD
	netArgs, err := Args(net)
	if err != nil {
		return err
	}
	bin, err := exec.LookPath(path)
	if err != nil {
		return fmt.Errorf("qemu: %w", err)
	}
	// Duplicate everything above the target range first, so that moving
	// file i to FirstFD+i never closes a file still to be moved.
	top := FirstFD + len(files) + 64
	raw := make([]int, len(files))
	for i, f := range files {
		sc, err := f.SyscallConn()
		if err != nil {
			return fmt.Errorf("qemu: queue %d: %w", i, err)
		}
		var derr error
		if err := sc.Control(func(fd uintptr) { raw[i], derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, top) }); err != nil {
			return err
		}
		if derr != nil {
			return fmt.Errorf("qemu: duplicate queue %d: %w", i, derr)
		}
	}
	for i, fd := range raw {
		// Dup3 without O_CLOEXEC: the target survives exec.
		if err := unix.Dup3(fd, FirstFD+i, 0); err != nil {
			return fmt.Errorf("qemu: place queue %d at fd %d: %w", i, FirstFD+i, err)
		}
	}
	argv := append(append([]string{path}, args...), netArgs...)
	err = syscall.Exec(bin, argv, os.Environ())
	return errors.Join(fmt.Errorf("qemu: exec %s: %w", bin, err))
}
