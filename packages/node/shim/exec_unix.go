//go:build unix

package main

import (
	"net"
	"os"
	"runtime"
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

// execHolding replaces this process with tool like execTool, keeping conn open across the exec
// (a duplicate of its descriptor without close-on-exec): the node holds the compile's slot for
// as long as the connection lives, that is, until the compiler exits. It returns only if conn
// has no descriptor to keep; if exec itself fails, the process exits as execTool's does.
func execHolding(tool string, args []string, conn net.Conn) {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return
	}
	f, err := uc.File() // a dup, close-on-exec like every descriptor Go opens
	if err != nil {
		return
	}
	if _, _, errno := syscall.Syscall(syscall.SYS_FCNTL, f.Fd(), syscall.F_SETFD, 0); errno != 0 {
		f.Close()
		return
	}
	execTool(tool, args)
	runtime.KeepAlive(f) // no finalizer may close the kept descriptor before the exec
}
