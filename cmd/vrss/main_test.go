package main

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

// vrss runs the command in-process and returns its exit status and output.
func vrss(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// wantInputError checks the contract for bad input: exit status 2, nothing
// on stdout and exactly one line on stderr starting with "vrss: ".
func wantInputError(t *testing.T, mention string, args ...string) {
	t.Helper()
	code, out, errOut := vrss(t, args...)
	if code != exitInput {
		t.Errorf("vrss %q: exit status %d, want %d (stderr %q)", args, code, exitInput, errOut)
	}
	if out != "" {
		t.Errorf("vrss %q: stdout %q, want nothing", args, out)
	}
	if !strings.HasPrefix(errOut, "vrss: ") || !strings.HasSuffix(errOut, "\n") || strings.Count(errOut, "\n") != 1 {
		t.Errorf("vrss %q: stderr %q, want one line starting with \"vrss: \"", args, errOut)
	}
	if !strings.Contains(errOut, mention) {
		t.Errorf("vrss %q: stderr %q does not mention %q", args, errOut, mention)
	}
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"-h"}, {"--help"}} {
		code, out, errOut := vrss(t, args...)
		if code != 0 || errOut != "" {
			t.Errorf("vrss %q: exit %d, stderr %q", args, code, errOut)
		}
		for _, c := range commands {
			if !strings.Contains(out, "\n  "+c.name+" ") {
				t.Errorf("vrss %q does not list %s:\n%s", args, c.name, out)
			}
		}
	}
	wantInputError(t, "missing command, one of demo, hash, steer, tap, rss, flow, port, afxdp, virtio, stats, qemu, bench")
	wantInputError(t, `unknown command "frobnicate"`, "frobnicate")
	wantInputError(t, `unknown command "frobnicate"`, "help", "frobnicate")
}

// Every command's -h, and "vrss help COMMAND", explain every flag.
func TestCommandHelp(t *testing.T) {
	flagsOf := map[string][]string{
		"demo":  {"-queues", "-flows", "-per-flow", "-json"},
		"bench": {"-json", "-frames", "-duration"},
		"hash":  {"-key", "-types", "-src", "-dst", "-proto"},
		"steer": {"-config", "-virtio", "-pcap", "-json"},
		"stats": {"-watch", "-interval", "-json", "-socket"},
		// Command groups show every verb's help.
		"tap":    {"-queues", "-owner", "-group", "-vnet-hdr", "-flows", "-json", "-socket"},
		"rss":    {"-key", "-random-key", "-types", "-equal", "-table", "-weights", "-size", "-unclassified", "-json", "-socket", "-queues", "-id"},
		"flow":   {"-json", "-socket"},
		"port":   {"-mac", "-ip", "-link-local", "-acl", "-default", "-uplink", "-json", "-netns", "-socket"},
		"virtio": {"-json", "-socket"},
		"afxdp":  {"-dev", "-queue-start", "-queues", "-owner", "-group", "-netns", "-json", "-socket"},
	}
	flagsOf["qemu"] = []string{"-tap", "-afxdp", "-force-copy", "-netns", "-id", "-mac", "-device-props", "-ebpf-rss", "-qemu-ebpf-binary", "-first-fd", "-socket"}
	verbOf := map[string]string{"tap": "create", "rss": "set", "qemu": "args", "flow": "list", "virtio": "reset", "port": "show", "afxdp": "show"}
	for _, c := range commands {
		want, ok := flagsOf[c.name]
		if !ok {
			t.Errorf("command %s has no help test", c.name)
		}
		for _, args := range [][]string{{c.name, "-h"}, {c.name, "--help"}, {"help", c.name}} {
			code, out, errOut := vrss(t, args...)
			if code != 0 || errOut != "" {
				t.Errorf("vrss %q: exit %d, stderr %q", args, code, errOut)
			}
			if !strings.HasPrefix(out, "usage: vrss "+c.name) {
				t.Errorf("vrss %q: help does not start with usage:\n%s", args, out)
			}
			for _, f := range want {
				if !strings.Contains(out, "\n  "+f+" ") && !strings.Contains(out, "\n  "+f+"\n") {
					t.Errorf("vrss %q: help does not explain %s:\n%s", args, f, out)
				}
			}
		}
		if v, ok := verbOf[c.name]; ok {
			wantInputError(t, "flag provided but not defined: -bogus", c.name, v, "x", "-bogus")
			wantInputError(t, "unknown "+c.name+" command", c.name, "bogus")
		} else {
			wantInputError(t, "flag provided but not defined: -bogus", c.name, "-bogus")
		}
	}
}

func TestInterleavedFlags(t *testing.T) {
	tests := []struct {
		args []string
		pos  []string
		x    string
		v    bool
	}{
		{[]string{"a", "-x", "1", "b"}, []string{"a", "b"}, "1", false},
		{[]string{"--x=2", "a", "--v", "b", "c"}, []string{"a", "b", "c"}, "2", true},
		{[]string{"a", "--", "-x", "3"}, []string{"a", "-x", "3"}, "", false},
		{[]string{"-v", "--", "--", "b"}, []string{"--", "b"}, "", true},
		{[]string{"a", "-", "-x", "4"}, []string{"a", "-"}, "4", false},
		{nil, nil, "", false},
	}
	for _, tt := range tests {
		fs := newFlagSet("t", "", "")
		x := fs.String("x", "", "")
		v := fs.Bool("v", false, "")
		pos, err := fs.parse(tt.args, nil)
		if err != nil {
			t.Fatalf("%q: %v", tt.args, err)
		}
		if !reflect.DeepEqual(pos, tt.pos) || *x != tt.x || *v != tt.v {
			t.Errorf("%q: got %q x=%q v=%v, want %q x=%q v=%v", tt.args, pos, *x, *v, tt.pos, tt.x, tt.v)
		}
	}

	fs := newFlagSet("t", "", "")
	fs.String("x", "", "")
	if _, err := fs.parse([]string{"a", "-x"}, nil); err == nil || strings.Contains(err.Error(), "\n") {
		t.Errorf("missing flag value: got %v, want a one-line error", err)
	}
	if _, err := fs.parse([]string{"a", "-h"}, new(bytes.Buffer)); err != errHelpShown {
		t.Errorf("-h after an argument: got %v, want errHelpShown", err)
	}
}
