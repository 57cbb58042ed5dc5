/**
 * The local compile pool: at most `slots` compiles at once (but see guests, below); waiting
 * compiles are served by priority (the scheduler's remaining critical path, read when a slot
 * frees: ranked.ts), first come first served among equals. A job names the compiler, its
 * arguments, directory and the output-affecting environment; the pool checks the tool is a Go
 * compiler, runs it with the node's starting heap (withStartHeap) and its share of the slots as
 * backend concurrency (withConcurrency; through the spawner when the node has one, spawner.ts;
 * else from Node), and returns its exit code and its stdout and stderr merged in arrival order
 * (cmd/go merges them too). A job whose signal aborts is killed.
 *
 * Peers' tasks are guests: one starts only on a free slot, and the workstation's own compiles
 * never wait for one. An own compile counts only the own compiles against the slots, so a
 * developer who comes back to a machine the mesh keeps busy builds at once, beside the guests
 * (which run at nice WORKER_NICE, remote/constants.ts, and take no new slot until the own
 * compiles leave one): for a while the pool may run up to twice `slots` compiles.
 */
import { spawn } from 'node:child_process'
import { setPriority } from 'node:os'
import { isAbsolute } from 'node:path'
import { GridError, MAX_COMPILE_OUTPUT_BYTES, OUTPUT_ENV } from '@grid/protocol'
import { logger } from '../log.js'
import { COMPILE_START_HEAP_MB, COMPILE_TOOL, DEFAULT_SLOTS, KILL_GRACE_MS, START_HEAP_MIN_GO } from './constants.js'
import { RankedQueue, type Rank } from './ranked.js'
import { SpawnerGone, type Spawner, type SpawnOptions, type SpawnResult } from './spawner.js'

const log = logger('grid:worker')

export interface CompileJob {
  tool: string
  args: string[]
  cwd: string
  env: Record<string, string>
  /** run at this nice level (remote work runs below the workstation's own) */
  nice?: number
  /** cap on the compile's address space in bytes (`ulimit -v`; Unix only) */
  memoryBytes?: number
}

export interface CompileOutcome {
  exitCode: number
  output: Buffer
  /** Milliseconds spent waiting for a slot, and running. */
  queuedMs: number
  runMs: number
}

export interface LocalPoolInit {
  slots?: number
  /** the compilers' starting heap in MiB (`-d=gcstart`); default COMPILE_START_HEAP_MB, 0: theirs */
  startHeapMB?: number
}

export interface SlotOptions {
  signal?: AbortSignal
  /** higher goes first when compiles wait for a slot; default 0 */
  priority?: Rank
  /** a peer's task: waits for a free slot, and never holds up the workstation's own compiles */
  guest?: boolean
}

interface Waiter { grant: () => void }

/** The node's own environment minus everything Go reads: a compile sees only what cmd/go set. */
function baseEnv (): Record<string, string> {
  const env: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !k.startsWith('GO') && !k.startsWith('GRID_') && k !== 'PWD') env[k] = v
  }
  return env
}

export class LocalPool {
  readonly slots: number
  /** Given to every compiler this node runs or grants a slot to (withStartHeap). */
  readonly startHeapMB: number
  /** compiles holding a slot, guests included; `guests` of them are peers' tasks */
  private active = 0
  private guests = 0
  private readonly waiting = new RankedQueue<Waiter>()
  private readonly guestsWaiting = new RankedQueue<Waiter>()
  private readonly base = baseEnv()
  /** Called when a slot is taken or freed (the mesh re-advertises free slots). */
  onChange: (() => void) | undefined
  /** Starts compiles when it runs (spawner.ts); else they start from Node. */
  spawner: Spawner | undefined

  constructor (init: LocalPoolInit = {}) {
    this.slots = Math.max(1, init.slots ?? DEFAULT_SLOTS)
    this.startHeapMB = init.startHeapMB ?? COMPILE_START_HEAP_MB
  }

  get running (): number { return this.active }
  get queued (): number { return this.waiting.size + this.guestsWaiting.size }

  /**
   * The backend concurrency (the compiler's `-c`) for a compile that holds a slot now: the
   * slots shared among the compiles holding one, this one included. cmd/go asks every compile
   * for min(4, cores) threads; with the slots busy the extra threads only cost CPU (large
   * packages 7–26 % more by docs/benchmarks/cold.md), while a compile alone keeps go's value.
   */
  concurrency (): number {
    return Math.max(1, Math.floor(this.slots / Math.max(1, this.active)))
  }

  /** Whether a compile of the workstation's own asking now would get a slot at once. */
  get free (): boolean { return this.waiting.size === 0 && this.mayStart(false) }

  async run (job: CompileJob, options: SlotOptions = {}): Promise<CompileOutcome> {
    this.check(job)
    const queuedAt = performance.now()
    await this.acquire(options)
    const startedAt = performance.now()
    try {
      const { exitCode, output } = await this.spawn(job, options.signal)
      return { exitCode, output, queuedMs: startedAt - queuedAt, runMs: performance.now() - startedAt }
    } finally {
      this.release(options.guest === true)
    }
  }

