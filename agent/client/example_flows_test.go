package client_test

import (
	"context"
	"fmt"
	"log"
	"net/netip"
	"time"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/agent/client"
	"github.com/vrss-dev/vrss/flow"
	"github.com/vrss-dev/vrss/rss"
)

// Flow rules and RSS contexts on a TAP created with flows: an RSS context
// over queues 2 and 3 for VXLAN, SSH to queue 0, and a drop rule for a
// noisy network. Every change is checked against the whole set and the
// program's limits first; a refused one changes nothing. It needs a
// running vrssd, so it has no Output to check.
func Example_flows() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, "")
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	if _, err := c.Create(ctx, api.CreateArgs{Name: "vm0", Queues: 4, Flows: true}); err != nil {
		log.Fatal(err)
	}
	// RSS over every queue for what no rule takes.
	if _, err := c.SetRSS(ctx, "vm0", rss.Config{HashTypes: rss.AllHashTypes, Key: rss.DefaultKey, Table: rss.EqualTable(128, 4)}); err != nil {
		log.Fatal(err)
	}
	// Context 1 (the lowest free id): its own key, over queues 2 and 3.
	vx, err := c.RSSContextAdd(ctx, "vm0", 0, rss.Config{HashTypes: rss.HashUDPv4 | rss.HashIPv4, Key: rss.DefaultKey, Table: []uint16{2, 3}, UnclassifiedQueue: 2})
	if err != nil {
		log.Fatal(err)
	}

	var vxlan, ssh, noisy flow.Match
	vxlan.SetEtherType(0x0800, 0xffff)
	vxlan.SetProto(17, 0xff)
	vxlan.SetDstPort(4789, 0xffff)
	ssh.SetEtherType(0x0800, 0xffff)
	ssh.SetProto(6, 0xff)
	ssh.SetDstPort(22, 0xffff)
	noisy.SetEtherType(0x0800, 0xffff)
	noisy.SetSrcIP(netip.MustParseAddr("198.51.100.0"), flow.PrefixMask(netip.MustParsePrefix("198.51.100.0/24")))
	for _, r := range []flow.Rule{
		{Match: vxlan, Action: flow.Action{Kind: flow.ActionContext, Context: vx.ID}},
		{Match: ssh, Action: flow.Action{Kind: flow.ActionQueue, Queue: 0}, Priority: 1},
		{Match: noisy, Action: flow.Action{Kind: flow.ActionDrop}},
	} {
		// Into host group 0, with the lowest free id.
		if _, err := c.FlowAdd(ctx, "vm0", r, true, nil); err != nil {
			log.Fatal(err) // *api.Error; CodeInvalidConfig says what the set cannot take
		}
	}

	l, err := c.FlowList(ctx, "vm0")
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range l.Rules { // in the order they are tried
		fmt.Printf("%d %s: %s, %d hits\n", r.ID, r.Match, r.Action, r.Hits)
	}
	fmt.Println(l.Dropped, "frames dropped")
}
