package main

// Recall (docs/cache.md): at cache-open the node hands the helper the index entries that the
// last build of the same command looked up. A get for one of them is answered here, after a
// stat shows its blob still has the size and stamp (inode, ctime) the node recorded when it
// last hashed it; anything else goes to the node as before, which re-hashes a blob whose stamp
// changed. The hits served here are reported to the node in batches, so that its counters,
// the build's summary and the access times that gc trims by stay as if the node had served
// them; close waits for the last batch.

import (
	"encoding/binary"
	"encoding/hex"
	"path/filepath"
	"sync"
	"time"
)

// recallRecordBytes is RECALL_RECORD_BYTES of packages/protocol/src/constants.ts.
const recallRecordBytes = 96

// recallBatch and recallDelay bound how long a served hit waits before the node counts it:
// the build's progress line reads those counts.
const (
	recallBatch = 512
	recallDelay = 100 * time.Millisecond
)

type recalledEntry struct {
	outputID []byte
	size     int64
	timeMs   int64
	ino      uint64
	ctimeNs  uint64
}

// parseRecalled reads cache-opened's recalled records; a malformed block yields nothing.
func parseRecalled(b []byte) map[string]recalledEntry {
	if len(b)%recallRecordBytes != 0 {
		return nil
	}
	m := make(map[string]recalledEntry, len(b)/recallRecordBytes)
	for at := 0; at < len(b); at += recallRecordBytes {
		r := b[at : at+recallRecordBytes]
		size, ms := binary.BigEndian.Uint64(r[64:]), binary.BigEndian.Uint64(r[72:])
		if size > 1<<62 || ms > 1<<62 {
			return nil
		}
		m[string(r[:idBytes])] = recalledEntry{
			outputID: r[idBytes : 2*idBytes],
			size:     int64(size),
			timeMs:   int64(ms),
			ino:      binary.BigEndian.Uint64(r[80:]),
			ctimeNs:  binary.BigEndian.Uint64(r[88:]),
		}
	}
	return m
}

// recalledHits collects the ActionIDs served from recalled entries, the number of misses
// served from the node's absent filter (absent.go), and the puts whose bodies the store would
// not take (kept private), until they are reported.
type recalledHits struct {
	mu          sync.Mutex
	pending     []byte // ActionIDs, idBytes each
	misses      int
	unstored    int
	unstoredWhy string // the first refusal not yet reported
	timer       *time.Timer
}

// getRecalled answers a get from a recalled entry whose blob is unchanged, or reports false.
func (h *helper) getRecalled(req request) (response, bool) {
	e, ok := h.recalled[string(req.ActionID)]
	if !ok {
		return response{}, false
	}
	name := hex.EncodeToString(e.outputID)
	if size, ino, ctime, ok := blobStamp(filepath.Join(h.blobDir, name[:2], name)); !ok || size != e.size || ino != e.ino || ctime != e.ctimeNs {
		return response{}, false
	}
	h.noteRecalled(req.ActionID)
	t := time.UnixMilli(e.timeMs)
	return response{ID: req.ID, OutputID: e.outputID, Size: e.size, Time: &t, DiskPath: h.diskPath(name)}, true
}

// getRecalledNow is getRecalled for the serve loop, which must not wait: before open has
// finished, or once the node is given up, it reports false and the get takes the usual way.
func (h *helper) getRecalledNow(req request) (response, bool) {
	if !h.usableNow() {
		return response{}, false
	}
	return h.getRecalled(req) // an ActionID of the wrong length is in no record: get reports it
}

// usableNow reports, without waiting, whether open has finished with a node to use.
func (h *helper) usableNow() bool {
	select {
	case <-h.ready:
		return !h.degraded.Load()
	default:
		return false
	}
}

func (h *helper) noteRecalled(actionID []byte) {
	r := &h.recalledHits
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pending = append(r.pending, actionID...)
	h.scheduleReportLocked()
}

func (h *helper) noteAbsent() {
	r := &h.recalledHits
	r.mu.Lock()
	defer r.mu.Unlock()
	r.misses++
	h.scheduleReportLocked()
}

// noteUnstored counts a put whose body the shared store would not take (a full disk): the
// node tells the user, who would otherwise see only builds that compile the same again.
func (h *helper) noteUnstored(err error) {
	r := &h.recalledHits
	r.mu.Lock()
	defer r.mu.Unlock()
	r.unstored++
	if r.unstoredWhy == "" {
		r.unstoredWhy = err.Error()
	}
	h.scheduleReportLocked()
}

func (h *helper) scheduleReportLocked() {
	r := &h.recalledHits
	if len(r.pending) >= recallBatch*idBytes || r.misses >= recallBatch {
		h.reportRecalledLocked()
	} else if r.timer == nil {
		r.timer = time.AfterFunc(recallDelay, h.reportRecalled)
	}
}

func (h *helper) reportRecalled() {
	h.recalledHits.mu.Lock()
	defer h.recalledHits.mu.Unlock()
	h.reportRecalledLocked()
}

// reportRecalledLocked sends the pending ActionIDs and misses to the node, without holding up
// cmd/go; close waits for it (h.indexing).
func (h *helper) reportRecalledLocked() {
	r := &h.recalledHits
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	if len(r.pending) == 0 && r.misses == 0 && r.unstored == 0 {
		return
	}
	msg := map[string]any{"type": "cache-recalled", "build": h.build, "actionIds": r.pending, "misses": r.misses}
	if r.unstored > 0 {
		msg["unstored"], msg["unstoredWhy"] = r.unstored, r.unstoredWhy
	}
	r.pending, r.misses, r.unstored, r.unstoredWhy = nil, 0, 0, ""
	h.indexing.Add(1)
	go func() {
		defer h.indexing.Done()
		reply, err := h.node.call(msg)
		if err != nil || reply["type"] != "ok" {
			h.degrade() // the hits were served; only the node's counts of them are lost
		}
	}()
}
