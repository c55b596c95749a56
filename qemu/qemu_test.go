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

func TestArgsEBPFRSS(t *testing.T) {
	o := NetOptions{Queues: 4, MAC: "52:54:00:12:34:56", DeviceProps: []string{"romfile=", "host_mtu=9000", "guest_csum=off", "tx=timer"}, EBPFRSS: true}
	got, err := Args(o)
	if err != nil {
		t.Fatal(err)
	}
	if n := o.Files(); n != 8 {
		t.Errorf("Files() = %d, want 8", n)
	}
	want := []string{
		"-netdev", "tap,id=vrss0,fds=3:4:5:6,vhost=off",
		"-device", `{"driver":"virtio-net-pci","netdev":"vrss0","mq":true,"vectors":10,"mac":"52:54:00:12:34:56","romfile":"","host_mtu":9000,"guest_csum":false,"tx":"timer","rss":true,"ebpf-rss-fds":["7","8","9","10"]}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	// The descriptors follow the queues wherever they start.
	got, err = Args(NetOptions{Queues: 2, FirstFD: 10, EBPFRSS: true})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(got[3], `"ebpf-rss-fds":["12","13","14","15"]`) || got[1] != "tap,id=vrss0,fds=10:11,vhost=off" {
		t.Errorf("got %q", got)
	}
	for _, bad := range [][]string{{"rss=off"}, {"ebpf-rss-fds=1"}, {"novalue"}, {"=x"}, {"mq=on"}} {
		if _, err := Args(NetOptions{Queues: 1, EBPFRSS: true, DeviceProps: bad}); err == nil {
			t.Errorf("device props %q accepted", bad)
		}
	}
}

func TestPropValue(t *testing.T) {
	for v, want := range map[string]any{
		"on": true, "off": false, "true": true, "no": false, "9000": int64(9000), "-1": int64(-1),
		"007": "007", "": "", "timer": "timer", "1.5": "1.5", "52:54:00:12:34:56": "52:54:00:12:34:56",
	} {
		if got := propValue(v); got != want {
			t.Errorf("propValue(%q) = %#v, want %#v", v, got, want)
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

// With EBPFRSS, Command wants the queues and QEMU's four descriptors, and
// the arguments name the latter right after the former.
func TestCommandEBPFRSS(t *testing.T) {
	var files []*os.File
	for range 2 + EBPFRSSFDs {
		f, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		files = append(files, f)
	}
	net := NetOptions{Queues: 2, EBPFRSS: true}
	if _, err := Command("/bin/true", nil, net, files[:2]); err == nil {
		t.Error("queue files alone accepted")
	}
	cmd, err := Command("/bin/sh", []string{"-c", `for fd in 3 4 5 6 7 8; do [ -e /proc/self/fd/$fd ] || exit 1; done; [ ! -e /proc/self/fd/9 ]`}, net, files)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = nil, nil
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if want := `"ebpf-rss-fds":["5","6","7","8"]`; !strings.Contains(strings.Join(cmd.Args, " "), want) {
		t.Errorf("args %q lack %s", cmd.Args, want)
	}
}
