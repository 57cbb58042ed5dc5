package main

import "syscall"

// blobStamp returns a file's size and the stamp the node records for a blob (cache.ts,
// invariant 3): inode, and ctime in nanoseconds.
func blobStamp(path string) (size int64, ino, ctimeNs uint64, ok bool) {
	var st syscall.Stat_t
	if syscall.Stat(path, &st) != nil {
		return 0, 0, 0, false
	}
	return st.Size, st.Ino, uint64(st.Ctim.Sec)*1e9 + uint64(st.Ctim.Nsec), true
}
