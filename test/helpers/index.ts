/**
 * Shared test helpers: temp dirs with teardown, the CLI as a user runs it, plain `go build`,
 * daemons as real processes, and byte-for-byte comparison of build outputs.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { chmod, cp, mkdtemp, readdir, readFile, rm, mkdir, symlink, writeFile } from 'node:fs/promises'
import { createConnection, createServer, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { basename, dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { after, type TestContext } from 'node:test'
import { ControlClient, detectGo, ensureShim } from '@grid/node'
import { FrameDecoder } from '@grid/protocol'

// compiled to test/dist/helpers/: the repo root is three levels up
export const ROOT = fileURLToPath(new URL('../../../', import.meta.url))
export const GRID_BIN = join(ROOT, 'packages/cli/bin/grid.js')
export const FIXTURES = join(ROOT, 'test/fixtures')
export const GOMOD = join(FIXTURES, 'gomod')
/** A module with a dependency from the module cache, which moduleProxyEnv serves. */
export const MODDEP = join(FIXTURES, 'moddep')

type Ctx = Pick<TestContext, 'after'> | { after: (fn: () => unknown) => void }

const deferred = new WeakMap<object, Array<() => unknown>>()

/**
 * Runs fn when the test (or suite) ends, the last registered first, and every one even when an
 * earlier one throws: a daemon is killed before its directory is removed. node:test's own
 * `after` hooks run in the order they were added and stop at the first that fails, so a failed
 * `rm` of a directory a daemon still wrote to skipped that daemon's kill, and the test file
 * never exited.
 */
export function defer (t: Ctx, fn: () => unknown): void {
  let stack = deferred.get(t)
  if (stack === undefined) {
    const fns: Array<() => unknown> = []
    deferred.set(t, fns)
    t.after(async () => {
      const errors: unknown[] = []
      for (const f of fns.reverse()) {
        try { await f() } catch (err) { errors.push(err) }
      }
      if (errors.length === 1) throw errors[0]
      if (errors.length > 1) throw new AggregateError(errors, `${errors.length} clean-ups failed`)
    })
    stack = fns
  }
  stack.push(fn)
}

/**
 * A context for what a suite's `before` makes, cleaned up (the last registered first) when the
 * suite ends: node:test's `after` called inside `before` would run when that hook ends. Call
 * it in the `describe` body.
 */
export function suiteContext (): Ctx {
  const teardown: Array<() => unknown> = []
  after(async () => { for (const fn of teardown.reverse()) await fn() })
  return { after: (fn: () => unknown) => { teardown.push(fn) } }
}

/**
 * A module whose tests run go themselves, as cmd/go passes them its environment (GOCACHEPROG
 * included): one with a fresh GOCACHE, which must find the cold cache it asked for and fill it
 * in go's own format, and one that keeps the GOCACHE it inherited, as a build tool written in
 * Go does. Returns its directory.
 */
export async function nestedGoModule (dir: string): Promise<string> {
  const mod = join(dir, 'nested')
  await mkdir(mod, { recursive: true })
  await writeFile(join(mod, 'go.mod'), 'module example.com/nested\n\ngo 1.24\n')
  await writeFile(join(mod, 'nested.go'), 'package nested\n')
  await writeFile(join(mod, 'nested_test.go'), [
    'package nested', '', 'import (', '\t"os"', '\t"os/exec"', '\t"path/filepath"', '\t"testing"', ')', '',
    '// a tiny module in a temp dir, built by go with env added to the test\'s',
    'func build(t *testing.T, env ...string) {',
    '\tdir := t.TempDir()',
    '\tos.WriteFile(filepath.Join(dir, "go.mod"), []byte("module x\\n\\ngo 1.24\\n"), 0o644)',
    '\tos.WriteFile(filepath.Join(dir, "x.go"), []byte("package x\\n\\nfunc F() int { return 1 }\\n"), 0o644)',
    '\tcmd := exec.Command("go", "build", ".")',
    '\tcmd.Dir = dir',
    '\tcmd.Env = append(os.Environ(), env...)',
    '\tif out, err := cmd.CombinedOutput(); err != nil {', '\t\tt.Fatalf("%v: %s", err, out)', '\t}',
    '}', '',
    'func TestNestedGoCachesItself(t *testing.T) {',
    '\tcache := filepath.Join(t.TempDir(), "cache")',
    '\tbuild(t, "GOCACHE="+cache, "GOFLAGS=")',
    '\tif entries, _ := filepath.Glob(filepath.Join(cache, "??", "*-a")); len(entries) == 0 {',
    '\t\tt.Fatal("the nested go build cached nothing in its own GOCACHE")', '\t}', '}', '',
    'func TestNestedGoSameCache(t *testing.T) {', '\tbuild(t)', '}', ''
  ].join('\n'))
  return mod
}

