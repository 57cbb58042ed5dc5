/**
 * A client of the node socket, for the CLI and the tests. One connection, many requests in
 * flight, replies matched by id. Every request has a deadline (its signal, or a default), and a
 * closed connection fails every pending request with GRID_ERR_NODE_CLOSED.
 */
import { lstat } from 'node:fs/promises'
import { createConnection, type Socket } from 'node:net'
import { encodeFrame, FrameDecoder, GridError, REPLIES, type MessageOf, type Reply, type Request, type RequestType } from '@grid/protocol'
import { deadline } from '../signals.js'
import { ANSWER_TIMEOUT_MS, CONNECT_TIMEOUT_MS, REQUEST_TIMEOUT_MS } from './constants.js'
import { readRecord, socketId, type NodeRecord } from './record.js'

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
  /** The socket file connected to (record.ts socketId), whose node's record counts */
  private readonly made: string | undefined
  private readonly pending = new Map<number, Pending>()
  private nextId = 1
  private closedError: Error | undefined

  private constructor (socket: Socket, path: string, made: string | undefined) {
    this.socket = socket
    this.path = path
    this.made = made
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
    const made = await checkOwner(path)
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s = createConnection(path)
      const timer = setTimeout(() => { s.destroy(); reject(unreachable(path)) }, options.timeoutMs ?? CONNECT_TIMEOUT_MS)
      s.once('connect', () => { clearTimeout(timer); resolve(s) })
      s.once('error', err => { clearTimeout(timer); reject(unreachable(path, err)) })
    })
    return new ControlClient(socket, path, made)
  }

  /** Sends a request and resolves with its success reply; an `error` reply rejects with its code. */
  async request<T extends RequestType> (body: Body<T> & { type: T }, options: { signal?: AbortSignal } = {}): Promise<ReplyTo<T>> {
    if (this.closedError !== undefined) throw this.closedError
    const id = this.nextId++
    const deadlineMs = QUICK.has(body.type) ? ANSWER_MS : REQUEST_TIMEOUT_MS
    const timer = deadline(deadlineMs) // cleared as the request settles
    const signal = options.signal ?? timer.signal
    const reply = await new Promise<Reply>((resolve, reject) => {
      const onAbort = (): void => {
        this.pending.delete(id)
        if (options.signal === undefined) void this.unanswered(body.type, deadlineMs, signal.reason).then(reject)
        else reject(new GridError('GRID_ERR_TIMEOUT', `${body.type} request to the node was aborted or timed out`, { cause: signal.reason, transient: true }))
      }
      if (signal.aborted) { onAbort(); return }
      signal.addEventListener('abort', onAbort, { once: true })
      this.pending.set(id, {
        resolve: r => { signal.removeEventListener('abort', onAbort); resolve(r) },
        reject: e => { signal.removeEventListener('abort', onAbort); reject(e) }
      })
      this.socket.write(encodeFrame({ ...body, id } as unknown as Request))
    }).finally(() => { timer.done() })
    if (reply.type === 'error') {
      throw new GridError(reply.code as 'GRID_ERR_INTERNAL', reply.message, reply.hint === undefined ? {} : { hint: reply.hint })
    }
    return reply as ReplyTo<T>
  }

  close (): void {
    this.socket.end()
  }

  /**
   * The error for a request the node left unanswered past its deadline. A node that does not
   * answer cannot say who it is: its record beside the socket does (record.ts), when it is the
   * one that made the socket connected to.
   */
  private async unanswered (type: RequestType, deadlineMs: number, cause: unknown): Promise<GridError> {
    const node = this.made === undefined ? undefined : await readRecord(this.path, this.made)
    return new GridError('GRID_ERR_TIMEOUT', `the node at ${this.path} did not answer a ${type} request within ${deadlineMs / 1000} s`, {
      cause, transient: true, hint: hungHint(node)
    })
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
async function checkOwner (path: string): Promise<string | undefined> {
  const st = await lstat(path, { bigint: true }).catch(() => undefined)
  if (st === undefined) return undefined // none there: unreachable, as the connect says
  // Windows: no owners
  if (process.getuid === undefined || st.uid === BigInt(process.getuid())) return socketId(st)
  throw new GridError('GRID_ERR_SOCKET_PATH', `the control socket ${path} belongs to another user (uid ${st.uid}): grid talks only to a node of this user's`, {
    hint: 'pass a path of your own with --control (or set GRID_CONTROL); the default, grid.sock in your cache dir, is private'
  })
}

/**
 * What to do about a node that does not answer: its log says what it last did, and it may act on
 * neither grid stop (which needs an answer too) nor a plain kill (a stopped process, an event
 * loop that never comes round to the signal). The one text of this hint: with the node's record,
 * it names the real log and pid, so that the kill can be pasted.
 */
function hungHint (node: NodeRecord | undefined): string {
  const log = node === undefined
    ? 'its log (logs/grid.log in its cache dir, which names its pid) says what it last did'
    : node.log === null ? `it keeps no log file (pid ${node.pid})` : `its log (${node.log}) says what it last did`
  return `it may be hung: ${log}; grid stop needs an answer too, and a hung node may not act on a plain kill: ` +
    `kill -9 ${node?.pid ?? 'PID'} ends it (builds it serves go on without it)`
}

function unreachable (path: string, cause?: unknown): GridError {
  return new GridError('GRID_ERR_NODE_UNREACHABLE', `no grid node answers on ${path}`, {
    cause, transient: true, hint: 'start one with `grid daemon`, or let `grid build` start an embedded node'
  })
}
