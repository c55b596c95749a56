// Package ebpfrss knows QEMU's eBPF RSS object: the steering program QEMU
// builds from tools/ebpf/rss.bpf.c and hands out through QMP request-ebpf
// (QEMU 9.0 and later), with the three maps QEMU writes its guest's RSS
// configuration into. It checks that an object is one, loads it, and
// writes and reads that configuration the way QEMU does.
//
// vrss uses it to hand QEMU's program to an unprivileged QEMU (vrssd's
// qemu_ebpf), to compare QEMU's program with vrss's in tests, and to
// benchmark it (`vrss bench --qemu-object`).
package ebpfrss

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/rss"
)

// ProgramName is the name of QEMU's steering program in the object.
const ProgramName = "tun_rss_steering_prog"

// MapNames are QEMU's map names in ebpf-rss-fds order (after the
// program): configuration, Toeplitz key, indirection table.
var MapNames = [3]string{"tap_rss_map_configurations", "tap_rss_map_toeplitz_key", "tap_rss_map_indirection_table"}

// Sizes of QEMU's map values and limits.
const (
	// ConfigSize is the configuration's size: packed u8 redirect, u8
	// populate_hash, u32 hash_types, u16 indirections_len, u16
	// default_queue, in host byte order.
	ConfigSize = 10
	// KeySize is the Toeplitz key's size: its first 32 bits as a
	// host-order word, then the next 36 bytes. QEMU's key is always 40
	// bytes, the virtio-net maximum it offers.
	KeySize = 40
	// MaxTable is the most indirection table entries QEMU's map holds.
	MaxTable = 128
)

// Config is what QEMU writes into the maps for its guest's configuration.
type Config struct {
	// Redirect is set while the guest has RSS on: only then does the
	// program steer by the table.
	Redirect bool
	// PopulateHash asks for hash reports, which the program cannot give
	// (QEMU turns eBPF RSS off when the guest wants them).
	PopulateHash bool
	// HashTypes are the enabled hash types, virtio's bits.
	HashTypes rss.HashType
	// Key is the Toeplitz key, KeySize bytes.
	Key []byte
	// Table is the indirection table, a power of two up to MaxTable
	// entries.
	Table []uint16
	// DefaultQueue takes packets no enabled hash type covers.
	DefaultQueue uint16
}

// FromRSS is the configuration QEMU would write for a guest that set c:
// steering on, no hash reports.
func FromRSS(c rss.Config) Config {
	return Config{Redirect: true, HashTypes: c.HashTypes, Key: c.Key, Table: c.Table, DefaultQueue: c.UnclassifiedQueue}
}

// RSS returns the configuration as the rss engine takes it.
func (c Config) RSS() rss.Config {
	return rss.Config{HashTypes: c.HashTypes, Key: c.Key, Table: c.Table, UnclassifiedQueue: c.DefaultQueue}
}

// validate checks what the maps can hold.
func (c Config) validate() error {
	if len(c.Key) != KeySize {
		return fmt.Errorf("ebpfrss: key of %d bytes; QEMU's map holds exactly %d", len(c.Key), KeySize)
	}
	n := len(c.Table)
	if n == 0 || n > MaxTable || n&(n-1) != 0 {
		return fmt.Errorf("ebpfrss: indirection table of %d entries; want a power of two up to %d", n, MaxTable)
	}
	return nil
}

// encodeConfig returns the configuration map's value.
func (c Config) encodeConfig() []byte {
	b := []byte{boolByte(c.Redirect), boolByte(c.PopulateHash)}
	b = binary.NativeEndian.AppendUint32(b, uint32(c.HashTypes))
	b = binary.NativeEndian.AppendUint16(b, uint16(len(c.Table)))
	return binary.NativeEndian.AppendUint16(b, c.DefaultQueue)
}

// encodeKey returns the key map's value.
func (c Config) encodeKey() []byte {
	b := binary.NativeEndian.AppendUint32(nil, binary.BigEndian.Uint32(c.Key))
	return append(b, c.Key[4:KeySize]...)
}

