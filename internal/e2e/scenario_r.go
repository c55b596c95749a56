package e2e

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/agent/client"
	"github.com/vrss-dev/vrss/flow"
	"github.com/vrss-dev/vrss/internal/demo"
	"github.com/vrss-dev/vrss/internal/frame"
	"github.com/vrss-dev/vrss/internal/inject"
	"github.com/vrss-dev/vrss/qemu"
	"github.com/vrss-dev/vrss/rss"
	"github.com/vrss-dev/vrss/steering"
)

// Scenario R's names, ports and sizes.
const (
	rTAP = "vrsse2er0"
	// The rules: TCP to rPortQueue goes to rRuleQueue, UDP to
	// rPortContext to RSS context 1 (over queues 2 and 3, its own key and
	// a 3:1 table), TCP to rPortDrop nowhere; all IPv4 only.
	rPortQueue, rPortContext, rPortDrop = 5001, 5002, 5003
	rRuleQueue                          = 1
	rContext                            = 1
)

// rClass is one kind of traffic scenario R sends.
type rClass struct {
	Name    string // as the report shows it
	Flows   int
	PerFlow int
	// Expected[q] are the frames the engine sends to queue q; Dropped
	// the frames it drops.
	Expected []uint64
	Dropped  int
}

// FlowReport is scenario R's outcome.
type FlowReport struct {
	guestRun
	// Set is the flow set the host installs.
	Set flow.Set
	// Steps are the platform's calls to vrssd (root, agent/client), each
	// with what it answered.
	Steps []string
	// Installed says whether the set vrssd installed, read back through
	// it before the guest starts, gives every frame the predicted
	// verdict; ReadBack the same at the end.
	Installed, ReadBack string
	// Exec is the VMM user's `vrss qemu exec` command.
	Exec string
	// QEMUPid and QEMUFDs are QEMU's process and the descriptors through
	// which it holds the TAP's queues (inherited from vrss qemu exec).
	QEMUPid int
	QEMUFDs []int
	// Steering is every detach of the steering program by QEMU until the
	// probe and vrssd's re-attachment (kernel trace), times from
	// QEMUStart; TraceErr says why there is no trace.
	Steering           []steerGap
	QEMUStart, ProbeAt time.Duration
	TraceErr           string
	// ProbeSent frames were sent as soon as the guest was READY; the
	// steering program ran ProbeRuns times on them: all of them, if
	// vrssd had attached it again.
	ProbeSent int
	ProbeRuns uint64
	// Reattached is vrssd's count of detaches it found by frames the
	// program missed, at the end.
	Reattached uint64
	// GuestRSS is what the guest's attempt to set its own RSS
	// configuration (ethtool -X) answered.
	GuestRSS string
	// Classes are the traffic kinds sent, with the engine's prediction.
	Classes []rClass
	// Sent frames in all, Kept of them the engine steers to a queue,
	// DropSent it drops.
	Sent, Kept, DropSent int
	// Refused counts the sends that failed with ENOBUFS (the filter
	// dropped the frame); BadSends describes every send that did not do
	// what the engine predicts (a dropped frame accepted, a kept frame
	// refused).
	Refused  int
	BadSends []string
	// Expected, Observed and Program are per queue: the engine's
	// prediction, the deltas of the guest's rx_queue_N_packets, and of
	// the steering program's per-queue counters.
	Expected, Observed, Program []uint64
	// Delivered and TapDropped are the TAP's tx_packets and tx_dropped
	// deltas.
	Delivered, TapDropped uint64
	// FilterDropped and Raced are the deltas of the flow counters: frames
	// the filter dropped, frames the steering program found a drop rule
	// for.
	FilterDropped, Raced uint64
	// RuleHits are the rules' counted and predicted hits, by rule id.
	RuleHits []rRuleHits
	// ContextCounted and ContextExpected are RSS context rContext's
	// per-queue frames, counted by vrssd and predicted.
	ContextCounted, ContextExpected []uint64
	Elapsed                         time.Duration
	// Prepare, Boot and Total are wall times.
	Prepare, Boot, Total time.Duration
}

type rRuleHits struct {
	ID               uint32
	Action           string
	Counted, Predict uint64
}

