package steering

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"unsafe"

	"github.com/vrss-dev/vrss/rss"
)

// Map layout of the configuration map (bpf/vrss.h). The Go view is the type
// bpf2go generates from the program's BTF, laid over the mmapped memory;
// layout_test.go pins every offset below with golden values.
const (
	// Magic marks a map that holds a published configuration ("VRSS").
	Magic = 0x53535256
	// MaxTableLen is the longest indirection table the map holds.
	MaxTableLen = 32768
	// MaxQueues is the most queues a TAP device has (tun's MAX_TAP_QUEUES).
	MaxQueues = 256
	// MaxKeySize is the longest Toeplitz key the map holds.
	MaxKeySize = 255

	// ConfigSize is the configuration map's value size in bytes, and the
	// length to mmap.
	ConfigSize = int(unsafe.Sizeof(vrssVrssConfig{}))

	statUnclassified = MaxQueues
	statRetry        = MaxQueues + 1
	statTorn         = MaxQueues + 2
	statUnconfigured = MaxQueues + 3
	numStats         = MaxQueues + 4
)

// configLayout is the mmapped configuration map.
type configLayout = vrssVrssConfig

// Limits returns the limits the steering program enforces for a TAP device
// with the given number of queues (0 if not known).
func Limits(queues int) rss.Limits {
	return rss.Limits{MaxKeySize: MaxKeySize, MaxTableLen: MaxTableLen, Queues: queues, HashTypes: rss.AllHashTypes}
}

// ABIStamp identifies the program objects and map layouts: a digest of the
// embedded production objects (plain and flow builds) and of the layout
// constants. A process that
// publishes through the map must have been built with the same stamp.
func ABIStamp() string {
	h := sha256.New()
	h.Write(_VrssBytes)
	h.Write(_VrssflowBytes)
	var b []byte
	for _, v := range []uint64{Magic, uint64(ConfigSize), MaxTableLen, MaxQueues, MaxKeySize, numStats, uint64(FlowConfigSize), IndexLen, MaxProbe, numFlowStats} {
		b = binary.LittleEndian.AppendUint64(b, v)
	}
	h.Write(b)
	return "vrss1-" + hex.EncodeToString(h.Sum(nil)[:12])
}
