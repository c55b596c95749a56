package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/ethtool"
	"github.com/vrss-dev/vrss/ethtool/ethtooltest"
	"github.com/vrss-dev/vrss/internal/fd"
	"github.com/vrss-dev/vrss/internal/privtest"
	"github.com/vrss-dev/vrss/port"
)

// The --slice tests run vrssd in-process, as root, with real AF_XDP ports
// (program, XSKMAP, pins, attach) on a 4-queue veth in a throwaway named
// network namespace, and with ethtooltest.Model in place of the veth's
// ethtool driver (Options.Ethtool): veth has no RSS contexts, and no NIC
// on these machines has. They prove vrssd's bookkeeping against a model of
// a capable driver, not a driver. The refusal of a real veth is
// TestAFXDPSliceRefusedOnVeth (agent_test, a vrssd process).

// errKilled is what the model panics with at the step a test kills
// vrssd at: the panic unwinds the request as a SIGKILL would end it, and
// nothing vrssd runs on the way undoes what the kernel, the record or the
// pins hold.
var errKilled = errors.New("killed at this step")

var sliceNetnsSeq atomic.Int32

type sliceEnv struct {
	t      *testing.T
	f      *fakeDaemon
	m      *ethtooltest.Model
	ns     string // the namespace's path
	handle netns.NsHandle
	// killAt is the model observation (1-based) at which vrssd is killed;
	// 0: never. seen counts the observations; killedAt says where.
	killAt, seen int
	killedAt     string
}

const sliceDev = "slin"

