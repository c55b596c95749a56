// Package xsk is vrss's AF_XDP layer: a thin receiver on Linux AF_XDP
// sockets, written on golang.org/x/sys/unix with no other dependency.
//
// The work is split the way QEMU's af-xdp backend with sock-fds expects:
//
//   - A privileged process (vrssd) creates unbound sockets with
//     NewUnbound, puts them in the XSKMAP of the XDP program it attached to
//     the device, and hands them to their owner over a unix socket
//     (SCM_RIGHTS). Creating an AF_XDP socket needs CAP_NET_RAW; nothing
//     after that does.
//   - The owner, with no capabilities, calls Setup on each: it maps its own
//     memory for the UMEM, registers it, sizes and maps the fill,
//     completion, receive (and optionally transmit) rings, binds the socket
//     to its device queue and fills the fill ring. Receive then hands it the
//     frames the program redirected to that queue's socket, and gives their
//     buffers back to the kernel.
//
// The UMEM is pinned memory charged to the owner's RLIMIT_MEMLOCK (unless
// it has CAP_IPC_LOCK): Frames × FrameSize bytes per socket.
//
// The rings are shared with the kernel. Their producer and consumer
// indices are read and written with sync/atomic (each side reads the
// other's index with acquire semantics and publishes its own with release
// semantics; Go's atomics are sequentially consistent, which is stronger),
// and every descriptor the kernel returns is checked against the UMEM and
// against the buffers this socket lent before any byte of it is read: a
// buggy kernel or a process sharing the socket cannot make Receive read
// outside the UMEM or hand out a buffer twice.
//
// Transmitting is not implemented: a transmit ring can be sized and mapped
// (as QEMU's binding does), but nothing is sent on it.
package xsk
