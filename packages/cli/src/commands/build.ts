/**
 * `grid build`, `grid install`, `grid run`, `grid test` and `grid vet`: run the go command of
 * that name with every argument unchanged, plus `-trimpath` (so cache entries cross machines),
 * `-toolexec=<shim>` and `GOCACHEPROG=<shim> cacheprog`, against the node found or embedded by
 * `openSession`. Go's exit status and diagnostics pass through untouched; grid adds a progress
 * line on a terminal and one summary line (or a JSON object with --json) at the end.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { stat } from 'node:fs/promises'
import { availableParallelism, constants as osConstants } from 'node:os'
import { join } from 'node:path'
import { deadline, detectGo, ensureShim, type GoToolchain } from '@grid/node'
import { ENV, GridError, PROTOCOL_VERSION, emptyBuildStats, errorCode, isGridError, type BuildStats, type Failure, type MessageOf } from '@grid/protocol'
import { newFallbackLog, readFallbacks, removeFallbackLog, sweepIfDue } from '../fallback-log.js'
import { chdirArgs, listPackages } from '../graph.js'
import type { GlobalOptions } from '../options.js'
import { formatProgress, formatSummary, type Output } from '../output.js'
import { BeforeGo, goDiedOf } from '../interrupt.js'
import { openSession } from '../session.js'
import { splitGoFlags, staleGridEnv, withoutGridEnv } from './env.js'

/**
 * The go commands grid runs, and what grid adds to each beyond the shim and the cache helper.
 * `raiseP`: with peers that can take compiles, go's -p goes up so that enough compiles are in
 * flight for them. Not for test (its -p also bounds how many test binaries run at once here)
 * nor vet (its vet processes run here, not on peers). `graph`: the package graph is listed
 * with `go list -deps` and the same arguments, which for run would take the program's own
 * arguments as packages. `progress`: the live line on a terminal; under run the program owns
 * the terminal.
 */
export const GO_COMMANDS = {
  build: { raiseP: true, graph: true, progress: true, results: false },
  install: { raiseP: true, graph: true, progress: true, results: false },
  run: { raiseP: true, graph: false, progress: false, results: true },
  test: { raiseP: false, graph: false, progress: true, results: true },
  vet: { raiseP: false, graph: false, progress: true, results: false }
} as const

/**
 * Whether go writes what the user ran it for to its stdout (`results`: a test's lines, the
 * program's output; or go's own -json): on the terminal the progress line is drawn on, it
 * would be glued to the progress text (go's stdout is the terminal itself, not grid's pipe,
 * so that tests and programs see a terminal as under plain go), and that line is shown only
 * when go's stdout is elsewhere (a file, a pipe).
 */
function resultsOnStdout (sub: GoCommand, args: string[]): boolean {
  return GO_COMMANDS[sub].results || goOwnFlags(sub, args).some(a => /^--?json(=|$)/.test(a))
}

export type GoCommand = keyof typeof GO_COMMANDS

export function isGoCommand (name: string | undefined): name is GoCommand {
  return name !== undefined && Object.hasOwn(GO_COMMANDS, name)
}

export const BUILD_HELP = `usage: grid [global options] build [go build flags] [packages]
       grid [global options] install [go build flags] [packages]
       grid [global options] run [go build flags] package [arguments]
       grid [global options] test [go test flags] [packages] [test binary flags]
       grid [global options] vet [go vet flags] [packages]

Runs \`go build\` (or install, run, test, vet) with every argument passed through unchanged,
adding -trimpath, -toolexec=<grid shim> and GOCACHEPROG=<grid cache helper>. Compiles go
through the grid node, which runs them here or on peers; every cmd/go cache entry is stored in
the grid cache. Which build modes and flags keep their compiles here, and why: docs/remote.md,
"Build modes"; the summary counts each such compile's reason. Exit status and
compiler messages are those of \`go build -trimpath\` (and so on).

With grid --toolexec auto, -toolexec is added only when a peer can take compiles as the build
starts; otherwise go runs every tool itself (no shim process per tool) and only the cache goes
through grid.

-trimpath is on by default because it makes cache entries independent of where the source
lives, so they can be shared across machines. To build without it: grid --no-trimpath build …

With peers that can take compiles, grid build, install and run raise go's -p so that enough
compiles are in flight for them (the node still runs at most its own slots here). grid test and
grid vet do not: go test's -p also bounds how many test binaries run at once, and go vet's how
many vet processes, all on this machine; they stay go's default unless you set -p.

If no node answers on the control socket, an embedded node runs for the length of the build.
A node whose mesh did not start (its listen port taken, say) serves builds alone: each says so
after it, with why (meshFailure in --json).
With --json, go's own stdout goes to stderr and stdout holds only the summary object (under
grid run, that includes the program's stdout). grid run shows no progress line: the program
has the terminal; nor do grid test and -json when stdout is the terminal (the results go there).

Flags after the command are go's: \`go help build\`, \`go help install\`, \`go help run\`,
\`go help test\`, \`go help testflag\` and \`go help vet\` describe them. Grid's own options go
before the command (\`grid --help\`).`

