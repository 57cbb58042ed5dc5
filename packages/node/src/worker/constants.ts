/** Limits of the local compile pool. */
import { availableParallelism } from 'node:os'

/** One compile per core: cmd/go's own default `-p` is GOMAXPROCS. */
export const DEFAULT_SLOTS = availableParallelism()

/** Grace between SIGTERM and SIGKILL when a compile is cancelled. */
export const KILL_GRACE_MS = 2_000

/**
 * A path to a compiler the pool agrees to run: `<GOROOT>/pkg/tool/<goos>_<goarch>/compile`.
 * The socket is the user's own (mode 0600), but a request still names only a known tool.
 */
export const COMPILE_TOOL = /[/\\]pkg[/\\]tool[/\\][^/\\]+[/\\]compile(\.exe)?$/

/**
 * The heap, in MiB, the compilers the node starts (or grants a slot to) may grow to before
 * their first collection: the compiler's own `-d=gcstart` (its default is 128 MiB). Output is
 * unchanged (the flag tunes the compiler's garbage collector only; it is not in cmd/go's action
 * ID, nor in the object file); the large packages, whose compiles set a build's pace, take
 * 10–20 % less CPU at 512 (docs/benchmarks/cold.md). The cost is memory: ~100 MiB more
 * resident per running compile of a large package. 0 keeps the compiler's default.
 */
export const COMPILE_START_HEAP_MB = 512

/**
 * The first Go release whose compiler knows `-d=gcstart`: an older one stops at the unknown
 * debug key (`invalid value "gcstart=512" for flag -d: unknown debug key gcstart`) and compiles
 * nothing, so with Go 1.24 and 1.25 every compile failed. The pool and the shim add the flag only
 * to a compile whose `-goversion` (cmd/go passes it to every compile of a release toolchain, and
 * the compiler refuses one that is not its own) names this release or a later one.
 */
export const START_HEAP_MIN_GO = [1, 26] as const
