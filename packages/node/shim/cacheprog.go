package main

// `grid-shim cacheprog` is cmd/go's GOCACHEPROG helper (shared/DESIGN.md §6): one process per
// `go` command, speaking JSON lines on stdin/stdout (cmd/go/internal/cacheprog).
//
// Bodies never travel to the node. A put is decoded, hashed and written here, straight into the
// node's content-addressed store (<blobDir>/<hex[0:2]>/<hex>, via a temp file in <blobDir>/tmp
// and a rename, which is safe for concurrent writers of the same hash); the node only gets
// (ActionID, OutputID, size), and cmd/go does not wait for that. A get asks the node, which
// answers with a local file path, unless the node handed the helper that entry at cache-open
// (recall.go). No request waits on the node longer than callTimeout.
//
// Requests are served concurrently (cmd/go keeps many in flight) over one multiplexed node
// connection. If the node is absent at start (standalone) or fails later (degraded), every get
// misses and every put goes to a private temp dir removed on exit: the build goes on as if
// there were no cache. Under `grid env` (GRID_WITHOUT_NODE=gocache) it uses GOCACHE in cmd/go's
// own format instead, as go would without grid (gostore.go). Nothing is ever printed to stderr.

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// idBytes is CACHE_ID_BYTES: ActionIDs and OutputIDs are sha256 sums.
const idBytes = 32

// request and response mirror cmd/go/internal/cacheprog.Request and Response.
type request struct {
	ID       int64
	Command  string
	ActionID []byte `json:",omitempty"`
	OutputID []byte `json:",omitempty"`
	BodySize int64  `json:",omitempty"`
}

type response struct {
	ID            int64
	Err           string     `json:",omitempty"`
	KnownCommands []string   `json:",omitempty"`
	Miss          bool       `json:",omitempty"`
	OutputID      []byte     `json:",omitempty"`
	Size          int64      `json:",omitempty"`
	Time          *time.Time `json:",omitempty"`
	DiskPath      string     `json:",omitempty"`
}

type helper struct {
	build   string
	started time.Time // cmd/go starts us before it hashes any file (cache-open's ageMs)

	outMu    sync.Mutex     // serialises writes to stdout
	inFlight sync.WaitGroup // get/put requests being served
	indexing sync.WaitGroup // index entries of finished puts on their way to the node

	idxMu      sync.Mutex
	idxPending []byte // index records not yet sent (indexRecordBytes each)

	ready    chan struct{} // closed once open has finished, whatever its outcome
	node     *nodeConn     // nil when standalone
	blobDir  string
	diskDir  string      // blobDir as cmd/go is given it: through a link in GOCACHE (linkStore)
	degraded atomic.Bool // set when there is no usable node: gets miss, puts go private

	privMu  sync.Mutex
	privDir string // private temp dir for bodies when degraded; created on first use

	alone *goStore // GOCACHE in cmd/go's own format, in place of privDir and misses (gostore.go)

	recalled     map[string]recalledEntry // by ActionID, from cache-opened; read-only once ready
	recalledHits recalledHits             // hits served from recalled, and misses from absent
	absent       *absentFilter            // from cache-opened (absent.go); nil: ask the node
}

func runCacheprog() int {
	// Ctrl-C reaches the whole process group. cmd/go decides what an interrupt means (go run
	// waits for its program, go test for its test binary); a helper that died of it would make
	// cmd/go abort at its next cache request. The helper ends when cmd/go closes its stdin.
	signal.Ignore(os.Interrupt)
	// A reply to a cmd/go that exited without close (serve's drain) must not kill us with
	// SIGPIPE before the node has the last index entries: the write fails, and is ignored.
	signal.Ignore(syscall.SIGPIPE)
	h := &helper{build: os.Getenv("GRID_BUILD"), ready: make(chan struct{}), started: time.Now()}
	mode, socket := os.Getenv("GRID_WITHOUT_NODE"), os.Getenv("GRID_SOCKET")
	if nestedGo() {
		// cmd/go passes its environment on to the programs and tests it runs, GOCACHEPROG and
		// all: a go command one of them starts is not grid build's, and caches as plain go
		// would, in its own GOCACHE (a test that sets a fresh one expects a cold cache).
		mode, socket = withoutNodeGoCache, ""
	}
	h.alone = goStoreFor(mode, goCacheDir())
	h.reply(response{KnownCommands: []string{"get", "put", "close"}})
	// cmd/go plans the build before its first request: connect meanwhile.
	go h.open(socket)
	h.serve(os.Stdin)
	h.removePrivateDir()
	return 0
}

