/**
 * Reads a compile invocation from cmd/go into the pieces of a task. Only flags on the task
 * allow-lists (packages/protocol/src/task.ts) are understood; anything else keeps the compile
 * local, with the flag named as the reason.
 */
import { isAbsolute, resolve } from 'node:path'
import { TASK_BOOL_FLAGS, TASK_DEBUG_FLAGS, TASK_INPUT_FLAGS, TASK_VALUE_FLAGS } from '@grid/protocol'

export interface ParsedCompile {
  flags: string[]
  trimpath: string
  inputFlags: Record<string, string>
  sources: string[]
  out: string
  asmhdr: string | undefined
  importPath: string
}

const BOOL = new Set<string>(TASK_BOOL_FLAGS)
const INPUT = new Set<string>(TASK_INPUT_FLAGS)
const DEBUG = new Set<string>(TASK_DEBUG_FLAGS)

/**
 * The flags cmd/compile reads a value for (`-flag v` or `-flag=v`): those of its flag set
 * (cmd/compile/internal/base/flag.go) that are neither booleans nor counts. Every other flag
 * stands alone unless written `-flag=v`. Task flags that are booleans to the compiler (`-dwarf`,
 * which cmd/go writes `-dwarf=false`) are not here.
 */
export const COMPILE_VALUE_FLAGS: ReadonlySet<string> = new Set<string>([
  '-D', '-I', '-c', '-d', '-o', '-p', '-asmhdr', '-bench', '-blockprofile', '-buildid', '-coveragecfg',
  '-cpuprofile', '-embedcfg', '-env', '-gendwarfinl', '-goversion', '-importcfg', '-installsuffix',
  '-json', '-lang', '-linkobj', '-memprofile', '-memprofilerate', '-mutexprofile', '-pgoprofile',
  '-spectre', '-symabis', '-traceprofile', '-trimpath'
])

/** One argument of a compile command line (a flag with its separate value as one), as `compileArgs` reads them. */
export type CompileArg =
  | { kind: 'file', arg: string }
  | {
    kind: 'flag'
    /** `-name` (`--name` read as `-name`) */
    name: string
    /** the flag as written, `--` read as `-`, with its `=value` when inline */
    norm: string
    /** its value: inline after `=`, else the next argument for a flag of COMPILE_VALUE_FLAGS; undefined when it has none */
    value: string | undefined
    /** the arguments it took, as given (one, or two with a separate value) */
    raw: string[]
  }

/**
 * A compile's arguments, read as cmd/compile's flag package reads them: `--x` is `-x`, `-x=v`
 * has its value inline, a flag that takes a value takes the next argument whatever it looks
 * like, and flags end at the first argument that is not one (or after `--`): every argument
 * from there on is a file. The one reader of compile command lines (the task, the build's
 * sources, the history's `-o` check, a racing local run's outputs).
 */
export function * compileArgs (args: readonly string[]): Generator<CompileArg> {
  let i = 0
  for (; i < args.length; i++) {
    const arg = args[i] as string
    if (arg === '--') { i++; break }
    if (!arg.startsWith('-') || arg === '-') break
    const norm = arg.startsWith('--') ? arg.slice(1) : arg
    const eq = norm.indexOf('=')
    const name = eq < 0 ? norm : norm.slice(0, eq)
    if (eq >= 0) {
      yield { kind: 'flag', name, norm, value: norm.slice(eq + 1), raw: [arg] }
    } else if (COMPILE_VALUE_FLAGS.has(name) && i + 1 < args.length) {
      const value = args[++i] as string
      yield { kind: 'flag', name, norm, value, raw: [arg, value] }
    } else {
      yield { kind: 'flag', name, norm, value: undefined, raw: [arg] }
    }
  }
  for (; i < args.length; i++) yield { kind: 'file', arg: args[i] as string }
}

/** The task's flags that take a value: plain ones, input files, and those only the requester reads. */
const VALUE_FLAGS: ReadonlySet<string> = new Set<string>([...TASK_VALUE_FLAGS, ...TASK_INPUT_FLAGS, '-o', '-trimpath', '-asmhdr'])

