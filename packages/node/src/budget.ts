/**
 * A node-wide budget of bytes held in memory at once, shared by every stream and connection.
 *
 * Invariants:
 *  - what is held never exceeds `limit`, except by one request larger than the limit, which is
 *    granted alone, when nothing else is held (so it is served, never stuck);
 *  - requests that wait (`take`) are granted in the order they asked; `tryTake` never waits and
 *    takes whatever room is free now, even ahead of them: it is for small, short holds (bodies
 *    inlined in a lookup reply), which a big body waiting its turn must not hold up;
 *  - a wait whose signal aborts leaves the queue at once, and what it would have taken goes to
 *    the next in line;
 *  - a release is idempotent: call it in a `finally`, whatever happened.
 */
import { GridError } from '@grid/protocol'

interface Waiter { bytes: number, grant: () => void }

export type Release = () => void

export class ByteBudget {
  private held = 0
  private most = 0
  private readonly queue: Waiter[] = []

  constructor (readonly limit: number) {
    if (!Number.isSafeInteger(limit) || limit <= 0) throw new TypeError(`a byte budget must be a positive integer, not ${limit}`)
  }

  /** Bytes held now. */
  get inUse (): number { return this.held }
  /** The most bytes held at once so far. */
  get peak (): number { return this.most }
  /** Requests waiting for their turn. */
  get waiting (): number { return this.queue.length }

  /** Takes `bytes` if they fit now, within the limit (even one larger alone is refused); the release, or undefined. */
  tryTake (bytes: number): Release | undefined {
    if (this.held + bytes > this.limit) return undefined
    return this.hold(bytes)
  }

  /** Takes `bytes` when they fit and every earlier request was granted; rejects when `signal` aborts first. */
  async take (bytes: number, signal: AbortSignal): Promise<Release> {
    signal.throwIfAborted()
    if (this.queue.length === 0 && this.fits(bytes)) return this.hold(bytes)
    return await new Promise<Release>((resolve, reject) => {
      const onAbort = (): void => {
        const at = this.queue.indexOf(waiter)
        if (at >= 0) this.queue.splice(at, 1)
        this.grantWaiting() // the head may have been the one that did not fit
        reject(signal.reason ?? new GridError('GRID_ERR_CANCELLED', 'the wait for memory was cancelled'))
      }
      const waiter: Waiter = {
        bytes,
        grant: () => {
          signal.removeEventListener('abort', onAbort)
          resolve(this.hold(bytes))
        }
      }
      this.queue.push(waiter)
      signal.addEventListener('abort', onAbort, { once: true })
    })
  }

  private fits (bytes: number): boolean {
    return this.held === 0 || this.held + bytes <= this.limit
  }

  private hold (bytes: number): Release {
    this.held += bytes
    this.most = Math.max(this.most, this.held)
    let released = false
    return () => {
      if (released) return
      released = true
      this.held -= bytes
      this.grantWaiting()
    }
  }

  /** Grants waiting requests from the head of the queue, as long as they fit. */
  private grantWaiting (): void {
    for (;;) {
      const head = this.queue[0]
      if (head === undefined || !this.fits(head.bytes)) return
      this.queue.shift()
      head.grant()
    }
  }
}

/**
 * A node-wide budget that no one holder (a peer) may fill: each holds at most `share` of it, so
 * one member that starts large messages and sends them slowly leaves room for the others.
 * A holder's requests wait in order for its share first, then for the budget.
 */
export class SharedBudget {
  private readonly holders = new Map<string, ByteBudget>()

  constructor (readonly budget: ByteBudget, readonly share: number) {
    if (share > budget.limit) throw new TypeError(`a share of ${share} bytes is over its budget of ${budget.limit}`)
  }

  /** Requests waiting, for a holder's share or for the budget. */
  get waiting (): number {
    let n = this.budget.waiting
    for (const own of this.holders.values()) n += own.waiting
    return n
  }

  async take (holder: string, bytes: number, signal: AbortSignal): Promise<Release> {
    let own = this.holders.get(holder)
    if (own === undefined) this.holders.set(holder, own = new ByteBudget(this.share))
    const forget = (): void => { if (own.inUse === 0 && own.waiting === 0 && this.holders.get(holder) === own) this.holders.delete(holder) }
    const releaseOwn = await own.take(bytes, signal).catch((err: unknown) => { forget(); throw err })
    try {
      const release = await this.budget.take(bytes, signal)
      return () => { release(); releaseOwn(); forget() }
    } catch (err) {
      releaseOwn()
      forget()
      throw err
    }
  }
}
