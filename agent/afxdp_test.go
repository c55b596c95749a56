package agent_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/agent/client"
	"github.com/vrss-dev/vrss/internal/frame"
	"github.com/vrss-dev/vrss/internal/inject"
	"github.com/vrss-dev/vrss/port"
	"github.com/vrss-dev/vrss/xsk"
	"github.com/vrss-dev/vrss/xsk/xsktest"
)

// afxdpGuestMAC is the MAC of the tests' AF_XDP port policies.
var afxdpGuestMAC = port.MAC{0x52, 0x54, 0, 0xab, 0xcd, 0xef}

// afxdpFrame is a UDP frame arriving for the guest (to its MAC) at
// address dst (10.9.0.1 is the guest's, which the test's policy allows;
// an AF_XDP port's policy judges the frames of its queues inbound), told
// apart by its source port: queue*1000+seq.
func afxdpFrame(queue, seq int, dst string) []byte {
	b := frame.Build(frame.Spec{Src: netip.MustParseAddr("10.9.0.254"), Dst: netip.MustParseAddr(dst), Proto: 17, SrcPort: uint16(queue*1000 + seq), DstPort: 7, Payload: 16})
	copy(b[0:6], afxdpGuestMAC[:])
	copy(b[6:12], []byte{0x52, 0x54, 0, 0x12, 0x34, 0x56})
	return b
}

// afxdpARP is a broadcast ARP request for address tpa, whose tag
// (afxdpTag: the target MAC's middle bytes) is tag.
func afxdpARP(tpa string, tag int) []byte {
	b := []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0, 0x12, 0x34, 0x56, 0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1, 0x52, 0x54, 0, 0x12, 0x34, 0x56, 10, 9, 0, 254}
	b = append(b, 0, 0, byte(tag>>8), byte(tag), 0, 0)
	a := netip.MustParseAddr(tpa).As4()
	return append(append(b, a[:]...), make([]byte, 18)...)
}

// afxdpTag reads the source port back.
func afxdpTag(f []byte) int {
	if len(f) < 14+20+2 {
		return -1
	}
	return int(binary.BigEndian.Uint16(f[34:36]))
}