/** A temp dir removed when the test (or suite) ends. Short, so socket paths fit. */
export async function tempDir (t: Ctx, prefix = 'g'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `${prefix}-`))
  defer(t, async () => { await rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 }) })
  return dir
}

export interface RunResult { code: number | null, signal: NodeJS.Signals | null, stdout: string, stderr: string }

export interface RunOptions { cwd?: string, env?: NodeJS.ProcessEnv, timeoutMs?: number, killSignal?: NodeJS.Signals }

export async function run (cmd: string, args: string[], options: RunOptions = {}): Promise<RunResult> {
  return await new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd: options.cwd ?? ROOT,
      env: options.env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: options.timeoutMs ?? 15 * 60 * 1000,
      killSignal: options.killSignal ?? 'SIGTERM'
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (b: Buffer) => { stdout += b.toString() })
    child.stderr.on('data', (b: Buffer) => { stderr += b.toString() })
    child.on('error', reject)
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }))
  })
}

/** An isolated world for one test: its own grid cache, control socket and GOCACHE. */
export interface World {
  dir: string
  cacheDir: string
  control: string
  env: NodeJS.ProcessEnv
  /** A fresh, empty GOCACHE (what `go clean -cache` leaves). */
  freshGoCache: () => Promise<string>
}

let shimSeed: Promise<string> | undefined

/**
 * Puts the shim into a fresh grid cache, as the lab benchmarks do: built once per test process
 * (a cold build under a world's empty GOCACHE costs ~10 CPU-s), then copied, so that a world's
 * CLI and each of its daemons find it instead of each building their own at once.
 */
export async function seedShim (cacheDir: string): Promise<void> {
  shimSeed ??= (async () => {
    const seed = mkdtempSync(join(tmpdir(), 'grid-shim-seed-'))
    process.once('exit', () => { rmSync(seed, { recursive: true, force: true }) })
    return dirname(await ensureShim(seed, await detectGo()))
  })()
  const built = await shimSeed
  await mkdir(join(cacheDir, 'shim'), { recursive: true })
  await cp(built, join(cacheDir, 'shim', basename(built)), { recursive: true })
}

/**
 * The GOCACHE seedShim built the shim in (go's own, as this process's go reports it): a daemon
 * given it that builds its shim again (one was removed under it) finds the packages the shim
 * imports built, and links; in a world's empty GOCACHE it compiled them all (~10 CPU-s, go's
 * work). Call after world().
 */
export async function shimGocache (): Promise<string> {
  if (shimSeed === undefined) throw new TypeError('shimGocache() before any world()')
  await shimSeed
  return (await detectGo()).gocache
}

export async function world (t: Ctx): Promise<World> {
  const dir = await tempDir(t)
  const cacheDir = join(dir, 'grid')
  await seedShim(cacheDir)
  const control = join(dir, 'grid.sock')
  let n = 0
  // Loopback only, no mDNS: tests never send a packet beyond this machine, and no user config
  // (or swarm key beside it) leaks in. XDG_CONFIG_HOME stays: go reads its own env file there.
  const config = join(dir, 'config.json')
  await writeFile(config, JSON.stringify({ mdns: false, listen: ['/ip4/127.0.0.1/tcp/0'] }))
  const env: NodeJS.ProcessEnv = {
    ...process.env, GOCACHE: join(dir, 'gocache-0'), GRID_CACHE: cacheDir, GRID_CONTROL: control, GRID_CONFIG: config
  }
  delete env.GOCACHEPROG
  delete env.DEBUG
  return {
    dir,
    cacheDir,
    control,
    env,
    freshGoCache: async () => {
      const gocache = join(dir, `gocache-${++n}`)
      await mkdir(gocache, { recursive: true })
      env.GOCACHE = gocache
      return gocache
    }
  }
}

