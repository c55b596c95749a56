package main_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/agent/client"
	"github.com/vrss-dev/vrss/internal/frame"
	"github.com/vrss-dev/vrss/internal/inject"
	"github.com/vrss-dev/vrss/internal/netnstest"
	"github.com/vrss-dev/vrss/internal/privtest"
	"github.com/vrss-dev/vrss/rss"
	"github.com/vrss-dev/vrss/tap"
)

// The tests drive the real plugin binary through libcni, as a container
// runtime does, against a real vrssd process (in a network namespace of
// its own) and real pod namespaces (/var/run/netns/NAME).

var binDir string // vrss-cni, prevplugin (chained before it) and vrssd

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

var buildOnce = sync.OnceValue(func() error {
	var err error
	if binDir, err = os.MkdirTemp("", "vrss-cni-test-bin-"); err != nil {
		return err
	}
	for name, pkg := range map[string]string{
		"vrss-cni":   ".",
		"prevplugin": "./testdata/prevplugin",
		"vrssd":      "github.com/vrss-dev/vrss/cmd/vrssd",
	} {
		if out, err := exec.Command("go", "build", "-o", filepath.Join(binDir, name), pkg).CombinedOutput(); err != nil {
			return fmt.Errorf("build %s: %v\n%s", name, err, out)
		}
	}
	return nil
})

// daemon is one vrssd process, and what a restarted one reuses.
type daemon struct {
	t                          *testing.T
	dir, ns                    string
	socket, stateDir, bpffsDir string
	cmd                        *exec.Cmd
	log                        *os.File // vrssd's output, all its runs
	exited                     chan struct{}
}

// newDaemon builds the binaries on first use and starts vrssd.
func newDaemon(t *testing.T) *daemon {
	t.Helper()
	for _, what := range []string{"root", "tap", "bpf", "netns"} {
		privtest.Require(t, what)
	}
	if err := buildOnce(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	d := &daemon{
		t: t, dir: dir, ns: netnstest.Named(t),
		socket:   filepath.Join(dir, "run", "vrss.sock"),
		stateDir: filepath.Join(dir, "state"),
		bpffsDir: filepath.Join(dir, "bpf"),
	}
	var err error
	if d.log, err = os.Create(filepath.Join(dir, "vrssd.log")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.kill()
		if t.Failed() {
			t.Logf("vrssd log:\n%s", d.output())
		}
		d.log.Close()
		unix.Unmount(d.bpffsDir, unix.MNT_DETACH)
	})
	d.start()
	return d
}

func (d *daemon) start() {
	d.t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "vrssd"), "--socket", d.socket, "--state-dir", d.stateDir, "--bpffs-dir", d.bpffsDir, "--log-level", "debug")
	cmd.Stdout, cmd.Stderr = d.log, d.log
	// A child starts in the namespace of the thread that forks it.
	if err := netnstest.In(d.ns, cmd.Start); err != nil {
		d.t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	d.cmd, d.exited = cmd, exited
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c, err := client.Dial(context.Background(), d.socket)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-exited:
			d.t.Fatalf("vrssd exited at start:\n%s", d.output())
		default:
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("vrssd does not answer: %v", err)
		}
	}
}

// output is what vrssd has written so far.
func (d *daemon) output() string {
	b, _ := os.ReadFile(d.log.Name())
	return string(b)
}

// stop stops vrssd with SIGTERM.
func (d *daemon) stop() {
	d.t.Helper()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(20 * time.Second):
		d.t.Fatal("vrssd did not stop")
	}
}

func (d *daemon) kill() {
	if d.cmd == nil {
		return
	}
	select {
	case <-d.exited:
	default:
		d.cmd.Process.Kill()
		<-d.exited
	}
}

// taps lists the TAPs vrssd manages.
func (d *daemon) taps() []api.TAP {
	d.t.Helper()
	c, err := client.Dial(context.Background(), d.socket)
	if err != nil {
		d.t.Fatal(err)
	}
	defer c.Close()
	taps, err := c.List(context.Background())
	if err != nil {
		d.t.Fatal(err)
	}
	return taps
}

