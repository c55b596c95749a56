package main

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/vrss-dev/vrss/rss"
)

// Microsoft's RSS verification suite ("Verifying the RSS Hash Calculation"),
// with the default key: the hash of the addresses alone and of addresses
// plus ports.
var msVectors = []struct {
	src, dst     string
	sport, dport uint16
	ip, l4       uint32
}{
	{"66.9.149.187", "161.142.100.80", 2794, 1766, 0x323e8fc2, 0x51ccc178},
	{"199.92.111.2", "65.69.140.83", 14230, 4739, 0xd718262a, 0xc626b0ea},
	{"24.19.198.95", "12.22.207.184", 12898, 38024, 0xd2d0a5de, 0x5c2b394a},
	{"38.27.205.30", "209.142.163.6", 48228, 2217, 0x82989176, 0xafc7327f},
	{"153.39.163.191", "202.188.127.2", 44251, 1303, 0x5d1809c5, 0x10e828a2},
	{"3ffe:2501:200:1fff::7", "3ffe:2501:200:3::1", 2794, 1766, 0x2cc18cd5, 0x40207d3d},
	{"3ffe:501:8::260:97ff:fe40:efab", "ff02::1", 14230, 4739, 0x0f0c461c, 0xdde51bbf},
	{"3ffe:1900:4545:3:200:f8ff:fe21:67cf", "fe80::200:f8ff:fe21:67cf", 44251, 38024, 0x4b61e985, 0x02d1feef},
}

func hostPort(addr string, port uint16) string {
	return netip.AddrPortFrom(netip.MustParseAddr(addr), port).String()
}

func wantOutput(t *testing.T, want string, args ...string) {
	t.Helper()
	code, out, errOut := vrss(t, args...)
	if code != 0 || errOut != "" {
		t.Fatalf("vrss %q: exit %d, stderr %q", args, code, errOut)
	}
	if out != want+"\n" {
		t.Errorf("vrss %q: got %q, want %q", args, out, want+"\n")
	}
}

// The cases the CLI documents, exactly as a user types them.
func TestHashExamples(t *testing.T) {
	wantOutput(t, "0x51ccc178 tcpv4", "hash", "--src", "66.9.149.187:2794", "--dst", "161.142.100.80:1766", "--proto", "tcp")
	wantOutput(t, "0x323e8fc2 ipv4", "hash", "--src", "66.9.149.187", "--dst", "161.142.100.80")
	wantOutput(t, "0x40207d3d tcpv6", "hash", "--src", "[3ffe:2501:200:1fff::7]:2794", "--dst", "[3ffe:2501:200:3::1]:1766")
	wantOutput(t, "0x2cc18cd5 ipv6", "hash", "--src", "3ffe:2501:200:1fff::7", "--dst", "3ffe:2501:200:3::1")
	wantOutput(t, "0x2cc18cd5 ipv6", "hash", "--src", "[3ffe:2501:200:1fff::7]", "--dst", "[3ffe:2501:200:3::1]")
}

func TestHashMicrosoftVectors(t *testing.T) {
	for _, v := range msVectors {
		family := "v4"
		if strings.Contains(v.src, ":") {
			family = "v6"
		}
		src, dst := hostPort(v.src, v.sport), hostPort(v.dst, v.dport)
		wantOutput(t, fmt.Sprintf("0x%08x tcp%s", v.l4, family), "hash", "--src", src, "--dst", dst)
		wantOutput(t, fmt.Sprintf("0x%08x udp%s", v.l4, family), "hash", "--src", src, "--dst", dst, "--proto", "udp")
		wantOutput(t, fmt.Sprintf("0x%08x ip%s", v.ip, family), "hash", "--src", v.src, "--dst", v.dst)
		// With only address types enabled, ports are not hashed.
		wantOutput(t, fmt.Sprintf("0x%08x ip%s", v.ip, family), "hash", "--src", src, "--dst", dst, "--types", "ipv4,ipv6")
	}
}

// toeplitzBitSerial is the textbook Toeplitz hash, independent of package
// rss: for every set input bit, XOR in the 32 key bits starting there.
func toeplitzBitSerial(key, input []byte) uint32 {
	keyBit := func(i int) uint32 {
		if i/8 >= len(key) {
			return 0
		}
		return uint32(key[i/8]>>(7-i%8)) & 1
	}
	var h uint32
	for i := 0; i < 8*len(input); i++ {
		if input[i/8]>>(7-i%8)&1 == 0 {
			continue
		}
		var w uint32
		for j := 0; j < 32; j++ {
			w = w<<1 | keyBit(i+j)
		}
		h ^= w
	}
	return h
}

