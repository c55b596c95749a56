package main

import (
	"fmt"
	"testing"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/internal/buildinfo"
	"github.com/vrss-dev/vrss/internal/buildinfo/buildtest"
	"github.com/vrss-dev/vrss/steering"
)

// vrss --version (and -version, version) prints the build's version, the
// daemon protocol and the steering ABI, the same lines vrssd --version
// prints. A test binary has no VCS stamp: its version is (devel).
func TestVersion(t *testing.T) {
	want := fmt.Sprintf("vrss %s\nprotocol %d, ABI %s\n", buildinfo.Version(), api.ProtocolVersion, steering.ABIStamp())
	for _, arg := range []string{"--version", "-version", "version"} {
		code, out, errOut := vrss(t, arg)
		if code != 0 || errOut != "" || out != want {
			t.Errorf("vrss %s: exit %d, stdout %q, stderr %q; want %q", arg, code, out, errOut, want)
		}
	}
}

// A vrss built with go build in a git checkout prints a real version that
// names the commit.
func TestVersionStamped(t *testing.T) {
	if testing.Short() {
		t.Skip("builds vrss")
	}
	buildtest.CheckStamped(t, "vrss", buildtest.Stamped(t, "vrss"))
}