// list is a network configuration list of plugins (JSON objects).
func list(t *testing.T, plugins ...string) *libcni.NetworkConfigList {
	t.Helper()
	l, err := libcni.ConfListFromBytes([]byte(`{"cniVersion": "1.0.0", "name": "vrss-test", "plugins": [` + strings.Join(plugins, ",") + `]}`))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// plugin is vrss-cni's configuration with d's socket and extra fields.
func (d *daemon) plugin(extra string) string {
	if extra != "" {
		extra = ", " + extra
	}
	return fmt.Sprintf(`{"type": "vrss-cni", "socket": %q%s}`, d.socket, extra)
}

// setup starts vrssd, and makes a pod namespace and a runtime with a
// cache of its own.
func setup(t *testing.T) (*daemon, string, *libcni.CNIConfig) {
	d := newDaemon(t)
	return d, netnstest.Named(t), libcni.NewCNIConfigWithCacheDir([]string{binDir}, t.TempDir(), nil)
}

// add runs ADD and returns its result as the runtime got it, in spec
// 1.1.0's form, and as JSON.
func add(t *testing.T, cni *libcni.CNIConfig, l *libcni.NetworkConfigList, rt *libcni.RuntimeConf) (types.Result, *types100.Result, []byte) {
	t.Helper()
	r, err := cni.AddNetworkList(context.Background(), l, rt)
	if err != nil {
		t.Fatal(err)
	}
	res, err := types100.GetResult(r)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(r)
	t.Logf("ADD result: %s", out)
	return r, res, out
}

// code is the CNI error code of err, 0 for none.
func code(t *testing.T, err error) uint {
	t.Helper()
	if err == nil {
		return 0
	}
	var te *types.Error
	if !errors.As(err, &te) {
		t.Fatalf("not a CNI error: %v", err)
	}
	return te.Code
}

// TestAddCheckDel: ADD makes the TAP in the pod's namespace, steered, with
// the configured queues, owner and RSS configuration, and returns it as
// the result's interface; CHECK passes; DEL removes it, and a second DEL
// succeeds.
func TestAddCheckDel(t *testing.T) {
	d, pod, cni := setup(t)
	ctx := context.Background()
	l := list(t, d.plugin(`"queues": 4, "rss": {"hash_types": "ipv4,tcpv4,udpv4", "indirection_table": [3, 2, 1, 0]}`))
	rt := &libcni.RuntimeConf{ContainerID: "pod-a", NetNS: pod, IfName: "tap0", Args: [][2]string{{"K8S_POD_NAME", "vm-a"}}}
	r, res, out := add(t, cni, l, rt)
	if r.Version() != "1.0.0" || len(res.Interfaces) != 1 || res.Interfaces[0].Name != "tap0" || res.Interfaces[0].Sandbox != pod || res.Interfaces[0].Mac == "" {
		t.Fatalf("ADD result: %s", out)
	}
	tt := netnstest.Tuntap(t, pod, "tap0")
	if tt == nil || tt.Owner != 107 || tt.Group != 107 || tt.Flags&netlink.TUNTAP_MULTI_QUEUE == 0 {
		t.Fatalf("tap0 in the pod: %+v", tt)
	}
	taps := d.taps()
	if len(taps) != 1 || taps[0].Netns != pod || taps[0].Queues != 4 || !taps[0].Steering {
		t.Fatalf("vrssd's TAPs: %+v", taps)
	}
	if err := cni.CheckNetworkList(ctx, l, rt); err != nil {
		t.Fatalf("CHECK: %v", err)
	}
	// CHECK notices a TAP that is not as configured.
	c, err := client.Dial(ctx, d.socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Netns(pod).Detach(ctx, "tap0"); err != nil {
		t.Fatal(err)
	}
	if err := cni.CheckNetworkList(ctx, l, rt); code(t, err) != 101 {
		t.Fatalf("CHECK of a detached TAP: %v, want code 101", err)
	}
	if _, err := c.Netns(pod).Attach(ctx, "tap0"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Netns(pod).SetRSS(ctx, "tap0", rss.Config{HashTypes: rss.AllHashTypes, Key: rss.DefaultKey, Table: []uint16{0}}); err != nil {
		t.Fatal(err)
	}
	if err := cni.CheckNetworkList(ctx, l, rt); code(t, err) != 101 {
		t.Fatalf("CHECK of a TAP with another configuration: %v, want code 101", err)
	}
	if err := cni.DelNetworkList(ctx, l, rt); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	if netnstest.Tuntap(t, pod, "tap0") != nil || len(d.taps()) != 0 {
		t.Fatal("the TAP outlived DEL")
	}
	if err := cni.DelNetworkList(ctx, l, rt); err != nil {
		t.Fatalf("second DEL: %v", err)
	}
}

// TestRestart: a TAP added before vrssd restarts passes CHECK after, and
// DEL removes it; a DEL while vrssd is down asks to be tried again.
func TestRestart(t *testing.T) {
	d, pod, cni := setup(t)
	ctx := context.Background()
	l := list(t, d.plugin(`"queues": 2, "owner": 1000, "group": 1000`))
	rt := &libcni.RuntimeConf{ContainerID: "pod-b", NetNS: pod, IfName: "tap0"}
	if _, err := cni.AddNetworkList(ctx, l, rt); err != nil {
		t.Fatal(err)
	}
	d.stop()
	if err := cni.DelNetworkList(ctx, l, rt); code(t, err) != types.ErrTryAgainLater {
		t.Fatalf("DEL while vrssd is down: %v, want code %d", err, types.ErrTryAgainLater)
	}
	if err := cni.CheckNetworkList(ctx, l, rt); code(t, err) != types.ErrTryAgainLater {
		t.Fatalf("CHECK while vrssd is down: %v, want code %d", err, types.ErrTryAgainLater)
	}
	d.start()
	if err := cni.CheckNetworkList(ctx, l, rt); err != nil {
		t.Fatalf("CHECK after the restart: %v", err)
	}
	if err := cni.DelNetworkList(ctx, l, rt); err != nil {
		t.Fatalf("DEL after the restart: %v", err)
	}
	if netnstest.Tuntap(t, pod, "tap0") != nil || len(d.taps()) != 0 {
		t.Fatal("the TAP outlived DEL")
	}
}

// TestDelGone: DEL succeeds for a TAP deleted behind the plugin's back,
// for a namespace already gone (vrssd then forgets the TAP by itself),
// and with no namespace at all.
func TestDelGone(t *testing.T) {
	d, pod1, cni := setup(t)
	pod2 := netnstest.Named(t)
	ctx := context.Background()
	l := list(t, d.plugin(`"queues": 2`))
	rt1 := &libcni.RuntimeConf{ContainerID: "pod-c1", NetNS: pod1, IfName: "tap0"}
	rt2 := &libcni.RuntimeConf{ContainerID: "pod-c2", NetNS: pod2, IfName: "tap0"}
	for _, rt := range []*libcni.RuntimeConf{rt1, rt2} {
		if _, err := cni.AddNetworkList(ctx, l, rt); err != nil {
			t.Fatal(err)
		}
	}
	c, err := client.Dial(ctx, d.socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Netns(pod1).Delete(ctx, "tap0"); err != nil {
		t.Fatal(err)
	}
	if err := cni.DelNetworkList(ctx, l, rt1); err != nil {
		t.Fatalf("DEL of a TAP already deleted: %v", err)
	}
	if err := netnstest.Delete(pod2); err != nil {
		t.Fatal(err)
	}
	if err := cni.DelNetworkList(ctx, l, rt2); err != nil {
		t.Fatalf("DEL in a namespace already gone: %v", err)
	}
	for deadline := time.Now().Add(5 * time.Second); len(d.taps()) != 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("vrssd still manages %+v", d.taps())
		}
	}
	rt2.NetNS = ""
	if err := cni.DelNetworkList(ctx, l, rt2); err != nil {
		t.Fatalf("DEL without a namespace: %v", err)
	}
}

// TestChained: after a plugin that made the pod's main interface, ADD
// passes its result on with the TAP appended; CHECK and DEL work.
func TestChained(t *testing.T) {
	d, pod, cni := setup(t)
	ctx := context.Background()
	l := list(t, `{"type": "prevplugin"}`, d.plugin(`"queues": 2`))
	rt := &libcni.RuntimeConf{ContainerID: "pod-d", NetNS: pod, IfName: "tap1"}
	_, res, out := add(t, cni, l, rt)
	if len(res.Interfaces) != 2 || res.Interfaces[0].Name != "eth0" || res.Interfaces[1].Name != "tap1" || res.Interfaces[1].Sandbox != pod ||
		len(res.IPs) != 1 || res.IPs[0].Address.String() != "10.9.0.2/24" || *res.IPs[0].Interface != 0 {
		t.Fatalf("chained ADD result: %s", out)
	}
	if err := cni.CheckNetworkList(ctx, l, rt); err != nil {
		t.Fatalf("CHECK: %v", err)
	}
	if err := cni.DelNetworkList(ctx, l, rt); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	if netnstest.Tuntap(t, pod, "tap1") != nil {
		t.Fatal("the TAP outlived DEL")
	}
}

// TestBadConfig: each bad configuration, environment or vrssd is refused
// with its CNI error code and a message that names the problem, and leaves
// no TAP.
func TestBadConfig(t *testing.T) {
	d, pod, cni := setup(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name, plugin string
		netns        string
		args         [][2]string
		caps         map[string]any
		code         uint
		msg          string
	}{
		{name: "no queues", plugin: d.plugin(`"queues": 0`), code: types.ErrInvalidNetworkConfig, msg: "queues 0"},
		{name: "too many queues", plugin: d.plugin(`"queues": 300`), code: types.ErrInvalidNetworkConfig, msg: "queues 300"},
		{name: "misspelt field", plugin: d.plugin(`"queue": 4`), code: types.ErrInvalidNetworkConfig, msg: `unknown field "queue"`},
		{name: "string queues", plugin: d.plugin(`"queues": "4"`), code: types.ErrInvalidNetworkConfig, msg: "queues"},
		{name: "owner", plugin: d.plugin(`"owner": -1`), code: types.ErrInvalidNetworkConfig, msg: "owner -1"},
		{name: "vnet header", plugin: d.plugin(`"vnetHdrLen": 11`), code: types.ErrInvalidNetworkConfig, msg: "vnetHdrLen 11"},
		{name: "relative socket", plugin: `{"type": "vrss-cni", "socket": "vrss.sock"}`, code: types.ErrInvalidNetworkConfig, msg: "absolute"},
		{name: "rss queue", plugin: d.plugin(`"queues": 2, "rss": {"hash_types": "all", "indirection_table": [0, 5]}`), code: types.ErrInvalidNetworkConfig, msg: "queue"},
		{name: "rss hash types", plugin: d.plugin(`"queues": 2, "rss": {"hash_types": "tcp9", "queues": 2}`), code: types.ErrInvalidNetworkConfig, msg: "tcp9"},
		{name: "rss table length", plugin: d.plugin(`"queues": 2, "rss": {"hash_types": "all", "indirection_table": [0, 1, 1]}`), code: types.ErrInvalidNetworkConfig, msg: "table"},
		{name: "runtimeConfig", plugin: d.plugin(`"capabilities": {"vrss": true}`), caps: map[string]any{"vrss": map[string]any{"queuez": 2}}, code: types.ErrInvalidNetworkConfig, msg: "queuez"},
		{name: "CNI_ARGS", plugin: d.plugin(""), args: [][2]string{{"VRSS_QUEUES", "many"}}, code: types.ErrInvalidEnvironmentVariables, msg: "VRSS_QUEUES"},
		{name: "no such namespace", plugin: d.plugin(""), netns: "/var/run/netns/vrss-test-none", code: types.ErrInvalidNetNS, msg: "vrss-test-none"},
		{name: "host namespace", plugin: d.plugin(""), netns: "/proc/self/ns/net", code: types.ErrInvalidNetNS, msg: "own network namespace"},
		{name: "vrssd unreachable", plugin: `{"type": "vrss-cni", "socket": "/nonexistent/vrss.sock"}`, code: types.ErrTryAgainLater, msg: "/nonexistent/vrss.sock"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := &libcni.RuntimeConf{ContainerID: "pod-e", NetNS: pod, IfName: "tap0", Args: tc.args, CapabilityArgs: tc.caps}
			if tc.netns != "" {
				rt.NetNS = tc.netns
			}
			_, err := cni.AddNetworkList(ctx, list(t, tc.plugin), rt)
			if code(t, err) != tc.code || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("ADD: %v, want code %d and a message with %q", err, tc.code, tc.msg)
			}
			t.Logf("ADD: code %d: %v", tc.code, err)
			if netnstest.Tuntap(t, pod, "tap0") != nil || len(d.taps()) != 0 {
				t.Fatal("a refused ADD left a TAP")
			}
		})
	}
	// Overrides: runtimeConfig over CNI_ARGS over the network
	// configuration.
	l := list(t, d.plugin(`"queues": 2, "capabilities": {"vrss": true}`))
	rt := &libcni.RuntimeConf{ContainerID: "pod-f", NetNS: pod, IfName: "tap0", Args: [][2]string{{"VRSS_QUEUES", "3"}, {"VRSS_OWNER", "2000"}},
		CapabilityArgs: map[string]any{"vrss": map[string]any{"queues": 4}}}
	if _, err := cni.AddNetworkList(ctx, l, rt); err != nil {
		t.Fatal(err)
	}
	if taps := d.taps(); len(taps) != 1 || taps[0].Queues != 4 || taps[0].OwnerUID != 2000 || taps[0].OwnerGID != 107 {
		t.Fatalf("overrides: %+v", taps)
	}
	if err := cni.CheckNetworkList(ctx, l, rt); err != nil {
		t.Fatalf("CHECK: %v", err)
	}
	// A second ADD of the same TAP is refused, and changes nothing.
	if _, err := cni.AddNetworkList(ctx, l, rt); code(t, err) != 100 || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("second ADD: %v, want code 100 (exists)", err)
	}
	if err := cni.DelNetworkList(ctx, l, rt); err != nil {
		t.Fatal(err)
	}
}

