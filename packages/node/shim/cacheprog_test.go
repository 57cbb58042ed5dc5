package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// recallRecord packs one record as the node does (cache.ts, recall).
func recallRecord(actionID, outputID []byte, size, timeMs int64, ino, ctime uint64) []byte {
	r := make([]byte, 0, recallRecordBytes)
	r = append(r, actionID...)
	r = append(r, outputID...)
	r = binary.BigEndian.AppendUint64(r, uint64(size))
	r = binary.BigEndian.AppendUint64(r, uint64(timeMs))
	r = binary.BigEndian.AppendUint64(r, ino)
	return binary.BigEndian.AppendUint64(r, ctime)
}

// A get for a recalled entry is answered by the helper while the blob keeps its stamp, and
// reported to the node at close; once the blob is rewritten the get goes to the node.
func TestRecalledGets(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("blob stamps are read on Linux only")
	}
	dir := t.TempDir()
	body := []byte("an archive")
	out := sha256.Sum256(body)
	name := hex.EncodeToString(out[:])
	path := filepath.Join(dir, name[:2], name)
	if err := writeAtomic(filepath.Join(dir, "tmp"), path, body); err != nil {
		t.Fatal(err)
	}
	size, ino, ctime, ok := blobStamp(path)
	if !ok || size != int64(len(body)) {
		t.Fatalf("blobStamp: %d %v", size, ok)
	}
	action := bytes.Repeat([]byte{7}, idBytes)
	records := recallRecord(action, out[:], size, 1700000000000, ino, ctime)
	if parseRecalled(records[:50]) != nil {
		t.Fatal("a partial record must yield nothing")
	}

	// A node that answers every request: "ok" to cache-recalled (counting its ActionIDs), a
	// miss to cache-get.
	reported := make(chan []byte, 4)
	gets := make(chan struct{}, 4)
	h := &helper{build: "b", ready: make(chan struct{}), blobDir: dir, diskDir: dir, recalled: parseRecalled(records)}
	if _, ok := h.getRecalledNow(request{ID: 1, Command: "get", ActionID: action}); ok {
		t.Fatal("the serve loop answered a get before open had finished")
	}
	connectFakeNode(t, h, func(msg map[string]any) map[string]any {
		if msg["type"] == "cache-recalled" {
			ids, _ := msg["actionIds"].([]byte)
			reported <- ids
			return map[string]any{"type": "ok"}
		}
		gets <- struct{}{}
		return map[string]any{"type": "cache-miss"}
	})

	if _, ok := h.getRecalledNow(request{ID: 1, Command: "get", ActionID: bytes.Repeat([]byte{8}, idBytes)}); ok {
		t.Fatal("the serve loop answered a get for an entry it was not handed")
	}
	res, ok := h.getRecalledNow(request{ID: 1, Command: "get", ActionID: action})
	if !ok {
		t.Fatal("the serve loop did not answer a get for a recalled entry")
	}
	if again := h.get(request{ID: 1, Command: "get", ActionID: action}); again.Miss || again.DiskPath != res.DiskPath {
		t.Fatalf("get answered %+v, the serve loop %+v", again, res)
	}
	if res.Miss || res.DiskPath != path || !bytes.Equal(res.OutputID, out[:]) || res.Size != size || res.Time.UnixMilli() != 1700000000000 {
		t.Fatalf("recalled get: %+v", res)
	}
	if len(gets) != 0 {
		t.Fatal("a recalled get went to the node")
	}
	h.reportRecalled()
	h.indexing.Wait()
	if ids := <-reported; !bytes.Equal(ids, bytes.Repeat(action, 2)) {
		t.Fatalf("reported %x, want %x twice", ids, action)
	}

	// Rewritten in place (same bytes, new ctime): the helper no longer trusts its record.
	// File times tick with the kernel's coarse clock: let it move on first.
	time.Sleep(20 * time.Millisecond)
	if err := os.WriteFile(path, body, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, ctime2, _ := blobStamp(path); ctime2 == ctime {
		t.Skip("this filesystem did not move ctime")
	}
	if res := h.get(request{ID: 2, Command: "get", ActionID: action}); !res.Miss {
		t.Fatalf("get after the blob changed: %+v, want the node's answer (a miss)", res)
	}
	if len(gets) != 1 {
		t.Fatal("the get after the change did not go to the node")
	}
}

