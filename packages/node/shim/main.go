// Command grid-shim is the only native piece of Grid. It is built on first use by the user's own
// `go` (standard library only, no network) and has three modes:
//
//	grid-shim /abs/path/to/tool args...   -toolexec: hand package compiles to the grid node
//	grid-shim cacheprog                   GOCACHEPROG helper (see cacheprog.go)
//	grid-shim spawner                     starts the node's own compiles (see spawner.go)
//
// Toolexec mode runs ~400 times per std build, so it does no work beyond what it needs. A Node
// process per call would cost ~59 ms; this costs ~2 ms. Every non-compile tool, every `-V=full`
// probe and every compile we cannot forward is exec'd unchanged (the process is replaced, no
// fork). A compile is sent to the node over $GRID_SOCKET as one `compile` frame
// (docs/protocol.md); the reply carries the tool's merged output and exit code, which we replay.
// Whenever the node is absent or fails, we run the tool here instead: the grid being down must
// never fail a build, and re-running a compile is always safe.
//
// Toolexec mode never prints anything of its own: cmd/go stores a tool's output in GOCACHE and
// replays it on every later hit (golang/go#27628). Why we fell back goes, at most, as one line to
// $GRID_FALLBACK_LOG. SIGINT/SIGTERM keep Go's default action (exit at once): the node sees the
// socket close and kills the compile it was running for us.
package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// outputEnv is OUTPUT_ENV of packages/protocol/src/constants.ts: the variables that change what
// the compiler writes. Only these travel to the node.
var outputEnv = []string{
	"GOOS", "GOARCH", "GO386", "GOAMD64", "GOARM", "GOARM64", "GOMIPS", "GOMIPS64", "GOPPC64",
	"GORISCV64", "GOWASM", "GOEXPERIMENT", "GOFIPS140", "GOCLOBBERDEADHASH", "GOCOMPILEDEBUG",
	"GOROOT", "GODEBUG",
}

// fileFlags are compile flags that make it write files besides -o and -asmhdr; such compiles
// run here, unmodified (shared/DESIGN.md §2). `-d` is matched separately (only as `-d` or `-d=…`,
// so that `-dynlink` and `-dwarf…` do not match).
var fileFlags = []string{
	"-json", "-cpuprofile", "-memprofile", "-blockprofile", "-mutexprofile", "-traceprofile",
	"-bench", "-linkobj",
}

func main() {
	shortenStallForTests(os.Getenv("GRID_TEST_STALL_MS"))
	if len(os.Args) == 2 && os.Args[1] == "cacheprog" {
		os.Exit(runCacheprog())
	}
	if len(os.Args) == 2 && os.Args[1] == "spawner" {
		os.Exit(runSpawner())
	}
	if len(os.Args) < 2 {
		// Run by hand, not by cmd/go: the only case where we explain ourselves.
		os.Stderr.WriteString("usage: grid-shim /path/to/tool [args...] | grid-shim cacheprog | grid-shim spawner\n")
		os.Exit(2)
	}
	tool, args := os.Args[1], os.Args[2:]

	if !isCompile(tool) || hasFlag(args, "-V") {
		execTool(tool, args)
	}
	if writesExtraFiles(args) {
		fallback("unsupported-flag", tool, args)
	}
	socket := os.Getenv("GRID_SOCKET")
	if socket == "" {
		fallback("no-node", tool, args)
	}
	mark := stalledMark()
	if markedStalled(mark) {
		fallback("node-stalled", tool, args) // an earlier compile of this build found the node hung
	}
	conn, err := dialNode(socket, 2*time.Second)
	if err != nil {
		fallback("node-unreachable", tool, args)
	}
	reply, err := askNode(conn, tool, args)
	if err != nil {
		conn.Close()
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			fallback("node-error", tool, args)
		}
		setStalled(mark)
		fallback("node-stalled", tool, args)
	}
	if reply.runHere {
		// The node granted a local slot: become the compiler (no process hop through the node,
		// output straight to cmd/go). The connection stays open in it and closes when it exits,
		// which frees the slot on the node; no fork, no wait, no compile-done. At the priority
		// the node asks for: a requester with peers runs its compiles below cmd/go's own steps.
		if reply.nice > 0 {
			runtime.LockOSThread() // niceness is per thread on Linux: exec from this one
			setNice(0, reply.nice)
		}
		args = withConcurrency(withStartHeap(args, reply.heapMB), reply.concurrency)
		execHolding(tool, args, conn)
		// Without exec(2): run it as a child, then report so the node frees the slot.
		code := runTool(tool, args)
		writeFrame(conn, map[string]any{"type": "compile-done", "id": 2, "build": os.Getenv("GRID_BUILD"), "exitCode": code})
		conn.Close()
		os.Exit(code)
	}
	os.Stdout.Write(reply.output)
	code := reply.code
	if code < 0 || code > 255 {
		code = 1
	}
	os.Exit(int(code))
}

