//go:build linux

package xsk_test

import (
	"fmt"
	"log"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/xsk"
)

// An unprivileged owner sets up the AF_XDP socket it was handed (here
// received over the unix socket conn with SCM_RIGHTS) on queue 0 of the
// device with ifindex 7, and receives.
func Example() {
	conn := 3 // a unix socket to the privileged process
	buf, oob := make([]byte, 16), make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := unix.Recvmsg(conn, buf, oob, 0)
	if err != nil {
		log.Fatal(err)
	}
	cmsgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(cmsgs) != 1 {
		log.Fatal("no socket received")
	}
	fds, err := unix.ParseUnixRights(&cmsgs[0])
	if err != nil {
		log.Fatal(err)
	}
	s, err := xsk.Setup(fds[0], xsk.Options{Ifindex: 7, Queue: 0, Copy: true, NeedWakeup: true})
	if err != nil {
		log.Fatal(err) // says which step failed and why, e.g. RLIMIT_MEMLOCK
	}
	defer s.Close()
	for {
		_, err := s.Receive(time.Second, func(frame []byte) {
			fmt.Printf("%d bytes from %x\n", len(frame), frame[6:12])
		})
		if err != nil {
			log.Fatal(err)
		}
	}
}

// The UMEM a socket pins, charged to the owner's RLIMIT_MEMLOCK: QEMU's
// af-xdp backend uses 8192 frames of 4 KB per queue.
func ExampleOptions_UMEMBytes() {
	qemu := xsk.Options{Frames: 8192, FrameSize: 4096}
	fmt.Printf("%d MB per queue\n", qemu.UMEMBytes()>>20)
	fmt.Printf("%d MB with the defaults\n", xsk.Options{}.UMEMBytes()>>20)
	// Output:
	// 32 MB per queue
	// 16 MB with the defaults
}
