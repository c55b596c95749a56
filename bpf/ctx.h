/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Every shared header includes this: it refuses to compile unless the
 * program chose its context first, by including ctx/skb.h or ctx/xdp.h.
 */
#ifndef VRSS_CTX_H
#define VRSS_CTX_H

#ifndef VRSS_CTX
#error "include ctx/skb.h or ctx/xdp.h before any other vrss header: the context decides how bytes are loaded"
#endif

#define barrier() asm volatile("" ::: "memory")
#define READ_ONCE_U32(x) (*(volatile __u32 *)&(x))

#endif
