package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// pcapngMagic is the block type of a pcapng section header block, the first
// four bytes of every pcapng file (the same in either byte order).
var pcapngMagic = []byte{0x0a, 0x0d, 0x0d, 0x0a}

// packetReader is what pcapgo's pcap and pcapng readers have in common.
type packetReader interface {
	ZeroCopyReadPacketData() ([]byte, gopacket.CaptureInfo, error)
	LinkType() layers.LinkType
}

// readFrames calls fn with each frame of the pcap or pcapng file at path,
// which may be gzip-compressed, numbering frames from 1. The data passed to
// fn is only valid during the call. Only Ethernet captures are accepted.
// Every error is an input error: the file is unreadable or invalid.
func readFrames(path string, fn func(n int, data []byte)) error {
	f, err := os.Open(path)
	if err != nil {
		return asInput(err)
	}
	defer f.Close()
	r, err := newPacketReader(f)
	if err != nil {
		return inputErrorf("%s: not a valid pcap or pcapng file: %v", path, err)
	}
	if lt := r.LinkType(); lt != layers.LinkTypeEthernet {
		return inputErrorf("%s: link type %d (%s) is not supported, only Ethernet (1)", path, lt, lt)
	}
	for n := 1; ; n++ {
		data, _, err := r.ZeroCopyReadPacketData()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				err = errors.New("file is truncated")
			}
			return inputErrorf("%s: frame %d: %v", path, n, err)
		}
		fn(n, data)
	}
}

// newPacketReader picks the pcap or pcapng reader by the file's magic
// number, after undoing gzip compression if there is any.
func newPacketReader(f io.Reader) (packetReader, error) {
	br := bufio.NewReader(f)
	if m, _ := br.Peek(2); len(m) == 2 && m[0] == 0x1f && m[1] == 0x8b {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return nil, err
		}
		br = bufio.NewReader(gz)
	}
	magic, err := br.Peek(4)
	if err != nil {
		if err == io.EOF {
			return nil, errors.New("file is empty or too short")
		}
		return nil, err
	}
	if bytes.Equal(magic, pcapngMagic) {
		// Frames of an interface with another link type than the first
		// are an error rather than silently skipped.
		r, err := pcapgo.NewNgReader(br, pcapgo.NgReaderOptions{ErrorOnMismatchingLinkType: true})
		if err != nil {
			return nil, fmt.Errorf("pcapng: %w", err)
		}
		return r, nil
	}
	r, err := pcapgo.NewReader(br)
	if err != nil {
		return nil, fmt.Errorf("pcap header: %w", err)
	}
	return r, nil
}
