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
