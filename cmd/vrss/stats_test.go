package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/vrss-dev/vrss/agent/api"
)

func TestPrintStats(t *testing.T) {
	prev := api.Stats{Name: "t0", Queues: []uint64{10, 0, 30, 0}}
	cur := api.Stats{Name: "t0", Queues: []uint64{30, 0, 70, 0}, Unclassified: 5}
	var b bytes.Buffer
	printStats(&b, cur, &prev, 2*time.Second)
	out := b.String()
	for _, want := range []string{
		"t0: 100 packets steered, 5 unclassified\n",
		"    0            30   30.0%          10  ############\n",
		"    2            70   70.0%          20  ############################\n",
		"    3             0    0.0%           0  \n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
}
