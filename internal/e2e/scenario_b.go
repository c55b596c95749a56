package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/agent/client"
	"github.com/vrss-dev/vrss/internal/inject"
	"github.com/vrss-dev/vrss/internal/netnstest"
	"github.com/vrss-dev/vrss/qemu"
	"github.com/vrss-dev/vrss/qemu/ebpfrss"
	"github.com/vrss-dev/vrss/rss"
)

// Scenario B's defaults.
const (
	// DefaultVMMUID is the unprivileged user QEMU runs as in scenario B.
	DefaultVMMUID = 4242
	bTAP          = "vrsse2eb0"
	// Main pass: frames per main kind, each a flow of its own.
	bMainPerKind = 300
	// Characterisation: frames per edge kind.
	bEdgePerKind = 32
	// qemuSoftwareRSS is what QEMU prints when it cannot steer with eBPF
	// and falls back to hashing in userspace.
	qemuSoftwareRSS = "fallback to software RSS"
)

// GuestRSSReport is scenario B's outcome.
type GuestRSSReport struct {
	guestRun
	VRSSLine  string // what `vrss qemu exec --ebpf-rss` printed
	RXHash    string // receive-hashing before the guest configured RSS
	GuestCmds []string

	// Config is the RSS configuration the guest reports (ethtool -x, -n);
	// QEMUConfig what QEMU's maps hold.
	Config     rss.Config
	QEMUConfig QEMUMaps

	Main  *Result // Program: QEMU program runs, per queue unknown
	Runs  uint64  // runs of QEMU's program during the main pass
	Kinds map[string]int
	Edges []EdgeResult
	// EX is the host-side characterisation under _EX configurations.
	EX []EXResult

	Prepare, Boot, Total time.Duration
}

// QEMUMaps is what QEMU wrote into its program's maps.
type QEMUMaps = ebpfrss.Config

// EdgeResult is one characterised kind: what the engine predicts, what the
// guest counted, and which simple rule explains QEMU's choice.
type EdgeResult struct {
	Kind     string
	Sent     int
	Reports  map[rss.HashReport]int // the engine's report types
	Expected []uint64
	Observed []uint64
	// TestRun is the histogram of the queues QEMU's program chose when
	// run on each frame with BPF_PROG_TEST_RUN, its live maps and all
	// (nil for tagged frames, whose network header a test run places
	// elsewhere than the TAP's transmit path, and for frames too short to
	// test-run); it must equal Observed, which shows that the per-frame
	// verdicts below are what the guest saw.
	TestRun []uint64
	// QEMU is the rule that explains QEMU's choice for every frame of the
	// kind (per frame from the test runs where there are some, else from
	// the guest's histogram): "as vrss", "unclassified queue", "as an IP
	// type" (as the engine with the TCP and UDP types disabled), "addresses
	// only" (the frame's IP addresses hashed, whatever else it holds), or
	// "other".
	QEMU string
}

// EXResult is one kind of frame test-run through QEMU's program under one
// configuration with _EX hash types, which Linux guests never enable (the
// driver removes them from the device's supported types), so only the
// host can set them: a fresh instance of QEMU's object (from vrssd's
// cache) with the configuration written into its maps.
type EXResult struct {
	HashTypes rss.HashType
	Kind      string
	Frames    int
	Agree     int    // frames on which QEMU's program chose the engine's entry
	Engine    string // the engine's report types
	// QEMU is the rule that explains QEMU's choices, as in EdgeResult, or
	// "plain types only" (as the engine with the _EX types disabled).
	QEMU string
}

// Agrees reports whether the guest counted what the engine predicts.
func (e *EdgeResult) Agrees() bool { return slices.Equal(e.Expected, e.Observed) }

// OK reports whether the main pass matched exactly and QEMU's program
// steered every frame.
func (r *GuestRSSReport) OK() bool {
	return r.Main != nil && r.Main.Sent > 0 && slices.Equal(r.Main.Expected, r.Main.Observed) &&
		r.Main.Dropped == 0 && r.Main.Delivered == uint64(r.Main.Sent) && r.Runs == uint64(r.Main.Sent)
}

