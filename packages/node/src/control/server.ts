/**
 * The node's Unix socket. One listener serves the CLI (control), the shims (compiles) and the
 * cache helpers (cache get/put): each connection carries frames of the protocol package, and
 * each request is handed to the node's handler with a signal that aborts when the connection
 * closes (a shim killed by cmd/go cancels its compile). A connection that sends a bad frame is
 * closed with the reason logged; every other connection is unaffected.
 */
import { chmod, lstat, unlink } from 'node:fs/promises'
import { createConnection, createServer, type Server, type Socket } from 'node:net'
import { dirname } from 'node:path'
import { COMPILE_KEEPALIVE_MS, encodeFrame, FrameDecoder, GridError, errorCode, isRequestType, type Reply, type Request } from '@grid/protocol'
import { makeDirs } from '../files.js'
import { logFile, logger } from '../log.js'
import { checkSocketPath } from '../paths.js'
import { MAX_PENDING_FRAME_BYTES, PARTIAL_FRAME_MS } from './constants.js'
import { readRecord, removeRecord, socketId, writeRecord } from './record.js'

const log = logger('grid:control')

export interface RequestContext {
  /** Aborts when the connection that sent the request closes. */
  signal: AbortSignal
  /** Runs when the connection closes (for state tied to a connection, like a build). */
  onClose: (fn: () => void) => void
  /** Frees the local slot a `compile-here` granted on this connection (set by the node). */
  release: (() => void) | undefined
  /**
   * Records that the compile a `compile-here` granted ended (set by the node), with its exit
   * status when the client said it (`compile-done`); undefined when the connection closed.
   */
  done: ((exitCode?: number) => void) | undefined
}

export type RequestHandler = (request: Request, context: RequestContext) => Promise<Reply>

export interface ControlServerInit {
  path: string
  handler: RequestHandler
  /** Called for every connection dropped for a bad frame (counted in status). */
  onBadFrame?: (reason: string) => void
  /** PARTIAL_FRAME_MS and MAX_PENDING_FRAME_BYTES, unless given (tests) */
  partialFrameMs?: number
  maxPendingBytes?: number
}

let connections = 0

export class ControlServer {
  readonly path: string
  private readonly handler: RequestHandler
  private readonly onBadFrame: ((reason: string) => void) | undefined
  private server: Server | undefined
  /** Settles once the listener has closed and every connection with it (stopListening) */
  private closed: Promise<void> | undefined
  /** The inode of the socket this server made at `path`: another there is not ours */
  private ino: bigint | undefined
  /** That socket's socketId, which the record beside it names (record.ts) */
  private made: string | undefined
  private readonly sockets = new Set<Socket>()
  private readonly partialFrameMs: number
  private readonly maxPendingBytes: number
  /** bytes of unfinished frames held for all connections */
  private pending = 0

  constructor (init: ControlServerInit) {
    checkSocketPath(init.path)
    this.path = init.path
    this.handler = init.handler
    this.onBadFrame = init.onBadFrame
    this.partialFrameMs = init.partialFrameMs ?? PARTIAL_FRAME_MS
    this.maxPendingBytes = init.maxPendingBytes ?? MAX_PENDING_FRAME_BYTES
  }

  async start (): Promise<void> {
    this.server = await this.listen()
    log.debug(`listening on ${this.path}`)
  }

