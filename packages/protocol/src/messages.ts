/**
 * The messages on the node's Unix socket, as one discriminated union on `type`.
 *
 * Contract (docs/protocol.md): every frame is a msgpack map; `id` is chosen by the requester
 * and echoed in the one reply each request gets; a reply is the success message named in
 * `REPLIES` or an `error`. Everything decoded is checked by `validateMessage` against the field
 * table below before anyone looks at it: unknown types and missing or mistyped fields are
 * rejected with GRID_ERR_MESSAGE_INVALID, extra fields are ignored (newer senders).
 */
import { CACHE_ID_BYTES, INDEX_RECORD_BYTES, MAX_INDEX_BATCH, MAX_RECALL } from './constants.js'
import { GridError } from './errors.js'

export interface BuildStats {
  build: string
  command: string[]
  startedAt: number
  endedAt: number | null
  /** cmd/go cache lookups (`get`), i.e. actions cmd/go considered. */
  actions: number
  cache: {
    /** all hits; localHits + peerHits */
    hits: number
    localHits: number
    /**
     * Of the local hits, those the cache helper answered itself from the entries the node
     * recalled at the build's start (the actions the last build of the same command looked up).
     */
    recalled: number
    /** entries fetched from a peer during this build */
    peerHits: number
    misses: number
    /**
     * Of the misses, those the cache helper answered itself: the node's absent filter said its
     * index lacked them, and it had no peer to ask (docs/cache.md, "Absent entries").
     */
    absent: number
    puts: number
    putBytes: number
    hitBytes: number
    /** local blobs that failed their hash and were dropped */
    corrupt: number
    /**
     * Outputs cmd/go put that the cache could not store (its disk full, the file system gone
     * read-only): kept for this build only, compiled again by the next. `unstoredWhy`: the
     * first refusal's reason ('' when none).
     */
    unstored: number
    unstoredWhy: string
    /**
     * Outputs cmd/go put that were not stored because a file their compile read changed during
     * the build (after cmd/go may have hashed it): compiled again by the next build.
     */
    edited: number
    peer: {
      /** body bytes fetched from peers */
      bytes: number
      /**
       * time gets spent waiting on peers (lookups and fetches), summed over gets: cmd/go runs many
       * at once, so the sum can pass the build's own length (waitWallMs is the time it waited)
       */
      waitMs: number
      /**
       * wall time during which at least one get was waiting on peers: the union of the gets'
       * waits, between the longest of them and waitMs (absent from nodes before it was added)
       */
      waitWallMs?: number
      byPeer: Record<string, { hits: number, bytes: number }>
      /** lookups that went to peers, and their latency (ask → first usable answer or deadline) */
      lookups: { count: number, p50Ms: number, p99Ms: number }
      /** badHash, badClaim: a peer's lie; toolchain: a claim of another toolchain than this node's (not a lie) */
      rejected: { badHash: number, badClaim: number, toolchain?: number }
      /**
       * claims held back to compare with the local put (--verify): `confirmed` the same output,
       * `mismatched` a compile's differing (its producer untrusted), `unverifiable` another
       * action's differing (not a compile: a test's result holds its elapsed time; absent from
       * nodes before it was added). The rest were not put (a build that ended first).
       */
      verify: { sampled: number, confirmed: number, mismatched: number, unverifiable?: number }
      /**
       * entries a peer had that were compiled here instead: their bytes over that peer's link, as
       * last timed, would have taken longer than the compile (absent from nodes before it was added)
       */
      slowLink?: number
    }
  }
  compiles: {
    local: number
    remote: number
    /**
     * Of the remote compiles, those first placed here because every peer was busy, that a peer
     * took while they waited for the local slot (the node's backlog).
     */
    fromBacklog: number
    /**
     * Local compiles that failed or were interrupted (cmd/go stopped them, or the build was):
     * those the node ran or raced that exited non-zero, and those the shim ran on a grant that
     * said so (compile-done) or, having become the compiler, left no output. Their times are in
     * neither the compile-time history nor criticalPath.
     */
    failed: number
    running: number
    /** Compiles that did not go through the node's pool, by reason. */
    fallbacks: Record<string, number>
    /** Why compiles that could have gone to a peer ran locally, by reason. */
    localReasons: Record<string, number>
    /** Remote compiles per peer, and remote time split into transfer and compile (ms, summed). */
    byPeer: Record<string, number>
    remoteTransferMs: number
    remoteCompileMs: number
    /** Per remote task: wall time at the requester beyond the worker's compile time. */
    overhead: { count: number, p50Ms: number, p99Ms: number }
    /**
     * Remote tasks raced because they were overdue: by a local copy (`local`) or a second peer
     * (`duplicate`); `…Won` counts the races the copy finished first.
     */
    races: { local: number, localWon: number, duplicate: number, duplicateWon: number }
    /**
     * The longest chain of compiles through the package graph, from this build's own compile
     * times (of compiles that compiled, not `failed` ones), and the sum of all of them:
     * totalMs / ms bounds what any number of peers can give. null without a package graph
     * (`grid test`, or `go list` failed).
     */
    criticalPath: { ms: number, totalMs: number } | null
  }
}

