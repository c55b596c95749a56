package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

// No Debian QEMU package is built with libxdp, so none has the af-xdp
// netdev. BuildAFXDPQEMU builds one from Debian's sources and keeps it in
// the cache; these are its inputs.
const (
	// afxdpQEMUSource is QEMU's source package, taken from
	// bookworm-backports (QEMU 10.0: sock-fds, but not yet map-path).
	afxdpQEMUSource = "qemu"
	// afxdpXDPToolsSource holds libxdp; only sid's is new enough (1.6).
	afxdpXDPToolsSource = "xdp-tools"
	// afxdpRecipe names the build steps below; change it when they change,
	// so that a cached build made another way is not reused.
	afxdpRecipe = "qemu-afxdp/2+read-poll-every-queue"
)

// AFXDPBuildSources is the private sources list the build fetches from:
// trixie's binary packages (meson 1.7 and pycotap, which QEMU's
// configure needs and the +ds tarball does not ship as wheels), sid's
// sources (xdp-tools) and bookworm-backports' sources (QEMU 10.0).
const AFXDPBuildSources = "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main\n" +
	"deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian sid main\n" +
	"deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm-backports main"

// AFXDPBuildDeps are the system packages the build installs with apt-get.
var AFXDPBuildDeps = []string{
	"gcc", "make", "pkg-config", "dpkg-dev", "xz-utils",
	"libfdt-dev", "ninja-build", "libglib2.0-dev", "libpixman-1-dev", "flex", "bison",
	"libbpf-dev", "libelf-dev", "zlib1g-dev", "clang", "llvm", "m4", "python3-venv",
}

// afxdpConfigure are QEMU's configure options besides the prefix: one
// target, af-xdp required, and no firmware blobs (the +ds tarball has
// none; the guest boots with the system's, see AFXDPQEMU.DataDir).
var afxdpConfigure = []string{
	"--target-list=x86_64-softmmu", "--enable-af-xdp",
	"--disable-install-blobs", "--disable-docs", "--disable-werror",
	"--python=/usr/bin/python3",
}

// AFXDPQEMU is a QEMU built with af-xdp.
type AFXDPQEMU struct {
	Binary  string // qemu-system-x86_64
	Version string // its --version
	// DataDirs hold the firmware it needs (-L each): the system QEMU's
	// (Debian's QEMU finds SeaBIOS in /usr/share/seabios by a patch of
	// its own), since the build installs none.
	DataDirs []string
	// Inputs are the packages and versions it was built from, and Key
	// their digest: the cache directory's name.
	Inputs map[string]string
	Key    string
	// Cached says an earlier run built it; Took is how long this run's
	// build took (0 if cached).
	Cached bool
	Took   time.Duration
}

// afxdpInputs are what a build depends on, as name=value lines in a
// stable order, and their digest.
func afxdpInputs(in map[string]string) (string, string) {
	keys := make([]string, 0, len(in))
	for k := range in {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%s\n", k, in[k])
	}
	sum := sha256.Sum256([]byte(b.String()))
	return b.String(), hex.EncodeToString(sum[:])[:16]
}

var srcVersionRe = regexp.MustCompile(`(?m)^Version:\s*(\S+)`)

// sourceVersions returns the versions `apt-cache showsrc` lists for a
// source package.
func (d *Debian) sourceVersions(pkg string) ([]string, error) {
	var vs []string
	err := d.retry(func() error {
		out, err := d.apt("", "apt-cache", "showsrc", "--only-source", pkg)
		if err != nil {
			return err
		}
		vs = nil
		for _, m := range srcVersionRe.FindAllStringSubmatch(string(out), -1) {
			vs = append(vs, m[1])
		}
		if len(vs) == 0 {
			return fmt.Errorf("e2e: apt knows no source package %s", pkg)
		}
		return nil
	})
	return vs, err
}

