package e2e

import (
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/internal/demo"
	"github.com/vrss-dev/vrss/internal/inject"
	"github.com/vrss-dev/vrss/internal/netnstest"
	"github.com/vrss-dev/vrss/rss"
)

// Scenario L's names and sizes.
const (
	lTAP    = "vrsse2el0"
	lDomain = "vrss-e2e-l"
	// Frames per step: lFlows flows of lPerFlow frames each.
	lFlows, lPerFlow = 200, 10
	// lReducedQueues is the queue count the guest switches to in step L2.
	lReducedQueues = 2
)

// LibvirtReport is scenario L's outcome.
type LibvirtReport struct {
	Assets         *Assets
	LibvirtVersion string
	Release        string
	Device         string
	Domain         string
	Queues         int
	CPUs           int
	Seed           uint64
	UID, GID       int // libvirt-qemu's uid and primary gid: the TAP's owner and group
	// QEMUCreds are the first QEMU's ids (/proc/PID/status Uid, Gid,
	// Groups).
	QEMUCreds string
	// Setup notes: the daemons, qemu.conf, /dev/kvm.
	Daemons, QEMUConf, KVM string
	// Commands are the host commands run, each with what it printed.
	Commands  []string
	Interface string // the domain XML's interface element
	// QEMUPid and QEMUFDs: the first domain's QEMU and the descriptors
	// through which it holds the TAP's queues (libvirtd opened them).
	QEMUPid int
	QEMUFDs []int
	Steps   []LStep
	// RSSOn is the optional rss='on' characterisation (EnvLibvirtRSS).
	RSSOn []RSSOnRun
	// Prepare, Boot and Total are wall times (Boot: virsh create to READY,
	// first start).
	Prepare, Boot, Total time.Duration
}

// LStep is one measured step: what happened before it, the TAP's queues
// as the kernel reports them, steering's gaps, and the frames.
type LStep struct {
	Name, Action string
	Config       rss.Config
	// Set is the `vrss rss set` of this step, if any, and what it
	// printed.
	Set, SetOutput string
	// Enabled and Disabled are the TAP's queues as the kernel reports
	// them (numqueues, numdisabled; vrssd's control queue is one of the
	// disabled ones); Channels the guest's combined channels.
	Enabled, Disabled, Channels int
	// Gaps are QEMU's detaches of the steering program since the step
	// began and vrssd's re-attachments (kernel trace), from Start.
	Gaps  []steerGap
	Start time.Duration
	// Chosen is the engine's histogram of the program's answers (the
	// queue before tun takes it modulo the enabled queues); Result.Expected
	// the guest's queues after the modulo. Program must equal Chosen,
	// Observed Expected.
	Chosen []uint64
	Result
	// Unconfigured frames the program saw in the step (must be 0).
	Unconfigured uint64
	// List is `vrss tap list`'s line for the TAP after the step, and
	// Reattached vrss stats' counter.
	List       string
	Reattached uint64
}

// OK reports whether the step matched the prediction exactly.
func (s *LStep) OK() bool {
	r := &s.Result
	return r.Sent > 0 && slices.Equal(r.Expected, r.Observed) && slices.Equal(s.Chosen, r.Program) &&
		r.Dropped == 0 && r.Delivered == uint64(r.Sent) && s.Unconfigured == 0
}

// OK reports whether every step passed and every detach was undone.
func (r *LibvirtReport) OK() bool {
	if len(r.Steps) != 5 {
		return false
	}
	for i := range r.Steps {
		if !r.Steps[i].OK() {
			return false
		}
		if _, closed := maxMissing(r.Steps[i].Gaps); !closed {
			return false
		}
	}
	return true
}

