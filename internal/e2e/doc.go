// Package e2e is the real-guest end-to-end harness behind `make e2e`: a
// Linux guest under QEMU (TCG: KVM is not assumed) with a 4-queue
// virtio-net device on a TAP that vrss steers, and the guest's own
// per-queue receive counters as the judge.
//
// Everything the guest needs comes from Debian packages, fetched by the
// harness itself and cached (see CacheDir):
//
//   - qemu-system-x86, busybox-static and ethtool, installed with apt-get;
//   - a linux-image-*-cloud-amd64 kernel, resolved through the
//     linux-image-cloud-amd64 metapackage, fetched with `apt-get download`
//     and unpacked with `dpkg-deb -x` (never installed).
//
// From those it builds a small initramfs (BuildInitramfs): busybox, ethtool
// with its shared libraries, and the virtio modules the cloud kernel builds
// as modules, loaded in dependency order. The guest's init brings eth0 up
// with all its queue pairs enabled (`ethtool -L`), prints a READY marker and
// then runs shell commands the host sends over the serial console, framing
// each reply with markers (see Guest.Run). The scenarios only ever ask for
// `ethtool` output, but any command works, so a scenario in which the guest
// sets RSS itself (`ethtool -X`, QEMU's rss=on with ebpf-rss-fds) needs no
// new guest code, only a different QEMU command line (Machine.Args).
//
// Scenario A (RunPreSteered) is the pre-steered TAP: the host publishes an
// RSS configuration through a vrss steering program attached to the TAP,
// injects frames with AF_PACKET, and the deltas of the guest's
// rx_queue_N_packets counters must equal the rss engine's predicted
// histogram exactly.
package e2e
