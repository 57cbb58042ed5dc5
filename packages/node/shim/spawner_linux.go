package main

import (
	"os"
	"syscall"
)

// childAttr makes the kernel kill a child if the spawner dies first (a crash, SIGKILL): a compile
// left running could write its output while the node runs the same compile again.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// setNice lowers the scheduling priority of a child (pid 0: of the calling thread, which on Linux
// an exec from that thread keeps); a failure leaves it where it was.
func setNice(pid, nice int) {
	syscall.Setpriority(syscall.PRIO_PROCESS, pid, nice)
}

// exitSignal names the signal that ended a child, or "" when it exited.
func exitSignal(state *os.ProcessState) string {
	if ws, ok := state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return ws.Signal().String()
	}
	return ""
}
