//go:build linux

package xsk

import (
	"errors"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Setup refuses options the kernel would, before any system call, and
// says which.
func TestOptionsRefused(t *testing.T) {
	ok := Options{Ifindex: 1}
	for _, c := range []struct {
		name string
		edit func(*Options)
		want string
	}{
		{"frame size not a power of two", func(o *Options) { o.FrameSize = 3000 }, "frame size 3000"},
		{"frame size too small", func(o *Options) { o.FrameSize = 1024 }, "frame size 1024"},
		{"frame size beyond a page", func(o *Options) { o.FrameSize = 1 << 16 }, "frame size 65536"},
		{"negative frames", func(o *Options) { o.Frames = -1 }, "frames -1"},
		{"fill ring", func(o *Options) { o.FillSize = 1000 }, "fill ring size 1000"},
		{"rx ring", func(o *Options) { o.RxSize = -4 }, "rx ring size -4"},
		{"tx ring", func(o *Options) { o.TxSize = 3 }, "tx ring size 3"},
		{"no device", func(o *Options) { o.Ifindex = 0 }, "ifindex 0"},
		{"negative queue", func(o *Options) { o.Queue = -1 }, "queue -1"},
	} {
		o := ok
		c.edit(&o)
		_, err := Setup(-1, o)
		var e *Error
		if !errors.As(err, &e) || e.Step != "options" || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an options error about %q", c.name, err, c.want)
		}
	}
	if err := ok.withDefaults().check(); err != nil {
		t.Errorf("defaults refused: %v", err)
	}
}

// A descriptor that is not an AF_XDP socket is refused before anything
// is mapped, and the error says what it is.
func TestSetupNotXDP(t *testing.T) {
	udp, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(udp)
	_, err = Setup(udp, Options{Ifindex: 1})
	if !errors.Is(err, ErrNotXDP) || !strings.Contains(err.Error(), "family is 2") {
		t.Errorf("UDP socket: %v", err)
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	_, err = Setup(p[0], Options{Ifindex: 1})
	if !errors.Is(err, unix.ENOTSOCK) || !strings.Contains(err.Error(), "not an open socket") {
		t.Errorf("pipe: %v", err)
	}
}
