package e2e

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/vrss-dev/vrss/rss"
)

// vrssCLI runs the vrss command line, as built into the work directory,
// against the test's vrssd as one user: what a host administrator or a
// TAP's unprivileged owner types.
type vrssCLI struct {
	bin, socket string
	uid         int
}

// run runs `vrss ARGS... --socket SOCKET` as c.uid and returns what it
// printed on its standard output.
func (c *vrssCLI) run(args ...string) (string, error) {
	cmd := exec.Command(c.bin, append(slices.Clone(args), "--socket", c.socket)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(c.uid), Gid: uint32(c.uid)}}
	cmd.Dir = "/"
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("e2e: %s as uid %d: %v\n%s%s", c.line(args...), c.uid, err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// json runs a command that prints JSON (--json) and decodes it into v.
func (c *vrssCLI) json(v any, args ...string) error {
	out, err := c.run(args...)
	if err != nil {
		return err
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		return fmt.Errorf("e2e: %s: %w\n%s", c.line(args...), err, out)
	}
	return nil
}

// line is the command as the report shows it: without the socket, which
// is the test's own.
func (c *vrssCLI) line(args ...string) string {
	return "vrss " + strings.Join(args, " ")
}

// rssSetArgs are the `vrss rss set` flags that give a TAP exactly the
// configuration c, whatever it had before: the key, the hash types, the
// whole table and the unclassified queue.
func rssSetArgs(c rss.Config) []string {
	table := make([]string, len(c.Table))
	for i, q := range c.Table {
		table[i] = strconv.Itoa(int(q))
	}
	return []string{
		"--key", hex.EncodeToString(c.Key),
		"--types", c.HashTypes.String(),
		"--table", strings.Join(table, ","),
		"--unclassified", strconv.Itoa(int(c.UnclassifiedQueue)),
	}
}

// sameConfig reports whether a and b steer alike field by field.
func sameConfig(a, b rss.Config) bool {
	return a.HashTypes == b.HashTypes && bytes.Equal(a.Key, b.Key) &&
		slices.Equal(a.Table, b.Table) && a.UnclassifiedQueue == b.UnclassifiedQueue
}

// tapFDs returns the descriptors, in order, through which process pid
// holds queues of the TAP named name (tun's fdinfo names the device).
func tapFDs(pid int, name string) ([]int, error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var fds []int
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if target, err := os.Readlink(filepath.Join(dir, e.Name())); err != nil || target != "/dev/net/tun" {
			continue
		}
		info, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%d", pid, fd))
		if err != nil {
			continue
		}
		if slices.Contains(strings.Split(string(info), "\n"), "iff:\t"+name) {
			fds = append(fds, fd)
		}
	}
	slices.Sort(fds)
	return fds, nil
}

// processUID returns the real user id of process pid.
func processUID(pid int) (int, error) {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(st), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "Uid:" {
			return strconv.Atoi(f[1])
		}
	}
	return 0, fmt.Errorf("e2e: no Uid line in /proc/%d/status", pid)
}
