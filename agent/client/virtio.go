package client

import (
	"context"

	"github.com/vrss-dev/vrss/agent/api"
)

// A guest's raw virtio commands, forwarded by its VMM, on a TAP with flows
// (api.CreateArgs.Flows) the caller may use: vrssd applies them to the
// TAP's virtio device model, publishes the guest's rules and contexts
// merged with the host's, keeps the guest's state across its own
// restarts, and answers the bytes to write back to the guest. A command
// the device refuses, or that the TAP's set cannot take with the host's
// rules, is answered as the device would (VIRTIO_NET_ERR, an admin
// status) and changes nothing; an error means the command never reached
// the device (a TAP the caller may not use, or without flows, is refused
// with api.CodeNotFound or api.CodeBadRequest, a command longer than
// api.MaxVirtioCommand with api.CodeBadRequest). See api/virtio.go for the
// ids the guest's groups and contexts have in the TAP's set.

// VirtioCtrl executes one control queue command of the guest: class and
// cmd from its header, payload its command-specific data.
// VIRTIO_NET_CTRL_MQ_RSS_CONFIG (class 4, command 1) sets the TAP's
// default configuration and class 9 (VIRTNET_RSS_CTX_CTRL) the guest's RSS
// contexts; the VMM answers every other command itself, and checks the
// negotiated features first. The result's Reply (CAP_GET's
// max_rss_contexts) is written to the guest before its Ack; Message says
// why a command was refused.
func (c *Client) VirtioCtrl(ctx context.Context, name string, class, cmd uint8, payload []byte) (api.VirtioCtrlResult, error) {
	return c.Netns("").VirtioCtrl(ctx, name, class, cmd, payload)
}

// VirtioCtrl is Client.VirtioCtrl in n.
func (n *Netns) VirtioCtrl(ctx context.Context, name string, class, cmd uint8, payload []byte) (api.VirtioCtrlResult, error) {
	var r api.VirtioCtrlResult
	if payload == nil {
		payload = []byte{}
	}
	_, err := n.c.call(ctx, api.OpVirtioCtrl, api.VirtioCtrlArgs{Name: name, Netns: n.path, Class: class, Cmd: cmd, Payload: payload}, nil, &r)
	return r, err
}

// VirtioAdmin executes one admin queue command of the guest: command is
// the device-readable part of struct virtio_admin_cmd (header and
// command-specific data). The result's Result is the device-writable part
// (status, status qualifier, reserved bytes, result data: a multiple of 8
// bytes), of which the VMM writes what fits the driver's buffer; Message
// says why a command failed.
func (c *Client) VirtioAdmin(ctx context.Context, name string, command []byte) (api.VirtioAdminResult, error) {
	return c.Netns("").VirtioAdmin(ctx, name, command)
}

// VirtioAdmin is Client.VirtioAdmin in n.
func (n *Netns) VirtioAdmin(ctx context.Context, name string, command []byte) (api.VirtioAdminResult, error) {
	var r api.VirtioAdminResult
	if command == nil {
		command = []byte{}
	}
	_, err := n.c.call(ctx, api.OpVirtioAdmin, api.VirtioAdminArgs{Name: name, Netns: n.path, Command: command}, nil, &r)
	return r, err
}

// VirtioReset tells vrssd that the guest reset its device: the guest's
// contexts, flow filter objects and capabilities are gone, and the TAP is
// steered by the host's rules and contexts alone. The default
// configuration stays as it is (set_rss sets it).
func (c *Client) VirtioReset(ctx context.Context, name string) error {
	return c.Netns("").VirtioReset(ctx, name)
}

// VirtioReset is Client.VirtioReset in n.
func (n *Netns) VirtioReset(ctx context.Context, name string) error {
	_, err := n.c.call(ctx, api.OpVirtioReset, n.args(name), nil, nil)
	return err
}
