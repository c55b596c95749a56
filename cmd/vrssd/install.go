package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// cniPlugin is the CNI plugin's file name, beside vrssd in the image and
// in the CNI binary directory.
const cniPlugin = "vrss-cni"

// installCNI copies the file src into dir as vrss-cni, mode 0755. The copy
// is written under a temporary name in dir and renamed over the old one,
// so that a container runtime running the plugin meanwhile finds either
// the old binary or the new one, never a part of one.
func installCNI(src, dir string) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if fi, err := in.Stat(); err != nil || !fi.Mode().IsRegular() {
		return errors.Join(fmt.Errorf("%s is not a regular file", src), err)
	}
	tmp, err := os.CreateTemp(dir, "."+cniPlugin+"-")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err = io.Copy(tmp, in); err != nil {
		return err
	}
	if err = tmp.Chmod(0o755); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(dir, cniPlugin))
}

// installBeside installs the vrss-cni that sits beside the running vrssd
// into dir (--install-cni).
func installBeside(dir string) error {
	self, err := os.Executable()
	if err != nil && filepath.IsAbs(os.Args[0]) {
		// No /proc (a chroot): the path vrssd was run by.
		self, err = os.Args[0], nil
	}
	if err != nil {
		return err
	}
	return installCNI(filepath.Join(filepath.Dir(self), cniPlugin), dir)
}
