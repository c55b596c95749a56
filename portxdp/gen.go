package portxdp

// The eBPF objects are generated from bpf/port.c and committed, so users
// need no clang; `make generate` reruns this and CI fails if the result
// differs. The flags are steering/gen.go's (one compiler command for every
// vrss object): port is the production program, portdebug also records
// each frame's judgement in port_debug for the differential tests.

//go:generate -command bpf2go go run github.com/cilium/ebpf/cmd/bpf2go -tags linux -target bpfel -cflags "-O2 -mcpu=v3 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu -I/usr/include/aarch64-linux-gnu"
//go:generate bpf2go port ../bpf/port.c
//go:generate bpf2go portdebug ../bpf/port.c -- -DVRSS_DEBUG