  private async listen (): Promise<Server> {
    await makeDirs(dirname(this.path)).catch((err: Error) => {
      throw new GridError('GRID_ERR_SOCKET_PATH', `cannot make the control socket's directory for ${this.path}: ${err.message}`, { cause: err, hint: SOCKET_HINT })
    })
    await removeStaleSocket(this.path)
    // the record of a node that died is no one's: gone before a socket is made in its place
    await removeRecord(this.path)
    const server = createServer(socket => this.accept(socket))
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      // Whoever can connect can have the node run a compiler binary of their naming, so the
      // socket is made 0600 by the umask in force at bind(2), which listen() calls before it
      // returns: a chmod after it would leave a window in which another user (of our group,
      // under umask 0002, or anyone, for a --control path in /tmp) connects, and stays connected.
      const umask = process.umask(0o177)
      try {
        server.listen(this.path, () => { server.off('error', reject); resolve() })
      } finally {
        process.umask(umask)
      }
    }).catch((err: Error) => {
      throw new GridError('GRID_ERR_SOCKET_PATH', `cannot listen on ${this.path}: ${err.message}`, { cause: err, hint: SOCKET_HINT })
    })
    await chmod(this.path, 0o600)
    const made = await lstat(this.path, { bigint: true })
    this.ino = made.ino
    this.made = socketId(made)
    // who listens here, for a client this node stops answering (record.ts); without it, its
    // hint names no pid
    await writeRecord(this.path, made, logFile()).catch((err: Error) => log.debug(`no record beside ${this.path}: ${err.message}`))
    return server
  }

  /**
   * Whether this server still answers on its path: 'ours'; 'again' when the path had gone
   * (removed with the cache dir while the node ran, when nothing could reach the node any more)
   * and it listens there anew; 'taken' when something else is there (another node's socket:
   * tried again at the next check). Connections made before stay as they are.
   */
  async recheck (): Promise<'ours' | 'again' | 'taken'> {
    const old = this.server
    if (old === undefined) return 'taken'
    const st = await lstat(this.path, { bigint: true }).catch(() => undefined)
    if (st !== undefined && st.ino === this.ino) return 'ours'
    if (st !== undefined) {
      try { await removeStaleSocket(this.path) } catch { return 'taken' } // a live node's, or not a socket
    }
    // Closing a listener unlinks its path: the old one goes before the new one is made.
    old.close()
    try {
      this.server = await this.listen()
      return 'again'
    } catch {
      this.server = old // not listening any more, but its connections go on; stop closes them
      this.ino = undefined
      this.made = undefined
      return 'taken'
    }
  }

  /**
   * Takes no new connection from now on: the listener closes, and its path goes with it, so a
   * client finds nothing there (GRID_ERR_NODE_UNREACHABLE). Those already made are served until
   * stop.
   */
  stopListening (): void {
    const server = this.server
    this.server = undefined
    if (server !== undefined) this.closed = new Promise<void>(resolve => server.close(() => resolve()))
  }

  async stop (): Promise<void> {
    this.stopListening()
    const closed = this.closed
    this.closed = undefined
    if (closed === undefined) return
    for (const socket of this.sockets) {
      // replies already written wait in a cork until the next turn (serve): send them first,
      // such as the `ok` to the shutdown that stops us
      while (socket.writableCorked > 0) socket.uncork()
      socket.destroy()
    }
    await closed
    // not another node's socket, made where this one's was removed
    const st = await lstat(this.path, { bigint: true }).catch(() => undefined)
    if (st !== undefined && st.ino === this.ino) await unlink(this.path).catch(() => {})
    // ours only: another node listening there now has its own
    if (this.made !== undefined && await readRecord(this.path, this.made) !== undefined) await removeRecord(this.path)
  }

  private accept (socket: Socket): void {
    const name = `connection ${++connections}`
    this.sockets.add(socket)
    const abort = new AbortController()
    const closers: Array<() => void> = []
    const decoder = new FrameDecoder({ from: name })
    const context: RequestContext = { signal: abort.signal, onClose: fn => closers.push(fn), release: undefined, done: undefined }
    const drop = (reason: string): void => {
      log.warn(`closing ${name}: ${reason}`)
      this.onBadFrame?.(reason)
      socket.destroy()
    }
    let held = 0 // this connection's share of this.pending
    let stalled: NodeJS.Timeout | undefined
    const hold = (bytes: number): void => {
      this.pending += bytes - held
      held = bytes
      clearTimeout(stalled)
      stalled = bytes === 0 ? undefined : setTimeout(() => drop(`GRID_ERR_FRAME_MALFORMED: ${name} sent part of a frame (${bytes} bytes) and nothing for ${this.partialFrameMs / 1000} s`), this.partialFrameMs).unref()
    }
    socket.on('data', chunk => {
      if (this.pending - held + decoder.pending + chunk.byteLength > this.maxPendingBytes) {
        drop(`GRID_ERR_FRAME_TOO_LARGE: ${name} would take the unfinished frames the node holds past ${this.maxPendingBytes} bytes`)
        return
      }
      let requests
      try {
        requests = decoder.push(chunk)
      } catch (err) {
        drop(`${errorCode(err) ?? 'error'}: ${(err as Error).message}`)
        return
      }
      hold(decoder.pending)
      for (const message of requests) {
        if (!isRequestType(message.type)) {
          drop(`GRID_ERR_MESSAGE_INVALID: ${name} sent a ${message.type}, which is a reply`)
          return
        }
        void this.serve(socket, message as Request, context)
      }
    })
    socket.on('error', err => log.debug(`${name}: ${err.message}`))
    socket.on('close', () => {
      if (held > 0) log.debug(`${name} closed in the middle of a frame (${held} bytes)`)
      hold(0)
      this.sockets.delete(socket)
      abort.abort(new GridError('GRID_ERR_CANCELLED', `${name} closed`))
      for (const fn of closers) fn()
    })
  }

  private async serve (socket: Socket, request: Request, context: RequestContext): Promise<void> {
    let reply: Reply
    // A compile may wait long for a slot or a peer: its shim hears that we are alive meanwhile.
    const keepalive = request.type === 'compile'
      ? setInterval(() => { if (!socket.destroyed) socket.write(encodeFrame({ type: 'compile-wait', id: request.id })) }, COMPILE_KEEPALIVE_MS)
      : undefined
    try {
      reply = await this.handler(request, context)
    } catch (err) {
      const code = errorCode(err) ?? 'GRID_ERR_INTERNAL'
      if (code === 'GRID_ERR_INTERNAL') log.error(`${request.type} failed: ${(err as Error).stack ?? String(err)}`)
      // the hint goes with it: the CLI shows it as it shows its own errors' hints
      const hint = (err as { hint?: unknown }).hint
      reply = { type: 'error', id: request.id, code, message: (err as Error).message, ...(typeof hint === 'string' ? { hint } : {}) }
    } finally {
      clearInterval(keepalive)
    }
    if (socket.destroyed) return
    // Replies finished in the same turn of the event loop leave in one write: the cache helper
    // keeps many requests in flight on one connection.
    if (socket.writableCorked === 0) {
      socket.cork()
      setImmediate(() => socket.uncork())
    }
    try {
      socket.write(encodeFrame(reply))
    } catch (err) {
      log.error(`cannot encode ${reply.type}: ${(err as Error).message}`)
      socket.write(encodeFrame({ type: 'error', id: request.id, code: 'GRID_ERR_INTERNAL', message: (err as Error).message }))
    }
  }
}

