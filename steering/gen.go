package steering

// The eBPF objects are generated from bpf/*.c and committed, so users need no
// clang. `make generate` reruns this; CI fails if the result differs.
//
// vrss is the production program; vrssdebug also records each packet's hash
// and report for the differential tests; vrssflow is the build with flow
// rules and RSS contexts (a steering program and a tc filter that drops),
// vrssflowdebug its recording twin; vrssbitserial hashes bit by bit and
// floor returns 0 and readfloor only reads the frame as vrss does — those
// three exist only as benchmark baselines, generated into package
// steering/baseline, which vrssd does not link. xdp, in package xdptest, is the
// same program built for the XDP context, for its classification test.
//
// Every object is built by the one bpf2go command defined below, with the
// same flags, so that the benchmark compares like with like; a variant adds
// only its -D after "--". -mcpu=v3 (bpf2go's default is v1) lets clang use
// 32-bit ALU operations and jumps, which Linux has verified since 5.1: fewer
// instructions (no shifts to clear upper halves) and a slightly faster
// program.

//go:generate -command bpf2go go run github.com/cilium/ebpf/cmd/bpf2go -tags linux -target bpfel -cflags "-O2 -mcpu=v3 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu -I/usr/include/aarch64-linux-gnu"
//go:generate bpf2go vrss ../bpf/vrss.c
//go:generate bpf2go vrssdebug ../bpf/vrss.c -- -DVRSS_DEBUG
//go:generate bpf2go vrssflow ../bpf/vrssflow.c
//go:generate bpf2go vrssflowdebug ../bpf/vrssflow.c -- -DVRSS_DEBUG
//go:generate bpf2go -go-package baseline -output-dir baseline vrssbitserial ../bpf/vrss.c -- -DVRSS_BITSERIAL
//go:generate bpf2go -go-package baseline -output-dir baseline floor ../bpf/floor.c
//go:generate bpf2go -go-package baseline -output-dir baseline readfloor ../bpf/floor.c -- -DVRSS_READ_FLOOR
//go:generate bpf2go -go-package xdptest -output-dir xdptest xdp ../bpf/xdp_test.c
