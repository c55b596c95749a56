/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Protocol numbers and header offsets the parser uses, named once. The Go
 * side has the same names in package internal/proto, and its test checks
 * every #define here against them: add a name to both.
 */
#ifndef VRSS_PROTO_H
#define VRSS_PROTO_H

/* Ethernet (IEEE 802.3) and VLAN tags (802.1Q, 802.1ad). */
#define VRSS_ETH_ALEN 6
#define VRSS_ETH_TYPE_OFF 12 /* EtherType after the two addresses */
#define VRSS_ETH_HLEN 14
#define VRSS_VLAN_HLEN 4 /* TPID and TCI; the next EtherType follows */
#define VRSS_ETH_P_IPV4 0x0800
#define VRSS_ETH_P_IPV6 0x86dd
#define VRSS_ETH_P_8021Q 0x8100
#define VRSS_ETH_P_8021AD 0x88a8

/* IPv4 (RFC 791 section 3.1). */
#define VRSS_IPV4_MIN_HLEN 20
#define VRSS_IPV4_FRAG_OFF 6     /* flags and fragment offset, 16 bits */
#define VRSS_IPV4_FRAG_MASK 0x3fff /* MF and the offset: set in every fragment */
#define VRSS_IPV4_OFFSET_MASK 0x1fff /* the offset alone: zero in a first fragment */
#define VRSS_IPV4_PROTO_OFF 9
#define VRSS_IPV4_SRC_OFF 12
#define VRSS_IPV4_DST_OFF 16
#define VRSS_IPV4_ADDR_LEN 4

/* IPv6 (RFC 8200 section 3). */
#define VRSS_IPV6_HLEN 40
#define VRSS_IPV6_NEXT_OFF 6
#define VRSS_IPV6_SRC_OFF 8
#define VRSS_IPV6_DST_OFF 24
#define VRSS_IPV6_ADDR_LEN 16

/* Next-header values: transports, and the extension headers the walk
 * passes through (RFC 8200 section 4, RFC 7045's list). */
#define VRSS_IPPROTO_HOPOPTS 0   /* hop-by-hop options, RFC 8200 4.3 */
#define VRSS_IPPROTO_TCP 6
#define VRSS_IPPROTO_UDP 17
#define VRSS_IPPROTO_ROUTING 43  /* RFC 8200 4.4 */
#define VRSS_IPPROTO_FRAGMENT 44 /* RFC 8200 4.5 */
#define VRSS_IPPROTO_AH 51       /* RFC 4302 */
#define VRSS_IPPROTO_DSTOPTS 60  /* RFC 8200 4.6 */
#define VRSS_IPPROTO_MH 135      /* mobility, RFC 6275 */
#define VRSS_IPPROTO_HIP 139     /* RFC 7401 */
#define VRSS_IPPROTO_SHIM6 140   /* RFC 5533 */
#define VRSS_IPPROTO_EXP1 253    /* experiments, RFC 3692 */
#define VRSS_IPPROTO_EXP2 254

/* Extension headers. */
#define VRSS_IPV6_EXT_MIN_HLEN 8 /* every one is at least 8 bytes */
#define VRSS_IPV6_FRAG_HLEN 8
#define VRSS_IPV6_FRAG_MASK 0xfff9 /* offset and M: set in every fragment */
#define VRSS_IPV6_OFFSET_MASK 0xfff8 /* the offset alone: zero in a first fragment */
#define VRSS_IPV6_RT2_TYPE 2       /* type 2 routing header, RFC 6275 6.4 */
#define VRSS_IPV6_RT2_EXTLEN 2     /* its length field: 24 bytes */
#define VRSS_IPV6_RT2_ADDR_OFF 8   /* its home address */
#define VRSS_IPV6_OPT_PAD1 0
#define VRSS_IPV6_OPT_HOME 0xc9 /* home address option, RFC 6275 6.3 */

/* Transport headers: the hash needs them whole; ports come first. */
#define VRSS_TCP_MIN_HLEN 20
#define VRSS_TCP_FLAGS_OFF 13 /* CWR ECE URG ACK PSH RST SYN FIN */
#define VRSS_UDP_HLEN 8
#define VRSS_PORTS_LEN 4

#endif
