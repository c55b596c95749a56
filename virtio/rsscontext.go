package virtio

import (
	"encoding"
	"encoding/binary"
	"fmt"

	"github.com/vrss-dev/vrss/rss"
)

// RSS contexts (virtio 1.4): feature bit, control class and its commands.
// A driver may use the class only once VIRTIO_NET_F_RSS_CONTEXT is
// negotiated, which needs VIRTIO_NET_F_CTRL_VQ and VIRTIO_NET_F_RSS; the
// VMM checks the feature, the commands' payloads are decoded here.
const (
	FeatureRSSContext = 64 // VIRTIO_NET_F_RSS_CONTEXT

	CtrlClassRSSContext = 9 // VIRTNET_RSS_CTX_CTRL
	CmdRSSContextCapGet = 0 // VIRTNET_RSS_CTX_CTRL_CAP_GET: reply RSSContextCap
	CmdRSSContextAdd    = 1 // VIRTNET_RSS_CTX_CTRL_ADD: payload RSSContext
	CmdRSSContextMod    = 2 // VIRTNET_RSS_CTX_CTRL_MOD: payload RSSContext
	CmdRSSContextDel    = 3 // VIRTNET_RSS_CTX_CTRL_DEL: payload RSSContextID
)

// Sizes of the RSS context structures' fixed parts.
const (
	rssCtxCapLen    = 2 // max_rss_contexts
	rssCtxHeaderLen = 8 // rss_ctx_id, reserved[6]
	rssCtxIDLen     = 2 // rss_ctx_id
)

var (
	_ encoding.BinaryAppender  = (*RSSContextCap)(nil)
	_ encoding.BinaryMarshaler = (*RSSContextCap)(nil)
	_ encoding.BinaryAppender  = (*RSSContext)(nil)
	_ encoding.BinaryMarshaler = (*RSSContext)(nil)
	_ encoding.BinaryAppender  = RSSContextID(0)
	_ encoding.BinaryMarshaler = RSSContextID(0)
)

// RSSContextCap is struct virtnet_rss_ctx_cap, what the device writes in
// reply to VIRTNET_RSS_CTX_CTRL_CAP_GET.
type RSSContextCap struct {
	// MaxContexts is max_rss_contexts: context ids run from 1 to it. A
	// device offering the feature declares at least 1.
	MaxContexts uint16
}

// DecodeRSSContextCap parses a CAP_GET reply, which must be exactly 2
// bytes (ErrTruncated, ErrTrailingBytes).
func DecodeRSSContextCap(b []byte) (RSSContextCap, error) {
	if err := exactLen(b, rssCtxCapLen, "rss context capability"); err != nil {
		return RSSContextCap{}, err
	}
	return RSSContextCap{MaxContexts: binary.LittleEndian.Uint16(b)}, nil
}

// AppendBinary appends the 2-byte wire form of c to b. It never fails.
func (c *RSSContextCap) AppendBinary(b []byte) ([]byte, error) {
	return binary.LittleEndian.AppendUint16(b, c.MaxContexts), nil
}

// MarshalBinary returns the wire form of c.
func (c *RSSContextCap) MarshalBinary() ([]byte, error) { return c.AppendBinary(nil) }

// RSSContext is struct virtnet_rss_ctx_add_modify, the payload of
// VIRTNET_RSS_CTX_CTRL_ADD and _MOD: a context id, six reserved bytes and a
// whole virtio_net_rss_config whose table entries are receive queue numbers
// like the default configuration's.
type RSSContext struct {
	// ID is rss_ctx_id; a driver uses 1 to max_rss_contexts, 0 being the
	// default configuration, which only VIRTIO_NET_CTRL_MQ_RSS_CONFIG sets.
	ID uint16
	RSSConfig
}

// DecodeRSSContext parses an ADD or MOD payload, which must be exactly b,
// and validates its configuration against l as DecodeRSSConfig does
// (max_tx_vq included: the context carries a whole configuration). The
// reserved bytes are ignored, as virtio requires. The id is not checked
// here: its range is the device's max_rss_contexts. The result shares no
// memory with b; on error it is the zero RSSContext.
func DecodeRSSContext(b []byte, l rss.Limits) (RSSContext, error) {
	if len(b) < rssCtxHeaderLen {
		return RSSContext{}, fmt.Errorf("%w: rss context is %d bytes, header needs %d", ErrTruncated, len(b), rssCtxHeaderLen)
	}
	c, err := DecodeRSSConfig(b[rssCtxHeaderLen:], l)
	if err != nil {
		return RSSContext{}, fmt.Errorf("virtio: rss context: %w", err)
	}
	return RSSContext{ID: binary.LittleEndian.Uint16(b), RSSConfig: c}, nil
}

// AppendBinary appends the wire form of c, reserved bytes zero, to b; the
// configuration must be expressible (see RSSConfig.AppendBinary). On error
// b is returned unchanged.
func (c *RSSContext) AppendBinary(b []byte) ([]byte, error) {
	n := len(b)
	b = binary.LittleEndian.AppendUint16(b, c.ID)
	b = append(b, 0, 0, 0, 0, 0, 0)
	out, err := c.RSSConfig.AppendBinary(b)
	if err != nil {
		return b[:n], err
	}
	return out, nil
}

// MarshalBinary returns the wire form of c; see AppendBinary.
func (c *RSSContext) MarshalBinary() ([]byte, error) { return c.AppendBinary(nil) }

// RSSContextID is struct virtnet_rss_ctx_del, the payload of
// VIRTNET_RSS_CTX_CTRL_DEL: the id of the context to delete.
type RSSContextID uint16

// DecodeRSSContextID parses a DEL payload, which must be exactly 2 bytes.
func DecodeRSSContextID(b []byte) (RSSContextID, error) {
	if err := exactLen(b, rssCtxIDLen, "rss context id"); err != nil {
		return 0, err
	}
	return RSSContextID(binary.LittleEndian.Uint16(b)), nil
}

// AppendBinary appends the 2-byte wire form of id to b. It never fails.
func (id RSSContextID) AppendBinary(b []byte) ([]byte, error) {
	return binary.LittleEndian.AppendUint16(b, uint16(id)), nil
}

// MarshalBinary returns the wire form of id.
func (id RSSContextID) MarshalBinary() ([]byte, error) { return id.AppendBinary(nil) }

// exactLen reports ErrTruncated or ErrTrailingBytes unless len(b) == n.
func exactLen(b []byte, n int, what string) error {
	switch {
	case len(b) < n:
		return fmt.Errorf("%w: %s is %d bytes, want %d", ErrTruncated, what, len(b), n)
	case len(b) > n:
		return fmt.Errorf("%w: %s is %d bytes, want %d", ErrTrailingBytes, what, len(b), n)
	}
	return nil
}
