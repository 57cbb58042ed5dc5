//go:build unix

package main

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Under grid env the stalled mark's name in TMPDIR is predictable (the go command's pid): a
// symlink another user plants there must not make the shim truncate or write the file it points
// to, and a mark that is not this user's own regular file must not keep the shim off its node.
func TestStalledMarkPlanted(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	mark := filepath.Join(dir, "mark")
	if err := os.Symlink(victim, mark); err != nil {
		t.Fatal(err)
	}
	setStalled(mark)
	if b, err := os.ReadFile(victim); err != nil || string(b) != "precious" {
		t.Fatalf("the file a planted mark points to became %q (%v)", b, err)
	}
	if markedStalled(mark) {
		t.Error("a symlink honoured as a mark")
	}
	own := filepath.Join(dir, "own")
	setStalled(own)
	if !markedStalled(own) {
		t.Error("the shim's own mark not honoured")
	}
	if os.Getuid() != 0 {
		t.Skip("the rest needs root, to give a file to another user")
	}
	if err := os.Chown(own, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if markedStalled(own) {
		t.Error("another user's mark honoured")
	}
}

// A node socket another user made is not dialled: their node would answer this user's compiles.
func TestDialForeignSocket(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root, to give a socket to another user")
	}
	path := filepath.Join(t.TempDir(), "s")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := os.Chown(path, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	_, err = dialNode(path, time.Second)
	if !errors.Is(err, errForeignSocket) {
		t.Fatalf("dialNode to another user's socket: got %v, want errForeignSocket", err)
	}
}