// A put of bytes the store already holds leaves the file, and so its stamp, alone.
func TestHolds(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "blob")
	if holds(path, nil) {
		t.Fatal("a missing file holds nothing")
	}
	for _, c := range []struct {
		file, body string
		want       bool
	}{
		{"", "", true},
		{"abc", "abc", true},
		{"abc", "abd", false},
		{"abcd", "abc", false},
		{"ab", "abc", false},
		{"x", "", false},
	} {
		if err := os.WriteFile(path, []byte(c.file), 0o644); err != nil {
			t.Fatal(err)
		}
		if got := holds(path, []byte(c.body)); got != c.want {
			t.Errorf("file %q, body %q: holds %v, want %v", c.file, c.body, got, c.want)
		}
	}
}

// cmd/go sees the store through a symlink in GOCACHE, made once and found again after.
func TestLinkStore(t *testing.T) {
	store, gocache := t.TempDir(), t.TempDir()
	if got := linkStore("", store); got != store {
		t.Errorf("no GOCACHE: %q", got)
	}
	if got := linkStore("relative/dir", store); got != store {
		t.Errorf("a relative GOCACHE: %q", got)
	}
	link := linkStore(gocache, store)
	if filepath.Dir(link) != gocache {
		t.Fatalf("link %q is not in GOCACHE", link)
	}
	if target, err := os.Readlink(link); err != nil || target != store {
		t.Fatalf("link points to %q (%v)", target, err)
	}
	if again := linkStore(gocache, store); again != link {
		t.Errorf("second call: %q, want %q", again, link)
	}
	if other := linkStore(gocache, t.TempDir()); other == link {
		t.Error("another store got the same link")
	}
	if got := linkStore(filepath.Join(gocache, "missing"), store); got != store {
		t.Errorf("a GOCACHE that does not exist: %q", got)
	}
	// cmd/go copies a cache file only when its path starts with GOCACHE as spelled, string for
	// string; else it renames it out of the store
	for _, spelled := range []string{gocache + "/", filepath.Dir(gocache) + "//" + filepath.Base(gocache), gocache + "/../" + filepath.Base(gocache), gocache + "/."} {
		link := linkStore(spelled, store)
		h := &helper{diskDir: link}
		if path := h.diskPath("44c93a"); !strings.HasPrefix(link, spelled) || !strings.HasPrefix(path, spelled) {
			t.Errorf("GOCACHE %q: link %q, blob path %q do not start with it", spelled, link, path)
		}
		if target, err := os.Readlink(link); err != nil || target != store {
			t.Errorf("GOCACHE %q: link points to %q (%v)", spelled, target, err)
		}
	}
}

// writeAtomic remembers the directories it made; one removed since (by hand, by a gc) is made
// again rather than failing every later put into it.
func TestWriteAtomicRemadeDirs(t *testing.T) {
	dir := t.TempDir()
	tmp := filepath.Join(dir, "tmp")
	for i, body := range []string{"first", "second"} {
		sum := sha256.Sum256([]byte(body))
		name := hex.EncodeToString(sum[:])
		path := filepath.Join(dir, name[:2], name)
		if err := writeAtomic(tmp, path, []byte(body)); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
		if got, err := os.ReadFile(path); err != nil || string(got) != body {
			t.Fatalf("put %d: read back %q, %v", i, got, err)
		}
		if err := os.RemoveAll(tmp); err != nil { // gone before the next put
			t.Fatal(err)
		}
		if err := os.RemoveAll(filepath.Dir(path)); err != nil {
			t.Fatal(err)
		}
	}
	sum := sha256.Sum256([]byte("first"))
	name := hex.EncodeToString(sum[:])
	if err := writeAtomic(tmp, filepath.Join(dir, name[:2], name), []byte("first")); err != nil {
		t.Fatalf("put into a removed shard: %v", err)
	}
}

