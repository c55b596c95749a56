package main

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/flow"
)

const flowUsage = "flow (add TAP WORDS... | del TAP ID | list TAP [--json]) [--netns PATH]"

func runFlow(args []string, stdout, stderr io.Writer) int {
	return report(stderr, "flow", subcommand("flow", map[string]func([]string, io.Writer) error{
		"add":  flowAdd,
		"del":  flowDel,
		"list": flowList,
	}, flowUsage, args, stdout))
}

// flowsNote says which TAPs take flow rules, for every flow command's help.
const flowsNote = `Only a TAP created with --flows (vrss tap create NAME --queues N --flows)
takes flow rules and RSS contexts; vrssd refuses them on another. A TAP in
another network namespace (vrss tap create --netns) is named with --netns.`

// splitFlags separates the flags a command knows (valued: those that take
// a value) from its other arguments, which may look like flags: a rule's
// "action -1" must not be read as a flag -1.
func splitFlags(args []string, valued, bools []string) (flags, pos []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		switch {
		case !strings.HasPrefix(a, "-") || a == "-" || a == "--":
			pos = append(pos, a)
		case name == "h" || name == "help" || oneOf(name, bools...):
			flags = append(flags, a)
		case oneOf(name, valued...):
			flags = append(flags, a)
			if !hasValue && i+1 < len(args) {
				i++
				flags = append(flags, args[i])
			}
		default:
			pos = append(pos, a)
		}
	}
	return flags, pos
}

func flowAdd(args []string, stdout io.Writer) error {
	fs := newFlagSet("flow add", "TAP [flow-type T] [FIELD VALUE[/MASK]]... (action Q | action drop | context N) [prio N] [loc ID] [group G [group-prio P]] [--netns PATH]", `
Add a flow rule to a TAP: frames it matches go to a queue, to an RSS
context, or nowhere (dropped before they reach any queue, counted), before
RSS sees them; the rest follow the TAP's RSS configuration. The words are
ethtool -N's (ethtool -N eth0 flow-type tcp4 dst-port 80 action 2) where
ethtool has them. Rules are tried in one order: by group priority, then by
the rule's priority (higher first), then by id (lower first); the first
that matches decides. vrssd adds the rule to the TAP's whole set and
publishes it in one step; a rule the TAP cannot take (a queue it does not
have, an unknown context, more than 10,000 rules or 16 distinct masks) is
refused and changes nothing.

`+flowsNote+`

`+flowWordsHelp+`

Examples:

    vrss flow add vm0 flow-type tcp4 dst-port 5001 action 1
    vrss flow add vm0 flow-type udp4 src-ip 10.0.0.0/8 dst-port 53 action drop
    vrss flow add vm0 flow-type tcp6 dst-port 443 context 1 prio 10
    vrss flow add vm0 flow-type ether dst ff:ff:ff:ff:ff:ff action 0 loc 100`)
	socket, netns := fs.String("socket", "", socketHelp), fs.String("netns", "", netnsHelp)
	flags, words := splitFlags(args, []string{"socket", "netns"}, nil)
	pos, err := fs.parse(flags, stdout)
	if err != nil {
		return err
	}
	words = append(pos, words...)
	if len(words) < 1 {
		return inputErrorf("want a TAP name and the rule's words (run 'vrss flow add -h')")
	}
	name := words[0]
	w, err := parseFlowWords(words[1:])
	if err != nil {
		return asInput(fmt.Errorf("%w (run 'vrss flow add -h')", err))
	}
	c, ctx, cancel, err := dial(*socket)
	if err != nil {
		return err
	}
	defer cancel()
	defer c.Close()
	r, err := c.Netns(*netns).FlowAdd(ctx, name, w.Rule, !w.HasLoc, w.GroupPrio)
	if err != nil {
		return flowDaemonError(err)
	}
	fmt.Fprintf(stdout, "%s: added rule %d (group %d, priority %d): %s: %s\n", name, r.ID, r.Group, r.Priority, r.Match, r.Action)
	return nil
}

// flowDaemonError is daemonError, and refused rules and contexts are bad
// input (exit 2), as refused configurations are for rss set.
func flowDaemonError(err error) error {
	var aerr *api.Error
	if errors.As(err, &aerr) && aerr.Code == api.CodeInvalidConfig {
		return asInput(err)
	}
	return daemonError(err)
}