// RunLibvirt runs scenario L: libvirt as most people run QEMU, and as
// KubeVirt's tap binding does, on a vrss TAP. Debian's libvirt
// (libvirt-daemon-system, libvirt-clients, installed with apt-get) runs a
// transient TCG domain (virsh create) that boots the e2e guest directly
// and has an unmanaged 4-queue TAP: <interface type='ethernet'> with
// <target dev='NAME' managed='no'/> and <driver name='qemu' queues='4'/>.
// libvirtd opens that TAP by name, one TUNSETIFF with IFF_MULTI_QUEUE per
// queue, and hands the fds to QEMU, which it runs as libvirt-qemu. vrssd
// made the TAP beforehand (`vrss tap create NAME --queues 4 --owner $(id
// -u libvirt-qemu) --group $(id -g libvirt-qemu)`, as the README says:
// QEMU, running as that user, must pass tun's owner-and-group check to
// enable a queue again) and holds only a disabled control queue of it, so
// the queues steering picks are the domain's. The guest's per-queue counters
// must equal the engine's prediction after boot, after the guest halves
// and restores its queue count (ethtool -L), after a live `vrss rss set`,
// and after virsh destroy and virsh create: with no `vrss tap attach`
// anywhere, although QEMU 7.2 detaches the program at every queue change.
//
// Where: libvirtd opens the TAP in its own network namespace, so the TAP,
// vrssd and libvirtd must share one. The harness starts libvirtd (and
// virtlogd) itself, daemonized from inside the test's fresh network
// namespace, as scenarios A and B run vrssd and QEMU there: the TAP never
// exists in the host's namespace, its name cannot collide with anything,
// no host daemon (NetworkManager, udev rules, IPv6 autoconfiguration) can
// touch it or send it a frame that would spoil the exact counts, and it
// vanishes with the namespace. The price: a libvirtd the harness did not
// start (one an init system runs) must be stopped first.
func RunLibvirt(o Options) (*LibvirtReport, error) {
	start := time.Now()
	o.QEMU, o.BackportsQEMU = "", false // libvirt runs the system's QEMU
	o.defaults()
	rep := &LibvirtReport{Queues: o.Queues, CPUs: o.CPUs, Seed: o.Seed, Device: lTAP, Domain: lDomain}
	if o.Queues < 4 {
		return nil, fmt.Errorf("e2e: scenario L needs 4 queues or more, have %d", o.Queues)
	}
	sys := &Debian{Log: o.Log}
	if err := installLibvirt(sys); err != nil {
		return nil, err
	}
	var err error
	if rep.UID, rep.GID, err = libvirtIDs(); err != nil {
		return nil, err
	}
	fmt.Fprintf(o.Log, "e2e: scenario L: preparing packages, kernel and initramfs in %s\n", o.Cache)
	a, err := Prepare(o)
	if err != nil {
		return nil, err
	}
	rep.Assets = a
	for _, p := range []string{PkgLibvirtDaemon, PkgLibvirtClients} {
		a.Packages[p] = Installed(p)
	}
	rep.LibvirtVersion = libvirtVersion()
	w, err := newWorkDir(a, "l")
	if err != nil {
		return nil, err
	}
	defer w.remove()
	rep.Prepare = time.Since(start)
	// One libvirt scenario at a time on a machine: libvirtd, qemu.conf
	// and /dev/kvm are the machine's.
	unlock, err := lockCache(filepath.Join(o.Cache, "libvirt"))
	if err != nil {
		return nil, err
	}
	defer unlock()
	err = netnstest.Do(func() error { return runLibvirt(o, w, rep) })
	rep.Total = time.Since(start)
	return rep, err
}

