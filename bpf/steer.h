/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The steering program's body (vrss_run), shared by every program that
 * steers or classifies as vrss does: the socket filter (vrss.c) and the
 * XDP classification test (xdp_test.c).
 */
#ifndef VRSS_STEER_H
#define VRSS_STEER_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "ctx.h"
#include "eth.h" /* first: walk_ext leads the object, as before the split */
#include "config.h"
#include "counters.h"
#include "pkt.h"
#include "reader.h"
#include "vrss.h"

/*
 * The whole program, whatever its context: classify the frame, then steer
 * it by the active slot under the seqlock (a result counts only if its
 * slot's sequence number was even and unchanged across the whole
 * computation), count it, and return the queue.
 */
static __always_inline __u32 vrss_run(ctx_t *ctx)
{
	__u32 zero = 0;
	struct vrss_config *cfg = bpf_map_lookup_elem(&vrss_config, &zero);
	struct reader rd;
	struct ext e;
	struct pkt p;
	struct result r = {};

	if (!cfg)
		return 0;
	if (READ_ONCE_U32(cfg->magic) != VRSS_MAGIC) {
		count(VRSS_STAT_UNCONFIGURED);
		return 0;
	}
	reader_init(ctx, &rd);
	/* Until classify says otherwise the pointers point somewhere valid
	 * (never read): the verifier, which does not follow p's flags through
	 * the stack, then accepts every way of reaching the hash. */
	p.src = p.dst = p.ports = rd.l4;
	p.family = p.l4 = p.ext = 0;
	classify(ctx, &rd, &e, &p);
	/* p lives on the stack and each attempt reads it back: kept in
	 * registers across the loop, its fields would be spilled anyway, each
	 * to a slot of its own, and the stack would not hold them. */
	asm volatile("" : : "r"(&p) : "memory");

	/* Seqlock read: a result counts only if its slot's sequence number was
	 * even and unchanged across the whole computation. */
#pragma clang loop unroll(disable)
	for (int attempt = 0; attempt < 4; attempt++) {
		const struct vrss_slot *s = &cfg->slot[READ_ONCE_U32(cfg->active) & 1];
		__u32 seq = READ_ONCE_U32(s->seq);

		barrier();
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
#ifdef VRSS_DEBUG
	{
		struct vrss_debug *d = bpf_map_lookup_elem(&vrss_debug, &zero);

		if (d) {
			d->hash = r.hash;
			d->report = r.report;
			d->queue = r.queue;
		}
	}
#endif
	return r.queue;
}

#endif
