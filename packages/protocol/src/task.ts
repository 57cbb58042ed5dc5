/**
 * A remote compile task: typed, never a command line. The requester describes what cmd/go
 * asked for (flags from an allow-list, inputs by absolute requester path and sha256, the
 * trimpath rules); the worker validates it, materialises the inputs in a sandbox and builds
 * the compile command itself (shared/DESIGN.md §3).
 *
 * Contract on `/grid/compile/1.2.0`, tasks one after another on a stream:
 *   requester → offer {task}          worker → need {hashes}  | fail {code, message}
 *   requester → blobs {items}* , done worker → result {exitCode, output, archive, asmhdr} | fail
 * or, eager (the inputs the requester expects the worker to lack come with the offer):
 *   requester → offer {task, eager}, blobs {items}*, done
 *                                     worker → result | fail, or need {hashes} as above if it
 *                                              still lacks some
 */
import { createHash } from 'node:crypto'
import { GridError } from './errors.js'
import { CONTROL_CHAR, OUTPUT_ENV } from './constants.js'

export const TASK_VERSION = 1
/** Inputs of one task, all files together: std's biggest package is ~2.2 MB of source plus export data. */
export const MAX_TASK_INPUT_BYTES = 256 * 1024 * 1024
export const MAX_TASK_FILES = 4096
export const MAX_TASK_FILE_BYTES = 64 * 1024 * 1024
/**
 * Directories a task's input paths lie in, all levels counted: what a worker makes to lay the
 * inputs out (one mkdir each, in its sandbox). A real task needs a few hundred (its sources'
 * dir, cmd/go's $WORK, the cache shards of its export data, embedded trees); without a cap,
 * 4096 paths of 2,000 levels each made a worker create millions of directories for one task.
 */
export const MAX_TASK_DIRS = 8192
/**
 * What the task key may look at in a task's sources: the file names of `//line` and `/*line`
 * directives (a big cgo or goyacc file holds a few thousand), their bytes, and the work of
 * matching every recorded path against the trimpath rules (each path's length times the rules,
 * at most the rules' length). Past them the task is refused and compiles at its requester: a
 * 250 KB source of `//line ` repeated on one line made a worker keep gigabytes of names.
 */
export const MAX_TASK_LINE_NAMES = 100_000
export const MAX_TASK_LINE_NAME_BYTES = 4 * 1024 * 1024
export const MAX_TASK_PATH_WORK = 64 * 1024 * 1024

/** Compile flags a task may carry, without a value. */
export const TASK_BOOL_FLAGS = [
  '-std', '-complete', '-nolocalimports', '-pack', '-compiling-runtime', '-+', '-shared', '-dynlink',
  '-race', '-msan', '-asan', '-N', '-l', '-B', '-smallframes', '-linkshared', '-wrapglobalmapinit'
] as const
/**
 * Compile flags a task may carry with a plain value (never a path). `-dwarf=false` is cmd/go's
 * own for every compile for wasm and plan9, and for the main package of `go run` and of a test
 * binary: without it, those never went to peers. Not `-D` (the directory
 * local imports resolve against, which cmd/go passes only outside module mode): a task must
 * carry `-nolocalimports` and `-importcfg` (TASK_REQUIRED_FLAGS), so that the compiler opens no
 * package but those the worker wrote into the importcfg.
 */
export const TASK_VALUE_FLAGS = ['-p', '-lang', '-buildid', '-goversion', '-c', '-installsuffix', '-spectre', '-buildmode', '-dwarf'] as const
/**
 * The compiler's debug switches (`-d=…`) a task may carry, each whole: cmd/go's own
 * `-d=libfuzzer`, which instruments every package a `go test -fuzz` builds and writes no file.
 * Any other `-d` stays where it was asked (some write files; the shim runs them itself).
 */
export const TASK_DEBUG_FLAGS = ['-d=libfuzzer'] as const
/** Flags every task carries, as cmd/go gives every compile in module mode. */
export const TASK_REQUIRED_FLAGS = ['-nolocalimports', '-importcfg'] as const
/** Compile flags whose value is an input file (shipped in the task). */
export const TASK_INPUT_FLAGS = ['-importcfg', '-embedcfg', '-symabis', '-pgoprofile', '-coveragecfg'] as const

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

