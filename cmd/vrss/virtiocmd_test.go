package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"github.com/vrss-dev/vrss/rss"
	"github.com/vrss-dev/vrss/virtio"
)

func TestParseHex(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []byte
	}{
		{nil, []byte{}},
		{[]string{"0100"}, []byte{1, 0}},
		{[]string{"01", "00 ff"}, []byte{1, 0, 0xff}},
		{[]string{"0x0a:0B"}, []byte{0x0a, 0x0b}},
		{[]string{"de_ad.be ef"}, []byte{0xde, 0xad, 0xbe, 0xef}},
	} {
		got, err := parseHex(tc.args)
		if err != nil || !bytes.Equal(got, tc.want) {
			t.Errorf("parseHex(%q) = % x, %v; want % x", tc.args, got, err, tc.want)
		}
	}
	for _, bad := range [][]string{{"1"}, {"0g"}, {"01", "2"}} {
		if _, err := parseHex(bad); err == nil {
			t.Errorf("parseHex(%q) accepted", bad)
		}
	}
}

// The virtio commands against vrssd: a guest's control and admin
// commands, their answers in hex and JSON, refusals (printed, exit 1),
// reset, and a TAP without flows.
func TestVirtioCommands(t *testing.T) {
	sock := startDaemon(t)
	ok, fails := daemonCLI(t, sock)
	ok("tap", "create", "vf0", "--queues", "4", "--flows")
	ok("tap", "create", "plain0", "--queues", "2")

	if out := ok("virtio", "ctrl", "vf0", "9", "0"); out != "ack 0 (VIRTIO_NET_OK)\nreply 0400\n" {
		t.Errorf("CAP_GET: %q", out)
	}
	const listQuery = "0000 0000 000000000000000000000000 0000000000000000"
	if out := ok("virtio", "admin", "vf0", listQuery); out != "status 0 (OK), qualifier 0 (OK)\nresult 0000000000000000833f000000000000\n" {
		t.Errorf("LIST_QUERY: %q", out)
	}
	// Refused: the answer is printed, the reason is on stderr, exit 1.
	code, out, errOut := vrss(t, "virtio", "admin", "vf0", "0700", "0000", "000000000000000000000000", "0000000000000000", "--socket", sock)
	if code != exitFailed || out != "status 22 (EINVAL), qualifier 2 (INVALID_OPCODE)\nresult 1600020000000000\n" || !strings.Contains(errOut, "not in the driver's LIST_USE") {
		t.Errorf("CAP_ID_LIST_QUERY before LIST_USE: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	var ar struct {
		Result            string
		Status, Qualifier uint16
	}
	if err := json.Unmarshal([]byte(ok("virtio", "admin", "vf0", listQuery, "--json")), &ar); err != nil || ar.Result != "0000000000000000833f000000000000" || ar.Status != 0 {
		t.Errorf("LIST_QUERY --json: %+v, %v", ar, err)
	}
	c := virtio.RSSContext{ID: 2, RSSConfig: virtio.RSSConfig{Config: rss.Config{HashTypes: rss.HashTCPv4, Key: rss.DefaultKey, Table: []uint16{2, 3}}, MaxTxVQ: 4}}
	b, _ := c.MarshalBinary()
	var cr struct {
		Ack   uint8
		Reply string
	}
	if err := json.Unmarshal([]byte(ok("virtio", "ctrl", "vf0", "9", "0x1", hex.EncodeToString(b), "--json")), &cr); err != nil || cr.Ack != 0 || cr.Reply != "" {
		t.Errorf("ADD 2 --json: %+v, %v", cr, err)
	}
	if out := ok("rss", "context", "show", "vf0", "6"); !strings.Contains(out, "RSS context 6 of vf0") {
		t.Errorf("the guest's context 2, as context 6:\n%s", out)
	}
	code, out, errOut = vrss(t, "virtio", "ctrl", "vf0", "9", "1", hex.EncodeToString(b), "--socket", sock)
	if code != exitFailed || out != "ack 1 (VIRTIO_NET_ERR)\n" || !strings.Contains(errOut, "rss context 2") {
		t.Errorf("ADD 2 again: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if out := ok("virtio", "reset", "vf0"); out != "vf0: the guest's virtio device was reset\n" {
		t.Errorf("reset: %q", out)
	}
	fails(1, "no RSS context 6", "rss", "context", "show", "vf0", "6")

	fails(2, "--flows", "virtio", "ctrl", "plain0", "9", "0")
	fails(2, "hex bytes", "virtio", "admin", "vf0", "012")
	fails(2, "class \"256\"", "virtio", "ctrl", "vf0", "256", "0")
	fails(2, "want a TAP name", "virtio", "ctrl", "vf0", "9")
}