// The CLI hashes source then destination address, then source then
// destination port, whatever the flow; the addresses of the suite's first
// IPv6 vector swapped (a common transcription) are no exception.
func TestHashInputOrder(t *testing.T) {
	flows := []struct{ src, dst string }{
		{"3ffe:2501:200:3::1", "3ffe:2501:200:1fff::7"},
		{"161.142.100.80", "66.9.149.187"},
		{"10.0.0.1", "10.0.0.2"},
		{"fe80::1", "2001:db8::42"},
	}
	key := []byte("an arbitrary key that is forty bytes....")
	keyArg := fmt.Sprintf("%x", key)
	for _, f := range flows {
		src, dst := netip.MustParseAddr(f.src), netip.MustParseAddr(f.dst)
		in := append(src.AsSlice(), dst.AsSlice()...)
		family := "v4"
		if src.Is6() {
			family = "v6"
		}
		wantOutput(t, fmt.Sprintf("0x%08x ip%s", toeplitzBitSerial(key, in), family),
			"hash", "--key", keyArg, "--src", f.src, "--dst", f.dst)
		in = binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(in, 2794), 1766)
		wantOutput(t, fmt.Sprintf("0x%08x tcp%s", toeplitzBitSerial(key, in), family),
			"hash", "--key", keyArg, "--src", hostPort(f.src, 2794), "--dst", hostPort(f.dst, 1766))
	}
}

func TestHashOptions(t *testing.T) {
	src, dst := "--src=66.9.149.187:2794", "--dst=161.142.100.80:1766"
	// Key spellings.
	var sep []string // the key's bytes in hex
	for _, b := range rss.DefaultKey {
		sep = append(sep, fmt.Sprintf("%02x", b))
	}
	for _, key := range []string{strings.Join(sep, ":"), strings.Join(sep, " "), strings.ToUpper(strings.Join(sep, ""))} {
		wantOutput(t, "0x51ccc178 tcpv4", "hash", "--key", key, src, dst)
	}
	// Flags in any order, single or double dash.
	wantOutput(t, "0x51ccc178 tcpv4", "hash", "-proto", "tcp", dst, "-types=all", src)
	// A port on one side only: the other is 0.
	wantOutput(t, fmt.Sprintf("0x%08x tcpv4", hashOfMS("66.9.149.187", "161.142.100.80", 2794, 0)),
		"hash", src, "--dst", "161.142.100.80")
	// --proto without ports: ports 0.
	wantOutput(t, fmt.Sprintf("0x%08x udpv4", hashOfMS("66.9.149.187", "161.142.100.80", 0, 0)),
		"hash", "--src", "66.9.149.187", "--dst", "161.142.100.80", "--proto", "UDP")
	// Hash types that do not apply leave the frame unclassified.
	wantOutput(t, "0x00000000 none", "hash", src, dst, "--types", "tcpv6,udpv6,ipv6")
	wantOutput(t, "0x00000000 none", "hash", src, dst, "--types", "none")
	wantOutput(t, "0x00000000 none", "hash", "--src", "::1", "--dst", "::2", "--types", "ipv4,tcpv6")
	// IPv4 and IPv6 hash types chosen independently.
	wantOutput(t, "0x51ccc178 tcpv4", "hash", src, dst, "--types", "tcpv4")
	wantOutput(t, "0x51ccc178 udpv4", "hash", src, dst, "--types", "ipv4, udpv4", "--proto", "udp")
	wantOutput(t, "0x323e8fc2 ipv4", "hash", src, dst, "--types", "ipv4,tcpv4", "--proto", "udp")
}

func hashOfMS(src, dst string, sport, dport uint16) uint32 {
	in := append(netip.MustParseAddr(src).AsSlice(), netip.MustParseAddr(dst).AsSlice()...)
	in = binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(in, sport), dport)
	return toeplitzBitSerial(rss.DefaultKey, in)
}

func TestHashErrors(t *testing.T) {
	src, dst := "--src=66.9.149.187:2794", "--dst=161.142.100.80:1766"
	wantInputError(t, "--key: bad hex key", "hash", src, dst, "--key", "6d5g")
	wantInputError(t, "--key: bad hex key", "hash", src, dst, "--key", "6d5")
	// Every key error names the flag, an empty key too (issue 9, defect 10).
	wantInputError(t, "--key: rss: bad key size: 0 bytes, want 1 to 255", "hash", src, dst, "--key", "")
	wantInputError(t, "--key: rss: bad key size: 0 bytes", "hash", src, dst, "--key", " : ")
	wantInputError(t, "--key: rss: bad key size: 256 bytes, want 1 to 255", "hash", src, dst, "--key", strings.Repeat("00", 256))
	wantInputError(t, `unknown hash type "sctp"`, "hash", src, dst, "--types", "tcpv4,sctp")
	wantInputError(t, "--src and --dst are required", "hash", src)
	wantInputError(t, "--src and --dst are required", "hash")
	wantInputError(t, `--src: bad address "66.9.149"`, "hash", "--src", "66.9.149", dst)
	wantInputError(t, `--dst: bad address "3ffe::1:80x"`, "hash", src, "--dst", "3ffe::1:80x")
	wantInputError(t, `--dst: bad address`, "hash", src, "--dst", "161.142.100.80:65536")
	wantInputError(t, "not the same address family", "hash", src, "--dst", "[::1]:80")
	wantInputError(t, `unknown protocol "sctp"`, "hash", src, dst, "--proto", "sctp")
	wantInputError(t, `unexpected argument "extra"`, "hash", src, "extra", dst)
	wantInputError(t, "flag needs an argument: -dst", "hash", src, "--dst")
}
