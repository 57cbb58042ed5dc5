package main

import (
	"os"
	"syscall"
)

// peerIsOwn reports whether the process listening on the connected socket fd runs as this
// user (SO_PEERCRED: the credentials the listener had when it called listen). Unlike the
// socket file's owner, which dialNode looks at before it connects, this is the end actually
// reached: nothing can be swapped in between.
func peerIsOwn(fd int) (bool, error) {
	cred, err := syscall.GetsockoptUcred(fd, syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	if err != nil {
		return false, err
	}
	return int(cred.Uid) == os.Getuid(), nil
}
