// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The benchmark's floors: what any steering program costs at least.
 *
 * Built as is, the program returns 0: the cost of running a program at all.
 * Built with VRSS_READ_FLOOR, it first makes the steering program's first
 * read of the frame (reader_init, one helper call), which every program that
 * looks at the packet pays too: the most a faster hash can gain against a
 * slower one is bounded by it.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#ifdef VRSS_READ_FLOOR
#include "ctx/skb.h"
#include "reader.h"
#endif

SEC("socket")
int vrss_floor(struct __sk_buff *skb)
{
#ifdef VRSS_READ_FLOOR
	struct reader r;

	/* A helper call is never optimised away, used or not. */
	reader_init(skb, &r);
#endif
	return 0;
}

char __license[] SEC("license") = "Dual BSD/GPL";
