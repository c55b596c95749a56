// Package qemu connects QEMU to TAP devices that vrss steers.
//
// A pre-steered TAP needs nothing from QEMU but its queue file descriptors:
// QEMU's `-netdev tap,fds=...` takes already open queues, one per queue pair,
// and reads queue i into receive virtqueue i. Since vrss's program already
// put each packet on the queue the RSS configuration names, any QEMU — with no
// privileges and no eBPF support of its own — delivers it to the right guest
// queue. Args builds those arguments; Exec starts QEMU with the queues
// inherited at the descriptor numbers the arguments name.
//
// A QEMU of 9.0 or later can instead steer by its own eBPF program, which
// honours the RSS configuration its guest sets (ethtool -X, -N): with
// NetOptions.EBPFRSS the device gets rss=on and ebpf-rss-fds, and QEMU
// inherits the program and its three maps, loaded for it by vrssd (see
// agent/client.Client.QEMUEBPF), right after the queues. QEMU needs no
// privilege for either: it only mmaps the maps and attaches the program
// through its queue fds.
//
// QEMU's af-xdp backend can instead take a vrssd AF_XDP port's sockets,
// unbound and already in the XSKMAP of the program vrssd attached:
// AFXDPArgs builds `-netdev af-xdp,...,inhibit=on,sock-fds=...`, and
// ExecAFXDP starts QEMU with the sockets inherited. QEMU then needs no
// capability, only AFXDPUMEMBytes of locked memory per queue. With
// AFXDPOptions.MapPath, QEMU 10.1's map-path form instead (map-path,
// map-start-index; ExecAFXDPMapPath): QEMU creates the sockets, which
// needs CAP_NET_RAW, and puts them into the port's XSKMAP pinned for its
// owner.
package qemu

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/internal/fd"
)

// FirstFD is the descriptor number the first queue gets in QEMU: the one
// after standard input, output and error.
const FirstFD = 3

// EBPFRSSFDs is the number of descriptors ebpf-rss-fds takes: QEMU's RSS
// program, its configuration map, its Toeplitz key map and its indirection
// table map, in that order (what vrssd's qemu_ebpf hands over).
const EBPFRSSFDs = 4

// NetOptions describe the QEMU network device for a TAP.
type NetOptions struct {
	// ID names the netdev; default "vrss0".
	ID string
	// Queues is the number of TAP queues (queue pairs of the device).
	Queues int
	// FirstFD is the descriptor of queue 0 in QEMU; the others follow.
	// Default FirstFD.
	FirstFD int
	// Device is the device model; default "virtio-net-pci".
	Device string
	// MAC, if set, is the guest's MAC address.
	MAC string
	// DeviceProps are extra properties for the device, such as
	// "host_mtu=9000", each "name=value".
	DeviceProps []string
	// EBPFRSS offers the guest RSS (rss=on) steered by QEMU's own eBPF
	// program, preloaded by a privileged helper and inherited at the
	// EBPFRSSFDs descriptors right after the queues (ebpf-rss-fds, QEMU
	// 9.0 and later): an unprivileged QEMU then steers every packet to
	// the queue its guest's RSS configuration names, in the kernel.
	EBPFRSS bool
}

// Files is the number of descriptors QEMU must inherit for o: the queues,
// and QEMU's program and maps with EBPFRSS.
func (o NetOptions) Files() int {
	if o.EBPFRSS {
		return o.Queues + EBPFRSSFDs
	}
	return o.Queues
}

// Args returns the QEMU arguments that attach the TAP's queues (inherited at
// descriptors FirstFD...) to a multi-queue virtio-net device:
//
//	-netdev tap,id=vrss0,fds=3:4:5:6,vhost=off
//	-device virtio-net-pci,netdev=vrss0,mq=on,vectors=10
//
// vhost stays off: vhost-net would bypass nothing here, but it needs
// /dev/vhost-net, which an unprivileged QEMU usually cannot open. vectors is
// two per queue pair plus one for configuration changes and one for the
// control queue, as QEMU's documentation advises for mq=on.
//
// With EBPFRSS the device is written in QEMU's JSON form, the only one in
// which QEMU accepts an array property such as ebpf-rss-fds (QEMU 10.0
// refuses both "ebpf-rss-fds=7:8:9:10" and "ebpf-rss-fds.0=7,..."):
//
//	-device {"driver":"virtio-net-pci","netdev":"vrss0","mq":true,"vectors":10,"rss":true,"ebpf-rss-fds":["7","8","9","10"]}
//
// JSON properties are typed, so each DeviceProps value becomes a boolean
// (on, off, true, false, yes, no), an integer (decimal digits) or else a
// string.
func Args(o NetOptions) ([]string, error) {
	if o.Queues < 1 || o.Queues > 256 {
		return nil, fmt.Errorf("qemu: %d queues, want 1 to 256", o.Queues)
	}
	if err := o.defaults(); err != nil {
		return nil, err
	}
	netdev := []string{"-netdev", fmt.Sprintf("tap,id=%s,fds=%s,vhost=off", o.ID, fdList(o.FirstFD, o.Queues))}
	if !o.EBPFRSS {
		return append(netdev, "-device", o.device()), nil
	}
	dev := &jsonObject{}
	dev.add("driver", o.Device)
	dev.add("netdev", o.ID)
	dev.add("mq", true)
	dev.add("vectors", 2*o.Queues+2)
	if o.MAC != "" {
		dev.add("mac", o.MAC)
	}
	for _, p := range o.DeviceProps {
		name, value, ok := strings.Cut(p, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("qemu: device property %q: want name=value", p)
		}
		if name == "rss" || name == "ebpf-rss-fds" {
			return nil, fmt.Errorf("qemu: device property %q: set by EBPFRSS", p)
		}
		if err := dev.add(name, propValue(value)); err != nil {
			return nil, err
		}
	}
	ebpf := make([]string, EBPFRSSFDs)
	for i := range ebpf {
		ebpf[i] = strconv.Itoa(o.FirstFD + o.Queues + i)
	}
	dev.add("rss", true)
	dev.add("ebpf-rss-fds", ebpf)
	b, err := dev.MarshalJSON()
	if err != nil {
		return nil, err
	}
	return append(netdev, "-device", string(b)), nil
}

