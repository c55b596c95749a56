package e2e

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Debian package names the harness relies on.
const (
	PkgQEMU         = "qemu-system-x86"
	PkgBusybox      = "busybox-static"
	PkgEthtool      = "ethtool"
	PkgKernelMeta   = "linux-image-cloud-amd64"
	EnvCache        = "VRSS_E2E_CACHE"
	defaultCacheDir = "/var/cache/vrss-e2e"
)

// CacheDir is where downloaded kernels and built initramfs images are
// kept: $VRSS_E2E_CACHE if set, else vrss-e2e next to the Go build cache
// (`go env GOCACHE`/../vrss-e2e), else /var/cache/vrss-e2e. None of these is
// inside the repository.
func CacheDir() string {
	if d := os.Getenv(EnvCache); d != "" {
		return d
	}
	gocache := os.Getenv("GOCACHE")
	if gocache == "" {
		if out, err := exec.Command("go", "env", "GOCACHE").Output(); err == nil {
			gocache = strings.TrimSpace(string(out))
		}
	}
	if filepath.IsAbs(gocache) {
		return filepath.Join(filepath.Dir(gocache), "vrss-e2e")
	}
	return defaultCacheDir
}

// BackportsSources is a one-line sources list for bookworm-backports, for
// Debian.Sources: QEMU 10 (ebpf-rss-fds, request-ebpf) and newer cloud
// kernels come from there.
const BackportsSources = "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm-backports main"

// Debian fetches packages with the ordinary apt tools. It runs
// `apt-get update` at most once, and only when the package lists are
// missing or stale (an install or download fails, or a package is
// unknown).
type Debian struct {
	// Log receives a line per apt action; nil discards them. Command
	// output is only shown when a command fails, in its error.
	Log io.Writer
	// Sources, if set, is a private sources list (e.g. BackportsSources)
	// used instead of the system's, with its package lists kept under
	// StateDir: the system's apt configuration is left alone. Such a
	// Debian can only resolve and download (Install refuses).
	Sources  string
	StateDir string

	updated bool
}

func (d *Debian) log() io.Writer {
	if d.Log == nil {
		return io.Discard
	}
	return d.Log
}

// aptOpts wait for a dpkg/apt lock held by another process (other jobs
// share the machine) instead of failing at once.
var aptOpts = []string{"-o", "DPkg::Lock::Timeout=600", "-o", "Acquire::Retries=3"}

// private prepares the private apt state for Sources and returns the
// options that select it.
func (d *Debian) private() ([]string, error) {
	if d.Sources == "" {
		return nil, nil
	}
	if d.StateDir == "" {
		return nil, errors.New("e2e: Debian.Sources needs a StateDir")
	}
	for _, sub := range []string{"lists/partial", "cache/archives/partial"} {
		if err := os.MkdirAll(filepath.Join(d.StateDir, sub), 0o755); err != nil {
			return nil, err
		}
	}
	list := filepath.Join(d.StateDir, "sources.list")
	if old, _ := os.ReadFile(list); string(old) != d.Sources+"\n" {
		if err := os.WriteFile(list, []byte(d.Sources+"\n"), 0o644); err != nil {
			return nil, err
		}
		// New sources: the lists are for other ones.
		lists, _ := filepath.Glob(filepath.Join(d.StateDir, "lists", "*_*"))
		for _, l := range lists {
			os.Remove(l)
		}
	}
	return []string{
		"-o", "Dir::Etc::SourceList=" + list,
		"-o", "Dir::Etc::SourceParts=/dev/null",
		"-o", "Dir::State::Lists=" + filepath.Join(d.StateDir, "lists"),
		"-o", "Dir::Cache=" + filepath.Join(d.StateDir, "cache"),
	}, nil
}

// apt runs apt-get or apt-cache with the harness's options.
func (d *Debian) apt(dir, tool string, args ...string) ([]byte, error) {
	opts, err := d.private()
	if err != nil {
		return nil, err
	}
	if d.Sources != "" && !d.updated {
		// A private list starts empty: fetch it before the first use.
		if lists, _ := filepath.Glob(filepath.Join(d.StateDir, "lists", "*Packages*")); len(lists) == 0 {
			if _, err := d.update(); err != nil {
				return nil, err
			}
		}
	}
	return d.run(dir, tool, append(append(append([]string{}, aptOpts...), opts...), args...)...)
}

// run runs a command with a non-interactive environment and returns its
// output.
func (d *Debian) run(dir string, name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C")
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	if err != nil {
		return out.Bytes(), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, tail(out.String(), 15))
	}
	return out.Bytes(), nil
}

// update runs apt-get update once; later calls report that it did not run.
func (d *Debian) update() (bool, error) {
	if d.updated {
		return false, nil
	}
	d.updated = true
	what := "system sources"
	if d.Sources != "" {
		what = d.Sources
	}
	fmt.Fprintf(d.log(), "e2e: apt-get update (%s)\n", what)
	_, err := d.apt("", "apt-get", "-q", "update")
	return err == nil, err
}

