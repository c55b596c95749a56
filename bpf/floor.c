// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* The benchmark floor: a steering program that does nothing but return 0. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("socket")
int vrss_floor(struct __sk_buff *skb)
{
	return 0;
}

char __license[] SEC("license") = "Dual BSD/GPL";
