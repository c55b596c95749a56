package client

import (
	"context"
	"fmt"
	"os"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/agent/internal/wire"
)

// AF_XDP ports: receive queues of a device handed to a VMM as AF_XDP
// sockets, with vrssd's port-security program in front (set the policy
// with PortSet, by the port's name). Authorisation is as for TAPs: the
// creator may create ports owned by itself, root and admins any; another
// user's port is api.CodeNotFound.

// AFXDPCreate creates an AF_XDP port on the queues a.QueueStart to
// a.QueueStart+a.Queues-1 of a.Dev. Until a policy is set, every frame of
// those queues is dropped; the other queues' frames go to the stack.
func (c *Client) AFXDPCreate(ctx context.Context, a api.AFXDPCreateArgs) (api.AFXDPPort, error) {
	var r api.AFXDPPort
	_, err := c.call(ctx, api.OpAFXDPCreate, a, nil, &r)
	return r, err
}

// AFXDPCreate is Client.AFXDPCreate in n: a.Netns is n's.
func (n *Netns) AFXDPCreate(ctx context.Context, a api.AFXDPCreateArgs) (api.AFXDPPort, error) {
	a.Netns = n.path
	return n.c.AFXDPCreate(ctx, a)
}

// AFXDPDelete detaches the port's program from its device and removes its
// pins and record; the sockets stop receiving.
func (c *Client) AFXDPDelete(ctx context.Context, name string) error {
	return c.Netns("").AFXDPDelete(ctx, name)
}

// AFXDPDelete is Client.AFXDPDelete in n.
func (n *Netns) AFXDPDelete(ctx context.Context, name string) error {
	_, err := n.c.call(ctx, api.OpAFXDPDelete, n.args(name), nil, nil)
	return err
}

// AFXDPShow describes the port.
func (c *Client) AFXDPShow(ctx context.Context, name string) (api.AFXDPPort, error) {
	return c.Netns("").AFXDPShow(ctx, name)
}

// AFXDPShow is Client.AFXDPShow in n.
func (n *Netns) AFXDPShow(ctx context.Context, name string) (api.AFXDPPort, error) {
	var r api.AFXDPPort
	_, err := n.c.call(ctx, api.OpAFXDPShow, n.args(name), nil, &r)
	return r, err
}

// AFXDPList lists the AF_XDP ports the caller may use.
func (c *Client) AFXDPList(ctx context.Context) ([]api.AFXDPPort, error) {
	var r api.AFXDPList
	_, err := c.call(ctx, api.OpAFXDPList, struct{}{}, nil, &r)
	return r.Ports, err
}

// AFXDPOpen returns the port's sockets, one per queue in queue order:
// unbound AF_XDP sockets already in the port's XSKMAP. Set each up with
// xsk.Setup (Ifindex from the result, Queue QueueStart+i). Every open
// makes new sockets: the previous holder's stop receiving. xsk.Setup takes
// the descriptor it is given over, and an *os.File closes its descriptor
// when closed or garbage-collected: set up a duplicate (unix.Dup) and
// close the file, as the example does.
func (c *Client) AFXDPOpen(ctx context.Context, name string) (api.AFXDPOpenResult, []*os.File, error) {
	return c.Netns("").AFXDPOpen(ctx, name)
}

// AFXDPOpen is Client.AFXDPOpen in n.
func (n *Netns) AFXDPOpen(ctx context.Context, name string) (api.AFXDPOpenResult, []*os.File, error) {
	var r api.AFXDPOpenResult
	fds, err := n.c.call(ctx, api.OpAFXDPOpen, n.args(name), nil, &r)
	if err != nil {
		return r, nil, err
	}
	if len(fds) != r.Sockets || r.Sockets != r.Port.Queues {
		wire.CloseFDs(fds)
		return r, nil, fmt.Errorf("vrssd: afxdp_open %s: %d fds for %d sockets of %d queues", name, len(fds), r.Sockets, r.Port.Queues)
	}
	files := make([]*os.File, len(fds))
	for i, fd := range fds {
		files[i] = os.NewFile(uintptr(fd), fmt.Sprintf("xsk:%s:q%d", name, r.Port.QueueStart+i))
	}
	return r, files, nil
}
