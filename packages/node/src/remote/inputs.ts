/**
 * A worker's inputs by content: `<cache>/worker/blobs/<hex[0:2]>/<hex>`, each checked against
 * its sha256 before it is stored (temp file and rename). Export data shared by many tasks, and
 * a requester's sources from one build to the next, travel once.
 *
 * The store keeps what peers use: asking whether it holds an input marks that input used (its
 * mtime), and a sweep (at the worker's start, then every WORKER_SWEEP_MS) removes inputs unused
 * for WORKER_INPUT_TTL_MS, and temp files a crash left. Without it the store only grew: every
 * version of every source and export data any peer had sent. An input the sweep removes is
 * asked for again by the next task that needs it; a task that has said which inputs it lacks
 * has just marked the others used, so a sweep days later cannot take them from under it.
 */
import { createHash, randomBytes } from 'node:crypto'
import { mkdirSync, readFileSync, renameSync, statSync, utimesSync, writeFileSync } from 'node:fs'
import { mkdir, readdir, stat, unlink } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { GridError } from '@grid/protocol'
import { logger } from '../log.js'
import { INPUTS_DIR, WORKER_DIR, WORKER_INPUT_TTL_MS, WORKER_SWEEP_MS } from './constants.js'

const log = logger('grid:worker')

/** A temp file older than this is a crash's leftover: a put writes and renames in one turn. */
const STALE_TEMP_MS = 60_000

export interface SweepResult { removed: number, bytes: number }

/** `<cache>/worker/blobs`: the store of a node whose cache dir is `cacheDir`. */
export function inputStoreDir (cacheDir: string): string {
  return join(cacheDir, WORKER_DIR, INPUTS_DIR)
}

export class InputStore {
  private readonly dir: string
  private timer: NodeJS.Timeout | undefined
  private sweeping: Promise<SweepResult> | undefined
  private stopping = false

  /** `dir`: `<cache>/worker/blobs` */
  constructor (dir: string) {
    this.dir = dir
  }

  /** Makes the store and sweeps it now (in the background) and every WORKER_SWEEP_MS. */
  async start (): Promise<void> {
    await mkdir(this.dir, { recursive: true })
    this.timer = setInterval(() => { void this.sweep() }, WORKER_SWEEP_MS)
    this.timer.unref()
    void this.sweep()
  }

  /** Stops the sweeps; one under way ends at its next file. */
  async stop (): Promise<void> {
    this.stopping = true
    clearInterval(this.timer)
    this.timer = undefined
    await this.sweeping
  }

  path (sha256: string): string {
    return join(this.dir, sha256.slice(0, 2), sha256)
  }

  /** Whether the store holds an input; if so it counts as used now. One syscall, synchronously. */
  has (sha256: string): boolean {
    const now = new Date()
    try {
      utimesSync(this.path(sha256), now, now)
      return true
    } catch {
      return false
    }
  }

  /** Stores an input, if it hashes to its name. */
  put (sha256: string, data: Uint8Array): void {
    if (createHash('sha256').update(data).digest('hex') !== sha256) throw new GridError('GRID_ERR_TASK_REFUSED', `input ${sha256.slice(0, 16)}… does not hash to its name`)
    const path = this.path(sha256)
    const tmp = `${path}.${randomBytes(4).toString('hex')}.tmp`
    mkdirSync(dirname(path), { recursive: true })
    writeFileSync(tmp, data)
    renameSync(tmp, path)
  }

  /** An input's size in bytes, or -1 if it is not held. */
  size (sha256: string): number {
    try {
      return statSync(this.path(sha256)).size
    } catch {
      return -1
    }
  }

  read (sha256: string): string {
    return readFileSync(this.path(sha256), 'utf8')
  }

  /** The inputs held and their bytes (temp files left out). */
  async usage (): Promise<{ inputs: number, bytes: number }> {
    const usage = { inputs: 0, bytes: 0 }
    for await (const { name, size } of this.files()) {
      if (name.endsWith('.tmp')) continue
      usage.inputs++
      usage.bytes += size
    }
    return usage
  }

  /**
   * Every file in the store, temp files included, with its size and mtime. Tolerates a file or
   * directory that goes away meanwhile: nothing here can fail.
   */
  private async * files (): AsyncGenerator<{ name: string, path: string, size: number, mtimeMs: number }> {
    for (const shard of await readdir(this.dir).catch(() => [])) {
      for (const name of await readdir(join(this.dir, shard)).catch(() => [])) {
        const path = join(this.dir, shard, name)
        const st = await stat(path).catch(() => undefined)
        if (st !== undefined && st.isFile()) yield { name, path, size: st.size, mtimeMs: st.mtimeMs }
      }
    }
  }

  /** Removes the inputs unused since `now - WORKER_INPUT_TTL_MS`, and stale temp files. One sweep at a time. */
  async sweep (now = Date.now()): Promise<SweepResult> {
    this.sweeping ??= this.sweepOnce(now).finally(() => { this.sweeping = undefined })
    return await this.sweeping
  }

  private async sweepOnce (now: number): Promise<SweepResult> {
    const result: SweepResult = { removed: 0, bytes: 0 }
    for await (const { name, path, size, mtimeMs } of this.files()) {
      if (this.stopping) return result
      if (now - mtimeMs < (name.endsWith('.tmp') ? STALE_TEMP_MS : WORKER_INPUT_TTL_MS)) continue
      await unlink(path).then(() => { result.removed++; result.bytes += size }, () => {})
    }
    if (result.removed > 0) log.info(`removed ${result.removed} inputs of peers' tasks unused for ${WORKER_INPUT_TTL_MS / 86_400_000} days (${result.bytes} bytes)`)
    return result
  }
}
