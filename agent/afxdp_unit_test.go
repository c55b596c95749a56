package agent

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/vrss-dev/vrss/port"
)

// TestAFXDPFile: an AF_XDP port's record is written atomically and read
// back; a file vrssd will not act on is an error naming it and saying why
// (no privileges needed).
func TestAFXDPFile(t *testing.T) {
	dir := t.TempDir()
	s := &Server{opts: Options{StateDir: dir}}
	pol := port.Policy{MACs: []port.MAC{{0x52, 0x54, 0, 0, 0, 1}}, Default: port.Allow}
	rec := afxdpRecord{Name: "x0", Dev: "eth1", QueueStart: 2, Queues: 2, OwnerUID: 4242, OwnerGID: 4242, Policy: &pol}
	if err := s.writeAFXDP(rec.key(), &rec); err != nil {
		t.Fatal(err)
	}
	path := s.afxdpPath(rec.key())
	got, err := readAFXDP(path)
	if err == nil {
		// The policy reads back with empty lists for nil ones.
		if gb, _ := json.Marshal(got); string(gb) != string(must(json.Marshal(rec))) {
			err = fmt.Errorf("%s", gb)
		}
	}
	if err != nil {
		t.Fatalf("read back %+v, %v", got, err)
	}
	good, _ := os.ReadFile(path)
	edit := func(from, to string) func() {
		return func() { os.WriteFile(path, []byte(strings.Replace(string(good), from, to, 1)), 0o600) }
	}
	for _, c := range []struct {
		write func()
		want  string
	}{
		{func() { os.Symlink("/etc/passwd", path) }, "symbolic link"},
		{func() { os.Mkdir(path, 0o700) }, "not a regular file"},
		{func() { os.WriteFile(path, make([]byte, maxAFXDPSize+1), 0o600) }, "over"},
		{edit(`"x0"`, `"x1"`), "not of the port the file is named for"},
		{edit(`"eth1"`, `"eth/1"`), `name "eth/1"`},
		{edit(`"queues":2`, `"queues":255`), "queues"},
		{edit(`"queue_start":2`, `"queue_start":-1`), "queues"},
		{edit(`"owner_uid":4242`, `"owner_uid":-1`), "owner"},
		{edit(`"name"`, `"netns":"relative/x","name"`), "network namespace"},
		{edit(`"name"`, `"more":1,"name"`), "unknown field"},
		{edit(`"default":"allow"`, `"default":"allow","uplink":"eth0"`), "uplink"},
		{edit(`"macs":["52:54:00:00:00:01"]`, `"macs":[]`), "mac"},
		{func() { os.WriteFile(path, append(good, "{}"...), 0o600) }, "trailing data"},
	} {
		os.RemoveAll(path)
		c.write()
		_, err := readAFXDP(path)
		if err == nil || !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(c.want)) || !strings.Contains(err.Error(), path) {
			t.Errorf("%v: want an error naming %s and saying %q", err, path, c.want)
		}
	}
	os.RemoveAll(path)
	if err := s.writeAFXDP(rec.key(), nil); err != nil || exists(path) {
		t.Fatalf("removal: %v, file left %v", err, exists(path))
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