// nestedGo reports whether the go command this helper serves was started by a program or test
// that another go command ran, and inherited GOCACHEPROG from it: under grid build, it is not
// the go that grid build started (GRID_PARENT, grid's pid, is not its parent); under grid env
// (no GRID_PARENT), a go above it has another GOCACHE (ownCacheUnderGo). A nested go under
// grid env with the same GOCACHE shares the cache as it would under plain go: a build tool
// written in Go (go run ./build) keeps the grid cache. Unknown (not Linux): not nested.
func nestedGo() bool {
	want := os.Getenv("GRID_PARENT")
	if want == "" {
		return ownCacheUnderGo()
	}
	got, ok := grandparent()
	return ok && strconv.Itoa(got) != want
}

// open connects to the node and asks for its blob directory. Any failure means standalone.
func (h *helper) open(socket string) {
	defer close(h.ready)
	h.degraded.Store(true)
	if socket == "" {
		return
	}
	conn, err := dialNode(socket, 2*time.Second)
	if err != nil {
		return
	}
	// A node that accepts but never answers must not hang the build: bound the handshake.
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(conn)
	var reply map[string]any
	open := map[string]any{"type": "cache-open", "id": 1, "build": h.build}
	// cmd/go sets GOTOOLDIR for its helper: the node shares the build's entries with peers only
	// when their compiler is the one it advertises (a copy of a GOROOT may hold another).
	if dir := os.Getenv("GOTOOLDIR"); dir != "" {
		open["gotooldir"] = dir
	}
	if h.build == "" {
		// Under `grid env`, no grid build named us: the node opens a build for this go command.
		if command := parentCommand(); command != nil {
			cwd, _ := os.Getwd()
			open["command"], open["cwd"], open["goPid"] = command, cwd, os.Getppid()
		}
	}
	// cmd/go waits for our first line before its first action, which hashes files (and after it
	// has downloaded the modules it loads): the node checks the files of this build's compiles
	// for changes since then. How long ago, not when: no clock to share, and it fits the uints
	// the node takes (a time in ms since 1970 would travel as a uint64, which it reads as a BigInt)
	open["ageMs"] = time.Since(h.started).Milliseconds()
	err = writeFrame(conn, open)
	if err == nil {
		reply, err = readFrame(r)
	}
	id, _ := asInt(reply["id"])
	dir, _ := reply["blobDir"].(string)
	if build, ok := reply["build"].(string); ok && h.build == "" {
		h.build = build // read by other goroutines only once ready is closed
	}
	recalled, _ := reply["recalled"].([]byte)
	absent, _ := reply["absent"].([]byte)
	if err != nil || reply["type"] != "cache-opened" || id != 1 || dir == "" {
		conn.Close()
		return
	}
	if dir, err = filepath.Abs(dir); err != nil {
		conn.Close()
		return
	}
	conn.SetDeadline(time.Time{})
	h.blobDir = dir
	h.diskDir = linkStore(goCacheDir(), dir)
	h.recalled = parseRecalled(recalled)
	h.absent = parseAbsent(absent)
	h.node = &nodeConn{conn: conn, nextID: 1, pending: map[int64]chan map[string]any{}}
	go h.node.readLoop(r)
	h.degraded.Store(false)
}

// degrade gives up on the node for the rest of this helper's life.
func (h *helper) degrade() {
	h.degraded.Store(true)
	if h.node != nil {
		h.node.fail()
	}
}