export async function grid (w: World, args: string[], options: RunOptions = {}): Promise<RunResult> {
  return await run(process.execPath, [GRID_BIN, ...args], { cwd: options.cwd ?? GOMOD, env: options.env ?? w.env, ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }) })
}

/**
 * Gives `w` a swarm key and a config whose one listen address is a loopback port another socket
 * holds (until the test ends), so that its node's mesh cannot start; returns that address.
 * `bootstrap`: the config also names it as a bootstrap peer (a node that expects peers).
 */
export async function meshPortTaken (t: Ctx, w: World, options: { bootstrap?: boolean } = {}): Promise<string> {
  const key = join(w.dir, 'swarm.key')
  const init = await grid(w, ['init', '--swarm-key', key])
  if (init.code !== 0) throw new Error(`grid init failed: ${init.stderr}`)
  const taken = createServer()
  await new Promise<void>(resolve => taken.listen(0, '127.0.0.1', resolve))
  defer(t, () => { taken.close() })
  const addr = `/ip4/127.0.0.1/tcp/${(taken.address() as AddressInfo).port}`
  await writeFile(w.env.GRID_CONFIG as string, JSON.stringify({ mdns: false, listen: [addr], ...(options.bootstrap === true ? { bootstrap: [addr] } : {}), swarmKey: key }))
  return addr
}

/** The JSON summary a `grid --json build` prints as its stdout. */
export function summary (r: RunResult): any {
  const line = r.stdout.trim().split('\n').at(-1) ?? ''
  try {
    return JSON.parse(line)
  } catch {
    throw new Error(`no JSON summary on stdout (exit ${r.code}):\nstdout: ${r.stdout}\nstderr: ${r.stderr}`)
  }
}

let referenceCache: string | undefined

/**
 * Plain go's own build cache for the reference builds, one per test process (each test file
 * runs in a process of its own), removed when it exits. go's cache does not change what go
 * build writes, and a fresh one per reference build compiled the standard library again every
 * time (ten times in the peer-killed test alone). Grid's builds never use it.
 */
export function referenceGocache (): string {
  if (referenceCache === undefined) {
    const dir = mkdtempSync(join(tmpdir(), 'gc-ref-'))
    process.once('exit', () => { rmSync(dir, { recursive: true, force: true }) })
    referenceCache = dir
  }
  return referenceCache
}

const stdSeeds = new Map<string, Promise<string>>()

/**
 * Gives `w` a GOCACHE in which plain `go build -trimpath` finds already built the standard
 * packages that the module at `cwd` imports, and nothing of the module itself. For tests of a
 * build that grid leaves to plain go: go still compiles and links the module's own packages
 * (cgo, assembly and embedded files among them) in the environment grid runs it in; what is
 * left out is its rebuild of the standard library, the same in every such test (~6 s each).
 * The standard packages are built once per test process, into a cache each world gets a copy of.
 */
export async function stdWarmGoCache (w: World, cwd = GOMOD): Promise<string> {
  let seed = stdSeeds.get(cwd)
  if (seed === undefined) {
    seed = (async () => {
      const dir = mkdtempSync(join(tmpdir(), 'gc-std-'))
      process.once('exit', () => { rmSync(dir, { recursive: true, force: true }) })
      const env: NodeJS.ProcessEnv = { ...process.env, GOCACHE: dir }
      delete env.GOCACHEPROG
      const list = await run('go', ['list', '-deps', '-f', '{{if .Standard}}{{.ImportPath}}{{end}}', './...'], { cwd, env })
      if (list.code !== 0) throw new Error(`go list -deps in ${cwd}: ${list.stderr}`)
      const built = await run('go', ['build', '-trimpath', ...list.stdout.split('\n').filter(p => p !== '')], { cwd, env })
      if (built.code !== 0) throw new Error(`go build of the standard packages of ${cwd}: ${built.stderr}`)
      return dir
    })()
    stdSeeds.set(cwd, seed)
  }
  const gocache = join(w.dir, 'gocache-std')
  await cp(await seed, gocache, { recursive: true })
  w.env.GOCACHE = gocache
  return gocache
}