// OK reports whether vrssd installed the set and kept it, steering was
// back at READY, the guest saw exactly the predicted histogram, the
// program and its counters agree, and the dropped frames were refused,
// counted and never arrived.
func (r *FlowReport) OK() bool {
	if r.Sent == 0 || !strings.HasPrefix(r.Installed, "the same") || !strings.HasPrefix(r.ReadBack, "the same") {
		return false
	}
	if _, closed := maxMissing(r.Steering); !closed || r.ProbeSent == 0 || r.ProbeRuns != uint64(r.ProbeSent) {
		return false
	}
	if !slices.Equal(r.Expected, r.Observed) || !slices.Equal(r.Expected, r.Program) {
		return false
	}
	if r.Delivered != uint64(r.Kept) || r.TapDropped != 0 || len(r.BadSends) != 0 {
		return false
	}
	if r.DropSent == 0 || r.Refused != r.DropSent || r.FilterDropped != uint64(r.DropSent) || r.Raced != 0 {
		return false
	}
	for _, h := range r.RuleHits {
		if h.Counted != h.Predict {
			return false
		}
	}
	return slices.Equal(r.ContextCounted, r.ContextExpected)
}

// FlowSet is scenario R's flow set for a TAP with queues queues (at least
// 4): RSS over every queue (the Microsoft key, all hash types, an equal
// 128-entry table) for what no rule matches; in one host group, a rule
// sending IPv4 TCP to port 5001 to queue 1, one sending IPv4 UDP to port
// 5002 to RSS context 1 (queues 2 and 3 in a 3:1 table, all hash types,
// a random 40-byte key from seed), and one dropping IPv4 TCP to port 5003.
func FlowSet(queues int, seed uint64) flow.Set {
	r := rand.New(rand.NewPCG(seed, 0x72756c65))
	key := make([]byte, 40)
	for i := range key {
		key[i] = byte(r.Uint32())
	}
	rule := func(id uint32, proto uint8, port uint16, a flow.Action) flow.Rule {
		return flow.PortRule(id, 1, 0x0800, proto, port, a)
	}
	return flow.Set{
		Default: demo.DefaultConfig(queues),
		Contexts: []flow.Context{{ID: rContext, Config: rss.Config{
			HashTypes: rss.AllHashTypes, Key: key, Table: []uint16{2, 2, 2, 3}, UnclassifiedQueue: 2,
		}}},
		Groups: []flow.Group{{ID: 1, Priority: 1, Host: true}},
		Rules: []flow.Rule{
			rule(1, frame.ProtoTCP, rPortQueue, flow.Action{Kind: flow.ActionQueue, Queue: rRuleQueue}),
			rule(2, frame.ProtoUDP, rPortContext, flow.Action{Kind: flow.ActionContext, Context: rContext}),
			rule(3, frame.ProtoTCP, rPortDrop, flow.Action{Kind: flow.ActionDrop}),
		},
	}
}

// rPlan is scenario R's traffic: the frames in the order sent, each
// frame's class and verdict.
type rPlan struct {
	frames   [][]byte
	class    []int
	verdicts []flow.Verdict
	classes  []rClass
}

