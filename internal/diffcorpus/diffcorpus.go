// Package diffcorpus is the corpus of the differential tests, which hold an
// eBPF build of the steering code to the rss engine: how many frames, from
// which seed, under which configurations. Every such test draws from it, so
// that they all see the same configurations and frames.
package diffcorpus

import (
	"math/rand/v2"
	"os"
	"strconv"
	"testing"

	"github.com/vrss-dev/vrss/rss"
)

// Configs is the number of configurations the frames are spread over.
const Configs = 8

// Frames is the number of frames a differential test steers: over a
// million, 50,000 under -short, or $VRSS_DIFF_FRAMES.
func Frames() int {
	if v, err := strconv.Atoi(os.Getenv("VRSS_DIFF_FRAMES")); err == nil {
		return v
	}
	if testing.Short() {
		return 50_000
	}
	return 1_100_000 // about 5% are too short for BPF_PROG_TEST_RUN
}

// Rand is the corpus's random source: the same seed for every test.
func Rand() *rand.Rand { return rand.New(rand.NewPCG(20261122, 1)) }

// Config returns a configuration drawn from r: a random key (of a random
// length, within and beyond the 40 bytes that matter), indirection table,
// hash types and unclassified queue. The tests enable every hash type in
// their first.
func Config(r *rand.Rand) rss.Config {
	key := make([]byte, []int{40, 40, 40, 52, 13, 255}[r.IntN(6)])
	for i := range key {
		key[i] = byte(r.Uint32())
	}
	table := make([]uint16, 1<<r.IntN(10))
	for i := range table {
		table[i] = uint16(r.IntN(256))
	}
	types := rss.HashType(r.Uint32()) & rss.AllHashTypes
	if r.IntN(3) == 0 {
		types = rss.AllHashTypes
	}
	return rss.Config{HashTypes: types, Key: key, Table: table, UnclassifiedQueue: uint16(r.IntN(256))}
}
