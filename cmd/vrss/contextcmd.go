package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/agent/client"
	"github.com/vrss-dev/vrss/flow"
	"github.com/vrss-dev/vrss/rss"
)

const contextUsage = "rss context (add TAP [FLAGS] | set TAP ID [FLAGS] | del TAP ID | show TAP [ID] [--json]) [--netns PATH]"

func rssContext(args []string, stdout io.Writer) error {
	return subcommand("rss context", map[string]func([]string, io.Writer) error{
		"add":  contextAdd,
		"set":  contextSet,
		"del":  contextDel,
		"show": contextShow,
	}, contextUsage, args, stdout)
}

var contextAbout = fmt.Sprintf(`An RSS context is an RSS configuration of its own (key, hash types,
indirection table over the TAP's queues, unclassified queue) that flow rules
send frames to (vrss flow add ... context N), like ethtool -X's contexts. A
TAP has at most %d: ids 1 to %d are the host's (these commands), %d to %d
the guest's (its VMM's virtio RSS contexts: shown, not changed here); 0 is
the TAP's own configuration (vrss rss set). A context's table has at most
%d entries, which are queue numbers.`, flow.MaxContexts, api.GuestContextBase, api.GuestContextBase+1, flow.MaxContexts, flow.MaxContextTable)

// contextFlags are the flags that build a context's configuration, as rss
// set's build the TAP's.
type contextFlags struct {
	fs                                 *flagSet
	key, types, queues, table, weights *string
	randomKey                          *bool
	equal, size, unclassified          *int
	socket, netns                      *string
}

func newContextFlags(fs *flagSet) *contextFlags {
	return &contextFlags{
		fs:           fs,
		key:          fs.String("key", "", "Toeplitz key in `HEX` (':' or space separators allowed), 1 to 255 bytes"),
		randomKey:    fs.Bool("random-key", false, "use a new random 40-byte key"),
		types:        fs.String("types", "", "enabled hash types, a comma-separated `LIST` of ipv4, tcpv4, udpv4, ipv6,\ntcpv6, udpv6, ip_ex, tcp_ex, udp_ex, all or none"),
		queues:       fs.String("queues", "", "spread the table evenly over queues `A-B` (or the one queue A)"),
		equal:        fs.Int("equal", 0, "spread the table evenly over the first `N` queues"),
		table:        fs.String("table", "", "the whole indirection table as a comma-separated `LIST` of queues (length a\npower of two, at most 256)"),
		weights:      fs.String("weights", "", "queue weights, a comma-separated `LIST` (queue 0 first); the table gives each\nqueue a share in proportion"),
		size:         fs.Int("size", 128, "table length for --queues, --equal and --weights, a power of two up to 256"),
		unclassified: fs.Int("unclassified", 0, "queue `Q` for frames no enabled hash type applies to (default: the first\nqueue of --queues, else 0)"),
		socket:       fs.String("socket", "", socketHelp),
		netns:        fs.String("netns", "", netnsHelp),
	}
}

// check range-checks the flags against the 16 bits a queue has and the
// context limits, before anything is sent.
func (f *contextFlags) check() error {
	fs := f.fs
	if fs.isSet("key") && *f.randomKey {
		return inputErrorf("--key and --random-key exclude each other")
	}
	n := 0
	for _, name := range []string{"queues", "equal", "table", "weights"} {
		if fs.isSet(name) {
			n++
		}
	}
	if n > 1 {
		return inputErrorf("--queues, --equal, --table and --weights exclude each other")
	}
	if *f.size < 1 || *f.size&(*f.size-1) != 0 || *f.size > flow.MaxContextTable {
		return inputErrorf("--size %d: want a power of two from 1 to %d", *f.size, flow.MaxContextTable)
	}
	if fs.isSet("equal") && *f.equal < 1 {
		return inputErrorf("--equal %d: want a positive number of queues", *f.equal)
	}
	if fs.isSet("unclassified") && (*f.unclassified < 0 || *f.unclassified > maxQueueNumber) {
		return inputErrorf("--unclassified %d: want a queue from 0 to %d", *f.unclassified, maxQueueNumber)
	}
	return nil
}

