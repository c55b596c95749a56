// Command guestsend runs inside scenario P's guest (internal/e2e) and sends
// what busybox cannot: UDP datagrams from the guest's own stack, and
// ICMPv6 router advertisements written whole to an AF_PACKET socket. It
// prints how many it sent ("sent N") and exits non-zero if any send failed.
// The harness builds it static (CGO_ENABLED=0) and puts it into the guest
// image as /bin/guestsend.
//
//	guestsend udp HOST:PORT COUNT   COUNT datagrams through a UDP socket
//	guestsend ra IFACE COUNT        COUNT router advertisements on IFACE,
//	                                from its MAC and EUI-64 link-local
//	                                address to ff02::1
package main

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"
)

func main() {
	if len(os.Args) != 4 {
		fail("usage: guestsend udp HOST:PORT COUNT | guestsend ra IFACE COUNT")
	}
	n, err := strconv.Atoi(os.Args[3])
	if err != nil || n < 1 {
		fail("COUNT %q: want a positive number", os.Args[3])
	}
	var sent int
	switch os.Args[1] {
	case "udp":
		sent, err = sendUDP(os.Args[2], n)
	case "ra":
		sent, err = sendRA(os.Args[2], n)
	default:
		fail("unknown kind %q", os.Args[1])
	}
	fmt.Printf("sent %d\n", sent)
	if err != nil {
		fail("%v", err)
	}
}

func fail(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "guestsend: "+format+"\n", a...)
	os.Exit(1)
}

// sendUDP sends n datagrams, each naming its number, from one socket.
func sendUDP(addr string, n int) (int, error) {
	c, err := net.Dial("udp4", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	for i := range n {
		if _, err := fmt.Fprintf(c, "vrss scenario P datagram %d", i); err != nil {
			return i, err
		}
	}
	return n, nil
}

// sendRA writes n router advertisements (a router lifetime of 1800 s and
// the source link-layer address option) to the all-nodes group.
func sendRA(iface string, n int) (int, error) {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return 0, err
	}
	if len(ifi.HardwareAddr) != 6 {
		return 0, fmt.Errorf("%s has no Ethernet address", iface)
	}
	frame := routerAdvert([6]byte(ifi.HardwareAddr))
	fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_RAW, 0)
	if err != nil {
		return 0, fmt.Errorf("AF_PACKET socket: %w", err)
	}
	defer syscall.Close(fd)
	to := &syscall.SockaddrLinklayer{Ifindex: ifi.Index, Protocol: htons(0x86dd), Halen: 6}
	copy(to.Addr[:], frame[:6])
	for i := range n {
		if err := syscall.Sendto(fd, frame, 0, to); err != nil {
			return i, fmt.Errorf("send: %w", err)
		}
	}
	return n, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// routerAdvert builds the frame: Ethernet to 33:33:00:00:00:01, IPv6 from
// mac's EUI-64 link-local address to ff02::1 with hop limit 255, ICMPv6
// type 134 with a valid checksum.
func routerAdvert(mac [6]byte) []byte {
	src := [16]byte{0: 0xfe, 1: 0x80, 8: mac[0] ^ 2, 9: mac[1], 10: mac[2], 11: 0xff, 12: 0xfe, 13: mac[3], 14: mac[4], 15: mac[5]}
	dst := [16]byte{0: 0xff, 1: 0x02, 15: 1}
	icmp := []byte{
		134, 0, 0, 0, // type, code, checksum
		64, 0, 0x07, 0x08, // current hop limit, flags, router lifetime 1800
		0, 0, 0, 0, 0, 0, 0, 0, // reachable time, retransmission timer
		1, 1, // option: source link-layer address, 8 bytes
	}
	icmp = append(icmp, mac[:]...)
	binary.BigEndian.PutUint16(icmp[2:], icmp6Checksum(src, dst, icmp))
	f := []byte{0x33, 0x33, 0, 0, 0, 1}
	f = append(f, mac[:]...)
	f = append(f, 0x86, 0xdd, 0x60, 0, 0, 0)
	f = binary.BigEndian.AppendUint16(f, uint16(len(icmp)))
	f = append(f, 58, 255)
	f = append(append(f, src[:]...), dst[:]...)
	return append(f, icmp...)
}

// icmp6Checksum is the Internet checksum over the IPv6 pseudo-header and
// the message (RFC 8200 section 8.1).
func icmp6Checksum(src, dst [16]byte, msg []byte) uint16 {
	var s uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			s += uint32(binary.BigEndian.Uint16(b[i:]))
		}
		if len(b)%2 == 1 {
			s += uint32(b[len(b)-1]) << 8
		}
	}
	add(src[:])
	add(dst[:])
	s += uint32(len(msg)) + 58
	add(msg)
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}
