/**
 * Compiles waiting for a local slot that a peer could still take. The scheduler places a
 * compile once, when the shim hands it over; one placed locally because every peer was busy
 * would otherwise wait for the local slot even after a peer frees up. Each such compile waits
 * here too, by priority (the remaining critical path, read when a slot frees), and when a
 * peer slot frees the most urgent one is taken off to that peer. cmd/go's -p keeps
 * BACKLOG_DEPTH more compiles in flight than there are slots (node.ts `parallelism`), so a
 * peer that finishes finds its next task waiting here instead of a round trip through cmd/go
 * and the shim away. `localOrPeer` is the wait of one such compile, for whichever comes first.
 */

import { GridError } from '@grid/protocol'
import { linked } from '../signals.js'
import { RankedQueue, type LocalPool, type Rank } from '../worker/index.js'

interface Entry { take: () => void }

export class Backlog {
  private readonly entries = new RankedQueue<Entry>()

  get size (): number { return this.entries.size }

  /**
   * Waits until `take` is called for this compile (a peer slot for it) or `signal` aborts (it
   * got its local slot, or was cancelled): the promise then never settles, and the entry is gone.
   */
  async wait (priority: Rank, signal: AbortSignal): Promise<void> {
    if (signal.aborted) return await new Promise<void>(() => {})
    await new Promise<void>(resolve => {
      const entry: Entry = { take: () => { signal.removeEventListener('abort', drop); resolve() } }
      const drop = (): void => { this.entries.remove(entry) }
      signal.addEventListener('abort', drop, { once: true })
      this.entries.push(entry, priority)
    })
  }

  /** Takes up to `n` of the most urgent compiles off to peers; returns how many it took. */
  take (n: number): number {
    let taken = 0
    while (taken < n) {
      const entry = this.entries.shift()
      if (entry === undefined) break
      entry.take()
      taken++
    }
    return taken
  }
}

export interface SlotWait {
  /** the compile's priority in both queues (its remaining critical path) */
  priority: Rank
  /** ms to wait for a peer alone before queueing for the local slot too (a long pole: LONG_POLE_WAIT) */
  headStartMs: number
  signal: AbortSignal
  /** called once the compile waits in the backlog: a peer slot may already be free */
  waiting: () => void
}

/**
 * For a compile every peer was too busy for: waits in the backlog for a peer slot and, after
 * the head start, in the local queue, whichever comes first. Returns the leased local slot, or
 * undefined when a peer slot was freed for it (the caller ships it). Rejects as cancelled when
 * `signal` aborts.
 */
export async function localOrPeer (pool: LocalPool, backlog: Backlog, wait: SlotWait): Promise<{ free: () => void } | undefined> {
  const either = linked(wait.signal) // its end ends the waits that lost
  const leased = wait.headStartMs > 0
    ? cancellableDelay(wait.headStartMs, either.signal).then(async () => await pool.lease({ signal: either.signal, priority: wait.priority }))
    : pool.lease({ signal: either.signal, priority: wait.priority })
  const stolen = backlog.wait(wait.priority, either.signal)
  queueMicrotask(wait.waiting)
  try {
    const first = await Promise.race([leased.then(free => ({ free })), stolen.then(() => undefined)])
    if (first === undefined) leased.then(free => { free() }, () => {}) // granted in the same turn, or cancelled: not ours
    return first
  } finally {
    either.end()
  }
}

/** Resolves after `ms`, or rejects as a cancelled compile when `signal` aborts first. */
async function cancellableDelay (ms: number, signal: AbortSignal): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const cancelled = (): void => {
      clearTimeout(timer)
      reject(new GridError('GRID_ERR_CANCELLED', 'compile cancelled while waiting for a slot'))
    }
    const timer = setTimeout(() => { signal.removeEventListener('abort', cancelled); resolve() }, ms)
    if (signal.aborted) cancelled()
    else signal.addEventListener('abort', cancelled, { once: true })
  })
}