// stalledFor is how long a node one compile found hung is skipped by the compiles after it.
// grid build removes its mark when the build ends; under grid env the mark outlives the go
// command, so it must expire: a node that recovers is asked again.
const stalledFor = 10 * time.Minute

// stalledMark is the file whose presence says the node hung during this build: beside the
// build's fallback log under grid build, else (under grid env) one per go command in TMPDIR.
func stalledMark() string {
	if log := os.Getenv("GRID_FALLBACK_LOG"); log != "" {
		return log + ".stalled"
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("grid-node-stalled-%d", os.Getppid()))
}

// markedStalled reports whether an earlier compile left mark less than stalledFor ago. Under
// grid env the mark's name in TMPDIR is predictable, so only a regular file of this user's
// counts: another user could otherwise keep this user's go commands off their node.
func markedStalled(mark string) bool {
	info, err := os.Lstat(mark)
	return err == nil && info.Mode().IsRegular() && ownFile(info) && time.Since(info.ModTime()) < stalledFor
}

// setStalled leaves (or refreshes) mark: the node hung during this build (a shim's compile, or
// the cache helper's call, heard nothing from it for stallLimit). Best effort: without it, each
// later compile finds the node hung on its own. Never through a symlink, and never truncating: a
// link planted at the predictable name must not make this user write to a file it points to.
func setStalled(mark string) {
	f, err := os.OpenFile(mark, os.O_WRONLY|os.O_CREATE|noFollow, 0o600)
	if err != nil {
		return
	}
	f.Close()
	now := time.Now()
	os.Chtimes(mark, now, now)
}

// isCompile reports whether tool is cmd/compile.
func isCompile(tool string) bool {
	return strings.TrimSuffix(filepath.Base(tool), ".exe") == "compile"
}

// normFlag turns `--flag` into `-flag` (Go's flag package accepts both).
func normFlag(arg string) string {
	if strings.HasPrefix(arg, "--") {
		return arg[1:]
	}
	return arg
}

// hasFlag reports whether any argument starts with prefix.
func hasFlag(args []string, prefix string) bool {
	for _, a := range args {
		if strings.HasPrefix(normFlag(a), prefix) {
			return true
		}
	}
	return false
}

// writesExtraFiles reports whether this compile would write files the node does not return.
// fuzzFlag is the one debug switch cmd/go itself gives compiles, to every package a
// `go test -fuzz` instruments; it writes no file, so those compiles go to the node
// (TASK_DEBUG_FLAGS in packages/protocol/src/task.ts).
const fuzzFlag = "-d=libfuzzer"

func writesExtraFiles(args []string) bool {
	for _, a := range args {
		a = normFlag(a)
		if a == fuzzFlag {
			continue // cmd/go's fuzz instrumentation (go test -fuzz): writes no file
		}
		if a == "-d" || strings.HasPrefix(a, "-d=") {
			return true
		}
		for _, f := range fileFlags {
			if strings.HasPrefix(a, f) {
				return true
			}
		}
	}
	return os.Getenv("GOSSAFUNC") != "" || os.Getenv("GOSSADIR") != ""
}

// fallback records why the compile runs here, then runs it.
func fallback(reason, tool string, args []string) {
	if path := os.Getenv("GRID_FALLBACK_LOG"); path != "" {
		// One O_APPEND write per line, so concurrent shims never interleave. Errors are ignored:
		// the log is a statistic, the compile is what matters.
		if f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|noFollow, 0o600); err == nil {
			f.Write([]byte(reason + "\n"))
			f.Close()
		}
	}
	execTool(tool, args)
}

// maxHeapMB bounds a granted starting heap (1 TiB): anything above is a malformed reply.
const maxHeapMB = 1 << 20

// withStartHeap gives the compiler a starting heap of heapMB MiB (its `-d=gcstart`, which
// changes no output) as its first argument, so that a later `-d` of cmd/go's still wins. The
// same rule as the node's (packages/node/src/worker/pool.ts withStartHeap).
func withStartHeap(args []string, heapMB int) []string {
	if heapMB <= 0 {
		return args
	}
	return append([]string{fmt.Sprintf("-d=gcstart=%d", heapMB)}, args...)
}

// maxConcurrency bounds a granted backend concurrency: anything above is a malformed reply.
const maxConcurrency = 1 << 16

