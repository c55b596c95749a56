/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The Toeplitz hash over the addresses and ports where they lie, from the
 * slot's per-position tables (rss.Toeplitz); or, built with
 * VRSS_BITSERIAL, bit by bit from the key (the benchmark's baseline).
 */
#ifndef VRSS_TOEPLITZ_H
#define VRSS_TOEPLITZ_H

#include "vrss.h"

#ifdef VRSS_BITSERIAL
/*
 * The baseline the table-driven hash is measured against: a model of the
 * bit-serial steering programs in use today, QEMU's tun RSS program
 * (tools/ebpf/rss.bpf.c). Like it, the hash input is assembled in a
 * zero-filled VRSS_MAX_INPUT (36) byte buffer, and the whole buffer is
 * walked whatever the input's length: 36 bytes x 8 bits, each input bit
 * XORing the 32-bit key window into the hash if it is set, and the window
 * shifting one key bit in after every bit. The window starts as the key's
 * first 32 bits and takes its bits from key byte 4 + i while walking input
 * byte i, as QEMU's leftmost_32_bits and next_byte[] do. Zero padding adds
 * nothing to a Toeplitz hash, so the result is the engine's.
 *
 * clang compiles the loop as it compiles QEMU's (compare its committed
 * object, ebpf/rss.bpf.skeleton.h): the byte loop stays a loop, the 8 bits
 * are unrolled, and each conditional XOR becomes a mask (the bit shifted to
 * the sign, an arithmetic shift right, AND, XOR) rather than a branch.
 *
 * One difference: QEMU's loop is inlined, this one is a global function.
 * Inlined, the verifier checks the 36 iterations once per classification
 * path, hash type and retry — about 900,000 instructions, next to the
 * limit of 1,000,000 — where a global function is checked once. The call
 * makes the baseline 8 to 11 ns slower per frame than the inlined loop
 * (about 4% of its cost, measured with both builds interleaved), which
 * lowers vrss's advantage over it by that much; production has no such
 * call. Only the benchmark builds this variant.
 *
 * And a second call: the input buffer is assembled in a function of its
 * own (toeplitz_input), so that it takes stack in its own frame. In the
 * program's frame it would take the program past 512 bytes of stack with
 * walk_ext's on kernels that round each frame up to 32 bytes (6.1 does),
 * which then refuse it. It costs the baseline a few ns more.
 */
struct hash_input {
	__u8 b[VRSS_MAX_INPUT];
};

__attribute__((noinline)) __u32 toeplitz_bits(const struct hash_input *input, const struct vrss_slot *s)
{
	__u32 hash = 0, window;

	if (!input || !s)
		return 0;
	window = ((__u32)s->key[0] << 24) | ((__u32)s->key[1] << 16) | ((__u32)s->key[2] << 8) | s->key[3];
	for (int i = 0; i < VRSS_MAX_INPUT; i++) {
		__u8 in = input->b[i];
		__u8 key = s->key[4 + i];

		for (int bit = 0; bit < 8; bit++) {
			if (in & 0x80)
				hash ^= window;
			window = (window << 1) | (key >> 7);
			in <<= 1;
			key <<= 1;
		}
	}
	return hash;
}

#define INPUT_PORTS 1
#define INPUT_V6 2

static __attribute__((noinline)) __u32 toeplitz_input(const struct vrss_slot *s, const __u8 *src, const __u8 *dst, const __u8 *pp, int flags)
{
	struct hash_input input = {};
	int ports = flags & INPUT_PORTS;

	if (flags & INPUT_V6) {
		__builtin_memcpy(input.b, src, 16);
		__builtin_memcpy(input.b + 16, dst, 16);
		if (ports)
			__builtin_memcpy(input.b + 32, pp, 4);
	} else {
		__builtin_memcpy(input.b, src, 4);
		__builtin_memcpy(input.b + 4, dst, 4);
		if (ports)
			__builtin_memcpy(input.b + 8, pp, 4);
	}
	return toeplitz_bits(&input, s);
}

static __always_inline __u32 toeplitz(const struct vrss_slot *s, const __u8 *src, const __u8 *dst, int ports, const __u8 *pp, int v6)
{
	return toeplitz_input(s, src, dst, pp, (ports ? INPUT_PORTS : 0) | (v6 ? INPUT_V6 : 0));
}
#else
/*
 * rss.Toeplitz: one table lookup and XOR per input byte, read where it lies
 * (in the first read of the frame, or a piece). The hash is linear and
 * position-wise, so each segment is hashed at its own input position,
 * without assembling an input buffer: 12 lookups for IPv4 with ports, 36
 * for IPv6, which is what an IPv6 frame costs more than an IPv4 one.
 *
 * TZ is one lookup, h ^= s->toeplitz[pos][b[i]], in five instructions: a
 * byte load, a shift, an add, a load at a constant offset, an XOR (BPF has
 * no scaled-index load; this is the least it takes). It is written in
 * assembly because clang, left to itself, hoists all 36 byte loads of an
 * IPv6 input to the top and spills them (past the stack limit), copies the
 * table's base for each lookup, and chains every XOR into one; this way
 * each lookup uses one scratch register and alternate lookups go to two
 * accumulators, which the CPU overlaps. tab is s->toeplitz[0], or
 * s->toeplitz[32] for the last four positions, whose offsets from the
 * first would not fit an instruction's 16 bits.
 */
#define TZ(h, tab, b, i, pos)                                     \
	asm volatile("%[t] = *(u8 *)(%[bp] + %[bi])\n\t"          \
		     "%[t] <<= 2\n\t"                             \
		     "%[t] += %[tp]\n\t"                          \
		     "%[t] = *(u32 *)(%[t] + %[off])\n\t"         \
		     "%[hv] ^= %[t]"                              \
		     : [hv] "+r"(h), [t] "=&r"(t)                 \
		     : [bp] "r"(b), [bi] "i"(i), [tp] "r"(tab), [off] "i"((pos) * 1024))

/* Input bytes [pos, pos + 4) from b[0, 4). */
#define TZ4(tab, b, pos)                      \
	do {                                  \
		TZ(h0, tab, b, 0, (pos));     \
		TZ(h1, tab, b, 1, (pos) + 1); \
		TZ(h0, tab, b, 2, (pos) + 2); \
		TZ(h1, tab, b, 3, (pos) + 3); \
	} while (0)

#define TZ16(tab, b, pos)                       \
	do {                                    \
		TZ4(tab, b, (pos));             \
		TZ4(tab, (b) + 4, (pos) + 4);   \
		TZ4(tab, (b) + 8, (pos) + 8);   \
		TZ4(tab, (b) + 12, (pos) + 12); \
	} while (0)

static __always_inline __u32 toeplitz(const struct vrss_slot *s, const __u8 *src, const __u8 *dst, int ports, const __u8 *pp, int v6)
{
	const __u8 *tab = (const __u8 *)s->toeplitz[0];
	__u64 h0 = 0, h1 = 0, t;

	if (v6) {
		TZ16(tab, src, 0);
		TZ16(tab, dst, 16);
		if (ports) {
			tab = (const __u8 *)s->toeplitz[32];
			TZ4(tab, pp, 0);
		}
	} else {
		TZ4(tab, src, 0);
		TZ4(tab, dst, 4);
		if (ports)
			TZ4(tab, pp, 8);
	}
	return h0 ^ h1;
}
#endif

#endif
