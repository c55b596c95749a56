// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * vrss: virtio-net RSS steering for multi-queue TAP devices.
 *
 * A socket filter program attached with TUNSETSTEERINGEBPF; tun puts each
 * packet on queue (u16)return % numqueues. It implements exactly the
 * semantics of the Go engine (package rss, docs/semantics.md) and is tested
 * against it frame by frame. Every step below names the Go code it mirrors.
 *
 * All reads go through bpf_skb_load_bytes_relative(..., BPF_HDR_START_MAC),
 * so offsets count from the Ethernet header both inside tun (where skb data
 * starts there) and under BPF_PROG_TEST_RUN (where it starts at the network
 * header). A failed read means the header is not in the frame: the frame is
 * then unclassified, as in the engine.
 *
 * Build variants (bpf2go, see steering/gen.go):
 *   VRSS_DEBUG      record hash, report and queue of the last packet
 *   VRSS_BITSERIAL  bit-serial Toeplitz from the key (benchmark baseline)
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>

#include "vrss.h"

#define HASH_IPV4 (1u << 0)
#define HASH_TCPV4 (1u << 1)
#define HASH_UDPV4 (1u << 2)
#define HASH_IPV6 (1u << 3)
#define HASH_TCPV6 (1u << 4)
#define HASH_UDPV6 (1u << 5)
#define HASH_IP_EX (1u << 6)
#define HASH_TCP_EX (1u << 7)
#define HASH_UDP_EX (1u << 8)

enum report {
	REPORT_NONE,
	REPORT_IPV4,
	REPORT_TCPV4,
	REPORT_UDPV4,
	REPORT_IPV6,
	REPORT_TCPV6,
	REPORT_UDPV6,
	REPORT_IPV6_EX,
	REPORT_TCPV6_EX,
	REPORT_UDPV6_EX,
};

#define PROTO_TCP 6
#define PROTO_UDP 17

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct vrss_config);
} vrss_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VRSS_NSTATS);
	__type(key, __u32);
	__type(value, __u64);
} vrss_stats SEC(".maps");

#ifdef VRSS_DEBUG
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct vrss_debug);
} vrss_debug SEC(".maps");
#endif

/* What classification extracts; independent of the configuration (rss.flow). */
struct pkt {
	__u8 family; /* 0 (unclassified), 4 or 6 */
	__u8 l4;     /* PROTO_TCP, PROTO_UDP or 0 */
	__u8 frag;
	__u8 ext;
	__u8 has_home;
	__u8 has_rt2;
	__u8 ports[4];
	__u8 addrs[32]; /* IPv4: src 0..3, dst 4..7; IPv6: src 0..15, dst 16..31 */
	__u8 home[16];
	__u8 rt2[16];
};

static __always_inline int load(struct __sk_buff *skb, __u32 off, void *to, __u32 len)
{
	return bpf_skb_load_bytes_relative(skb, off, to, len, BPF_HDR_START_MAC);
}

#define barrier() asm volatile("" ::: "memory")
#define READ_ONCE_U32(x) (*(volatile __u32 *)&(x))

/* rss.transport: the whole TCP or UDP header must be there. */
static __always_inline int transport(struct __sk_buff *skb, struct pkt *p, __u8 proto, __u32 off)
{
	__u8 l4[20];

	if (proto == PROTO_TCP) {
		if (load(skb, off, l4, 20))
			return -1;
	} else if (proto == PROTO_UDP) {
		if (load(skb, off, l4, 8))
			return -1;
	} else {
		return 0;
	}
	p->l4 = proto;
	__builtin_memcpy(p->ports, l4, 4);
	return 0;
}

/* rss.classify4. ip holds the first 20 bytes of the header at off. */
static __always_inline int classify4(struct __sk_buff *skb, struct pkt *p, const __u8 *ip, __u32 off)
{
	__u32 ihl;
	__u8 probe;

	if (ip[0] >> 4 != 4)
		return -1;
	ihl = (ip[0] & 0x0f) * 4;
	if (ihl < 20)
		return -1;
	if (ihl > 20 && load(skb, off + ihl - 1, &probe, 1))
		return -1; /* options cut short */
	__builtin_memcpy(p->addrs, ip + 12, 8);
	/* Any fragment, the first included, hashes on addresses only. */
	if (((ip[6] << 8) | ip[7]) & 0x3fff) {
		p->frag = 1;
		return 0;
	}
	return transport(skb, p, ip[9], off + ihl);
}

/* rss.homeAddress: scan a destination options header [off, end). */
static __always_inline void home_address(struct __sk_buff *skb, struct pkt *p, __u32 off, __u32 end)
{
	__u32 pos = off + 2;
	__u8 opt[2];

	for (int i = 0; i < VRSS_MAX_DSTOPTS; i++) {
		if (pos >= end)
			return;
		if (pos + 2 > end) {
			/* Only room for Pad1. */
			if (load(skb, pos, opt, 1) || opt[0] != 0)
				return;
			pos++;
			continue;
		}
		if (load(skb, pos, opt, 2))
			return;
		if (opt[0] == 0) {
			pos++;
			continue;
		}
		if (opt[0] == 0xc9 && opt[1] == 16 && pos + 2 + 16 <= end) {
			if (load(skb, pos + 2, p->home, 16) == 0)
				p->has_home = 1;
			return;
		}
		pos += 2 + opt[1];
	}
}