// withConcurrency lowers cmd/go's `-c=N` to c (the compiler's backend concurrency, which
// changes no output): never raised, none added. The node gives a granted compile its share of
// the slots. The same rule as the node's (packages/node/src/worker/pool.ts withConcurrency).
func withConcurrency(args []string, c int) []string {
	if c < 1 {
		return args
	}
	out := make([]string, len(args))
	for i, arg := range args {
		out[i] = arg
		if !strings.HasPrefix(arg, "-c=") {
			continue
		}
		if n, err := strconv.Atoi(arg[len("-c="):]); err == nil && n > c {
			out[i] = "-c=" + strconv.Itoa(c)
		}
	}
	return out
}

type nodeReply struct {
	runHere     bool
	nice        int // with runHere: the compiler's scheduling priority (0: ours)
	heapMB      int // with runHere: the compiler's starting heap in MiB (0: its default)
	concurrency int // with runHere: the most backend concurrency it may use (0: cmd/go's)
	output      []byte
	code        int64
}

// stallLimit is COMPILE_STALL_MS of packages/protocol/src/constants.ts: how long the node may
// say nothing while it works on our compile. It says `compile-wait` every COMPILE_KEEPALIVE_MS
// (5 s); the node owns the compile's own timeouts.
var stallLimit = 30 * time.Second

// minTestStall is the shortest stall GRID_TEST_STALL_MS may set: two COMPILE_KEEPALIVE_MS
// intervals, so that a node that is only busy (it says compile-wait every 5 s) is never taken
// for a hung one.
const minTestStall = 10 * time.Second

// shortenStallForTests applies GRID_TEST_STALL_MS (tests only: a test of a hung node waits for
// it, test/e2e/robust.test.ts): stallLimit and the cache helper's callTimeout become that many
// milliseconds. It can only shorten them, to no less than minTestStall; any other value is
// ignored. Shorter, a build gives up on a silent node sooner and compiles without it, which is
// always safe.
func shortenStallForTests(value string) {
	ms, err := strconv.Atoi(value)
	if value == "" || err != nil {
		return
	}
	d := time.Duration(ms) * time.Millisecond
	if d < minTestStall || d >= stallLimit {
		return
	}
	stallLimit = d
	if d < callTimeout {
		callTimeout = d
	}
}

// errMalformed is a reply that is not the answer to our request.
var errMalformed = errors.New("malformed reply from the node")

// askNode sends one compile frame and waits for its reply: either the compile's result (the node
// ran it, here or on a peer) or a grant to run it here. The error is os.ErrDeadlineExceeded when
// the node went silent for stallLimit, and another on an error frame, a broken connection or a
// malformed reply.
func askNode(conn nodeSocket, tool string, args []string) (reply nodeReply, err error) {
	env := map[string]string{}
	for _, name := range outputEnv {
		if v, set := os.LookupEnv(name); set {
			env[name] = v
		}
	}
	cwd, _ := os.Getwd()
	if args == nil {
		args = []string{}
	}
	req := map[string]any{
		"type":       "compile",
		"id":         1,
		"build":      os.Getenv("GRID_BUILD"),
		"tool":       tool,
		"args":       args,
		"cwd":        cwd,
		"env":        env,
		"importPath": os.Getenv("TOOLEXEC_IMPORTPATH"),
		"canRunHere": true,
	}
	if req["build"] == "" {
		// Under `grid env`: the node knows our go command's build by its pid (cache-open).
		req["goPid"] = os.Getppid()
	}
	conn.SetDeadline(time.Now().Add(stallLimit))
	if err = writeFrame(conn, req); err != nil {
		return reply, err
	}
	for {
		msg, err := readFrame(conn)
		if err != nil {
			return reply, err
		}
		if id, ok := asInt(msg["id"]); !ok || id != 1 {
			return reply, errMalformed
		}
		switch msg["type"] {
		case "compile-wait":
			conn.SetDeadline(time.Now().Add(stallLimit))
			continue
		case "compile-here":
			conn.SetDeadline(time.Time{})
			nice, _ := asInt(msg["nice"])               // absent: 0
			heapMB, _ := asInt(msg["heapMB"])           // absent: 0
			concurrency, _ := asInt(msg["concurrency"]) // absent: 0
			if nice < 0 || nice > 19 || heapMB < 0 || heapMB > maxHeapMB || concurrency < 0 || concurrency > maxConcurrency {
				return reply, errMalformed
			}
			return nodeReply{runHere: true, nice: int(nice), heapMB: int(heapMB), concurrency: int(concurrency)}, nil
		case "compile-result":
			code, codeOK := asInt(msg["exitCode"])
			output, outOK := msg["output"].([]byte)
			if !codeOK || !outOK {
				return reply, errMalformed
			}
			return nodeReply{output: output, code: code}, nil
		}
		return reply, errMalformed
	}
}
