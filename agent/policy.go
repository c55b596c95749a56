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
//	 "max_taps_per_uid": 64, "max_queues_per_uid": 512,
//	 "max_conns_per_uid": 64, "requests_per_second_per_uid": 100,
//	 "qemu_binaries": ["/usr/bin/qemu-system-x86_64"]}
//
// Any peer may use the TAPs it owns (open, set and get the configuration,
// flow rules and RSS contexts, stats, detach, delete, qemu_ebpf). Peers in create may also create TAPs,
// owned by themselves, and adopt TAPs the kernel already lets them attach
// to. Peers in admin, like root, may do everything to every TAP.
//
// The per-uid limits bound what one user other than root and the admins
// can take of vrssd: TAPs and queues owned (each queue is a file
// descriptor vrssd holds), connections open at once, and requests a
// second. Zero or absent means the default (DefaultMaxTAPsPerUID and so
// on).
type Policy struct {
	Create Principals `json:"create"`
	Admin  Principals `json:"admin"`
	// MaxQueues caps the queues of a TAP; 0 means api.MaxQueues.
	MaxQueues int `json:"max_queues"`
	// MaxTAPsPerUID caps the TAPs a user other than root and admins may
	// own under vrssd; 0 means DefaultMaxTAPsPerUID.
	MaxTAPsPerUID int `json:"max_taps_per_uid"`
	// MaxQueuesPerUID caps the queues of all the TAPs such a user owns;
	// 0 means DefaultMaxQueuesPerUID.
	MaxQueuesPerUID int `json:"max_queues_per_uid"`
	// MaxConnsPerUID caps the connections such a user may have open; 0
	// means DefaultMaxConnsPerUID.
	MaxConnsPerUID int `json:"max_conns_per_uid"`
	// RequestsPerSecondPerUID caps such a user's request rate (with a
	// burst of twice as many); 0 means DefaultRequestsPerSecondPerUID.
	RequestsPerSecondPerUID float64 `json:"requests_per_second_per_uid"`
	// QEMUBinaries are the QEMU executables (absolute paths) vrssd will
	// run to obtain QEMU's eBPF RSS object (qemu_ebpf): a client names the
	// QEMU it will start, and vrssd must never execute a binary a client
	// chose. Absent, it is DefaultQEMUBinaries; an empty list allows none.
	// Symbolic links are resolved on both sides at request time.
	QEMUBinaries []string `json:"qemu_binaries"`
}

// Defaults of the per-uid limits. A VM host where one uid runs every QEMU
// (libvirt's, KubeVirt's 107) may need higher ones.
const (
	DefaultMaxTAPsPerUID           = 64
	DefaultMaxQueuesPerUID         = 512
	DefaultMaxConnsPerUID          = 64
	DefaultRequestsPerSecondPerUID = 100
)

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
	for _, l := range []struct {
		name string
		v    int
	}{{"max_taps_per_uid", p.MaxTAPsPerUID}, {"max_queues_per_uid", p.MaxQueuesPerUID}, {"max_conns_per_uid", p.MaxConnsPerUID}} {
		if l.v < 0 || l.v > 1<<20 {
			return Policy{}, fmt.Errorf("%s %d: want 1 to %d, or 0 for the default", l.name, l.v, 1<<20)
		}
	}
	if !(p.RequestsPerSecondPerUID >= 0 && p.RequestsPerSecondPerUID <= 1e6) {
		return Policy{}, fmt.Errorf("requests_per_second_per_uid %g: want a number above 0 up to 1e6, or 0 for the default", p.RequestsPerSecondPerUID)
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

func orDefault[T int | float64](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

func (p *Policy) maxTAPsPerUID() int   { return orDefault(p.MaxTAPsPerUID, DefaultMaxTAPsPerUID) }
func (p *Policy) maxQueuesPerUID() int { return orDefault(p.MaxQueuesPerUID, DefaultMaxQueuesPerUID) }
func (p *Policy) maxConnsPerUID() int  { return orDefault(p.MaxConnsPerUID, DefaultMaxConnsPerUID) }
func (p *Policy) requestRate() float64 {
	return orDefault(p.RequestsPerSecondPerUID, DefaultRequestsPerSecondPerUID)
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
