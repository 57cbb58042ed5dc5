package main

// Absent entries (docs/cache.md): at cache-open a node whose misses are final (no peer it
// would ask) and that runs no other build hands the helper a Bloom filter of the ActionIDs in
// its index. A get whose ActionID is not in the filter, nor among this helper's own puts, is a
// miss the node would give too, and is answered here without a round trip. A cold std build
// asks ~700 such gets, half of them one at a time while cmd/go loads packages. The node learns
// how many there were with the recalled hits' reports (recall.go), so its counts stay as if it
// had answered them.
//
// The filter can only say "maybe there" wrongly: the node sets bits and never clears them in
// a filter it has handed out, and entries added to its index after cache-open (another
// build's puts) are asked of the node as before only if they happen to fall on set bits,
// else they miss here: a compile done twice, never a wrong answer.

import (
	"encoding/binary"
	"math/bits"
	"sync/atomic"
)

// absentProbes is ABSENT_PROBES of packages/protocol/src/constants.ts: probe i of an ActionID
// is its big-endian uint32 at byte 4i, modulo the filter's size in bits (a power of two).
// ActionIDs are sha256 sums, so these words are already uniform and independent.
const absentProbes = 6

// maxAbsentBytes is MAX_ABSENT_BYTES of packages/protocol/src/constants.ts.
const maxAbsentBytes = 16 << 20

// absentFilter is safe for concurrent use: gets test it on the serve loop while puts add to it.
type absentFilter struct {
	words []uint32
	mask  uint32 // bits - 1
}

// parseAbsent reads cache-opened's absent filter: nil (ask the node for every miss) unless it
// is a power-of-two number of bytes, at least 8 and at most maxAbsentBytes.
func parseAbsent(b []byte) *absentFilter {
	n := len(b)
	if n < 8 || n > maxAbsentBytes || bits.OnesCount(uint(n)) != 1 {
		return nil
	}
	f := &absentFilter{words: make([]uint32, n/4), mask: uint32(n*8 - 1)}
	for i := range f.words {
		// bit j of the filter is bit j%8 of byte j/8, as the node writes it
		f.words[i] = binary.LittleEndian.Uint32(b[4*i:])
	}
	return f
}

// mayHold reports whether actionID may be in the node's index (or was put by this helper).
func (f *absentFilter) mayHold(actionID []byte) bool {
	if len(actionID) < 4*absentProbes {
		return true
	}
	for i := 0; i < absentProbes; i++ {
		bit := binary.BigEndian.Uint32(actionID[4*i:]) & f.mask
		if atomic.LoadUint32(&f.words[bit/32])&(1<<(bit%32)) == 0 {
			return false
		}
	}
	return true
}

// add marks actionID as maybe present: a later get of it in this build goes to the node.
func (f *absentFilter) add(actionID []byte) {
	if len(actionID) < 4*absentProbes {
		return
	}
	for i := 0; i < absentProbes; i++ {
		bit := binary.BigEndian.Uint32(actionID[4*i:]) & f.mask
		atomic.OrUint32(&f.words[bit/32], 1<<(bit%32))
	}
}

// getAbsent answers a get whose ActionID the node's filter rules out, or reports false. It
// does not wait: before open has finished, or once the node is given up, it reports false.
func (h *helper) getAbsent(req request) (response, bool) {
	if !h.usableNow() || h.absent == nil || len(req.ActionID) != idBytes || h.absent.mayHold(req.ActionID) {
		return response{}, false
	}
	h.noteAbsent()
	return response{ID: req.ID, Miss: true}, true
}
