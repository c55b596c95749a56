package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/agent/client"
	"github.com/vrss-dev/vrss/rss"
	"github.com/vrss-dev/vrss/steering"
	"github.com/vrss-dev/vrss/tap"
	"github.com/vrss-dev/vrss/virtio"
)

var ctx = context.Background()

// skewed is a configuration whose queues differ from the kernel's own
// choice and from an equal spread.
func skewed(queues int) rss.Config {
	key := make([]byte, 40)
	for i := range key {
		key[i] = byte(i*37 + 11)
	}
	table := make([]uint16, 64)
	for i := range table {
		table[i] = uint16((i*7 + i/5) % queues)
	}
	return rss.Config{HashTypes: rss.HashTCPv4 | rss.HashUDPv4 | rss.HashIPv4 | rss.HashTCPv6 | rss.HashIPv6, Key: key, Table: table, UnclassifiedQueue: uint16(queues - 1)}
}

func TestHandshake(t *testing.T) {
	d := newDaemon(t, "")
	// A TAP exists, so a wrongly granted open would hand fds.
	if _, err := d.dial().Create(ctx, api.CreateArgs{Name: "hs0", Queues: 2}); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		args api.HelloArgs
	}{
		{"other ABI", api.HelloArgs{Protocol: api.ProtocolVersion, ABI: "vrss1-000000000000000000000000"}},
		{"no ABI", api.HelloArgs{Protocol: api.ProtocolVersion}},
		{"other protocol", api.HelloArgs{Protocol: api.ProtocolVersion + 1, ABI: steering.ABIStamp()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := d.raw()
			r.sendJSON(api.Request{ID: 7, Op: api.OpHello, Args: mustJSON(tc.args)})
			resp, nfds := r.recv()
			if resp.Error == nil || resp.Error.Code != api.CodeABIMismatch || resp.ID != 7 || nfds != 0 {
				t.Fatalf("got %+v (error %v) with %d fds, want abi_mismatch and no fds", resp, resp.Error, nfds)
			}
			if !r.closed() {
				t.Fatal("the connection stays open after a failed handshake")
			}
		})
	}

	t.Run("request before hello", func(t *testing.T) {
		for _, op := range []api.Op{api.OpOpen, api.OpList, "bogus"} {
			r := d.raw()
			r.sendJSON(api.Request{ID: 3, Op: op, Args: mustJSON(api.OpenArgs{Name: "hs0"})})
			resp, nfds := r.recv()
			if resp.Error == nil || resp.Error.Code != api.CodeNeedHello || nfds != 0 {
				t.Fatalf("%s before hello: got %+v with %d fds, want need_hello", op, resp.Error, nfds)
			}
			if !r.closed() {
				t.Fatalf("%s before hello: the connection stays open", op)
			}
		}
	})

	t.Run("client", func(t *testing.T) {
		c := d.dial()
		if h := c.Server(); h.ABI != steering.ABIStamp() || h.UID != 0 || h.Protocol != api.ProtocolVersion {
			t.Fatalf("hello result %+v", h)
		}
		v, err := c.Version(ctx)
		if err != nil || v.ABI != steering.ABIStamp() || !strings.HasPrefix(v.Kernel, "Linux ") {
			t.Fatalf("version %+v, %v", v, err)
		}
	})
	if !strings.Contains(d.log(), "code=abi_mismatch") {
		t.Error("refused handshakes are not logged")
	}
}

