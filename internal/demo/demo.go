// Package demo proves steering on a real TAP device: in a fresh network
// namespace it creates a multi-queue TAP, attaches the vrss program with an
// RSS configuration, injects frames from many flows with AF_PACKET (the path
// host traffic to a VM takes), reads every queue, and checks each frame
// arrived on the queue the rss engine predicts. With Options.Rules it runs
// the flow build instead, with a queue rule, an RSS context and a drop rule
// (RulesSet), and checks every frame against flow.Engine: kept frames on
// their queue, dropped ones refused and never received, and the program's
// rule, context and drop counters. `vrss demo` and the device tests both
// run it.
package demo

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vrss-dev/vrss/internal/frame"
	"github.com/vrss-dev/vrss/internal/inject"
	"github.com/vrss-dev/vrss/internal/netnstest"
	"github.com/vrss-dev/vrss/rss"
	"github.com/vrss-dev/vrss/steering"
	"github.com/vrss-dev/vrss/tap"
)

// Options configure a run. Zero values take the defaults.
type Options struct {
	Queues  int         // TAP queues; default 4
	Flows   int         // distinct flows; default 1000
	PerFlow int         // frames per flow; default 10
	Config  *rss.Config // default: every hash type, rss.DefaultKey, equal 128-entry table
	Seed    uint64      // flow generator seed; default 1
	Timeout time.Duration
	// Rules runs the flow build with RulesSet (Config its default
	// configuration), adding RuleFlowsPer(Flows) flows for each of its
	// rules to the usual ones. It needs at least 4 queues.
	Rules bool
}

// Result is what a run observed.
type Result struct {
	Device    string
	Queues    int
	Config    rss.Config
	Sent      int
	Received  int   // frames of ours that came back
	Predicted []int // frames per queue, as the engine predicts
	Observed  []int // frames per queue, as read from the queue fds
	Reports   map[rss.HashReport]int
	Correct   int      // frames on exactly the predicted queue
	Wrong     []string // the first mismatches, described
	Foreign   int      // frames read that were not sent by the run
	Stats     steering.Stats
	Elapsed   time.Duration
	// Flows holds what a run with Options.Rules saw besides; nil
	// otherwise. Predicted, Observed and Reports then count the frames
	// the engine keeps, and Correct also counts each frame the engine
	// drops that was not received.
	Flows *FlowResult
}

// OK reports whether every frame arrived, once, on its predicted queue; with
// rules, whether every frame the engine keeps did so, none it drops was
// received, and the program's counters agree with the engine.
func (r *Result) OK() bool {
	if r.Flows != nil {
		return r.Sent > 0 && r.Correct == r.Sent && r.Received == r.Sent-r.Flows.Drops.Predicted && r.Flows.CountersAgree()
	}
	return r.Sent > 0 && r.Correct == r.Sent && r.Received == r.Sent
}

const vnetHdrLen = 12

// DefaultConfig is the configuration a run uses unless told otherwise.
func DefaultConfig(queues int) rss.Config {
	return rss.Config{HashTypes: rss.AllHashTypes, Key: rss.DefaultKey, Table: rss.EqualTable(128, queues)}
}