/** The fields of a task, and of each of its files: a task with others, or without one of these, is of another grid version. */
const TASK_FIELDS: ReadonlyArray<keyof CompileTask> = ['v', 'compiler', 'goroot', 'env', 'flags', 'trimpath', 'inputFlags', 'sources', 'files', 'asmhdr', 'importPath']
const TASK_FILE_FIELDS: ReadonlyArray<keyof TaskFile> = ['path', 'sha256', 'size']

/**
 * A task of another shape than this version's: another TASK_VERSION, a field this worker does
 * not know (a newer requester's, which might change the compile: ignoring it could return
 * another archive than the requester's own compiler writes), or one missing (an older or newer
 * requester's). Not a bad task but another grid version: refused as GRID_ERR_TASK_INCOMPATIBLE,
 * which a requester does not count against the worker (it sends that worker nothing more until
 * one of them runs another version).
 */
function incompatible (why: string, from: string): GridError {
  return new GridError('GRID_ERR_TASK_INCOMPATIBLE', `task from ${from} is of another grid version: ${why}`)
}

/** Why `value` (a map) has not exactly the fields `fields`, or undefined. */
function shapeProblem (value: Record<string, unknown>, fields: readonly string[], what: string): string | undefined {
  const unknown = Object.keys(value).filter(k => !fields.includes(k))
  if (unknown.length > 0) return `${what} has the field${unknown.length > 1 ? 's' : ''} ${unknown.slice(0, 4).map(k => JSON.stringify(k.slice(0, 64))).join(', ')}, unknown to this version`
  const missing = fields.filter(k => value[k] === undefined)
  if (missing.length > 0) return `${what} has no ${missing.join(', ')}`
  return undefined
}

/**
 * An absolute, normalised POSIX path with no `..`, no `.` element, no control character and no
 * backslash (a separator to Windows' path functions, by which `..` would climb out of a sandbox).
 */
export function isCleanAbsolute (p: string): boolean {
  if (typeof p !== 'string' || !p.startsWith('/') || p.length > 4096 || CONTROL_CHAR.test(p) || p.includes('\\')) return false
  return p.split('/').slice(1).every(el => el !== '' && el !== '.' && el !== '..')
}

/**
 * Why a task may not carry this value of an output-affecting variable, or undefined. Values are
 * plain settings (`v3`, `arenas,boringcrypto`, `gotypesalias=1`); GOCOMPILEDEBUG, the
 * compiler's debug switches, is refused whatever its value: some of them name files the
 * compiler writes (`-d=dumpinlfuncprops=FILE`), so a compile with it stays where it was asked.
 */
export function taskEnvProblem (name: string, value: string): string | undefined {
  if (name === 'GOROOT' || !(OUTPUT_ENV as readonly string[]).includes(name)) return `environment variable ${name} is not allowed`
  if (name === 'GOCOMPILEDEBUG') return value === '' ? undefined : 'GOCOMPILEDEBUG (the compiler\'s debug switches) is not sent to peers'
  if (value.length > 1024 || !/^[A-Za-z0-9_.,=+:-]*$/.test(value)) return `environment value of ${name} has characters a setting does not`
  return undefined
}

