/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * IPv6: the fixed header, and the extension-header walk (at most
 * VRSS_MAX_EXT headers, VRSS_MAX_DSTOPTS options in a destination options
 * header) with the home address option and the type 2 routing header it
 * looks for.
 */
#ifndef VRSS_IPV6_H
#define VRSS_IPV6_H

#include "ctx.h"
#include "l4.h"
#include "pkt.h"
#include "proto.h"
#include "vrss.h"

/* rss.homeAddress: scan a destination options header [off, end). */
static __always_inline void home_address(ctx_t *ctx, struct reader *r, struct ext *e, __u32 off, __u32 end)
{
	__u32 pos = off + 2;
	const __u8 *opt;

	for (int i = 0; i < VRSS_MAX_DSTOPTS; i++) {
		pos = untrack(r, pos);
		if (pos >= end)
			return;
		/* The type byte, and the length byte if the header has room. */
		opt = get_ext(ctx, r, pos, pos + 2 <= end ? 2 : 1);
		if (!opt)
			return;
		if (opt[0] == VRSS_IPV6_OPT_PAD1) {
			pos++;
			continue;
		}
		if (pos + 2 > end)
			return;
		if (opt[0] == VRSS_IPV6_OPT_HOME && opt[1] == VRSS_IPV6_ADDR_LEN && pos + 2 + VRSS_IPV6_ADDR_LEN <= end) {
			opt = get_ext(ctx, r, pos + 2, VRSS_IPV6_ADDR_LEN);
			if (opt) {
				__builtin_memcpy(e->home, opt, VRSS_IPV6_ADDR_LEN);
				e->has_home = 1;
			}
			return;
		}
		pos += 2 + opt[1];
	}
}

static __always_inline int ext_header(__u8 next)
{
	switch (next) {
	case VRSS_IPPROTO_HOPOPTS:
	case VRSS_IPPROTO_ROUTING:
	case VRSS_IPPROTO_FRAGMENT:
	case VRSS_IPPROTO_AH:
	case VRSS_IPPROTO_DSTOPTS:
	case VRSS_IPPROTO_MH:
	case VRSS_IPPROTO_HIP:
	case VRSS_IPPROTO_SHIM6:
	case VRSS_IPPROTO_EXP1:
	case VRSS_IPPROTO_EXP2:
		return 1;
	}
	return 0;
}

/*
 * The extension-header walk of rss.classify6, from the header of type next
 * at off; what it finds goes to e. A global function, so the verifier
 * checks it once, for any offset and any reader contents, instead of once
 * per way of reaching it (VLAN tags, first-read outcomes) with everything
 * that follows it in the program checked once per way out. Inlined, it
 * saves the call (about 10 ns where this was measured, paid only by frames
 * with extension headers) but doubles the verifier's work.
 */
