package inject

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vrss-dev/vrss/tap"
)

// DrainQueues reads all queues of d concurrently until want frames have
// arrived in total, or until timeout; want <= 0 reads until the timeout, to
// check that nothing (more) arrives. It returns the frames per queue in
// arrival order, each with its first vnetHdrLen bytes (the vnet header)
// removed, and an error if fewer than want arrived. A few more than want can
// be returned when frames race in on several queues.
//
// TAP queues drop frames when full (tun_net_xmit does not push back on the
// sender), so for bursts beyond a few hundred frames per queue, drain while
// sending.
func DrainQueues(d *tap.Device, vnetHdrLen int, want int, timeout time.Duration) ([][][]byte, error) {
	queues := make([]*os.File, d.NumQueues())
	for q := range queues {
		queues[q] = d.Queue(q)
	}
	return DrainFiles(d.Name(), queues, vnetHdrLen, want, timeout)
}

// DrainFiles is DrainQueues for queue files held without a tap.Device, such
// as those a VMM receives from vrssd; name is only for error messages. The
// files must be nonblocking (registered with the runtime poller) for the
// deadlines to work.
func DrainFiles(name string, queues []*os.File, vnetHdrLen int, want int, timeout time.Duration) ([][][]byte, error) {
	n := len(queues)
	out := make([][][]byte, n)
	errs := make([]error, n)
	deadline := time.Now().Add(timeout)
	for q := range n {
		queues[q].SetReadDeadline(deadline)
	}
	var (
		total atomic.Int64
		stop  sync.Once
		wg    sync.WaitGroup
	)
	// Moving every deadline to now wakes the other readers once want is met.
	wake := func() {
		for q := range n {
			queues[q].SetReadDeadline(time.Now())
		}
	}
	for q := range n {
		wg.Go(func() {
			buf := make([]byte, 65536+vnetHdrLen)
			for {
				m, err := queues[q].Read(buf)
				if errors.Is(err, os.ErrDeadlineExceeded) {
					return
				}
				if err != nil {
					errs[q] = fmt.Errorf("inject: read %s queue %d: %w", name, q, err)
					stop.Do(wake)
					return
				}
				if m < vnetHdrLen {
					errs[q] = fmt.Errorf("inject: %s queue %d: %d-byte read is shorter than the %d-byte vnet header", name, q, m, vnetHdrLen)
					stop.Do(wake)
					return
				}
				out[q] = append(out[q], append([]byte(nil), buf[vnetHdrLen:m]...))
				if want > 0 && total.Add(1) >= int64(want) {
					stop.Do(wake)
				}
			}
		})
	}
	wg.Wait()
	for q := range n {
		queues[q].SetReadDeadline(time.Time{})
	}
	if err := errors.Join(errs...); err != nil {
		return out, err
	}
	if got := total.Load(); got < int64(want) {
		return out, fmt.Errorf("inject: %d of %d frames arrived on %s within %v", got, want, name, timeout)
	}
	return out, nil
}