const TOOLEXEC = /^--?toolexec(=|$)/

/**
 * The flags of go build, install, run and test that take a value, which may be the next
 * argument (`-o out`, `-tags x`): cmd/go's AddBuildFlags, AddModFlag, AddModCommonFlags,
 * AddChdirFlag and AddCoverFlags (internal/work/build.go, internal/base/flag.go), run's and
 * test's -exec, build's and test's -o.
 */
const BUILD_VALUE_FLAGS = new Set([
  'C', 'p', 'asmflags', 'buildmode', 'compiler', 'gccgoflags', 'gcflags', 'installsuffix', 'ldflags', 'mod', 'modfile',
  'overlay', 'pgo', 'pkgdir', 'tags', 'toolexec', 'covermode', 'coverpkg', 'debug-actiongraph', 'debug-runtime-trace',
  'debug-trace', 'exec', 'o'
])

/** go test's own flags that take a value (internal/test/testflag.go), also as -test.<name>. */
const TEST_VALUE_FLAGS = new Set([
  'coverprofile', 'vet', 'bench', 'benchtime', 'blockprofile', 'blockprofilerate', 'count', 'cpu', 'cpuprofile', 'fuzz',
  'list', 'memprofile', 'memprofilerate', 'mutexprofile', 'mutexprofilefraction', 'outputdir', 'parallel', 'run',
  'skip', 'timeout', 'fuzztime', 'fuzzminimizetime', 'trace', 'shuffle'
])

/**
 * The arguments go parses as its own flags, without their values: for run, those before the
 * package (go's flag parsing stops at the first argument that is not a flag; the rest are the
 * program's); for test, those before -args (the rest are the test binary's). For build,
 * install and vet, every argument.
 */
export function goOwnFlags (sub: GoCommand, args: string[]): string[] {
  if (sub !== 'run' && sub !== 'test') return args
  const flags: string[] = []
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string
    if (a === '--' || (sub === 'test' && (a === '-args' || a === '--args'))) break
    if (!a.startsWith('-') || a === '-') {
      if (sub === 'run') break
      continue // test: a package; its flags may follow
    }
    flags.push(a)
    let name = a.replace(/^--?/, '')
    if (name.includes('=')) continue
    if (sub === 'test') name = name.replace(/^test\./, '')
    if (BUILD_VALUE_FLAGS.has(name) || (sub === 'test' && TEST_VALUE_FLAGS.has(name))) i++
  }
  return flags
}

/**
 * The package graph is listed this long after go starts: a no-op build (~0.2–0.5 s) is
 * over by then, and cmd/go's first compiles are small leaf packages that need no ranking.
 */
const GRAPH_DELAY_MS = 500
/** How long build-end may take from a node found hung during the build. */
const HUNG_END_MS = 2_000
/** How a request fails when the node has gone away (stopped or died) since we connected. */
const NODE_GONE = ['GRID_ERR_NODE_CLOSED', 'GRID_ERR_NODE_UNREACHABLE']

