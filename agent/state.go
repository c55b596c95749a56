package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/vrss-dev/vrss/agent/api"
)

// stateVersion is the layout of state.json.
const stateVersion = 1

// state is what vrssd needs to re-adopt its TAPs after a restart. The
// programs and maps themselves are pinned in bpffs; the configuration lives
// in the pinned map, so it is not repeated here.
type state struct {
	Version int        `json:"version"`
	TAPs    []tapState `json:"taps"`
}

type tapState struct {
	Name       string          `json:"name"`
	Index      int             `json:"index"`
	Queues     int             `json:"queues"`
	VnetHdrLen int             `json:"vnet_hdr_len"`
	OwnerUID   int             `json:"owner_uid"`
	OwnerGID   int             `json:"owner_gid"`
	Steering   bool            `json:"steering"`
	Adopted    bool            `json:"adopted"`
	ABI        string          `json:"abi"`
	HashReport *api.HashReport `json:"hash_report,omitempty"`
}

// readState reads dir/state.json; a missing file is an empty state.
func readState(dir string) (*state, error) {
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if errors.Is(err, os.ErrNotExist) {
		return &state{Version: stateVersion}, nil
	}
	if err != nil {
		return nil, err
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "state.json"), err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("%s: version %d, this vrssd reads %d", filepath.Join(dir, "state.json"), st.Version, stateVersion)
	}
	return &st, nil
}

// writeState replaces dir/state.json atomically: a crash leaves either the
// old or the new file, never a torn one.
func writeState(dir string, st *state) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".state.json.*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, "state.json"))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write state: %w", err)
	}
	// The rename itself must reach the disk too.
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
