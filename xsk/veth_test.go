//go:build linux

package xsk_test

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/internal/frame"
	"github.com/vrss-dev/vrss/internal/inject"
	"github.com/vrss-dev/vrss/internal/netnstest"
	"github.com/vrss-dev/vrss/internal/privtest"
	"github.com/vrss-dev/vrss/xsk"
	"github.com/vrss-dev/vrss/xsk/xsktest"
)

// The owner's uid, and the helper process's environment.
const (
	ownerUID  = 4242
	envHelper = "VRSS_XSK_HELPER"
	envArgs   = "VRSS_XSK_ARGS"
)

const queues = 4

func TestMain(m *testing.M) {
	if os.Getenv(envHelper) == "owner" {
		os.Exit(ownerMain())
	}
	os.Exit(m.Run())
}

// ownerArgs tells the owner process what to do.
type ownerArgs struct {
	Ifindex int
	Expect  int // frames to receive before reporting
}

// ownerReport is what the owner process prints at the end.
type ownerReport struct {
	Uid, Euid int
	CapEff    string
	// Refusals: the errors Setup gave for what must fail, by case.
	Refusals map[string]string
	Frames   [queues][]string // hex, in arrival order
	Stats    [queues]xsk.Stats
	ZeroCopy [queues]bool
	Fail     string
}

// spares is the number of sockets beyond one per queue that root hands
// the owner, for what must fail.
const spares = 2

// ownerMain runs in the owner process, as uid 4242 with no capabilities:
// it receives queues+spares unbound AF_XDP sockets over fd 3
// (SCM_RIGHTS), sets the first queues up on queues 0, 1, …, checks what
// must fail with the spares, prints READY, receives until it has the expected number of
// frames (or none came for 3 s) and prints its report.
func ownerMain() int {
	var a ownerArgs
	r := ownerReport{Uid: os.Getuid(), Euid: os.Geteuid(), Refusals: map[string]string{}}
	out := json.NewEncoder(os.Stdout)
	fail := func(format string, args ...any) int {
		r.Fail = fmt.Sprintf(format, args...)
		out.Encode(r)
		return 0
	}
	if err := json.Unmarshal([]byte(os.Getenv(envArgs)), &a); err != nil {
		return fail("args: %v", err)
	}
	status, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			r.CapEff = strings.TrimSpace(v)
		}
	}
	buf, oob := make([]byte, 16), make([]byte, unix.CmsgSpace(4*(queues+spares)))
	_, oobn, _, _, err := unix.Recvmsg(3, buf, oob, 0)
	if err != nil {
		return fail("recvmsg: %v", err)
	}
	cmsgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(cmsgs) != 1 {
		return fail("control messages: %v", err)
	}
	fds, err := unix.ParseUnixRights(&cmsgs[0])
	if err != nil || len(fds) != queues+spares {
		return fail("rights: %d fds, %v", len(fds), err)
	}
	opts := func(q int) xsk.Options {
		return xsk.Options{Frames: 512, FrameSize: 2048, FillSize: 512, CompSize: 512, RxSize: 512, TxSize: 512,
			Ifindex: a.Ifindex, Queue: q, Copy: true, NeedWakeup: true}
	}
	small := func(q int) xsk.Options { o := opts(q); o.Frames = 16; return o }

	// What must fail: a UMEM beyond RLIMIT_MEMLOCK; a socket that is not
	// AF_XDP; zero-copy on veth; setting a socket up twice; a queue
	// already bound.
	// The soft limit up to the hard one, which an unprivileged process
	// may do: the 4 UMEMs need 4 MB (systemd's default is 8 MB).
	var lim unix.Rlimit
	unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim)
	lim.Cur = lim.Max
	low := lim
	low.Cur = 64 << 10
	if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &low); err != nil {
		return fail("lower RLIMIT_MEMLOCK: %v", err)
	}
	_, err = xsk.Setup(fds[queues], opts(0))
	r.Refusals["memlock"] = fmt.Sprint(err)
	if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &lim); err != nil {
		return fail("restore RLIMIT_MEMLOCK: %v", err)
	}
	_, err = xsk.Setup(3, opts(0))
	r.Refusals["not xdp"] = fmt.Sprint(err)
	zc := small(0)
	zc.Copy = false
	_, err = xsk.Setup(fds[queues], zc)
	r.Refusals["zero-copy"] = fmt.Sprint(err)
	_, err = xsk.Setup(fds[queues], small(0))
	r.Refusals["again"] = fmt.Sprint(err)

	var socks []*xsk.Socket
	for q := range queues {
		s, err := xsk.Setup(fds[q], opts(q))
		if err != nil {
			return fail("queue %d (RLIMIT_MEMLOCK %d): %v", q, lim.Cur, err)
		}
		defer s.Close()
		socks = append(socks, s)
		r.ZeroCopy[q], _ = s.ZeroCopy()
	}
	_, err = xsk.Setup(fds[queues+1], small(1))
	r.Refusals["bound"] = fmt.Sprint(err)
	fmt.Println("READY")

	got := 0
	last := time.Now()
	for got < a.Expect && time.Since(last) < 3*time.Second {
		for q, s := range socks {
			n, err := s.Receive(time.Millisecond, func(f []byte) { r.Frames[q] = append(r.Frames[q], hex.EncodeToString(f)) })
			if err != nil {
				return fail("receive on queue %d: %v", q, err)
			}
			if n > 0 {
				got += n
				last = time.Now()
			}
		}
	}
	for q, s := range socks {
		if r.Stats[q], err = s.Stats(); err != nil {
			return fail("stats: %v", err)
		}
	}
	out.Encode(r)
	return 0
}

