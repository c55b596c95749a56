/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * port.Filter.Check in two halves: port_parse reads from the frame what
 * the checks need and builds its flow key (nothing there depends on the
 * policy or the direction), port_judge applies a slot's policy to that, in
 * Check's order: outbound (port.New: a TAP's slot) or, for a slot in
 * PORT_MODE_XSK, inbound (port.NewInbound: port_judge_in).
 * port.c includes this after its maps.
 */
#ifndef VRSS_PORTCHECK_H
#define VRSS_PORTCHECK_H

#include "ctx.h"
#include "eth.h"
#include "flow.h"
#include "portmap.h"

/* Protocol numbers only the checks read (package port has the same). */
#define PORT_ETH_P_ARP 0x0806
#define PORT_ETH_P_RARP 0x8035
#define PORT_ARP_LEN 28 /* ARP for Ethernet and IPv4, after the Ethernet header */
#define PORT_IPPROTO_ICMPV6 58
#define PORT_ICMP6_MLD_QUERY 130
#define PORT_ICMP6_MLD_REPORT 131
#define PORT_ICMP6_MLD_DONE 132
#define PORT_ICMP6_RS 133
#define PORT_ICMP6_RA 134
#define PORT_ICMP6_NS 135
#define PORT_ICMP6_NA 136
#define PORT_ICMP6_REDIRECT 137
#define PORT_ICMP6_MLDV2_REPORT 143
#define PORT_ND_LEN 24 /* NS and NA without options; the target at 8 */
/* The furthest the walk to the upper-layer header reads (a frame is at
 * most 64 KB; eight extension headers reach past ctx/xdp.h's bound). */
#define PORT_MAX_PKT_OFF 0xfff0

/* What decides a frame once its source MAC is known to be the guest's. */
#define PORT_K_SHORT 0 /* shorter than an Ethernet header: malformed first */
#define PORT_K_FIXED 1 /* pre decides (the frame alone does) */
#define PORT_K_ARP 2   /* the sender address decides */
#define PORT_K_IP4 3
#define PORT_K_IP6 4

/* Frame facts the checks test (port's check.go names them). */
#define PORT_F_UDP_SERVER (1u << 0)  /* UDP from port 67 (IPv4) or 547 (IPv6) */
#define PORT_F_DHCP_CLIENT (1u << 1) /* not a fragment, UDP 68 to 67, or 546 to 547 and ff02::1:2 */
#define PORT_F_UNSPEC (1u << 2)      /* IPv4: from 0.0.0.0 to broadcast; IPv6: from :: */
#define PORT_F_LINK_LOCAL (1u << 3)  /* IPv6 source in fe80::/10 */
#define PORT_F_FRAG (1u << 4)        /* an IP fragment */
#define PORT_F_ICMP (1u << 5)        /* ICMPv6 whose type the frame shows */
#define PORT_F_PROBE (1u << 6)       /* ARP request from 0.0.0.0 */
#define PORT_F_SHA_OK (1u << 7)      /* ARP sender MAC is the frame's source */
#define PORT_F_RARP (1u << 8)        /* EtherType RARP */
#define PORT_F_DHCP_SERVER (1u << 9) /* not a fragment, UDP 67 to 68, or 547 to 546 */

struct port_addr6 {
	__u32 w[4];
};

struct port_facts {
	__u64 src_mac; /* bytes 6-11 in a little-endian word, as port_slot.mac */
	__u64 dst_mac; /* bytes 0-5 alike */
	__u32 kind;
	__u32 pre;
	struct port_addr6 src; /* IPv4: w[0] */
	struct port_addr6 dst;
	struct port_addr6 target; /* NS and NA */
	__u32 spa;     /* ARP sender address */
	__u32 tpa;     /* ARP target address */
	__u32 flags;
	__u32 icmp;    /* ICMPv6 type, if PORT_F_ICMP */
	__u8 b[32] __attribute__((aligned(8))); /* ARP body, ICMPv6 header */
};

/* The parser's state (flow.h's scratch) and the facts, off the stack. */
struct port_scratch {
	struct scratch s;
	struct port_facts facts;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct port_scratch);
} port_scratch SEC(".maps");

