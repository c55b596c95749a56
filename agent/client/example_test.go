package client_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/agent/client"
	"github.com/vrss-dev/vrss/rss"
)

// A VMM's life with vrssd: an orchestrator (here the same process) creates
// a TAP for the VMM's user; the VMM opens it, gets its queue fds for the
// virtio-net backend, and from then on publishes whatever RSS
// configuration the guest asks for through the mapped configuration map:
// no daemon round trip, no CAP_BPF. It needs a running vrssd, so it has no
// Output to check.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	c, err := client.Dial(ctx, "") // $VRSS_SOCKET, or /run/vrss/vrss.sock
	if err != nil {
		log.Fatal(err) // an *api.Error with CodeABIMismatch if built against another vrss
	}
	defer c.Close()

	uid := 1000 // the VMM's user
	if _, err := c.Create(ctx, api.CreateArgs{Name: "vm0", Queues: 4, OwnerUID: &uid}); err != nil {
		log.Fatal(err)
	}

	h, err := c.Open(ctx, "vm0") // as uid 1000, or root
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()
	// h.Queues[i] backs the guest's receive queue i.

	// The guest enabled RSS: TCP and UDP over IPv4 and IPv6, its key, an
	// indirection table over its 4 queues.
	cfg := rss.Config{
		HashTypes: rss.HashTCPv4 | rss.HashUDPv4 | rss.HashIPv4 | rss.HashTCPv6 | rss.HashUDPv6 | rss.HashIPv6,
		Key:       rss.DefaultKey,
		Table:     rss.EqualTable(128, 4),
	}
	if err := h.Publisher.Publish(cfg); err != nil {
		log.Fatal(err) // the guest gets VIRTIO_NET_ERR; the old configuration stays
	}
	fmt.Println("published configuration", h.Publisher.Generation())
}
