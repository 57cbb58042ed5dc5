#!/usr/bin/env node
/**
 * Benchmark (not a test): compiles on idle peers (docs/remote.md) in the lab office
 * (scripts/lab, docs/lab.md): the speedup curve of a cold build on one host as helpers are
 * added, beside the critical-path bound, and the per-task overhead. Needs root.
 *
 *   npx tsc --build && sudo node scripts/bench-remote.js [--rounds 1] [--targets std,cmd/...:1]
 *                                                        [--helpers 0,1,2,3] [--period 10]
 *
 * One lab, 4 hosts of equal quota (0.5 core each in 10 ms periods, 1gbit links), with a unique
 * prefix, always torn down. h1 builds; h2, h3, h4 are the helpers. Per target, R rounds; each round runs these
 * cases on h1, the order reversed every round:
 *
 *   plain    `go build -trimpath T`, empty GOCACHE; no daemon runs anywhere
 *   grid-K   for K in --helpers: every host taking part (h1 and h2…h(K+1)) gets an empty grid
 *            cache (only the shim, a one-time build per Go version made at setup, is copied
 *            in) and an empty GOCACHE; daemons start on h2…h(K+1) with
 *            `--slots 1 --accept-remote always --trust self` and on h1 with
 *            `--slots 1 --trust self` (the requester, default `--offload busy`); the other
 *            hosts run nothing. Outside the timing, h1's `grid --json peers` is polled until it
 *            lists K connected peers whose advert names a toolchain. Then
 *            `grid --json --graph build T` with an empty GOCACHE; every daemon is stopped afterwards.
 *
 * `--trust self` keeps the shared cache out of it: h1 takes no cache entries from peers (it
 * does not even ask), so every package is compiled, locally or on a helper.
 *
 * Each timed build is `scripts/lab run h1 -- …` (h1's namespace and cgroup, cwd --cwd); wall
 * time is from spawn to exit. Around it: the CPU time and CFS throttling of every host's cgroup,
 * h1's eth0 byte counters, the machine's load averages. Grid's whole `--json` summary is kept
 * with each sample; from it come the compiles split local/remote (and why work stayed local),
 * the per-task overhead (`compiles.overhead`: per remote task, wall time at the requester minus
 * the worker's compile time; p50, p99) and, from grid-0, the bound (`compiles.criticalPath`:
 * the critical path through the package graph from the measured per-package compile times,
 * and their sum; the speedup with K helpers is at most min(K + 1, sum / critical path)).
 * Fields missing from the summary are recorded as null.
 *
 * Writes JSON (default docs/benchmarks/remote.json), and remote.md and remote.svg (the curve)
 * beside it. Progress goes to stderr. Node builtins only.
 */