func runLibvirt(o Options, w *workDir, rep *LibvirtReport) error {
	restoreConf, err := configureQEMUConf()
	if err != nil {
		return err
	}
	defer restoreConf()
	rep.QEMUConf = strings.Join(qemuConfLines, ", ")
	note, restoreKVM, err := kvmForLibvirt()
	if err != nil {
		return err
	}
	defer restoreKVM()
	rep.KVM = note
	daemons, err := startLibvirt(filepath.Join(o.Cache, "libvirt"), lDomain, o.Log)
	if err != nil {
		return err
	}
	defer daemons.stop()
	rep.Daemons = daemons.Note
	fmt.Fprintf(o.Log, "e2e: libvirt %s: %s, in the test's network namespace\n", rep.LibvirtVersion, rep.Daemons)

	vd, err := startVRSSD(w, rep.UID)
	if err != nil {
		return err
	}
	defer vd.stop()
	fail := func(err error) error {
		return fmt.Errorf("%w\n--- vrssd log (last lines) ---\n%s", err, tail(vd.log.String(), 20))
	}
	tr, err := startSteerTrace()
	if err != nil {
		return err
	}
	defer tr.Close()

	// The host administrator's commands: root against vrssd.
	cli := &vrssCLI{bin: w.vrss, socket: w.socket, uid: 0}
	record := func(line, out string) {
		if out = strings.TrimSpace(out); out != "" {
			line += "  -> " + strings.ReplaceAll(out, "\n", "; ")
		}
		rep.Commands = append(rep.Commands, line)
		fmt.Fprintf(o.Log, "e2e: %s\n", line)
	}
	run := func(args ...string) (string, error) {
		out, err := cli.run(args...)
		if err == nil {
			record(cli.line(args...), out)
		}
		return out, err
	}
	create := []string{"tap", "create", lTAP, "--queues", strconv.Itoa(o.Queues), "--owner", strconv.Itoa(rep.UID), "--group", strconv.Itoa(rep.GID)}
	if _, err := run(create...); err != nil {
		return fail(err)
	}
	defer cli.run("tap", "delete", lTAP)
	link, err := tapLink(lTAP)
	if err != nil {
		return err
	}
	index := link.Attrs().Index

	// The configuration is set before the domain starts, as a user would:
	// a random key, every hash type, an equal table.
	r := rand.New(rand.NewPCG(o.Seed, 0x65326c31))
	key := make([]byte, 40)
	for i := range key {
		key[i] = byte(r.Uint32())
	}
	set1 := []string{"rss", "set", lTAP, "--key", hex.EncodeToString(key), "--types", "all", "--equal", strconv.Itoa(o.Queues), "--unclassified", "0"}
	out, err := cli.run(set1...)
	if err != nil {
		return fail(err)
	}
	record(shortArgs(cli.line(set1...)), out)

	// The console: QEMU connects to a socket the harness listens on, so
	// that nothing the guest prints before the harness looks is lost, and
	// again after virsh destroy and create.
	sock := filepath.Join(w.dir, "console.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return err
	}
	defer ln.Close()
	if err := os.Chmod(sock, 0o666); err != nil {
		return err
	}
	dom := DomainOptions{
		Name: lDomain, Emulator: rep.Assets.QEMU, Kernel: w.kernel, Initrd: w.initrd,
		Append: "console=ttyS0 panic=-1 quiet", MemoryMB: o.MemoryMB, CPUs: o.CPUs,
		TAP: lTAP, Queues: o.Queues, MAC: GuestMAC, Console: sock,
	}
	xmlPath := filepath.Join(w.dir, lDomain+".xml")
	if err := os.WriteFile(xmlPath, []byte(dom.XML()), 0o644); err != nil {
		return err
	}
	rep.Interface = interfaceXML(dom.XML())
	consoleLog := filepath.Join(o.Cache, "console-l.log")
	boot := func(n int, xmlPath string) (*Guest, time.Duration, error) {
		t0 := monotonic()
		out, err := virsh(2*time.Minute, "create", xmlPath)
		if err != nil {
			return nil, t0, err
		}
		if n == 2 {
			record("virsh create "+filepath.Base(xmlPath)+" (again)", out)
		} else {
			record("virsh create "+filepath.Base(xmlPath), out)
		}
		pid, err := domainPID(lDomain)
		if err != nil {
			return nil, t0, err
		}
		ln.SetDeadline(time.Now().Add(time.Minute))
		conn, err := ln.Accept()
		if err != nil {
			return nil, t0, fmt.Errorf("e2e: QEMU did not connect to the console socket: %w", err)
		}
		logName := consoleLog
		if n > 1 {
			logName = strings.TrimSuffix(consoleLog, ".log") + "-" + strconv.Itoa(n) + ".log"
		}
		g, err := Attach(conn, pid, logName, "virsh create "+xmlPath, 5*time.Minute)
		return g, t0, err
	}

	fmt.Fprintf(o.Log, "e2e: booting %s in libvirt domain %s (TCG, %d vCPUs, QEMU as %s)\n", rep.Assets.KernelRelease, lDomain, o.CPUs, LibvirtQEMUUser)
	bootStart := time.Now()
	g, t0, err := boot(1, xmlPath)
	if err != nil {
		virsh(time.Minute, "destroy", lDomain)
		return fail(err)
	}
	defer func() {
		g.Close()
		virsh(time.Minute, "destroy", lDomain)
	}()
	rep.Boot = time.Since(bootStart)
	rep.Release = g.Release
	fmt.Fprintf(o.Log, "e2e: guest ready after %v (console log %s)\n", rep.Boot.Round(time.Millisecond), consoleLog)
	if err := checkDomainQEMU(g.Pid(), rep.UID, o.Queues, &rep.QEMUFDs); err != nil {
		return err
	}
	rep.QEMUCreds = processCreds(g.Pid())
	rep.QEMUPid = g.Pid()
	inj, err := inject.Open(index)
	if err != nil {
		return err
	}
	defer inj.Close()

	m := &lMeasure{g: g, cli: cli, tr: tr, vrssd: vd.cmd.Process.Pid, index: index, inj: inj, queues: o.Queues, seed: o.Seed, rep: rep}
	steps := []struct {
		name, action string
		do           func() (time.Duration, error)
	}{
		{"L1 after boot", "virsh create; the guest's driver set its queue pairs at probe and init ran ethtool -L eth0 combined 4", func() (time.Duration, error) { return t0, nil }},
		{"L2 fewer queues", fmt.Sprintf("the guest ran ethtool -L eth0 combined %d", lReducedQueues), func() (time.Duration, error) {
			t := monotonic()
			_, err := m.g.MustRun(fmt.Sprintf("ethtool -L %s combined %d", guestIface, lReducedQueues), time.Minute)
			return t, err
		}},
		{"L3 all queues again", fmt.Sprintf("the guest ran ethtool -L eth0 combined %d", o.Queues), func() (time.Duration, error) {
			t := monotonic()
			_, err := m.g.MustRun(fmt.Sprintf("ethtool -L %s combined %d", guestIface, o.Queues), time.Minute)
			return t, err
		}},
		{"L4 live vrss rss set", "vrss rss set with the domain running", func() (time.Duration, error) {
			t := monotonic()
			set := []string{"rss", "set", lTAP, "--weights", "5,3,1,1", "--unclassified", "3"}
			out, err := cli.run(set...)
			m.set, m.setOut = cli.line(set...), strings.TrimSpace(out)
			return t, err
		}},
		{"L5 destroyed and created again", "virsh destroy, then virsh create of the same XML: a new QEMU, the TAP opened by name again", func() (time.Duration, error) {
			if err := m.destroy(); err != nil {
				return 0, err
			}
			record("virsh destroy "+lDomain, "")
			g2, t, err := boot(2, xmlPath)
			if err != nil {
				return t, err
			}
			g.Close()
			g, m.g = g2, g2
			var fds []int
			return t, checkDomainQEMU(g2.Pid(), rep.UID, o.Queues, &fds)
		}},
	}
	for _, s := range steps {
		fmt.Fprintf(o.Log, "e2e: step %s: %s\n", s.name, s.action)
		t, err := s.do()
		if err != nil {
			return fail(fmt.Errorf("e2e: step %s: %w", s.name, err))
		}
		st, err := m.measure(s.name, s.action, t)
		if err != nil {
			return fail(fmt.Errorf("e2e: step %s: %w", s.name, err))
		}
		rep.Steps = append(rep.Steps, *st)
	}
	if err := g.Shutdown(time.Minute); err != nil {
		return err
	}
	// The guest powered off; libvirt forgets the transient domain soon
	// after QEMU exits.
	if err := waitFor(30*time.Second, func() bool { _, err := virsh(10*time.Second, "domstate", lDomain); return err != nil }); err != nil {
		return fmt.Errorf("e2e: libvirt still lists %s after the guest powered off", lDomain)
	}
	if os.Getenv(EnvLibvirtRSS) != "1" {
		return nil
	}
	// Optional: what rss='on' does on a vrss TAP with QEMU 7.2 (issue 10,
	// item 4), with 1 vCPU (libvirt's default) and with 2.
	for n, cpus := range []int{1, 2} {
		d := dom
		d.RSS, d.CPUs = true, cpus
		p := filepath.Join(w.dir, fmt.Sprintf("%s-rss-%dcpu.xml", lDomain, cpus))
		if err := os.WriteFile(p, []byte(d.XML()), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(o.Log, "e2e: rss='on' with %d vCPU(s): %s\n", cpus, interfaceXML(d.XML()))
		g2, _, err := boot(3+n, p)
		if err != nil {
			return fail(err)
		}
		g.Close()
		g, m.g = g2, g2
		ro, err := m.rssOn(cpus)
		if err != nil {
			return fail(fmt.Errorf("e2e: rss='on' with %d vCPUs: %w", cpus, err))
		}
		rep.RSSOn = append(rep.RSSOn, *ro)
		if err := m.destroy(); err != nil {
			return err
		}
	}
	return nil
}

// EnvLibvirtRSS set to 1 adds scenario L's characterisation of rss='on'
// (not judged; not in make e2e).
const EnvLibvirtRSS = "VRSS_E2E_LIBVIRT_RSS"

// RSSOnRun is what a domain with <driver queues='4' rss='on'/> did on the
// vrss TAP: QEMU 7.2 offers RSS to the guest, cannot load its own eBPF
// program and steers in software; the guest's ethtool -X sends an RSS
// command.
type RSSOnRun struct {
	CPUs int
	// QEMULog are QEMU's lines about eBPF and RSS (libvirt's domain log).
	QEMULog []string
	// The TAP's queues (kernel) and the guest's channels before and after
	// the guest's command.
	Before, After      [3]int // enabled, disabled, channels
	GuestCmd           string
	Sent               int
	Observed, Program  []uint64
	Delivered, Dropped uint64
	// Stalled says that QEMU stopped reading the TAP before every frame
	// was delivered (Delivered is then the TAP's total).
	Stalled string
}

// rssOn characterises the running rss='on' domain.
func (m *lMeasure) rssOn(cpus int) (*RSSOnRun, error) {
	ro := &RSSOnRun{CPUs: cpus, GuestCmd: fmt.Sprintf("ethtool -X %s equal %d", guestIface, m.queues)}
	look := func(v *[3]int) error {
		t, err := tuntap(m.index)
		if err != nil {
			return err
		}
		v[0], v[1] = t.Queues, t.DisabledQueues
		v[2], err = m.g.Channels(guestIface)
		return err
	}
	if err := look(&ro.Before); err != nil {
		return nil, err
	}
	if _, err := m.g.MustRun(ro.GuestCmd, time.Minute); err != nil {
		return nil, err
	}
	time.Sleep(200 * time.Millisecond)
	if err := look(&ro.After); err != nil {
		return nil, err
	}
	frames := demo.Frames(lFlows, lPerFlow, m.seed|3)
	var s0, s1 api.Stats
	if err := m.cli.json(&s0, "stats", lTAP, "--json"); err != nil {
		return nil, err
	}
	g0, err := m.g.RxQueuePackets(guestIface, ro.After[2])
	if err != nil {
		return nil, err
	}
	ro.Sent = len(frames)
	dl, err := deliver(m.g, m.index, m.inj, frames, ro.After[2])
	if err != nil {
		// QEMU 7.2's software RSS can stop reading the TAP: report what
		// arrived.
		ro.Stalled = err.Error()
		g1, gerr := m.g.RxQueuePackets(guestIface, ro.After[2])
		if gerr != nil {
			return nil, gerr
		}
		dl = &delivery{observed: sub(g1, g0)}
		if t, terr := tapStats(m.index); terr == nil {
			dl.delivered = t.TxPackets
		}
	}
	if err := m.cli.json(&s1, "stats", lTAP, "--json"); err != nil {
		return nil, err
	}
	ro.Observed, ro.Program = dl.observed, sub(s1.Queues, s0.Queues)
	ro.Delivered, ro.Dropped = dl.delivered, dl.dropped
	if b, err := os.ReadFile(filepath.Join("/var/log/libvirt/qemu", lDomain+".log")); err == nil {
		log := string(b)
		if i := strings.LastIndex(log, "starting up"); i >= 0 {
			log = log[i:]
		}
		for _, l := range strings.Split(log, "\n") {
			if strings.HasPrefix(l, "libbpf:") || strings.Contains(l, "qemu-system") && (strings.Contains(l, "RSS") || strings.Contains(l, "eBPF")) {
				ro.QEMULog = append(ro.QEMULog, strings.TrimSpace(l))
			}
		}
	}
	return ro, nil
}

// checkDomainQEMU checks that the domain's QEMU runs as uid and holds
// queues of the TAP, and returns the descriptors.
func checkDomainQEMU(pid, uid, queues int, fds *[]int) error {
	if u, err := processUID(pid); err != nil {
		return err
	} else if u != uid {
		return fmt.Errorf("e2e: the domain's QEMU (pid %d) runs as uid %d, want %d", pid, u, uid)
	}
	var err error
	if *fds, err = tapFDs(pid, lTAP); err != nil {
		return err
	}
	if len(*fds) != queues {
		return fmt.Errorf("e2e: the domain's QEMU (pid %d) holds %d queues of %s (fds %v), want %d", pid, len(*fds), lTAP, *fds, queues)
	}
	return nil
}

// processCreds is a process's uid, gid and groups, as /proc says.
func processCreds(pid int) string {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "?"
	}
	var out []string
	for _, l := range strings.Split(string(st), "\n") {
		if f := strings.Fields(l); len(f) >= 1 && (f[0] == "Uid:" || f[0] == "Gid:") {
			out = append(out, strings.ToLower(strings.TrimSuffix(f[0], ":"))+" "+f[1])
		} else if len(f) >= 1 && f[0] == "Groups:" {
			out = append(out, "groups "+strings.Join(f[1:], ","))
		}
	}
	return strings.Join(out, ", ")
}

