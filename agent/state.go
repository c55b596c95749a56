package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/rss"
	"github.com/vrss-dev/vrss/steering"
)

// stateVersion is the layout of state.json. Version 1 and 2 files are read
// too: each version only added fields. Version 3 added TAPs with flows
// (tapState.Flows), which an older vrssd would steer without their rules
// and filter: state.json says 3 only when a TAP has flows, so that such a
// vrssd refuses the file, and 2 otherwise. Version 4 added TAPs in other
// network namespaces (tapState.Netns), which an older vrssd would look
// for in its own: state.json says 4 only when a TAP has one.
const (
	stateVersion      = 4
	stateVersionFlows = 3
	stateVersionPlain = 2
)

// maxStateSize bounds state.json: 252 queues' worth of records for
// thousands of TAPs is far below it.
const maxStateSize = 64 << 20

// state is what vrssd needs to re-adopt its TAPs after a restart. The
// programs and maps themselves are pinned in bpffs; the last configuration
// vrssd saw is kept too, so that a TAP whose pins are lost (bpffs
// unmounted, pins removed) is steered again as before.
type state struct {
	Version int `json:"version"`
	// BPFFSDir is the directory the TAPs' pins were made in: a start with
	// another one would find none of them.
	BPFFSDir string     `json:"bpffs_dir,omitempty"`
	TAPs     []tapState `json:"taps"`
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
	// Config is the configuration the TAP was steered by when the state
	// was last saved.
	Config *rss.Config `json:"config,omitempty"`
	// Creating marks a create that had not finished: vrssd records the
	// intent before it makes the device, so that a crash in between
	// leaves something startup can undo, not an orphan.
	Creating bool `json:"creating,omitempty"`
	// Flows: the TAP is steered by the flow build. A copy of its rules,
	// groups and RSS contexts, what a TAP whose pins are lost is steered
	// by again, is kept in a file of its own (see flowsPath): a TAP may
	// have flow.MaxRules rules, a few MB, which state.json, read whole at
	// every start, must not grow by.
	Flows bool `json:"flows,omitempty"`
	// Netns is the path of the network namespace the TAP lives in
	// (api.CreateArgs.Netns), empty for vrssd's own; NetnsDev and
	// NetnsIno identify the namespace it named, so that a start finds
	// the TAP only if the path still names that one.
	Netns    string `json:"netns,omitempty"`
	NetnsDev uint64 `json:"netns_dev,omitempty"`
	NetnsIno uint64 `json:"netns_ino,omitempty"`
}

// validate checks a record read from state.json as untrusted input: a
// record names directories vrssd removes and uids it hands fds to.
func (r *tapState) validate() error {
	if err := checkName(r.Name); err != nil {
		var ae *api.Error
		if errors.As(err, &ae) {
			return errors.New(ae.Message)
		}
		return err
	}
	switch {
	case r.Index < 0 || (r.Index == 0 && !r.Creating):
		return fmt.Errorf("ifindex %d", r.Index)
	case r.Queues < 1 || r.Queues > api.MaxQueues:
		return fmt.Errorf("%d queues: want 1 to %d", r.Queues, api.MaxQueues)
	case r.VnetHdrLen != 10 && r.VnetHdrLen != 12 && r.VnetHdrLen != 20:
		return fmt.Errorf("vnet header length %d: want 10, 12 or 20", r.VnetHdrLen)
	case !validID(r.OwnerUID):
		return fmt.Errorf("owner uid %d", r.OwnerUID)
	case !validID(r.OwnerGID):
		return fmt.Errorf("owner gid %d", r.OwnerGID)
	case r.Netns != "" && (checkNetnsPath(r.Netns) != nil || r.NetnsIno == 0):
		return fmt.Errorf("network namespace %q (inode %d)", r.Netns, r.NetnsIno)
	case r.Netns == "" && (r.NetnsIno != 0 || r.NetnsDev != 0):
		return errors.New("a network namespace inode without its path")
	case r.Netns != "" && r.Adopted:
		return errors.New("an adopted TAP in another network namespace")
	}
	if r.Config != nil {
		l := rss.Limits{MaxKeySize: rss.MaxKeySize, MaxTableLen: rss.MaxTableLen, HashTypes: rss.AllHashTypes, Queues: r.Queues}
		if err := r.Config.Validate(l); err != nil {
			return fmt.Errorf("configuration: %w", err)
		}
	}
	return nil
}