func TestBadMessages(t *testing.T) {
	d := newDaemon(t, "")
	other := d.dial()
	r := d.raw()
	r.hello()
	before := d.fdsBaseline()

	check := func(what string, code api.Code) {
		t.Helper()
		resp, nfds := r.recv()
		if resp.Error == nil || resp.Error.Code != code || nfds != 0 {
			t.Fatalf("%s: got %+v with %d fds, want %s", what, resp.Error, nfds, code)
		}
		// The connection and the other client go on working.
		r.sendJSON(api.Request{ID: 99, Op: api.OpVersion})
		if resp, _ := r.recv(); resp.Error != nil || resp.ID != 99 {
			t.Fatalf("after %s: version answered %+v", what, resp)
		}
		if _, err := other.List(ctx); err != nil {
			t.Fatalf("after %s: another client: %v", what, err)
		}
	}

	r.sendJSON(api.Request{ID: 2, Op: "frobnicate"})
	check("unknown op", api.CodeUnknownOp)
	for _, msg := range []string{
		`{"id": 3, "op": "list"`,
		`not json`,
		`{"id": 3, "op": "list", "bogus": 1}`,
		`{"id": 3, "op": ""}`,
		`{"id": 3, "op": "list"} {"id": 4, "op": "list"}`,
		`[1, 2, 3]`,
		`{"id": -1, "op": "list"}`,
		`{"id": 3, "op": "get_rss", "args": {"name": 5}}`,
		`{"id": 3, "op": "get_rss", "args": {"name": "x", "extra": true}}`,
		`{"id": 3, "op": "set_rss", "args": {"name": "x", "config": {"hash_types": "bogus", "queues": 2}}}`,
		`{"id": 3, "op": "create", "args": {"name": "a/b", "queues": 2}}`,
		`{"id": 3, "op": "create", "args": {"name": "toolongname12345", "queues": 2}}`,
		`{"id": 3, "op": "create", "args": {"name": "ok0", "queues": 0}}`,
		`{"id": 3, "op": "create", "args": {"name": "ok0", "queues": 2, "vnet_hdr_len": 7}}`,
	} {
		r.send([]byte(msg))
		check(fmt.Sprintf("message %q", msg), api.CodeBadRequest)
	}

	// Oversized: exactly one byte over the limit, and far over it.
	for _, n := range []int{api.MaxMessageSize + 1, 3 * api.MaxMessageSize / 2} {
		msg := []byte(`{"id": 5, "op": "list", "args": {"pad": "` + strings.Repeat("x", n) + `"}}`)
		r.send(msg[:n])
		check(fmt.Sprintf("%d-byte message", n), api.CodeTooLarge)
	}
	// Exactly the limit is not too large (only malformed).
	r.send([]byte(`{"id": 6, "op": "list", "args": {"pad": "` + strings.Repeat("x", api.MaxMessageSize) + `"}}`)[:api.MaxMessageSize])
	check("message of exactly the limit", api.CodeBadRequest)

	// File descriptors on a request that takes none are refused and closed.
	var fds []int
	for range 8 {
		fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		fds = append(fds, fd)
	}
	r.send(mustJSON(api.Request{ID: 8, Op: api.OpVersion}), fds...)
	check("fds on version", api.CodeBadRequest)
	// More fds than one message may carry: the kernel drops the excess.
	for len(fds) < api.MaxFDs+5 {
		fds = append(fds, fds[0])
	}
	if _, _, err := r.c.WriteMsgUnix(mustJSON(api.Request{ID: 9, Op: api.OpVersion}), unix.UnixRights(fds...), nil); err == nil {
		check("too many fds", api.CodeBadRequest)
	}
	for _, fd := range fds[:8] {
		unix.Close(fd)
	}
	if after := d.fdsSettle(before); after != before {
		t.Errorf("daemon fds: %d before, %d after the bad messages", before, after)
	}
	t.Logf("daemon fds: %d before and after", before)
}