export function parseCompileArgs (args: string[], cwd: string): ParsedCompile | { unsupported: string } {
  const flags: string[] = []
  const inputFlags: Record<string, string> = {}
  const sources: string[] = []
  let trimpath = ''
  let out: string | undefined
  let asmhdr: string | undefined
  let importPath = ''
  const abs = (p: string): string => (isAbsolute(p) ? resolve(p) : resolve(cwd, p))
  for (const a of compileArgs(args)) {
    if (a.kind === 'file') {
      if (!a.arg.endsWith('.go')) return { unsupported: `argument ${a.arg}` }
      sources.push(abs(a.arg))
      continue
    }
    const { name, norm, value } = a
    if (BOOL.has(name) && norm === name) { flags.push(name); continue }
    if (DEBUG.has(norm)) { flags.push(norm); continue }
    if (!VALUE_FLAGS.has(name)) return { unsupported: `flag ${name}` }
    if (value === undefined) return { unsupported: `flag ${name} without a value` }
    if (name === '-o') out = abs(value)
    else if (name === '-asmhdr') asmhdr = abs(value)
    else if (name === '-trimpath') trimpath = value
    else if (INPUT.has(name)) inputFlags[name] = abs(value)
    else {
      if (name === '-p') importPath = value
      flags.push(`${name}=${value}`)
    }
  }
  if (out === undefined) return { unsupported: 'no -o' }
  if (sources.length === 0) return { unsupported: 'no Go files' }
  return { flags, trimpath, inputFlags, sources, out, asmhdr, importPath }
}

/**
 * The file a compile writes (`-o`), absolute (relative to its directory `cwd`); undefined when
 * it names none. The last `-o` wins, as in Go's flag package.
 */
export function outputOf (args: string[], cwd: string): string | undefined {
  let out: string | undefined
  for (const a of compileArgs(args)) {
    if (a.kind === 'flag' && a.name === '-o' && a.value !== undefined) out = resolve(cwd, a.value)
  }
  return out
}

/**
 * The compile's arguments with `-o` and `-asmhdr` pointing elsewhere (a local run racing a
 * remote one writes beside cmd/go's outputs). The output does not depend on where it is
 * written (the worker's sandboxed `-o` shows it byte for byte).
 */
export function redirectOutputs (args: string[], to: { out: string, asmhdr: string | undefined }): string[] {
  const result: string[] = []
  for (const a of compileArgs(args)) {
    if (a.kind === 'file') { result.push(a.arg); continue }
    const target = a.name === '-o' ? to.out : a.name === '-asmhdr' ? to.asmhdr : undefined
    if (target === undefined || a.value === undefined) result.push(...a.raw)
    else if (a.raw.length === 1) result.push(`${a.name}=${target}`)
    else result.push(a.name, target)
  }
  return result
}

/**
 * The relocation recipe (after DESIGN §3, reordered for -trimpath builds). `-trimpath` rules
 * are tried in order, the first match wins, on whole path elements; a path no rule matches that
 * lies under the compiler's GOROOT becomes `$GOROOT/…`. The worker has every input at
 * S+<requester path>, and some paths (cgo's `//line` directives) still name requester paths.
 * The rules, in order, make every path come out as the requester's compile would write it:
 *   S+Xi=>Ri          sandboxed paths cmd/go has a rule for
 *   Xi=>Ri            requester paths cmd/go has a rule for (//line)
 *   S+G=>$GOROOT      sandboxed paths under the requester's GOROOT G (the default rewrite)
 *   G=>$GOROOT        requester paths under G
 *   S+/T=>/T          every other sandboxed path, under each top directory T of the inputs:
 *                     back to the requester's path
 * (One rule per input directory D, S+D=>D, did the last in one argument that grew with the
 * inputs' directories: a package embedding a tree of some hundred directories passed Linux's
 * 128 KiB cap on one argument, and every worker failed to start its compiler, E2BIG.)
 * The order matters: with G=>$GOROOT before Xi=>Ri, cgo's //line paths in std (runtime/cgo)
 * came out as $GOROOT/src/runtime/cgo/… instead of runtime/cgo/… (test/unit/remote.test.ts).
 * A rule with an empty prefix never matches; sandboxed it would match every input, so it is
 * left out (the task key, which models the requester's compile, relies on that).
 */
export function relocatedTrimpath (sandbox: string, original: string, inputDirs: string[], requesterGoroot: string): string {
  const rules = original === '' ? [] : original.split(';')
  const prefixed = rules.filter(r => (r.includes('=>') ? r.slice(0, r.lastIndexOf('=>')) : r) !== '')
  const tops = [...new Set(inputDirs.map(topDir))].map(d => `${sandbox}${d}=>${d}`)
  return [
    ...prefixed.map(r => sandbox + r),
    ...rules,
    `${sandbox}${requesterGoroot}=>$GOROOT`,
    `${requesterGoroot}=>$GOROOT`,
    ...tops
  ].join(';')
}

/** `/a` of `/a/b/c`; `/` stays `/`. */
function topDir (dir: string): string {
  const end = dir.indexOf('/', 1)
  return end < 0 ? dir : dir.slice(0, end)
}
