package portxdp

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/cilium/ebpf"
)

// Pin names: the file names Pin, and a daemon that pins the program's XDP
// link beside them (PinLink), use in a directory of a bpf filesystem. They
// differ from the steering program's (prog, config, stats, ...), so that
// both may share a TAP's pin directory.
const (
	PinProg   = "port_prog"
	PinConfig = "port_config"
	PinStats  = "port_stats"
	PinUplink = "port_uplink"
	PinXSKs   = "port_xsks"
	PinLink   = "port_link"
)

// pinNames are every name Unpin removes.
var pinNames = []string{PinLink, PinProg, PinConfig, PinStats, PinUplink, PinXSKs}

// Pin pins the program and its maps in dir, an existing directory of a
// bpf filesystem, so that they outlive the process (with its published
// policy, uplink, AF_XDP sockets and counters). The debug map is not
// pinned.
func (p *Program) Pin(dir string) error {
	objs := []struct {
		name string
		pin  func(string) error
	}{{PinProg, p.Prog.Pin}, {PinConfig, p.ConfigMap.Pin}, {PinStats, p.StatsMap.Pin}, {PinUplink, p.UplinkMap.Pin}, {PinXSKs, p.XSKMap.Pin}}
	for _, o := range objs {
		if err := o.pin(filepath.Join(dir, o.name)); err != nil {
			return fmt.Errorf("portxdp: pin %s: %w", o.name, err)
		}
	}
	return nil
}

// ErrOtherLayout says pins are of another layout version of the map
// (Magic).
var ErrOtherLayout = errors.New("portxdp: pins of another layout version")

// LoadPinned loads a program and its maps that Pin pinned in dir, and maps
// its policy map for Publish. An error wrapping os.ErrNotExist says a pin
// is missing; ErrOtherLayout, that the pins are of another layout version
// (a vrssd before an upgrade pinned them): the caller installs a new
// program.
func LoadPinned(dir string) (*Program, error) {
	p := &Program{}
	var err error
	if p.Prog, err = ebpf.LoadPinnedProgram(filepath.Join(dir, PinProg), nil); err == nil {
		for _, m := range []struct {
			name string
			to   **ebpf.Map
		}{{PinConfig, &p.ConfigMap}, {PinStats, &p.StatsMap}, {PinUplink, &p.UplinkMap}, {PinXSKs, &p.XSKMap}} {
			if *m.to, err = ebpf.LoadPinnedMap(filepath.Join(dir, m.name), nil); err != nil {
				break
			}
		}
	}
	if err == nil {
		p.pub, err = NewPublisher(p.ConfigMap.FD())
	}
	// A policy published under another stamp is an older program's: it
	// would take a policy of this layout as none (and drop every frame),
	// or, of version 2, judge an AF_XDP port's frames outbound.
	if err == nil {
		if m := atomic.LoadUint32(&p.pub.cfg.Magic); m != 0 && m != Magic {
			err = fmt.Errorf("%w: stamp %#x, this build's %#x", ErrOtherLayout, m, uint32(Magic))
		}
	}
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("portxdp: load pins from %s: %w", dir, err)
	}
	return p, nil
}

// Unpin removes the pins Pin makes in dir, and PinLink; pins already gone
// are no error. Nothing else in dir is touched. Removing the link's pin
// detaches the program if nothing else holds the link.
func Unpin(dir string) error {
	var errs []error
	for _, name := range pinNames {
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
