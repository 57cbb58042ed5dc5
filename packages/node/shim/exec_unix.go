//go:build unix

package main

import (
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
)

// execTool replaces this process with tool (same arguments and environment). It returns only if
// exec fails, which then fails this tool invocation; cmd/go does not cache failed actions, so
// the one line of explanation is never replayed later.
//
// Go's tools come as absolute paths, but the C compiler comes as $CC gives it, usually a bare
// `gcc`: cmd/go runs `<toolexec> gcc -### -x c -c -` to identify it, and a bare name is looked up
// in PATH, as exec.Command would. Were that probe to fail, cmd/go would put the error text
// into every cgo action ID in place of the compiler's identity, and a cgo package built with
// one gcc would be a cache hit for another.
func execTool(tool string, args []string) {
	path := tool
	if !strings.Contains(tool, "/") {
		found, err := exec.LookPath(tool)
		if err != nil {
			os.Stderr.WriteString("grid-shim: exec " + tool + ": " + err.Error() + "\n")
			os.Exit(1)
		}
		path = found
	}
	err := syscall.Exec(path, append([]string{tool}, args...), os.Environ())
	os.Stderr.WriteString("grid-shim: exec " + tool + ": " + err.Error() + "\n")
	os.Exit(1)
}

// execHolding replaces this process with tool like execTool, keeping conn open across the exec
// (its descriptor made inheritable): the node holds the compile's slot for as long as the
// connection lives, that is, until the compiler exits. It returns only if conn has no
// descriptor to keep; if exec itself fails, the process exits as execTool's does.
func execHolding(tool string, args []string, conn nodeSocket) {
	f, ok := conn.(*os.File)
	if !ok {
		return
	}
	// Fd puts the descriptor back in blocking mode, which the compiler never notices: it does
	// not touch it, the node sees it close when the compiler exits.
	if _, _, errno := syscall.Syscall(syscall.SYS_FCNTL, f.Fd(), syscall.F_SETFD, 0); errno != 0 {
		return
	}
	execTool(tool, args)
	runtime.KeepAlive(f) // no finalizer may close the kept descriptor before the exec
}
