/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Transport headers: TCP and UDP, whose ports the hash takes.
 */
#ifndef VRSS_L4_H
#define VRSS_L4_H

#include "ctx.h"
#include "pkt.h"
#include "proto.h"

/* rss.transport: the whole TCP or UDP header must be there. */
static __always_inline int transport(ctx_t *ctx, struct reader *r, struct pkt *p, __u8 proto, __u32 off)
{
	const __u8 *l4;

	if (proto == VRSS_IPPROTO_TCP)
		l4 = get(ctx, r, off, VRSS_TCP_MIN_HLEN, r->l4);
	else if (proto == VRSS_IPPROTO_UDP)
		l4 = get(ctx, r, off, VRSS_UDP_HLEN, r->l4);
	else
		return 0;
	if (!l4)
		return -1;
	p->l4 = proto;
	p->ports = l4;
#ifdef VRSS_FLOWS
	if (p->f) {
		p->f->kl4 = proto;
		p->kports = l4;
		if (proto == VRSS_IPPROTO_TCP)
			p->f->tcpflags = l4[VRSS_TCP_FLAGS_OFF];
	}
#endif
	return 0;
}

#ifdef VRSS_FLOWS
/* rss.rulePorts: a first fragment's ports, for rules only. */
static __always_inline void rule_ports(ctx_t *ctx, struct reader *r, struct pkt *p, __u8 proto, __u32 off)
{
	const __u8 *l4;

	if (proto == VRSS_IPPROTO_TCP)
		l4 = get(ctx, r, off, VRSS_TCP_MIN_HLEN, r->l4);
	else if (proto == VRSS_IPPROTO_UDP)
		l4 = get(ctx, r, off, VRSS_UDP_HLEN, r->l4);
	else
		return;
	if (!l4)
		return;
	p->f->kl4 = proto;
	p->kports = l4;
	if (proto == VRSS_IPPROTO_TCP)
		p->f->tcpflags = l4[VRSS_TCP_FLAGS_OFF];
}
#endif

#endif
