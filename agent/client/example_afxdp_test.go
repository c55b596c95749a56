package client_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/agent/client"
	"github.com/vrss-dev/vrss/xsk"
)

// A VMM written in Go on the AF_XDP port vm0x (vrss afxdp create vm0x
// --dev eth1 --queue-start 2 --queues 2 --owner UID, then vrss port set
// vm0x ... by root): it opens the port as its owner, with no capabilities,
// sets each socket up on its queue and receives. Each socket's UMEM
// (Frames × FrameSize) counts against RLIMIT_MEMLOCK. It needs a running
// vrssd and the port, so it has no Output to check.
func Example_afxdp() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, "")
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// One unbound socket per queue, in queue order, already in the
	// port's XSKMAP. A second open replaces them.
	res, files, err := c.AFXDPOpen(ctx, "vm0x")
	if err != nil {
		log.Fatal(err)
	}
	var socks []*xsk.Socket
	for i, f := range files {
		// Setup takes the descriptor over: give it its own, since the
		// file closes its descriptor when closed or collected.
		fd, err := unix.Dup(int(f.Fd()))
		f.Close()
		if err != nil {
			log.Fatal(err)
		}
		s, err := xsk.Setup(fd, xsk.Options{
			Frames: 1024, FrameSize: 2048,
			Ifindex: res.Ifindex, Queue: res.Port.QueueStart + i,
			Copy: true, NeedWakeup: true,
		})
		if err != nil {
			log.Fatal(err)
		}
		defer s.Close()
		socks = append(socks, s)
	}
	for i, s := range socks {
		n, err := s.Receive(time.Second, func(frame []byte) {
			// Hand the frame to the guest's virtio-net receive queue.
			_ = frame
		})
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("queue %d: %d frames\n", res.Port.QueueStart+i, n)
	}
}