// testFrame returns a UDPv4 frame of flow i (its source port and address
// differ from every other flow's), whose payload carries tag and i.
func testFrame(tag byte, i int) []byte {
	f := frame.Build(frame.Spec{
		Src: netip.AddrFrom4([4]byte{10, tag, byte(i >> 8), byte(i)}), Dst: netip.AddrFrom4([4]byte{10, 99, 0, 1}),
		Proto: frame.ProtoUDP, SrcPort: uint16(10000 + i), DstPort: 4789, Payload: 32,
	})
	p := f[len(f)-32:]
	p[0] = tag
	binary.BigEndian.PutUint32(p[1:], uint32(i))
	return f
}

// An unprivileged owner (uid 4242, no capabilities) sets up the AF_XDP
// sockets root created, put in the XSKMAP and handed over, and receives
// every frame sent to their queues on the socket of its queue, byte for
// byte; frames on a queue with no socket in the map reach the stack.
// Driver and skb (generic) XDP.
func TestOwnerReceives(t *testing.T) {
	for _, mode := range []struct {
		name string
		skb  bool
	}{{"driver", false}, {"skb", true}} {
		t.Run(mode.name, func(t *testing.T) {
			privtest.Require(t, "root")
			privtest.Require(t, "bpf")
			netnstest.Run(t, func() { ownerReceives(t, mode.skb) })
		})
	}
}

// rxQueue returns the receive queue of the peer on which a frame the
// sending veth transmits on queue tx arrives, as the XDP program sees it
// (ctx->rx_queue_index). veth_xmit delivers it on the peer's receive
// queue tx. In driver mode the program runs in veth's NAPI poll of that
// queue and sees tx. In skb (generic) mode it runs in the stack, which
// takes the receive queue from the skb: veth does not record one, so the
// stack reads the transmit queue still in skb->queue_mapping as a
// recorded receive queue, queue_mapping - 1, and 0 means none recorded:
// tx 0 and 1 both arrive as queue 0, tx 2 as 1, tx 3 as 2, and the last
// queue sees nothing (Linux 6.18; GRO on the peer changes nothing).
func rxQueue(tx int, skb bool) int {
	if skb {
		return max(tx-1, 0)
	}
	return tx
}

