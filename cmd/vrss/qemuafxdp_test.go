package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/internal/netnstest"
)

// The memlock check against given limits and capabilities: 32 MiB per
// queue, or CAP_IPC_LOCK that QEMU keeps across exec, and the refusal in
// one line naming the limit, the need and the ways to grant it.
func TestMemlockCheck(t *testing.T) {
	const mib = 1 << 20
	ipcLock := uint64(1) << capIPCLock
	for _, c := range []struct {
		m      memlock
		queues int
		ok     bool
	}{
		{memlock{Soft: 64 * mib, EUID: 4242}, 2, true},
		{memlock{Soft: 64*mib - 1, EUID: 4242}, 2, false},
		{memlock{Soft: unix.RLIM_INFINITY, EUID: 4242}, 256, true},
		{memlock{Soft: 8 * mib, EUID: 4242, CapAmb: ipcLock}, 4, true},
		{memlock{Soft: 8 * mib, EUID: 4242, CapEff: ipcLock}, 4, false}, // lost at exec
		{memlock{Soft: 8 * mib, EUID: 0, CapEff: ipcLock}, 4, true},
		{memlock{Soft: 8 * mib, EUID: 0}, 4, false}, // root without CAP_IPC_LOCK
		{memlock{Soft: 8 * mib, EUID: 4242, CapAmb: ^ipcLock}, 1, false},
	} {
		if err := c.m.check("vm1", c.queues); (err == nil) != c.ok {
			t.Errorf("%+v, %d queues: %v", c.m, c.queues, err)
		}
	}
	err := memlock{Soft: 8 * mib, EUID: 4242}.check("vm1", 2)
	want := "QEMU needs 64 MiB of locked memory for the 2 queues of AF_XDP port vm1 (32 MiB of UMEM each) but RLIMIT_MEMLOCK is 8 MiB and it would not have CAP_IPC_LOCK: raise the limit (systemd LimitMEMLOCK=64M, or ulimit -l 65536) or grant CAP_IPC_LOCK as an ambient capability (systemd AmbientCapabilities=CAP_IPC_LOCK)"
	if err == nil || err.Error() != want {
		t.Errorf("refusal:\ngot  %v\nwant %s", err, want)
	}
	if err := (memlock{Soft: 8<<20 + 4096}).check("vm1", 1); err == nil || !strings.Contains(err.Error(), "RLIMIT_MEMLOCK is 8196 KiB") {
		t.Errorf("odd limit: %v", err)
	}
	if _, err := currentMemlock(); err != nil {
		t.Error(err)
	}
}

// The map-path form's check: CAP_NET_RAW that QEMU keeps across exec,
// the memlock allowance and access to the pinned map, what lacks named in
// one line.
func TestMapPathCheck(t *testing.T) {
	const mib = 1 << 20
	caps := uint64(1)<<capNetRaw | uint64(1)<<capIPCLock
	p := api.AFXDPPort{Name: "vm1", Queues: 2, OwnerUID: 4242, MapPath: "/run/vrss/xsk/vm1"}
	for _, c := range []struct {
		m    memlock
		open error
		ok   bool
	}{
		{memlock{Soft: 8 * mib, EUID: 4242, CapAmb: caps}, nil, true},
		{memlock{Soft: 64 * mib, EUID: 4242, CapAmb: 1 << capNetRaw}, nil, true},
		{memlock{Soft: 8 * mib, EUID: 0, CapEff: ^uint64(0)}, nil, true},
		{memlock{Soft: 8 * mib, EUID: 4242, CapEff: caps}, nil, false}, // lost at exec
		{memlock{Soft: 8 * mib, EUID: 4242, CapAmb: 1 << capIPCLock}, nil, false},
		{memlock{Soft: 8 * mib, EUID: 4242, CapAmb: caps}, unix.EACCES, false},
	} {
		if err := c.m.mapPathCheck(p, c.open); (err == nil) != c.ok {
			t.Errorf("%+v, open %v: %v", c.m, c.open, err)
		}
	}
	err := memlock{Soft: 8 * mib, EUID: 4343}.mapPathCheck(p, unix.EACCES)
	want := "QEMU's map-path form on AF_XDP port vm1 would lack CAP_NET_RAW to create its AF_XDP sockets (grant it as an ambient capability: systemd AmbientCapabilities=CAP_NET_RAW); and 64 MiB of locked memory for their UMEM, or CAP_IPC_LOCK (RLIMIT_MEMLOCK is 8 MiB: systemd LimitMEMLOCK=64M or AmbientCapabilities=CAP_IPC_LOCK); and access to the XSKMAP pinned at /run/vrss/xsk/vm1 (permission denied; only the port's owner, uid 4242, may open it: run QEMU as that user)"
	if err == nil || err.Error() != want {
		t.Errorf("refusal:\ngot  %v\nwant %s", err, want)
	}
}

