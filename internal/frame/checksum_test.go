package frame

import (
	"encoding/hex"
	"testing"
)

// TestIPv4Checksum checks a header whose checksum is known (0xb861, a
// textbook example) and that a header with its checksum filled in sums to
// zero.
func TestIPv4Checksum(t *testing.T) {
	h, _ := hex.DecodeString("450000730000400040110000c0a80001c0a800c7")
	if got := IPv4Checksum(h); got != 0xb861 {
		t.Fatalf("checksum %#04x, want 0xb861", got)
	}
	h[10], h[11] = 0xb8, 0x61
	if got := IPv4Checksum(h); got != 0 {
		t.Fatalf("a header with its checksum sums to %#04x, want 0", got)
	}
}