func newSliceEnv(t *testing.T) *sliceEnv {
	t.Helper()
	for _, what := range []string{"root", "bpf", "netns"} {
		privtest.Require(t, what)
	}
	e := &sliceEnv{t: t, m: ethtooltest.NewModel()}
	e.m.Dev, e.m.RingCount = sliceDev, 4
	e.m.Observe = e.observe
	name := fmt.Sprintf("vrss-slice-%d-%d", os.Getpid(), sliceNetnsSeq.Add(1))
	e.ns = filepath.Join("/var/run/netns", name)
	func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		orig, err := netns.Get()
		if err != nil {
			t.Fatal(err)
		}
		defer orig.Close()
		if e.handle, err = netns.NewNamed(name); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := netns.Set(orig); err != nil {
				panic(err)
			}
		}()
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "slout", NumTxQueues: 4, NumRxQueues: 4}, PeerName: sliceDev, PeerNumTxQueues: 4, PeerNumRxQueues: 4}
		if err := netlink.LinkAdd(v); err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"slout", sliceDev} {
			l, err := netlink.LinkByName(n)
			if err == nil {
				err = netlink.LinkSetUp(l)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}()
	dir, err := os.MkdirTemp("", "vrssd-slice-")
	if err != nil {
		t.Fatal(err)
	}
	e.f = &fakeDaemon{t: t, logs: &logBuffer{}}
	e.f.opts = Options{
		Socket: filepath.Join(dir, "run", "vrss.sock"), StateDir: filepath.Join(dir, "state"), BPFFSDir: filepath.Join(dir, "bpf"),
		Logger:  slog.New(slog.NewTextHandler(e.f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Version: "slice-test",
		Ethtool: func(dev string) ethtool.Driver {
			if dev != sliceDev {
				t.Errorf("vrssd asked for the ethtool driver of %q", dev)
			}
			return e.m
		},
	}
	t.Cleanup(func() {
		e.f.stop()
		if t.Failed() {
			t.Logf("vrssd's log:\n%s", e.f.logs)
		}
		// vrssd's bpf filesystems: its pins, and the owners' map pins
		// beside its socket (unmounted by vrssd itself when it stops,
		// unless a test failed before it could).
		unix.Unmount(e.f.opts.BPFFSDir, unix.MNT_DETACH)
		unix.Unmount(filepath.Join(filepath.Dir(e.f.opts.Socket), "xsk"), unix.MNT_DETACH)
		e.handle.Close()
		netns.DeleteNamed(name)
		os.RemoveAll(dir)
	})
	e.f.start()
	return e
}

func (e *sliceEnv) observe(op string, after bool) {
	e.seen++
	if e.seen == e.killAt {
		e.killedAt = fmt.Sprintf("before %s", op)
		if after {
			e.killedAt = fmt.Sprintf("after %s", op)
		}
		panic(errKilled)
	}
}

// call makes a request as root; killed says the model killed vrssd
// during it.
func (e *sliceEnv) call(op api.Op, args any) (resp *api.Response, killed bool) {
	e.t.Helper()
	defer func() {
		if r := recover(); r != nil {
			if r != errKilled {
				panic(r)
			}
			killed = true
		}
	}()
	resp, out := e.f.call(rootPeer, op, args)
	fd.CloseAll(out)
	return resp, false
}

// restart stops vrssd (as after a SIGKILL: the shutdown closes
// descriptors only) and starts a new one on the same directories, bpffs
// and model.
func (e *sliceEnv) restart() {
	e.t.Helper()
	e.killAt = 0
	e.f.restart()
}

func (e *sliceEnv) create(name string) api.AFXDPPort {
	e.t.Helper()
	var p api.AFXDPPort
	e.f.do(rootPeer, api.OpAFXDPCreate, api.AFXDPCreateArgs{Name: name, Dev: sliceDev, QueueStart: 1, Queues: 2, Netns: e.ns, Slice: true}, &p)
	return p
}

func (e *sliceEnv) show(name string) api.AFXDPPort {
	e.t.Helper()
	var p api.AFXDPPort
	e.f.do(rootPeer, api.OpAFXDPShow, api.NameArgs{Name: name, Netns: e.ns}, &p)
	return p
}

func (e *sliceEnv) setPolicy(name string, prefixes ...string) *api.Response {
	e.t.Helper()
	r, _ := e.call(api.OpPortSet, api.PortSetArgs{Name: name, Netns: e.ns, Policy: slicePolicy(prefixes...)})
	return r
}

// slicePolicy allows one MAC and the prefixes given.
func slicePolicy(prefixes ...string) port.Policy {
	pol := port.Policy{MACs: []port.MAC{{0x52, 0x54, 0, 0, 0, 7}}, Default: port.Allow}
	for _, s := range prefixes {
		p := netip.MustParsePrefix(s)
		if p.Addr().Is4() {
			pol.IPv4 = append(pol.IPv4, p)
		} else {
			pol.IPv6 = append(pol.IPv6, p)
		}
	}
	return pol
}

// record reads the record of port name, nil if there is none.
func (e *sliceEnv) record(name string) *afxdpRecord {
	e.t.Helper()
	paths, _ := filepath.Glob(filepath.Join(e.f.opts.StateDir, afxdpDir, "*.json"))
	for _, p := range paths {
		r, err := readAFXDP(p)
		if err != nil {
			e.t.Fatal(err)
		}
		if r != nil && r.Name == name {
			return r
		}
	}
	return nil
}

// leftovers says what of a port is left besides the model: records,
// pins, an XDP program on the device.
func (e *sliceEnv) leftovers() []string {
	e.t.Helper()
	var left []string
	paths, _ := filepath.Glob(filepath.Join(e.f.opts.StateDir, afxdpDir, "*.json"))
	for _, p := range paths {
		left = append(left, "record "+filepath.Base(p))
	}
	pins, _ := filepath.Glob(filepath.Join(e.f.opts.BPFFSDir, afxdpDir, "*"))
	for _, p := range pins {
		left = append(left, "pins "+filepath.Base(p))
	}
	if e.xdpAttached() {
		left = append(left, "an XDP program on "+sliceDev)
	}
	return left
}

func (e *sliceEnv) xdpAttached() bool {
	e.t.Helper()
	h, err := netlink.NewHandleAt(e.handle)
	if err != nil {
		e.t.Fatal(err)
	}
	defer h.Close()
	l, err := h.LinkByName(sliceDev)
	if err != nil {
		e.t.Fatal(err)
	}
	x := l.Attrs().Xdp
	return x != nil && x.Attached
}

// ruleOf is the prefix a rule of vrssd's shape matches.
func ruleOf(r ethtool.Rule) netip.Prefix {
	ones := 0
	for _, b := range r.DstMask.AsSlice() {
		for ; b != 0; b <<= 1 {
			ones++
		}
	}
	return netip.PrefixFrom(r.Dst, ones)
}

// modelRules are the model's rules into ctx, location → prefix.
func (e *sliceEnv) modelRules(ctx uint32) map[uint32]string {
	out := map[uint32]string{}
	for loc, r := range e.m.Rules {
		if r.Type&ethtool.FlowRSS != 0 && r.Context == ctx {
			out[loc] = ruleOf(r).String()
		}
	}
	return out
}

// wantSlice checks that port name's slice, as show reports it, is its
// context over queues 1-2 with exactly one rule per prefix, and that the
// model holds exactly those rules into that context.
func (e *sliceEnv) wantSlice(name string, prefixes ...string) api.AFXDPSlice {
	e.t.Helper()
	p := e.show(name)
	if p.Slice == nil || p.Slice.Context == 0 {
		e.t.Fatalf("%s: no slice: %+v", name, p)
	}
	sl := *p.Slice
	if !reflect.DeepEqual(e.m.Contexts[sl.Context], ethtool.EqualTable(e.m.TableSize, 1, 2)) {
		e.t.Errorf("context %d: table %v, want queues 1-2", sl.Context, e.m.Contexts[sl.Context])
	}
	shown := map[uint32]string{}
	for _, r := range sl.Rules {
		shown[r.Location] = r.Prefix
	}
	if got := e.modelRules(sl.Context); !reflect.DeepEqual(got, shown) {
		e.t.Errorf("rules into context %d: model %v, shown %v", sl.Context, got, shown)
	}
	got := slices.Sorted(maps.Values(shown))
	want := slices.Sorted(slices.Values(prefixes))
	if !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
		e.t.Errorf("rules for %v, want %v", got, want)
	}
	return sl
}

// strangers puts someone else's objects in the model: a context (id 1)
// with a rule of vrssd's shape into it, and a rule to a queue. vrssd must
// never touch them.
func (e *sliceEnv) strangers() func() {
	e.m.Contexts[e.m.Next] = ethtool.EqualTable(e.m.TableSize, 0, 1)
	ctx := e.m.Next
	e.m.Next++
	theirs, _ := ethtool.DestinationRule(netip.MustParsePrefix("10.1.0.5/32"), ctx, 0)
	e.m.Rules[0] = theirs
	e.m.Rules[1] = ethtool.Rule{Type: ethtool.TCPv4Flow, Queue: 3, Location: 1}
	want := e.m.Clone()
	return func() {
		e.t.Helper()
		if !reflect.DeepEqual(e.m.Contexts[ctx], want.Contexts[ctx]) || e.m.Rules[0] != want.Rules[0] || e.m.Rules[1] != want.Rules[1] {
			e.t.Errorf("someone else's context or rules changed: contexts %v, rules %v", e.m.Contexts, e.m.Rules)
		}
	}
}

// TestAFXDPSliceModel: a port created with --slice on a capable driver
// (the model) gets an RSS context over its queues; setting, changing and
// clearing its policy makes, keeps and deletes one rule per prefix; a
// refused change leaves the rules and the policy as they were; the slice
// survives a restart; delete refuses while someone else's rule uses the
// context, and then removes everything, after a restart too. Someone
// else's context and rules are never touched.
func TestAFXDPSliceModel(t *testing.T) {
	e := newSliceEnv(t)
	untouched := e.strangers()

	p := e.create("xs0")
	if p.Slice == nil || p.Slice.Context != 2 || len(p.Slice.Rules) != 0 || !p.Attached {
		t.Fatalf("created: %+v %+v", p, p.Slice)
	}
	if r := e.record("xs0"); r == nil || r.Slice == nil || r.Slice.State != sliceReady || r.Slice.Context != 2 {
		t.Fatalf("record: %+v", r)
	}
	e.wantSlice("xs0")

	if r := e.setPolicy("xs0", "10.1.0.5/32", "fd00:5::/64"); r.Error != nil {
		t.Fatal(r.Error)
	}
	sl := e.wantSlice("xs0", "10.1.0.5/32", "fd00:5::/64")
	loc5 := sl.Rules[0].Location

	// Changed: 10.1.0.5 keeps its rule, fd00:5::/64 loses its own,
	// 10.1.0.6 and 10.2.0.0/24 get theirs.
	if r := e.setPolicy("xs0", "10.1.0.5/32", "10.1.0.6/32", "10.2.0.0/24"); r.Error != nil {
		t.Fatal(r.Error)
	}
	sl = e.wantSlice("xs0", "10.1.0.5/32", "10.1.0.6/32", "10.2.0.0/24")
	if !slices.ContainsFunc(sl.Rules, func(r api.AFXDPSliceRule) bool { return r.Location == loc5 && r.Prefix == "10.1.0.5/32" }) {
		t.Errorf("the rule for 10.1.0.5 was remade: %+v", sl.Rules)
	}

	// Refused changes leave rules and policy as they were: a prefix no
	// rule can express, and the driver out of room at the second of two
	// new rules (the first is taken back).
	before := e.m.Clone()
	r := e.setPolicy("xs0", "0.0.0.0/0")
	if r.Error == nil || r.Error.Code != api.CodeInvalidConfig || !strings.Contains(r.Error.Message, "0.0.0.0/0") {
		t.Errorf("a /0 prefix: %+v", r.Error)
	}
	e.m.Fail[fmt.Sprintf("AddRule#%d", e.m.Count["AddRule"]+2)] = ethtooltest.Refusal(ethtool.ErrNoSpace, "add rule")
	r = e.setPolicy("xs0", "10.1.0.5/32", "10.3.0.1/32", "10.3.0.2/32")
	if r.Error == nil || r.Error.Code != api.CodeBusy || !strings.Contains(r.Error.Message, "the active one stays") {
		t.Errorf("the driver out of room: %+v", r.Error)
	}
	t.Logf("refused: %s", r.Error.Message)
	if !reflect.DeepEqual(e.m.Rules, before.Rules) || !reflect.DeepEqual(e.m.Contexts, before.Contexts) {
		t.Errorf("a refused change changed the device: rules %v, were %v", e.m.Rules, before.Rules)
	}
	var info api.PortInfo
	e.f.do(rootPeer, api.OpPortShow, api.NameArgs{Name: "xs0", Netns: e.ns}, &info)
	if info.Policy == nil || len(info.Policy.IPv4) != 3 {
		t.Errorf("policy after refused changes: %+v", info.Policy)
	}
	e.wantSlice("xs0", "10.1.0.5/32", "10.1.0.6/32", "10.2.0.0/24")

	// A restart keeps everything.
	e.restart()
	e.wantSlice("xs0", "10.1.0.5/32", "10.1.0.6/32", "10.2.0.0/24")
	if !strings.Contains(e.f.logs.String(), "AF_XDP port slice restored") {
		t.Error("no log line for the restored slice")
	}

	// Cleared: no rule, the context stays.
	if r, _ := e.call(api.OpPortClear, api.NameArgs{Name: "xs0", Netns: e.ns}); r.Error != nil {
		t.Fatal(r.Error)
	}
	ctx := e.wantSlice("xs0").Context
	if r := e.setPolicy("xs0", "fd00:7::1/128"); r.Error != nil {
		t.Fatal(r.Error)
	}
	e.wantSlice("xs0", "fd00:7::1/128")

	// Someone else's rule into vrssd's context: delete refuses, the
	// port stays, its own rule is gone.
	e.m.Rules[9] = ethtool.Rule{Type: ethtool.TCPv4Flow | ethtool.FlowRSS, Context: ctx, Location: 9}
	r, _ = e.call(api.OpAFXDPDelete, api.NameArgs{Name: "xs0", Netns: e.ns})
	if r.Error == nil || r.Error.Code != api.CodeBusy || !strings.Contains(r.Error.Message, "the port stays") {
		t.Fatalf("delete with a stranger's rule in the context: %+v", r.Error)
	}
	t.Logf("refused: %s", r.Error.Message)
	if p := e.show("xs0"); p.Slice == nil || p.Slice.Context != ctx || len(p.Slice.Rules) != 0 || e.m.Rules[9].Context != ctx {
		t.Fatalf("after the refused delete: %+v, rules %v", p.Slice, e.m.Rules)
	}
	if rec := e.record("xs0"); rec == nil || rec.Slice.State != sliceReady {
		t.Fatalf("record after the refused delete: %+v", rec)
	}
	delete(e.m.Rules, 9)
	if r := e.setPolicy("xs0", "10.1.0.5/32"); r.Error != nil {
		t.Fatal(r.Error)
	}

	// Restart, then delete: everything vrssd made is gone.
	e.restart()
	e.wantSlice("xs0", "10.1.0.5/32")
	e.f.do(rootPeer, api.OpAFXDPDelete, api.NameArgs{Name: "xs0", Netns: e.ns}, nil)
	if len(e.m.Contexts) != 1 || len(e.m.Rules) != 2 {
		t.Errorf("after delete: contexts %v, rules %v; want only someone else's", e.m.Contexts, e.m.Rules)
	}
	if left := e.leftovers(); len(left) != 0 {
		t.Errorf("after delete: %v", left)
	}
	untouched()
}

// TestAFXDPSliceRefused: a create whose slice the driver refuses, at any
// step, is refused in one line naming the device, and leaves nothing: no
// context, rule, record, pins or XDP program.
func TestAFXDPSliceRefused(t *testing.T) {
	e := newSliceEnv(t)
	untouched := e.strangers()
	for _, c := range []struct {
		fail string
		kind error
		code api.Code
	}{
		{"Rings#1", ethtool.ErrNotSupported, api.CodeUnavailable},
		{"RSS#1", ethtool.ErrNotSupported, api.CodeUnavailable},
		{"RuleTable#1", ethtool.ErrNotSupported, api.CodeUnavailable},
		{"CreateContext#1", ethtool.ErrNoSpace, api.CodeBusy},
		{"rings", nil, api.CodeInvalidConfig}, // 2 rings: queues 1-2 do not fit
	} {
		e.m.Count = map[string]int{}
		e.m.Fail = map[string]error{}
		e.m.RingCount = 4
		if c.kind != nil {
			e.m.Fail[c.fail] = ethtooltest.Refusal(c.kind, c.fail)
		} else {
			e.m.RingCount = 2
		}
		before := e.m.Clone()
		r, _ := e.call(api.OpAFXDPCreate, api.AFXDPCreateArgs{Name: "xs1", Dev: sliceDev, QueueStart: 1, Queues: 2, Netns: e.ns, Slice: true})
		if r.Error == nil || r.Error.Code != c.code || !strings.Contains(r.Error.Message, sliceDev) || strings.Contains(r.Error.Message, "\n") {
			t.Errorf("%s: %+v, want a one-line %s naming %s", c.fail, r.Error, c.code, sliceDev)
			continue
		}
		t.Logf("%s: %s", c.fail, r.Error.Message)
		if !reflect.DeepEqual(e.m.Contexts, before.Contexts) || !reflect.DeepEqual(e.m.Rules, before.Rules) {
			t.Errorf("%s: the model changed: contexts %v, rules %v", c.fail, e.m.Contexts, e.m.Rules)
		}
		if left := e.leftovers(); len(left) != 0 {
			t.Errorf("%s: left %v", c.fail, left)
		}
	}
	untouched()
}

// TestAFXDPSliceOrphans: a sliced port whose device is gone while vrssd
// is stopped cannot be restored: the next start forgets it and removes
// its slice (the model stands for a NIC the kernel kept), saying so.
func TestAFXDPSliceOrphans(t *testing.T) {
	e := newSliceEnv(t)
	untouched := e.strangers()
	e.create("xs2")
	if r := e.setPolicy("xs2", "10.4.0.1/32", "fd00:4::/64"); r.Error != nil {
		t.Fatal(r.Error)
	}
	sl := e.wantSlice("xs2", "10.4.0.1/32", "fd00:4::/64")
	e.f.stop()
	h, err := netlink.NewHandleAt(e.handle)
	if err != nil {
		t.Fatal(err)
	}
	l, err := h.LinkByName("slout")
	if err == nil {
		err = h.LinkDel(l)
	}
	h.Close()
	if err != nil {
		t.Fatal(err)
	}
	e.f.start()
	if _, ok := e.m.Contexts[sl.Context]; ok || len(e.modelRules(sl.Context)) != 0 {
		t.Errorf("the slice is left: contexts %v, rules %v", e.m.Contexts, e.m.Rules)
	}
	log := e.f.logs.String()
	if !strings.Contains(log, "removed the slice of an AF_XDP port") || !strings.Contains(log, fmt.Sprintf("context %d", sl.Context)) {
		t.Errorf("no log line saying what was removed:\n%s", log)
	}
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "removed the slice") {
			t.Logf("vrssd: %s", line)
		}
	}
	if rec := e.record("xs2"); rec != nil {
		t.Errorf("record left: %+v", rec)
	}
	untouched()
}

