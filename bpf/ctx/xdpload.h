/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The XDP context, loading through the kernel: ctx/xdp.h (ctx_t, ctx_len,
 * the bounds), but ctx_load is bpf_xdp_load_bytes (Linux 5.18), one call
 * that copies like memcpy, where ctx/xdp.h checks and copies byte by byte.
 * The reader's first read is up to 127 bytes on every frame: byte by byte
 * that took about 30 ns, the helper about 10, in a program whose whole
 * budget is a few tens (port.c, on every frame a guest sends). xdp_test.c
 * keeps ctx/xdp.h as it is, so the steering objects do not change.
 */
#ifndef VRSS_CTX_XDPLOAD_H
#define VRSS_CTX_XDPLOAD_H

/* ctx/xdp.h's byte loop under another name, never called. */
#define ctx_load ctx_load_bytewise
#include "xdp.h"
#undef ctx_load

/* Copy the frame's bytes [off, off + len) to to; non-zero if any of them
 * is not there (then nothing is copied). Any offset: the helper checks it
 * against the frame (a generic-XDP GSO frame may be 64 KB long), where
 * ctx/xdp.h must bound it for the verifier. */
static __always_inline int ctx_load(ctx_t *ctx, __u32 off, void *to, __u32 len)
{
	__u64 n = len;

	if (n > CTX_XDP_MAX_LOAD)
		return -1;
	/* Tested apart, on the register the helper gets: clang would fold
	 * both tests into one of n - 1, from which the verifier learns
	 * nothing about n. */
	asm volatile("" : "+r"(n));
	if (n == 0)
		return -1;
	return bpf_xdp_load_bytes(ctx, off, to, n) ? -1 : 0;
}

#endif