// lMeasure carries what every step of scenario L measures with.
type lMeasure struct {
	g           *Guest
	cli         *vrssCLI
	tr          *steerTracer
	vrssd       int
	index       int
	inj         *inject.Injector
	queues      int
	seed        uint64
	rep         *LibvirtReport
	set, setOut string
	n           int
}

// destroy destroys the domain and waits for its QEMU and console to go.
func (m *lMeasure) destroy() error {
	pid := m.g.Pid()
	if _, err := virsh(time.Minute, "destroy", lDomain); err != nil {
		return err
	}
	if err := waitFor(30*time.Second, func() bool { return syscall.Kill(pid, 0) != nil }); err != nil {
		return fmt.Errorf("e2e: QEMU (pid %d) still runs after virsh destroy", pid)
	}
	select {
	case <-m.g.done:
	case <-time.After(10 * time.Second):
		return errors.New("e2e: the console did not close after virsh destroy")
	}
	// The TAP outlives the domain: only vrssd's disabled control queue is
	// left on it.
	t, err := tuntap(m.index)
	if err != nil {
		return fmt.Errorf("e2e: %s after virsh destroy: %w", lTAP, err)
	}
	if t.Queues != 0 {
		return fmt.Errorf("e2e: %s has %d enabled queues with the domain destroyed, want 0", lTAP, t.Queues)
	}
	return nil
}

