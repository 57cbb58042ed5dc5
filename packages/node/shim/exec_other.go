//go:build !unix

package main

import (
	"errors"
	"os"
	"os/exec"
)

// execTool runs tool with the same arguments, environment and standard streams, then exits with
// its exit code: without exec(2) (Windows) a child process is the closest equivalent.
func execTool(tool string, args []string) {
	cmd := exec.Command(tool, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		os.Exit(0)
	case errors.As(err, &exit) && exit.ExitCode() >= 0:
		os.Exit(exit.ExitCode())
	}
	os.Stderr.WriteString("grid-shim: run " + tool + ": " + err.Error() + "\n")
	os.Exit(1)
}
