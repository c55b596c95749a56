// Package flow is the reference implementation of vrss's flow rules and RSS
// contexts: which frames a rule matches, which rule wins, and where the
// frame then goes (a queue, an RSS context, the default RSS configuration,
// or nowhere).
//
// One match model serves every classifier in vrss. A frame is reduced to a
// Key, a fixed 56-byte image of the header fields rules can name (MAC
// addresses, EtherType, VLAN tag, IP addresses, protocol, TCP flags and
// ports, and flags saying which of them the frame has). A rule's Match is a
// value and a mask over that image; it matches when the frame's key, masked,
// equals the value. The virtio 1.4 flow-filter selectors (ETH, IPv4, IPv6,
// TCP, UDP) and the ethtool-like rules of the vrss CLI both translate into
// Match values.
//
// Rules are ordered by Order (host rules first, then groups from high to low
// priority, then rules from high to low priority, ties broken by the lower
// id) and the first match wins. A frame no rule matches is steered by the
// default RSS configuration, exactly as package rss does. The eBPF program
// is held to Engine frame by frame; docs/semantics.md settles every point
// the virtio specification leaves open.
package flow