// flowTraffic builds scenario R's frames from seed and predicts them with
// eng: plain RSS traffic (demo.Frames: every hash type, VLANs, fragments,
// extension headers, unclassified frames); near misses of the rules (IPv6
// to the rules' ports, the other protocol on IPv4), which RSS steers;
// TCP to 5001 (queue rule); UDP to 5002 from many source ports (context);
// TCP to 5003 (drop). The frames are shuffled, so the dropped ones are
// spread among the others. It checks that the engine does with each class
// what the set means, so that a wrong set cannot pass unnoticed.
func flowTraffic(eng *flow.Engine, queues int, seed uint64) (*rPlan, error) {
	r := rand.New(rand.NewPCG(seed, 0x72747266))
	dst4, dst6 := netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("2001:db8::10")
	flows := func(n, per int, spec func(i int) frame.Spec) [][]byte {
		var out [][]byte
		for i := 0; i < n; i++ {
			s := spec(i)
			for j := 0; j < per; j++ {
				s.Payload = 16 + j
				out = append(out, frame.Build(s))
			}
		}
		return out
	}
	src4 := func() netip.Addr { return frame.RandomAddr4(r) }
	src6 := func() netip.Addr { return frame.RandomAddr6(r) }
	sport := func() uint16 { return uint16(1024 + r.IntN(60000)) }
	type class struct {
		name      string
		flows, pf int
		frames    [][]byte
	}
	nearMiss := func(i int) frame.Spec {
		switch i % 4 {
		case 0:
			return frame.Spec{Src: src6(), Dst: dst6, Proto: frame.ProtoTCP, SrcPort: sport(), DstPort: rPortDrop}
		case 1:
			return frame.Spec{Src: src4(), Dst: dst4, Proto: frame.ProtoUDP, SrcPort: sport(), DstPort: rPortDrop}
		case 2:
			return frame.Spec{Src: src4(), Dst: dst4, Proto: frame.ProtoTCP, SrcPort: sport(), DstPort: rPortContext}
		}
		return frame.Spec{Src: src6(), Dst: dst6, Proto: frame.ProtoUDP, SrcPort: sport(), DstPort: rPortQueue}
	}
	// The context's flows differ in their source port only (and one
	// address per ten flows): RSS over the context's key spreads them.
	ctxSrc := src4()
	cs := []class{
		{name: "plain RSS (demo kinds)", flows: 100, pf: 10, frames: demo.Frames(100, 10, seed|1)},
		{name: "near misses (RSS)", flows: 40, pf: 5, frames: flows(40, 5, nearMiss)},
		{name: fmt.Sprintf("tcp4 :%d -> queue %d", rPortQueue, rRuleQueue), flows: 30, pf: 10, frames: flows(30, 10, func(int) frame.Spec {
			return frame.Spec{Src: src4(), Dst: dst4, Proto: frame.ProtoTCP, SrcPort: sport(), DstPort: rPortQueue}
		})},
		{name: fmt.Sprintf("udp4 :%d -> context %d", rPortContext, rContext), flows: 200, pf: 3, frames: flows(200, 3, func(i int) frame.Spec {
			if i%10 == 9 {
				ctxSrc = src4()
			}
			return frame.Spec{Src: ctxSrc, Dst: dst4, Proto: frame.ProtoUDP, SrcPort: uint16(20000 + 97*i + r.IntN(97)), DstPort: rPortContext}
		})},
		{name: fmt.Sprintf("tcp4 :%d -> drop", rPortDrop), flows: 40, pf: 5, frames: flows(40, 5, func(int) frame.Spec {
			return frame.Spec{Src: src4(), Dst: dst4, Proto: frame.ProtoTCP, SrcPort: sport(), DstPort: rPortDrop}
		})},
	}
	p := &rPlan{}
	for ci, c := range cs {
		rc := rClass{Name: c.name, Flows: c.flows, PerFlow: c.pf, Expected: make([]uint64, queues)}
		for _, f := range c.frames {
			v := eng.Steer(f)
			if v.Drop {
				rc.Dropped++
			} else {
				rc.Expected[int(v.Queue)%queues]++ // tun takes the program's answer modulo the queues
			}
			p.frames, p.class, p.verdicts = append(p.frames, f), append(p.class, ci), append(p.verdicts, v)
		}
		p.classes = append(p.classes, rc)
	}
	// What the set means, class by class.
	for i, v := range p.verdicts {
		bad := ""
		switch p.class[i] {
		case 1:
			if v.Rule >= 0 {
				bad = "a near miss matched a rule"
			}
		case 2:
			if v.Drop || v.Queue != rRuleQueue || v.Rule != 0 {
				bad = "not sent to the queue rule's queue"
			}
		case 3:
			if v.Drop || v.Context != rContext || (v.Queue != 2 && v.Queue != 3) {
				bad = "not steered by the context over queues 2 and 3"
			}
		case 4:
			if !v.Drop {
				bad = "not dropped"
			}
		}
		if bad != "" {
			return nil, fmt.Errorf("e2e: scenario R's frame %d (%s): %s: %+v", i, p.classes[p.class[i]].Name, bad, v)
		}
	}
	if c := p.classes[3].Expected; c[2] == 0 || c[3] == 0 {
		return nil, fmt.Errorf("e2e: scenario R's context flows all land on one queue (%v): pick other ports", c)
	}
	perm := r.Perm(len(p.frames))
	sh := &rPlan{classes: p.classes}
	for _, i := range perm {
		sh.frames, sh.class, sh.verdicts = append(sh.frames, p.frames[i]), append(sh.class, p.class[i]), append(sh.verdicts, p.verdicts[i])
	}
	return sh, nil
}

