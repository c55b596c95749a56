package steering_test

import (
	"errors"
	"fmt"
	"log"

	"github.com/vrss-dev/vrss/rss"
	"github.com/vrss-dev/vrss/steering"
	"github.com/vrss-dev/vrss/tap"
)

// This example loads the steering program, publishes an RSS configuration
// and attaches the program to a new four-queue TAP device. Loading needs
// CAP_BPF and creating the device CAP_NET_ADMIN, so the example has no
// output to check. Where eBPF steering is unavailable it falls back to the
// rss engine, which computes the same queue for every frame.
func Example() {
	cfg := rss.Config{
		HashTypes: rss.AllHashTypes,
		Key:       rss.DefaultKey,
		Table:     rss.EqualTable(128, 4),
	}

	prog, err := steering.Load()
	var unavailable *steering.UnavailableError
	if errors.As(err, &unavailable) {
		log.Printf("eBPF steering unavailable (%s), steering in userspace", unavailable.Reason)
		eng, err := rss.New(cfg)
		if err != nil {
			log.Fatal(err)
		}
		_ = eng // eng.Steer(frame).Queue is each frame's queue
		return
	}
	if err != nil {
		log.Fatal(err)
	}
	defer prog.Close()

	// The Publisher needs only the map's fd: an unprivileged VMM handed
	// prog.ConfigMap.FD() could call steering.NewPublisher itself.
	pub, err := prog.Publisher(4)
	if err != nil {
		log.Fatal(err)
	}
	defer pub.Close()
	if err := pub.Publish(cfg); err != nil {
		log.Fatal(err)
	}

	dev, err := tap.Create(tap.Options{Queues: 4, Up: true})
	if err != nil {
		log.Fatal(err)
	}
	defer dev.Close()
	if err := dev.SetSteering(prog.Prog.FD()); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s steers by generation %d of its RSS configuration\n", dev.Name(), pub.Generation())
}
