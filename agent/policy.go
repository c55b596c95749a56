package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/vrss-dev/vrss/agent/api"
)

// Policy is vrssd's configuration file: who besides root may do what.
//
//	{"create": {"uids": [1000], "gids": [107]},
//	 "admin":  {"uids": [], "gids": [0]},
//	 "max_queues": 16,
//	 "qemu_binaries": ["/usr/bin/qemu-system-x86_64"]}
//
// Any peer may use the TAPs it owns (open, set and get the configuration,
// stats, detach, delete, qemu_ebpf). Peers in create may also create TAPs,
// owned by themselves, and adopt TAPs the kernel already lets them attach
// to. Peers in admin, like root, may do everything to every TAP.
type Policy struct {
	Create Principals `json:"create"`
	Admin  Principals `json:"admin"`
	// MaxQueues caps the queues of a TAP; 0 means api.MaxQueues.
	MaxQueues int `json:"max_queues"`
	// QEMUBinaries are the QEMU executables (absolute paths) vrssd will
	// run to obtain QEMU's eBPF RSS object (qemu_ebpf): a client names the
	// QEMU it will start, and vrssd must never execute a binary a client
	// chose. Absent, it is DefaultQEMUBinaries; an empty list allows none.
	// Symbolic links are resolved on both sides at request time.
	QEMUBinaries []string `json:"qemu_binaries"`
}

// DefaultQEMUBinaries is the qemu_binaries allowlist when the
// configuration file has none: the distribution's QEMU.
var DefaultQEMUBinaries = []string{"/usr/bin/qemu-system-x86_64"}

// Principals name users and groups. A peer matches if its uid is listed
// or its primary or any supplementary group is.
type Principals struct {
	UIDs []int `json:"uids"`
	GIDs []int `json:"gids"`
}

func (p Principals) match(c *peer) bool {
	if slices.Contains(p.UIDs, c.uid) {
		return true
	}
	for _, g := range c.groups() {
		if slices.Contains(p.GIDs, g) {
			return true
		}
	}
	return false
}

// ParsePolicy parses a configuration file strictly: unknown fields and
// trailing data are errors.
func ParsePolicy(b []byte) (Policy, error) {
	var p Policy
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&p); err != nil {
		return Policy{}, err
	}
	if _, err := d.Token(); !errors.Is(err, io.EOF) {
		return Policy{}, errors.New("data after the configuration object")
	}
	if p.MaxQueues < 0 || p.MaxQueues > api.MaxQueues {
		return Policy{}, fmt.Errorf("max_queues %d: want 1 to %d, or 0 for %d", p.MaxQueues, api.MaxQueues, api.MaxQueues)
	}
	for _, id := range slices.Concat(p.Create.UIDs, p.Create.GIDs, p.Admin.UIDs, p.Admin.GIDs) {
		if id < 0 {
			return Policy{}, fmt.Errorf("negative id %d", id)
		}
	}
	for _, q := range p.QEMUBinaries {
		if !filepath.IsAbs(q) {
			return Policy{}, fmt.Errorf("qemu_binaries: %q is not an absolute path", q)
		}
	}
	return p, nil
}

// LoadPolicy reads the configuration file at path. A missing file is the
// empty policy (root only) unless required, so that the default path may
// be absent.
func LoadPolicy(path string, required bool) (Policy, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && !required {
		return Policy{}, nil
	}
	if err != nil {
		return Policy{}, err
	}
	p, err := ParsePolicy(b)
	if err != nil {
		return Policy{}, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

func (p *Policy) maxQueues() int {
	if p.MaxQueues == 0 {
		return api.MaxQueues
	}
	return p.MaxQueues
}

// qemuBinaries is the effective qemu_binaries allowlist.
func (p *Policy) qemuBinaries() []string {
	if p.QEMUBinaries == nil {
		return DefaultQEMUBinaries
	}
	return p.QEMUBinaries
}

// admin reports whether c may do everything.
func (p *Policy) admin(c *peer) bool { return c.uid == 0 || p.Admin.match(c) }

// canCreate reports whether c may create and adopt TAPs.
func (p *Policy) canCreate(c *peer) bool { return p.admin(c) || p.Create.match(c) }

// owns reports whether c may use the TAP d.
func (p *Policy) owns(c *peer, d *device) bool { return p.admin(c) || d.owner == c.uid }
