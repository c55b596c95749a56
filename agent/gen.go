package agent

// The test fixture testdata/qemu_rss_stub.o (a stand-in for QEMU's eBPF RSS
// object) is built from its C source and committed like the steering
// objects; `make generate` rebuilds it and CI checks it is unchanged.

//go:generate sh -c "clang -O2 -g -Wall -Werror -target bpf -fdebug-prefix-map=$(pwd)=. -fdebug-compilation-dir=. -I/usr/include/x86_64-linux-gnu -I/usr/include/aarch64-linux-gnu -c testdata/qemu_rss_stub.c -o testdata/qemu_rss_stub.o && llvm-strip -g testdata/qemu_rss_stub.o"