// pickSource returns the version that contains marker ("" for any), the
// highest by dpkg's ordering.
func pickSource(versions []string, marker string) (string, error) {
	best := ""
	for _, v := range versions {
		if marker != "" && !strings.Contains(v, marker) {
			continue
		}
		if best == "" || exec.Command("dpkg", "--compare-versions", v, "gt", best).Run() == nil {
			best = v
		}
	}
	if best == "" {
		return "", fmt.Errorf("e2e: no source version with %q among %v", marker, versions)
	}
	return best, nil
}

// sourceURIRe is a line of `apt-get source --print-uris`: the URI, the
// file's name, its size and its hash.
var sourceURIRe = regexp.MustCompile(`(?m)^'([^']+)' (\S+) \d+ (\S+:\S+)$`)

// origURI returns the URI, file name and hash of the upstream tarball
// among `apt-get source --print-uris` lines.
func origURI(out string) (uri, name, hash string, err error) {
	for _, m := range sourceURIRe.FindAllStringSubmatch(out, -1) {
		if strings.Contains(m[2], ".orig.tar.") {
			return m[1], m[2], m[3], nil
		}
	}
	return "", "", "", fmt.Errorf("e2e: no .orig.tar in apt-get source --print-uris:\n%s", tail(out, 10))
}

// origTarball downloads only the upstream tarball of a source package
// into dir, checked against the hash in the (signed) Sources index, with
// apt's own downloader: the mirror may not carry the package's .dsc and
// Debian diff (bookworm-backports' qemu source has only its orig
// tarball), and the build needs nothing else.
func (d *Debian) origTarball(dir, pkg, version string) error {
	var uri, name, hash string
	if err := d.retry(func() error {
		out, err := d.apt(dir, "apt-get", "-q", "source", "--print-uris", pkg+"="+version)
		if err != nil {
			return err
		}
		uri, name, hash, err = origURI(string(out))
		return err
	}); err != nil {
		return err
	}
	_, err := d.apt(dir, "/usr/lib/apt/apt-helper", "download-file", uri, filepath.Join(dir, name), hash)
	return err
}

// buildStep runs one command of the build with its output in a log
// file; a failure names the step and shows the log's tail.
type buildStep struct {
	dir  string // logs go here
	log  io.Writer
	env  []string
	took map[string]time.Duration
}

func (s *buildStep) run(name, dir string, args ...string) error {
	logPath := filepath.Join(s.dir, strings.ReplaceAll(name, " ", "-")+".log")
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return err
	}
	f, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer f.Close()
	fmt.Fprintf(s.log, "e2e: af-xdp QEMU: %s: %s\n", name, strings.Join(args, " "))
	fmt.Fprintf(f, "$ %s\n", strings.Join(args, " "))
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "LC_ALL=C", "DEBIAN_FRONTEND=noninteractive"), s.env...)
	cmd.Stdout, cmd.Stderr = f, f
	start := time.Now()
	err = cmd.Run()
	s.took[name] = time.Since(start)
	if err != nil {
		out, _ := os.ReadFile(logPath)
		return fmt.Errorf("e2e: af-xdp QEMU build: step %q failed after %v: %w\n(log %s, last lines:)\n%s",
			name, time.Since(start).Round(time.Millisecond), err, logPath, tail(string(out), 20))
	}
	return nil
}

// AFXDPQEMUListed reports whether `qemu -netdev help` lists af-xdp.
func AFXDPQEMUListed(qemu string) error {
	out, err := exec.Command(qemu, "-netdev", "help").CombinedOutput()
	if err != nil {
		return fmt.Errorf("e2e: %s -netdev help: %w\n%s", qemu, err, tail(string(out), 10))
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.TrimSpace(l) == "af-xdp" {
			return nil
		}
	}
	return fmt.Errorf("e2e: %s -netdev help does not list af-xdp:\n%s", qemu, strings.TrimSpace(string(out)))
}

