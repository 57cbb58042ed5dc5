/**
 * A remote compile task: typed, never a command line. The requester describes what cmd/go
 * asked for (flags from an allow-list, inputs by absolute requester path and sha256, the
 * trimpath rules); the worker validates it, materialises the inputs in a sandbox and builds
 * the compile command itself (shared/DESIGN.md §3).
 *
 * Contract on `/grid/compile/1.0.0`, one stream per task:
 *   requester → offer {task}          worker → need {hashes}  | fail {code, message}
 *   requester → blobs {items}* , done worker → result {exitCode, output, archive, asmhdr} | fail
 */
import { GridError } from './errors.js'
import { OUTPUT_ENV } from './constants.js'

export const TASK_VERSION = 1
/** Inputs of one task, all files together: std's biggest package is ~2.2 MB of source plus export data. */
export const MAX_TASK_INPUT_BYTES = 256 * 1024 * 1024
export const MAX_TASK_FILES = 4096
export const MAX_TASK_FILE_BYTES = 64 * 1024 * 1024

/** Compile flags a task may carry, without a value. */
export const TASK_BOOL_FLAGS = [
  '-std', '-complete', '-nolocalimports', '-pack', '-compiling-runtime', '-+', '-shared', '-dynlink',
  '-race', '-msan', '-asan', '-N', '-l', '-B', '-smallframes', '-linkshared', '-wrapglobalmapinit'
] as const
/** Compile flags a task may carry with a plain value (never a path). */
export const TASK_VALUE_FLAGS = ['-p', '-lang', '-buildid', '-goversion', '-c', '-D', '-installsuffix', '-spectre', '-buildmode'] as const
/** Compile flags whose value is an input file (shipped in the task). */
export const TASK_INPUT_FLAGS = ['-importcfg', '-embedcfg', '-symabis', '-pgoprofile'] as const

export interface TaskFile {
  /** absolute path on the requester: the worker recreates it under its sandbox */
  path: string
  sha256: string
  size: number
}

export interface CompileTask {
  v: number
  /** `go tool compile -V=full` the task must be compiled with */
  compiler: string
  /** requester's GOROOT (for the $GOROOT rewrite of paths) */
  goroot: string
  /** OUTPUT_ENV minus GOROOT: the environment that changes the output */
  env: Record<string, string>
  /** flags in order, each `-name` or `-name=value`, from the allow-lists above */
  flags: string[]
  /** cmd/go's -trimpath rules, unchanged */
  trimpath: string
  /** input-file flags: flag name → requester path */
  inputFlags: Record<string, string>
  /** the .go files, in cmd/go's order (requester paths) */
  sources: string[]
  /** every input file (sources, importcfg, embedcfg and embedded files, symabis, export data) */
  files: TaskFile[]
  /** whether cmd/go asked for go_asm.h (-asmhdr) */
  asmhdr: boolean
  /** the import path, for logs */
  importPath: string
}

function bad (why: string, from: string): GridError {
  return new GridError('GRID_ERR_TASK_REFUSED', `task from ${from} refused: ${why}`)
}

/** An absolute, normalised POSIX path with no `..`, no `.` element and no NUL. */
export function isCleanAbsolute (p: string): boolean {
  if (typeof p !== 'string' || !p.startsWith('/') || p.length > 4096 || p.includes('\0')) return false
  return p.split('/').slice(1).every(el => el !== '' && el !== '.' && el !== '..')
}

/** Checks every field of a task from the wire; the worker runs nothing before this passes. */
export function validateTask (value: unknown, from = 'peer'): CompileTask {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw bad('not a map', from)
  const t = value as Record<string, unknown>
  if (t.v !== TASK_VERSION) throw bad(`version ${String(t.v)}`, from)
  if (typeof t.compiler !== 'string' || t.compiler.length > 256) throw bad('compiler', from)
  if (typeof t.goroot !== 'string' || !isCleanAbsolute(t.goroot)) throw bad('goroot must be an absolute path', from)
  if (typeof t.importPath !== 'string' || t.importPath.length > 1024) throw bad('importPath', from)
  if (typeof t.trimpath !== 'string' || t.trimpath.length > 64 * 1024) throw bad('trimpath', from)
  if (typeof t.asmhdr !== 'boolean') throw bad('asmhdr', from)
  const env = t.env as Record<string, unknown>
  if (env === null || typeof env !== 'object' || Array.isArray(env)) throw bad('env', from)
  for (const [k, v] of Object.entries(env)) {
    if (k === 'GOROOT' || !(OUTPUT_ENV as readonly string[]).includes(k)) throw bad(`environment variable ${k} is not allowed`, from)
    if (typeof v !== 'string' || v.length > 1024 || v.includes('\0')) throw bad(`environment value of ${k}`, from)
  }
  if (!Array.isArray(t.flags) || t.flags.length > 256) throw bad('flags', from)
  for (const f of t.flags) {
    if (typeof f !== 'string' || f.includes('\0')) throw bad('flags', from)
    const [name, value] = f.includes('=') ? [f.slice(0, f.indexOf('=')), f.slice(f.indexOf('=') + 1)] : [f, undefined]
    const ok = value === undefined ? (TASK_BOOL_FLAGS as readonly string[]).includes(name) : (TASK_VALUE_FLAGS as readonly string[]).includes(name) && !value.includes('/../')
    if (!ok) throw bad(`flag ${JSON.stringify(f.slice(0, 64))} is not allowed`, from)
  }
  const files = t.files
  if (!Array.isArray(files) || files.length > MAX_TASK_FILES) throw bad('files', from)
  let total = 0
  const paths = new Set<string>()
  for (const f of files as Array<Record<string, unknown>>) {
    if (f === null || typeof f !== 'object') throw bad('file entry', from)
    if (typeof f.path !== 'string' || !isCleanAbsolute(f.path)) throw bad(`input path ${JSON.stringify(String(f.path).slice(0, 128))} is not a clean absolute path`, from)
    if (typeof f.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(f.sha256)) throw bad(`hash of ${f.path}`, from)
    if (!Number.isSafeInteger(f.size) || (f.size as number) < 0 || (f.size as number) > MAX_TASK_FILE_BYTES) throw bad(`size of ${f.path} (max ${MAX_TASK_FILE_BYTES} bytes)`, from)
    total += f.size as number
    paths.add(f.path)
  }
  if (total > MAX_TASK_INPUT_BYTES) throw bad(`inputs total ${total} bytes, over ${MAX_TASK_INPUT_BYTES}`, from)
  const inputFlags = t.inputFlags as Record<string, unknown>
  if (inputFlags === null || typeof inputFlags !== 'object' || Array.isArray(inputFlags)) throw bad('inputFlags', from)
  for (const [k, v] of Object.entries(inputFlags)) {
    if (!(TASK_INPUT_FLAGS as readonly string[]).includes(k)) throw bad(`input flag ${k} is not allowed`, from)
    if (typeof v !== 'string' || !paths.has(v)) throw bad(`input flag ${k} names a file the task does not carry`, from)
  }
  if (!Array.isArray(t.sources) || t.sources.length === 0 || !t.sources.every(s => typeof s === 'string' && paths.has(s) && s.endsWith('.go'))) {
    throw bad('sources must be .go files the task carries', from)
  }
  return t as unknown as CompileTask
}
