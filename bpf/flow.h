/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Flow rules and RSS contexts (package flow): the frame's key
 * (flow.KeyOf), the rule lookup (flow.Engine.Steer's first match, by
 * hashing per mask pattern), and steering by an RSS context. Only the flow
 * build (VRSS_FLOWS) includes it.
 */
#ifndef VRSS_FLOW_H
#define VRSS_FLOW_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "config.h"
#include "flowmap.h"
#include "pkt.h"
#include "proto.h"

/* flow.Flag*: which fields the frame has. */
#define FKEY_TAGGED (1u << 0)
#define FKEY_IPV4 (1u << 1)
#define FKEY_IPV6 (1u << 2)
#define FKEY_PROTO (1u << 3)
#define FKEY_PORTS (1u << 4)
#define FKEY_FRAGMENT (1u << 5)
#define FKEY_TCP (1u << 6)

/* flow.Key, as 32-bit words loaded little-endian; two words of padding so
 * that a word index masked with 15 stays inside. */
struct fkey {
	__u32 w[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VRSS_NFSTATS);
	__type(key, __u32);
	__type(value, __u64);
} vrss_flow_stats SEC(".maps");

/*
 * The hash input candidates of a frame steered by an RSS context, copied
 * out of the parser's state (whose pointers a global function cannot take)
 * so that steer_ctx_global can choose among them.
 */
struct hin {
	__u8 src[16] __attribute__((aligned(8)));
	__u8 dst[16] __attribute__((aligned(8)));
	__u8 home[16] __attribute__((aligned(8)));
	__u8 rt2[16] __attribute__((aligned(8)));
	__u8 ports[4];
	__u8 family;
	__u8 l4;
	__u8 ext;
	__u8 has_home;
	__u8 has_rt2;
};

/* The parser's reader, what the extension-header walk finds, what rules
 * match on, the key and the context input live here: the plain build's
 * stack is nearly full, and the flow build adds global functions' frames
 * to it. */
struct scratch {
	struct fkey key;
	struct hin in;
	struct ext e;
	struct pflow f;
	struct reader rd;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} vrss_scratch SEC(".maps");

static __always_inline void flow_count(__u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(&vrss_flow_stats, &idx);

	if (c)
		*c += 1;
}

/*
 * Copies on the rule path, a word at a time. Everything they read lies in
 * the scratch map (the reader, the walk's findings, the rule fields), where
 * the verifier allows misaligned loads; clang, which cannot know the
 * alignment, would otherwise copy byte by byte (a load and a store per
 * byte: a 16-byte address cost 32 instructions).
 */
static __always_inline __u64 load64(const void *s)
{
	__u64 v;

	asm volatile("%0 = *(u64 *)(%1 + 0)" : "=r"(v) : "r"(s));
	return v;
}

static __always_inline __u32 load32(const void *s)
{
	__u32 v;

	asm volatile("%0 = *(u32 *)(%1 + 0)" : "=r"(v) : "r"(s));
	return v;
}

static __always_inline void copy16(__u64 *d, const __u8 *s)
{
	d[0] = load64(s);
	d[1] = load64(s + 8);
}

