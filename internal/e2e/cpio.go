package e2e

import (
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
)

// File modes for Archive entries, as cpio and stat(2) spell them.
const (
	modeDir     = 0o040000
	modeRegular = 0o100000
	modeSymlink = 0o120000
	modeCharDev = 0o020000
)

// Archive is an initramfs being assembled: a set of paths, written as a
// "newc" cpio archive (the format the kernel unpacks) with WriteTo. Parent
// directories are added implicitly, and entries are written sorted, so a
// directory always precedes its contents and the same input gives the same
// bytes.
type Archive struct {
	entries map[string]*entry
}

type entry struct {
	mode         uint32
	data         []byte
	major, minor uint32 // device numbers, for character devices
}

// NewArchive returns an empty archive.
func NewArchive() *Archive { return &Archive{entries: map[string]*entry{}} }

func (a *Archive) add(name string, e *entry) {
	name = strings.TrimPrefix(path.Clean("/"+name), "/")
	for dir := path.Dir(name); dir != "." && dir != "/"; dir = path.Dir(dir) {
		if _, ok := a.entries[dir]; !ok {
			a.entries[dir] = &entry{mode: modeDir | 0o755}
		}
	}
	a.entries[name] = e
}

// File adds a regular file with permission bits perm.
func (a *Archive) File(name string, data []byte, perm uint32) {
	a.add(name, &entry{mode: modeRegular | perm&0o7777, data: data})
}

// Dir adds a directory.
func (a *Archive) Dir(name string) { a.add(name, &entry{mode: modeDir | 0o755}) }

// Symlink adds a symbolic link to target.
func (a *Archive) Symlink(name, target string) {
	a.add(name, &entry{mode: modeSymlink | 0o777, data: []byte(target)})
}

// CharDev adds a character device node.
func (a *Archive) CharDev(name string, major, minor uint32) {
	a.add(name, &entry{mode: modeCharDev | 0o600, major: major, minor: minor})
}

// Has reports whether name is in the archive.
func (a *Archive) Has(name string) bool {
	_, ok := a.entries[strings.TrimPrefix(path.Clean("/"+name), "/")]
	return ok
}

// WriteTo writes the archive in the newc format: per entry a 110-byte
// ASCII header (magic 070701 and thirteen 8-digit hex fields), the
// NUL-terminated name padded to 4 bytes, the data padded to 4 bytes; then
// the TRAILER!!! entry.
func (a *Archive) WriteTo(w io.Writer) (int64, error) {
	names := make([]string, 0, len(a.entries))
	for n := range a.entries {
		names = append(names, n)
	}
	sort.Strings(names)
	cw := &countWriter{w: w}
	for i, n := range names {
		e := a.entries[n]
		nlink := uint32(1)
		if e.mode&0o170000 == modeDir {
			nlink = 2
		}
		writeEntry(cw, uint32(i+1), n, e.mode, nlink, e.major, e.minor, e.data)
	}
	writeEntry(cw, 0, "TRAILER!!!", 0, 1, 0, 0, nil)
	return cw.n, cw.err
}

func writeEntry(w *countWriter, ino uint32, name string, mode, nlink, major, minor uint32, data []byte) {
	fmt.Fprintf(w, "070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		ino, mode, 0, 0, nlink, 0, len(data), 0, 0, major, minor, len(name)+1, 0)
	io.WriteString(w, name)
	w.Write([]byte{0})
	w.pad()
	w.Write(data)
	w.pad()
}

// countWriter counts bytes for 4-byte alignment and keeps the first error.
type countWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.err = err
	return n, err
}

func (c *countWriter) pad() {
	if r := c.n % 4; r != 0 {
		c.Write(make([]byte, 4-r))
	}
}