import { execFileSync } from 'node:child_process'
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { cp, mkdir, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import { basename, dirname, join, relative, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import {
  cgroupCpuSeconds, cgroupThrottle, GRID, LAB, LabRun, loadavg, maxOf, median, netCounters,
  parseTargets, posInt, r2, r3, readLog, ROOT, sleep } from './lib/lab-bench.js'

const HOSTS = 4
const CPU = 0.5
const RATE = '1gbit'
const HELPER_ARGS = ['--slots', '1', '--accept-remote', 'always', '--trust', 'self']
const REQUESTER_ARGS = ['--slots', '1', '--trust', 'self']
/** A package with no dependencies: building it at setup makes the shim, and little else. */
const TINY_PACKAGE = 'internal/goarch'
/** The node that builds the shim at setup, outside the lab: nobody can find it. */
const SEED_CONFIG = { mdns: false, listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap: [] }
/** The issue's targets: std with 3 helpers at least this fast against plain, and this overhead. */
const GOAL = { target: 'std', helpers: 3, speedup: 2.5, overheadP50Ms: 5 }

const { values: opts } = parseArgs({
  options: {
    rounds: { type: 'string', default: '1' },
    targets: { type: 'string', default: 'std' },
    helpers: { type: 'string', default: '0,1,2,3' },
    period: { type: 'string', default: '10' },
    cwd: { type: 'string', default: ROOT },
    out: { type: 'string', default: join(ROOT, 'docs', 'benchmarks', 'remote.json') },
    'build-timeout': { type: 'string', default: '1800' },
    'peer-timeout': { type: 'string', default: '90' },
    rerender: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' }
  }
})
if (opts.help) {
  process.stderr.write(`usage: sudo node scripts/bench-remote.js [--rounds 1] [--targets std,cmd/...:1] [--helpers 0,1,2,3]
         [--period 10] [--cwd DIR] [--out docs/benchmarks/remote.json] [--build-timeout 1800] [--peer-timeout 90]

  --rounds N       rounds per target (default 1)
  --targets LIST   comma-separated go package patterns; TARGET:N gives that target N rounds
                   (default std; cmd/... under a 0.5-core quota takes many minutes per case)
  --helpers LIST   helper counts to run, each 0-${HOSTS - 1} (default 0,1,2,3; the bound needs 0)
  --period MS      the CPU quota's period (default 10: a saturated host stalls 5 ms at most,
                   as a slower CPU would, not 50 ms as with the kernel's 100; docs/lab.md)
  --cwd DIR        where the builds run (default the repo root); a relative pattern such as ./...
                   needs the module's directory. A single main package writes its binary there.
                   A module's dependencies are downloaded first (go mod download), outside the lab.
                   scripts/realworld/gopls is a real one: --targets golang.org/x/tools/gopls
  --out FILE       the JSON; the .md and .svg are written beside it
  --build-timeout  seconds before one build is killed (default 1800)
  --peer-timeout   seconds to wait for h1 to see its helpers (default 90)
  --rerender       run nothing: the .md and .svg again from the samples in --out
`)
  process.exit(2)
}
const ROUNDS = posInt(opts.rounds, '--rounds')
const PERIOD_MS = posInt(opts.period, '--period')
const TARGETS = parseTargets(opts.targets, ROUNDS)
if (TARGETS.length === 0) { process.stderr.write('--targets: nothing to build\n'); process.exit(2) }
const HELPERS = [...new Set(opts.helpers.split(',').map(s => s.trim()).filter(Boolean).map(s => {
  const k = Number(s)
  if (!Number.isInteger(k) || k < 0 || k > HOSTS - 1) { process.stderr.write(`--helpers: each a count from 0 to ${HOSTS - 1}, got ${s}\n`); process.exit(2) }
  return k
}))].sort((a, b) => a - b)
if (HELPERS.length === 0) { process.stderr.write('--helpers: nothing to run\n'); process.exit(2) }
const CASES = ['plain', ...HELPERS.map(k => `grid-${k}`)]
const CWD = resolve(opts.cwd)
const BUILD_TIMEOUT_MS = posInt(opts['build-timeout'], '--build-timeout') * 1000
const PEER_TIMEOUT_MS = posInt(opts['peer-timeout'], '--peer-timeout') * 1000
const OUT = resolve(opts.out)
const OUT_MD = join(dirname(OUT), basename(OUT).replace(/\.json$/, '') + '.md')
const OUT_SVG = join(dirname(OUT), basename(OUT).replace(/\.json$/, '') + '.svg')

const lab = new LabRun({ name: 'bench-remote', tag: 'br', timeoutMs: BUILD_TIMEOUT_MS })
const say = (msg) => lab.say(msg)
const range = (from, to) => Array.from({ length: Math.max(0, to - from + 1) }, (_, n) => from + n)
const HOST_NUMBERS = range(1, HOSTS)
const isObject = (x) => typeof x === 'object' && x !== null && !Array.isArray(x)
const num = (x) => typeof x === 'number' && Number.isFinite(x) ? x : null

/** A grid summary with the shim's path (in the lab's temp dir) in go's command shown as <shim>. */
function withoutLabPaths (summary) {
  if (!Array.isArray(summary?.command)) return summary
  return { ...summary, command: summary.command.map(a => typeof a === 'string' && a.startsWith('-toolexec=') ? '-toolexec=<shim>' : a) }
}

// ---------------------------------------------------------------- setup: the shim

/** The shim seed: `<cache>/shim` of a node that built a tiny package (a one-time cost per Go version). */
let shim

async function seedShim () {
  const cache = join(lab.tmp, 'seed-cache')
  const config = join(lab.tmp, 'seed-config.json')
  await writeFile(config, JSON.stringify(SEED_CONFIG) + '\n')
  const r = await lab.run(process.execPath, [GRID, '--json', 'build', TINY_PACKAGE], {
    env: lab.baseEnv({ GRID_CACHE: cache, GRID_CONTROL: join(lab.tmp, 'seed.sock'), GRID_CONFIG: config, GOCACHE: join(lab.tmp, 'seed-gocache') }),
    timeoutMs: 600_000
  })
  if (r.code !== 0) throw new Error(`grid build ${TINY_PACKAGE} (to build the shim) failed (${r.code}): ${r.stderr.slice(-3000)}`)
  const dir = join(cache, 'shim')
  const hash = readdirSync(dir).filter(d => statSync(join(dir, d)).isDirectory())
    .sort((a, b) => statSync(join(dir, b)).mtimeMs - statSync(join(dir, a)).mtimeMs)[0]
  if (hash === undefined) throw new Error(`grid build ${TINY_PACKAGE} left no shim in ${dir}`)
  return { dir, hash, wallS: r3(r.wallS) }
}

/** Host i as new: an empty grid cache holding only the shim, an empty GOCACHE, a fresh log. */
async function freshHost (i) {
  const d = lab.hostDir(i)
  for (const sub of ['cache', 'gocache', 'daemon.log']) await rm(join(d, sub), { recursive: true, force: true })
  await mkdir(join(d, 'gocache'), { recursive: true })
  await cp(shim.dir, join(d, 'cache', 'shim'), { recursive: true })
}

async function freshDir (name) {
  const d = join(lab.hostDir(1), name)
  await rm(d, { recursive: true, force: true })
  await mkdir(d, { recursive: true })
  return d
}

// ---------------------------------------------------------------- measuring one build

async function snapshot () {
  return {
    net1: await netCounters(lab.prefix, 1),
    cpu: HOST_NUMBERS.map(i => cgroupCpuSeconds(lab.prefix, i)),
    thr: HOST_NUMBERS.map(i => cgroupThrottle(lab.prefix, i))
  }
}

function delta (a, b) {
  const d = (x, y) => x === null || y === null ? null : y - x
  const perHost = (f) => Object.fromEntries(HOST_NUMBERS.map((i, n) => [`h${i}`, f(n)]))
  return {
    h1RxBytes: b.net1.rxBytes - a.net1.rxBytes,
    h1TxBytes: b.net1.txBytes - a.net1.txBytes,
    h1RxPackets: b.net1.rxPackets - a.net1.rxPackets,
    h1TxPackets: b.net1.txPackets - a.net1.txPackets,
    cpuS: perHost(n => r3(d(a.cpu[n], b.cpu[n]))),
    throttle: perHost(n => {
      const periods = d(a.thr[n].periods, b.thr[n].periods)
      const throttled = d(a.thr[n].throttled, b.thr[n].throttled)
      return { periods, throttled, throttledS: r3(d(a.thr[n].throttledS, b.thr[n].throttledS)), share: periods ? r3(throttled / periods) : null }
    })
  }
}

/** Runs CMD on h1 (`scripts/lab run h1 -- CMD`, cwd --cwd) and measures around it. */
async function timed (label, cmd) {
  const loadBefore = loadavg()
  const before = await snapshot()
  const r = await lab.run(LAB, ['--prefix', lab.prefix, 'run', 'h1', '--', ...cmd], { cwd: CWD })
  const after = await snapshot()
  const sample = { case: label, ok: r.code === 0, exitCode: r.code, wallS: r3(r.wallS), ...delta(before, after), loadBefore, loadAfter: loadavg() }
  if (r.code !== 0) sample.error = (r.stderr.trim().split('\n').slice(-20).join('\n') || r.stdout.slice(-2000))
  return { sample, r }
}

// ---------------------------------------------------------------- the cases

async function casePlain (target) {
  const gocache = await freshDir('gocache-plain')
  try {
    const { sample } = await timed('plain', ['env', `GOCACHE=${gocache}`, 'go', 'build', '-trimpath', ...target.split(' ')])
    return sample
  } finally {
    await rm(gocache, { recursive: true, force: true })
  }
}

/** A peer as `grid --json peers` lists it, in brief; `host` from its lab address. */
function peerBrief (p) {
  const a = isObject(p.advert) ? p.advert : {}
  const ip = [p.address, ...(p.addrs ?? [])].map(x => /10\.77\.0\.(\d+)/.exec(x ?? '')?.[1]).find(Boolean)
  return {
    peerId: p.peerId,
    host: ip === undefined ? null : `h${ip}`,
    rttMs: p.rttMs ?? null,
    toolchains: Array.isArray(a.toolchains) ? a.toolchains.map(t => t?.go ?? null) : null,
    slots: a.slots ?? null,
    accepting: a.accepting ?? null,
    policy: a.policy ?? null,
    load: a.load ?? null,
    remote: p.remote ?? null
  }
}
const advertsToolchain = (p) => Array.isArray(p.advert?.toolchains) && p.advert.toolchains.length > 0

/** What this benchmark reads from grid's `--json` summary; anything absent is null. */
function gridFacts (s) {
  const c = isObject(s?.compiles) ? s.compiles : {}
  const o = isObject(c.overhead) ? c.overhead : null
  const cp = isObject(c.criticalPath) ? c.criticalPath : null
  const races = isObject(c.races) ? c.races : null
  // grid adds -p only when its slots exceed the machine's cores; else go's default, GOMAXPROCS
  // (every core of the machine: a lab host sees them all).
  const p = s?.command?.indexOf?.('-p') ?? -1
  return {
    wallMs: num(s?.wallMs),
    exitCode: num(s?.exitCode),
    actions: num(s?.actions),
    goP: p >= 0 ? num(Number(s.command[p + 1])) : Array.isArray(s?.command) ? os.availableParallelism() : null,
    goPSet: p >= 0,
    local: num(c.local),
    remote: num(c.remote),
    fromBacklog: num(c.fromBacklog),
    failed: num(c.failed),
    fallbacks: isObject(c.fallbacks) ? c.fallbacks : null,
    localReasons: isObject(c.localReasons) ? c.localReasons : null,
    byPeer: isObject(c.byPeer) ? c.byPeer : null,
    remoteTransferMs: num(c.remoteTransferMs),
    remoteCompileMs: num(c.remoteCompileMs),
    overhead: o === null ? null : { count: num(o.count), p50Ms: num(o.p50Ms), p99Ms: num(o.p99Ms) },
    races,
    criticalPath: cp === null ? null : { ms: num(cp.ms), totalMs: num(cp.totalMs) }
  }
}

async function caseGrid (target, k) {
  const label = `grid-${k}`
  const helpers = range(2, k + 1)
  await lab.lab(['stop-all']).catch(() => {})
  for (const i of [1, ...helpers]) await freshHost(i)
  let gocache
  try {
    await Promise.all(helpers.map(i => lab.lab(['start', `h${i}`, '--', ...HELPER_ARGS])))
    await lab.lab(['start', 'h1', '--', ...REQUESTER_ARGS])
    const ready = k === 0
      ? { seconds: 0, list: [] }
      : await lab.waitForPeers(1, k, { timeoutMs: PEER_TIMEOUT_MS, accept: advertsToolchain })
    await sleep(1000) // let the daemons' start-up work settle before the clock starts
    gocache = await freshDir('gocache-grid')
    // --graph: grid-0 has no peer, and the bound comes from its critical path
    const { sample, r } = await timed(label, ['env', `GOCACHE=${gocache}`, process.execPath, GRID, '--json', '--graph', 'build', ...target.split(' ')])
    sample.helpers = k
    sample.secondsToReady = ready.seconds
    sample.peersBefore = ready.list.map(peerBrief)
    try {
      sample.summary = withoutLabPaths(JSON.parse(r.stdout.trim().split('\n').reverse().find(l => l.startsWith('{'))))
    } catch {
      sample.summary = null
      if (sample.ok) { sample.ok = false; sample.error = `no JSON summary on stdout: ${r.stdout.slice(-500)}` }
    }
    sample.grid = gridFacts(sample.summary)
    // h1's view of its helpers after the build: remote compiles ok/failed per peer.
    sample.peersAfter = (await lab.connectedPeers(1)).map(peerBrief)
    // The seeded shim must be the one used: if the tree was rebuilt since setup, grid builds a
    // new shim inside the timed build (tens of seconds under the quota).
    const shimUsed = /-toolexec=\S*\/shim\/([^/]+)\//.exec(sample.summary?.command?.join(' ') ?? '')?.[1]
    if (shimUsed !== undefined && shimUsed !== shim.hash) {
      sample.ok = false
      sample.error = `grid used shim ${shimUsed}, not the one seeded at setup (${shim.hash}): the tree changed during the run`
    }
    if (!sample.ok) sample.daemonLogTail = readLog(join(lab.hostDir(1), 'daemon.log'))
    return sample
  } finally {
    await lab.lab(['stop-all']).catch((err) => say(`stop-all: ${err.message}`))
    if (gocache !== undefined) await rm(gocache, { recursive: true, force: true })
  }
}

function runCase (c, target) {
  return c === 'plain' ? casePlain(target) : caseGrid(target, Number(c.slice('grid-'.length)))
}

// ---------------------------------------------------------------- summary

function sumCounts (objs) {
  const out = {}
  for (const o of objs) for (const [k, v] of Object.entries(o ?? {})) if (typeof v === 'number') out[k] = (out[k] ?? 0) + v
  return out
}

/** A failed sample in one line: the case, grid's counts if it got that far, go's first error. */
function failure (s) {
  const g = s.summary ? gridFacts(s.summary) : null
  const first = s.error?.split('\n').find(l => l.trim() !== '' && !l.startsWith('#')) ?? 'failed'
  return `${s.case} round ${s.round}` + (s.exitCode !== undefined ? ` (exit ${s.exitCode})` : '') +
    (g ? `, compiles ${g.local} local / ${g.remote} remote / ${g.failed} failed${raced(g.races)}` : '') + `: ${first.trim()}`
}

function summarize (t, samples, helpers) {
  const ok = (c) => samples.filter(s => s.case === c && s.ok)
  const med = (c, f) => r3(median(ok(c).map(f)))
  const plain = med('plain', s => s.wallS)
  const grid0 = med('grid-0', s => s.wallS)
  // The bound, from the grid-0 build of each round: every compile local, one at a time.
  const paths = ok('grid-0').map(s => s.grid?.criticalPath).filter(cp => cp?.ms > 0 && cp.totalMs !== null)
  const bound = r2(median(paths.map(cp => cp.totalMs / cp.ms)))
  const hostOf = (s) => Object.fromEntries([...(s.peersBefore ?? []), ...(s.peersAfter ?? [])].map(p => [p.peerId, p.host ?? p.peerId.slice(-8)]))
  const cases = {}
  for (const k of helpers) {
    const c = `grid-${k}`
    const g = ok(c).map(s => s.grid ?? gridFacts(null))
    const wall = med(c, s => s.wallS)
    const gs = (f) => r3(median(g.map(f)))
    const withTasks = g.filter(x => x.overhead?.count > 0)
    cases[c] = {
      helpers: k,
      wallS: { median: wall, samples: ok(c).map(s => s.wallS) },
      speedup: plain !== null && wall ? r2(plain / wall) : null,
      speedupVsGrid0: grid0 !== null && wall ? r2(grid0 / wall) : null,
      bound: bound === null ? null : r2(Math.min(k + 1, bound)),
      goP: gs(x => x.goP),
      goPSet: g.some(x => x.goPSet),
      compilesLocal: gs(x => x.local),
      compilesRemote: gs(x => x.remote),
      compilesFromBacklog: gs(x => x.fromBacklog ?? null),
      remoteShare: gs(x => x.local !== null && x.remote !== null && x.local + x.remote > 0 ? x.remote / (x.local + x.remote) : null),
      failed: gs(x => x.failed),
      localReasons: sumCounts(g.map(x => x.localReasons)),
      fallbacks: sumCounts(g.map(x => x.fallbacks)),
      races: sumCounts(g.map(x => x.races)),
      remoteByHost: sumCounts(ok(c).map(s => {
        const hosts = hostOf(s)
        return Object.fromEntries(Object.entries(s.grid?.byPeer ?? {}).map(([id, n]) => [hosts[id] ?? id.slice(-8), n]))
      })),
      overheadCount: gs(x => x.overhead?.count),
      // p50 and p99 of builds that sent tasks (an empty build reports 0 for both)
      overheadP50Ms: r3(median(withTasks.map(x => x.overhead.p50Ms))),
      overheadP99Ms: r3(median(withTasks.map(x => x.overhead.p99Ms))),
      overheadP99MsMax: r3(maxOf(withTasks.map(x => x.overhead.p99Ms))),
      remoteTransferMs: gs(x => x.remoteTransferMs),
      remoteCompileMs: gs(x => x.remoteCompileMs),
      secondsToReady: med(c, s => s.secondsToReady),
      h1CpuS: med(c, s => s.cpuS?.h1),
      helpersCpuS: med(c, s => range(2, k + 1).reduce((sum, i) => sum + (s.cpuS?.[`h${i}`] ?? 0), 0)),
      h1ThrottledShare: med(c, s => s.throttle?.h1?.share),
      h1RxBytes: med(c, s => s.h1RxBytes),
      h1TxBytes: med(c, s => s.h1TxBytes)
    }
  }
  const goal = {}
  if (t.target === GOAL.target && cases[`grid-${GOAL.helpers}`] !== undefined) {
    const v = cases[`grid-${GOAL.helpers}`].speedup
    goal.speedup = { case: `grid-${GOAL.helpers}`, want: GOAL.speedup, got: v, met: v === null ? null : v >= GOAL.speedup }
  }
  const p50s = Object.entries(cases).filter(([, c]) => c.overheadP50Ms !== null)
  if (p50s.length > 0) {
    const [worst, c] = p50s.reduce((a, b) => b[1].overheadP50Ms > a[1].overheadP50Ms ? b : a)
    goal.overheadP50 = { case: worst, want: GOAL.overheadP50Ms, got: c.overheadP50Ms, met: c.overheadP50Ms <= GOAL.overheadP50Ms }
  }
  return {
    target: t.target,
    rounds: t.rounds,
    failed: samples.filter(s => !s.ok).map(failure),
    plain: {
      wallS: { median: plain, samples: ok('plain').map(s => s.wallS) },
      h1CpuS: med('plain', s => s.cpuS?.h1),
      h1ThrottledShare: med('plain', s => s.throttle?.h1?.share),
      h1RxBytes: med('plain', s => s.h1RxBytes),
      h1TxBytes: med('plain', s => s.h1TxBytes)
    },
    bound: {
      unlimited: bound,
      criticalPathMs: r3(median(paths.map(cp => cp.ms))),
      totalCompileMs: r3(median(paths.map(cp => cp.totalMs))),
      from: `grid-0, ${paths.length} of ${t.rounds} round(s)`
    },
    cases,
    goal
  }
}

// ---------------------------------------------------------------- report: Markdown

const f = (x, d = 2) => x === null || x === undefined ? '–' : x.toFixed(d)
const mib = (b) => b === null || b === undefined ? '–' : (b / 1048576).toFixed(1)
const counts = (o) => { const e = Object.entries(o ?? {}).filter(([, v]) => v !== 0).sort((a, b) => b[1] - a[1]); return e.length === 0 ? '–' : e.map(([k, v]) => `${k} ${v}`).join(', ') }
/** `compiles.races`: overdue remote tasks raced by a local copy or a second peer, and how many the copy won. */
const raced = (r) => !r || !(r.local > 0 || r.duplicate > 0) ? '' : `; raced: ${r.local ?? 0} by a local copy (${r.localWon ?? 0} won), ${r.duplicate ?? 0} by a second peer (${r.duplicateWon ?? 0} won)`

function markdown (doc) {
  const L = []
  const svg = basename(OUT_SVG)
  L.push('# Compiles on idle peers: the speedup curve in the lab', '')
  L.push(`The benchmark of compiles on peers ([docs/remote.md](../remote.md)) in the lab office (\`scripts/lab\`, [docs/lab.md](../lab.md)): ${doc.lab.hosts} hosts of equal quota, ` +
    `${doc.lab.cpuPerHost} core each, ${doc.lab.rate} links. A cold build on h1 alone with plain \`go build -trimpath\`, and with \`grid build\` and ${doc.params.helpers.join(', ')} idle helpers; ` +
    'the speedup beside the bound that the critical path of the same run\'s package graph allows, and the overhead of each remote task. ' +
    `Produced by \`scripts/bench-remote.js\`; every sample (with grid's whole summary) is in [\`${basename(OUT)}\`](${basename(OUT)}).`, '')
  L.push(`![Speedup against plain go build on h1, by number of helpers, with the critical-path bound](${svg})`, '')
  L.push('## Latest results', '')
  const dirty = doc.git.dirtyFiles?.length > 0 ? ` (with uncommitted changes to ${doc.git.dirtyFiles.length <= 3 ? doc.git.dirtyFiles.map(x => `\`${x}\``).join(', ') : `${doc.git.dirtyFiles.length} files`})` : ''
  const changed = doc.git.rebuiltDuringRun || doc.git.unchangedDuringRun === false ? ' (**the tree or build changed during the run**)' : ''
  L.push(`${doc.date.slice(0, 10)}, commit ${doc.git.commit?.slice(0, 12)}${dirty}${changed}; ${doc.machine.go}; node ${doc.machine.node}; ` +
    `${doc.machine.cpuModel} × ${doc.machine.cores} cores, kernel ${doc.machine.kernel}` +
    `${doc.params.cwd !== '.' ? `; builds run in \`${doc.params.cwd}\`` : ''}. ` +
    'Medians of wall-clock seconds on h1 (from `scripts/lab run` spawn to exit) and the speedup against plain `go build`.', '')
  const ks = doc.params.helpers
  L.push(`| target | rounds | plain \`go build\` | ${ks.map(k => `grid, ${k} helper${k === 1 ? '' : 's'}`).join(' | ')} | bound: compile time / critical path |`)
  L.push(`| --- | ---: | ---: | ${ks.map(() => '---:').join(' | ')} | ---: |`)
  for (const s of doc.summary) {
    const b = s.bound
    L.push(`| \`${s.target}\` | ${s.rounds} | ${f(s.plain.wallS.median, 1)} s | ` +
      ks.map(k => { const c = s.cases[`grid-${k}`]; return c.wallS.median === null ? 'failed' : `${f(c.wallS.median, 1)} s **×${f(c.speedup)}**` }).join(' | ') +
      ` | ${b.unlimited === null ? '–' : `×${f(b.unlimited)} (${f(b.totalCompileMs / 1000, 1)} s / ${f(b.criticalPathMs / 1000, 1)} s)`} |`)
  }
  L.push('')
  const goals = doc.summary.flatMap(s => [
    s.goal.speedup && `\`${s.target}\` with ${GOAL.helpers} helpers at least ×${GOAL.speedup} against plain: **×${f(s.goal.speedup.got)}, ${s.goal.speedup.met === null ? 'not measured' : s.goal.speedup.met ? 'met' : 'not met'}** (bound with ${GOAL.helpers} helpers ×${f(s.cases[s.goal.speedup.case].bound)})`,
    s.goal.overheadP50 && `\`${s.target}\` per-task overhead p50 at most ${GOAL.overheadP50Ms} ms: **${f(s.goal.overheadP50.got, 1)} ms in the worst case (${s.goal.overheadP50.case}), ${s.goal.overheadP50.met ? 'met' : 'not met'}**`,
    !s.goal.overheadP50 && `\`${s.target}\` per-task overhead p50 at most ${GOAL.overheadP50Ms} ms: **not measured** (no build that succeeded sent a task to a helper)`
  ]).filter(Boolean)
  if (goals.length > 0) { L.push('Targets of the issue:', ''); for (const g of goals) L.push(`* ${g}`); L.push('') }
  // a write-up by hand of where the time goes, when there is one beside this file
  if (readdirSync(dirname(OUT)).includes('remote-timeline.md')) L.push('Where a remote task\'s time goes on h1, measured by hand: [`remote-timeline.md`](remote-timeline.md).', '')
  if (doc.summary.some(s => s.bound.unlimited === null)) {
    L.push('**No bound** where the grid-0 summaries have no `compiles.criticalPath` (the grid that ran does not report it yet, or grid-0 did not run or failed).', '')
  }
  L.push('The grid builds (medians of the `--json` summaries; local reasons and remote compiles by host summed over the rounds). ' +
    'The bound with K helpers is min(K + 1, compile time / critical path); overhead is per remote task, wall time at h1 minus the helper\'s compile time:', '')
  L.push('| target | case | speedup (vs grid-0) | bound | go -p | compiles local / remote (remote share; from the backlog) | remote by host | overhead p50 / p99 (max p99) | remote transfer / compile, summed | why local | ready after |')
  L.push('| --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | --- | ---: |')
  for (const s of doc.summary) {
    for (const k of ks) {
      const c = s.cases[`grid-${k}`]
      L.push(`| \`${s.target}\` | grid-${k} | ×${f(c.speedup)} (×${f(c.speedupVsGrid0)}) | ×${f(c.bound)} | ${c.goP ?? '–'}${c.goP !== null && !c.goPSet ? ' (go\'s default)' : ''} | ` +
        `${c.compilesLocal ?? '–'} / ${c.compilesRemote ?? '–'} (${c.remoteShare === null ? '–' : (c.remoteShare * 100).toFixed(0) + ' %'}${c.compilesFromBacklog > 0 ? `; ${c.compilesFromBacklog}` : ''}) | ${counts(c.remoteByHost)} | ` +
        `${f(c.overheadP50Ms, 1)} / ${f(c.overheadP99Ms, 1)} (${f(c.overheadP99MsMax, 1)}) ms | ${f(c.remoteTransferMs === null ? null : c.remoteTransferMs / 1000, 1)} / ${f(c.remoteCompileMs === null ? null : c.remoteCompileMs / 1000, 1)} s | ` +
        `${counts(c.localReasons)}${Object.keys(c.fallbacks).length > 0 ? `; fallbacks: ${counts(c.fallbacks)}` : ''}${raced(c.races)} | ${f(c.secondsToReady, 1)} s |`)
    }
  }
  L.push('')
  L.push('Why local: the node\'s reasons for each compile that stayed on h1 (`compiles.localReasons`, [docs/remote.md](../remote.md)): `local-free`, h1\'s slot was free (`--offload busy` keeps the compile then); ' +
    '`too-small`, expected to take less than shipping it (by the package\'s duration history, which lives in the grid cache and so starts empty in every case here, else by its source size); `peers-busy`, `no-peers`, `peer-error` and the others as named. From the backlog: remote compiles first placed on h1 because every helper was busy, that a helper took while they waited for h1\'s slot (`compiles.fromBacklog`).', '')
  const notes = []
  for (const s of doc.summary) {
    for (const k of ks.filter(k => k > 0)) {
      const c = s.cases[`grid-${k}`]
      if (c.compilesRemote === 0) notes.push(`\`${s.target}\` grid-${k}: **no compile went to a helper** (${counts(c.localReasons)}).`)
      if (c.compilesRemote > 0 && c.overheadCount === null) notes.push(`\`${s.target}\` grid-${k}: remote compiles, but no \`compiles.overhead\` in the summary.`)
    }
  }
  if (notes.length > 0) { for (const n of notes) L.push(`* ${n}`); L.push('') }
  L.push(`CPU time of h1 and of the helpers together (cgroups, CPU-s), the share of h1's active ${(doc.lab.cfsPeriodUs ?? 100000) / 1000} ms periods in which its quota throttled it, and bytes through h1's interface (eth0 frames, MiB):`, '')
  L.push('| target | case | h1 CPU | helpers CPU | h1 throttled | h1 rx | h1 tx |')
  L.push('| --- | --- | ---: | ---: | ---: | ---: | ---: |')
  const pct = (x) => x === null || x === undefined ? '–' : `${(x * 100).toFixed(0)} %`
  for (const s of doc.summary) {
    L.push(`| \`${s.target}\` | plain | ${f(s.plain.h1CpuS, 1)} | – | ${pct(s.plain.h1ThrottledShare)} | ${mib(s.plain.h1RxBytes)} | ${mib(s.plain.h1TxBytes)} |`)
    for (const k of ks) {
      const c = s.cases[`grid-${k}`]
      L.push(`| \`${s.target}\` | grid-${k} | ${f(c.h1CpuS, 1)} | ${k === 0 ? '–' : f(c.helpersCpuS, 1)} | ${pct(c.h1ThrottledShare)} | ${mib(c.h1RxBytes)} | ${mib(c.h1TxBytes)} |`)
    }
  }
  L.push('')
  L.push('Samples (s), in the order they ran:', '')
  for (const s of doc.summary) {
    const rows = doc.samples.filter(x => x.target === s.target)
    for (let r = 1; r <= s.rounds; r++) {
      L.push(`* \`${s.target}\` round ${r}: ` + rows.filter(x => x.round === r).map(x => `${x.case} ${x.ok ? f(x.wallS, 1) : 'FAILED'}`).join(', '))
    }
    for (const x of s.failed) L.push(`* **Failed:** ${x}`)
  }
  L.push('')
  L.push(`Setup: the shim was built once, outside the lab, in ${f(doc.setup.shimWallS, 1)} s (\`grid build ${TINY_PACKAGE}\` on an empty cache).`, '')
  L.push(`Load: \`${doc.machine.uptimeBefore}\` before, \`${doc.machine.uptimeAfter}\` after.` +
    (doc.machine.otherLabs.length > 0 ? ` Other labs were running on the machine during the run (${doc.machine.otherLabs.join(', ')}).` : ''))
  L.push('')
  L.push('## What is measured', '')
  L.push(`* **The lab.** One lab, \`scripts/lab up ${doc.lab.hosts} --cpu ${doc.lab.cpuPerHost} --period ${(doc.lab.cfsPeriodUs ?? 100000) / 1000} --rate ${doc.lab.rate}\` with a unique prefix, torn down at the end (also on failure). ` +
    ((doc.lab.cfsPeriodUs ?? 100000) < 100000 ? `The quota's period is ${(doc.lab.cfsPeriodUs) / 1000} ms rather than the kernel's 100 ms: a saturated host then stalls for at most ${r2(doc.lab.cfsPeriodUs * (1 - doc.lab.cpuPerHost) / 1000)} ms at a time, as a slower CPU would, instead of up to ${r2(100 * (1 - doc.lab.cpuPerHost))} ms, which would land in every latency measured here ([docs/lab.md](../lab.md)). ` : '') +
    'h1 builds; h2, h3 and h4 are the helpers. No swarm key, mDNS on, default listen addresses.')
  L.push('* **Cases**, each on h1 with `scripts/lab run h1 -- …` (h1\'s namespace and cgroup), the order reversed every round:')
  L.push('  * *plain*: `go build -trimpath T`, empty `GOCACHE`, no daemon anywhere.')
  L.push(`  * *grid-K*: h1 and the helpers h2…h(K+1) get empty grid caches (only the shim, a one-time build per Go version, is copied in); the helpers run \`grid daemon ${doc.lab.helperArgs.join(' ')}\`, h1 runs \`grid daemon ${doc.lab.requesterArgs.join(' ')}\` (offload \`busy\`: a compile goes to a helper when h1's one slot is taken); the other hosts run nothing. ` +
    'Outside the timing, h1\'s `grid --json peers` is polled until it lists K connected peers whose advert names a toolchain ("ready after" above), then one more second. Then `grid --json --graph build T` with an empty `GOCACHE`; every daemon is stopped afterwards.')
  L.push('* `--trust self` keeps the shared cache out of it: h1 takes no entries from the helpers\' caches (and does not ask), so every package is compiled in every case.')
  L.push('* **The bound** comes from grid-0 of the same run, where every compile is local: `compiles.criticalPath` in grid\'s summary is the longest chain through the package graph of the measured per-package compile times (`ms`) and their sum (`totalMs`). ' +
    'No schedule beats sum / critical path, and K helpers with one slot each add at most K slots to h1\'s one: min(K + 1, sum / critical path).')
  L.push('* **Overhead** is grid\'s own (`compiles.overhead`): for each remote task, the wall time from h1 handing it out to the result being written, less the compile time on the helper (sending the task and missing inputs, the helper\'s sandbox, the way back). p50 and p99 per build.')
  L.push('* **CPU** is each host\'s cgroup `cpuacct.usage` (all its processes, the daemon and its compiles included); **bytes** are h1\'s `eth0` counters (Ethernet frames).')
  L.push('')
  L.push('## Caveats', '')
  L.push('* The machine is shared and has 2 cores: 4 hosts × 0.5 core fit exactly, so any other work on it (see the load above) takes from the hosts; the quotas cap each host but guarantee nothing. Wall times are noisy; compare cases within a round.')
  L.push(`* Plain \`go build\` runs with go's default \`-p\`, the machine's core count (${doc.machine.cores}: a lab host sees every core, whatever its quota). \`grid build\` raises \`-p\` to h1's slot plus the helpers' free slots plus the compiles that wait at h1's node (\`BACKLOG_DEPTH\`; the node picks the next by the critical path), only where that is more than the cores (the "go -p" column); h1's node runs one compile at a time either way, and a compile that finds its slot taken goes to a helper or waits. ` +
    'The speedup against grid-0 shows what the helpers add; the one against plain, what a user sees.')
  L.push('* The bound is a ratio to one compile at a time, as h1 alone runs them (grid-0); the speedup is a ratio to plain `go build`. Plotted together, the bound is a guide rather than a strict ceiling.')
  L.push('* The bound counts compiles only. Links (and cgo, asm, cmd/go\'s own work) run on h1 in every case and are not in it; for `cmd/...` the links of every command are a serial tail no helper shortens. The per-package times come from a build under a 0.5-core quota.')
  L.push('* Before dfd6c9d the critical path left out package variants (`P [V]`, a package built again for one importer). For `cmd/...` the longest chain runs through cmd/compile\'s PGO build of its imports (`cmd/compile/internal/ssa [cmd/compile]` alone takes ~50 s at half a core), so a `cmd/...` bound from a record before that commit is far too high ([remote-timeline.md](remote-timeline.md)).')
  L.push('* All hosts share one disk and page cache, and the helpers\' inputs arrive over the lab links only when they lack them (export data, by hash): the network is a fast switched LAN with ~0.1 ms round trips (no netem on this kernel).')
  L.push('* `go build` of several packages compiles them and discards the results; a single main package would write its binary in the build\'s directory.')
  L.push('')
  L.push('## Reproduce', '')
  L.push('```')
  L.push('npx tsc --build')
  L.push('sudo node scripts/bench-remote.js --targets std,cmd/...            # 1 round each, 0 to 3 helpers')
  L.push('sudo node scripts/bench-remote.js --rounds 3 --targets std --out /tmp/remote.json')
  L.push('sudo node scripts/bench-remote.js --cwd test/fixtures/gomod --targets ./... --helpers 0,1 --out /tmp/remote.json   # a quick look')
  L.push('sudo node scripts/bench-remote.js --cwd scripts/realworld/gopls --targets golang.org/x/tools/gopls --out docs/benchmarks/remote-gopls.json   # a real module: gopls, 486 packages from 23 modules (their first download needs the Go module proxy)')
  L.push('```')
  L.push('')
  L.push('If the working tree may be rebuilt while it runs, run it from a snapshot of its own (`git clone --shared . /tmp/gridsnap && cp -a node_modules /tmp/gridsnap/ && (cd /tmp/gridsnap && npx tsc --build)`, then `sudo node /tmp/gridsnap/scripts/bench-remote.js --out "$PWD/docs/benchmarks/remote.json"`); ' +
    'a grid sample whose shim is not the one seeded at setup is refused, and the JSON records whether the build changed during the run (`git.rebuiltDuringRun`).', '')
  L.push('`TARGET:N` gives one target N rounds. It needs root and what the lab needs (iproute2, cgroup-v1 cpu). It leaves nothing behind; if it is killed with SIGKILL, remove the lab with `scripts/lab --prefix <prefix> down` (`ip netns list | grep ^br`).')
  L.push('')
  return L.join('\n')
}

