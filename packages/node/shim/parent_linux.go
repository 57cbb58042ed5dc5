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
	return parentOf(os.Getppid())
}

// ownCacheUnderGo reports whether the go command this helper serves (its parent) was started,
// through a program or a test binary, by another run of the same go executable whose GOCACHE
// differs from its own: a test that runs go with a fresh GOCACHE, under `grid env`, where
// every go command inherits GOCACHEPROG and no GRID_PARENT tells grid build's go apart.
func ownCacheUnderGo() bool {
	parent := os.Getppid()
	exe, err := os.Readlink(procPath(parent, "exe"))
	if err != nil {
		return false
	}
	gocache := os.Getenv("GOCACHE")
	pid := parent
	for depth := 0; depth < 32; depth++ { // a shell, a terminal, a session: a few levels at most
		ppid, ok := parentOf(pid)
		if !ok || ppid <= 1 {
			return false
		}
		if e, err := os.Readlink(procPath(ppid, "exe")); err == nil && e == exe {
			return envOf(ppid, "GOCACHE") != gocache
		}
		pid = ppid
	}
	return false
}

func procPath(pid int, name string) string {
	return "/proc/" + strconv.Itoa(pid) + "/" + name
}

// parentOf returns the parent pid of pid, if it can be read.
func parentOf(pid int) (int, bool) {
	b, err := os.ReadFile(procPath(pid, "stat"))
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

// envOf returns a variable of the environment pid started with ("" when unset or unreadable).
func envOf(pid int, name string) string {
	b, err := os.ReadFile(procPath(pid, "environ"))
	if err != nil {
		return ""
	}
	for _, kv := range strings.Split(string(b), "\x00") {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			return v
		}
	}
	return ""
}
