package agent_test

import (
	"encoding/binary"
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vrss-dev/vrss/internal/demo"
	"github.com/vrss-dev/vrss/internal/inject"
	"github.com/vrss-dev/vrss/rss"
)

// steerCheck injects frames from many flows into the TAP with index
// ifindex, the way host traffic to a VM arrives (AF_PACKET, through
// tun_select_queue), reads every queue, and fails the test unless each
// frame arrived once, on the queue cfg predicts. It returns the frames
// per queue.
func (d *daemon) steerCheck(ifindex int, queues []*os.File, vnetHdrLen int, cfg rss.Config, seed uint64) []int {
	d.t.Helper()
	eng, err := rss.New(cfg)
	if err != nil {
		d.t.Fatal(err)
	}
	frames := demo.Frames(100, 4, seed)
	want := make([]int, len(frames))
	for i, f := range frames {
		want[i] = int(eng.Steer(f).Queue) % len(queues)
	}
	var inj *inject.Injector
	d.inNS(func() { inj, err = inject.Open(ifindex) })
	if err != nil {
		d.t.Fatal(err)
	}
	defer inj.Close()

	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		got   = make([]int, len(frames)) // arrivals per frame
		onQ   = make([]int, len(frames)) // queue of the last arrival
		total atomic.Int64
		errs  = make([]error, len(queues))
	)
	for q, f := range queues {
		f.SetReadDeadline(time.Time{})
		wg.Go(func() {
			buf := make([]byte, 65536)
			for {
				n, err := f.Read(buf)
				if err != nil {
					if !errors.Is(err, os.ErrDeadlineExceeded) {
						errs[q] = err
					}
					return
				}
				id := frameID(buf[:n], vnetHdrLen)
				if id < 0 || id >= len(frames) {
					continue
				}
				mu.Lock()
				got[id]++
				onQ[id] = q
				mu.Unlock()
				total.Add(1)
			}
		})
	}
	// A TAP queue drops what it cannot hold: stay close to the readers.
	for i := 0; i < len(frames); i += 50 {
		if err := inj.SendBatch(frames[i:min(i+50, len(frames))]); err != nil {
			d.t.Fatal(err)
		}
		for deadline := time.Now().Add(5 * time.Second); total.Load() < int64(i) && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
	}
	for deadline := time.Now().Add(5 * time.Second); total.Load() < int64(len(frames)) && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // time for duplicates to show
	for _, f := range queues {
		f.SetReadDeadline(time.Now())
	}
	wg.Wait()
	for _, f := range queues {
		f.SetReadDeadline(time.Time{})
	}
	if err := errors.Join(errs...); err != nil {
		d.t.Fatal(err)
	}
	per := make([]int, len(queues))
	bad := 0
	for id := range frames {
		if got[id] != 1 || onQ[id] != want[id] {
			if bad < 5 {
				d.t.Errorf("frame %d: arrived %d times, on queue %d, predicted %d", id, got[id], onQ[id], want[id])
			}
			bad++
			continue
		}
		per[want[id]]++
	}
	if bad > 0 {
		d.t.Fatalf("%d of %d frames not once on the predicted queue", bad, len(frames))
	}
	return per
}

// frameID reads the number demo.Frames puts in the source MAC address.
func frameID(b []byte, vnetHdrLen int) int {
	if len(b) < vnetHdrLen+12 {
		return -1
	}
	b = b[vnetHdrLen:]
	if binary.BigEndian.Uint16(b[6:]) != 0x5254 {
		return -1
	}
	return int(binary.BigEndian.Uint32(b[8:]))
}
