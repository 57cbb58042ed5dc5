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

// grandparent returns the parent's parent pid (of cmd/go, for the cache helper), if it can be read.
func grandparent() (int, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(os.Getppid()) + "/stat")
	if err != nil {
		return 0, false
	}
	// pid (comm) state ppid ...: comm may hold spaces and parentheses, so read after the last ')'
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 2 {
		return 0, false
	}
	ppid, err := strconv.Atoi(fields[1])
	return ppid, err == nil
}
