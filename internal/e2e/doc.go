// Package e2e is the real-guest end-to-end harness behind `make e2e`: a
// Linux guest under QEMU (TCG: KVM is not assumed), started directly or by
// libvirt, with a 4-queue virtio-net device on a TAP that vrss steers, and
// the guest's own per-queue receive counters as the judge.
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
// each reply with markers (see Guest.Run): the scenarios run `ethtool`.
//
// Scenario A (RunPreSteered) is the pre-steered TAP for any QEMU, through
// vrss end to end: a vrssd of the test's own (as in scenario B) creates
// the TAP for uid 4242 (`vrss tap create`), which starts bookworm's QEMU
// 7.2 itself with `vrss qemu exec --tap NAME -- qemu-system-x86_64 ...`
// (the queue fds come from vrssd and are inherited; no --ebpf-rss), and
// sets each RSS configuration with `vrss rss set`. QEMU 7.2 detaches any
// steering program whenever the guest sets its queue pairs (at probe and
// at ethtool -L); vrssd attaches it again by itself, and the report says
// how long steering was missing, from a kernel trace of the
// TUNSETSTEERINGEBPF calls (steerTracer), and whether the frames sent at
// READY were all steered. The harness injects
// frames with AF_PACKET, and the deltas of the guest's rx_queue_N_packets
// counters, and of the program's per-queue counters (`vrss stats --json`),
// must equal the rss engine's predicted histogram exactly.
//
// Scenario B (RunGuestRSS) is QEMU's own eBPF RSS program, handed to an
// unprivileged QEMU: QEMU 10 from bookworm-backports (downloaded and
// unpacked, never installed) runs as uid 4242 through `vrss qemu exec
// --ebpf-rss`, against a vrssd of the test's own (built by the test, in
// the test's network namespace, with a policy that lets 4242 create the TAP
// and allows that QEMU binary). vrssd asks the binary for its object (QMP
// request-ebpf), loads it and hands QEMU the program and maps
// (ebpf-rss-fds, rss=on). The guest sets its own key and table (ethtool
// -X) and hash types (ethtool -N rx-flow-hash); the harness reads them back
// (ethtool -x, -n), checks that QEMU's maps (taken from QEMU with
// pidfd_getfd) hold the same, injects frames, and the guest's counter
// deltas must equal the engine's prediction for that configuration, with
// QEMU's program run once per frame. A characterising pass then sends edge
// kinds (fragments, extension headers, VLAN tags, malformed headers, a hash
// of 0) and reports, per kind, the engine's prediction, the guest's
// counters, the queues QEMU's live program picks in BPF_PROG_TEST_RUN, and
// the rule that explains them; the differences are in docs/semantics.md.
//
// Scenario L (RunLibvirt) is libvirt on a vrss TAP, the way most people run
// QEMU and the way KubeVirt's tap binding works: Debian's libvirt
// (libvirt-daemon-system, libvirt-clients, installed with apt-get; the
// harness starts virtlogd and libvirtd itself, inside the test's network
// namespace, with security_driver "none", no cgroup controllers and no
// namespaces in qemu.conf for the run) runs a transient TCG domain (virsh
// create) that boots the same guest directly, with an unmanaged 4-queue
// TAP (<interface type='ethernet'>, <target dev='NAME' managed='no'/>,
// <driver name='qemu' queues='4'/>) that vrssd created for libvirt-qemu
// and libvirtd opens by name. The guest's per-queue counters must equal
// the engine's prediction after boot, after the guest halves and restores
// its queue count (ethtool -L), after a live `vrss rss set`, and after
// virsh destroy and virsh create; nobody runs `vrss tap attach`, and the
// report says, per step, when QEMU detached the program and how soon vrssd
// attached it again. VRSS_E2E_LIBVIRT_RSS=1 adds a characterisation of
// rss='on' with QEMU 7.2 (not judged).
//
// Scenario R (RunFlows) is flow rules and an RSS context on a guest's TAP
// (issue #13), through vrssd the way a platform would use it. The set
// (FlowSet): RSS over the four queues for what no rule matches; in a host
// group, IPv4 TCP to port 5001 to queue 1, IPv4 UDP to port 5002 to RSS
// context 1 (queues 2 and 3 in a 3:1 table, its own random key), IPv4 TCP
// to port 5003 dropped. A vrssd of the test's own creates the TAP with
// flows (the flow build of the program, and its filter that drops at the
// TAP's tc egress) for uid 4242 at the platform's request, and installs
// the set: root's calls through vrssd's client library (agent/client:
// Create with Flows, SetRSS, RSSContextAdd, FlowAdd), since the vrss CLI
// has no flow commands yet; the whole set is read back through vrssd
// (GetRSS, FlowList, RSSContexts) before the guest starts and at the end,
// and must give every frame the predicted verdict. uid 4242 starts
// bookworm's QEMU 7.2 with `vrss qemu exec --tap NAME` (no rss=on), as in
// scenario A: QEMU detaches the steering program at the guest's MQ
// commands and vrssd attaches it again (traced; frames sent at READY must
// all be steered). Without rss=on the guest has no RSS of its own (its
// ethtool -X fails, reported) and cannot replace the host's set. The
// traffic (flowTraffic, shuffled, one AF_PACKET send per frame): the demo
// kinds, near misses of the rules (IPv6 to the ports, the other
// protocol), 5001, 5002 from 200 source ports, and 5003. The deltas of
// the guest's rx_queue_N_packets and of the program's per-queue counters
// (vrssd's stats) must equal flow.Engine's prediction exactly (the
// dropped frames excluded: the guest's total is the kept frames, as is
// the TAP's tx_packets); every dropped frame's send must fail with
// ENOBUFS and every other succeed; vrssd's drop counter must equal the
// dropped frames, and its rule hits and the context's per-queue frames
// the engine's.
//
// Scenario P (RunPortSecurity) is port security on a guest's TAP (issue
// #14), set as an operator sets it. A vrssd of the test's own creates the
// TAP for uid 4242 (`vrss tap create`); root sets the policy with `vrss
// port set TAP --mac --ip 192.0.2.10/32 --link-local --acl FILE --default
// deny` (PortPolicy: the ACL lets the guest ping the host and reach its TCP
// port 5201 and UDP port 5202), the owner may `vrss port show` it but its
// `vrss port clear` must be refused; uid 4242 starts QEMU with `vrss qemu
// exec`. The TAP's host end has 192.0.2.1/24 in the test's namespace, the
// guest 192.0.2.10/24, each a permanent neighbour entry for the other, and
// the guest no IPv6, so that nothing crosses the wire but what a step
// sends. The guest then, step by step: pings the host, sends a TCP stream
// (busybox nc) and UDP datagrams (guestsend), all allowed; pings from
// another MAC (ip link set address) and from an address it does not own (ip
// addr add, ping -I), claims another address with a gratuitous ARP
// (arping -U), answers DHCPDISCOVERs the host injects with its own DHCP
// server (udhcpd, a static lease), and sends router advertisements from its
// link-local address. What busybox cannot send comes from guestsend
// (internal/e2e/guestsend), a static Go program the harness builds with
// CGO_ENABLED=0 and puts into the image (Options.GuestFiles): UDP through a
// socket, router advertisements through AF_PACKET. Around each step the
// harness reads `vrss port stats --json` and the guest's eth0 tx_packets
// until both settle: the counter of the step's reason (acl_allow and its
// rule's hits; src_mac, src_ipv4, arp_sender, dhcp_server, router_advert)
// must have grown by exactly what the guest's tool says it sent (ping's
// transmitted, arping's probes, udhcpd's logged offers, guestsend's count)
// and by the tx_packets delta, no other reason may move, allowed frames must
// reach the TAP's host end (an AF_PACKET socket on it) and be delivered
// (ping's replies in the guest, the bytes and datagrams the test's
// listeners receive), dropped ones never. Then the fast path: root sets
// the same policy with `--uplink` naming a veth in the namespace (its peer
// has the TAP's MAC and an XDP program that passes, which a veth needs to
// take redirected frames), and the guest pings, sends TCP and UDP and
// spoofs its address again: every allowed frame must be redirected
// (`redirected` in the stats), arrive at the veth's peer and not at the
// TAP's host end, and be delivered (the answers come back through the
// TAP); the spoofed ones arrive nowhere.
//
// Scenario X (RunAFXDP) is a vrssd AF_XDP port (issue #16) under QEMU's
// af-xdp netdev. No Debian QEMU has af-xdp (none is built with libxdp),
// so the harness builds one (BuildAFXDPQEMU), once, into the cache as
// qemu-afxdp-KEY, before the scenarios: `make e2e` runs TestE2EPrepare
// first, with its own timeout, so that a cold build (6 to 10 minutes on
// two cores) does not count against TestE2E's budget. KEY is a
// digest of its inputs: bookworm-backports' qemu source (only its +ds
// orig tarball, fetched with apt-helper against the hash in the Sources
// index), sid's xdp-tools source (apt-get source) for a static libxdp
// built against the system's libbpf, trixie's meson and python3-pycotap
// packages (unpacked onto PYTHONPATH, as the +ds tarball has no
// python/wheels), the build packages' versions and the configure options
// (--target-list=x86_64-softmmu --enable-af-xdp --disable-install-blobs;
// empty stand-ins for the edk2 blobs the tarball lacks, never
// decompressed; one patch, patchAFXDPReadPoll, makes QEMU 10.0.2 poll
// every queue's socket, not only the first's). Each step logs to qemu-afxdp-KEY.log/STEP.log, and a
// failure names its step and shows its log's tail; the result must list
// af-xdp in `-netdev help`, and later runs reuse it. Nothing is built
// unless a scenario needs it. The scenario: in the test's namespace a
// veth pair with 4 queues (xsk/xsktest's, driver-mode XDP, its sender
// picking each frame's receive queue), root asks vrssd for an AF_XDP port
// on queues 1-2 of one end for uid 4242 (AFXDPCreate) and sets its port
// policy (PortSet: the guest's MAC and IPv4 address, default allow; an
// AF_XDP port judges the frames arriving for the guest, inbound); uid
// 4242 starts the built QEMU with CAP_IPC_LOCK as its only capability,
// ambient, through `vrss qemu exec --afxdp PORT --force-copy` (-netdev
// af-xdp,inhibit=on,sock-fds=3:4,queues=2,start-queue=1,force-copy=on,
// the sockets inherited; firmware from the system QEMU and SeaBIOS, -L
// /usr/share/qemu -L /usr/share/seabios). Frames go to each of the 4 device queues, allowed
// ones and, on the port's queues, ones to another MAC or to an address
// not the guest's (dst_mac, dst_ipv4): the guest's rx_queue_N_packets must grow by exactly the
// allowed frames of device queue 1+N, the port's counters must count each
// denied frame under its reason, the allowed ones as xsk_redirected and
// the other queues' as other_queue, and QEMU's /proc status must show uid
// 4242 with CAP_IPC_LOCK alone.
//
// Scenario XM (RunAFXDPMapPath, opt-in: VRSS_E2E_SCENARIOS=XM) is X with
// QEMU 10.1's map-path form: sid's QEMU 10.2 built the same way
// (BuildAFXDPMapPathQEMU; empty stand-ins for the device trees the +ds
// tarball lacks, and the read-poll patch at 10.1's loop end, where with
// inhibit=on only the last queue's socket was polled), started by uid
// 4242 with CAP_IPC_LOCK and CAP_NET_RAW, ambient, through `vrss qemu exec
// --afxdp PORT --map-path`: QEMU makes its own sockets and puts them into
// the owner's pin of the port's XSKMAP; it is judged as X is, with
// QEMU's capabilities those two.
package e2e
