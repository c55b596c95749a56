package e2e

import (
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/vrss-dev/vrss/qemu"
)

// GuestMAC is the guest NIC's address. It is the destination address
// internal/frame.Build writes, so injected frames are addressed to the
// guest (the guest is promiscuous as well).
const GuestMAC = "52:54:00:12:34:56"

// Machine describes a QEMU guest; Args turns it into a command line.
type Machine struct {
	Kernel   string // bzImage
	Initrd   string // initramfs
	Append   string // extra kernel command line
	MemoryMB int    // default 256
	CPUs     int    // default 2

	// Queues is the number of virtio-net queue pairs, one TAP queue each.
	Queues int
	// TapFDs are the TAP queue descriptors as numbered in QEMU's process
	// (for exec.Cmd.ExtraFiles, 3, 4, ...); one per queue, consecutive.
	TapFDs []int
	MAC    string // default GuestMAC
	// ExternalNet leaves the network device out of Args: a wrapper adds
	// it (`vrss qemu exec`, which appends qemu.Args for the TAP it opens).
	// The wrapper must name the netdev as it likes and use MAC.
	ExternalNet bool

	// RSS offers VIRTIO_NET_F_RSS to the guest (rss=on): the guest then
	// configures RSS itself (ethtool -X), and QEMU steers with eBPF or in
	// userspace. Without it QEMU neither offers RSS nor loads a program.
	RSS bool
	// HashReport offers VIRTIO_NET_F_HASH_REPORT (hash=on).
	HashReport bool
	// EBPFRSSFDs are descriptors (as numbered in QEMU's process) of a
	// preloaded RSS program and its maps, for ebpf-rss-fds (QEMU >= 9),
	// which lets an unprivileged QEMU steer with eBPF: the four right
	// after TapFDs (see qemu.NetOptions.EBPFRSS). Needs RSS.
	EBPFRSSFDs []int
	// QMP, if set, is a unix socket path for a QMP server.
	QMP string
	// Extra arguments, appended last.
	Extra []string
}

// Args returns QEMU's arguments (without the program name). The console
// is the first serial port on QEMU's stdin and stdout; there is no
// monitor, no display and no default device; -no-reboot makes a guest
// panic (panic=-1) or reboot end QEMU.
func (m Machine) Args() ([]string, error) {
	if !m.ExternalNet && (m.Queues < 1 || len(m.TapFDs) != m.Queues) {
		return nil, fmt.Errorf("e2e: %d queues need as many TAP fds, have %d", m.Queues, len(m.TapFDs))
	}
	if len(m.EBPFRSSFDs) > 0 && !m.RSS {
		return nil, fmt.Errorf("e2e: ebpf-rss-fds needs rss=on")
	}
	if m.MemoryMB == 0 {
		m.MemoryMB = 256
	}
	if m.CPUs == 0 {
		m.CPUs = 2
	}
	if m.MAC == "" {
		m.MAC = GuestMAC
	}
	appendLine := strings.TrimSpace("console=ttyS0 panic=-1 quiet " + m.Append)
	args := []string{
		"-nodefaults", "-no-user-config", "-no-reboot",
		"-accel", "tcg",
		"-machine", "pc",
		"-m", strconv.Itoa(m.MemoryMB),
		"-smp", strconv.Itoa(m.CPUs),
		"-display", "none",
		"-monitor", "none",
		// signal=off: bytes on stdin never stop QEMU.
		"-chardev", "stdio,id=con,signal=off",
		"-serial", "chardev:con",
		"-kernel", m.Kernel,
		"-initrd", m.Initrd,
		"-append", appendLine,
	}
	if !m.ExternalNet {
		net, err := m.netArgs()
		if err != nil {
			return nil, err
		}
		args = append(args, net...)
	}
	if m.QMP != "" {
		args = append(args, "-qmp", "unix:"+m.QMP+",server=on,wait=off")
	}
	return append(args, m.Extra...), nil
}

// DeviceProps are the virtio-net properties the harness always sets
// besides the queues and the MAC: no iPXE option ROM, since nothing boots
// from the NIC.
var DeviceProps = []string{"romfile="}

// netArgs are the -netdev and -device arguments, as the qemu package
// writes them for vrss's users.
func (m Machine) netArgs() ([]string, error) {
	for i, fd := range m.TapFDs {
		if fd != m.TapFDs[0]+i {
			return nil, fmt.Errorf("e2e: TAP fds %v are not consecutive", m.TapFDs)
		}
	}
	o := qemu.NetOptions{
		ID: "n0", Queues: m.Queues, FirstFD: m.TapFDs[0], MAC: m.MAC,
		DeviceProps: slices.Clone(DeviceProps), EBPFRSS: len(m.EBPFRSSFDs) > 0,
	}
	if o.EBPFRSS {
		for i, fd := range m.EBPFRSSFDs {
			if fd != o.FirstFD+o.Queues+i || len(m.EBPFRSSFDs) != qemu.EBPFRSSFDs {
				return nil, fmt.Errorf("e2e: ebpf-rss-fds %v must be the %d descriptors after the TAP fds %v", m.EBPFRSSFDs, qemu.EBPFRSSFDs, m.TapFDs)
			}
		}
	} else if m.RSS {
		o.DeviceProps = append(o.DeviceProps, "rss=on")
	}
	if m.HashReport {
		o.DeviceProps = append(o.DeviceProps, "hash=on")
	}
	return qemu.Args(o)
}

func joinInts(v []int, sep string) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, sep)
}

var qemuVersionRe = regexp.MustCompile(`version (\d+)\.(\d+)(?:\.(\d+))?`)

// QEMUVersion runs `qemu --version` and returns the version string and
// its major and minor numbers.
func QEMUVersion(qemu string) (version string, major, minor int, err error) {
	out, err := exec.Command(qemu, "--version").Output()
	if err != nil {
		return "", 0, 0, fmt.Errorf("e2e: %s --version: %w", qemu, err)
	}
	return parseQEMUVersion(string(out))
}

func parseQEMUVersion(out string) (string, int, int, error) {
	m := qemuVersionRe.FindStringSubmatch(out)
	if m == nil {
		return "", 0, 0, fmt.Errorf("e2e: no version in %q", strings.TrimSpace(out))
	}
	major, _ := strconv.Atoi(m[1])
	minor, _ := strconv.Atoi(m[2])
	return strings.TrimPrefix(m[0], "version "), major, minor, nil
}