// Puts that come together reach the node as one cache-index of fixed records, sent once
// indexDelay has passed; what is still pending at close is sent before close is answered.
func TestIndexBatches(t *testing.T) {
	dir := t.TempDir()
	batches := make(chan []byte, 8)
	h := &helper{build: "b", ready: make(chan struct{}), blobDir: dir, diskDir: dir}
	connectFakeNode(t, h, func(msg map[string]any) map[string]any {
		entries, _ := msg["entries"].([]byte)
		if msg["type"] == "cache-index" {
			batches <- entries
		}
		return map[string]any{"type": "cache-indexed", "stored": len(entries) / indexRecordBytes}
	})

	put := func(i int) []byte {
		body := []byte(strings.Repeat("x", i))
		sum := sha256.Sum256(body)
		action := bytes.Repeat([]byte{byte(i)}, idBytes)
		if res := h.put(request{ID: int64(i), ActionID: action, OutputID: sum[:]}, body); res.Err != "" {
			t.Fatalf("put %d: %s", i, res.Err)
		}
		return binary.BigEndian.AppendUint64(append(append([]byte(nil), action...), sum[:]...), uint64(len(body)))
	}
	old := indexDelay
	indexDelay = 500 * time.Millisecond // the three puts come well within it, even on a busy machine
	defer func() { indexDelay = old }()
	var want []byte
	for i := 1; i <= 3; i++ {
		want = append(want, put(i)...)
	}
	select {
	case got := <-batches:
		if !bytes.Equal(got, want) {
			t.Fatalf("first batch: %d bytes, want the 3 puts' %d", len(got), len(want))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no cache-index within 5 s of the puts")
	}

	last := put(4)
	h.flushIndex() // as close does
	h.indexing.Wait()
	if got := <-batches; !bytes.Equal(got, last) {
		t.Fatalf("batch at close: %x, want %x", got, last)
	}
}

// connectFakeNode connects h to a node that answers each request with what answer returns (its
// id filled in), and marks h ready.
func connectFakeNode(t *testing.T, h *helper, answer func(msg map[string]any) map[string]any) {
	t.Helper()
	conn := fakeNode(t, func(c net.Conn) {
		r := bufio.NewReader(c)
		for {
			msg, err := readFrame(r)
			if err != nil {
				return
			}
			reply := answer(msg)
			reply["id"] = msg["id"]
			writeFrame(c, reply)
		}
	})
	h.node = &nodeConn{conn: conn, nextID: 1, pending: map[int64]chan map[string]any{}}
	go h.node.readLoop(bufio.NewReader(conn))
	close(h.ready)
}

// A put whose bytes are already in the store hands cmd/go that blob only once the node has
// indexed (and so pinned) it at once; a node that will not (it is trimming that blob) leaves the
// body in a private copy. A small body gets a private copy at once, its entry sent later with
// the others, as a new blob's is: cmd/go does not wait for the node.
func TestPutOfABlobInPlace(t *testing.T) {
	dir := t.TempDir()
	var keep atomic.Bool
	indexed := make(chan int, 8)
	h := &helper{build: "b", ready: make(chan struct{}), blobDir: dir, diskDir: dir}
	defer h.removePrivateDir()
	connectFakeNode(t, h, func(msg map[string]any) map[string]any {
		entries, _ := msg["entries"].([]byte)
		indexed <- len(entries) / indexRecordBytes
		stored := 0
		if keep.Load() {
			stored = len(entries) / indexRecordBytes
		}
		return map[string]any{"type": "cache-indexed", "stored": stored}
	})
	put := func(action byte, body []byte) response {
		sum := sha256.Sum256(body)
		res := h.put(request{ID: int64(action), ActionID: bytes.Repeat([]byte{action}, idBytes), OutputID: sum[:]}, body)
		if res.Err != "" {
			t.Fatalf("put: %s", res.Err)
		}
		return res
	}
	blobOf := func(body []byte) string {
		sum := sha256.Sum256(body)
		name := hex.EncodeToString(sum[:])
		return filepath.Join(dir, name[:2], name)
	}
	private := func(what string, res response, body []byte) {
		t.Helper()
		if strings.HasPrefix(res.DiskPath, dir) {
			t.Fatalf("%s: DiskPath %s, want a private copy", what, res.DiskPath)
		}
		if got, err := os.ReadFile(res.DiskPath); err != nil || !bytes.Equal(got, body) {
			t.Fatalf("%s: the private copy: %d bytes, %v", what, len(got), err)
		}
	}

	old := indexDelay
	indexDelay = time.Hour // entries wait for close: only indexNow sends now
	defer func() { indexDelay = old }()
	large := bytes.Repeat([]byte("the same bytes from two actions "), privateCopyMax/32+1)
	if res := put(1, large); res.DiskPath != blobOf(large) {
		t.Fatalf("a new blob: DiskPath %s, want %s", res.DiskPath, blobOf(large))
	}
	if len(indexed) != 0 {
		t.Fatal("a new blob's entry went to the node before cmd/go had its answer")
	}

	keep.Store(true)
	if res := put(2, large); res.DiskPath != blobOf(large) || len(indexed) != 1 || <-indexed != 1 {
		t.Fatalf("a blob in place, indexed: DiskPath %s, want %s after one entry indexed on its own", res.DiskPath, blobOf(large))
	}
	keep.Store(false)
	private("a blob in place the node would not index", put(3, large), large)
	if got := <-indexed; got != 1 {
		t.Fatalf("a blob in place the node would not index: %d entries sent on their own, want 1", got)
	}
	if h.degraded.Load() {
		t.Fatal("a refused entry is not a failed node")
	}

	for i, small := range [][]byte{nil, []byte("a few bytes many actions share")} {
		if res := put(byte(4+2*i), small); res.DiskPath != blobOf(small) {
			t.Fatalf("a new small blob: DiskPath %s, want %s", res.DiskPath, blobOf(small))
		}
		private("a small blob in place", put(byte(5+2*i), small), small)
	}
	if len(indexed) != 0 {
		t.Fatal("a small blob in place went to the node on its own: cmd/go waited for it")
	}
	h.flushIndex() // as close does
	h.indexing.Wait()
	if got := <-indexed; got != 5 {
		t.Fatalf("at close: %d entries, want 5 (the first put's and the four small ones')", got)
	}
}

// A node that hangs: the helper gives up on it once a shim of the build has marked it stalled,
// its calls waiting then and those after, not after a call timeout of its own.
func TestCallGivesUpOnAStalledMark(t *testing.T) {
	oldTimeout := callTimeout
	callTimeout = time.Hour // only the mark can end these calls
	defer func() { callTimeout = oldTimeout }()
	t.Setenv("GRID_FALLBACK_LOG", filepath.Join(t.TempDir(), "fallbacks"))
	h := &helper{ready: make(chan struct{})}
	asked := make(chan struct{}, 1)
	connectFakeNode(t, h, func(msg map[string]any) map[string]any {
		asked <- struct{}{}
		select {} // hung
	})
	done := make(chan error, 1)
	go func() { _, err := h.node.call(map[string]any{"type": "cache-get"}); done <- err }()
	<-asked
	setStalled(stalledMark()) // a shim's compile found the node hung
	select {
	case err := <-done:
		if !errors.Is(err, errNodeStalled) {
			t.Fatalf("the waiting call: %v, want errNodeStalled", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the waiting call still waits for a node marked stalled")
	}
	if _, err := h.node.call(map[string]any{"type": "cache-get"}); err == nil {
		t.Fatal("a call after the mark asked the node")
	}
}