// parseQueueRange reads A-B or A.
func parseQueueRange(s string) (lo, hi int, err error) {
	a, b, isRange := strings.Cut(s, "-")
	if !isRange {
		b = a
	}
	x, err1 := strconv.ParseUint(strings.TrimSpace(a), 10, 16)
	y, err2 := strconv.ParseUint(strings.TrimSpace(b), 10, 16)
	if err1 != nil || err2 != nil || y < x {
		return 0, 0, inputErrorf("--queues %q: want a range of queues A-B (A <= B) or one queue", s)
	}
	return int(x), int(y), nil
}

// apply changes cfg as the flags say, for a TAP of queues queues.
func (f *contextFlags) apply(cfg *rss.Config, queues int, name string) error {
	fs := f.fs
	outOfRange := func(flag, why string) error {
		return inputErrorf("%s: %w: %s (%s has %d queues)", flag, rss.ErrQueueRange, why, name, queues)
	}
	switch {
	case fs.isSet("key"):
		key, err := parseKeyFlag(*f.key)
		if err != nil {
			return err
		}
		cfg.Key = key
	case *f.randomKey:
		cfg.Key = make([]byte, 40)
		rand.Read(cfg.Key)
	}
	if fs.isSet("types") {
		ht, err := rss.ParseHashTypes(*f.types)
		if err != nil {
			return asInput(fmt.Errorf("--types: %w", err))
		}
		cfg.HashTypes = ht
	}
	first := -1
	switch {
	case fs.isSet("queues"):
		lo, hi, err := parseQueueRange(*f.queues)
		if err != nil {
			return err
		}
		if hi >= queues {
			return outOfRange("--queues "+*f.queues, fmt.Sprintf("want queues 0 to %d", queues-1))
		}
		cfg.Table = make([]uint16, *f.size)
		for i := range cfg.Table {
			cfg.Table[i] = uint16(lo + i%(hi-lo+1))
		}
		first = lo
	case fs.isSet("equal"):
		if *f.equal > queues {
			return outOfRange(fmt.Sprintf("--equal %d", *f.equal), fmt.Sprintf("want 1 to %d", queues))
		}
		cfg.Table = rss.EqualTable(*f.size, *f.equal)
	case fs.isSet("table"):
		entries, err := parseUints(*f.table, "--table")
		if err != nil {
			return err
		}
		for i, q := range entries {
			if int(q) >= queues {
				return outOfRange("--table", fmt.Sprintf("entry %d is queue %d, want 0 to %d", i, q, queues-1))
			}
		}
		cfg.Table = entries
	case fs.isSet("weights"):
		ws, err := parseUints(*f.weights, "--weights")
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(ws, func(w uint16) bool { return w > 0 }) {
			return inputErrorf("--weights %s: want at least one positive weight", *f.weights)
		}
		if len(ws) > queues {
			return outOfRange("--weights", fmt.Sprintf("%d weights, want at most one a queue", len(ws)))
		}
		w := make([]int, len(ws))
		for i, v := range ws {
			w[i] = int(v)
		}
		cfg.Table = rss.WeightedTable(*f.size, w)
	}
	switch {
	case fs.isSet("unclassified"):
		if *f.unclassified >= queues {
			return outOfRange(fmt.Sprintf("--unclassified %d", *f.unclassified), fmt.Sprintf("want 0 to %d", queues-1))
		}
		cfg.UnclassifiedQueue = uint16(*f.unclassified)
	case first >= 0:
		cfg.UnclassifiedQueue = uint16(first)
	}
	return nil
}

const contextFlagsHelp = `The configuration comes from --key or --random-key, --types, one of
--queues, --equal, --table and --weights (with --size), and --unclassified,
as for vrss rss set.`

