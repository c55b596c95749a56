package e2e

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Markers the guest's init prints on the console (see initScript).
const (
	markerReady = "VRSS-READY"
	markerFail  = "VRSS-FAIL"
	markerBegin = "VRSS-BEGIN"
	markerEnd   = "VRSS-END"
)

// GuestModules are the modules the guest needs for a virtio-net PCI
// device. Debian's cloud kernels build virtio, virtio_pci and virtio_net
// (with net_failover and failover) as modules; their dependencies are
// found in each module's .modinfo, and modules built into the kernel are
// skipped.
var GuestModules = []string{"virtio_pci", "virtio_net"}

// InitramfsOptions describe the guest image.
type InitramfsOptions struct {
	KernelRoot    string   // an unpacked linux-image package (has lib/modules/<release>)
	KernelRelease string   // e.g. 6.1.0-56-cloud-amd64
	Modules       []string // module names to load, with their dependencies; default GuestModules
	Busybox       string   // a static busybox; default /bin/busybox
	Ethtool       string   // ethtool; default from PATH or /sbin/ethtool
	Interface     string   // default eth0
	Queues        int      // queue pairs to enable with ethtool -L; default 4
	Cache         string   // where the image is written
	// Extra are more executables for the guest, by their path in the
	// image (bin/guestsend): static programs a scenario runs there.
	Extra map[string][]byte
}

// Initramfs is a built guest image.
type Initramfs struct {
	Path    string   // the gzipped newc cpio archive
	Modules []string // the modules init loads, in order
	Cached  bool     // an identical image was already in the cache
}

// BuildInitramfs assembles the guest image: busybox, ethtool and the shared
// libraries ldd lists for it, the kernel modules (decompressed on the host,
// since busybox insmod may not read .ko.xz or .ko.zst) and the init
// script. Images are content-addressed in o.Cache: an unchanged image is
// not compressed and written again.
func BuildInitramfs(o InitramfsOptions) (*Initramfs, error) {
	if len(o.Modules) == 0 {
		o.Modules = GuestModules
	}
	if o.Busybox == "" {
		o.Busybox = "/bin/busybox"
	}
	if o.Ethtool == "" {
		o.Ethtool = lookPath("ethtool", "/sbin/ethtool", "/usr/sbin/ethtool")
	}
	if o.Interface == "" {
		o.Interface = "eth0"
	}
	if o.Queues == 0 {
		o.Queues = 4
	}
	a := NewArchive()
	for _, d := range []string{"proc", "sys", "dev", "tmp", "run", "bin", "sbin"} {
		a.Dir(d)
	}
	// The kernel opens /dev/console for init before anything can mount
	// devtmpfs: without the node init would run with no stdin or stdout.
	a.CharDev("dev/console", 5, 1)

	bb, err := os.ReadFile(o.Busybox)
	if err != nil {
		return nil, fmt.Errorf("e2e: busybox: %w (install %s)", err, PkgBusybox)
	}
	if dynamic, err := isDynamic(bb); err != nil || dynamic {
		return nil, fmt.Errorf("e2e: %s is not a static executable (install %s, not busybox)", o.Busybox, PkgBusybox)
	}
	a.File("bin/busybox", bb, 0o755)
	a.Symlink("bin/sh", "busybox")

	libDirs, err := addExecutable(a, o.Ethtool, "sbin/ethtool")
	if err != nil {
		return nil, err
	}
	for name, data := range o.Extra {
		a.File(name, data, 0o755)
	}

	modDir := filepath.Join(o.KernelRoot, "lib", "modules", o.KernelRelease)
	mods, err := resolveModules(modDir, o.Modules)
	if err != nil {
		return nil, err
	}
	var order []string
	for _, m := range mods {
		a.File("lib/modules/"+m.name+".ko", m.data, 0o644)
		order = append(order, m.name)
	}

	a.File("init", []byte(initScript(order, libDirs, o.Interface, o.Queues)), 0o755)

	var raw bytes.Buffer
	if _, err := a.WriteTo(&raw); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(raw.Bytes())
	out := &Initramfs{Path: filepath.Join(o.Cache, "initramfs-"+hex.EncodeToString(sum[:8])+".cpio.gz"), Modules: order}
	if _, err := os.Stat(out.Path); err == nil {
		out.Cached = true
		return out, nil
	}
	if err := os.MkdirAll(o.Cache, 0o755); err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(o.Cache, ".initramfs-")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	// Readable by all: an unprivileged QEMU must be able to load it.
	tmp.Chmod(0o644)
	zw := gzip.NewWriter(tmp)
	_, err = zw.Write(raw.Bytes())
	if err == nil {
		err = zw.Close()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), out.Path)
	}
	if err != nil {
		return nil, fmt.Errorf("e2e: write initramfs: %w", err)
	}
	return out, nil
}

