package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/agent/client"
	"github.com/vrss-dev/vrss/rss"
)

const rssUsage = "rss (set NAME [--key HEX | --random-key] [--types LIST] [--equal N | --table LIST | --weights LIST] | show NAME [--json] | context (add|set|del|show) ...)"

func runRSS(args []string, stdout, stderr io.Writer) int {
	return report(stderr, "rss", subcommand("rss", map[string]func([]string, io.Writer) error{
		"set":     rssSet,
		"show":    rssShow,
		"context": rssContext,
	}, rssUsage, args, stdout))
}

func rssSet(args []string, stdout io.Writer) error {
	fs := newFlagSet("rss set", "NAME [--key HEX | --random-key] [--types LIST] [--equal N | --table LIST | --weights LIST] [--unclassified Q]", `
Set a TAP's RSS configuration. What you leave out is kept from the current
configuration; a TAP with none yet starts from every hash type, the default
(Microsoft) key and a 128-entry table spread evenly over all its queues.
The daemon validates the whole configuration first: a refused one changes
nothing. Examples:

    vrss rss set tap0 --random-key
    vrss rss set tap0 --types tcpv4,udpv4,ipv4 --equal 2
    vrss rss set tap0 --weights 5,3,1,1       # like ethtool -X tap0 weight 5 3 1 1`)
	keyHex := fs.String("key", "", "Toeplitz key in `HEX` (':' or space separators allowed), 1 to 255 bytes")
	randomKey := fs.Bool("random-key", false, "use a new random 40-byte key")
	types := fs.String("types", "", "enabled hash types, a comma-separated `LIST` of ipv4, tcpv4, udpv4, ipv6,\ntcpv6, udpv6, ip_ex, tcp_ex, udp_ex, all or none")
	equal := fs.Int("equal", 0, "spread the table evenly over the first `N` queues, 1 to the TAP's number of queues")
	table := fs.String("table", "", "the whole indirection table as a comma-separated `LIST` of queues (length a power of two)")
	weights := fs.String("weights", "", "queue weights, a comma-separated `LIST` (queue 0 first, at most one a queue); the table\ngives each queue a share in proportion")
	size := fs.Int("size", 128, "table length for --equal and --weights, a power of two")
	unclassified := fs.Int("unclassified", 0, "queue `Q` for frames no enabled hash type applies to: one of the TAP's N queues,\n0 to N-1")
	socket := fs.String("socket", "", socketHelp)
	netns := fs.String("netns", "", netnsHelp)
	pos, err := fs.parse(args, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return inputErrorf("want exactly one TAP name (run 'vrss rss set -h')")
	}
	name := pos[0]
	// Every number is range-checked before it is converted, here against
	// the 16 bits a queue has, below against the TAP's queues.
	if fs.isSet("key") && *randomKey {
		return inputErrorf("--key and --random-key exclude each other")
	}
	n := 0
	for _, f := range []string{"equal", "table", "weights"} {
		if fs.isSet(f) {
			n++
		}
	}
	if n > 1 {
		return inputErrorf("--equal, --table and --weights exclude each other")
	}
	if *size < 1 || *size&(*size-1) != 0 || *size > rss.MaxTableLen {
		return inputErrorf("--size %d: want a power of two from 1 to %d", *size, rss.MaxTableLen)
	}
	if fs.isSet("equal") && *equal < 1 {
		return inputErrorf("--equal %d: want a positive number of queues", *equal)
	}
	if fs.isSet("unclassified") && (*unclassified < 0 || *unclassified > maxQueueNumber) {
		return inputErrorf("--unclassified %d: want a queue from 0 to %d", *unclassified, maxQueueNumber)
	}
	var key []byte
	if fs.isSet("key") {
		if key, err = parseKeyFlag(*keyHex); err != nil {
			return err
		}
	}
	var hashTypes rss.HashType
	if *types != "" {
		if hashTypes, err = rss.ParseHashTypes(*types); err != nil {
			return asInput(fmt.Errorf("--types: %w", err))
		}
	}
	var entries, ws []uint16
	if fs.isSet("table") {
		if entries, err = parseUints(*table, "--table"); err != nil {
			return err
		}
	}
	if fs.isSet("weights") {
		if ws, err = parseUints(*weights, "--weights"); err != nil {
			return err
		}
		if !slices.ContainsFunc(ws, func(w uint16) bool { return w > 0 }) {
			return inputErrorf("--weights %s: want at least one positive weight", *weights)
		}
	}

	c, ctx, cancel, err := dial(*socket)
	if err != nil {
		return err
	}
	defer cancel()
	defer c.Close()
	st, err := c.Netns(*netns).GetRSS(ctx, name)
	if err != nil {
		return daemonError(err)
	}
	queues, err := tapQueues(ctx, c, *netns, name)
	if err != nil {
		return err
	}
	// The daemon would refuse a queue the TAP does not have too, but
	// without saying which flag named it.
	outOfRange := func(flag, why string) error {
		return inputErrorf("%s: %w: %s (%s has %d queues)", flag, rss.ErrQueueRange, why, name, queues)
	}
	switch {
	case fs.isSet("unclassified") && *unclassified >= queues:
		return outOfRange(fmt.Sprintf("--unclassified %d", *unclassified), fmt.Sprintf("want 0 to %d", queues-1))
	case fs.isSet("equal") && *equal > queues:
		return outOfRange(fmt.Sprintf("--equal %d", *equal), fmt.Sprintf("want 1 to %d", queues))
	case len(ws) > queues:
		return outOfRange("--weights", fmt.Sprintf("%d weights, want at most one a queue", len(ws)))
	}
	for i, q := range entries {
		if int(q) >= queues {
			return outOfRange("--table", fmt.Sprintf("entry %d is queue %d, want 0 to %d", i, q, queues-1))
		}
	}

	var cfg rss.Config
	if st.Config != nil {
		cfg = st.Config.Clone()
	} else {
		cfg = rss.Config{HashTypes: rss.AllHashTypes, Key: rss.DefaultKey, Table: rss.EqualTable(128, queues)}
	}
	switch {
	case key != nil:
		cfg.Key = key
	case *randomKey:
		cfg.Key = make([]byte, 40)
		rand.Read(cfg.Key)
	}
	if *types != "" {
		cfg.HashTypes = hashTypes
	}
	switch {
	case fs.isSet("equal"):
		cfg.Table = rss.EqualTable(*size, *equal)
	case fs.isSet("table"):
		cfg.Table = entries
	case fs.isSet("weights"):
		w := make([]int, len(ws))
		for i, v := range ws {
			w[i] = int(v)
		}
		cfg.Table = rss.WeightedTable(*size, w) // not nil: a weight is positive
	}
	if fs.isSet("unclassified") {
		cfg.UnclassifiedQueue = uint16(*unclassified) // 0 to queues-1, checked above
	}
	res, err := c.Netns(*netns).SetRSS(ctx, name, cfg)
	if err != nil {
		var aerr *api.Error
		if errors.As(err, &aerr) && aerr.Code == api.CodeInvalidConfig {
			return asInput(err)
		}
		return daemonError(err)
	}
	fmt.Fprintf(stdout, "%s: configuration %d published\n", name, res.Generation)
	return nil
}

