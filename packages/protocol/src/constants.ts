/** Limits and names shared by the node, the CLI and (by hand, in Go) the shim. */

/**
 * Largest frame on the node socket. The biggest legitimate message is a compile's output
 * (diagnostics; megabytes only for a pathological package); cache bodies never travel in frames
 * because the helper writes blobs itself. Checked before decoding.
 */
export const MAX_FRAME_BYTES = 64 * 1024 * 1024

/** Largest compile output the node keeps; beyond it the output is cut with a note. */
export const MAX_COMPILE_OUTPUT_BYTES = 16 * 1024 * 1024

/**
 * The version of the messages on the node socket, bumped whenever one changes shape. A daemon
 * started by an older grid keeps running after an upgrade; `grid build` compares this with the
 * node's (in `build-begun`) and warns when they differ, since the cache helper and shim it runs
 * are its own version's. 1: until `cache-put` became `cache-index`; 2: since.
 */
export const PROTOCOL_VERSION = 2

/** cmd/go's ActionID and OutputID are sha256 sums. */
export const CACHE_ID_BYTES = 32

/**
 * Recall (docs/cache.md): the node remembers which ActionIDs a build looked up, and when the
 * same command runs again in the same directory it hands the cache helper those entries at
 * `cache-open`, so that a hit costs the helper a stat instead of a round trip to the node.
 * At most this many are remembered per command (`std` is ~1,100 actions, `cmd/...` ~2,000).
 */
export const MAX_RECALL = 100_000

/**
 * One recalled entry in `cache-opened.recalled`, fixed size, big-endian: ActionID (32),
 * OutputID (32), body size (u64), put time in unix ms (u64), and the blob's stamp when last
 * checked: inode (u64) and ctime in ns (u64). 100,000 of them are 9.6 MB, well under a frame.
 */
export const RECALL_RECORD_BYTES = 96

/**
 * Absent entries (docs/cache.md): a node whose misses are final (no peer it would ask) and that
 * runs no other build hands the cache helper at `cache-open` a Bloom filter of the ActionIDs in
 * its index, so that a get the node would answer with a miss costs the helper no round trip.
 * Bit j of the filter is bit j % 8 of byte j / 8; its size in bits is a power of two, 64 or
 * more. An ActionID sets ABSENT_PROBES bits: probe i is its big-endian uint32 at byte 4i,
 * modulo the size in bits (ActionIDs are sha256 sums, so these are uniform already). The
 * filter grows with the index, ABSENT_BITS_PER_ENTRY bits per entry; it is at most
 * MAX_ABSENT_BYTES (8 M entries).
 */
export const ABSENT_PROBES = 6
export const ABSENT_BITS_PER_ENTRY = 16
export const MAX_ABSENT_BYTES = 16 << 20

/**
 * One index entry in `cache-index.entries`, fixed size, big-endian: ActionID (32), OutputID (32),
 * body size (u64). The cache helper sends the entries of the puts it has written in batches of
 * at most MAX_INDEX_BATCH (4096 are 288 KiB).
 */
export const INDEX_RECORD_BYTES = 72
export const MAX_INDEX_BATCH = 4096

/**
 * Environment variables that change what `go tool compile` writes (shared/DESIGN.md §3), plus
 * GOROOT (the `$GOROOT` rewrite of paths) and GODEBUG. The shim forwards exactly these; the node
 * strips every other GO* variable of its own before running a compile.
 */
export const OUTPUT_ENV = [
  'GOOS', 'GOARCH', 'GO386', 'GOAMD64', 'GOARM', 'GOARM64', 'GOMIPS', 'GOMIPS64', 'GOPPC64',
  'GORISCV64', 'GOWASM', 'GOEXPERIMENT', 'GOFIPS140', 'GOCLOBBERDEADHASH', 'GOCOMPILEDEBUG',
  'GOROOT', 'GODEBUG'
] as const

/** Oldest Go that has GOCACHEPROG without an experiment flag. */
export const MIN_GO_VERSION = [1, 24] as const

/** Environment variables through which `grid build` and `grid env` talk to the shim and cache helper. */
export const ENV = {
  socket: 'GRID_SOCKET',
  build: 'GRID_BUILD',
  fallbackLog: 'GRID_FALLBACK_LOG',
  control: 'GRID_CONTROL',
  cache: 'GRID_CACHE',
  /** cmd/go's GOCACHE as `go env` reports it, for the cache helper (docs/cache.md) */
  gocache: 'GRID_GOCACHE',
  /** set by `grid build` for the go it starts: its own pid, which the cache helper finds as its go's parent (else a nested go, cacheprog.go) */
  parent: 'GRID_PARENT',
  /** set to `gocache` by `grid env`: with no node, the cache helper uses GOCACHE as go would */
  withoutNode: 'GRID_WITHOUT_NODE',
  /** set by `grid env`: GOFLAGS as it was before, which `grid env --unset` and `grid build` restore */
  goflagsBefore: 'GRID_ENV_GOFLAGS',
  /** set by `grid env`: the GOFLAGS it set, to tell one the user changed since from its own */
  goflagsSet: 'GRID_ENV_GOFLAGS_SET'
} as const

/** Why a compile did not run through the node's pool (written by the shim). */
export const FALLBACK_REASONS = ['no-node', 'node-unreachable', 'node-error', 'node-stalled', 'unsupported-flag'] as const

/**
 * While a compile waits on the node (for a local slot, a peer, a race), the node sends its shim
 * a `compile-wait` this often: the shim can tell a node that is busy from one that hangs.
 */
export const COMPILE_KEEPALIVE_MS = 5_000

/**
 * A shim that hears nothing from the node for this long (six keepalives missed) runs the compile
 * itself (`node-stalled`), and the shims of the same build after it do not ask that node again.
 * `stallLimit` in packages/node/shim/main.go. A node's event loop on a starved half-core host
 * stalled 320 ms at most (docs/benchmarks/remote-timeline.md). A test of a hung node may shorten
 * it (to no less than two keepalives) with GRID_TEST_STALL_MS: `shortenStallForTests` in main.go.
 */
export const COMPILE_STALL_MS = 30_000

export const GRID_VERSION = '0.1.0'

/**
 * How a body goes packed between members over a slow link (brotli): a compile's archive when the
 * offer asks (`pack`), a cache body when the fetch asks, a task's inputs when the worker's advert
 * says it unpacks them (`unpacks`). The sender says so on what it sends (`packed`); a member that
 * does not know a packing sends the body as it is.
 */
export const PACKING = 'br'

/**
 * A control character (C0, DEL, C1): refused in every string a peer sends that grid prints or
 * logs (advert fields, a task's compiler, import path and input paths), so that one member's
 * terminal escape sequence never reaches another member's terminal.
 */
export const CONTROL_CHAR = /[\x00-\x1f\x7f-\x9f]/
