/**
 * Namespaced loggers (`grid:cache`, `grid:control`, …). Libraries log here, never to console.
 * Where lines go is set once per process by `configureLogging`: the daemon writes to stderr and
 * a file; an embedded node (inside `grid build`, whose stderr carries the compiler's messages)
 * writes only to the file. `DEBUG=grid:*` (or a comma list of namespaces) turns on debug lines.
 */
import { closeSync, createWriteStream, existsSync, fstatSync, mkdirSync, openSync, renameSync, type WriteStream } from 'node:fs'
import { dirname } from 'node:path'

/**
 * A log file past this size is renamed `<file>.1` (replacing the one before) and started
 * afresh: a daemon runs for weeks, and `DEBUG=grid:*` writes a line per compile and lookup.
 */
export const LOG_ROTATE_BYTES = 16 * 1024 * 1024

/**
 * A log file that failed a write (a full disk) or cannot be opened is tried again this long
 * after, and the file's path is checked as often (removed with the cache dir, its lines would go
 * to a file no one can open): a daemon runs for weeks, and its log is where a user looks.
 */
export const LOG_RETRY_MS = 30_000

export type Level = 'debug' | 'info' | 'warn' | 'error'
const RANK: Record<Level | 'silent', number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 }

export interface Logger {
  debug: (msg: string) => void
  info: (msg: string) => void
  warn: (msg: string) => void
  error: (msg: string) => void
  readonly debugEnabled: boolean
}

interface Sink {
  stderr: Level | 'silent'
  file: WriteStream | undefined
  path: string
  /** bytes in the file: what it held when opened, and what we wrote since */
  bytes: number
  rotateBytes: number
  retryMs: number
  /** when the file is next opened again (after a failure) or its path checked */
  nextCheck: number
}
const sink: Sink = { stderr: 'warn', file: undefined, path: '', bytes: 0, rotateBytes: LOG_ROTATE_BYTES, retryMs: LOG_RETRY_MS, nextCheck: 0 }
const debugPatterns = (process.env.DEBUG ?? '').split(',').map(s => s.trim()).filter(s => s !== '')

function debugOn (name: string): boolean {
  return debugPatterns.some(p => p === name || (p.endsWith('*') && name.startsWith(p.slice(0, -1))))
}

export function configureLogging (options: { stderr?: Level | 'silent', file?: string, rotateBytes?: number, retryMs?: number }): void {
  if (options.stderr !== undefined) sink.stderr = options.stderr
  if (options.rotateBytes !== undefined) sink.rotateBytes = options.rotateBytes
  if (options.retryMs !== undefined) sink.retryMs = options.retryMs
  if (options.file !== undefined) {
    sink.file?.end()
    sink.path = options.file
    openFile()
  }
}

/**
 * Opens the log file (its descriptor at once, so that a rename later moves what was written).
 * A file that cannot be opened (a full disk, its dir not a directory) leaves the node logging
 * to stderr only, as a failed write does, until it is tried again LOG_RETRY_MS later.
 */
function openFile (): void {
  sink.nextCheck = Date.now() + sink.retryMs
  try {
    openFileOrThrow()
  } catch {
    sink.file = undefined
  }
}

function openFileOrThrow (): void {
  mkdirSync(dirname(sink.path), { recursive: true })
  let fd = openSync(sink.path, 'a')
  let bytes = fstatSync(fd).size
  if (bytes >= sink.rotateBytes) {
    closeSync(fd)
    rotate()
    fd = openSync(sink.path, 'a')
    bytes = 0
  }
  const file = createWriteStream(sink.path, { fd })
  file.on('error', () => {
    if (sink.file !== file) return
    sink.file = undefined // tried again from sink.nextCheck
    sink.nextCheck = Date.now() + sink.retryMs
  })
  sink.file = file
  sink.bytes = bytes
}

function rotate (): void {
  try { renameSync(sink.path, `${sink.path}.1`) } catch {}
}

function toFile (line: string): void {
  if (sink.path === '') return
  if (Date.now() >= sink.nextCheck) {
    if (sink.file === undefined) openFile()
    else if (!existsSync(sink.path)) { sink.file.end(); openFile() } // removed with its dir
    else sink.nextCheck = Date.now() + sink.retryMs
  }
  if (sink.file === undefined) return
  sink.file.write(line)
  sink.bytes += Buffer.byteLength(line)
  if (sink.bytes >= sink.rotateBytes) {
    sink.file.end() // its last lines land in the renamed file: the descriptor follows the rename
    rotate()
    openFile()
  }
}

/** The file this process logs to, as configureLogging named it; undefined when it logs to none. */
export function logFile (): string | undefined {
  return sink.path === '' ? undefined : sink.path
}