/** The project's own source files under `dir` (TypeScript and Go, declarations left out), for tests that read the code. */
async function sourceFiles (dir: string): Promise<string[]> {
  const out: string[] = []
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) out.push(...await sourceFiles(path))
    else if (/\.(ts|go)$/.test(entry.name) && !entry.name.endsWith('.d.ts')) out.push(path)
  }
  return out
}

/** The source files of the three packages' `src` (protocol, node, cli), for tests that read the code. */
export async function packageSources (): Promise<string[]> {
  const out: string[] = []
  for (const pkg of ['protocol', 'node', 'cli']) out.push(...await sourceFiles(join(ROOT, 'packages', pkg, 'src')))
  return out
}

/** Plain `go build -trimpath`: the reference output. */
export async function goBuild (args: string[], cwd = GOMOD, extraEnv: NodeJS.ProcessEnv = {}): Promise<RunResult> {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extraEnv, GOCACHE: referenceGocache() }
  delete env.GOCACHEPROG
  return await run('go', ['build', '-trimpath', ...args], { cwd, env })
}

/**
 * What MODDEP needs to build offline: its dependency comes from test/fixtures/goproxy into a
 * module cache of this test's own (writable, so that the temp dir can be removed).
 */
export async function moduleProxyEnv (t: Ctx): Promise<NodeJS.ProcessEnv> {
  return { GOPROXY: `file://${join(FIXTURES, 'goproxy')}`, GONOSUMDB: 'example.com', GOFLAGS: '-modcacherw', GOMODCACHE: await tempDir(t, 'modcache') }
}

/**
 * A GOROOT beside the one of the go on PATH that shares everything with it but its compiler: a
 * script that runs the same compiler with `flags` (default -l: no inlining) and passes -V=full
 * through, as a compiler rebuilt from patched sources would. cmd/go sees the same release (the
 * same action IDs); the output differs. Use it as GOROOT, with a GOCACHE of its own.
 */
export async function patchedGoroot (t: Ctx, flags = ['-l']): Promise<string> {
  const goroot = (await run('go', ['env', 'GOROOT'])).stdout.trim()
  const tooldir = (await run('go', ['env', 'GOTOOLDIR'])).stdout.trim()
  const copy = join(await tempDir(t, 'goroot'), 'go')
  const copyTools = join(copy, relative(goroot, tooldir))
  await mkdir(copyTools, { recursive: true })
  for (const name of await readdir(goroot)) if (name !== 'pkg') await symlink(join(goroot, name), join(copy, name))
  for (const name of await readdir(join(goroot, 'pkg'))) if (name !== 'tool') await symlink(join(goroot, 'pkg', name), join(copy, 'pkg', name))
  for (const name of await readdir(tooldir)) if (name !== 'compile') await symlink(join(tooldir, name), join(copyTools, name))
  const compile = join(copyTools, 'compile')
  await writeFile(compile, `#!/bin/sh\ncase "$1" in -V*) exec ${join(tooldir, 'compile')} "$@";; esac\nexec ${join(tooldir, 'compile')} ${flags.join(' ')} "$@"\n`)
  await chmod(compile, 0o755)
  return copy
}

/** Asserts two output dirs hold the same files with the same bytes; returns the names. */
export async function sameFiles (a: string, b: string): Promise<string[]> {
  const names = (await readdir(a)).sort()
  const other = (await readdir(b)).sort()
  if (names.join('\n') !== other.join('\n')) throw new Error(`different files: ${names.join(',')} vs ${other.join(',')}`)
  if (names.length === 0) throw new Error(`no output files in ${a}`)
  for (const name of names) {
    const [x, y] = await Promise.all([readFile(join(a, name)), readFile(join(b, name))])
    if (!x.equals(y)) throw new Error(`${name} differs between ${a} and ${b} (${x.length} vs ${y.length} bytes)`)
  }
  return names
}