// RunGuestRSS runs scenario B: QEMU ≥ 9 started by `vrss qemu exec
// --ebpf-rss` as an unprivileged user, with its own eBPF RSS program
// loaded by a vrssd of the test's own; the guest configures RSS itself
// (ethtool -X with its own key and table, ethtool -N rx-flow-hash), the
// host injects frames, and the guest's per-queue counters must equal what
// the engine predicts for the configuration the guest reports. A second,
// characterising pass sends the edge kinds (fragments, extension headers,
// VLAN tags, malformed frames, a hash of 0) and records per kind whether
// QEMU's program agrees with the engine.
func RunGuestRSS(o Options) (*GuestRSSReport, error) {
	start := time.Now()
	o.defaults()
	if o.QEMU == "" {
		o.BackportsQEMU = true
	}
	if o.VMMUID == 0 {
		o.VMMUID = DefaultVMMUID
	}
	if o.Queues < 2 {
		return nil, fmt.Errorf("e2e: scenario B needs at least 2 queues, have %d", o.Queues)
	}
	// Linux 6.1's virtio_net fills the RSS command's max_tx_vq with the
	// queue pairs it enabled at probe, min(queue pairs, CPUs), and does not
	// update it on ethtool -L; QEMU takes max_tx_vq as the number of queue
	// pairs and disables the TAP queues above it, so every steered packet
	// would land on queue (program's choice) mod CPUs. With a CPU per
	// queue pair the probe enables them all.
	o.CPUs = max(o.CPUs, o.Queues)
	rep := &GuestRSSReport{guestRun: newGuestRun(o, bTAP)}
	err := prepared(o, "b", func(a *Assets) error {
		rep.Assets = a
		if _, major, _, err := QEMUVersion(a.QEMU); err != nil {
			return err
		} else if major < 9 {
			return fmt.Errorf("e2e: scenario B needs QEMU >= 9.0 (ebpf-rss-fds, request-ebpf); %s is %s", a.QEMU, a.QEMUVersion)
		}
		return nil
	}, func(w *workDir) error {
		rep.Prepare = time.Since(start)
		return runGuestRSS(o, w, rep)
	})
	rep.Total = time.Since(start)
	return rep, err
}

// prepared is how a scenario starts: the guest's ingredients (Prepare),
// which ready receives (and may refuse), a work directory for scenario (a
// lower-case letter), removed at the end, and body run with it in a fresh
// network namespace.
func prepared(o Options, scenario string, ready func(*Assets) error, body func(*workDir) error) error {
	fmt.Fprintf(o.Log, "e2e: scenario %s: preparing packages, kernel and initramfs in %s\n", strings.ToUpper(scenario), o.Cache)
	a, err := Prepare(o)
	if err != nil {
		return err
	}
	if err := ready(a); err != nil {
		return err
	}
	w, err := newWorkDir(a, scenario)
	if err != nil {
		return err
	}
	defer w.remove()
	return netnstest.Do(func() error { return body(w) })
}

// workDir holds what the unprivileged QEMU and the test's vrssd use (in
// scenarios A and B), readable by all: the cache may sit under a directory
// only root may enter (/root/.cache).
type workDir struct {
	dir                  string
	qemu, kernel, initrd string
	vrssd, vrss          string
	socket, state, bpffs string
	config               string
}

func newWorkDir(a *Assets, scenario string) (w *workDir, err error) {
	dir, err := os.MkdirTemp("", "vrss-e2e-"+scenario+"-")
	if err != nil {
		return nil, err
	}
	w = &workDir{
		dir: dir, qemu: filepath.Join(dir, "qemu-system-x86_64"),
		kernel: filepath.Join(dir, "vmlinuz"), initrd: filepath.Join(dir, "initramfs.cpio.gz"),
		vrssd: filepath.Join(dir, "vrssd"), vrss: filepath.Join(dir, "vrss"),
		socket: filepath.Join(dir, "run", "vrss.sock"), state: filepath.Join(dir, "state"),
		bpffs: filepath.Join(dir, "bpf"), config: filepath.Join(dir, "vrssd.json"),
	}
	defer func() {
		if err != nil {
			// w is nil here: remove what was made through a copy.
			(&workDir{dir: dir, bpffs: filepath.Join(dir, "bpf")}).remove()
		}
	}()
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	for _, c := range []struct {
		from, to string
		mode     os.FileMode
	}{{a.QEMU, w.qemu, 0o755}, {a.Kernel, w.kernel, 0o644}, {a.Initramfs.Path, w.initrd, 0o644}} {
		if err := copyFile(c.from, c.to, c.mode); err != nil {
			return nil, err
		}
	}
	for bin, pkg := range map[string]string{w.vrssd: "github.com/vrss-dev/vrss/cmd/vrssd", w.vrss: "github.com/vrss-dev/vrss/cmd/vrss"} {
		if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("e2e: go build %s: %v\n%s", pkg, err, out)
		}
	}
	return w, nil
}

func (w *workDir) remove() {
	unix.Unmount(w.bpffs, unix.MNT_DETACH)
	// vrssd's bpf filesystem for AF_XDP map pins, beside its socket.
	unix.Unmount(filepath.Join(filepath.Dir(w.socket), "xsk"), unix.MNT_DETACH)
	os.RemoveAll(w.dir)
}