// TestSteering: frames injected into the pod's TAP, whose queues are
// opened by name in the pod as libvirt opens an unmanaged TAP, land on
// the queues the rss engine predicts for the configuration the network
// configuration gave, and vrssd counts them; a detach behind vrssd's back
// is undone, and the frames land as predicted again.
func TestSteering(t *testing.T) {
	d, pod, cni := setup(t)
	ctx := context.Background()
	const queues = 4
	cfgJSON := `{"hash_types": "ipv4,tcpv4,udpv4,ipv6,tcpv6,udpv6", "key": "6d5a56da255b0ec24167253d43a38fb0d0ca2bcbae7b30b477cb2da38030f20c6a42b73bbeac01fa", "indirection_table": [0, 1, 2, 3, 3, 2, 1, 0, 1, 3, 0, 2, 2, 0, 3, 1]}`
	l := list(t, d.plugin(fmt.Sprintf(`"queues": %d, "rss": %s`, queues, cfgJSON)))
	rt := &libcni.RuntimeConf{ContainerID: "pod-g", NetNS: pod, IfName: "tap0"}
	if _, err := cni.AddNetworkList(ctx, l, rt); err != nil {
		t.Fatal(err)
	}
	defer cni.DelNetworkList(ctx, l, rt)
	cfg, err := rss.ParseConfigJSON([]byte(cfgJSON))
	if err != nil {
		t.Fatal(err)
	}
	eng, err := rss.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	const n = 600
	frames := make([][]byte, n)
	want := make([]int, n)
	for i := range frames {
		s := frame.Spec{Proto: frame.ProtoUDP, SrcPort: uint16(2000 + i), DstPort: uint16(5000 + i%11), Payload: 20 + i%50}
		if i%3 == 0 {
			s.Proto = frame.ProtoTCP
		}
		if i%2 == 0 {
			s.Src, s.Dst = netip.AddrFrom4([4]byte{10, 2, byte(i >> 8), byte(i)}), netip.AddrFrom4([4]byte{10, 3, 0, 1})
		} else {
			s.Src, s.Dst = netip.AddrFrom16([16]byte{0: 0xfd, 14: byte(i >> 8), 15: byte(i)}), netip.MustParseAddr("fd00::2")
		}
		frames[i] = frame.Build(s)
		want[i] = int(eng.Steer(frames[i]).Queue)
	}
	// The VMM's queues, opened by name in the pod, and an injector there;
	// their descriptors work from any thread.
	var q *tap.Device
	var inj *inject.Injector
	err = netnstest.In(pod, func() error {
		var err error
		if q, err = tap.Open("tap0", queues, 12); err != nil {
			return err
		}
		inj, err = inject.Open(q.Index())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	defer inj.Close()
	// send sends the frames and returns the queue each arrived on.
	send := func() map[string][]int {
		t.Helper()
		done := make(chan error, 1)
		var got [][][]byte
		go func() {
			var err error
			got, err = inject.DrainQueues(q, 12, n, 5*time.Second)
			done <- err
		}()
		if err := inj.SendBatch(frames); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		where := map[string][]int{}
		for q, fs := range got {
			for _, f := range fs {
				where[string(f)] = append(where[string(f)], q)
			}
		}
		return where
	}
	// check sends the frames and checks each arrives once, on its
	// predicted queue, and that vrssd counts them so.
	c, err := client.Dial(ctx, d.socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	check := func(what string) {
		t.Helper()
		before, err := c.Netns(pod).Stats(ctx, "tap0")
		if err != nil {
			t.Fatal(err)
		}
		where := send()
		per := make([]int, queues)
		for i, f := range frames {
			qs := where[string(f)]
			if len(qs) != 1 || qs[0] != want[i] {
				t.Fatalf("%s: frame %d arrived on queues %v, predicted %d", what, i, qs, want[i])
			}
			per[want[i]]++
		}
		t.Logf("%s: %d/%d frames on the predicted queue; per queue %v", what, n, n, per)
		st, err := c.Netns(pod).Stats(ctx, "tap0")
		if err != nil {
			t.Fatal(err)
		}
		for i := range per {
			if st.Queues[i]-before.Queues[i] != uint64(per[i]) {
				t.Fatalf("%s: vrssd counts %v per queue (%v before), %v arrived", what, st.Queues, before.Queues, per)
			}
		}
	}
	check("steered")

	// The VMM detaches the program behind vrssd's back (QEMU 7.2 does at
	// device reset): vrssd, which sees no link updates from the pod's
	// namespace, notices in its monitor that frames go unsteered and
	// attaches it again.
	time.Sleep(300 * time.Millisecond)
	// Through Control: Fd would make the queue blocking, and the
	// drains' deadlines would not work on it.
	rc, err := q.Queue(0).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var derr error
	if err := rc.Control(func(fd uintptr) { derr = tap.SetSteeringFD(fd, -1) }); err != nil || derr != nil {
		t.Fatal(err, derr)
	}
	for deadline := time.Now().Add(5 * time.Second); ; {
		send()
		st, err := c.Netns(pod).Stats(ctx, "tap0")
		if err != nil {
			t.Fatal(err)
		}
		if st.Reattached > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a detach behind vrssd's back in the pod was not undone")
		}
		time.Sleep(100 * time.Millisecond)
	}
	check("re-attached")
}
