#!/usr/bin/env node
/**
 * Benchmark (not a test): plain `go build` against `grid build` on this one machine.
 *
 *   npm run bench                      # builds the packages, then: node scripts/bench.js
 *   node scripts/bench.js [--rounds N] [--target PKGS] [--noop-runs N] [--out FILE]
 *   node scripts/bench.js --rerender [--out FILE]   # README and results again from saved samples
 *
 * Cases, each a pair of plain and grid, alternated (round 1 runs plain first, round 2 grid
 * first, …) so that drift in machine load falls on both sides:
 *   cold     `go build -trimpath T` with an empty GOCACHE vs `grid build T` with an empty grid
 *            cache and an empty GOCACHE. Result: ratio of medians grid/plain, target ≤ 1.05.
 *            A third side, `grid --toolexec auto build T` (no peers, so no -toolexec: only the
 *            cache goes through grid), shows what leaving out the shim would give; the three
 *            sides' order rotates every round.
 *   rebuild  after `go clean -cache`: plain with an empty GOCACHE (so cold again) vs grid with
 *            an empty GOCACHE and the grid cache warm from the cold grid build. Result: ratio.
 *   no-op    plain with a warm GOCACHE vs grid with a warm GOCACHE and warm grid cache.
 *            Result: added milliseconds, median(grid) − median(plain). Measured twice: against
 *            a daemon (the office shape) and with the embedded node (what a fresh machine gets).
 *
 * Plain is `go build -trimpath` because grid adds -trimpath: like is compared with like. Grid
 * runs against a daemon this script starts and stops (own temp cache dir, short socket path in
 * /tmp), except for the embedded no-op case. The grid shim is a one-time build per Go version
 * (cached in the grid cache dir); it is built once at setup (timed, reported as `setup`) and
 * copied into every "empty" grid cache, so the cold case measures builds, not the shim's.
 *
 * Every sample records wall seconds and CPU seconds (the build's whole process tree plus, for
 * daemon runs, what the daemon and its compiles used), the load average, and for grid the
 * summary `grid --json build` prints (hits, misses, puts, compiles). Writes JSON (default
 * docs/benchmarks/local.json) and README.md beside it. Every cache lives in a temp dir that is
 * removed at the end; ~/.cache is never touched (XDG_CACHE_HOME points into the temp dir too).
 *
 * Every node (daemon and embedded) runs the mesh, as it does by default, but alone: the script
 * gives it its own config (GRID_CONFIG, XDG_CONFIG_HOME in the temp dir) that listens on an
 * ephemeral loopback port with mDNS off, so other grid nodes on this machine or LAN (and the
 * user's own config and swarm key) cannot join in. The numbers are for one machine, no peers.
 * Progress goes to stderr. Node builtins only.
 */