/** Checks every field of a task from the wire; the worker runs nothing before this passes. */
export function validateTask (value: unknown, from = 'peer'): CompileTask {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw bad('not a map', from)
  const t = value as Record<string, unknown>
  if (t.v !== TASK_VERSION) throw incompatible(`version ${String(t.v).slice(0, 16)}, this worker's is ${TASK_VERSION}`, from)
  const shape = shapeProblem(t, TASK_FIELDS, 'the task')
  if (shape !== undefined) throw incompatible(shape, from)
  // shown in refusals and logs (a terminal escape sequence must not reach the worker's terminal)
  if (typeof t.compiler !== 'string' || t.compiler.length > 256 || CONTROL_CHAR.test(t.compiler)) throw bad('compiler', from)
  if (typeof t.goroot !== 'string' || !isCleanAbsolute(t.goroot)) throw bad('goroot must be an absolute path', from)
  if (typeof t.importPath !== 'string' || t.importPath.length > 1024 || CONTROL_CHAR.test(t.importPath)) throw bad('importPath', from)
  if (typeof t.trimpath !== 'string' || t.trimpath.length > 64 * 1024) throw bad('trimpath', from)
  if (typeof t.asmhdr !== 'boolean') throw bad('asmhdr', from)
  const env = t.env as Record<string, unknown>
  if (env === null || typeof env !== 'object' || Array.isArray(env)) throw bad('env', from)
  for (const [k, v] of Object.entries(env)) {
    const problem = typeof v === 'string' ? taskEnvProblem(k, v) : `environment value of ${k}`
    if (problem !== undefined) throw bad(problem, from)
  }
  if (!Array.isArray(t.flags) || t.flags.length > 256) throw bad('flags', from)
  for (const f of t.flags) {
    if (typeof f !== 'string' || f.includes('\0')) throw bad('flags', from)
    const [name, value] = f.includes('=') ? [f.slice(0, f.indexOf('=')), f.slice(f.indexOf('=') + 1)] : [f, undefined]
    const ok = value === undefined
      ? (TASK_BOOL_FLAGS as readonly string[]).includes(name)
      : ((TASK_VALUE_FLAGS as readonly string[]).includes(name) && !value.includes('/../')) || (TASK_DEBUG_FLAGS as readonly string[]).includes(f)
    if (!ok) throw bad(`flag ${JSON.stringify(f.slice(0, 64))} is not allowed`, from)
  }
  const files = t.files
  if (!Array.isArray(files) || files.length > MAX_TASK_FILES) throw bad('files', from)
  let total = 0
  const paths = new Set<string>()
  const dirs = new Set<string>()
  const sizes = new Map<string, number>()
  for (const f of files as Array<Record<string, unknown>>) {
    if (f === null || typeof f !== 'object') throw bad('file entry', from)
    const fileShape = shapeProblem(f, TASK_FILE_FIELDS, 'a file entry')
    if (fileShape !== undefined) throw incompatible(fileShape, from)
    if (typeof f.path !== 'string' || !isCleanAbsolute(f.path)) throw bad(`input path ${JSON.stringify(String(f.path).slice(0, 128))} is not a clean absolute path`, from)
    if (typeof f.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(f.sha256)) throw bad(`hash of ${f.path}`, from)
    if (!Number.isSafeInteger(f.size) || (f.size as number) < 0 || (f.size as number) > MAX_TASK_FILE_BYTES) throw bad(`size of ${f.path} (max ${MAX_TASK_FILE_BYTES} bytes)`, from)
    if ((sizes.get(f.sha256) ?? f.size) !== f.size) throw bad(`input ${f.sha256.slice(0, 16)}… is declared with two sizes`, from)
    sizes.set(f.sha256, f.size as number)
    total += f.size as number
    paths.add(f.path)
    for (let d = f.path.slice(0, f.path.lastIndexOf('/')); d !== '' && !dirs.has(d); d = d.slice(0, d.lastIndexOf('/'))) dirs.add(d)
    if (dirs.size > MAX_TASK_DIRS) throw bad(`input paths lie in over ${MAX_TASK_DIRS} directories`, from)
  }
  if (total > MAX_TASK_INPUT_BYTES) throw bad(`inputs total ${total} bytes, over ${MAX_TASK_INPUT_BYTES}`, from)
  // A file where another input needs a directory: the worker could not lay both out (no real
  // compile has one), and failed with the file system's error, naming its own sandbox.
  for (const p of paths) if (dirs.has(p)) throw bad(`input path ${JSON.stringify(p.slice(0, 128))} is also the directory of another input`, from)
  const clash = foldClash([...paths, ...dirs])
  if (clash !== undefined) throw bad(`input paths ${JSON.stringify(clash[0].slice(0, 128))} and ${JSON.stringify(clash[1].slice(0, 128))} differ only in case or Unicode form`, from)
  const inputFlags = t.inputFlags as Record<string, unknown>
  if (inputFlags === null || typeof inputFlags !== 'object' || Array.isArray(inputFlags)) throw bad('inputFlags', from)
  for (const [k, v] of Object.entries(inputFlags)) {
    if (!(TASK_INPUT_FLAGS as readonly string[]).includes(k)) throw bad(`input flag ${k} is not allowed`, from)
    if (typeof v !== 'string' || !paths.has(v)) throw bad(`input flag ${k} names a file the task does not carry`, from)
  }
  if (!Array.isArray(t.sources) || t.sources.length === 0 || !t.sources.every(s => typeof s === 'string' && paths.has(s) && s.endsWith('.go'))) {
    throw bad('sources must be .go files the task carries', from)
  }
  // cmd/go names each file once; repeats would only multiply the key's work
  if (new Set(t.sources).size !== t.sources.length) throw bad('a source is named twice', from)
  for (const required of TASK_REQUIRED_FLAGS) {
    if (!(t.flags as string[]).includes(required) && (inputFlags[required] === undefined)) throw bad(`a task must carry ${required}`, from)
  }
  return t as unknown as CompileTask
}

