package e2e

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// afxdpQEMUMapPath is a QEMU with af-xdp's map-path form (10.1 and
// later), for scenario XM: sid's 10.2, built as scenario X's is.
var afxdpQEMUMapPath = afxdpQEMUBuild{marker: "1:10.2.", recipe: "qemu-afxdp-map-path/2+dtb-stand-ins+read-poll-every-queue", patch: patchAFXDPReadPollMapPath}

// BuildAFXDPMapPathQEMU is BuildAFXDPQEMU for a QEMU 10.2 (sid's source),
// which takes map-path.
func BuildAFXDPMapPathQEMU(cache string, log io.Writer) (*AFXDPQEMU, error) {
	return buildAFXDPQEMU(cache, log, afxdpQEMUMapPath)
}

// In QEMU 10.1 and later net_init_af_xdp's loop ends before the program
// check that inhibit=on skips; the read handler is then enabled once,
// for the last queue's socket only.
const (
	afxdpPollAnchorMapPath  = "            goto err;\n        }\n    }\n\n    if (nc0 && !inhibit) {"
	afxdpPollPatchedMapPath = "            goto err;\n        }\n        af_xdp_read_poll(s, true); /* vrss e2e: every queue, not only the last */\n    }\n\n    if (nc0 && !inhibit) {"
)

var dtbRe = regexp.MustCompile(`'([a-z0-9_.-]+\.dtb)'`)

// patchAFXDPReadPollMapPath is patchAFXDPReadPoll for QEMU 10.1 and
// later. It also makes empty stand-ins for the device trees that
// pc-bios/dtb/meson.build wants without dtc (the +ds tarball lacks them;
// no x86_64 machine uses them).
func patchAFXDPReadPollMapPath(qsrc string) error {
	if mb, err := os.ReadFile(filepath.Join(qsrc, "pc-bios", "dtb", "meson.build")); err == nil {
		for _, m := range dtbRe.FindAllStringSubmatch(string(mb), -1) {
			p := filepath.Join(qsrc, "pc-bios", "dtb", m[1])
			if _, err := os.Stat(p); err == nil {
				continue
			}
			if err := os.WriteFile(p, nil, 0o644); err != nil {
				return err
			}
		}
	}
	p := filepath.Join(qsrc, "net", "af-xdp.c")
	b, err := os.ReadFile(p)
	if err != nil {
		return fmt.Errorf("e2e: af-xdp QEMU build: %w", err)
	}
	src := string(b)
	if strings.Count(src, afxdpPollAnchorMapPath) != 1 {
		return fmt.Errorf("e2e: af-xdp QEMU build: net/af-xdp.c has not the one per-queue loop end the read-poll patch for QEMU 10.1 and later expects")
	}
	return os.WriteFile(p, []byte(strings.Replace(src, afxdpPollAnchorMapPath, afxdpPollPatchedMapPath, 1)), 0o644)
}
