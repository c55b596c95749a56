package virtio_test

import (
	"errors"
	"fmt"

	"github.com/vrss-dev/vrss/rss"
	"github.com/vrss-dev/vrss/virtio"
)

func ExampleDecodeRSSConfig() {
	// The payload of a VIRTIO_NET_CTRL_MQ_RSS_CONFIG command from a driver
	// using two queue pairs.
	cmd := []byte{
		0x12, 0x00, 0x00, 0x00, // hash_types: tcpv4, tcpv6
		0x03, 0x00, // indirection_table_mask: 4 entries
		0x00, 0x00, // unclassified_queue 0
		0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, // indirection_table 0 1 0 1
		0x02, 0x00, // max_tx_vq 2
		0x28, // hash_key_length 40
	}
	cmd = append(cmd, rss.DefaultKey...)

	limits := rss.DefaultLimits(2)
	c, err := virtio.DecodeRSSConfig(cmd, limits)
	fmt.Println(c.HashTypes, c.Table, c.MaxTxVQ, virtio.Ack(err))

	// Queue 2 does not exist: the device answers VIRTIO_NET_ERR and keeps
	// its previous configuration.
	cmd[8] = 0x02
	_, err = virtio.DecodeRSSConfig(cmd, limits)
	fmt.Println(virtio.Ack(err), errors.Is(err, rss.ErrQueueRange))
	// Output:
	// tcpv4,tcpv6 [0 1 0 1] 2 0
	// 1 true
}
