// Package xdptest holds the XDP classification test program (bpf/xdp_test.c):
// the steering program's headers built for the XDP context, which
// steers exactly as the socket filter does. Its test runs it through
// BPF_PROG_TEST_RUN on the differential test's frames against the rss
// engine. Nothing in production loads it. steering/gen.go generates it,
// with the same flags as the steering program.
package xdptest