#define PORT_MAC_MASK 0xffffffffffffull

static __always_inline __u16 be16(const __u8 *b)
{
	return (b[0] << 8) | b[1];
}

/* ARP (or RARP) for Ethernet and IPv4: port's arpBody. Reads the body
 * into f->b; 0 if it is not there or not Ethernet/IPv4. */
static __always_inline int arp_body(ctx_t *ctx, struct port_facts *f)
{
	const __u8 *b = f->b;

	if (ctx_load(ctx, VRSS_ETH_HLEN, f->b, PORT_ARP_LEN))
		return 0;
	return b[0] == 0 && b[1] == 1 && b[2] == 0x08 && b[3] == 0 && b[4] == 6 && b[5] == 4;
}

/* port's arp, the part that does not need the policy. */
static __always_inline void parse_arp(ctx_t *ctx, struct port_facts *f)
{
	const __u8 *b = f->b;
	__u16 op;

	f->kind = PORT_K_FIXED;
	if (!arp_body(ctx, f)) {
		f->pre = PORT_MALFORMED;
		return;
	}
	op = be16(b + 6);
	if (op != 1 && op != 2) {
		f->pre = PORT_ARP_OPCODE;
		return;
	}
	if ((load64(b + 8) & PORT_MAC_MASK) == f->src_mac)
		f->flags |= PORT_F_SHA_OK;
	f->spa = load32(b + 14);
	f->tpa = load32(b + 24);
	if (op == 1 && f->spa == 0)
		f->flags |= PORT_F_PROBE;
	f->kind = PORT_K_ARP;
}

/* port's rarp: QEMU's self-announcement, or not. eth is the header. */
static __always_inline void parse_rarp(ctx_t *ctx, struct port_facts *f, const __u8 *eth)
{
	const __u8 *b = f->b;

	f->kind = PORT_K_FIXED;
	f->flags |= PORT_F_RARP;
	if (ctx_len(ctx) < VRSS_ETH_HLEN + PORT_ARP_LEN) {
		f->pre = PORT_MALFORMED;
		return;
	}
	f->pre = PORT_RARP;
	if (!arp_body(ctx, f) || (load64(eth) & PORT_MAC_MASK) != PORT_MAC_MASK || be16(b + 6) != 3 ||
	    (load64(b + 8) & PORT_MAC_MASK) != f->src_mac || (load64(b + 18) & PORT_MAC_MASK) != f->src_mac ||
	    load32(b + 14) != 0 || load32(b + 24) != 0)
		return;
	f->pre = PORT_CONTROL;
}

/*
 * The offset of an IPv6 packet's upper-layer header (rss.ParseUpperLayer),
 * for a frame classify6 accepted with extension headers: past every
 * extension header of a whole packet or of a first fragment, 0 for a later
 * fragment (or a first one whose chain the rules' walk gave up on, which
 * is malformed already). classify6 checked every header it walked, so
 * this only adds up lengths. A global function, checked once.
 */
__attribute__((noinline)) int port_upper6(ctx_t *ctx, struct reader *r)
{
	const __u8 *data = (const __u8 *)(long)ctx->data;
	const __u8 *end = (const __u8 *)(long)ctx->data_end;
	const __u8 *h;
	__u32 off = VRSS_ETH_HLEN + VRSS_IPV6_HLEN, next, after = 0;

	if (!r || data + VRSS_ETH_HLEN + VRSS_IPV6_HLEN > end)
		return 0;
	next = data[VRSS_ETH_HLEN + VRSS_IPV6_NEXT_OFF];
	for (int n = 0; n <= VRSS_MAX_EXT + 1; n++) {
		off = untrack(r, off);
		if (!ext_header(next))
			return off;
		if (off > PORT_MAX_PKT_OFF)
			return 0;
		h = data + off;
		if (h + 4 > end)
			return 0;
		if (next == VRSS_IPPROTO_FRAGMENT) {
			/* The first fragment header with offset or M set
			 * decides; past a first fragment, the rest of the
			 * chain is walked through (rss.fragmentRest). */
			if (!after && (be16(h + 2) & VRSS_IPV6_FRAG_MASK)) {
				if (be16(h + 2) & VRSS_IPV6_OFFSET_MASK)
					return 0;
				after = 1;
			}
			off += VRSS_IPV6_FRAG_HLEN;
		} else if (next == VRSS_IPPROTO_AH) {
			off += ((__u32)h[1] + 2) * 4;
		} else {
			off += ((__u32)h[1] + 1) * 8;
		}
		next = untrack(r, h[0]);
	}
	return 0;
}

