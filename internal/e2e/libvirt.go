package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Debian packages scenario L installs, and the user libvirt runs QEMU as.
const (
	PkgLibvirtDaemon  = "libvirt-daemon-system"
	PkgLibvirtClients = "libvirt-clients"
	// PkgLibvirtSysv is libvirt-daemon-system's init-script flavour: on a
	// machine without systemd it satisfies libvirt-daemon-system without
	// pulling systemd in (the other alternative, -systemd, installs
	// systemd and systemd-sysv).
	PkgLibvirtSysv = "libvirt-daemon-system-sysv"
	// LibvirtQEMUUser is the user and group Debian's libvirt runs QEMU as
	// (qemu.conf's user and group defaults).
	LibvirtQEMUUser = "libvirt-qemu"

	qemuConf       = "/etc/libvirt/qemu.conf"
	libvirtdPID    = "/run/libvirtd.pid"
	virtlogdPID    = "/run/virtlogd.pid"
	libvirtdSocket = "/run/libvirt/libvirt-sock"
	virtlogdSocket = "/run/libvirt/virtlogd-sock"
	libvirtURI     = "qemu:///system"
	kvmDevice      = "/dev/kvm"
)

// installLibvirt installs libvirt's daemon and clients with apt-get, as the
// harness installs QEMU, without starting any service: where no
// policy-rc.d says so already, one that refuses every start is in place
// for the install and removed after it.
func installLibvirt(d *Debian) error {
	pkgs := []string{PkgLibvirtDaemon, PkgLibvirtClients}
	if Installed(PkgLibvirtDaemon) == "" && Installed("libvirt-daemon-system-systemd") == "" {
		if _, err := os.Stat("/run/systemd/system"); err != nil {
			pkgs = append(pkgs, PkgLibvirtSysv)
		}
	}
	missing := false
	for _, p := range pkgs {
		missing = missing || Installed(p) == ""
	}
	if !missing {
		return nil
	}
	const policy = "/usr/sbin/policy-rc.d"
	if _, err := os.Lstat(policy); errors.Is(err, os.ErrNotExist) {
		if err := os.WriteFile(policy, []byte("#!/bin/sh\n# vrss e2e: no service starts while it installs libvirt\nexit 101\n"), 0o755); err != nil {
			return err
		}
		defer os.Remove(policy)
	}
	return d.Install(pkgs...)
}