// sliceLife is a sliced port's life, request by request, with the
// policies' prefixes.
var sliceLife = []struct {
	stage    string
	op       api.Op
	prefixes []string
}{
	{"create", api.OpAFXDPCreate, nil},
	{"set", api.OpPortSet, []string{"10.1.0.5/32", "fd00:5::/64"}},
	{"change", api.OpPortSet, []string{"10.1.0.5/32", "10.1.0.6/32"}},
	{"clear", api.OpPortClear, nil},
	{"set again", api.OpPortSet, []string{"fd00:6::1/128", "10.6.0.0/16"}},
	{"delete", api.OpAFXDPDelete, nil},
}

// live runs sliceLife, and returns the stage vrssd was killed in, "" if
// none.
func (e *sliceEnv) live() string {
	e.t.Helper()
	for _, st := range sliceLife {
		var args any = api.NameArgs{Name: "xk0", Netns: e.ns}
		switch st.op {
		case api.OpAFXDPCreate:
			args = api.AFXDPCreateArgs{Name: "xk0", Dev: sliceDev, QueueStart: 1, Queues: 2, Netns: e.ns, Slice: true}
		case api.OpPortSet:
			args = api.PortSetArgs{Name: "xk0", Netns: e.ns, Policy: slicePolicy(st.prefixes...)}
		}
		r, killed := e.call(st.op, args)
		if killed {
			return st.stage
		}
		if r.Error != nil {
			e.t.Fatalf("%s: %v", st.stage, r.Error)
		}
	}
	return ""
}

