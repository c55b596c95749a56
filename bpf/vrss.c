// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * vrss: virtio-net RSS steering for multi-queue TAP devices.
 *
 * A socket filter program attached with TUNSETSTEERINGEBPF; tun puts each
 * packet on queue (u16)return % numqueues. It implements exactly the
 * semantics of the Go engine (package rss, docs/semantics.md) and is tested
 * against it frame by frame. Every step, in the headers this includes (see
 * bpf/README.md), names the Go code it mirrors.
 *
 * All reads go through bpf_skb_load_bytes_relative(..., BPF_HDR_START_MAC),
 * so offsets count from the Ethernet header both inside tun (where skb data
 * starts there) and under BPF_PROG_TEST_RUN (where it starts at the network
 * header). A failed read means the header is not in the frame (or, in a
 * nonlinear skb, not in its linear part: the helper reads only that): the
 * frame is then unclassified, as in the engine.
 *
 * Helper calls are a large part of the program's cost (25 ns each on one
 * machine it was measured on, against 40 ns for a program that returns at
 * once; 4 against 8 on another), so it makes as few as it can: one read
 * copies the start of the frame (struct reader), and the parser takes
 * every header from that copy; only a header that lies past it is read on
 * its own. See reader_init for how much the first read takes. Nor does it
 * copy what it hashes: classification notes where the addresses and ports
 * lie, and the hash reads them there.
 *
 * Past the first read, what a frame costs is mostly its hash: one table
 * lookup per input byte, 12 for IPv4 with ports, 36 for IPv6 (see
 * toeplitz). The rest (parsing, the configuration's seqlock, the table and
 * the per-queue counter) is the same few dozen instructions for both.
 *
 * Build variants (bpf2go, see steering/gen.go):
 *   VRSS_DEBUG      record hash, report and queue of the last packet
 *   VRSS_BITSERIAL  bit-serial Toeplitz from the key (benchmark baseline)
 */
#include "ctx/skb.h"
#include "steer.h"

SEC("socket")
int vrss_steer(struct __sk_buff *skb)
{
	return vrss_run(skb);
}

char __license[] SEC("license") = "Dual BSD/GPL";
