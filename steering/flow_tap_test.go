package steering_test

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/vrss-dev/vrss/flow"
	"github.com/vrss-dev/vrss/internal/frame"
	"github.com/vrss-dev/vrss/internal/inject"
	"github.com/vrss-dev/vrss/internal/netnstest"
	"github.com/vrss-dev/vrss/internal/privtest"
	"github.com/vrss-dev/vrss/rss"
	"github.com/vrss-dev/vrss/steering"
	"github.com/vrss-dev/vrss/tap"
	"golang.org/x/sys/unix"
)

// demoSet is a set for a TAP with n queues (n >= 4): a rule sending TCP
// port 5001 to queue 1, a context over queues 2 and 3 with its own key for
// UDP port 5002, a drop rule for TCP port 5003, and RSS over every queue
// for the rest.
func demoSet(n int) flow.Set {
	key := make([]byte, 40)
	for i := range key {
		key[i] = byte(i*7 + 3)
	}
	rule := func(id uint32, proto uint8, port uint16, a flow.Action) flow.Rule {
		return flow.PortRule(id, 1, 0x0800, proto, port, a)
	}
	return flow.Set{
		Default:  rss.Config{HashTypes: rss.AllHashTypes, Key: rss.DefaultKey, Table: rss.EqualTable(128, n)},
		Contexts: []flow.Context{{ID: 1, Config: rss.Config{HashTypes: rss.AllHashTypes, Key: key, Table: []uint16{2, 3}, UnclassifiedQueue: 2}}},
		Groups:   []flow.Group{{ID: 1, Priority: 1, Host: true}},
		Rules: []flow.Rule{
			rule(1, 6, 5001, flow.Action{Kind: flow.ActionQueue, Queue: 1}),
			rule(2, 17, 5002, flow.Action{Kind: flow.ActionContext, Context: 1}),
			rule(3, 6, 5003, flow.Action{Kind: flow.ActionDrop}),
		},
	}
}

// TestFlowTAP attaches the flow build to real TAPs of 4 and 8 queues (the
// steering program with TUNSETSTEERINGEBPF, the filter at tc egress),
// sends frames through the kernel's transmit path, and checks that every
// frame the engine keeps arrives once, byte for byte, on exactly the queue
// it predicts, that no dropped frame arrives anywhere, and that the
// counters say so: drops, per-rule hits, per-context per-queue frames.
func TestFlowTAP(t *testing.T) {
	privtest.Require(t, "root")
	privtest.Require(t, "netns")
	privtest.Require(t, "tap")
	privtest.Require(t, "bpf")
	for _, queues := range []int{4, 8} {
		t.Run(string(rune('0'+queues))+"queues", func(t *testing.T) {
			p := load(t, steering.Flows)
			pub, err := p.Publisher(queues)
			if err != nil {
				t.Fatal(err)
			}
			defer pub.Close()
			set := demoSet(queues)
			if err := pub.PublishSet(set); err != nil {
				t.Fatal(err)
			}
			eng, err := flow.NewEngine(set, steering.FlowLimits(queues))
			if err != nil {
				t.Fatal(err)
			}
			r := rand.New(rand.NewPCG(uint64(queues), 7))
			var frames [][]byte
			for i := 0; i < 800; i++ {
				s := frame.Spec{Src: netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), Dst: netip.MustParseAddr("192.0.2.9"),
					Proto: frame.ProtoTCP, SrcPort: uint16(r.IntN(60000) + 1024), DstPort: []uint16{5001, 5002, 5003, 80}[i%4]}
				if i%4 == 1 {
					s.Proto = frame.ProtoUDP
				}
				if i%8 == 4 {
					s.Src, s.Dst = netip.AddrFrom16([16]byte{0x20, 1, 0xd, 0xb8, 15: byte(i)}), netip.MustParseAddr("2001:db8::9")
				}
				frames = append(frames, frame.Build(s))
			}
			want := make([]flow.Verdict, len(frames))
			kept, dropped := 0, 0
			for i, f := range frames {
				want[i] = eng.Steer(f)
				if want[i].Drop {
					dropped++
				} else {
					kept++
				}
			}
			netnstest.Run(t, func() {
				d, err := tap.Create(tap.Options{Queues: queues, VnetHdrLen: 12, Up: true})
				if err != nil {
					t.Fatal(err)
				}
				defer d.Close()
				if err := d.SetSteering(p.Prog.FD()); err != nil {
					t.Fatal(err)
				}
				l, err := p.AttachFilter(d.Index())
				if err != nil {
					t.Fatal(err)
				}
				defer l.Close()
				inj, err := inject.Open(d.Index())
				if err != nil {
					t.Fatal(err)
				}
				defer inj.Close()
				done := make(chan [][][]byte)
				go func() {
					got, err := inject.DrainQueues(d, 12, kept, 5*time.Second)
					if err != nil {
						t.Error(err)
					}
					done <- got
				}()
				// A frame the filter drops fails its send with ENOBUFS
				// (the packet socket reports NET_XMIT_DROP): exactly
				// the frames the engine drops must.
				refused := 0
				for i, f := range frames {
					err := inj.Send(f)
					switch {
					case want[i].Drop && !errors.Is(err, unix.ENOBUFS):
						t.Errorf("frame %d: the engine drops it, send returned %v", i, err)
					case !want[i].Drop && err != nil:
						t.Errorf("frame %d: %v", i, err)
					case err != nil:
						refused++
					}
				}
				got := <-done
				// Nothing more: the dropped frames must not trickle in.
				late, _ := inject.DrainQueues(d, 12, 0, 200*time.Millisecond)
				where := map[string][]int{}
				for q := range got {
					for _, f := range append(got[q], late[q]...) {
						where[string(f)] = append(where[string(f)], q)
					}
				}
				perQueue := make([]int, queues)
				for i, f := range frames {
					qs := where[string(f)]
					switch {
					case want[i].Drop && len(qs) != 0:
						t.Errorf("frame %d: dropped by the engine, arrived on %v", i, qs)
					case !want[i].Drop && (len(qs) != 1 || qs[0] != int(want[i].Queue)):
						t.Errorf("frame %d: arrived on %v, want once on %d", i, qs, want[i].Queue)
					case !want[i].Drop:
						perQueue[qs[0]]++
					}
				}
				st, err := p.FlowStats()
				if err != nil {
					t.Fatal(err)
				}
				if st.Dropped != uint64(dropped) {
					t.Errorf("filter counted %d drops, the engine dropped %d", st.Dropped, dropped)
				}
				hits := map[uint32]uint64{}
				for i := range frames {
					if want[i].Rule >= 0 {
						hits[set.Rules[want[i].Rule].ID]++
					}
				}
				for _, h := range st.Rules {
					if h.Hits != hits[h.ID] {
						t.Errorf("rule %d: %d hits counted, %d expected", h.ID, h.Hits, hits[h.ID])
					}
				}
				var ctx [2]uint64
				for i := range frames {
					if want[i].Context == 1 {
						ctx[want[i].Queue-2]++
					}
				}
				if c := st.Contexts[1]; c[2] != ctx[0] || c[3] != ctx[1] {
					t.Errorf("context 1 counted %d/%d on queues 2/3, want %d/%d", c[2], c[3], ctx[0], ctx[1])
				}
				t.Logf("%d queues: %d frames kept, per queue %v; %d dropped (%d sends refused) and counted; rule hits %+v", queues, kept, perQueue, st.Dropped, refused, st.Rules)
			})
		})
	}
}

