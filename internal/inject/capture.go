package inject

import (
	"golang.org/x/sys/unix"
)

// Capture is an AF_PACKET socket that receives the frames one interface
// receives (from its peer, or written into a TAP's queues by a VMM), not
// those it sends. It is bound to the namespace it was opened in.
type Capture struct{ fd int }

// OpenCapture opens a Capture of the interface ifindex in the calling
// thread's network namespace, with a receive buffer large enough to hold
// a test's frames until Drain reads them.
func OpenCapture(ifindex int) (*Capture, error) {
	proto := uint16(unix.ETH_P_ALL)<<8 | uint16(unix.ETH_P_ALL)>>8 // network order
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(proto))
	if err != nil {
		return nil, err
	}
	c := &Capture{fd}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: ifindex}); err != nil {
		c.Close()
		return nil, err
	}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 200_000}); err != nil {
		c.Close()
		return nil, err
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Drain returns the frames received, each with the times it arrived,
// until none came for 200 ms.
func (c *Capture) Drain() map[string]int {
	got := map[string]int{}
	buf := make([]byte, 65536)
	for {
		n, from, err := unix.Recvfrom(c.fd, buf, 0)
		if err != nil {
			return got
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		got[string(buf[:n])]++
	}
}

// Close closes the socket.
func (c *Capture) Close() error { return unix.Close(c.fd) }