func TestClientDeathLeaksNothing(t *testing.T) {
	d := newDaemon(t, "")
	c := d.dial()
	if _, err := c.Create(ctx, api.CreateArgs{Name: "die0", Queues: 4}); err != nil {
		t.Fatal(err)
	}
	// Warm up whatever the runtime opens lazily.
	for range 3 {
		h, err := c.Open(ctx, "die0")
		if err != nil {
			t.Fatal(err)
		}
		h.Close()
	}
	before := d.fdsBaseline()

	for i := range 20 {
		// Connect and go.
		r := d.raw()
		r.c.Close()
		// Say hello, close before the answer.
		r = d.raw()
		r.send(mustJSON(api.Request{ID: 1, Op: api.OpHello, Args: mustJSON(api.HelloArgs{Protocol: api.ProtocolVersion, ABI: steering.ABIStamp()})}))
		r.c.Close()
		// Ask for fds and close before they arrive.
		r = d.raw()
		r.hello()
		r.sendJSON(api.Request{ID: 2, Op: api.OpOpen, Args: mustJSON(api.OpenArgs{Name: "die0"})})
		r.c.Close()
		// Half-close: send, shut the write side, vanish.
		r = d.raw()
		r.hello()
		r.sendJSON(api.Request{ID: 3, Op: api.OpList})
		r.c.CloseWrite()
		r.c.Close()
		// A process that sends fds with its request and exits.
		if i%4 == 0 {
			d.dieHelper(helperArgs{Op: api.OpVersion, FDs: 5})
			d.dieHelper(helperArgs{Op: api.OpAdopt, Args: mustJSON(api.AdoptArgs{FromFD: true}), FDs: 1})
		}
	}
	after := d.fdsSettle(before)
	t.Logf("daemon fds: %d before, %d after 90 clients (10 of them processes sending fds) that died mid-request", before, after)
	if after != before {
		t.Errorf("fd leak: %d before, %d after", before, after)
	}
	// And the daemon still serves.
	if _, err := d.dial().List(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestConcurrentClients(t *testing.T) {
	d := newDaemon(t, "")
	if _, err := d.dial().Create(ctx, api.CreateArgs{Name: "cc0", Queues: 2}); err != nil {
		t.Fatal(err)
	}
	const n = 100
	var (
		wg      sync.WaitGroup
		ready   sync.WaitGroup
		release = make(chan struct{})
		errs    = make(chan error, n)
	)
	ready.Add(n)
	for i := range n {
		wg.Go(func() {
			c, err := client.Dial(ctx, d.socket)
			ready.Done()
			if err != nil {
				errs <- fmt.Errorf("client %d: %w", i, err)
				return
			}
			defer c.Close()
			<-release // all 100 are connected at once
			taps, err := c.List(ctx)
			if err == nil && (len(taps) != 1 || taps[0].Name != "cc0") {
				err = fmt.Errorf("list: %+v", taps)
			}
			if err == nil {
				_, err = c.Version(ctx)
			}
			if err != nil {
				errs <- fmt.Errorf("client %d: %w", i, err)
			}
		})
	}
	ready.Wait()
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestManyRequestsNoFDLeak(t *testing.T) {
	d := newDaemon(t, "", "--log-level", "info")
	c := d.dial()
	if _, err := c.Create(ctx, api.CreateArgs{Name: "many0", Queues: 4}); err != nil {
		t.Fatal(err)
	}
	cfg := skewed(4)
	if _, err := c.SetRSS(ctx, "many0", cfg); err != nil {
		t.Fatal(err)
	}
	h, err := c.Open(ctx, "many0")
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
	before := d.fdsBaseline()

	const total, workers = 10000, 4
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	start := time.Now()
	for w := range workers {
		wg.Go(func() {
			var c *client.Client
			defer func() {
				if c != nil {
					c.Close()
				}
			}()
			for i := w; i < total; i += workers {
				if c == nil || i%200 < workers { // a fresh connection now and then
					if c != nil {
						c.Close()
					}
					var err error
					if c, err = client.Dial(ctx, d.socket); err != nil {
						errs <- err
						return
					}
				}
				var err error
				switch i % 6 {
				case 0:
					_, err = c.Version(ctx)
				case 1:
					_, err = c.List(ctx)
				case 2:
					var st api.RSSState
					if st, err = c.GetRSS(ctx, "many0"); err == nil && !reflect.DeepEqual(*st.Config, cfg) {
						err = fmt.Errorf("get_rss: %+v", st.Config)
					}
				case 3:
					_, err = c.Stats(ctx, "many0")
				case 4:
					// One VMM holds the queues at a time: another
					// worker's open in the meantime is busy.
					var h *client.Handle
					if h, err = c.Open(ctx, "many0"); err == nil {
						err = h.Close()
					} else if ae, ok := err.(*api.Error); ok && ae.Code == api.CodeBusy {
						err = nil
					}
				case 5:
					_, err = c.Call(ctx, "no_such_op", nil, nil, nil)
					if ae, ok := err.(*api.Error); ok && ae.Code == api.CodeUnknownOp {
						err = nil
					}
				}
				if err != nil {
					errs <- fmt.Errorf("request %d: %w", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	after := d.fdsSettle(before)
	t.Logf("%d requests (version, list, get_rss, stats, open+close, unknown op) from %d clients in %v; daemon fds %d before, %d after",
		total, workers, elapsed.Round(time.Millisecond), before, after)
	if after != before {
		t.Errorf("fd leak: %d before, %d after %d requests", before, after, total)
	}
}

func TestLifecycle(t *testing.T) {
	d := newDaemon(t, "")
	c := d.dial()
	tp, err := c.Create(ctx, api.CreateArgs{Name: "life0", Queues: 4})
	if err != nil {
		t.Fatal(err)
	}
	if tp.Name != "life0" || tp.Queues != 4 || tp.VnetHdrLen != 12 || !tp.Steering || tp.Adopted || tp.ABI != steering.ABIStamp() || tp.HeldElsewhere {
		t.Fatalf("created %+v", tp)
	}
	if !d.hasIface("life0") || !d.pinDirExists("life0") {
		t.Fatal("no device or no pins after create")
	}
	for _, f := range []string{"prog", "config", "stats"} {
		if _, err := os.Stat(filepath.Join(d.bpffsDir, "life0", f)); err != nil {
			t.Error(err)
		}
	}
	_, err = c.Create(ctx, api.CreateArgs{Name: "life0", Queues: 2})
	wantCode(t, err, api.CodeExists)
	_, err = c.Create(ctx, api.CreateArgs{Name: "lo", Queues: 2})
	wantCode(t, err, api.CodeExists)

	st, err := c.GetRSS(ctx, "life0")
	if err != nil || st.Config != nil || st.Generation != 0 {
		t.Fatalf("fresh TAP: %+v, %v", st, err)
	}

	// The JSON form.
	cfg := skewed(4)
	r, err := c.SetRSS(ctx, "life0", cfg)
	if err != nil || r.Ack != virtio.AckOK || r.Generation != 1 {
		t.Fatalf("set_rss: %+v, %v", r, err)
	}
	bad := cfg.Clone()
	bad.Table[3] = 4
	_, err = c.SetRSS(ctx, "life0", bad)
	wantCode(t, err, api.CodeInvalidConfig)
	if st, _ := c.GetRSS(ctx, "life0"); !reflect.DeepEqual(*st.Config, cfg) || st.Generation != 1 {
		t.Fatalf("after a refused config: %+v", st)
	}

	// Steering by it, on real queues.
	h, err := c.Open(ctx, "life0")
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if len(h.Queues) != 4 || h.TAP.Name != "life0" {
		t.Fatalf("open: %+v", h)
	}
	per := d.steerCheck(tp.Index, h.Queues, 12, cfg, 1)
	t.Logf("JSON config: frames per queue %v", per)
	stats, err := c.Stats(ctx, "life0")
	if err != nil {
		t.Fatal(err)
	}
	for q, n := range per {
		if stats.Queues[q] < uint64(n) {
			t.Errorf("stats %+v, but %d frames arrived on queue %d", stats, n, q)
		}
	}

	// The raw virtio form, as a guest sent it: refused ones change
	// nothing and answer VIRTIO_NET_ERR.
	vcfg := virtio.RSSConfig{Config: rss.Config{HashTypes: rss.AllHashTypes, Key: rss.DefaultKey, Table: rss.EqualTable(128, 4)}, MaxTxVQ: 4}
	wire, _ := vcfg.MarshalBinary()
	if r, err := c.SetVirtioRSS(ctx, "life0", wire); err != nil || r.Ack != virtio.AckOK || r.Generation != 2 {
		t.Fatalf("virtio rss: %+v, %v", r, err)
	}
	for _, b := range [][]byte{wire[:10], append(wire, 0), {}} {
		r, err := c.SetVirtioRSS(ctx, "life0", b)
		if err != nil || r.Ack != virtio.AckErr || r.AckMessage == "" || r.Generation != 2 {
			t.Fatalf("bad virtio rss: %+v, %v", r, err)
		}
	}
	big := virtio.RSSConfig{Config: rss.Config{HashTypes: rss.AllHashTypes, Key: rss.DefaultKey, Table: rss.EqualTable(256, 4)}, MaxTxVQ: 4}
	bigWire, _ := big.MarshalBinary()
	if r, _ := c.SetVirtioRSS(ctx, "life0", bigWire); r.Ack != virtio.AckErr {
		t.Fatalf("a 256-entry table is beyond the advertised 128: %+v", r)
	}
	if st, _ := c.GetRSS(ctx, "life0"); !reflect.DeepEqual(*st.Config, vcfg.Config) || st.Generation != 2 {
		t.Fatalf("after virtio: %+v", st)
	}
	per = d.steerCheck(tp.Index, h.Queues, 12, vcfg.Config, 2)
	t.Logf("virtio config: frames per queue %v", per)

	hc := virtio.HashConfig{HashTypes: rss.HashTCPv4, Key: rss.DefaultKey}
	hwire, _ := hc.MarshalBinary()
	if r, err := c.SetVirtioHash(ctx, "life0", hwire); err != nil || r.Ack != virtio.AckOK {
		t.Fatalf("virtio hash: %+v, %v", r, err)
	}
	if r, _ := c.SetVirtioHash(ctx, "life0", hwire[:5]); r.Ack != virtio.AckErr {
		t.Fatalf("truncated hash config: %+v", r)
	}
	if st, _ := c.GetRSS(ctx, "life0"); st.HashReport == nil || st.HashReport.HashTypes != rss.HashTCPv4 || !reflect.DeepEqual(*st.Config, vcfg.Config) {
		t.Fatalf("after hash config: %+v", st)
	}

	// The owner publishes through its own mapping; the daemon reads it back.
	cfg2 := skewed(3)
	if err := h.Publisher.Publish(cfg2); err != nil {
		t.Fatal(err)
	}
	if st, _ := c.GetRSS(ctx, "life0"); !reflect.DeepEqual(*st.Config, cfg2) || st.Generation != 3 {
		t.Fatalf("after publishing through the map: %+v", st)
	}
	per = d.steerCheck(tp.Index, h.Queues, 12, cfg2, 3)
	if per[3] != 0 {
		t.Fatalf("a 3-queue table put frames on queue 3: %v", per)
	}

	// Detach: the kernel's own steering; set_rss still updates the map.
	tp, err = c.Detach(ctx, "life0")
	if err != nil || tp.Steering {
		t.Fatalf("detach: %+v, %v", tp, err)
	}
	if _, err := c.SetRSS(ctx, "life0", cfg); err != nil {
		t.Fatal(err)
	}
	taps, _ := c.List(ctx)
	if len(taps) != 1 || taps[0].Steering || taps[0].Generation != 4 {
		t.Fatalf("list after detach: %+v", taps)
	}

	// Attach again: steering by the configuration published while detached.
	tp, err = c.Attach(ctx, "life0")
	if err != nil || !tp.Steering {
		t.Fatalf("attach: %+v, %v", tp, err)
	}
	d.steerCheck(tp.Index, h.Queues, 12, cfg, 4)
	if _, err := c.Attach(ctx, "life0"); err != nil {
		t.Fatalf("attach while attached: %v", err)
	}

	if err := c.Delete(ctx, "life0"); err != nil {
		t.Fatal(err)
	}
	if d.hasIface("life0") || d.pinDirExists("life0") || strings.Contains(d.stateFile(), "life0") {
		t.Fatal("device, pins or state left after delete")
	}
	for _, err := range []error{
		func() error { _, err := c.GetRSS(ctx, "life0"); return err }(),
		func() error { _, err := c.Open(ctx, "life0"); return err }(),
		c.Delete(ctx, "life0"),
	} {
		wantCode(t, err, api.CodeNotFound)
	}
}

func TestAuthorisation(t *testing.T) {
	const alice, bob = 4242, 4343
	create := func(d *daemon, uid int, a api.CreateArgs) helperResult {
		return d.asUser(uid, "call", helperArgs{Op: api.OpCreate, Args: mustJSON(a)})
	}
	t.Run("no permission", func(t *testing.T) {
		d := newDaemon(t, "")
		wantDenied(t, "create", create(d, alice, api.CreateArgs{Name: "a0", Queues: 2}))
		wantDenied(t, "adopt", d.asUser(alice, "call", helperArgs{Op: api.OpAdopt, Args: mustJSON(api.AdoptArgs{Name: "lo"})}))
		if d.hasIface("a0") {
			t.Fatal("a refused create made a device")
		}
		if !strings.Contains(d.log(), "uid=4242") || !strings.Contains(d.log(), "code=denied") {
			t.Fatalf("refusals not logged with the peer:\n%s", d.log())
		}
		// Version and list work for anyone.
		if r := d.asUser(alice, "call", helperArgs{Op: api.OpList}); r.Error != nil || string(r.Result) != `{"taps":[]}` {
			t.Fatalf("list: %+v", r)
		}
	})

	t.Run("create permission", func(t *testing.T) {
		d := newDaemon(t, fmt.Sprintf(`{"create": {"uids": [%d]}, "max_queues": 8}`, alice))
		r := create(d, alice, api.CreateArgs{Name: "a0", Queues: 4})
		var tp api.TAP
		if r.Error != nil || json.Unmarshal(r.Result, &tp) != nil || tp.OwnerUID != alice || tp.OwnerGID != alice {
			t.Fatalf("create as %d: %+v", alice, r)
		}
		wantDenied(t, "create for another owner", create(d, alice, api.CreateArgs{Name: "a1", Queues: 2, OwnerUID: ptr(0)}))
		wantDenied(t, "create for another group", create(d, alice, api.CreateArgs{Name: "a1", Queues: 2, OwnerGID: ptr(0)}))
		if r := create(d, alice, api.CreateArgs{Name: "a1", Queues: 9}); r.Error == nil || r.Error.Code != api.CodeBadRequest {
			t.Fatalf("more than max_queues: %+v", r)
		}
		wantDenied(t, "create by bob", create(d, bob, api.CreateArgs{Name: "b0", Queues: 2}))

		// The kernel knows the owner too (TUNSETOWNER, TUNSETGROUP).
		d.inNS(func() {
			l, err := netlink.LinkByName("a0")
			if err != nil {
				t.Fatal(err)
			}
			if tt := l.(*netlink.Tuntap); tt.Owner != alice || tt.Group != alice || tt.NonPersist {
				t.Fatalf("kernel owner %d, group %d, persistent %v", tt.Owner, tt.Group, !tt.NonPersist)
			}
		})

		// Alice, an unprivileged VMM: open, and publish through the map
		// with no bpf() call.
		cfg := skewed(4)
		cfgJSON, _ := json.Marshal(cfg)
		r = d.asUser(alice, "open", helperArgs{Args: mustJSON(api.NameArgs{Name: "a0"}), Publish: cfgJSON})
		if r.Error != nil || r.FDs != 5 {
			t.Fatalf("open as owner: %+v", r)
		}
		st, err := d.dial().GetRSS(ctx, "a0")
		if err != nil || !reflect.DeepEqual(*st.Config, cfg) {
			t.Fatalf("after alice published: %+v, %v", st, err)
		}
		for _, op := range []api.Op{api.OpGetRSS, api.OpStats, api.OpSetRSS} {
			args := mustJSON(api.NameArgs{Name: "a0"})
			if op == api.OpSetRSS {
				args = mustJSON(api.SetRSSArgs{Name: "a0", Config: &cfg})
			}
			if r := d.asUser(alice, "call", helperArgs{Op: op, Args: args}); r.Error != nil {
				t.Fatalf("%s as owner: %+v", op, r)
			}
			wantHidden(t, string(op)+" by bob", d.asUser(bob, "call", helperArgs{Op: op, Args: args}))
		}
		for _, op := range []api.Op{api.OpOpen, api.OpDetach, api.OpDelete} {
			r := d.asUser(bob, "call", helperArgs{Op: op, Args: mustJSON(api.NameArgs{Name: "a0"})})
			wantHidden(t, string(op)+" by bob", r)
			// Word for word what a TAP that does not exist gets.
			none := d.asUser(bob, "call", helperArgs{Op: op, Args: mustJSON(api.NameArgs{Name: "nosuch0"})})
			if strings.ReplaceAll(none.Error.Message, "nosuch0", "a0") != r.Error.Message {
				t.Fatalf("%s by bob: %q for alice's TAP, %q for none", op, r.Error.Message, none.Error.Message)
			}
		}
		if r := d.asUser(bob, "call", helperArgs{Op: api.OpList}); string(r.Result) != `{"taps":[]}` {
			t.Fatalf("bob sees %s", r.Result)
		}

		// Root gives a TAP to bob: bob may use it, alice may not.
		if _, err := d.dial().Create(ctx, api.CreateArgs{Name: "b0", Queues: 2, OwnerUID: ptr(bob), OwnerGID: ptr(bob)}); err != nil {
			t.Fatal(err)
		}
		if r := d.asUser(bob, "open", helperArgs{Args: mustJSON(api.NameArgs{Name: "b0"})}); r.Error != nil || r.FDs != 3 {
			t.Fatalf("bob opens his TAP: %+v", r)
		}
		wantHidden(t, "alice opens bob's TAP", d.asUser(alice, "call", helperArgs{Op: api.OpOpen, Args: mustJSON(api.NameArgs{Name: "b0"})}))
		if r := d.asUser(alice, "call", helperArgs{Op: api.OpList}); !strings.Contains(string(r.Result), `"a0"`) || strings.Contains(string(r.Result), `"b0"`) {
			t.Fatalf("alice lists %s", r.Result)
		}
		taps, _ := d.dial().List(ctx)
		if listNames(taps) != "a0,b0" {
			t.Fatalf("root lists %s", listNames(taps))
		}

		// The owner deletes.
		if r := d.asUser(alice, "call", helperArgs{Op: api.OpDelete, Args: mustJSON(api.NameArgs{Name: "a0"})}); r.Error != nil {
			t.Fatalf("delete as owner: %+v", r)
		}
		if d.hasIface("a0") {
			t.Fatal("a0 still exists")
		}
	})

	t.Run("admin", func(t *testing.T) {
		d := newDaemon(t, fmt.Sprintf(`{"admin": {"gids": [%d]}}`, bob))
		if _, err := d.dial().Create(ctx, api.CreateArgs{Name: "r0", Queues: 2}); err != nil {
			t.Fatal(err)
		}
		r := create(d, bob, api.CreateArgs{Name: "b1", Queues: 2, OwnerUID: ptr(alice)})
		if r.Error != nil {
			t.Fatalf("an admin creates for alice: %+v", r)
		}
		if r := d.asUser(bob, "call", helperArgs{Op: api.OpList}); !strings.Contains(string(r.Result), `"r0"`) {
			t.Fatalf("an admin lists %s", r.Result)
		}
		if r := d.asUser(bob, "open", helperArgs{Args: mustJSON(api.NameArgs{Name: "r0"})}); r.Error != nil {
			t.Fatalf("an admin opens root's TAP: %+v", r)
		}
	})
}

func ptr(v int) *int { return &v }

func TestRestart(t *testing.T) {
	d := newDaemon(t, "")
	c := d.dial()
	tp, err := c.Create(ctx, api.CreateArgs{Name: "rs0", Queues: 4})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Create(ctx, api.CreateArgs{Name: "rs1", Queues: 2}); err != nil {
		t.Fatal(err)
	}
	cfg := skewed(4)
	if _, err := c.SetRSS(ctx, "rs0", cfg); err != nil {
		t.Fatal(err)
	}
	hc := virtio.HashConfig{HashTypes: rss.HashUDPv4, Key: rss.DefaultKey}
	hwire, _ := hc.MarshalBinary()
	if _, err := c.SetVirtioHash(ctx, "rs0", hwire); err != nil {
		t.Fatal(err)
	}
	cfg1 := skewed(2)
	if _, err := c.SetRSS(ctx, "rs1", cfg1); err != nil {
		t.Fatal(err)
	}
	// A VMM holds rs0's queues across the restart; nobody holds rs1's.
	h, err := c.Open(ctx, "rs0")
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	before, err := c.GetRSS(ctx, "rs0")
	if err != nil {
		t.Fatal(err)
	}
	statsBefore, _ := c.Stats(ctx, "rs0")
	c.Close()

	d.stop()
	if _, err := os.Stat(d.socket); !os.IsNotExist(err) {
		t.Errorf("socket left after shutdown: %v", err)
	}
	if !d.hasIface("rs0") || !d.hasIface("rs1") {
		t.Fatal("TAPs gone with the daemon")
	}
	// Steering goes on without the daemon.
	per := d.steerCheck(tp.Index, h.Queues, 12, cfg, 11)
	t.Logf("with vrssd stopped: frames per queue %v", per)

	d.start()
	c = d.dial()
	taps, err := c.List(ctx)
	if err != nil || listNames(taps) != "rs0,rs1" {
		t.Fatalf("list after restart: %+v, %v", taps, err)
	}
	if !taps[0].HeldElsewhere || taps[1].HeldElsewhere || !taps[0].Steering {
		t.Fatalf("after restart: %+v", taps)
	}
	after, err := c.GetRSS(ctx, "rs0")
	if err != nil || !reflect.DeepEqual(after, before) {
		t.Fatalf("get_rss after restart:\n%+v\nbefore:\n%+v (%v)", after, before, err)
	}
	if st, _ := c.GetRSS(ctx, "rs1"); !reflect.DeepEqual(*st.Config, cfg1) {
		t.Fatalf("rs1 after restart: %+v", st)
	}
	stats, err := c.Stats(ctx, "rs0")
	if err != nil {
		t.Fatal(err)
	}
	for q, n := range per {
		if stats.Queues[q] < statsBefore.Queues[q]+uint64(n) {
			t.Errorf("queue %d: %d packets counted, want at least %d", q, stats.Queues[q], statsBefore.Queues[q]+uint64(n))
		}
	}

	// Attaching more queues would change the queue count: refused.
	_, err = c.Open(ctx, "rs0")
	wantCode(t, err, api.CodeBusy)
	hc2, err := c.OpenConfig(ctx, "rs0")
	if err != nil || len(hc2.Queues) != 0 {
		t.Fatalf("config-only open: %v", err)
	}
	cfg3 := skewed(3)
	if err := hc2.Publisher.Publish(cfg3); err != nil {
		t.Fatal(err)
	}
	hc2.Close()
	d.steerCheck(tp.Index, h.Queues, 12, cfg3, 12)

	// Once the VMM lets go, open works again, with the same queues.
	h.Close()
	h2, err := c.Open(ctx, "rs0")
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Close()
	d.steerCheck(tp.Index, h2.Queues, 12, cfg3, 13)
	if h, err := c.Open(ctx, "rs1"); err != nil {
		t.Fatal(err)
	} else {
		h.Close()
	}

	// A crash (SIGKILL: no shutdown, a stale socket file) loses nothing
	// either: the state is saved on every change.
	before, _ = c.GetRSS(ctx, "rs0")
	d.kill()
	d.steerCheck(tp.Index, h2.Queues, 12, cfg3, 14)
	d.start()
	c = d.dial()
	if taps, _ := c.List(ctx); listNames(taps) != "rs0,rs1" || !taps[0].HeldElsewhere {
		t.Fatalf("after a crash: %+v", taps)
	}
	if after, err := c.GetRSS(ctx, "rs0"); err != nil || !reflect.DeepEqual(after, before) {
		t.Fatalf("after a crash: %+v, %v", after, err)
	}
}

func TestStaleABI(t *testing.T) {
	d := newDaemon(t, "")
	c := d.dial()
	tp, err := c.Create(ctx, api.CreateArgs{Name: "old0", Queues: 2})
	if err != nil {
		t.Fatal(err)
	}
	cfg := skewed(2)
	if _, err := c.SetRSS(ctx, "old0", cfg); err != nil {
		t.Fatal(err)
	}
	h, err := c.Open(ctx, "old0")
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	d.stop()
	// As if an older vrssd had loaded the program: same pins, other stamp.
	path := filepath.Join(d.stateDir, "state.json")
	b, _ := os.ReadFile(path)
	os.WriteFile(path, []byte(strings.ReplaceAll(string(b), steering.ABIStamp(), "vrss1-000000000000000000000000")), 0o600)
	d.start()
	c = d.dial()
	taps, err := c.List(ctx)
	if err != nil || len(taps) != 1 || taps[0].ABI != "vrss1-000000000000000000000000" || !taps[0].Steering {
		t.Fatalf("list: %+v, %v", taps, err)
	}
	if !strings.Contains(d.log(), "another vrssd build") {
		t.Error("a stale program is not logged")
	}
	for _, err := range []error{
		func() error { _, err := c.Open(ctx, "old0"); return err }(),
		func() error { _, err := c.OpenConfig(ctx, "old0"); return err }(),
		func() error { _, err := c.GetRSS(ctx, "old0"); return err }(),
		func() error { _, err := c.SetRSS(ctx, "old0", cfg); return err }(),
		func() error { _, err := c.Stats(ctx, "old0"); return err }(),
	} {
		wantCode(t, err, api.CodeABIMismatch)
	}
	// It keeps steering as configured.
	d.steerCheck(tp.Index, h.Queues, 12, cfg, 31)
	if err := c.Delete(ctx, "old0"); err != nil {
		t.Fatal(err)
	}
	if d.pinDirExists("old0") {
		t.Fatal("pins left")
	}
}

func TestDeletedBehindItsBack(t *testing.T) {
	d := newDaemon(t, "")
	c := d.dial()
	for _, name := range []string{"gone0", "gone1", "stay0"} {
		if _, err := c.Create(ctx, api.CreateArgs{Name: name, Queues: 2}); err != nil {
			t.Fatal(err)
		}
	}
	d.inNS(func() {
		if err := tap.Delete("gone0"); err != nil {
			t.Fatal(err)
		}
	})
	start := time.Now()
	for {
		taps, err := c.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if listNames(taps) == "gone1,stay0" && !d.pinDirExists("gone0") && !strings.Contains(d.stateFile(), "gone0") {
			t.Logf("deleted TAP forgotten after %v", time.Since(start).Round(time.Millisecond))
			break
		}
		if time.Since(start) > time.Second {
			t.Fatalf("after 1s: list %s, pins %v", listNames(taps), d.pinDirExists("gone0"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Without any request: the link watcher alone.
	d.inNS(func() {
		if err := tap.Delete("gone1"); err != nil {
			t.Fatal(err)
		}
	})
	for start := time.Now(); d.pinDirExists("gone1"); time.Sleep(10 * time.Millisecond) {
		if time.Since(start) > time.Second {
			t.Fatal("pins of gone1 still there after 1s")
		}
	}

	// Deleted while the daemon is down: cleaned up when it starts.
	d.stop()
	d.inNS(func() {
		if err := tap.Delete("stay0"); err != nil {
			t.Fatal(err)
		}
	})
	d.start()
	if d.pinDirExists("stay0") || strings.Contains(d.stateFile(), "stay0") {
		t.Fatal("stay0 not cleaned up at start")
	}
	if taps, _ := d.dial().List(ctx); len(taps) != 0 {
		t.Fatalf("list: %+v", taps)
	}
}

func TestAdopt(t *testing.T) {
	d := newDaemon(t, "")
	c := d.dial()
	// A persistent TAP nobody holds.
	var held *tap.Device
	d.inNS(func() {
		dev, err := tap.Create(tap.Options{Name: "ad0", Queues: 2, VnetHdrLen: 12, Persist: true, Up: true})
		if err != nil {
			t.Fatal(err)
		}
		dev.Close()
		// A TAP a VMM holds.
		if held, err = tap.Create(tap.Options{Name: "ad1", Queues: 4, VnetHdrLen: 12, Up: true}); err != nil {
			t.Fatal(err)
		}
	})
	defer held.Close()

	tp, err := c.Adopt(ctx, api.AdoptArgs{Name: "ad0", Queues: 2})
	if err != nil || !tp.Adopted || !tp.Steering || tp.VnetHdrLen != 12 || tp.HeldElsewhere {
		t.Fatalf("adopt by name: %+v, %v", tp, err)
	}
	_, err = c.Adopt(ctx, api.AdoptArgs{Name: "ad0", Queues: 2})
	wantCode(t, err, api.CodeExists)
	_, err = c.Adopt(ctx, api.AdoptArgs{Name: "nosuch", Queues: 2})
	wantCode(t, err, api.CodeNotFound)
	_, err = c.Adopt(ctx, api.AdoptArgs{Name: "lo", Queues: 2})
	wantCode(t, err, api.CodeBadRequest)

	_, err = c.Adopt(ctx, api.AdoptArgs{Name: "ad1", Queues: 4})
	wantCode(t, err, api.CodeBusy)
	devNull, _ := os.Open(os.DevNull)
	defer devNull.Close()
	_, err = c.AdoptFD(ctx, api.AdoptArgs{}, devNull)
	wantCode(t, err, api.CodeBadRequest)
	_, err = c.AdoptFD(ctx, api.AdoptArgs{Name: "ad0"}, held.Queue(1))
	wantCode(t, err, api.CodeBadRequest)

	tp, err = c.AdoptFD(ctx, api.AdoptArgs{}, held.Queue(1))
	if err != nil || tp.Name != "ad1" || tp.Queues != 4 || !tp.HeldElsewhere || !tp.Steering {
		t.Fatalf("adopt from fd: %+v, %v", tp, err)
	}
	cfg := skewed(4)
	if _, err := c.SetRSS(ctx, "ad1", cfg); err != nil {
		t.Fatal(err)
	}
	queues := make([]*os.File, held.NumQueues())
	for i := range queues {
		queues[i] = held.Queue(i)
	}
	d.steerCheck(tp.Index, queues, 12, cfg, 21)
	_, err = c.Open(ctx, "ad1")
	wantCode(t, err, api.CodeBusy)
	// Detach and attach work while the VMM holds every queue: through
	// vrssd's disabled control queue.
	if tp, err := c.Detach(ctx, "ad1"); err != nil || tp.Steering {
		t.Fatalf("detach while held: %+v, %v", tp, err)
	}
	if tp, err := c.Attach(ctx, "ad1"); err != nil || !tp.Steering {
		t.Fatalf("attach while held: %+v, %v", tp, err)
	}
	d.steerCheck(tp.Index, queues, 12, cfg, 22)
	h, err := c.OpenConfig(ctx, "ad1")
	if err != nil {
		t.Fatal(err)
	}
	h.Close()

	// The VMM closes its queues: a non-persistent TAP goes, and vrssd
	// forgets it.
	held.Close()
	for start := time.Now(); d.pinDirExists("ad1"); time.Sleep(10 * time.Millisecond) {
		if time.Since(start) > time.Second {
			t.Fatal("ad1 not forgotten")
		}
	}
	if err := c.Delete(ctx, "ad0"); err != nil {
		t.Fatal(err)
	}
}

func TestShutdownWithClients(t *testing.T) {
	d := newDaemon(t, "")
	// Idle connections do not hold up a shutdown.
	var cs []*client.Client
	for range 10 {
		cs = append(cs, d.dial())
	}
	start := time.Now()
	d.stop()
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("shutdown took %v", el)
	}
	for _, c := range cs {
		if _, err := c.Version(ctx); err == nil {
			t.Fatal("a connection survived the shutdown")
		}
	}
	if !strings.Contains(d.log(), "vrssd stopped") {
		t.Fatalf("log:\n%s", d.log())
	}
}

func TestSecondDaemonRefused(t *testing.T) {
	d := newDaemon(t, "")
	if _, err := d.dial().Create(ctx, api.CreateArgs{Name: "one0", Queues: 2}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--socket", d.socket, "--state-dir", filepath.Join(d.dir, "other"), "--bpffs-dir", filepath.Join(d.dir, "otherbpf")}, "another vrssd is listening"},
		// Another state and socket but the same pins: refused before it
		// touches any of them.
		{[]string{"--socket", filepath.Join(d.dir, "other.sock"), "--state-dir", filepath.Join(d.dir, "other"), "--bpffs-dir", d.bpffsDir}, "another vrssd uses the bpffs directory"},
		{[]string{"--socket", filepath.Join(d.dir, "other.sock"), "--state-dir", d.stateDir, "--bpffs-dir", d.bpffsDir}, "another vrssd uses the state directory"},
	} {
		out, err := execCommand(vrssd, tc.args...).CombinedOutput()
		if code := exitCode(err); code != 1 || !strings.Contains(string(out), tc.want) {
			t.Errorf("second vrssd %v: exit %d, output %s", tc.args, code, out)
		}
	}
	// The first one is unharmed.
	if taps, err := d.dial().List(ctx); err != nil || listNames(taps) != "one0" {
		t.Fatalf("%+v, %v", taps, err)
	}
}
