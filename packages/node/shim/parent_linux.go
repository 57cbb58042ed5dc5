package main

import (
	"os"
	"strconv"
	"strings"
)

// parentCommand returns the command line of the process that started this one (cmd/go, for
// the cache helper), or nil if it cannot be read.
func parentCommand() []string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(os.Getppid()) + "/cmdline")
	if err != nil || len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
}
