//go:build unix

package main

import (
	"errors"
	"os"
	"syscall"
	"time"
)

// errForeignSocket: the node's socket belongs to another user.
var errForeignSocket = errors.New("the socket belongs to another user")

// dialNode connects to the node's Unix socket with plain system calls rather than the net
// package: importing net cost every shim process ~90 page faults and two more threads at start,
// about a quarter of its own cost even on the path that only execs the tool, ~400 times per std
// build (docs/benchmarks/cold.md). The connection is an *os.File on a non-blocking descriptor, so reads and writes park
// in Go's poller and deadlines work as they do on a net.Conn.
//
// The send timeout bounds connect(2) itself: on Linux it waits for room in the node's accept
// backlog for at most that long. It is left set: the descriptor is non-blocking from then on,
// where it has no effect.
//
// A socket another user made is refused (errForeignSocket): their node would answer this user's
// compiles and cache gets (a --control path in /tmp is predictable, so another user can be
// listening there first). The compile then runs here, as with no node. The file's owner is
// looked at before the connect, and on Linux the listener's own uid after it (SO_PEERCRED),
// which closes the gap between the two: a socket made there once the file was looked at.
func dialNode(path string, timeout time.Duration) (nodeSocket, error) {
	if info, err := os.Lstat(path); err == nil && !ownFile(info) {
		return nil, &os.PathError{Op: "dial", Path: path, Err: errForeignSocket}
	}
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		return nil, err
	}
	syscall.CloseOnExec(fd)
	tv := syscall.NsecToTimeval(timeout.Nanoseconds())
	if err = syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_SNDTIMEO, &tv); err == nil {
		addr := &syscall.SockaddrUnix{Name: path}
		for {
			// A signal interrupts a connect that waits on a full backlog; for a Unix socket,
			// where nothing is half-done, trying again is safe.
			if err = syscall.Connect(fd, addr); err != syscall.EINTR {
				break
			}
		}
	}
	if err == nil {
		var own bool
		if own, err = peerIsOwn(fd); err == nil && !own {
			err = errForeignSocket
		}
	}
	if err == nil {
		err = syscall.SetNonblock(fd, true)
	}
	if err != nil {
		syscall.Close(fd)
		return nil, &os.PathError{Op: "dial", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}
