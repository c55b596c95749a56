// Package crossbuild holds no code, only the test that vrss builds where it
// says it does: its pure-Go packages (rss, virtio and the few others listed
// in the test) for any system, and every other package only for Linux,
// failing elsewhere with "undefined: vrss_requires_Linux" from the
// package's doc_other.go rather than with whatever Linux-only name the
// compiler meets first.
package crossbuild
