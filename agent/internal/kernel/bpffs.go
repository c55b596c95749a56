package kernel

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// stdBPFFS is where a bpf filesystem is conventionally mounted.
const stdBPFFS = "/sys/fs/bpf"

// ensureBPFFS makes dir a directory on a bpf filesystem, mounting a new
// instance on it if it is not on one. Each mount is a separate instance,
// which is what lets several daemons run side by side. If dir cannot be
// created because it lies under an unmounted /sys/fs/bpf (sysfs takes no
// new directories), a bpf filesystem is mounted there first, as systemd
// would have. Nothing is ever unmounted: the pins must outlive vrssd.
func ensureBPFFS(dir string) (mounted string, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, os.ErrPermission) || !under(dir, stdBPFFS) || isBPFFS(stdBPFFS) {
			return "", err
		}
		if err := unix.Mount("bpf", stdBPFFS, "bpf", 0, "mode=0700"); err != nil {
			return "", fmt.Errorf("mount bpf filesystem on %s: %w", stdBPFFS, err)
		}
		mounted = stdBPFFS
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return mounted, err
		}
	}
	if isBPFFS(dir) {
		return mounted, nil
	}
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		return mounted, fmt.Errorf("mount bpf filesystem on %s: %w", dir, err)
	}
	return dir, nil
}

func isBPFFS(dir string) bool {
	var st unix.Statfs_t
	return unix.Statfs(dir, &st) == nil && st.Type == unix.BPF_FS_MAGIC
}

func under(path, dir string) bool {
	rel, err := filepath.Rel(dir, filepath.Clean(path))
	return err == nil && rel != ".." && !filepath.IsAbs(rel) && (len(rel) < 3 || rel[:3] != "../")
}