// serve reads requests until EOF. Gets and puts run in their own goroutines (but for gets of
// recalled entries and of entries the node's absent filter rules out, served here); close
// waits for them, answers, and we keep reading until cmd/go closes our stdin.
func (h *helper) serve(in io.Reader) {
	if f, ok := in.(*os.File); ok {
		growPipe(f)
	}
	r := bufio.NewReaderSize(in, 1<<20)
	// cmd/go does not always send close: `go list -export` and `-compiled` (what gopls runs, under
	// grid env) build, put, and exit with the cache still open. What the node has not been told
	// by then goes to it all the same, as at close: the index entries of the last puts (without
	// them every such go list compiled its packages again, its blobs in the store and in no
	// entry) and the hits and misses served here.
	defer h.drain()
	for {
		line, err := readLine(r)
		if err != nil {
			return
		}
		var req request
		if json.Unmarshal(line, &req) != nil {
			continue // not a request; cmd/go never sends one
		}
		switch req.Command {
		case "get":
			// A recalled hit is answered on this loop: a stat and a reply cost less than waking
			// a goroutine, which the Go scheduler may well start on another thread.
			if res, ok := h.getRecalledNow(req); ok {
				h.reply(res)
				continue
			}
			if res, ok := h.getAbsent(req); ok {
				h.reply(res)
				continue
			}
			h.inFlight.Add(1)
			go func() {
				defer h.inFlight.Done()
				h.reply(h.get(req))
			}()
		case "put":
			var body []byte
			if req.BodySize < 0 {
				h.reply(response{ID: req.ID, Err: "negative BodySize"})
				continue
			}
			var line []byte
			if req.BodySize > 0 {
				if line, err = readBodyLine(r, req.BodySize); err != nil {
					return
				}
			}
			// Decoding and hashing happen off this loop: cmd/go holds its one write lock for
			// the whole of a put, so every other get and put waits until we have read it.
			h.inFlight.Add(1)
			go func() {
				defer h.inFlight.Done()
				if line != nil {
					var err error
					if body, err = decodeBody(line, req.BodySize); err != nil {
						h.reply(response{ID: req.ID, Err: err.Error()})
						return
					}
				}
				h.reply(h.put(req, body))
			}()
		case "close":
			h.drain()
			h.reply(response{ID: req.ID})
		default:
			h.reply(response{ID: req.ID, Err: "unknown command " + req.Command})
		}
	}
}

// drain waits for the requests being served, then tells the node what it has not been told yet
// (the hits and misses served here, the index entries of the puts) and waits for its answers,
// each bounded by callTimeout. Once cmd/go has gone, what is still sent to it is dropped
// (SIGPIPE is ignored: see runCacheprog).
func (h *helper) drain() {
	h.inFlight.Wait()
	h.reportRecalled()
	h.flushIndex()
	h.indexing.Wait()
}

// readLine returns the next non-empty line without its line ending. The slice is valid until
// the next read. Lines longer than the buffer (large bodies) are assembled in a new slice.
func readLine(r *bufio.Reader) ([]byte, error) {
	for {
		line, err := r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			head := append([]byte(nil), line...) // copy: the next read reuses the buffer
			var rest []byte
			rest, err = r.ReadBytes('\n')
			line = append(head, rest...)
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) > 0 {
			return line, nil // a final line without '\n' still counts; EOF comes next call
		}
		if err != nil {
			return nil, err
		}
	}
}