  /**
   * Takes a slot for a compile someone else runs (the shim, on this machine). The returned
   * function frees it; calling it more than once is harmless.
   */
  async lease (options: SlotOptions = {}): Promise<() => void> {
    await this.acquire(options)
    let held = true
    return () => {
      if (!held) return
      held = false
      this.release(options.guest === true)
    }
  }

  private check (job: CompileJob): void {
    if (!isAbsolute(job.tool) || !COMPILE_TOOL.test(job.tool)) {
      throw new GridError('GRID_ERR_COMPILE_REFUSED', `not a Go compiler: ${JSON.stringify(job.tool)}`)
    }
    if (!isAbsolute(job.cwd)) {
      throw new GridError('GRID_ERR_COMPILE_REFUSED', `working directory must be absolute: ${JSON.stringify(job.cwd)}`)
    }
    for (const name of Object.keys(job.env)) {
      if (!(OUTPUT_ENV as readonly string[]).includes(name)) {
        throw new GridError('GRID_ERR_COMPILE_REFUSED', `environment variable ${name} is not one a compile may be given`)
      }
    }
  }

  /** A guest starts on a free slot; an own compile while fewer than `slots` own ones run. */
  private mayStart (guest: boolean): boolean {
    return guest ? this.active < this.slots : this.active - this.guests < this.slots
  }

  private async acquire ({ signal, priority = 0, guest = false }: SlotOptions): Promise<void> {
    if (signal?.aborted === true) throw new GridError('GRID_ERR_CANCELLED', 'compile cancelled while waiting for a slot')
    const queue = guest ? this.guestsWaiting : this.waiting
    if (queue.size === 0 && this.mayStart(guest)) {
      this.take(guest)
      this.onChange?.()
      return
    }
    await new Promise<void>((resolve, reject) => {
      const waiter: Waiter = { grant: () => { signal?.removeEventListener('abort', onAbort); resolve() } }
      const onAbort = (): void => {
        queue.remove(waiter)
        reject(new GridError('GRID_ERR_CANCELLED', 'compile cancelled while waiting for a slot'))
      }
      signal?.addEventListener('abort', onAbort, { once: true })
      queue.push(waiter, priority)
    })
    // the slot was taken for it when it was granted
  }

  private take (guest: boolean): void {
    this.active++
    if (guest) this.guests++
  }

  private release (guest: boolean): void {
    this.active--
    if (guest) this.guests--
    if (this.grantWaiting() === 0) this.onChange?.() // a slot handed straight over changes no advert
  }

  /** Grants the waiting compiles that may start now, own ones first; returns how many. */
  private grantWaiting (): number {
    let granted = 0
    for (;;) {
      const guest = this.waiting.size > 0 && this.mayStart(false) ? false : this.guestsWaiting.size > 0 && this.mayStart(true) ? true : undefined
      if (guest === undefined) return granted
      const next = (guest ? this.guestsWaiting : this.waiting).shift() as Waiter
      this.take(guest)
      granted++
      next.grant()
    }
  }

  private async spawn (job: CompileJob, signal: AbortSignal | undefined): Promise<{ exitCode: number, output: Buffer }> {
    if (signal?.aborted === true) throw new GridError('GRID_ERR_CANCELLED', 'compile cancelled')
    // A memory cap goes through the shell's ulimit (Node cannot set rlimits on a child): sh
    // sets it and execs the compiler, which keeps sh's pid.
    const capped = job.memoryBytes !== undefined && process.platform !== 'win32'
    const toolArgs = withConcurrency(withStartHeap(job.args, this.startHeapMB), this.concurrency())
    const [file, args] = capped
      ? ['/bin/sh', ['-c', 'ulimit -v "$0" && exec "$@"', String(Math.floor((job.memoryBytes as number) / 1024)), job.tool, ...toolArgs]]
      : [job.tool, toolArgs]
    const options: SpawnOptions = { cwd: job.cwd, env: { ...this.base, ...job.env, PWD: job.cwd }, outputCap: MAX_COMPILE_OUTPUT_BYTES, ...(job.nice === undefined ? {} : { nice: job.nice }) }
    let ended: SpawnResult | undefined
    if (this.spawner?.alive === true) {
      try {
        ended = await this.spawner.run(file, args, options, signal)
      } catch (err) {
        if (!(err instanceof SpawnerGone)) {
          throw new GridError('GRID_ERR_COMPILE_SPAWN', `cannot run ${job.tool}: ${(err as Error).message}`, { cause: err, transient: true })
        }
      }
    }
    if (isAborted(signal)) throw new GridError('GRID_ERR_CANCELLED', 'compile cancelled')
    ended ??= await spawnHere(file, args, options, signal).catch((err: Error) => {
      throw new GridError('GRID_ERR_COMPILE_SPAWN', `cannot run ${job.tool}: ${err.message}`, { cause: err, transient: true })
    })
    if (isAborted(signal)) throw new GridError('GRID_ERR_CANCELLED', 'compile cancelled')
    // A compiler killed by a signal grid did not send (the OOM killer, a daemon stopping with
    // its process group, a user's kill) compiled nothing, and said nothing of the package: not a
    // result but an error. As an exit status it was taken for the compile's verdict: a peer's
    // came back as a failed compile, and the requester, finding the package clean, took the
    // peer for a liar. So the shim runs it again itself, and a requester tries elsewhere.
    if (ended.signal !== null || ended.exitCode < 0) {
      log.warn(`compile of ${job.cwd} killed by ${ended.signal ?? 'a signal'}`)
      throw new GridError('GRID_ERR_COMPILE_KILLED', `the compiler for ${job.cwd} was killed by ${ended.signal ?? 'a signal'}`, { transient: true })
    }
    return { exitCode: ended.exitCode, output: ended.output }
  }
}

