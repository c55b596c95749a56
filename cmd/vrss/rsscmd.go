package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/agent/client"
	"github.com/vrss-dev/vrss/rss"
)

const rssUsage = "rss (set NAME [--key HEX | --random-key] [--types LIST] [--equal N | --table LIST | --weights LIST] | show NAME [--json])"

func runRSS(args []string, stdout, stderr io.Writer) int {
	return report(stderr, "rss", subcommand("rss", map[string]func([]string, io.Writer) error{
		"set":  rssSet,
		"show": rssShow,
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
	equal := fs.Int("equal", 0, "spread the table evenly over the first `N` queues")
	table := fs.String("table", "", "the whole indirection table as a comma-separated `LIST` of queues (length a power of two)")
	weights := fs.String("weights", "", "queue weights, a comma-separated `LIST` (queue 0 first); the table gives each queue a share in proportion")
	size := fs.Int("size", 128, "table length for --equal and --weights, a power of two")
	unclassified := fs.Int("unclassified", -1, "queue for frames no enabled hash type applies to")
	socket := fs.String("socket", "", socketHelp)
	pos, err := fs.parse(args, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return inputErrorf("want exactly one TAP name (run 'vrss rss set -h')")
	}
	name := pos[0]
	if *keyHex != "" && *randomKey {
		return inputErrorf("--key and --random-key exclude each other")
	}
	n := 0
	for _, s := range []bool{*equal != 0, *table != "", *weights != ""} {
		if s {
			n++
		}
	}
	if n > 1 {
		return inputErrorf("--equal, --table and --weights exclude each other")
	}
	if *size < 1 || *size&(*size-1) != 0 || *size > rss.MaxTableLen {
		return inputErrorf("--size %d: want a power of two from 1 to %d", *size, rss.MaxTableLen)
	}

	c, ctx, cancel, err := dial(*socket)
	if err != nil {
		return err
	}
	defer cancel()
	defer c.Close()
	st, err := c.GetRSS(ctx, name)
	if err != nil {
		return daemonError(err)
	}
	var cfg rss.Config
	if st.Config != nil {
		cfg = st.Config.Clone()
	} else {
		queues, err := tapQueues(ctx, c, name)
		if err != nil {
			return err
		}
		cfg = rss.Config{HashTypes: rss.AllHashTypes, Key: rss.DefaultKey, Table: rss.EqualTable(128, queues)}
	}

	switch {
	case *keyHex != "":
		if cfg.Key, err = rss.ParseKey(*keyHex); err != nil {
			return asInput(fmt.Errorf("--key: %w", err))
		}
	case *randomKey:
		cfg.Key = make([]byte, 40)
		rand.Read(cfg.Key)
	}
	if *types != "" {
		if cfg.HashTypes, err = rss.ParseHashTypes(*types); err != nil {
			return asInput(fmt.Errorf("--types: %w", err))
		}
	}
	switch {
	case *equal < 0:
		return inputErrorf("--equal %d: want a positive number of queues", *equal)
	case *equal > 0:
		cfg.Table = rss.EqualTable(*size, *equal)
	case *table != "":
		if cfg.Table, err = parseUints(*table, "--table"); err != nil {
			return err
		}
	case *weights != "":
		ws, err := parseUints(*weights, "--weights")
		if err != nil {
			return err
		}
		w := make([]int, len(ws))
		for i, v := range ws {
			w[i] = int(v)
		}
		if cfg.Table = rss.WeightedTable(*size, w); cfg.Table == nil {
			return inputErrorf("--weights %s: want at least one positive weight", *weights)
		}
	}
	if *unclassified >= 0 {
		cfg.UnclassifiedQueue = uint16(*unclassified)
	}
	res, err := c.SetRSS(ctx, name, cfg)
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

// tapQueues looks up the number of queues of the named TAP.
func tapQueues(ctx context.Context, c *client.Client, name string) (int, error) {
	taps, err := c.List(ctx)
	if err != nil {
		return 0, daemonError(err)
	}
	for _, t := range taps {
		if t.Name == name {
			return t.Queues, nil
		}
	}
	return 0, fmt.Errorf("TAP %s not found", name)
}

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
	st, err := c.GetRSS(ctx, pos[0])
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
