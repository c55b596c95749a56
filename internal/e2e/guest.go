package e2e

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vrss-dev/vrss/rss"
)

// BootOptions start a guest.
type BootOptions struct {
	QEMU    string  // the QEMU binary; default qemu-system-x86_64
	Machine Machine // its TapFDs and EBPFRSSFDs number ExtraFiles from 3
	// ExtraFiles are passed to QEMU as descriptors 3, 4, ...
	ExtraFiles []*os.File
	// ConsoleLog, if set, receives everything the guest prints.
	ConsoleLog string
	// Timeout bounds the boot, up to the READY marker; default 5 minutes.
	Timeout time.Duration
	// Wrapper, if set, is a command that starts QEMU itself and is run in
	// its place, with the QEMU binary and its arguments appended (`vrss
	// qemu exec ... --`): QEMU is then the process the wrapper execs into.
	Wrapper []string
	// Credential, if set, runs the wrapper or QEMU as another user.
	Credential *syscall.Credential
	// AmbientCaps are capabilities the wrapper or QEMU keeps as ambient
	// ones (across exec) under Credential: CAP_IPC_LOCK for scenario X.
	AmbientCaps []uintptr
}

// Guest is a running QEMU guest, driven through its serial console.
type Guest struct {
	// Release is the guest kernel's `uname -r`, from the READY line.
	Release string

	cmd   *exec.Cmd      // QEMU or its wrapper; nil for a console Attach-ed to
	pid   int            // QEMU's process
	stdin io.WriteCloser // the console's input
	lines chan string    // console lines; closed when QEMU's stdout closes
	done  chan struct{}  // closed when QEMU has exited (Attach: the console closed)
	quit  chan struct{}  // closed by Close and Shutdown
	seq   int

	closeOnce sync.Once
	mu        sync.Mutex
	recent    []string // the last console lines, for error messages
	stderr    bytes.Buffer
	waitErr   error
	logFile   *os.File
}

// Boot starts QEMU and waits until the guest's init prints READY: modules
// loaded, the interface up with all its queue pairs enabled.
func Boot(o BootOptions) (*Guest, error) {
	if o.QEMU == "" {
		o.QEMU = "qemu-system-x86_64"
	}
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Minute
	}
	args, err := o.Machine.Args()
	if err != nil {
		return nil, err
	}
	g := &Guest{lines: make(chan string, 1024), done: make(chan struct{}), quit: make(chan struct{})}
	if o.ConsoleLog != "" {
		if g.logFile, err = os.Create(o.ConsoleLog); err != nil {
			return nil, err
		}
		fmt.Fprintf(g.logFile, "# %s %s\n", strings.Join(o.Wrapper, " "), o.QEMU+" "+strings.Join(args, " "))
	}
	// Plain pipes rather than StdoutPipe: the reader runs until QEMU's
	// end, independently of Wait.
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	name, argv := o.QEMU, args
	if len(o.Wrapper) > 0 {
		name, argv = o.Wrapper[0], append(append(slices.Clone(o.Wrapper[1:]), o.QEMU), args...)
	}
	g.cmd = exec.Command(name, argv...)
	if o.Credential != nil {
		g.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: o.Credential, AmbientCaps: o.AmbientCaps}
	}
	g.cmd.Stdin, g.cmd.Stdout = inR, outW
	g.cmd.Stderr = &lockedWriter{mu: &g.mu, w: &g.stderr}
	g.cmd.ExtraFiles = o.ExtraFiles
	err = g.cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return nil, fmt.Errorf("e2e: start %s: %w", name, err)
	}
	g.stdin, g.pid = inW, g.cmd.Process.Pid
	go g.read(outR)
	go func() {
		err := g.cmd.Wait()
		g.mu.Lock()
		g.waitErr = err
		g.mu.Unlock()
		close(g.done)
	}()

	if err := g.ready(o.Timeout); err != nil {
		return nil, err
	}
	return g, nil
}

// ready waits for the READY marker; on failure it closes g.
func (g *Guest) ready(timeout time.Duration) error {
	line, err := g.await(timeout, func(l string) bool { return strings.HasPrefix(l, markerReady) })
	if err != nil {
		g.Close()
		return fmt.Errorf("e2e: guest boot: %w", err)
	}
	g.Release = strings.TrimSpace(strings.TrimPrefix(line, markerReady))
	return nil
}

