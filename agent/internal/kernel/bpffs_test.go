package kernel

import "testing"

func TestUnder(t *testing.T) {
	for _, tc := range []struct {
		path, dir string
		want      bool
	}{
		{"/sys/fs/bpf/vrss", "/sys/fs/bpf", true},
		{"/sys/fs/bpf/a/b", "/sys/fs/bpf", true},
		{"/sys/fs/bpf", "/sys/fs/bpf", true},
		{"/sys/fs/bpffoo", "/sys/fs/bpf", false},
		{"/tmp/x", "/sys/fs/bpf", false},
		{"/sys/fs/bpf/../x", "/sys/fs/bpf", false},
	} {
		if got := under(tc.path, tc.dir); got != tc.want {
			t.Errorf("under(%q, %q) = %v", tc.path, tc.dir, got)
		}
	}
}
