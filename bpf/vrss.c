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
 * header). A failed read means the header is not in the frame (or, in a
 * nonlinear skb, not in its linear part: the helper reads only that): the
 * frame is then unclassified, as in the engine.
 *
 * Helper calls are a large part of the program's cost (25 ns each on one
 * machine it was measured on, against 40 ns for a program that returns at
 * once; 4 against 8 on another), so it makes as few as it can: one read
 * copies the start of the frame (struct reader), and the parser takes
 * every header from that copy; only a header that lies past it is read on
 * its own. See reader_init for how much the first read takes. Nor does it
 * copy what it hashes: classification notes where the addresses and ports
 * lie, and the hash reads them there.
 *
 * Past the first read, what a frame costs is mostly its hash: one table
 * lookup per input byte, 12 for IPv4 with ports, 36 for IPv6 (see
 * toeplitz). The rest (parsing, the configuration's seqlock, the table and
 * the per-queue counter) is the same few dozen instructions for both.
 *
 * Build variants (bpf2go, see steering/gen.go):
 *   VRSS_DEBUG      record hash, report and queue of the last packet
 *   VRSS_BITSERIAL  bit-serial Toeplitz from the key (benchmark baseline)
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>

#include "reader.h"
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

/*
 * What classification extracts (rss.flow): where the hash input lies, as
 * pointers into the reader (the first read or its pieces), so that nothing
 * is copied on the common path. Independent of the configuration.
 */
struct pkt {
	const __u8 *src;   /* source address: 4 or 16 bytes */
	const __u8 *dst;   /* destination address */
	const __u8 *ports; /* source and destination ports, if l4 */
	__u8 family;       /* 0 (unclassified), 4 or 6 */
	__u8 l4;           /* PROTO_TCP, PROTO_UDP or 0 */
	__u8 ext;          /* IPv6 with extension headers: see struct ext */
};

/*
 * What the extension-header walk (walk_ext) found. A global function cannot
 * hand back pointers (the verifier sees what it writes as plain bytes), so
 * it copies the little it finds into here.
 */
struct ext {
	__u8 l4;
	__u8 has_home;
	__u8 has_rt2;
	__u8 ports[4];
	__u8 home[16];
	__u8 rt2[16];
};

#define barrier() asm volatile("" ::: "memory")
#define READ_ONCE_U32(x) (*(volatile __u32 *)&(x))

/*
 * untrack and get_ext serve walk_ext, where r is a global function's
 * argument: the verifier does not track what *r holds, so a value stored in
 * r->index and read back is, for it, any value. walk_ext passes its offsets
 * through r->index, at the top of each loop iteration (untrack) and on
 * their way to indexing buf (get_ext). Otherwise the verifier, which tracks
 * exactly every value that becomes part of a pointer, would tell apart the
 * state of every chain of header and option lengths, far too many to
 * check; the mask keeps the index in buf, which is all it needs to know.
 * At run time each is a store and a load. Pieces past the first read go
 * to r->l4: the walk never touches r->ip, which holds the addresses.
 */
static __always_inline __u32 untrack(struct reader *r, __u32 x)
{
	*(volatile __u32 *)&r->index = x;
	return *(volatile __u32 *)&r->index;
}

static __always_inline const __u8 *get_ext(struct __sk_buff *skb, struct reader *r, __u32 off, __u32 len)
{
	if (off + len <= r->avail) {
		*(volatile __u32 *)&r->index = off;
		return r->buf + (*(volatile __u32 *)&r->index & (READER_PREFIX - 1));
	}
	if (load(skb, off, r->l4, len))
		return 0;
	return r->l4;
}

/* rss.transport: the whole TCP or UDP header must be there. */
static __always_inline int transport(struct __sk_buff *skb, struct reader *r, struct pkt *p, __u8 proto, __u32 off)
{
	const __u8 *l4;

	if (proto == PROTO_TCP)
		l4 = get(skb, r, off, 20, r->l4);
	else if (proto == PROTO_UDP)
		l4 = get(skb, r, off, 8, r->l4);
	else
		return 0;
	if (!l4)
		return -1;
	p->l4 = proto;
	p->ports = l4;
	return 0;
}