// TestNoRulePath empties the program array the steering program reaches
// its rule path through (as the kernel does when the array's last fd and
// pin go): a frame that needs the rule path (here one a context rule
// steers) then goes to the unclassified queue, never by the set without
// its rules, and is counted; a frame the quick path steers by its queue
// rule (untagged IPv4 TCP) still goes to the rule's queue.
func TestNoRulePath(t *testing.T) {
	p := load(t, steering.Flows)
	pub, err := p.Publisher(4)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	set := demoSet(4)
	set.Default.UnclassifiedQueue = 3
	if err := pub.PublishSet(set); err != nil {
		t.Fatal(err)
	}
	quick := frame.Build(frame.Spec{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("192.0.2.9"), Proto: frame.ProtoTCP, SrcPort: 1000, DstPort: 5001})
	ctx := frame.Build(frame.Spec{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("192.0.2.9"), Proto: frame.ProtoUDP, SrcPort: 1000, DstPort: 5002})
	want, err := flow.NewEngine(set, steering.FlowLimits(4))
	if err != nil {
		t.Fatal(err)
	}
	wantCtx := want.Steer(ctx).Queue
	if q, err := p.Run(quick); err != nil || q != 1 {
		t.Fatalf("with the rule path: queue %d (%v), want 1", q, err)
	}
	if q, err := p.Run(ctx); err != nil || q != uint32(wantCtx) {
		t.Fatalf("with the rule path: the context's frame on queue %d (%v), want %d", q, err, wantCtx)
	}
	if wantCtx == 3 {
		t.Fatal("the context's frame goes to queue 3 anyway: the test could not tell the unclassified queue from it")
	}
	if err := p.JumpMap.Delete(uint32(0)); err != nil {
		t.Fatal(err)
	}
	if q, err := p.Run(ctx); err != nil || q != 3 {
		t.Fatalf("without the rule path: the context's frame on queue %d (%v), want the unclassified queue 3", q, err)
	}
	if q, err := p.Run(quick); err != nil || q != 1 {
		t.Fatalf("without the rule path: the quick path's frame on queue %d (%v), want its rule's queue 1", q, err)
	}
	st, err := p.FlowStats()
	if err != nil {
		t.Fatal(err)
	}
	if st.NoRulePath != 1 {
		t.Errorf("NoRulePath %d, want 1", st.NoRulePath)
	}
}
