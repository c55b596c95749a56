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
queue", removes everything it made, and exits 1 on any mismatch or loss.`

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
	fs := newFlagSet("demo", "[--queues N] [--flows N] [--per-flow N] [--json]", demoDescription)
	queues := fs.Int("queues", 4, fmt.Sprintf("TAP queues, 1 to %d", tap.MaxQueues))
	flows := fs.Int("flows", 1000, "distinct flows, at least 12 so that every kind of flow appears")
	perFlow := fs.Int("per-flow", 10, fmt.Sprintf("frames sent per flow; flows × per-flow at most %d", maxDemoFrames))
	jsonOut := fs.Bool("json", false, "print the result as one JSON object")
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
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root: it creates a network namespace, a TAP device and loads eBPF (run it as root, or with sudo)")
	}
	res, err := demoRun(demo.Options{Queues: *queues, Flows: *flows, PerFlow: *perFlow})
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
	return map[string]any{
		"device": res.Device, "queues": res.Queues, "config": res.Config, "sent": res.Sent, "received": res.Received,
		"on_predicted_queue": res.Correct, "predicted": nonNil(res.Predicted), "observed": nonNil(res.Observed),
		"reports": reports, "foreign": res.Foreign, "mismatches": wrong, "ok": res.OK(),
	}
}

func printDemo(w io.Writer, res *demo.Result) {
	// Hash types (what the configuration enables: ipv4, ..., tcp_ex) and
	// hash reports (what a frame was hashed as: none, ..., tcpv6_ex) have
	// similar names; the labels say which is which.
	fmt.Fprintf(w, "TAP %s, %d queues, eBPF steering, key %x…, %d-entry indirection table\n",
		res.Device, res.Queues, res.Config.Key[:min(8, len(res.Config.Key))], len(res.Config.Table))
	fmt.Fprintf(w, "hash types enabled: %s\n", res.Config.HashTypes)
	fmt.Fprintf(w, "sent %d frames in %v, per hash report (what each frame is hashed as):\n  ", res.Sent, res.Elapsed.Round(1e6))
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
	for _, m := range res.Wrong {
		fmt.Fprintf(w, "MISMATCH %s\n", m)
	}
	if res.Foreign > 0 {
		fmt.Fprintf(w, "(%d frames not sent by the demo were also read and ignored)\n", res.Foreign)
	}
	fmt.Fprintf(w, "%d/%d frames on the predicted queue\n", res.Correct, res.Sent)
}
