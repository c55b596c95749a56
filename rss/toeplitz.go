package rss

// Toeplitz is a Toeplitz hash function for one key, precomputed as a table:
// for each input byte position and byte value, the 32-bit contribution that
// byte makes to the hash. Hashing n bytes is then n loads and XORs instead
// of 8n conditional shifts.
type Toeplitz struct {
	tab [MaxInputLen][256]uint32
}

// NewToeplitz precomputes the tables for key. Key bits past its end count as
// zero, so any key length works; keys longer than MinKeySize bytes have
// bits that never reach a hash of at most MaxInputLen input bytes.
func NewToeplitz(key []byte) *Toeplitz {
	t := new(Toeplitz)
	t.Reset(key)
	return t
}

// Reset recomputes the tables for a new key without allocating.
func (t *Toeplitz) Reset(key []byte) {
	for pos := range t.tab {
		// The contribution of input bit b (MSB first) of byte pos is the
		// 32-bit window of the key starting at bit 8*pos+b.
		var bit [8]uint32
		for b := range bit {
			bit[b] = keyWindow(key, 8*pos+b)
		}
		row := &t.tab[pos]
		row[0] = 0
		// Each value is a lower value plus its top set bit, so one XOR each.
		for v := 1; v < 256; v++ {
			top := 7
			for v>>top == 0 {
				top--
			}
			row[v] = row[v&^(1<<top)] ^ bit[7-top]
		}
	}
}

// keyWindow returns the 32 key bits starting at bit offset off (MSB first),
// with bits past the key's end as zero.
func keyWindow(key []byte, off int) uint32 {
	var w uint64
	for i := 0; i < 5; i++ {
		w <<= 8
		if j := off/8 + i; j < len(key) {
			w |= uint64(key[j])
		}
	}
	return uint32(w >> (8 - uint(off%8)))
}

// Hash returns the Toeplitz hash of input, which must be at most
// MaxInputLen bytes long; longer input panics.
func (t *Toeplitz) Hash(input []byte) uint32 {
	h, pos := t.addWords(0, 0, input)
	for _, b := range input[pos:] {
		h ^= t.tab[pos][b]
		pos++
	}
	return h
}

// Table returns the contribution of input byte value v at position pos.
// The eBPF steering program is fed these values.
func (t *Toeplitz) Table(pos int, v byte) uint32 { return t.tab[pos][v] }

// addWords hashes b, whose length is a multiple of 4, as if it started at
// input position pos, and returns the next position. Steer hashes the frame
// in place with it; four bytes a step keeps the loop overhead small.
func (t *Toeplitz) addWords(h uint32, pos int, b []byte) (uint32, int) {
	for ; len(b) >= 4 && pos+4 <= MaxInputLen; b = b[4:] {
		r := t.tab[pos : pos+4 : pos+4]
		h ^= r[0][b[0]] ^ r[1][b[1]] ^ r[2][b[2]] ^ r[3][b[3]]
		pos += 4
	}
	return h, pos
}

// Tables returns a copy of the precomputed tables: Tables()[pos][v] is the
// contribution of byte value v at input position pos. The eBPF steering
// program's configuration map holds exactly this array.
func (t *Toeplitz) Tables() [MaxInputLen][256]uint32 { return t.tab }