// validateFlows checks the copy of r's flow set read from its file, as
// untrusted input: it is published to the TAP's map if the pins are lost.
func (r *tapState) validateFlows(fs *api.FlowSet) error {
	if !r.Flows {
		return errors.New("flow rules or RSS contexts kept for a TAP without flows")
	}
	def := unconfigured()
	if r.Config != nil {
		def = *r.Config
	}
	s, err := fs.Set(def)
	if err == nil {
		err = s.Validate(steering.FlowLimits(r.Queues))
	}
	if err != nil {
		return fmt.Errorf("flow rules and RSS contexts: %w", err)
	}
	return nil
}

// flowsDir is the directory, in the state directory, of the copies of the
// flow sets of TAPs with flows, one file each; maxFlowsSize bounds one
// (flow.MaxRules rules take about 3.5 MB).
const (
	flowsDir     = "flows"
	maxFlowsSize = 16 << 20
)

// flowsPath is the file of the flow set of the TAP with key key (tapKey):
// named as its pin directory is, which no other valid key maps to. A
// TAP of vrssd's own namespace has its name for key, so its file has
// the name an older vrssd gave it.
func flowsPath(stateDir, key string) string {
	return filepath.Join(stateDir, flowsDir, pinDirName(key)+".json")
}

// flowsFile is a TAP's flows file: its name and network namespace path
// (none for vrssd's own, as in an older vrssd's files), and its set.
type flowsFile struct {
	Name  string `json:"name"`
	Netns string `json:"netns,omitempty"`
	api.FlowSet
}

// readFlows reads the copy of r's flow set, which must be a regular file
// (no link is followed); none is nil. A file that is not r's, or whose set
// is invalid, is an error naming it.
func readFlows(stateDir string, r *tapState) (*api.FlowSet, error) {
	path := flowsPath(stateDir, r.key())
	b, err := readStateFile(path, maxFlowsSize)
	if b == nil || err != nil {
		return nil, err
	}
	var ff flowsFile
	if err := json.Unmarshal(b, &ff); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if ff.Name != r.Name || ff.Netns != r.Netns {
		return nil, fmt.Errorf("%s: the flow set of %q (network namespace %q), not of %q (%q)", path, ff.Name, ff.Netns, r.Name, r.Netns)
	}
	if err := r.validateFlows(&ff.FlowSet); err != nil {
		return nil, fmt.Errorf("%s: %w; fix or remove the file, vrssd will not act on it", path, err)
	}
	return &ff.FlowSet, nil
}

// writeFlows replaces d's flows file atomically with fs, or removes it
// for nil.
func writeFlows(stateDir string, d *device, fs *api.FlowSet) error {
	var b []byte // nil removes the file
	if fs != nil {
		var err error
		if b, err = json.Marshal(flowsFile{Name: d.name, Netns: d.netnsPath(), FlowSet: *fs}); err != nil {
			return err
		}
	}
	return writeFlowsFile(flowsPath(stateDir, d.key()), b)
}

// writeFlowsFile replaces path, a file of the flows directory, atomically
// with b and a newline, or removes it for nil b. The directory is made if
// missing, and must be vrssd's own (checkOwnDir).
func writeFlowsFile(path string, b []byte) error {
	if b == nil {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	dir := filepath.Dir(path)
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	if err := checkOwnDir("flows directory", dir); err != nil {
		return err
	}
	if err := writeFileAtomic(path, append(b, '\n')); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// readStateFile reads path, a file of vrssd's state directory, which must
// be a regular file (no symbolic link is followed) of at most max bytes. A
// missing file is nil with no error; an empty one is an empty, non-nil
// slice. Any other failure is an error naming path.
func readStateFile(path string, max int) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, nil
	case errors.Is(err, unix.ELOOP):
		return nil, fmt.Errorf("%s is a symbolic link; vrssd follows none in its state directory", path)
	case err != nil:
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, int64(max)+1))
	if err != nil {
		return nil, err
	}
	if len(b) > max {
		return nil, fmt.Errorf("%s: over %d bytes", path, max)
	}
	if b == nil {
		b = []byte{}
	}
	return b, nil
}

