package agent

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf/link"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/internal/fd"
	"github.com/vrss-dev/vrss/internal/frame"
	"github.com/vrss-dev/vrss/internal/inject"
	"github.com/vrss-dev/vrss/internal/privtest"
	"github.com/vrss-dev/vrss/port"
	"github.com/vrss-dev/vrss/portxdp"
	"github.com/vrss-dev/vrss/xsk"
	"github.com/vrss-dev/vrss/xsk/xsktest"
)

// The pending path runs on this machine's kernel, which takes unbound
// sockets, through Options.XSKInsert: it refuses, with ENOBUFS as Linux
// 7.2 does, every socket that is not bound yet (stricter than 7.2, which
// takes one once it has an RX ring; vrssd inserts only bound ones anyway).

const envPendingHelper = "VRSS_AFXDP_PENDING_HELPER"

func init() {
	// The test binary re-executed as the unprivileged owner.
	if os.Getenv(envPendingHelper) != "" {
		os.Exit(pendingOwner())
	}
}

// refuseUnbound is the XSKInsert of the tests: Linux 7.2's refusal of an
// unbound socket, counted.
func refuseUnbound(refused *int) func(*portxdp.Program, int, int) error {
	return func(prog *portxdp.Program, queue, sock int) error {
		if bound, err := xskBound(sock); err != nil || !bound {
			*refused++
			return fmt.Errorf("portxdp: socket fd %d at queue %d: update: %w", sock, queue, unix.ENOBUFS)
		}
		return prog.SetSocket(queue, sock)
	}
}

// pendingTag is the test frames' source port: queue*1000 + seq.
func pendingTag(f []byte) int {
	if len(f) < 36 || binary.BigEndian.Uint16(f[12:14]) != 0x0800 {
		return -1
	}
	return int(binary.BigEndian.Uint16(f[34:36]))
}

var pendingMAC = port.MAC{0x52, 0x54, 0, 0xab, 0xcd, 0xef}

func pendingFrame(queue, seq int, dst string) []byte {
	b := frame.Build(frame.Spec{Src: netip.MustParseAddr("10.9.0.254"), Dst: netip.MustParseAddr(dst), Proto: 17, SrcPort: uint16(queue*1000 + seq), DstPort: 7, Payload: 16})
	copy(b[0:6], pendingMAC[:])
	copy(b[6:12], []byte{0x52, 0x54, 0, 0x12, 0x34, 0x56})
	return b
}

// pendingOwner sets up the sockets it inherited (3 and on) with package
// xsk, binding them to $IFINDEX, queues $QUEUE_START on, says READY, and
// receives until its standard input closes (then 300 ms more); it prints
// the tags each socket got as JSON.
func pendingOwner() int {
	n, _ := strconv.Atoi(os.Getenv("SOCKETS"))
	ifindex, _ := strconv.Atoi(os.Getenv("IFINDEX"))
	start, _ := strconv.Atoi(os.Getenv("QUEUE_START"))
	var socks []*xsk.Socket
	for i := range n {
		s, err := xsk.Setup(3+i, xsk.Options{Frames: 256, FrameSize: 2048, FillSize: 128, CompSize: 128, RxSize: 256, Ifindex: ifindex, Queue: start + i, Copy: true})
		if err != nil {
			fmt.Printf("FAIL queue %d (uid %d): %v\n", start+i, os.Getuid(), err)
			return 1
		}
		socks = append(socks, s)
	}
	os.Stdout.WriteString("READY\n")
	done := make(chan struct{})
	go func() {
		io.Copy(io.Discard, os.Stdin)
		close(done)
	}()
	got := make([][]int, n)
	var deadline time.Time
	for deadline.IsZero() || time.Now().Before(deadline) {
		for i, s := range socks {
			if _, err := s.Receive(5*time.Millisecond, func(f []byte) { got[i] = append(got[i], pendingTag(f)) }); err != nil {
				fmt.Printf("FAIL receive: %v\n", err)
				return 1
			}
		}
		select {
		case <-done:
			if deadline.IsZero() {
				deadline = time.Now().Add(300 * time.Millisecond)
			}
		default:
		}
	}
	json.NewEncoder(os.Stdout).Encode(got)
	return 0
}

