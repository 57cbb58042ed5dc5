/**
 * The node's spawner: one `grid-shim spawner` process (packages/node/shim/spawner.go) that starts
 * the compiles the node runs itself (a peer's tasks, races, compiles a shim could not run). Node's
 * own spawn forks the node's whole address space for each child, a cost that grows with the
 * heap: ~8 ms of a helper's event loop per compile at ~200 MB, the largest single part of a remote
 * task's time there (docs/benchmarks/remote-timeline.md). Go starts a child with vfork.
 *
 * The spawner saves time and is never needed: if it cannot start, or dies, `run` rejects with
 * `SpawnerGone` and the pool spawns the compile from Node as before. Linux only (elsewhere Node's
 * spawn does not copy the heap).
 */
import { spawn } from 'node:child_process'
import { encodeFrame, FrameDecoder, validateSpawnerMessage, type SpawnerMessage, type SpawnerRequest } from '@grid/protocol'
import { logger } from '../log.js'
import { KILL_GRACE_MS } from './constants.js'

const log = logger('grid:worker')

/** The spawner is not running (never started, exited, or sent a bad frame): spawn from Node. */
export class SpawnerGone extends Error {}

export interface SpawnOptions {
  cwd: string
  env: Record<string, string>
  nice?: number
  /** bytes of merged stdout and stderr kept; the rest is dropped */
  outputCap: number
}

/** How a child ended: `signal` names the signal that ended it, if one did. */
export interface SpawnResult { exitCode: number, signal: string | null, output: Buffer }

interface Pending { resolve: (result: SpawnResult) => void, reject: (err: Error) => void }

export class Spawner {
  private readonly child
  private readonly pending = new Map<number, Pending>()
  private nextId = 1
  private gone: string | undefined

  private constructor (binary: string) {
    this.child = spawn(binary, ['spawner'], { stdio: ['pipe', 'pipe', 'pipe'] })
    const decoder = new FrameDecoder<SpawnerMessage>({ validate: validateSpawnerMessage, from: 'the spawner' })
    this.child.stdout.on('data', (chunk: Buffer) => {
      let messages: SpawnerMessage[]
      try {
        messages = decoder.push(chunk)
      } catch (err) {
        this.fail(`it sent a bad frame: ${(err as Error).message}`)
        this.child.kill('SIGKILL')
        return
      }
      for (const message of messages) this.settle(message)
    })
    this.child.stderr.on('data', (chunk: Buffer) => { log.warn(String(chunk).trimEnd()) })
    this.child.stdin.on('error', () => {}) // EPIPE once it has exited: 'close' says why
    this.child.on('error', err => { this.fail(err.message) })
    // 'close', not 'exit': the answers it wrote before it exited are read first
    this.child.on('close', (code, signal) => { this.fail(`it exited (${signal ?? `code ${String(code)}`})`) })
  }

  /** Starts a spawner from the shim binary; resolves once the process runs. */
  static async start (binary: string): Promise<Spawner> {
    const spawner = new Spawner(binary)
    await new Promise<void>((resolve, reject) => {
      spawner.child.once('spawn', resolve)
      spawner.child.once('error', reject)
    })
    return spawner
  }

  get alive (): boolean { return this.gone === undefined }

  /** The spawner's process id. */
  get pid (): number | undefined { return this.child.pid }

  /**
   * Runs `file` with `args` and resolves with how it ended. When `signal` aborts, the child gets
   * SIGTERM, then SIGKILL after a grace period; the promise still resolves when it ends.
   */
  async run (file: string, args: string[], options: SpawnOptions, signal?: AbortSignal): Promise<SpawnResult> {
    if (this.gone !== undefined) throw new SpawnerGone(this.gone)
    const id = this.nextId++
    const env = Object.entries(options.env).map(([k, v]) => `${k}=${v}`)
    const done = new Promise<SpawnResult>((resolve, reject) => { this.pending.set(id, { resolve, reject }) })
    this.send({ type: 'spawn', id, file, args, cwd: options.cwd, env, ...(options.nice === undefined ? {} : { nice: options.nice }), outputCap: options.outputCap })
    let killTimer: NodeJS.Timeout | undefined
    const onAbort = (): void => {
      this.send({ type: 'spawn-kill', id, signal: 'SIGTERM' })
      killTimer = setTimeout(() => { this.send({ type: 'spawn-kill', id, signal: 'SIGKILL' }) }, KILL_GRACE_MS)
      killTimer.unref()
    }
    signal?.addEventListener('abort', onAbort, { once: true })
    try {
      return await done
    } finally {
      signal?.removeEventListener('abort', onAbort)
      clearTimeout(killTimer)
    }
  }

  /** Ends the spawner: it kills any child still running, and exits. */
  async close (): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return
    const exited = new Promise<void>(resolve => this.child.once('close', () => { resolve() }))
    this.child.stdin.end()
    const timer = setTimeout(() => this.child.kill('SIGKILL'), KILL_GRACE_MS)
    await exited
    clearTimeout(timer)
  }

  private send (request: SpawnerRequest): void {
    if (this.gone === undefined) this.child.stdin.write(encodeFrame(request))
  }

  private settle (message: SpawnerMessage): void {
    if (message.type !== 'spawn-exit' && message.type !== 'spawn-failed') {
      this.fail(`it sent a ${message.type} message`) // a request: not from a spawner
      this.child.kill('SIGKILL')
      return
    }
    const waiter = this.pending.get(message.id)
    if (waiter === undefined) return
    this.pending.delete(message.id)
    if (message.type === 'spawn-exit') {
      waiter.resolve({ exitCode: message.exitCode, signal: message.signal ?? null, output: Buffer.from(message.output.buffer, message.output.byteOffset, message.output.byteLength) })
    } else {
      waiter.reject(new Error(message.message))
    }
  }

  /** The spawner is unusable: every compile waiting on it is run from Node instead. */
  private fail (why: string): void {
    if (this.gone !== undefined) return
    this.gone = why
    if (this.pending.size > 0 || this.child.exitCode !== 0) log.warn(`the compile spawner stopped: ${why}; compiles start from Node`)
    for (const waiter of this.pending.values()) waiter.reject(new SpawnerGone(why))
    this.pending.clear()
  }
}
