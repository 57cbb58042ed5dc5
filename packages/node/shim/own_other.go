//go:build !unix

package main

import "os"

// noFollow: no O_NOFOLLOW here (Windows' TMPDIR is per user).
const noFollow = 0

// ownFile: no owners to compare here.
func ownFile(info os.FileInfo) bool { return true }
