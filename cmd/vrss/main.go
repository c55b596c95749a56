// Command vrss is the command-line tool of vrss, virtio-net receive side
// scaling in Go: it computes RSS hashes, steers captured frames by an RSS
// configuration and (in later versions) drives the steering daemon.
//
// Usage:
//
//	vrss COMMAND [arguments]
//
// Run "vrss -h" for the list of commands and "vrss COMMAND -h" for one
// command's flags; "vrss --version" prints the version. Exit status is 0 on
// success, 2 for bad input (usage errors, unreadable or invalid files) and 1
// when an operation fails.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/internal/buildinfo"
	"github.com/vrss-dev/vrss/steering"
)

// command is one subcommand. run gets the arguments after the command name
// and returns the exit status; it writes results to stdout and errors to
// stderr so that tests can run it in-process.
type command struct {
	name    string
	summary string // one line for the command listing
	run     func(args []string, stdout, stderr io.Writer) int
}

// commands lists the subcommands in the order "vrss -h" shows them. Each
// lives in its own file.
var commands = []command{
	{"demo", "show eBPF steering on a real multi-queue TAP (the main job; needs root)", runDemo},
	{"hash", "compute the RSS hash and hash report of one flow", runHash},
	{"steer", "steer every frame of a pcap file by an RSS configuration", runSteer},
	{"tap", "create, delete and list TAP devices steered by vrssd", runTap},
	{"rss", "set and show a TAP's RSS configuration and RSS contexts through vrssd", runRSS},
	{"flow", "add, delete and list a TAP's flow rules (queue, context, drop) through vrssd", runFlow},
	{"port", "set, show and clear a TAP's port security policy (XDP) through vrssd", runPort},
	{"afxdp", "create, delete and list AF_XDP ports: a device's queues as AF_XDP sockets for a VMM", runAFXDP},
	{"virtio", "send a guest's raw virtio RSS context and flow filter commands to vrssd (testing)", runVirtio},
	{"stats", "show a TAP's per-queue steering counters (--watch to follow)", runStats},
	{"qemu", "run QEMU on a vrss-steered TAP without privileges, or print its arguments", runQEMU},
	{"bench", "measure the steering program's cost against its targets (root)", runBench},
}

// Exit statuses.
const (
	exitOK     = 0
	exitFailed = 1 // the operation was attempted and failed
	exitInput  = 2 // bad input: usage, values, unreadable or invalid files
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches args (without the program name) to a subcommand.
//
// The one way to ask for help, which every hint names, is -h: "vrss -h"
// lists the commands and "vrss COMMAND [VERB] -h" explains one (--help
// works too). "vrss help [COMMAND]" is still understood.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		names := make([]string, len(commands))
		for i, c := range commands {
			names[i] = c.name
		}
		return report(stderr, "", inputErrorf("missing command, one of %s (run 'vrss -h')", strings.Join(names, ", ")))
	}
	name, rest := args[0], args[1:]
	switch name {
	case "help", "-h", "-help", "--help":
		if name == "help" && len(rest) > 0 {
			if c := lookup(rest[0]); c != nil {
				return c.run(append(rest[1:len(rest):len(rest)], "-h"), stdout, stderr)
			}
			return report(stderr, "", inputErrorf("unknown command %q (run 'vrss -h')", rest[0]))
		}
		usage(stdout)
		return exitOK
	case "version", "-version", "--version":
		printVersion(stdout, "vrss")
		return exitOK
	}
	if c := lookup(name); c != nil {
		return c.run(rest, stdout, stderr)
	}
	return report(stderr, "", inputErrorf("unknown command %q (run 'vrss -h')", name))
}

// printVersion prints what --version shows, the same for vrss and vrssd:
// the build's version (see buildinfo.Describe), then the daemon protocol
// and the steering program's ABI stamp, which a CLI and a vrssd must share.
func printVersion(w io.Writer, program string) {
	fmt.Fprintf(w, "%s %s\nprotocol %d, ABI %s\n", program, buildinfo.Version(), api.ProtocolVersion, steering.ABIStamp())
}