// TestAFXDPPort: root creates an AF_XDP port on queues 1-2 of a veth with
// 4 queues for uid 4242 and sets its port policy; uid 4242, with no
// capabilities, opens it, sets the sockets up with package xsk and
// receives every allowed frame on the socket of its queue, across a
// SIGKILL and restart of vrssd; denied frames are counted by reason, the
// frames of queues 0 and 3 reach the stack, another uid finds nothing, and
// delete leaves no XDP program and no pins.
func TestAFXDPPort(t *testing.T) {
	const owner, other = 4242, 4343
	d := newDaemon(t, "", "--metrics", "127.0.0.1:0")
	ctx := context.Background()
	var pair *xsktest.Pair
	var snd *xsktest.Sender
	var capture *inject.Capture
	d.inNS(func() {
		var err error
		if pair, err = xsktest.NewPair("xv", 4, false); err != nil {
			t.Fatal(err)
		}
		if snd, err = pair.NewSender(4); err != nil {
			t.Fatal(err)
		}
		capture = openFrameCapture(t, "xvin")
	})
	t.Cleanup(func() {
		d.inNS(func() {
			snd.Close()
			pair.Close()
		})
	})
	c := d.dial()
	defer c.Close()
	create := api.AFXDPCreateArgs{Name: "xp0", Dev: "xvin", QueueStart: 1, Queues: 2, OwnerUID: ptr(owner), OwnerGID: ptr(owner)}

	// The pair's own redirect program is on xvin: refused, and nothing
	// left behind.
	_, err := c.AFXDPCreate(ctx, create)
	wantCode(t, err, api.CodeBusy)
	d.inNS(func() {
		info, err := pair.Redirect.Prog.Info()
		if err != nil {
			t.Fatal(err)
		}
		id, _ := info.ID()
		detachProg(t, id)
	})
	for _, bad := range []api.AFXDPCreateArgs{
		{Name: "xp0", Dev: "nosuch0", QueueStart: 1, Queues: 2},
		{Name: "xp0", Dev: "xvin", QueueStart: 3, Queues: 2},
	} {
		if _, err := c.AFXDPCreate(ctx, bad); err == nil {
			t.Fatalf("create %+v: no error", bad)
		}
	}
	// uid 4242 may not create (the configuration lets no one but root).
	if r := d.asUser(owner, "call", helperArgs{Op: api.OpAFXDPCreate, Args: mustJSON(create)}); r.Error == nil || r.Error.Code != api.CodeDenied {
		t.Fatalf("create as uid %d: %+v", owner, r)
	}
	info, err := c.AFXDPCreate(ctx, create)
	if err != nil {
		t.Fatal(err)
	}
	if !info.Attached || info.Policy || info.OwnerUID != owner {
		t.Fatalf("created: %+v", info)
	}
	pol := port.Policy{
		MACs:    []port.MAC{afxdpGuestMAC},
		IPv4:    []netip.Prefix{netip.MustParsePrefix("10.9.0.1/32")},
		Default: port.Allow,
	}
	if _, err := c.PortSet(ctx, "xp0", pol); err != nil {
		t.Fatal(err)
	}
	// An uplink makes no sense on an AF_XDP port.
	withUplink := pol
	withUplink.Uplink = "xvout"
	_, err = c.PortSet(ctx, "xp0", withUplink)
	wantCode(t, err, api.CodeInvalidConfig)

	stdin, out := startAFXDPOwner(t, d, owner, api.NameArgs{Name: "xp0"})

	const perQueue = 50
	want := map[int]int{} // tag → queue it must arrive on, for the VMM
	stack := map[int]bool{}
	sent := 0
	send := func(round int) {
		d.inNS(func() {
			for q := range 4 {
				var fs [][]byte
				for i := range perQueue {
					seq := round*perQueue + i
					f := afxdpFrame(q, seq, "10.9.0.1")
					fs = append(fs, f)
					if q == 1 || q == 2 {
						want[afxdpTag(f)] = q
					} else {
						stack[afxdpTag(f)] = true
					}
				}
				if q == 1 || q == 2 {
					// Denied: a frame to another MAC, one to an
					// address not the guest's, and an ARP request
					// for an address not the guest's.
					toOther := afxdpFrame(q, 900+round, "10.9.0.1")
					toOther[5] ^= 1
					fs = append(fs, toOther, afxdpFrame(q, 950+round, "10.9.0.2"), afxdpARP("10.9.0.77", q*1000+980+round))
				}
				sent += len(fs)
				if err := snd.Send(q, fs); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
	send(0)
	time.Sleep(300 * time.Millisecond)
	d.kill()
	send(1) // vrssd is down: the pinned program and XSKMAP go on
	d.start()
	c2 := d.dial()
	defer c2.Close()
	send(2)
	if show, err := c2.AFXDPShow(ctx, "xp0"); err != nil || !show.Attached || !show.Policy {
		t.Fatalf("after the restart: %+v, %v", show, err)
	}
	// Detached behind vrssd's back: attached again by its monitor, and
	// the sockets go on receiving.
	d.inNS(func() {
		l, err := netlink.LinkByName("xvin")
		if err != nil || l.Attrs().Xdp == nil || !l.Attrs().Xdp.Attached {
			t.Fatalf("xvin: no XDP program after the restart (%v)", err)
		}
		detachProg(t, ebpf.ProgramID(l.Attrs().Xdp.ProgId))
	})
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if show, err := c2.AFXDPShow(ctx, "xp0"); err == nil && show.Attached {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the detached program was not attached again")
		}
	}
	send(3)
	time.Sleep(300 * time.Millisecond)
	received := checkOnQueues(t, afxdpHelperTags(t, stdin, out, "afxdp helper"), want, 1)
	t.Logf("uid %d received %d of %d allowed frames, each on its queue's socket (%d sent in all, vrssd SIGKILLed and restarted, and its program detached behind its back, between rounds)", owner, received, 8*perQueue, sent)

	// The stack saw the frames of queues 0 and 3, and none of the port's.
	for f := range capture.Drain() {
		tag := afxdpTag([]byte(f))
		if tag < 0 {
			continue // not one of the test's
		}
		if stack[tag] {
			delete(stack, tag)
		} else {
			t.Errorf("the stack saw a frame of the port's queues: tag %d", tag)
		}
	}
	if len(stack) != 0 {
		t.Errorf("%d frames of queues 0 and 3 never reached the stack", len(stack))
	}

	st, err := c2.PortStats(ctx, "xp0")
	if err != nil {
		t.Fatal(err)
	}
	// The counters are the pinned map's: the round sent while vrssd was
	// down is counted too.
	if st.Reasons[port.DstMAC] != 8 || st.Reasons[port.DstIPv4] != 8 || st.Reasons[port.ARPTarget] != 8 || st.Reasons[port.DefaultAllow] != 8*perQueue || st.Dropped != 24 {
		t.Errorf("reasons: dst_mac %d, dst_ipv4 %d, arp_target %d, default_allow %d, dropped %d; want 8, 8, 8, %d, 24", st.Reasons[port.DstMAC], st.Reasons[port.DstIPv4], st.Reasons[port.ARPTarget], st.Reasons[port.DefaultAllow], 8*perQueue, st.Dropped)
	}
	if st.XSKRedirected != 8*perQueue || st.OtherQueue < 8*perQueue {
		t.Errorf("xsk_redirected %d, other_queue %d; want %d and at least %d", st.XSKRedirected, st.OtherQueue, 8*perQueue, 8*perQueue)
	}
	t.Logf("port stats: %+v", st)
	// The metrics are the same counters.
	scraped, _ := d.scrape()
	for _, m := range []struct {
		v      uint64
		name   string
		labels []string
	}{
		{1, "vrss_afxdp_ports", nil},
		{1, "vrss_afxdp_port_attached", []string{"port", "xp0"}},
		{st.XSKRedirected, "vrss_afxdp_port_xsk_redirected_packets_total", []string{"port", "xp0"}},
		{st.OtherQueue, "vrss_afxdp_port_other_queue_packets_total", []string{"port", "xp0"}},
		{st.Reasons[port.DstMAC], "vrss_afxdp_port_packets_total", []string{"port", "xp0", "reason", "dst_mac"}},
		{st.Reasons[port.DstIPv4], "vrss_afxdp_port_packets_total", []string{"port", "xp0", "reason", "dst_ipv4"}},
		{st.Reasons[port.ARPTarget], "vrss_afxdp_port_packets_total", []string{"port", "xp0", "reason", "arp_target"}},
		{st.Reasons[port.DefaultAllow], "vrss_afxdp_port_packets_total", []string{"port", "xp0", "reason", "default_allow"}},
		{0, "vrss_afxdp_port_packets_total", []string{"port", "xp0", "reason", "src_mac"}},
	} {
		if g, ok := scraped.value(m.name, m.labels...); !ok || g != float64(m.v) {
			t.Errorf("%s%v: %v (%v) in the scrape, want %d", m.name, m.labels, g, ok, m.v)
		}
	}

	// Another uid finds nothing.
	for _, op := range []api.Op{api.OpAFXDPOpen, api.OpAFXDPShow, api.OpAFXDPDelete, api.OpPortStats, api.OpPortShow} {
		wantHidden(t, string(op)+" by another uid", d.asUser(other, "call", helperArgs{Op: op, Args: mustJSON(api.NameArgs{Name: "xp0"})}))
	}
	if r := d.asUser(other, "call", helperArgs{Op: api.OpAFXDPList}); r.Error != nil || string(r.Result) != `{"ports":[]}` {
		t.Fatalf("list by another uid: %+v (%s)", r, r.Result)
	}
	// The owner may read the policy, not set it.
	if r := d.asUser(owner, "call", helperArgs{Op: api.OpPortSet, Args: mustJSON(api.PortSetArgs{Name: "xp0", Policy: pol})}); r.Error == nil || r.Error.Code != api.CodeDenied {
		t.Fatalf("port set by the owner: %+v", r)
	}

	if err := c2.AFXDPDelete(ctx, "xp0"); err != nil {
		t.Fatal(err)
	}
	d.inNS(func() {
		l, err := netlink.LinkByName("xvin")
		if err != nil {
			t.Fatal(err)
		}
		if x := l.Attrs().Xdp; x != nil && x.Attached {
			t.Errorf("XDP program %d still on xvin after delete", x.ProgId)
		}
	})
	if _, err := os.Lstat(filepath.Join(d.bpffsDir, "afxdp", "xp0")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pins after delete: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(d.stateDir, "afxdp", "xp0.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("record after delete: %v", err)
	}
	if ports, err := c2.AFXDPList(ctx); err != nil || len(ports) != 0 {
		t.Fatalf("list after delete: %+v, %v", ports, err)
	}
}

// detachProg detaches the link of the program with ID want, as bpftool
// link detach does: the pair's own redirect program, so that vrssd may
// attach its own, or vrssd's, behind its back.
func detachProg(t *testing.T, want ebpf.ProgramID) {
	t.Helper()
	it := new(link.Iterator)
	defer it.Close()
	for it.Next() {
		l := it.Take()
		info, err := l.Info()
		if err == nil && info.Program == want {
			if err := l.Detach(); err != nil {
				t.Fatal(err)
			}
			l.Close()
			return
		}
		l.Close()
	}
	t.Fatalf("no link of program %d: %v", want, it.Err())
}

// afxdpVMMHelper is the unprivileged VMM: it opens the AF_XDP port, sets
// each socket up, says READY, and receives until its standard input
// closes (then 300 ms more), reporting the tags it got per socket.
func afxdpVMMHelper(ctx context.Context, c *client.Client, a helperArgs, res *helperResult) error {
	var na api.NameArgs
	json.Unmarshal(a.Args, &na)
	r, files, err := c.Netns(na.Netns).AFXDPOpen(ctx, na.Name)
	if err != nil {
		return err
	}
	var socks []*xsk.Socket
	defer func() {
		for _, s := range socks {
			s.Close()
		}
	}()
	for i, f := range files {
		fd, err := unix.Dup(int(f.Fd()))
		f.Close()
		if err != nil {
			return err
		}
		s, err := xsk.Setup(fd, xsk.Options{Frames: 256, FrameSize: 2048, FillSize: 128, CompSize: 128, RxSize: 256, Ifindex: r.Ifindex, Queue: r.Port.QueueStart + i, Copy: true})
		if err != nil {
			return fmt.Errorf("queue %d: %w", r.Port.QueueStart+i, err)
		}
		socks = append(socks, s)
	}
	os.Stdout.WriteString("READY\n")
	got, err := receiveUntilStdinCloses(socks, afxdpTag)
	if err != nil {
		return err
	}
	res.Result = mustJSON(map[string]any{"sockets": got})
	return nil
}

// receiveUntilStdinCloses is an owner helper's receive loop: it receives
// on every socket, recording tag(frame) per socket, until the helper's
// standard input closes, and for 300 ms more.
func receiveUntilStdinCloses(socks []*xsk.Socket, tag func([]byte) int) ([][]int, error) {
	done := make(chan struct{})
	go func() {
		io.Copy(io.Discard, os.Stdin)
		close(done)
	}()
	got := make([][]int, len(socks))
	var deadline time.Time
	for deadline.IsZero() || time.Now().Before(deadline) {
		for i, s := range socks {
			if _, err := s.Receive(5*time.Millisecond, func(f []byte) { got[i] = append(got[i], tag(f)) }); err != nil {
				return nil, err
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
	return got, nil
}

// startAFXDPOwner starts afxdpVMMHelper as uid (and gid) owner on the
// port na names and waits until it has set the sockets up; closing stdin
// ends its receiving (afxdpHelperTags).
func startAFXDPOwner(t *testing.T, d *daemon, owner int, na api.NameArgs) (io.WriteCloser, *bufio.Reader) {
	t.Helper()
	cmd := execHelper("afxdpvmm", helperArgs{Socket: d.socket, Args: mustJSON(na)})
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(owner), Gid: uint32(owner)}}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Wait() })
	out := bufio.NewReader(stdout)
	if line, err := out.ReadString('\n'); err != nil || line != "READY\n" {
		rest, _ := io.ReadAll(out)
		t.Fatalf("afxdp helper: %q %s, %v", line, rest, err)
	}
	return stdin, out
}

// afxdpHelperTags closes an owner helper's standard input, which ends its
// receiving, and returns the tags it reports per socket.
func afxdpHelperTags(t *testing.T, stdin io.Closer, out io.Reader, what string) [][]int {
	t.Helper()
	stdin.Close()
	var r helperResult
	if err := json.NewDecoder(out).Decode(&r); err != nil {
		t.Fatal(err)
	}
	if r.Error != nil || r.Fail != "" {
		t.Fatalf("%s: %+v", what, r)
	}
	var got struct{ Sockets [][]int }
	if err := json.Unmarshal(r.Result, &got); err != nil {
		t.Fatal(err)
	}
	return got.Sockets
}

// checkOnQueues holds what the sockets of queues first, first+1, ...
// received to want (tag → the queue it was sent on, allowed): each frame
// on its queue's socket, none else, none missing. It returns how many
// arrived; want is emptied of them.
func checkOnQueues(t *testing.T, sockets [][]int, want map[int]int, first int) int {
	t.Helper()
	received, total := 0, len(want)
	for i, tags := range sockets {
		for _, tag := range tags {
			q, ok := want[tag]
			switch {
			case !ok:
				t.Errorf("socket of queue %d: a frame that should not have come: tag %d", first+i, tag)
			case q != first+i:
				t.Errorf("socket of queue %d: a frame sent on queue %d (tag %d)", first+i, q, tag)
			default:
				delete(want, tag)
				received++
			}
		}
	}
	if len(want) != 0 {
		t.Errorf("%d of %d allowed frames never reached their queue's socket", len(want), total)
	}
	return received
}

// TestAFXDPQuota: a creator (not an admin) may create AF_XDP ports owned
// by itself only, in vrssd's namespace only, and a port's queues count
// against max_queues_per_uid with its TAPs'.
func TestAFXDPQuota(t *testing.T) {
	const creator, other = 4242, 4343
	d := newDaemon(t, fmt.Sprintf(`{"create": {"uids": [%d]}, "max_queues_per_uid": 3}`, creator))
	d.inNS(func() {
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "qvout", NumTxQueues: 4, NumRxQueues: 4}, PeerName: "qvin", PeerNumTxQueues: 4, PeerNumRxQueues: 4}
		if err := netlink.LinkAdd(v); err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"qvin", "qvout"} {
			l, err := netlink.LinkByName(n)
			if err == nil {
				err = netlink.LinkSetUp(l)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	})
	as := func(uid int, op api.Op, args any) helperResult {
		return d.asUser(uid, "call", helperArgs{Op: op, Args: mustJSON(args)})
	}
	if r := as(creator, api.OpCreate, api.CreateArgs{Name: "qt0", Queues: 2}); r.Error != nil {
		t.Fatalf("TAP create: %+v", r)
	}
	pa := api.AFXDPCreateArgs{Name: "qp0", Dev: "qvin", QueueStart: 0, Queues: 2}
	if r := as(creator, api.OpAFXDPCreate, pa); r.Error == nil || r.Error.Code != api.CodeDenied || !strings.Contains(r.Error.Message, "max_queues_per_uid") {
		t.Fatalf("a port over the queue quota: %+v", r)
	}
	pa.Queues = 1
	pa.OwnerUID = ptr(other)
	if r := as(creator, api.OpAFXDPCreate, pa); r.Error == nil || r.Error.Code != api.CodeDenied {
		t.Fatalf("a port for another uid: %+v", r)
	}
	pa.OwnerUID = nil
	pa.Netns = "/proc/1/ns/net"
	if r := as(creator, api.OpAFXDPCreate, pa); r.Error == nil || r.Error.Code != api.CodeDenied {
		t.Fatalf("a port in another namespace: %+v", r)
	}
	pa.Netns = ""
	if r := as(creator, api.OpAFXDPCreate, pa); r.Error != nil {
		t.Fatalf("a port within the quota: %+v", r)
	}
	if r := as(creator, api.OpAFXDPOpen, api.NameArgs{Name: "qp0"}); r.Error != nil || r.FDs != 1 {
		t.Fatalf("open by its creator: %+v", r)
	}
	// The port's queue counts: no room for a TAP of one more.
	if r := as(creator, api.OpCreate, api.CreateArgs{Name: "qt1", Queues: 1}); r.Error == nil || r.Error.Code != api.CodeDenied {
		t.Fatalf("a TAP over the quota the port fills: %+v", r)
	}
	// A TAP may not take the port's name, nor a port a TAP's.
	if r := as(creator, api.OpAFXDPCreate, api.AFXDPCreateArgs{Name: "qt0", Dev: "qvin", Queues: 1}); r.Error == nil || r.Error.Code != api.CodeExists {
		t.Fatalf("a port named as a TAP: %+v", r)
	}
	// Pins lost while vrssd is stopped: the port is installed anew at
	// start, with the saved policy.
	c := d.dial()
	pol := port.Policy{MACs: []port.MAC{{0x52, 0x54, 0, 0, 0, 9}}, Default: port.Allow}
	if _, err := c.PortSet(context.Background(), "qp0", pol); err != nil {
		t.Fatal(err)
	}
	c.Close()
	d.stop()
	pins := filepath.Join(d.bpffsDir, "afxdp", "qp0")
	ents, err := os.ReadDir(pins)
	if err != nil || len(ents) == 0 {
		t.Fatalf("pins of qp0: %v, %v", ents, err)
	}
	for _, e := range ents {
		if err := os.Remove(filepath.Join(pins, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	d.start()
	c = d.dial()
	defer c.Close()
	if show, err := c.AFXDPShow(context.Background(), "qp0"); err != nil || !show.Attached || !show.Policy {
		t.Fatalf("after its pins were lost: %+v, %v", show, err)
	}
	if info, err := c.PortShow(context.Background(), "qp0"); err != nil || info.Policy == nil || info.Policy.MACs[0] != pol.MACs[0] {
		t.Fatalf("policy after its pins were lost: %+v, %v", info, err)
	}
	if !strings.Contains(d.log(), "installing it anew") {
		t.Errorf("vrssd did not say it installed the port anew:\n%s", d.log())
	}
	wantHidden(t, "delete by another uid", as(other, api.OpAFXDPDelete, api.NameArgs{Name: "qp0"}))
	if r := as(creator, api.OpAFXDPDelete, api.NameArgs{Name: "qp0"}); r.Error != nil {
		t.Fatalf("delete by its creator: %+v", r)
	}
	if r := as(creator, api.OpCreate, api.CreateArgs{Name: "qt1", Queues: 1}); r.Error != nil {
		t.Fatalf("a TAP in the room the deleted port left: %+v", r)
	}
}
