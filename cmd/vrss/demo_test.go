package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/vrss-dev/vrss/internal/privtest"
)

// The main job, as the README runs it, on a small scale: text and JSON.
func TestDemoCommand(t *testing.T) {
	for _, need := range []string{"root", "tap", "bpf", "netns"} {
		privtest.Require(t, need)
	}
	code, out, errOut := vrss(t, "demo", "--queues", "2", "--flows", "24", "--per-flow", "3")
	if code != 0 || errOut != "" {
		t.Fatalf("exit %d, stderr %q\n%s", code, errOut, out)
	}
	for _, want := range []string{"2 queues, eBPF steering", "queue  predicted  observed", "72/72 frames on the predicted queue\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = vrss(t, "demo", "--json", "--flows", "12", "--per-flow", "1")
	var res struct {
		OK        bool  `json:"ok"`
		Sent      int   `json:"sent"`
		Predicted []int `json:"predicted"`
		Observed  []int `json:"observed"`
	}
	if err := json.Unmarshal([]byte(out), &res); code != 0 || err != nil || !res.OK || res.Sent != 12 || len(res.Observed) != 4 {
		t.Fatalf("--json: exit %d, %v, %+v\n%s", code, err, res, out)
	}
	wantInputError(t, "--flows 3: want at least 12", "demo", "--flows", "3")
}