/* flow.KeyOf, from what classify found. */
static __always_inline void build_key(const struct pkt *p, struct fkey *k)
{
	__u8 *b = (__u8 *)k->w;
	__u64 *q = (__u64 *)k->w;
	__u8 flags = 0;

	q[2] = q[3] = q[4] = q[5] = q[6] = q[7] = 0;
	q[0] = load64(p->f->mac);
	k->w[2] = load32(p->f->mac + 8);
	k->w[3] = 0;
	b[12] = p->f->etype >> 8;
	b[13] = p->f->etype;
	if (p->f->tagged) {
		flags |= FKEY_TAGGED;
		b[16] = p->f->tci >> 8;
		b[17] = p->f->tci;
	}
	if (p->family) {
		if (p->family == 6) {
			flags |= FKEY_IPV6;
			k->w[5] = load32(p->src);
			k->w[6] = load32(p->src + 4);
			k->w[7] = load32(p->src + 8);
			k->w[8] = load32(p->src + 12);
			k->w[9] = load32(p->dst);
			k->w[10] = load32(p->dst + 4);
			k->w[11] = load32(p->dst + 8);
			k->w[12] = load32(p->dst + 12);
		} else {
			flags |= FKEY_IPV4;
			k->w[5] = load32(p->src);
			k->w[9] = load32(p->dst);
		}
		if (p->f->has_proto) {
			flags |= FKEY_PROTO;
			b[15] = p->f->proto;
		}
		if (p->f->frag)
			flags |= FKEY_FRAGMENT;
		if (p->f->kl4) {
			flags |= FKEY_PORTS;
			k->w[13] = load32(p->kports);
			if (p->f->kl4 == VRSS_IPPROTO_TCP) {
				flags |= FKEY_TCP;
				b[18] = p->f->tcpflags;
			}
		}
	}
	b[14] = flags;
}

/* The index hash (steering.flowHash): the pattern's masked key words. */
static __always_inline __u32 fmix(__u32 h, __u32 v)
{
	h ^= v;
	h *= 0x9e3779b1;
	return h ^ (h >> 16);
}

/*
 * Whether the record at heap offset o holds key k under pattern p: its key
 * words are k's masked words. A global function, like the two below, so
 * that the verifier checks each loop once instead of once per way of
 * reaching it (it tracks every word index exactly, and the search below
 * would otherwise multiply them).
 */
__attribute__((noinline)) int flow_cmp(const struct vrss_flows *f, const struct fkey *k, __u32 p, __u32 o)
{
	const struct vrss_pattern *pat;
	__u32 nw;

	if (!f || !k || o > VRSS_HEAP_WORDS - VRSS_REC_META - VRSS_KEY_WORDS)
		return 0;
	pat = &f->pattern[p & (VRSS_MAX_PATTERNS - 1)];
	nw = pat->nwords;
	for (__u32 j = 0; j < VRSS_KEY_WORDS; j++) {
		__u32 w;

		if (j >= nw)
			return 1;
		w = pat->words[j] & 15;
		if (f->heap[o + VRSS_REC_META + j] != (k->w[w] & pat->mask[w]))
			return 0;
	}
	return 1;
}

/*
 * One pattern's lookup: hash k's words under pattern p's mask
 * (steering.flowHash) and probe the index from there. The publisher stores
 * only the best rule per pattern and masked key, within VRSS_MAX_PROBE
 * entries of its hash, so the first record that matches is the answer.
 * Returns 1 + its heap offset, or 0.
 *
 * A pattern of at most four key words (IPv4 5-tuples, ports, prefixes,
 * MACs: most) is hashed and compared without a loop over its words, so
 * without a branch per word: its words past nwords are 0 in cmask, hash as
 * 0 (steering.flowHash pads to four) and drop out of the comparison
 * (record and key words are both masked already, so XOR-ing them under
 * cmask compares them exactly). Longer patterns loop, and flow_cmp
 * compares; with short_only (the quick path, whose stack has no room for
 * flow_cmp's frame) a longer pattern is not looked up: -1.
 */
