package bench

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// hashLookupEntries is how many entries the kernel hash map the
// hash-lookup reference searches holds: as many as a TAP's rules at most.
const hashLookupEntries = 10_000

// hashLookup is a reference for the flow build's rule search: a socket
// filter that makes one bpf_map_lookup_elem in a kernel BPF hash map of
// hashLookupEntries 16-byte keys (four key words, as an IPv4 5-tuple
// pattern has), finds its entry, and returns 0. Above the floor program,
// it is what one hashed lookup costs when the kernel's own hash table does
// it: what any "hash lookup per mask pattern" design pays at least.
type hashLookup struct {
	m    *ebpf.Map
	prog *ebpf.Program
}

func newHashLookup() (_ *hashLookup, err error) {
	h := &hashLookup{}
	defer func() {
		if err != nil {
			h.close()
		}
	}()
	h.m, err = ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 16, ValueSize: 4, MaxEntries: hashLookupEntries})
	if err != nil {
		return nil, fmt.Errorf("hash-lookup reference: create the map: %w", err)
	}
	key := func(i uint32) []byte {
		k := make([]byte, 16)
		binary.LittleEndian.PutUint32(k, 0x0a000000+i)
		binary.LittleEndian.PutUint32(k[4:], 0x0a010001)
		binary.LittleEndian.PutUint32(k[8:], 1024+i)
		binary.LittleEndian.PutUint32(k[12:], 0x06104000)
		return k
	}
	for i := range uint32(hashLookupEntries) {
		if err := h.m.Put(key(i), i); err != nil {
			return nil, fmt.Errorf("hash-lookup reference: fill the map: %w", err)
		}
	}
	k := key(hashLookupEntries / 2)
	ins := asm.Instructions{}
	for i := 0; i < 16; i += 4 {
		ins = append(ins, asm.StoreImm(asm.RFP, int16(i-16), int64(binary.LittleEndian.Uint32(k[i:])), asm.Word))
	}
	ins = append(ins,
		asm.LoadMapPtr(asm.R1, h.m.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -16),
		asm.FnMapLookupElem.Call(),
		asm.Mov.Imm(asm.R0, 0),
		asm.Return(),
	)
	h.prog, err = ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SocketFilter, License: "GPL", Instructions: ins})
	if err != nil {
		return nil, fmt.Errorf("hash-lookup reference: load the program: %w", err)
	}
	return h, nil
}

// Benchmark runs the program repeat times on frame (see benchmarker).
func (h *hashLookup) Benchmark(frame []byte, repeat int) (time.Duration, error) {
	_, d, err := h.prog.Benchmark(frame, repeat, nil)
	return d, err
}

func (h *hashLookup) String() string { return "kernel hash lookup" }

func (h *hashLookup) close() {
	if h.prog != nil {
		h.prog.Close()
	}
	if h.m != nil {
		h.m.Close()
	}
}