// TestAFXDPPending: on a kernel that refuses unbound sockets in an
// XSKMAP (emulated), create leaves the port's queues empty, open hands
// out sockets that stay pending (their frames reach the stack) until uid
// 4242 sets them up and binds them, then vrssd inserts them and every
// allowed frame sent after arrives on its queue's socket, denied ones
// counted by reason; delete while pending leaves nothing; a restart while
// pending reports the queues orphaned until the next open.
func TestAFXDPPending(t *testing.T) {
	const owner = 4242
	for _, what := range []string{"root", "bpf", "netns"} {
		privtest.Require(t, what)
	}
	// The test's goroutine stays on a thread in a namespace of its own:
	// vrssd's calls from it (create, open, restore) act there.
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	ns, err := netns.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		netns.Set(orig)
		ns.Close()
		orig.Close()
		runtime.UnlockOSThread()
	})
	if lo, err := netlink.LinkByName("lo"); err == nil {
		netlink.LinkSetUp(lo)
	}
	// No IPv6 on the pair: its own multicast would reach the sockets.
	os.WriteFile("/proc/sys/net/ipv6/conf/default/disable_ipv6", []byte("1"), 0)
	pair, err := xsktest.NewPair("pv", 4, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pair.Close() })
	// vrssd never replaces an XDP program: take the pair's own off.
	info, _ := pair.Redirect.Prog.Info()
	pid, _ := info.ID()
	it := new(link.Iterator)
	for it.Next() {
		l := it.Take()
		if li, err := l.Info(); err == nil && li.Program == pid {
			if err := l.Detach(); err != nil {
				t.Fatal(err)
			}
		}
		l.Close()
	}
	it.Close()
	snd, err := pair.NewSender(4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { snd.Close() })
	capture, err := inject.OpenCapture(pair.In.Attrs().Index)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { capture.Close() })

	dir, err := os.MkdirTemp("", "vrssd-pending-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	refused := 0
	f := &fakeDaemon{t: t, logs: &logBuffer{}}
	f.opts = Options{
		Socket: filepath.Join(dir, "run", "vrss.sock"), StateDir: filepath.Join(dir, "state"), BPFFSDir: filepath.Join(dir, "bpf"),
		Logger:    slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Version:   "pending-test",
		XSKInsert: refuseUnbound(&refused),
	}
	t.Cleanup(func() {
		f.stop()
		if t.Failed() {
			t.Logf("vrssd's log:\n%s", f.logs)
		}
		unix.Unmount(f.opts.BPFFSDir, unix.MNT_DETACH)
		unix.Unmount(filepath.Join(filepath.Dir(f.opts.Socket), "xsk"), unix.MNT_DETACH)
	})
	f.start()
	ownerPeer := &peer{uid: owner, gid: owner, pid: 1}
	show := func(name string) api.AFXDPPort {
		var p api.AFXDPPort
		f.do(rootPeer, api.OpAFXDPShow, api.NameArgs{Name: name}, &p)
		return p
	}
	open := func(name string) (api.AFXDPOpenResult, []*fd.FD) {
		t.Helper()
		r, out := f.call(ownerPeer, api.OpAFXDPOpen, api.NameArgs{Name: name})
		if r.Error != nil {
			t.Fatalf("open %s as uid %d: %v", name, owner, r.Error)
		}
		var res api.AFXDPOpenResult
		if err := json.Unmarshal(r.Result, &res); err != nil {
			t.Fatal(err)
		}
		return res, out
	}

	var created api.AFXDPPort
	f.do(rootPeer, api.OpAFXDPCreate, api.AFXDPCreateArgs{Name: "pp0", Dev: "pvin", QueueStart: 1, Queues: 2, OwnerUID: ptrInt(owner), OwnerGID: ptrInt(owner)}, &created)
	if !created.Attached || len(created.Pending) != 0 || refused != 2 {
		t.Fatalf("created: %+v, %d refusals (want attached, nothing pending, 2 refusals)", created, refused)
	}
	pol := port.Policy{MACs: []port.MAC{pendingMAC}, IPv4: []netip.Prefix{netip.MustParsePrefix("10.9.0.1/32")}, Default: port.Allow}
	f.do(rootPeer, api.OpPortSet, api.PortSetArgs{Name: "pp0", Policy: pol}, nil)

	const perQueue = 50
	stack := map[int]bool{} // tags the stack must see
	toSocket := map[int]int{}
	allowed := 0
	send := func(round int, inserted bool) {
		t.Helper()
		for q := range 4 {
			var fs [][]byte
			for i := range perQueue {
				f := pendingFrame(q, round*perQueue+i, "10.9.0.1")
				fs = append(fs, f)
				if (q == 1 || q == 2) && inserted {
					toSocket[pendingTag(f)] = q
				} else {
					stack[pendingTag(f)] = true
				}
				if q == 1 || q == 2 {
					allowed++
				}
			}
			if q == 1 || q == 2 {
				other := pendingFrame(q, 900+round, "10.9.0.1")
				other[5] ^= 1
				fs = append(fs, other, pendingFrame(q, 950+round, "10.9.0.2"))
			}
			if err := snd.Send(q, fs); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Round 0: no socket at the port's queues since create: the stack.
	send(0, false)

	// Open: the sockets go out pending; round 1 goes to the stack too.
	res, out := open("pp0")
	if !slices.Equal(res.Port.Pending, []int{1, 2}) || len(out) != 2 {
		t.Fatalf("opened: %+v, %d sockets; want queues 1 and 2 pending, 2 sockets", res.Port, len(out))
	}
	if p := show("pp0"); !slices.Equal(p.Pending, []int{1, 2}) {
		t.Fatalf("show after open: pending %v", p.Pending)
	}
	wantPendingMetric(t, f.s, "pp0", 2, 0)
	send(1, false)

	// uid 4242 sets them up and binds them.
	self, err := os.ReadFile("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "owner.test")
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Env = []string{envPendingHelper + "=1", "SOCKETS=2", "IFINDEX=" + strconv.Itoa(res.Ifindex), "QUEUE_START=1"}
	for i, s := range out {
		cmd.ExtraFiles = append(cmd.ExtraFiles, s.File(fmt.Sprintf("xsk%d", i)))
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: owner, Gid: owner}}
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	for _, x := range cmd.ExtraFiles {
		x.Close() // the owner's and vrssd's descriptors are the ones left
	}
	rd := bufio.NewReader(stdout)
	if line, err := rd.ReadString('\n'); err != nil || line != "READY\n" {
		t.Fatalf("owner: %q, %v", line, err)
	}
	// vrssd's monitor inserts them within a round or two.
	start := time.Now()
	for deadline := start.Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var p api.AFXDPPort
		f.s.mu.Lock()
		for _, a := range f.s.afxdp {
			p = a.info()
		}
		f.s.mu.Unlock()
		if len(p.Pending) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still pending 5 s after the owner bound its sockets: %v", p.Pending)
		}
	}
	t.Logf("the monitor inserted the bound sockets %v after the owner said READY", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(f.logs.String(), "in the XSKMAP now") {
		t.Error("vrssd did not log the insert")
	}
	if p := show("pp0"); len(p.Pending) != 0 || len(p.Orphaned) != 0 {
		t.Fatalf("show after the insert: %+v", p)
	}
	wantPendingMetric(t, f.s, "pp0", 0, 0)
	send(2, true)
	send(3, true)
	time.Sleep(300 * time.Millisecond)
	stdin.Close()
	var got [][]int
	if err := json.NewDecoder(rd).Decode(&got); err != nil {
		t.Fatal(err)
	}
	received := 0
	for i, tags := range got {
		for _, tag := range tags {
			q, ok := toSocket[tag]
			switch {
			case !ok:
				t.Errorf("socket of queue %d: a frame that should not have come: tag %d", 1+i, tag)
			case q != 1+i:
				t.Errorf("socket of queue %d: a frame sent on queue %d (tag %d)", 1+i, q, tag)
			default:
				delete(toSocket, tag)
				received++
			}
		}
	}
	if len(toSocket) != 0 {
		t.Errorf("%d allowed frames sent after the insert never reached uid %d's sockets", len(toSocket), owner)
	}
	for fr := range capture.Drain() {
		tag := pendingTag([]byte(fr))
		if tag < 0 || tag%1000 >= 900 {
			continue
		}
		if stack[tag] {
			delete(stack, tag)
		} else {
			t.Errorf("the stack saw a frame sent to a socket: tag %d", tag)
		}
	}
	if len(stack) != 0 {
		t.Errorf("%d frames of the empty or pending queues, or of queues 0 and 3, never reached the stack", len(stack))
	}
	var st api.PortStats
	f.do(rootPeer, api.OpPortStats, api.NameArgs{Name: "pp0"}, &st)
	if st.XSKRedirected != 4*perQueue || st.Reasons[port.DefaultAllow] != uint64(allowed) || st.Reasons[port.DstMAC] != 8 || st.Reasons[port.DstIPv4] != 8 {
		t.Errorf("stats: xsk_redirected %d, default_allow %d, dst_mac %d, dst_ipv4 %d; want %d, %d, 8, 8", st.XSKRedirected, st.Reasons[port.DefaultAllow], st.Reasons[port.DstMAC], st.Reasons[port.DstIPv4], 4*perQueue, allowed)
	}
	t.Logf("uid %d received %d of %d allowed frames sent after the insert, each on its queue's socket; the %d sent while the queues were empty or pending reached the stack; dst_mac %d, dst_ipv4 %d", owner, received, 4*perQueue, 4*perQueue, st.Reasons[port.DstMAC], st.Reasons[port.DstIPv4])

	// Delete while pending: nothing is left.
	_, out = open("pp0")
	fd.CloseAll(out)
	if p := show("pp0"); !slices.Equal(p.Pending, []int{1, 2}) {
		t.Fatalf("reopened: pending %v", p.Pending)
	}
	f.do(rootPeer, api.OpAFXDPDelete, api.NameArgs{Name: "pp0"}, nil)
	if l, err := netlink.LinkByName("pvin"); err != nil || (l.Attrs().Xdp != nil && l.Attrs().Xdp.Attached) {
		t.Fatalf("pvin after delete: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(f.opts.StateDir, afxdpDir)); len(ents) != 0 {
		t.Fatalf("records left after delete: %v", ents)
	}

	// A restart while pending: the queues are reported orphaned until
	// the owner opens again.
	f.do(rootPeer, api.OpAFXDPCreate, api.AFXDPCreateArgs{Name: "pp1", Dev: "pvin", QueueStart: 1, Queues: 2, OwnerUID: ptrInt(owner), OwnerGID: ptrInt(owner)}, nil)
	_, out = open("pp1")
	fd.CloseAll(out)
	f.restart()
	if p := show("pp1"); len(p.Pending) != 0 || !slices.Equal(p.Orphaned, []int{1, 2}) {
		t.Fatalf("after a restart while pending: %+v; want queues 1 and 2 orphaned", p)
	}
	wantPendingMetric(t, f.s, "pp1", 0, 2)
	if !strings.Contains(f.logs.String(), "were pending when vrssd stopped") {
		t.Error("the restarted vrssd did not log the orphaned queues")
	}
	res, out = open("pp1")
	fd.CloseAll(out)
	if !slices.Equal(res.Port.Pending, []int{1, 2}) || len(res.Port.Orphaned) != 0 {
		t.Fatalf("opened after the restart: %+v", res.Port)
	}
	wantPendingMetric(t, f.s, "pp1", 2, 0)
	f.do(rootPeer, api.OpAFXDPDelete, api.NameArgs{Name: "pp1"}, nil)
}

func ptrInt(v int) *int { return &v }

// wantPendingMetric fails t unless s's metrics (as Prometheus scrapes
// them, through a registry that checks them against their descriptions)
// say AF_XDP port name has pending queues pending and orphaned orphaned.
func wantPendingMetric(t *testing.T, s *Server, name string, pending, orphaned float64) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(collector{s: s}); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "vrss_afxdp_port_pending_queues" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["port"] == name {
				got[labels["state"]] = m.GetGauge().GetValue()
			}
		}
	}
	want := map[string]float64{"pending": pending, "orphaned": orphaned}
	if !maps.Equal(got, want) {
		t.Fatalf("vrss_afxdp_port_pending_queues of %s by state: %v, want %v", name, got, want)
	}
}
