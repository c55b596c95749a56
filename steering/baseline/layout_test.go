//go:build linux

package baseline

import (
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vrss-dev/vrss/steering"
)

// TestBitSerialLayout checks that the bit-serial build's configuration map
// is the production one, which the publisher lays its view over (the
// field-by-field golden check of that layout is steering's TestLayoutBTF;
// TestBitSerialMatchesEngine steers through a published configuration).
func TestBitSerialLayout(t *testing.T) {
	if n := int(unsafe.Sizeof(vrssbitserialVrssConfig{})); n != steering.ConfigSize {
		t.Errorf("generated vrss_config is %d bytes, steering.ConfigSize %d", n, steering.ConfigSize)
	}
	spec, err := loadVrssbitserial()
	if err != nil {
		t.Fatal(err)
	}
	m := spec.Maps[vrssbitserialMapVrssConfig]
	if m == nil || int(m.ValueSize) != steering.ConfigSize || m.MaxEntries != 1 || m.Flags&unix.BPF_F_MMAPABLE == 0 {
		t.Errorf("vrss_config is %+v, want one mmapable %d-byte value", m, steering.ConfigSize)
	}
	if spec.Maps[vrssbitserialMapVrssStats] == nil || spec.Programs[vrssbitserialProgVrssSteer] == nil {
		t.Error("vrss_stats or vrss_steer missing")
	}
}
