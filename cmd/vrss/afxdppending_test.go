package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/vrss-dev/vrss/agent/api"
)

// TestPrintAFXDPPending: the table says which queues are pending (the
// kernel refused their sockets unbound) and which were orphaned by a
// restart, and says nothing of either when there are none.
func TestPrintAFXDPPending(t *testing.T) {
	var b bytes.Buffer
	ports := []api.AFXDPPort{
		{Name: "a0", Dev: "eth0", QueueStart: 0, Queues: 4, Attached: true, Pending: []int{1, 3}},
		{Name: "b0", Dev: "eth1", QueueStart: 2, Queues: 2, Attached: true, Orphaned: []int{2, 3}},
		{Name: "c0", Dev: "eth2", QueueStart: 0, Queues: 1, Attached: true},
	}
	if err := printAFXDP(&b, ports); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"a0: queues 1,3 pending: the kernel refused their sockets unbound; vrssd inserts each once its owner has bound it",
		"b0: queues 2,3 orphaned: they were pending when vrssd stopped",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
	if strings.Contains(out, "c0: queues") {
		t.Errorf("c0 has nothing pending:\n%s", out)
	}
}