// decode fills c from the configuration and key map values; the table is
// read separately, since its length is in the configuration.
func (c *Config) decode(config, key []byte) error {
	if len(config) < ConfigSize || len(key) < KeySize {
		return fmt.Errorf("ebpfrss: map values of %d and %d bytes; want %d and %d", len(config), len(key), ConfigSize, KeySize)
	}
	c.Redirect, c.PopulateHash = config[0] != 0, config[1] != 0
	c.HashTypes = rss.HashType(binary.NativeEndian.Uint32(config[2:]))
	c.Table = make([]uint16, binary.NativeEndian.Uint16(config[6:]))
	c.DefaultQueue = binary.NativeEndian.Uint16(config[8:])
	c.Key = binary.BigEndian.AppendUint32(nil, binary.NativeEndian.Uint32(key))
	c.Key = append(c.Key, key[4:KeySize]...)
	if len(c.Table) > MaxTable {
		return fmt.Errorf("ebpfrss: configuration says %d table entries; the map holds %d", len(c.Table), MaxTable)
	}
	return nil
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// Check checks that spec is QEMU's RSS object as vrss knows it: one
// program, a socket filter, and the three maps, arrays with
// BPF_F_MMAPABLE (QEMU mmaps them) with values of the sizes above. A
// program of unspecified type is made a socket filter, as QEMU does before
// loading it.
func Check(spec *ebpf.CollectionSpec) error {
	if len(spec.Programs) != 1 {
		return fmt.Errorf("%d programs, want exactly one (%s)", len(spec.Programs), ProgramName)
	}
	for name, p := range spec.Programs {
		switch {
		case name != ProgramName:
			return fmt.Errorf("program %s, want %s", name, ProgramName)
		case p.Type == ebpf.UnspecifiedProgram:
			p.Type = ebpf.SocketFilter
		case p.Type != ebpf.SocketFilter:
			return fmt.Errorf("program %s is of type %s; TUNSETSTEERINGEBPF takes socket filters", name, p.Type)
		}
	}
	for i, name := range MapNames {
		m, ok := spec.Maps[name]
		switch {
		case !ok:
			return fmt.Errorf("no map %s (has %s): a QEMU whose maps vrss does not know", name, strings.Join(slices.Sorted(maps.Keys(spec.Maps)), ", "))
		case m.Type != ebpf.Array || m.Flags&unix.BPF_F_MMAPABLE == 0:
			return fmt.Errorf("map %s is a %s with flags %#x; QEMU mmaps it, so it must be an array with BPF_F_MMAPABLE", name, m.Type, m.Flags)
		case m.ValueSize != []uint32{ConfigSize, KeySize, 2}[i]:
			return fmt.Errorf("map %s has %d-byte values; vrss knows it with %d", name, m.ValueSize, []uint32{ConfigSize, KeySize, 2}[i])
		case i == 2 && m.MaxEntries != MaxTable:
			return fmt.Errorf("map %s has %d entries; vrss knows it with %d", name, m.MaxEntries, MaxTable)
		}
	}
	return nil
}

// ParseObject reads an object file's bytes and checks it (see Check).
func ParseObject(obj []byte) (*ebpf.CollectionSpec, error) {
	spec, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(obj))
	if err != nil {
		return nil, fmt.Errorf("not a loadable eBPF object: %w", err)
	}
	if err := Check(spec); err != nil {
		return nil, err
	}
	return spec, nil
}

// Object is QEMU's program with its maps, loaded or taken from a QEMU.
type Object struct {
	Program *ebpf.Program
	// Config, Key and Table are the maps in MapNames order.
	Config, Key, Table *ebpf.Map
}

// Load loads a checked spec (ParseObject) into the kernel.
func Load(spec *ebpf.CollectionSpec) (*Object, error) {
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	o := &Object{Program: coll.Programs[ProgramName], Config: coll.Maps[MapNames[0]], Key: coll.Maps[MapNames[1]], Table: coll.Maps[MapNames[2]]}
	delete(coll.Programs, ProgramName)
	for _, name := range MapNames {
		delete(coll.Maps, name)
	}
	coll.Close()
	return o, nil
}

// LoadFile reads, checks and loads the object file at path.
func LoadFile(path string) (*Object, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	spec, err := ParseObject(data)
	if err == nil {
		var o *Object
		if o, err = Load(spec); err == nil {
			return o, nil
		}
	}
	return nil, fmt.Errorf("%s: %w", path, err)
}

// FromFDs takes over fds, the program and its maps in ebpf-rss-fds order
// (as QEMU holds them); they are closed, on failure too.
func FromFDs(fds [4]int) (*Object, error) {
	o := &Object{}
	var err error
	o.Program, err = ebpf.NewProgramFromFD(fds[0])
	for i, m := range []**ebpf.Map{&o.Config, &o.Key, &o.Table} {
		if err != nil {
			for _, fd := range fds[1+i:] {
				unix.Close(fd)
			}
			break
		}
		*m, err = ebpf.NewMapFromFD(fds[1+i])
	}
	if err != nil {
		o.Close()
		return nil, fmt.Errorf("not QEMU's eBPF RSS program and maps: %w", err)
	}
	return o, nil
}

// Close closes the program and maps.
func (o *Object) Close() error {
	var errs []error
	if o.Program != nil {
		errs = append(errs, o.Program.Close())
	}
	for _, m := range []*ebpf.Map{o.Config, o.Key, o.Table} {
		if m != nil {
			errs = append(errs, m.Close())
		}
	}
	return errors.Join(errs...)
}

// Write writes c into the maps as QEMU does: table and key first, the
// configuration that points at them last. Like QEMU, it is not atomic: a
// packet steered meanwhile may see a mix.
func (o *Object) Write(c Config) error {
	if err := c.validate(); err != nil {
		return err
	}
	for i, q := range c.Table {
		if err := o.Table.Put(uint32(i), q); err != nil {
			return fmt.Errorf("ebpfrss: indirection table entry %d: %w", i, err)
		}
	}
	if err := o.Key.Put(uint32(0), c.encodeKey()); err != nil {
		return fmt.Errorf("ebpfrss: key: %w", err)
	}
	if err := o.Config.Put(uint32(0), c.encodeConfig()); err != nil {
		return fmt.Errorf("ebpfrss: configuration: %w", err)
	}
	return nil
}

// Read reads the configuration back from the maps.
func (o *Object) Read() (Config, error) {
	var c Config
	config, err := o.Config.LookupBytes(uint32(0))
	if err != nil {
		return c, fmt.Errorf("ebpfrss: configuration: %w", err)
	}
	key, err := o.Key.LookupBytes(uint32(0))
	if err != nil {
		return c, fmt.Errorf("ebpfrss: key: %w", err)
	}
	if err := c.decode(config, key); err != nil {
		return c, err
	}
	for i := range c.Table {
		if err := o.Table.Lookup(uint32(i), &c.Table[i]); err != nil {
			return c, fmt.Errorf("ebpfrss: indirection table entry %d: %w", i, err)
		}
	}
	return c, nil
}
