/**
 * Export data of dependency archives, read once. Nearly every task names `runtime`, `sync`,
 * `errors`… in its importcfg: reading and hashing those archives again for each task was most
 * of a task's preparation. An archive file that cmd/go hands a compile is never rewritten
 * (`$WORK/bNNN/_pkg_.a` once its compile is done, or a GOCACHE file named by content), so an
 * entry is keyed by path, size and mtime and never goes stale. Only the `__.PKGDEF` member is
 * read from disk when it comes first, as cmd/compile writes it. Reads are synchronous, like the
 * task builder's (task-builder.ts says why).
 *
 * An entry can be hit only while its file is there as it was: once cmd/go removes a build's
 * $WORK, the entries of that build's own packages are dead. `prune` (when a build ends) drops
 * them, so a daemon keeps the export data that recurs (the standard library's, from the cache)
 * and not every build's: before, dead entries piled up to MAX_BYTES and stayed.
 */
import { createHash } from 'node:crypto'
import { closeSync, openSync, readSync, statSync } from 'node:fs'
import { stat } from 'node:fs/promises'
import { exportDataOnly } from './archive.js'

/** Bytes of export data kept; std's is ~7.6 MB in all, cmd's a few times that. */
const MAX_BYTES = 128 * 1024 * 1024
const MAGIC = '!<arch>\n'
const HEADER = 60

export interface ExportData { data: Buffer, sha256: string }

/** An entry, with the file it was read from as it was then. */
interface Entry extends ExportData { path: string, size: number, mtimeMs: number }

export class ExportDataCache {
  private readonly entries = new Map<string, Entry>()
  private bytes = 0
  private pruning: Promise<number> | undefined

  /** Entries held, and the bytes of their export data. */
  get size (): { entries: number, bytes: number } {
    return { entries: this.entries.size, bytes: this.bytes }
  }

  /** The export data of the archive at `path`, or undefined if it is not a Go archive. */
  get (path: string): ExportData | undefined {
    const st = statSync(path)
    const key = `${path}\0${st.size}\0${st.mtimeMs}`
    const hit = this.entries.get(key)
    if (hit !== undefined) {
      this.entries.delete(key) // Map order is recency order
      this.entries.set(key, hit)
      return hit
    }
    const data = readExportData(path, st.size)
    if (data === undefined) return undefined
    const entry: Entry = { data, sha256: createHash('sha256').update(data).digest('hex'), path, size: st.size, mtimeMs: st.mtimeMs }
    this.entries.set(key, entry)
    this.bytes += data.length
    for (const [k, e] of this.entries) {
      if (this.bytes <= MAX_BYTES) break
      this.entries.delete(k)
      this.bytes -= e.data.length
    }
    return entry
  }

  /**
   * Drops the entries whose file is gone or no longer the one read (a build's $WORK, once the
   * build is over): no `get` can hit them again. One prune at a time; returns how many it dropped.
   */
  async prune (): Promise<number> {
    this.pruning ??= this.pruneOnce().finally(() => { this.pruning = undefined })
    return await this.pruning
  }

  private async pruneOnce (): Promise<number> {
    let dropped = 0
    for (const [key, entry] of [...this.entries]) {
      const st = await stat(entry.path).catch(() => undefined)
      if (st !== undefined && st.size === entry.size && st.mtimeMs === entry.mtimeMs) continue
      if (this.entries.get(key) !== entry) continue // evicted meanwhile
      this.entries.delete(key)
      this.bytes -= entry.data.length
      dropped++
    }
    return dropped
  }
}

/** Reads just the leading `__.PKGDEF` member; falls back to the whole file otherwise. */
function readExportData (path: string, size: number): Buffer | undefined {
  const fd = openSync(path, 'r')
  try {
    const head = Buffer.alloc(Math.min(size, MAGIC.length + HEADER))
    readSync(fd, head, 0, head.length, 0)
    if (head.length === MAGIC.length + HEADER && head.toString('latin1', 0, MAGIC.length) === MAGIC &&
      head.toString('latin1', MAGIC.length, MAGIC.length + 16).trimEnd().replace(/\/$/, '') === '__.PKGDEF') {
      const member = Number(head.toString('latin1', MAGIC.length + 48, MAGIC.length + 58).trim())
      const end = MAGIC.length + HEADER + member + (member % 2)
      if (Number.isSafeInteger(member) && member >= 0 && end <= size) {
        const buf = Buffer.alloc(end)
        readSync(fd, buf, 0, end, 0)
        return exportDataOnly(buf)
      }
    }
    const all = Buffer.alloc(size)
    readSync(fd, all, 0, size, 0)
    return exportDataOnly(all)
  } finally {
    closeSync(fd)
  }
}
