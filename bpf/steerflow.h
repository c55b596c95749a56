/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The flow build's program bodies (flow.Engine.Steer): the steering
 * program's, which picks the queue, and the filter's, which drops what a
 * drop rule matches. tun's queue selection can only pick a queue, so
 * dropping takes a second hook: the filter runs at the TAP's tc egress
 * (tcx), which __dev_queue_xmit runs before it asks tun for the queue.
 * Both read the same slot under the same seqlock as vrss_run (steer.h).
 */
#ifndef VRSS_STEERFLOW_H
#define VRSS_STEERFLOW_H

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include "ctx.h"
#include "eth.h"
#include "config.h"
#include "counters.h"
#include "flow.h"
#include "pkt.h"
#include "reader.h"
#include "vrss.h"

#ifdef VRSS_DEBUG
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct vrss_flow_debug);
} vrss_flow_debug SEC(".maps");
#endif

static __always_inline void init_pkt(struct reader *rd, struct pkt *p, struct pflow *f)
{
	/* As in vrss_run: pointers valid (never read) until classify sets
	 * them. */
	p->src = p->dst = p->ports = p->kports = rd->l4;
	p->family = p->l4 = p->ext = 0;
	p->f = f;
	f->etype = f->tci = 0;
	f->tagged = f->proto = f->has_proto = f->frag = f->kl4 = f->tcpflags = f->has_eth = 0;
}

/* What a slot says of one frame. */
struct fverdict {
	struct result r;
	__u32 rule_id;
	__u32 counter;
	__u16 context;
	__u8 has_rule;
	__u8 drop;
	__u8 keyed; /* the frame's key is in the scratch area */
	__u8 filled; /* and its hash input (fill_hin) */
};

/* The verdict lives off the stack too. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fverdict);
} vrss_verdict SEC(".maps");

/* The hash input, copied at most once a frame, and only for a frame that
 * is hashed. */
static __always_inline void hin_once(struct fverdict *v, struct scratch *sc, const struct pkt *p, const struct ext *e)
{
	if (!v->filled) {
		fill_hin(&sc->in, p, e);
		v->filled = 1;
	}
}

/* flow.Engine.Steer by slot idx. */
static __always_inline void steer_flows(struct vrss_flow_config *fc, __u32 idx, const struct pkt *p, const struct ext *e, struct scratch *sc, struct fverdict *v)
{
	const struct vrss_flows *fl = &fc->flows[idx & 1];
	__u32 rec = 0, m0, action, arg;

	v->has_rule = v->drop = 0;
	v->context = 0;
	if (p->f->has_eth && READ_ONCE_U32(fl->npatterns)) {
		/* The set changed to one with rules since the key was
		 * (not) built. */
		if (!v->keyed) {
			build_key(p, &sc->key);
			v->keyed = 1;
		}
		rec = flow_match(fl, &sc->key);
	}
	if (rec && rec <= VRSS_HEAP_WORDS - VRSS_REC_META) {
		rec--;
		asm volatile("" : "+r"(rec)); /* the checked value, not a rederived one */
		m0 = fl->heap[rec];
		v->rule_id = fl->heap[rec + 1];
		v->counter = fl->heap[rec + 2] & 0xffff;
		v->has_rule = 1;
		action = (m0 >> 16) & 15;
		arg = m0 >> 24;
		if (action == VRSS_ACTION_CONTEXT) {
			v->context = arg;
			hin_once(v, sc, p, e);
			steer_ctx_global(&fl->context[(arg - 1) & (VRSS_MAX_CONTEXTS - 1)], &sc->in, &v->r);
			return;
		}
#ifndef VRSS_DEBUG
		if (action == VRSS_ACTION_QUEUE) {
			/* The program returns only the queue: a queue rule's
			 * frame needs the default configuration's report (for
			 * the unclassified count), not its hash, which only the
			 * debug build records. */
			const __u8 *src, *dst;
			int ports;

			v->r.hash = 0;
			v->r.report = select_report(&fc->base.slot[idx & 1], p, e, &src, &dst, &ports);
			v->r.queue = arg;
			return;
		}
#endif
		hin_once(v, sc, p, e);
		steer_slot_global(&fc->base.slot[idx & 1], &sc->in, &v->r);
		if (action == VRSS_ACTION_QUEUE)
			v->r.queue = arg;
		else if (action == VRSS_ACTION_DROP)
			v->drop = 1;
		return;
	}
	hin_once(v, sc, p, e);
	steer_slot_global(&fc->base.slot[idx & 1], &sc->in, &v->r);
}