func contextAdd(args []string, stdout io.Writer) error {
	fs := newFlagSet("rss context add", "TAP [--id N] [--key HEX | --random-key] [--types LIST] [--queues A-B | --equal N | --table LIST | --weights LIST] [--size N] [--unclassified Q] [--netns PATH]", contextAbout+`

Add an RSS context to a TAP and print its id (the lowest free one unless
--id names one). `+contextFlagsHelp+` What is left out comes from the TAP's
own configuration (its hash types and key), and the table spreads over
every queue. A context no rule sends frames to steers nothing. Examples:

    vrss rss context add vm0 --queues 2-3             # prints: vm0: RSS context 1
    vrss flow add vm0 flow-type udp4 dst-port 4789 context 1
    vrss rss context add vm0 --id 2 --random-key --types tcpv4,tcpv6 --table 4,5,6,7

`+flowsNote)
	id := fs.Int("id", 0, fmt.Sprintf("the context's `ID`, 1 to %d (default: the lowest free one)", api.GuestContextBase))
	cf := newContextFlags(fs)
	pos, err := fs.parse(args, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return inputErrorf("want exactly one TAP name (run 'vrss rss context add -h')")
	}
	if fs.isSet("id") && (*id < 1 || *id > api.GuestContextBase) {
		return inputErrorf("--id %d: want 1 to %d (%d to %d are the guest's)", *id, api.GuestContextBase, api.GuestContextBase+1, flow.MaxContexts)
	}
	if err := cf.check(); err != nil {
		return err
	}
	name := pos[0]
	c, ctx, queues, done, err := dialTAP(*cf.socket, *cf.netns, name)
	if err != nil {
		return err
	}
	defer done()
	st, err := c.GetRSS(ctx, name)
	if err != nil {
		return daemonError(err)
	}
	cfg := rss.Config{HashTypes: rss.AllHashTypes, Key: rss.DefaultKey, Table: rss.EqualTable(*cf.size, queues)}
	if st.Config != nil {
		cfg.HashTypes, cfg.Key = st.Config.HashTypes, slices.Clone(st.Config.Key)
	}
	if err := cf.apply(&cfg, queues, name); err != nil {
		return err
	}
	ci, err := c.RSSContextAdd(ctx, name, uint16(*id), cfg)
	if err != nil {
		return flowDaemonError(err)
	}
	fmt.Fprintf(stdout, "%s: RSS context %d\n", name, ci.ID)
	return nil
}

// dialTAP dials vrssd at socket, as dial does, and reads the number of
// queues of TAP name in the network namespace netns (empty for vrssd's
// own), whose view it returns. done closes the connection and cancels
// ctx.
func dialTAP(socket, netns, name string) (n *client.Netns, ctx context.Context, queues int, done func(), err error) {
	c, ctx, cancel, err := dial(socket)
	if err != nil {
		return nil, nil, 0, nil, err
	}
	done = func() {
		c.Close()
		cancel()
	}
	queues, err = tapQueues(ctx, c, netns, name)
	if err != nil {
		done()
		return nil, nil, 0, nil, err
	}
	return c.Netns(netns), ctx, queues, done, nil
}

// contextID reads a context id argument.
func contextID(s, verb string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n < 1 || n > flow.MaxContexts {
		return 0, inputErrorf("RSS context %q: want an id from 1 to %d (run 'vrss rss context %s -h')", s, flow.MaxContexts, verb)
	}
	return uint16(n), nil
}

func contextSet(args []string, stdout io.Writer) error {
	fs := newFlagSet("rss context set", "TAP ID [--key HEX | --random-key] [--types LIST] [--queues A-B | --equal N | --table LIST | --weights LIST] [--size N] [--unclassified Q] [--netns PATH]", contextAbout+`

Change RSS context ID. `+contextFlagsHelp+` What is left out is kept from
the context's current configuration. Example:

    vrss rss context set vm0 1 --queues 2-5 --types tcpv4,udpv4

`+flowsNote)
	cf := newContextFlags(fs)
	pos, err := fs.parse(args, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return inputErrorf("want a TAP name and a context id (run 'vrss rss context set -h')")
	}
	id, err := contextID(pos[1], "set")
	if err != nil {
		return err
	}
	if err := cf.check(); err != nil {
		return err
	}
	name := pos[0]
	c, ctx, queues, done, err := dialTAP(*cf.socket, *cf.netns, name)
	if err != nil {
		return err
	}
	defer done()
	l, err := c.RSSContexts(ctx, name, id)
	if err != nil {
		return flowDaemonError(err)
	}
	if len(l.Contexts) != 1 {
		return fmt.Errorf("%s: vrssd answered %d contexts for id %d", name, len(l.Contexts), id)
	}
	cfg := l.Contexts[0].Config.Clone()
	if err := cf.apply(&cfg, queues, name); err != nil {
		return err
	}
	if _, err := c.RSSContextSet(ctx, name, id, cfg); err != nil {
		return flowDaemonError(err)
	}
	fmt.Fprintf(stdout, "%s: RSS context %d changed\n", name, id)
	return nil
}