/**
 * Two of `paths` that a case-insensitive or normalising file system (macOS, Windows) takes for
 * one, or undefined. A worker there would lay both out at one place, so that a file the task
 * key does not cover could replace one it does. cmd/go refuses such names in a package too.
 */
function foldClash (paths: string[]): [string, string] | undefined {
  const seen = new Map<string, string>()
  for (const p of paths) {
    const folded = p.normalize('NFC').toLowerCase()
    const other = seen.get(folded)
    if (other !== undefined && other !== p) return [other, p]
    seen.set(folded, p)
  }
  return undefined
}

// ---------------------------------------------------------------------------------------------
// The task key (shared/DESIGN.md §5): sha256 over canonical, labelled lines, one per influence
// on the compile's output. Two tasks with the same key compile to byte-identical outputs, so a
// worker runs one compile for both. It must not see requester paths that the compiler does not
// record (cmd/go's `$WORK/bNNN` differs per build, checkouts differ per machine), and it must
// see everything else:
//   key          the version of this definition
//   compiler     `go tool compile -V=full`
//   env          each output-affecting variable, by name
//   flag         each flag, in order (`-buildid` is cmd/go's action ID), but `-c=N`: the
//                compiler's backend threads, which cmd/go picks from the requester's cores
//                and the worker lowers to its share of its slots, change no output
//   asmhdr       whether go_asm.h is written
//   source       each .go file, in order: the path the compiler records (the task's -trimpath
//                rules, then $GOROOT) and its sha256
//   input        each input-file flag; symabis, the PGO profile and the coverage config by sha256
//   importmap    the importcfg, as the compiler reads it: each importmap old=new,
//   packagefile  and each import path with the sha256 of its export data as carried
//   embed        the embedcfg: each pattern with its names, each name with its file's sha256
//   line         each file name a `//line` or `/*line` directive may name, as recorded
// Every value is JSON-quoted, so no value can forge a line break. The task's own paths (of the
// importcfg, export data, embedded files) are not recorded by the compiler and are not keyed.
// Any new influence on the output must be reported in the key as well.
// ---------------------------------------------------------------------------------------------

export const TASK_KEY_VERSION = 'grid-task-key/2'

/** Reads the content of one input the key looks into (the importcfg, the embedcfg, sources). */
export type TaskContentOf = (file: TaskFile) => Uint8Array | string | undefined

const q = (s: string): string => JSON.stringify(s)

/** The key lines an offer determines alone (no file content): a prefix of the task key's lines. */
function offerKeyLines (task: CompileTask, files: Map<string, TaskFile>, recorder: Recorder): string[] {
  const lines = [`key ${q(TASK_KEY_VERSION)}`, `compiler ${q(task.compiler)}`]
  for (const name of Object.keys(task.env).sort()) lines.push(`env ${q(name)} ${q(task.env[name] as string)}`)
  for (const flag of task.flags) if (!flag.startsWith('-c=')) lines.push(`flag ${q(flag)}`)
  lines.push(`asmhdr ${task.asmhdr ? 'yes' : 'no'}`)
  for (const src of task.sources) {
    lines.push(`source ${q(recorder.record(src).path)} ${carried(files, src, 'source').sha256}`)
  }
  for (const flag of Object.keys(task.inputFlags).sort()) {
    const file = carried(files, task.inputFlags[flag] as string, flag)
    // the importcfg and embedcfg name requester paths: their meaning is keyed below instead
    lines.push(flag === '-importcfg' || flag === '-embedcfg' ? `input ${q(flag)}` : `input ${q(flag)} ${file.sha256}`)
  }
  return lines
}

/**
 * The canonical lines of a task's key, for hashing and for printing when a share is missed.
 * `contentOf` supplies the importcfg, the embedcfg and every source (for `//line` directives).
 * Throws GRID_ERR_TASK_REFUSED for a config the compiler would reject or one that names a file
 * the task does not carry.
 */