/* port's parseIP and the facts ipv4 reads. p is classify's result. */
static __always_inline void parse_ip4(ctx_t *ctx, struct reader *r, const struct pkt *p, struct port_facts *f)
{
	const __u8 *ip;
	__u16 sport = 0, dport = 0;

	f->kind = PORT_K_FIXED;
	f->pre = PORT_MALFORMED;
	if (p->family != 4)
		return;
	/* Untagged, so the header is at 14; classify read its 20 bytes. */
	ip = get(ctx, r, VRSS_ETH_HLEN, VRSS_IPV4_MIN_HLEN, r->l4);
	if (!ip)
		return;
	if (p->f->frag) {
		f->flags |= PORT_F_FRAG;
		/* A first fragment whose TCP or UDP header is cut off. */
		if (!(be16(ip + VRSS_IPV4_FRAG_OFF) & VRSS_IPV4_OFFSET_MASK) && !p->f->kl4 &&
		    (p->f->proto == VRSS_IPPROTO_TCP || p->f->proto == VRSS_IPPROTO_UDP))
			return;
	}
	f->src.w[0] = load32(ip + VRSS_IPV4_SRC_OFF);
	f->dst.w[0] = load32(ip + VRSS_IPV4_DST_OFF);
	if (p->f->kl4 == VRSS_IPPROTO_UDP) {
		sport = be16(p->kports);
		dport = be16(p->kports + 2);
		if (sport == 67)
			f->flags |= PORT_F_UDP_SERVER;
		if (!p->f->frag && sport == 68 && dport == 67)
			f->flags |= PORT_F_DHCP_CLIENT;
		if (!p->f->frag && sport == 67 && dport == 68)
			f->flags |= PORT_F_DHCP_SERVER;
	}
	if (f->src.w[0] == 0 && f->dst.w[0] == 0xffffffff)
		f->flags |= PORT_F_UNSPEC;
	f->kind = PORT_K_IP4;
	f->pre = 0;
}

/* port's parseIP and the facts ipv6Check reads. */
static __always_inline void parse_ip6(ctx_t *ctx, struct reader *r, const struct pkt *p, struct port_facts *f)
{
	const __u8 *s = (const __u8 *)f->src.w, *d;
	__u16 sport, dport;
	__u32 upper = VRSS_ETH_HLEN + VRSS_IPV6_HLEN;

	f->kind = PORT_K_FIXED;
	f->pre = PORT_MALFORMED;
	if (p->family != 6 || !p->f->has_proto)
		return;
	if (p->ext)
		upper = port_upper6(ctx, r);
	if (p->f->frag)
		f->flags |= PORT_F_FRAG;
	if (upper && !p->f->kl4 && (p->f->proto == VRSS_IPPROTO_TCP || p->f->proto == VRSS_IPPROTO_UDP))
		return;
	if (upper && p->f->proto == PORT_IPPROTO_ICMPV6) {
		if (ctx_load(ctx, upper, f->b, 4))
			return;
		f->icmp = f->b[0];
		f->flags |= PORT_F_ICMP;
		if (f->icmp == PORT_ICMP6_NS || f->icmp == PORT_ICMP6_NA) {
			if (ctx_load(ctx, upper, f->b, PORT_ND_LEN))
				return;
			copy16((__u64 *)f->target.w, f->b + 8);
		}
	}
	copy16((__u64 *)f->src.w, p->src);
	copy16((__u64 *)f->dst.w, p->dst);
	d = (const __u8 *)f->dst.w;
	if (p->f->kl4 == VRSS_IPPROTO_UDP) {
		sport = be16(p->kports);
		dport = be16(p->kports + 2);
		if (sport == 547)
			f->flags |= PORT_F_UDP_SERVER;
		/* ff02::1:2, All_DHCP_Relay_Agents_and_Servers */
		if (!p->f->frag && sport == 546 && dport == 547 && load64(d) == 0x2ff && load32(d + 8) == 0 &&
		    load32(d + 12) == 0x02000100)
			f->flags |= PORT_F_DHCP_CLIENT;
		if (!p->f->frag && sport == 547 && dport == 546)
			f->flags |= PORT_F_DHCP_SERVER;
	}
	if (!(f->src.w[0] | f->src.w[1] | f->src.w[2] | f->src.w[3]))
		f->flags |= PORT_F_UNSPEC;
	if (s[0] == 0xfe && (s[1] & 0xc0) == 0x80)
		f->flags |= PORT_F_LINK_LOCAL;
	f->kind = PORT_K_IP6;
	f->pre = 0;
}

