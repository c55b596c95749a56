package e2e

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/vrss-dev/vrss/internal/inject"
)

// Netkit queue leasing (Linux 7.1) cannot be tried on the project's
// machines (Linux 6.18, no netkit driver) and succeeds only on NICs with
// queue-management operations (gve, mlx5, bnxt, ...), none of which QEMU
// emulates. RunNetkit therefore boots Debian sid's kernel (7.2, netkit
// built in) with a 4-queue virtio-net NIC and runs package netkit's
// privileged tests there, as root in the guest: what a virtual NIC
// allows, up to the kernel's refusal of the lease.

// SidSources is a one-line private sources list for Debian sid, whose
// cloud kernel is 7.2.
const SidSources = "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian sid main"

// NetkitGuestTest is where the netkit test binary goes in the guest image;
// vrssd and vrss go to bin/ as well.
const NetkitGuestTest = "bin/netkit.test"

// netkitVRSSD is the guest's script for vrssd's --netkit on a NIC that
// cannot lease: vrssd (as root, its own bpffs and state), a namespace
// held by a process, `vrss afxdp create --netkit` on eth0's queues 1-2,
// then what is left: records, pins, ports, devices named after the port
// in either namespace, and the same port made and deleted without
// --netkit. Each finding is a "VRSSD key value" line.
const netkitVRSSD = `S=/tmp/v/vrss.sock; mkdir -p /tmp/v; echo '{}' >/tmp/v/vrssd.json
/bin/vrssd --socket $S --state-dir /tmp/v/state --bpffs-dir /sys/fs/bpf/vrss --config /tmp/v/vrssd.json --log-level debug >/tmp/v/log 2>&1 &
V=$!
i=0; while [ ! -S $S ]; do i=$((i+1)); [ $i -gt 200 ] && break; sleep 0.1; done
[ -S $S ] || sed 's/^/VRSSD not-started /' /tmp/v/log
unshare -n sleep 600 & P=$!; sleep 0.2
/bin/vrss afxdp create nkp0 --dev eth0 --queue-start 1 --queues 2 --netkit /proc/$P/ns/net --socket $S >/tmp/v/out 2>&1; echo "VRSSD create-exit $?"
echo "VRSSD create-said $(cat /tmp/v/out)"
echo "VRSSD records $(ls /tmp/v/state/afxdp 2>/dev/null | wc -l)"
echo "VRSSD pins $(ls /sys/fs/bpf/vrss/afxdp 2>/dev/null | wc -l)"
echo "VRSSD list $(/bin/vrss afxdp list --json --socket $S)"
echo "VRSSD nk-in-netns $(nsenter -n -t $P ip -o link | grep -c nkp0)"
echo "VRSSD nk-in-root $(ip -o link | grep -c nkp0)"
/bin/vrss afxdp create nkp0 --dev eth0 --queue-start 1 --queues 2 --socket $S >/tmp/v/out 2>&1; echo "VRSSD plain-exit $? $(cat /tmp/v/out)"
/bin/vrss afxdp delete nkp0 --socket $S >/tmp/v/out 2>&1; echo "VRSSD delete-exit $? $(cat /tmp/v/out)"
kill $P; kill $V; sleep 0.3; grep -i netkit /tmp/v/log | sed 's/^/VRSSD log /'
`

// netkitVRSSDScript is where netkitVRSSD goes in the guest image.
const netkitVRSSDScript = "bin/netkit-vrssd.sh"

// buildStatic builds a command of this module static, for the guest.
func buildStatic(dir, pkg string) ([]byte, error) {
	bin := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("e2e: go build %s: %v\n%s", pkg, err, out)
	}
	return os.ReadFile(bin)
}

// netkitGuestRun is the command the guest runs: package netkit's kernel
// tests, TestLeaseNIC on eth0 among them.
const netkitGuestRun = "VRSS_NETKIT_NIC=eth0 VRSS_REQUIRE_PRIV=1 /" + NetkitGuestTest + " -test.v -test.count=1 -test.run '^(TestKernel|TestNSID|TestLeaseNIC)$'"

// netkitGuestRunBefore71 is netkitGuestRun for a kernel that cannot
// lease (TestLeaseNIC needs one that can).
const netkitGuestRunBefore71 = "VRSS_REQUIRE_PRIV=1 /" + NetkitGuestTest + " -test.v -test.count=1 -test.run '^(TestKernel|TestNSID)$'"