export function emptyBuildStats (build: string, command: string[]): BuildStats {
  return {
    build,
    command,
    startedAt: Date.now(),
    endedAt: null,
    actions: 0,
    cache: {
      hits: 0, localHits: 0, recalled: 0, peerHits: 0, misses: 0, absent: 0, puts: 0, putBytes: 0, hitBytes: 0, corrupt: 0, unstored: 0, unstoredWhy: '', edited: 0,
      peer: { bytes: 0, waitMs: 0, waitWallMs: 0, byPeer: {}, lookups: { count: 0, p50Ms: 0, p99Ms: 0 }, rejected: { badHash: 0, badClaim: 0, toolchain: 0 }, verify: { sampled: 0, confirmed: 0, mismatched: 0, unverifiable: 0 }, slowLink: 0 }
    },
    compiles: {
      local: 0, remote: 0, fromBacklog: 0, failed: 0, running: 0, fallbacks: {}, localReasons: {}, byPeer: {}, remoteTransferMs: 0, remoteCompileMs: 0,
      overhead: { count: 0, p50Ms: 0, p99Ms: 0 }, races: { local: 0, localWon: 0, duplicate: 0, duplicateWon: 0 }, criticalPath: null
    }
  }
}

export interface CacheStats {
  dir: string
  entries: number
  blobs: number
  bytes: number
  /** the worker's store of inputs peers sent, beside the cache (absent from nodes before it was added, and from gc results of nodes before gc reported it) */
  workerInputs?: { inputs: number, bytes: number }
  /**
   * Entries of this node's own puts whose compile ran on a peer's worker, and how many each
   * worker compiled, by PeerId (docs/cache.md, invariant 5). Absent from nodes before it was
   * added; entries put before it are not counted (they did not record their worker).
   */
  compiledOnPeers?: { entries: number, byPeer: Record<string, number> }
}

/** A daemon, or the embedded node a `grid build` starts when none answers (it stops with its last build). */
export type NodeMode = 'daemon' | 'embedded'

export interface NodeStatus {
  version: string
  nodeId: string
  pid: number
  mode: NodeMode
  startedAt: number
  control: string
  cacheDir: string
  /** the file the node logs to, absolute, or null when it logs to none (absent from nodes before it was added) */
  log?: string | null
  slots: number
  compilesRunning: number
  buildsServed: number
  activeBuilds: number
  /** the build that ended last, if any (absent from nodes before it was added) */
  lastBuild?: BuildStats | null
  cache: CacheStats
  counters: { hits: number, peerHits: number, misses: number, puts: number, compiles: number, remoteCompiles: number, corrupt: number, badFrames: number }
  /** null when the node runs without a mesh */
  mesh: MeshStatus | null
  /**
   * why the node's mesh did not start (its builds then run alone), or null: it started, is
   * starting, was not asked for (an embedded node before its build's first miss) or the node has
   * none (absent from nodes before it was added)
   */
  meshFailure?: Failure | null
}

