// Package wire moves the messages of the vrssd protocol over a
// SOCK_SEQPACKET unix socket: one JSON document per message, with file
// descriptors attached as SCM_RIGHTS. The daemon and the client both use it.
package wire

import (
	"errors"
	"net"

	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/agent/api"
)

// Buffers are what Recv reads into. A message longer than Msg is cut by
// the kernel (MSG_TRUNC), so Msg holds one byte more than the protocol
// allows, to tell a message of exactly the limit from a longer one.
type Buffers struct {
	Msg []byte
	OOB []byte
}

// NewBuffers returns buffers for the largest message and fd set.
func NewBuffers() *Buffers {
	return &Buffers{
		Msg: make([]byte, api.MaxMessageSize+1),
		OOB: make([]byte, unix.CmsgSpace(api.MaxFDs*4)),
	}
}

// Message is one received message.
type Message struct {
	Data []byte // aliases Buffers.Msg until the next Recv
	FDs  []int  // received descriptors (close-on-exec); the caller owns them
	// TooLarge: the message exceeded api.MaxMessageSize and was discarded.
	TooLarge bool
	// FDsTruncated: more descriptors were attached than api.MaxFDs; the
	// kernel dropped the rest, so the message cannot be trusted.
	FDsTruncated bool
}

// Recv reads one message. It returns io.EOF when the peer has closed the
// connection; a zero-length message looks the same on SOCK_SEQPACKET.
func Recv(c *net.UnixConn, b *Buffers) (Message, error) {
	n, oobn, flags, _, err := c.ReadMsgUnix(b.Msg, b.OOB)
	var m Message
	// Descriptors may arrive even with an error; the caller must own them.
	if oobn > 0 {
		m.FDs = parseRights(b.OOB[:oobn])
	}
	if err != nil {
		CloseFDs(m.FDs)
		return Message{}, err
	}
	m.TooLarge = flags&unix.MSG_TRUNC != 0 || n > api.MaxMessageSize
	m.FDsTruncated = flags&unix.MSG_CTRUNC != 0
	if !m.TooLarge {
		m.Data = b.Msg[:n]
	}
	return m, nil
}

func parseRights(oob []byte) []int {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var fds []int
	for i := range msgs {
		if msgs[i].Header.Level != unix.SOL_SOCKET || msgs[i].Header.Type != unix.SCM_RIGHTS {
			continue
		}
		if f, err := unix.ParseUnixRights(&msgs[i]); err == nil {
			fds = append(fds, f...)
		}
	}
	return fds
}

// Send writes one message with fds attached. The caller keeps ownership of
// fds; the peer receives duplicates.
func Send(c *net.UnixConn, data []byte, fds []int) error {
	if len(fds) > api.MaxFDs {
		return errors.New("wire: too many file descriptors for one message")
	}
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	_, _, err := c.WriteMsgUnix(data, oob, nil)
	return err
}

// CloseFDs closes every descriptor in fds.
func CloseFDs(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}