// tapQueues looks up the number of queues of the named TAP of the network
// namespace netns (empty for vrssd's own).
func tapQueues(ctx context.Context, c *client.Client, netns, name string) (int, error) {
	taps, err := c.List(ctx)
	if err != nil {
		return 0, daemonError(err)
	}
	for _, t := range taps {
		if t.Name == name && t.Netns == netns {
			return t.Queues, nil
		}
	}
	return 0, fmt.Errorf("TAP %s not found", name)
}

// maxQueueNumber is the highest queue number there is: virtio-net and the
// configuration name queues in 16 bits.
const maxQueueNumber = 1<<16 - 1

// parseUints parses a comma-separated list of numbers from 0 to 65535, the
// values of flag; a number outside that range is an error, not truncated.
func parseUints(list, flag string) ([]uint16, error) {
	var out []uint16
	for _, f := range strings.Split(list, ",") {
		v, err := strconv.ParseUint(strings.TrimSpace(f), 10, 16)
		if err != nil {
			return nil, inputErrorf("%s: %q is not a number from 0 to 65535", flag, f)
		}
		out = append(out, uint16(v))
	}
	return out, nil
}

func rssShow(args []string, stdout io.Writer) error {
	fs := newFlagSet("rss show", "NAME [--json]", `
Show a TAP's RSS configuration: the indirection table eight entries a row,
as ethtool -x prints it, then the key and the hash types.`)
	asJSON := fs.Bool("json", false, "print JSON")
	socket := fs.String("socket", "", socketHelp)
	netns := fs.String("netns", "", netnsHelp)
	pos, err := fs.parse(args, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return inputErrorf("want exactly one TAP name (run 'vrss rss show -h')")
	}
	c, ctx, cancel, err := dial(*socket)
	if err != nil {
		return err
	}
	defer cancel()
	defer c.Close()
	st, err := c.Netns(*netns).GetRSS(ctx, pos[0])
	if err != nil {
		return daemonError(err)
	}
	if *asJSON {
		return writeJSON(stdout, st)
	}
	if st.Config == nil {
		fmt.Fprintf(stdout, "%s: no RSS configuration set; every packet goes to queue 0\n", st.Name)
		return nil
	}
	printRSS(stdout, st.Name, *st.Config)
	return nil
}

// printRSS prints a configuration the way ethtool -x does.
func printRSS(w io.Writer, name string, c rss.Config) {
	rings := 0
	for _, q := range c.Table {
		rings = max(rings, int(q)+1)
	}
	fmt.Fprintf(w, "RX flow hash indirection table for %s with %d RX ring(s):\n", name, rings)
	for i, q := range c.Table {
		if i%8 == 0 {
			fmt.Fprintf(w, "%5d: ", i)
		}
		fmt.Fprintf(w, "%6d", q)
		if i%8 == 7 || i == len(c.Table)-1 {
			fmt.Fprintln(w)
		}
	}
	fmt.Fprintln(w, "RSS hash key:")
	hexes := make([]string, len(c.Key))
	for i, b := range c.Key {
		hexes[i] = fmt.Sprintf("%02x", b)
	}
	fmt.Fprintln(w, strings.Join(hexes, ":"))
	fmt.Fprintln(w, "RSS hash function:")
	fmt.Fprintln(w, "    toeplitz: on")
	fmt.Fprintf(w, "Hash types: %s\n", c.HashTypes)
	fmt.Fprintf(w, "Unclassified queue: %d\n", c.UnclassifiedQueue)
}
