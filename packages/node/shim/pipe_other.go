//go:build !linux

package main

import "os"

// growPipe is Linux-only (F_SETPIPE_SZ); elsewhere the pipe keeps its default size.
func growPipe(f *os.File) {}
