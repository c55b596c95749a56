package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/vrss-dev/vrss/agent/api"
)

func runStats(args []string, stdout, stderr io.Writer) int {
	return report(stderr, "stats", statsMain(args, stdout))
}

func statsMain(args []string, stdout io.Writer) error {
	fs := newFlagSet("stats", "NAME [--watch [--interval D]] [--json]", fmt.Sprintf(`
Show a TAP's steering counters: packets the program put on each queue, with
each queue's share as a bar, and how many were unclassified (they are also
counted on the unclassified queue). With --watch the view refreshes every
--interval, adding each queue's packet rate, until interrupted.

For a TAP with flows (vrss tap create --flows) it shows too the frames drop
rules dropped, each rule's hits (at most the %d rules with the most; vrss flow
list has every rule's) and the frames each RSS context sent to each queue;
--json has them under "flows".`, api.MaxStatsRules))
	watch := fs.Bool("watch", false, "refresh until interrupted (Ctrl-C)")
	interval := fs.Duration("interval", time.Second, "refresh interval for --watch")
	asJSON := fs.Bool("json", false, "print JSON (with --watch, one object a line)")
	socket := fs.String("socket", "", socketHelp)
	netns := fs.String("netns", "", netnsHelp)
	pos, err := fs.parse(args, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return inputErrorf("want exactly one TAP name (run 'vrss stats -h')")
	}
	if *interval <= 0 {
		return inputErrorf("--interval %v: want a positive duration", *interval)
	}
	c, ctx, cancel, err := dial(*socket)
	if err != nil {
		return err
	}
	defer cancel()
	defer c.Close()
	st, err := c.Netns(*netns).Stats(ctx, pos[0])
	if err != nil {
		return daemonError(err)
	}
	if !*watch {
		if *asJSON {
			return writeJSON(stdout, st)
		}
		printStats(stdout, st, nil, 0)
		return nil
	}

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt)
	defer signal.Stop(stop)
	tty := isTerminal(stdout)
	var prev *api.Stats
	for {
		if *asJSON {
			if err := writeJSON(stdout, st); err != nil {
				return err
			}
		} else {
			var b bytes.Buffer
			if tty {
				b.WriteString("\033[H\033[2J") // clear the screen
			}
			fmt.Fprintf(&b, "%s  (every %v, Ctrl-C to stop)\n", time.Now().Format("15:04:05"), *interval)
			printStats(&b, st, prev, *interval)
			stdout.Write(b.Bytes())
		}
		last := st // a copy: st is overwritten by the next poll
		prev = &last
		select {
		case <-stop:
			return nil
		case <-time.After(*interval):
		}
		// Each poll gets its own deadline; the watch itself runs until stopped.
		c2, ctx2, cancel2, err := dial(*socket)
		if err != nil {
			return err
		}
		st, err = c2.Netns(*netns).Stats(ctx2, pos[0])
		c2.Close()
		cancel2()
		if err != nil {
			return daemonError(err)
		}
	}
}

func printStats(w io.Writer, st api.Stats, prev *api.Stats, interval time.Duration) {
	var total uint64
	for _, n := range st.Queues {
		total += n
	}
	fmt.Fprintf(w, "%s: %d packets steered, %d unclassified\n", st.Name, total, st.Unclassified)
	fmt.Fprintf(w, "queue  %12s  %6s", "packets", "share")
	if prev != nil {
		fmt.Fprintf(w, "  %10s", "pkt/s")
	}
	fmt.Fprintln(w)
	for q, n := range st.Queues {
		share := 0.0
		if total > 0 {
			share = float64(n) / float64(total)
		}
		fmt.Fprintf(w, "%5d  %12d  %5.1f%%", q, n, 100*share)
		if prev != nil && q < len(prev.Queues) {
			fmt.Fprintf(w, "  %10.0f", float64(n-prev.Queues[q])/interval.Seconds())
		}
		fmt.Fprintf(w, "  %s\n", strings.Repeat("#", int(share*40+0.5)))
	}
	if st.Retries > 0 || st.Torn > 0 {
		fmt.Fprintf(w, "re-read during a publish: %d, gave up: %d\n", st.Retries, st.Torn)
	}
	// What the kernel says: the program's queue is taken modulo this.
	fmt.Fprintf(w, "queues enabled in the kernel: %d of %d\n", st.AttachedQueues, len(st.Queues))
	if st.Reattached > 0 {
		fmt.Fprintf(w, "program re-attached after a VMM detached it: %d times\n", st.Reattached)
	}
	if st.Flows != nil {
		printFlowStats(w, st.Flows)
	}
}

// printFlowStats prints the flow counters of a TAP with flows.
func printFlowStats(w io.Writer, f *api.FlowStats) {
	n := len(f.Rules) + f.RulesOmitted
	fmt.Fprintf(w, "flow rules: %d, frames dropped: %d\n", n, f.Dropped)
	if f.Raced > 0 || f.Unattributed > 0 {
		fmt.Fprintf(w, "drop rules met while the rules changed (steered by RSS): %d; hits of rules without a counter: %d\n", f.Raced, f.Unattributed)
	}
	if f.NoRulePath > 0 {
		fmt.Fprintf(w, "WARNING: %d frames found no rule path (the TAP's jump pin is gone: restart vrssd to steer it anew) and went to the unclassified queue\n", f.NoRulePath)
	}
	if len(f.Rules) > 0 {
		fmt.Fprintf(w, "%6s  %10s  %12s\n", "rule", "group", "hits")
		for _, r := range f.Rules {
			fmt.Fprintf(w, "%6d  %10d  %12d\n", r.ID, r.Group, r.Hits)
		}
		if f.RulesOmitted > 0 {
			fmt.Fprintf(w, "(%d rules with fewer hits not shown: vrss flow list)\n", f.RulesOmitted)
		}
	}
	for _, c := range f.Contexts {
		var total uint64
		parts := make([]string, 0, len(c.Frames))
		for q, n := range c.Frames {
			total += n
			if n > 0 {
				parts = append(parts, fmt.Sprintf("queue %d: %d", q, n))
			}
		}
		fmt.Fprintf(w, "RSS context %d: %d frames", c.ID, total)
		if len(parts) > 0 {
			fmt.Fprintf(w, " (%s)", strings.Join(parts, ", "))
		}
		fmt.Fprintln(w)
	}
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