/** A socket file nobody answers on is left over from a crash: remove it. One that answers is in use. */
const SOCKET_HINT = 'the control socket needs a path of its own in a directory you can write: pass one with --control PATH (or set GRID_CONTROL)'

/**
 * Clears the way for the socket: a socket left by a node that died is removed; one a live node
 * answers on is GRID_ERR_CACHE_LOCKED; anything else at the path (a file, a directory) is never
 * touched, GRID_ERR_SOCKET_PATH.
 */
async function removeStaleSocket (path: string): Promise<void> {
  const st = await lstat(path).catch(() => undefined)
  if (st === undefined) return
  if (!st.isSocket()) {
    throw new GridError('GRID_ERR_SOCKET_PATH', `${path} is ${st.isDirectory() ? 'a directory' : 'a file'}, not a socket: grid will not replace it`, { hint: SOCKET_HINT })
  }
  const alive = await new Promise<boolean>(resolve => {
    const probe = createConnection(path)
    probe.once('connect', () => { probe.destroy(); resolve(true) })
    probe.once('error', () => resolve(false))
  })
  if (alive) {
    throw new GridError('GRID_ERR_CACHE_LOCKED', `another grid node is already serving ${path}`, {
      hint: 'use the running node (grid status), or stop it first'
    })
  }
  await unlink(path).catch(() => {})
}
