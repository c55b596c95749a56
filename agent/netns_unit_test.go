package agent

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestStateNetns: records of TAPs in other namespaces are written as
// version 4 and read back; one name in two namespaces is two TAPs; bad
// namespace fields are refused, naming the record.
func TestStateNetns(t *testing.T) {
	dir := t.TempDir()
	rec := func(name, netns string, ino uint64) tapState {
		return tapState{Name: name, Index: 2, Queues: 2, VnetHdrLen: 12, OwnerUID: 107, OwnerGID: 107, Steering: true, ABI: "x", Netns: netns, NetnsDev: 4, NetnsIno: ino}
	}
	st := &state{Version: stateVersion, TAPs: []tapState{rec("tap0", "", 0), rec("tap0", "/var/run/netns/a", 11), rec("tap0", "/var/run/netns/b", 12)}}
	st.TAPs[0].NetnsDev = 0
	st.TAPs[1].Flows = true // flows in a namespace are kept too
	if err := writeState(dir, st); err != nil {
		t.Fatal(err)
	}
	got, err := readState(dir)
	if err != nil || got.Version != 4 || len(got.TAPs) != 3 {
		t.Fatalf("%+v, %v", got, err)
	}
	keys := map[string]bool{}
	for _, r := range got.TAPs {
		keys[r.key()] = true
	}
	if len(keys) != 3 || !keys["tap0"] || !keys["tap0:netns11"] {
		t.Fatalf("keys %v", keys)
	}
	if !got.TAPs[1].Flows || got.TAPs[1].Netns != "/var/run/netns/a" {
		t.Fatalf("the namespace's TAP with flows read back as %+v", got.TAPs[1])
	}
	for _, tc := range []struct {
		name string
		r    tapState
		want string
	}{
		{"relative path", rec("tap0", "netns/a", 11), "network namespace"},
		{"unclean path", rec("tap0", "/var/run/netns/../a", 11), "network namespace"},
		{"no inode", rec("tap0", "/var/run/netns/a", 0), "network namespace"},
		{"inode without path", rec("tap0", "", 11), "without its path"},
		{"adopted", func() tapState { r := rec("tap0", "/var/run/netns/a", 11); r.Adopted = true; return r }(), "adopted"},
		{"twice", rec("tap0", "/var/run/netns/b", 12), "listed twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			taps := []tapState{rec("tap0", "/var/run/netns/b", 12), tc.r}
			b, _ := json.Marshal(&state{Version: 4, TAPs: taps})
			os.WriteFile(filepath.Join(dir, "state.json"), b, 0o600)
			_, err := readState(dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v, want an error saying %q", err, tc.want)
			}
		})
	}
}
