package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/agent/client"
)

// Commands that talk to vrssd share the --socket flag and this plumbing.

const socketHelp = "vrssd's unix `socket`; default $VRSS_SOCKET, else " + api.DefaultSocket

// netnsHelp is the help of --netns, which names the network namespace a
// TAP lives in.
const netnsHelp = "the network namespace the TAP lives in, by `PATH` (/var/run/netns/NAME,\n/proc/PID/ns/net); default vrssd's own. TAP names are per namespace"

// requestTimeout bounds one command's conversation with the daemon.
const requestTimeout = 30 * time.Second

// dial connects to the daemon, turning a missing daemon into a clear error.
func dial(socket string) (*client.Client, context.Context, context.CancelFunc, error) {
	if socket == "" {
		socket = client.SocketPath()
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	c, err := client.Dial(ctx, socket)
	if err != nil {
		cancel()
		var aerr *api.Error
		if errors.As(err, &aerr) {
			return nil, nil, nil, err
		}
		return nil, nil, nil, fmt.Errorf("cannot reach vrssd at %s (is it running? --socket or $%s choose another): %w", socket, api.EnvSocket, err)
	}
	return c, ctx, cancel, nil
}

// listFromDaemon serves a list command whose flag set has --json (asJSON)
// and --socket: no arguments, one call to vrssd, its answer as JSON (an
// empty list, never null) or printed.
func listFromDaemon[T any](fs *flagSet, args []string, stdout io.Writer, asJSON *bool, socket *string, list func(*client.Client, context.Context) ([]T, error), print func(io.Writer, []T) error) error {
	pos, err := fs.parse(args, stdout)
	if err != nil {
		return err
	}
	if err := noArgs(pos); err != nil {
		return err
	}
	c, ctx, cancel, err := dial(*socket)
	if err != nil {
		return err
	}
	defer cancel()
	defer c.Close()
	items, err := list(c, ctx)
	if err != nil {
		return daemonError(err)
	}
	if *asJSON {
		if items == nil {
			items = []T{}
		}
		return writeJSON(stdout, items)
	}
	return print(stdout, items)
}

// daemonError marks refusals the daemon explains as failed operations (exit
// 1), except malformed requests, which are the user's input (exit 2).
func daemonError(err error) error {
	var aerr *api.Error
	if errors.As(err, &aerr) && aerr.Code == api.CodeBadRequest {
		return asInput(err)
	}
	return err
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// subcommand dispatches "vrss GROUP VERB ..." to the verb's function.
func subcommand(group string, verbs map[string]func([]string, io.Writer) error, usage string, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return inputErrorf("missing %s command: %s", group, usage)
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprintf(stdout, "usage: vrss %s\n", usage)
		names := make([]string, 0, len(verbs))
		for v := range verbs {
			names = append(names, v)
		}
		sort.Strings(names)
		for _, v := range names {
			fmt.Fprintln(stdout)
			verbs[v]([]string{"-h"}, stdout)
		}
		return nil
	}
	f, ok := verbs[args[0]]
	if !ok {
		return inputErrorf("unknown %s command %q: %s", group, args[0], usage)
	}
	return f(args[1:], stdout)
}