/* rss.classify6: walk the extension headers. */
static __always_inline int classify6(struct __sk_buff *skb, struct pkt *p, __u32 off)
{
	__u8 ip6[40];
	__u8 eh[8];
	__u8 next;
	__u32 hlen;

	if (load(skb, off, ip6, 40) || ip6[0] >> 4 != 6)
		return -1;
	__builtin_memcpy(p->addrs, ip6 + 8, 32);
	next = ip6[6];
	off += 40;

	for (int n = 0; n <= VRSS_MAX_EXT; n++) {
		switch (next) {
		case 0: case 43: case 60: case 135: case 139: case 140: case 253: case 254:
			if (load(skb, off, eh, 8))
				return -1;
			hlen = ((__u32)eh[1] + 1) * 8;
			break;
		case 51: /* authentication header */
			if (load(skb, off, eh, 8))
				return -1;
			hlen = ((__u32)eh[1] + 2) * 4;
			break;
		case 44: /* fragment header */
			if (load(skb, off, eh, 8))
				return -1;
			hlen = 8;
			break;
		default:
			return transport(skb, p, next, off);
		}
		if (n == VRSS_MAX_EXT)
			return -1; /* chain longer than the bound */
		if (hlen > 8 && load(skb, off + hlen - 1, &eh[7], 1))
			return -1; /* header cut short; eh[7] is not used again */
		p->ext = 1;
		if (next == 43) {
			/* Type 2 routing header, one segment left: 24 bytes. */
			if (!p->has_rt2 && eh[2] == 2 && eh[3] == 1 && eh[1] == 2) {
				if (load(skb, off + 8, p->rt2, 16))
					return -1;
				p->has_rt2 = 1;
			}
		} else if (next == 60) {
			if (!p->has_home)
				home_address(skb, p, off, off + hlen);
		} else if (next == 44) {
			if (((eh[2] << 8) | eh[3]) & 0xfff9) {
				/* Offset or more-fragments: a fragment. An atomic
				 * fragment (both zero) is walked through. */
				p->frag = 1;
				return 0;
			}
		}
		next = eh[0];
		off += hlen;
	}
	return -1; /* not reached */
}

/* rss.classify. On return p->family is 0 if the frame is unclassified. */
static __always_inline void classify(struct __sk_buff *skb, struct pkt *p)
{
	/* Every classifiable frame has at least Ethernet + a 20-byte IPv4
	 * header, so one read covers the common case's headers. */
	__u8 hdr[34];
	__u32 off = 12;
	__u16 etype;
	__u8 ip[20];
	const __u8 *iph = hdr + 14;

	if (load(skb, 0, hdr, sizeof(hdr)))
		return;
	etype = (hdr[12] << 8) | hdr[13];
	if (etype == ETH_P_8021Q || etype == ETH_P_8021AD) {
		off = 16;
		etype = (hdr[16] << 8) | hdr[17];
		if (etype == ETH_P_8021Q || etype == ETH_P_8021AD) {
			off = 20;
			etype = (hdr[20] << 8) | hdr[21];
			if (etype == ETH_P_8021Q || etype == ETH_P_8021AD)
				return; /* more than VRSS_MAX_VLAN tags */
		}
	}
	off += 2;
	if (etype == ETH_P_IP) {
		if (off != 14) {
			if (load(skb, off, ip, 20))
				return;
			iph = ip;
		}
		if (classify4(skb, p, iph, off) == 0)
			p->family = 4;
	} else if (etype == ETH_P_IPV6) {
		if (classify6(skb, p, off) == 0)
			p->family = 6;
	}
}

/*
 * The Toeplitz hash is linear and position-wise: the hash of src|dst|ports is
 * the XOR of each segment hashed at its own input position. So the program
 * never assembles an input buffer; it hashes each segment where it lies.
 */
#ifdef VRSS_BITSERIAL
/* The textbook loop, one input bit at a time, with the key window sliding
 * across segments: only the benchmark builds this, as the baseline the
 * table-driven hash is measured against. */
struct hstate {
	__u32 h, w, kbit;
};

static __always_inline void hstart(struct hstate *st, const struct vrss_slot *s)
{
	st->h = 0;
	st->kbit = 32;
	st->w = ((__u32)s->key[0] << 24) | ((__u32)s->key[1] << 16) | ((__u32)s->key[2] << 8) | s->key[3];
}