// The flags: a TAP or a port, not both; no --ebpf-rss with a port.
func TestQEMUAFXDPInput(t *testing.T) {
	for _, verb := range []string{"args", "exec"} {
		tail := []string{}
		if verb == "exec" {
			tail = []string{"--", "qemu-system-x86_64"}
		}
		with := func(a ...string) []string {
			return append(append(append([]string{"qemu", verb}, a...), noDaemon(t)...), tail...)
		}
		wantInputError(t, "want --tap NAME or --afxdp NAME, one of them", with("--tap", "t", "--afxdp", "p")...)
		wantInputError(t, "want --tap NAME or --afxdp NAME, one of them", with()...)
		wantInputError(t, "--ebpf-rss is for a TAP", with("--afxdp", "p", "--ebpf-rss")...)
		wantInputError(t, "--map-path is for an AF_XDP port", with("--tap", "t", "--map-path")...)
		wantReachesDaemon(t, with("--afxdp", "p", "--netns", "/run/netns/x")...)
	}
}

// The stand-in for QEMU that TestQEMUExecAFXDP execs through 'vrss qemu
// exec': it checks that descriptors 3 and 4 are AF_XDP sockets and no
// other is, and prints its arguments.
func TestQEMUStandIn(t *testing.T) {
	mode := os.Getenv("VRSS_QEMU_STANDIN")
	if mode != "1" && mode != "mappath" {
		t.Skip("run by TestQEMUExecAFXDP")
	}
	if mode == "mappath" {
		// QEMU's map-path form: no socket inherited; it opens the pinned
		// map and creates its own sockets.
		for fd := 3; fd < 64; fd++ {
			if dom, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN); err == nil && dom == unix.AF_XDP {
				fmt.Printf("fd %d: an inherited AF_XDP socket\n", fd)
				os.Exit(3)
			}
		}
		for _, a := range os.Args {
			for _, kv := range strings.Split(a, ",") {
				if path, ok := strings.CutPrefix(kv, "map-path="); ok {
					if err := openPinned(path); err != nil {
						fmt.Printf("open %s: %v\n", path, err)
						os.Exit(3)
					}
				}
			}
		}
		fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW, 0)
		if err != nil {
			fmt.Printf("socket(AF_XDP): %v\n", err)
			os.Exit(3)
		}
		unix.Close(fd)
		fmt.Printf("argv %s\n", strings.Join(os.Args[1:], " "))
		os.Exit(0)
	}
	for fd := 3; fd <= 4; fd++ {
		link, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
		dom, derr := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
		if err != nil || !strings.HasPrefix(link, "socket:") || derr != nil || dom != unix.AF_XDP {
			fmt.Printf("fd %d: %q %v, domain %d %v\n", fd, link, err, dom, derr)
			os.Exit(3)
		}
	}
	for fd := 5; fd < 64; fd++ { // the Go runtime has files of its own
		if dom, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN); err == nil && dom == unix.AF_XDP {
			fmt.Printf("fd %d: a third AF_XDP socket\n", fd)
			os.Exit(3)
		}
	}
	fmt.Printf("argv %s\n", strings.Join(os.Args[1:], " "))
	os.Exit(0)
}

