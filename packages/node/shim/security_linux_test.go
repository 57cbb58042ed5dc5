package main

import (
	"bufio"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// A socket whose file is this user's while another user listens on it (made after the shim
// looked at the file, or given away): the listener's own uid is what dialNode goes by.
func TestDialForeignListener(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root, to listen as another user")
	}
	dir, err := os.MkdirTemp("", "grid-peercred")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	// the test binary's own dir is private: a copy the other user can run
	bin := filepath.Join(dir, "listener")
	if b, err := os.ReadFile(os.Args[0]); err != nil || os.WriteFile(bin, b, 0o755) != nil {
		t.Fatalf("copying the test binary: %v", err)
	}
	path := filepath.Join(dir, "s")
	cmd := exec.Command(bin, "-test.run=^TestForeignListenerProcess$")
	cmd.Env = append(os.Environ(), "GRID_TEST_LISTEN="+path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); cmd.Wait() }()
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "listening\n" {
		t.Fatalf("the other user's listener did not start: %q %v", line, err)
	}
	if err := os.Chown(path, os.Getuid(), os.Getgid()); err != nil {
		t.Fatal(err)
	}
	_, err = dialNode(path, time.Second)
	if !errors.Is(err, errForeignSocket) {
		t.Fatalf("dialNode to another user's listener on a file of ours: got %v, want errForeignSocket", err)
	}

	// the same path with a listener of this user's is dialled
	own := filepath.Join(dir, "own")
	l, err := net.Listen("unix", own)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	conn, err := dialNode(own, time.Second)
	if err != nil {
		t.Fatalf("dialNode to this user's listener: %v", err)
	}
	conn.Close()
}

// The other user's side of TestDialForeignListener, run as a process of its own.
func TestForeignListenerProcess(t *testing.T) {
	path := os.Getenv("GRID_TEST_LISTEN")
	if path == "" {
		t.Skip("run by TestDialForeignListener")
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	os.Stdout.WriteString("listening\n")
	buf := make([]byte, 1)
	os.Stdin.Read(buf) // until the test closes it
}