/**
 * A compiler's arguments with its starting heap set (`-d=gcstart=MB`, first, so that any later
 * `-d` of the caller's own still wins), when the compiler knows the flag (`takesStartHeap`).
 * The same rule as the shim's (shim/main.go withStartHeap), which gets `heapMB` in its grant
 * only for such a compile.
 */
export function withStartHeap (args: string[], heapMB: number): string[] {
  return heapMB > 0 && takesStartHeap(args) ? [`-d=gcstart=${heapMB}`, ...args] : args
}

/**
 * Whether the compiler of these arguments knows `-d=gcstart`: its `-goversion` names Go 1.26 or
 * later (START_HEAP_MIN_GO). Without one (a devel toolchain, for which cmd/go passes none) the
 * compiler keeps its own starting heap: the flag changes no output, and an unknown one fails the
 * compile.
 */
export function takesStartHeap (args: string[]): boolean {
  let version: string | undefined
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string
    const name = arg.startsWith('--') ? arg.slice(1) : arg
    if (name === '-goversion') version = args[++i]
    else if (name.startsWith('-goversion=')) version = name.slice('-goversion='.length)
  }
  const m = /^go(\d+)\.(\d+)(?!\d)/.exec(version ?? '')
  if (m === null) return false
  const [major, minor] = [Number(m[1]), Number(m[2])]
  return major > START_HEAP_MIN_GO[0] || (major === START_HEAP_MIN_GO[0] && minor >= START_HEAP_MIN_GO[1])
}

/**
 * A compiler's arguments with cmd/go's `-c=N` lowered to `c` (its backend concurrency, which
 * changes no output): never raised, none added. The same rule as the shim's (shim/main.go
 * withConcurrency).
 */
export function withConcurrency (args: string[], c: number): string[] {
  if (c < 1) return args
  return args.map(arg => {
    if (!arg.startsWith('-c=')) return arg
    const n = Number(arg.slice(3))
    return Number.isInteger(n) && n > c ? `-c=${c}` : arg
  })
}

/** Whether `signal` has aborted (read anew: it may have since the caller last looked). */
function isAborted (signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true
}

/**
 * Runs a child from Node (when there is no spawner): stdout and stderr merged in arrival order,
 * kept up to `outputCap` bytes. When `signal` aborts, SIGTERM, then SIGKILL after a grace period.
 */
async function spawnHere (file: string, args: string[], options: SpawnOptions, signal: AbortSignal | undefined): Promise<SpawnResult> {
  return await new Promise((resolve, reject) => {
    const child = spawn(file, args, { cwd: options.cwd, env: options.env, stdio: ['ignore', 'pipe', 'pipe'] })
    if (options.nice !== undefined && child.pid !== undefined) {
      try { setPriority(child.pid, options.nice) } catch {}
    }
    const chunks: Buffer[] = []
    let bytes = 0
    const collect = (chunk: Buffer): void => {
      if (bytes >= options.outputCap) return
      chunks.push(chunk)
      bytes += chunk.length
    }
    child.stdout.on('data', collect)
    child.stderr.on('data', collect)
    let killTimer: NodeJS.Timeout | undefined
    const onAbort = (): void => {
      child.kill('SIGTERM')
      killTimer = setTimeout(() => child.kill('SIGKILL'), KILL_GRACE_MS)
      killTimer.unref()
    }
    signal?.addEventListener('abort', onAbort, { once: true })
    child.on('error', err => {
      signal?.removeEventListener('abort', onAbort)
      reject(err)
    })
    child.on('close', (code, sig) => {
      signal?.removeEventListener('abort', onAbort)
      clearTimeout(killTimer)
      resolve({ exitCode: code ?? -1, signal: sig, output: Buffer.concat(chunks) })
    })
  })
}
