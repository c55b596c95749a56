/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The port-security program's map layout (port.c), shared with the Go
 * publisher (package portxdp, whose golden tests pin every offset).
 * Changing anything here changes the layout stamp PORT_MAGIC.
 *
 * One map value, mmapped by the publisher: two slots, each a whole
 * policy (port.Policy), an active index and, per slot, a sequence number
 * that is odd while the slot is written; the program re-reads the number
 * after judging and starts over if it changed (as vrss.h's slots).
 */
#ifndef VRSS_PORTMAP_H
#define VRSS_PORTMAP_H

#include <linux/types.h>

/* "PRT3" little endian: layout version 3, in which a PORT_MODE_XSK slot
 * judges inbound (2, "PRT2", judged an AF_XDP port's frames as a TAP's;
 * 1 was "PORT"). */
#define PORT_MAGIC 0x33545250

/* port.MaxMACs, MaxIPv4, MaxIPv6 (+ one link-local address per MAC),
 * MaxRules. */
#define PORT_MAX_MACS 4
#define PORT_MAX_V4 16
#define PORT_MAX_V6 (16 + PORT_MAX_MACS)
#define PORT_MAX_RULES 32

/* port.Reason values the program returns besides the ACL's. */
#define PORT_ACL_ALLOW 1
#define PORT_DEFAULT_ALLOW 2
#define PORT_CONTROL 3
#define PORT_MALFORMED 4
#define PORT_SRC_MAC 5
#define PORT_VLAN 6
#define PORT_L2_PROTO 7
#define PORT_ARP_OPCODE 8
#define PORT_ARP_SENDER 9
#define PORT_RARP 10
#define PORT_SRC_IPV4 11
#define PORT_SRC_IPV6 12
#define PORT_DHCP_SERVER 13
#define PORT_DHCPV6_SERVER 14
#define PORT_ROUTER_ADVERT 15
#define PORT_REDIRECT 16
#define PORT_NDP_TARGET 17
#define PORT_ACL_DROP 18
#define PORT_DEFAULT_DENY 19
#define PORT_DST_MAC 20 /* inbound only, as the three that follow */
#define PORT_ARP_TARGET 21
#define PORT_DST_IPV4 22
#define PORT_DST_IPV6 23
#define PORT_NUM_REASONS 24

/* What becomes of the frames a slot passes (port_slot.mode). */
#define PORT_MODE_STACK 0  /* the kernel stack (a TAP) */
#define PORT_MODE_UPLINK 1 /* the uplink, by port_uplink (a TAP's fast path) */
#define PORT_MODE_XSK 2    /* the AF_XDP socket of their receive queue, by port_xsks; judged inbound */

/* Entries of port_xsks: receive queues an AF_XDP port may use. */
#define PORT_MAX_QUEUES 256

/* Counters (per-CPU array port_stats): one per reason, one per rule, then
 * what is not a frame's reason. */
#define PORT_STAT_RULE 32                         /* + rule index */
#define PORT_STAT_UNCONFIGURED (PORT_STAT_RULE + PORT_MAX_RULES) /* no policy yet: dropped */
#define PORT_STAT_RETRY (PORT_STAT_UNCONFIGURED + 1) /* a publish raced a frame: judged again */
#define PORT_STAT_TORN (PORT_STAT_UNCONFIGURED + 2)  /* gave up judging again: dropped (never expected) */
#define PORT_STAT_REDIRECT (PORT_STAT_UNCONFIGURED + 3) /* passed frames sent to the uplink */
#define PORT_STAT_XSK (PORT_STAT_UNCONFIGURED + 4) /* passed frames sent to an AF_XDP socket */
#define PORT_STAT_OTHER_QUEUE (PORT_STAT_UNCONFIGURED + 5) /* AF_XDP port: frames of the host's queues, not judged */
#define PORT_NSTATS (PORT_STAT_UNCONFIGURED + 6)

/*
 * An ACL rule: a flow.Match over the 56-byte flow key (flow.h's struct
 * fkey, words loaded little-endian), as the key words its mask touches:
 * for each, the word's index, the mask and the value under it. The
 * program compares them in order and leaves a rule at its first word
 * that differs, which for most rules of an ACL is the first (EtherType
 * and protocol share a word).
 */
struct port_term {
	__u32 word;
	__u32 mask;
	__u32 value;
};

struct port_rule {
	__u32 reason; /* PORT_ACL_ALLOW or PORT_ACL_DROP */
	__u32 nterms;
	struct port_term term[14]; /* VRSS_KEY_WORDS */
};

/* An address prefix: the address under the mask, both as loaded from the
 * frame (network byte order in memory). */
struct port_prefix4 {
	__u32 addr;
	__u32 mask;
};

struct port_prefix6 {
	__u32 addr[4];
	__u32 mask[4];
};

/* One whole policy. */
struct port_slot {
	__u32 seq;
	__u32 nmacs;
	__u32 nv4;
	__u32 nv6;       /* the policy's prefixes, then each MAC's link-local /128 if asked */
	__u32 nrules;
	__u32 dflt;      /* PORT_DEFAULT_ALLOW or PORT_DEFAULT_DENY */
	__u32 mode;      /* PORT_MODE_*: where passed frames go */
	/* PORT_MODE_XSK: the receive queues [queue_start, queue_start +
	 * queues) are the VM's, judged and passed to their sockets; frames of
	 * any other queue are the host's: not judged, passed to the stack. */
	__u32 queue_start;
	__u32 queues;
	__u32 pad;
	__u64 tag;       /* the publisher's number for this policy (debug builds record it) */
	__u64 mac[PORT_MAX_MACS]; /* bytes 0-5 of the address in a little-endian word */
	struct port_prefix4 v4[PORT_MAX_V4];
	struct port_prefix6 v6[PORT_MAX_V6];
	struct port_rule rule[PORT_MAX_RULES];
};

struct port_config {
	__u32 magic;      /* PORT_MAGIC once a policy has been published */
	__u32 active;     /* slot in use: 0 or 1 */
	__u64 generation; /* publishes so far */
	/* The longest frame the uplink takes (its MTU, Ethernet header and a
	 * VLAN tag: what the kernel's xdp_ok_fwd_dev allows); longer ones,
	 * a guest's GSO frames, go to the stack instead, which segments
	 * them. Set with the uplink, outside the slots. */
	__u32 uplink_len;
	__u32 pad;
	struct port_slot slot[2];
};

/* Debug builds record each frame's judgement here. */
struct port_debug {
	__u32 reason;
	__s32 rule;    /* ACL rule index, or -1 */
	__u32 action;  /* the XDP action returned */
	__u32 pad;
	__u64 tag;     /* the judging slot's tag */
};

#endif
