package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestGoStoreFor(t *testing.T) {
	dir := t.TempDir()
	if goStoreFor("", dir) != nil || goStoreFor("tmp", dir) != nil {
		t.Fatal("a store without GRID_WITHOUT_NODE=gocache")
	}
	if goStoreFor(withoutNodeGoCache, "") != nil || goStoreFor(withoutNodeGoCache, "off") != nil {
		t.Fatal("a store without an absolute GOCACHE")
	}
	if s := goStoreFor(withoutNodeGoCache, dir); s == nil || s.dir != dir {
		t.Fatalf("store %v", s)
	}
}

// A put is served back by a get, in cmd/go's file layout; anything not as cmd/go writes it is
// a miss. (That cmd/go itself reads these files is shown by test/e2e/env.test.ts.)
func TestGoStoreRoundTrip(t *testing.T) {
	s := &goStore{dir: t.TempDir()}
	body := []byte("an archive")
	sum := sha256.Sum256(body)
	action := bytes.Repeat([]byte{0xab}, idBytes)

	if res := s.get(request{ID: 1, ActionID: action}); !res.Miss {
		t.Fatalf("empty store: %+v", res)
	}
	path, err := s.put(action, sum[:], body)
	if err != nil {
		t.Fatal(err)
	}
	name := hex.EncodeToString(sum[:])
	if want := filepath.Join(s.dir, name[:2], name+"-d"); path != want {
		t.Fatalf("output file %s, want %s", path, want)
	}
	res := s.get(request{ID: 2, ActionID: action})
	if res.Miss || res.ID != 2 || !bytes.Equal(res.OutputID, sum[:]) || res.Size != int64(len(body)) || res.DiskPath != path || res.Time == nil {
		t.Fatalf("get after put: %+v", res)
	}
	if got, _ := os.ReadFile(res.DiskPath); !bytes.Equal(got, body) {
		t.Fatalf("body %q", got)
	}
	entry, _ := os.ReadFile(s.file(action, "a"))
	if len(entry) != goEntryBytes || !strings.HasPrefix(string(entry), "v1 abab") {
		t.Fatalf("action file %q", entry)
	}

	// an output file of another size, a malformed or foreign action file: misses
	os.WriteFile(path, []byte("short"), 0o644)
	if res := s.get(request{ID: 3, ActionID: action}); !res.Miss {
		t.Fatalf("output of the wrong size: %+v", res)
	}
	os.WriteFile(path, body, 0o644)
	for _, bad := range [][]byte{entry[:len(entry)-1], append([]byte("v2"), entry[2:]...), bytes.Replace(entry, []byte("abab"), []byte("cdcd"), 1)} {
		os.WriteFile(s.file(action, "a"), bad, 0o644)
		if res := s.get(request{ID: 4, ActionID: action}); !res.Miss {
			t.Fatalf("action file %q: %+v", bad, res)
		}
	}
}
