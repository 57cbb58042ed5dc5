//go:build !unix

package main

import "os"

// execTool runs tool with the same arguments, environment and standard streams, then exits with
// its exit code: without exec(2) (Windows) a child process is the closest equivalent.
func execTool(tool string, args []string) {
	os.Exit(runTool(tool, args))
}

// execHolding cannot replace the process here: the caller runs the tool as a child instead.
func execHolding(tool string, args []string, conn nodeSocket) {}