/*
 * Everything about the frame the checks need, and, for IP frames (the
 * only ones the ACL sees), its flow key in sc->s.key. A global function:
 * the parser's paths are checked once, not once per way into the judging
 * loop.
 */
__attribute__((noinline)) int port_parse(ctx_t *ctx, struct port_scratch *sc)
{
	struct reader *r;
	struct port_facts *f;
	const __u8 *eth;
	struct pkt p;
	__u16 etype;

	if (!ctx || !sc)
		return 0;
	r = &sc->s.rd;
	f = &sc->facts;
	f->kind = PORT_K_SHORT;
	f->pre = PORT_MALFORMED;
	f->flags = 0;
	reader_init(ctx, r);
	eth = get(ctx, r, 0, VRSS_ETH_HLEN, r->ip);
	if (!eth)
		return 0;
	f->src_mac = load64(eth + VRSS_ETH_ALEN) & PORT_MAC_MASK;
	f->dst_mac = load64(eth) & PORT_MAC_MASK;
	f->kind = PORT_K_FIXED;
	etype = be16(eth + VRSS_ETH_TYPE_OFF);
	switch (etype) {
	case VRSS_ETH_P_8021Q:
	case VRSS_ETH_P_8021AD:
		f->pre = PORT_VLAN;
		return 0;
	case PORT_ETH_P_ARP:
		parse_arp(ctx, f);
		return 0;
	case PORT_ETH_P_RARP:
		parse_rarp(ctx, f, eth);
		return 0;
	case VRSS_ETH_P_IPV4:
	case VRSS_ETH_P_IPV6:
		break;
	default:
		f->pre = PORT_L2_PROTO;
		return 0;
	}
	/* As steerflow.h's init_pkt: pointers valid until classify sets them. */
	p.src = p.dst = p.ports = p.kports = r->l4;
	p.family = p.l4 = p.ext = 0;
	p.f = &sc->s.f;
	p.f->etype = p.f->tci = 0;
	p.f->tagged = p.f->proto = p.f->has_proto = p.f->frag = p.f->kl4 = p.f->tcpflags = p.f->has_eth = 0;
	sc->s.e.want = 1; /* the walk records what rules (and the checks) read */
	classify(ctx, r, &sc->s.e, &p);
	if (etype == VRSS_ETH_P_IPV4)
		parse_ip4(ctx, r, &p, f);
	else
		parse_ip6(ctx, r, &p, f);
	if (f->kind != PORT_K_FIXED)
		build_key(&p, &sc->s.key);
	return 0;
}

/* Whether a is in one of s's IPv6 prefixes (the policy's, then the
 * link-local addresses). A global function: judging calls it three times. */
__attribute__((noinline)) int port_owns6(const struct port_slot *s, const struct port_addr6 *a)
{
	__u32 n;

	if (!s || !a)
		return 0;
	n = s->nv6;
	for (__u32 i = 0; i < PORT_MAX_V6; i++) {
		const struct port_prefix6 *q = &s->v6[i];

		if (i >= n)
			break;
		if (!(((a->w[0] & q->mask[0]) ^ q->addr[0]) | ((a->w[1] & q->mask[1]) ^ q->addr[1]) |
		      ((a->w[2] & q->mask[2]) ^ q->addr[2]) | ((a->w[3] & q->mask[3]) ^ q->addr[3])))
			return 1;
	}
	return 0;
}

