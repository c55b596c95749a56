/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * IPv4: the header checks, fragments, and the transport behind it.
 */
#ifndef VRSS_IPV4_H
#define VRSS_IPV4_H

#include "ctx.h"
#include "l4.h"
#include "pkt.h"
#include "proto.h"

/* rss.classify4. ip holds the first 20 bytes of the header at off. */
static __always_inline int classify4(ctx_t *ctx, struct reader *r, struct pkt *p, const __u8 *ip, __u32 off)
{
	__u32 ihl;

	if (ip[0] >> 4 != 4)
		return -1;
	ihl = (ip[0] & 0x0f) * 4;
	if (ihl < VRSS_IPV4_MIN_HLEN)
		return -1;
	/* Options cut short. The byte is read into r->l4, never over ip. */
	if (ihl > VRSS_IPV4_MIN_HLEN && !get(ctx, r, off + ihl - 1, 1, r->l4))
		return -1;
	p->src = ip + VRSS_IPV4_SRC_OFF;
	p->dst = ip + VRSS_IPV4_DST_OFF;
#ifdef VRSS_FLOWS
	if (p->f) {
		p->f->proto = ip[VRSS_IPV4_PROTO_OFF];
		p->f->has_proto = 1;
	}
#endif
	/* Any fragment, the first included, hashes on addresses only. */
	if (((ip[VRSS_IPV4_FRAG_OFF] << 8) | ip[VRSS_IPV4_FRAG_OFF + 1]) & VRSS_IPV4_FRAG_MASK) {
#ifdef VRSS_FLOWS
		/* A first fragment shows its ports to rules (rulePorts). */
		if (p->f) {
			p->f->frag = 1;
			if (!(((ip[VRSS_IPV4_FRAG_OFF] << 8) | ip[VRSS_IPV4_FRAG_OFF + 1]) & VRSS_IPV4_OFFSET_MASK))
				rule_ports(ctx, r, p, ip[VRSS_IPV4_PROTO_OFF], off + ihl);
		}
#endif
		return 0;
	}
	return transport(ctx, r, p, ip[VRSS_IPV4_PROTO_OFF], off + ihl);
}

#endif