func lookup(name string) *command {
	for i := range commands {
		if commands[i].name == name {
			return &commands[i]
		}
	}
	return nil
}

func usage(w io.Writer) {
	fmt.Fprint(w, `vrss: virtio-net receive side scaling tools

usage: vrss COMMAND [arguments]

commands:
`)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
'vrss COMMAND -h' explains a command and every flag; 'vrss --version' prints
the version. Flags are written -name or --name and may come before or after
arguments.
Exit status: 0 success, 1 the operation failed, 2 bad input (usage errors,
bad values, unreadable or invalid files).
`)
}

// inputError marks an error caused by the user's input (exit status 2);
// any other error is a failed operation (exit status 1).
type inputError struct{ error }

func (e inputError) Unwrap() error { return e.error }

// inputErrorf returns an inputError with a formatted message; %w works.
func inputErrorf(format string, a ...any) error {
	return inputError{fmt.Errorf(format, a...)}
}

// asInput marks err, if not nil, as caused by the user's input.
func asInput(err error) error {
	if err == nil {
		return nil
	}
	return inputError{err}
}

// errHelpShown is returned by flagSet.parse after it printed the help: the
// command stops and exits 0.
var errHelpShown = errors.New("help shown")

// report prints err as one line on stderr, prefixed "vrss: " and the
// command's name, and returns the exit status it calls for.
func report(stderr io.Writer, cmd string, err error) int {
	switch {
	case err == nil, errors.Is(err, errHelpShown):
		return exitOK
	}
	// Errors from libraries may span lines; the contract is one line.
	msg := strings.NewReplacer("\r\n", "; ", "\n", "; ", "\r", "; ").Replace(strings.TrimSpace(err.Error()))
	if cmd != "" {
		msg = cmd + ": " + msg
	}
	fmt.Fprintf(stderr, "vrss: %s\n", msg)
	var in inputError
	if errors.As(err, &in) {
		return exitInput
	}
	return exitFailed
}

// flagSet is a subcommand's flags plus the text its -h prints. The flag
// package's own error and usage printing is silenced so that an error is
// one line on stderr and help goes to stdout.
type flagSet struct {
	*flag.FlagSet
	synopsis    string // arguments after "vrss NAME"
	description string // paragraphs shown between synopsis and flags
}

// newFlagSet returns the flags of subcommand name.
func newFlagSet(name, synopsis, description string) *flagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return &flagSet{FlagSet: fs, synopsis: synopsis, description: description}
}

// printHelp writes the command's help, including every flag, to w.
func (fs *flagSet) printHelp(w io.Writer) {
	fmt.Fprintf(w, "usage: vrss %s %s\n\n%s\n", fs.Name(), fs.synopsis, strings.TrimSpace(fs.description))
	fmt.Fprint(w, "\nflags (-name or --name, before or after arguments):\n")
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// parse parses args, in which flags and positional arguments may be
// interleaved (the flag package alone stops at the first positional
// argument), and returns the positional arguments in order. Everything
// after "--" is positional. On -h it prints the help to stdout and returns
// errHelpShown; other errors are input errors.
func (fs *flagSet) parse(args []string, stdout io.Writer) ([]string, error) {
	var pos []string
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			fs.printHelp(stdout)
			return nil, errHelpShown
		}
		if err != nil {
			return nil, inputErrorf("%v (run 'vrss %s -h')", err, fs.Name())
		}
		rest := fs.Args()
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// isSet reports whether the flag name was given on the command line, so
// that a command can tell an explicit value from the default.
func (fs *flagSet) isSet(name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}

// noArgs rejects positional arguments for commands that take none.
func noArgs(pos []string) error {
	if len(pos) > 0 {
		return inputErrorf("unexpected argument %q", pos[0])
	}
	return nil
}
