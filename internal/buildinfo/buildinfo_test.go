package buildinfo

import (
	"runtime/debug"
	"testing"
)

func TestDescribe(t *testing.T) {
	vcs := func(kv ...string) []debug.BuildSetting {
		var s []debug.BuildSetting
		for i := 0; i < len(kv); i += 2 {
			s = append(s, debug.BuildSetting{Key: kv[i], Value: kv[i+1]})
		}
		return s
	}
	const rev = "e22b08c063359bf8f0e907ee83debfe22a25ffd4"
	for _, tc := range []struct {
		name string
		bi   *debug.BuildInfo
		want string
	}{
		{"no build info", nil, "(devel)"},
		{"go run", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "(devel)"},
		{"empty", &debug.BuildInfo{}, "(devel)"},
		{"release", &debug.BuildInfo{Main: debug.Module{Version: "v1.2.0"}, Settings: vcs("vcs.revision", rev)}, "v1.2.0"},
		{"pseudo-version", &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261128190533-e22b08c06335+dirty"}}, "v0.0.0-20261128190533-e22b08c06335+dirty"},
		{"revision and time", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"},
			Settings: vcs("vcs", "git", "vcs.revision", rev, "vcs.time", "2026-11-28T19:05:33Z", "vcs.modified", "false")},
			"e22b08c06335 2026-11-28T19:05:33Z"},
		{"modified", &debug.BuildInfo{Settings: vcs("vcs.revision", rev, "vcs.time", "2026-11-28T19:05:33Z", "vcs.modified", "true")},
			"e22b08c06335 2026-11-28T19:05:33Z (modified)"},
		{"revision only", &debug.BuildInfo{Settings: vcs("vcs.revision", "abc123")}, "abc123"},
		{"time without revision", &debug.BuildInfo{Settings: vcs("vcs.time", "2026-11-28T19:05:33Z")}, "(devel)"},
	} {
		if got := Describe(tc.bi); got != tc.want {
			t.Errorf("%s: Describe = %q, want %q", tc.name, got, tc.want)
		}
	}
}

// A test binary records no VCS information: Version says (devel), not "".
func TestVersionOfTestBinary(t *testing.T) {
	if v := Version(); v == "" {
		t.Error("Version is empty")
	}
}