// initScript is the guest's /init. It prepares eth0 and then serves the
// host: each console line "RUN <id> <shell command>" runs the command and
// answers with its output between "VRSS-BEGIN <id>" and "VRSS-END <id>
// <exit status>"; "OFF" powers the guest off.
func initScript(modules, libDirs []string, iface string, queues int) string {
	r := strings.NewReplacer(
		"@MODULES@", strings.Join(modules, " "),
		"@LIBDIRS@", strings.Join(libDirs, ":"),
		"@IF@", iface,
		"@QUEUES@", fmt.Sprint(queues),
		"@READY@", markerReady, "@FAIL@", markerFail,
		"@BEGIN@", markerBegin, "@END@", markerEnd,
	)
	return r.Replace(`#!/bin/sh
# vrss e2e guest (internal/e2e): bring up @IF@, then run host commands.
/bin/busybox --install -s /bin
export PATH=/bin:/sbin LD_LIBRARY_PATH=@LIBDIRS@
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# Keep kernel messages and typed-command echo out of the replies.
dmesg -n 1
stty -echo
fail() { echo "@FAIL@ $*"; poweroff -f; }
# No IPv6 on the new interface: the guest stays silent on the wire.
echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6
echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6
for m in @MODULES@; do insmod /lib/modules/$m.ko || fail "insmod $m"; done
n=0
while [ ! -e /sys/class/net/@IF@ ]; do
	n=$((n+1)); [ $n -gt 300 ] && fail "no @IF@"; sleep 0.1
done
# Promiscuous: frames for any MAC and any VLAN reach the driver's counters.
ip link set @IF@ promisc on || fail "promisc"
ip link set @IF@ up || fail "link up"
# The driver enables min(queue pairs, CPUs) pairs and QEMU detaches the
# TAP queues of disabled pairs: enable them all.
ethtool -L @IF@ combined @QUEUES@ || fail "ethtool -L @IF@ combined @QUEUES@"
echo "@READY@ $(uname -r)"
while read -r verb id cmd; do
	case "$verb" in
	RUN) echo "@BEGIN@ $id"; sh -c "$cmd" 2>&1 </dev/null; echo "@END@ $id $?";;
	OFF) break;;
	esac
done
poweroff -f
`)
}

// addExecutable adds the dynamically linked executable at src to the
// archive at dst, with the shared libraries and loader ldd lists for it
// at their host paths. It returns the library directories.
func addExecutable(a *Archive, src, dst string) ([]string, error) {
	data, err := os.ReadFile(src)
	if err != nil {
		return nil, fmt.Errorf("e2e: %w (install %s)", err, PkgEthtool)
	}
	a.File(dst, data, 0o755)
	out, err := exec.Command("ldd", src).Output()
	if err != nil {
		// A static executable: ldd fails, and nothing else is needed.
		if dyn, derr := isDynamic(data); derr == nil && !dyn {
			return nil, nil
		}
		return nil, fmt.Errorf("e2e: ldd %s: %w", src, err)
	}
	libs, err := parseLdd(string(out))
	if err != nil {
		return nil, fmt.Errorf("e2e: %s: %w", src, err)
	}
	var dirs []string
	seen := map[string]bool{}
	for _, l := range libs {
		b, err := os.ReadFile(l) // follows symlinks: the archive gets the file
		if err != nil {
			return nil, err
		}
		a.File(l, b, 0o755)
		if d := filepath.Dir(l); !seen[d] {
			seen[d] = true
			dirs = append(dirs, d)
		}
	}
	return dirs, nil
}

// parseLdd returns the absolute paths in ldd output: "name => /path
// (addr)" lines and the loader's "/path (addr)" line; the vDSO has no
// file and is skipped.
func parseLdd(out string) ([]string, error) {
	var libs []string
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if name, target, ok := strings.Cut(line, "=>"); ok {
			target = strings.TrimSpace(target)
			if strings.HasPrefix(target, "not found") {
				return nil, fmt.Errorf("library %s not found", strings.TrimSpace(name))
			}
			if f := strings.Fields(target); len(f) > 0 && strings.HasPrefix(f[0], "/") {
				libs = append(libs, f[0])
			}
			continue
		}
		if f := strings.Fields(line); strings.HasPrefix(f[0], "/") {
			libs = append(libs, f[0])
		}
	}
	return libs, nil
}