/* A word of the key (flow.Key's little-endian image) from four bytes
 * anywhere: the lean path's bytes are on the stack, where the verifier
 * refuses misaligned loads. */
static __always_inline __u32 bytes32(const __u8 *b)
{
	return b[0] | (__u32)b[1] << 8 | (__u32)b[2] << 16 | (__u32)b[3] << 24;
}

/*
 * flow.KeyOf for the frames the quick path takes: untagged IPv4 or IPv6
 * (no extension headers) carrying TCP or UDP, not a fragment (classify
 * gives such a frame its ports: a fragment has none). Every field the key
 * has for such a frame comes from the lean parse: the MACs from the first
 * read, the rest from the pointers classify leaves.
 */
static __always_inline void quick_key(const struct reader *rd, const struct pkt *p, struct fkey *k)
{
	__u32 flags = FKEY_PROTO | FKEY_PORTS;
	__u32 i;

	for (i = 0; i < 16; i++)
		k->w[i] = 0;
	k->w[0] = bytes32(rd->buf);
	k->w[1] = bytes32(rd->buf + 4);
	k->w[2] = bytes32(rd->buf + 8);
	if (p->family == 4) {
		flags |= FKEY_IPV4;
		k->w[5] = bytes32(p->src);
		k->w[9] = bytes32(p->dst);
	} else {
		flags |= FKEY_IPV6;
		for (i = 0; i < 4; i++) {
			k->w[5 + i] = bytes32(p->src + 4 * i);
			k->w[9 + i] = bytes32(p->dst + 4 * i);
		}
	}
	if (p->l4 == VRSS_IPPROTO_TCP) {
		flags |= FKEY_TCP;
		k->w[4] = (__u32)p->ports[VRSS_TCP_FLAGS_OFF] << 16;
	}
	/* EtherType (network order), flags, protocol. */
	k->w[3] = rd->buf[12] | (__u32)rd->buf[13] << 8 | flags << 16 | (__u32)p->l4 << 24;
	k->w[13] = bytes32(p->ports);
}

/* Whether the quick path can key the frame: see quick_key. */
static __always_inline int quickable(const struct reader *rd, const struct pkt *p)
{
	if (!p->l4 || rd->avail < VRSS_ETH_HLEN)
		return 0;
	if (p->family == 4)
		return rd->buf[12] == (VRSS_ETH_P_IPV4 >> 8) && rd->buf[13] == (VRSS_ETH_P_IPV4 & 0xff);
	return p->family == 6 && !p->ext && rd->buf[12] == (VRSS_ETH_P_IPV6 >> 8) && rd->buf[13] == (VRSS_ETH_P_IPV6 & 0xff);
}

/*
 * The lean path: vrss_run's body over the flow map, with the parser's
 * state on the stack and the rules' fields left out (p.f NULL, e.want 0),
 * so that a flow TAP without rules costs what a plain one does.
 *
 * A slot with rules takes the quick path where it can: for the common
 * frames quickable accepts, the key comes from the lean parse and the
 * rule search runs here, so that a frame a queue rule steers, or one no
 * rule matches, pays neither the tail call nor a second parse. Any other
 * frame, a frame whose rule is not a queue rule (a context, or a drop the
 * filter missed), and a search that needs a pattern of more than four
 * words return -1: the caller takes the rule path.
 */