// Attach drives a guest that another program started (libvirt), whose
// serial console is conn (QEMU connected to a socket the harness listens
// on), and waits until its init prints READY. pid is QEMU's process. The
// guest's end is QEMU closing the console; Close closes the console but
// leaves QEMU to whoever started it.
func Attach(conn io.ReadWriteCloser, pid int, consoleLog, header string, timeout time.Duration) (*Guest, error) {
	g := &Guest{pid: pid, stdin: conn, lines: make(chan string, 1024), done: make(chan struct{}), quit: make(chan struct{})}
	if consoleLog != "" {
		var err error
		if g.logFile, err = os.Create(consoleLog); err != nil {
			conn.Close()
			return nil, err
		}
		fmt.Fprintf(g.logFile, "# %s\n", header)
	}
	go func() {
		g.read(conn)
		g.mu.Lock()
		g.waitErr = errors.New("the console closed")
		g.mu.Unlock()
		close(g.done)
	}()
	if err := g.ready(timeout); err != nil {
		return nil, err
	}
	return g, nil
}

// read copies console lines to the channel and the log, without the
// carriage returns the guest's tty adds.
func (g *Guest) read(r io.ReadCloser) {
	defer close(g.lines)
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		l := strings.ReplaceAll(sc.Text(), "\r", "")
		g.mu.Lock()
		g.recent = append(g.recent, l)
		if len(g.recent) > 60 {
			g.recent = g.recent[len(g.recent)-40:]
		}
		if g.logFile != nil {
			fmt.Fprintln(g.logFile, l)
		}
		g.mu.Unlock()
		select {
		case g.lines <- l:
		case <-g.quit: // nobody will read any more
		}
	}
}

// await reads console lines until match accepts one, which it returns. A
// VRSS-FAIL line from init, QEMU's exit or the timeout end the wait with
// an error that quotes the console's last lines.
func (g *Guest) await(timeout time.Duration, match func(string) bool) (string, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case l, ok := <-g.lines:
			if !ok {
				<-g.done
				return "", fmt.Errorf("QEMU exited (%v)%s", g.exitErr(), g.context())
			}
			if strings.HasPrefix(l, markerFail) {
				return "", fmt.Errorf("guest init failed: %s%s", l, g.context())
			}
			if match(l) {
				return l, nil
			}
		case <-timer.C:
			return "", fmt.Errorf("no answer within %v%s", timeout, g.context())
		}
	}
}

func (g *Guest) exitErr() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.waitErr == nil {
		return errors.New("exit status 0")
	}
	return g.waitErr
}

// context is the console's and QEMU's last words, for error messages.
func (g *Guest) context() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := "\n--- guest console (last lines) ---\n" + strings.Join(g.recent, "\n")
	if e := strings.TrimSpace(g.stderr.String()); e != "" {
		s += "\n--- QEMU stderr ---\n" + tail(e, 20)
	}
	return s
}

// Run runs a shell command in the guest and returns its combined output
// and exit status. The command is one line; it runs with /dev/null as
// stdin.
func (g *Guest) Run(command string, timeout time.Duration) (string, int, error) {
	if strings.ContainsAny(command, "\r\n") {
		return "", 0, fmt.Errorf("e2e: guest command must be one line: %q", command)
	}
	// Whatever the console printed since the last command is not an answer.
	for drained := false; !drained; {
		select {
		case _, ok := <-g.lines:
			drained = !ok
		default:
			drained = true
		}
	}
	g.seq++
	id := strconv.Itoa(g.seq)
	if _, err := fmt.Fprintf(g.stdin, "RUN %s %s\n", id, command); err != nil {
		return "", 0, fmt.Errorf("e2e: write to guest console: %w", err)
	}
	begin, endPrefix := markerBegin+" "+id, markerEnd+" "+id+" "
	if _, err := g.await(timeout, func(l string) bool { return l == begin }); err != nil {
		return "", 0, fmt.Errorf("e2e: guest %q: %w", command, err)
	}
	var out []string
	end, err := g.await(timeout, func(l string) bool {
		if strings.HasPrefix(l, endPrefix) {
			return true
		}
		out = append(out, l)
		return false
	})
	if err != nil {
		return "", 0, fmt.Errorf("e2e: guest %q: %w", command, err)
	}
	rc, err := strconv.Atoi(strings.TrimPrefix(end, endPrefix))
	if err != nil {
		return "", 0, fmt.Errorf("e2e: guest %q: bad end marker %q", command, end)
	}
	return strings.Join(out, "\n"), rc, nil
}