// BuildAFXDPQEMU returns a QEMU with the af-xdp netdev, building it into
// cache the first time (a few minutes on two cores) and reusing it while
// its inputs stay the same: QEMU 10.0's source from bookworm-backports
// (its +ds orig tarball), libxdp from sid's xdp-tools source built as a
// static library against the system's libbpf, meson and pycotap from
// trixie's packages (unpacked onto PYTHONPATH, never installed), and the
// build packages in AFXDPBuildDeps (installed with apt-get). The result
// must list af-xdp in `-netdev help`. It takes the cache's lock itself:
// call it outside Prepare.
func BuildAFXDPQEMU(cache string, log io.Writer) (*AFXDPQEMU, error) {
	return buildAFXDPQEMU(cache, log, afxdpQEMU100)
}

// afxdpQEMUBuild is which QEMU source a build takes and how it is patched.
type afxdpQEMUBuild struct {
	// marker picks the source version: the highest that contains it.
	marker string
	recipe string
	patch  func(qsrc string) error
}

// afxdpQEMU100 is scenario X's QEMU: bookworm-backports' 10.0.2.
var afxdpQEMU100 = afxdpQEMUBuild{marker: "~bpo12", recipe: afxdpRecipe, patch: patchAFXDPReadPoll}

func buildAFXDPQEMU(cache string, log io.Writer, v afxdpQEMUBuild) (*AFXDPQEMU, error) {
	if log == nil {
		log = io.Discard
	}
	unlock, err := lockCache(cache)
	if err != nil {
		return nil, err
	}
	defer unlock()
	sys := &Debian{Log: log}
	if err := sys.Install(AFXDPBuildDeps...); err != nil {
		return nil, fmt.Errorf("e2e: af-xdp QEMU build: installing its build packages: %w", err)
	}
	src := &Debian{Log: log, Sources: AFXDPBuildSources, StateDir: filepath.Join(cache, "apt", "afxdp-build")}
	q := &AFXDPQEMU{Inputs: map[string]string{"recipe": v.recipe, "configure": strings.Join(afxdpConfigure, " ")}}
	qv, err := src.sourceVersions(afxdpQEMUSource)
	if err != nil {
		return nil, err
	}
	if q.Inputs["src:qemu"], err = pickSource(qv, v.marker); err != nil {
		return nil, err
	}
	xv, err := src.sourceVersions(afxdpXDPToolsSource)
	if err != nil {
		return nil, err
	}
	if q.Inputs["src:xdp-tools"], err = pickSource(xv, ""); err != nil {
		return nil, err
	}
	for _, p := range []string{"meson", "python3-pycotap"} {
		if q.Inputs[p], err = src.Candidate(p); err != nil {
			return nil, err
		}
	}
	for _, p := range []string{"libbpf-dev", "libglib2.0-dev", "libpixman-1-dev", "libfdt-dev", "gcc"} {
		q.Inputs["sys:"+p] = Installed(p)
	}
	var lines string
	lines, q.Key = afxdpInputs(q.Inputs)
	final := filepath.Join(cache, "qemu-afxdp-"+q.Key)
	q.Binary = filepath.Join(final, "bin", "qemu-system-x86_64")
	q.DataDirs = []string{"/usr/share/qemu", "/usr/share/seabios"}
	if _, err := os.Stat(filepath.Join(final, ".complete")); err == nil {
		if err := AFXDPQEMUListed(q.Binary); err != nil {
			return nil, fmt.Errorf("e2e: the cached af-xdp QEMU in %s is broken (remove it to build it again): %w", final, err)
		}
		q.Cached = true
		q.Version, _, _, err = QEMUVersion(q.Binary)
		return q, err
	}

	start := time.Now()
	fmt.Fprintf(log, "e2e: building a QEMU with af-xdp into %s (a few minutes):\n%s", final, lines)
	os.RemoveAll(final)
	work, err := os.MkdirTemp(cache, ".qemu-afxdp-")
	if err != nil {
		return nil, err
	}
	keep := false
	defer func() {
		if !keep {
			os.RemoveAll(work)
		}
	}()
	// The sources: apt-get source downloads (and for xdp-tools unpacks
	// with dpkg-source); QEMU's orig tarball alone is unpacked, without
	// its debian/ directory.
	for _, sp := range []struct{ pkg, ver string }{
		{afxdpXDPToolsSource, q.Inputs["src:xdp-tools"]},
		{afxdpQEMUSource, q.Inputs["src:qemu"]},
	} {
		fmt.Fprintf(log, "e2e: af-xdp QEMU: apt-get source %s=%s\n", sp.pkg, sp.ver)
		var err error
		if sp.pkg == afxdpQEMUSource {
			err = src.origTarball(work, sp.pkg, sp.ver)
		} else {
			err = src.retry(func() error {
				_, err := src.apt(work, "apt-get", "-o", "APT::Sandbox::User=root", "-q", "source", sp.pkg+"="+sp.ver)
				return err
			})
		}
		if err != nil {
			return nil, fmt.Errorf("e2e: af-xdp QEMU build: fetching the %s source: %w", sp.pkg, err)
		}
	}
	// The Python modules QEMU's configure needs, from trixie's packages.
	var pypath []string
	for _, p := range []string{"meson", "python3-pycotap"} {
		root, err := src.Unpacked(cache, p, q.Inputs[p])
		if err != nil {
			return nil, fmt.Errorf("e2e: af-xdp QEMU build: fetching %s: %w", p, err)
		}
		pypath = append(pypath, filepath.Join(root, "usr", "lib", "python3", "dist-packages"))
	}
	// The steps' logs sit next to the build, where a failure leaves them.
	logs := final + ".log"
	os.RemoveAll(logs)
	steps := &buildStep{dir: logs, log: log, took: map[string]time.Duration{}}

	// libxdp, static, installed under work/libxdp.
	xdpDirs, _ := filepath.Glob(filepath.Join(work, "xdp-tools-*"))
	var xdpSrc string
	for _, d := range xdpDirs {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			xdpSrc = d
		}
	}
	if xdpSrc == "" {
		return nil, fmt.Errorf("e2e: af-xdp QEMU build: apt-get source %s left no source directory in %s", afxdpXDPToolsSource, work)
	}
	xdpPrefix := filepath.Join(work, "libxdp")
	steps.env = []string{"FORCE_SYSTEM_LIBBPF=1"}
	if err := steps.run("libxdp configure", xdpSrc, "./configure"); err != nil {
		return nil, err
	}
	// PREFIX on both: make writes it into libxdp.pc.
	if err := steps.run("libxdp make", xdpSrc, "make", "-C", "lib/libxdp", "-j2", "PREFIX="+xdpPrefix); err != nil {
		return nil, err
	}
	if err := steps.run("libxdp install", xdpSrc, "make", "-C", "lib/libxdp", "install", "PREFIX="+xdpPrefix); err != nil {
		return nil, err
	}
	pcDir, err := staticLibxdp(xdpPrefix)
	if err != nil {
		return nil, err
	}

	// QEMU.
	tarballs, _ := filepath.Glob(filepath.Join(work, "qemu_*.orig.tar.*"))
	if len(tarballs) != 1 {
		return nil, fmt.Errorf("e2e: af-xdp QEMU build: apt-get source qemu left %d orig tarballs in %s", len(tarballs), work)
	}
	qsrc := filepath.Join(work, "qemu")
	if err := os.MkdirAll(qsrc, 0o755); err != nil {
		return nil, err
	}
	if err := steps.run("qemu unpack", qsrc, "tar", "-xf", tarballs[0], "--strip-components=1"); err != nil {
		return nil, err
	}
	if err := edk2Placeholders(qsrc); err != nil {
		return nil, err
	}
	if err := v.patch(qsrc); err != nil {
		return nil, err
	}
	steps.env = []string{
		"PKG_CONFIG_PATH=" + pcDir,
		"PYTHONPATH=" + strings.Join(pypath, ":"),
	}
	prefix := filepath.Join(work, "out")
	cfg := append([]string{"../configure", "--prefix=" + prefix}, afxdpConfigure...)
	bdir := filepath.Join(qsrc, "build")
	if err := os.MkdirAll(bdir, 0o755); err != nil {
		return nil, err
	}
	if err := steps.run("qemu configure", bdir, cfg...); err != nil {
		return nil, err
	}
	if err := steps.run("qemu make", bdir, "ninja", "-j2", "qemu-system-x86_64"); err != nil {
		return nil, err
	}
	built := filepath.Join(bdir, "qemu-system-x86_64")
	if err := AFXDPQEMUListed(built); err != nil {
		return nil, fmt.Errorf("e2e: af-xdp QEMU build: %w", err)
	}
	// The result: the binary, the inputs, the logs.
	if err := os.MkdirAll(filepath.Join(work, "result", "bin"), 0o755); err != nil {
		return nil, err
	}
	if err := os.Rename(built, filepath.Join(work, "result", "bin", "qemu-system-x86_64")); err != nil {
		return nil, err
	}
	if err := os.Rename(logs, filepath.Join(work, "result", "log")); err != nil {
		return nil, err
	}
	q.Took = time.Since(start)
	var took strings.Builder
	for _, name := range []string{"libxdp configure", "libxdp make", "libxdp install", "qemu unpack", "qemu configure", "qemu make"} {
		fmt.Fprintf(&took, "%s: %v\n", name, steps.took[name].Round(time.Second))
	}
	fmt.Fprintf(&took, "total (with downloads): %v\n", q.Took.Round(time.Second))
	if err := os.WriteFile(filepath.Join(work, "result", "inputs"), []byte(lines+took.String()), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(work, "result", ".complete"), []byte(q.Key+"\n"), 0o644); err != nil {
		return nil, err
	}
	if err := os.Rename(filepath.Join(work, "result"), final); err != nil {
		return nil, err
	}
	fmt.Fprintf(log, "e2e: af-xdp QEMU built in %v:\n%s", q.Took.Round(time.Second), took.String())
	q.Version, _, _, err = QEMUVersion(q.Binary)
	if err != nil {
		return nil, errors.Join(err, fmt.Errorf("e2e: af-xdp QEMU in %s", final))
	}
	return q, nil
}

