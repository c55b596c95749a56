/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The configuration: its map (one struct vrss_config, mmapped by the Go
 * publisher), the hash types and reports, the report selection
 * (rss.Engine.Steer's first half) and steering by one slot. The seqlock
 * that picks and re-checks the slot is in steer.h.
 */
#ifndef VRSS_CONFIG_H
#define VRSS_CONFIG_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "pkt.h"
#include "proto.h"
#include "toeplitz.h"
#include "vrss.h"

#ifdef VRSS_FLOWS
#include "flowmap.h"
#define VRSS_CONFIG_TYPE struct vrss_flow_config
#else
#define VRSS_CONFIG_TYPE struct vrss_config
#endif

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, VRSS_CONFIG_TYPE);
} vrss_config SEC(".maps");

#define HASH_IPV4 (1u << 0)
#define HASH_TCPV4 (1u << 1)
#define HASH_UDPV4 (1u << 2)
#define HASH_IPV6 (1u << 3)
#define HASH_TCPV6 (1u << 4)
#define HASH_UDPV6 (1u << 5)
#define HASH_IP_EX (1u << 6)
#define HASH_TCP_EX (1u << 7)
#define HASH_UDP_EX (1u << 8)

enum report {
	REPORT_NONE,
	REPORT_IPV4,
	REPORT_TCPV4,
	REPORT_UDPV4,
	REPORT_IPV6,
	REPORT_TCPV6,
	REPORT_UDPV6,
	REPORT_IPV6_EX,
	REPORT_TCPV6_EX,
	REPORT_UDPV6_EX,
};

struct result {
	__u32 hash;
	__u16 queue;
	__u16 report;
};

/*
 * Hash type selection (the first half of rss.Engine.Steer): the report, and
 * which source and destination addresses the hash input starts with.
 */
static __always_inline __u16 select_report(const struct vrss_slot *s, const struct pkt *p, const struct ext *e, const __u8 **src, const __u8 **dst, int *ports)
{
	__u32 t = s->hash_types;
	__u16 report = REPORT_NONE;

	*ports = p->l4 != 0;
	*src = p->src;
	*dst = p->dst;
	if (p->family == 4) {
		if (p->l4 == VRSS_IPPROTO_TCP && (t & HASH_TCPV4))
			report = REPORT_TCPV4;
		else if (p->l4 == VRSS_IPPROTO_UDP && (t & HASH_UDPV4))
			report = REPORT_UDPV4;
		else if (t & HASH_IPV4)
			report = REPORT_IPV4, *ports = 0;
		return report;
	}
	if (p->family != 6)
		return REPORT_NONE;
	if (p->ext) {
		if (p->l4 == VRSS_IPPROTO_TCP && (t & HASH_TCP_EX))
			report = REPORT_TCPV6_EX;
		else if (p->l4 == VRSS_IPPROTO_UDP && (t & HASH_UDP_EX))
			report = REPORT_UDPV6_EX;
		else if (t & HASH_IP_EX)
			report = REPORT_IPV6_EX, *ports = 0;
		if (report != REPORT_NONE) {
			if (e->has_home)
				*src = e->home;
			if (e->has_rt2)
				*dst = e->rt2;
			return report;
		}
	}
	if (p->l4 == VRSS_IPPROTO_TCP && (t & HASH_TCPV6))
		report = REPORT_TCPV6;
	else if (p->l4 == VRSS_IPPROTO_UDP && (t & HASH_UDPV6))
		report = REPORT_UDPV6;
	else if (t & HASH_IPV6)
		report = REPORT_IPV6, *ports = 0;
	return report;
}

/* rss.Engine.Steer: hash type selection, hashing and the table lookup. */
static __always_inline void steer(const struct vrss_slot *s, const struct pkt *p, const struct ext *e, struct result *r)
{
	const __u8 *src, *dst;
	int ports;

	r->hash = 0;
	r->report = select_report(s, p, e, &src, &dst, &ports);
	if (r->report == REPORT_NONE) {
		r->queue = s->unclassified_queue;
		return;
	}
	r->hash = toeplitz(s, src, dst, ports, p->ports, p->family == 6);
	r->queue = s->table[r->hash & s->table_mask & (VRSS_MAX_TABLE - 1)];
}

#endif
