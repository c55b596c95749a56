package client

import (
	"context"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/port"
)

// Port security: a TAP's port policy (package port), which vrssd enforces
// with an XDP program on the TAP. Only root and the daemon's admins may set
// or clear one (api.CodeDenied for the TAP's owner); the owner may read it;
// anyone else is answered api.CodeNotFound, as for a TAP that does not
// exist.

// PortSet makes pol the TAP's port policy: vrssd loads, publishes and
// attaches the program if the TAP has none, or publishes pol to it in one
// atomic step. A policy that does not validate, or whose uplink the TAP's
// network namespace has no device of, is refused with
// api.CodeInvalidConfig, and the active one stays.
func (c *Client) PortSet(ctx context.Context, name string, pol port.Policy) (api.PortInfo, error) {
	return c.Netns("").PortSet(ctx, name, pol)
}

// PortSet is Client.PortSet in n.
func (n *Netns) PortSet(ctx context.Context, name string, pol port.Policy) (api.PortInfo, error) {
	var r api.PortInfo
	_, err := n.c.call(ctx, api.OpPortSet, api.PortSetArgs{Name: name, Netns: n.path, Policy: pol}, nil, &r)
	return r, err
}

// PortShow returns the TAP's port policy (Policy nil for none), whether its
// program is attached, and how many policies were published to it.
func (c *Client) PortShow(ctx context.Context, name string) (api.PortInfo, error) {
	return c.Netns("").PortShow(ctx, name)
}

// PortShow is Client.PortShow in n.
func (n *Netns) PortShow(ctx context.Context, name string) (api.PortInfo, error) {
	var r api.PortInfo
	_, err := n.c.call(ctx, api.OpPortShow, n.args(name), nil, &r)
	return r, err
}

// PortStats returns the counters of the TAP's port-security program: per
// reason, per ACL rule, and their totals. A TAP without a policy has
// none (all zero, Attached false).
func (c *Client) PortStats(ctx context.Context, name string) (api.PortStats, error) {
	return c.Netns("").PortStats(ctx, name)
}

// PortStats is Client.PortStats in n.
func (n *Netns) PortStats(ctx context.Context, name string) (api.PortStats, error) {
	var r api.PortStats
	_, err := n.c.call(ctx, api.OpPortStats, n.args(name), nil, &r)
	return r, err
}

// PortClear removes the TAP's port policy: its program is detached and its
// pins and saved copy removed. Clearing a TAP without one does nothing.
func (c *Client) PortClear(ctx context.Context, name string) error {
	return c.Netns("").PortClear(ctx, name)
}

// PortClear is Client.PortClear in n.
func (n *Netns) PortClear(ctx context.Context, name string) error {
	_, err := n.c.call(ctx, api.OpPortClear, n.args(name), nil, nil)
	return err
}