// staticLibxdp leaves only the static libxdp in an install under prefix,
// and makes its pkg-config file name what libxdp.a needs (libbpf, libelf,
// zlib; the shared library would bring them itself): QEMU must not need
// a libxdp.so in root's cache, which its unprivileged uid cannot read. It
// returns the pkg-config directory.
func staticLibxdp(prefix string) (string, error) {
	pcs, _ := filepath.Glob(filepath.Join(prefix, "*", "pkgconfig", "libxdp.pc"))
	more, _ := filepath.Glob(filepath.Join(prefix, "*", "*", "pkgconfig", "libxdp.pc"))
	pcs = append(pcs, more...)
	if len(pcs) != 1 {
		return "", fmt.Errorf("e2e: af-xdp QEMU build: libxdp's install under %s left %d libxdp.pc files", prefix, len(pcs))
	}
	libdir := filepath.Dir(filepath.Dir(pcs[0]))
	if _, err := os.Stat(filepath.Join(libdir, "libxdp.a")); err != nil {
		return "", fmt.Errorf("e2e: af-xdp QEMU build: libxdp's install has no static library: %w", err)
	}
	sos, _ := filepath.Glob(filepath.Join(libdir, "libxdp.so*"))
	for _, so := range sos {
		if err := os.Remove(so); err != nil {
			return "", err
		}
	}
	pc, err := os.ReadFile(pcs[0])
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(pcs[0], []byte(staticPC(string(pc))), 0o644); err != nil {
		return "", err
	}
	// QEMU finds libxdp's headers where the pkg-config file says.
	pcDir := filepath.Dir(pcs[0])
	cmd := exec.Command("pkg-config", "--cflags-only-I", "libxdp")
	cmd.Env = append(os.Environ(), "PKG_CONFIG_PATH="+pcDir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("e2e: af-xdp QEMU build: pkg-config libxdp: %w\n%s", err, out)
	}
	for _, f := range strings.Fields(string(out)) {
		if _, err := os.Stat(filepath.Join(strings.TrimPrefix(f, "-I"), "xdp", "xsk.h")); err == nil {
			return pcDir, nil
		}
	}
	return "", fmt.Errorf("e2e: af-xdp QEMU build: libxdp.pc in %s names no include directory with xdp/xsk.h (pkg-config says %q)", pcDir, strings.TrimSpace(string(out)))
}

