package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vrss-dev/vrss/internal/demo"
	"github.com/vrss-dev/vrss/internal/privtest"
	"github.com/vrss-dev/vrss/rss"
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
	if !strings.Contains(out, `"mismatches":[]`) {
		t.Errorf("--json without mismatches: want \"mismatches\":[]\n%s", out)
	}
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

// demoResult is a run of 2 queues with nothing lost.
func demoResult() *demo.Result {
	return &demo.Result{
		Device: "vrssdemo0", Queues: 2, Config: demo.DefaultConfig(2), Sent: 4, Received: 4, Correct: 4,
		Predicted: []int{3, 1}, Observed: []int{3, 1},
		Reports: map[rss.HashReport]int{rss.ReportNone: 1, rss.ReportTCPv4: 2, rss.ReportTCPv6Ex: 1},
		Elapsed: 3 * time.Millisecond,
	}
}

// The text output labels the configuration's hash types and the frames'
// hash reports, whose names are alike (tcp_ex, tcpv6_ex), as what they are.
func TestDemoText(t *testing.T) {
	var b bytes.Buffer
	printDemo(&b, demoResult())
	want := `TAP vrssdemo0, 2 queues, eBPF steering, key 6d5a56da255b0ec2…, 128-entry indirection table
hash types enabled: ipv4,tcpv4,udpv4,ipv6,tcpv6,udpv6,ip_ex,tcp_ex,udp_ex
sent 4 frames in 3ms, per hash report (what each frame is hashed as):
  none 1, tcpv4 2, tcpv6_ex 1

queue  predicted  observed
    0          3         3  #####################################
    1          1         1  ############

4/4 frames on the predicted queue
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

// --json prints every list as a list: no mismatches is [], not null.
func TestDemoJSON(t *testing.T) {
	cases := []struct {
		res  *demo.Result
		want string
		code int
	}{
		{demoResult(), `"mismatches":[]`, exitOK},
		{func() *demo.Result {
			r := demoResult()
			r.Correct, r.Wrong = 3, []string{"frame 2 on queue 1, predicted 0"}
			return r
		}(), `"mismatches":["frame 2 on queue 1, predicted 0"]`, exitFailed},
		{&demo.Result{Device: "vrssdemo0", Queues: 2, Config: demo.DefaultConfig(2)},
			`"mismatches":[],"observed":[],"ok":false,"on_predicted_queue":0,"predicted":[]`, exitFailed},
	}
	check := func(out string, want string) {
		t.Helper()
		var v map[string]any
		if err := json.Unmarshal([]byte(out), &v); err != nil || !strings.Contains(out, want) {
			t.Errorf("%v: output lacks %s:\n%s", err, want, out)
			return
		}
		if c, ok := v["config"].(map[string]any); !ok || len(c["hash_types"].([]any)) != 9 {
			t.Errorf("config: %v", v["config"])
		}
	}
	for _, tc := range cases {
		b, err := json.Marshal(demoJSON(tc.res))
		if err != nil {
			t.Fatal(err)
		}
		check(string(b), tc.want)
	}

	// The command itself, with the run replaced: it checks for root first.
	if os.Geteuid() != 0 {
		t.Skip("vrss demo stops before the run without root")
	}
	saved := demoRun
	defer func() { demoRun = saved }()
	for _, tc := range cases {
		demoRun = func(demo.Options) (*demo.Result, error) { return tc.res, nil }
		code, out, _ := vrss(t, "demo", "--json")
		if code != tc.code {
			t.Errorf("exit %d, want %d", code, tc.code)
		}
		check(out, tc.want)
	}
	demoRun = func(demo.Options) (*demo.Result, error) { return nil, errors.New("boom") }
	if code, out, errOut := vrss(t, "demo", "--json"); code != exitFailed || out != "" || !strings.Contains(errOut, "boom") {
		t.Errorf("failed run: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}
