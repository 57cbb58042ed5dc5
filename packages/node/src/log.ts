/**
 * Namespaced loggers (`grid:cache`, `grid:control`, …). Libraries log here, never to console.
 * Where lines go is set once per process by `configureLogging`: the daemon writes to stderr and
 * a file; an embedded node (inside `grid build`, whose stderr carries the compiler's messages)
 * writes only to the file. `DEBUG=grid:*` (or a comma list of namespaces) turns on debug lines.
 */
import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs'
import { dirname } from 'node:path'

export type Level = 'debug' | 'info' | 'warn' | 'error'
const RANK: Record<Level | 'silent', number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 }

export interface Logger {
  debug: (msg: string) => void
  info: (msg: string) => void
  warn: (msg: string) => void
  error: (msg: string) => void
  readonly debugEnabled: boolean
}

interface Sink { stderr: Level | 'silent', file: WriteStream | undefined }
const sink: Sink = { stderr: 'warn', file: undefined }
const debugPatterns = (process.env.DEBUG ?? '').split(',').map(s => s.trim()).filter(s => s !== '')

function debugOn (name: string): boolean {
  return debugPatterns.some(p => p === name || (p.endsWith('*') && name.startsWith(p.slice(0, -1))))
}

export function configureLogging (options: { stderr?: Level | 'silent', file?: string }): void {
  if (options.stderr !== undefined) sink.stderr = options.stderr
  if (options.file !== undefined) {
    sink.file?.end()
    mkdirSync(dirname(options.file), { recursive: true })
    sink.file = createWriteStream(options.file, { flags: 'a' })
    sink.file.on('error', () => { sink.file = undefined })
  }
}

export async function closeLogging (): Promise<void> {
  const file = sink.file
  sink.file = undefined
  if (file !== undefined) await new Promise<void>(resolve => file.end(resolve))
}

export function logger (name: string): Logger {
  const debugEnabled = debugOn(name)
  const write = (level: Level, msg: string): void => {
    const line = `${new Date().toISOString()} ${level} ${name} ${msg}\n`
    const forced = level === 'debug' && debugEnabled
    if (forced || RANK[level] >= RANK[sink.stderr]) process.stderr.write(line)
    if (sink.file !== undefined && (level !== 'debug' || debugEnabled)) sink.file.write(line)
  }
  return {
    debugEnabled,
    debug: msg => { if (debugEnabled) write('debug', msg) },
    info: msg => write('info', msg),
    warn: msg => write('warn', msg),
    error: msg => write('error', msg)
  }
}
