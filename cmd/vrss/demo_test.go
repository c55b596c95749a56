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

// The demo with rules, as the README runs it, on a small scale: a queue
// rule, an RSS context and a drop rule on a real TAP; text and JSON.
func TestDemoRulesCommand(t *testing.T) {
	for _, need := range []string{"root", "tap", "bpf", "netns"} {
		privtest.Require(t, need)
	}
	code, out, errOut := vrss(t, "demo", "--rules", "--flows", "24", "--per-flow", "3")
	if code != 0 || errOut != "" {
		t.Fatalf("exit %d, stderr %q\n%s", code, errOut, out)
	}
	// 24 flows and 3 for each rule, 3 frames each; the drop rule's 9 frames
	// are refused.
	for _, want := range []string{"4 queues, eBPF steering with flow rules", "queue  predicted  observed",
		"rule  action      predicted  counted  where predicted",
		"   1  queue 1             9        9                9",
		"   2  context 1           9        9                9",
		"   3  drop                9        9                9",
		"RSS context 1, per queue (predicted/observed/counted):",
		"dropped: 9 predicted, 9 sends refused (ENOBUFS), 0 received, 9 counted by the filter",
		"99/99 frames where predicted (9 dropped as predicted)\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = vrss(t, "demo", "--rules", "--json", "--queues", "8", "--flows", "16", "--per-flow", "1")
	var res struct {
		OK             bool `json:"ok"`
		Sent           int  `json:"sent"`
		WherePredicted int  `json:"where_predicted"`
		OnQueue        int  `json:"on_predicted_queue"`
		CountersAgree  bool `json:"counters_agree"`
		Rules          []struct {
			ID        uint32 `json:"id"`
			Action    string `json:"action"`
			Predicted int    `json:"predicted"`
			Counted   int    `json:"counted"`
		} `json:"rules"`
		Drops struct {
			Predicted, Refused, Received, Counted int
		} `json:"drops"`
		Contexts []struct {
			Observed []int `json:"observed"`
		} `json:"contexts"`
	}
	if err := json.Unmarshal([]byte(out), &res); code != 0 || err != nil || !res.OK || !res.CountersAgree || res.Sent != 22 || res.WherePredicted != 22 || res.OnQueue != 20 {
		t.Fatalf("--json: exit %d, %v, %+v\n%s", code, err, res, out)
	}
	if len(res.Rules) != 3 || res.Rules[2].Action != "drop" || res.Rules[2].Counted != 2 || res.Drops.Refused != 2 || len(res.Contexts) != 1 || len(res.Contexts[0].Observed) != 8 {
		t.Errorf("--json: %+v\n%s", res, out)
	}
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

// With rules, the text shows the rules, a histogram per rule, the
// context's queues and the drops, and counts dropped frames as predicted.
func TestDemoRulesText(t *testing.T) {
	set := demo.RulesSet(4, demo.DefaultConfig(4))
	res := &demo.Result{
		Device: "vrssdemo0", Queues: 4, Config: set.Default, Sent: 10, Received: 8, Correct: 10,
		Predicted: []int{2, 3, 2, 1}, Observed: []int{2, 3, 2, 1},
		Reports: map[rss.HashReport]int{rss.ReportTCPv4: 6, rss.ReportUDPv4: 2}, Elapsed: 2 * time.Millisecond,
		Flows: &demo.FlowResult{Set: set,
			Rules: []demo.RuleCount{
				{ID: 1, Match: set.Rules[0].Match.String(), Action: set.Rules[0].Action, Predicted: 2, AsPredicted: 2, Counted: 2},
				{ID: 2, Match: set.Rules[1].Match.String(), Action: set.Rules[1].Action, Predicted: 3, AsPredicted: 3, Counted: 3},
				{ID: 3, Match: set.Rules[2].Match.String(), Action: set.Rules[2].Action, Predicted: 2, AsPredicted: 2, Counted: 2},
			},
			Contexts: []demo.ContextCount{{ID: 1, Config: set.Contexts[0].Config, Predicted: []int{0, 0, 2, 1}, Observed: []int{0, 0, 2, 1}, Counted: []uint64{0, 0, 2, 1}}},
			Drops:    demo.DropCount{Predicted: 2, Refused: 2, Counted: 2},
		},
	}
	var b bytes.Buffer
	printDemo(&b, res)
	want := `TAP vrssdemo0, 4 queues, eBPF steering with flow rules, key 6d5a56da255b0ec2…, 128-entry indirection table
hash types enabled: ipv4,tcpv4,udpv4,ipv6,tcpv6,udpv6,ip_ex,tcp_ex,udp_ex
rules, tried in this order:
  rule 1  ether-type 0x0800 proto 6 dst-port 5001  -> queue 1
  rule 2  ether-type 0x0800 proto 17 dst-port 5002 -> context 1
  rule 3  ether-type 0x0800 proto 6 dst-port 5003  -> drop
  RSS context 1: key 030a11181f262d34…, 2-entry table over queues 2,3
sent 10 frames in 2ms (2 for the rules to drop), per hash report of the kept ones:
  tcpv4 6, udpv4 2

queue  predicted  observed
    0          2         2  ##########
    1          3         3  ###############
    2          2         2  ##########
    3          1         1  #####

rule  action      predicted  counted  where predicted
   1  queue 1             2        2                2  ##########
   2  context 1           3        3                3  ###############
   3  drop                2        2                2  ##########
RSS context 1, per queue (predicted/observed/counted):  2: 2/2/2  3: 1/1/1
dropped: 2 predicted, 2 sends refused (ENOBUFS), 0 received, 2 counted by the filter

10/10 frames where predicted (2 dropped as predicted)
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
	if !res.OK() {
		t.Error("a run where everything is as predicted is not OK")
	}
	// A counter that disagrees with the engine fails the run, and --json
	// says which.
	res.Flows.Rules[1].Counted = 4
	if res.OK() {
		t.Error("a rule counter off by one passed")
	}
	j := demoJSON(res)
	if j["counters_agree"] != false || j["where_predicted"] != 10 || j["on_predicted_queue"] != 8 {
		t.Errorf("--json: counters_agree %v, where_predicted %v, on_predicted_queue %v", j["counters_agree"], j["where_predicted"], j["on_predicted_queue"])
	}
	// Bad input is refused before anything else, root or not.
	wantInputError(t, "--rules with --queues 2: want at least 4 queues", "demo", "--rules", "--queues", "2")
	code, out, _ := vrss(t, "help", "demo")
	if code != exitOK || !strings.Contains(out, "\n  -rules\n") || !strings.Contains(out, "rule 3  TCP over IPv4 to port 5003   -> drop") {
		t.Errorf("vrss help demo: exit %d, --rules not explained:\n%s", code, out)
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
