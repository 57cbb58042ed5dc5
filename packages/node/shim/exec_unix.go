//go:build unix

package main

import (
	"os"
	"syscall"
)

// execTool replaces this process with tool (same arguments and environment; cmd/go always
// passes the tool's absolute path). It returns only if exec fails, which then fails this tool
// invocation; cmd/go does not cache failed actions, so the one line of explanation is never
// replayed later.
func execTool(tool string, args []string) {
	err := syscall.Exec(tool, append([]string{tool}, args...), os.Environ())
	os.Stderr.WriteString("grid-shim: exec " + tool + ": " + err.Error() + "\n")
	os.Exit(1)
}
