package agent

import "testing"

// TestAFXDPPendingRecord: a record's pending queues must lie in the
// port's range, ascending, once each; anything else is refused at start.
func TestAFXDPPendingRecord(t *testing.T) {
	base := afxdpRecord{Name: "p0", Dev: "eth0", QueueStart: 2, Queues: 3, OwnerUID: 4242, OwnerGID: 4242}
	for _, c := range []struct {
		pending []int
		ok      bool
	}{
		{nil, true}, {[]int{2}, true}, {[]int{2, 4}, true}, {[]int{2, 3, 4}, true},
		{[]int{1}, false}, {[]int{5}, false}, {[]int{3, 2}, false}, {[]int{3, 3}, false}, {[]int{-1}, false},
	} {
		r := base
		r.Pending = c.pending
		if err := r.validate(); (err == nil) != c.ok {
			t.Errorf("pending %v: %v, want ok %v", c.pending, err, c.ok)
		}
	}
}
