// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// A stand-in for the eBPF RSS object a QEMU >= 9.0 returns from QMP
// request-ebpf, for vrssd's tests (agent/qemu_test.go), which must not
// need a real QEMU or a compiler: what vrssd relies on is here (one
// socket-filter program, three BPF_F_MMAPABLE arrays with QEMU's names,
// value sizes as in QEMU 10.0), and the program steers every packet to the
// queue in the configuration map's last two bytes, so a test can tell,
// through a memory mapping alone, that the fds it was handed are the ones
// steering the TAP. Rebuild with:
//
//	clang -O2 -g -Wall -Werror -target bpf -I/usr/include/x86_64-linux-gnu \
//	    -c qemu_rss_stub.c -o qemu_rss_stub.o && llvm-strip -g qemu_rss_stub.o
//
// (-g then strip: the maps need BTF, which llvm-strip -g keeps.)
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct stub_config {
	__u8 bytes[8];
	__u16 queue;
} __attribute__((packed));

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct stub_config);
} tap_rss_map_configurations SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u8[40]);
} tap_rss_map_toeplitz_key SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 128);
	__type(key, __u32);
	__type(value, __u16);
} tap_rss_map_indirection_table SEC(".maps");

SEC("socket")
int tun_rss_steering_prog(struct __sk_buff *skb)
{
	__u32 zero = 0;
	struct stub_config *c = bpf_map_lookup_elem(&tap_rss_map_configurations, &zero);

	return c ? c->queue : 0;
}

char __license[] SEC("license") = "Dual BSD/GPL";