/** Why something of the node's failed (its mesh's start): code, message and hint, as an `error` reply carries them. */
export interface Failure { code: string, message: string, hint?: string }

export interface MeshStatus {
  peerId: string
  /** listen addresses with /p2p/<id>, ready for --bootstrap */
  addrs: string[]
  /** fingerprint of the swarm key, or 'open' */
  swarm: string
  mdns: boolean
  policy: string
  /** whether it takes compiles from peers now (its policy, and for `idle` its own load) */
  accepting?: boolean
  /** the workstation's own load per core, as its adverts carry it (the compiles it runs for peers left out) */
  load?: number
  peers: number
  /**
   * connected peers that are in no peer list, because no advert of theirs was taken (what
   * `grid peers` shows below its table as "not listed"); absent from nodes before it was added
   */
  unlisted?: UnlistedPeer[]
  /**
   * Compile tasks peers sent this node: run here, joined to an identical one already running,
   * refused (busy, or not acceptable: docs/remote.md), failed; `packed`, archives sent back
   * packed, as requesters that timed their link slow asked; `unpacked`, tasks some of whose
   * inputs such requesters sent packed (each absent from nodes before it was added). Absent when
   * no worker runs.
   */
  worker?: { ran: number, shared: number, refused: number, failed: number, packed?: number, unpacked?: number }
}

/** One row of `grid peers`. `advert` is the peer's last advert (see advert.ts). */
export interface PeerInfo {
  peerId: string
  addrs: string[]
  connected: boolean
  /** open connections to the peer: 1 when connected (duplicates are closed) */
  connections: number
  /**
   * the far end of the open connection, or null: for one the peer dialled, a port of its own,
   * not its listen address (those are `addrs`)
   */
  address: string | null
  rttMs: number | null
  lastSeen: number
  advert: Record<string, unknown>
  /** why this node no longer accepts the peer's cache entries, or null */
  untrusted: string | null
  /**
   * remote compiles this node sent it: done, failed (a failed peer is avoided for a while);
   * `msPerByte`, its link as last measured (a probe, or a task that moved 256 KiB or more);
   * `packed`, whether its archives and cache bodies come packed (its link's probe was slow;
   * absent from nodes before it was added)
   */
  remote: { ok: number, failed: number, speed?: number, msPerByte?: number, packed?: boolean }
  /**
   * why it takes none of this node's compiles or cache lookups whatever its toolchain (it is of
   * another grid version: it speaks other versions of grid's protocols), or null
   */
  incompatible?: string | null
  /** its agent as libp2p's identify gave it (`grid/<version> …`), or null before identify answered */
  agent?: string | null
  /** how its toolchain differs from this node's (then it takes none of its compiles, and none of its cache entries are taken), or null */
  otherToolchain?: string | null
}

/** A connected peer that is in no peer list, because no advert of it was taken: why, and what identify said of it. */
export interface UnlistedPeer { peerId: string, address: string | null, agent: string | null, protocols: string[], why: string }

export interface GcResult {
  removedEntries: number
  removedBlobs: number
  removedBytes: number
  /**
   * blobs the size called for that gc left: held by a running build, or written in the last 10
   * minutes (docs/cache.md, invariant 6); absent from nodes before it was added
   */
  spared?: { blobs: number, bytes: number }
  stats: CacheStats
}
export interface VerifyResult {
  checked: number
  corrupt: number
  missing: number
  removedEntries: number
  /** blobs that could not be read, left as they are with their entries (absent: none) */
  unreadable?: number
}

type Id = { id: number }

/**
 * One package of a build's graph (`go list -deps`), sent by `grid build` so the node can order
 * compiles by remaining critical path: import path, direct imports, bytes of Go source.
 */
export interface GraphPackage { p: string, i: string[], b: number }

/** Packages in one `build-graph` message; `cmd/...` has ~700. */
export const MAX_GRAPH_PACKAGES = 100_000