export interface Daemon { child: ChildProcess, stderr: () => string, kill: (signal?: NodeJS.Signals) => Promise<void> }

/**
 * Daemons still running. The test command runs with --test-force-exit, so a test file whose
 * tests are done exits even if something was left running; whatever is, dies with it.
 */
const daemons = new Set<ChildProcess>()
process.on('exit', () => { for (const child of daemons) child.kill('SIGKILL') })

/** Starts `grid daemon` as a real process and waits until it answers `grid status`. */
export async function startDaemon (t: Ctx, w: World, extra: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<Daemon> {
  const child = spawn(process.execPath, [GRID_BIN, 'daemon', ...extra], { env: { ...w.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr?.on('data', (b: Buffer) => { stderr += b.toString() })
  daemons.add(child)
  const exited = new Promise<void>(resolve => child.once('exit', () => { daemons.delete(child); resolve() }))
  const kill = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal)
    await exited
  }
  defer(t, async () => { await kill('SIGKILL') })
  // serving, and (unless started without one) in the mesh: the socket answers before the mesh
  // is up. Asked from this process: a `grid status` per poll started a Node process each time,
  // on the cores the daemon was starting on.
  await waitFor(async () => {
    const s = await nodeStatus(w.control)
    return s !== undefined && (extra.includes('--no-mesh') || s.mesh !== null)
  }, 20_000, () => `daemon did not start: ${stderr}`)
  return { child, stderr: () => stderr, kill }
}

/** The status a node answering on `control` gives, as `grid --json status` prints it; undefined when none answers. */
async function nodeStatus (control: string): Promise<{ mesh: unknown } | undefined> {
  let client: ControlClient
  try { client = await ControlClient.connect(control) } catch { return undefined }
  try {
    return (await client.request({ type: 'status' })).status as { mesh: unknown }
  } catch {
    return undefined
  } finally {
    client.close()
  }
}

/** Polls `check` until it returns true, or fails after `timeoutMs`. */
export async function waitFor (check: () => Promise<boolean> | boolean, timeoutMs: number, what: () => string = () => 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (await check()) return
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what()}`)
    await new Promise(resolve => setTimeout(resolve, 50))
  }
}

/** A process's state letter and parent from /proc (Linux), or undefined when there is none. */
export async function procStat (pid: number): Promise<{ state: string, ppid: number } | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
    const [state = '', ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return { state, ppid: Number(ppid) }
  } catch { return undefined }
}

/** Whether pid is a live process (Linux: an unreaped zombie counts as ended). */
export async function processRunning (pid: number): Promise<boolean> {
  const stat = await procStat(pid)
  return stat !== undefined && stat.state !== 'Z' && stat.state !== 'X'
}

/** A package cmd/compile takes a while over (about a second on a laptop core). */
export function bigPackage (functions = 4000): string {
  const body = (i: number): string =>
    `func F${i}(x []int) int {\n\ts := 0\n\tfor i, v := range x {\n\t\tswitch {\n\t\tcase v%3 == ${i % 3}:\n\t\t\ts += v * ${i}\n` +
    `\t\tcase i > ${i % 17}:\n\t\t\ts -= v\n\t\tdefault:\n\t\t\ts ^= i\n\t\t}\n\t}\n\treturn s\n}\n`
  return 'package big\n\n' + Array.from({ length: functions }, (_, i) => body(i)).join('\n')
}

export async function status (w: World): Promise<any> {
  const r = await grid(w, ['--json', 'status'])
  return JSON.parse(r.stdout)
}

/** Sends one raw frame to a node's control socket and resolves with the first frame back. */
export async function roundTrip (w: World, bytes: Buffer): Promise<{ type: string, [field: string]: unknown }> {
  return await new Promise((resolve, reject) => {
    const socket = createConnection(w.control)
    const decoder = new FrameDecoder()
    socket.on('connect', () => socket.write(bytes))
    socket.on('data', chunk => { const [m] = decoder.push(chunk); if (m !== undefined) { socket.destroy(); resolve(m) } })
    socket.on('error', reject)
  })
}
