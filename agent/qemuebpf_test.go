package agent

import (
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/vrss-dev/vrss/agent/api"
	"github.com/vrss-dev/vrss/qemu/qmp"
)

// What a failed QMP conversation (package qmp) becomes for the client:
// unavailable, naming the binary, the step, the cause or the time limit,
// and what QEMU said on its standard error. The texts are those vrssd gave
// before the conversation moved to package qmp.
func TestQMPError(t *testing.T) {
	converse := func(qemu string) error {
		_, err := qmp.FetchEBPFRSS(qmp.NewClient(strings.NewReader(qemu), io.Discard))
		if err == nil {
			t.Fatalf("%q: no error", qemu)
		}
		return err
	}
	greeting := `{"QMP": {"version": {"qemu": {"micro": 0, "minor": 0, "major": 10}, "package": ""}, "capabilities": []}}` + "\n"
	upTo := func(major, minor int, ebpf string) string {
		v := fmt.Sprintf(`{"qemu": {"micro": 0, "minor": %d, "major": %d}, "package": ""}`, minor, major)
		return greeting + `{"return": {}, "id": 1}` + "\n" + `{"return": ` + v + `, "id": 2}` + "\n" + ebpf + "\n"
	}
	cnf := `{"error": {"class": "CommandNotFound", "desc": "The command request-ebpf has not been found"}, "id": 3}`
	for _, tc := range []struct {
		qemu, stderr string
		timedOut     bool
		want         string
	}{
		{qemu: upTo(7, 2, cnf), stderr: "ignored", timedOut: true,
			want: "QEMU 7.2.0 (/opt/qemu) has no request-ebpf: eBPF RSS fds (ebpf-rss-fds) need QEMU ≥ 9.0"},
		{qemu: upTo(9, 1, cnf),
			want: "QEMU 9.1.0 (/opt/qemu) has no request-ebpf: this build has no eBPF support (CONFIG_EBPF, libbpf); eBPF RSS fds (ebpf-rss-fds) need QEMU ≥ 9.0 built with it"},
		{qemu: greeting, stderr: "  qemu-system-x86_64: oops\n",
			want: "QEMU /opt/qemu: qmp_capabilities: unexpected EOF (QEMU said: qemu-system-x86_64: oops)"},
		{qemu: "", timedOut: true, stderr: "slow\n",
			want: "QEMU /opt/qemu: QMP greeting: no answer within 30s (QEMU said: slow)"},
		{qemu: "Usage: qemu\n",
			want: `QEMU /opt/qemu: QMP greeting: not QMP: "Usage: qemu"`},
		{qemu: upTo(10, 0, `{"error": {"class": "GenericError", "desc": "no"}, "id": 3}`),
			want: "QEMU /opt/qemu: request-ebpf: GenericError: no"},
		{qemu: upTo(10, 0, `{"return": {"object": ""}, "id": 3}`),
			want: "QEMU /opt/qemu: request-ebpf object: empty object"},
	} {
		err := qmpError("/opt/qemu", converse(tc.qemu), tc.timedOut, tc.stderr)
		ae, ok := err.(*api.Error)
		if !ok || ae.Code != api.CodeUnavailable || ae.Message != tc.want {
			t.Errorf("got %#v\nwant unavailable: %s", err, tc.want)
		}
	}
}

// limitedWriter keeps QEMU's first n bytes of standard error and
// swallows the rest without failing QEMU's writes.
func TestLimitedWriter(t *testing.T) {
	l := &limitedWriter{n: 5}
	for _, s := range []string{"abc", "defg", "hij"} {
		if n, err := l.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	if got := l.String(); got != "abcde" {
		t.Errorf("kept %q, want abcde", got)
	}
}