export function taskKeyLines (task: CompileTask, contentOf: TaskContentOf, from = 'peer'): string[] {
  const files = filesByPath(task)
  const recorder = new Recorder(task, from)
  const lines = offerKeyLines(task, files, recorder)
  const text = (path: string): string => {
    const file = carried(files, path, 'input')
    const content = contentOf(file)
    if (content === undefined) throw new TypeError(`taskKeyLines needs the content of ${path}`)
    return typeof content === 'string' ? content : Buffer.from(content.buffer, content.byteOffset, content.byteLength).toString('utf8')
  }
  const importcfg = task.inputFlags['-importcfg']
  if (importcfg !== undefined) {
    const cfg = parseImportcfg(text(importcfg), from)
    for (const [old, now] of [...cfg.importmap].sort(byKey)) lines.push(`importmap ${q(old)} ${q(now)}`)
    for (const [pkg, path] of [...cfg.packagefile].sort(byKey)) lines.push(`packagefile ${q(pkg)} ${carriedBy(files, path, 'importcfg', from).sha256}`)
  }
  const embedcfg = task.inputFlags['-embedcfg']
  if (embedcfg !== undefined) {
    const cfg = parseEmbedcfg(text(embedcfg), from)
    for (const [pattern, names] of [...cfg.patterns].sort(byKey)) lines.push(`embed pattern ${q(pattern)} ${JSON.stringify(names)}`)
    for (const [name, path] of [...cfg.files].sort(byKey)) lines.push(`embed file ${q(name)} ${carriedBy(files, path, 'embedcfg', from).sha256}`)
  }
  // The compiler applies -trimpath to the file names of line directives too (cgo writes them):
  // equal source bytes under other rules may record other names.
  const budget = { names: MAX_TASK_LINE_NAMES, bytes: MAX_TASK_LINE_NAME_BYTES }
  task.sources.forEach((src, i) => {
    const names = lineDirectiveNames(text(src), budget)
    if (names === undefined) throw bad(`its sources' line directives name over ${MAX_TASK_LINE_NAMES} files or ${MAX_TASK_LINE_NAME_BYTES} bytes`, from)
    for (const name of names) {
      const r = recorder.record(name)
      lines.push(`line ${i} ${q(r.path)} ${r.rewritten ? 'rewritten' : 'as-is'}`)
    }
  })
  return lines
}

/** The task key: sha256 (hex) of taskKeyLines. */
export function taskKey (task: CompileTask, contentOf: TaskContentOf, from = 'peer'): string {
  return hashLines(taskKeyLines(task, contentOf, from))
}

/**
 * A hash of the part of the key an offer determines alone. Equal task keys imply equal offer
 * keys, so a worker can tell from an offer whether a task could join a compile it is running.
 */
export function taskOfferKey (task: CompileTask, from = 'peer'): string {
  return hashLines(offerKeyLines(task, filesByPath(task), new Recorder(task, from)))
}

function hashLines (lines: string[]): string {
  const h = createHash('sha256')
  for (const line of lines) h.update(line).update('\n')
  return h.digest('hex')
}

const byKey = (a: [string, unknown], b: [string, unknown]): number => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)

/** The task's files by path; a path carried twice is the later entry, as the worker writes them in order. */
function filesByPath (task: CompileTask): Map<string, TaskFile> {
  return new Map(task.files.map(f => [f.path, f]))
}

function carried (files: Map<string, TaskFile>, path: string, what: string): TaskFile {
  const file = files.get(path)
  if (file === undefined) throw new TypeError(`${what} ${path} is not carried by the task (validateTask first)`)
  return file
}

function carriedBy (files: Map<string, TaskFile>, path: string, cfg: string, from: string): TaskFile {
  const file = files.get(path)
  if (file === undefined) throw bad(`${cfg} names ${path}, which the task does not carry`, from)
  return file
}

/**
 * The path the compiler records for `path` under `-trimpath=<trimpath>` with GOROOT `goroot`
 * (cmd/internal/objabi.AbsFile): rules `prefix=>replacement` separated by `;`, first match wins,
 * a prefix matches on whole path elements (ASCII case and `\` vs `/` ignored); an empty
 * replacement drops the prefix and its separator; an unmatched path under GOROOT becomes
 * `$GOROOT/…`; an empty result is `??`.
 */