static __always_inline int owns4(const struct port_slot *s, __u32 a)
{
	__u32 n = s->nv4;

	for (__u32 i = 0; i < PORT_MAX_V4; i++) {
		if (i >= n)
			break;
		if ((a & s->v4[i].mask) == s->v4[i].addr)
			return 1;
	}
	return 0;
}

/*
 * The ACL: the first rule (in the policy's order) whose match the key
 * satisfies, else the default. Returns the reason, with 1 + the rule's
 * index in bits 8 and up. At most PORT_MAX_RULES rules of at most
 * VRSS_KEY_WORDS words each: 448 word comparisons at worst, and one or two
 * per rule that does not match, as a rule's first word usually decides.
 */
__attribute__((noinline)) int port_acl(const struct port_slot *s, const struct fkey *k)
{
	__u32 n;

	if (!s || !k)
		return PORT_MALFORMED;
	n = s->nrules;
	for (__u32 i = 0; i < PORT_MAX_RULES; i++) {
		const struct port_rule *q = &s->rule[i];
		__u32 nt, hit = 1;

		if (i >= n)
			break;
		nt = q->nterms;
		for (__u32 j = 0; j < VRSS_KEY_WORDS; j++) {
			const struct port_term *t = &q->term[j];

			if (j >= nt)
				break;
			if ((k->w[t->word & 15] & t->mask) != t->value) {
				hit = 0;
				break;
			}
		}
		if (hit)
			return (q->reason & 0xff) | ((i + 1) << 8);
	}
	return s->dflt & 0xff;
}

/* port's ipv4: 0 for a frame the ACL decides. */
static __always_inline int judge4(const struct port_slot *s, const struct port_facts *f)
{
	if (!owns4(s, f->src.w[0]))
		return (f->flags & PORT_F_UNSPEC) && (f->flags & PORT_F_DHCP_CLIENT) ? PORT_CONTROL : PORT_SRC_IPV4;
	if (f->flags & PORT_F_UDP_SERVER)
		return PORT_DHCP_SERVER;
	if (f->flags & PORT_F_DHCP_CLIENT)
		return PORT_CONTROL;
	return 0;
}

/* port's ipv6Check: 0 for a frame the ACL decides. */
static __always_inline int judge6(const struct port_slot *s, const struct port_facts *f)
{
	__u32 icmp = f->flags & PORT_F_ICMP ? f->icmp : 0x100;

	if (!port_owns6(s, &f->src)) {
		if ((f->flags & PORT_F_DHCP_CLIENT) && (f->flags & PORT_F_LINK_LOCAL))
			return PORT_CONTROL;
		if (!(f->flags & PORT_F_UNSPEC) || (f->flags & PORT_F_FRAG))
			return PORT_SRC_IPV6;
		if (icmp == PORT_ICMP6_NS && !port_owns6(s, &f->target))
			return PORT_NDP_TARGET;
		if (icmp == PORT_ICMP6_NS || icmp == PORT_ICMP6_RS || icmp == PORT_ICMP6_MLD_REPORT || icmp == PORT_ICMP6_MLDV2_REPORT)
			return PORT_CONTROL;
		return PORT_SRC_IPV6;
	}
	if (f->flags & PORT_F_UDP_SERVER)
		return PORT_DHCPV6_SERVER;
	if (icmp == PORT_ICMP6_RA)
		return PORT_ROUTER_ADVERT;
	if (icmp == PORT_ICMP6_REDIRECT)
		return PORT_REDIRECT;
	if (icmp == PORT_ICMP6_NA && !port_owns6(s, &f->target))
		return PORT_NDP_TARGET;
	if (f->flags & PORT_F_FRAG)
		return 0;
	if ((f->flags & PORT_F_DHCP_CLIENT) || icmp == PORT_ICMP6_MLD_REPORT || icmp == PORT_ICMP6_MLD_DONE ||
	    icmp == PORT_ICMP6_MLDV2_REPORT || icmp == PORT_ICMP6_RS || icmp == PORT_ICMP6_NS || icmp == PORT_ICMP6_NA)
		return PORT_CONTROL;
	return 0;
}

