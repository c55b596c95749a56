// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * vrss with flow rules and RSS contexts: the steering program (a socket
 * filter for TUNSETSTEERINGEBPF, like vrss.c) and the filter that drops
 * (tcx egress on the TAP), sharing one configuration map whose slots carry
 * the rules and contexts (flowmap.h). Both implement flow.Engine.Steer and
 * are tested against it frame by frame.
 *
 * Build variants (steering/gen.go): VRSS_DEBUG records each frame's
 * verdict in vrss_flow_debug.
 */
#define VRSS_FLOWS 1

#include "ctx/skb.h"
#include "steerflow.h"

SEC("socket")
int vrss_steer(struct __sk_buff *skb)
{
	return vrss_run_flows(skb);
}

/* The rule path, tail-called by vrss_steer through vrss_jump. */
SEC("socket")
int vrss_steer_rules(struct __sk_buff *skb)
{
	__u32 zero = 0;
	struct vrss_flow_config *fc = bpf_map_lookup_elem(&vrss_config, &zero);

	if (!fc)
		return 0;
	return vrss_run_rules(skb, fc);
}

SEC("tc")
int vrss_filter(struct __sk_buff *skb)
{
	return vrss_filter_run(skb);
}

char __license[] SEC("license") = "Dual BSD/GPL";