static __always_inline int probe(const struct vrss_flows *f, const struct fkey *k, __u32 p, int short_only)
{
	const struct vrss_pattern *pat = &f->pattern[p & (VRSS_MAX_PATTERNS - 1)];
	__u32 nw = pat->nwords, h, v0, v1, v2, v3;

	if (short_only && nw > 4)
		return -1;
	v0 = k->w[pat->words[0] & 15] & pat->cmask[0];
	v1 = k->w[pat->words[1] & 15] & pat->cmask[1];
	v2 = k->w[pat->words[2] & 15] & pat->cmask[2];
	v3 = k->w[pat->words[3] & 15] & pat->cmask[3];
	h = f->seed ^ ((p + 1) * 0x85ebca77);
	if (short_only || nw <= 4) {
		h = fmix(fmix(fmix(fmix(h, v0), v1), v2), v3);
	} else {
		for (__u32 j = 0; j < VRSS_KEY_WORDS; j++) {
			__u32 w;

			if (j >= nw)
				break;
			w = pat->words[j] & 15;
			h = fmix(h, k->w[w] & pat->mask[w]);
		}
	}
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	for (__u32 i = 0; i < VRSS_MAX_PROBE; i++) {
		__u32 e = f->index[(h + i) & (VRSS_INDEX_LEN - 1)];
		__u32 o;

		if (!e)
			return 0;
		o = (e - 1) * 2;
		if (o > VRSS_HEAP_WORDS - VRSS_REC_META - VRSS_KEY_WORDS)
			return 0;
		/* Keep clang from rederiving o from e past the check. */
		asm volatile("" : "+r"(o));
		if (((f->heap[o] >> 20) & 15) != p)
			continue;
		/* The masks are loaded again, not kept: four fewer live
		 * values keep flow_match_short's frame small enough for the
		 * quick path's stack. */
		if (short_only || nw <= 4 ? !(((f->heap[o + 3] ^ v0) & READ_ONCE_U32(pat->cmask[0])) | ((f->heap[o + 4] ^ v1) & READ_ONCE_U32(pat->cmask[1])) |
					      ((f->heap[o + 5] ^ v2) & READ_ONCE_U32(pat->cmask[2])) | ((f->heap[o + 6] ^ v3) & READ_ONCE_U32(pat->cmask[3])))
					  : flow_cmp(f, k, p, o))
			return o + 1;
	}
	return 0;
}

__attribute__((noinline)) int flow_probe(const struct vrss_flows *f, const struct fkey *k, __u32 p)
{
	if (!f || !k)
		return 0;
	return probe(f, k, p, 0);
}

/*
 * flow.Engine.Steer's rule search: the best-ranked (first in flow.Order)
 * rule whose match the key satisfies, one hash lookup per pattern.
 * Patterns come sorted by their best rank, so the search stops at the
 * first that cannot beat what it has. Returns 1 + the record's heap
 * offset, or 0; with short_only, -1 if it would have to look up a pattern
 * of more than four words (see probe).
 */
static __always_inline int match(const struct vrss_flows *f, const struct fkey *k, int short_only)
{
	__u32 best = 0, best_rank = 0x10000, np = f->npatterns;

	for (__u32 p = 0; p < VRSS_MAX_PATTERNS; p++) {
		__u32 rank;
		int rec;

		if (p >= np || f->pattern[p].min_rank >= best_rank)
			break;
		rec = short_only ? probe(f, k, p, 1) : flow_probe(f, k, p);
		if (rec < 0)
			return -1;
		if (!rec || rec > VRSS_HEAP_WORDS)
			continue;
		rank = f->heap[rec - 1] & 0xffff;
		if (rank < best_rank) {
			best_rank = rank;
			best = rec;
		}
	}
	return best;
}

__attribute__((noinline)) int flow_match(const struct vrss_flows *f, const struct fkey *k)
{
	if (!f || !k)
		return 0;
	return match(f, k, 0);
}

/* The quick path's search: flow_match for sets whose patterns the frame
 * needs are all of at most four words, in one frame with no calls below
 * it; -1 otherwise. */
__attribute__((noinline)) int flow_match_short(const struct vrss_flows *f, const struct fkey *k)
{
	if (!f || !k)
		return 0;
	return match(f, k, 1);
}

/* Input bytes [pos, pos + n) from b, through the nibble tables. A loop,
 * not unrolled: unrolled, clang hoists every load and spills them past
 * the stack limit. */
