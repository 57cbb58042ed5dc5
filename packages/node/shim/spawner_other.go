//go:build !linux

package main

import (
	"os"
	"syscall"
)

// The node uses the spawner on Linux only (elsewhere Node's own spawn does not copy its heap);
// these keep the mode buildable everywhere.

func childAttr() *syscall.SysProcAttr { return nil }

func setNice(pid, nice int) {}

func exitSignal(state *os.ProcessState) string { return "" }
