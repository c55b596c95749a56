package agent

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/agent/internal/kernel"
	"github.com/vrss-dev/vrss/steering"
)

func TestUserLimits(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newUserLimits(10, slog.New(slog.NewTextHandler(io.Discard, nil)))
	l.now = func() time.Time { return now }
	allowed := 0
	for range 50 {
		if l.allow(7) {
			allowed++
		}
	}
	if allowed != 20 {
		t.Fatalf("a burst of 50: %d allowed, want the bucket's 20", allowed)
	}
	if !l.allow(8) {
		t.Fatal("another uid shares the first one's bucket")
	}
	now = now.Add(time.Second)
	allowed = 0
	for range 50 {
		if l.allow(7) {
			allowed++
		}
	}
	if allowed != 10 {
		t.Fatalf("after 1 s at 10/s: %d allowed", allowed)
	}

	var lines []int
	for range 25 {
		l.logRefusal(7, func(suppressed int) { lines = append(lines, suppressed) })
	}
	if len(lines) != refusalLogBurst {
		t.Fatalf("%d lines for 25 refusals in a window", len(lines))
	}
	now = now.Add(refusalLogWindow)
	l.logRefusal(7, func(suppressed int) { lines = append(lines, suppressed) })
	if got := lines[len(lines)-1]; got != 25-refusalLogBurst {
		t.Fatalf("the next window's first line reports %d suppressed, want %d", got, 25-refusalLogBurst)
	}
}

func TestKernelOwner(t *testing.T) {
	const unset = kernel.Unset
	p := &peer{uid: 4242, gid: 4242, extra: []int{4300}}
	for _, tc := range []struct {
		owner, group uint32
		want         bool
	}{
		{4242, unset, true},
		{4242, 4242, true},
		{4242, 4300, true},   // a supplementary group
		{4242, 4243, false},  // the owner, not in the group (tun_not_capable)
		{4243, 4242, false},  // in the group, not the owner
		{unset, 4242, false}, // group only: no owner to give it to
		{unset, unset, false},
	} {
		tt := &kernel.Link{Owner: tc.owner, Group: tc.group}
		if got := kernelOwner(p, tt); got != tc.want {
			t.Errorf("owner %d group %d: %v, want %v", int32(tc.owner), int32(tc.group), got, tc.want)
		}
	}
}

func TestStateRecords(t *testing.T) {
	good := tapState{Name: "vm.0", Index: 3, Queues: 4, VnetHdrLen: 12, OwnerUID: 1000, OwnerGID: 1000}
	if err := good.validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mod  func(*tapState)
		want string
	}{
		{func(r *tapState) { r.Name = "../x" }, "not a valid interface name"},
		{func(r *tapState) { r.Name = "" }, "name is required"},
		{func(r *tapState) { r.Index = 0 }, "ifindex 0"},
		{func(r *tapState) { r.Queues = 0 }, "0 queues"},
		{func(r *tapState) { r.Queues = api.MaxQueues + 1 }, "253 queues"},
		{func(r *tapState) { r.VnetHdrLen = 0 }, "vnet header length 0"},
		{func(r *tapState) { r.OwnerUID = -1 }, "owner uid -1"},
		{func(r *tapState) { r.OwnerGID = 1 << 32 }, "owner gid"},
	} {
		r := good
		tc.mod(&r)
		if err := r.validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", r, err, tc.want)
		}
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "state.json"), []byte(`{"version":2,"taps":[{"name":"a","index":1,"queues":2,"vnet_hdr_len":12},{"name":"a","index":2,"queues":2,"vnet_hdr_len":12}]}`), 0o600)
	if _, err := readState(dir); err == nil || !strings.Contains(err.Error(), "listed twice") {
		t.Fatalf("a duplicate record: %v", err)
	}
}

// Pin directory names: no dot (bpffs refuses them), and no two valid
// interface names share one.
func TestPinDirName(t *testing.T) {
	seen := map[string]string{}
	for _, name := range []string{"vm0", "vm.0", "vm%2e0x", "maps.debug", "a..b", "a.b.c", ".x", "x."} {
		if checkName(name) != nil {
			continue // not an interface name vrssd accepts: skip
		}
		p := pinDirName(name)
		if strings.Contains(p, ".") {
			t.Errorf("%q → %q has a dot", name, p)
		}
		if other, ok := seen[p]; ok {
			t.Errorf("%q and %q share %q", name, other, p)
		}
		seen[p] = name
	}
	if pinDirName("vm0") != "vm0" {
		t.Error("a name without a dot must keep its directory (state from earlier vrssd versions)")
	}
}

func TestCheckOwnDir(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	dir := t.TempDir()
	if err := checkOwnDir("x", dir); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o775)
	if err := checkOwnDir("x", dir); err == nil || !strings.Contains(err.Error(), "writable by group or others") {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	os.Chown(dir, 4242, 0)
	if err := checkOwnDir("x", dir); err == nil || !strings.Contains(err.Error(), "owned by uid 4242") {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "l")
	os.Symlink(dir, link)
	if err := checkOwnDir("x", link); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatal(err)
	}
}

func TestLoadErrorOutOfFDs(t *testing.T) {
	err := loadError(&steering.UnavailableError{Reason: steering.ReasonNoFDs, Err: fmt.Errorf("map create: %w", unix.EMFILE)})
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Code != api.CodeBusy || !strings.Contains(ae.Message, "out of file descriptors") || strings.Contains(ae.Message, "kernel") {
		t.Fatalf("%v", err)
	}
}
