// Package buildinfo says which build of vrss a binary is, for the
// --version of vrss and vrssd.
package buildinfo

import (
	"runtime/debug"
	"strings"
)

// Devel is the version of a build that records neither a module version
// nor a VCS revision (go run, go test, or go build -buildvcs=false).
const Devel = "(devel)"

// Version returns the running binary's version; see Describe.
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return Devel
	}
	return Describe(bi)
}

// Describe returns the version bi records, in this order of preference:
//
//   - the main module's version, when it has one: a release tag such as
//     v1.2.0 for go install github.com/vrss-dev/vrss/cmd/vrss@v1.2.0, or,
//     for go build in a git checkout (Go 1.24 and later), a pseudo-version
//     such as v0.0.0-20260101120000-0123456789ab+dirty that holds the
//     commit's time and revision;
//   - else the VCS revision (12 digits, like a pseudo-version's) and
//     commit time, with "(modified)" when the work tree had changes:
//     "0123456789ab 2026-01-01T12:00:00Z (modified)";
//   - else Devel.
func Describe(bi *debug.BuildInfo) string {
	if bi == nil {
		return Devel
	}
	if v := bi.Main.Version; v != "" && v != Devel {
		return v
	}
	var rev, at string
	modified := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if rev == "" {
		return Devel
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	parts := []string{rev}
	if at != "" {
		parts = append(parts, at)
	}
	if modified {
		parts = append(parts, "(modified)")
	}
	return strings.Join(parts, " ")
}