/* rss.classify4. ip holds the first 20 bytes of the header at off. */
static __always_inline int classify4(struct __sk_buff *skb, struct reader *r, struct pkt *p, const __u8 *ip, __u32 off)
{
	__u32 ihl;

	if (ip[0] >> 4 != 4)
		return -1;
	ihl = (ip[0] & 0x0f) * 4;
	if (ihl < 20)
		return -1;
	/* Options cut short. The byte is read into r->l4, never over ip. */
	if (ihl > 20 && !get(skb, r, off + ihl - 1, 1, r->l4))
		return -1;
	p->src = ip + 12;
	p->dst = ip + 16;
	/* Any fragment, the first included, hashes on addresses only. */
	if (((ip[6] << 8) | ip[7]) & 0x3fff)
		return 0;
	return transport(skb, r, p, ip[9], off + ihl);
}

/* rss.homeAddress: scan a destination options header [off, end). */
static __always_inline void home_address(struct __sk_buff *skb, struct reader *r, struct ext *e, __u32 off, __u32 end)
{
	__u32 pos = off + 2;
	const __u8 *opt;

	for (int i = 0; i < VRSS_MAX_DSTOPTS; i++) {
		pos = untrack(r, pos);
		if (pos >= end)
			return;
		/* The type byte, and the length byte if the header has room. */
		opt = get_ext(skb, r, pos, pos + 2 <= end ? 2 : 1);
		if (!opt)
			return;
		if (opt[0] == 0) { /* Pad1 */
			pos++;
			continue;
		}
		if (pos + 2 > end)
			return;
		if (opt[0] == 0xc9 && opt[1] == 16 && pos + 2 + 16 <= end) {
			opt = get_ext(skb, r, pos + 2, 16);
			if (opt) {
				__builtin_memcpy(e->home, opt, 16);
				e->has_home = 1;
			}
			return;
		}
		pos += 2 + opt[1];
	}
}

static __always_inline int ext_header(__u8 next)
{
	switch (next) {
	case 0: case 43: case 44: case 51: case 60: case 135: case 139: case 140: case 253: case 254:
		return 1;
	}
	return 0;
}

/*
 * The extension-header walk of rss.classify6, from the header of type next
 * at off; what it finds goes to e. A global function, so the verifier
 * checks it once, for any offset and any reader contents, instead of once
 * per way of reaching it (VLAN tags, first-read outcomes) with everything
 * that follows it in the program checked once per way out. Inlined, it
 * saves the call (about 10 ns where this was measured, paid only by frames
 * with extension headers) but doubles the verifier's work.
 */
__attribute__((noinline)) int walk_ext(struct __sk_buff *skb, struct reader *r, struct ext *e, __u32 off, __u32 next)
{
	const __u8 *h;
	__u8 nh, b1, b2, b3;
	__u32 hlen;

	if (!skb || !r || !e)
		return -1;
	for (int n = 0; n <= VRSS_MAX_EXT; n++) {
		off = untrack(r, off);
		if (!ext_header(next)) {
			/* rss.transport */
			if (next == PROTO_TCP)
				h = get_ext(skb, r, off, 20);
			else if (next == PROTO_UDP)
				h = get_ext(skb, r, off, 8);
			else
				return 0;
			if (!h)
				return -1;
			e->l4 = next;
			__builtin_memcpy(e->ports, h, 4);
			return 0;
		}
		h = get_ext(skb, r, off, 8);
		if (!h)
			return -1;
		nh = h[0];
		b1 = h[1];
		b2 = h[2];
		b3 = h[3];
		if (next == 51) /* authentication header */
			hlen = ((__u32)b1 + 2) * 4;
		else if (next == 44) /* fragment header */
			hlen = 8;
		else
			hlen = ((__u32)b1 + 1) * 8;
		if (n == VRSS_MAX_EXT)
			return -1; /* chain longer than the bound */
		if (hlen > 8 && !get_ext(skb, r, off + hlen - 1, 1))
			return -1; /* header cut short */
		if (next == 43) {
			/* Type 2 routing header, one segment left: 24 bytes. */
			if (!e->has_rt2 && b2 == 2 && b3 == 1 && b1 == 2) {
				h = get_ext(skb, r, off + 8, 16);
				if (!h)
					return -1;
				__builtin_memcpy(e->rt2, h, 16);
				e->has_rt2 = 1;
			}
		} else if (next == 60) {
			if (!e->has_home)
				home_address(skb, r, e, off, off + hlen);
		} else if (next == 44) {
			if (((b2 << 8) | b3) & 0xfff9) {
				/* Offset or more-fragments: a fragment. An atomic
				 * fragment (both zero) is walked through. */
				return 0;
			}
		}
		next = nh;
		off += hlen;
	}
	return -1; /* not reached */
}