// RunFlows runs scenario R: flow rules and an RSS context on the TAP of a
// real guest, through vrss as a platform would use it. In a fresh network
// namespace a vrssd of the test's own (as in scenarios A and B) creates,
// at the platform's request (root, through vrssd's client library:
// agent/client), a TAP with flows for the unprivileged user
// (Options.VMMUID): the flow build of the steering program, with its
// filter that drops at the TAP's tc egress. The platform sets the
// default configuration (SetRSS), adds the RSS context (RSSContextAdd)
// and the rules (FlowAdd) of FlowSet, and reads the whole set back
// (GetRSS, FlowList, RSSContexts): it must give every frame the verdict
// the prediction uses. (The vrss CLI has no flow commands yet; the client
// calls are what they will send.) The user starts QEMU (bookworm's 7.2 by
// default) with `vrss qemu exec --tap NAME`, as in scenario A: QEMU 7.2
// detaches the steering program at the guest's MQ commands and vrssd
// attaches it again by itself; frames sent at READY must all be steered.
// QEMU offers no VIRTIO_NET_F_RSS (no rss=on), so the guest has no RSS
// configuration of its own that could replace the host's: its ethtool -X
// fails, and the set is read back again at the end.
//
// The harness injects the frames of flowTraffic with AF_PACKET, one send
// each: a dropped frame's send must fail with ENOBUFS (the packet socket
// reports the filter's drop), every other must succeed. The deltas of the
// guest's rx_queue_N_packets and of the program's per-queue counters
// (vrssd's stats) must equal flow.Engine's prediction exactly, which
// excludes the dropped frames; the TAP must have passed exactly the kept
// frames to QEMU; vrssd's drop counter must equal the dropped frames, its
// rule hits and the context's per-queue frames the engine's.
func RunFlows(o Options) (*FlowReport, error) {
	start := time.Now()
	o.defaults()
	if o.Queues < 4 {
		return nil, fmt.Errorf("e2e: scenario R needs at least 4 queues (its context is over queues 2 and 3), have %d", o.Queues)
	}
	rep := &FlowReport{guestRun: newGuestRun(o, rTAP),
		Set: FlowSet(o.Queues, o.Seed)}
	eng, err := flow.NewEngine(rep.Set, steering.FlowLimits(o.Queues))
	if err != nil {
		return nil, fmt.Errorf("e2e: scenario R's set: %w", err)
	}
	plan, err := flowTraffic(eng, o.Queues, o.Seed)
	if err != nil {
		return nil, err
	}
	err = prepared(o, "r", func(a *Assets) error { rep.Assets = a; return nil }, func(w *workDir) error {
		rep.Prepare = time.Since(start)
		return runFlows(o, w, rep, plan)
	})
	rep.Total = time.Since(start)
	return rep, err
}

