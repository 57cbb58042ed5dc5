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
 * The compile flags this node understands that take a value (`-flag v` or `-flag=v`): the
 * task's, and those only the requester sees (builds/sources.ts reads command lines by it too).
 */
export const VALUE_FLAGS: ReadonlySet<string> = new Set<string>([...TASK_VALUE_FLAGS, ...TASK_INPUT_FLAGS, '-o', '-trimpath', '-asmhdr'])

export function parseCompileArgs (args: string[], cwd: string): ParsedCompile | { unsupported: string } {
  const flags: string[] = []
  const inputFlags: Record<string, string> = {}
  const sources: string[] = []
  let trimpath = ''
  let out: string | undefined
  let asmhdr: string | undefined
  let importPath = ''
  const abs = (p: string): string => (isAbsolute(p) ? resolve(p) : resolve(cwd, p))
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string
    if (!arg.startsWith('-')) {
      if (!arg.endsWith('.go')) return { unsupported: `argument ${arg}` }
      sources.push(abs(arg))
      continue
    }
    const { norm, name, eq } = flag(arg)
    if (BOOL.has(name) && eq < 0) { flags.push(name); continue }
    if (DEBUG.has(norm)) { flags.push(norm); continue }
    if (!VALUE_FLAGS.has(name)) return { unsupported: `flag ${name}` }
    const value = eq < 0 ? args[++i] : norm.slice(eq + 1)
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
 * The file a compile writes (`-o`), absolute (relative to its directory `cwd`), read as
 * `parseCompileArgs` reads flags; undefined when it names none.
 */
export function outputOf (args: string[], cwd: string): string | undefined {
  let out: string | undefined
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string
    if (!arg.startsWith('-')) continue
    const { norm, name, eq } = flag(arg)
    const value = eq >= 0 ? norm.slice(eq + 1) : VALUE_FLAGS.has(name) ? args[++i] : undefined
    if (name === '-o' && value !== undefined) out = resolve(cwd, value) // the last one wins, as in Go's flag package
  }
  return out
}

/**
 * The compile's arguments with `-o` and `-asmhdr` pointing elsewhere (a local run racing a
 * remote one writes beside cmd/go's outputs). The output does not depend on where it is
 * written (the worker's sandboxed `-o` shows it byte for byte). Read as `parseCompileArgs`
 * reads them: a flag's separate value is never taken for a flag.
 */
export function redirectOutputs (args: string[], to: { out: string, asmhdr: string | undefined }): string[] {
  const result: string[] = []
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string
    if (!arg.startsWith('-')) { result.push(arg); continue }
    const { name, eq } = flag(arg)
    const target = name === '-o' ? to.out : name === '-asmhdr' ? to.asmhdr : undefined
    const separate = eq < 0 && VALUE_FLAGS.has(name) && i + 1 < args.length
    if (target === undefined) {
      result.push(arg)
      if (separate) result.push(args[++i] as string)
    } else if (eq >= 0) {
      result.push(`${name}=${target}`)
    } else {
      result.push(name, target)
      i++
    }
  }
  return result
}

/** A flag argument read as cmd/compile reads it: `--x` is `-x`, and `-x=v` has its value inline. */
function flag (arg: string): { norm: string, name: string, eq: number } {
  const norm = arg.startsWith('--') ? arg.slice(1) : arg
  const eq = norm.indexOf('=')
  return { norm, name: eq < 0 ? norm : norm.slice(0, eq), eq }
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