func ownerReceives(t *testing.T, skb bool) {
	pair, err := xsktest.NewPair("xsk", queues, skb)
	if err != nil {
		t.Fatal(err)
	}
	defer pair.Close()
	send, err := pair.NewSender(queues)
	if err != nil {
		t.Fatal(err)
	}
	defer send.Close()
	capture, err := inject.OpenCapture(pair.In.Attrs().Index)
	if err != nil {
		t.Fatal(err)
	}
	defer capture.Close()

	// Root: queues+1 unbound sockets, the first queues in the map.
	var files []*os.File
	for range queues + spares {
		f, err := xsk.NewUnbound()
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		files = append(files, f)
	}
	for q := range queues {
		if err := pair.Redirect.Put(q, int(files[q].Fd())); err != nil {
			t.Fatal(err)
		}
	}

	const perQueue, hashed, unsteered = 200, 400, 50
	var marked [queues][][]byte
	var all [][]byte
	for q := range queues {
		for i := range perQueue {
			marked[q] = append(marked[q], testFrame(byte(1+q), i))
		}
	}
	var spread, stack [][]byte
	for i := range hashed {
		spread = append(spread, testFrame(10, i))
	}
	for i := range unsteered {
		stack = append(stack, testFrame(20, i))
	}

	owner, stdout := startOwner(t, ownerArgs{Ifindex: pair.In.Attrs().Index, Expect: queues*perQueue + hashed}, files)
	line, err := stdout.ReadString('\n')
	if line != "READY\n" {
		rest, _ := io.ReadAll(stdout)
		owner.Wait()
		t.Fatalf("owner did not get ready: %q %v %s", line, err, rest)
	}

	// A queue with no socket: the frames the last transmit queue sends,
	// while the socket of the receive queue they arrive on is out of the
	// map, go to the stack.
	last := rxQueue(queues-1, skb)
	if err := pair.Redirect.Map.Delete(uint32(last)); err != nil {
		t.Fatal(err)
	}
	if err := send.Send(queues-1, stack); err != nil {
		t.Fatal(err)
	}
	seen := capture.Drain()
	for _, f := range stack {
		if seen[string(f)] != 1 {
			t.Errorf("a frame on receive queue %d, which had no socket, reached the stack %d times, want 1", last, seen[string(f)])
			break
		}
	}
	if len(seen) != unsteered {
		t.Errorf("the stack saw %d distinct frames, want the %d sent to the queue with no socket", len(seen), unsteered)
	}
	if err := pair.Redirect.Put(last, int(files[last].Fd())); err != nil {
		t.Fatal(err)
	}

	// In bursts the owner keeps up with (a test, not a benchmark).
	sendPaced := func(q int, frames [][]byte) {
		for len(frames) > 0 {
			n := min(len(frames), 64)
			if err := send.Send(q, frames[:n]); err != nil {
				t.Fatal(err)
			}
			frames = frames[n:]
			time.Sleep(2 * time.Millisecond)
		}
	}
	for q := range queues {
		sendPaced(q, marked[q])
		all = append(all, marked[q]...)
	}
	sendPaced(-1, spread)
	all = append(all, spread...)

	var r ownerReport
	if err := json.NewDecoder(stdout).Decode(&r); err != nil {
		t.Fatalf("owner's report: %v", err)
	}
	if err := owner.Wait(); err != nil {
		t.Fatalf("owner: %v", err)
	}
	if r.Fail != "" {
		t.Fatalf("owner: %s", r.Fail)
	}
	if r.Uid != ownerUID || r.Euid != ownerUID || r.CapEff != "0000000000000000" {
		t.Fatalf("owner ran as uid %d euid %d with capabilities %s", r.Uid, r.Euid, r.CapEff)
	}
	checkRefusals(t, r.Refusals)

	// Every frame, once, byte for byte; marked ones on their queue.
	on := map[string]int{}
	for q := range queues {
		for _, h := range r.Frames[q] {
			b, _ := hex.DecodeString(h)
			if _, dup := on[string(b)]; dup {
				t.Errorf("frame %x received twice", b[:20])
			}
			on[string(b)] = q
		}
	}
	for q := range queues {
		wrong := 0
		for _, f := range marked[q] {
			if got, ok := on[string(f)]; !ok || got != rxQueue(q, skb) {
				wrong++
			}
		}
		if wrong > 0 {
			t.Errorf("transmit queue %d: %d of %d frames missing or not on the socket of receive queue %d", q, wrong, perQueue, rxQueue(q, skb))
		}
	}
	var hashedOn [queues]int
	for _, f := range spread {
		q, ok := on[string(f)]
		if !ok {
			t.Errorf("a frame of the hashed flows did not arrive")
			continue
		}
		hashedOn[q]++
	}
	for _, f := range stack {
		if _, ok := on[string(f)]; ok {
			t.Errorf("a frame sent while its queue had no socket reached the socket")
		}
	}
	if len(on) != len(all) {
		t.Errorf("received %d distinct frames, sent %d", len(on), len(all))
	}
	if more := capture.Drain(); len(more) != 0 {
		t.Errorf("%d frames sent to sockets reached the stack", len(more))
	}
	for q, st := range r.Stats {
		if st.RxDropped+st.RxInvalidDescs+st.RxRingFull+st.Refused != 0 {
			t.Errorf("queue %d: stats %+v", q, st)
		}
		if r.ZeroCopy[q] {
			t.Errorf("queue %d bound in zero-copy mode, asked for copy", q)
		}
	}
	t.Logf("received %d frames: %d sent on each of %d transmit queues, each on the socket of its receive queue; %d hashed flows spread %v over the sockets; %d frames with no socket reached the stack",
		len(on), perQueue, queues, hashed, hashedOn, unsteered)
	for q := range queues {
		if hashedOn[rxQueue(q, skb)] == 0 {
			t.Errorf("no hashed flow arrived on receive queue %d: %v", rxQueue(q, skb), hashedOn)
		}
	}
}