// readBodyLine returns the line holding a put body of size bytes, without its line ending, in
// a slice of its own. cmd/go writes it as a JSON string of standard base64, so its length is
// known: the slice is allocated once at that size and the line copied into it from the reader's
// buffer, with no growing. Blank lines before it are skipped, as readLine skips them. A line of
// another length is still read to its newline, no further, and decodeBody reports it.
func readBodyLine(r *bufio.Reader, size int64) ([]byte, error) {
	want := base64.StdEncoding.EncodedLen(int(min(size, maxBodySize))) + len(`""`+"\n")
	line := make([]byte, 0, want)
	for {
		chunk, err := r.ReadSlice('\n')
		line = append(line, chunk...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil && (err != io.EOF || len(line) == 0) {
			return nil, err
		}
		if line = bytes.TrimRight(line, "\r\n"); len(line) > 0 {
			return line, nil
		}
		if err != nil {
			return nil, err
		}
		// cmd/go ends the request's JSON with a newline and then writes one more: skip blank lines
	}
}

// maxBodySize caps what readBodyLine allocates up front for a put's BodySize, so that a wrong
// BodySize cannot make it reserve gigabytes; a longer line still reads whole, growing as before.
const maxBodySize = 64 << 20

// decodeBody decodes a put body: a JSON string of standard base64. The usual form (no escapes)
// is decoded directly; anything else goes through encoding/json.
func decodeBody(line []byte, size int64) ([]byte, error) {
	var body []byte
	if n := len(line); n >= 2 && line[0] == '"' && line[n-1] == '"' && bytes.IndexByte(line, '\\') < 0 {
		src := line[1 : n-1]
		body = make([]byte, base64.StdEncoding.DecodedLen(len(src)))
		m, err := base64.StdEncoding.Decode(body, src)
		if err != nil {
			return nil, fmt.Errorf("put body: %v", err)
		}
		body = body[:m]
	} else if err := json.Unmarshal(line, &body); err != nil {
		return nil, fmt.Errorf("put body: %v", err)
	}
	if int64(len(body)) != size {
		return nil, fmt.Errorf("put body has %d bytes, BodySize is %d", len(body), size)
	}
	return body, nil
}

// reply writes one response line; responses may go out in any order.
func (h *helper) reply(res response) {
	b, err := json.Marshal(res)
	if err != nil {
		return // cannot happen: every field is marshalable
	}
	h.outMu.Lock()
	os.Stdout.Write(append(b, '\n'))
	h.outMu.Unlock()
}

func (h *helper) get(req request) response {
	if len(req.ActionID) != idBytes {
		return response{ID: req.ID, Err: fmt.Sprintf("ActionID has %d bytes, want %d", len(req.ActionID), idBytes)}
	}
	miss := response{ID: req.ID, Miss: true}
	<-h.ready
	if h.degraded.Load() {
		if h.alone != nil {
			return h.alone.get(req)
		}
		return miss
	}
	if res, ok := h.getRecalled(req); ok {
		return res
	}
	if res, ok := h.getAbsent(req); ok {
		return res
	}
	return h.lookup(req)
}

// lookup asks the node for an entry.
func (h *helper) lookup(req request) response {
	miss := response{ID: req.ID, Miss: true}
	reply, err := h.node.call(map[string]any{"type": "cache-get", "build": h.build, "actionId": req.ActionID})
	if err != nil {
		h.degrade()
		return miss
	}
	switch reply["type"] {
	case "cache-miss":
		return miss
	case "cache-hit":
		out, _ := reply["outputId"].([]byte)
		size, sizeOK := asInt(reply["size"])
		ms, timeOK := asInt(reply["time"])
		if len(out) == idBytes && sizeOK && size >= 0 && timeOK {
			// The blob's path follows from its OutputID; cmd/go gets it through diskDir, not
			// as the node's diskPath names it.
			t := time.UnixMilli(ms)
			return response{ID: req.ID, OutputID: out, Size: size, Time: &t, DiskPath: h.diskPath(hex.EncodeToString(out))}
		}
	}
	h.degrade() // a reply we do not understand: the node is not one we can trust
	return miss
}

func (h *helper) put(req request, body []byte) response {
	if len(req.ActionID) != idBytes || len(req.OutputID) != idBytes {
		return response{ID: req.ID, Err: fmt.Sprintf("put: ActionID has %d bytes and OutputID %d, want %d",
			len(req.ActionID), len(req.OutputID), idBytes)}
	}
	if sum := sha256.Sum256(body); !bytes.Equal(sum[:], req.OutputID) {
		return response{ID: req.ID, Err: fmt.Sprintf("put: body does not hash to OutputID %x", req.OutputID)}
	}
	name := hex.EncodeToString(req.OutputID)
	<-h.ready
	if !h.degraded.Load() {
		path := filepath.Join(h.blobDir, name[:2], name)
		inPlace := holds(path, body)
		switch {
		case inPlace && len(body) <= privateCopyMax:
			// Already in place (another action made these bytes): an old blob, which the node
			// may be trimming right now, and nothing pins it for this build until its index
			// entry arrives (docs/cache.md invariant 6). A small body costs less to copy than
			// cmd/go's wait for the node: cmd/go gets a private copy at once, and the entry
			// goes with the others (if the blob has gone by then, the node logs it and stores
			// nothing). Many of a cold build's puts are such bodies: the empty output, and a few
			// bytes that many actions share.
			if res, err := h.putPrivate(req, body); err == nil {
				if h.absent != nil {
					h.absent.add(req.ActionID)
				}
				h.index(req.ActionID, req.OutputID, int64(len(body)))
				return res
			}
		case inPlace:
			// The same for a larger body: cmd/go gets the blob only once the node has indexed
			// it (and so pinned it); if the node would not, this body stays private.
			if h.indexNow(req.ActionID, req.OutputID, int64(len(body))) {
				if h.absent != nil {
					h.absent.add(req.ActionID)
				}
				return response{ID: req.ID, DiskPath: h.diskPath(name)}
			}
		default:
			err := writeAtomic(filepath.Join(h.blobDir, "tmp"), path, body)
			if err == nil {
				if h.absent != nil {
					h.absent.add(req.ActionID) // before cmd/go hears of the put, and may get it
				}
				h.index(req.ActionID, req.OutputID, int64(len(body)))
				return response{ID: req.ID, DiskPath: h.diskPath(name)}
			}
			h.noteUnstored(err)
		}
		// The shared store is not writable (a full disk), or will not keep this blob: keep
		// the body private, the build goes on.
	}
	res, err := h.putPrivate(req, body)
	if err != nil {
		return response{ID: req.ID, Err: "put: " + err.Error()}
	}
	return res
}

// privateCopyMax is the largest body that a put of bytes already in the store copies to a
// private file rather than wait for the node to index (and pin) the shared blob.
const privateCopyMax = 64 << 10

// putPrivate keeps a body out of the shared store: in GOCACHE in go's own format under `grid
// env`, else in this helper's private dir, removed on exit.
func (h *helper) putPrivate(req request, body []byte) (response, error) {
	if h.alone != nil {
		if path, err := h.alone.put(req.ActionID, req.OutputID, body); err == nil {
			return response{ID: req.ID, DiskPath: path}, nil
		}
	}
	dir, err := h.privateDir()
	if err != nil {
		return response{}, err
	}
	path := filepath.Join(dir, hex.EncodeToString(req.OutputID))
	if err := writeAtomic(dir, path, body); err != nil {
		return response{}, err
	}
	return response{ID: req.ID, DiskPath: path}, nil
}

// indexRecordBytes and maxIndexBatch are INDEX_RECORD_BYTES and MAX_INDEX_BATCH of
// packages/protocol/src/constants.ts: ActionID, OutputID, size (u64, big-endian) per entry.
const (
	indexRecordBytes = 2*idBytes + 8
	maxIndexBatch    = 4096
)

// indexDelay is how long an index entry waits for others to share its message to the node. The
// blob is in place already: only a later lookup needs the entry, and close sends what is left.
// A cold std build puts ~1,450 entries, a few hundred of them in its first second; each message
// costs the node a frame, a LevelDB batch and a reply, and both processes a wake-up.
var indexDelay = 50 * time.Millisecond

// index tells the node about a blob now in place, without holding up cmd/go: entries go out
// together in one cache-index (flushIndex) once indexDelay has passed since the first of them
// or a batch is full.
func (h *helper) index(actionID, outputID []byte, size int64) {
	h.idxMu.Lock()
	first := len(h.idxPending) == 0
	h.idxPending = append(h.idxPending, actionID...)
	h.idxPending = append(h.idxPending, outputID...)
	h.idxPending = binary.BigEndian.AppendUint64(h.idxPending, uint64(size))
	full := len(h.idxPending) >= maxIndexBatch*indexRecordBytes
	h.idxMu.Unlock()
	if full {
		h.flushIndex()
	} else if first {
		time.AfterFunc(indexDelay, h.flushIndex)
	}
}

// indexNow sends one index entry on its own and waits for the node's answer: whether the node
// stored it (and so pinned its blob for this build).
func (h *helper) indexNow(actionID, outputID []byte, size int64) bool {
	entry := make([]byte, 0, indexRecordBytes)
	entry = append(append(append(entry, actionID...), outputID...), binary.BigEndian.AppendUint64(nil, uint64(size))...)
	reply, err := h.node.call(map[string]any{"type": "cache-index", "build": h.build, "entries": entry})
	if err != nil || reply["type"] != "cache-indexed" {
		h.degrade()
		return false
	}
	stored, _ := asInt(reply["stored"])
	return stored == 1
}

// flushIndex sends the pending index entries, if any. close waits for the node's answer.
func (h *helper) flushIndex() {
	h.idxMu.Lock()
	batch := h.idxPending
	h.idxPending = nil
	if len(batch) > 0 {
		h.indexing.Add(1) // under the lock: close's Wait comes after its own flush
	}
	h.idxMu.Unlock()
	if len(batch) == 0 {
		return
	}
	go func() {
		defer h.indexing.Done()
		reply, err := h.node.call(map[string]any{"type": "cache-index", "build": h.build, "entries": batch})
		if err != nil || reply["type"] != "cache-indexed" {
			h.degrade() // the blobs are valid and stay; only their index entries are lost
		}
	}()
}

// diskPath is the path cmd/go gets for the blob of an OutputID (hex).
func (h *helper) diskPath(name string) string {
	return under(h.diskDir, name[:2], name)
}

// under names a path below dir keeping dir spelled as it is. cmd/go tells the files of its
// cache from others by whether their path starts with GOCACHE as given, string for string
// (moveOrCopyFile in cmd/go/internal/work): filepath.Join would clean a GOCACHE of `/a//b`,
// `/a/../b` or `/a/./b` into another spelling, and `go build -o x.a` would then move the
// shared blob out of the store (under another build reading it) instead of copying it.
func under(dir string, names ...string) string {
	path := dir
	for _, name := range names {
		if !strings.HasSuffix(path, string(filepath.Separator)) && !strings.HasSuffix(path, "/") {
			path += string(filepath.Separator)
		}
		path += name
	}
	return path
}

// goCacheDir is the GOCACHE of the cmd/go that started this helper: its own environment's, or
// else what `go env` told grid build (which also sees a GOCACHE set with `go env -w`).
func goCacheDir() string {
	if dir := os.Getenv("GOCACHE"); dir != "" {
		return dir
	}
	return os.Getenv("GRID_GOCACHE")
}

// linkStore returns the directory through which cmd/go should see the blob store: a symlink
// <GOCACHE>/grid-<hash of blobDir> to it, or blobDir itself if there is no GOCACHE to link
// from or the link cannot be made. cmd/go installs a file it got from the cache (`go build -o
// x.a` of a package) by a chmod and a rename of that path, unless the path lies under GOCACHE,
// where it copies (moveOrCopyFile in cmd/go/internal/work). A blob handed out as it is would
// leave the store under the feet of any other build reading it. `go clean -cache` removes only
// GOCACHE's two-hex-digit dirs, and removes a symlink, never what it points to.
func linkStore(gocache, blobDir string) string {
	if gocache == "" || !filepath.IsAbs(gocache) {
		return blobDir
	}
	sum := sha256.Sum256([]byte(blobDir))
	link := under(gocache, "grid-"+hex.EncodeToString(sum[:8]))
	if target, err := os.Readlink(link); err == nil && target == blobDir {
		return link
	}
	// Made under another name and renamed into place: concurrent helpers race harmlessly.
	tmp := fmt.Sprintf("%s.%d.tmp", link, os.Getpid())
	os.Remove(tmp)
	if err := os.Symlink(blobDir, tmp); err != nil {
		return blobDir
	}
	if err := os.Rename(tmp, link); err != nil {
		os.Remove(tmp)
		return blobDir
	}
	return link
}

// holds reports whether the file at path already has exactly these bytes. A put of a body the
// store has (many actions share one output, such as the empty one) then leaves the file alone:
// renaming a copy over it would give it a new inode, and every index entry naming it would
// then fail its stamp check (cache.ts, invariant 3) and be hashed again. The bytes are
// compared, not just the size, so that an entry still names only bytes its writer checked.
func holds(path string, body []byte) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || st.Size() != int64(len(body)) {
		return false
	}
	have := make([]byte, len(body)+1) // one more: a file that grew since the stat shows it
	n, err := io.ReadFull(f, have)
	if n == 0 {
		return len(body) == 0 && err == io.EOF
	}
	return err == io.ErrUnexpectedEOF && n == len(body) && bytes.Equal(have[:n], body)
}

