package steering

// The eBPF objects are generated from bpf/*.c and committed, so users need no
// clang. `make generate` reruns this; CI fails if the result differs.
//
// vrss is the production program; vrssdebug also records each packet's hash
// and report for the differential tests; vrssbitserial hashes bit by bit and
// floor returns 0 and readfloor only reads the frame as vrss does — those
// three exist only as benchmark baselines.
//
// -mcpu=v3 (bpf2go's default is v1) lets clang use 32-bit ALU operations and
// jumps, which Linux has verified since 5.1: fewer instructions (no shifts
// to clear upper halves) and a slightly faster program. Every object is
// built with the same flags, so that the benchmark compares like with like.

//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -tags linux -target bpfel -cflags "-O2 -mcpu=v3 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu -I/usr/include/aarch64-linux-gnu" vrss ../bpf/vrss.c
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -tags linux -target bpfel -cflags "-O2 -mcpu=v3 -g -Wall -Werror -DVRSS_DEBUG -I/usr/include/x86_64-linux-gnu -I/usr/include/aarch64-linux-gnu" vrssdebug ../bpf/vrss.c
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -tags linux -target bpfel -cflags "-O2 -mcpu=v3 -g -Wall -Werror -DVRSS_BITSERIAL -I/usr/include/x86_64-linux-gnu -I/usr/include/aarch64-linux-gnu" vrssbitserial ../bpf/vrss.c
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -tags linux -target bpfel -cflags "-O2 -mcpu=v3 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu -I/usr/include/aarch64-linux-gnu" floor ../bpf/floor.c
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -tags linux -target bpfel -cflags "-O2 -mcpu=v3 -g -Wall -Werror -DVRSS_READ_FLOOR -I/usr/include/x86_64-linux-gnu -I/usr/include/aarch64-linux-gnu" readfloor ../bpf/floor.c