// libvirtIDs returns the uid and primary gid of libvirt-qemu, the user
// Debian's libvirt runs QEMU as (`id -u libvirt-qemu`, `id -g
// libvirt-qemu`: the primary group is kvm). libvirt runs QEMU with the
// group libvirt-qemu and the user's supplementary groups, kvm among
// them, so a TAP owned by this uid and gid passes tun's owner-and-group
// check when QEMU enables a queue again.
func libvirtIDs() (uid, gid int, err error) {
	u, err := user.Lookup(LibvirtQEMUUser)
	if err != nil {
		return 0, 0, fmt.Errorf("e2e: %w (installed by %s)", err, PkgLibvirtDaemon)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid, nil
}

// Lines the harness adds to qemu.conf for the run, between markers, so
// that a later run finds and removes them even if this one was killed.
const (
	qemuConfBegin = "# vrss e2e (internal/e2e, scenario L): added for a run, removed after it"
	qemuConfEnd   = "# end of vrss e2e"
)

// qemuConfLines make libvirtd's QEMU driver work without systemd,
// machined and a cgroup hierarchy of its own: no security driver
// (AppArmor would need its profiles loaded), no cgroup controllers (it
// would create machine cgroups), no private /dev mount namespace for
// QEMU.
var qemuConfLines = []string{
	`security_driver = "none"`,
	`cgroup_controllers = [ ]`,
	`namespaces = [ ]`,
}

// withoutHarnessBlock removes the harness's block from a qemu.conf.
func withoutHarnessBlock(conf string) string {
	for {
		i := strings.Index(conf, qemuConfBegin)
		if i < 0 {
			return conf
		}
		j := strings.Index(conf[i:], qemuConfEnd)
		if j < 0 {
			return conf[:i]
		}
		end := i + j + len(qemuConfEnd)
		if end < len(conf) && conf[end] == '\n' {
			end++
		}
		conf = conf[:i] + conf[end:]
	}
}

// configureQEMUConf adds the harness's lines to qemu.conf (once) and
// returns the function that takes them out again.
func configureQEMUConf() (restore func(), err error) {
	b, err := os.ReadFile(qemuConf)
	if err != nil {
		return nil, err
	}
	st, err := os.Stat(qemuConf)
	if err != nil {
		return nil, err
	}
	orig := withoutHarnessBlock(string(b))
	conf := orig
	if conf != "" && !strings.HasSuffix(conf, "\n") {
		conf += "\n"
	}
	conf += qemuConfBegin + "\n" + strings.Join(qemuConfLines, "\n") + "\n" + qemuConfEnd + "\n"
	if err := os.WriteFile(qemuConf, []byte(conf), st.Mode().Perm()); err != nil {
		return nil, err
	}
	return func() {
		if b, err := os.ReadFile(qemuConf); err == nil {
			os.WriteFile(qemuConf, []byte(withoutHarnessBlock(string(b))), st.Mode().Perm())
		}
	}, nil
}

// kvmForLibvirt gives /dev/kvm Debian's usual owner and mode (root:kvm
// 0660, what udev sets on an ordinary system) when it exists but its
// group may not use it, and returns what it did and the function that puts
// it back. The reason is libvirt 9.0's capability cache, not KVM: the
// domain is TCG. libvirt probes QEMU's capabilities with a QEMU that
// finds KVM, then declares its cache stale whenever the QEMU user cannot
// open /dev/kvm, and probes again, about a dozen times per `virsh create`
// (48 s instead of 0.4 s here).
func kvmForLibvirt() (note string, restore func(), err error) {
	st, err := os.Stat(kvmDevice)
	if err != nil {
		return "absent", func() {}, nil
	}
	g, err := user.LookupGroup("kvm")
	if err != nil {
		return "", nil, fmt.Errorf("e2e: %w (libvirt-daemon-system makes it)", err)
	}
	gid, _ := strconv.Atoi(g.Gid)
	sys := st.Sys().(*syscall.Stat_t)
	mode := st.Mode().Perm()
	if int(sys.Gid) == gid && mode&0o060 == 0o060 || mode&0o006 == 0o006 {
		return fmt.Sprintf("%v, group %d: usable by libvirt's QEMU user (group kvm)", mode, sys.Gid), func() {}, nil
	}
	if err := os.Chown(kvmDevice, int(sys.Uid), gid); err != nil {
		return "", nil, err
	}
	if err := os.Chmod(kvmDevice, 0o660); err != nil {
		os.Chown(kvmDevice, int(sys.Uid), int(sys.Gid))
		return "", nil, err
	}
	note = fmt.Sprintf("was %v %d:%d, set to root:kvm 0660 for the run (libvirt 9.0 re-probes QEMU's capabilities for every domain start when its QEMU user cannot open it), restored after", mode, sys.Uid, sys.Gid)
	return note, func() {
		os.Chown(kvmDevice, int(sys.Uid), int(sys.Gid))
		os.Chmod(kvmDevice, mode)
	}, nil
}

// pidAlive reads a pid file and reports the pid if that process exists and
// its command is comm.
func pidAlive(pidFile, comm string) int {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	c, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil || strings.TrimSpace(string(c)) != comm {
		return 0
	}
	return pid
}

// answers reports whether something accepts connections on a unix socket.
func answers(path string) bool {
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// libvirtDaemons are the libvirtd and virtlogd this run started (0: not
// started by it).
type libvirtDaemons struct {
	libvirtd, virtlogd int
	// state records their pids, so that a later run can stop what a
	// killed run left behind (and nothing else).
	state string
	// Note says what was started where, for the report.
	Note string
}

// startLibvirt starts virtlogd (unless one runs: it only writes log files
// and is the same in every network namespace) and libvirtd, daemonized, in
// the calling thread's network namespace. A libvirtd this harness did not
// start is an error: the TAP must be in libvirtd's network namespace.
func startLibvirt(stateDir, domain string, log io.Writer) (*libvirtDaemons, error) {
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return nil, err
	}
	d := &libvirtDaemons{state: filepath.Join(stateDir, "daemons")}
	d.stopLeftovers(domain, log)
	if pid := pidAlive(libvirtdPID, "libvirtd"); pid != 0 || answers(libvirtdSocket) {
		return nil, fmt.Errorf("e2e: a libvirtd this harness did not start is running (pid file %s: %d): scenario L runs its own libvirtd in the test's network namespace, where vrssd makes the TAP that libvirtd opens by name; stop that libvirtd (and its socket units), or leave L out (VRSS_E2E_SCENARIOS=A,B)", libvirtdPID, pid)
	}
	var notes []string
	if pid := pidAlive(virtlogdPID, "virtlogd"); pid != 0 || answers(virtlogdSocket) {
		notes = append(notes, fmt.Sprintf("virtlogd already running (pid %d)", pid))
	} else {
		if out, err := exec.Command(lookPath("virtlogd", "/usr/sbin/virtlogd"), "-d").CombinedOutput(); err != nil {
			return nil, fmt.Errorf("e2e: virtlogd -d: %v\n%s", err, out)
		}
		if err := waitFor(10*time.Second, func() bool { return answers(virtlogdSocket) }); err != nil {
			return nil, fmt.Errorf("e2e: virtlogd does not answer on %s", virtlogdSocket)
		}
		d.virtlogd = pidAlive(virtlogdPID, "virtlogd")
		notes = append(notes, fmt.Sprintf("virtlogd -d (pid %d)", d.virtlogd))
	}
	d.save()
	if out, err := exec.Command(lookPath("libvirtd", "/usr/sbin/libvirtd"), "-d").CombinedOutput(); err != nil {
		d.stop()
		return nil, fmt.Errorf("e2e: libvirtd -d: %v\n%s", err, out)
	}
	d.libvirtd = pidAlive(libvirtdPID, "libvirtd")
	d.save()
	if err := waitFor(60*time.Second, func() bool { _, err := virsh(10*time.Second, "uri"); return err == nil }); err != nil {
		d.stop()
		return nil, fmt.Errorf("e2e: libvirtd does not answer: %v", err)
	}
	notes = append(notes, fmt.Sprintf("libvirtd -d (pid %d)", d.libvirtd))
	d.Note = strings.Join(notes, ", ")
	return d, nil
}

func (d *libvirtDaemons) save() {
	os.WriteFile(d.state, fmt.Appendf(nil, "%d %d\n", d.libvirtd, d.virtlogd), 0o644)
}

// stopLeftovers stops the daemons a killed run of this harness left
// running (the pids it recorded, if they are still those daemons), and
// that run's domain.
func (d *libvirtDaemons) stopLeftovers(domain string, log io.Writer) {
	b, err := os.ReadFile(d.state)
	if err != nil {
		return
	}
	var old libvirtDaemons
	fmt.Sscan(string(b), &old.libvirtd, &old.virtlogd)
	if old.libvirtd != 0 && pidAlive(libvirtdPID, "libvirtd") == old.libvirtd {
		fmt.Fprintf(log, "e2e: stopping libvirtd (pid %d) that an earlier run left behind\n", old.libvirtd)
		virsh(30*time.Second, "destroy", domain)
	} else {
		old.libvirtd = 0
	}
	if old.virtlogd != 0 && pidAlive(virtlogdPID, "virtlogd") != old.virtlogd {
		old.virtlogd = 0
	}
	old.stop()
	os.Remove(d.state)
}

// stop ends the daemons this run started.
func (d *libvirtDaemons) stop() {
	for _, pid := range []int{d.libvirtd, d.virtlogd} {
		if pid == 0 {
			continue
		}
		syscall.Kill(pid, syscall.SIGTERM)
		if waitFor(20*time.Second, func() bool { return syscall.Kill(pid, 0) != nil }) != nil {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	d.libvirtd, d.virtlogd = 0, 0
	if d.state != "" {
		os.Remove(d.state)
	}
}

// waitFor polls ok until it holds or timeout passes.
func waitFor(timeout time.Duration, ok func() bool) error {
	for deadline := time.Now().Add(timeout); ; {
		if ok() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %v", timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// virsh runs `virsh -c qemu:///system ARGS` and returns its output.
func virsh(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, lookPath("virsh", "/usr/bin/virsh"), append([]string{"-q", "-c", libvirtURI}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("virsh %s: %v\n%s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// libvirtVersion is what `libvirtd --version` says, e.g. "9.0.0".
func libvirtVersion() string {
	out, err := exec.Command(lookPath("libvirtd", "/usr/sbin/libvirtd"), "--version").Output()
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(out))
	if len(f) == 0 {
		return "?"
	}
	return f[len(f)-1]
}

// DomainOptions describe scenario L's transient domain.
type DomainOptions struct {
	Name           string
	Emulator       string // the QEMU binary
	Kernel, Initrd string // direct kernel boot
	Append         string // kernel command line
	MemoryMB, CPUs int
	TAP            string // the unmanaged TAP
	Queues         int
	MAC            string
	Console        string // unix socket the harness listens on; QEMU connects
	// RSS adds rss='on' to the interface's driver: QEMU offers
	// VIRTIO_NET_F_RSS and steers itself as the guest says (7.2 without
	// its eBPF program: in software).
	RSS bool
}

// XML is the domain's libvirt XML: a TCG guest (type 'qemu'), direct
// kernel boot, no disks, no USB, no balloon, the serial console on a unix
// socket, and the unmanaged TAP, which libvirtd opens by name with one
// queue per queue pair and hands to QEMU.
func (o DomainOptions) XML() string {
	rss := ""
	if o.RSS {
		rss = " rss='on'"
	}
	return fmt.Sprintf(`<domain type='qemu'>
  <name>%s</name>
  <memory unit='MiB'>%d</memory>
  <vcpu>%d</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>%s</kernel>
    <initrd>%s</initrd>
    <cmdline>%s</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>%s</emulator>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
    <interface type='ethernet'>
      <mac address='%s'/>
      <target dev='%s' managed='no'/>
      <model type='virtio'/>
      <driver name='qemu' queues='%d'%s/>
      <rom enabled='no'/>
    </interface>
    <serial type='unix'>
      <source mode='connect' path='%s'/>
      <target port='0'/>
    </serial>
  </devices>
</domain>
`, o.Name, o.MemoryMB, o.CPUs, o.Kernel, o.Initrd, o.Append, o.Emulator, o.MAC, o.TAP, o.Queues, rss, o.Console)
}

// interfaceXML is the domain XML's interface element, for the report.
func interfaceXML(xml string) string {
	i := strings.Index(xml, "<interface")
	j := strings.Index(xml, "</interface>")
	if i < 0 || j < 0 {
		return ""
	}
	var lines []string
	for _, l := range strings.Split(xml[i:j+len("</interface>")], "\n") {
		lines = append(lines, strings.TrimSpace(l))
	}
	return strings.Join(lines, "")
}

// domainPID is the pid of a running domain's QEMU, from libvirt's pid file.
func domainPID(name string) (int, error) {
	b, err := os.ReadFile(filepath.Join("/run/libvirt/qemu", name+".pid"))
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}