// NetkitOptions configure RunNetkit.
type NetkitOptions struct {
	Cache string    // default CacheDir()
	Log   io.Writer // progress; nil discards it
	// TapFiles are the queues of the multi-queue TAP the guest's NIC
	// sits on (QEMU gets them as descriptors 3, 4, ...): one queue pair
	// each.
	TapFiles []*os.File
	// ConsoleLog, if set, receives the guest's console.
	ConsoleLog string
	// QEMU is the QEMU binary; default qemu-system-x86_64 from PATH, and
	// with Before71 bookworm-backports' QEMU 10 (unpacked into the cache,
	// as scenario B's): bookworm's QEMU 7.2 under TCG panics that kernel
	// in virtio_pci's probe here (kmem_cache_alloc, twice in a row).
	QEMU string
	// Before71 boots bookworm-backports' cloud kernel (6.12) instead of
	// sid's: a kernel with netkit but without queue leasing, where the
	// create must be refused and the pair such a kernel makes deleted.
	Before71 bool
	// AFXDPInject, if set, sends into the TAP: on 7.2 the AF_XDP step
	// (afxdp72.go) runs last, with frames from the host through it.
	AFXDPInject *inject.Injector
}

// NetkitReport is what RunNetkit saw.
type NetkitReport struct {
	KernelPackage, KernelVersion string
	Release                      string // the guest's uname -r
	Queues                       int
	// Output is the guest test's output, Status its exit status.
	Output string
	Status int
	// Results are the output's RESULT lines: what the guest did.
	Results []string
	// VRSSD is what the guest's vrssd run found (netkitVRSSD's VRSSD
	// lines, by key), VRSSDOutput all of it.
	VRSSD       map[string]string
	VRSSDOutput string
	// AFXDP is what the AF_XDP step saw (nil if it did not run),
	// AFXDPErr why it failed.
	AFXDP    *AFXDP72Report
	AFXDPErr error
	// Prepare is how long the downloads, the build and the image took,
	// Boot the guest's boot, Run the test in it.
	Prepare, Boot, Run time.Duration
	// Before71: the guest ran bookworm-backports' kernel. QEMU is the
	// QEMU that ran it ("" : the one in PATH).
	Before71 bool
	QEMU     string
}

var resultRe = regexp.MustCompile(`(?m)^\s*\S+\.go:\d+: (RESULT .*)$`)

// OK says the guest's tests passed: on 7.2, TestLeaseNIC among them (not
// skipped) and vrssd refused --netkit with the driver's reason; before
// 7.1, TestKernel saw the pair the kernel made instead of a single
// device deleted again, and vrssd refused --netkit as needing 7.1; and
// vrssd left nothing.
func (r *NetkitReport) OK() bool {
	ok := r.Status == 0 && strings.Contains(r.Output, "--- PASS: TestKernel") && strings.Contains(r.Output, "\nPASS")
	if r.Before71 {
		return ok && strings.Contains(r.Output, "it made a netkit pair (IFLA_NETKIT_PAIRING ignored)") &&
			r.VRSSDRefused("AF_XDP port nkp0: --netkit: Linux 7.1 or later is needed for netkit queue leasing (this kernel: "+r.Release+";")
	}
	return ok && strings.Contains(r.Output, "--- PASS: TestLeaseNIC") &&
		r.VRSSDRefused("AF_XDP port nkp0: --netkit: netkit: leasing queue 1 of eth0: eth0's driver cannot lease queues")
}

// VRSSDRefused says the guest's vrssd refused the --netkit create in one
// line saying want, and left no record, pin, port or netkit.
func (r *NetkitReport) VRSSDRefused(want string) bool {
	v := r.VRSSD
	return v["create-exit"] != "" && v["create-exit"] != "0" && strings.Contains(v["create-said"], want) &&
		v["records"] == "0" && v["pins"] == "0" && v["list"] == "[]" && v["nk-in-netns"] == "0" && v["nk-in-root"] == "0"
}

func (r *NetkitReport) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "netkit in a guest: %s %s (uname -r %s), virtio-net with %d queue pairs\n", r.KernelPackage, r.KernelVersion, r.Release, r.Queues)
	if r.QEMU != "" {
		fmt.Fprintf(&b, "  QEMU %s\n", r.QEMU)
	}
	fmt.Fprintf(&b, "  prepare %v, boot %v, test %v\n", r.Prepare.Round(time.Millisecond), r.Boot.Round(time.Millisecond), r.Run.Round(time.Millisecond))
	for _, l := range r.Results {
		fmt.Fprintf(&b, "  %s\n", l)
	}
	for _, l := range strings.Split(strings.TrimSpace(r.VRSSDOutput), "\n") {
		if strings.HasPrefix(l, "VRSSD ") {
			fmt.Fprintf(&b, "  %s\n", l)
		}
	}
	verdict := "PASS"
	if !r.OK() {
		verdict = fmt.Sprintf("FAIL (exit status %d)\n%s", r.Status, r.Output)
	}
	b.WriteString("  " + verdict)
	return b.String()
}