func copyFile(from, to string, mode os.FileMode) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// vrssdProc is the test's vrssd.
type vrssdProc struct {
	cmd    *exec.Cmd
	log    bytes.Buffer
	exited chan struct{}
}

// startVRSSD starts vrssd in the calling thread's network namespace, with
// a policy that lets uid create TAPs and allows the work directory's QEMU.
func startVRSSD(w *workDir, uid int) (*vrssdProc, error) {
	policy := fmt.Sprintf(`{"create": {"uids": [%d]}, "qemu_binaries": [%q]}`, uid, w.qemu)
	if err := os.WriteFile(w.config, []byte(policy), 0o644); err != nil {
		return nil, err
	}
	v := &vrssdProc{exited: make(chan struct{})}
	v.cmd = exec.Command(w.vrssd, "--socket", w.socket, "--state-dir", w.state, "--bpffs-dir", w.bpffs, "--config", w.config, "--log-level", "debug")
	v.cmd.Stdout, v.cmd.Stderr = &v.log, &v.log
	if err := v.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { v.cmd.Wait(); close(v.exited) }()
	for deadline := time.Now().Add(20 * time.Second); ; {
		c, err := client.Dial(context.Background(), w.socket)
		if err == nil {
			c.Close()
			return v, nil
		}
		select {
		case <-v.exited:
			return nil, fmt.Errorf("e2e: vrssd exited at start:\n%s", v.log.String())
		default:
		}
		if time.Now().After(deadline) {
			v.stop()
			return nil, fmt.Errorf("e2e: vrssd does not answer: %v\n%s", err, v.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (v *vrssdProc) stop() {
	v.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-v.exited:
	case <-time.After(20 * time.Second):
		v.cmd.Process.Kill()
		<-v.exited
	}
}

// fail adds vrssd's last log lines to err.
func (v *vrssdProc) fail(err error) error {
	return fmt.Errorf("%w\n--- vrssd log (last lines) ---\n%s", err, tail(v.log.String(), 20))
}

// execBoot returns the boot options of a guest on tap whose QEMU the TAP's
// owner (o.VMMUID) starts with `vrss qemu exec --tap TAP` against the
// test's vrssd, as scenarios A, R and P do: the queue fds come from vrssd
// and are inherited, and with no --ebpf-rss QEMU neither offers RSS nor
// loads a program. QEMU runs where it is installed if its user may run it
// there (Debian's 7.2 loads its accelerators as modules from a directory
// it finds relative to its binary, so a copy cannot start TCG); a binary
// its user cannot reach (unpacked under a root-only cache) runs from the
// work directory, as in scenario B. shown is the command as the report
// shows it (vrssCLI.line).
func execBoot(o Options, w *workDir, a *Assets, tap, console string) (b BootOptions, shown []string) {
	qemuBin := a.QEMU
	if _, err := asUser(o.VMMUID, qemuBin, "--version"); err != nil {
		qemuBin = w.qemu
	}
	execArgs := []string{"qemu", "exec", "--tap", tap, "--id", "n0", "--mac", GuestMAC, "--device-props", strings.Join(DeviceProps, ","), "--"}
	return BootOptions{
		QEMU:       qemuBin,
		Machine:    Machine{Kernel: w.kernel, Initrd: w.initrd, MemoryMB: o.MemoryMB, CPUs: o.CPUs, ExternalNet: true},
		Wrapper:    append([]string{w.vrss, "qemu", "exec", "--socket", w.socket}, execArgs[2:]...),
		ConsoleLog: filepath.Join(o.Cache, console),
		Credential: &syscall.Credential{Uid: uint32(o.VMMUID), Gid: uint32(o.VMMUID)},
	}, append(execArgs, qemuBin, "…")
}

// asUser runs a command as uid (gid = uid) and returns its output.
func asUser(uid int, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	cmd.Dir = "/"
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("e2e: %s %s as uid %d: %v\n%s", name, strings.Join(args, " "), uid, err, out)
	}
	return string(out), nil
}

func runGuestRSS(o Options, w *workDir, rep *GuestRSSReport) error {
	vd, err := startVRSSD(w, o.VMMUID)
	if err != nil {
		return err
	}
	defer vd.stop()
	fail := vd.fail
	uid := fmt.Sprint(o.VMMUID)
	if _, err := asUser(o.VMMUID, w.vrss, "tap", "create", bTAP, "--queues", fmt.Sprint(o.Queues), "--socket", w.socket); err != nil {
		return fail(err)
	}
	link, err := tapLink(bTAP)
	if err != nil {
		return err
	}

	// QEMU inherits the queues at 3.. and its program and maps right
	// after them: that is where the harness finds them too.
	firstEBPF := qemu.FirstFD + o.Queues
	m := Machine{Kernel: w.kernel, Initrd: w.initrd, MemoryMB: o.MemoryMB, CPUs: o.CPUs, ExternalNet: true}
	wrapper := []string{w.vrss, "qemu", "exec", "--socket", w.socket, "--tap", bTAP, "--ebpf-rss",
		"--id", "n0", "--mac", GuestMAC, "--device-props", strings.Join(DeviceProps, ","), "--"}
	fmt.Fprintf(o.Log, "e2e: booting %s with %s as uid %s through vrss qemu exec --ebpf-rss\n", rep.Assets.KernelRelease, rep.Assets.QEMU, uid)
	bootStart := time.Now()
	consoleLog := filepath.Join(o.Cache, "console-b.log")
	g, err := Boot(BootOptions{
		QEMU: w.qemu, Machine: m, Wrapper: wrapper, ConsoleLog: consoleLog,
		Credential: &syscall.Credential{Uid: uint32(o.VMMUID), Gid: uint32(o.VMMUID)},
	})
	if err != nil {
		return fail(err)
	}
	defer g.Close()
	rep.Boot = time.Since(bootStart)
	rep.Release = g.Release
	for _, l := range strings.Split(g.Stderr(), "\n") {
		if strings.HasPrefix(l, "vrss: ") {
			rep.VRSSLine = strings.TrimPrefix(l, "vrss: ")
		}
	}
	fmt.Fprintf(o.Log, "e2e: guest ready after %v (console log %s)\n", rep.Boot.Round(time.Millisecond), consoleLog)
	if n, err := g.Channels(guestIface); err != nil {
		return err
	} else if n != o.Queues {
		return fmt.Errorf("e2e: guest has %d combined channels enabled, want %d", n, o.Queues)
	}

	// The guest's own configuration: a key of its own, a table weighted
	// 0:5:3:2 (no hashed traffic on queue 0, where Linux puts
	// unclassified packets, so the two cannot be confused), UDP over IPv4
	// hashed on addresses only.
	r := rand.New(rand.NewPCG(o.Seed, 0x65326562))
	key := make([]byte, 40)
	for i := range key {
		key[i] = byte(r.Uint32())
	}
	weights := make([]string, o.Queues)
	for q := range weights {
		weights[q] = fmt.Sprint([]int{0, 5, 3, 2}[min(q, 3)])
	}
	if on, err := g.Feature(guestIface, "receive-hashing"); err != nil {
		return err
	} else if on {
		rep.RXHash = "on"
	} else {
		// The driver sends rx-flow-hash changes to the device only with
		// receive hashing on (they are kept and sent with the next -X
		// otherwise).
		rep.RXHash = "off"
		rep.GuestCmds = append(rep.GuestCmds, "ethtool -K eth0 rxhash on")
	}
	hexKey := make([]string, len(key))
	for i, b := range key {
		hexKey[i] = fmt.Sprintf("%02x", b)
	}
	rep.GuestCmds = append(rep.GuestCmds,
		"ethtool -N eth0 rx-flow-hash tcp4 sdfn",
		"ethtool -N eth0 rx-flow-hash udp4 sd",
		"ethtool -N eth0 rx-flow-hash tcp6 sdfn",
		"ethtool -N eth0 rx-flow-hash udp6 sdfn",
		"ethtool -X eth0 hkey "+strings.Join(hexKey, ":")+" weight "+strings.Join(weights, " "),
	)
	for _, c := range rep.GuestCmds {
		if _, err := g.MustRun(strings.ReplaceAll(c, "eth0", guestIface), time.Minute); err != nil {
			return err
		}
	}
	table, gkey, err := g.RSS(guestIface)
	if err != nil {
		return err
	}
	types, err := g.RxFlowHash(guestIface)
	if err != nil {
		return err
	}
	// Linux always sends unclassified_queue 0.
	rep.Config = rss.Config{HashTypes: types, Key: gkey, Table: table, UnclassifiedQueue: 0}
	if !bytes.Equal(gkey, key) {
		return fmt.Errorf("e2e: the guest reports key %x, it was given %x", gkey, key)
	}
	eng, err := rss.New(rep.Config)
	if err != nil {
		return fmt.Errorf("e2e: the guest's configuration: %w", err)
	}

	// What QEMU's program steers by: its maps, taken from QEMU itself.
	objs, err := takeQEMUObjects(g.Pid(), firstEBPF)
	if err != nil {
		return err
	}
	defer objs.Close()
	if rep.QEMUConfig, err = objs.Read(); err != nil {
		return err
	}
	if err := mapsMatch(rep.QEMUConfig, rep.Config); err != nil {
		return fmt.Errorf("e2e: QEMU's maps do not hold the configuration the guest reports: %w", err)
	}
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		return fmt.Errorf("e2e: enable BPF run statistics: %w", err)
	}
	defer stats.Close()

	inj, err := inject.Open(link.Attrs().Index)
	if err != nil {
		return err
	}
	defer inj.Close()
	kinds := frameKinds(key)

	// Main pass.
	var frames [][]byte
	rep.Kinds = map[string]int{}
	for range bMainPerKind {
		for _, k := range kinds {
			if k.main {
				frames = append(frames, k.build(r))
				rep.Kinds[k.name]++
			}
		}
	}
	res := &Result{Scenario: Scenario{Name: "B main", Config: rep.Config, Flows: len(frames), PerFlow: 1}, Sent: len(frames),
		Kinds: map[rss.HashReport]int{}, Expected: make([]uint64, o.Queues)}
	for _, f := range frames {
		s := eng.Steer(f)
		res.Expected[int(s.Queue)%o.Queues]++
		res.Kinds[s.Report]++
	}
	fmt.Fprintf(o.Log, "e2e: scenario B main pass: %d frames\n", len(frames))
	runs0, err := qemuProgramRuns(objs)
	if err != nil {
		return err
	}
	dl, err := deliver(g, link.Attrs().Index, inj, frames, o.Queues)
	if err != nil {
		return fmt.Errorf("e2e: scenario B main pass: %w", err)
	}
	runs1, err := qemuProgramRuns(objs)
	if err != nil {
		return err
	}
	res.Observed, res.Delivered, res.Dropped, res.Elapsed = dl.observed, dl.delivered, dl.dropped, dl.elapsed
	rep.Main, rep.Runs = res, runs1-runs0
	if strings.Contains(g.Stderr(), qemuSoftwareRSS) {
		return fmt.Errorf("e2e: QEMU fell back to software RSS:\n%s", tail(g.Stderr(), 10))
	}

	// Characterisation.
	fmt.Fprintf(o.Log, "e2e: scenario B characterisation: %d frames of each edge kind\n", bEdgePerKind)
	for _, k := range kinds {
		if k.main {
			continue
		}
		e, err := characterise(g, link.Attrs().Index, inj, objs.Program, eng, rep.Config, k, r, o.Queues)
		if err != nil {
			return fmt.Errorf("e2e: characterising %s: %w", k.name, err)
		}
		rep.Edges = append(rep.Edges, *e)
	}
	if err := g.Shutdown(30 * time.Second); err != nil {
		return err
	}
	objs.Close()
	objFiles, _ := filepath.Glob(filepath.Join(w.state, "qemu-ebpf", "*.o"))
	if len(objFiles) != 1 {
		return fmt.Errorf("e2e: %d cached QEMU objects in %s, want 1", len(objFiles), filepath.Join(w.state, "qemu-ebpf"))
	}
	if rep.EX, err = characteriseEX(objFiles[0], key, r); err != nil {
		return fmt.Errorf("e2e: _EX characterisation: %w", err)
	}
	return nil
}

// exConfigs are the _EX configurations characterised on the host: all
// types (what Windows guests enable), and _EX types without the plain
// type of the same protocol, or alone.
var exConfigs = []rss.HashType{
	rss.AllHashTypes,
	rss.HashIPv6 | rss.HashTCPEx,
	rss.HashIPEx | rss.HashTCPEx | rss.HashUDPEx,
	rss.HashIPv6 | rss.HashIPEx,
}

// characteriseEX test-runs exKinds through a fresh instance of QEMU's
// program (the object vrssd cached) under each of exConfigs. The table
// maps entry i to i, so that agreement is on the hash's low 7 bits, not
// just on a queue.
func characteriseEX(objPath string, key []byte, r *rand.Rand) ([]EXResult, error) {
	o, err := ebpfrss.LoadFile(objPath)
	if err != nil {
		return nil, err
	}
	defer o.Close()
	prog := o.Program
	const unclassified = 200
	table := make([]uint16, 128)
	for i := range table {
		table[i] = uint16(i)
	}
	var out []EXResult
	for _, types := range exConfigs {
		cfg := rss.Config{HashTypes: types, Key: key, Table: table, UnclassifiedQueue: unclassified}
		if err := o.Write(ebpfrss.FromRSS(cfg)); err != nil {
			return nil, err
		}
		eng, err := rss.New(cfg)
		if err != nil {
			return nil, err
		}
		plainCfg := cfg
		plainCfg.HashTypes &^= rss.HashIPEx | rss.HashTCPEx | rss.HashUDPEx
		var plain *rss.Engine
		if plainCfg.HashTypes != 0 {
			plain, _ = rss.New(plainCfg)
		}
		ipEng := ipTypesOnly(cfg)
		for _, k := range exKinds() {
			x := EXResult{HashTypes: types, Kind: k.name, Frames: bEdgePerKind}
			reports := map[rss.HashReport]int{}
			names := []string{"as vrss", "unclassified queue", "as an IP type", "addresses only", "plain types only"}
			match := make([]int, len(names))
			for range bEdgePerKind {
				f := k.build(r)
				ret, err := prog.Run(&ebpf.RunOptions{Data: f})
				if err != nil {
					return nil, fmt.Errorf("BPF_PROG_TEST_RUN of QEMU's program: %w", err)
				}
				q := int(uint16(ret))
				st := eng.Steer(f)
				reports[st.Report]++
				aq, _ := addressQueue(f, cfg)
				pq := unclassified
				if plain != nil {
					pq = int(plain.Steer(f).Queue)
				}
				for i, want := range []int{int(st.Queue), unclassified, int(ipEng.Steer(f).Queue), aq, pq} {
					if q == want {
						match[i]++
					}
				}
			}
			x.Agree, x.Engine, x.QEMU = match[0], reportsShort(reports), "other"
			for i, n := range match {
				if n == bEdgePerKind {
					x.QEMU = names[i]
					break
				}
			}
			out = append(out, x)
		}
	}
	return out, nil
}

// characterise sends bEdgePerKind frames of kind k and compares.
func characterise(g *Guest, index int, inj *inject.Injector, prog *ebpf.Program, eng *rss.Engine, cfg rss.Config, k frameKind, r *rand.Rand, queues int) (*EdgeResult, error) {
	e := &EdgeResult{Kind: k.name, Reports: map[rss.HashReport]int{}, Expected: make([]uint64, queues)}
	frames := make([][]byte, bEdgePerKind)
	// The rules that may explain QEMU's choices, in order of preference:
	// per frame the queue each would choose.
	ruleNames := []string{"as vrss", "unclassified queue", "as an IP type", "addresses only"}
	rules := make([][]int, len(ruleNames))
	ipEng := ipTypesOnly(cfg)
	var qemuQ []int // from test runs
	for i := range frames {
		f := k.build(r)
		frames[i] = f
		s := eng.Steer(f)
		e.Expected[int(s.Queue)%queues]++
		e.Reports[s.Report]++
		rules[0] = append(rules[0], int(s.Queue)%queues)
		rules[1] = append(rules[1], int(cfg.UnclassifiedQueue)%queues)
		rules[2] = append(rules[2], int(ipEng.Steer(f).Queue)%queues)
		aq, ok := addressQueue(f, cfg)
		if !ok {
			aq = -1
		}
		rules[3] = append(rules[3], aq%queues)
		if !k.vlan && qemuQ != nil || i == 0 && !k.vlan {
			// The kernel refuses to test-run frames shorter than some
			// headers (EINVAL): then the guest alone judges the kind.
			if ret, err := prog.Run(&ebpf.RunOptions{Data: f}); err == nil {
				qemuQ = append(qemuQ, int(uint16(ret))%queues)
			} else {
				qemuQ = nil
			}
		}
	}
	e.Sent = len(frames)
	dl, err := deliver(g, index, inj, frames, queues)
	if err != nil {
		return nil, err
	}
	if dl.delivered != uint64(len(frames)) || dl.dropped != 0 {
		return nil, fmt.Errorf("QEMU read %d of %d frames, tun dropped %d", dl.delivered, len(frames), dl.dropped)
	}
	e.Observed = dl.observed
	hist := func(qs []int) []uint64 {
		h := make([]uint64, queues)
		for _, q := range qs {
			if q < 0 {
				return nil
			}
			h[q]++
		}
		return h
	}
	if len(qemuQ) == len(frames) {
		e.TestRun = hist(qemuQ)
	}
	e.QEMU = "other"
	for i, rule := range rules {
		if e.TestRun != nil && slices.Equal(qemuQ, rule) || e.TestRun == nil && slices.Equal(e.Observed, hist(rule)) {
			e.QEMU = ruleNames[i]
			break
		}
	}
	return e, nil
}

// ipTypesOnly is an engine for cfg without its TCP and UDP hash types:
// what steers a frame whose transport header an implementation does not
// find or does not use.
func ipTypesOnly(cfg rss.Config) *rss.Engine {
	cfg.HashTypes &= rss.HashIPv4 | rss.HashIPv6 | rss.HashIPEx
	if e, err := rss.New(cfg); err == nil {
		return e
	}
	panic("e2e: a configuration that validated fails without its L4 types")
}

// addressQueue is the queue of f if only its IP addresses were hashed (the
// IPv4 or IPv6 type, no extension header substitution), whatever else the
// frame holds: one of the simple rules a differing implementation may
// follow.
func addressQueue(f []byte, cfg rss.Config) (int, bool) {
	off := 12
	for off+2 <= len(f) && (binary.BigEndian.Uint16(f[off:]) == 0x8100 || binary.BigEndian.Uint16(f[off:]) == 0x88a8) {
		off += 4
	}
	if off+2 > len(f) {
		return 0, false
	}
	var in []byte
	switch binary.BigEndian.Uint16(f[off:]) {
	case 0x0800:
		if off+2+20 > len(f) {
			return 0, false
		}
		in = f[off+2+12 : off+2+20]
	case 0x86dd:
		if off+2+40 > len(f) {
			return 0, false
		}
		in = f[off+2+8 : off+2+40]
	default:
		return 0, false
	}
	h := rss.NewToeplitz(cfg.Key).Hash(in)
	return int(cfg.Table[int(h)&(len(cfg.Table)-1)]), true
}

// takeQEMUObjects duplicates QEMU's program and maps out of the running
// QEMU (pidfd_getfd), from its fd first on: what QEMU steers by, not a
// copy.
func takeQEMUObjects(pid, first int) (*ebpfrss.Object, error) {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("e2e: pidfd_open QEMU (pid %d): %w", pid, err)
	}
	defer unix.Close(pidfd)
	var fds [qemu.EBPFRSSFDs]int
	for i := range fds {
		if fds[i], err = unix.PidfdGetfd(pidfd, first+i, 0); err != nil {
			for _, fd := range fds[:i] {
				unix.Close(fd)
			}
			return nil, fmt.Errorf("e2e: pidfd_getfd QEMU fd %d: %w", first+i, err)
		}
	}
	o, err := ebpfrss.FromFDs(fds)
	if err != nil {
		return nil, fmt.Errorf("e2e: QEMU's fds %d..%d: %w", first, first+3, err)
	}
	return o, nil
}

