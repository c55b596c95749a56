package ethtool

import (
	"errors"
	"reflect"
	"testing"
)

// The decoders take bytes from the kernel (or from a file): whatever they
// are, a decoder returns a value or ErrTruncated, never panics, and what it
// returns encodes and decodes to itself.

func seeds(f *testing.F, like any) {
	for _, g := range goldens {
		if reflect.TypeOf(g.value) == reflect.TypeOf(like) {
			f.Add(g.image)
			f.Add(g.image[:len(g.image)/2])
		}
	}
	f.Add([]byte{})
}

func FuzzUnmarshalRxfh(f *testing.F) {
	seeds(f, Rxfh{})
	f.Add(at(24, map[int][]byte{8: {0xff, 0xff, 0xff, 0xff}, 12: {0xff, 0xff, 0xff, 0xff}})) // huge sizes
	f.Add(at(40, map[int][]byte{8: {0xff, 0xff, 0xff, 0xff}, 12: {4}}))                      // no change, then a key
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := UnmarshalRxfh(b)
		if refused(t, err) {
			return
		}
		if len(b) == RxfhHeaderSize {
			return // a size answer: encoding it leaves room for the table
		}
		e, err := r.MarshalBinary()
		if err != nil {
			return // sizes beyond what this package writes
		}
		r2, err := UnmarshalRxfh(e)
		if err != nil || !reflect.DeepEqual(r, r2) {
			t.Fatalf("re-decoded %+v, %v\nwant %+v", r2, err, r)
		}
	})
}

func FuzzUnmarshalRxnfc(f *testing.F) {
	seeds(f, Rxnfc{})
	f.Add(at(192, map[int][]byte{0: {0x30}, 184: {0xff, 0xff, 0xff, 0x7f}})) // many locations, no room
	f.Add(at(192, map[int][]byte{16: {0x12}}))                               // ETHER_FLOW: not decoded
	f.Fuzz(func(t *testing.T, b []byte) {
		x, err := UnmarshalRxnfc(b)
		if refused(t, err) {
			return
		}
		e, err := x.MarshalBinary()
		if err != nil {
			if !errors.Is(err, ErrEncode) || x.Rule.Type.known() || x.Rule.Type.Base() == 0 {
				t.Fatalf("decoded %+v does not encode: %v", x, err)
			}
			return
		}
		x2, err := UnmarshalRxnfc(e)
		if err != nil || !reflect.DeepEqual(x, x2) {
			t.Fatalf("re-decoded %+v, %v\nwant %+v", x2, err, x)
		}
	})
}

func FuzzUnmarshalChannels(f *testing.F) {
	seeds(f, Channels{})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := UnmarshalChannels(b)
		if refused(t, err) {
			return
		}
		e, _ := c.MarshalBinary()
		if c2, err := UnmarshalChannels(e); err != nil || c2 != c {
			t.Fatalf("re-decoded %+v, %v\nwant %+v", c2, err, c)
		}
	})
}

// refused reports whether the decoder refused the bytes, failing t if it
// did with anything but ErrTruncated.
func refused(t *testing.T, err error) bool {
	t.Helper()
	if err != nil && !errors.Is(err, ErrTruncated) {
		t.Fatalf("error %v is not ErrTruncated", err)
	}
	return err != nil
}