// staticPC appends libxdp.a's dependencies to a pkg-config file's Libs.
func staticPC(pc string) string {
	lines := strings.Split(pc, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "Libs:") && !strings.Contains(l, "-lbpf") {
			lines[i] = strings.TrimRight(l, " ") + " -lbpf -lelf -lz"
		}
	}
	return strings.Join(lines, "\n")
}

var edk2Re = regexp.MustCompile(`'(edk2-[a-z0-9_-]+\.fd)'`)

// edk2Placeholders creates empty stand-ins for the compressed edk2
// firmware that QEMU's pc-bios/meson.build names as inputs when bzip2 is
// installed: the +ds tarball leaves them out, meson refuses missing
// inputs, and the build (ninja qemu-system-x86_64, --disable-install-blobs)
// never decompresses them.
func edk2Placeholders(qsrc string) error {
	mb, err := os.ReadFile(filepath.Join(qsrc, "pc-bios", "meson.build"))
	if err != nil {
		return fmt.Errorf("e2e: af-xdp QEMU build: %w", err)
	}
	for _, m := range edk2Re.FindAllStringSubmatch(string(mb), -1) {
		p := filepath.Join(qsrc, "pc-bios", m[1]+".bz2")
		if _, err := os.Stat(p); err == nil {
			continue
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// afxdpPollAnchor is the end of the loop in QEMU 10.0's net_init_af_xdp
// that creates a socket per queue; afxdpPollPatched adds the read poll
// of each queue's socket to it.
const (
	afxdpPollAnchor  = "            goto err;\n        }\n    }\n\n    if (nc0) {"
	afxdpPollPatched = "            goto err;\n        }\n        af_xdp_read_poll(s, true); /* vrss e2e: every queue, not only the first */\n    }\n\n    if (nc0) {"
)

// patchAFXDPReadPoll makes QEMU poll every queue's socket for received
// frames. QEMU 10.0.2's net_init_af_xdp enables the read handler once,
// after its loop, for the first queue's state only (s is set back to
// queue 0's), so with queues=2 the second socket's frames stay in its
// ring and never reach the guest (scenario X saw 200/200 on guest queue
// 0 and 0/200 on queue 1, the veth's redirects to both sockets counted).
func patchAFXDPReadPoll(qsrc string) error {
	p := filepath.Join(qsrc, "net", "af-xdp.c")
	b, err := os.ReadFile(p)
	if err != nil {
		return fmt.Errorf("e2e: af-xdp QEMU build: %w", err)
	}
	out, err := patchReadPoll(string(b))
	if err != nil {
		return err
	}
	return os.WriteFile(p, []byte(out), 0o644)
}

func patchReadPoll(src string) (string, error) {
	if strings.Count(src, afxdpPollAnchor) != 1 {
		return "", fmt.Errorf("e2e: af-xdp QEMU build: net/af-xdp.c has not the one per-queue loop end the read-poll patch expects (another QEMU version?)")
	}
	return strings.Replace(src, afxdpPollAnchor, afxdpPollPatched, 1), nil
}
