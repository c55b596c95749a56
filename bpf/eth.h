/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Ethernet and up to VRSS_MAX_VLAN VLAN tags, then IPv4 or IPv6: the whole
 * classification of a frame (rss.classify).
 */
#ifndef VRSS_ETH_H
#define VRSS_ETH_H

#include "ctx.h"
#include "ipv4.h"
#include "ipv6.h"
#include "pkt.h"
#include "proto.h"
#include "reader.h"

#ifdef VRSS_FLOWS
/*
 * The VLAN tags of a frame too short to be classified (under 34 bytes), for
 * rules: rss.classify's tag loop, where each tag must fit with the
 * EtherType after it.
 */
static __always_inline void flow_tags(ctx_t *ctx, struct reader *r, struct pkt *p)
{
	const __u8 *t = get(ctx, r, VRSS_ETH_TYPE_OFF, 6, r->l4);

	if (!t)
		return;
	p->f->tagged = 1;
	p->f->tci = (t[2] << 8) | t[3];
	p->f->etype = (t[4] << 8) | t[5];
	if (p->f->etype != VRSS_ETH_P_8021Q && p->f->etype != VRSS_ETH_P_8021AD)
		return;
	t = get(ctx, r, VRSS_ETH_TYPE_OFF + VRSS_VLAN_HLEN, 6, r->l4);
	if (t)
		p->f->etype = (t[4] << 8) | t[5];
}
#endif

/* rss.classify. On return p->family is 0 if the frame is unclassified. */
static __always_inline void classify(ctx_t *ctx, struct reader *r, struct ext *e, struct pkt *p)
{
	/* Every classifiable frame has at least Ethernet + a 20-byte IPv4
	 * header, so its first 34 bytes cover the VLAN tags and, untagged,
	 * the IPv4 header. */
	const __u8 *hdr = get(ctx, r, 0, VRSS_ETH_HLEN + VRSS_IPV4_MIN_HLEN, r->ip);
	const __u8 *ip;
	__u32 off = VRSS_ETH_TYPE_OFF;
	__u16 etype;

	if (!hdr) {
#ifdef VRSS_FLOWS
		/* Shorter than 34 bytes: the Ethernet header alone, for
		 * rules, if it is there (the engine's KeyOf). */
		hdr = p->f ? get(ctx, r, 0, VRSS_ETH_HLEN, r->ip) : 0;
		if (hdr) {
			p->f->has_eth = 1;
			__builtin_memcpy(p->f->mac, hdr, 12);
			etype = (hdr[12] << 8) | hdr[13];
			p->f->etype = etype;
			if (etype == VRSS_ETH_P_8021Q || etype == VRSS_ETH_P_8021AD)
				flow_tags(ctx, r, p);
		}
#endif
		return;
	}
#ifdef VRSS_FLOWS
	if (p->f) {
		p->f->has_eth = 1;
		__builtin_memcpy(p->f->mac, hdr, 12);
	}
#endif
	etype = (hdr[12] << 8) | hdr[13];
	if (etype == VRSS_ETH_P_8021Q || etype == VRSS_ETH_P_8021AD) {
#ifdef VRSS_FLOWS
		if (p->f) {
			p->f->tagged = 1;
			p->f->tci = (hdr[14] << 8) | hdr[15];
		}
#endif
		off += VRSS_VLAN_HLEN;
		etype = (hdr[off] << 8) | hdr[off + 1];
		if (etype == VRSS_ETH_P_8021Q || etype == VRSS_ETH_P_8021AD) {
			off += VRSS_VLAN_HLEN;
			etype = (hdr[off] << 8) | hdr[off + 1];
			if (etype == VRSS_ETH_P_8021Q || etype == VRSS_ETH_P_8021AD) {
#ifdef VRSS_FLOWS
				if (p->f)
					p->f->etype = etype;
#endif
				return; /* more than VRSS_MAX_VLAN tags */
			}
		}
	}
#ifdef VRSS_FLOWS
	if (p->f)
		p->f->etype = etype;
#endif
	off += 2; /* past the EtherType */
	if (etype == VRSS_ETH_P_IPV4) {
		ip = hdr + VRSS_ETH_HLEN;
		if (off != VRSS_ETH_HLEN) {
			ip = get(ctx, r, off, VRSS_IPV4_MIN_HLEN, r->ip);
			if (!ip)
				return;
		}
		if (classify4(ctx, r, p, ip, off) == 0)
			p->family = 4;
	} else if (etype == VRSS_ETH_P_IPV6) {
		if (classify6(ctx, r, e, p, off) == 0)
			p->family = 6;
	}
}

#endif