// ---------------------------------------------------------------- report: the plot

const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')

/** The speedup against plain by number of helpers, a line per target; the bound dashed. */
function plot (doc) {
  const W = 640; const H = 400
  const m = { left: 56, right: 160, top: 40, bottom: 48 }
  const pw = W - m.left - m.right; const ph = H - m.top - m.bottom
  const ks = doc.params.helpers
  const kMax = Math.max(1, ...ks)
  const ys = doc.summary.flatMap(s => ks.flatMap(k => [s.cases[`grid-${k}`].speedup, s.cases[`grid-${k}`].bound]))
  const yMax = Math.max(2, Math.ceil((maxOf([...ys, GOAL.speedup]) ?? 2) + 0.25))
  const x = (k) => Math.round((m.left + pw * k / kMax) * 10) / 10
  const y = (v) => Math.round((m.top + ph * (1 - v / yMax)) * 10) / 10
  const colors = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e']
  const out = []
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`)
  out.push(`<title>grid build speedup against plain go build on h1, by number of helpers (${esc(doc.date.slice(0, 10))})</title>`)
  out.push(`<rect width="${W}" height="${H}" fill="#fff"/>`)
  out.push(`<text x="${m.left}" y="22" font-size="14" font-weight="bold">Cold build on h1 (${doc.lab.cpuPerHost} core), speedup against plain go build</text>`)
  for (let v = 0; v <= yMax; v += yMax > 6 ? 2 : 1) {
    out.push(`<line x1="${m.left}" x2="${m.left + pw}" y1="${y(v)}" y2="${y(v)}" stroke="${v === 1 ? '#999' : '#e5e5e5'}"/>`)
    out.push(`<text x="${m.left - 8}" y="${y(v) + 4}" text-anchor="end">×${v}</text>`)
  }
  for (const k of range(0, kMax)) {
    out.push(`<line x1="${x(k)}" x2="${x(k)}" y1="${m.top + ph}" y2="${m.top + ph + 5}" stroke="#333"/>`)
    out.push(`<text x="${x(k)}" y="${m.top + ph + 18}" text-anchor="middle">${k}</text>`)
  }
  out.push(`<line x1="${m.left}" x2="${m.left}" y1="${m.top}" y2="${m.top + ph}" stroke="#333"/>`)
  out.push(`<line x1="${m.left}" x2="${m.left + pw}" y1="${m.top + ph}" y2="${m.top + ph}" stroke="#333"/>`)
  out.push(`<text x="${m.left + pw / 2}" y="${H - 10}" text-anchor="middle">helpers (${doc.lab.cpuPerHost} core each, 1 slot)</text>`)
  out.push(`<text x="16" y="${m.top + ph / 2}" text-anchor="middle" transform="rotate(-90 16 ${m.top + ph / 2})">speedup (plain / grid)</text>`)
  // A polyline through the points that exist; a gap where a case failed.
  const line = (pts, attrs) => {
    const runs = [[]]
    for (const p of pts) { if (p[1] === null) runs.push([]); else runs[runs.length - 1].push(p) }
    return runs.filter(r => r.length > 1).map(r => `<polyline fill="none" ${attrs} points="${r.map(([k, v]) => `${x(k).toFixed(1)},${y(v).toFixed(1)}`).join(' ')}"/>`).join('')
  }
  let legendY = m.top + 8
  const legend = (color, dash, label) => {
    out.push(`<line x1="${m.left + pw + 14}" x2="${m.left + pw + 40}" y1="${legendY}" y2="${legendY}" stroke="${color}" stroke-width="2"${dash ? ` stroke-dasharray="${dash}"` : ''}/>`)
    out.push(`<text x="${m.left + pw + 46}" y="${legendY + 4}">${esc(label)}</text>`)
    legendY += 18
  }
  doc.summary.forEach((s, n) => {
    const color = colors[n % colors.length]
    const speed = ks.map(k => [k, s.cases[`grid-${k}`].speedup])
    const bound = ks.map(k => [k, s.cases[`grid-${k}`].bound])
    out.push(line(bound, `stroke="${color}" stroke-width="1.5" stroke-dasharray="6 4" opacity="0.8"`))
    out.push(line(speed, `stroke="${color}" stroke-width="2.5"`))
    for (const [k, v] of speed) {
      if (v === null) continue
      out.push(`<circle cx="${x(k).toFixed(1)}" cy="${y(v).toFixed(1)}" r="4" fill="${color}"><title>${esc(s.target)}, ${k} helpers: ×${v}</title></circle>`)
    }
    legend(color, null, `${s.target}`)
    if (bound.some(([, v]) => v !== null)) legend(color, '6 4', `${s.target} bound`)
    if (s.target === GOAL.target && ks.includes(GOAL.helpers)) {
      const gx = x(GOAL.helpers); const gy = y(GOAL.speedup)
      out.push(`<path d="M${gx} ${gy - 6}L${gx + 6} ${gy}L${gx} ${gy + 6}L${gx - 6} ${gy}Z" fill="none" stroke="${color}" stroke-width="1.5"><title>target: ×${GOAL.speedup} with ${GOAL.helpers} helpers</title></path>`)
      out.push(`<text x="${gx - 10}" y="${gy - 8}" text-anchor="end" fill="${color}">target ×${GOAL.speedup}</text>`)
    }
  })
  legend('#999', null, '×1 = plain')
  out.push('</svg>')
  return out.join('\n') + '\n'
}

// ---------------------------------------------------------------- main

async function write (doc) {
  await mkdir(dirname(OUT), { recursive: true })
  await writeFile(OUT, JSON.stringify(doc, null, 2) + '\n')
  await writeFile(OUT_MD, markdown(doc))
  await writeFile(OUT_SVG, plot(doc))
  const rel = (p) => relative(process.cwd(), p) || p
  say(`wrote ${rel(OUT)}, ${rel(OUT_MD)} and ${rel(OUT_SVG)}`)
  for (const s of doc.summary) {
    say(`${s.target}: plain ${s.plain.wallS.median} s; ` +
      doc.params.helpers.map(k => { const c = s.cases[`grid-${k}`]; return `${k} helpers ${c.wallS.median ?? '–'} s ×${c.speedup ?? '–'} (bound ×${c.bound ?? '?'}, remote ${c.compilesRemote}, overhead p50 ${c.overheadP50Ms ?? '?'} ms)` }).join('; ') +
      `; bound ×${s.bound.unlimited ?? '?'}`)
  }
}

/** --rerender: the summary, .md and .svg again from the samples already in --out. */
async function rerender () {
  const doc = JSON.parse(readFileSync(OUT, 'utf8'))
  for (const s of doc.samples) {
    s.summary = withoutLabPaths(s.summary)
    if (s.summary !== undefined) s.grid = gridFacts(s.summary)
  }
  doc.summary = doc.params.targets.map(t => summarize(t, doc.samples.filter(s => s.target === t.target), doc.params.helpers))
  await write(doc)
  return 0
}

async function main () {
  if (process.getuid?.() !== 0) { say('needs root (the lab: network namespaces, tc, cgroups)'); process.exit(2) }
  await lab.open()
  const prefix = lab.prefix
  const run = lab.circumstances(execFileSync('go', ['version'], { encoding: 'utf8' }).trim())
  const samples = []
  try {
    say('building the shim outside the lab')
    shim = await seedShim()
    if (existsSync(join(CWD, 'go.mod'))) {
      // the lab's hosts have no network: the module's dependencies must be in the module cache
      say(`go mod download in ${relative(ROOT, CWD) || '.'}`)
      const r = await lab.run('go', ['mod', 'download'], { cwd: CWD, timeoutMs: 900_000 })
      if (r.code !== 0) throw new Error(`go mod download in ${CWD} failed (${r.code}): ${r.stderr.slice(-2000)}`)
    }
    say(`shim ${shim.hash} (${shim.wallS} s); lab ${prefix}: up ${HOSTS} --cpu ${CPU} --period ${PERIOD_MS} --rate ${RATE}`)
    await lab.lab(['up', String(HOSTS), '--cpu', String(CPU), '--period', String(PERIOD_MS), '--rate', RATE])
    for (const t of TARGETS) {
      for (let r = 1; r <= t.rounds; r++) {
        const order = r % 2 === 1 ? CASES : [...CASES].reverse()
        for (const c of order) {
          if (lab.aborted) throw new Error('interrupted')
          say(`${t.target} round ${r}/${t.rounds}: ${c}`)
          let s
          try { s = await runCase(c, t.target) } catch (err) { s = { case: c, ok: false, error: err.message } }
          if (lab.aborted) throw new Error('interrupted')
          s.target = t.target
          s.round = r
          samples.push(s)
          const g = s.grid
          say(`  ${c}: ${s.ok ? `${s.wallS} s` : `FAILED ${s.error?.split('\n').slice(-3).join(' | ')}`}` +
            (s.cpuS ? `; CPU h1 ${s.cpuS.h1} s, helpers ${r3(HOST_NUMBERS.slice(1).reduce((a, i) => a + (s.cpuS[`h${i}`] ?? 0), 0))} s; h1 rx ${mib(s.h1RxBytes)} MiB tx ${mib(s.h1TxBytes)} MiB` : '') +
            (g ? `; -p ${g.goP}, compiles ${g.local} local / ${g.remote} remote, overhead p50 ${g.overhead?.p50Ms ?? '?'} p99 ${g.overhead?.p99Ms ?? '?'} ms, ` +
              `critical path ${g.criticalPath?.ms ?? '?'} of ${g.criticalPath?.totalMs ?? '?'} ms, local reasons ${JSON.stringify(g.localReasons)}` : ''))
        }
      }
    }
  } finally {
    await lab.teardown()
  }

  const doc = {
    date: run.date,
    ...run.end(),
    lab: { prefix, hosts: HOSTS, cpuPerHost: CPU, cfsPeriodUs: PERIOD_MS * 1000, rate: RATE, tbf: 'burst 256kb latency 5ms, both directions', requester: 'h1', requesterArgs: REQUESTER_ARGS, helperArgs: HELPER_ARGS, mdns: true, swarmKey: null },
    params: { rounds: ROUNDS, targets: TARGETS, helpers: HELPERS, cases: CASES, cwd: relative(ROOT, CWD) || '.', buildTimeoutSeconds: BUILD_TIMEOUT_MS / 1000, peerTimeoutSeconds: PEER_TIMEOUT_MS / 1000, goal: GOAL },
    setup: { shim: shim?.hash ?? null, shimWallS: shim?.wallS ?? null },
    summary: TARGETS.map(t => summarize(t, samples.filter(s => s.target === t.target), HELPERS)),
    samples
  }
  await write(doc)
  return samples.every(s => s.ok) ? 0 : 1
}

(opts.rerender ? rerender() : main()).then(code => process.exit(code), async (err) => {
  if (lab.aborted) return // the signal handler tears down and exits
  say(err.stack ?? String(err))
  await lab.teardown().catch(() => {})
  process.exit(1)
})
