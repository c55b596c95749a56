package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/vrss-dev/vrss/internal/demo"
	"github.com/vrss-dev/vrss/rss"
	"github.com/vrss-dev/vrss/tap"
)

const demoDescription = `
The main job: show eBPF RSS steering working on a real multi-queue TAP device.
As root, in a throwaway network namespace, it creates a TAP with --queues
queues, loads the vrss steering program, publishes an RSS configuration
(every hash type, the default key, an equal 128-entry table), attaches the
program, injects --flows flows × --per-flow frames with AF_PACKET (TCP, UDP,
ICMP over IPv4 and IPv6, IPv6 extension headers with home address and type 2
routing headers, fragments, QinQ, and frames no hash type applies to), reads
every queue, and checks each frame arrived on the queue the rss engine
predicts. It prints a per-queue histogram and "N/N frames on the predicted
queue", removes everything it made, and exits 1 on any mismatch or loss.

With --rules it loads the flow build instead (flow rules and RSS contexts:
the steering program, and a filter at the TAP's tc egress that drops, which
needs Linux 6.6) and publishes, besides the same RSS configuration, three
rules in one host group:

  rule 1  TCP over IPv4 to port 5001   -> queue 1
  rule 2  UDP over IPv4 to port 5002   -> RSS context 1: its own key, every
                                          hash type, a table of queues 2 and 3
  rule 3  TCP over IPv4 to port 5003   -> drop

and adds, to the flows above, --flows/8 flows for each rule. Every frame is
checked against the flow engine (package flow): a frame it keeps must
arrive once on the queue it predicts; a frame it drops is predicted only if
it is never received (its send is refused: the packet socket reports the
filter's drop as ENOBUFS). It prints the per-queue histogram of the kept
frames, one per rule (the engine's hits, the program's hit counter, and the
frames where predicted), each context's frames per queue, the drops (refused
at send, received, counted by the filter), and "N/N frames where
predicted"; it exits 1 on any mismatch, loss, or counter that differs from
the engine. --rules needs at least 4 queues.`

// demoRun runs the demo; tests replace it to see that bad flags never get
// this far.
var demoRun = demo.Run

// maxDemoFrames bounds the frames one demo sends: it builds them all in
// memory first, and numbers them in 32 bits.
const maxDemoFrames = 1 << 24

func runDemo(args []string, stdout, stderr io.Writer) int {
	return report(stderr, "demo", demoMain(args, stdout))
}

