//go:build unix

package main

import (
	"os"
	"syscall"
)

// noFollow makes an open fail on a symlink (files at predictable paths in TMPDIR).
const noFollow = syscall.O_NOFOLLOW

// ownFile reports whether info is of a file this user owns.
func ownFile(info os.FileInfo) bool {
	st, ok := info.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == os.Getuid()
}
