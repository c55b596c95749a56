/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The XDP context (struct xdp_md): a program includes this, or ctx/skb.h,
 * before any other vrss header. It defines ctx_t, ctx_len and ctx_load.
 *
 * ctx_load copies from the packet by direct access, every byte checked
 * against data_end as the verifier requires, so it needs no helper (and no
 * kernel newer than the rest of the program). Only the linear part of a
 * multi-buffer frame is seen, as for a nonlinear skb.
 */
#ifndef VRSS_CTX_XDP_H
#define VRSS_CTX_XDP_H

#ifdef VRSS_CTX
#error "one context per program: ctx/skb.h and ctx/xdp.h both included"
#endif
#define VRSS_CTX 1

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

typedef struct xdp_md ctx_t;

/* The most ctx_load copies at once (the reader's first read), and the
 * furthest offset it reads from: bounds the verifier needs for the copy
 * loop and the packet pointer. An XDP frame's linear part is at most a
 * page, so no frame is cut short by them. */
#define CTX_XDP_MAX_LOAD 128
#define CTX_XDP_MAX_OFF 0x3fff

static __always_inline __u64 ctx_len(const ctx_t *ctx)
{
	return ctx->data_end - ctx->data;
}

/* Copy the frame's bytes [off, off + len) to to; non-zero if any of them
 * is not there (then nothing is copied). */
static __always_inline int ctx_load(ctx_t *ctx, __u32 off, void *to, __u32 len)
{
	const __u8 *data = (const __u8 *)(long)ctx->data;
	const __u8 *end = (const __u8 *)(long)ctx->data_end;
	__u8 *d = to;

	if (off > CTX_XDP_MAX_OFF || len > CTX_XDP_MAX_LOAD)
		return -1;
	if ((__u64)off + len > (__u64)(end - data))
		return -1;
#pragma clang loop unroll(disable) vectorize(disable)
	for (__u32 i = 0; i < CTX_XDP_MAX_LOAD; i++) {
		const __u8 *p;

		if (i >= len)
			break;
		p = data + off + i;
		if (p + 1 > end)
			return -1;
		d[i] = *(volatile const __u8 *)p;
	}
	return 0;
}

#endif
