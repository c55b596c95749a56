/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The XDP context with word copies: ctx/xdp.h's contract (ctx_t, ctx_len,
 * ctx_load; direct packet access, every byte checked against data_end),
 * but ctx_load moves eight bytes per step and only the tail byte by byte.
 * The reader's first read is up to 127 bytes on every frame: byte by byte
 * that loop was most of a per-frame budget of a few tens of nanoseconds.
 * For programs that run on every frame a guest sends (port.c); xdp_test.c
 * keeps ctx/xdp.h, so the steering objects do not change.
 */
#ifndef VRSS_CTX_XDPWORD_H
#define VRSS_CTX_XDPWORD_H

#ifdef VRSS_CTX
#error "one context per program: ctx/xdpword.h and another context both included"
#endif
#define VRSS_CTX 1

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

typedef struct xdp_md ctx_t;

/* As in ctx/xdp.h: the verifier's bounds for the copy and the offset. */
#define CTX_XDP_MAX_LOAD 128
#define CTX_XDP_MAX_OFF 0x3fff

static __always_inline __u64 ctx_len(const ctx_t *ctx)
{
	return ctx->data_end - ctx->data;
}

/* Copy the frame's bytes [off, off + len) to to; non-zero if any of them
 * is not there (then nothing is copied). to must be 8-byte aligned if it
 * is on the stack and len is 8 or more: the stack takes aligned words
 * only. */
static __always_inline int ctx_load(ctx_t *ctx, __u32 off, void *to, __u32 len)
{
	const __u8 *data = (const __u8 *)(long)ctx->data;
	const __u8 *end = (const __u8 *)(long)ctx->data_end;
	const __u8 *s;
	__u8 *d = to;
	__u32 i = 0;

	if (off > CTX_XDP_MAX_OFF || len > CTX_XDP_MAX_LOAD)
		return -1;
	if ((__u64)off + len > (__u64)(end - data))
		return -1;
	s = data + off;
#pragma clang loop unroll(disable) vectorize(disable)
	for (__u32 w = 0; w < CTX_XDP_MAX_LOAD / 8; w++) {
		if (i + 8 > len)
			break;
		if (s + i + 8 > end)
			return -1;
		*(__u64 *)(d + i) = *(volatile const __u64 *)(s + i);
		i += 8;
	}
#pragma clang loop unroll(disable) vectorize(disable)
	for (__u32 t = 0; t < 8; t++) {
		if (i >= len)
			break;
		if (s + i + 1 > end)
			return -1;
		d[i] = *(volatile const __u8 *)(s + i);
		i++;
	}
	return 0;
}

#endif