// qemuProgramRuns is how often QEMU's program has run (BPF statistics must be
// on).
func qemuProgramRuns(o *ebpfrss.Object) (uint64, error) {
	s, err := o.Program.Stats()
	if err != nil {
		return 0, err
	}
	return s.RunCount, nil
}

// mapsMatch reports how QEMU's maps differ from cfg, the configuration the
// guest reports.
func mapsMatch(m QEMUMaps, cfg rss.Config) error {
	var errs []error
	if !m.Redirect || m.PopulateHash {
		errs = append(errs, fmt.Errorf("redirect %v, populate_hash %v: QEMU's program does not steer by RSS", m.Redirect, m.PopulateHash))
	}
	if m.HashTypes != cfg.HashTypes {
		errs = append(errs, fmt.Errorf("hash types %s, the guest reports %s", m.HashTypes, cfg.HashTypes))
	}
	if !bytes.Equal(m.Key, cfg.Key) {
		errs = append(errs, fmt.Errorf("key %x, the guest reports %x", m.Key, cfg.Key))
	}
	if !slices.Equal(m.Table, cfg.Table) {
		errs = append(errs, fmt.Errorf("table %v, the guest reports %v", m.Table, cfg.Table))
	}
	if m.DefaultQueue != cfg.UnclassifiedQueue {
		errs = append(errs, fmt.Errorf("default queue %d, want %d", m.DefaultQueue, cfg.UnclassifiedQueue))
	}
	return errors.Join(errs...)
}

