package qemu

import (
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
)

func TestArgs(t *testing.T) {
	got, err := Args(NetOptions{Queues: 4})
	if err != nil {
		t.Fatal(err)
	}
	want := "-netdev tap,id=vrss0,fds=3:4:5:6,vhost=off -device virtio-net-pci,netdev=vrss0,mq=on,vectors=10"
	if s := strings.Join(got, " "); s != want {
		t.Errorf("got  %s\nwant %s", s, want)
	}
	got, err = Args(NetOptions{ID: "n1", Queues: 2, FirstFD: 7, MAC: "52:54:00:12:34:56", DeviceProps: []string{"rss=on"}})
	if err != nil {
		t.Fatal(err)
	}
	want = "-netdev tap,id=n1,fds=7:8,vhost=off -device virtio-net-pci,netdev=n1,mq=on,vectors=6,mac=52:54:00:12:34:56,rss=on"
	if s := strings.Join(got, " "); s != want {
		t.Errorf("got  %s\nwant %s", s, want)
	}
	for _, bad := range []NetOptions{{Queues: 0}, {Queues: 257}, {Queues: 1, ID: "a,b"}, {Queues: 1, DeviceProps: []string{"x y"}}} {
		if _, err := Args(bad); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

// Command hands the files over at 3, 4, ...: a shell in place of QEMU
// reports what it inherited.
func TestCommandInheritsFiles(t *testing.T) {
	var files, readers []*os.File
	for i := 0; i < 3; i++ {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		files, readers = append(files, w), append(readers, r)
	}
	cmd, err := Command("/bin/sh", []string{"-c", `for fd in 3 4 5; do echo $fd >&$fd || exit 1; done; echo "$@"`, "sh"}, NetOptions{Queues: 3}, files)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = nil
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if want := "-netdev tap,id=vrss0,fds=3:4:5,vhost=off -device virtio-net-pci,netdev=vrss0,mq=on,vectors=8\n"; string(out) != want {
		t.Errorf("args %q, want %q", out, want)
	}
	// File i arrived as descriptor 3+i: what the child wrote to fd N is on
	// pipe N-3.
	for i, w := range files {
		w.Close()
		b, err := io.ReadAll(readers[i])
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("%d\n", 3+i); string(b) != want {
			t.Errorf("pipe %d got %q, want %q", i, b, want)
		}
	}
}
