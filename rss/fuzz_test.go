package rss

import (
	"encoding/binary"
	"testing"
)

// FuzzSteer feeds arbitrary frames to the engine under two configurations.
// It checks what must hold for any input: no panic, no allocation, the
// queue comes from the table (or is the unclassified queue), an unclassified
// result carries no hash, and the report agrees with the frame's family.
func FuzzSteer(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	table := []uint16{10, 11, 12, 13, 14, 15, 16, 17}
	all, err := New(Config{HashTypes: AllHashTypes, Key: DefaultKey, Table: table, UnclassifiedQueue: 99})
	if err != nil {
		f.Fatal(err)
	}
	ipOnly, err := New(Config{HashTypes: HashIPv4 | HashIPv6, Key: DefaultKey, Table: table, UnclassifiedQueue: 99})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r := all.Steer(b)
		if r.Report == ReportNone {
			if r != (Result{Queue: 99}) {
				t.Fatalf("unclassified frame got %+v", r)
			}
		} else if r.Queue != table[r.Hash&7] {
			t.Fatalf("queue %d is not table[hash & mask] for %+v", r.Queue, r)
		}
		var fl flow
		classify(b, &fl)
		switch {
		case fl.family == 4 && (r.Report < ReportIPv4 || r.Report > ReportUDPv4),
			fl.family == 6 && r.Report < ReportIPv6,
			fl.family == 0 && r.Report != ReportNone:
			t.Fatalf("family %d, report %s", fl.family, r.Report)
		}
		// With only the IP types, the hash covers the addresses alone, and
		// L4 information never makes a frame unclassified.
		r2 := ipOnly.Steer(b)
		if (r2.Report == ReportNone) != (fl.family == 0) {
			t.Fatalf("ip-only config: family %d, report %s", fl.family, r2.Report)
		}
	})
}

// fuzzSeeds are small well-formed frames of every kind.
func fuzzSeeds() [][]byte {
	eth := func(etype uint16, rest ...byte) []byte {
		b := make([]byte, 12, 64)
		b = binary.BigEndian.AppendUint16(b, etype)
		return append(b, rest...)
	}
	ip4 := func(proto byte, l4 ...byte) []byte {
		return eth(0x0800, append([]byte{0x45, 0, 0, 40, 0, 0, 0, 0, 64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2}, l4...)...)
	}
	ip6 := func(next byte, rest ...byte) []byte {
		h := []byte{0x60, 0, 0, 0, 0, 20, next, 64}
		h = append(h, make([]byte, 32)...)
		h[23], h[39] = 1, 2
		return eth(0x86dd, append(h, rest...)...)
	}
	tcp := make([]byte, 20)
	tcp[1], tcp[3] = 80, 90
	udp := tcp[:8]
	hao := append([]byte{6, 2, 0xc9, 16}, make([]byte, 16)...)
	return [][]byte{
		ip4(6, tcp...), ip4(17, udp...), ip4(1, 8, 0, 0, 0),
		ip6(6, tcp...), ip6(17, udp...),
		ip6(0, append([]byte{6, 0, 1, 4, 0, 0, 0, 0}, tcp...)...),
		ip6(60, hao...),
		ip6(44, append([]byte{17, 0, 0, 1, 0, 0, 0, 1}, udp...)...),
		append(eth(0x8100, 0, 1), ip4(6, tcp...)[12:]...),
	}
}
