package virtio

import (
	"encoding/binary"
	"fmt"

	"github.com/vrss-dev/vrss/rss"
)

// Bits of NetHdr.Flags (VIRTIO_NET_HDR_F_*).
const (
	// FlagNeedsCsum means the checksum at CsumStart+CsumOffset is partial
	// and must be completed over the data from CsumStart on.
	FlagNeedsCsum uint8 = 1
	// FlagDataValid means the receiver may treat the checksum as verified.
	FlagDataValid uint8 = 2
	// FlagRSCInfo means the header carries receive segment coalescing
	// information in place of the checksum fields.
	FlagRSCInfo uint8 = 4
)

// Values of NetHdr.GSOType (VIRTIO_NET_HDR_GSO_*).
const (
	// GSONone means the packet is not a segmentation offload.
	GSONone uint8 = 0
	// GSOTCPv4 is TCP segmentation offload over IPv4.
	GSOTCPv4 uint8 = 1
	// GSOUDP is UDP fragmentation offload (UFO).
	GSOUDP uint8 = 3
	// GSOTCPv6 is TCP segmentation offload over IPv6.
	GSOTCPv6 uint8 = 4
	// GSOUDPL4 is UDP segmentation offload (USO), per datagram.
	GSOUDPL4 uint8 = 5
	// GSOECN is a bit ORed into a TCP GSO type when the TCP header has the
	// ECN CWR flag set, which segmentation must handle.
	GSOECN uint8 = 0x80
)

// Header sizes on the wire.
const (
	NetHdrLen     = 12 // struct virtio_net_hdr_v1
	NetHdrHashLen = 20 // struct virtio_net_hdr_v1_hash
)

// NetHdr is struct virtio_net_hdr_v1, the header before every packet on a
// virtio-net queue once VIRTIO_F_VERSION_1 is negotiated.
type NetHdr struct {
	Flags      uint8  // FlagNeedsCsum, FlagDataValid, FlagRSCInfo
	GSOType    uint8  // GSONone, GSOTCPv4, ..., optionally ORed with GSOECN
	HdrLen     uint16 // length of the headers to copy into each segment
	GSOSize    uint16 // payload bytes per segment
	CsumStart  uint16 // offset where checksumming starts
	CsumOffset uint16 // offset of the checksum field from CsumStart
	NumBuffers uint16 // buffers the packet spans (mergeable rx buffers)
}

// Encode writes h in its 12-byte little-endian wire form to b[:NetHdrLen].
// It panics, before writing anything, if len(b) < NetHdrLen.
func (h *NetHdr) Encode(b []byte) {
	_ = b[NetHdrLen-1] // the one bounds check, and the panic if short
	le := binary.LittleEndian
	b[0] = h.Flags
	b[1] = h.GSOType
	le.PutUint16(b[2:], h.HdrLen)
	le.PutUint16(b[4:], h.GSOSize)
	le.PutUint16(b[6:], h.CsumStart)
	le.PutUint16(b[8:], h.CsumOffset)
	le.PutUint16(b[10:], h.NumBuffers)
}

// DecodeNetHdr parses the header at the start of b. Bytes past NetHdrLen
// (normally the packet) are ignored; a shorter b gives ErrTruncated.
func DecodeNetHdr(b []byte) (NetHdr, error) {
	if len(b) < NetHdrLen {
		return NetHdr{}, fmt.Errorf("%w: vnet header is %d bytes, want %d", ErrTruncated, len(b), NetHdrLen)
	}
	le := binary.LittleEndian
	return NetHdr{
		Flags:      b[0],
		GSOType:    b[1],
		HdrLen:     le.Uint16(b[2:]),
		GSOSize:    le.Uint16(b[4:]),
		CsumStart:  le.Uint16(b[6:]),
		CsumOffset: le.Uint16(b[8:]),
		NumBuffers: le.Uint16(b[10:]),
	}, nil
}

// NetHdrHash is struct virtio_net_hdr_v1_hash, the header used once
// VIRTIO_NET_F_HASH_REPORT is negotiated: NetHdr followed by the packet's
// hash and the hash type that produced it.
type NetHdrHash struct {
	NetHdr
	// HashValue is the packet's hash; meaningful unless HashReport is
	// rss.ReportNone.
	HashValue uint32
	// HashReport is the hash type that produced HashValue.
	HashReport rss.HashReport
}

// Encode writes h in its 20-byte little-endian wire form to
// b[:NetHdrHashLen], with the padding zero. It panics, before writing
// anything, if len(b) < NetHdrHashLen.
func (h *NetHdrHash) Encode(b []byte) {
	_ = b[NetHdrHashLen-1]
	h.NetHdr.Encode(b)
	le := binary.LittleEndian
	le.PutUint32(b[12:], h.HashValue)
	le.PutUint16(b[16:], uint16(h.HashReport))
	le.PutUint16(b[18:], 0)
}

// DecodeNetHdrHash parses the header at the start of b. The padding and any
// bytes past NetHdrHashLen are ignored, and a hash report value virtio does
// not define is kept as is; a shorter b gives ErrTruncated.
func DecodeNetHdrHash(b []byte) (NetHdrHash, error) {
	if len(b) < NetHdrHashLen {
		return NetHdrHash{}, fmt.Errorf("%w: vnet hash header is %d bytes, want %d", ErrTruncated, len(b), NetHdrHashLen)
	}
	h, _ := DecodeNetHdr(b)
	return NetHdrHash{
		NetHdr:     h,
		HashValue:  binary.LittleEndian.Uint32(b[12:]),
		HashReport: rss.HashReport(binary.LittleEndian.Uint16(b[16:])),
	}, nil
}