static __always_inline int vrss_run_lean(ctx_t *ctx, struct vrss_flow_config *fc)
{
	__u32 zero = 0, rec = 0, counter = 0;
	struct reader rd;
	struct ext e;
	struct pkt p;
	struct result r = {};
	int q;

	reader_init(ctx, &rd);
	p.src = p.dst = p.ports = p.kports = rd.l4;
	p.family = p.l4 = p.ext = 0;
	p.f = 0;
	e.want = 0;
	classify(ctx, &rd, &e, &p);
	asm volatile("" : : "r"(&p) : "memory");

	if (READ_ONCE_U32(fc->flows[READ_ONCE_U32(fc->base.active) & 1].npatterns)) {
		/* The quick path: one attempt, no retry loop (each retry
		 * would multiply the states the verifier walks through the
		 * parse); a torn read, a set without rules by now, a frame it
		 * cannot key or a rule that is not a queue rule go to the
		 * rule path, which retries. */
		struct scratch *sc = bpf_map_lookup_elem(&vrss_scratch, &zero);
		__u32 idx = READ_ONCE_U32(fc->base.active) & 1;
		const struct vrss_slot *s = &fc->base.slot[idx];
		const struct vrss_flows *fl = &fc->flows[idx];
		__u32 seq = READ_ONCE_U32(s->seq);

		if (!sc || !quickable(&rd, &p))
			return -1;
		quick_key(&rd, &p, &sc->key);
		barrier();
		if (!READ_ONCE_U32(fl->npatterns))
			return -1;
		q = flow_match_short(fl, &sc->key);
		if (q < 0 || q > VRSS_HEAP_WORDS - VRSS_REC_META)
			return -1;
		rec = q;
		if (rec) {
			__u32 m0;

			rec--;
			asm volatile("" : "+r"(rec));
			m0 = fl->heap[rec];
			if (((m0 >> 16) & 15) != VRSS_ACTION_QUEUE)
				return -1;
#ifdef VRSS_DEBUG
			{
				/* Recorded now: a variable kept until done would
				 * take the stack the search's frame needs. */
				struct vrss_flow_debug *d = bpf_map_lookup_elem(&vrss_flow_debug, &zero);

				if (d)
					d->rule_id = fl->heap[rec + 1];
			}
			steer(s, &p, &e, &r);
#else
			{
				/* Only the queue leaves the program: the report
				 * (for the unclassified count), not the hash. */
				const __u8 *src, *dst;
				int ports;

				r.hash = 0;
				r.report = select_report(s, &p, &e, &src, &dst, &ports);
			}
#endif
			counter = fl->heap[rec + 2] & 0xffff;
			r.queue = m0 >> 24;
			rec++;
		} else {
			steer(s, &p, &e, &r);
		}
		barrier();
		if ((seq & 1) || READ_ONCE_U32(s->seq) != seq)
			return -1;
		goto done;
	}

#pragma clang loop unroll(disable)
	for (int attempt = 0; attempt < 4; attempt++) {
		__u32 idx = READ_ONCE_U32(fc->base.active) & 1;
		const struct vrss_slot *s = &fc->base.slot[idx];
		__u32 seq = READ_ONCE_U32(s->seq);

		barrier();
		if (READ_ONCE_U32(fc->flows[idx].npatterns))
			return -1;
		steer(s, &p, &e, &r);
		barrier();
		if (!(seq & 1) && READ_ONCE_U32(s->seq) == seq)
			goto done;
		count(VRSS_STAT_RETRY);
	}
	count(VRSS_STAT_TORN);
done:
	count(r.queue < VRSS_MAX_QUEUES ? r.queue : VRSS_MAX_QUEUES - 1);
	if (r.report == REPORT_NONE)
		count(VRSS_STAT_UNCLASSIFIED);
	if (rec)
		flow_count(counter <= VRSS_FSTAT_OVERFLOW ? counter : VRSS_FSTAT_OVERFLOW);
#ifdef VRSS_DEBUG
	{
		struct vrss_flow_debug *d = bpf_map_lookup_elem(&vrss_flow_debug, &zero);

		if (d) {
			d->hash = r.hash;
			d->report = r.report;
			d->queue = r.queue;
			if (!rec)
				d->rule_id = 0;
			d->has_rule = rec != 0;
			d->context = 0;
			d->drop = 0;
		}
	}
#endif
	return r.queue;
}

