package netkit

import (
	"testing"
)

// The reply decoders take the kernel's bytes as untrusted: they never
// panic, and what they accept is consistent.

func FuzzSplitMessages(f *testing.F) {
	f.Add(append(GetLinkRequest(1, "nk0"), DelLinkRequest(2, 3)...))
	f.Add([]byte{0x10, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		ms, err := SplitMessages(b)
		if err != nil {
			return
		}
		n := 0
		for _, m := range ms {
			n += nlmsgHdrLen + len(m.Payload)
		}
		if n > len(b) {
			t.Fatalf("%d bytes of messages from %d", n, len(b))
		}
	})
}

func FuzzParseAck(f *testing.F) {
	f.Add(uint16(nlmFCapped|nlmFAckTLVs), append([]byte{0xea, 0xff, 0xff, 0xff}, append(DelLinkRequest(1, 2)[:16], 0x07, 0, 1, 0, 'h', 'i', 0, 0)...))
	f.Add(uint16(nlmFAckTLVs), append([]byte{0, 0, 0, 0}, GetLinkRequest(1, "x")...))
	f.Fuzz(func(t *testing.T, flags uint16, b []byte) {
		a, err := ParseAck(flags, b)
		if err == nil && len(a.Msg) > len(b) {
			t.Fatalf("a message of %d bytes from %d", len(a.Msg), len(b))
		}
	})
}

func FuzzParseFamily(f *testing.F) {
	f.Add([]byte{1, 2, 0, 0, 6, 0, 1, 0, 0x1d, 0, 0, 0, 0x18, 0, 6, 0, 0x14, 0, 1, 0, 8, 0, 1, 0, 16, 0, 0, 0, 8, 0, 2, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		fam, err := ParseFamily(b)
		if err != nil {
			return
		}
		if fam.ID == 0 {
			t.Fatal("family id 0 accepted")
		}
		for i := 1; i < len(fam.Ops); i++ {
			if fam.Ops[i] <= fam.Ops[i-1] {
				t.Fatalf("ops not sorted and unique: %v", fam.Ops)
			}
		}
		for _, op := range fam.Ops {
			if !fam.Has(op) {
				t.Fatalf("Has(%d) false for %v", op, fam.Ops)
			}
		}
	})
}

func FuzzParseQueueCreate(f *testing.F) {
	f.Add([]byte{16, 1, 0, 0, 8, 0, 1, 0, 1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		ParseQueueCreate(b)
	})
}

func FuzzParseLink(f *testing.F) {
	f.Add(append(make([]byte, 16), 0x08, 0, 3, 0, 'n', 'k', '0', 0,
		0x1c, 0, 0x12, 0, 0x0b, 0, 1, 0, 'n', 'e', 't', 'k', 'i', 't', 0, 0,
		0x0c, 0, 2, 0, 8, 0, 10, 0, 1, 0, 0, 0))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := ParseLink(b)
		if err != nil {
			return
		}
		if l.Single() && (l.Kind != "netkit" || !l.HasPairing) {
			t.Fatalf("single without being netkit with a pairing: %+v", l)
		}
		if len(l.Name) > len(b) || len(l.Kind) > len(b) {
			t.Fatalf("strings longer than the input: %+v", l)
		}
	})
}

func FuzzParseNSID(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 8, 0, 1, 0, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		ParseNSID(b)
	})
}