/** Quotes a word for cmd/go's quoted.Split (used on -toolexec and GOCACHEPROG). */
function quoteForGo (word: string): string {
  if (!/[\s'"]/.test(word)) return word
  if (!word.includes("'")) return `'${word}'`
  if (!word.includes('"')) return `"${word}"`
  throw new GridError('GRID_ERR_USAGE', `path contains both quote characters, which cmd/go cannot take: ${word}`)
}

/** go's command line for `args` through the shim; the caller has refused a -toolexec of its own (`checkToolexec`). */
export function goArgs (sub: GoCommand, args: string[], shim: string, trimpath: boolean): string[] {
  // `-C dir` must stay the first flag on go's command line.
  const chdir = chdirArgs(args)
  return [sub, ...args.slice(0, chdir), ...(trimpath ? ['-trimpath'] : []), `-toolexec=${quoteForGo(shim)}`, ...args.slice(chdir)]
}

/** Throws GRID_ERR_TOOLEXEC_CONFLICT when go's arguments or GOFLAGS set a -toolexec of their own: grid sets it. */
export function checkToolexec (sub: GoCommand, args: string[], goflags = ''): void {
  const conflict = goOwnFlags(sub, args).find(a => TOOLEXEC.test(a)) ??
    (splitGoFlags(goflags).some(f => TOOLEXEC.test(f.value)) ? 'GOFLAGS' : undefined)
  if (conflict !== undefined) {
    // `grid build --toolexec auto`: grid's own option, given where go's flags go
    const at = args.indexOf(conflict)
    const mode = conflict.includes('=') ? conflict.slice(conflict.indexOf('=') + 1) : args[at + 1]
    const misplaced = conflict !== 'GOFLAGS' && (mode === 'auto' || mode === 'always')
    throw new GridError('GRID_ERR_TOOLEXEC_CONFLICT', `grid sets -toolexec itself; ${conflict === 'GOFLAGS' ? 'GOFLAGS has' : 'the arguments have'} one already`, {
      hint: misplaced
        ? `grid's own --toolexec goes before the command: grid --toolexec ${mode} ${sub} …`
        : 'drop -toolexec from the arguments and GOFLAGS, or run go directly'
    })
  }
}

/**
 * The user's go and the shim built for it; with no shim when the cache dir cannot hold one, or
 * the shim does not build (plain go builds all the same). No go, or one too old, is the error.
 */
async function findGo (cacheDir: string, env: NodeJS.ProcessEnv, signal?: AbortSignal): Promise<{ toolchain: GoToolchain, shim: string, unusable?: GridError }> {
  const toolchain = await detectGo({ env })
  try {
    return { toolchain, shim: await ensureShim(cacheDir, toolchain, signal === undefined ? {} : { signal }) }
  } catch (err) {
    if (signal?.aborted === true) throw err
    const code = errorCode(err)
    if (code !== 'GRID_ERR_CACHE_OPEN' && code !== 'GRID_ERR_SHIM_BUILD') throw err
    return { toolchain, shim: '', unusable: err as GridError }
  }
}

export async function runGo (sub: GoCommand, args: string[], options: GlobalOptions, output: Output): Promise<number> {
  const started = performance.now()
  // Finding go (and its shim) and reaching a daemon do not wait for each other: overlapped,
  // they take `go env`'s few milliseconds off every build. No embedded node starts before go
  // is found, and a missing go is the error reported.
  // Under `grid env`, go would get grid's -toolexec twice: every go here runs in the
  // environment from before it.
  const baseEnv = withoutGridEnv(process.env)
  // Refused before any node starts: an embedded one would be left behind by the exit, with its
  // socket.
  checkToolexec(sub, args, baseEnv.GOFLAGS)
  // Ctrl-C or SIGTERM before go runs stop grid's own steps (interrupt.ts).
  const beforeGo = new BeforeGo()
  const finding = findGo(options.cacheDir, baseEnv, beforeGo.signal)
  const [found, opened] = await Promise.allSettled([finding, openSession(options, finding)])
  const died = await beforeGo.end(async () => { if (opened.status === 'fulfilled') await opened.value.close() })
  if (died !== undefined) return died
  if (found.status === 'rejected') {
    if (opened.status === 'fulfilled') await opened.value.close().catch(() => {})
    throw found.reason
  }
  if (found.value.unusable !== undefined) {
    if (opened.status === 'fulfilled') await opened.value.close().catch(() => {})
    return await runWithoutNode(sub, args, options, output, found.value, found.value.unusable, started)
  }
  if (opened.status === 'rejected') {
    return await runWithoutNode(sub, args, options, output, found.value, withoutNodeBecause(opened.reason, options), started)
  }
  const { toolchain, shim } = found.value
  const stale = staleGridEnv(process.env, shim)
  if (stale !== undefined) {
    output.err(`grid: warning: this shell's grid env names another cache helper (${stale}), not this grid's: plain go commands here may run without the node`)
    output.err('  hint: run eval "$(grid env)" again (Go, grid or the cache dir changed since)')
  }
  let session = opened.value
  if (session.warning !== undefined) {
    output.err(`grid: warning: ${session.warning.message}`)
    if (session.warning.hint !== undefined) output.err(`  hint: ${session.warning.hint}`)
  }
  let argv: string[]
  try {
    argv = goArgs(sub, args, shim, options.trimpath)
  } catch (err) {
    await session.close().catch(() => {}) // a shim path go cannot take: an embedded node goes with its socket
    throw err
  }
  // the shims append to it, and leave `.stalled` beside it (fallback-log.ts)
  const fallbackLog = newFallbackLog()
  const shape = GO_COMMANDS[sub]
  const live = process.stderr.isTTY && !options.json && shape.progress && !(process.stdout.isTTY && resultsOnStdout(sub, args))
  const stop = new AbortController()
  let exitCode = 1
  let nodeLost: string | undefined
  let lastStats: BuildStats | undefined
  let sweeping: Promise<void> | undefined
  const beginning = { type: 'build-begin' as const, command: ['go', ...argv], cwd: process.cwd() }
  const begin = async (): Promise<MessageOf<'build-begun'>> => await session.client.request(beginning)
  let begun: MessageOf<'build-begun'>
  try {
    begun = await begin().catch(async (err: unknown) => {
      // The node stopped between our connecting and the build's start (grid stop, it died, or
      // it was another build's embedded node, which refuses new builds once its own have ended):
      // nothing ran yet, so start over with whatever node answers now, or an embedded one.
      if (!NODE_GONE.includes(errorCode(err) ?? '')) throw err
      await session.close().catch(() => {})
      session = await openSession(options)
      return await begin()
    })
  } catch (err) {
    await session.close().catch(() => {})
    return await runWithoutNode(sub, args, options, output, found.value, withoutNodeBecause(err, options), started)
  }
  try {
    const build = begun.build
    const nodeProtocol = begun.protocol ?? 1 // nodes of version 1 did not say
    if (nodeProtocol !== PROTOCOL_VERSION) {
      // A daemon started before grid was upgraded: the helper and shim of this build speak
      // another version, and the node may refuse what they send. The build still completes.
      output.err(`grid: warning: the node at ${options.control} speaks protocol ${nodeProtocol}, this grid ${PROTOCOL_VERSION}: ` +
        'it was started by another version of grid, and this build may get no cache from it')
      output.err('  hint: restart the daemon (stop it, then run `grid daemon` again)')
    }
    // With remote slots, go needs more actions in flight than cores (DESIGN §2); the node
    // throttles local work to its own slots. A -p of the user's own wins, in the arguments or
    // in GOFLAGS (the environment's or `go env -w`'s, which ours on go's command line would
    // override). Not for go test:
    // there -p also bounds how many test binaries run at once on this machine, and tests that
    // pass under go test must not fail under grid test for want of CPU (GO_COMMANDS).
    const isP = (a: string): boolean => /^--?p(=|$)/.test(a)
    const ownP = goOwnFlags(sub, args).some(isP) || splitGoFlags(toolchain.goflags ?? '').some(f => isP(f.value))
    if (shape.raiseP && begun.parallelism > availableParallelism() && !ownP) {
      argv.splice(argv.findIndex(a => a.startsWith('-toolexec=')), 0, '-p', String(begun.parallelism))
    }
    // --toolexec auto: with no peer that could take a compile (busy ones count: they free up
    // during the build), the shim would only hand each tool back to this machine, at a Go
    // process's start per invocation (docs/benchmarks/cold.md). Action IDs do not depend on
    // -toolexec, so the cache is the same either way.
    const viaShim = options.toolexec === 'always' || begun.remoteSlots > 0 || begun.offload === true
    if (!viaShim) argv.splice(argv.findIndex(a => a.startsWith('-toolexec=')), 1)
    const env = {
      ...baseEnv,
      [ENV.socket]: options.control,
      [ENV.build]: build,
      [ENV.fallbackLog]: fallbackLog,
      [ENV.gocache]: toolchain.gocache,
      // the go this process starts: a go a program or test of its starts is told apart by it
      [ENV.parent]: String(process.pid),
      GOCACHEPROG: `${quoteForGo(shim)} cacheprog`
    }
    const child = spawn(toolchain.go, argv, {
      env, stdio: ['inherit', options.json ? process.stderr : 'inherit', live ? 'pipe' : 'inherit']
    })
    const exited = goExit(child)
    // what builds killed before their end left in TMPDIR: looked for once a day, beside go
    sweeping = sweepIfDue(options.cacheDir)
    let total: number | undefined
    // The graph ranks compiles for placement, gives the progress line its total and the summary
    // its critical path. With no peer to place on and nobody watching, it would only take CPU
    // from the compiles, unless asked for (--graph).
    if (shape.graph && (begun.remoteSlots > 0 || live || options.graph)) {
      // Not at once: a no-op build is over before this fires and never pays for go list.
      const timer = setTimeout(() => {
        void listPackages(toolchain.go, args, baseEnv, stop.signal).then(async packages => {
          if (packages === undefined || stop.signal.aborted) return
          total = packages.length
          await session.client.request({ type: 'build-graph', build, packages })
        }).catch(() => {})
      }, GRAPH_DELAY_MS)
      stop.signal.addEventListener('abort', () => clearTimeout(timer))
    }
    let line = ''
    const clear = (): void => { if (line !== '') { process.stderr.write('\r\x1b[K'); line = '' } }
    if (live) {
      child.stderr?.on('data', (chunk: Buffer) => { clear(); process.stderr.write(chunk) })
      const timer = setInterval(() => {
        session.client.request({ type: 'build-progress', build }).then(r => {
          lastStats = r.stats
          if (stop.signal.aborted) return
          line = formatProgress(r.stats, total, performance.now() - started, viaShim)
          // a terminal that reports no width (0, as some ptys do) gets 80 columns
          const columns = (process.stderr.columns ?? 0) > 0 ? process.stderr.columns : 80
          process.stderr.write(`\r\x1b[K${line.slice(0, columns - 1)}`)
        }, () => {})
      }, 250)
      stop.signal.addEventListener('abort', () => { clearInterval(timer) })
    }
    exitCode = await exited
    stop.abort()
    clear()
    // The node may have died during the build: go finished without it, and so do we. One that
    // a compile or the cache helper found hung (their stalled mark) gets a moment, not the
    // usual 15 s: go is done, and the wait would be the user's alone.
    const hung = await stat(`${fallbackLog}.stalled`).then(() => true, () => false)
    // The node's mesh did not start (its port taken, say): the build ran alone, and the
    // summary's no-peers does not say why. An embedded node joins it on the build's first miss,
    // in the background; the node's reply waits for that start.
    let meshFailure: Failure | undefined
    const hungEnd = hung ? deadline(HUNG_END_MS) : undefined
    const ended = await session.client.request({ type: 'build-end', build }, hungEnd === undefined ? {} : { signal: hungEnd.signal }).then(r => {
      meshFailure = r.meshFailure
      return r.stats
    }, (err: Error) => {
      nodeLost = hung ? `the node at ${options.control} stopped answering during the build (hung, or a stopped process)` : err.message
      return lastStats ?? emptyBuildStats(build, ['go', ...argv])
    }).finally(() => { hungEnd?.done() })
    ended.compiles.fallbacks = await readFallbacks(fallbackLog)
    const wallMs = Math.round(performance.now() - started)
    if (meshFailure !== undefined) warnMeshFailed(output, meshFailure)
    if (options.json) {
      output.out(JSON.stringify({
        command: ['go', ...argv],
        exitCode,
        wallMs,
        actions: ended.actions,
        cache: ended.cache,
        compiles: ended.compiles,
        toolexec: viaShim,
        // the node that served the build, as it says (nodes before `mode` say nothing: null);
        // an embedded one may be another build's, found on the socket
        node: begun.mode ?? null,
        ownNode: session.embedded !== undefined,
        ...(nodeLost === undefined ? {} : { nodeLost }),
        ...(meshFailure === undefined ? {} : { meshFailure: { code: meshFailure.code, message: meshFailure.message, hint: meshFailure.hint ?? null } })
      }))
    } else {
      if (nodeLost !== undefined) output.err(`grid: the node went away during the build (${nodeLost}); the build went on without it`)
      if (ended.cache.unstored > 0) {
        output.err(`grid: warning: ${ended.cache.unstored} outputs of this build could not be stored in the cache (${ended.cache.unstoredWhy}): ` +
          'the next build compiles them again (GRID_ERR_CACHE_WRITE)')
        output.err(`  hint: free some space on the disk of the cache dir (${options.cacheDir}); grid cache gc --max-size SIZE trims the cache`)
      }
      output.err(formatSummary(ended, wallMs, viaShim))
    }
  } finally {
    stop.abort()
    await removeFallbackLog(fallbackLog)
    await sweeping
    await session.close().catch(() => {})
  }
  return exitCode
}

/** The warning for a build whose node could not join the mesh (its own or one it found): once, with the node's hint. */
function warnMeshFailed (output: Output, failure: Failure): void {
  output.err(`grid: warning: this build ran without the mesh (no peers, no shared cache): ${failure.message} (${failure.code})`)
  if (failure.hint !== undefined) output.err(`  hint: ${failure.hint}`)
}

/**
 * The exit status of a go command as a shell reports it. Ctrl-C reaches go directly (the
 * terminal signals the whole process group): grid ignores it meanwhile, waits for go to finish
 * and reports. SIGTERM, which a supervisor sends to grid's pid alone, is passed on to go, as it
 * would have reached a plain go command in grid's place.
 */
async function goExit (child: ChildProcess): Promise<number> {
  const onInterrupt = (): void => {}
  const onTerminate = (): void => { child.kill('SIGTERM') }
  process.on('SIGINT', onInterrupt)
  process.on('SIGTERM', onTerminate)
  try {
    return await new Promise<number>((resolve, reject) => {
      child.on('error', reject)
      child.on('close', (code, signal) => {
        if (signal !== null) goDiedOf(signal) // and so will grid, once it has said what it has to
        resolve(code ?? (signal === null ? 1 : 128 + (osConstants.signals[signal] ?? 0)))
      })
    })
  } finally {
    process.off('SIGINT', onInterrupt)
    process.off('SIGTERM', onTerminate)
  }
}

/**
 * What to tell the user when no node could take the build, which then runs as plain go: the node
 * does not answer in time (it is hung, or its machine is), or none answers and none can start
 * here because another process (grid cache verify, say, with no daemon running) holds the cache
 * or its index does not open (a full disk); or the node failed in a way it never should (a bug,
 * a daemon of another version refusing the request). The grid never fails a build: whatever the
 * node does, go can build without it.
 */
function withoutNodeBecause (err: unknown, options: GlobalOptions): GridError {
  const e = err as GridError
  const code = errorCode(err)
  switch (code) {
    case 'GRID_ERR_TIMEOUT':
      return e
    case 'GRID_ERR_CACHE_LOCKED':
      return new GridError(e.code, `no node answers on ${options.control} and none can start: ${e.message}`, {
        hint: 'a grid command working on the cache with no daemon running (grid cache verify or gc) holds it until it ends; ' +
          'with a daemon running (grid daemon --detach), builds and those commands share it'
      })
    case 'GRID_ERR_CACHE_OPEN':
    case 'GRID_ERR_SOCKET_PATH':
    case 'GRID_ERR_CONFIG':
      return new GridError(e.code, `no node answers on ${options.control} and none can start: ${e.message}`, e.hint === undefined ? {} : { hint: e.hint })
  }
  // anything at all: a GridError of the node's, or what the embedded node threw
  const message = err instanceof Error ? err.message : String(err)
  const gridCode = isGridError(err) ? err.code : 'GRID_ERR_INTERNAL'
  return new GridError(gridCode, `the node at ${options.control} could not take this build: ${message} (${gridCode})`, {
    hint: (isGridError(err) ? err.hint : undefined) ?? `the node's log says more (${join(options.cacheDir, 'logs', 'grid.log')} for a node of this cache dir); GRID_ERR_INTERNAL is a bug in grid, please report it`
  })
}

/**
 * The go command as `go <sub> -trimpath` with go's own cache and no shim: what grid's output
 * must equal, run when there is no node to build with. The summary says why.
 */
async function runWithoutNode (sub: GoCommand, args: string[], options: GlobalOptions, output: Output,
  found: { toolchain: GoToolchain, shim: string }, why: GridError, started: number): Promise<number> {
  const baseEnv = withoutGridEnv(process.env)
  const argv = goArgs(sub, args, found.shim, options.trimpath).filter(a => !a.startsWith('-toolexec='))
  output.err(`grid: warning: ${why.message}. This build runs as plain go, with go's own cache`)
  if (why.hint !== undefined) output.err(`  hint: ${why.hint}`)
  const child = spawn(found.toolchain.go, argv, { env: baseEnv, stdio: ['inherit', options.json ? process.stderr : 'inherit', 'inherit'] })
  const exitCode = await goExit(child)
  const wallMs = Math.round(performance.now() - started)
  if (options.json) {
    const stats = emptyBuildStats('', ['go', ...argv])
    output.out(JSON.stringify({
      command: ['go', ...argv], exitCode, wallMs, actions: 0, cache: stats.cache, compiles: stats.compiles, toolexec: false, node: 'none', ownNode: false, nodeLost: why.message
    }))
  } else {
    output.err(`grid: built by plain go, without the grid (${why.code}) · ${(wallMs / 1000).toFixed(1)} s`)
  }
  return exitCode
}