export async function closeLogging (): Promise<void> {
  const file = sink.file
  sink.file = undefined
  sink.path = '' // nothing is opened again
  if (file !== undefined) await new Promise<void>(resolve => file.end(resolve))
}

export function logger (name: string): Logger {
  const debugEnabled = debugOn(name)
  const write = (level: Level, msg: string): void => {
    const line = `${new Date().toISOString()} ${level} ${name} ${msg}\n`
    const forced = level === 'debug' && debugEnabled
    if (forced || RANK[level] >= RANK[sink.stderr]) process.stderr.write(line)
    if (level !== 'debug' || debugEnabled) toFile(line)
  }
  return {
    debugEnabled,
    debug: msg => { if (debugEnabled) write('debug', msg) },
    info: msg => write('info', msg),
    warn: msg => write('warn', msg),
    error: msg => write('error', msg)
  }
}

export interface LogLimiterInit {
  log: Pick<Logger, 'warn' | 'debug'>
  /** a key's repeats are told at most once per this */
  intervalMs: number
  /** keys remembered at most (they may be chosen by the other side: addresses) */
  maxKeys: number
  /** the line telling `count` repeats of `key` (undefined: of keys past maxKeys) over `seconds` */
  summary: (key: string | undefined, count: number, seconds: number) => string
  now?: () => number
}

/**
 * A warning that someone else can repeat at will (a refused handshake, once per connection
 * attempt) without flooding the log and rotating the useful lines away. The first of each key is
 * logged; its repeats are logged at debug level only, counted, and told in one line once
 * `intervalMs` has passed ("… and N more … in the last 60 s"), at the key's next repeat or at
 * the next `sweep()`, whichever comes first. A key whose interval passed without a repeat is
 * forgotten: its next one is logged in full again.
 *
 * Memory is bounded: at most `maxKeys` keys, kept in the order their interval began, so the
 * oldest go first once their interval is over. While all of them are within their interval, the
 * repeats of new keys are counted together, in one more line per interval: a flood from more
 * addresses than that writes no more lines than one from maxKeys addresses.
 */
export class LogLimiter {
  private readonly keys = new Map<string, { since: number, count: number }>()
  private readonly overflow = { since: 0, count: 0 }
  private readonly now: () => number

  constructor (private readonly init: LogLimiterInit) {
    if (!(init.intervalMs > 0) || !Number.isSafeInteger(init.maxKeys) || init.maxKeys <= 0) throw new TypeError('a log limiter needs a positive interval and key count')
    this.now = init.now ?? Date.now
  }

  /** Logs `message` as a warning if it is the first of `key`; else counts it, for a summary line. */
  warn (key: string, message: string): void {
    const now = this.now()
    const seen = this.keys.get(key)
    if (seen !== undefined) this.expire(key, seen, now)
    const entry = this.keys.get(key)
    if (entry !== undefined) {
      entry.count++
      this.init.log.debug(message)
      return
    }
    if (this.keys.size >= this.init.maxKeys) this.sweep()
    if (this.keys.size >= this.init.maxKeys) {
      if (this.overflow.count++ === 0) this.overflow.since = now
      this.init.log.debug(message)
      return
    }
    this.keys.set(key, { since: now, count: 0 })
    this.init.log.warn(message)
  }

  /** Tells the repeats of keys whose interval has passed, and forgets those with none: call it every so often. */
  sweep (): void {
    const now = this.now()
    for (const [key, entry] of this.keys) {
      if (now - entry.since < this.init.intervalMs) break // the rest began later
      this.expire(key, entry, now)
    }
    if (this.overflow.count > 0 && now - this.overflow.since >= this.init.intervalMs) this.tellOverflow(now)
  }

  /** Tells every repeat not yet told, and forgets every key (when the owner stops). */
  flush (): void {
    const now = this.now()
    for (const [key, entry] of this.keys) {
      if (entry.count > 0) this.init.log.warn(this.init.summary(key, entry.count, seconds(now - entry.since)))
    }
    this.keys.clear()
    if (this.overflow.count > 0) this.tellOverflow(now)
  }

  /** A key whose interval has passed: its repeats told and a new interval begun, or, with none, forgotten. */
  private expire (key: string, entry: { since: number, count: number }, now: number): void {
    if (now - entry.since < this.init.intervalMs) return
    this.keys.delete(key)
    if (entry.count === 0) return
    this.init.log.warn(this.init.summary(key, entry.count, seconds(now - entry.since)))
    this.keys.set(key, { since: now, count: 0 }) // last in the order
  }

  private tellOverflow (now: number): void {
    this.init.log.warn(this.init.summary(undefined, this.overflow.count, seconds(now - this.overflow.since)))
    this.overflow.count = 0
  }
}

function seconds (ms: number): number {
  return Math.max(1, Math.round(ms / 1000))
}
