/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * How the parser reads a frame: one load copies its start (reader_init),
 * and headers are taken from that copy (get). Loads go through the
 * context's ctx_load (ctx/skb.h: a helper call; ctx/xdp.h: direct access).
 * Shared by every program and the benchmark's read floor (floor.c), which
 * makes the same first read and nothing else.
 */
#ifndef VRSS_READER_H
#define VRSS_READER_H

#include "ctx.h"

/*
 * The frame as the parser sees it. buf[0, avail) holds the frame's first
 * avail bytes, copied by one helper call (reader_init). A header that is
 * not all inside them is read on its own into one of two pieces: ip, for
 * the IP header (the longest piece the parser asks for at once, the
 * 40-byte fixed IPv6 header), and l4, for what follows it. The parser
 * keeps pointers to the addresses and ports it hashes, not copies, so each
 * stays valid until the frame is steered: the IP header's piece is never
 * reused once it holds the addresses.
 *
 * READER_PREFIX is a power of two so that masking an in-prefix offset with
 * READER_PREFIX - 1, a no-op at run time, shows the verifier that every
 * access stays in the reader.
 */
#define READER_PREFIX 128
#define READER_IP 40
#define READER_L4 24

struct reader {
	__u32 avail;
	__u32 index; /* see get_ext */
	__u8 buf[READER_PREFIX];
	__u8 ip[READER_IP];
	__u8 l4[READER_L4];
};

/*
 * How much the first read takes: the whole frame if it is shorter than
 * READER_PREFIX bytes, else its first READER_PREFIX - 1, which hold every
 * common header stack (two VLAN tags, IPv6 and a TCP header with 40 bytes of
 * options: 22 + 40 + 60 = 122 bytes). The kernel copies fewer than 128
 * bytes markedly faster than 128 or more (25 against 33 ns per call where
 * this was measured), and frames that long are nearly all full-size TCP or
 * UDP segments, whose headers fit the shorter read.
 *
 * skb->len (ctx/skb.h) counts from skb->data: in tun that is the Ethernet
 * header, so the read is the whole frame (or its start); under
 * BPF_PROG_TEST_RUN skb->data is the network header and the read misses
 * the frame's last 14 bytes, which the parser then reads header by header.
 * An XDP frame (ctx/xdp.h) starts at the Ethernet header. Either way every byte read
 * is in the frame, unless the skb is nonlinear (the helper reads only the
 * linear part): then shorter reads that still cover the usual headers are
 * tried — 54 bytes is Ethernet, IPv4 and TCP, or Ethernet and IPv6 — and
 * 34, the least any classifiable frame has (Ethernet and IPv4).
 */
#define READER_FIRST (READER_PREFIX - 1)

static __always_inline void reader_init(ctx_t *ctx, struct reader *r)
{
	__u64 n = ctx_len(ctx);

	r->avail = 0;
	if (n > READER_FIRST)
		n = READER_FIRST;
	/* Tested as a signed number, which clang cannot turn into n != 0 (it
	 * no longer knows n's range): the verifier of Linux 6.1 (Debian 12's)
	 * learns no lower bound from n != 0, and refused the program for a
	 * read of maybe 0 bytes; later ones do. */
	asm volatile("" : "+r"(n));
	if ((__s64)n > 0 && ctx_load(ctx, 0, r->buf, n) == 0)
		r->avail = n;
	else if (n > 54 && ctx_load(ctx, 0, r->buf, 54) == 0)
		r->avail = 54;
	else if (n > 34 && ctx_load(ctx, 0, r->buf, 34) == 0)
		r->avail = 34;
}

/*
 * get returns the frame's bytes [off, off + len), or NULL if the frame ends
 * before off + len (the engine's len(b) check): from the first read if they
 * are in it, else read into piece, which must hold len bytes. A pointer
 * into a piece is valid until the piece's next read.
 */
static __always_inline const __u8 *get(ctx_t *ctx, struct reader *r, __u32 off, const __u32 len, __u8 *piece)
{
	if (off + len <= r->avail)
		return r->buf + (off & (READER_PREFIX - 1));
	if (ctx_load(ctx, off, piece, len))
		return 0;
	return piece;
}

#endif
