// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Port security on a VM's TAP (package port; docs/port-security.md): an
 * XDP program tun runs on every frame the VMM writes, i.e. every frame the
 * guest sends. It judges each frame exactly as port.Filter.Check does —
 * the same checks in the same order, the same reasons (port.Reason values
 * are the counter indexes), an ACL in flow.Match's model over the same
 * 56-byte key the flow build builds (flow.h's build_key, from the same
 * parser) — and passes it, drops it, or, when the policy names an uplink,
 * redirects it there through port_uplink (a one-entry DEVMAP).
 *
 * On an AF_XDP port (a slot in PORT_MODE_XSK, the program on a device
 * whose receive queues [queue_start, queue_start + queues) are handed to a
 * VMM as AF_XDP sockets), the frames of those queues are arriving FOR the
 * guest (what the guest sends leaves by AF_XDP transmission, which no XDP
 * program sees), so it judges them inbound, as port.NewInbound's Filter
 * does: by their destination (port_judge_in). It redirects the ones it
 * passes to the socket at their queue in port_xsks (an XSKMAP), or to the
 * stack when that entry is empty; frames of other queues are the host's:
 * not judged, passed untouched, counted apart.
 *
 * The frame is parsed once (port_parse: what the checks need, policy
 * independent, and the flow key), then judged by the active slot of
 * port_config under the slot's sequence number (port_judge), so no frame
 * is judged by a mix of two policies.
 *
 * Build variants (portxdp/gen.go): VRSS_DEBUG records each frame's reason,
 * rule and action in port_debug for the differential tests.
 */
#define VRSS_FLOWS 1

#include "ctx/xdpload.h"
#include "eth.h"
#include "flow.h"
#include "portmap.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct port_config);
} port_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PORT_NSTATS);
	__type(key, __u32);
	__type(value, __u64);
} port_stats SEC(".maps");

/* The uplink of the fast path: entry 0 holds its ifindex, or nothing. */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} port_uplink SEC(".maps");

/* An AF_XDP port's sockets, by receive queue. */
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, PORT_MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} port_xsks SEC(".maps");

#ifdef VRSS_DEBUG
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct port_debug);
} port_debug SEC(".maps");
#endif

#include "portcheck.h"

static __always_inline void port_count(__u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(&port_stats, &idx);

	if (c)
		*c += 1;
}

SEC("xdp")
int vrss_port(struct xdp_md *ctx)
{
	__u32 zero = 0, res = PORT_MALFORMED, reason, rule, mode = PORT_MODE_STACK, action;
	__u32 rxq = ctx->rx_queue_index;
	struct port_config *cfg = bpf_map_lookup_elem(&port_config, &zero);
	struct port_scratch *sc = bpf_map_lookup_elem(&port_scratch, &zero);
	__u64 tag __attribute__((unused)) = 0;

	if (!cfg || !sc)
		return XDP_DROP;
	if (READ_ONCE_U32(cfg->magic) != PORT_MAGIC) {
		/* No policy yet: nothing the guest sends is trusted. */
		port_count(PORT_STAT_UNCONFIGURED);
		return XDP_DROP;
	}
#pragma clang loop unroll(disable)
	for (int attempt = 0; attempt < 4; attempt++) {
		const struct port_slot *s = &cfg->slot[READ_ONCE_U32(cfg->active) & 1];
		__u32 seq = READ_ONCE_U32(s->seq);

		barrier();
		mode = s->mode;
		if (mode == PORT_MODE_XSK && rxq - s->queue_start >= s->queues) {
			res = 0; /* another queue's: not judged */
		} else {
			/* Again on a retry, which is rare: parsing does not
			 * depend on the policy. */
			port_parse(ctx, sc);
			res = port_judge(s, &sc->facts, &sc->s.key);
		}
		tag = s->tag;
		barrier();
		if (!(seq & 1) && READ_ONCE_U32(s->seq) == seq)
			goto done;
		port_count(PORT_STAT_RETRY);
	}
	port_count(PORT_STAT_TORN);
	return XDP_DROP;
done:
	reason = res & 0xff;
	rule = res >> 8;
	action = XDP_DROP;
	if (!res) {
		port_count(PORT_STAT_OTHER_QUEUE);
		action = XDP_PASS;
		goto out;
	}
	port_count(reason < PORT_NUM_REASONS ? reason : 0);
	if (rule)
		port_count(PORT_STAT_RULE + ((rule - 1) & (PORT_MAX_RULES - 1)));
	if (reason >= PORT_ACL_ALLOW && reason <= PORT_CONTROL) {
		action = XDP_PASS;
		if (mode == PORT_MODE_XSK) {
			/* XDP_PASS if no socket sits at the queue. */
			action = bpf_redirect_map(&port_xsks, rxq, XDP_PASS);
			if (action == XDP_REDIRECT)
				port_count(PORT_STAT_XSK);
		} else if (mode == PORT_MODE_UPLINK && ctx_len(ctx) <= READ_ONCE_U32(cfg->uplink_len)) {
			/* XDP_PASS if the map is empty: no uplink yet. */
			action = bpf_redirect_map(&port_uplink, 0, XDP_PASS);
			if (action == XDP_REDIRECT)
				port_count(PORT_STAT_REDIRECT);
		}
	}
out:
#ifdef VRSS_DEBUG
	{
		struct port_debug *d = bpf_map_lookup_elem(&port_debug, &zero);

		if (d) {
			d->reason = reason;
			d->rule = (__s32)rule - 1;
			d->action = action;
			d->tag = tag;
		}
	}
#endif
	return action;
}

char __license[] SEC("license") = "Dual BSD/GPL";