func demoMain(args []string, stdout io.Writer) error {
	fs := newFlagSet("demo", "[--queues N] [--flows N] [--per-flow N] [--rules] [--json]", demoDescription)
	queues := fs.Int("queues", 4, fmt.Sprintf("TAP queues, 1 to %d", tap.MaxQueues))
	flows := fs.Int("flows", 1000, "distinct flows, at least 12 so that every kind of flow appears")
	perFlow := fs.Int("per-flow", 10, fmt.Sprintf("frames sent per flow; flows × per-flow at most %d", maxDemoFrames))
	jsonOut := fs.Bool("json", false, "print the result as one JSON object")
	rules := fs.Bool("rules", false, "run the flow build with a queue rule, an RSS context and a drop rule\n(needs 4 queues or more; see above)")
	pos, err := fs.parse(args, stdout)
	if err != nil {
		return err
	}
	if err := noArgs(pos); err != nil {
		return err
	}
	switch {
	case *queues < 1 || *queues > tap.MaxQueues:
		return inputErrorf("--queues %d: want 1 to %d", *queues, tap.MaxQueues)
	case *flows < 12:
		return inputErrorf("--flows %d: want at least 12", *flows)
	case *perFlow < 1:
		return inputErrorf("--per-flow %d: want at least 1", *perFlow)
	case *flows > maxDemoFrames / *perFlow: // flows × per-flow, without overflow
		return inputErrorf("--flows %d × --per-flow %d: want at most %d frames", *flows, *perFlow, maxDemoFrames)
	case *rules && *queues < demo.RulesMinQueues:
		return inputErrorf("--rules with --queues %d: want at least %d queues (the RSS context uses queues 2 and 3)", *queues, demo.RulesMinQueues)
	case *rules && *flows+3*demo.RuleFlowsPer(*flows) > maxDemoFrames / *perFlow:
		return inputErrorf("--rules with --flows %d × --per-flow %d: want at most %d frames, the rules' flows included", *flows, *perFlow, maxDemoFrames)
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root: it creates a network namespace, a TAP device and loads eBPF (run it as root, or with sudo)")
	}
	res, err := demoRun(demo.Options{Queues: *queues, Flows: *flows, PerFlow: *perFlow, Rules: *rules})
	if err != nil {
		return err
	}
	w := bufio.NewWriter(stdout)
	if *jsonOut {
		json.NewEncoder(w).Encode(demoJSON(res))
	} else {
		printDemo(w, res)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if !res.OK() {
		if res.Flows != nil {
			return fmt.Errorf("%d of %d frames where predicted, %d received, %d dropped; counters agree: %v", res.Correct, res.Sent, res.Received, res.Flows.Drops.Predicted, res.Flows.CountersAgree())
		}
		return fmt.Errorf("%d of %d frames on the predicted queue, %d received", res.Correct, res.Sent, res.Received)
	}
	return nil
}

// demoJSON is what --json prints: the configuration in its one JSON form
// (hash_types are the enabled hash types), and per report type the frames
// the engine hashed as that type. Lists are [] rather than null when empty.
func demoJSON(res *demo.Result) map[string]any {
	reports := map[string]int{}
	for r, n := range res.Reports {
		reports[r.String()] = n
	}
	nonNil := func(s []int) []int {
		if s == nil {
			return []int{}
		}
		return s
	}
	wrong := res.Wrong
	if wrong == nil {
		wrong = []string{}
	}
	out := map[string]any{
		"device": res.Device, "queues": res.Queues, "config": res.Config, "sent": res.Sent, "received": res.Received,
		"on_predicted_queue": res.Correct, "predicted": nonNil(res.Predicted), "observed": nonNil(res.Observed),
		"reports": reports, "foreign": res.Foreign, "mismatches": wrong, "ok": res.OK(),
	}
	if f := res.Flows; f != nil {
		// With rules, "predicted", "observed" and "reports" are the kept
		// frames'; "where_predicted" counts the dropped frames that
		// were not received too, "on_predicted_queue" only kept ones.
		out["where_predicted"] = res.Correct
		out["on_predicted_queue"] = res.Correct - (f.Drops.Predicted - f.Drops.Received)
		rules := []map[string]any{}
		for _, r := range f.Rules {
			rules = append(rules, map[string]any{"id": r.ID, "match": r.Match, "action": r.Action.String(),
				"predicted": r.Predicted, "where_predicted": r.AsPredicted, "counted": r.Counted})
		}
		contexts := []map[string]any{}
		for _, c := range f.Contexts {
			contexts = append(contexts, map[string]any{"id": c.ID, "config": c.Config,
				"predicted": nonNil(c.Predicted), "observed": nonNil(c.Observed), "counted": c.Counted})
		}
		out["rules"], out["contexts"] = rules, contexts
		out["drops"] = map[string]any{"predicted": f.Drops.Predicted, "refused": f.Drops.Refused,
			"received": f.Drops.Received, "counted": f.Drops.Counted}
		out["raced"] = f.Raced
		out["counters_agree"] = f.CountersAgree()
	}
	return out
}

func printDemo(w io.Writer, res *demo.Result) {
	// Hash types (what the configuration enables: ipv4, ..., tcp_ex) and
	// hash reports (what a frame was hashed as: none, ..., tcpv6_ex) have
	// similar names; the labels say which is which.
	f := res.Flows
	build := "eBPF steering"
	if f != nil {
		build = "eBPF steering with flow rules"
	}
	fmt.Fprintf(w, "TAP %s, %d queues, %s, key %x…, %d-entry indirection table\n",
		res.Device, res.Queues, build, res.Config.Key[:min(8, len(res.Config.Key))], len(res.Config.Table))
	fmt.Fprintf(w, "hash types enabled: %s\n", res.Config.HashTypes)
	if f != nil {
		fmt.Fprintf(w, "rules, tried in this order:\n")
		for _, r := range f.Rules {
			fmt.Fprintf(w, "  rule %d  %-40s -> %s\n", r.ID, r.Match, r.Action)
		}
		for _, c := range f.Contexts {
			fmt.Fprintf(w, "  RSS context %d: key %x…, %d-entry table over queues %s\n", c.ID, c.Config.Key[:min(8, len(c.Config.Key))], len(c.Config.Table), tableQueues(c.Config.Table))
		}
		fmt.Fprintf(w, "sent %d frames in %v (%d for the rules to drop), per hash report of the kept ones:\n  ", res.Sent, res.Elapsed.Round(1e6), f.Drops.Predicted)
	} else {
		fmt.Fprintf(w, "sent %d frames in %v, per hash report (what each frame is hashed as):\n  ", res.Sent, res.Elapsed.Round(1e6))
	}
	sep := ""
	for r := rss.ReportNone; r <= rss.ReportUDPv6Ex; r++ {
		if n := res.Reports[r]; n > 0 {
			fmt.Fprintf(w, "%s%s %d", sep, r, n)
			sep = ", "
		}
	}
	fmt.Fprint(w, "\n\n")
	fmt.Fprintf(w, "queue  predicted  observed\n")
	for q := range res.Queues {
		bar := 0
		if res.Sent > 0 {
			bar = res.Observed[q] * 50 / res.Sent
		}
		fmt.Fprintf(w, "%5d  %9d  %8d  %s\n", q, res.Predicted[q], res.Observed[q], strings.Repeat("#", bar))
	}
	fmt.Fprintln(w)
	if f != nil {
		printRules(w, res)
	}
	for _, m := range res.Wrong {
		fmt.Fprintf(w, "MISMATCH %s\n", m)
	}
	if res.Foreign > 0 {
		fmt.Fprintf(w, "(%d frames not sent by the demo were also read and ignored)\n", res.Foreign)
	}
	if f != nil {
		fmt.Fprintf(w, "%d/%d frames where predicted (%d dropped as predicted)\n", res.Correct, res.Sent, f.Drops.Predicted-f.Drops.Received)
		return
	}
	fmt.Fprintf(w, "%d/%d frames on the predicted queue\n", res.Correct, res.Sent)
}

// printRules prints a run with rules' per-rule histogram, each context's
// frames per queue and the drops.
func printRules(w io.Writer, res *demo.Result) {
	f := res.Flows
	fmt.Fprintf(w, "rule  action      predicted  counted  where predicted\n")
	for _, r := range f.Rules {
		bar := 0
		if res.Sent > 0 {
			bar = r.AsPredicted * 50 / res.Sent
		}
		fmt.Fprintf(w, "%4d  %-10s  %9d  %7d  %15d  %s\n", r.ID, r.Action, r.Predicted, r.Counted, r.AsPredicted, strings.Repeat("#", bar))
	}
	for _, c := range f.Contexts {
		fmt.Fprintf(w, "RSS context %d, per queue (predicted/observed/counted):", c.ID)
		for q := range c.Predicted {
			if c.Predicted[q] > 0 || c.Observed[q] > 0 || c.Counted[q] > 0 {
				fmt.Fprintf(w, "  %d: %d/%d/%d", q, c.Predicted[q], c.Observed[q], c.Counted[q])
			}
		}
		fmt.Fprintln(w)
	}
	d := f.Drops
	fmt.Fprintf(w, "dropped: %d predicted, %d sends refused (ENOBUFS), %d received, %d counted by the filter\n\n", d.Predicted, d.Refused, d.Received, d.Counted)
}

// tableQueues lists the queues an indirection table names, in order.
func tableQueues(table []uint16) string {
	seen := map[uint16]bool{}
	var qs []string
	for _, q := range table {
		if !seen[q] {
			seen[q] = true
			qs = append(qs, fmt.Sprint(q))
		}
	}
	return strings.Join(qs, ",")
}