// checkRefusals checks what the owner's Setup refused, and why.
func checkRefusals(t *testing.T, got map[string]string) {
	t.Helper()
	for name, want := range map[string][]string{
		"memlock":   {"XDP_UMEM_REG", "RLIMIT_MEMLOCK", "CAP_IPC_LOCK"},
		"not xdp":   {"not an AF_XDP socket"},
		"zero-copy": {"bind", "zero-copy", "copy mode"},
		"again":     {"XDP_UMEM_REG", "set up before"},
		"bound":     {"bind", "already bound"},
	} {
		for _, w := range want {
			if !strings.Contains(got[name], w) {
				t.Errorf("%s: error %q lacks %q", name, got[name], w)
			}
		}
		t.Logf("%s: %s", name, got[name])
	}
}

// startOwner starts the owner process as uid 4242 with no capabilities
// and sends it files over a unix socket with SCM_RIGHTS. It returns the
// process and its standard output.
func startOwner(t *testing.T, a ownerArgs, files []*os.File) (*exec.Cmd, *bufio.Reader) {
	t.Helper()
	bin := publicCopy(t)
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	mine, theirs := os.NewFile(uintptr(pair[0]), "owner-conn"), os.NewFile(uintptr(pair[1]), "owner-conn")
	defer mine.Close()
	defer theirs.Close()
	args, _ := json.Marshal(a)
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Dir = "/"
	cmd.Env = []string{envHelper + "=owner", envArgs + "=" + string(args), "PATH=/usr/bin:/bin"}
	cmd.ExtraFiles = []*os.File{theirs}
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// setuid from root clears the permitted and effective sets; no
		// ambient capabilities; no supplementary groups.
		Credential: &syscall.Credential{Uid: ownerUID, Gid: ownerUID, Groups: []uint32{}},
		Pdeathsig:  syscall.SIGKILL,
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var fds []int
	for _, f := range files {
		fds = append(fds, int(f.Fd()))
	}
	if err := unix.Sendmsg(int(mine.Fd()), []byte("xsk"), unix.UnixRights(fds...), nil, 0); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("send the sockets: %v", err)
	}
	return cmd, bufio.NewReader(stdout)
}

// publicCopy copies the test binary to a directory other uids can read
// (go test may build it in one they cannot search).
func publicCopy(t *testing.T) string {
	t.Helper()
	self, err := os.ReadFile("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "vrss-xsk-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "xsk.test")
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}
