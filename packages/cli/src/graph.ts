/**
 * The build's package graph, for the node's plan (packages/node/src/scheduler/plan.ts): every
 * package `go list -deps` lists with the same arguments as the build, its imports as cmd/go
 * compiles it, and the bytes of its Go sources. It is listed beside the build, so it is made
 * cheap: below the build's priority, without cmd/go's package index.
 */
import { spawn } from 'node:child_process'
import { stat } from 'node:fs/promises'
import { setPriority } from 'node:os'
import { join } from 'node:path'
import type { GraphPackage } from '@grid/protocol'

/** `go list` runs at this nice level: ~0.4 CPU-s for std, which the compiles need more. */
const GRAPH_NICE = 10

/**
 * `go list` reads the packages without cmd/go's package index: with an empty GOCACHE, building
 * that index for std took 1.8–2.6 s and ~1.1 CPU-s on a 0.5-core lab host, without it 0.7 s and
 * 0.3 CPU-s (with a warm index 0.3 s and 0.14 CPU-s). It runs beside the build's own loading, on
 * the same CPU: in the lab's cold builds with 3 helpers go's first action came ~1 s sooner.
 */
const GRAPH_GODEBUG = 'goindex=0'

/** GODEBUG with one more setting (a later one wins over an earlier, as cmd/go reads them). */
function withGodebug (godebug: string | undefined, setting: string): string {
  return godebug === undefined || godebug === '' ? setting : `${godebug},${setting}`
}

/** Build flags that name a file go writes, with their value: `go list` must not write it too. */
const WRITES_FILE = new Set(['-o', '-debug-trace', '-debug-actiongraph', '-debug-runtime-trace'])

/**
 * The build's arguments as `go list` takes them: without the flags that write files (running
 * beside the build, go list would write the same trace or binary) and without `-json`, which
 * for `go list` conflicts with `-f`.
 */
export function listFlags (args: string[]): string[] {
  const kept: string[] = []
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string
    const name = (a.startsWith('--') ? a.slice(1) : a).split('=')[0] as string
    if (name === '-json' || (WRITES_FILE.has(name) && a.includes('='))) continue
    if (WRITES_FILE.has(name)) { i++; continue }
    kept.push(a)
  }
  return kept
}

/** One line per package: import path, dir, Go and cgo files, imports, and `cgo` if it uses cgo or SWIG. */
const LIST_FORMAT = '{{.ImportPath}}\t{{.Dir}}\t{{join .GoFiles " "}} {{join .CgoFiles " "}}\t{{join .Imports " "}}\t' +
  '{{if or .CgoFiles .SwigFiles .SwigCXXFiles}}cgo{{end}}'

/** Standard packages cmd/go does not make import runtime/cgo, and syscall, for cgo (load/pkg.go). */
const CGO_EXCLUDE = new Set(['runtime/cgo'])
const CGO_SYSCALL_EXCLUDE = new Set(['runtime/cgo', 'runtime/race', 'runtime/msan', 'runtime/asan'])

/**
 * The imports cmd/go adds to a package that uses cgo (load/pkg.go): runtime/cgo and syscall,
 * which `go list`'s Imports leaves out (only `-compiled`, which runs cgo, shows them). Without
 * them the plan saw nothing wait on runtime/cgo, which then queued behind compiles ranked
 * higher while `net` (and every cgo package after it) waited on it.
 */
export function cgoImports (importPath: string): string[] {
  return [
    ...(CGO_EXCLUDE.has(importPath) ? [] : ['runtime/cgo']),
    ...(CGO_SYSCALL_EXCLUDE.has(importPath) ? [] : ['syscall'])
  ]
}

/** A line of LIST_FORMAT: the package, the source files to weigh, and its imports as compiled. */
export function parseListLine (line: string): { p: string, files: string[], imports: string[] } {
  const [p = '', dir = '', files = '', imports = '', cgo = ''] = line.split('\t')
  const listed = imports === '' ? [] : imports.split(' ')
  const implicit = cgo === 'cgo' ? cgoImports(p).filter(i => !listed.includes(i)) : []
  return { p, files: files.split(' ').filter(f => f !== '').map(f => join(dir, f)), imports: [...listed, ...implicit] }
}

/**
 * How many arguments of go's `-C dir` (or -C=dir, --C dir, --C=dir) lead, which must stay first.
 * A `-C` with no value is left where it is, for go to say what it says of it ("flag needs an
 * argument"): taken as leading, the flag grid adds after it became its directory.
 */
export function chdirArgs (args: string[]): number {
  const first = args[0] ?? ''
  if (first === '-C' || first === '--C') return args.length >= 2 ? 2 : 0
  return first.startsWith('-C=') || first.startsWith('--C=') ? 1 : 0
}

/**
 * The build's package graph from `go list -deps` (0.1–0.5 s, run beside the build): the node
 * orders compiles by it and the progress line counts against it. Only for build and install,
 * whose flags `go list` also takes. undefined if go list fails: the build goes on without it.
 */
export async function listPackages (go: string, args: string[], env: NodeJS.ProcessEnv, signal: AbortSignal): Promise<GraphPackage[] | undefined> {
  const chdir = chdirArgs(args) // -C must stay go list's first flag too
  const text = await new Promise<string | undefined>(resolve => {
    const child = spawn(go, ['list', ...args.slice(0, chdir), '-e', '-deps', '-f', LIST_FORMAT, ...listFlags(args.slice(chdir))], { env: { ...env, GODEBUG: withGodebug(env.GODEBUG, GRAPH_GODEBUG) }, stdio: ['ignore', 'pipe', 'ignore'], signal })
    // Below the build's own work: on a busy machine the plan arrives later, the build is not slowed.
    if (child.pid !== undefined) { try { setPriority(child.pid, GRAPH_NICE) } catch {} }
    const chunks: Buffer[] = []
    child.stdout.on('data', (b: Buffer) => chunks.push(b))
    child.on('error', () => resolve(undefined))
    child.on('close', code => resolve(code === 0 ? Buffer.concat(chunks).toString('utf8') : undefined))
  })
  if (text === undefined) return undefined
  return await Promise.all(text.split('\n').filter(line => line !== '').map(async line => {
    const { p, files, imports } = parseListLine(line)
    let b = 0
    for (const f of files) b += await stat(f).then(s => s.size, () => 0)
    return { p, i: imports, b }
  }))
}