func runFlows(o Options, w *workDir, rep *FlowReport, plan *rPlan) error {
	vd, err := startVRSSD(w, o.VMMUID)
	if err != nil {
		return err
	}
	defer vd.stop()
	fail := vd.fail
	ctx := context.Background()
	c, err := client.Dial(ctx, w.socket)
	if err != nil {
		return fail(err)
	}
	defer c.Close()
	step := func(format string, args ...any) {
		s := fmt.Sprintf(format, args...)
		rep.Steps = append(rep.Steps, s)
		fmt.Fprintf(o.Log, "e2e: R: %s\n", s)
	}

	// The platform (root, through vrssd's client library) makes the TAP
	// with flows for the VMM's user and installs the set: the default
	// configuration, the context, then the rules.
	uid := o.VMMUID
	info, err := c.Create(ctx, api.CreateArgs{Name: rTAP, Queues: o.Queues, OwnerUID: &uid, OwnerGID: &uid, Flows: true})
	if err != nil {
		return fail(err)
	}
	step("Create{%s, %d queues, owner %d:%d, Flows} -> flows %v, configuration map %d bytes", rTAP, o.Queues, uid, uid, info.Flows, info.MapBytes)
	if !info.Flows {
		return fail(fmt.Errorf("e2e: vrssd created %s without flows", rTAP))
	}
	link, err := tapLink(rTAP)
	if err != nil {
		return err
	}
	index := link.Attrs().Index
	set := rep.Set
	if _, err := c.SetRSS(ctx, rTAP, set.Default); err != nil {
		return fail(err)
	}
	step("SetRSS(default: %s, key %s…, %d-entry table %s)", set.Default.HashTypes, hex.EncodeToString(set.Default.Key[:4]),
		len(set.Default.Table), tableShares(set.Default.Table, o.Queues))
	for _, cx := range set.Contexts {
		ci, err := c.RSSContextAdd(ctx, rTAP, cx.ID, cx.Config)
		if err != nil {
			return fail(err)
		}
		step("RSSContextAdd(%d: key %s…, table %v, unclassified %d) -> context %d", cx.ID, hex.EncodeToString(cx.Config.Key[:4]), cx.Config.Table, cx.Config.UnclassifiedQueue, ci.ID)
	}
	for _, r := range set.Rules {
		g, _ := groupOf(set, r.Group)
		ri, err := c.FlowAdd(ctx, rTAP, r, false, &g.Priority)
		if err != nil {
			return fail(err)
		}
		step("FlowAdd(rule %d in host group %d, priority %d: %s -> %s) -> rule %d stored: %s", r.ID, r.Group, g.Priority, r.Match.String(), r.Action, ri.ID, ri.Action)
	}
	// What vrssd publishes must be the set the prediction uses.
	if rep.Installed, err = readBack(ctx, c, plan, set, o.Queues); err != nil {
		return fail(err)
	}
	if !strings.HasPrefix(rep.Installed, "the same") {
		return fail(fmt.Errorf("e2e: the set vrssd installed differs from scenario R's: %s", rep.Installed))
	}

	// QEMU runs as the TAP's owner through `vrss qemu exec`, as in
	// scenario A: the queue fds come from vrssd, and with no rss=on QEMU
	// neither offers RSS nor loads a program.
	cli := &vrssCLI{bin: w.vrss, socket: w.socket, uid: o.VMMUID}
	boot, shown := execBoot(o, w, rep.Assets, rTAP, "console-r.log")
	tr, err := startSteerTrace()
	if err != nil {
		rep.TraceErr = err.Error()
	} else {
		defer tr.Close()
	}
	fmt.Fprintf(o.Log, "e2e: R: booting %s with %s as uid %d through vrss qemu exec (TCG, %d vCPUs)\n", rep.Assets.KernelRelease, boot.QEMU, o.VMMUID, o.CPUs)
	bootStart := time.Now()
	rep.QEMUStart = monotonic()
	g, err := Boot(boot)
	if err != nil {
		return fail(err)
	}
	defer g.Close()
	rep.Boot = time.Since(bootStart)
	rep.Release = g.Release
	rep.Exec = cli.line(shown...)
	fmt.Fprintf(o.Log, "e2e: R: uid %d: %s; guest READY after %v\n", o.VMMUID, rep.Exec, rep.Boot.Round(time.Millisecond))

	rep.QEMUPid = g.Pid()
	if uid, err := processUID(rep.QEMUPid); err != nil {
		return err
	} else if uid != o.VMMUID {
		return fmt.Errorf("e2e: QEMU (pid %d) runs as uid %d, want %d", rep.QEMUPid, uid, o.VMMUID)
	}
	if rep.QEMUFDs, err = tapFDs(rep.QEMUPid, rTAP); err != nil {
		return err
	}
	for q := range o.Queues {
		if !slices.Contains(rep.QEMUFDs, qemu.FirstFD+q) {
			return fmt.Errorf("e2e: QEMU (pid %d) holds %s's queues at fds %v, want %d from %d", rep.QEMUPid, rTAP, rep.QEMUFDs, o.Queues, qemu.FirstFD)
		}
	}
	if n, err := g.Channels(guestIface); err != nil {
		return err
	} else if n != o.Queues {
		return fmt.Errorf("e2e: guest has %d combined channels enabled, want %d", n, o.Queues)
	}
	inj, err := inject.Open(index)
	if err != nil {
		return err
	}
	defer inj.Close()

	// QEMU 7.2 detached the steering program at the guest's MQ commands
	// (probe, ethtool -L); vrssd attaches it again by itself, as in
	// scenario A. Frames sent at once must all run it. The filter is a
	// tcx link, which QEMU does not touch.
	probe := demo.Frames(probeFlows, probePerFlow, o.Seed|2)
	var p0, p1 api.Stats
	if p0, err = c.Stats(ctx, rTAP); err != nil {
		return fail(err)
	}
	probeAt := monotonic()
	if _, err := deliver(g, index, inj, probe, o.Queues); err != nil {
		return fmt.Errorf("e2e: probe after READY: %w", err)
	}
	if p1, err = c.Stats(ctx, rTAP); err != nil {
		return fail(err)
	}
	rep.ProbeSent, rep.ProbeRuns = len(probe), programRuns(p1)-programRuns(p0)
	if tr != nil {
		rep.Steering = steerGaps(tr.Events(100*time.Millisecond, rep.QEMUPid, vd.cmd.Process.Pid), rep.QEMUPid, vd.cmd.Process.Pid)
		rep.ProbeAt = probeAt - rep.QEMUStart
	}

	// The guest tries to set its own RSS configuration: without
	// VIRTIO_NET_F_RSS it has none.
	out, rc, err := g.Run("ethtool -X "+guestIface+" equal 2", time.Minute)
	if err != nil {
		return err
	}
	rep.GuestRSS = fmt.Sprintf("exit %d: %s", rc, strings.Join(strings.Fields(out), " "))

	s0, err := c.Stats(ctx, rTAP)
	if err != nil {
		return fail(err)
	}
	rep.Sent = len(plan.frames)
	// One send per frame: the packet socket reports the filter's drop
	// of that frame (NET_XMIT_DROP) as ENOBUFS.
	send := func(i, j int) (int, error) {
		accepted := 0
		for k := i; k < j; k++ {
			err := inj.Send(plan.frames[k])
			drop := plan.verdicts[k].Drop
			switch {
			case drop && errors.Is(err, unix.ENOBUFS):
				rep.Refused++
			case drop:
				rep.BadSends = append(rep.BadSends, fmt.Sprintf("frame %d (%s): the engine drops it, the send returned %v", k, plan.classes[plan.class[k]].Name, err))
			case err != nil:
				rep.BadSends = append(rep.BadSends, fmt.Sprintf("frame %d (%s): %v", k, plan.classes[plan.class[k]].Name, err))
			}
			if err == nil {
				accepted++
			}
		}
		return accepted, nil
	}
	dl, err := deliverSent(g, index, o.Queues, len(plan.frames), send)
	if err != nil {
		return err
	}
	rep.Observed, rep.Delivered, rep.TapDropped, rep.Elapsed = dl.observed, dl.delivered, dl.dropped, dl.elapsed
	s1, err := c.Stats(ctx, rTAP)
	if err != nil {
		return fail(err)
	}
	if len(s0.Queues) != o.Queues || len(s1.Queues) != o.Queues || s0.Flows == nil || s1.Flows == nil {
		return fail(fmt.Errorf("e2e: vrssd's stats for %s: %d queues (the TAP has %d), flow counters %v", rTAP, len(s1.Queues), o.Queues, s1.Flows != nil))
	}
	rep.Program = sub(s1.Queues, s0.Queues)

	rep.Expected = make([]uint64, o.Queues)
	rep.ContextExpected = make([]uint64, o.Queues)
	hits := map[[2]uint32]uint64{}
	for _, v := range plan.verdicts {
		if v.Rule >= 0 {
			r := set.Rules[v.Rule]
			hits[[2]uint32{r.Group, r.ID}]++
		}
		if v.Drop {
			rep.DropSent++
			continue
		}
		rep.Kept++
		rep.Expected[int(v.Queue)%o.Queues]++
		if v.Context == rContext {
			rep.ContextExpected[v.Queue]++
		}
	}
	f0, f1 := s0.Flows, s1.Flows
	rep.FilterDropped, rep.Raced = f1.Dropped-f0.Dropped, f1.Raced-f0.Raced
	before := map[[2]uint32]uint64{}
	for _, h := range f0.Rules {
		before[[2]uint32{h.Group, h.ID}] = h.Hits
	}
	for _, r := range set.Rules {
		k := [2]uint32{r.Group, r.ID}
		h := rRuleHits{ID: r.ID, Action: r.Action.String(), Predict: hits[k]}
		for _, x := range f1.Rules {
			if x.Group == r.Group && x.ID == r.ID {
				h.Counted = x.Hits - before[k]
			}
		}
		rep.RuleHits = append(rep.RuleHits, h)
	}
	frames := func(st *api.FlowStats) []uint64 {
		for _, cf := range st.Contexts {
			if cf.ID == rContext && len(cf.Frames) >= o.Queues {
				return cf.Frames[:o.Queues]
			}
		}
		return make([]uint64, o.Queues)
	}
	rep.ContextCounted = sub(frames(f1), frames(f0))

	// The set in force at the end, read back through vrssd, must still be
	// the one the prediction used.
	if rep.ReadBack, err = readBack(ctx, c, plan, set, o.Queues); err != nil {
		return fail(err)
	}
	if st, err := c.Stats(ctx, rTAP); err == nil {
		rep.Reattached = st.Reattached
	}
	rep.Classes = plan.classes
	return g.Shutdown(30 * time.Second)
}

