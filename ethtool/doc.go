// Package ethtool slices a NIC's receive queues for one guest, through the
// kernel's ethtool ioctl (SIOCETHTOOL): an RSS context spreads a guest's
// traffic over a range of the device's queues, and ntuple rules steer the
// guest's addresses into that context.
//
// The package has three layers:
//
//   - The wire formats (portable): Rxfh (struct ethtool_rxfh, the RSS
//     indirection table, key and hash function of a context), Rxnfc
//     (struct ethtool_rxnfc, the receive flow classification command) with
//     its Rule (struct ethtool_rx_flow_spec, one ntuple rule), and Channels
//     (struct ethtool_channels). Each encodes to, and decodes from, the exact
//     byte image the ioctl takes on 64-bit Linux, padding included; decoders
//     never read past the bytes they are given.
//   - The operations on a device (Linux only): Device and the functions
//     Rings, Channels, RSS, CreateContext, DeleteContext, AddRule, DeleteRule
//     and Rules, each one or a few ioctls. Every refusal is an *Error that
//     names the operation, the device and what the refusal means, and that
//     matches one of the typed errors (ErrNotSupported, ErrPermission, …)
//     with errors.Is.
//   - Slice and Unslice (portable, on the Driver interface): what vrssd does
//     for a guest — a context over queues [start, start+k) and one rule per
//     guest prefix into it, undone completely on any failure — and Sliced
//     and Orphans, to find what a crash left behind.
//
// Most virtual and small NICs (veth, virtio_net, e1000e, igb, igc, vmxnet3)
// support no RSS contexts: there, every slicing operation fails with
// ErrNotSupported and leaves nothing behind. See docs/queue-slicing.md for
// the drivers that do, and for what is and is not proven by the tests.
package ethtool
