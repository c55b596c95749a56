package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// hintRE finds the help hint of an error message: "(run 'vrss ... -h')".
var hintRE = regexp.MustCompile(`\(run '([^']*)'\)`)

// One convention for help everywhere: every hint says "vrss [COMMAND
// [VERB]] -h", and the command it names prints that help.
func TestHelpHints(t *testing.T) {
	// In the source, no other form, and no 'vrss help COMMAND'.
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`run '(vrss[^']*)'`).FindAllStringSubmatch(string(b), -1) {
			if !strings.HasSuffix(m[1], " -h") && !strings.HasPrefix(m[1], "vrss tap attach") {
				t.Errorf("%s: hint %q: write 'vrss ... -h'", f, m[1])
			}
		}
		if strings.Contains(string(b), "'vrss help") {
			t.Errorf("%s mentions 'vrss help ...': the hints say 'vrss COMMAND -h'", f)
		}
	}

	// In the errors of every command, and the hints work.
	for _, args := range [][]string{
		{}, {"frobnicate"}, {"help", "frobnicate"},
		{"hash"}, {"hash", "--bogus"}, {"steer", "--pcap", "x.pcap"}, {"steer"}, {"demo", "--bogus"}, {"bench", "--bogus"},
		{"stats"}, {"rss", "set"}, {"rss", "show"}, {"tap", "create"}, {"tap", "delete"}, {"tap", "attach"},
		{"tap", "list", "--bogus"}, {"qemu", "args"}, {"qemu", "exec"},
	} {
		code, _, errOut := vrss(t, args...)
		m := hintRE.FindStringSubmatch(errOut)
		if code != exitInput || m == nil {
			t.Errorf("vrss %q: exit %d, stderr %q: want a hint", args, code, errOut)
			continue
		}
		if !regexp.MustCompile(`^vrss( [a-z]+)* -h$`).MatchString(m[1]) {
			t.Errorf("vrss %q: hint %q, want 'vrss [COMMAND [VERB]] -h'", args, m[1])
			continue
		}
		hint := strings.Fields(m[1])[1:]
		code, out, errOut := vrss(t, hint...)
		if code != exitOK || errOut != "" || !strings.Contains(out, "usage: vrss") {
			t.Errorf("the hint %q of vrss %q: exit %d, stderr %q, stdout %q: want the help", m[1], args, code, errOut, out)
		}
	}
	// The usage text names the same form.
	_, out, _ := vrss(t, "-h")
	if !strings.Contains(out, "'vrss COMMAND -h'") || strings.Contains(out, "vrss help") {
		t.Errorf("vrss -h does not point to 'vrss COMMAND -h' alone:\n%s", out)
	}
}
