package client

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/agent/internal/wire"
	"github.com/vrss-dev/vrss/rss"
	"github.com/vrss-dev/vrss/steering"
)

// These tests run the client against a scripted fake daemon, so they need
// no privileges; the agent package's tests run it against vrssd itself.

type reply struct {
	resp api.Response
	fds  []int
}

// fakeDaemon answers each request on one connection with what answer
// returns (nothing, for none). A hello is answered with a matching stamp
// unless answer handles it. done is closed when the connection is.
func fakeDaemon(t *testing.T, answer func(req *api.Request) []reply) (path string, done chan struct{}) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "fake.sock")
	done = make(chan struct{})
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		defer close(done)
		c, err := ln.AcceptUnix()
		if err != nil {
			return
		}
		defer c.Close()
		bufs := wire.NewBuffers()
		for {
			m, err := wire.Recv(c, bufs)
			if err != nil {
				return
			}
			wire.CloseFDs(m.FDs)
			req, err := api.DecodeRequest(m.Data)
			if err != nil {
				return
			}
			replies := answer(req)
			if replies == nil && req.Op == api.OpHello {
				replies = []reply{result(req.ID, api.HelloResult{Protocol: api.ProtocolVersion, ABI: steering.ABIStamp(), Server: "fake"})}
			}
			for _, r := range replies {
				r.resp.FDs = len(r.fds)
				b, _ := json.Marshal(r.resp)
				wire.Send(c, b, r.fds)
				wire.CloseFDs(r.fds)
			}
		}
	}()
	return path, done
}

func result(id uint64, v any) reply {
	b, _ := json.Marshal(v)
	return reply{resp: api.Response{ID: id, Result: b}}
}

func openFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func TestDialABIMismatch(t *testing.T) {
	for _, answer := range []func(*api.Request) []reply{
		// The daemon refuses our stamp.
		func(req *api.Request) []reply {
			return []reply{{resp: api.Response{ID: req.ID, Error: api.Errorf(api.CodeABIMismatch, "other build")}}}
		},
		// The daemon claims another stamp (it should have refused).
		func(req *api.Request) []reply {
			return []reply{result(req.ID, api.HelloResult{Protocol: api.ProtocolVersion, ABI: "vrss1-other"})}
		},
	} {
		path, _ := fakeDaemon(t, answer)
		_, err := Dial(context.Background(), path)
		var ae *api.Error
		if !errors.As(err, &ae) || ae.Code != api.CodeABIMismatch {
			t.Fatalf("got %v, want abi_mismatch", err)
		}
	}
}

func TestSocketPath(t *testing.T) {
	t.Setenv(api.EnvSocket, "")
	if SocketPath() != api.DefaultSocket {
		t.Fatal(SocketPath())
	}
	t.Setenv(api.EnvSocket, "/tmp/x.sock")
	if SocketPath() != "/tmp/x.sock" {
		t.Fatal(SocketPath())
	}
}

