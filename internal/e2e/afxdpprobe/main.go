// Command afxdpprobe is the AF_XDP port owner of the netkit guest test
// (internal/e2e, afxdp72.go): started as root, it raises RLIMIT_MEMLOCK
// for the UMEMs, drops to -uid, opens the port through vrssd
// (client.AFXDPOpen), sets each socket up with package xsk and binds it,
// then waits until vrssd says none is pending and receives until the
// -stop file exists, printing "AFXDP key value" lines: what the guest test checks.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/agent/client"
	"github.com/vrss-dev/vrss/xsk"
)

func main() {
	socket := flag.String("socket", "", "vrssd's socket")
	name := flag.String("port", "", "the AF_XDP port")
	uid := flag.Int("uid", 4242, "the owner to run as")
	stop := flag.String("stop", "", "receive until this file exists")
	tag := flag.Int("tag", 0, "the UDP destination port of the frames counted as the test's")
	flag.Parse()
	if err := run(*socket, *name, *uid, *stop, *tag); err != nil {
		fmt.Printf("AFXDP probe-error %v\n", err)
		os.Exit(1)
	}
}

func run(socket, name string, uid int, stop string, tag int) error {
	inf := unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY}
	if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &inf); err != nil {
		return fmt.Errorf("RLIMIT_MEMLOCK: %w", err)
	}
	// Go applies these to every thread.
	if err := syscall.Setgroups(nil); err != nil {
		return err
	}
	if err := syscall.Setgid(uid); err != nil {
		return err
	}
	if err := syscall.Setuid(uid); err != nil {
		return err
	}
	fmt.Printf("AFXDP probe-uid %d\n", os.Getuid())
	ctx := context.Background()
	c, err := client.Dial(ctx, socket)
	if err != nil {
		return err
	}
	defer c.Close()
	r, files, err := c.AFXDPOpen(ctx, name)
	if err != nil {
		return err
	}
	fmt.Printf("AFXDP opened-pending %v\n", r.Port.Pending)
	var socks []*xsk.Socket
	for i, f := range files {
		// xsk.Setup takes the descriptor over: give it a duplicate.
		fd, err := unix.Dup(int(f.Fd()))
		f.Close()
		if err != nil {
			return err
		}
		s, err := xsk.Setup(fd, xsk.Options{Frames: 256, FrameSize: 2048, FillSize: 128, CompSize: 128, RxSize: 256, Ifindex: r.Ifindex, Queue: r.Port.QueueStart + i, Copy: true})
		if err != nil {
			return fmt.Errorf("queue %d: %w", r.Port.QueueStart+i, err)
		}
		defer s.Close()
		socks = append(socks, s)
	}
	bound := time.Now()
	for {
		p, err := c.AFXDPShow(ctx, name)
		if err != nil {
			return err
		}
		if len(p.Pending) == 0 {
			break
		}
		if time.Since(bound) > 10*time.Second {
			return fmt.Errorf("still pending 10 s after the bind: %v", p.Pending)
		}
		time.Sleep(20 * time.Millisecond)
	}
	fmt.Printf("AFXDP inserted-after-ms %d\n", time.Since(bound).Milliseconds())
	tagged, other := make([]int, len(socks)), make([]int, len(socks))
	for {
		_, err := os.Stat(stop)
		for i, s := range socks {
			if _, err := s.Receive(5*time.Millisecond, func(f []byte) {
				// IPv4 UDP to the test's port.
				if len(f) >= 38 && f[12] == 8 && f[13] == 0 && f[23] == 17 && int(f[36])<<8|int(f[37]) == tag {
					tagged[i]++
				} else {
					other[i]++
				}
			}); err != nil {
				return err
			}
		}
		if err == nil {
			break // one more round after the stop file came
		}
	}
	for i := range socks {
		fmt.Printf("AFXDP received-q%d %d %d\n", r.Port.QueueStart+i, tagged[i], other[i])
	}
	fmt.Println("AFXDP probe-done 1")
	return nil
}
