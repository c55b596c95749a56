// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The split's proof: an XDP program built from the same headers as the
 * steering program (vrss.c), with the XDP context (ctx/xdp.h: direct,
 * bounds-checked packet access instead of the skb helper). It steers each
 * frame as vrss_steer does and records hash, report and queue in
 * vrss_debug; steering/xdptest runs it through BPF_PROG_TEST_RUN on the
 * differential test's frames and compares every result with the rss
 * engine's. Every frame passes. Test-only: nothing loads it in production.
 */
#define VRSS_DEBUG 1

#include "ctx/xdp.h"
#include "steer.h"

SEC("xdp")
int vrss_xdp_classify(struct xdp_md *ctx)
{
	vrss_run(ctx);
	return XDP_PASS;
}

char __license[] SEC("license") = "Dual BSD/GPL";