export type Request =
  /** `goPid`, from a shim that no `grid build` named (under `grid env`): the go command's pid */
  | Id & { type: 'compile', build: string, tool: string, args: string[], cwd: string, env: Record<string, string>, importPath: string, canRunHere?: boolean, goPid?: number }
  | Id & { type: 'compile-done', build: string, exitCode: number }
  /**
   * `command`, `cwd` and `goPid`, from a helper that no `grid build` named (under `grid env`):
   * the go command that started it, where, and its pid, so that the node can count and recall
   * a build for it, and count the compiles of shims that name the same go command's pid
   */
  /** `gotooldir`: its go command's GOTOOLDIR (cmd/go sets it for the helper), whose compiler made the build's entries */
  /** `ageMs`: how long ago the helper started, before its go command hashed any file */
  | Id & { type: 'cache-open', build: string, command?: string[], cwd?: string, goPid?: number, gotooldir?: string, ageMs?: number }
  | Id & { type: 'cache-get', build: string, actionId: Uint8Array }
  /** index entries for blobs the helper has put in place: INDEX_RECORD_BYTES each, concatenated */
  | Id & { type: 'cache-index', build: string, entries: Uint8Array }
  /**
   * ActionIDs (32 bytes each, concatenated) the helper answered from `cache-opened.recalled`,
   * how many gets it answered as misses from `cache-opened.absent`, and how many puts' bodies
   * the blob store would not take (`unstoredWhy`: the first refusal, a full disk say)
   */
  | Id & { type: 'cache-recalled', build: string, actionIds: Uint8Array, misses?: number, unstored?: number, unstoredWhy?: string }
  | Id & { type: 'status' }
  | Id & { type: 'build-begin', command: string[], cwd: string }
  | Id & { type: 'build-graph', build: string, packages: GraphPackage[] }
  | Id & { type: 'build-progress', build: string }
  | Id & { type: 'build-end', build: string }
  | Id & { type: 'cache-stats' }
  | Id & { type: 'cache-gc', maxBytes: number }
  | Id & { type: 'cache-verify' }
  | Id & { type: 'shutdown' }
  | Id & { type: 'peers' }

export type Reply =
  | Id & { type: 'compile-result', exitCode: number, output: Uint8Array }
  /**
   * run it yourself: a local slot is yours until `compile-done` or the connection closes; at
   * `nice` (0–19) when given, as the compiler's scheduling priority, with a starting heap of
   * `heapMB` MiB when given (the compiler's `-d=gcstart`), and with cmd/go's `-c=N` lowered to
   * `concurrency` when that is given and smaller (the compiler's backend concurrency); neither
   * changes the output
   */
  | Id & { type: 'compile-here', nice?: number, heapMB?: number, concurrency?: number }
  /**
   * not an answer: the node is alive and still working on the compile of that id. Sent every
   * COMPILE_KEEPALIVE_MS while it waits for a slot or a peer; a shim that hears nothing for
   * longer than the shim's stall limit runs the compile itself (`node-stalled`).
   */
  | Id & { type: 'compile-wait' }
  /**
   * `recalled`: RECALL_RECORD_BYTES per entry, see RECALL_RECORD_BYTES; `absent`: a filter of
   * the index's ActionIDs, see ABSENT_PROBES (absent when a miss here is not final)
   */
  /** `build`: the build the node opened for a helper that sent its command (name it from now on) */
  | Id & { type: 'cache-opened', blobDir: string, recalled: Uint8Array, absent?: Uint8Array, build?: string }
  | Id & { type: 'cache-hit', outputId: Uint8Array, size: number, time: number, diskPath: string }
  | Id & { type: 'cache-miss' }
  /** how many of the entries were stored (the others named no valid blob, and were logged) */
  | Id & { type: 'cache-indexed', stored: number }
  | Id & { type: 'status-result', status: NodeStatus }
  /** `protocol`: the node's PROTOCOL_VERSION (absent from nodes of version 1) */
  | Id & {
    type: 'build-begun', build: string, parallelism: number, remoteSlots: number, protocol?: number
    /** a connected peer could take this node's compiles (its toolchain, its policy), free now or not */
    offload?: boolean
    /** the node's mode, as `status` says it (absent from nodes before it was added) */
    mode?: NodeMode
  }
  /**
   * `meshFailure`, in the reply to `build-end` only: the node's mesh did not start, so this
   * build ran alone (no peers, no shared cache), and why; `grid build` warns with it
   */
  | Id & { type: 'build-stats', stats: BuildStats, meshFailure?: Failure }
  | Id & { type: 'cache-stats-result', stats: CacheStats }
  | Id & { type: 'cache-gc-result', result: GcResult }
  | Id & { type: 'cache-verify-result', result: VerifyResult }
  | Id & { type: 'ok' }
  | Id & { type: 'peers-result', peers: PeerInfo[], unlisted?: UnlistedPeer[] }
  | Id & { type: 'error', code: string, message: string, hint?: string }

