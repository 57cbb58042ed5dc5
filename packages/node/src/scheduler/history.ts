/**
 * How long each package took to compile on this host, remembered across builds in
 * `<cache>/history.json` (a moving average per import path). The scheduler ranks compiles by
 * it; a package never compiled here is estimated from its source size. Peers' compile times
 * never enter it (Scheduler.record). A missing or unreadable file is an empty history: it only
 * costs a worse order.
 */
import { readFile } from 'node:fs/promises'
import { writeFileAtomic } from '../files.js'
import { logger } from '../log.js'
import { HISTORY_ALPHA, HISTORY_MAX } from './constants.js'

const log = logger('grid:scheduler')

export class History {
  private readonly file: string
  private readonly ms = new Map<string, number>()
  private dirty = false
  /** the last save asked for: the next one runs after it */
  private saving: Promise<void> = Promise.resolve()

  constructor (file: string) {
    this.file = file
  }

  async load (): Promise<void> {
    let parsed: unknown
    try {
      parsed = JSON.parse(await readFile(this.file, 'utf8'))
    } catch (err) {
      if ((err as { code?: string }).code !== 'ENOENT') log.warn(`ignoring compile history ${this.file}: ${(err as Error).message}`)
      return
    }
    const packages = (parsed as { packages?: unknown })?.packages
    if (packages === null || typeof packages !== 'object') return
    for (const [p, ms] of Object.entries(packages)) {
      if (typeof ms === 'number' && Number.isFinite(ms) && ms >= 0) this.ms.set(p, ms)
    }
  }

  get (importPath: string): number | undefined {
    return this.ms.get(importPath)
  }

  record (importPath: string, ms: number): void {
    if (importPath === '' || !Number.isFinite(ms) || ms < 0) return
    const old = this.ms.get(importPath)
    this.ms.delete(importPath) // re-inserted last: Map order is recency order
    this.ms.set(importPath, old === undefined ? ms : old + HISTORY_ALPHA * (ms - old))
    if (this.ms.size > HISTORY_MAX) this.ms.delete(this.ms.keys().next().value as string)
    this.dirty = true
  }

  /**
   * Writes the history if it changed (temp file + rename: readers never see half a file). Saves
   * run one after another, and each resolves once what was recorded before it is on disk: a
   * build's end saves without waiting, and the node's stop right after it found nothing dirty
   * and returned while that write was still under way (the process could exit before it).
   */
  async save (): Promise<void> {
    const next = this.saving.then(async () => { await this.write() })
    this.saving = next
    await next
  }

  private async write (): Promise<void> {
    if (!this.dirty) return
    this.dirty = false
    const packages: Record<string, number> = {}
    for (const [p, ms] of this.ms) packages[p] = Math.round(ms * 10) / 10
    try {
      await writeFileAtomic(this.file, JSON.stringify({ v: 1, packages }))
    } catch (err) {
      log.warn(`cannot save the compile history: ${(err as Error).message}`)
    }
  }
}