// groupOf returns set's group id.
func groupOf(set flow.Set, id uint32) (flow.Group, bool) {
	for _, g := range set.Groups {
		if g.ID == id {
			return g, true
		}
	}
	return flow.Group{}, false
}

// readBack reads the TAP's whole set back through vrssd (GetRSS, FlowList,
// RSSContexts) and says whether it gives every frame of plan the verdict
// the prediction used (want): the same drop, queue, context and rule.
func readBack(ctx context.Context, c *client.Client, plan *rPlan, want flow.Set, queues int) (string, error) {
	st, err := c.GetRSS(ctx, rTAP)
	if err != nil {
		return "", err
	}
	if st.Config == nil {
		return "no default configuration", nil
	}
	fl, err := c.FlowList(ctx, rTAP)
	if err != nil {
		return "", err
	}
	cl, err := c.RSSContexts(ctx, rTAP, 0)
	if err != nil {
		return "", err
	}
	fs := api.FlowSet{Groups: fl.Groups}
	for _, r := range fl.Rules {
		fs.Rules = append(fs.Rules, r.FlowRule)
	}
	for _, cx := range cl.Contexts {
		fs.Contexts = append(fs.Contexts, api.RSSContext{ID: cx.ID, Config: cx.Config})
	}
	back, err := fs.Set(*st.Config)
	if err != nil {
		return "", err
	}
	be, err := flow.NewEngine(back, steering.FlowLimits(queues))
	if err != nil {
		return fmt.Sprintf("a set the engine refuses: %v", err), nil
	}
	diff := 0
	for i, f := range plan.frames {
		v, w := be.Steer(f), plan.verdicts[i]
		same := v.Drop == w.Drop && v.Queue == w.Queue && v.Context == w.Context && (v.Rule >= 0) == (w.Rule >= 0)
		if same && v.Rule >= 0 {
			same = back.Rules[v.Rule].ID == want.Rules[w.Rule].ID && back.Rules[v.Rule].Group == want.Rules[w.Rule].Group
		}
		if !same {
			diff++
		}
	}
	if diff > 0 {
		return fmt.Sprintf("%d of %d frames get another verdict (%d rules, %d contexts read back)", diff, len(plan.frames), len(back.Rules), len(back.Contexts)), nil
	}
	return fmt.Sprintf("the same verdict for all %d frames (%d rules, %d context, default configuration read back)", len(plan.frames), len(back.Rules), len(back.Contexts)), nil
}

