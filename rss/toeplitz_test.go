package rss

import (
	"math/rand/v2"
	"testing"
)

// bitSerialToeplitz is the textbook Toeplitz hash, as bit-serial steering
// programs compute it: a 32-bit key window slides one bit per input bit and
// is XORed in for every set bit. It is the reference the table-driven
// version is checked against and the baseline of the benchmark.
func bitSerialToeplitz(key, input []byte) uint32 {
	// A 64-bit shift register: the top 32 bits are the current window, the
	// rest the key bits that follow, refilled a byte at a time.
	var reg uint64
	next := 0
	for i := 0; i < 8; i++ {
		reg <<= 8
		if next < len(key) {
			reg |= uint64(key[next])
		}
		next++
	}
	var h uint32
	for _, c := range input {
		for b := 7; b >= 0; b-- {
			if c>>b&1 != 0 {
				h ^= uint32(reg >> 32)
			}
			reg <<= 1
		}
		// Eight bits consumed: bring in the next key byte at the bottom.
		if next < len(key) {
			reg |= uint64(key[next])
		}
		next++
	}
	return h
}

// windowToeplitz computes each bit's key window from scratch: a second,
// independent formulation of the same definition.
func windowToeplitz(key, input []byte) uint32 {
	var h uint32
	for i, c := range input {
		for b := 0; b < 8; b++ {
			if c&(0x80>>b) != 0 {
				h ^= keyWindowSerial(key, 8*i+b)
			}
		}
	}
	return h
}

// keyWindowSerial assembles the window bit by bit, independently of keyWindow.
func keyWindowSerial(key []byte, off int) uint32 {
	var w uint32
	for i := 0; i < 32; i++ {
		bit := off + i
		var v uint32
		if bit/8 < len(key) {
			v = uint32(key[bit/8]>>(7-bit%8)) & 1
		}
		w = w<<1 | v
	}
	return w
}

func TestToeplitzMatchesBitSerial(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, klen := range []int{1, 4, 13, 39, 40, 41, 52, 255} {
		key := make([]byte, klen)
		for i := range key {
			key[i] = byte(r.Uint32())
		}
		tz := NewToeplitz(key)
		for n := 0; n < 2000; n++ {
			in := make([]byte, r.IntN(MaxInputLen+1))
			for i := range in {
				in[i] = byte(r.Uint32())
			}
			got, want := tz.Hash(in), bitSerialToeplitz(key, in)
			if got != want {
				t.Fatalf("key len %d input %x: table %#08x, bit-serial %#08x", klen, in, got, want)
			}
			if w := windowToeplitz(key, in); w != want {
				t.Fatalf("key len %d input %x: window %#08x, bit-serial %#08x", klen, in, w, want)
			}
		}
	}
}

func TestToeplitzReset(t *testing.T) {
	a, b := []byte{1, 2, 3, 4, 5}, DefaultKey
	tz := NewToeplitz(a)
	tz.Reset(b)
	in := []byte{0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4}
	if got, want := tz.Hash(in), NewToeplitz(b).Hash(in); got != want {
		t.Fatalf("after Reset: %#08x, want %#08x", got, want)
	}
}

func BenchmarkToeplitz36(b *testing.B) {
	in := make([]byte, MaxInputLen)
	for i := range in {
		in[i] = byte(i * 37)
	}
	b.Run("table", func(b *testing.B) {
		tz := NewToeplitz(DefaultKey)
		var h uint32
		for b.Loop() {
			h ^= tz.Hash(in)
		}
		sink = h
	})
	b.Run("bitserial", func(b *testing.B) {
		var h uint32
		for b.Loop() {
			h ^= bitSerialToeplitz(DefaultKey, in)
		}
		sink = h
	})
}

var sink uint32