import { execFileSync, spawn } from 'node:child_process'
import { closeSync, existsSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { appendFile, cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { createConnection } from 'node:net'
import os from 'node:os'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const GRID = join(ROOT, 'packages', 'cli', 'bin', 'grid.js')
const COLD_TARGET_RATIO = 1.05
/**
 * A cold build of ours alone keeps the 1-minute load around the core count (go -p N, each
 * compile with a few busy threads). A median load above this many per core means other work
 * was competing with the samples, and wall times say more about it than about grid.
 */
const NOISY_LOAD_PER_CORE = 2
/** A package with no dependencies: builds in milliseconds, so setup times the shim build. */
const TINY_PACKAGE = 'internal/goarch'
const DAEMON_START_TIMEOUT_MS = 30_000
const DAEMON_STOP_TIMEOUT_MS = 30_000
/** The node config every grid run gets: the mesh runs, but nothing can find it. */
const BENCH_CONFIG = { mesh: true, listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false, bootstrap: [] }

const USAGE = `usage: node scripts/bench.js [--rounds N] [--target PKGS] [--noop-runs N] [--edit-runs N] [--out FILE]

  --rounds N      rounds of every case (default 3)
  --target PKGS   what to build, space-separated go packages (default std)
  --noop-runs N   no-op samples per side per round (default 3; they take about a second)
  --edit-runs N   one-file edits of the fixture module per side per round (default 3; 0: none)
  --out FILE      JSON results (default docs/benchmarks/local.json); README.md is written beside it
  --rerender      run nothing: recompute results and README.md from the samples already in --out`

// ---------------------------------------------------------------------------------------------
// Options

function parseOptions (argv) {
  const { values } = parseArgs({
    args: argv,
    options: {
      rounds: { type: 'string', default: '3' },
      target: { type: 'string', default: 'std' },
      'noop-runs': { type: 'string', default: '3' },
      'edit-runs': { type: 'string', default: '3' },
      out: { type: 'string', default: join(ROOT, 'docs', 'benchmarks', 'local.json') },
      rerender: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false }
    },
    strict: true,
    allowPositionals: false
  })
  if (values.help) { process.stdout.write(USAGE + '\n'); process.exit(0) }
  const positiveInt = (name, v) => {
    const n = Number(v)
    if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer, got ${v}`)
    return n
  }
  const target = values.target.split(/\s+/).filter(s => s !== '')
  if (target.length === 0) throw new Error('--target needs at least one package')
  return Object.freeze({
    rounds: positiveInt('rounds', values.rounds),
    noopRuns: positiveInt('noop-runs', values['noop-runs']),
    editRuns: values['edit-runs'] === '0' ? 0 : positiveInt('edit-runs', values['edit-runs']),
    target,
    out: resolve(values.out),
    rerender: values.rerender
  })
}

// ---------------------------------------------------------------------------------------------
// Small helpers

const progress = msg => { process.stderr.write(`[bench] ${msg}\n`) }
const round3 = x => Math.round(x * 1000) / 1000
const sec = ms => round3(ms / 1000)

function median (xs) {
  const s = xs.filter(x => typeof x === 'number').sort((a, b) => a - b)
  if (s.length === 0) return null
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2
}

function tryExec (cmd, args, options = {}) {
  try { return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], ...options }).trim() } catch { return null }
}

/**
 * The cache misses a warm build of the target still has: `go build` of several packages links
 * each command among them and discards the result, every time, plain go too (`go build -x`
 * shows it), so each such link's lookup misses. One package, or none that is a command: none.
 */
function relinkedMains () {
  const names = tryExec('go', ['list', '-f', '{{.Name}}', ...options.target])?.split('\n') ?? []
  return names.length > 1 ? names.filter(n => n === 'main').length : 0
}

const CLOCK_TICKS = Number(tryExec('getconf', ['CLK_TCK'])) || 100

/** CPU ticks from /proc/<pid>/stat: the process itself and its reaped descendants. */
function procTicks (pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return { self: Number(f[11]) + Number(f[12]), children: Number(f[13]) + Number(f[14]) }
  } catch {
    return null
  }
}

function uptime () {
  return tryExec('uptime') ?? `load average: ${os.loadavg().map(x => x.toFixed(2)).join(', ')}`
}

// ---------------------------------------------------------------------------------------------
// Temp dirs, environment

let tmpRoot
let socketPath
let counter = 0

async function freshDir (name) {
  const dir = join(tmpRoot, `${name}-${++counter}`)
  await mkdir(dir, { recursive: true })
  return dir
}

/** The environment every build runs with: the caller's, minus anything grid- or cache-related. */
function benchEnv (gocache) {
  const env = { ...process.env }
  for (const name of Object.keys(env)) {
    if (name.startsWith('GRID_') || name === 'GOCACHEPROG' || name === 'DEBUG') delete env[name]
  }
  env.GOCACHE = gocache
  env.GOTOOLCHAIN = 'local'
  // Anything that would fall back to a default cache dir lands in the temp dir, never ~/.cache.
  env.XDG_CACHE_HOME = join(tmpRoot, 'xdg')
  // Our own node config, never the user's (nor their swarm key): see BENCH_CONFIG.
  env.XDG_CONFIG_HOME = join(tmpRoot, 'xdg-config')
  env.GRID_CONFIG = join(tmpRoot, 'config.json')
  return env
}

// ---------------------------------------------------------------------------------------------
// Running things

/**
 * Runs a command to completion and measures it: wall time from spawn to exit, and CPU time of
 * its whole process tree (our cutime/cstime grows by exactly what the child and everything it
 * waited for used, once we reap it).
 */
function measure (cmd, args, { env, cwd = process.cwd() }) {
  return new Promise((resolve, reject) => {
    const before = procTicks(process.pid)
    const started = performance.now()
    const child = spawn(cmd, args, { env, cwd, stdio: ['ignore', 'pipe', 'pipe'] })
    const stdout = []
    const stderr = []
    child.stdout.on('data', b => stdout.push(b))
    child.stderr.on('data', b => stderr.push(b))
    child.on('error', reject)
    child.on('close', (code, signal) => {
      const wallMs = performance.now() - started
      const after = procTicks(process.pid)
      resolve({
        code: code ?? 128,
        signal,
        wallMs,
        cpuMs: before === null || after === null ? null : (after.children - before.children) * 1000 / CLOCK_TICKS,
        stdout: Buffer.concat(stdout).toString('utf8'),
        stderr: Buffer.concat(stderr).toString('utf8')
      })
    })
  })
}

function failed (what, r) {
  const tail = r.stderr.trim().split('\n').slice(-20).join('\n')
  return new Error(`${what} exited with ${r.signal ?? r.code}:\n${tail}`)
}

let daemon // { child, logFile, exited, whenExited, ticks: () => number | null }

async function plainBuild (gocache, { target = options.target, cwd } = {}) {
  const r = await measure('go', ['build', '-trimpath', ...target], { env: benchEnv(gocache), cwd })
  if (r.code !== 0) throw failed('go build -trimpath', r)
  return { wallS: sec(r.wallMs), cpuS: r.cpuMs === null ? null : sec(r.cpuMs) }
}

/** `grid build` against whatever answers on the socket (the daemon), or an embedded node. */
async function gridBuild (gocache, cacheDir, { target = options.target, toolexec = 'always', cwd } = {}) {
  const daemonBefore = daemon?.ticks() ?? null
  const r = await measure(process.execPath, [GRID, '--cache', cacheDir, '--control', socketPath, '--toolexec', toolexec, '--json', 'build', ...target], { env: benchEnv(gocache), cwd })
  const daemonAfter = daemon?.ticks() ?? null
  if (r.code !== 0) throw failed('grid build', r)
  let summary
  try {
    summary = JSON.parse(r.stdout.trim().split('\n').pop())
  } catch {
    throw new Error(`grid build printed no JSON summary on stdout:\n${r.stdout}\n${r.stderr}`)
  }
  // A daemon that died mid-build (or was killed by someone else's cleanup) would leave a
  // sample of some other shape: refuse it rather than record it.
  const expected = daemon === undefined ? 'embedded' : 'daemon'
  if (daemon?.exited === true) throw new Error(`the grid daemon exited during a build:\n${logTail(daemon.logFile)}`)
  if (summary.node !== expected) throw new Error(`grid build ran on ${summary.node} node, expected ${expected}`)
  if (daemon === undefined && summary.ownNode !== true) throw new Error('grid build ran on another build\'s embedded node, not its own')
  const daemonCpuMs = daemonBefore === null || daemonAfter === null ? 0 : (daemonAfter - daemonBefore) * 1000 / CLOCK_TICKS
  return {
    wallS: sec(r.wallMs),
    cpuS: r.cpuMs === null ? null : sec(r.cpuMs + daemonCpuMs),
    daemonCpuS: daemon === undefined ? undefined : sec(daemonCpuMs),
    grid: {
      node: summary.node,
      toolexec: summary.toolexec,
      cliWallS: sec(summary.wallMs),
      actions: summary.actions,
      cache: summary.cache,
      compiles: summary.compiles
    }
  }
}

/** The variables `grid env` sets for the daemon's cache and socket (asked once, outside the timing). */
async function gridEnvVars (gocache, cacheDir) {
  const r = await measure(process.execPath, [GRID, '--cache', cacheDir, '--control', socketPath, '--json', 'env'], { env: benchEnv(gocache) })
  if (r.code !== 0) throw failed('grid env', r)
  return JSON.parse(r.stdout).set
}

/** The daemon's status, as `grid --json status` prints it. */
async function readDaemonStatus (gocache, cacheDir) {
  const s = await measure(process.execPath, [GRID, '--cache', cacheDir, '--control', socketPath, '--json', 'status'], { env: benchEnv(gocache) })
  if (s.code !== 0) throw failed('grid status', s)
  return JSON.parse(s.stdout)
}

/**
 * The record of the build under `grid env` that ended after `served` builds had: it ends when
 * its helper's connection closes, which the daemon may see a moment after go has exited.
 */
async function envBuildRecord (gocache, cacheDir, served) {
  const deadline = Date.now() + 10_000
  for (;;) {
    const status = await readDaemonStatus(gocache, cacheDir)
    if (status.buildsServed > served && status.lastBuild?.command?.[1] === 'build') return status.lastBuild
    if (Date.now() > deadline) throw new Error(`the daemon has no record of the build under grid env: ${JSON.stringify(status)}`)
    await new Promise(resolve => setTimeout(resolve, 20))
  }
}

/**
 * Plain `go build` (no -trimpath of its own: GOFLAGS has it) in the environment `grid env`
 * printed: no grid process, the shim and the cache helper talk to the daemon. What it did is
 * read back from the daemon's last build, outside the timing.
 */
async function envBuild (gocache, cacheDir, vars, { target = options.target, cwd } = {}) {
  const served = (await readDaemonStatus(gocache, cacheDir)).buildsServed
  const daemonBefore = daemon?.ticks() ?? null
  const r = await measure('go', ['build', ...target], { env: { ...benchEnv(gocache), ...vars }, cwd })
  const daemonAfter = daemon?.ticks() ?? null
  if (r.code !== 0) throw failed('go build under grid env', r)
  const last = await envBuildRecord(gocache, cacheDir, served)
  const daemonCpuMs = daemonBefore === null || daemonAfter === null ? 0 : (daemonAfter - daemonBefore) * 1000 / CLOCK_TICKS
  return {
    wallS: sec(r.wallMs),
    cpuS: r.cpuMs === null ? null : sec(r.cpuMs + daemonCpuMs),
    daemonCpuS: sec(daemonCpuMs),
    grid: { node: 'daemon', env: true, actions: last.actions, cache: last.cache, compiles: last.compiles }
  }
}

/**
 * The edit case works on copies of the fixture module, one per side: each sample adds an
 * exported function to one of its packages (so its export data changes, and the packages and
 * binaries above it are built again), then builds `./...` into the side's own output dir. The
 * functions are named by side and sample, so no side's edit is another side's cache hit.
 */
const EDIT_MODULE = join(ROOT, 'test', 'fixtures', 'gomod')
const EDITED_FILE = join('wordfreq', 'wordfreq.go')

async function editCopy (name) {
  const dir = join(tmpRoot, `edit-${name}`)
  await rm(dir, { recursive: true, force: true })
  await cp(EDIT_MODULE, dir, { recursive: true })
  return dir
}

async function edit (dir, tag) {
  await appendFile(join(dir, EDITED_FILE), `\n// Edit${tag} is added by the benchmark: a one-file edit.\nfunc Edit${tag}() int { return ${tag.length} }\n`)
}

/** Builds the edited module one way: plain, grid (grid build, daemon) or env (go under grid env). */
async function editBuild (how, dir, gocache, cacheDir, vars) {
  const build = { target: ['-o', join(dir, 'out') + '/', './...'], cwd: dir }
  if (how === 'plain') return await plainBuild(gocache, build)
  if (how === 'grid') return await gridBuild(gocache, cacheDir, build)
  return await envBuild(gocache, cacheDir, vars, build)
}

/** Seeds an empty grid cache dir with the shim built at setup (a one-time cost per Go version). */
async function emptyGridCache (seedDir) {
  const dir = await freshDir('grid')
  await cp(join(seedDir, 'shim'), join(dir, 'shim'), { recursive: true })
  return dir
}

function logTail (file) {
  try { return readFileSync(file, 'utf8').trim().split('\n').slice(-20).join('\n') } catch { return '(no log)' }
}

function waitForSocket (path, deadline) {
  return new Promise((resolve, reject) => {
    const attempt = () => {
      const socket = createConnection(path)
      socket.once('connect', () => { socket.destroy(); resolve() })
      socket.once('error', () => {
        socket.destroy()
        if (daemon?.exited === true) reject(new Error(`grid daemon exited during start-up:\n${logTail(daemon.logFile)}`))
        else if (Date.now() > deadline) reject(new Error(`grid daemon did not listen on ${path} within ${DAEMON_START_TIMEOUT_MS} ms`))
        else setTimeout(attempt, 100)
      })
    }
    attempt()
  })
}

async function startDaemon (cacheDir) {
  const logFile = join(tmpRoot, 'daemon.log')
  const fd = openSync(logFile, 'a')
  const child = spawn(process.execPath, [GRID, '--cache', cacheDir, '--control', socketPath, 'daemon'], {
    env: benchEnv(join(tmpRoot, 'daemon-gocache')), stdio: ['ignore', 'ignore', fd]
  })
  closeSync(fd)
  const d = {
    child,
    logFile,
    exited: false,
    ticks: () => { const t = procTicks(child.pid); return t === null ? null : t.self + t.children }
  }
  d.whenExited = new Promise(resolve => child.once('exit', () => { d.exited = true; resolve() }))
  daemon = d
  await waitForSocket(socketPath, Date.now() + DAEMON_START_TIMEOUT_MS)
  const r = await measure(process.execPath, [GRID, '--cache', cacheDir, '--control', socketPath, '--json', 'status'], { env: benchEnv(join(tmpRoot, 'daemon-gocache')) })
  const status = r.code === 0 ? JSON.parse(r.stdout) : undefined
  if (status?.running !== true) throw new Error(`grid status does not see the daemon: ${r.stdout}${r.stderr}`)
  return status
}

async function stopDaemon () {
  if (daemon === undefined) return
  const d = daemon
  daemon = undefined
  if (!d.exited) {
    d.child.kill('SIGTERM')
    const timer = setTimeout(() => { if (!d.exited) d.child.kill('SIGKILL') }, DAEMON_STOP_TIMEOUT_MS)
    await d.whenExited
    clearTimeout(timer)
  }
}

/** Go's runtime.GOMAXPROCS(0) as a Go program sees it here (cgroup-aware since Go 1.25). */
async function goMaxProcs (gocache) {
  const dir = await freshDir('gomaxprocs')
  await writeFile(join(dir, 'main.go'), 'package main\n\nimport (\n\t"fmt"\n\t"runtime"\n)\n\nfunc main() { fmt.Println(runtime.GOMAXPROCS(0)) }\n')
  const r = await measure('go', ['run', '-trimpath', 'main.go'], { env: benchEnv(gocache), cwd: dir })
  return r.code === 0 ? Number(r.stdout.trim()) : null
}

// ---------------------------------------------------------------------------------------------
// The benchmark

const options = (() => {
  try { return parseOptions(process.argv.slice(2)) } catch (err) { process.stderr.write(`${err.message}\n${USAGE}\n`); process.exit(2) }
})()

function describe (side, s) {
  let line = `${side.padEnd(14)} ${s.wallS.toFixed(3).padStart(8)} s  cpu ${s.cpuS === null ? '?' : s.cpuS.toFixed(1)} s  load ${s.load1.toFixed(2)}`
  if (s.grid !== undefined) {
    const { cache, compiles } = s.grid
    line += `  [${s.grid.node}: ${cache.hits} hits, ${cache.misses} misses, ${cache.puts} puts, ${compiles.local} local + ${compiles.remote} remote compiles`
    const fb = Object.entries(compiles.fallbacks ?? {}).map(([k, v]) => `${k}×${v}`).join(' ')
    line += fb === '' ? ']' : `, fallbacks ${fb}]`
  }
  return line
}

/** Runs the two sides in the given order, tagging each sample with its round and position. */
async function pair (caseName, round, entries, samples) {
  for (const [position, [side, fn]] of entries.entries()) {
    const load1 = os.loadavg()[0]
    const sample = { round, position: position + 1, load1: round3(load1), ...(await fn()) }
    samples[caseName][side].push(sample)
    progress(`round ${round}/${options.rounds} ${caseName.padEnd(13)} ${describe(side, sample)}`)
  }
}

const ordered = (plainFirst, plain, grid) =>
  plainFirst ? [['plain', plain], ['grid', grid]] : [['grid', grid], ['plain', plain]]

/** The entries turned round by round − 1: over as many rounds as sides, each side runs in each place once. */
const rotated = (round, entries) => entries.map((_, i) => entries[(i + round - 1) % entries.length])

async function main () {
  tmpRoot = await mkdtemp(join(os.tmpdir(), 'grid-bench-'))
  // Short and outside the cache dir: sun_path holds ~107 bytes.
  socketPath = join('/tmp', `grid-bench-${process.pid}.sock`)
  await writeFile(join(tmpRoot, 'config.json'), JSON.stringify(BENCH_CONFIG) + '\n')
  const loadBefore = uptime()
  const gitBefore = gitInfo()
  progress(`temp dir ${tmpRoot}, socket ${socketPath}`)
  progress(`load before: ${loadBefore}`)
  progress(`target: ${options.target.join(' ')}; ${options.rounds} rounds; plain is \`go build -trimpath\` because grid adds -trimpath (like with like)`)

  // Setup: build the shim once (first use on a fresh machine, empty GOCACHE), then time the same
  // tiny build with the shim present; the difference is the one-time shim build.
  const seedDir = await freshDir('seed')
  const first = await gridBuild(await freshDir('gocache'), seedDir, { target: [TINY_PACKAGE] })
  const again = await gridBuild(await freshDir('gocache'), await emptyGridCache(seedDir), { target: [TINY_PACKAGE] })
  const setup = {
    description: `grid build ${TINY_PACKAGE} with empty GOCACHE and grid cache: first with no shim (first use on a machine), then with the shim present`,
    firstUseWallS: first.wallS,
    withShimWallS: again.wallS,
    shimBuildS: round3(first.wallS - again.wallS)
  }
  progress(`setup: first use ${setup.firstUseWallS} s, with the shim already built ${setup.withShimWallS} s (shim build ≈ ${setup.shimBuildS} s, once per Go version)`)

  const samples = {
    cold: { plain: [], grid: [], gridAuto: [] },
    rebuild: { plain: [], grid: [] },
    noopDaemon: { plain: [], grid: [] },
    noopEnv: { plain: [], grid: [] },
    noopEmbedded: { plain: [], grid: [] },
    edit: { plain: [], grid: [], gridEnv: [] }
  }
  let daemonStatus
  let gomaxprocs = null
  const gridCacheDir = join(tmpRoot, 'grid-daemon')

  for (let round = 1; round <= options.rounds; round++) {
    const plainFirst = round % 2 === 1

    // 1. cold: plain, grid, and grid with --toolexec auto (which, with no peers, leaves -toolexec
    //    out). Whichever grid side runs last leaves the daemon and its warm cache to the rebuild
    //    case: the same entries either way, since action IDs do not depend on -toolexec.
    const coldGrid = toolexec => async () => {
      await stopDaemon()
      await rm(gridCacheDir, { recursive: true, force: true })
      await cp(join(seedDir, 'shim'), join(gridCacheDir, 'shim'), { recursive: true })
      const status = await startDaemon(gridCacheDir)
      daemonStatus ??= status
      const gocache = await freshDir('gocache')
      try { return await gridBuild(gocache, gridCacheDir, { toolexec }) } finally { await rm(gocache, { recursive: true, force: true }) }
    }
    await pair('cold', round, rotated(round, [
      ['plain', async () => {
        const gocache = await freshDir('gocache')
        try { return await plainBuild(gocache) } finally { await rm(gocache, { recursive: true, force: true }) }
      }],
      ['grid', coldGrid('always')],
      ['gridAuto', coldGrid('auto')]
    ]), samples)

    // 2. rebuild after `go clean -cache`: an empty GOCACHE on both sides; grid keeps its cache.
    //    Both GOCACHEs are kept, warm, for the no-op case.
    const plainCache = await freshDir('gocache')
    const gridGoCache = await freshDir('gocache')
    await pair('rebuild', round, ordered(plainFirst,
      async () => await plainBuild(plainCache),
      async () => await gridBuild(gridGoCache, gridCacheDir)
    ), samples)

    // 3. no-op, against the daemon, then with the embedded node (daemon stopped, same cache).
    for (let i = 0; i < options.noopRuns; i++) {
      await pair('noopDaemon', round, ordered((plainFirst + i) % 2 === 1,
        async () => await plainBuild(plainCache),
        async () => await gridBuild(gridGoCache, gridCacheDir)
      ), samples)
    }
    // ... and plain go in the environment of `grid env`, against the same daemon and caches
    const vars = await gridEnvVars(gridGoCache, gridCacheDir)
    for (let i = 0; i < options.noopRuns; i++) {
      await pair('noopEnv', round, ordered((plainFirst + i) % 2 === 1,
        async () => await plainBuild(plainCache),
        async () => await envBuild(gridGoCache, gridCacheDir, vars)
      ), samples)
    }
    // 4. one-file edits of the fixture module, the three sides taking turns; each side's copy is
    //    built once first (outside the timing) so that only the edit is left to build
    if (options.editRuns > 0) {
      const copies = { plain: await editCopy('plain'), grid: await editCopy('grid'), gridEnv: await editCopy('env') }
      await editBuild('plain', copies.plain, plainCache)
      await editBuild('grid', copies.grid, gridGoCache, gridCacheDir)
      await editBuild('env', copies.gridEnv, gridGoCache, gridCacheDir, vars)
      for (let i = 0; i < options.editRuns; i++) {
        const tag = side => `${side[0].toUpperCase()}${side.slice(1)}${round}x${i}`
        await pair('edit', round, rotated(round + i, [
          ['plain', async () => { await edit(copies.plain, tag('plain')); return await editBuild('plain', copies.plain, plainCache) }],
          ['grid', async () => { await edit(copies.grid, tag('grid')); return await editBuild('grid', copies.grid, gridGoCache, gridCacheDir) }],
          ['gridEnv', async () => { await edit(copies.gridEnv, tag('env')); return await editBuild('env', copies.gridEnv, gridGoCache, gridCacheDir, vars) }]
        ]), samples)
      }
    }
    await stopDaemon()
    for (let i = 0; i < options.noopRuns; i++) {
      await pair('noopEmbedded', round, ordered((plainFirst + i) % 2 === 1,
        async () => await plainBuild(plainCache),
        async () => await gridBuild(gridGoCache, gridCacheDir)
      ), samples)
    }
    if (gomaxprocs === null) gomaxprocs = await goMaxProcs(plainCache)
    await rm(plainCache, { recursive: true, force: true })
    await rm(gridGoCache, { recursive: true, force: true })
  }

  const loadAfter = uptime()
  progress(`load after: ${loadAfter}`)
  const gitAfter = gitInfo()

  const report = {
    benchmark: 'plain go build vs grid build on one machine (issue 3)',
    date: new Date().toISOString(),
    git: gitBefore,
    gitAfter,
    go: tryExec('go', ['version'], { env: benchEnv(join(tmpRoot, 'xdg', 'go-build')) }),
    node: process.version,
    os: { platform: process.platform, release: os.release(), arch: os.arch(), distro: distro() },
    cpu: { model: os.cpus()[0]?.model ?? null, cores: os.availableParallelism() },
    gomaxprocs: { env: process.env.GOMAXPROCS ?? null, runtime: gomaxprocs },
    goflags: process.env.GOFLAGS ?? null,
    load: { before: loadBefore, after: loadAfter },
    config: {
      rounds: options.rounds,
      noopRunsPerRound: options.noopRuns,
      target: options.target,
      relinked: relinkedMains(),
      plain: `go build -trimpath ${options.target.join(' ')}`,
      grid: `grid --cache <tmp> --control <tmp sock> --json build ${options.target.join(' ')}`,
      notes: [
        'plain is go build -trimpath: grid adds -trimpath, so like is compared with like',
        'each pair alternates which side runs first, and the order flips every round',
        'wallS: spawn to exit of the command (for grid this includes the CLI start-up; grid.cliWallS is what the CLI itself measured)',
        'cpuS: CPU of the whole process tree; for daemon runs plus what the daemon and its compiles used during the build',
        'an "empty" grid cache holds only the shim (built once at setup, see setup); the daemon is (re)started before the cold grid build, outside the timing',
        'rebuild: both sides start from an empty GOCACHE (as after go clean -cache); grid keeps the cache of the cold grid build',
        'noop: both GOCACHEs are those of the rebuild case; grid also keeps its cache',
        'edit: each side edits its own copy of the fixture module (a new exported function, named by side and sample, so no side hits on another\'s entries) and builds ./... into its own dir; the copies are built once first, outside the timing; the three sides take turns in each place',
        'noopEnv: the grid side is plain go build in the environment grid env prints (GOFLAGS with -trimpath and -toolexec, GOCACHEPROG), against the daemon: no grid process; its figures are the daemon\'s record of that build',
        `daemon slots: ${daemonStatus?.slots ?? '?'}; go -p is its default (GOMAXPROCS)`,
        `every node runs the mesh alone (config ${JSON.stringify(BENCH_CONFIG)}): no peers, so every compile is local`,
        'other work on this machine adds noise: see load and each sample\'s load1'
      ]
    },
    setup,
    daemon: daemonStatus === undefined ? null : { slots: daemonStatus.slots, version: daemonStatus.version },
    results: undefined,
    checks: undefined,
    samples
  }
  await writeReport(report)
}

/** Derives results and checks from the samples, then writes the JSON and README.md. */
async function writeReport (report) {
  const load = busyness(report.samples, report.cpu.cores)
  report.results = summarize(report.samples, load)
  report.checks = check(report, load)
  for (const c of report.checks) progress(`CHECK: ${c}`)
  await mkdir(dirname(options.out), { recursive: true })
  await writeFile(options.out, JSON.stringify(report, null, 2) + '\n')
  const readme = join(dirname(options.out), 'README.md')
  await writeFile(readme, renderReadme(report, options.out))
  progress(`wrote ${relative(process.cwd(), options.out) || options.out} and ${relative(process.cwd(), readme) || readme}`)
  process.stderr.write('\n' + renderTable(report) + '\n')
}

/** The 1-minute load seen at the start of each sample. Our own build keeps it near the core count. */
function busyness (samples, cores) {
  const loads = Object.values(samples).flatMap(sides => [...sides.plain, ...sides.grid]).map(s => s.load1)
  const max = Math.max(...loads)
  const mid = median(loads)
  return { max, median: mid, cores, busy: mid > NOISY_LOAD_PER_CORE * cores }
}

function side (xs, key) { return median(xs.map(s => s[key])) }

function summarize (samples, load) {
  const ratioCase = (name, description, target, gridSide = 'grid') => {
    const { plain, [gridSide]: grid } = samples[name]
    const plainS = side(plain, 'wallS')
    const gridS = side(grid, 'wallS')
    const plainCpu = side(plain, 'cpuS')
    const gridCpu = side(grid, 'cpuS')
    const byRound = plain.map(p => [p, grid.find(g => g.round === p.round)]).filter(([, g]) => g !== undefined)
    const ratio = round3(gridS / plainS)
    return {
      description,
      plainMedianS: round3(plainS),
      gridMedianS: round3(gridS),
      ratio,
      // On a busy machine the wall-clock ratio says more about the neighbours than about grid.
      ...(target === undefined ? {} : { target: `≤ ${target}`, meetsTarget: load.busy ? null : ratio <= target }),
      ratioPerRound: byRound.map(([p, g]) => round3(g.wallS / p.wallS)),
      plainCpuMedianS: plainCpu === null ? null : round3(plainCpu),
      gridCpuMedianS: gridCpu === null ? null : round3(gridCpu),
      cpuRatio: plainCpu === null || gridCpu === null ? null : round3(gridCpu / plainCpu)
    }
  }
  const addedCase = (name, description, gridSide = 'grid') => {
    const { plain, [gridSide]: grid } = samples[name]
    const plainS = side(plain, 'wallS')
    const gridS = side(grid, 'wallS')
    const paired = plain.map((p, i) => grid[i] === undefined ? undefined : (grid[i].wallS - p.wallS) * 1000)
    const plainCpu = side(plain, 'cpuS')
    const gridCpu = side(grid, 'cpuS')
    return {
      description,
      plainMedianS: round3(plainS),
      gridMedianS: round3(gridS),
      addedMs: Math.round((gridS - plainS) * 1000),
      addedMsPairedMedian: Math.round(median(paired)),
      plainCpuMedianS: plainCpu === null ? null : round3(plainCpu),
      gridCpuMedianS: gridCpu === null ? null : round3(gridCpu),
      addedCpuMs: plainCpu === null || gridCpu === null ? null : Math.round((gridCpu - plainCpu) * 1000)
    }
  }
  return {
    cold: ratioCase('cold', 'empty GOCACHE; grid: empty grid cache too (daemon)', COLD_TARGET_RATIO),
    ...((samples.cold.gridAuto?.length ?? 0) === 0
      ? {}
      : { coldAuto: ratioCase('cold', 'as cold, grid with --toolexec auto: no peers, so no -toolexec (only the cache goes through grid)', undefined, 'gridAuto') }),
    rebuild: ratioCase('rebuild', 'after go clean -cache: empty GOCACHE; grid: warm grid cache (daemon)'),
    noopDaemon: addedCase('noopDaemon', 'warm GOCACHE; grid: warm grid cache, daemon'),
    ...((samples.noopEnv?.grid.length ?? 0) === 0
      ? {}
      : { noopEnv: addedCase('noopEnv', 'warm GOCACHE; grid: plain go build in the environment grid env prints, warm grid cache, daemon (no grid process)') }),
    noopEmbedded: addedCase('noopEmbedded', 'warm GOCACHE; grid: warm grid cache, embedded node (no daemon)'),
    ...((samples.edit?.grid.length ?? 0) === 0
      ? {}
      : {
          edit: addedCase('edit', 'one exported function added to a package of the fixture module, then go build -o DIR ./... (warm caches otherwise); grid build, daemon'),
          editEnv: addedCase('edit', 'the same edit and build; plain go build under grid env, daemon', 'gridEnv')
        })
  }
}

/** What the grid summaries must show for the numbers to mean what they claim. */
function check (report, load) {
  const { samples } = report
  const problems = []
  if (report.gitAfter !== undefined && report.git?.commit !== report.gitAfter?.commit) {
    problems.push(`the checkout moved from ${report.git?.commit} to ${report.gitAfter?.commit} during the run`)
  }
  const compiles = s => s.grid.compiles.local + s.grid.compiles.remote
  for (const s of samples.cold.grid) {
    if (s.grid.cache.hits !== 0) problems.push(`cold round ${s.round}: ${s.grid.cache.hits} cache hits in an empty grid cache`)
    if (compiles(s) === 0) problems.push(`cold round ${s.round}: no compiles went through the node`)
  }
  for (const s of samples.cold.gridAuto ?? []) {
    if (s.grid.cache.hits !== 0) problems.push(`cold --toolexec auto round ${s.round}: ${s.grid.cache.hits} cache hits in an empty grid cache`)
    if (s.grid.toolexec !== false || compiles(s) !== 0) problems.push(`cold --toolexec auto round ${s.round}: the build ran through the shim`)
  }
  for (const name of ['rebuild', 'noopDaemon', 'noopEnv', 'noopEmbedded']) {
    for (const s of samples[name]?.grid ?? []) {
      if (compiles(s) !== 0) problems.push(`${name} round ${s.round}: ${compiles(s)} compiles with a warm grid cache`)
      if (s.grid.cache.misses > report.config.relinked) problems.push(`${name} round ${s.round}: ${s.grid.cache.misses} cache misses with a warm grid cache (${report.config.relinked} expected: main packages relinked)`)
    }
  }
  if (load.busy) {
    problems.push(`the machine was busy (1-minute load median ${load.median.toFixed(1)}, up to ${load.max.toFixed(1)}, on ${load.cores} cores): wall-clock ratios are unreliable and the target is not judged; CPU ratios hold better`)
  }
  for (const [name, sides] of Object.entries(samples)) {
    for (const s of sides.grid) {
      const fb = Object.values(s.grid.compiles.fallbacks ?? {}).reduce((a, b) => a + b, 0)
      if (fb !== 0) problems.push(`${name} round ${s.round}: ${fb} compiles fell back to running in the shim`)
    }
  }
  return problems
}

function gitInfo () {
  const commit = tryExec('git', ['rev-parse', 'HEAD'], { cwd: ROOT })
  if (commit === null) return null
  const dirty = tryExec('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: ROOT })
  return { commit, dirty: dirty !== null && dirty !== '' }
}

function distro () {
  try {
    const m = /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(readFileSync('/etc/os-release', 'utf8'))
    return m?.[1] ?? null
  } catch { return null }
}

function renderTable (report) {
  const r = report.results
  const f = x => x === null ? '?' : x.toFixed(2)
  const rows = [
    '| case | plain `go build -trimpath` | `grid build` | result | CPU plain → grid |',
    '| --- | ---: | ---: | --- | --- |',
    `| cold (empty GOCACHE, empty grid cache) | ${f(r.cold.plainMedianS)} s | ${f(r.cold.gridMedianS)} s | **×${r.cold.ratio.toFixed(3)}** (target ≤ ${COLD_TARGET_RATIO}: ${r.cold.meetsTarget === null ? 'not judged, machine busy' : r.cold.meetsTarget ? 'met' : 'missed'}) | ${f(r.cold.plainCpuMedianS)} → ${f(r.cold.gridCpuMedianS)} s (×${f(r.cold.cpuRatio)}) |`,
    ...(r.coldAuto === undefined ? [] : [`| cold, \`grid --toolexec auto\` (no peers: no shim) | ${f(r.coldAuto.plainMedianS)} s | ${f(r.coldAuto.gridMedianS)} s | ×${r.coldAuto.ratio.toFixed(3)} | ${f(r.coldAuto.plainCpuMedianS)} → ${f(r.coldAuto.gridCpuMedianS)} s (×${f(r.coldAuto.cpuRatio)}) |`]),
    `| rebuild after \`go clean -cache\` (grid cache warm) | ${f(r.rebuild.plainMedianS)} s | ${f(r.rebuild.gridMedianS)} s | **×${r.rebuild.ratio.toFixed(3)}** | ${f(r.rebuild.plainCpuMedianS)} → ${f(r.rebuild.gridCpuMedianS)} s (×${f(r.rebuild.cpuRatio)}) |`,
    `| no-op (all warm), daemon | ${f(r.noopDaemon.plainMedianS)} s | ${f(r.noopDaemon.gridMedianS)} s | **+${r.noopDaemon.addedMs} ms** | ${f(r.noopDaemon.plainCpuMedianS)} → ${f(r.noopDaemon.gridCpuMedianS)} s |`,
    ...(r.noopEnv === undefined ? [] : [`| no-op (all warm), plain \`go build\` under \`grid env\` (daemon) | ${f(r.noopEnv.plainMedianS)} s | ${f(r.noopEnv.gridMedianS)} s | **+${r.noopEnv.addedMs} ms** | ${f(r.noopEnv.plainCpuMedianS)} → ${f(r.noopEnv.gridCpuMedianS)} s |`]),
    `| no-op (all warm), embedded node | ${f(r.noopEmbedded.plainMedianS)} s | ${f(r.noopEmbedded.gridMedianS)} s | **+${r.noopEmbedded.addedMs} ms** | ${f(r.noopEmbedded.plainCpuMedianS)} → ${f(r.noopEmbedded.gridCpuMedianS)} s |`,
    ...(r.edit === undefined
      ? []
      : [`| one-file edit of the fixture module (${EDITED_FILE}), then \`build ./...\` | ${f(r.edit.plainMedianS)} s | ${f(r.edit.gridMedianS)} s | **+${r.edit.addedMs} ms** | ${f(r.edit.plainCpuMedianS)} → ${f(r.edit.gridCpuMedianS)} s |`,
          `| the same, plain \`go build\` under \`grid env\` (daemon) | ${f(r.editEnv.plainMedianS)} s | ${f(r.editEnv.gridMedianS)} s | **+${r.editEnv.addedMs} ms** | ${f(r.editEnv.plainCpuMedianS)} → ${f(r.editEnv.gridCpuMedianS)} s |`])
  ]
  return rows.join('\n')
}

function renderReadme (report, out) {
  const label = { gridAuto: 'grid --toolexec auto', gridEnv: 'go under grid env' }
  const samplesOf = name => ['plain', 'grid', 'gridAuto', 'gridEnv'].filter(s => (report.samples[name]?.[s]?.length ?? 0) > 0)
    .map(s => `${label[s] ?? s} ${report.samples[name][s].map(x => x.wallS.toFixed(2)).join(', ')}`).join('; ')
  const compilesOf = name => report.samples[name].grid.map(s => `${s.grid.compiles.local + s.grid.compiles.remote}`).join(', ')
  const hitsOf = name => report.samples[name].grid.map(s => `${s.grid.cache.hits}/${s.grid.cache.hits + s.grid.cache.misses}`).join(', ')
  const git = report.git === null ? 'no git' : `${report.git.commit.slice(0, 12)}${report.git.dirty ? ' (with uncommitted changes)' : ''}`
  // This file is regenerated on every run: link the other write-ups that live beside it.
  const others = readdirSync(dirname(out)).filter(f => f.endsWith('.md') && f !== 'README.md').sort()
  const othersLine = others.length === 0 ? '' : `\nOther benchmarks here: ${others.map(f => `[\`${f}\`](${f})`).join(', ')}.\n`
  return `# Benchmarks

Plain \`go build\` against \`grid build\` on one machine, no peers. Produced by
\`scripts/bench.js\`; the full record (every sample, CPU times, grid summaries, machine, load) is
[\`${relative(dirname(out), out)}\`](${relative(dirname(out), out)}).
${othersLine}
## Latest results

${report.date.slice(0, 10)}, \`${report.config.target.join(' ')}\`, ${report.config.rounds} rounds, commit ${git}; ${report.go};
node ${report.node}; ${report.cpu.model} × ${report.cpu.cores} cores, GOMAXPROCS ${report.gomaxprocs.runtime ?? '?'}
(${report.os.distro ?? report.os.platform}, kernel ${report.os.release}). Medians of wall-clock seconds.

${renderTable(report)}

${report.checks.length === 0 ? '' : `**Warnings:** ${report.checks.join('; ')}.\n\n`}* Load before: \`${report.load.before.replace(/^.*load average/, 'load average')}\`; after:
  \`${report.load.after.replace(/^.*load average/, 'load average')}\`. On a shared machine wall
  times are noisy; the CPU column (whole process tree, plus the daemon's share) is steadier.
* Samples (s): cold ${samplesOf('cold')} (grid/plain by round ${report.results.cold.ratioPerRound.join(', ')}${report.results.coldAuto === undefined ? '' : `; --toolexec auto/plain ${report.results.coldAuto.ratioPerRound.join(', ')}`}).
  Rebuild ${samplesOf('rebuild')}.${report.results.edit === undefined ? '' : `\n  One-file edit ${samplesOf('edit')}.`}
* Compiles run by grid: cold ${compilesOf('cold')}; rebuild ${compilesOf('rebuild')} (hits/lookups
  ${hitsOf('rebuild')}); no-op ${compilesOf('noopDaemon')}.
* One-time shim build on first use: ≈ ${report.setup.shimBuildS} s (${report.setup.firstUseWallS} s for a
  first \`grid build\` of a tiny package on a fresh machine, ${report.setup.withShimWallS} s once the shim exists).

## What is measured

Each case is a pair, plain then grid or grid then plain; the order alternates within a round
and flips every round, so drift in the machine's load falls on both sides. The cold case has a
third side, \`grid --toolexec auto build\`: with no peer to take a compile it runs go without
\`-toolexec\`, so only the cache goes through grid; the three sides take turns in each place.

| case | plain | grid | result |
| --- | --- | --- | --- |
| cold | empty GOCACHE | empty GOCACHE, empty grid cache | ratio of medians grid/plain, target ≤ ${COLD_TARGET_RATIO} |
| cold, \`--toolexec auto\` | (the same plain samples) | as cold, without \`-toolexec\` | ratio |
| rebuild after \`go clean -cache\` | empty GOCACHE (cold again) | empty GOCACHE, grid cache warm from the cold grid build | ratio |
| no-op | warm GOCACHE | warm GOCACHE, warm grid cache | added ms, median(grid) − median(plain) |
| no-op, \`grid env\` | (as no-op) | \`go build\` in the environment \`grid env\` prints: no grid process | added ms |
| one-file edit | the fixture module (test/fixtures/gomod) with an exported function added to one package, \`go build -trimpath -o DIR ./...\`; std warm | the same edit (another name) in a copy of its own, \`grid build\`, and \`go build\` under \`grid env\` | added ms |

* Plain is \`go build -trimpath\`: \`grid build\` adds \`-trimpath\`, so like is compared with like.
* Grid runs against a daemon the script starts (own temp cache dir, socket in /tmp), the office
  shape; the no-op case is measured again with plain \`go build\` under \`grid env\` (the same
  daemon, no grid process per build) and with the embedded node (no daemon), which is what a
  fresh machine gets. The daemon is restarted on an empty cache before each cold grid build,
  outside the timing.
* Every node runs the mesh, as by default, but alone: the script's own config listens on an
  ephemeral loopback port with mDNS off, so no other grid node can join; every compile is local.
* "Empty" grid cache means no entries: the shim, built once per Go version on first use, is
  built at setup and copied in, and its one-time cost is reported separately.
* Wall time runs from spawn to exit, so grid's includes starting the Node CLI.
* All caches live in a temp dir removed at the end; \`~/.cache\` is never touched.

## Reproduce

\`\`\`
npm run bench                       # npm run build && node scripts/bench.js
node scripts/bench.js --rounds 5 --target std --noop-runs 3 --out /tmp/bench.json
\`\`\`

It takes several minutes (a cold \`std\` build is 20–30 s on 2 idle cores and there are about
four per round). Progress goes to stderr. Run it on an otherwise idle machine when you can;
\`uptime\` before and after is in the JSON.
`
}

// ---------------------------------------------------------------------------------------------

let cleaning = false
async function cleanup () {
  if (cleaning) return
  cleaning = true
  await stopDaemon().catch(() => {})
  if (tmpRoot !== undefined) await rm(tmpRoot, { recursive: true, force: true }).catch(() => {})
  if (socketPath !== undefined && existsSync(socketPath)) rmSync(socketPath, { force: true })
}

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    progress(`${signal}: cleaning up`)
    void cleanup().finally(() => process.exit(130))
  })
}

try {
  if (options.rerender) await writeReport(JSON.parse(await readFile(options.out, 'utf8')))
  else await main()
} catch (err) {
  progress(`failed: ${err.stack ?? err}`)
  process.exitCode = 1
} finally {
  await cleanup()
}