static __always_inline int owns_mac(const struct port_slot *s, __u64 mac)
{
	__u32 n = s->nmacs;
	int mine = 0;

	for (__u32 i = 0; i < PORT_MAX_MACS; i++) {
		if (i >= n)
			break;
		if (s->mac[i] == mac)
			mine = 1;
	}
	return mine;
}

/* port's ipv4In: 0 for a frame the ACL decides. */
static __always_inline int judge4_in(const struct port_slot *s, const struct port_facts *f)
{
	__u32 d = f->dst.w[0];

	if (f->flags & PORT_F_DHCP_SERVER)
		return PORT_CONTROL;
	/* Loaded little-endian: the first byte is the low one. */
	if (!owns4(s, d) && d != 0xffffffff && (d & 0xf0) != 0xe0)
		return PORT_DST_IPV4;
	return 0;
}

/* port's ipv6In: 0 for a frame the ACL decides. */
static __always_inline int judge6_in(const struct port_slot *s, const struct port_facts *f)
{
	__u32 icmp = f->flags & PORT_F_ICMP ? f->icmp : 0x100;

	if ((f->dst.w[0] & 0xff) != 0xff && !port_owns6(s, &f->dst))
		return PORT_DST_IPV6;
	if (f->flags & PORT_F_FRAG)
		return 0;
	if ((f->flags & PORT_F_DHCP_SERVER) || (icmp >= PORT_ICMP6_MLD_QUERY && icmp <= PORT_ICMP6_REDIRECT) ||
	    icmp == PORT_ICMP6_MLDV2_REPORT)
		return PORT_CONTROL;
	return 0;
}

/*
 * port.Filter.Check's judgement, inbound (port.NewInbound), of the parsed
 * frame f (key k) by slot s; as port_judge returns it. A global function
 * of its own: the two directions' paths are checked apart.
 */
__attribute__((noinline)) int port_judge_in(const struct port_slot *s, const struct port_facts *f, const struct fkey *k)
{
	__u32 r = 0;

	if (!s || !f || !k || f->kind == PORT_K_SHORT)
		return PORT_MALFORMED;
	if (f->kind == PORT_K_FIXED && f->pre == PORT_VLAN)
		return PORT_VLAN;
	/* Broadcast and multicast (the group bit) are everyone's. */
	if (!(f->dst_mac & 1) && !owns_mac(s, f->dst_mac))
		return PORT_DST_MAC;
	if (f->flags & PORT_F_RARP)
		return PORT_L2_PROTO;
	switch (f->kind) {
	case PORT_K_ARP:
		return owns4(s, f->tpa) ? PORT_CONTROL : PORT_ARP_TARGET;
	case PORT_K_IP4:
		r = judge4_in(s, f);
		break;
	case PORT_K_IP6:
		r = judge6_in(s, f);
		break;
	default:
		return f->pre;
	}
	if (r)
		return r;
	return port_acl(s, k);
}

/*
 * port.Filter.Check's judgement of the parsed frame f (key k) by slot s:
 * the reason, with 1 + the deciding rule's index in bits 8 and up.
 * Outbound, unless the slot is an AF_XDP port's (port_judge_in).
 */
__attribute__((noinline)) int port_judge(const struct port_slot *s, const struct port_facts *f, const struct fkey *k)
{
	__u32 r = 0;

	if (!s || !f || !k || f->kind == PORT_K_SHORT)
		return PORT_MALFORMED;
	if (s->mode == PORT_MODE_XSK)
		return port_judge_in(s, f, k);
	if (!owns_mac(s, f->src_mac))
		return PORT_SRC_MAC;
	switch (f->kind) {
	case PORT_K_ARP:
		if (!(f->flags & PORT_F_SHA_OK))
			return PORT_ARP_SENDER;
		return owns4(s, f->spa) || (f->flags & PORT_F_PROBE) ? PORT_CONTROL : PORT_ARP_SENDER;
	case PORT_K_IP4:
		r = judge4(s, f);
		break;
	case PORT_K_IP6:
		r = judge6(s, f);
		break;
	default:
		return f->pre;
	}
	if (r)
		return r;
	return port_acl(s, k);
}

#endif
