package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/vrss-dev/vrss/internal/buildinfo/buildtest"
)

// The README's shell blocks are meant to be copied and pasted. A block
// that needs neither root nor a daemon carries a marker on the line above
// its fence, and this file runs it:
//
//	<!-- test: build -->   the block that builds ./vrss (exactly readmeBuild)
//	<!-- test: run -->     a sh block run from the repository root with ./vrss
//	                       built, under sh -e: every command must succeed
//	<!-- test: output -->  a text block right after a run block: that block's
//	                       exact standard output
//
// Unmarked blocks are the ones that need root or vrssd.

// readmeBuild is the README's build command.
const readmeBuild = "go build -o vrss ./cmd/vrss"

// mdBlock is one fenced block of the README.
type mdBlock struct {
	line   int    // of the opening fence, from 1
	info   string // the fence's info string: sh, text, ...
	marker string // build, run, output or ""
	body   string
}

var markerRE = regexp.MustCompile(`^<!-- test: (\w+) -->$`)

func readmeBlocks(t *testing.T) []mdBlock {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(buildtest.Root(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var (
		blocks []mdBlock
		cur    *mdBlock
		body   strings.Builder
		prev   string
	)
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case cur == nil && strings.HasPrefix(line, "```"):
			cur = &mdBlock{line: n, info: strings.TrimSpace(strings.TrimPrefix(line, "```"))}
			if m := markerRE.FindStringSubmatch(prev); m != nil {
				cur.marker = m[1]
			}
			body.Reset()
		case cur != nil && strings.TrimSpace(line) == "```":
			cur.body = body.String()
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			body.WriteString(line + "\n")
		}
		prev = line
	}
	if cur != nil {
		t.Fatalf("README.md:%d: block never closed", cur.line)
	}
	return blocks
}

// commands returns the block's command lines, without comments.
func (b mdBlock) commands() []string {
	var cmds []string
	for _, l := range strings.Split(b.body, "\n") {
		if i := strings.Index(l, " #"); i >= 0 {
			l = l[:i]
		}
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			cmds = append(cmds, l)
		}
	}
	return cmds
}

// vrssCall is one invocation of the CLI on a command line: how it is
// called (./vrss or vrss) and its first argument.
type vrssCall struct{ prog, arg string }

// vrssCallRE finds the CLI where a shell command starts: at the start of
// the line, after sudo, a pipe, && or ;.
var vrssCallRE = regexp.MustCompile(`(?:^|sudo\s+|[|;&]\s*)(\./vrss|vrss)\b(?:\s+(\S+))?`)

func vrssCalls(cmd string) []vrssCall {
	var calls []vrssCall
	for _, m := range vrssCallRE.FindAllStringSubmatch(cmd, -1) {
		calls = append(calls, vrssCall{m[1], m[2]})
	}
	return calls
}

// needsNothing reports whether a call needs neither root nor vrssd.
func (c vrssCall) needsNothing(cmd string) bool {
	switch c.arg {
	case "hash", "steer", "-h", "--help", "help", "--version", "-version", "version":
		return true
	}
	return helpFlagRE.MatchString(cmd)
}

var (
	helpFlagRE = regexp.MustCompile(`\s(-h|--help)(\s|$)`)
	// installRE is a command that puts vrss on the PATH.
	installRE = regexp.MustCompile(`^go (build -o /usr/local/bin/vrss|install) \./cmd/vrss$`)
)

// TestREADMEBlocks checks the markers and how the README calls the CLI:
// every block that needs neither root nor vrssd is marked, ./vrss only after
// the build that makes it, and a bare vrss only after one that puts it on
// the PATH.
func TestREADMEBlocks(t *testing.T) {
	blocks := readmeBlocks(t)
	builds, runs := 0, map[string]bool{}
	built, installed := false, false
	for i, b := range blocks {
		where := fmt.Sprintf("README.md:%d", b.line)
		switch b.marker {
		case "":
		case "build":
			builds++
			if cmds := b.commands(); len(cmds) != 1 || cmds[0] != readmeBuild {
				t.Errorf("%s: the build block is %q, want exactly %q (TestREADMECommands builds what it says)", where, cmds, readmeBuild)
			}
		case "run":
			if b.info != "sh" {
				t.Errorf("%s: a run block must be ```sh, not %q", where, b.info)
			}
			for _, c := range b.commands() {
				for _, call := range vrssCalls(c) {
					runs[call.arg] = true
				}
			}
		case "output":
			if i == 0 || blocks[i-1].marker != "run" {
				t.Errorf("%s: an output block must follow a run block", where)
			}
		default:
			t.Errorf("%s: unknown marker %q (build, run or output)", where, b.marker)
		}
		if b.info != "sh" {
			continue
		}
		for _, c := range b.commands() {
			switch {
			case strings.HasPrefix(c, readmeBuild):
				built = true
			case installRE.MatchString(c):
				installed = true
			}
			for _, call := range vrssCalls(c) {
				if call.prog == "./vrss" && !built {
					t.Errorf("%s: %q calls ./vrss before any block builds it (%s)", where, c, readmeBuild)
				}
				if call.prog == "vrss" && !installed {
					t.Errorf("%s: %q calls vrss from the PATH before any block installs it there; write ./vrss", where, c)
				}
				if b.marker != "run" && call.needsNothing(c) {
					t.Errorf("%s: %q needs neither root nor a daemon: put it in a block marked <!-- test: run -->", where, c)
				}
			}
		}
	}
	if builds != 1 {
		t.Errorf("%d blocks marked build, want 1", builds)
	}
	for _, want := range []string{"hash", "steer", "--version", "-h"} {
		if !runs[want] {
			t.Errorf("no run block calls ./vrss %s", want)
		}
	}
}

// TestREADMECommands runs every block marked run, from a directory that
// has the repository's docs and the binary the build block makes, and
// compares the output blocks.
func TestREADMECommands(t *testing.T) {
	if testing.Short() {
		t.Skip("builds vrss")
	}
	root := buildtest.Root(t)
	dir := t.TempDir()
	// The build block's command, with only the output moved.
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "vrss"), "./cmd/vrss")
	build.Dir = root
	build.Env = append(os.Environ(), buildtest.TrustCheckout(root)...)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", readmeBuild, err, out)
	}
	if err := os.Symlink(filepath.Join(root, "docs"), filepath.Join(dir, "docs")); err != nil {
		t.Fatal(err)
	}
	blocks := readmeBlocks(t)
	ran := 0
	for i, b := range blocks {
		if b.marker != "run" {
			continue
		}
		ran++
		cmd := exec.Command("/bin/sh", "-e", "-c", b.body)
		cmd.Dir = dir
		// Not the caller's PATH: a vrss installed there must not stand in
		// for ./vrss.
		cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + dir, "LC_ALL=C"}
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Errorf("README.md:%d: %v\n%s\nstdout:\n%s\nstderr:\n%s", b.line, err, b.body, stdout.String(), stderr.String())
			continue
		}
		if i+1 < len(blocks) && blocks[i+1].marker == "output" {
			if want := blocks[i+1].body; stdout.String() != want {
				t.Errorf("README.md:%d: output of the block at line %d differs:\n--- README\n%s--- got\n%s", blocks[i+1].line, b.line, want, stdout.String())
			}
		}
	}
	if ran == 0 {
		t.Error("no block marked <!-- test: run -->")
	}
}
