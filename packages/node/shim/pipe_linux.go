package main

import (
	"os"
	"syscall"
)

// fSetPipeSize is F_SETPIPE_SZ (F_LINUX_SPECIFIC_BASE + 7), which package syscall lacks.
const fSetPipeSize = 1031

// pipeSize is what growPipe asks for: /proc/sys/fs/pipe-max-size is 1 MiB by default.
const pipeSize = 1 << 20

// growPipe makes the pipe cmd/go writes requests into hold pipeSize bytes instead of 64 KiB,
// so that cmd/go can write most put bodies whole without waiting for this process to be
// scheduled: it holds a lock that every other cache request needs while it writes one. It is
// a no-op on anything but a pipe, and failure (a lower limit) leaves the default size.
func growPipe(f *os.File) {
	if st, err := f.Stat(); err != nil || st.Mode()&os.ModeNamedPipe == 0 {
		return
	}
	syscall.Syscall(syscall.SYS_FCNTL, f.Fd(), fSetPipeSize, pipeSize)
}