func flowDel(args []string, stdout io.Writer) error {
	fs := newFlagSet("flow del", "TAP ID [--netns PATH]", `
Delete the rule with id ID (as 'vrss flow list' shows it; ethtool -N's
delete). A host group left without rules goes with it. Rules of the guest's
groups (its VMM's virtio flow filters) are the guest's to remove. Example:

    vrss flow del vm0 3

`+flowsNote)
	socket, netns := fs.String("socket", "", socketHelp), fs.String("netns", "", netnsHelp)
	pos, err := fs.parse(args, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return inputErrorf("want a TAP name and a rule id (run 'vrss flow del -h')")
	}
	id, err := strconv.ParseUint(pos[1], 0, 32)
	if err != nil {
		return inputErrorf("rule id %q: want a number from 0 to %d", pos[1], uint32(1<<32-1))
	}
	c, ctx, cancel, err := dial(*socket)
	if err != nil {
		return err
	}
	defer cancel()
	defer c.Close()
	if err := c.Netns(*netns).FlowDel(ctx, pos[0], uint32(id)); err != nil {
		return flowDaemonError(err)
	}
	fmt.Fprintf(stdout, "%s: deleted rule %d\n", pos[0], id)
	return nil
}

func flowList(args []string, stdout io.Writer) error {
	fs := newFlagSet("flow list", "TAP [--json] [--netns PATH]", `
List a TAP's flow rules in the order they are tried, with the frames each
took (HITS), and the frames drop rules dropped. GROUP is the rule's group:
host groups are the operator's (vrss flow add), the others the guest's. MATCH
is in the words of 'vrss flow add' (flow-type written out as ether-type and
proto), which takes it back. A TAP holds at most 10,000 rules; the list is
read from vrssd page by page. Example:

    vrss flow list vm0 --json | jq '.rules[] | select(.hits > 0) | .id'

`+flowsNote)
	asJSON := fs.Bool("json", false, "print JSON: every rule with its match as value and mask (hex), group, priority, action and hits")
	socket, netns := fs.String("socket", "", socketHelp), fs.String("netns", "", netnsHelp)
	pos, err := fs.parse(args, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return inputErrorf("want exactly one TAP name (run 'vrss flow list -h')")
	}
	c, ctx, cancel, err := dial(*socket)
	if err != nil {
		return err
	}
	defer cancel()
	defer c.Close()
	l, err := c.Netns(*netns).FlowList(ctx, pos[0])
	if err != nil {
		return flowDaemonError(err)
	}
	if *asJSON {
		return writeJSON(stdout, l)
	}
	return printFlowList(stdout, l)
}

// groupName is how list and stats name a group.
func groupName(host bool, id uint32) string {
	if host {
		return "host " + strconv.FormatUint(uint64(id), 10)
	}
	// The guest's own group number: vrssd publishes guest group g as
	// api.GuestGroupBit|g.
	return "guest " + strconv.FormatUint(uint64(id&^api.GuestGroupBit), 10)
}

// printFlowList prints a TAP's rules as `vrss flow list` does.
func printFlowList(w io.Writer, l api.FlowList) error {
	fmt.Fprintf(w, "%s: %d %s, %d frames dropped\n", l.Name, len(l.Rules), plural(len(l.Rules), "rule", "rules"), l.Dropped)
	if len(l.Groups) > 0 {
		var gs []string
		for _, g := range l.Groups {
			gs = append(gs, fmt.Sprintf("%s (priority %d)", groupName(g.Host, g.ID), g.Priority))
		}
		fmt.Fprintf(w, "groups, in the order tried: %s\n", strings.Join(orderGroups(l.Groups, gs), ", "))
	}
	if len(l.Rules) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tGROUP\tPRIO\tACTION\tHITS\tMATCH")
	for _, r := range l.Rules {
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%d\t%s\n", r.ID, groupName(r.Host, r.Group), r.Priority, r.Action, r.Hits, r.Match)
	}
	return tw.Flush()
}

// orderGroups returns the names of groups in the order their rules are
// tried (flow.Set.Order): host groups first, then by priority, then by id.
func orderGroups(groups []api.FlowGroup, names []string) []string {
	set := flow.Set{}
	for i, g := range groups {
		set.Groups = append(set.Groups, flow.Group(g))
		set.Rules = append(set.Rules, flow.Rule{ID: uint32(i), Group: g.ID})
	}
	var out []string
	for _, i := range set.Order() {
		out = append(out, names[set.Rules[i].ID])
	}
	return out
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
