// Package inject sends Ethernet frames out of an interface with an AF_PACKET
// socket and reads them back from the queues of a TAP device, so tests can
// see which queue the kernel steered each frame to.
//
// A frame written to a packet socket bound to a TAP device goes through
// dev_queue_xmit, the qdisc and netdev_core_pick_tx, which calls the TAP's
// ndo_select_queue (tun_select_queue, where a steering program runs), then
// tun_net_xmit queues it on the chosen queue fd: the same path as traffic a
// bridge forwards to a VM. PACKET_QDISC_BYPASS would also reach
// tun_select_queue (packet_pick_tx_queue calls ndo_select_queue), but it
// skips the qdisc that real traffic passes through, so it is not set.
package inject

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Injector is a send-only AF_PACKET socket bound to one interface.
type Injector struct {
	fd      int
	ifindex int
}

// Open returns an Injector for the interface ifindex in the calling
// thread's network namespace. It needs CAP_NET_RAW.
//
// The socket is bound with protocol 0, not ETH_P_ALL: it only sends, and
// protocol 0 keeps it from receiving a copy of every frame on the
// interface. The kernel reads each frame's EtherType either way
// (packet_parse_headers), so the flow dissector and steering see the same
// skb.
func Open(ifindex int) (*Injector, error) { return open(ifindex, 0) }

// open takes the protocol in network byte order, as socket(2) does.
func open(ifindex int, proto uint16) (*Injector, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(proto))
	if err != nil {
		return nil, fmt.Errorf("inject: AF_PACKET socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifindex, Protocol: proto}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("inject: bind to ifindex %d: %w", ifindex, err)
	}
	return &Injector{fd: fd, ifindex: ifindex}, nil
}

// Send transmits one full Ethernet frame (destination MAC first, no FCS).
func (i *Injector) Send(frame []byte) error {
	for {
		_, err := unix.Write(i.fd, frame)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("inject: send %d bytes on ifindex %d: %w", len(frame), i.ifindex, err)
		}
		return nil
	}
}

// SendBatch transmits frames in order with as few sendmmsg calls as the
// kernel allows.
func (i *Injector) SendBatch(frames [][]byte) error {
	iovs := make([]unix.Iovec, len(frames))
	msgs := make([]unix.Mmsghdr, len(frames))
	for j, f := range frames {
		if len(f) == 0 {
			return fmt.Errorf("inject: frame %d is empty", j)
		}
		iovs[j].Base = &f[0]
		iovs[j].SetLen(len(f))
		msgs[j].Hdr.Iov = &iovs[j]
		msgs[j].Hdr.Iovlen = 1
	}
	for sent := 0; sent < len(msgs); {
		n, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(i.fd),
			uintptr(unsafe.Pointer(&msgs[sent])), uintptr(len(msgs)-sent), 0, 0, 0)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return fmt.Errorf("inject: sendmmsg frame %d of %d on ifindex %d: %w", sent, len(msgs), i.ifindex, errno)
		}
		sent += int(n)
	}
	runtime.KeepAlive(frames)
	runtime.KeepAlive(iovs)
	return nil
}

// Close closes the socket.
func (i *Injector) Close() error {
	if i.fd < 0 {
		return errors.New("inject: already closed")
	}
	err := unix.Close(i.fd)
	i.fd = -1
	return err
}
