/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * What classification hands to the hash (struct pkt), what the IPv6
 * extension-header walk finds (struct ext), and the two accessors the walk
 * reads the frame through.
 */
#ifndef VRSS_PKT_H
#define VRSS_PKT_H

#include "ctx.h"
#include "reader.h"

#ifdef VRSS_FLOWS
/* What flow rules match on besides struct pkt's fields (rss.Headers). It
 * lives in a per-CPU map (flow.h's scratch): the stack is nearly full. */
struct pflow {
	__u16 etype;        /* EtherType after the VLAN tags */
	__u16 tci;          /* outer VLAN tag, if tagged */
	__u8 tagged;
	__u8 proto;         /* IPv4 protocol, IPv6 last next header */
	__u8 has_proto;
	__u8 frag;          /* any IP fragment */
	__u8 kl4;           /* transport of kports: TCP or UDP, or 0 */
	__u8 tcpflags;      /* if kl4 is TCP */
	__u8 has_eth;       /* the frame has an Ethernet header: mac is valid */
	__u8 mac[12];       /* destination and source addresses */
};
#endif

/*
 * What classification extracts (rss.flow): where the hash input lies, as
 * pointers into the reader (the first read or its pieces), so that nothing
 * is copied on the common path. Independent of the configuration.
 */
struct pkt {
	const __u8 *src;   /* source address: 4 or 16 bytes */
	const __u8 *dst;   /* destination address */
	const __u8 *ports; /* source and destination ports, if l4 */
	__u8 family;       /* 0 (unclassified), 4 or 6 */
	__u8 l4;           /* VRSS_IPPROTO_TCP, VRSS_IPPROTO_UDP or 0 */
	__u8 ext;          /* IPv6 with extension headers: see struct ext */
#ifdef VRSS_FLOWS
	const __u8 *kports; /* ports for rules (first fragments too), if f->kl4 */
	struct pflow *f;    /* the rest of what rules match on, off the stack;
			     * NULL when no rule can look (the lean path) */
#endif
};

/*
 * What the extension-header walk (walk_ext) found. A global function cannot
 * hand back pointers (the verifier sees what it writes as plain bytes), so
 * it copies the little it finds into here.
 */
struct ext {
	__u8 l4;
	__u8 has_home;
	__u8 has_rt2;
	__u8 ports[4];
	__u8 home[16];
	__u8 rt2[16];
#ifdef VRSS_FLOWS
	/* For flow rules, when want is set (the flow build's rule path). */
	__u8 want;
	__u8 proto;     /* last next header, if has_proto */
	__u8 has_proto;
	__u8 frag;      /* a fragment header with offset or M set */
	__u8 kl4;       /* transport of kports (also past a first fragment) */
	__u8 tcpflags;
	__u8 kports[4];
#endif
};

/*
 * untrack and get_ext serve walk_ext, where r is a global function's
 * argument: the verifier does not track what *r holds, so a value stored in
 * r->index and read back is, for it, any value. walk_ext passes its offsets
 * through r->index, at the top of each loop iteration (untrack) and on
 * their way to indexing buf (get_ext). Otherwise the verifier, which tracks
 * exactly every value that becomes part of a pointer, would tell apart the
 * state of every chain of header and option lengths, far too many to
 * check; the mask keeps the index in buf, which is all it needs to know.
 * At run time each is a store and a load. Pieces past the first read go
 * to r->l4: the walk never touches r->ip, which holds the addresses.
 */
static __always_inline __u32 untrack(struct reader *r, __u32 x)
{
	*(volatile __u32 *)&r->index = x;
	return *(volatile __u32 *)&r->index;
}

static __always_inline const __u8 *get_ext(ctx_t *ctx, struct reader *r, __u32 off, __u32 len)
{
	if (off + len <= r->avail) {
		*(volatile __u32 *)&r->index = off;
		return r->buf + (*(volatile __u32 *)&r->index & (READER_PREFIX - 1));
	}
	if (ctx_load(ctx, off, r->l4, len))
		return 0;
	return r->l4;
}

#endif
