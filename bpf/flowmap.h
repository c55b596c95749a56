/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The flow build's configuration map: the RSS configuration (vrss.h) and,
 * per slot, the flow rules and RSS contexts that go with it. Shared by the
 * programs (vrssflow.c) and the Go publisher (steering/flows.go, whose
 * golden tests pin every offset). Changing anything here changes the ABI
 * stamp.
 *
 * Rules are found by hashing, not by a scan: for each distinct mask (a
 * "pattern"), the frame's key under that mask is hashed into one shared
 * open-addressing index, whose entries point at rule records in a heap.
 * A record holds only the key words its pattern's mask touches, so an
 * IPv4 5-tuple rule takes 8 words and the heap holds 10,000 of them; the
 * whole map stays under 1,000,000 bytes (docs/flows.md).
 */
#ifndef VRSS_FLOWMAP_H
#define VRSS_FLOWMAP_H

#include <linux/types.h>

#include "vrss.h"

#define VRSS_KEY_WORDS 14       /* flow.KeyWords: the key is 56 bytes */
#define VRSS_MAX_RULES 10000    /* flow.MaxRules */
#define VRSS_HEAP_WORDS 80000   /* flow.MaxRuleWords */
#define VRSS_INDEX_LEN 16384    /* index entries, a power of two */
#define VRSS_MAX_PROBE 32       /* the publisher places every rule within */
#define VRSS_MAX_PATTERNS 16    /* flow.MaxPatterns */
#define VRSS_MAX_GROUPS 64      /* flow.MaxGroups */
#define VRSS_MAX_CONTEXTS 8     /* flow.MaxContexts */
#define VRSS_CTX_TABLE 256      /* flow.MaxContextTable */
#define VRSS_CTX_KEY 64         /* flow.MaxContextKey */
#define VRSS_NIBBLES (2 * VRSS_MAX_INPUT)

/* Record metadata words (heap[off], heap[off + 1], heap[off + 2]), then the
 * pattern's key words, the record padded to an even number of words:
 *   m0: rank (bits 0-15, lower wins) | action (16-19) | pattern (20-23) | arg (24-31)
 *   m1: rule id
 *   m2: counter (0-15) | group index (16-23) | rule priority (24-31)
 * An index entry is 0 (empty) or 1 + the record's offset / 2. */
#define VRSS_REC_META 3
#define VRSS_ACTION_DROP 1
#define VRSS_ACTION_QUEUE 2
#define VRSS_ACTION_CONTEXT 3

struct vrss_pattern {
	__u32 mask[16];    /* over the key's words; 14 used */
	__u8 words[16];    /* the words the mask touches, in order */
	__u32 cmask[4];    /* mask[words[j]], 0 past nwords: the short path */
	__u32 nwords;
	__u32 min_rank;    /* the best rank among its rules */
	__u32 heap_start;  /* its records, for the publisher's reads */
	__u32 nrules;
	__u32 stride;      /* words per record */
	__u32 pad;
};

struct vrss_group {
	__u32 id;
	__u16 priority;
	__u8 host;
	__u8 pad;
};

/* An RSS context: rss.Config, with the Toeplitz tables by nibble (16
 * entries per input half-byte: 4.5 KiB instead of the default slot's 36
 * KiB; twice the lookups). */
struct vrss_context {
	__u32 valid;
	__u32 hash_types;
	__u32 table_mask;
	__u16 unclassified_queue;
	__u16 key_len;
	__u8 key[VRSS_CTX_KEY];
	__u32 nibble[VRSS_NIBBLES][16];
	__u16 table[VRSS_CTX_TABLE];
};

/* select_report takes a context for a slot: the fields it reads must lie
 * where a slot's do. */
_Static_assert(__builtin_offsetof(struct vrss_context, hash_types) == __builtin_offsetof(struct vrss_slot, hash_types), "context and slot disagree on hash_types");

struct vrss_flows {
	__u32 seed;        /* of the index hash */
	__u32 npatterns;   /* 0: no rules */
	__u32 nrules;
	__u32 ngroups;
	__u32 has_drop;    /* some rule drops: the filter program looks */
	__u32 next_counter; /* the publisher's round-robin counter cursor */
	__u32 pad[2];
	struct vrss_group group[VRSS_MAX_GROUPS];
	struct vrss_pattern pattern[VRSS_MAX_PATTERNS];
	struct vrss_context context[VRSS_MAX_CONTEXTS]; /* id c at c - 1 */
	__u16 index[VRSS_INDEX_LEN];
	__u32 heap[VRSS_HEAP_WORDS];
};

/* flows[s] belongs to base.slot[s] and is covered by its seq. */
struct vrss_flow_config {
	struct vrss_config base;
	struct vrss_flows flows[2];
};

/* Flow counters (per-CPU, vrss_flow_stats): a hit count per rule counter,
 * then drops, then per context and queue. */
#define VRSS_FSTAT_OVERFLOW VRSS_MAX_RULES /* rules that got no counter of their own */
#define VRSS_FSTAT_DROP (VRSS_MAX_RULES + 1)   /* frames the filter dropped */
#define VRSS_FSTAT_RACE (VRSS_MAX_RULES + 2)   /* a drop rule met by the steering program (the set changed between the two) */
#define VRSS_FSTAT_NOJUMP (VRSS_MAX_RULES + 3) /* the rule path's program was missing: steered by the default configuration */
#define VRSS_FSTAT_CTX (VRSS_MAX_RULES + 4)    /* + (context - 1) * VRSS_MAX_QUEUES + queue */
#define VRSS_NFSTATS (VRSS_FSTAT_CTX + VRSS_MAX_CONTEXTS * VRSS_MAX_QUEUES)

/* Debug flow builds record the last result here. */
struct vrss_flow_debug {
	__u32 hash;
	__u16 report;
	__u16 queue;
	__u32 rule_id;
	__u16 context;
	__u8 has_rule;
	__u8 drop;
};

#endif
