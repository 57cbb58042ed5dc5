package main

import (
	"errors"
	"os"
	"os/exec"
)

// runTool runs tool as a child with this process's streams and environment and returns its
// exit status (1 if it could not be started or was killed by a signal).
func runTool(tool string, args []string) int {
	cmd := exec.Command(tool, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit) && exit.ExitCode() >= 0:
		return exit.ExitCode()
	}
	os.Stderr.WriteString("grid-shim: run " + tool + ": " + err.Error() + "\n")
	return 1
}
