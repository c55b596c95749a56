package agent_test

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/agent/client"
	"github.com/vrss-dev/vrss/internal/demo"
	"github.com/vrss-dev/vrss/internal/inject"
	"github.com/vrss-dev/vrss/rss"
)

// TestUnprivilegedVMM is the whole story as a VMM lives it: uid 4242, with
// no capability at all, asks vrssd to create a TAP, opens it (queue fds and
// configuration map), publishes its guest's RSS configuration through the
// mmapped map, and reads its own queues while frames arrive: every frame is
// on the queue the engine predicts. A third uid is refused everything on
// that TAP.
func TestUnprivilegedVMM(t *testing.T) {
	requirePriv(t)
	const vmm, other = 4242, 4343
	d := newDaemon(t, fmt.Sprintf(`{"create": {"uids": [%d, %d]}}`, vmm, other))

	if r := d.asUser(vmm, "call", helperArgs{Op: api.OpCreate, Args: mustJSON(api.CreateArgs{Name: "vm0", Queues: 4})}); r.Error != nil {
		t.Fatalf("create as uid %d: %+v", vmm, r)
	}
	cfg := rss.Config{HashTypes: rss.AllHashTypes, Key: []byte("an unprivileged VMM's own 40-byte key!!!"), Table: rss.WeightedTable(128, []int{1, 2, 3, 4}), UnclassifiedQueue: 2}
	eng, err := rss.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	frames := demo.Frames(60, 10, 7)
	cfgJSON, _ := json.Marshal(cfg)

	cmd := execHelper("vmm", helperArgs{Socket: d.socket, Args: mustJSON(api.NameArgs{Name: "vm0"}), Publish: cfgJSON, Frames: len(frames)})
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: vmm, Gid: vmm}}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	out := bufio.NewReader(stdout)
	if line, err := out.ReadString('\n'); err != nil || line != "READY\n" {
		t.Fatalf("vmm helper: %q, %v", line, err)
	}
	d.inNS(func() {
		ifi, err := net.InterfaceByName("vm0")
		if err != nil {
			t.Fatal(err)
		}
		inj, err := inject.Open(ifi.Index)
		if err != nil {
			t.Fatal(err)
		}
		defer inj.Close()
		for i := 0; i < len(frames); i += 32 {
			if err := inj.SendBatch(frames[i:min(i+32, len(frames))]); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Millisecond) // stay well below a queue's ring size
		}
	})
	var r helperResult
	if err := json.NewDecoder(out).Decode(&r); err != nil {
		t.Fatal(err)
	}
	if r.Error != nil || r.Fail != "" {
		t.Fatalf("vmm helper: %+v", r)
	}
	var got struct{ Queues [][]string }
	if err := json.Unmarshal(r.Result, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{}
	for _, f := range frames {
		want[hex.EncodeToString(f)] = int(eng.Steer(f).Queue)
	}
	n, perQueue := 0, make([]int, 4)
	for q, fs := range got.Queues {
		for _, f := range fs {
			w, ok := want[f]
			if !ok {
				t.Errorf("queue %d: a frame that was not sent: %s", q, f)
				continue
			}
			if w != q {
				t.Errorf("frame on queue %d, engine predicts %d: %s", q, w, f)
			}
			delete(want, f)
			n++
			perQueue[q]++
		}
	}
	if len(want) != 0 {
		t.Errorf("%d frames never arrived", len(want))
	}
	t.Logf("uid %d read %d/%d frames, each on its predicted queue: %v", vmm, n, len(frames), perQueue)

	// Everything on vm0 is refused to a third uid.
	for _, op := range []api.Op{api.OpOpen, api.OpGetRSS, api.OpStats, api.OpDetach, api.OpDelete} {
		wantHidden(t, string(op)+" by a third uid", d.asUser(other, "call", helperArgs{Op: op, Args: mustJSON(api.NameArgs{Name: "vm0"})}))
	}
	wantHidden(t, "set_rss by a third uid", d.asUser(other, "call", helperArgs{Op: api.OpSetRSS, Args: mustJSON(api.SetRSSArgs{Name: "vm0", Config: &cfg})}))
	// Adopting a TAP already under vrssd is refused to anyone (as "exists").
	if r := d.asUser(other, "call", helperArgs{Op: api.OpAdopt, Args: mustJSON(api.AdoptArgs{Name: "vm0", Queues: 4})}); r.Error == nil || r.FDs != 0 {
		t.Fatalf("adopt by a third uid: %+v", r)
	}
}

// vmmHelper is the unprivileged VMM: open, publish through the map, say
// READY, then read a.Frames frames from the queues (10 s at most) and report
// them per queue.
func vmmHelper(ctx context.Context, c *client.Client, a helperArgs, res *helperResult) error {
	var na api.NameArgs
	json.Unmarshal(a.Args, &na)
	h, err := c.Open(ctx, na.Name)
	if err != nil {
		return err
	}
	defer h.Close()
	cfg, err := rss.ParseConfigJSON(a.Publish)
	if err != nil {
		return err
	}
	if err := h.Publisher.Publish(cfg); err != nil {
		return err
	}
	os.Stdout.WriteString("READY\n")
	frames, err := inject.DrainFiles(na.Name, h.Queues, h.TAP.VnetHdrLen, a.Frames, 10*time.Second)
	if err != nil {
		return err
	}
	queues := make([][]string, len(frames))
	for q, fs := range frames {
		for _, f := range fs {
			queues[q] = append(queues[q], hex.EncodeToString(f))
		}
	}
	res.Result = mustJSON(map[string]any{"queues": queues})
	return nil
}