func TestLateAnswersAndCancel(t *testing.T) {
	var held []*api.Request
	path, done := fakeDaemon(t, func(req *api.Request) []reply {
		switch req.Op {
		case api.OpHello:
			return nil
		case api.OpStats: // never answered in time
			held = append(held, req)
			return []reply{}
		}
		// Answer the held request first, with an fd, then this one.
		var out []reply
		for _, h := range held {
			fd, _ := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
			r := result(h.ID, api.Stats{Name: "late"})
			r.fds = []int{fd}
			out = append(out, r)
		}
		held = nil
		return append(out, result(req.ID, api.ListResult{TAPs: []api.TAP{{Name: "now"}}}))
	})
	before := openFDs(t)
	c, err := Dial(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Stats(ctx, "x"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want a deadline error", err)
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	go func() { time.Sleep(20 * time.Millisecond); cancel2() }()
	if _, err := c.Stats(ctx2, "x"); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want cancelled", err)
	}
	taps, err := c.List(context.Background())
	if err != nil || len(taps) != 1 || taps[0].Name != "now" {
		t.Fatalf("list after late answers: %+v, %v", taps, err)
	}
	c.Close()
	<-done
	if after := openFDs(t); after > before {
		t.Errorf("fds: %d before, %d after (late answers' fds leaked?)", before, after)
	}
}

func TestOpen(t *testing.T) {
	// A memfd stands in for the configuration map: it mmaps the same way.
	mapFD := func() int {
		fd, err := unix.MemfdCreate("vrss-config", unix.MFD_CLOEXEC)
		if err != nil {
			t.Fatal(err)
		}
		if err := unix.Ftruncate(fd, int64(steering.ConfigSize)); err != nil {
			t.Fatal(err)
		}
		return fd
	}
	queue := func() int {
		fd, err := unix.Open("/dev/null", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		return fd
	}
	path, done := fakeDaemon(t, func(req *api.Request) []reply {
		if req.Op == api.OpHello {
			return nil
		}
		var a api.OpenArgs
		api.DecodeArgs(req.Args, &a)
		res := api.OpenResult{TAP: api.TAP{Name: a.Name, Queues: 2}, QueueFDs: 2, ConfigSize: steering.ConfigSize, ABI: steering.ABIStamp()}
		fds := []int{queue(), queue(), mapFD()}
		switch a.Name {
		case "other-abi":
			res.ABI = "vrss1-other"
		case "short":
			unix.Close(fds[0])
			fds = fds[1:]
		case "config-only":
			res.QueueFDs = 0
			wire.CloseFDs(fds[:2])
			fds = fds[2:]
		}
		r := result(req.ID, res)
		r.fds = fds
		return []reply{r}
	})
	before := openFDs(t)
	c, err := Dial(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	h, err := c.Open(context.Background(), "vm0")
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Queues) != 2 || h.TAP.Name != "vm0" {
		t.Fatalf("%+v", h)
	}
	cfg := rss.Config{HashTypes: rss.AllHashTypes, Key: rss.DefaultKey, Table: rss.EqualTable(8, 2)}
	if err := h.Publisher.Publish(cfg); err != nil || h.Publisher.Generation() != 1 {
		t.Fatal(err)
	}
	if err := h.Publisher.Publish(rss.Config{HashTypes: rss.AllHashTypes, Key: rss.DefaultKey, Table: []uint16{0, 2}}); err == nil {
		t.Fatal("published a table beyond the TAP's 2 queues")
	}
	h.Close()

	_, err = c.Open(context.Background(), "other-abi")
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Code != api.CodeABIMismatch {
		t.Fatalf("open of a TAP with another ABI: %v", err)
	}
	if _, err := c.Open(context.Background(), "short"); err == nil {
		t.Fatal("open with too few fds")
	}
	h, err = c.OpenConfig(context.Background(), "config-only")
	if err != nil || len(h.Queues) != 0 || h.Publisher == nil {
		t.Fatalf("%+v, %v", h, err)
	}
	h.Close()
	c.Close()
	<-done
	if after := openFDs(t); after > before {
		t.Errorf("fds: %d before, %d after", before, after)
	}
}

// QEMUEBPF hands over QEMU's program and maps in ebpf-rss-fds order, and
// refuses (closing them) any other number of fds.
func TestQEMUEBPF(t *testing.T) {
	devnull := func(n int) []int {
		var fds []int
		for range n {
			fd, err := unix.Open(os.DevNull, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			fds = append(fds, fd)
		}
		return fds
	}
	maps := []string{"tap_rss_map_configurations", "tap_rss_map_toeplitz_key", "tap_rss_map_indirection_table"}
	for _, n := range []int{4, 3, 5} {
		// The fake daemon's goroutine hands the request's arguments over
		// a channel: that the reply came back over the socket orders
		// nothing as far as the race detector can see.
		gotc := make(chan api.QEMUEBPFArgs, 1)
		path, _ := fakeDaemon(t, func(req *api.Request) []reply {
			if req.Op != api.OpQEMUEBPF {
				return nil
			}
			var a api.QEMUEBPFArgs
			json.Unmarshal(req.Args, &a)
			select {
			case gotc <- a:
			default:
				t.Errorf("a second qemu_ebpf request: %+v", a)
			}
			r := result(req.ID, api.QEMUEBPFResult{QEMUVersion: "10.0.2", Program: "tun_rss_steering_prog", Maps: maps})
			r.fds = devnull(n)
			return []reply{r}
		})
		c, err := Dial(context.Background(), path)
		if err != nil {
			t.Fatal(err)
		}
		before := openFDs(t)
		res, files, err := c.QEMUEBPF(context.Background(), "vm0", "/usr/bin/qemu-system-x86_64")
		select {
		case got := <-gotc:
			if got.Name != "vm0" || got.QEMU != "/usr/bin/qemu-system-x86_64" {
				t.Errorf("request %+v", got)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("the fake daemon never saw the qemu_ebpf request")
		}
		switch {
		case n == 4 && (err != nil || len(files) != 4 || res.QEMUVersion != "10.0.2"):
			t.Errorf("4 fds: %+v %d files, %v", res, len(files), err)
		case n == 4 && (files[0].Name() != "bpf-prog:tun_rss_steering_prog" || files[3].Name() != "bpf-map:tap_rss_map_indirection_table"):
			t.Errorf("files named %q, %q", files[0].Name(), files[3].Name())
		case n != 4 && (err == nil || files != nil):
			t.Errorf("%d fds accepted", n)
		case n != 4:
			// The fake daemon, in this process, closes its copies after
			// sending, and the previous round's server side of the
			// connection, asynchronously: wait for the count to settle.
			// A client that kept the refused fds stays above before.
			left := openFDs(t) - before
			for deadline := time.Now().Add(2 * time.Second); left > 0 && time.Now().Before(deadline); left = openFDs(t) - before {
				time.Sleep(5 * time.Millisecond)
			}
			if left > 0 {
				t.Errorf("%d fds: %d left open", n, left)
			}
		}
		for _, f := range files {
			f.Close()
		}
		c.Close()
	}
}
