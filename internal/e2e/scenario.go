package e2e

import (
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/internal/demo"
	"github.com/vrss-dev/vrss/internal/inject"
	"github.com/vrss-dev/vrss/qemu"
	"github.com/vrss-dev/vrss/rss"
	"github.com/vrss-dev/vrss/steering"
)

// Options configure a harness run. Zero values take the defaults.
type Options struct {
	Cache         string    // default CacheDir()
	Log           io.Writer // progress and apt output; nil discards
	QEMU          string    // QEMU binary; default qemu-system-x86_64 from qemu-system-x86
	KernelPackage string    // exact linux-image package; default the cloud metapackage's
	// BackportsQEMU takes QEMU (10.x: ebpf-rss-fds) from
	// bookworm-backports, downloaded and unpacked into the cache, never
	// installed; bookworm's qemu-system-x86 is still installed, for the
	// shared libraries and firmware the unpacked binary uses.
	BackportsQEMU bool
	// BackportsKernel takes the cloud kernel from bookworm-backports
	// (6.12: its virtio_net reports per-queue packets only as netdev
	// qstats, which this guest cannot read, so scenario A fails with it).
	BackportsKernel bool
	Queues          int    // virtio-net queue pairs and TAP queues; default 4
	CPUs            int    // guest vCPUs; default 2
	MemoryMB        int    // guest RAM; default 256
	Seed            uint64 // for the random key of DefaultScenarios; default from the clock
	Scenarios       []Scenario
	// VMMUID is the unprivileged user that owns the TAP and runs QEMU
	// (and, in scenario A, the vrss commands); default DefaultVMMUID.
	VMMUID int
	// GuestFiles are added to the guest image as executables (see
	// InitramfsOptions.Extra); scenario P sets its guest sender here.
	GuestFiles map[string][]byte
}