static __always_inline __u32 nib_segment(const struct vrss_context *c, const __u8 *b, __u32 n, __u32 pos, __u32 h)
{
#pragma clang loop unroll(disable)
	for (__u32 i = 0; i < 16; i++) {
		__u32 q = 2 * (pos + i);
		__u8 v;

		if (i >= n || q + 1 >= VRSS_NIBBLES)
			break;
		v = b[i];
		h ^= c->nibble[q][v >> 4];
		h ^= c->nibble[q + 1][v & 15];
	}
	return h;
}

/* The parser's view of a copied input, for select_report and the hash:
 * only the fields they read (zeroing the whole of both structs would cost
 * more than the rest). */
static __always_inline void from_hin(const struct hin *in, struct pkt *p, struct ext *e)
{
	p->src = in->src;
	p->dst = in->dst;
	p->ports = in->ports;
	p->family = in->family;
	p->l4 = in->l4;
	p->ext = in->ext;
	e->has_home = in->has_home;
	e->has_rt2 = in->has_rt2;
	if (in->ext) {
		__builtin_memcpy(e->home, in->home, 16);
		__builtin_memcpy(e->rt2, in->rt2, 16);
	}
}

/* rss.Toeplitz from a context's nibble tables: the addresses and, if
 * ports, the ports. */
static __always_inline __u32 toeplitz_ctx(const struct vrss_context *c, const __u8 *src, const __u8 *dst, int ports, const __u8 *pp, int v6)
{
	__u32 alen = v6 ? 16 : 4, h;

	h = nib_segment(c, src, alen, 0, 0);
	h = nib_segment(c, dst, alen, alen, h);
	if (ports)
		h = nib_segment(c, pp, 4, 2 * alen, h);
	return h;
}

/*
 * rss.Engine.Steer under an RSS context, from the copied input. A global
 * function: the report selection and the hash are checked once, not once
 * per way through the parser (which would take the program past the
 * verifier's limit).
 */
__attribute__((noinline)) int steer_ctx_global(const struct vrss_context *c, const struct hin *in, struct result *r)
{
	const __u8 *src, *dst;
	struct pkt p;
	struct ext e;
	int ports;

	if (!c || !in || !r)
		return 0;
	from_hin(in, &p, &e);
	r->hash = 0;
	/* A context begins as a slot does (flowmap.h), and select_report
	 * reads only hash_types. */
	r->report = select_report((const struct vrss_slot *)c, &p, &e, &src, &dst, &ports);
	if (r->report == REPORT_NONE) {
		r->queue = c->unclassified_queue;
		return 0;
	}
	r->hash = toeplitz_ctx(c, src, dst, ports, p.ports, p.family == 6);
	r->queue = c->table[r->hash & c->table_mask & (VRSS_CTX_TABLE - 1)];
	return 0;
}

/*
 * rss.Engine.Steer by a slot's default configuration, from the copied
 * input: the rule path's counterpart of steer(), a global function for the
 * same reason as steer_ctx_global.
 */
__attribute__((noinline)) int steer_slot_global(const struct vrss_slot *s, const struct hin *in, struct result *r)
{
	struct pkt p;
	struct ext e;

	if (!s || !in || !r)
		return 0;
	from_hin(in, &p, &e);
	steer(s, &p, &e, r);
	return 0;
}

/* Copy what steer_ctx_global may hash. The IPv4 addresses' pointers have
 * 16 readable bytes behind them wherever the parser leaves them (the
 * reader's buffer or its pieces). */
static __always_inline void fill_hin(struct hin *in, const struct pkt *p, const struct ext *e)
{
	copy16((__u64 *)in->src, p->src);
	copy16((__u64 *)in->dst, p->dst);
	*(__u32 *)in->ports = load32(p->ports);
	in->family = p->family;
	in->l4 = p->l4;
	in->ext = p->ext;
	in->has_home = in->has_rt2 = 0;
	if (p->ext) {
		in->has_home = e->has_home;
		in->has_rt2 = e->has_rt2;
		copy16((__u64 *)in->home, e->home);
		copy16((__u64 *)in->rt2, e->rt2);
	}
}

#endif
