/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * vrss steering program: configuration map layout, shared by the program
 * (vrss.c) and the Go loader (steering/layout.go, which has golden tests
 * for every offset below). Changing anything here changes the ABI stamp.
 */
#ifndef VRSS_H
#define VRSS_H

#include <linux/types.h>

#define VRSS_MAGIC 0x53535256 /* "VRSS" little endian: layout version 1 */

#define VRSS_MAX_INPUT 36     /* two IPv6 addresses and two ports */
#define VRSS_MAX_KEY 256      /* stored key bytes (the key itself is 1..255) */
#define VRSS_MAX_TABLE 32768  /* indirection table entries, a power of two */
#define VRSS_MAX_QUEUES 256   /* tun's MAX_TAP_QUEUES */

/* Parser bounds; the Go engine (package rss) uses the same ones. */
#define VRSS_MAX_VLAN 2
#define VRSS_MAX_EXT 8
#define VRSS_MAX_DSTOPTS 16

/* Statistics counters (per-CPU array indices). */
#define VRSS_STAT_UNCLASSIFIED VRSS_MAX_QUEUES       /* also counted on its queue */
#define VRSS_STAT_RETRY (VRSS_MAX_QUEUES + 1)        /* a publish raced a packet: re-read */
#define VRSS_STAT_TORN (VRSS_MAX_QUEUES + 2)         /* gave up re-reading (never expected) */
#define VRSS_STAT_UNCONFIGURED (VRSS_MAX_QUEUES + 3) /* no configuration published yet */
#define VRSS_NSTATS (VRSS_MAX_QUEUES + 4)

/*
 * One complete configuration. The writer fills an inactive slot between two
 * increments of seq (odd while writing), then makes it active; the program
 * re-reads seq after steering and starts over if it changed, so no packet is
 * ever steered by a mix of two configurations.
 */
struct vrss_slot {
	__u32 seq;
	__u32 hash_types;
	__u32 table_mask; /* table length - 1 */
	__u16 unclassified_queue;
	__u16 key_len;
	__u8 key[VRSS_MAX_KEY];
	/* toeplitz[i][v]: contribution of input byte value v at position i. */
	__u32 toeplitz[VRSS_MAX_INPUT][256];
	__u16 table[VRSS_MAX_TABLE];
};

struct vrss_config {
	__u32 magic;  /* VRSS_MAGIC once a configuration has been published */
	__u32 active; /* slot in use: 0 or 1 */
	__u64 generation; /* publishes so far */
	struct vrss_slot slot[2];
};

/* Debug builds record the last result here, so tests compare hashes too. */
struct vrss_debug {
	__u32 hash;
	__u16 report;
	__u16 queue;
};

#endif
