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
