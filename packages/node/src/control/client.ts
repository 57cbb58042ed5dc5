/**
 * A client of the node socket, for the CLI and the tests. One connection, many requests in
 * flight, replies matched by id. Every request has a deadline (its signal, or a default), and a
 * closed connection fails every pending request with GRID_ERR_NODE_CLOSED.
 */
import { lstat } from 'node:fs/promises'
import { createConnection, type Socket } from 'node:net'
import { encodeFrame, FrameDecoder, GridError, REPLIES, type MessageOf, type Reply, type Request, type RequestType } from '@grid/protocol'
import { ANSWER_TIMEOUT_MS, CONNECT_TIMEOUT_MS, REQUEST_TIMEOUT_MS } from './constants.js'

type Pending = { resolve: (reply: Reply) => void, reject: (err: Error) => void }
type Body<T extends RequestType> = Omit<Extract<Request, { type: T }>, 'id'>
/** The success reply a request of type T gets. */
export type ReplyTo<T extends RequestType> = MessageOf<typeof REPLIES[T]> | (T extends 'cache-get' ? MessageOf<'cache-miss'> : never)

/**
 * The deadline of the requests a well node answers at once: ANSWER_TIMEOUT_MS, or a shorter
 * GRID_TEST_ANSWER_MS (tests only: a test of a hung node waits for it, test/e2e/robust.test.ts)
 * of at least 5 s; any other value is ignored. Shorter, grid gives up on a slow node sooner and
 * the build runs as plain go, which is always safe.
 */
function answerDeadlineMs (value = process.env.GRID_TEST_ANSWER_MS): number {
  const ms = Number(value)
  return value !== undefined && Number.isSafeInteger(ms) && ms >= 5_000 && ms < ANSWER_TIMEOUT_MS ? ms : ANSWER_TIMEOUT_MS
}
const ANSWER_MS = answerDeadlineMs()

/** Requests a well node answers at once: they get ANSWER_TIMEOUT_MS, the others REQUEST_TIMEOUT_MS. */
const QUICK: ReadonlySet<RequestType> = new Set(['status', 'peers', 'shutdown', 'build-begin', 'build-graph', 'build-progress', 'build-end'])

export class ControlClient {
  private readonly socket: Socket
  private readonly path: string
  private readonly pending = new Map<number, Pending>()
  private nextId = 1
  private closedError: Error | undefined

  private constructor (socket: Socket, path: string) {
    this.socket = socket
    this.path = path
    const decoder = new FrameDecoder({ from: `node at ${path}` })
    socket.on('data', chunk => {
      let replies
      try {
        replies = decoder.push(chunk)
      } catch (err) {
        this.fail(err as Error)
        socket.destroy()
        return
      }
      for (const reply of replies) {
        if (reply.type === 'compile-wait') continue // the node is still at it: keep waiting
        const waiter = this.pending.get(reply.id)
        this.pending.delete(reply.id)
        waiter?.resolve(reply as Reply)
      }
    })
    // A node that stops with a request of ours unread resets the connection (ECONNRESET, or
    // EPIPE as we write): gone all the same, which callers tell by the code.
    socket.on('error', err => this.fail(new GridError('GRID_ERR_NODE_CLOSED', `the node at ${path} closed the connection (${err.message})`, { cause: err })))
    socket.on('close', () => this.fail(new GridError('GRID_ERR_NODE_CLOSED', `the node at ${path} closed the connection`)))
  }

  static async connect (path: string, options: { timeoutMs?: number } = {}): Promise<ControlClient> {
    await checkOwner(path)
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s = createConnection(path)
      const timer = setTimeout(() => { s.destroy(); reject(unreachable(path)) }, options.timeoutMs ?? CONNECT_TIMEOUT_MS)
      s.once('connect', () => { clearTimeout(timer); resolve(s) })
      s.once('error', err => { clearTimeout(timer); reject(unreachable(path, err)) })
    })
    return new ControlClient(socket, path)
  }

  /** Sends a request and resolves with its success reply; an `error` reply rejects with its code. */
  async request<T extends RequestType> (body: Body<T> & { type: T }, options: { signal?: AbortSignal } = {}): Promise<ReplyTo<T>> {
    if (this.closedError !== undefined) throw this.closedError
    const id = this.nextId++
    const deadlineMs = QUICK.has(body.type) ? ANSWER_MS : REQUEST_TIMEOUT_MS
    const signal = options.signal ?? AbortSignal.timeout(deadlineMs)
    const reply = await new Promise<Reply>((resolve, reject) => {
      const onAbort = (): void => {
        this.pending.delete(id)
        reject(options.signal === undefined
          ? new GridError('GRID_ERR_TIMEOUT', `the node at ${this.path} did not answer a ${body.type} request within ${deadlineMs / 1000} s`, {
            cause: signal.reason, transient: true, hint: 'it may be hung: its log says what it last did (<cache>/logs/grid.log, which names its pid); grid stop needs an answer too, and a hung node may not act on a plain kill: kill -9 PID ends it'
          })
          : new GridError('GRID_ERR_TIMEOUT', `${body.type} request to the node was aborted or timed out`, { cause: signal.reason, transient: true }))
      }
      if (signal.aborted) { onAbort(); return }
      signal.addEventListener('abort', onAbort, { once: true })
      this.pending.set(id, {
        resolve: r => { signal.removeEventListener('abort', onAbort); resolve(r) },
        reject: e => { signal.removeEventListener('abort', onAbort); reject(e) }
      })
      this.socket.write(encodeFrame({ ...body, id } as unknown as Request))
    })
    if (reply.type === 'error') {
      throw new GridError(reply.code as 'GRID_ERR_INTERNAL', reply.message, reply.hint === undefined ? {} : { hint: reply.hint })
    }
    return reply as ReplyTo<T>
  }

  close (): void {
    this.socket.end()
  }

  private fail (err: Error): void {
    this.closedError ??= err
    for (const waiter of this.pending.values()) waiter.reject(err)
    this.pending.clear()
  }
}

/**
 * Refuses a socket another user made: their node would answer this user's builds with cache
 * entries and compiles of their choosing (code in this user's binaries). A --control path in a
 * shared directory such as /tmp is predictable, so another user can be listening there first.
 * Root's sockets are not trusted either: a node is its own user's.
 */
async function checkOwner (path: string): Promise<void> {
  if (process.getuid === undefined) return // Windows: no owners
  const st = await lstat(path).catch(() => undefined)
  if (st === undefined || st.uid === process.getuid()) return // none there: unreachable, as the connect says
  throw new GridError('GRID_ERR_SOCKET_PATH', `the control socket ${path} belongs to another user (uid ${st.uid}): grid talks only to a node of this user's`, {
    hint: 'pass a path of your own with --control (or set GRID_CONTROL); the default, grid.sock in your cache dir, is private'
  })
}

function unreachable (path: string, cause?: unknown): GridError {
  return new GridError('GRID_ERR_NODE_UNREACHABLE', `no grid node answers on ${path}`, {
    cause, transient: true, hint: 'start one with `grid daemon`, or let `grid build` start an embedded node'
  })
}
