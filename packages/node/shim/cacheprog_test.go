package main

import (
	"os"
	"path/filepath"
	"testing"
)

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
