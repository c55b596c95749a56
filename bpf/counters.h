/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The per-CPU counters (vrss_stats: one per queue, then VRSS_STAT_*), and,
 * in VRSS_DEBUG builds, the last frame's result (vrss_debug) for tests.
 */
#ifndef VRSS_COUNTERS_H
#define VRSS_COUNTERS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "vrss.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VRSS_NSTATS);
	__type(key, __u32);
	__type(value, __u64);
} vrss_stats SEC(".maps");

#ifdef VRSS_DEBUG
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct vrss_debug);
} vrss_debug SEC(".maps");
#endif

static __always_inline void count(__u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(&vrss_stats, &idx);

	if (c)
		*c += 1;
}

#endif
