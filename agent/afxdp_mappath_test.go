package agent_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/port"
	"github.com/vrss-dev/vrss/xsk"
	"github.com/vrss-dev/vrss/xsk/xsktest"
)

// capNetRaw is CAP_NET_RAW's number: what QEMU's map-path form needs to
// create its own AF_XDP sockets.
const capNetRaw = 13

// mapPathArgs tell the "afxdpmappath" helper what to do.
type mapPathArgs struct {
	Path       string `json:"path"`
	Ifindex    int    `json:"ifindex"`
	QueueStart int    `json:"queue_start"`
	Queues     int    `json:"queues"`
	// Probe only opens the map and creates one socket, reporting each
	// step's errno, and exits.
	Probe bool `json:"probe,omitempty"`
}

// mapPathProbe is what a probing helper found: each step's errno name,
// "" for success.
type mapPathProbe struct {
	ObjGet       string `json:"obj_get"`
	ObjGetRdonly string `json:"obj_get_rdonly"`
	Socket       string `json:"socket"`
	ListDir      string `json:"list_dir"`
	CapEff       string `json:"cap_eff"`
}

// bpfObjGet is bpf(BPF_OBJ_GET) on a pinned path, as libbpf's
// bpf_obj_get (QEMU's map-path form) calls it.
func bpfObjGet(path string, flags uint32) (int, error) {
	p, err := unix.BytePtrFromString(path)
	if err != nil {
		return -1, err
	}
	attr := struct {
		pathname uint64
		fd       uint32
		flags    uint32
		pathFD   int32
		_        uint32
	}{pathname: uint64(uintptr(unsafe.Pointer(p))), flags: flags}
	fd, _, e := unix.Syscall(unix.SYS_BPF, 7 /* BPF_OBJ_GET */, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	runtime.KeepAlive(p)
	if e != 0 {
		return -1, e
	}
	return int(fd), nil
}

// bpfMapUpdate is bpf(BPF_MAP_UPDATE_ELEM) with a u32 key and value, as
// QEMU's bpf_map_update_elem(map_fd, &idx, &xsk_fd, 0).
func bpfMapUpdate(mapFD int, key, value uint32) error {
	attr := struct {
		mapFD uint32
		_     uint32
		key   uint64
		value uint64
		flags uint64
	}{mapFD: uint32(mapFD), key: uint64(uintptr(unsafe.Pointer(&key))), value: uint64(uintptr(unsafe.Pointer(&value)))}
	_, _, e := unix.Syscall(unix.SYS_BPF, 2 /* BPF_MAP_UPDATE_ELEM */, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	runtime.KeepAlive(&key)
	runtime.KeepAlive(&value)
	if e != 0 {
		return e
	}
	return nil
}

func errnoName(err error) string {
	var e syscall.Errno
	if errors.As(err, &e) {
		return unix.ErrnoName(e)
	}
	if err != nil {
		return err.Error()
	}
	return ""
}

// TestAFXDPMapPath proves QEMU 10.1's map-path form without QEMU: root
// creates an AF_XDP port on queues 1-2 of a veth with 4 queues for uid
// 4242 and sets its policy; vrssd pins the port's XSKMAP for the owner
// (mode 0600, in a bpf filesystem of mode 0711). Another uid can neither
// open the pin (read-write or read-only) nor list the directory. uid
// 4242 with CAP_NET_RAW alone does what QEMU does with map-path (net/
// af-xdp.c): it creates its own AF_XDP socket per queue, sets it up and
// binds it to the device's queue, opens the pinned map and puts socket i
// at index QueueStart+i (map-start-index); it then receives every
// allowed frame on its queue's socket, across a SIGKILL and restart of
// vrssd, and denied frames are counted by reason. Without CAP_NET_RAW
// the owner opens the map but cannot create a socket.
func TestAFXDPMapPath(t *testing.T) {
	const owner, other = 4242, 4343
	d := newDaemon(t, "")
	ctx := context.Background()
	var pair *xsktest.Pair
	var snd *xsktest.Sender
	var ifindex int
	d.inNS(func() {
		var err error
		if pair, err = xsktest.NewPair("xm", 4, false); err != nil {
			t.Fatal(err)
		}
		if snd, err = pair.NewSender(4); err != nil {
			t.Fatal(err)
		}
		info, err := pair.Redirect.Prog.Info()
		if err != nil {
			t.Fatal(err)
		}
		id, _ := info.ID()
		detachProg(t, id)
		l, err := netlink.LinkByName("xmin")
		if err != nil {
			t.Fatal(err)
		}
		ifindex = l.Attrs().Index
	})
	t.Cleanup(func() {
		d.inNS(func() {
			snd.Close()
			pair.Close()
		})
	})
	c := d.dial()
	defer c.Close()
	p, err := c.AFXDPCreate(ctx, api.AFXDPCreateArgs{Name: "xm0", Dev: "xmin", QueueStart: 1, Queues: 2, OwnerUID: ptr(owner), OwnerGID: ptr(owner)})
	if err != nil {
		t.Fatal(err)
	}
	pol := port.Policy{
		MACs:    []port.MAC{{0x52, 0x54, 0, 0xab, 0xcd, 0xef}},
		IPv4:    []netip.Prefix{netip.MustParsePrefix("10.9.0.1/32")},
		Default: port.Allow,
	}
	if _, err := c.PortSet(ctx, "xm0", pol); err != nil {
		t.Fatal(err)
	}
	wantDir := filepath.Join(filepath.Dir(d.socket), "xsk")
	if p.MapPath != filepath.Join(wantDir, "xm0") {
		t.Fatalf("map path %q, want %s", p.MapPath, filepath.Join(wantDir, "xm0"))
	}
	checkPin := func(when string) {
		t.Helper()
		var st unix.Stat_t
		if err := unix.Stat(p.MapPath, &st); err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		if st.Uid != owner || st.Gid != owner || st.Mode&0o7777 != 0o600 {
			t.Fatalf("%s: the map's pin is %d:%d mode %04o, want %d:%d 0600", when, st.Uid, st.Gid, st.Mode&0o7777, owner, owner)
		}
		var fs unix.Statfs_t
		if err := unix.Stat(wantDir, &st); err != nil || unix.Statfs(wantDir, &fs) != nil {
			t.Fatalf("%s: %s: %v", when, wantDir, err)
		}
		// bpffs sets the sticky bit on its root.
		if st.Uid != 0 || st.Mode&0o777 != 0o711 || fs.Type != unix.BPF_FS_MAGIC {
			t.Fatalf("%s: %s is uid %d mode %04o type %#x, want root's bpf filesystem with mode 0711", when, wantDir, st.Uid, st.Mode&0o7777, fs.Type)
		}
	}
	checkPin("after create")
	if show, err := c.AFXDPShow(ctx, "xm0"); err != nil || show.MapPath != p.MapPath {
		t.Fatalf("show: %+v, %v", show, err)
	}
	args := mapPathArgs{Path: p.MapPath, Ifindex: ifindex, QueueStart: p.QueueStart, Queues: p.Queues}

	// Another uid, with CAP_NET_RAW too, as an attacker would try: it
	// may create sockets but not open the map, nor list its directory.
	probe := func(uid int, caps []uintptr) mapPathProbe {
		t.Helper()
		a := args
		a.Probe = true
		cmd := execHelper("afxdpmappath", helperArgs{Args: mustJSON(a)})
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}, AmbientCaps: caps}
		var out []byte
		var err error
		d.inNS(func() { out, err = cmd.Output() })
		if err != nil {
			t.Fatalf("probe as uid %d: %v\n%s", uid, err, out)
		}
		var r helperResult
		var pr mapPathProbe
		if err := json.Unmarshal(out, &r); err != nil || r.Fail != "" || json.Unmarshal(r.Result, &pr) != nil {
			t.Fatalf("probe as uid %d: %s, %v", uid, out, err)
		}
		return pr
	}
	if pr := probe(other, []uintptr{capNetRaw}); pr.ObjGet != "EACCES" || pr.ObjGetRdonly != "EACCES" || pr.ListDir != "EACCES" || pr.Socket != "" {
		t.Fatalf("uid %d with CAP_NET_RAW: %+v; want EACCES opening the map read-write and read-only and listing the directory (and a socket of its own)", other, pr)
	} else {
		t.Logf("uid %d (CAP_NET_RAW): open %s: %s (read-only: %s), list %s: %s", other, p.MapPath, pr.ObjGet, pr.ObjGetRdonly, wantDir, pr.ListDir)
	}
	// The owner without CAP_NET_RAW: the map opens, a socket does not.
	if pr := probe(owner, nil); pr.ObjGet != "" || pr.Socket != "EPERM" {
		t.Fatalf("uid %d without capabilities: %+v; want the map opened and EPERM for socket(AF_XDP)", owner, pr)
	} else {
		t.Logf("uid %d (no capabilities): open the map: ok, socket(AF_XDP): %s", owner, pr.Socket)
	}

	// The owner as QEMU: its own sockets, in the map.
	cmd := execHelper("afxdpmappath", helperArgs{Args: mustJSON(args)})
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: owner, Gid: owner}, AmbientCaps: []uintptr{capNetRaw}}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	// Its sockets are made in the device's namespace, as QEMU's would be.
	d.inNS(func() { err = cmd.Start() })
	if err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	out := bufio.NewReader(stdout)
	line, err := out.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "READY ") {
		rest, _ := io.ReadAll(out)
		t.Fatalf("map-path helper: %q %s, %v", line, rest, err)
	}
	capEff, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimPrefix(line, "READY ")), 16, 64)
	if capEff != 1<<capNetRaw {
		t.Fatalf("the owner's helper has CapEff %#x, want CAP_NET_RAW alone", capEff)
	}

	const perQueue = 50
	want := map[int]int{}
	send := func(round int) {
		d.inNS(func() {
			for q := range 4 {
				var fs [][]byte
				for i := range perQueue {
					f := afxdpFrame(q, round*perQueue+i, "10.9.0.1")
					fs = append(fs, f)
					if q == 1 || q == 2 {
						want[afxdpTag(f)] = q
					}
				}
				if q == 1 || q == 2 {
					toOther := afxdpFrame(q, 900+round, "10.9.0.1") // to another MAC
					toOther[5] ^= 1
					fs = append(fs, toOther, afxdpFrame(q, 950+round, "10.9.0.2"))
				}
				if err := snd.Send(q, fs); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
	stats0, err := c.PortStats(ctx, "xm0")
	if err != nil {
		t.Fatal(err)
	}
	send(0)
	time.Sleep(300 * time.Millisecond)
	d.kill()
	send(1)
	d.start()
	c2 := d.dial()
	defer c2.Close()
	checkPin("after vrssd's restart")
	send(2)
	time.Sleep(300 * time.Millisecond)
	received := checkOnQueues(t, afxdpHelperTags(t, stdin, out, "map-path helper"), want, 1)
	st, err := c2.PortStats(ctx, "xm0")
	if err != nil {
		t.Fatal(err)
	}
	if d := st.Reasons[port.DstMAC] - stats0.Reasons[port.DstMAC]; d != 6 {
		t.Errorf("dst_mac counted %d, want 6", d)
	}
	if d := st.Reasons[port.DstIPv4] - stats0.Reasons[port.DstIPv4]; d != 6 {
		t.Errorf("dst_ipv4 counted %d, want 6", d)
	}
	if d := st.XSKRedirected - stats0.XSKRedirected; d != 6*perQueue {
		t.Errorf("xsk_redirected %d, want %d", d, 6*perQueue)
	}
	t.Logf("uid %d (CAP_NET_RAW alone) received %d of %d allowed frames on its own sockets, put into the pinned XSKMAP at map-start-index %d, each on its queue's (vrssd SIGKILLed and restarted between rounds); denied dst_mac %d, dst_ipv4 %d",
		owner, received, 6*perQueue, p.QueueStart, st.Reasons[port.DstMAC]-stats0.Reasons[port.DstMAC], st.Reasons[port.DstIPv4]-stats0.Reasons[port.DstIPv4])

	if err := c2.AFXDPDelete(ctx, "xm0"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(p.MapPath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the map's pin after delete: %v", err)
	}
}

// afxdpMapPathHelper is QEMU's map-path form (net/af-xdp.c in QEMU 10.1)
// as uid 4242 with CAP_NET_RAW does it: per queue, a socket of its own,
// set up and bound to the queue, then put into the pinned XSKMAP at
// QueueStart+i. It prints READY and its CapEff, receives until its
// standard input closes, and reports the frames' tags per socket. With
// Probe, it reports what it may do instead.
func afxdpMapPathHelper(a helperArgs, res *helperResult) error {
	var m mapPathArgs
	if err := json.Unmarshal(a.Args, &m); err != nil {
		return err
	}
	capEff := ""
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
				capEff = strings.TrimSpace(v)
			}
		}
	}
	if m.Probe {
		var pr mapPathProbe
		pr.CapEff = capEff
		fd, err := bpfObjGet(m.Path, 0)
		pr.ObjGet = errnoName(err)
		if err == nil {
			unix.Close(fd)
		}
		fd, err = bpfObjGet(m.Path, unix.BPF_F_RDONLY)
		pr.ObjGetRdonly = errnoName(err)
		if err == nil {
			unix.Close(fd)
		}
		_, err = os.ReadDir(filepath.Dir(m.Path))
		pr.ListDir = errnoName(err)
		f, err := xsk.NewUnbound()
		pr.Socket = errnoName(err)
		if err == nil {
			f.Close()
		}
		res.Result = mustJSON(pr)
		return nil
	}
	mapFD, err := bpfObjGet(m.Path, 0)
	if err != nil {
		return fmt.Errorf("open the pinned map %s: %w", m.Path, err)
	}
	defer unix.Close(mapFD)
	var socks []*xsk.Socket
	defer func() {
		for _, s := range socks {
			s.Close()
		}
	}()
	for i := range m.Queues {
		q := m.QueueStart + i
		f, err := xsk.NewUnbound()
		if err != nil {
			return fmt.Errorf("queue %d: %w", q, err)
		}
		fd, err := unix.Dup(int(f.Fd()))
		f.Close()
		if err != nil {
			return err
		}
		s, err := xsk.Setup(fd, xsk.Options{Frames: 256, FrameSize: 2048, FillSize: 128, CompSize: 128, RxSize: 256, Ifindex: m.Ifindex, Queue: q, Copy: true})
		if err != nil {
			return fmt.Errorf("queue %d: %w", q, err)
		}
		socks = append(socks, s)
		if err := bpfMapUpdate(mapFD, uint32(q), uint32(s.Fd())); err != nil {
			return fmt.Errorf("put the socket of queue %d into %s at %d: %w", q, m.Path, q, err)
		}
	}
	fmt.Fprintf(os.Stdout, "READY %s\n", capEff)
	got, err := receiveUntilStdinCloses(socks, afxdpTag)
	if err != nil {
		return err
	}
	res.Result = mustJSON(map[string]any{"sockets": got})
	return nil
}