// String is scenario B's short report.
func (r *GuestRSSReport) String() string {
	var b strings.Builder
	a := r.Assets
	fmt.Fprintf(&b, "vrss e2e, scenario B (the guest configures RSS; QEMU's own eBPF program, loaded by vrssd, QEMU unprivileged)\n")
	if a != nil {
		a.writeHeader(&b, r.CPUs, r.UID, r.Release)
	}
	fmt.Fprintf(&b, "  virtio-net %d queue pairs (rss=on, ebpf-rss-fds) on TAP %s; seed %d\n", r.Queues, r.Device, r.Seed)
	if r.VRSSLine != "" {
		fmt.Fprintf(&b, "  vrss qemu exec: %s\n", r.VRSSLine)
	}
	if len(r.GuestCmds) > 0 {
		fmt.Fprintf(&b, "  guest (receive-hashing was %s):\n", r.RXHash)
		for _, c := range r.GuestCmds {
			fmt.Fprintf(&b, "    %s\n", c)
		}
	}
	c := r.Config
	if len(c.Key) > 0 {
		fmt.Fprintf(&b, "  guest reports: hash types %s, key %s…, %d-entry table %s, unclassified -> %d\n",
			c.HashTypes, hex.EncodeToString(c.Key[:8]), len(c.Table), tableShares(c.Table, r.Queues), c.UnclassifiedQueue)
		q := r.QEMUConfig
		fmt.Fprintf(&b, "  QEMU's maps:   hash types %s, key %s…, %d-entry table %s, default queue %d, redirect %v\n",
			q.HashTypes, hex.EncodeToString(q.Key[:min(8, len(q.Key))]), len(q.Table), tableShares(q.Table, r.Queues), q.DefaultQueue, q.Redirect)
	}
	if res := r.Main; res != nil {
		var ks []string
		for _, k := range sortedKeys(r.Kinds) {
			ks = append(ks, fmt.Sprintf("%s %d", k, r.Kinds[k]))
		}
		fmt.Fprintf(&b, "\nB main pass: sent %d frames, each its own flow (%s; engine reports: %s) in %v; TAP: %d read by QEMU, %d dropped; QEMU's program ran %d times\n",
			res.Sent, strings.Join(ks, ", "), kinds(res.Kinds), res.Elapsed.Round(time.Millisecond), res.Delivered, res.Dropped, r.Runs)
		fmt.Fprintf(&b, "  queue  expected  observed\n")
		for q := range res.Expected {
			mark := ""
			if res.Observed[q] != res.Expected[q] {
				mark = "  <- differs"
			}
			fmt.Fprintf(&b, "  %5d  %8d  %8d%s\n", q, res.Expected[q], res.Observed[q], mark)
		}
		fmt.Fprintf(&b, "  %5s  %8d  %8d\n", "total", sum(res.Expected), sum(res.Observed))
		if r.OK() {
			fmt.Fprintf(&b, "  PASS\n")
		} else {
			fmt.Fprintf(&b, "  FAIL\n")
		}
	}
	if len(r.Edges) > 0 {
		fmt.Fprintf(&b, "\nB characterisation (%d frames per kind, each its own flow; not pass/fail): vrss engine vs QEMU's program\n", bEdgePerKind)
		fmt.Fprintf(&b, "  %-34s %-13s %-16s %-16s %-17s %s\n", "kind", "engine report", "expected", "observed (guest)", "QEMU's test runs", "QEMU chose")
		for _, e := range r.Edges {
			tr := "-"
			if e.TestRun != nil {
				tr = fmt.Sprint(e.TestRun)
				if !slices.Equal(e.TestRun, e.Observed) {
					tr += "!"
				}
			}
			fmt.Fprintf(&b, "  %-34s %-13s %-16s %-16s %-17s %s\n", e.Kind, reportsShort(e.Reports), fmt.Sprint(e.Expected), fmt.Sprint(e.Observed), tr, e.QEMU)
		}
		n := 0
		for _, e := range r.Edges {
			if !e.Agrees() {
				n++
			}
		}
		fmt.Fprintf(&b, "  %d of %d kinds differ (see docs/semantics.md, \"Differences from QEMU's eBPF RSS program\"); ! marks test runs the guest contradicts\n", n, len(r.Edges))
	}
	if len(r.EX) > 0 {
		fmt.Fprintf(&b, "\nB host characterisation under _EX hash types (never set by Linux guests): QEMU's program test-run on a fresh instance, %d frames per kind\n", bEdgePerKind)
		var last rss.HashType
		for _, x := range r.EX {
			if x.HashTypes != last || x.Kind == r.EX[0].Kind {
				fmt.Fprintf(&b, "  hash types %s\n", x.HashTypes)
				last = x.HashTypes
			}
			mark := ""
			if x.Agree != x.Frames {
				mark = "  <- differs"
			}
			fmt.Fprintf(&b, "    %-40s engine %-18s QEMU %-18s %2d/%d agree%s\n", x.Kind, x.Engine, x.QEMU, x.Agree, x.Frames, mark)
		}
	}
	writeEnd(&b, "boot", r.Prepare, r.Boot, r.Total, r.OK())
	return b.String()
}

// reportsShort names the engine's report types for a kind.
func reportsShort(m map[rss.HashReport]int) string {
	var s []string
	for r := rss.HashReport(0); r < 16; r++ {
		if m[r] > 0 {
			s = append(s, r.String())
		}
	}
	return strings.Join(s, ",")
}