export type Message = Request | Reply
export type MessageType = Message['type']
export type RequestType = Request['type']
export type MessageOf<T extends MessageType> = Extract<Message, { type: T }>

/** The success reply of each request type. */
export const REPLIES = {
  compile: 'compile-result', // or 'compile-here'
  'compile-done': 'ok',
  'cache-open': 'cache-opened',
  'cache-get': 'cache-hit', // or 'cache-miss'
  'cache-index': 'cache-indexed',
  'cache-recalled': 'ok',
  status: 'status-result',
  'build-begin': 'build-begun',
  'build-graph': 'ok',
  'build-progress': 'build-stats',
  'build-end': 'build-stats',
  'cache-stats': 'cache-stats-result',
  'cache-gc': 'cache-gc-result',
  'cache-verify': 'cache-verify-result',
  shutdown: 'ok',
  peers: 'peers-result'
} as const satisfies Record<RequestType, MessageType>

export type Kind = 'str' | 'optstr' | 'uint' | 'int' | 'id32' | 'ids32' | 'index' | 'bin' | 'optbin' | 'strs' | 'optstrs' | 'strmap' | 'map' | 'maps' | 'optbool' | 'optuint' | 'graph' | 'optfailure' | 'optmode'

/** Field table: one line per message type; `id` is implied for all. */
const FIELDS: Record<MessageType, Record<string, Kind>> = {
  compile: { build: 'str', tool: 'str', args: 'strs', cwd: 'str', env: 'strmap', importPath: 'str', canRunHere: 'optbool', goPid: 'optuint' },
  'compile-done': { build: 'str', exitCode: 'int' },
  'compile-here': { nice: 'optuint', heapMB: 'optuint', concurrency: 'optuint' },
  'compile-wait': {},
  'cache-open': { build: 'str', command: 'optstrs', cwd: 'optstr', goPid: 'optuint', gotooldir: 'optstr', ageMs: 'optuint' },
  'cache-get': { build: 'str', actionId: 'id32' },
  'cache-index': { build: 'str', entries: 'index' },
  'cache-recalled': { build: 'str', actionIds: 'ids32', misses: 'optuint', unstored: 'optuint', unstoredWhy: 'optstr' },
  status: {},
  'build-begin': { command: 'strs', cwd: 'str' },
  'build-graph': { build: 'str', packages: 'graph' },
  'build-progress': { build: 'str' },
  'build-end': { build: 'str' },
  'cache-stats': {},
  'cache-gc': { maxBytes: 'uint' },
  'cache-verify': {},
  shutdown: {},
  peers: {},
  'compile-result': { exitCode: 'int', output: 'bin' },
  'cache-opened': { blobDir: 'str', recalled: 'bin', absent: 'optbin', build: 'optstr' },
  'cache-hit': { outputId: 'id32', size: 'uint', time: 'uint', diskPath: 'str' },
  'cache-miss': {},
  'cache-indexed': { stored: 'uint' },
  'status-result': { status: 'map' },
  'build-begun': { build: 'str', parallelism: 'uint', remoteSlots: 'uint', protocol: 'optuint', offload: 'optbool', mode: 'optmode' },
  'build-stats': { stats: 'map', meshFailure: 'optfailure' },
  'cache-stats-result': { stats: 'map' },
  'cache-gc-result': { result: 'map' },
  'cache-verify-result': { result: 'map' },
  ok: {},
  'peers-result': { peers: 'maps' },
  error: { code: 'str', message: 'str', hint: 'optstr' }
}