// TestAFXDPSliceKill: vrssd killed at every step of a sliced port's life
// that touches the driver (before each operation, and after each that
// changed the device, before vrssd could record it): the next start
// leaves the device exactly as the records say. An interrupted create or
// delete leaves no port, record, pins, XDP program, context or rule,
// with a log line saying what was removed; an interrupted policy change
// leaves the port with the rules of its recorded policy, and a later
// delete removes everything. The one window the records cannot cover, a
// kill right after the kernel created the context, leaves that context
// alone (vrssd cannot tell it is its own) and says so.
func TestAFXDPSliceKill(t *testing.T) {
	probe := newSliceEnv(t)
	probe.strangers()
	if stage := probe.live(); stage != "" {
		t.Fatalf("killed without a kill point, in %s", stage)
	}
	points := probe.seen
	t.Logf("%d kill points", points)
	for k := 1; k <= points; k++ {
		ok := t.Run(fmt.Sprint("point ", k), func(t *testing.T) {
			e := newSliceEnv(t)
			untouched := e.strangers()
			e.killAt = k
			stage := e.live()
			if stage == "" {
				t.Fatalf("not killed at point %d", k)
			}
			at := e.killedAt
			contextsAtKill := len(e.m.Contexts)
			e.restart()
			t.Logf("killed in %s, %s", stage, at)
			log := e.f.logs.String()
			var ports api.AFXDPList
			e.f.do(rootPeer, api.OpAFXDPList, nil, &ports)
			switch stage {
			case "create", "delete":
				if len(ports.Ports) != 0 {
					t.Fatalf("ports after the restart: %+v", ports.Ports)
				}
				if left := e.leftovers(); len(left) != 0 {
					t.Errorf("left: %v", left)
				}
				extra := len(e.m.Contexts) - 1 // someone else's
				if at == "after CreateContext" {
					if extra != 1 || !strings.Contains(log, "before its RSS context was recorded") {
						t.Errorf("the unrecorded context: %d extra contexts, log:\n%s", extra, log)
					}
					for id, tb := range e.m.Contexts {
						if id != 1 {
							delete(e.m.Contexts, id) // an administrator's clean-up
							if !reflect.DeepEqual(tb, ethtool.EqualTable(e.m.TableSize, 1, 2)) {
								t.Errorf("context %d: %v", id, tb)
							}
						}
					}
				} else if extra != 0 {
					t.Errorf("contexts left: %v", e.m.Contexts)
				}
				// vrssd's context existed when it was killed: the log
				// says it removed it.
				if ours := contextsAtKill > 1; ours && !strings.Contains(log, "removed the slice of an AF_XDP port") {
					t.Errorf("no log line saying what was removed:\n%s", log)
				}
			default:
				rec := e.record("xk0")
				if len(ports.Ports) != 1 || rec == nil {
					t.Fatalf("the port after the restart: %+v, record %+v", ports.Ports, rec)
				}
				e.wantSlice("xk0", func() (ps []string) {
					for _, p := range slicePrefixes(rec.Policy) {
						ps = append(ps, p.String())
					}
					return ps
				}()...)
				if len(e.m.Contexts) != 2 {
					t.Errorf("contexts: %v", e.m.Contexts)
				}
				e.f.do(rootPeer, api.OpAFXDPDelete, api.NameArgs{Name: "xk0", Netns: e.ns}, nil)
				if left := e.leftovers(); len(left) != 0 || len(e.m.Contexts) != 1 {
					t.Errorf("after delete: %v, contexts %v", left, e.m.Contexts)
				}
			}
			if n := len(e.m.Rules); n != 2 {
				t.Errorf("rules: %v, want only someone else's two", e.m.Rules)
			}
			untouched()
		})
		if !ok {
			break
		}
	}
}