// MustRun is Run that also fails on a nonzero exit status.
func (g *Guest) MustRun(command string, timeout time.Duration) (string, error) {
	out, rc, err := g.Run(command, timeout)
	if err == nil && rc != 0 {
		err = fmt.Errorf("e2e: guest %q exited %d:\n%s", command, rc, out)
	}
	return out, err
}

// RxQueuePackets returns the guest driver's per-queue receive counters
// (ethtool -S rx_queue_N_packets, or rxN_packets) for queues 0..queues-1.
// virtio_net counts a frame there as it takes it off the queue, before
// any filtering by the stack.
func (g *Guest) RxQueuePackets(iface string, queues int) ([]uint64, error) {
	out, err := g.MustRun("ethtool -S "+iface, time.Minute)
	if err != nil {
		return nil, err
	}
	return parseRxQueuePackets(out, queues)
}

var rxQueueRe = regexp.MustCompile(`(?m)^\s*rx(?:_queue_)?(\d+)_packets:\s*(\d+)\s*$`)

func parseRxQueuePackets(out string, queues int) ([]uint64, error) {
	c := make([]uint64, queues)
	seen := make([]bool, queues)
	for _, m := range rxQueueRe.FindAllStringSubmatch(out, -1) {
		q, _ := strconv.Atoi(m[1])
		if q >= queues {
			continue
		}
		v, err := strconv.ParseUint(m[2], 10, 64)
		if err != nil {
			return nil, err
		}
		c[q], seen[q] = v, true
	}
	for q, ok := range seen {
		if !ok {
			// Linux 6.10 moved virtio_net's per-queue packet counts
			// from ethtool -S to the netdev netlink family (qstats).
			return nil, fmt.Errorf("e2e: no rx_queue_%d_packets in ethtool -S output (a guest kernel >= 6.10 reports them only as netdev qstats):\n%s", q, tail(out, 8))
		}
	}
	return c, nil
}

// Channels returns the current combined channel count `ethtool -l` reports.
func (g *Guest) Channels(iface string) (int, error) {
	out, err := g.MustRun("ethtool -l "+iface, time.Minute)
	if err != nil {
		return 0, err
	}
	return parseCurrentCombined(out)
}

func parseCurrentCombined(out string) (int, error) {
	_, cur, ok := strings.Cut(out, "Current hardware settings:")
	if !ok {
		return 0, fmt.Errorf("e2e: unexpected ethtool -l output:\n%s", out)
	}
	m := regexp.MustCompile(`(?m)^\s*Combined:\s*(\d+)`).FindStringSubmatch(cur)
	if m == nil {
		return 0, fmt.Errorf("e2e: no current combined channels in:\n%s", out)
	}
	return strconv.Atoi(m[1])
}

// RSS returns the guest's view of its RSS configuration (ethtool -x): the
// indirection table and the key. Without VIRTIO_NET_F_RSS (rss=on) the
// driver has none and this fails.
func (g *Guest) RSS(iface string) (table []uint16, key []byte, err error) {
	out, err := g.MustRun("ethtool -x "+iface, time.Minute)
	if err != nil {
		return nil, nil, err
	}
	return parseEthtoolX(out)
}

var indirRowRe = regexp.MustCompile(`^\s*(\d+):((?:\s+\d+)+)\s*$`)

// parseEthtoolX reads `ethtool -x` output: rows "  8:  0 1 2 3 ..." of
// the indirection table, then the key as colon-separated hex after "RSS
// hash key:".
func parseEthtoolX(out string) ([]uint16, []byte, error) {
	var table []uint16
	var key []byte
	lines := strings.Split(out, "\n")
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if m := indirRowRe.FindStringSubmatch(l); m != nil {
			if start, _ := strconv.Atoi(m[1]); start != len(table) {
				return nil, nil, fmt.Errorf("e2e: ethtool -x: row %d after %d entries", start, len(table))
			}
			for _, f := range strings.Fields(m[2]) {
				q, err := strconv.ParseUint(f, 10, 16)
				if err != nil {
					return nil, nil, err
				}
				table = append(table, uint16(q))
			}
			continue
		}
		if strings.HasPrefix(strings.TrimSpace(l), "RSS hash key:") && i+1 < len(lines) {
			for _, h := range strings.Split(strings.TrimSpace(lines[i+1]), ":") {
				b, err := strconv.ParseUint(h, 16, 8)
				if err != nil {
					return nil, nil, fmt.Errorf("e2e: ethtool -x: hash key %q", lines[i+1])
				}
				key = append(key, byte(b))
			}
			i++
		}
	}
	if len(table) == 0 || len(key) == 0 {
		return nil, nil, fmt.Errorf("e2e: no RSS configuration in ethtool -x output:\n%s", tail(out, 8))
	}
	return table, key, nil
}

