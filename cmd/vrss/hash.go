package main

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/vrss-dev/vrss/internal/frame"
	"github.com/vrss-dev/vrss/rss"
)

// protoICMPv6 is the IPv6 next header value of ICMPv6, the IPv6 counterpart
// of frame.ProtoICMP for a plain IP packet.
const protoICMPv6 = 58

const hashDescription = `
Compute the virtio-net RSS hash of one flow, the way a device with the given
key and hash types would: build an Ethernet frame from --src and --dst (IPv4
or IPv6, both the same family), steer it through the reference engine and
print the hash as 0x and eight hex digits, then the hash report, e.g.

    $ vrss hash --src 66.9.149.187:2794 --dst 161.142.100.80:1766
    0x51ccc178 tcpv4

With a port on either address the frame carries TCP (or --proto udp); a
missing port counts as 0. Without ports or --proto it is a plain IP packet
(ICMP, or ICMPv6 for IPv6), hashed on addresses only. A frame no enabled
hash type applies to prints 0x00000000 none.`

func runHash(args []string, stdout, stderr io.Writer) int {
	return report(stderr, "hash", hashMain(args, stdout))
}

func hashMain(args []string, stdout io.Writer) error {
	fs := newFlagSet("hash", "--src IP[:PORT] --dst IP[:PORT] [--proto tcp|udp] [--key HEX] [--types LIST]", hashDescription)
	keyHex := fs.String("key", hex.EncodeToString(rss.DefaultKey),
		"Toeplitz key in `HEX`; bytes may be separated by ':' or spaces; the default is the\nMicrosoft verification key, which many drivers use")
	types := fs.String("types", "all",
		"enabled hash types, a comma-separated `LIST` of ipv4, tcpv4, udpv4, ipv6,\ntcpv6, udpv6, ip_ex, tcp_ex, udp_ex, all or none")
	srcArg := fs.String("src", "", "source address `IP[:PORT]`; an IPv6 address with a port is [IP]:PORT (required)")
	dstArg := fs.String("dst", "", "destination address `IP[:PORT]` (required)")
	protoArg := fs.String("proto", "", "transport protocol, `tcp|udp`; tcp when a port is given and --proto is not")
	pos, err := fs.parse(args, stdout)
	if err != nil {
		return err
	}
	if err := noArgs(pos); err != nil {
		return err
	}

	key, err := parseKeyFlag(*keyHex)
	if err != nil {
		return err
	}
	t, err := rss.ParseHashTypes(*types)
	if err != nil {
		return asInput(fmt.Errorf("--types: %w", err))
	}
	spec, err := flowSpec(*srcArg, *dstArg, *protoArg)
	if err != nil {
		return err
	}
	// A one-entry table: the queue is irrelevant, only hash and report count.
	e, err := rss.New(rss.Config{HashTypes: t, Key: key, Table: []uint16{0}})
	if err != nil {
		return asInput(err)
	}
	r := e.Steer(frame.Build(spec))
	w := bufio.NewWriter(stdout)
	fmt.Fprintf(w, "0x%08x %s\n", r.Hash, r.Report)
	return w.Flush()
}

// parseKeyFlag parses a --key value and checks its length against the
// engine's bounds, so that every key error names the flag.
func parseKeyFlag(s string) ([]byte, error) {
	key, err := rss.ParseKey(s)
	if err != nil {
		return nil, asInput(fmt.Errorf("--key: %w", err))
	}
	if len(key) == 0 || len(key) > rss.MaxKeySize {
		return nil, asInput(fmt.Errorf("--key: %w: %d bytes, want 1 to %d", rss.ErrKeySize, len(key), rss.MaxKeySize))
	}
	return key, nil
}

// flowSpec turns the --src, --dst and --proto arguments into a frame.
func flowSpec(srcArg, dstArg, protoArg string) (frame.Spec, error) {
	if srcArg == "" || dstArg == "" {
		return frame.Spec{}, inputErrorf("--src and --dst are required (run 'vrss hash -h')")
	}
	src, sport, sok, err := parseEndpoint(srcArg)
	if err != nil {
		return frame.Spec{}, asInput(fmt.Errorf("--src: %w", err))
	}
	dst, dport, dok, err := parseEndpoint(dstArg)
	if err != nil {
		return frame.Spec{}, asInput(fmt.Errorf("--dst: %w", err))
	}
	if src.Is4() != dst.Is4() {
		return frame.Spec{}, inputErrorf("--src %s and --dst %s are not the same address family", src, dst)
	}
	s := frame.Spec{Src: src, Dst: dst, SrcPort: sport, DstPort: dport}
	switch strings.ToLower(protoArg) {
	case "":
		switch {
		case sok || dok:
			s.Proto = frame.ProtoTCP
		case src.Is4():
			s.Proto = frame.ProtoICMP
		default:
			s.Proto = protoICMPv6
		}
	case "tcp":
		s.Proto = frame.ProtoTCP
	case "udp":
		s.Proto = frame.ProtoUDP
	default:
		return frame.Spec{}, inputErrorf("--proto: unknown protocol %q (want tcp or udp)", protoArg)
	}
	return s, nil
}

// parseEndpoint parses IPv4, IPv4:PORT, IPv6, [IPv6] or [IPv6]:PORT and
// reports whether a port was given.
func parseEndpoint(s string) (addr netip.Addr, port uint16, hasPort bool, err error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().WithZone(""), ap.Port(), true, nil
	}
	bare := s
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		bare = s[1 : len(s)-1]
	}
	addr, err = netip.ParseAddr(bare)
	if err != nil {
		return netip.Addr{}, 0, false, fmt.Errorf("bad address %q: want IPv4, IPv4:PORT, IPv6 or [IPv6]:PORT", s)
	}
	return addr.WithZone(""), 0, false, nil
}