// writeAtomic writes body to a temp file in tmpDir and renames it to path, so that a reader
// (or a concurrent writer of the same content) never sees a partial file. A directory it made
// earlier that has gone since (removed by hand, or by a gc) is made again.
func writeAtomic(tmpDir, path string, body []byte) error {
	err := writeAtomicIn(tmpDir, path, body)
	if errors.Is(err, fs.ErrNotExist) {
		dirsMade.Delete(tmpDir)
		dirsMade.Delete(filepath.Dir(path))
		err = writeAtomicIn(tmpDir, path, body)
	}
	return err
}

// writeAtomicIn is one attempt of writeAtomic.
func writeAtomicIn(tmpDir, path string, body []byte) error {
	if err := ensureDir(tmpDir); err != nil {
		return err
	}
	f, err := os.CreateTemp(tmpDir, filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	_, err = f.Write(body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		if err = ensureDir(filepath.Dir(path)); err == nil {
			err = os.Rename(f.Name(), path)
		}
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// dirsMade holds the directories ensureDir has made or found. Without it every put made two
// mkdir(2) calls, each taking its parent directory's lock against the other puts' creates
// (~0.2 CPU-s of a cold std build's ~1,450 puts, by perf).
var dirsMade sync.Map

// ensureDir makes dir (and its parents) unless this process has already seen it.
func ensureDir(dir string) error {
	if _, ok := dirsMade.Load(dir); ok {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	dirsMade.Store(dir, struct{}{})
	return nil
}

func (h *helper) privateDir() (string, error) {
	h.privMu.Lock()
	defer h.privMu.Unlock()
	if h.privDir == "" {
		dir, err := os.MkdirTemp("", "grid-cacheprog-")
		if err != nil {
			return "", err
		}
		h.privDir = dir
	}
	return h.privDir, nil
}

func (h *helper) removePrivateDir() {
	h.privMu.Lock()
	defer h.privMu.Unlock()
	if h.privDir != "" {
		os.RemoveAll(h.privDir)
	}
}

// nodeConn multiplexes requests over one node connection: each request gets a fresh id, one
// reader goroutine hands each reply to the channel waiting for its id.
type nodeConn struct {
	conn nodeSocket
	wmu  sync.Mutex // serialises frame writes

	mu      sync.Mutex
	nextID  int64
	pending map[int64]chan map[string]any // nil once the connection has failed
}

var (
	errNodeGone    = errors.New("node connection closed")
	errNodeStalled = errors.New("node did not answer in time")
)

// callTimeout bounds one request to the node. A healthy node answers a lookup in well under a
// second even when it fetches the body from a peer (peercache/constants.ts bounds those: ~6 s
// for a 64 MiB body); after this long the helper gives up on the node and the build goes on
// without the cache. The shims give up on a silent node after as long (stallLimit); the
// helper that gives up first leaves the build's stalled mark, as a shim does, so that the
// compiles after it do not ask the node; one that finds the mark a shim left gives up at once
// (and its calls waiting give up within markPoll), rather than wait as long again.
var callTimeout = 30 * time.Second

// markPoll is how often a call waiting for the node looks for the build's stalled mark.
const markPoll = time.Second

// call sends msg (its id is filled in) and waits for the reply. An error frame is an error.
func (n *nodeConn) call(msg map[string]any) (map[string]any, error) {
	ch := make(chan map[string]any, 1)
	mark := stalledMark()
	n.mu.Lock()
	if n.pending == nil {
		n.mu.Unlock()
		return nil, errNodeGone
	}
	if markedStalled(mark) {
		n.mu.Unlock()
		n.fail() // a shim of this build found the node hung
		return nil, errNodeStalled
	}
	n.nextID++
	id := n.nextID
	n.pending[id] = ch
	n.mu.Unlock()

	msg["id"] = id
	n.wmu.Lock()
	err := writeFrame(n.conn, msg)
	n.wmu.Unlock()
	if err != nil {
		n.fail()
		return nil, err
	}
	timer := time.NewTimer(callTimeout)
	defer timer.Stop()
	poll := time.NewTicker(markPoll)
	defer poll.Stop()
	var reply map[string]any
	var ok bool
wait:
	for {
		select {
		case reply, ok = <-ch:
			break wait
		case <-poll.C:
			if markedStalled(mark) {
				n.fail() // a shim of this build found the node hung meanwhile
				return nil, errNodeStalled
			}
		case <-timer.C:
			n.fail() // a node that stops answering must not stall the build
			// nor make each compile of the build wait as long again before it gives up on it
			setStalled(mark)
			return nil, errNodeStalled
		}
	}
	if !ok {
		return nil, errNodeGone
	}
	if reply["type"] == "error" {
		return nil, fmt.Errorf("node: %v: %v", reply["code"], reply["message"])
	}
	return reply, nil
}

func (n *nodeConn) readLoop(r io.Reader) {
	for {
		reply, err := readFrame(r)
		if err != nil {
			n.fail()
			return
		}
		id, ok := asInt(reply["id"])
		n.mu.Lock()
		ch := n.pending[id]
		delete(n.pending, id)
		n.mu.Unlock()
		if !ok || ch == nil {
			n.fail() // a reply to nothing we asked: the stream cannot be trusted
			return
		}
		ch <- reply
	}
}

// fail closes the connection and wakes every waiting caller with an error.
func (n *nodeConn) fail() {
	n.mu.Lock()
	for _, ch := range n.pending {
		close(ch)
	}
	n.pending = nil
	n.mu.Unlock()
	n.conn.Close()
}