static __always_inline void hseg(struct hstate *st, const struct vrss_slot *s, const __u8 *b, const int pos, const int len)
{
	for (int i = 0; i < len; i++) {
		for (int bit = 7; bit >= 0; bit--) {
			/* Branch-free, so the verifier sees one path, not 2^bits. */
			st->h ^= st->w & -(__u32)((b[i] >> bit) & 1);
			st->w = (st->w << 1) | ((s->key[(st->kbit >> 3) & (VRSS_MAX_KEY - 1)] >> (7 - (st->kbit & 7))) & 1);
			st->kbit++;
		}
	}
}
#else
struct hstate {
	__u32 h;
};

static __always_inline void hstart(struct hstate *st, const struct vrss_slot *s)
{
	st->h = 0;
}

/* rss.Toeplitz: one table load and XOR per byte, at constant positions. */
static __always_inline void hseg(struct hstate *st, const struct vrss_slot *s, const __u8 *b, const int pos, const int len)
{
#pragma unroll
	for (int i = 0; i < len; i++)
		st->h ^= s->toeplitz[pos + i][b[i]];
}
#endif

struct result {
	__u32 hash;
	__u16 queue;
	__u16 report;
};

/*
 * rss.Engine.Steer: hash type selection, hashing and the table lookup.
 * A global function, so the verifier checks it once for any packet instead of
 * once per path through classification. It returns the result packed as
 * hash | queue << 32 | report << 48.
 */
__attribute__((noinline)) __u64 steer(const struct vrss_slot *s, const struct pkt *p)
{
	struct result r = {};
	struct hstate st;
	__u32 t;
	int ports;

	if (!s || !p)
		return 0;
	t = s->hash_types;
	ports = p->l4 != 0;

	if (p->family == 4) {
		if (p->l4 == PROTO_TCP && (t & HASH_TCPV4))
			r.report = REPORT_TCPV4;
		else if (p->l4 == PROTO_UDP && (t & HASH_UDPV4))
			r.report = REPORT_UDPV4;
		else if (t & HASH_IPV4)
			r.report = REPORT_IPV4, ports = 0;
		if (r.report == REPORT_NONE)
			goto unclassified;
		hstart(&st, s);
		hseg(&st, s, p->addrs, 0, 8);
		if (ports)
			hseg(&st, s, p->ports, 8, 4);
	} else if (p->family == 6) {
		const __u8 *src = p->addrs, *dst = p->addrs + 16;

		if (p->ext) {
			if (p->l4 == PROTO_TCP && (t & HASH_TCP_EX))
				r.report = REPORT_TCPV6_EX;
			else if (p->l4 == PROTO_UDP && (t & HASH_UDP_EX))
				r.report = REPORT_UDPV6_EX;
			else if (t & HASH_IP_EX)
				r.report = REPORT_IPV6_EX, ports = 0;
			if (r.report != REPORT_NONE) {
				if (p->has_home)
					src = p->home;
				if (p->has_rt2)
					dst = p->rt2;
			}
		}
		if (r.report == REPORT_NONE) {
			if (p->l4 == PROTO_TCP && (t & HASH_TCPV6))
				r.report = REPORT_TCPV6;
			else if (p->l4 == PROTO_UDP && (t & HASH_UDPV6))
				r.report = REPORT_UDPV6;
			else if (t & HASH_IPV6)
				r.report = REPORT_IPV6, ports = 0;
		}
		if (r.report == REPORT_NONE)
			goto unclassified;
		hstart(&st, s);
		hseg(&st, s, src, 0, 16);
		hseg(&st, s, dst, 16, 16);
		if (ports)
			hseg(&st, s, p->ports, 32, 4);
	} else {
		goto unclassified;
	}
	r.hash = st.h;
	r.queue = s->table[r.hash & s->table_mask & (VRSS_MAX_TABLE - 1)];
	goto out;
unclassified:
	r.queue = s->unclassified_queue;
out:
	return r.hash | (__u64)r.queue << 32 | (__u64)r.report << 48;
}

static __always_inline void count(__u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(&vrss_stats, &idx);

	if (c)
		*c += 1;
}

SEC("socket")
int vrss_steer(struct __sk_buff *skb)
{
	__u32 zero = 0;
	struct vrss_config *cfg = bpf_map_lookup_elem(&vrss_config, &zero);
	struct pkt p = {};
	struct result r = {};

	if (!cfg)
		return 0;
	if (READ_ONCE_U32(cfg->magic) != VRSS_MAGIC) {
		count(VRSS_STAT_UNCONFIGURED);
		return 0;
	}
	classify(skb, &p);

	/* Seqlock read: a result counts only if its slot's sequence number was
	 * even and unchanged across the whole computation. */
#pragma clang loop unroll(disable)
	for (int attempt = 0; attempt < 4; attempt++) {
		const struct vrss_slot *s = &cfg->slot[READ_ONCE_U32(cfg->active) & 1];
		__u32 seq = READ_ONCE_U32(s->seq);

		__u64 packed;

		barrier();
		packed = steer(s, &p);
		barrier();
		r.hash = (__u32)packed;
		r.queue = (__u16)(packed >> 32);
		r.report = (__u16)(packed >> 48);
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

char __license[] SEC("license") = "Dual BSD/GPL";
