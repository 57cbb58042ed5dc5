package main

import (
	"bytes"
	"crypto/sha256"
	"testing"
)

// The vector of test/unit/cache.test.ts: ActionID bytes 0..31 in the smallest filter the node
// makes (8 KiB) set bit 3 of bytes 64, 321 and 578 and bit 7 of bytes 192, 449 and 706.
func absentVector() (action []byte, filter []byte) {
	action = make([]byte, idBytes)
	for i := range action {
		action[i] = byte(i)
	}
	filter = make([]byte, 8192)
	for _, at := range []int{64, 321, 578} {
		filter[at] = 8
	}
	for _, at := range []int{192, 449, 706} {
		filter[at] = 128
	}
	return action, filter
}

func TestAbsentFilterLayout(t *testing.T) {
	action, filter := absentVector()
	f := parseAbsent(filter)
	if f == nil || !f.mayHold(action) {
		t.Fatal("the node's filter for the vector does not hold it")
	}
	filter[449] = 0
	if parseAbsent(filter).mayHold(action) {
		t.Fatal("a filter missing one of the vector's bits still holds it")
	}
	for _, n := range []int{0, 4, 12, 8191} {
		if parseAbsent(make([]byte, n)) != nil {
			t.Fatalf("a filter of %d bytes was accepted", n)
		}
	}
	empty := parseAbsent(make([]byte, 8))
	empty.add(action)
	if !empty.mayHold(action) {
		t.Fatal("an ActionID added to the filter is not held")
	}
}

// A get that the filter rules out is a miss on the serve loop, never asked of the node, and
// counted in the next cache-recalled; a get of a filtered-in ActionID, or of one this helper
// has put since, goes to the node.
func TestAbsentGets(t *testing.T) {
	known, filter := absentVector()
	reported := make(chan map[string]any, 4)
	gets := make(chan []byte, 4)
	h := &helper{build: "b", ready: make(chan struct{}), blobDir: t.TempDir(), absent: parseAbsent(filter)}
	h.diskDir = h.blobDir
	if _, ok := h.getAbsent(request{ID: 1, ActionID: bytes.Repeat([]byte{9}, idBytes)}); ok {
		t.Fatal("the serve loop answered a get before open had finished")
	}
	connectFakeNode(t, h, func(msg map[string]any) map[string]any {
		switch msg["type"] {
		case "cache-recalled":
			reported <- msg
			return map[string]any{"type": "ok"}
		case "cache-get":
			id, _ := msg["actionId"].([]byte)
			gets <- id
			return map[string]any{"type": "cache-miss"}
		}
		return map[string]any{"type": "cache-indexed", "stored": 1}
	})

	unknown := bytes.Repeat([]byte{9}, idBytes)
	if res, ok := h.getAbsent(request{ID: 2, ActionID: unknown}); !ok || !res.Miss || res.ID != 2 {
		t.Fatalf("a get the filter rules out: %+v, %v", res, ok)
	}
	if _, ok := h.getAbsent(request{ID: 3, ActionID: known}); ok {
		t.Fatal("a get the filter holds was answered without the node")
	}
	if res := h.get(request{ID: 3, ActionID: known}); !res.Miss || len(gets) != 1 {
		t.Fatalf("a get the filter holds: %+v, %d asked of the node", res, len(gets))
	}

	body := []byte("an archive")
	sum := sha256.Sum256(body)
	if res := h.put(request{ID: 4, ActionID: unknown, OutputID: sum[:]}, body); res.Err != "" {
		t.Fatal(res.Err)
	}
	if _, ok := h.getAbsent(request{ID: 5, ActionID: unknown}); ok {
		t.Fatal("a get of an ActionID this helper has put was answered as a miss")
	}

	h.reportRecalled()
	h.indexing.Wait()
	msg := <-reported
	if n, _ := asInt(msg["misses"]); n != 1 {
		t.Fatalf("cache-recalled reported %v misses, want 1", msg["misses"])
	}
	if ids, ok := msg["actionIds"].([]byte); !ok || len(ids) != 0 {
		t.Fatalf("cache-recalled carried actionIds %v, want an empty bin", msg["actionIds"])
	}
}
