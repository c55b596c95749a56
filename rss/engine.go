package rss

import "github.com/vrss-dev/vrss/internal/proto"

// Engine steers frames by one RSS configuration. It is immutable after New
// and safe for concurrent use.
type Engine struct {
	cfg   Config
	mask  uint32
	toe   Toeplitz
	types HashType
}

// New returns an engine for c. The configuration is checked against the
// engine's own bounds only (MaxKeySize, MaxTableLen, the nine hash types);
// check it against a device's Limits with Config.Validate first.
func New(c Config) (*Engine, error) {
	if err := c.Validate(Limits{MaxKeySize: MaxKeySize, MaxTableLen: MaxTableLen, HashTypes: AllHashTypes}); err != nil {
		return nil, err
	}
	e := &Engine{cfg: c.Clone(), mask: uint32(len(c.Table) - 1), types: c.HashTypes}
	e.toe.Reset(c.Key)
	return e, nil
}

// Config returns a copy of the engine's configuration.
func (e *Engine) Config() Config { return e.cfg.Clone() }

// Toeplitz returns the engine's precomputed hash function.
func (e *Engine) Toeplitz() *Toeplitz { return &e.toe }

// Steer classifies an Ethernet frame (starting at the destination MAC
// address) and returns its queue, hash and hash report. It does not
// allocate and never reads outside frame.
func (e *Engine) Steer(frame []byte) Result {
	var f flow
	classify(frame, &f)
	var (
		report HashReport
		src    = f.src
		dst    = f.dst
		alen   = 4
		ports  = f.l4 != 0
		t      = e.types
	)
	switch f.family {
	case 4:
		switch {
		case f.l4 == proto.IPProtoTCP && t&HashTCPv4 != 0:
			report = ReportTCPv4
		case f.l4 == proto.IPProtoUDP && t&HashUDPv4 != 0:
			report = ReportUDPv4
		case t&HashIPv4 != 0:
			report, ports = ReportIPv4, false
		}
	case 6:
		alen = 16
		if f.ext {
			switch {
			case f.l4 == proto.IPProtoTCP && t&HashTCPEx != 0:
				report = ReportTCPv6Ex
			case f.l4 == proto.IPProtoUDP && t&HashUDPEx != 0:
				report = ReportUDPv6Ex
			case t&HashIPEx != 0:
				report, ports = ReportIPv6Ex, false
			}
			if report != ReportNone {
				if f.home != 0 {
					src = f.home
				}
				if f.rt2 != 0 {
					dst = f.rt2
				}
			}
		}
		if report == ReportNone {
			switch {
			case f.l4 == proto.IPProtoTCP && t&HashTCPv6 != 0:
				report = ReportTCPv6
			case f.l4 == proto.IPProtoUDP && t&HashUDPv6 != 0:
				report = ReportUDPv6
			case t&HashIPv6 != 0:
				report, ports = ReportIPv6, false
			}
		}
	}
	if report == ReportNone {
		return Result{Queue: e.cfg.UnclassifiedQueue}
	}
	h, pos := e.toe.addWords(0, 0, frame[src:src+alen])
	h, pos = e.toe.addWords(h, pos, frame[dst:dst+alen])
	if ports {
		h, _ = e.toe.addWords(h, pos, frame[f.ports:f.ports+4])
	}
	return Result{Queue: e.cfg.Table[h&e.mask], Hash: h, Report: report}
}
