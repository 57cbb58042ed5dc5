/**
 * The builds a node is serving. `grid build` opens one with `build-begin` and closes it with
 * `build-end`; the shim and the cache helper name it in every request (`$GRID_BUILD`), so each
 * counter lands on the build it belongs to. A build whose control connection closes without
 * `build-end` is ended then: nothing waits on a requester that is gone. An embedded node that
 * stops when its builds are done closes the registry: from the step that sees none, no build
 * begins.
 */
import { createHash, randomBytes } from 'node:crypto'
import { GridError, emptyBuildStats, type BuildStats } from '@grid/protocol'
import type { Plan } from '../scheduler/index.js'
import { deadline } from '../signals.js'
import { BuildSources } from './sources.js'
import { Waits } from './waits.js'

export interface BuildRecord {
  stats: BuildStats
  /** hex OutputIDs this build read or wrote: `gc` leaves them alone while it runs. */
  pinned: Set<string>
  /** latency of each peer lookup, ms (summarised as percentiles in the stats) */
  lookupMs: number[]
  /** its gets' waits on peers (peercache's find): their sum and their union, in the stats as `cache.peer.waitMs` and `waitWallMs` */
  peerWaits: Waits
  /** per remote task, requester wall time beyond the worker's compile time, ms */
  overheadMs: number[]
  /** the package graph, once `grid build` sent it */
  plan: Plan | undefined
  /** compile time of each package in this build, ms (for the measured critical path) */
  durations: Map<string, number>
  /**
   * Its compiles granted to a shim (which runs the compiler itself) that are not counted yet: from
   * the grant until their connection closes (or compile-done) and their output is checked
   * (node.ts, shimEnded). Its end waits for them (`settled`).
   */
  uncounted: Set<Promise<void>>
  /**
   * The keys of its recall list (docs/cache.md, "Recall"): its command in its directory, then
   * the directory alone (the newest list of any command there, for a command's first build).
   */
  recallKeys: [string, string]
  /** hex ActionIDs this build looked up or put: its recall list when it ends */
  looked: Set<string>
  /** entries handed to its cache helpers at `cache-open`, by hex ActionID */
  recalled: Map<string, { outputId: Uint8Array, size: number }>
  /** the same entries packed for `cache-opened`, looked up once the build begins */
  recalling: Promise<Uint8Array> | undefined
  /** the files each of its compiles reads, checked as cmd/go puts their outputs (sources.ts) */
  sources: BuildSources
  /** its go command's GOTOOLDIR, from its cache helper (`cache-open`), when it said: whose compiler made its entries */
  gotooldir?: string
}

/**
 * How long a build's end waits for its compiles to be counted (`settled`). By then its go has
 * exited, and so have the compilers it ran: what is left is the node seeing their connections
 * close, and a stat each. A compiler that outlives its go (one whose go was killed) is not waited
 * for past this, well within the 15 s grid build gives build-end (ANSWER_TIMEOUT_MS).
 */
export const SETTLE_MS = 5_000

/** Holds `record`'s end (`settled`) for one of its compiles, until the function returned says it is counted. */
export function holdEnd (record: BuildRecord): () => void {
  let counted = (): void => {}
  const held = new Promise<void>(resolve => { counted = resolve })
  record.uncounted.add(held)
  return () => {
    record.uncounted.delete(held)
    counted()
  }
}

/**
 * Resolves once every compile of `record` is counted (its summary then counts them all), after
 * SETTLE_MS at most, or at once when `stop` aborts.
 */
export async function settled (record: BuildRecord, stop?: AbortSignal): Promise<void> {
  if (record.uncounted.size === 0) return
  const wait = deadline(SETTLE_MS, stop)
  const over = new Promise<void>(resolve => { wait.signal.addEventListener('abort', () => { resolve() }, { once: true }) })
  try {
    while (record.uncounted.size > 0 && !wait.signal.aborted) await Promise.race([Promise.all(record.uncounted), over])
  } finally {
    wait.done()
  }
}

export class Builds {
  private readonly active = new Map<string, BuildRecord>()
  private readonly listeners = new Set<() => void>()
  /** close() saw no build: every new one is refused */
  private closed = false
  served = 0
  /** the stats of the build that ended last */
  last: BuildStats | undefined

  /**
   * @param since when its go command may have begun hashing files (default: now)
   * @throws GRID_ERR_NODE_CLOSED once close() has seen no build
   */
  begin (command: string[], cwd: string, since = Date.now()): BuildRecord {
    if (this.closed) {
      throw new GridError('GRID_ERR_NODE_CLOSED', 'the node is stopping (its builds have ended) and takes no new build', { transient: true })
    }
    const id = randomBytes(8).toString('hex')
    const key = (parts: unknown[]): string => createHash('sha256').update(JSON.stringify(parts)).digest('hex').slice(0, 32)
    const recallKeys: [string, string] = [key([cwd, command]), key([cwd])]
    const record: BuildRecord = {
      stats: emptyBuildStats(id, command),
      pinned: new Set(),
      lookupMs: [],
      peerWaits: new Waits(),
      overheadMs: [],
      plan: undefined,
      durations: new Map(),
      uncounted: new Set(),
      recallKeys,
      looked: new Set(),
      recalled: new Map(),
      recalling: undefined,
      sources: new BuildSources(since)
    }
    this.active.set(id, record)
    return record
  }

  /** The record for a request's build id; undefined for '' or an unknown (ended) build. */
  get (id: string): BuildRecord | undefined {
    return id === '' ? undefined : this.active.get(id)
  }

  end (id: string): BuildStats | undefined {
    const record = this.active.get(id)
    if (record === undefined) return undefined
    this.active.delete(id)
    this.served++
    record.stats.endedAt = Date.now()
    this.last = record.stats
    for (const listener of this.listeners) listener()
    return record.stats
  }

  get count (): number { return this.active.size }

  /** Whether a running build holds the blob of this OutputID (hex): asked by `gc` as it removes. */
  isPinned (outputHex: string): boolean {
    for (const record of this.active.values()) if (record.pinned.has(outputHex)) return true
    return false
  }

  /**
   * Resolves once no build is active, and from that moment refuses new ones: a node that stops
   * when its builds are done (an embedded one) must not take a build it would stop under. The
   * look and the refusal are one step, in end() or here, so no begin() falls between them.
   */
  async close (): Promise<void> {
    await new Promise<void>(resolve => {
      const check = (): void => {
        if (this.active.size > 0) return
        this.closed = true
        this.listeners.delete(check)
        resolve()
      }
      this.listeners.add(check)
      check()
    })
  }
}