export function recordedPath (path: string, trimpath: string, goroot: string): { path: string, rewritten: boolean } {
  return recordWith(trimRules(trimpath), path, goroot)
}

/** `-trimpath` rules as [prefix, replacement], those with an empty prefix (which match nothing) left out. */
function trimRules (trimpath: string): Array<[string, string]> {
  const rules: Array<[string, string]> = []
  for (const rule of trimpath.split(';')) {
    const j = rule.lastIndexOf('=>')
    const [prefix, replace] = j >= 0 ? [rule.slice(0, j), rule.slice(j + 2)] : [rule, '']
    if (prefix !== '') rules.push([prefix, replace])
  }
  return rules
}

function recordWith (rules: Array<[string, string]>, path: string, goroot: string): { path: string, rewritten: boolean } {
  for (const [prefix, replace] of rules) {
    if (!hasPathPrefix(path, prefix)) continue
    const out = path.length === prefix.length ? replace : replace === '' ? path.slice(prefix.length + 1) : replace + path.slice(prefix.length)
    return { path: out === '' ? '??' : out, rewritten: true }
  }
  if (goroot !== '' && hasPathPrefix(path, goroot)) return { path: '$GOROOT' + path.slice(goroot.length), rewritten: true }
  return { path: path === '' ? '??' : path, rewritten: false }
}

/**
 * recordedPath for the paths of one task: its rules parsed once, and the work of matching
 * counted against MAX_TASK_PATH_WORK (a task's trimpath may hold 64 KiB of rules).
 */
class Recorder {
  private readonly rules: Array<[string, string]>
  private work = 0

  constructor (private readonly task: CompileTask, private readonly from: string) {
    this.rules = trimRules(task.trimpath)
  }

  record (path: string): { path: string, rewritten: boolean } {
    this.work += Math.min(path.length * this.rules.length, this.task.trimpath.length) + 1
    if (this.work > MAX_TASK_PATH_WORK) throw bad(`matching its paths against its ${this.rules.length} trimpath rules is over ${MAX_TASK_PATH_WORK} steps`, this.from)
    return recordWith(this.rules, path, this.task.goroot)
  }
}

function hasPathPrefix (s: string, t: string): boolean {
  if (t.length > s.length) return false
  const fold = (c: number): number => (c >= 65 && c <= 90 ? c + 32 : c === 92 ? 47 : c)
  for (let i = 0; i < t.length; i++) if (fold(s.charCodeAt(i)) !== fold(t.charCodeAt(i))) return false
  return t.length === s.length || s[t.length] === '/' || s[t.length] === '\\'
}

/**
 * Every file name a line directive in `source` may name, in order. Over-approximates: any
 * `//line ` or `/*line ` counts, even in a string; the name is what precedes the last or the
 * second-to-last colon of the directive's text (cmd/compile/internal/syntax updateBase).
 * `budget` (names and bytes left, shared by a task's sources) is spent as names are found;
 * undefined once it runs out. Directives may overlap (`//line ` within another's text), so the
 * bytes of names can grow as the square of the source's.
 */
export function lineDirectiveNames (source: string, budget = { names: Infinity, bytes: Infinity }): string[] | undefined {
  const names: string[] = []
  const re = /\/\/line |\/\*line /g
  for (let m = re.exec(source); m !== null; m = re.exec(source)) {
    const start = m.index + 7
    const end = m[0] === '//line ' ? source.indexOf('\n', start) : source.indexOf('*/', start)
    // an unterminated /* comment does not compile at all
    if (end < 0 && m[0] !== '//line ') continue
    const stop = end < 0 ? source.length : end
    const last = source.lastIndexOf(':', stop - 1)
    if (last < start) continue
    const second = source.lastIndexOf(':', Math.max(last - 1, start))
    for (const colon of second >= start ? [last, second] : [last]) {
      budget.names -= 1
      budget.bytes -= colon - start
      if (budget.names < 0 || budget.bytes < 0) return undefined
      names.push(source.slice(start, colon))
    }
  }
  return names
}

/** An importcfg as the compiler reads it (cmd/compile/internal/base readImportCfg). */
export interface Importcfg {
  /** import path → requester path of its export data; the last line for a path wins */
  packagefile: Map<string, string>
  importmap: Map<string, string>
}

