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