// The vrss binary for TestQEMUExecAFXDP: this test binary runs run() with
// the arguments after "--" and exits with its status (an exec replaces it).
func TestVRSSHelper(t *testing.T) {
	if os.Getenv("VRSS_HELPER") != "1" {
		t.Skip("run by TestQEMUExecAFXDP")
	}
	args := os.Args
	for i, a := range args {
		if a == "--" {
			args = args[i+1:]
			break
		}
	}
	os.Exit(run(args, os.Stdout, os.Stderr))
}

// 'vrss qemu args --afxdp' and 'vrss qemu exec --afxdp' against vrssd, on a
// veth with 4 queues in a namespace: exec hands a stand-in for QEMU the
// port's two sockets at 3 and 4, AF_XDP sockets, and the arguments args
// prints; a limit too low for them is refused before the port is opened.
func TestQEMUExecAFXDP(t *testing.T) {
	sock := startDaemon(t)
	ok, fails := daemonCLI(t, sock)
	ns := netnstest.Named(t)
	queueVeth(t, ns, "qxin", "qxout")
	ok("afxdp", "create", "qx0", "--dev", "qxin", "--queue-start", "2", "--queues", "2", "--netns", ns)
	const want = "-netdev af-xdp,id=net7,ifname=qxin,inhibit=on,sock-fds=3:4,queues=2,start-queue=2,force-copy=on -device virtio-net-pci,netdev=net7,mq=on,vectors=6,mac=52:54:00:12:34:56"
	if out := ok("qemu", "args", "--afxdp", "qx0", "--netns", ns, "--id", "net7", "--mac", "52:54:00:12:34:56"); out != want+"\n" {
		t.Errorf("qemu args:\ngot  %q\nwant %q", out, want)
	}
	if out := ok("qemu", "args", "--afxdp", "qx0", "--netns", ns, "--first-fd", "10", "--force-copy=false"); !strings.HasPrefix(out, "-netdev af-xdp,id=vrss0,ifname=qxin,inhibit=on,sock-fds=10:11,queues=2,start-queue=2 -device") {
		t.Errorf("qemu args --first-fd 10: %q", out)
	}
	fails(1, "not_found", "qemu", "args", "--afxdp", "qx0") // not in vrssd's namespace

	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// prlimit and caps: as uid 4242 with that limit and with caps as its
	// only (ambient) capabilities.
	mapPath := false
	vrssExec := func(prlimit, caps string) (string, error) {
		args := []string{self, "-test.run=^TestVRSSHelper$", "--", "qemu", "exec", "--afxdp", "qx0", "--netns", ns, "--id", "net7", "--mac", "52:54:00:12:34:56", "--socket", sock,
			"--", self, "-test.run=^TestQEMUStandIn$", "stand-in"}
		standIn := "1"
		if mapPath {
			args = append(args[:5], append([]string{"--map-path"}, args[5:]...)...)
			standIn = "mappath"
		}
		if prlimit != "" {
			set, plus := "-all", ""
			if caps != "" {
				plus = "+" + strings.ReplaceAll(caps, ",", ",+")
				set += "," + plus
			}
			priv := []string{"prlimit", "--memlock=" + prlimit, "--", "setpriv", "--reuid=4242", "--regid=4242", "--clear-groups", "--inh-caps=" + set, "--bounding-set=" + set}
			if caps != "" {
				priv = append(priv, "--ambient-caps="+plus)
			}
			args = append(append(priv, "--"), args...)
		}
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = append(os.Environ(), "VRSS_HELPER=1", "VRSS_QEMU_STANDIN="+standIn)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := vrssExec("", "")
	if err != nil || !strings.Contains(out, " stand-in "+want+"\n") {
		t.Errorf("qemu exec --afxdp: %v\n%s", err, out)
	}
	// The owner, uid 4242, with 4 MiB where 64 are needed: refused, and
	// with CAP_IPC_LOCK as an ambient capability instead, QEMU runs. (A
	// limit of 64 MiB would do too, but raising the hard limit takes
	// CAP_SYS_RESOURCE, which this test may not have.)
	ok("afxdp", "delete", "qx0", "--netns", ns)
	ok("afxdp", "create", "qx0", "--dev", "qxin", "--queue-start", "2", "--queues", "2", "--owner", "4242", "--group", "4242", "--netns", ns)
	for _, tool := range []string{"setpriv", "prlimit"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s for the unprivileged half", tool)
		}
	}
	// uid 4242 must reach the socket and run this test binary.
	dir := filepath.Dir(sock)
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(self)
	if err == nil {
		self = filepath.Join(dir, "vrss.test")
		err = os.WriteFile(self, b, 0o755)
	}
	if err != nil {
		t.Fatal(err)
	}
	limit := strconv.Itoa(4 << 20)
	out, err = vrssExec(limit, "")
	if err == nil || !strings.HasPrefix(out, "vrss: qemu: QEMU needs 64 MiB of locked memory for the 2 queues of AF_XDP port qx0 (32 MiB of UMEM each) but RLIMIT_MEMLOCK is 4 MiB") || strings.Count(out, "\n") != 1 {
		t.Errorf("with 4 MiB: %v\n%s", err, out)
	}
	out, err = vrssExec(limit, "ipc_lock")
	if err != nil || !strings.Contains(out, " stand-in "+want+"\n") {
		t.Errorf("as uid 4242 with ambient CAP_IPC_LOCK: %v\n%s", err, out)
	}

	// The map-path form (QEMU 10.1): the pin of the port's XSKMAP that
	// vrssd made for uid 4242, at index 2 for queue 2. QEMU inherits no
	// socket; the owner's needs CAP_NET_RAW as well, and is refused in
	// one line without it (TestAFXDPMapPath in agent shows that another
	// uid cannot open the map).
	// Its name is the port's key (name and namespace), as its pin
	// directory's.
	pins, _ := filepath.Glob(filepath.Join(dir, "xsk", "qx0*"))
	if len(pins) != 1 {
		t.Fatalf("the map pins in %s: %v", filepath.Join(dir, "xsk"), pins)
	}
	pin := pins[0]
	const wantMap = "-netdev af-xdp,id=net7,ifname=qxin,inhibit=on,map-path=%s,map-start-index=2,queues=2,start-queue=2,force-copy=on -device virtio-net-pci,netdev=net7,mq=on,vectors=6,mac=52:54:00:12:34:56"
	if out := ok("qemu", "args", "--afxdp", "qx0", "--map-path", "--netns", ns, "--id", "net7", "--mac", "52:54:00:12:34:56"); out != fmt.Sprintf(wantMap, pin)+"\n" {
		t.Errorf("qemu args --map-path:\ngot  %q\nwant %q", out, fmt.Sprintf(wantMap, pin))
	}
	mapPath = true
	out, err = vrssExec(limit, "ipc_lock")
	if err == nil || out != "vrss: qemu: QEMU's map-path form on AF_XDP port qx0 would lack CAP_NET_RAW to create its AF_XDP sockets (grant it as an ambient capability: systemd AmbientCapabilities=CAP_NET_RAW)\n" {
		t.Errorf("map-path as uid 4242 with CAP_IPC_LOCK alone: %v\n%s", err, out)
	}
	out, err = vrssExec(limit, "ipc_lock,net_raw")
	if err != nil || !strings.Contains(out, " stand-in "+fmt.Sprintf(wantMap, pin)+"\n") {
		t.Errorf("map-path as uid 4242 with ambient CAP_IPC_LOCK and CAP_NET_RAW: %v\n%s", err, out)
	}
	if err := openPinned(pin); err != nil {
		t.Errorf("root opening %s: %v", pin, err)
	}
}

// queueVeth makes a veth pair with 4 queues each way in namespace ns, both
// ends up.
func queueVeth(t *testing.T, ns, in, out string) {
	t.Helper()
	err := netnstest.In(ns, func() error {
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: out, NumTxQueues: 4, NumRxQueues: 4}, PeerName: in, PeerNumTxQueues: 4, PeerNumRxQueues: 4}
		if err := netlink.LinkAdd(v); err != nil {
			return err
		}
		for _, n := range []string{in, out} {
			l, err := netlink.LinkByName(n)
			if err == nil {
				err = netlink.LinkSetUp(l)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
