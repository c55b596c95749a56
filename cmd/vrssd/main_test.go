package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/internal/buildinfo"
	"github.com/vrss-dev/vrss/internal/buildinfo/buildtest"
	"github.com/vrss-dev/vrss/steering"
)

func TestFlags(t *testing.T) {
	dir := t.TempDir()
	badConfig := filepath.Join(dir, "bad.json")
	os.WriteFile(badConfig, []byte(`{"create": {"uids": [1]}, "bogus": 1}`), 0o644)
	tooMany := filepath.Join(dir, "many.json")
	os.WriteFile(tooMany, []byte(`{"max_queues": 1000}`), 0o644)
	for _, tc := range []struct {
		args     []string
		code     int
		out, err string
	}{
		{[]string{"--help"}, exitOK, "--bpffs-dir DIR", ""},
		{[]string{"-h"}, exitOK, "VRSS_SOCKET", ""},
		{[]string{"--help"}, exitOK, "--metrics ADDR", ""},
		{[]string{"--metrics", "9655"}, exitInput, "", "--metrics \"9655\": want host:port"},
		{[]string{"--version"}, exitOK, steering.ABIStamp(), ""},
		{[]string{"--bogus"}, exitInput, "", "flag provided but not defined"},
		{[]string{"extra"}, exitInput, "", "unexpected argument"},
		{[]string{"--log-format", "xml"}, exitInput, "", "--log-format"},
		{[]string{"--log-level", "loud"}, exitInput, "", "--log-level"},
		{[]string{"--config", filepath.Join(dir, "missing.json")}, exitInput, "", "no such file"},
		{[]string{"--config", badConfig}, exitInput, "", `unknown field "bogus"`},
		{[]string{"--config", tooMany}, exitInput, "", "max_queues 1000"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(tc.args, &stdout, &stderr)
		if code != tc.code || !strings.Contains(stdout.String(), tc.out) || !strings.Contains(stderr.String(), tc.err) {
			t.Errorf("vrssd %s: exit %d, stdout %q, stderr %q; want exit %d, %q, %q",
				strings.Join(tc.args, " "), code, stdout.String(), stderr.String(), tc.code, tc.out, tc.err)
		}
	}
}

// A runtime failure (here: a socket path that is not a socket) exits 1.
func TestRuntimeFailure(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("starting vrssd needs root")
	}
	dir := t.TempDir()
	notSocket := filepath.Join(dir, "file")
	os.WriteFile(notSocket, nil, 0o644)
	var stdout, stderr bytes.Buffer
	code := run([]string{"--socket", notSocket, "--state-dir", filepath.Join(dir, "state"), "--bpffs-dir", "/proc/vrss-no-such-dir"}, &stdout, &stderr)
	if code != exitFailed || !strings.Contains(stderr.String(), "cannot start") {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
}

// vrssd --version prints the build's version, the protocol and the ABI
// stamp; built with go build in a git checkout, a version that names the
// commit rather than "(devel)".
func TestVersion(t *testing.T) {
	var stdout, stderr bytes.Buffer
	want := fmt.Sprintf("vrssd %s\nprotocol %d, ABI %s\n", buildinfo.Version(), api.ProtocolVersion, steering.ABIStamp())
	if code := run([]string{"--version"}, &stdout, &stderr); code != exitOK || stdout.String() != want || stderr.Len() != 0 {
		t.Errorf("exit %d, stdout %q, stderr %q; want %q", code, stdout.String(), stderr.String(), want)
	}
	if testing.Short() {
		t.Skip("builds vrssd")
	}
	buildtest.CheckStamped(t, "vrssd", buildtest.Stamped(t, "vrssd"))
}