/* The steering program: the queue. A drop rule met here means the set
 * changed between the filter and this program; the frame then goes where
 * RSS puts it, and is counted (VRSS_FSTAT_RACE). */
__attribute__((noinline)) int vrss_run_rules(ctx_t *ctx, struct vrss_flow_config *fc)
{
	__u32 zero = 0;
	struct reader *rd;
	struct pkt p;
	struct ext *e;
	struct scratch *sc = bpf_map_lookup_elem(&vrss_scratch, &zero);
	struct fverdict *v = bpf_map_lookup_elem(&vrss_verdict, &zero);

	if (!ctx || !fc || !sc || !v)
		return 0;
	__builtin_memset(v, 0, sizeof(*v));
	e = &sc->e;
	rd = &sc->rd;
	if (READ_ONCE_U32(fc->base.magic) != VRSS_MAGIC) {
		count(VRSS_STAT_UNCONFIGURED);
		return 0;
	}
	reader_init(ctx, rd);
	init_pkt(rd, &p, &sc->f);
	e->want = 1;
	classify(ctx, rd, e, &p);
	/* The key only if the active set has rules: a TAP without rules pays
	 * for none of it. */
	if (p.f->has_eth && READ_ONCE_U32(fc->flows[READ_ONCE_U32(fc->base.active) & 1].npatterns)) {
		build_key(&p, &sc->key);
		v->keyed = 1;
	}
	asm volatile("" : : "r"(&p) : "memory");

#pragma clang loop unroll(disable)
	for (int attempt = 0; attempt < 4; attempt++) {
		__u32 idx = READ_ONCE_U32(fc->base.active) & 1;
		const struct vrss_slot *s = &fc->base.slot[idx];
		__u32 seq = READ_ONCE_U32(s->seq);

		barrier();
		steer_flows(fc, idx, &p, e, sc, v);
		barrier();
		if (!(seq & 1) && READ_ONCE_U32(s->seq) == seq)
			goto done;
		count(VRSS_STAT_RETRY);
	}
	count(VRSS_STAT_TORN);
done:
	count(v->r.queue < VRSS_MAX_QUEUES ? v->r.queue : VRSS_MAX_QUEUES - 1);
	if (v->r.report == REPORT_NONE)
		count(VRSS_STAT_UNCLASSIFIED);
	if (v->has_rule) {
		if (v->drop)
			flow_count(VRSS_FSTAT_RACE);
		else
			flow_count(v->counter <= VRSS_FSTAT_OVERFLOW ? v->counter : VRSS_FSTAT_OVERFLOW);
	}
	if (v->context)
		flow_count(VRSS_FSTAT_CTX + (((__u32)v->context - 1) & (VRSS_MAX_CONTEXTS - 1)) * VRSS_MAX_QUEUES + (v->r.queue & (VRSS_MAX_QUEUES - 1)));
#ifdef VRSS_DEBUG
	{
		struct vrss_flow_debug *d = bpf_map_lookup_elem(&vrss_flow_debug, &zero);

		if (d) {
			d->hash = v->r.hash;
			d->report = v->r.report;
			d->queue = v->r.queue;
			d->rule_id = v->has_rule ? v->rule_id : 0;
			d->has_rule = v->has_rule;
			d->context = v->context;
			d->drop = v->drop;
		}
	}
#endif
	return v->r.queue;
}

