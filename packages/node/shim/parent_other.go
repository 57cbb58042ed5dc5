//go:build !linux

package main

// parentCommand is Linux-only for now: elsewhere a helper under `grid env` opens no build of
// its own, and the node counts its requests under no build.
func parentCommand() []string {
	return nil
}

// grandparent is Linux-only for now: elsewhere a nested go command is not told apart.
func grandparent() (int, bool) {
	return 0, false
}

// ownCacheUnderGo is Linux-only for now: elsewhere a go command a test starts under grid env
// goes through the node.
func ownCacheUnderGo() bool {
	return false
}
