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