// Run performs one demonstration in a fresh network namespace.
func Run(o Options) (*Result, error) {
	if o.Queues == 0 {
		o.Queues = 4
	}
	if o.Flows == 0 {
		o.Flows = 1000
	}
	if o.PerFlow == 0 {
		o.PerFlow = 10
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	cfg := DefaultConfig(o.Queues)
	if o.Config != nil {
		cfg = o.Config.Clone()
	}
	if err := cfg.Validate(steering.Limits(o.Queues)); err != nil {
		return nil, err
	}
	if o.Rules && o.Queues < RulesMinQueues {
		return nil, fmt.Errorf("demo: rules need at least %d queues (the RSS context uses queues 2 and 3), not %d", RulesMinQueues, o.Queues)
	}
	var res *Result
	err := netnstest.Do(func() error {
		var err error
		if o.Rules {
			res, err = runRules(o, RulesSet(o.Queues, cfg))
		} else {
			res, err = run(o, cfg)
		}
		return err
	})
	return res, err
}

func run(o Options, cfg rss.Config) (*Result, error) {
	eng, err := rss.New(cfg)
	if err != nil {
		return nil, err
	}
	dev, err := tap.Create(tap.Options{Name: "vrssdemo%d", Queues: o.Queues, VnetHdrLen: vnetHdrLen, Up: true})
	if err != nil {
		return nil, err
	}
	defer dev.Close()
	prog, err := steering.Load()
	if err != nil {
		return nil, err
	}
	defer prog.Close()
	pub, err := prog.Publisher(o.Queues)
	if err != nil {
		return nil, err
	}
	defer pub.Close()
	if err := pub.Publish(cfg); err != nil {
		return nil, err
	}
	if err := dev.SetSteering(prog.Prog.FD()); err != nil {
		return nil, err
	}
	inj, err := inject.Open(dev.Index())
	if err != nil {
		return nil, err
	}
	defer inj.Close()

	frames := Frames(o.Flows, o.PerFlow, o.Seed)
	res := &Result{
		Device: dev.Name(), Queues: o.Queues, Config: cfg, Sent: len(frames),
		Predicted: make([]int, o.Queues), Observed: make([]int, o.Queues),
		Reports: map[rss.HashReport]int{},
	}
	want := make([]int, len(frames))
	for i, f := range frames {
		r := eng.Steer(f)
		want[i] = int(r.Queue) % o.Queues // tun takes the program's answer modulo the queues
		res.Predicted[want[i]]++
		res.Reports[r.Report]++
	}

	rx := startReceiver(dev)
	start := time.Now()
	// Stay at most a window ahead of the readers: a full TAP queue drops.
	const batch, window = 64, 256
	for i := 0; i < len(frames); i += batch {
		if err := inj.SendBatch(frames[i:min(i+batch, len(frames))]); err != nil {
			rx.stop()
			return nil, err
		}
		for deadline := time.Now().Add(o.Timeout); rx.total.Load() < int64(i-window) && time.Now().Before(deadline); {
			time.Sleep(50 * time.Microsecond)
		}
	}
	for deadline := time.Now().Add(o.Timeout); rx.total.Load() < int64(len(frames)) && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	// A short grace period shows duplicates or strays, should there be any.
	time.Sleep(20 * time.Millisecond)
	seen, err := rx.stop()
	res.Elapsed = time.Since(start)
	if err != nil {
		return nil, err
	}
	if res.Stats, err = prog.Stats(); err != nil {
		return nil, err
	}

	got := make([]int, len(frames)) // times each frame arrived
	for q, ids := range seen {
		for _, id := range ids {
			if id < 0 || id >= len(frames) {
				res.Foreign++
				continue
			}
			res.Observed[q]++
			res.Received++
			got[id]++
			if q == want[id] && got[id] == 1 {
				res.Correct++
			} else if len(res.Wrong) < 10 {
				res.Wrong = append(res.Wrong, fmt.Sprintf("frame %d (%x...) on queue %d, predicted %d (arrival %d)", id, frames[id][:min(len(frames[id]), 40)], q, want[id], got[id]))
			}
		}
	}
	for id, n := range got {
		if n == 0 && len(res.Wrong) < 10 {
			res.Wrong = append(res.Wrong, fmt.Sprintf("frame %d lost, predicted queue %d", id, want[id]))
		}
	}
	return res, nil
}

// receiver reads every queue of a TAP until stopped, recording the frame
// numbers (see Frames) that arrive on each.
type receiver struct {
	dev   *tap.Device
	total atomic.Int64
	wg    sync.WaitGroup
	ids   [][]int
	errs  []error
}

func startReceiver(dev *tap.Device) *receiver {
	rx := &receiver{dev: dev, ids: make([][]int, dev.NumQueues()), errs: make([]error, dev.NumQueues())}
	for q := range dev.NumQueues() {
		rx.wg.Go(func() {
			buf := make([]byte, 65536)
			for {
				n, err := dev.Queue(q).Read(buf)
				if err != nil {
					if !errors.Is(err, os.ErrDeadlineExceeded) {
						rx.errs[q] = fmt.Errorf("read queue %d: %w", q, err)
					}
					return
				}
				rx.ids[q] = append(rx.ids[q], frameID(buf[:n]))
				rx.total.Add(1)
			}
		})
	}
	return rx
}

func (rx *receiver) stop() ([][]int, error) {
	for q := range rx.dev.NumQueues() {
		rx.dev.Queue(q).SetReadDeadline(time.Now())
	}
	rx.wg.Wait()
	for q := range rx.dev.NumQueues() {
		rx.dev.Queue(q).SetReadDeadline(time.Time{})
	}
	return rx.ids, errors.Join(rx.errs...)
}

// Frame numbers travel in the source MAC address (bytes 8..11 of the
// frame), which classification never reads, so even a frame cut short
// inside its IP header is identifiable when it arrives.
const macTag = 0x5254

func frameID(b []byte) int {
	if len(b) < vnetHdrLen+12 {
		return -1
	}
	b = b[vnetHdrLen:]
	if binary.BigEndian.Uint16(b[6:]) != macTag {
		return -1
	}
	return int(binary.BigEndian.Uint32(b[8:]))
}

// Frames returns perFlow frames for each of flows flows, numbered in their
// source MAC. The flows cycle through every hash type and through frames no
// hash type applies to, so every report type, and the unclassified queue,
// are exercised.
func Frames(flows, perFlow int, seed uint64) [][]byte {
	r := rand.New(rand.NewPCG(seed, 0x76727373))
	specs := make([]func() []byte, flows)
	for i := range specs {
		specs[i] = flowTemplate(i, r)
	}
	return number(specs, perFlow)
}

// number returns perFlow frames of each flow, numbered in their source
// MAC, the flows in turn.
func number(specs []func() []byte, perFlow int) [][]byte {
	out := make([][]byte, 0, len(specs)*perFlow)
	for rep := 0; rep < perFlow; rep++ {
		for _, mk := range specs {
			f := mk()
			binary.BigEndian.PutUint16(f[6:], macTag)
			binary.BigEndian.PutUint32(f[8:], uint32(len(out)))
			out = append(out, f)
		}
	}
	return out
}

// flowTemplate returns a builder for flow i: the kind cycles with i.
func flowTemplate(i int, r *rand.Rand) func() []byte {
	a4 := func() (netip.Addr, netip.Addr) { return frame.RandomAddr4(r), frame.RandomAddr4(r) }
	a6 := func() (netip.Addr, netip.Addr) { return frame.RandomAddr6(r), frame.RandomAddr6(r) }
	sp, dp := uint16(r.Uint32()), uint16(r.Uint32())
	var s frame.Spec
	switch i % 12 {
	case 0, 1:
		s.Src, s.Dst = a4()
		s.Proto = frame.ProtoTCP
	case 2:
		s.Src, s.Dst = a4()
		s.Proto = frame.ProtoUDP
	case 3:
		s.Src, s.Dst = a4()
		s.Proto = frame.ProtoICMP
		if i%24 == 3 {
			s.Proto, s.FragOffset = frame.ProtoUDP, 100 // a fragment: addresses only
		}
	case 4:
		s.Src, s.Dst = a6()
		s.Proto = frame.ProtoTCP
	case 5:
		s.Src, s.Dst = a6()
		s.Proto = frame.ProtoUDP
	case 6:
		s.Src, s.Dst = a6()
		s.Proto = 58 // ICMPv6
	case 7:
		s.Src, s.Dst = a6()
		s.Proto = frame.ProtoTCP
		s.Ext = []frame.ExtHeader{frame.HomeAddressOption(frame.RandomAddr6(r))}
	case 8:
		s.Src, s.Dst = a6()
		s.Proto = frame.ProtoUDP
		s.Ext = []frame.ExtHeader{{Type: 0, Data: make([]byte, 6)}, frame.RoutingType2(frame.RandomAddr6(r), 1)}
	case 9:
		s.Src, s.Dst = a6()
		s.Proto = 58
		s.Ext = []frame.ExtHeader{frame.FragmentHeader(0, true)}
	case 10:
		s.Src, s.Dst = a4()
		s.Proto = frame.ProtoTCP
		s.VLANs = []uint16{0x88a8, 0x8100}
	case 11:
		// Unclassified: a non-IP EtherType, or an IP frame cut inside its
		// header (a case BPF_PROG_TEST_RUN cannot even run).
		s.Src, s.Dst = a4()
		s.Proto = frame.ProtoTCP
		cut := 14 + 10 + i%10
		if i%24 == 11 {
			return func() []byte {
				f := frame.Build(s)
				f[12], f[13] = 0x88, 0xb5 // IEEE local experimental
				return f
			}
		}
		return func() []byte { return frame.Build(s)[:cut] }
	}
	s.SrcPort, s.DstPort, s.Payload = sp, dp, 16
	return func() []byte { return frame.Build(s) }
}
