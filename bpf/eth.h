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

	if (!hdr)
		return;
	etype = (hdr[12] << 8) | hdr[13];
	if (etype == VRSS_ETH_P_8021Q || etype == VRSS_ETH_P_8021AD) {
		off += VRSS_VLAN_HLEN;
		etype = (hdr[off] << 8) | hdr[off + 1];
		if (etype == VRSS_ETH_P_8021Q || etype == VRSS_ETH_P_8021AD) {
			off += VRSS_VLAN_HLEN;
			etype = (hdr[off] << 8) | hdr[off + 1];
			if (etype == VRSS_ETH_P_8021Q || etype == VRSS_ETH_P_8021AD)
				return; /* more than VRSS_MAX_VLAN tags */
		}
	}
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