// defaults fills in o's defaults and checks that no option value (nor
// extra, such as an interface name) would break QEMU's comma syntax.
func (o *NetOptions) defaults(extra ...string) error {
	if o.ID == "" {
		o.ID = "vrss0"
	}
	if o.FirstFD == 0 {
		o.FirstFD = FirstFD
	}
	if o.FirstFD < 0 {
		return fmt.Errorf("qemu: first descriptor %d", o.FirstFD)
	}
	if o.Device == "" {
		o.Device = "virtio-net-pci"
	}
	for _, s := range append(append([]string{o.ID, o.Device, o.MAC}, extra...), o.DeviceProps...) {
		if strings.ContainsAny(s, ", \t\n") {
			return fmt.Errorf("qemu: %q: commas and spaces are not allowed in an option value", s)
		}
	}
	return nil
}

// device is the key=value -device argument: a multi-queue device on o.ID
// with two vectors per queue pair, one for configuration changes and one
// for the control queue.
func (o *NetOptions) device() string {
	dev := fmt.Sprintf("%s,netdev=%s,mq=on,vectors=%d", o.Device, o.ID, 2*o.Queues+2)
	if o.MAC != "" {
		dev += ",mac=" + o.MAC
	}
	for _, p := range o.DeviceProps {
		dev += "," + p
	}
	return dev
}

// propValue types a key=value property value for QEMU's JSON syntax.
func propValue(v string) any {
	switch v {
	case "on", "true", "yes":
		return true
	case "off", "false", "no":
		return false
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil && v == strconv.FormatInt(n, 10) {
		return n
	}
	return v
}

// jsonObject is a JSON object that keeps its keys in insertion order, so
// that the command line is stable and reads like the key=value form.
type jsonObject struct {
	keys   []string
	values []any
}

func (j *jsonObject) add(k string, v any) error {
	if slices.Contains(j.keys, k) {
		return fmt.Errorf("qemu: device property %s given twice", k)
	}
	j.keys, j.values = append(j.keys, k), append(j.values, v)
	return nil
}

func (j *jsonObject) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range j.keys {
		if i > 0 {
			b.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		vb, err := json.Marshal(j.values[i])
		if err != nil {
			return nil, err
		}
		b.Write(kb)
		b.WriteByte(':')
		b.Write(vb)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// Command returns an exec.Cmd that runs QEMU (path and its own args, with
// the network arguments appended) with files inherited at descriptors
// FirstFD, FirstFD+1, ... in order: the queues, then with EBPFRSS QEMU's
// program and maps.
func Command(path string, args []string, net NetOptions, files []*os.File) (*exec.Cmd, error) {
	if err := checkFiles(net, files); err != nil {
		return nil, err
	}
	net.FirstFD = FirstFD
	netArgs, err := Args(net)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, append(append([]string(nil), args...), netArgs...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.ExtraFiles = files // ExtraFiles[i] becomes descriptor 3+i
	return cmd, nil
}

func checkFiles(net NetOptions, files []*os.File) error {
	if len(files) != net.Files() {
		what := fmt.Sprintf("%d queues", net.Queues)
		if net.EBPFRSS {
			what += fmt.Sprintf(" and %d eBPF RSS descriptors", EBPFRSSFDs)
		}
		return fmt.Errorf("qemu: %d files for %s", len(files), what)
	}
	return nil
}

// Exec replaces the calling process with QEMU, its queue files at
// descriptors FirstFD..., so QEMU is the process the caller's supervisor
// sees and signals. It returns only on failure.
func Exec(path string, args []string, net NetOptions, files []*os.File) error {
	if err := checkFiles(net, files); err != nil {
		return err
	}
	net.FirstFD = FirstFD
	netArgs, err := Args(net)
	if err != nil {
		return err
	}
	return execWith(path, args, netArgs, files)
}

// execWith replaces the calling process with path, its args and netArgs,
// files at descriptors FirstFD...
func execWith(path string, args, netArgs []string, files []*os.File) error {
	bin, err := exec.LookPath(path)
	if err != nil {
		return fmt.Errorf("qemu: %w", err)
	}
	// Duplicate everything above the target range first, so that moving
	// file i to FirstFD+i never closes a file still to be moved. The
	// duplicates are close-on-exec: only the placed copies reach QEMU.
	top := FirstFD + len(files) + 64
	dups := make([]*fd.FD, 0, len(files))
	defer func() { fd.CloseAll(dups) }() // reached only if exec fails
	for i, f := range files {
		dup, err := fd.DupFileAbove(f, top)
		if err != nil {
			return fmt.Errorf("qemu: duplicate file %d: %w", i, err)
		}
		dups = append(dups, dup)
	}
	for i, dup := range dups {
		// Dup3 without O_CLOEXEC: the target survives exec.
		if err := unix.Dup3(dup.Int(), FirstFD+i, 0); err != nil {
			return fmt.Errorf("qemu: place file %d at fd %d: %w", i, FirstFD+i, err)
		}
	}
	argv := append(append([]string{path}, args...), netArgs...)
	err = syscall.Exec(bin, argv, os.Environ())
	return errors.Join(fmt.Errorf("qemu: exec %s: %w", bin, err))
}