// validID reports whether id is a uid or gid the kernel can hold
// ((uid_t)-1 means "unset" and is not one).
func validID(id int) bool { return id >= 0 && id <= 1<<32-2 }

// readState reads dir/state.json, which must be a regular file (no
// symbolic link is followed); a missing file is an empty state. Every
// record is validated: an invalid one is an error naming it, and vrssd
// refuses to start rather than act on it.
func readState(dir string) (*state, error) {
	path := filepath.Join(dir, "state.json")
	b, err := readStateFile(path, maxStateSize)
	if err != nil {
		return nil, err
	}
	if b == nil {
		return &state{Version: stateVersion}, nil
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if st.Version < 1 || st.Version > stateVersion {
		return nil, fmt.Errorf("%s: version %d, this vrssd reads 1 to %d", path, st.Version, stateVersion)
	}
	seen := map[string]bool{}
	for i := range st.TAPs {
		r := &st.TAPs[i]
		if err := r.validate(); err != nil {
			return nil, fmt.Errorf("%s: record %d (TAP %q): %w; fix or remove the record, vrssd will not act on it", path, i, r.Name, err)
		}
		if seen[r.key()] {
			return nil, fmt.Errorf("%s: record %d: TAP %q is listed twice", path, i, r.Name)
		}
		seen[r.key()] = true
	}
	return &st, nil
}

// writeState replaces dir/state.json atomically: a crash leaves either the
// old or the new file, never a torn one.
func writeState(dir string, st *state) error {
	out := *st
	if out.Version == stateVersion && !slices.ContainsFunc(out.TAPs, func(r tapState) bool { return r.Netns != "" }) {
		out.Version = stateVersionFlows
	}
	if out.Version == stateVersionFlows && !slices.ContainsFunc(out.TAPs, func(r tapState) bool { return r.Flows }) {
		out.Version = stateVersionPlain
	}
	b, err := json.MarshalIndent(&out, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(dir, "state.json"), append(b, '\n')); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	// The rename itself must reach the disk too.
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// pinDirName is the directory, under the bpffs directory, of the TAP
// name's pins. bpffs refuses names with a dot, which interface names may
// have, and interface names cannot contain '%': each dot becomes "%2e",
// which no other valid name maps to.
func pinDirName(name string) string { return strings.ReplaceAll(name, ".", "%2e") }

// checkOwnDir refuses a directory vrssd keeps its state, pins or socket in
// unless it is a directory (not a symbolic link to one) owned by vrssd's
// user and writable by no one else: whoever can write there can plant
// files and links that vrssd, running as root, would act on.
func checkOwnDir(what, dir string) error {
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return fmt.Errorf("%s %s: %w", what, dir, err)
	}
	switch {
	case st.Mode&unix.S_IFMT == unix.S_IFLNK:
		return fmt.Errorf("%s %s is a symbolic link: give the directory itself", what, dir)
	case st.Mode&unix.S_IFMT != unix.S_IFDIR:
		return fmt.Errorf("%s %s is not a directory", what, dir)
	case int(st.Uid) != os.Geteuid():
		return fmt.Errorf("%s %s is owned by uid %d, not by vrssd's uid %d: whoever owns it could plant links vrssd would follow (chown %d %s)", what, dir, st.Uid, os.Geteuid(), os.Geteuid(), dir)
	case st.Mode&0o022 != 0:
		return fmt.Errorf("%s %s has mode %04o: it must not be writable by group or others (chmod go-w %s)", what, dir, st.Mode&0o7777, dir)
	}
	return nil
}
