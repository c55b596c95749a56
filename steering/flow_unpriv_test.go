package steering

import (
	"errors"
	"net/netip"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/flow"
	"github.com/vrss-dev/vrss/internal/frame"
)

// unprivSet is what the unprivileged helper publishes: a queue rule, a
// context rule and a drop rule over config B.
func unprivSet() flow.Set {
	rule := func(id uint32, port uint16, a flow.Action) flow.Rule {
		var m flow.Match
		m.SetEtherType(0x0800, 0xffff)
		m.SetProto(6, 0xff)
		m.SetDstPort(port, 0xffff)
		return flow.Rule{ID: id, Group: 7, Priority: 3, Match: m, Action: a}
	}
	ctx := configA()
	ctx.Table = []uint16{5, 6}
	return flow.Set{
		Default:  configB(),
		Contexts: []flow.Context{{ID: 2, Config: ctx}},
		Groups:   []flow.Group{{ID: 7, Priority: 1, Host: true}},
		Rules: []flow.Rule{
			rule(1, 1001, flow.Action{Kind: flow.ActionQueue, Queue: 3}),
			rule(2, 1002, flow.Action{Kind: flow.ActionContext, Context: 2}),
			rule(3, 1003, flow.Action{Kind: flow.ActionDrop}),
		},
	}
}

// TestUnprivilegedPublishFlows hands the flow build's configuration map fd
// to a process running as nobody, without capabilities and with bpf()
// blocked, as vrssd hands it to a VMM applying its guest's flow filters;
// that process publishes a set with a queue rule, a context and a drop
// rule through mmap alone, and both programs obey it.
func TestUnprivilegedPublishFlows(t *testing.T) {
	p := loadProgram(t, FlowsDebug)
	pub := newPublisher(t, p)
	if err := pub.PublishSet(flow.Set{Default: configA()}); err != nil {
		t.Fatal(err)
	}
	runUnprivileged(t, "TestHelperProcessUnprivPublishFlows", nil, mapFile(t, p.ConfigMap.FD()))

	set := unprivSet()
	eng, err := flow.NewEngine(set, FlowLimits(0))
	if err != nil {
		t.Fatal(err)
	}
	frames := testFrames(2, 300)
	for i := 0; i < 300; i++ {
		frames = append(frames, frame.Build(frame.Spec{Src: netip.AddrFrom4([4]byte{10, 1, 0, byte(i)}), Dst: netip.MustParseAddr("192.0.2.1"),
			Proto: frame.ProtoTCP, SrcPort: uint16(2000 + i), DstPort: uint16(1001 + i%3)}))
	}
	var ruled, dropped int
	for i, f := range frames {
		want := eng.Steer(f)
		q, err := p.Run(f)
		if err != nil {
			t.Fatal(err)
		}
		got, err := p.LastFlowResult()
		if err != nil {
			t.Fatal(err)
		}
		fv, err := p.RunFilter(f)
		if err != nil {
			t.Fatal(err)
		}
		if want.Rule >= 0 {
			ruled++
		}
		if want.Drop {
			dropped++
		}
		if (fv == FilterDrop) != want.Drop || got.HasRule != (want.Rule >= 0) || !want.Drop && (q != uint32(want.Queue) || got.Hash != want.Hash || got.Context != want.Context) {
			t.Errorf("frame %d %x: program %d %+v filter %d, engine %+v", i, f, q, got, fv, want)
		}
	}
	if ruled < 300 || dropped < 100 {
		t.Errorf("%d frames matched a rule, %d dropped: the set did not take effect", ruled, dropped)
	}
	back, err := pub.Set()
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Rules) != 3 || len(back.Contexts) != 1 || back.Contexts[0].ID != 2 || !sameConfig(back.Default, configB()) {
		t.Errorf("set read back %+v", back)
	}
	t.Logf("after the unprivileged publish: %d of %d frames matched its rules, %d dropped by its drop rule", ruled, len(frames), dropped)
}

// TestHelperProcessUnprivPublishFlows is the child of
// TestUnprivilegedPublishFlows: with fd 3 the map, it publishes unprivSet.
func TestHelperProcessUnprivPublishFlows(t *testing.T) {
	if os.Getenv(helperEnv) != t.Name() {
		return
	}
	requireUnprivileged(t)
	denyBPFSyscall(t)
	if err := mapLookup(3); !errors.Is(err, unix.ENOSYS) {
		t.Fatalf("bpf(BPF_MAP_LOOKUP_ELEM) after the seccomp filter: %v, want ENOSYS", err)
	}
	pub, err := NewPublisher(3, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !pub.Flows() {
		t.Fatal("the map was not recognized as the flow build's")
	}
	if err := pub.PublishSet(unprivSet()); err != nil {
		t.Fatal(err)
	}
	if err := pub.Close(); err != nil {
		t.Fatal(err)
	}
	os.Exit(0)
}
