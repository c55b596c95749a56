package xsktest

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Pair is a veth pair in the calling thread's network namespace: frames
// sent into Out arrive on In, where the redirect program runs.
type Pair struct {
	In, Out  netlink.Link
	Redirect *Redirect
	xdp      link.Link
	tc       link.Link
	tcProg   *ebpf.Program
}

// NewPair creates the veth pair name+"in" and name+"out", each with
// queues receive and transmit queues, up, with the redirect program
// attached to In in driver mode (skb false) or skb mode, and the
// queue-by-mark program on Out's egress. It needs CAP_NET_ADMIN and
// CAP_BPF.
func NewPair(name string, queues int, skb bool) (_ *Pair, err error) {
	p := &Pair{}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	v := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{Name: name + "out", NumTxQueues: queues, NumRxQueues: queues},
		PeerName:  name + "in", PeerNumTxQueues: uint32(queues), PeerNumRxQueues: uint32(queues),
	}
	if err := netlink.LinkAdd(v); err != nil {
		return nil, fmt.Errorf("xsktest: add veth %s: %w", v.Name, err)
	}
	if p.Out, err = netlink.LinkByName(v.Name); err == nil {
		p.In, err = netlink.LinkByName(v.PeerName)
	}
	if err != nil {
		return nil, fmt.Errorf("xsktest: %w", err)
	}
	for _, l := range []netlink.Link{p.In, p.Out} {
		if err := netlink.LinkSetUp(l); err != nil {
			return nil, fmt.Errorf("xsktest: set %s up: %w", l.Attrs().Name, err)
		}
	}
	if p.Redirect, err = NewRedirect(queues); err != nil {
		return nil, err
	}
	mode := link.XDPDriverMode
	if skb {
		mode = link.XDPGenericMode
	}
	if p.xdp, err = link.AttachXDP(link.XDPOptions{Program: p.Redirect.Prog, Interface: p.In.Attrs().Index, Flags: mode}); err != nil {
		return nil, fmt.Errorf("xsktest: attach XDP to %s: %w", p.In.Attrs().Name, err)
	}
	if p.tcProg, err = newQueueByMark(); err != nil {
		return nil, err
	}
	if p.tc, err = link.AttachTCX(link.TCXOptions{Interface: p.Out.Attrs().Index, Program: p.tcProg, Attach: ebpf.AttachTCXEgress}); err != nil {
		return nil, fmt.Errorf("xsktest: attach tcx egress to %s: %w", p.Out.Attrs().Name, err)
	}
	return p, nil
}

// Close detaches the programs, unloads them and deletes the pair.
func (p *Pair) Close() error {
	var errs []error
	if p.xdp != nil {
		errs = append(errs, p.xdp.Close())
	}
	if p.tc != nil {
		errs = append(errs, p.tc.Close())
	}
	if p.tcProg != nil {
		errs = append(errs, p.tcProg.Close())
	}
	if p.Redirect != nil {
		errs = append(errs, p.Redirect.Close())
	}
	if p.Out != nil {
		errs = append(errs, netlink.LinkDel(p.Out))
	}
	return errors.Join(errs...)
}

// Sender sends frames into a device with AF_PACKET sockets, one per
// queue, each with the mark that makes the pair's tc program put its
// frames on that queue, and one without (frames spread by flow hash).
type Sender struct {
	ifindex int
	fds     []int // per queue; the last one unmarked
}

// NewSender opens the sockets on the pair's Out in the calling thread's
// network namespace. It needs CAP_NET_RAW and CAP_NET_ADMIN (SO_MARK).
func (p *Pair) NewSender(queues int) (_ *Sender, err error) {
	s := &Sender{ifindex: p.Out.Attrs().Index}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	for q := 0; q <= queues; q++ {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("xsktest: AF_PACKET socket: %w", err)
		}
		s.fds = append(s.fds, fd)
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: s.ifindex}); err != nil {
			return nil, fmt.Errorf("xsktest: bind AF_PACKET to %s: %w", p.Out.Attrs().Name, err)
		}
		if q < queues {
			if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, q+1); err != nil {
				return nil, fmt.Errorf("xsktest: SO_MARK: %w", err)
			}
		}
	}
	return s, nil
}

// Send sends frames so that they arrive on queue, or spread by flow hash
// if queue is -1, with as few system calls as the kernel allows.
func (s *Sender) Send(queue int, frames [][]byte) error {
	fd := s.fds[len(s.fds)-1]
	if queue >= 0 {
		fd = s.fds[queue]
	}
	iov := make([]unix.Iovec, len(frames))
	hdr := make([]unix.Mmsghdr, len(frames))
	for i := range frames {
		iov[i].Base = unsafe.SliceData(frames[i])
		iov[i].SetLen(len(frames[i]))
		hdr[i].Hdr.Iov, hdr[i].Hdr.Iovlen = &iov[i], 1
	}
	for done := 0; done < len(hdr); {
		n, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&hdr[done])), uintptr(len(hdr)-done), 0, 0, 0)
		switch e {
		case 0:
			done += int(n)
		case unix.EINTR:
		case unix.ENOBUFS: // the device's queue is full: let it drain
			runtime.Gosched()
		default:
			return fmt.Errorf("xsktest: sendmmsg on ifindex %d: %w", s.ifindex, e)
		}
	}
	runtime.KeepAlive(frames)
	runtime.KeepAlive(iov)
	return nil
}

// Close closes the sockets.
func (s *Sender) Close() error {
	for _, fd := range s.fds {
		unix.Close(fd)
	}
	s.fds = nil
	return nil
}
