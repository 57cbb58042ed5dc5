//go:build !unix

package main

import (
	"net"
	"time"
)

// dialNode connects to the node's socket (AF_UNIX, which Windows has had since 10 1803).
func dialNode(path string, timeout time.Duration) (nodeSocket, error) {
	conn, err := net.DialTimeout("unix", path, timeout)
	if err != nil {
		return nil, err
	}
	return conn, nil
}