// String is scenario R's report: the set, what the harness did, the
// traffic per class, and per queue the prediction by class against the
// guest's counters and the program's; then the drops.
func (r *FlowReport) String() string {
	var b strings.Builder
	a := r.Assets
	fmt.Fprintf(&b, "vrss e2e, scenario R (flow rules and an RSS context on a real guest's TAP, through vrssd: TAP with flows and the set installed by the platform with vrssd's client, QEMU unprivileged via vrss qemu exec)\n")
	if a != nil {
		a.writeHeader(&b, r.CPUs, r.UID, r.Release)
	}
	fmt.Fprintf(&b, "  virtio-net %d queue pairs on TAP %s; seed %d\n", r.Queues, r.Device, r.Seed)
	s := r.Set
	fmt.Fprintf(&b, "  set: default RSS: hash types %s, key %s…, %d-entry table %s, unclassified -> %d\n",
		s.Default.HashTypes, hex.EncodeToString(s.Default.Key[:8]), len(s.Default.Table), tableShares(s.Default.Table, r.Queues), s.Default.UnclassifiedQueue)
	for _, c := range s.Contexts {
		fmt.Fprintf(&b, "       RSS context %d: hash types %s, key %s…, %d-entry table %s, unclassified -> %d\n",
			c.ID, c.Config.HashTypes, hex.EncodeToString(c.Config.Key[:8]), len(c.Config.Table), tableShares(c.Config.Table, r.Queues), c.Config.UnclassifiedQueue)
	}
	for _, rl := range s.Rules {
		m := rl.Match
		fmt.Fprintf(&b, "       rule %d (host group %d): %s -> %s\n", rl.ID, rl.Group, m.String(), rl.Action)
	}
	if len(r.Steps) > 0 {
		fmt.Fprintf(&b, "  the platform (root) through vrssd's client (agent/client; the vrss CLI has no flow commands yet):\n")
		for _, st := range r.Steps {
			fmt.Fprintf(&b, "    %s\n", st)
		}
	}
	if r.Installed != "" {
		fmt.Fprintf(&b, "  the set vrssd installed, read back (GetRSS, FlowList, RSSContexts): %s\n", r.Installed)
	}
	if r.Exec != "" {
		fmt.Fprintf(&b, "  as uid %d: %s\n", r.UID, r.Exec)
	}
	if r.QEMUPid != 0 {
		fmt.Fprintf(&b, "  QEMU (pid %d, uid %d) holds %s's queues at fds %s, inherited from vrss qemu exec\n", r.QEMUPid, r.UID, r.Device, joinInts(r.QEMUFDs, " "))
	}
	if r.ProbeSent > 0 {
		switch {
		case r.TraceErr != "":
			fmt.Fprintf(&b, "  steering missing: not traced (%s)\n", r.TraceErr)
		default:
			fmt.Fprintf(&b, "  steering missing (QEMU 7.2 detaches the program at the guest's MQ commands; kernel trace, from QEMU's start): %s\n", describeGaps(r.Steering, r.QEMUStart))
		}
		verdict := "steering was back before the first frame"
		if r.ProbeRuns != uint64(r.ProbeSent) {
			verdict = fmt.Sprintf("%d frames went out unsteered", uint64(r.ProbeSent)-r.ProbeRuns)
		}
		fmt.Fprintf(&b, "  frames sent at READY: the steering program ran on %d of %d (%s); vrssd's stats: reattached %d\n", r.ProbeRuns, r.ProbeSent, verdict, r.Reattached)
	}
	if r.GuestRSS != "" {
		fmt.Fprintf(&b, "  guest: ethtool -X %s equal 2 -> %s (no rss=on: the guest cannot replace the host's configuration)\n", guestIface, r.GuestRSS)
	}
	if len(r.Classes) == 0 {
		return b.String()
	}
	fmt.Fprintf(&b, "\nR flows: sent %d frames, one send each, shuffled, in %v; TAP: %d read by QEMU, %d dropped by tun\n", r.Sent, r.Elapsed.Round(time.Millisecond), r.Delivered, r.TapDropped)
	for i, c := range r.Classes {
		fmt.Fprintf(&b, "  class %d: %-26s %3d flows x %2d frames", i+1, c.Name, c.Flows, c.PerFlow)
		if c.Dropped > 0 {
			fmt.Fprintf(&b, ", %d dropped", c.Dropped)
		}
		fmt.Fprintln(&b)
	}
	fmt.Fprintf(&b, "  queue")
	for i := range r.Classes {
		fmt.Fprintf(&b, "  class%d", i+1)
	}
	fmt.Fprintf(&b, "  predicted  measured   program  (engine by class; engine; guest's rx_queue_N_packets; vrssd's stats)\n")
	row := func(label string, cls []uint64, exp, obs, prog uint64, mark string) {
		fmt.Fprintf(&b, "  %5s", label)
		for _, c := range cls {
			fmt.Fprintf(&b, "  %6d", c)
		}
		fmt.Fprintf(&b, "  %9d  %8d  %8d%s\n", exp, obs, prog, mark)
	}
	var totals = make([]uint64, len(r.Classes))
	for q := 0; q < r.Queues; q++ {
		cls := make([]uint64, len(r.Classes))
		for i, c := range r.Classes {
			cls[i] = c.Expected[q]
			totals[i] += c.Expected[q]
		}
		mark := ""
		if r.Observed[q] != r.Expected[q] || r.Program[q] != r.Expected[q] {
			mark = "  <- differs"
		}
		row(fmt.Sprint(q), cls, r.Expected[q], r.Observed[q], r.Program[q], mark)
	}
	row("total", totals, sum(r.Expected), sum(r.Observed), sum(r.Program), "")
	var dropped []uint64
	for _, c := range r.Classes {
		dropped = append(dropped, uint64(c.Dropped))
	}
	row("drop", dropped, uint64(r.DropSent), 0, 0, "")
	fmt.Fprintf(&b, "  drops: %d frames the engine drops; %d sends refused with ENOBUFS; vrssd's drop counter %d (raced to the steering program: %d); the guest received %d frames in all, the %d kept\n",
		r.DropSent, r.Refused, r.FilterDropped, r.Raced, sum(r.Observed), r.Kept)
	for _, bs := range r.BadSends {
		fmt.Fprintf(&b, "    %s\n", bs)
	}
	var hs []string
	for _, h := range r.RuleHits {
		hs = append(hs, fmt.Sprintf("rule %d (%s) %d/%d", h.ID, h.Action, h.Counted, h.Predict))
	}
	fmt.Fprintf(&b, "  rule hits (vrssd's stats / engine): %s\n", strings.Join(hs, ", "))
	fmt.Fprintf(&b, "  RSS context %d per queue (vrssd's stats / engine): %v / %v\n", rContext, r.ContextCounted, r.ContextExpected)
	fmt.Fprintf(&b, "  the set in force at the end, read back through vrssd: %s\n", r.ReadBack)
	if r.OK() {
		fmt.Fprintf(&b, "  PASS\n")
	} else {
		fmt.Fprintf(&b, "  FAIL\n")
	}
	writeEnd(&b, "boot", r.Prepare, r.Boot, r.Total, r.OK())
	return b.String()
}
