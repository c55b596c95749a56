package client

import (
	"context"
	"fmt"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/flow"
	"github.com/vrss-dev/vrss/rss"
)

// Flow rules and RSS contexts, on a TAP created with flows
// (api.CreateArgs.Flows). The daemon reads the TAP's whole set from its
// configuration map, changes it and publishes it in one step: a change
// it refuses (api.CodeInvalidConfig: a queue the TAP does not have, an
// unknown context, more rules, masks or contexts than the program holds)
// changes nothing. On a TAP without flows every one is refused with
// api.CodeBadRequest. Netns has the same methods for a TAP in another
// network namespace (vrss tap create --flows --netns).

// FlowAdd adds rule to the TAP's host rules and returns it as stored: with
// its match normalized (the flags its fields imply added) and, with
// autoID, the lowest id no host rule of the TAP has. rule.Group names a host
// group (api.DefaultFlowGroup, priority 0, unless another is named); a
// group the TAP does not have is made, with priority groupPriority if
// not nil, and 0 otherwise.
func (c *Client) FlowAdd(ctx context.Context, name string, rule flow.Rule, autoID bool, groupPriority *uint16) (api.FlowRuleInfo, error) {
	return c.Netns("").FlowAdd(ctx, name, rule, autoID, groupPriority)
}

// FlowAdd is Client.FlowAdd in n.
func (n *Netns) FlowAdd(ctx context.Context, name string, rule flow.Rule, autoID bool, groupPriority *uint16) (api.FlowRuleInfo, error) {
	var r api.FlowRuleInfo
	a := api.FlowAddArgs{Name: name, Netns: n.path, Rule: api.RuleOf(rule), AutoID: autoID, GroupPriority: groupPriority}
	_, err := n.c.call(ctx, api.OpFlowAdd, a, nil, &r)
	return r, err
}

// FlowDel removes the TAP's host rule id; a host group left empty goes
// with it. A rule of the guest's groups is refused.
func (c *Client) FlowDel(ctx context.Context, name string, id uint32) error {
	return c.Netns("").FlowDel(ctx, name, id)
}

// FlowDel is Client.FlowDel in n.
func (n *Netns) FlowDel(ctx context.Context, name string, id uint32) error {
	_, err := n.c.call(ctx, api.OpFlowDel, api.FlowDelArgs{Name: name, Netns: n.path, ID: id}, nil, nil)
	return err
}

// flowListTries bounds how often FlowList starts again when the rules
// change while it reads them page by page.
const flowListTries = 5

// FlowList returns every rule of the TAP, in the order they are tried,
// with its hits, and the TAP's groups and drop count. A TAP has more
// rules than one message holds: FlowList reads them page by page, and
// starts again if they change in between.
func (c *Client) FlowList(ctx context.Context, name string) (api.FlowList, error) {
	return c.Netns("").FlowList(ctx, name)
}

// FlowList is Client.FlowList in n.
func (n *Netns) FlowList(ctx context.Context, name string) (api.FlowList, error) {
	for try := 0; try < flowListTries; try++ {
		var all api.FlowList
		for start := 0; ; {
			var page api.FlowList
			if _, err := n.c.call(ctx, api.OpFlowList, api.FlowListArgs{Name: name, Netns: n.path, Start: start}, nil, &page); err != nil {
				return api.FlowList{}, err
			}
			if start == 0 {
				all = page
			} else if page.Generation != all.Generation || page.Total != all.Total {
				break // changed: start again
			} else {
				all.Rules = append(all.Rules, page.Rules...)
			}
			if page.Next <= start {
				all.Next = 0
				return all, nil
			}
			start = page.Next
		}
	}
	return api.FlowList{}, fmt.Errorf("vrssd: flow_list %s: the rules kept changing while being read", name)
}

// RSSContextAdd adds an RSS context with configuration cfg, with id id, or
// the lowest free one for id 0, and returns it. The host's contexts are 1
// to api.GuestContextBase (the guest's, which its VMM forwards, are
// above). Its table's entries are queues of the TAP.
func (c *Client) RSSContextAdd(ctx context.Context, name string, id uint16, cfg rss.Config) (api.ContextInfo, error) {
	return c.Netns("").RSSContextAdd(ctx, name, id, cfg)
}

// RSSContextAdd is Client.RSSContextAdd in n.
func (n *Netns) RSSContextAdd(ctx context.Context, name string, id uint16, cfg rss.Config) (api.ContextInfo, error) {
	var r api.ContextInfo
	_, err := n.c.call(ctx, api.OpRSSContextAdd, api.ContextArgs{Name: name, Netns: n.path, ID: id, Config: &cfg}, nil, &r)
	return r, err
}

// RSSContextSet replaces RSS context id's configuration.
func (c *Client) RSSContextSet(ctx context.Context, name string, id uint16, cfg rss.Config) (api.ContextInfo, error) {
	return c.Netns("").RSSContextSet(ctx, name, id, cfg)
}

// RSSContextSet is Client.RSSContextSet in n.
func (n *Netns) RSSContextSet(ctx context.Context, name string, id uint16, cfg rss.Config) (api.ContextInfo, error) {
	var r api.ContextInfo
	_, err := n.c.call(ctx, api.OpRSSContextSet, api.ContextArgs{Name: name, Netns: n.path, ID: id, Config: &cfg}, nil, &r)
	return r, err
}

// RSSContextDel removes RSS context id; one a rule sends frames to is
// refused (delete the rule first).
func (c *Client) RSSContextDel(ctx context.Context, name string, id uint16) error {
	return c.Netns("").RSSContextDel(ctx, name, id)
}

// RSSContextDel is Client.RSSContextDel in n.
func (n *Netns) RSSContextDel(ctx context.Context, name string, id uint16) error {
	_, err := n.c.call(ctx, api.OpRSSContextDel, api.ContextArgs{Name: name, Netns: n.path, ID: id}, nil, nil)
	return err
}

// RSSContexts returns the TAP's RSS contexts, by id, with the frames each
// steered to each queue and the rules that use it; id 0 returns them all,
// another only that one (api.CodeNotFound if the TAP has none of that id).
func (c *Client) RSSContexts(ctx context.Context, name string, id uint16) (api.ContextList, error) {
	return c.Netns("").RSSContexts(ctx, name, id)
}

// RSSContexts is Client.RSSContexts in n.
func (n *Netns) RSSContexts(ctx context.Context, name string, id uint16) (api.ContextList, error) {
	var r api.ContextList
	_, err := n.c.call(ctx, api.OpRSSContextShow, api.ContextArgs{Name: name, Netns: n.path, ID: id}, nil, &r)
	return r, err
}