func tuntap(index int) (*netlink.Tuntap, error) {
	l, err := netlink.LinkByIndex(index)
	if err != nil {
		return nil, err
	}
	t, ok := l.(*netlink.Tuntap)
	if !ok {
		return nil, fmt.Errorf("e2e: ifindex %d is a %s, not a TAP", index, l.Type())
	}
	return t, nil
}

// measure injects a step's frames and compares.
func (m *lMeasure) measure(name, action string, start time.Duration) (*LStep, error) {
	m.n++
	s := &LStep{Name: name, Action: action, Start: start, Set: m.set, SetOutput: m.setOut}
	m.set, m.setOut = "", ""
	var st api.RSSState
	if err := m.cli.json(&st, "rss", "show", lTAP, "--json"); err != nil {
		return nil, err
	}
	if st.Config == nil {
		return nil, errors.New("vrssd holds no configuration")
	}
	s.Config = *st.Config
	eng, err := rss.New(s.Config)
	if err != nil {
		return nil, err
	}
	t, err := tuntap(m.index)
	if err != nil {
		return nil, err
	}
	s.Enabled, s.Disabled = t.Queues, t.DisabledQueues
	if s.Channels, err = m.g.Channels(guestIface); err != nil {
		return nil, err
	}
	if s.Enabled != s.Channels || s.Enabled < 1 {
		return nil, fmt.Errorf("the TAP has %d queues enabled, the guest %d channels", s.Enabled, s.Channels)
	}

	frames := demo.Frames(lFlows, lPerFlow, m.seed^uint64(m.n)<<32|1)
	res := &s.Result
	res.Scenario = Scenario{Name: name, Config: s.Config, Flows: lFlows, PerFlow: lPerFlow}
	res.Sent, res.Kinds = len(frames), map[rss.HashReport]int{}
	s.Chosen, res.Expected = make([]uint64, m.queues), make([]uint64, m.queues)
	for _, f := range frames {
		r := eng.Steer(f)
		s.Chosen[int(r.Queue)%m.queues]++
		res.Expected[int(r.Queue)%s.Enabled]++ // tun takes the answer modulo the enabled queues
		res.Kinds[r.Report]++
	}
	var s0, s1 api.Stats
	if err := m.cli.json(&s0, "stats", lTAP, "--json"); err != nil {
		return nil, err
	}
	dl, err := deliver(m.g, m.index, m.inj, frames, s.Enabled)
	if err != nil {
		return nil, err
	}
	res.Observed = make([]uint64, m.queues)
	copy(res.Observed, dl.observed)
	res.Delivered, res.Dropped, res.Elapsed = dl.delivered, dl.dropped, dl.elapsed
	if err := m.cli.json(&s1, "stats", lTAP, "--json"); err != nil {
		return nil, err
	}
	if len(s0.Queues) != m.queues || len(s1.Queues) != m.queues {
		return nil, fmt.Errorf("vrss stats reports %d queues, the TAP has %d", len(s1.Queues), m.queues)
	}
	res.Program = sub(s1.Queues, s0.Queues)
	s.Unconfigured = s1.Unconfigured - s0.Unconfigured
	s.Reattached = s1.Reattached
	s.Gaps = steerGaps(eventsSince(m.tr.Events(100*time.Millisecond, m.g.Pid(), m.vrssd), start), m.g.Pid(), m.vrssd)
	if out, err := m.cli.run("tap", "list"); err == nil {
		lines := strings.Split(strings.TrimSpace(out), "\n")
		for _, l := range lines[1:] {
			if f := strings.Fields(l); len(f) > 0 && f[0] == lTAP {
				s.List = lines[0] + "\n" + l
			}
		}
	}
	return s, nil
}