__attribute__((noinline)) int walk_ext(ctx_t *ctx, struct reader *r, struct ext *e, __u32 off, __u32 next)
{
	const __u8 *h;
	__u8 nh, b1, b2, b3;
	__u32 hlen;
#ifdef VRSS_FLOWS
	/* Past a first fragment's header the walk goes on for rules only
	 * (rss.fragmentRest): the hash is settled, so a chain that ends
	 * badly leaves the protocol unknown instead of failing. */
	__u32 after = 0;
#define WALK_FAIL() do { if (after) { e->has_proto = 0; return 0; } return -1; } while (0)
#else
#define WALK_FAIL() return -1
#endif

	if (!ctx || !r || !e)
		return -1;
	for (int n = 0; n <= VRSS_MAX_EXT; n++) {
		off = untrack(r, off);
		if (!ext_header(next)) {
#ifdef VRSS_FLOWS
			if (e->want) {
				e->proto = next;
				e->has_proto = 1;
			}
#endif
			/* rss.transport */
			if (next == VRSS_IPPROTO_TCP)
				h = get_ext(ctx, r, off, VRSS_TCP_MIN_HLEN);
			else if (next == VRSS_IPPROTO_UDP)
				h = get_ext(ctx, r, off, VRSS_UDP_HLEN);
			else
				return 0;
#ifdef VRSS_FLOWS
			if (!h)
				return after ? 0 : -1;
			if (e->want) {
				e->kl4 = next;
				__builtin_memcpy(e->kports, h, VRSS_PORTS_LEN);
				if (next == VRSS_IPPROTO_TCP)
					e->tcpflags = h[VRSS_TCP_FLAGS_OFF];
			}
			if (after)
				return 0;
#else
			if (!h)
				return -1;
#endif
			e->l4 = next;
			__builtin_memcpy(e->ports, h, VRSS_PORTS_LEN);
			return 0;
		}
		h = get_ext(ctx, r, off, VRSS_IPV6_EXT_MIN_HLEN);
		if (!h)
			WALK_FAIL();
		nh = h[0];
		b1 = h[1];
		b2 = h[2];
		b3 = h[3];
		if (next == VRSS_IPPROTO_AH) /* length in 4-byte units, less 2 */
			hlen = ((__u32)b1 + 2) * 4;
		else if (next == VRSS_IPPROTO_FRAGMENT)
			hlen = VRSS_IPV6_FRAG_HLEN;
		else
			hlen = ((__u32)b1 + 1) * 8;
		if (n == VRSS_MAX_EXT)
			WALK_FAIL(); /* chain longer than the bound */
		if (hlen > VRSS_IPV6_EXT_MIN_HLEN && !get_ext(ctx, r, off + hlen - 1, 1))
			WALK_FAIL(); /* header cut short */
#ifdef VRSS_FLOWS
		if (after) {
			next = nh;
			off += hlen;
			continue;
		}
#endif
		if (next == VRSS_IPPROTO_ROUTING) {
			/* Type 2 routing header, one segment left: 24 bytes. */
			if (!e->has_rt2 && b2 == VRSS_IPV6_RT2_TYPE && b3 == 1 && b1 == VRSS_IPV6_RT2_EXTLEN) {
				h = get_ext(ctx, r, off + VRSS_IPV6_RT2_ADDR_OFF, VRSS_IPV6_ADDR_LEN);
				if (!h)
					return -1;
				__builtin_memcpy(e->rt2, h, VRSS_IPV6_ADDR_LEN);
				e->has_rt2 = 1;
			}
		} else if (next == VRSS_IPPROTO_DSTOPTS) {
			if (!e->has_home)
				home_address(ctx, r, e, off, off + hlen);
		} else if (next == VRSS_IPPROTO_FRAGMENT) {
			if (((b2 << 8) | b3) & VRSS_IPV6_FRAG_MASK) {
				/* Offset or more-fragments: a fragment. An atomic
				 * fragment (both zero) is walked through. */
#ifdef VRSS_FLOWS
				if (!e->want)
					return 0;
				e->frag = 1;
				e->proto = nh;
				e->has_proto = 1;
				if (((b2 << 8) | b3) & VRSS_IPV6_OFFSET_MASK)
					return 0;
				after = 1;
#else
				return 0;
#endif
			}
		}
		next = nh;
		off += hlen;
	}
	return -1; /* not reached */
#undef WALK_FAIL
}

/* rss.classify6. */
static __always_inline int classify6(ctx_t *ctx, struct reader *r, struct ext *e, struct pkt *p, __u32 off)
{
	const __u8 *h = get(ctx, r, off, VRSS_IPV6_HLEN, r->ip);
	__u8 next;

	if (!h || h[0] >> 4 != 6)
		return -1;
	p->src = h + VRSS_IPV6_SRC_OFF;
	p->dst = h + VRSS_IPV6_DST_OFF;
	next = h[VRSS_IPV6_NEXT_OFF];
	if (!ext_header(next)) {
#ifdef VRSS_FLOWS
		if (p->f) {
			p->f->proto = next;
			p->f->has_proto = 1;
		}
#endif
		return transport(ctx, r, p, next, off + VRSS_IPV6_HLEN);
	}
	/* walk_ext sets only what it finds. */
	e->l4 = 0;
	e->has_home = 0;
	e->has_rt2 = 0;
#ifdef VRSS_FLOWS
	e->has_proto = 0;
	e->frag = 0;
	e->kl4 = 0;
#endif
	if (walk_ext(ctx, r, e, off + VRSS_IPV6_HLEN, next))
		return -1;
	/* A walk that succeeds has passed at least one header. */
	p->ext = 1;
	p->l4 = e->l4;
	p->ports = e->ports;
#ifdef VRSS_FLOWS
	if (p->f) {
		p->f->proto = e->proto;
		p->f->has_proto = e->has_proto;
		p->f->frag = e->frag;
		p->f->kl4 = e->kl4;
		p->kports = e->kports;
		p->f->tcpflags = e->tcpflags;
	}
#endif
	return 0;
}

#endif