// buildNetkitTest builds package netkit's tests as a static binary.
func buildNetkitTest() ([]byte, error) {
	dir, err := os.MkdirTemp("", "vrss-e2e-netkit-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "netkit.test")
	cmd := exec.Command("go", "test", "-c", "-trimpath", "-ldflags=-s -w", "-o", bin, "github.com/vrss-dev/vrss/netkit")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("e2e: go test -c netkit: %v\n%s", err, out)
	}
	return os.ReadFile(bin)
}

// RunNetkit fetches sid's cloud kernel into the cache (once), builds the
// image with package netkit's test binary, boots it on o.TapFiles and
// runs the tests. The error is for a run that could not be carried out;
// a test that failed in the guest is a report that is not OK.
func RunNetkit(o NetkitOptions) (*NetkitReport, error) {
	if o.Cache == "" {
		o.Cache = CacheDir()
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if len(o.TapFiles) < 2 {
		return nil, fmt.Errorf("e2e: netkit: %d TAP queues, want at least 2 (a lease of queue 1)", len(o.TapFiles))
	}
	rep := &NetkitReport{Queues: len(o.TapFiles), Before71: o.Before71, QEMU: o.QEMU}
	start := time.Now()
	kernel, initrd, err := prepareNetkit(o, rep)
	if err != nil {
		return nil, err
	}
	rep.Prepare = time.Since(start)

	fds := make([]int, len(o.TapFiles))
	for i := range fds {
		fds[i] = 3 + i
	}
	start = time.Now()
	g, err := Boot(BootOptions{
		QEMU:       rep.QEMU,
		Machine:    Machine{Kernel: kernel, Initrd: initrd, Queues: len(fds), TapFDs: fds, CPUs: 2, MemoryMB: 512},
		ExtraFiles: o.TapFiles, ConsoleLog: o.ConsoleLog, Timeout: 3 * time.Minute,
	})
	if err != nil {
		return nil, fmt.Errorf("e2e: netkit: boot %s: %w", kernel, err)
	}
	defer g.Close()
	rep.Boot, rep.Release = time.Since(start), g.Release
	run := netkitGuestRun
	if o.Before71 {
		run = netkitGuestRunBefore71
	}
	fmt.Fprintf(o.Log, "e2e: netkit: guest %s up in %v; running %s\n", g.Release, rep.Boot.Round(time.Millisecond), run)

	start = time.Now()
	rep.Output, rep.Status, err = g.Run(run, 2*time.Minute)
	rep.Run = time.Since(start)
	if err != nil {
		return nil, fmt.Errorf("e2e: netkit: running the tests in the guest: %w", err)
	}
	for _, m := range resultRe.FindAllStringSubmatch(rep.Output, -1) {
		rep.Results = append(rep.Results, m[1])
	}
	if rep.VRSSDOutput, _, err = g.Run("sh /"+netkitVRSSDScript, time.Minute); err != nil {
		return nil, fmt.Errorf("e2e: netkit: vrssd in the guest: %w", err)
	}
	rep.VRSSD = map[string]string{}
	for _, l := range strings.Split(rep.VRSSDOutput, "\n") {
		if k, v, ok := strings.Cut(strings.TrimPrefix(l, "VRSSD "), " "); ok && strings.HasPrefix(l, "VRSSD ") {
			if _, seen := rep.VRSSD[k]; !seen {
				rep.VRSSD[k] = strings.TrimSpace(v)
			}
		}
	}
	if o.AFXDPInject != nil && !o.Before71 {
		rep.AFXDP, rep.AFXDPErr = runAFXDP72(g, o.AFXDPInject, o.Log)
	}
	if err := g.Shutdown(30 * time.Second); err != nil {
		fmt.Fprintf(o.Log, "e2e: netkit: guest shutdown: %v\n", err)
	}
	return rep, nil
}

// prepareNetkit resolves and unpacks sid's cloud kernel into the cache
// (apt state under Cache/apt/sid, the package under Cache/deb, as the
// other e2e downloads) and builds the guest image.
func prepareNetkit(o NetkitOptions, rep *NetkitReport) (kernel, initrd string, err error) {
	unlock, err := lockCache(o.Cache)
	if err != nil {
		return "", "", err
	}
	defer unlock()
	sys := &Debian{Log: o.Log}
	if err := sys.Install(PkgQEMU, PkgBusybox, PkgEthtool); err != nil {
		return "", "", err
	}
	deb := &Debian{Log: o.Log, Sources: SidSources, StateDir: filepath.Join(o.Cache, "apt", "sid")}
	if o.Before71 {
		deb = &Debian{Log: o.Log, Sources: BackportsSources, StateDir: filepath.Join(o.Cache, "apt", "bookworm-backports")}
		if rep.QEMU == "" {
			ver, err := deb.Candidate(PkgQEMU)
			if err != nil {
				return "", "", err
			}
			qroot, err := deb.Unpacked(o.Cache, PkgQEMU, ver)
			if err != nil {
				return "", "", err
			}
			rep.QEMU = filepath.Join(qroot, "usr", "bin", "qemu-system-x86_64")
		}
	}
	if rep.KernelPackage, rep.KernelVersion, err = deb.Resolve(PkgKernelMeta, "linux-image-"); err != nil {
		return "", "", err
	}
	var root, release string
	if o.Before71 {
		// One package: boot/vmlinuz-RELEASE and lib/modules/RELEASE.
		if root, err = deb.Unpacked(o.Cache, rep.KernelPackage, rep.KernelVersion); err != nil {
			return "", "", err
		}
		kernels, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
		if len(kernels) != 1 {
			return "", "", fmt.Errorf("e2e: %s has %d kernels in /boot", rep.KernelPackage, len(kernels))
		}
		kernel, release = kernels[0], strings.TrimPrefix(filepath.Base(kernels[0]), "vmlinuz-")
	} else if kernel, root, release, err = sidKernel(deb, o.Cache, rep.KernelPackage, rep.KernelVersion); err != nil {
		return "", "", err
	}
	test, err := buildNetkitTest()
	if err != nil {
		return "", "", err
	}
	dir, err := os.MkdirTemp("", "vrss-e2e-netkit-")
	if err != nil {
		return "", "", err
	}
	defer os.RemoveAll(dir)
	extra := map[string][]byte{NetkitGuestTest: test, netkitVRSSDScript: []byte(netkitVRSSD)}
	if !o.Before71 && o.AFXDPInject != nil {
		if err := afxdp72Extra(dir, extra); err != nil {
			return "", "", err
		}
	}
	for _, cmd := range []string{"vrssd", "vrss"} {
		if extra["bin/"+cmd], err = buildStatic(dir, "github.com/vrss-dev/vrss/cmd/"+cmd); err != nil {
			return "", "", err
		}
	}
	img, err := BuildInitramfs(InitramfsOptions{
		KernelRoot: root, KernelRelease: release,
		// netkit is built into Debian's kernels (listed in case it is a
		// module somewhere: a built-in one is skipped); veth is a module,
		// for the refusal of a virtual device's queues.
		Modules: append(append([]string{}, GuestModules...), "netkit", "veth"),
		Queues:  rep.Queues, Cache: o.Cache,
		Extra: extra,
	})
	if err != nil {
		return "", "", err
	}
	return kernel, img.Path, nil
}

// sidKernel unpacks sid's kernel, which 7.x splits over the image
// package's dependencies: linux-binary-* (vmlinuz), linux-modules-* (the
// modules) and linux-base-* (modules.builtin), each under
// usr/lib/modules/RELEASE. It merges their module trees, with hard links,
// into Cache/kernel-PKG_VERSION/lib/modules/RELEASE (once) and returns
// the vmlinuz, that root and the release.
func sidKernel(sid *Debian, cache, image, version string) (kernel, root, release string, err error) {
	root = filepath.Join(cache, "kernel-"+image+"_"+version)
	var parts []string
	for _, prefix := range []string{"linux-binary-", "linux-modules-", "linux-base-"} {
		pkg, ver, err := sid.Resolve(image, prefix)
		if err != nil {
			return "", "", "", err
		}
		dir, err := sid.Unpacked(cache, pkg, ver)
		if err != nil {
			return "", "", "", err
		}
		parts = append(parts, dir)
	}
	kernels, _ := filepath.Glob(filepath.Join(parts[0], "usr", "lib", "modules", "*", "vmlinuz"))
	if len(kernels) != 1 {
		return "", "", "", fmt.Errorf("e2e: %s has %d kernels in usr/lib/modules", image, len(kernels))
	}
	kernel = kernels[0]
	release = filepath.Base(filepath.Dir(kernel))
	if _, err := os.Stat(filepath.Join(root, ".complete")); err == nil {
		return kernel, root, release, nil
	}
	os.RemoveAll(root)
	dst := filepath.Join(root, "lib", "modules", release)
	for _, part := range parts[1:] {
		src := filepath.Join(part, "usr", "lib", "modules", release)
		err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(src, p)
			if d.IsDir() {
				return os.MkdirAll(filepath.Join(dst, rel), 0o755)
			}
			if !d.Type().IsRegular() {
				return nil
			}
			return os.Link(p, filepath.Join(dst, rel))
		})
		if err != nil {
			return "", "", "", fmt.Errorf("e2e: merging %s's modules: %w", image, err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, ".complete"), []byte(image+" "+version+"\n"), 0o644); err != nil {
		return "", "", "", err
	}
	return kernel, root, release, nil
}