func (o *Options) defaults() {
	if o.Cache == "" {
		o.Cache = CacheDir()
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Queues == 0 {
		o.Queues = 4
	}
	if o.CPUs == 0 {
		o.CPUs = 2
	}
	if o.MemoryMB == 0 {
		o.MemoryMB = 256
	}
	if o.Seed == 0 {
		o.Seed = uint64(time.Now().UnixNano())
	}
	if o.Scenarios == nil {
		o.Scenarios = DefaultScenarios(o.Queues, o.Seed)
	}
	if o.VMMUID == 0 {
		o.VMMUID = DefaultVMMUID
	}
}

// Scenario is one pre-steered run: a configuration the host sets with
// `vrss rss set` and the frames it injects (demo.Frames: every hash type,
// VLANs, fragments, extension headers, and frames no type applies to).
type Scenario struct {
	Name   string
	Config rss.Config
	// SetArgs are the `vrss rss set` flags that set Config, as a user
	// would write them (--weights, --equal ...); nil: the explicit form,
	// --key, --types, --table and --unclassified. Either way the harness
	// reads the configuration back (`vrss rss show --json`) and refuses
	// to go on unless it is Config.
	SetArgs []string
	Flows   int    // distinct flows
	PerFlow int    // frames per flow
	Seed    uint64 // frame generator seed
}

// DefaultScenarios are scenario A's two runs: every hash type with the
// Microsoft key and an equal 128-entry table, set in the explicit form
// (vrss rss set --key --types --table --unclassified); then a random
// 40-byte key (from seed) and a 5:3:1:1 table with unclassified frames on
// the last queue, set as a user would (vrss rss set --weights 5,3,1,1).
// Each sends 2,500 frames from 250 flows.
func DefaultScenarios(queues int, seed uint64) []Scenario {
	r := rand.New(rand.NewPCG(seed, 0x65326520))
	key := make([]byte, 40)
	for i := range key {
		key[i] = byte(r.Uint32())
	}
	weights := make([]int, queues)
	for i := range weights {
		weights[i] = 1
	}
	weights[0] = 5
	if queues > 1 {
		weights[1] = 3
	}
	ws := make([]string, queues)
	for i, w := range weights {
		ws[i] = strconv.Itoa(w)
	}
	a1 := demo.DefaultConfig(queues)
	return []Scenario{
		{Name: "A1 equal", Config: a1, SetArgs: rssSetArgs(a1), Flows: 250, PerFlow: 10, Seed: 1},
		{Name: "A2 skewed", Config: rss.Config{
			HashTypes: rss.AllHashTypes, Key: key,
			Table: rss.WeightedTable(128, weights), UnclassifiedQueue: uint16(queues - 1),
		}, SetArgs: []string{
			"--key", hex.EncodeToString(key), "--types", "all", "--weights", strings.Join(ws, ","), "--unclassified", strconv.Itoa(queues - 1),
		}, Flows: 250, PerFlow: 10, Seed: seed | 1},
	}
}

// Assets are the guest's ingredients and where they came from.
type Assets struct {
	QEMU          string // binary
	QEMUVersion   string // as --version reports it
	Kernel        string // vmlinuz
	KernelRelease string
	Initramfs     *Initramfs
	// Packages maps each Debian package used to its version.
	Packages map[string]string
}

// Prepare installs the packages the guest needs (apt-get), fetches and
// unpacks the kernel (and with Backports, QEMU) into the cache, and builds
// the initramfs.
func Prepare(o Options) (*Assets, error) {
	o.defaults()
	unlock, err := lockCache(o.Cache)
	if err != nil {
		return nil, err
	}
	defer unlock()
	sys := &Debian{Log: o.Log}
	if err := sys.Install(PkgQEMU, PkgBusybox, PkgEthtool); err != nil {
		return nil, err
	}
	a := &Assets{QEMU: o.QEMU, Packages: map[string]string{}}
	for _, p := range []string{PkgBusybox, PkgEthtool} {
		a.Packages[p] = Installed(p)
	}
	bpo := &Debian{Log: o.Log, Sources: BackportsSources, StateDir: filepath.Join(o.Cache, "apt", "bookworm-backports")}
	switch {
	case a.QEMU != "":
		a.Packages["QEMU binary "+a.QEMU] = ""
	case o.BackportsQEMU:
		ver, err := bpo.Candidate(PkgQEMU)
		if err != nil {
			return nil, err
		}
		root, err := bpo.Unpacked(o.Cache, PkgQEMU, ver)
		if err != nil {
			return nil, err
		}
		a.QEMU = filepath.Join(root, "usr", "bin", "qemu-system-x86_64")
		a.Packages[PkgQEMU+" (bookworm-backports, unpacked)"] = ver
	default:
		a.QEMU = lookPath("qemu-system-x86_64", "/usr/bin/qemu-system-x86_64")
		a.Packages[PkgQEMU] = Installed(PkgQEMU)
	}
	if a.QEMUVersion, _, _, err = QEMUVersion(a.QEMU); err != nil {
		return nil, err
	}

	kdeb, suite := sys, ""
	if o.BackportsKernel {
		kdeb, suite = bpo, " (bookworm-backports)"
	}
	kpkg, kver := o.KernelPackage, ""
	if kpkg == "" {
		kpkg, kver, err = kdeb.Resolve(PkgKernelMeta, "linux-image-")
	} else {
		kver, err = kdeb.Candidate(kpkg)
	}
	if err != nil {
		return nil, err
	}
	a.Packages[kpkg+suite] = kver
	root, err := kdeb.Unpacked(o.Cache, kpkg, kver)
	if err != nil {
		return nil, err
	}
	kernels, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if len(kernels) != 1 {
		return nil, fmt.Errorf("e2e: %s has %d kernels in /boot", kpkg, len(kernels))
	}
	a.Kernel = kernels[0]
	a.KernelRelease = strings.TrimPrefix(filepath.Base(a.Kernel), "vmlinuz-")

	a.Initramfs, err = BuildInitramfs(InitramfsOptions{
		KernelRoot: root, KernelRelease: a.KernelRelease, Queues: o.Queues, Cache: o.Cache, Extra: o.GuestFiles,
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// Result is what one scenario observed.
type Result struct {
	Scenario Scenario
	Sent     int
	Kinds    map[rss.HashReport]int // frames per hash report the engine predicts
	Expected []uint64               // frames per queue, as the engine predicts
	Observed []uint64               // deltas of the guest's rx_queue_N_packets
	// Program are the deltas of the steering program's per-queue counters
	// (scenario A: from vrss stats --json).
	Program []uint64
	// Delivered and Dropped are the TAP's tx_packets and tx_dropped
	// deltas: frames QEMU read from the queues, and frames tun dropped
	// because a queue was full.
	Delivered, Dropped uint64
	Elapsed            time.Duration // from the first frame sent to the counters settling
	// Set is the `vrss rss set` command that set the configuration, and
	// SetOutput what it printed (scenario A).
	Set, SetOutput string
}

// OK reports whether the guest saw exactly the predicted histogram, the
// program agrees, and the TAP dropped nothing.
func (r *Result) OK() bool {
	return r.Sent > 0 && slices.Equal(r.Expected, r.Observed) && slices.Equal(r.Expected, r.Program) &&
		r.Dropped == 0 && r.Delivered == uint64(r.Sent)
}

// guestRun is what every scenario's report says of its guest.
type guestRun struct {
	Assets  *Assets
	Release string // guest uname -r
	Device  string // the TAP
	Queues  int
	CPUs    int
	Seed    uint64
	UID     int // the TAP's owner and QEMU's user (scenario A: the vrss commands' too)
}

// newGuestRun is o's guest on the TAP named tap, with o.VMMUID.
func newGuestRun(o Options, tap string) guestRun {
	return guestRun{Queues: o.Queues, CPUs: o.CPUs, Seed: o.Seed, UID: o.VMMUID, Device: tap}
}

// Report is a whole harness run.
type Report struct {
	guestRun
	// Commands are the vrss commands run before the scenarios, each with
	// what it printed: tap create, qemu exec.
	Commands []string
	// QEMUPid and QEMUFDs are QEMU's process and the descriptors through
	// which it holds the TAP's queues (checked: 3, 4, ...).
	QEMUPid int
	QEMUFDs []int
	// ProbeSent frames were injected as soon as the guest was READY (QEMU
	// had detached the steering program twice by then); the steering
	// program ran ProbeRuns times on them: all of them, if vrssd had
	// attached it again by itself.
	ProbeSent int
	ProbeRuns uint64
	// Steering is every detach of the steering program by QEMU until the
	// probe, and how long it took vrssd to attach it again: the kernel's
	// TUNSETSTEERINGEBPF calls, traced (see steerTracer), times from
	// QEMUStart (CLOCK_MONOTONIC). TraceErr says why there is no trace.
	Steering                    []steerGap
	QEMUStart, ReadyAt, ProbeAt time.Duration
	TraceErr                    string
	// Reattached is vrssd's count of programs it found detached by the
	// frames they missed (vrss stats: reattached), at the end of the run;
	// re-attachments on queue-change link events are not counted there.
	Reattached uint64
	Results    []Result
	// Prepare, Boot and Total are wall times: packages, kernel,
	// initramfs and the vrss and vrssd builds; QEMU start to READY; the
	// whole run.
	Prepare, Boot, Total time.Duration
}

// OK reports whether every scenario passed, steering was back before the
// first frame after READY, and vrssd attached the program again after
// every detach.
func (r *Report) OK() bool {
	if len(r.Results) == 0 || r.ProbeSent == 0 || r.ProbeRuns != uint64(r.ProbeSent) {
		return false
	}
	if _, closed := maxMissing(r.Steering); !closed {
		return false
	}
	for i := range r.Results {
		if !r.Results[i].OK() {
			return false
		}
	}
	return true
}

// RunPreSteered runs scenario A, the pre-steered TAP for any QEMU, through
// vrss end to end. In a fresh network namespace, a vrssd of the test's own
// (as scenario B runs it) creates a multi-queue TAP for an unprivileged
// user (Options.VMMUID), and that user starts QEMU (bookworm's 7.2 by
// default) with `vrss qemu exec --tap NAME -- QEMU ...`, which obtains the
// queue fds from vrssd and execs QEMU with them inherited. QEMU 7.2
// detaches the steering program whenever the guest sets its queue pairs;
// vrssd attaches it again by itself (nobody runs `vrss tap attach`), and
// the run measures how long steering was missing (a kernel trace of
// TUNSETSTEERINGEBPF) and checks that frames sent at READY are steered.
// Then, for each scenario, the owner sets the configuration (`vrss rss
// set`), the harness
// injects the frames with AF_PACKET and compares the guest's per-queue
// counter deltas, and the program's (`vrss stats --json`), with the
// engine's prediction. The report is returned even when scenarios fail;
// the error is for runs that could not be carried out.
func RunPreSteered(o Options) (*Report, error) {
	start := time.Now()
	o.defaults()
	rep := &Report{guestRun: newGuestRun(o, aTAP)}
	for _, sc := range o.Scenarios {
		if err := sc.Config.Validate(steering.Limits(o.Queues)); err != nil {
			return nil, fmt.Errorf("e2e: scenario %s: %w", sc.Name, err)
		}
	}
	err := prepared(o, "a", func(a *Assets) error { rep.Assets = a; return nil }, func(w *workDir) error {
		rep.Prepare = time.Since(start)
		return runPreSteered(o, w, rep)
	})
	rep.Total = time.Since(start)
	return rep, err
}

const (
	// aTAP is scenario A's TAP.
	aTAP       = "vrsse2e0"
	guestIface = "eth0"
	// tapTxQueueLen sizes each TAP queue's ring (tun takes it from the
	// device's txqueuelen); the default 500 leaves less slack.
	tapTxQueueLen = 4096
	// Pacing: send in batches and stay at most window frames ahead of
	// what QEMU has read from the TAP. The guest is slow under TCG, QEMU
	// stops reading a queue whose guest ring is full, and tun drops
	// rather than blocks when a queue's ring is full.
	sendBatch  = 32
	sendWindow = 128
	// stallTimeout bounds how long delivery may make no progress.
	stallTimeout = 60 * time.Second
	// probeFlows x probePerFlow frames test whether the steering program
	// is attached at READY.
	probeFlows, probePerFlow = 4, 8
)

func runPreSteered(o Options, w *workDir, rep *Report) error {
	vd, err := startVRSSD(w, o.VMMUID)
	if err != nil {
		return err
	}
	defer vd.stop()
	fail := vd.fail
	// Every vrss command runs as the TAP's owner: nothing here needs a
	// privilege but vrssd's.
	cli := &vrssCLI{bin: w.vrss, socket: w.socket, uid: o.VMMUID}
	record := func(args []string, out string) {
		line := cli.line(args...)
		if out = strings.TrimSpace(out); out != "" {
			line += "  -> " + out
		}
		rep.Commands = append(rep.Commands, line)
		fmt.Fprintf(o.Log, "e2e: uid %d: %s\n", o.VMMUID, line)
	}
	create := []string{"tap", "create", aTAP, "--queues", strconv.Itoa(o.Queues)}
	out, err := cli.run(create...)
	if err != nil {
		return fail(err)
	}
	record(create, out)
	link, err := tapLink(aTAP)
	if err != nil {
		return err
	}
	index := link.Attrs().Index

	// The pre-steered path: no --ebpf-rss, so QEMU neither offers RSS nor
	// loads a program; vrss's program on the TAP does the steering and
	// QEMU delivers TAP queue i to the guest's receive queue i.
	boot, shown := execBoot(o, w, rep.Assets, aTAP, "console.log")
	// The tracer runs from before QEMU starts: it sees every detach.
	tr, err := startSteerTrace()
	if err != nil {
		rep.TraceErr = err.Error()
		fmt.Fprintf(o.Log, "e2e: %v: the report cannot say when QEMU detached steering\n", err)
	} else {
		defer tr.Close()
	}
	fmt.Fprintf(o.Log, "e2e: booting %s with %s as uid %d through vrss qemu exec (TCG, %d vCPUs)\n", rep.Assets.KernelRelease, boot.QEMU, o.VMMUID, o.CPUs)
	bootStart := time.Now()
	rep.QEMUStart = monotonic()
	g, err := Boot(boot)
	if err != nil {
		return fail(err)
	}
	defer g.Close()
	readyAt := monotonic()
	rep.Boot = time.Since(bootStart)
	rep.Release = g.Release
	record(shown, "")
	fmt.Fprintf(o.Log, "e2e: guest ready after %v (console log %s)\n", rep.Boot.Round(time.Millisecond), boot.ConsoleLog)

	// QEMU is the process vrss qemu exec became: it must run as the
	// owner and hold the TAP's queues at 3, 4, ..., inherited.
	rep.QEMUPid = g.Pid()
	if uid, err := processUID(rep.QEMUPid); err != nil {
		return err
	} else if uid != o.VMMUID {
		return fmt.Errorf("e2e: QEMU (pid %d) runs as uid %d, want %d", rep.QEMUPid, uid, o.VMMUID)
	}
	if rep.QEMUFDs, err = tapFDs(rep.QEMUPid, aTAP); err != nil {
		return err
	}
	for q := range o.Queues {
		if !slices.Contains(rep.QEMUFDs, qemu.FirstFD+q) {
			return fmt.Errorf("e2e: QEMU (pid %d) holds %s's queues at fds %v, want %d from %d", rep.QEMUPid, aTAP, rep.QEMUFDs, o.Queues, qemu.FirstFD)
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

	// QEMU before 9.0 (bookworm's 7.2) detaches the TAP's steering program
	// on every MQ control command (virtio_net_handle_mq ->
	// virtio_net_disable_rss -> TUNSETSTEERINGEBPF -1, even without rss=on;
	// an inherited queue fd needs no privilege for it), and the guest's
	// driver sends one at probe and init another at ethtool -L: the program
	// vrssd attached at `tap create` is detached twice before READY. vrssd
	// attaches it again by itself (on tun's queue-change link events, and
	// when the TAP sends frames the program never counted); nobody runs
	// `vrss tap attach`. Frames sent at once after READY show whether
	// steering was back before the first frame: the program must have run
	// on every one of them. The tracer says when QEMU detached and when
	// vrssd attached again.
	probe := demo.Frames(probeFlows, probePerFlow, o.Seed|2)
	var s0, s1 api.Stats
	if err := cli.json(&s0, "stats", aTAP, "--json"); err != nil {
		return fail(err)
	}
	probeAt := monotonic()
	if _, err := deliver(g, index, inj, probe, o.Queues); err != nil {
		return fmt.Errorf("e2e: probe after READY: %w", err)
	}
	if err := cli.json(&s1, "stats", aTAP, "--json"); err != nil {
		return fail(err)
	}
	rep.ProbeSent, rep.ProbeRuns = len(probe), programRuns(s1)-programRuns(s0)
	if tr != nil {
		rep.Steering = steerGaps(tr.Events(100*time.Millisecond, rep.QEMUPid, vd.cmd.Process.Pid), rep.QEMUPid, vd.cmd.Process.Pid)
		rep.ProbeAt = probeAt - rep.QEMUStart
		rep.ReadyAt = readyAt - rep.QEMUStart
	}

	for _, sc := range o.Scenarios {
		fmt.Fprintf(o.Log, "e2e: scenario %s\n", sc.Name)
		res, err := runScenario(g, cli, o.Log, index, inj, sc, o.Queues)
		if err != nil {
			return fail(fmt.Errorf("e2e: scenario %s: %w", sc.Name, err))
		}
		rep.Results = append(rep.Results, *res)
	}
	var st api.Stats
	if err := cli.json(&st, "stats", aTAP, "--json"); err != nil {
		return fail(err)
	}
	rep.Reattached = st.Reattached
	return g.Shutdown(30 * time.Second)
}

// programRuns is how often the steering program has run: packets steered
// by a configuration and packets before any.
func programRuns(s api.Stats) uint64 { return sum(s.Queues) + s.Unconfigured }

// runScenario sets sc's configuration with `vrss rss set`, checks that
// vrssd published exactly sc.Config, injects sc's frames and compares.
func runScenario(g *Guest, cli *vrssCLI, log io.Writer, index int, inj *inject.Injector, sc Scenario, queues int) (*Result, error) {
	eng, err := rss.New(sc.Config)
	if err != nil {
		return nil, err
	}
	set := sc.SetArgs
	if set == nil {
		set = rssSetArgs(sc.Config)
	}
	set = append([]string{"rss", "set", aTAP}, set...)
	res := &Result{Scenario: sc, Set: cli.line(set...)}
	if res.SetOutput, err = cli.run(set...); err != nil {
		return nil, err
	}
	res.SetOutput = strings.TrimSpace(res.SetOutput)
	fmt.Fprintf(log, "e2e: uid %d: %s  -> %s\n", cli.uid, res.Set, res.SetOutput)
	var st api.RSSState
	if err := cli.json(&st, "rss", "show", aTAP, "--json"); err != nil {
		return nil, err
	}
	if st.Config == nil || !sameConfig(*st.Config, sc.Config) {
		return nil, fmt.Errorf("%s: vrssd holds %+v, the scenario is %+v", res.Set, st.Config, sc.Config)
	}

	frames := demo.Frames(sc.Flows, sc.PerFlow, sc.Seed)
	res.Sent, res.Kinds, res.Expected = len(frames), map[rss.HashReport]int{}, make([]uint64, queues)
	for _, f := range frames {
		r := eng.Steer(f)
		res.Expected[int(r.Queue)%queues]++ // tun takes the program's answer modulo the queues
		res.Kinds[r.Report]++
	}

	var s0, s1 api.Stats
	if err := cli.json(&s0, "stats", aTAP, "--json"); err != nil {
		return nil, err
	}
	dl, err := deliver(g, index, inj, frames, queues)
	if err != nil {
		return nil, err
	}
	res.Observed, res.Delivered, res.Dropped = dl.observed, dl.delivered, dl.dropped
	res.Elapsed = dl.elapsed
	if err := cli.json(&s1, "stats", aTAP, "--json"); err != nil {
		return nil, err
	}
	if len(s0.Queues) != queues || len(s1.Queues) != queues {
		return nil, fmt.Errorf("vrss stats reports %d queues, the TAP has %d", len(s1.Queues), queues)
	}
	res.Program = sub(s1.Queues, s0.Queues)
	return res, nil
}

// delivery is what injecting frames into a TAP led to.
type delivery struct {
	observed           []uint64 // deltas of the guest's rx_queue_N_packets
	delivered, dropped uint64   // the TAP's tx_packets and tx_dropped deltas
	elapsed            time.Duration
}

// deliver injects frames into the TAP with ifindex index, paced so that
// no TAP queue overflows, waits until QEMU has read them all and the guest
// has counted them, and returns the guest's per-queue counter deltas.
func deliver(g *Guest, index int, inj *inject.Injector, frames [][]byte, queues int) (*delivery, error) {
	return deliverSent(g, index, queues, len(frames), func(i, j int) (int, error) {
		return j - i, inj.SendBatch(frames[i:j])
	})
}

// deliverSent is deliver with the sending left to send, which sends frames
// i to j-1 of n and returns how many of them are to reach the TAP's
// queues: fewer when a filter in front of tun drops some on purpose
// (scenario R). Pacing and the wait count only those.
func deliverSent(g *Guest, index, queues, n int, send func(i, j int) (int, error)) (*delivery, error) {
	guest0, err := g.RxQueuePackets(guestIface, queues)
	if err != nil {
		return nil, err
	}
	tap0, err := tapStats(index)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	delivered := func() (uint64, uint64, error) {
		s, err := tapStats(index)
		if err != nil {
			return 0, 0, err
		}
		return s.TxPackets - tap0.TxPackets, s.TxDropped - tap0.TxDropped, nil
	}
	// wait polls until QEMU has read (or tun has dropped) at least want
	// frames, failing if delivery stalls.
	wait := func(want uint64, poll time.Duration) error {
		last, since := uint64(0), time.Now()
		for {
			d, x, err := delivered()
			if err != nil || d+x >= want {
				return err
			}
			if d != last {
				last, since = d, time.Now()
			} else if time.Since(since) > stallTimeout {
				return fmt.Errorf("QEMU read %d of %d frames from the TAP and then nothing for %v", d, want, stallTimeout)
			}
			time.Sleep(poll)
		}
	}
	kept := 0
	for i := 0; i < n; i += sendBatch {
		j := min(i+sendBatch, n)
		k, err := send(i, j)
		if err != nil {
			return nil, err
		}
		if kept += k; kept > sendWindow {
			if err := wait(uint64(kept-sendWindow), 500*time.Microsecond); err != nil {
				return nil, err
			}
		}
	}
	if err := wait(uint64(kept), time.Millisecond); err != nil {
		return nil, err
	}
	dl := &delivery{}
	if dl.delivered, dl.dropped, err = delivered(); err != nil {
		return nil, err
	}
	// The guest counts a frame when its driver polls the queue; wait
	// until it has counted everything QEMU read, then once more to see
	// that nothing else arrives.
	var total uint64
	deadline := time.Now().Add(stallTimeout)
	for settled := false; !settled; {
		cur, err := g.RxQueuePackets(guestIface, queues)
		if err != nil {
			return nil, err
		}
		dl.observed = sub(cur, guest0)
		prev := total
		total = sum(dl.observed)
		switch {
		case total >= dl.delivered && total == prev:
			settled = true
		case time.Now().After(deadline):
			settled = true
		default:
			time.Sleep(200 * time.Millisecond)
		}
	}
	dl.elapsed = time.Since(start)
	return dl, nil
}

// tapLink returns the TAP named name, with its txqueuelen set to
// tapTxQueueLen.
func tapLink(name string) (netlink.Link, error) {
	link, err := netlink.LinkByName(name)
	if err == nil {
		err = netlink.LinkSetTxQLen(link, tapTxQueueLen)
	}
	if err != nil {
		return nil, fmt.Errorf("e2e: txqueuelen of %s: %w", name, err)
	}
	return link, nil
}

func tapStats(index int) (*netlink.LinkStatistics, error) {
	l, err := netlink.LinkByIndex(index)
	if err != nil {
		return nil, err
	}
	if l.Attrs().Statistics == nil {
		return nil, fmt.Errorf("e2e: no statistics for ifindex %d", index)
	}
	return l.Attrs().Statistics, nil
}

func sub(a, b []uint64) []uint64 {
	d := make([]uint64, len(a))
	for i := range a {
		d[i] = a[i] - b[i]
	}
	return d
}

func sum(v []uint64) uint64 {
	var s uint64
	for _, x := range v {
		s += x
	}
	return s
}

// writeHeader writes the report lines both scenarios share: QEMU, the
// guest and the Debian packages they came from.
func (a *Assets) writeHeader(b *strings.Builder, cpus, uid int, release string) {
	fmt.Fprintf(b, "  QEMU %s (-accel tcg, %d vCPUs) as uid %d, guest %s (uname -r %s)\n", a.QEMUVersion, cpus, uid, a.KernelRelease, release)
	var pk []string
	for _, p := range sortedKeys(a.Packages) {
		pk = append(pk, strings.TrimSpace(p+" "+a.Packages[p]))
	}
	fmt.Fprintf(b, "  packages: %s\n", strings.Join(pk, ", "))
}

// String is the run's short report: per scenario the configuration, the
// frames sent, the TAP's deliveries and drops, and per queue the expected
// (engine), observed (guest) and program counts.
func (r *Report) String() string {
	var b strings.Builder
	a := r.Assets
	fmt.Fprintf(&b, "vrss e2e, scenario A (pre-steered TAP through vrss: vrssd's TAP, QEMU unprivileged via vrss qemu exec, RSS set with vrss rss set)\n")
	if a != nil {
		a.writeHeader(&b, r.CPUs, r.UID, r.Release)
		fmt.Fprintf(&b, "  initramfs modules: %s\n", strings.Join(a.Initramfs.Modules, " "))
	}
	fmt.Fprintf(&b, "  virtio-net %d queue pairs on TAP %s; seed %d\n", r.Queues, r.Device, r.Seed)
	if len(r.Commands) > 0 {
		fmt.Fprintf(&b, "  as uid %d, against the test's vrssd:\n", r.UID)
		for _, c := range r.Commands {
			fmt.Fprintf(&b, "    %s\n", c)
		}
	}
	if r.QEMUPid != 0 {
		fmt.Fprintf(&b, "  QEMU (pid %d, uid %d) holds %s's queues at fds %s, inherited from vrss qemu exec\n", r.QEMUPid, r.UID, r.Device, joinInts(r.QEMUFDs, " "))
	}
	r.writeSteering(&b)
	for i := range r.Results {
		res := &r.Results[i]
		c := res.Scenario.Config
		fmt.Fprintf(&b, "\n%s: hash types %s, key %s…, %d-entry table %s, unclassified -> %d\n",
			res.Scenario.Name, c.HashTypes, hex.EncodeToString(c.Key[:8]), len(c.Table), tableShares(c.Table, r.Queues), c.UnclassifiedQueue)
		if res.Set != "" {
			fmt.Fprintf(&b, "  %s  -> %s (read back: the same)\n", shortArgs(res.Set), res.SetOutput)
		}
		fmt.Fprintf(&b, "  sent %d frames from %d flows (%s) in %v; TAP: %d read by QEMU, %d dropped\n",
			res.Sent, res.Scenario.Flows, kinds(res.Kinds), res.Elapsed.Round(time.Millisecond), res.Delivered, res.Dropped)
		fmt.Fprintf(&b, "  queue  expected  observed   program  (engine, guest's rx_queue_N_packets, vrss stats)\n")
		for q := range res.Expected {
			mark := ""
			if res.Observed[q] != res.Expected[q] || res.Program[q] != res.Expected[q] {
				mark = "  <- differs"
			}
			fmt.Fprintf(&b, "  %5d  %8d  %8d  %8d%s\n", q, res.Expected[q], res.Observed[q], res.Program[q], mark)
		}
		fmt.Fprintf(&b, "  %5s  %8d  %8d  %8d\n", "total", sum(res.Expected), sum(res.Observed), sum(res.Program))
		if res.OK() {
			fmt.Fprintf(&b, "  PASS\n")
		} else {
			fmt.Fprintf(&b, "  FAIL\n")
		}
	}
	writeEnd(&b, "boot", r.Prepare, r.Boot, r.Total, r.OK())
	return b.String()
}

// writeSteering reports how long steering was missing: every detach by
// QEMU, traced, and vrssd's re-attachment; then whether the frames sent at
// READY were steered.
func (r *Report) writeSteering(b *strings.Builder) {
	if r.ProbeSent == 0 {
		return
	}
	fmt.Fprintf(b, "  steering missing (no vrss tap attach anywhere; QEMU 7.2 detaches the program at every MQ command of the guest):\n")
	switch {
	case r.TraceErr != "":
		fmt.Fprintf(b, "    not traced: %s\n", r.TraceErr)
	default:
		fmt.Fprintf(b, "    measured: from QEMU's TUNSETSTEERINGEBPF(-1) to vrssd's next TUNSETSTEERINGEBPF(program), both as the kernel saw them enter (raw tracepoint sys_enter, CLOCK_MONOTONIC), times from QEMU's start\n")
		fmt.Fprintf(b, "    %s\n", describeGaps(r.Steering, r.QEMUStart))
		if m, closed := maxMissing(r.Steering); closed && len(r.Steering) > 0 {
			fmt.Fprintf(b, "    longest: %v; guest READY at +%v, first frame at +%v\n", fmtMissing(m), r.ReadyAt.Round(time.Millisecond), r.ProbeAt.Round(time.Millisecond))
		}
	}
	verdict := "steering was back before the first frame"
	if r.ProbeRuns != uint64(r.ProbeSent) {
		verdict = fmt.Sprintf("%d frames went out unsteered", uint64(r.ProbeSent)-r.ProbeRuns)
	}
	fmt.Fprintf(b, "    frames sent at READY: the steering program ran on %d of %d (%s); vrss stats reattached (detaches caught by unsteered frames) at the end: %d\n", r.ProbeRuns, r.ProbeSent, verdict, r.Reattached)
}

// writeEnd ends a report: the wall times (the boot's called bootName)
// and the result.
func writeEnd(b *strings.Builder, bootName string, prepare, boot, total time.Duration, ok bool) {
	fmt.Fprintf(b, "\nwall time: prepare %v, %s %v, total %v\n", prepare.Round(time.Millisecond), bootName, boot.Round(time.Millisecond), total.Round(time.Millisecond))
	if ok {
		fmt.Fprintf(b, "RESULT: PASS\n")
	} else {
		fmt.Fprintf(b, "RESULT: FAIL\n")
	}
}

// shortArgs shortens a command line's long arguments (keys, tables) for
// the report.
func shortArgs(line string) string {
	f := strings.Fields(line)
	for i, a := range f {
		if len(a) > 40 {
			f[i] = a[:16] + "…"
		}
	}
	return strings.Join(f, " ")
}

// tableShares describes an indirection table by the entries per queue.
func tableShares(t []uint16, queues int) string {
	n := make([]string, queues)
	c := make([]int, queues)
	for _, q := range t {
		if int(q) < queues {
			c[q]++
		}
	}
	for i, v := range c {
		n[i] = fmt.Sprint(v)
	}
	return strings.Join(n, ":")
}

func kinds(k map[rss.HashReport]int) string {
	var s []string
	for r := rss.HashReport(0); r < 16; r++ {
		if k[r] > 0 {
			s = append(s, fmt.Sprintf("%s %d", r, k[r]))
		}
	}
	return strings.Join(s, ", ")
}

func sortedKeys[V any](m map[string]V) []string {
	k := make([]string, 0, len(m))
	for s := range m {
		k = append(k, s)
	}
	slices.Sort(k)
	return k
}
