// Package xdptest holds the XDP classification test program (bpf/xdp_test.c):
// the steering program's headers built for the XDP context, which
// steers exactly as the socket filter does. Its test runs it through
// BPF_PROG_TEST_RUN on the differential test's frames against the rss
// engine. Nothing in production loads it.
package xdptest

//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -tags linux -target bpfel -cflags "-O2 -mcpu=v3 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu -I/usr/include/aarch64-linux-gnu" xdp ../../bpf/xdp_test.c