/**
 * Go's strings.TrimSpace: unicode.IsSpace, not JavaScript's whitespace. A loop, not a regular
 * expression: `\s+$` backtracks over every run of spaces inside a line (minutes for a 1 MB one).
 */
const GO_SPACE = /^[\t\n\v\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]$/
function goTrimSpace (s: string): string {
  let i = 0
  let j = s.length
  while (i < j && GO_SPACE.test(s[i] as string)) i++
  while (j > i && GO_SPACE.test(s[j - 1] as string)) j--
  return s.slice(i, j)
}

/**
 * Parses an importcfg exactly as the compiler does: a worker writes its own importcfg from the
 * result, so no line can mean one thing here and another to the compiler.
 */
export function parseImportcfg (text: string, from = 'peer'): Importcfg {
  const cfg: Importcfg = { packagefile: new Map(), importmap: new Map() }
  for (const raw of text.split('\n')) {
    const line = goTrimSpace(raw)
    if (line === '' || line.startsWith('#')) continue
    const sp = line.indexOf(' ')
    const verb = sp < 0 ? line : line.slice(0, sp)
    const args = sp < 0 ? '' : goTrimSpace(line.slice(sp + 1))
    const eq = args.indexOf('=')
    const [before, after] = eq < 0 ? [args, ''] : [args.slice(0, eq), args.slice(eq + 1)]
    if (verb !== 'packagefile' && verb !== 'importmap') throw bad(`importcfg has an unknown directive ${q(verb.slice(0, 64))}`, from)
    if (eq < 0 || before === '' || after === '') throw bad(`importcfg has an invalid ${verb} line`, from)
    cfg[verb].set(before, after)
  }
  return cfg
}

/** The importcfg text for `cfg`, with each export data file at `path(requester path)`. */
export function formatImportcfg (cfg: Importcfg, path: (p: string) => string = p => p): string {
  return [
    '# import config',
    ...[...cfg.importmap].map(([a, b]) => `importmap ${a}=${b}`),
    ...[...cfg.packagefile].map(([pkg, file]) => `packagefile ${pkg}=${path(file)}`)
  ].join('\n') + '\n'
}

/** An embedcfg (cmd/compile/internal/base readEmbedCfg). */
export interface Embedcfg {
  /** pattern → the names it matched, in order */
  patterns: Map<string, string[]>
  /** name → requester path of the file */
  files: Map<string, string>
}

/**
 * Parses an embedcfg. Only the exact keys `Patterns` and `Files` are accepted: Go's JSON decoder
 * matches keys without regard to case, so `files` would reach the compiler unseen by a worker.
 */
export function parseEmbedcfg (text: string, from = 'peer'): Embedcfg {
  let value: unknown
  try { value = JSON.parse(text) } catch { throw bad('embedcfg is not JSON', from) }
  const isMap = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v)
  if (!isMap(value)) throw bad('embedcfg is not a JSON object', from)
  const keys = Object.keys(value)
  if (keys.length !== 2 || !keys.includes('Patterns') || !keys.includes('Files')) throw bad('embedcfg must have exactly the keys Patterns and Files', from)
  const { Patterns: patterns, Files: files } = value
  if (!isMap(patterns) || !isMap(files)) throw bad('embedcfg Patterns and Files must be objects', from)
  const cfg: Embedcfg = { patterns: new Map(), files: new Map() }
  for (const [pattern, names] of Object.entries(patterns)) {
    if (!Array.isArray(names) || !names.every(n => typeof n === 'string')) throw bad(`embedcfg pattern ${q(pattern.slice(0, 64))} must list names`, from)
    cfg.patterns.set(pattern, names as string[])
  }
  for (const [name, path] of Object.entries(files)) {
    if (typeof path !== 'string') throw bad(`embedcfg file ${q(name.slice(0, 64))} must be a path`, from)
    cfg.files.set(name, path)
  }
  return cfg
}

/** The embedcfg text for `cfg`, with each embedded file at `path(requester path)`. */
export function formatEmbedcfg (cfg: Embedcfg, path: (p: string) => string = p => p): string {
  return JSON.stringify({
    Patterns: Object.fromEntries(cfg.patterns),
    Files: Object.fromEntries([...cfg.files].map(([name, file]) => [name, path(file)]))
  })
}
