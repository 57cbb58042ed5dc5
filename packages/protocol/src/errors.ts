/**
 * Every failure grid reports has a stable `code` (`GRID_ERR_…`), documented in docs/errors.md
 * (a test keeps the two in step). Match on `code`, never on `instanceof`: the package may be
 * installed twice. `transient` marks failures that may succeed if retried elsewhere; `hint` is
 * the command or change that fixes a user-facing failure.
 */

export const ERROR_CODES = {
  GRID_ERR_GO_MISSING: 'no `go` command on PATH (or at the path GRID_GO names)',
  GRID_ERR_GO_TOO_OLD: 'the Go toolchain is older than grid needs (GOCACHEPROG needs Go 1.24)',
  GRID_ERR_GO_FAILED: '`go env` failed for a reason go names (a toolchain it cannot fetch, say): plain go would fail too',
  GRID_ERR_SHIM_BUILD: 'building the toolexec shim with the local Go toolchain failed',
  GRID_ERR_USAGE: 'unknown command, unknown flag or bad flag value',
  GRID_ERR_TOOLEXEC_CONFLICT: 'the go arguments already set -toolexec, which grid needs for itself',
  GRID_ERR_FRAME_TOO_LARGE: 'a frame on the node socket is larger than the cap',
  GRID_ERR_FRAME_MALFORMED: 'a frame could not be decoded as a msgpack map',
  GRID_ERR_MESSAGE_INVALID: 'a decoded message has an unknown type or a missing or mistyped field',
  GRID_ERR_NODE_UNREACHABLE: 'nothing answers on the node\'s control socket',
  GRID_ERR_NODE_CLOSED: 'the node closed the connection before answering',
  GRID_ERR_TIMEOUT: 'a request to the node took longer than its deadline',
  GRID_ERR_CACHE_LOCKED: 'another process holds the cache index open',
  GRID_ERR_CACHE_OPEN: 'the cache dir is not a directory this user can write, its index cannot be opened (a full disk, permissions, or damage repair could not mend), or its peer.key is not a key',
  GRID_ERR_CACHE_CORRUPT: 'a cache blob did not hash to its OutputID; it was dropped',
  GRID_ERR_CACHE_MISSING_BLOB: 'a cache put named a blob that is not on disk (or has another size)',
  GRID_ERR_CACHE_WRITE: 'the cache could not store some of a build\'s outputs (a full disk); the build went on without them',
  GRID_ERR_COMPILE_REFUSED: 'a compile request named a tool or directory the node will not run',
  GRID_ERR_COMPILE_SPAWN: 'the node could not start the compiler',
  GRID_ERR_COMPILE_KILLED: 'the compiler was killed by a signal (out of memory, its node stopping), so it compiled nothing',
  GRID_ERR_CANCELLED: 'the operation was cancelled (its requester went away)',
  GRID_ERR_SOCKET_PATH: 'the control socket path is too long for a Unix socket, names something that is not a socket, or cannot be listened on',
  GRID_ERR_ADVERT_INVALID: 'a gossip advert was too large, undecodable, or had a bad field; it was dropped',
  GRID_ERR_SWARM_KEY: 'the swarm key file is missing or not in the swarm key format, or grid init cannot write it',
  GRID_ERR_CONFIG: 'the config file is unreadable, not JSON, or has an unknown or mistyped key',
  GRID_ERR_MESH_START: 'the mesh could not start (the listen address is invalid or taken, or peer.id does not match peer.key)',
  GRID_ERR_DAEMON_RUNNING: 'a node already answers on the control socket, so no daemon was started',
  GRID_ERR_DAEMON_START: 'the daemon started in the background exited or did not answer in time',
  GRID_ERR_DAEMON_STOP: 'the node on the control socket cannot be stopped, or did not stop in time',
  GRID_ERR_NOT_MEMBER: 'a peer failed the handshake: it does not hold this swarm key',
  GRID_ERR_PEER_GONE: 'a connection to a peer was ended: nothing came from it for a while, and it did not answer a ping',
  GRID_ERR_TASK_REFUSED: 'a worker refused a remote compile task (bad flag, path, size, toolchain or policy)',
  GRID_ERR_TASK_INCOMPATIBLE: 'a worker refused a remote compile task of another grid version (a field it does not know, or lacks)',
  GRID_ERR_INTERNAL: 'a bug in grid: please report it with the log'
} as const

export type ErrorCode = keyof typeof ERROR_CODES

export interface GridErrorOptions {
  cause?: unknown
  hint?: string
  transient?: boolean
}

export class GridError extends Error {
  readonly code: ErrorCode
  readonly hint: string | undefined
  readonly transient: boolean

  constructor (code: ErrorCode, message: string, options: GridErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'GridError'
    this.code = code
    this.hint = options.hint
    this.transient = options.transient ?? false
  }
}

/** True for any error carrying a grid code, whichever copy of this package created it. */
export function isGridError (err: unknown): err is GridError {
  const code = errorCode(err)
  return err instanceof Error && code !== undefined && Object.hasOwn(ERROR_CODES, code)
}

export function errorCode (err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' ? code : undefined
}