/* The rule path's program, which the steering program tail-calls: the
 * kernel empties a program array when the last user reference to it goes,
 * so vrssd pins it (steering.Program.JumpMap). */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} vrss_jump SEC(".maps");

/*
 * The steering program: a slot without rules takes the lean path, inline,
 * so that a flow TAP without rules costs what a plain one does; a slot with
 * rules, the rule path, a program of its own reached by a tail call (it
 * has a stack of its own: the two would not fit one). Were the rule path's
 * program missing, the frame goes to the default configuration's
 * unclassified queue and is counted (VRSS_FSTAT_NOJUMP).
 */
static __always_inline __u32 vrss_run_flows(ctx_t *ctx)
{
	__u32 zero = 0;
	struct vrss_flow_config *fc = bpf_map_lookup_elem(&vrss_config, &zero);
	int q;

	if (!fc)
		return 0;
	if (READ_ONCE_U32(fc->base.magic) != VRSS_MAGIC) {
		count(VRSS_STAT_UNCONFIGURED);
		return 0;
	}
	q = vrss_run_lean(ctx, fc);
	if (q >= 0)
		return q;
	bpf_tail_call(ctx, &vrss_jump, 0);
	flow_count(VRSS_FSTAT_NOJUMP);
	return *(volatile __u16 *)&fc->base.slot[READ_ONCE_U32(fc->base.active) & 1].unclassified_queue;
}

/* The filter: drop what a drop rule of the active set matches, count it
 * (the rule's counter and VRSS_FSTAT_DROP), let everything else through
 * to the next program and the queue selection. A set without drop rules
 * costs one load. */
static __always_inline int vrss_filter_run(ctx_t *ctx)
{
	__u32 zero = 0;
	struct vrss_flow_config *fc = bpf_map_lookup_elem(&vrss_config, &zero);
	struct pkt p;
	struct scratch *sc = bpf_map_lookup_elem(&vrss_scratch, &zero);
	__u32 rec = 0, counter = 0, drop = 0;

	if (!fc || !sc || READ_ONCE_U32(fc->base.magic) != VRSS_MAGIC)
		return TC_ACT_UNSPEC;
	if (!READ_ONCE_U32(fc->flows[READ_ONCE_U32(fc->base.active) & 1].has_drop))
		return TC_ACT_UNSPEC;
	reader_init(ctx, &sc->rd);
	init_pkt(&sc->rd, &p, &sc->f);
	sc->e.want = 1;
	classify(ctx, &sc->rd, &sc->e, &p);
	if (!p.f->has_eth)
		return TC_ACT_UNSPEC;
	build_key(&p, &sc->key);
	asm volatile("" : : "r"(&p) : "memory");

#pragma clang loop unroll(disable)
	for (int attempt = 0; attempt < 4; attempt++) {
		__u32 idx = READ_ONCE_U32(fc->base.active) & 1;
		const struct vrss_slot *s = &fc->base.slot[idx];
		const struct vrss_flows *fl = &fc->flows[idx];
		__u32 seq = READ_ONCE_U32(s->seq);

		barrier();
		drop = 0;
		rec = READ_ONCE_U32(fl->npatterns) ? flow_match(fl, &sc->key) : 0;
		if (rec && rec <= VRSS_HEAP_WORDS - VRSS_REC_META) {
			rec--;
			asm volatile("" : "+r"(rec));
			drop = ((fl->heap[rec] >> 16) & 15) == VRSS_ACTION_DROP;
			counter = fl->heap[rec + 2] & 0xffff;
		}
		barrier();
		if (!(seq & 1) && READ_ONCE_U32(s->seq) == seq)
			break;
	}
	if (!drop)
		return TC_ACT_UNSPEC;
	flow_count(counter <= VRSS_FSTAT_OVERFLOW ? counter : VRSS_FSTAT_OVERFLOW);
	flow_count(VRSS_FSTAT_DROP);
	return TC_ACT_SHOT;
}

#endif