/* rss.classify6. */
static __always_inline int classify6(struct __sk_buff *skb, struct reader *r, struct ext *e, struct pkt *p, __u32 off)
{
	const __u8 *h = get(skb, r, off, 40, r->ip);
	__u8 next;

	if (!h || h[0] >> 4 != 6)
		return -1;
	p->src = h + 8;
	p->dst = h + 24;
	next = h[6];
	if (!ext_header(next))
		return transport(skb, r, p, next, off + 40);
	/* walk_ext sets only what it finds. */
	e->l4 = 0;
	e->has_home = 0;
	e->has_rt2 = 0;
	if (walk_ext(skb, r, e, off + 40, next))
		return -1;
	/* A walk that succeeds has passed at least one header. */
	p->ext = 1;
	p->l4 = e->l4;
	p->ports = e->ports;
	return 0;
}

/* rss.classify. On return p->family is 0 if the frame is unclassified. */
static __always_inline void classify(struct __sk_buff *skb, struct reader *r, struct ext *e, struct pkt *p)
{
	/* Every classifiable frame has at least Ethernet + a 20-byte IPv4
	 * header, so its first 34 bytes cover the VLAN tags and, untagged,
	 * the IPv4 header. */
	const __u8 *hdr = get(skb, r, 0, 34, r->ip);
	const __u8 *ip;
	__u32 off = 12;
	__u16 etype;

	if (!hdr)
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
		ip = hdr + 14;
		if (off != 14) {
			ip = get(skb, r, off, 20, r->ip);
			if (!ip)
				return;
		}
		if (classify4(skb, r, p, ip, off) == 0)
			p->family = 4;
	} else if (etype == ETH_P_IPV6) {
		if (classify6(skb, r, e, p, off) == 0)
			p->family = 6;
	}
}

struct result {
	__u32 hash;
	__u16 queue;
	__u16 report;
};

/*
 * Hash type selection (the first half of rss.Engine.Steer): the report, and
 * which source and destination addresses the hash input starts with.
 */
static __always_inline __u16 select_report(const struct vrss_slot *s, const struct pkt *p, const struct ext *e, const __u8 **src, const __u8 **dst, int *ports)
{
	__u32 t = s->hash_types;
	__u16 report = REPORT_NONE;

	*ports = p->l4 != 0;
	*src = p->src;
	*dst = p->dst;
	if (p->family == 4) {
		if (p->l4 == PROTO_TCP && (t & HASH_TCPV4))
			report = REPORT_TCPV4;
		else if (p->l4 == PROTO_UDP && (t & HASH_UDPV4))
			report = REPORT_UDPV4;
		else if (t & HASH_IPV4)
			report = REPORT_IPV4, *ports = 0;
		return report;
	}
	if (p->family != 6)
		return REPORT_NONE;
	if (p->ext) {
		if (p->l4 == PROTO_TCP && (t & HASH_TCP_EX))
			report = REPORT_TCPV6_EX;
		else if (p->l4 == PROTO_UDP && (t & HASH_UDP_EX))
			report = REPORT_UDPV6_EX;
		else if (t & HASH_IP_EX)
			report = REPORT_IPV6_EX, *ports = 0;
		if (report != REPORT_NONE) {
			if (e->has_home)
				*src = e->home;
			if (e->has_rt2)
				*dst = e->rt2;
			return report;
		}
	}
	if (p->l4 == PROTO_TCP && (t & HASH_TCPV6))
		report = REPORT_TCPV6;
	else if (p->l4 == PROTO_UDP && (t & HASH_UDPV6))
		report = REPORT_UDPV6;
	else if (t & HASH_IPV6)
		report = REPORT_IPV6, *ports = 0;
	return report;
}

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

/* rss.Engine.Steer: hash type selection, hashing and the table lookup. */
static __always_inline void steer(const struct vrss_slot *s, const struct pkt *p, const struct ext *e, struct result *r)
{
	const __u8 *src, *dst;
	int ports;

	r->hash = 0;
	r->report = select_report(s, p, e, &src, &dst, &ports);
	if (r->report == REPORT_NONE) {
		r->queue = s->unclassified_queue;
		return;
	}
	r->hash = toeplitz(s, src, dst, ports, p->ports, p->family == 6);
	r->queue = s->table[r->hash & s->table_mask & (VRSS_MAX_TABLE - 1)];
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
	reader_init(skb, &rd);
	/* Until classify says otherwise the pointers point somewhere valid
	 * (never read): the verifier, which does not follow p's flags through
	 * the stack, then accepts every way of reaching the hash. */
	p.src = p.dst = p.ports = rd.l4;
	p.family = p.l4 = p.ext = 0;
	classify(skb, &rd, &e, &p);
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

char __license[] SEC("license") = "Dual BSD/GPL";
