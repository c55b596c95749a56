/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The socket-buffer context (socket filters such as the steering program,
 * tc programs): a program includes this, or ctx/xdp.h, before any other
 * vrss header. It defines ctx_t, ctx_len and ctx_load, the only things the
 * parser needs from the context.
 *
 * ctx_load reads with bpf_skb_load_bytes_relative(..., BPF_HDR_START_MAC),
 * so offsets count from the Ethernet header both inside tun (where skb data
 * starts there) and under BPF_PROG_TEST_RUN (where it starts at the network
 * header). It reads only the linear part of a nonlinear skb: a header past
 * it is, for the parser, not in the frame.
 */
#ifndef VRSS_CTX_SKB_H
#define VRSS_CTX_SKB_H

#ifdef VRSS_CTX
#error "one context per program: ctx/skb.h and ctx/xdp.h both included"
#endif
#define VRSS_CTX 1

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

typedef struct __sk_buff ctx_t;

/* Bytes from the Ethernet header on: under BPF_PROG_TEST_RUN skb->len
 * counts from the network header (see reader_init). */
static __always_inline __u64 ctx_len(const ctx_t *ctx)
{
	return ctx->len;
}

/* Copy the frame's bytes [off, off + len) to to; non-zero if any of them
 * is not there. */
static __always_inline int ctx_load(ctx_t *ctx, __u32 off, void *to, __u32 len)
{
	return bpf_skb_load_bytes_relative(ctx, off, to, len, BPF_HDR_START_MAC);
}

#endif