func contextDel(args []string, stdout io.Writer) error {
	fs := newFlagSet("rss context del", "TAP ID [--netns PATH]", contextAbout+`

Delete RSS context ID. A context a rule sends frames to is refused: delete
the rule first (vrss flow del). Example:

    vrss rss context del vm0 1

`+flowsNote)
	socket, netns := fs.String("socket", "", socketHelp), fs.String("netns", "", netnsHelp)
	pos, err := fs.parse(args, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return inputErrorf("want a TAP name and a context id (run 'vrss rss context del -h')")
	}
	id, err := contextID(pos[1], "del")
	if err != nil {
		return err
	}
	c, ctx, cancel, err := dial(*socket)
	if err != nil {
		return err
	}
	defer cancel()
	defer c.Close()
	if err := c.Netns(*netns).RSSContextDel(ctx, pos[0], id); err != nil {
		return flowDaemonError(err)
	}
	fmt.Fprintf(stdout, "%s: RSS context %d deleted\n", pos[0], id)
	return nil
}

func contextShow(args []string, stdout io.Writer) error {
	fs := newFlagSet("rss context show", "TAP [ID] [--json] [--netns PATH]", contextAbout+`

Show a TAP's RSS contexts (or context ID): each one's indirection table as
ethtool -x prints it, key and hash types, the rules that send frames to it
(the first 32) and the frames it steered to each queue. Example:

    vrss rss context show vm0 1

`+flowsNote)
	asJSON := fs.Bool("json", false, "print JSON")
	socket, netns := fs.String("socket", "", socketHelp), fs.String("netns", "", netnsHelp)
	pos, err := fs.parse(args, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 1 && len(pos) != 2 {
		return inputErrorf("want a TAP name and maybe a context id (run 'vrss rss context show -h')")
	}
	var id uint16
	if len(pos) == 2 {
		if id, err = contextID(pos[1], "show"); err != nil {
			return err
		}
	}
	c, ctx, cancel, err := dial(*socket)
	if err != nil {
		return err
	}
	defer cancel()
	defer c.Close()
	l, err := c.Netns(*netns).RSSContexts(ctx, pos[0], id)
	if err != nil {
		return flowDaemonError(err)
	}
	if *asJSON {
		return writeJSON(stdout, l)
	}
	printContexts(stdout, l)
	return nil
}

// printContexts prints contexts as `vrss rss context show` does.
func printContexts(w io.Writer, l api.ContextList) {
	if len(l.Contexts) == 0 {
		fmt.Fprintf(w, "%s: no RSS contexts\n", l.Name)
		return
	}
	for i, c := range l.Contexts {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "RSS context %d of %s, used by ", c.ID, l.Name)
		if len(c.Rules) == 0 {
			fmt.Fprintln(w, "no rule")
		} else {
			ids := make([]string, len(c.Rules))
			for j, r := range c.Rules {
				ids[j] = strconv.FormatUint(uint64(r), 10)
			}
			more := ""
			if c.RulesOmitted > 0 {
				more = fmt.Sprintf(" and %d more", c.RulesOmitted)
			}
			fmt.Fprintf(w, "%s %s%s\n", plural(len(ids)+c.RulesOmitted, "rule", "rules"), strings.Join(ids, ", "), more)
		}
		printRSS(w, fmt.Sprintf("%s context %d", l.Name, c.ID), c.Config)
		var total uint64
		for _, n := range c.Frames {
			total += n
		}
		fmt.Fprintf(w, "Frames steered: %d\n", total)
		for q, n := range c.Frames {
			if n > 0 {
				fmt.Fprintf(w, "  queue %d: %d\n", q, n)
			}
		}
	}
}