// eventsSince keeps the events at or after t.
func eventsSince(ev []steerEvent, t time.Duration) []steerEvent {
	var out []steerEvent
	for _, e := range ev {
		if e.At >= t {
			out = append(out, e)
		}
	}
	return out
}

// String is scenario L's report: per step the TAP's queues, steering's
// gaps and, per queue, the program's answers (engine), the guest's
// predicted and measured counts, and the program's counters.
func (r *LibvirtReport) String() string {
	var b strings.Builder
	a := r.Assets
	fmt.Fprintf(&b, "vrss e2e, scenario L (libvirt %s: a transient TCG domain whose unmanaged %d-queue vrss TAP libvirtd opens by name)\n", r.LibvirtVersion, r.Queues)
	if a != nil {
		fmt.Fprintf(&b, "  QEMU %s (-accel tcg, %d vCPUs) run by libvirtd as %s (uid %d, primary gid %d), guest %s (uname -r %s)\n",
			a.QEMUVersion, r.CPUs, LibvirtQEMUUser, r.UID, r.GID, a.KernelRelease, r.Release)
		var pk []string
		for _, p := range sortedKeys(a.Packages) {
			pk = append(pk, strings.TrimSpace(p+" "+a.Packages[p]))
		}
		fmt.Fprintf(&b, "  packages: %s\n", strings.Join(pk, ", "))
	}
	fmt.Fprintf(&b, "  libvirt daemons, started by the harness in the test's network namespace (where vrssd and the TAP are): %s\n", r.Daemons)
	fmt.Fprintf(&b, "  qemu.conf for the run: %s; /dev/kvm: %s\n", r.QEMUConf, r.KVM)
	fmt.Fprintf(&b, "  seed %d; the domain's interface: %s\n", r.Seed, r.Interface)
	if len(r.Commands) > 0 {
		fmt.Fprintf(&b, "  host commands (root, against the test's vrssd; no vrss tap attach anywhere):\n")
		for _, c := range r.Commands {
			fmt.Fprintf(&b, "    %s\n", c)
		}
	}
	if r.QEMUPid != 0 {
		fmt.Fprintf(&b, "  QEMU (pid %d; %s) holds %s's queues at fds %s, opened by libvirtd by name\n", r.QEMUPid, r.QEMUCreds, r.Device, joinInts(r.QEMUFDs, " "))
	}
	for i := range r.Steps {
		s := &r.Steps[i]
		c := s.Config
		fmt.Fprintf(&b, "\n%s: %s\n", s.Name, s.Action)
		if s.Set != "" {
			fmt.Fprintf(&b, "  %s  -> %s\n", s.Set, s.SetOutput)
		}
		fmt.Fprintf(&b, "  configuration in force (vrss rss show): hash types %s, key %s…, %d-entry table %s, unclassified -> %d\n",
			c.HashTypes, hex.EncodeToString(c.Key[:min(8, len(c.Key))]), len(c.Table), tableShares(c.Table, r.Queues), c.UnclassifiedQueue)
		fmt.Fprintf(&b, "  TAP (kernel): %d queues enabled, %d disabled (vrssd's control queue is one); guest: %d combined channels\n", s.Enabled, s.Disabled, s.Channels)
		fmt.Fprintf(&b, "  steering (QEMU's detaches and vrssd's re-attachments, kernel trace; times from the step's start): %s\n", describeGaps(s.Gaps, s.Start))
		if s.List != "" {
			for _, l := range strings.Split(s.List, "\n") {
				fmt.Fprintf(&b, "  | %s\n", l)
			}
		}
		res := &s.Result
		fmt.Fprintf(&b, "  sent %d frames from %d flows (%s) in %v; TAP: %d read by QEMU, %d dropped\n",
			res.Sent, lFlows, kinds(res.Kinds), res.Elapsed.Round(time.Millisecond), res.Delivered, res.Dropped)
		fmt.Fprintf(&b, "  queue  program's answer  predicted  measured   program  (engine; guest after tun's modulo %d; guest's rx_queue_N_packets; vrss stats)\n", s.Enabled)
		for q := 0; q < r.Queues; q++ {
			mark := ""
			if res.Observed[q] != res.Expected[q] || res.Program[q] != s.Chosen[q] {
				mark = "  <- differs"
			}
			fmt.Fprintf(&b, "  %5d  %16d  %9d  %8d  %8d%s\n", q, s.Chosen[q], res.Expected[q], res.Observed[q], res.Program[q], mark)
		}
		fmt.Fprintf(&b, "  %5s  %16d  %9d  %8d  %8d\n", "total", sum(s.Chosen), sum(res.Expected), sum(res.Observed), sum(res.Program))
		if s.OK() {
			fmt.Fprintf(&b, "  PASS\n")
		} else {
			fmt.Fprintf(&b, "  FAIL\n")
		}
	}
	for _, ro := range r.RSSOn {
		fmt.Fprintf(&b, "\nrss='on' (characterisation, not judged), %d vCPU(s): <driver name='qemu' queues='%d' rss='on'/>\n", ro.CPUs, r.Queues)
		for _, l := range ro.QEMULog {
			fmt.Fprintf(&b, "  QEMU: %s\n", l)
		}
		fmt.Fprintf(&b, "  at READY: TAP %d queues enabled, %d disabled; guest %d channels\n", ro.Before[0], ro.Before[1], ro.Before[2])
		fmt.Fprintf(&b, "  guest: %s -> TAP %d queues enabled, %d disabled; guest %d channels\n", ro.GuestCmd, ro.After[0], ro.After[1], ro.After[2])
		if ro.Stalled != "" {
			fmt.Fprintf(&b, "  sent %d frames: %s; guest's rx_queue_N_packets %v; vrss program's answers %v\n", ro.Sent, ro.Stalled, ro.Observed, ro.Program)
		} else {
			fmt.Fprintf(&b, "  sent %d frames: TAP %d read by QEMU, %d dropped; guest's rx_queue_N_packets %v; vrss program's answers %v\n", ro.Sent, ro.Delivered, ro.Dropped, ro.Observed, ro.Program)
		}
	}
	writeEnd(&b, "first boot", r.Prepare, r.Boot, r.Total, r.OK())
	return b.String()
}
