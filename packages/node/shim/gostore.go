package main

// The cache helper's store when there is no node and `grid env` set GRID_WITHOUT_NODE=gocache:
// cmd/go's own on-disk format in GOCACHE (cmd/go/internal/cache). A plain `go` command run
// with grid's environment while the daemon is down then caches as it would without grid, in
// the same place, and what it writes is there for go without grid too. Without the variable
// (under `grid build`, which always has a node, its own or an embedded one) the bodies of a
// build that lost its node go to a private temp dir instead (cacheprog.go).
//
// The format: <dir>/<xx>/<ActionID hex>-a holds "v1 <ActionID hex> <OutputID hex> <size,
// 20 wide> <time ns, 20 wide>\n"; <dir>/<xx>/<OutputID hex>-d holds the body; xx is the
// first two hex digits of the name.

import (
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// withoutNodeGoCache is the value of GRID_WITHOUT_NODE (ENV.withoutNode of
// packages/protocol/src/constants.ts) that asks for this store.
const withoutNodeGoCache = "gocache"

// goEntryBytes is the length of an action file: "v1 " and two hex IDs, two 20-wide numbers,
// three spaces and a newline.
const goEntryBytes = 3 + 2*2*idBytes + 1 + 1 + 20 + 1 + 20 + 1

// goMtimeInterval is cmd/go's: a file used again is re-stamped at most once an hour, so that
// `go`'s own trimming (by modification time) keeps what is in use.
const goMtimeInterval = time.Hour

type goStore struct{ dir string }

// goStoreFor returns the store for GRID_WITHOUT_NODE=gocache and an absolute GOCACHE, else nil.
func goStoreFor(mode, gocache string) *goStore {
	if mode != withoutNodeGoCache || gocache == "" || !filepath.IsAbs(gocache) {
		return nil
	}
	return &goStore{dir: gocache}
}

func (s *goStore) file(id []byte, kind string) string {
	name := hex.EncodeToString(id)
	return under(s.dir, name[:2], name+"-"+kind) // GOCACHE's own spelling, as cmd/go's paths have it
}

// get answers a get from GOCACHE: a miss unless the action file is well formed, names this
// ActionID, and its output file has the size it records.
func (s *goStore) get(req request) response {
	miss := response{ID: req.ID, Miss: true}
	if len(req.ActionID) != idBytes {
		return miss
	}
	actionFile := s.file(req.ActionID, "a")
	b, err := os.ReadFile(actionFile)
	if err != nil || len(b) != goEntryBytes || string(b[:3]) != "v1 " || b[len(b)-1] != '\n' {
		return miss
	}
	at := 3
	field := func(n int) string {
		f := string(b[at : at+n])
		at += n + 1
		return f
	}
	action, output := field(2*idBytes), field(2*idBytes)
	sizeText, timeText := field(20), field(20)
	outputID, err := hex.DecodeString(output)
	if err != nil || action != hex.EncodeToString(req.ActionID) || len(outputID) != idBytes {
		return miss
	}
	size, err1 := strconv.ParseInt(strings.TrimLeft(sizeText, " "), 10, 64)
	ns, err2 := strconv.ParseInt(strings.TrimLeft(timeText, " "), 10, 64)
	if err1 != nil || err2 != nil || size < 0 {
		return miss
	}
	outputFile := s.file(outputID, "d")
	st, err := os.Stat(outputFile)
	if err != nil || st.Size() != size {
		return miss
	}
	goUsed(actionFile)
	goUsedInfo(outputFile, st)
	t := time.Unix(0, ns)
	return response{ID: req.ID, OutputID: outputID, Size: size, Time: &t, DiskPath: outputFile}
}

// put writes the body (unless the output file already holds it), then the action file, each
// through a temp file and a rename: a reader never sees a partial file.
func (s *goStore) put(actionID, outputID, body []byte) (string, error) {
	outputFile := s.file(outputID, "d")
	if !holds(outputFile, body) {
		if err := writeAtomic(filepath.Dir(outputFile), outputFile, body); err != nil {
			return "", err
		}
	}
	entry := fmt.Sprintf("v1 %x %x %20d %20d\n", actionID, outputID, len(body), time.Now().UnixNano())
	actionFile := s.file(actionID, "a")
	if err := writeAtomic(filepath.Dir(actionFile), actionFile, []byte(entry)); err != nil {
		return "", err
	}
	return outputFile, nil
}

func goUsed(path string) {
	if st, err := os.Stat(path); err == nil {
		goUsedInfo(path, st)
	}
}

func goUsedInfo(path string, st os.FileInfo) {
	if now := time.Now(); now.Sub(st.ModTime()) >= goMtimeInterval {
		os.Chtimes(path, now, now)
	}
}
