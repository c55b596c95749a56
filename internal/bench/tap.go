package bench

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/vrss-dev/vrss/internal/frame"
	"github.com/vrss-dev/vrss/internal/inject"
	"github.com/vrss-dev/vrss/internal/netnstest"
	"github.com/vrss-dev/vrss/steering"
	"github.com/vrss-dev/vrss/tap"
)

const (
	tapQueues     = 4
	tapVnetHdrLen = 12
	// tun drops a frame when its queue's ring (txqueuelen frames) is full;
	// a long ring absorbs a reader that falls behind for a moment.
	tapTxQueueLen = 10000
	// tapWindow bounds the frames sent but not yet read. Below one ring's
	// length, no queue can overflow even if every frame went to it, so the
	// rate measured is the path's, not that of a sender outrunning readers
	// on a 2-core machine and losing frames.
	tapWindow = tapTxQueueLen / 2
	tapBatch  = 256  // frames per sendmmsg
	tapFlows  = 1024 // distinct flows injected, cycling
	// tapQuiet is how long a round waits for more frames after they stop
	// coming before it counts the rest as lost.
	tapQuiet = 200 * time.Millisecond
)

// measureTAP fills in TAPPPS, TAPPairs and TAPLost. In a new network
// namespace it creates a TAP device and injects frames into it through an
// AF_PACKET socket, the path of traffic a bridge forwards to a VM, while
// reading every queue. Rounds without a program and with vrss alternate in
// pairs, after one warm-up pair, and the first of a pair swaps every pair
// so that neither mode always follows the other. The ratio within each
// pair compares two rounds taken next to each other, so that the machine's
// speed, which drifts over a run on a shared host, affects both alike.
func measureTAP(r *Result, vrss *steering.Program, o Options) error {
	return netnstest.Do(func() error {
		d, err := tap.Create(tap.Options{Queues: tapQueues, VnetHdrLen: tapVnetHdrLen, Up: true})
		if err != nil {
			return err
		}
		defer d.Close()
		l, err := netlink.LinkByIndex(d.Index())
		if err == nil {
			err = netlink.LinkSetTxQLen(l, tapTxQueueLen)
		}
		if err != nil {
			return fmt.Errorf("set txqueuelen of %s: %w", d.Name(), err)
		}
		inj, err := inject.Open(d.Index())
		if err != nil {
			return err
		}
		defer inj.Close()

		before, err := vrss.Stats()
		if err != nil {
			return err
		}
		frames := tapFrames()
		modes := []struct {
			name string
			prog int
		}{{"none", -1}, {"vrss", vrss.Prog.FD()}}
		samples := map[string][]float64{}
		r.TAPLost = map[string]int{"none": 0, "vrss": 0}
		r.TAPPairs = nil
		received := 0 // frames that arrived with vrss attached
		for pair := -1; pair < o.TAPPairs; pair++ {
			rate := map[string]float64{}
			for i := range modes {
				m := modes[(i+pair+1)%len(modes)]
				if err := d.SetSteering(m.prog); err != nil {
					return err
				}
				pps, got, err := tapRound(d, inj, frames, o.Frames, o.Duration)
				if err != nil {
					return err
				}
				if m.name == "vrss" {
					received += got
				}
				rate[m.name] = pps
				if pair < 0 {
					continue // warm-up
				}
				samples[m.name] = append(samples[m.name], pps)
				r.TAPLost[m.name] += max(0, o.Frames-got)
			}
			if pair >= 0 {
				r.TAPPairs = append(r.TAPPairs, ratio(rate["vrss"], rate["none"]))
			}
		}
		if err := d.DetachSteering(); err != nil {
			return err
		}
		// The rate with vrss means nothing if the program did not steer.
		after, err := vrss.Stats()
		if err != nil {
			return err
		}
		if n := after.Total() - before.Total(); n < uint64(received) {
			return fmt.Errorf("the vrss program steered %d frames, but %d arrived while it was attached", n, received)
		}
		r.TAPPPS = map[string]float64{}
		for _, m := range modes {
			r.TAPPPS[m.name] = median(samples[m.name])
		}
		return nil
	})
}

// tapRound injects n frames, cycling through frames, while reading every
// queue of d. It returns the rate at which frames arrived, from the first
// send to the last arrival, and how many arrived. Frames that have not
// arrived once none has for tapQuiet, or when limit has passed, are lost.
func tapRound(d *tap.Device, inj *inject.Injector, frames [][]byte, n int, limit time.Duration) (pps float64, got int, err error) {
	var (
		arrived atomic.Int64
		allIn   = make(chan time.Time, 1)
		wg      sync.WaitGroup
		errs    = make([]error, d.NumQueues())
	)
	deadline := time.Now().Add(limit)
	for q := range d.NumQueues() {
		f := d.Queue(q)
		f.SetReadDeadline(deadline)
		wg.Go(func() {
			buf := make([]byte, 65536)
			for {
				if _, err := f.Read(buf); err != nil {
					if !errors.Is(err, os.ErrDeadlineExceeded) {
						errs[q] = fmt.Errorf("read %s queue %d: %w", d.Name(), q, err)
					}
					return
				}
				if arrived.Add(1) == int64(n) {
					allIn <- time.Now()
				}
			}
		})
	}
	// Wakes the readers when the round ends, whatever the reason.
	defer func() {
		for q := range d.NumQueues() {
			d.Queue(q).SetReadDeadline(time.Now())
		}
		wg.Wait()
		for q := range d.NumQueues() {
			d.Queue(q).SetReadDeadline(time.Time{})
		}
		if rerr := errors.Join(errs...); rerr != nil && err == nil {
			err = rerr
		}
	}()

	start := time.Now()
	for sent := 0; sent < n && time.Now().Before(deadline); {
		if sent-int(arrived.Load()) > tapWindow {
			time.Sleep(50 * time.Microsecond)
			continue
		}
		j := sent % len(frames)
		b := min(tapBatch, n-sent, len(frames)-j)
		if err := inj.SendBatch(frames[j : j+b]); err != nil {
			return 0, 0, err
		}
		sent += b
	}

	var end time.Time
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	last, lastAt := arrived.Load(), time.Now()
	for end.IsZero() {
		select {
		case end = <-allIn:
		case now := <-tick.C:
			if a := arrived.Load(); a != last {
				last, lastAt = a, now
			} else if now.Sub(lastAt) > tapQuiet || now.After(deadline) {
				end = lastAt
			}
		}
	}
	got = int(min(arrived.Load(), int64(n)))
	return float64(got) / end.Sub(start).Seconds(), got, nil
}

// tapFrames returns tapFlows frames of distinct flows: TCP and UDP over
// IPv4 and IPv6, all 64-byte payloads.
func tapFrames() [][]byte {
	out := make([][]byte, tapFlows)
	for i := range out {
		s := frame.Spec{Proto: frame.ProtoUDP, SrcPort: uint16(1024 + i), DstPort: uint16(4789 + i%7), Payload: 64}
		if i%4 >= 2 {
			s.Proto = frame.ProtoTCP
		}
		if i%2 == 0 {
			s.Src = netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
			s.Dst = netip.AddrFrom4([4]byte{10, 1, 0, 1})
		} else {
			s.Src = netip.AddrFrom16([16]byte{0: 0xfd, 14: byte(i >> 8), 15: byte(i)})
			s.Dst = netip.AddrFrom16([16]byte{0: 0xfd, 15: 1})
		}
		out[i] = frame.Build(s)
	}
	return out
}