// retry runs fn, and once more after apt-get update if it failed.
func (d *Debian) retry(fn func() error) error {
	err := fn()
	if err == nil {
		return nil
	}
	if ran, uerr := d.update(); !ran {
		if uerr != nil {
			return errors.Join(err, uerr)
		}
		return err
	}
	return fn()
}

// Installed returns the installed version of pkg, or "" if it is not
// installed.
func Installed(pkg string) string {
	out, err := exec.Command("dpkg-query", "-W", "-f=${db:Status-Status} ${Version}", pkg).Output()
	if err != nil {
		return ""
	}
	status, version, _ := strings.Cut(string(out), " ")
	if status != "installed" {
		return ""
	}
	return version
}

// Install installs the packages that are not installed yet, without
// recommends.
func (d *Debian) Install(pkgs ...string) error {
	var missing []string
	for _, p := range pkgs {
		if Installed(p) == "" {
			missing = append(missing, p)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if d.Sources != "" {
		return fmt.Errorf("e2e: will not install %s from private sources %q", strings.Join(missing, " "), d.Sources)
	}
	fmt.Fprintf(d.log(), "e2e: apt-get install %s\n", strings.Join(missing, " "))
	args := append([]string{"install", "-y", "-q", "--no-install-recommends"}, missing...)
	return d.retry(func() error {
		_, err := d.apt("", "apt-get", args...)
		return err
	})
}

var dependsRe = regexp.MustCompile(`(?m)^\s*Depends:\s*(\S+)`)

// Resolve returns the package a metapackage depends on whose name starts
// with prefix, and that package's candidate version: for
// linux-image-cloud-amd64, the exact kernel image package.
func (d *Debian) Resolve(meta, prefix string) (pkg, version string, err error) {
	err = d.retry(func() error {
		out, err := d.apt("", "apt-cache", "depends", meta)
		if err != nil {
			return err
		}
		for _, m := range dependsRe.FindAllStringSubmatch(string(out), -1) {
			if strings.HasPrefix(m[1], prefix) {
				pkg = m[1]
				break
			}
		}
		if pkg == "" {
			return fmt.Errorf("e2e: %s depends on no %s* package:\n%s", meta, prefix, out)
		}
		version, err = d.Candidate(pkg)
		return err
	})
	return pkg, version, err
}

var candidateRe = regexp.MustCompile(`(?m)^\s*Candidate:\s*(\S+)`)

// Candidate returns the version apt would install for pkg.
func (d *Debian) Candidate(pkg string) (string, error) {
	out, err := d.apt("", "apt-cache", "policy", pkg)
	if err != nil {
		return "", err
	}
	m := candidateRe.FindStringSubmatch(string(out))
	if m == nil || m[1] == "(none)" {
		return "", fmt.Errorf("e2e: apt has no candidate for %s:\n%s", pkg, out)
	}
	return m[1], nil
}

// Unpacked returns a directory holding the contents of pkg at version,
// downloading it with `apt-get download` and unpacking it with
// `dpkg-deb -x` into cache the first time (nothing is installed).
func (d *Debian) Unpacked(cache, pkg, version string) (string, error) {
	// apt names files with the epoch colon escaped; do the same.
	final := filepath.Join(cache, "deb", pkg+"_"+strings.ReplaceAll(version, ":", "%3a"))
	if _, err := os.Stat(filepath.Join(final, ".complete")); err == nil {
		return final, nil
	}
	if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
		return "", err
	}
	os.RemoveAll(final)
	tmp, err := os.MkdirTemp(filepath.Dir(final), ".dl-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	fmt.Fprintf(d.log(), "e2e: apt-get download %s=%s\n", pkg, version)
	// Root downloads into a directory _apt cannot write; tell apt not to
	// drop privileges rather than print a warning.
	args := []string{"-o", "APT::Sandbox::User=root", "-q", "download", pkg + "=" + version}
	if err := d.retry(func() error { _, err := d.apt(tmp, "apt-get", args...); return err }); err != nil {
		return "", err
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != 1 {
		return "", fmt.Errorf("e2e: apt-get download %s left %d .deb files", pkg, len(debs))
	}
	root := filepath.Join(tmp, "root")
	if _, err := d.run("", "dpkg-deb", "-x", debs[0], root); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(root, ".complete"), []byte(pkg+" "+version+"\n"), 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(root, final); err != nil {
		return "", err
	}
	return final, nil
}

// lockCache takes an exclusive lock on the cache directory, so that two
// harness runs do not download or build into it at the same time.
func lockCache(dir string) (unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(10 * time.Minute)
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if err != unix.EWOULDBLOCK || time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("e2e: lock %s: %w", dir, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