// Pid is QEMU's process id (the wrapper's, which execs into QEMU).
func (g *Guest) Pid() int { return g.pid }

// Flow types of `ethtool -N/-n rx-flow-hash`, and the hash types the Linux
// virtio_net driver keeps for each: a flow type hashed on addresses and
// ports ("sdfn") has its L4 type, one hashed on addresses ("sd") only the
// IP type of its family. Setting either sets the IP type too, which is
// therefore on whenever a flow type of its family shows the addresses
// (ethtool has no rx-flow-hash ip4 or ip6 to ask directly). The driver
// never enables the _EX types (it removes them from the device's
// supported types at probe).
var rxFlowTypes = []struct {
	name   string
	ip, l4 rss.HashType
}{
	{"tcp4", rss.HashIPv4, rss.HashTCPv4},
	{"udp4", rss.HashIPv4, rss.HashUDPv4},
	{"tcp6", rss.HashIPv6, rss.HashTCPv6},
	{"udp6", rss.HashIPv6, rss.HashUDPv6},
}

// RxFlowHash returns the hash types the guest's driver has enabled, read
// with `ethtool -n IFACE rx-flow-hash FLOW` for every flow type.
func (g *Guest) RxFlowHash(iface string) (rss.HashType, error) {
	var t rss.HashType
	for _, ft := range rxFlowTypes {
		out, err := g.MustRun("ethtool -n "+iface+" rx-flow-hash "+ft.name, time.Minute)
		if err != nil {
			return 0, err
		}
		ip, l4 := parseRxFlowHash(out)
		if ip {
			t |= ft.ip
		}
		if l4 {
			t |= ft.l4
		}
	}
	return t, nil
}

// parseRxFlowHash reads `ethtool -n rx-flow-hash` output: whether the
// addresses (IP SA and IP DA) and the ports (L4 bytes 0 & 1 and 2 & 3)
// are hashed.
func parseRxFlowHash(out string) (ip, l4 bool) {
	has := func(s string) bool { return strings.Contains(out, s) }
	return has("IP SA") && has("IP DA"), has("L4 bytes 0 & 1") && has("L4 bytes 2 & 3")
}

// Feature returns whether an `ethtool -k` feature (e.g. receive-hashing)
// is on.
func (g *Guest) Feature(iface, name string) (bool, error) {
	out, err := g.MustRun("ethtool -k "+iface, time.Minute)
	if err != nil {
		return false, err
	}
	return parseFeature(out, name)
}

func parseFeature(out, name string) (bool, error) {
	for _, l := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(l), ":")
		if ok && k == name {
			return strings.HasPrefix(strings.TrimSpace(v), "on"), nil
		}
	}
	return false, fmt.Errorf("e2e: no feature %s in ethtool -k output:\n%s", name, tail(out, 8))
}

// Shutdown powers the guest off and waits for QEMU to exit, killing it
// after timeout.
func (g *Guest) Shutdown(timeout time.Duration) error {
	fmt.Fprintln(g.stdin, "OFF")
	select {
	case <-g.done:
	case <-time.After(timeout):
		g.kill()
		<-g.done
		g.closeFiles()
		return fmt.Errorf("e2e: guest did not power off within %v; killed", timeout)
	}
	g.closeFiles()
	return nil
}

// Close kills QEMU if it still runs (an Attach-ed guest: closes its
// console) and releases everything.
func (g *Guest) Close() {
	select {
	case <-g.done:
	default:
		g.kill()
		<-g.done
	}
	g.closeFiles()
}

// kill ends QEMU if the harness started it, else closes the console, which
// ends the reader.
func (g *Guest) kill() {
	if g.cmd != nil {
		g.cmd.Process.Kill()
		return
	}
	g.stdin.Close()
}

func (g *Guest) closeFiles() {
	g.closeOnce.Do(func() { close(g.quit) })
	g.stdin.Close()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.logFile != nil {
		g.logFile.Close()
		g.logFile = nil
	}
}

// Stderr is what QEMU wrote to its standard error so far.
func (g *Guest) Stderr() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.stderr.String()
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