export function isRequestType (type: string): type is RequestType {
  return Object.hasOwn(REPLIES, type)
}

export function isPlainObject (value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value) || value instanceof Uint8Array) return false
  const proto = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

export function checkField (value: unknown, kind: Kind): boolean {
  switch (kind) {
    case 'str': return typeof value === 'string'
    case 'optstr': return value === undefined || typeof value === 'string'
    case 'uint': return Number.isSafeInteger(value) && (value as number) >= 0
    case 'int': return Number.isSafeInteger(value)
    case 'bin': return value instanceof Uint8Array
    case 'optbin': return value === undefined || value instanceof Uint8Array
    case 'id32': return value instanceof Uint8Array && value.length === CACHE_ID_BYTES
    case 'ids32': return value instanceof Uint8Array && value.length % CACHE_ID_BYTES === 0 && value.length <= MAX_RECALL * CACHE_ID_BYTES
    case 'index': return value instanceof Uint8Array && value.length > 0 && value.length % INDEX_RECORD_BYTES === 0 && value.length <= MAX_INDEX_BATCH * INDEX_RECORD_BYTES
    case 'strs': return Array.isArray(value) && value.every(v => typeof v === 'string')
    case 'optstrs': return value === undefined || checkField(value, 'strs')
    case 'strmap': return isPlainObject(value) && Object.values(value).every(v => typeof v === 'string')
    case 'map': return isPlainObject(value)
    case 'maps': return Array.isArray(value) && value.every(isPlainObject)
    case 'optbool': return value === undefined || typeof value === 'boolean'
    case 'optuint': return value === undefined || checkField(value, 'uint')
    case 'graph': return Array.isArray(value) && value.length <= MAX_GRAPH_PACKAGES && value.every(v =>
      isPlainObject(v) && typeof v.p === 'string' && checkField(v.i, 'strs') && checkField(v.b, 'uint'))
    case 'optmode': return value === undefined || value === 'daemon' || value === 'embedded'
    case 'optfailure': return value === undefined ||
      (isPlainObject(value) && typeof value.code === 'string' && typeof value.message === 'string' && checkField(value.hint, 'optstr'))
  }
}

/**
 * Checks a decoded value against the field table and returns it typed. `from` names the sender
 * in the error (a socket, later a peer).
 */
export function validateMessage (value: unknown, from = 'peer'): Message {
  return validateFields<Message>(FIELDS, value, from)
}

/** Checks a decoded value against a field table (type → field → kind; `id` is implied for all). */
export function validateFields<T> (table: Record<string, Record<string, Kind>>, value: unknown, from: string): T {
  if (!isPlainObject(value)) {
    throw new GridError('GRID_ERR_MESSAGE_INVALID', `message from ${from} is not a map`)
  }
  const type = value.type
  if (typeof type !== 'string' || !Object.hasOwn(table, type)) {
    throw new GridError('GRID_ERR_MESSAGE_INVALID', `message from ${from} has unknown type ${JSON.stringify(type)?.slice(0, 64)}`)
  }
  if (!checkField(value.id, 'uint')) {
    throw new GridError('GRID_ERR_MESSAGE_INVALID', `${type} message from ${from} has no valid id`)
  }
  for (const [name, kind] of Object.entries(table[type] as Record<string, Kind>)) {
    if (!checkField(value[name], kind)) {
      throw new GridError('GRID_ERR_MESSAGE_INVALID', `${type} message from ${from}: field ${name} must be ${kind}`)
    }
  }
  return value as unknown as T
}