func isDynamic(b []byte) (bool, error) {
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return false, err
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return true, nil
		}
	}
	return false, nil
}

// module is a kernel module ready for the archive.
type module struct {
	name string
	data []byte // uncompressed ELF
	deps []string
}

// resolveModules returns the modules that loading wanted needs, each after
// its dependencies. Modules listed in modules.builtin are skipped.
func resolveModules(modDir string, wanted []string) ([]module, error) {
	files := map[string]string{}
	err := filepath.WalkDir(filepath.Join(modDir, "kernel"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if n, ok := moduleName(d.Name()); ok && !d.IsDir() {
			files[n] = p
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("e2e: kernel modules: %w", err)
	}
	builtin := map[string]bool{}
	if b, err := os.ReadFile(filepath.Join(modDir, "modules.builtin")); err == nil {
		for _, l := range strings.Fields(string(b)) {
			if n, ok := moduleName(filepath.Base(l)); ok {
				builtin[n] = true
			}
		}
	}
	load := func(name string) (module, error) {
		p, ok := files[name]
		if !ok {
			return module{}, fmt.Errorf("e2e: module %s is neither in %s nor built in", name, modDir)
		}
		data, err := readModule(p)
		if err != nil {
			return module{}, err
		}
		deps, err := moduleDeps(data)
		if err != nil {
			return module{}, fmt.Errorf("e2e: %s: %w", p, err)
		}
		return module{name: name, data: data, deps: deps}, nil
	}
	return orderModules(wanted, builtin, load)
}

// orderModules returns the modules wanted needs in load order (depth
// first, dependencies before dependents, each once).
func orderModules(wanted []string, builtin map[string]bool, load func(string) (module, error)) ([]module, error) {
	var out []module
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name string) error
	visit = func(name string) error {
		name = strings.ReplaceAll(name, "-", "_")
		if builtin[name] || state[name] == 2 {
			return nil
		}
		if state[name] == 1 {
			return fmt.Errorf("e2e: module dependency cycle at %s", name)
		}
		state[name] = 1
		m, err := load(name)
		if err != nil {
			return err
		}
		for _, d := range m.deps {
			if err := visit(d); err != nil {
				return err
			}
		}
		state[name] = 2
		out = append(out, m)
		return nil
	}
	for _, w := range wanted {
		if err := visit(w); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// moduleName turns a module file name (foo-bar.ko, .ko.xz, .ko.zst,
// .ko.gz) into the module's name (foo_bar).
func moduleName(file string) (string, bool) {
	for _, ext := range []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"} {
		if n, ok := strings.CutSuffix(file, ext); ok {
			return strings.ReplaceAll(n, "-", "_"), true
		}
	}
	return "", false
}

// readModule returns a module file's ELF bytes, decompressing it with the
// host's xz, zstd or gzip as its name says.
func readModule(p string) ([]byte, error) {
	var tool string
	switch {
	case strings.HasSuffix(p, ".ko"):
		return os.ReadFile(p)
	case strings.HasSuffix(p, ".xz"):
		tool = "xz"
	case strings.HasSuffix(p, ".zst"):
		tool = "zstd"
	case strings.HasSuffix(p, ".gz"):
		f, err := os.Open(p)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("e2e: %s: %w", p, err)
		}
		return io.ReadAll(zr)
	}
	out, err := exec.Command(tool, "-dc", p).Output()
	if err != nil {
		return nil, fmt.Errorf("e2e: %s -dc %s: %w (is %s installed?)", tool, p, err, tool)
	}
	return out, nil
}

// moduleDeps reads the depends= field of a module's .modinfo section.
func moduleDeps(ko []byte) ([]string, error) {
	f, err := elf.NewFile(bytes.NewReader(ko))
	if err != nil {
		return nil, err
	}
	s := f.Section(".modinfo")
	if s == nil {
		return nil, fmt.Errorf("no .modinfo section")
	}
	info, err := s.Data()
	if err != nil {
		return nil, err
	}
	for _, kv := range bytes.Split(info, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			if len(v) == 0 {
				return nil, nil
			}
			return strings.Split(string(v), ","), nil
		}
	}
	return nil, nil
}

// lookPath returns the first of name (searched in PATH) and fallbacks that
// exists, or name itself.
func lookPath(name string, fallbacks ...string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, f := range fallbacks {
		if _, err := os.Stat(f); err == nil {
			return f
		}
	}
	return name
}
