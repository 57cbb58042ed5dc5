/**
 * `--cache-max`: the cache trimmed in the background once its blobs pass the limit, to
 * TRIM_TO of it, least recently used first (Cache.gc), one trim at a time. The node asks after
 * every batch of puts and every entry fetched from a peer (`maybe`), which costs nothing while
 * the cache is under the limit: its size is kept up to date by the puts (Cache.approxBytes).
 *
 * A trim cannot take a blob a running build holds, nor one written in the last
 * GC_SPARES_RECENT_MS (invariant 6). When those alone pass the limit (a cold build of a large
 * module writes gigabytes within minutes; a build that reads or writes more than the limit holds
 * it all until it ends), a trim ends above it, and until something is written or released it
 * could only do the same again. Such a trim is not run again for RETRIM_MS: asked after every
 * put, each a scan of the whole index and a `stat` of every blob it spares, it would keep the
 * node busy for as long as the build ran, and slow that build with it.
 */
import { formatBytes } from '@grid/protocol'
import { logger } from '../log.js'
import type { Cache } from './cache.js'
import { GC_SPARES_RECENT_MS, RETRIM_MS, TRIM_TO } from './constants.js'

const log = logger('grid:cache')

export interface TrimmerInit {
  cache: Cache
  /** --cache-max, bytes of blobs */
  maxBytes: number
  /** Whether a running build holds a blob (hex OutputID): Cache.gc's `pinned`. */
  pinned: (outputHex: string) => boolean
  /** How long a trim that ended over the limit keeps the next one off (RETRIM_MS); tests shorten it. */
  retrimMs?: number
}

export class Trimmer {
  private readonly init: TrimmerInit
  private trimming: Promise<void> | undefined
  /** When the last trim ended over the limit (it could take no more): the next waits RETRIM_MS from then */
  private stuckAt: number | undefined

  constructor (init: TrimmerInit) {
    this.init = init
  }

  private get retrimMs (): number { return this.init.retrimMs ?? RETRIM_MS }

  /** Trims in the background if the blobs have passed the limit and no trim is running or held off. */
  maybe (): void {
    if (this.trimming !== undefined) return
    if (this.stuckAt !== undefined && Date.now() - this.stuckAt < this.retrimMs) return
    this.trimming = this.trim()
      .catch((err: Error) => log.warn(`trimming the cache failed: ${err.message}`))
      .finally(() => { this.trimming = undefined })
  }

  /** Resolves when the trim running now (if any) has ended. */
  async settled (): Promise<void> {
    await this.trimming
  }

  private async trim (): Promise<void> {
    const { cache, maxBytes, pinned } = this.init
    if (await cache.approxBytes() <= maxBytes) { this.stuckAt = undefined; return }
    const result = await cache.gc(Math.floor(maxBytes * TRIM_TO), pinned)
    const left = result.stats.bytes
    log.info(`cache over --cache-max: trimmed ${formatBytes(result.removedBytes)} (${result.removedEntries} entries)`)
    if (left > maxBytes) {
      if (this.stuckAt === undefined) {
        log.warn(`the cache is still over --cache-max (${formatBytes(left)} of ${formatBytes(maxBytes)}) after a trim: what is left is held by running builds or was written ` +
          `in the last ${GC_SPARES_RECENT_MS / 60_000} minutes; trimming again in ${Math.round(this.retrimMs / 1000)} s`)
      }
      this.stuckAt = Date.now()
    } else {
      this.stuckAt = undefined
    }
  }
}
