#!/usr/bin/env node
/**
 * Benchmark (not a test): the shared cache (issue 5, docs/cache.md "Shared cache") in the lab
 * office (scripts/lab, docs/lab.md). Needs root.
 *
 *   npx tsc --build && sudo node scripts/bench-shared.js [--rounds 3] [--targets std,cmd/...:1]
 *
 * One lab, 4 hosts, 0.5 core each, 1gbit links, with a unique prefix, always torn down:
 *
 *   h2  a warm grid cache and a grid daemon; also the go-tool-cache HTTP server
 *       (go-cacher-server, or gocached with --server gocached) serving a warm cache
 *   h3  a grid daemon, empty cache
 *   h4  a grid daemon, empty cache
 *   h1  the fresh host: every build there starts with empty caches
 *
 * Both warm caches are filled before the lab runs anything, on the machine itself (all its
 * cores, outside every namespace and quota): `grid build <all targets>` into h2's grid cache
 * dir with an embedded node that listens on loopback only, mDNS off; and
 * `go build -trimpath <all targets>` through go-cacher into the server's cache dir, with the
 * server listening on 127.0.0.1. Then the daemons on h2–h4 start (`--slots 1`, default listen
 * address, mDNS on) and the server is restarted inside h2 on the same dir.
 *
 * Per target, R rounds; each round runs three cases on h1, the order reversed every round:
 *
 *   plain   `go build -trimpath T`, empty GOCACHE
 *   grid    a grid daemon on h1 started on an empty grid cache (only the shim, a one-time build
 *           per Go version, is copied in, as scripts/bench.js does) and waited for until it is
 *           connected to h2, h3 and h4 (outside the timing); then `grid --json build T` with an
 *           empty GOCACHE; the daemon is stopped afterwards
 *   cacher  `GOCACHEPROG="go-cacher --verbose --cache-dir <empty> --cache-server
 *           http://10.77.0.2:31364" go build -trimpath T`, empty GOCACHE
 *
 * Each timed build is `scripts/lab run h1 -- …` (h1's namespace and cgroup); wall time is from
 * spawn to exit. Around it: h1's eth0 byte counters (/sys/class/net/eth0/statistics inside its
 * namespace), and the CPU time of h1's and h2's cgroups. Grid's summary (`--json`) and
 * go-cacher's closing stats line are kept with each sample.
 *
 * go-cacher and its server are installed with `go install
 * github.com/bradfitz/go-tool-cache/cmd/...@latest` if they are not in $(go env GOPATH)/bin.
 * Writes JSON (default docs/benchmarks/shared.json) and shared.md beside it. Progress goes to
 * stderr. Node builtins only.
 */
import { execFileSync, spawn } from 'node:child_process'
import { existsSync, readdirSync, statSync } from 'node:fs'
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { basename, dirname, join, relative, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import * as host from './lib/lab-bench.js'
import { duBytes, GRID, LAB, LabRun, loadavg, maxOf, median, parseTargets, posInt, r2, r3, readLog, ROOT, sleep } from './lib/lab-bench.js'

const HOSTS = 4
const CPU = 0.5
const RATE = '1gbit'
const DAEMON_ARGS = ['--slots', '1']
const CACHER_PORT = 31364
const CACHER_SERVER_IP = '10.77.0.2'
const GO_TOOL_CACHE = 'github.com/bradfitz/go-tool-cache'
const CASES = ['plain', 'grid', 'cacher']
/** The config of the node that pre-fills h2's grid cache outside the lab: nobody can find it. */
const PREFILL_CONFIG = { mdns: false, listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap: [] }

const { values: opts } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    targets: { type: 'string', default: 'std,cmd/...:1' },
    server: { type: 'string', default: 'go-cacher-server' },
    out: { type: 'string', default: join(ROOT, 'docs', 'benchmarks', 'shared.json') },
    'build-timeout': { type: 'string', default: '1800' },
    help: { type: 'boolean', short: 'h' }
  }
})
if (opts.help) {
  process.stderr.write(`usage: sudo node scripts/bench-shared.js [--rounds 3] [--targets std,cmd/...:1] [--server go-cacher-server|gocached]
         [--out docs/benchmarks/shared.json] [--build-timeout 1800]

  --rounds N       rounds per target (default 3)
  --targets LIST   comma-separated go package patterns; TARGET:N gives that target N rounds
                   (default std,cmd/...:1: cmd/... under a 0.5-core quota takes many minutes)
  --server NAME    the go-tool-cache server on h2: go-cacher-server (default) or gocached
  --build-timeout  seconds before one build is killed (default 1800)
`)
  process.exit(2)
}
const ROUNDS = posInt(opts.rounds, '--rounds')
const TARGETS = parseTargets(opts.targets, ROUNDS)
if (TARGETS.length === 0) { process.stderr.write('--targets: nothing to build\n'); process.exit(2) }
if (!['go-cacher-server', 'gocached'].includes(opts.server)) { process.stderr.write(`--server: go-cacher-server or gocached, got ${opts.server}\n`); process.exit(2) }
const SERVER = opts.server
const BUILD_TIMEOUT_MS = posInt(opts['build-timeout'], '--build-timeout') * 1000
const OUT = resolve(opts.out)

const lab = new LabRun({ name: 'bench-shared', tag: 'bs', timeoutMs: BUILD_TIMEOUT_MS })
const say = (msg) => lab.say(msg)

// ---------------------------------------------------------------- processes

/** A long-running child (a cache server): spawned in its own group, killed by its pid. */
function startBackground (cmd, args, logFile, env = lab.baseEnv()) {
  const child = spawn('sh', ['-c', 'exec "$@" >>"$LOGFILE" 2>&1', 'sh', cmd, ...args], { cwd: ROOT, env: { ...env, LOGFILE: logFile }, stdio: 'ignore', detached: true })
  lab.children.add(child)
  child.on('exit', () => lab.children.delete(child))
  return child
}

async function stopBackground (child) {
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return
  const gone = new Promise(resolve => child.once('exit', resolve))
  try { process.kill(-child.pid, 'SIGTERM') } catch {}
  const t = setTimeout(() => { try { process.kill(-child.pid, 'SIGKILL') } catch {} }, 5000)
  await gone
  clearTimeout(t)
}

// ---------------------------------------------------------------- host probes

// scripts/lib/lab-bench.js, for this run's prefix
const cgroupCpuSeconds = (i) => host.cgroupCpuSeconds(lab.prefix, i)
const cgroupThrottle = (i) => host.cgroupThrottle(lab.prefix, i)
const netCounters = (i) => host.netCounters(lab.prefix, i)

async function snapshot () {
  return { at: Date.now(), net1: await netCounters(1), cpu1: cgroupCpuSeconds(1), cpu2: cgroupCpuSeconds(2), thr1: cgroupThrottle(1), thr2: cgroupThrottle(2) }
}

function delta (a, b) {
  const d = (x, y) => x === null || y === null ? null : r3(y - x)
  return {
    h1RxBytes: b.net1.rxBytes - a.net1.rxBytes,
    h1TxBytes: b.net1.txBytes - a.net1.txBytes,
    h1RxPackets: b.net1.rxPackets - a.net1.rxPackets,
    h1TxPackets: b.net1.txPackets - a.net1.txPackets,
    h1CpuS: d(a.cpu1, b.cpu1),
    h2CpuS: d(a.cpu2, b.cpu2),
    h1Throttle: { periods: d(a.thr1.periods, b.thr1.periods), throttled: d(a.thr1.throttled, b.thr1.throttled), throttledS: d(a.thr1.throttledS, b.thr1.throttledS) },
    h2Throttle: { periods: d(a.thr2.periods, b.thr2.periods), throttled: d(a.thr2.throttled, b.thr2.throttled), throttledS: d(a.thr2.throttledS, b.thr2.throttledS) }
  }
}

// ---------------------------------------------------------------- go-tool-cache

function goBin () {
  const gobin = execFileSync('go', ['env', 'GOBIN'], { encoding: 'utf8' }).trim()
  return gobin !== '' ? gobin : join(execFileSync('go', ['env', 'GOPATH'], { encoding: 'utf8' }).trim().split(':')[0], 'bin')
}

async function ensureGoToolCache () {
  const bin = goBin()
  const need = ['go-cacher', SERVER]
  if (!need.every(b => existsSync(join(bin, b)))) {
    say(`installing ${GO_TOOL_CACHE}/cmd/...@latest (go install)`)
    const r = await lab.run('go', ['install', `${GO_TOOL_CACHE}/cmd/...@latest`], { env: { ...process.env, GOFLAGS: '' }, timeoutMs: 600_000 })
    if (r.code !== 0) throw new Error(`go install ${GO_TOOL_CACHE}/cmd/...@latest failed: ${r.stderr.trim()}`)
  }
  let version = null
  try {
    const m = /\bmod\s+\S+\s+(\S+)/.exec(execFileSync('go', ['version', '-m', join(bin, 'go-cacher')], { encoding: 'utf8' }))
    version = m?.[1] ?? null
  } catch {}
  return { client: join(bin, 'go-cacher'), server: join(bin, SERVER), version }
}

function serverArgs (dir, listen) {
  return ['--cache-dir', dir, '--listen', listen, ...(SERVER === 'gocached' ? ['--max-size-gb', '0', '--max-age-days', '0'] : [])]
}

/** go-cacher's closing line: "cacher: closing; N gets (H hits, M misses, E errors); P puts (…)". */
function parseCacherStats (stderr) {
  const m = /cacher: closing; (\d+) gets \((\d+) hits, (\d+) misses, (\d+) errors\); (\d+) puts \(([^)]*)\)/.exec(stderr)
  if (m === null) return null
  return { gets: Number(m[1]), hits: Number(m[2]), misses: Number(m[3]), errors: Number(m[4]), puts: Number(m[5]), putDetail: m[6] }
}

// ---------------------------------------------------------------- the cases

let tools
let shimSeed
let shimSeedHash = ''

async function freshDir (name) {
  const d = join(lab.hostDir(1), name)
  await rm(d, { recursive: true, force: true })
  await mkdir(d, { recursive: true })
  return d
}

async function timed (label, cmd) {
  const before = await snapshot()
  const r = await lab.run(LAB, ['--prefix', lab.prefix, 'run', 'h1', '--', ...cmd])
  const after = await snapshot()
  const sample = { case: label, ok: r.code === 0, exitCode: r.code, wallS: r3(r.wallS), ...delta(before, after), loadAvg: loadavg() }
  if (r.code !== 0) sample.error = (r.stderr.trim().split('\n').slice(-20).join('\n') || r.stdout.slice(-2000))
  return { sample, r }
}

async function casePlain (target) {
  const gocache = await freshDir('gocache-plain')
  const { sample } = await timed('plain', ['env', `GOCACHE=${gocache}`, 'go', 'build', '-trimpath', ...target.split(' ')])
  await rm(gocache, { recursive: true, force: true })
  return sample
}

async function caseGrid (target) {
  const h1 = lab.hostDir(1)
  await lab.lab(['stop', 'h1']).catch(() => {})
  await rm(join(h1, 'cache'), { recursive: true, force: true })
  await mkdir(join(h1, 'cache'), { recursive: true })
  await cp(shimSeed, join(h1, 'cache', 'shim'), { recursive: true })
  await lab.lab(['start', 'h1', '--', ...DAEMON_ARGS])
  const joined = await lab.waitForPeers(1, HOSTS - 1)
  await sleep(1000) // let the daemon's start-up work settle before the clock starts
  const gocache = await freshDir('gocache-grid')
  const { sample, r } = await timed('grid', ['env', `GOCACHE=${gocache}`, process.execPath, GRID, '--json', 'build', ...target.split(' ')])
  sample.peersConnectedBefore = joined.peers
  sample.secondsToConnect = joined.seconds
  try {
    const line = r.stdout.trim().split('\n').reverse().find(l => l.startsWith('{'))
    const s = JSON.parse(line)
    sample.summary = s
    sample.gridWallS = r3(s.wallMs / 1000)
    // The shim seeded from the pre-fill must be the one used: if the tree was rebuilt since,
    // grid builds a new shim inside the timed build (tens of seconds under the quota).
    const shimUsed = /-toolexec=\S*\/shim\/([^/]+)\//.exec(s.command?.join(' ') ?? '')?.[1]
    if (shimUsed !== undefined && shimUsed !== basename(shimSeedHash)) {
      sample.ok = false
      sample.error = `grid used shim ${shimUsed}, not the one seeded from the pre-fill (${basename(shimSeedHash)}): the tree changed during the run, and the shim was rebuilt inside the timed build`
    }
  } catch {
    sample.summary = null
    if (sample.ok) { sample.ok = false; sample.error = `no JSON summary on stdout: ${r.stdout.slice(-500)}` }
  }
  await lab.lab(['stop', 'h1']).catch(() => {})
  await rm(gocache, { recursive: true, force: true })
  return sample
}

async function caseCacher (target) {
  const gocache = await freshDir('gocache-cacher')
  const local = await freshDir('go-cacher')
  const prog = `${tools.client} --verbose --cache-dir ${local} --cache-server http://${CACHER_SERVER_IP}:${CACHER_PORT}`
  const { sample, r } = await timed('cacher', ['env', `GOCACHE=${gocache}`, `GOCACHEPROG=${prog}`, 'go', 'build', '-trimpath', ...target.split(' ')])
  sample.cacher = parseCacherStats(r.stderr)
  await rm(gocache, { recursive: true, force: true })
  await rm(local, { recursive: true, force: true })
  return sample
}

const RUNNERS = { plain: casePlain, grid: caseGrid, cacher: caseCacher }

// ---------------------------------------------------------------- setup

async function prefillGrid (targets) {
  const cache = join(lab.hostDir(2), 'cache')
  const gocache = await mkdtemp(join(lab.tmp, 'prefill-gocache-'))
  const config = join(lab.tmp, 'prefill-config.json')
  await writeFile(config, JSON.stringify(PREFILL_CONFIG) + '\n')
  say(`pre-filling h2's grid cache outside the lab: grid build ${targets.join(' ')}`)
  const r = await lab.run(process.execPath, [GRID, '--json', 'build', ...targets.flatMap(t => t.split(' '))], {
    env: lab.baseEnv({ GRID_CACHE: cache, GRID_CONTROL: join(lab.tmp, 'prefill.sock'), GRID_CONFIG: config, GOCACHE: gocache })
  })
  await rm(gocache, { recursive: true, force: true })
  if (r.code !== 0) throw new Error(`pre-fill grid build failed (${r.code}): ${r.stderr.slice(-3000)}`)
  let summary = null
  try { summary = JSON.parse(r.stdout.trim().split('\n').reverse().find(l => l.startsWith('{'))) } catch {}
  shimSeed = join(lab.tmp, 'shim-seed')
  await cp(join(cache, 'shim'), shimSeed, { recursive: true })
  shimSeedHash = readdirSync(shimSeed).filter(d => statSync(join(shimSeed, d)).isDirectory()).sort((a, b) => statSync(join(shimSeed, b)).mtimeMs - statSync(join(shimSeed, a)).mtimeMs)[0] ?? ''
  return { wallS: r3(r.wallS), summary: summary === null ? null : { cache: summary.cache, compiles: summary.compiles, actions: summary.actions }, cacheBytes: duBytes(cache) }
}

async function prefillCacher (targets, serverDir) {
  const port = 40000 + Math.floor(Math.random() * 20000)
  const server = startBackground(tools.server, serverArgs(serverDir, `127.0.0.1:${port}`), join(lab.tmp, 'prefill-server.log'))
  try {
    for (let k = 0; ; k++) {
      const r = await lab.run('bash', ['-c', `exec 3<>/dev/tcp/127.0.0.1/${port}`], { timeoutMs: 5000 })
      if (r.code === 0) break
      if (k > 100) throw new Error(`${SERVER} did not listen on 127.0.0.1:${port}: ${readLog(join(lab.tmp, 'prefill-server.log'))}`)
      await sleep(100)
    }
    const gocache = await mkdtemp(join(lab.tmp, 'prefill-gocache-'))
    const local = await mkdtemp(join(lab.tmp, 'prefill-go-cacher-'))
    say(`pre-filling the ${SERVER} cache outside the lab: go build -trimpath ${targets.join(' ')} through go-cacher`)
    const r = await lab.run('go', ['build', '-trimpath', ...targets.flatMap(t => t.split(' '))], {
      env: lab.baseEnv({ GOCACHE: gocache, GOCACHEPROG: `${tools.client} --verbose --cache-dir ${local} --cache-server http://127.0.0.1:${port}` }), cwd: lab.tmp
    })
    await rm(gocache, { recursive: true, force: true })
    await rm(local, { recursive: true, force: true })
    if (r.code !== 0) throw new Error(`pre-fill go-cacher build failed (${r.code}): ${r.stderr.slice(-3000)}`)
    return { wallS: r3(r.wallS), stats: parseCacherStats(r.stderr), cacheBytes: duBytes(serverDir) }
  } finally {
    await stopBackground(server)
  }
}

async function waitForCacherServer () {
  for (let k = 0; k < 150; k++) {
    const r = await lab.run('ip', ['netns', 'exec', `${lab.prefix}-h1`, 'bash', '-c', `exec 3<>/dev/tcp/${CACHER_SERVER_IP}/${CACHER_PORT}`], { timeoutMs: 5000 })
    if (r.code === 0) return
    await sleep(200)
  }
  throw new Error(`${SERVER} on h2 does not answer on ${CACHER_SERVER_IP}:${CACHER_PORT}`)
}

// ---------------------------------------------------------------- report

function summarize (t, samples) {
  const of = (c) => samples.filter(s => s.case === c && s.ok)
  const med = (c, f) => r3(median(of(c).map(f)))
  const plain = med('plain', s => s.wallS)
  const grid = med('grid', s => s.wallS)
  const cacher = med('cacher', s => s.wallS)
  const g = of('grid').map(s => s.summary).filter(Boolean)
  const gs = (f) => r3(median(g.map(f)))
  return {
    target: t.target,
    rounds: t.rounds,
    failed: samples.filter(s => !s.ok).map(s => `${s.case} round ${s.round}: ${s.error?.split('\n')[0] ?? 'failed'}`),
    wallS: {
      plain: { median: plain, samples: of('plain').map(s => s.wallS) },
      grid: { median: grid, samples: of('grid').map(s => s.wallS) },
      cacher: { median: cacher, samples: of('cacher').map(s => s.wallS) }
    },
    speedup: {
      grid: plain !== null && grid ? r2(plain / grid) : null,
      cacher: plain !== null && cacher ? r2(plain / cacher) : null
    },
    h1CpuS: Object.fromEntries(CASES.map(c => [c, med(c, s => s.h1CpuS)])),
    h1ThrottledShare: Object.fromEntries(CASES.map(c => [c, med(c, s => s.h1Throttle?.periods ? s.h1Throttle.throttled / s.h1Throttle.periods : null)])),
    h2ThrottledShare: Object.fromEntries(CASES.map(c => [c, med(c, s => s.h2Throttle?.periods ? s.h2Throttle.throttled / s.h2Throttle.periods : null)])),
    h2CpuS: Object.fromEntries(CASES.map(c => [c, med(c, s => s.h2CpuS)])),
    h1Bytes: Object.fromEntries(CASES.map(c => [c, { rx: med(c, s => s.h1RxBytes), tx: med(c, s => s.h1TxBytes) }])),
    grid: {
      lookups: gs(s => s.cache.peer.lookups.count),
      lookupP50Ms: gs(s => s.cache.peer.lookups.p50Ms),
      lookupP99Ms: gs(s => s.cache.peer.lookups.p99Ms),
      lookupP99MsMax: r3(maxOf(g.map(s => s.cache.peer.lookups.p99Ms))),
      peerHits: gs(s => s.cache.peerHits),
      localHits: gs(s => s.cache.localHits),
      misses: gs(s => s.cache.misses),
      peerHitShare: gs(s => s.cache.peer.lookups.count > 0 ? s.cache.peerHits / s.cache.peer.lookups.count : null),
      peerBytes: gs(s => s.cache.peer.bytes),
      peerWaitMs: gs(s => s.cache.peer.waitMs),
      meanWaitPerGetMs: gs(s => s.cache.peer.lookups.count > 0 ? s.cache.peer.waitMs / s.cache.peer.lookups.count : null),
      gridWallS: gs(s => s.wallMs / 1000),
      compilesLocal: gs(s => s.compiles.local),
      compilesRemote: gs(s => s.compiles.remote),
      rejected: gs(s => s.cache.peer.rejected.badHash + s.cache.peer.rejected.badClaim),
      actions: gs(s => s.actions)
    },
    cacher: {
      gets: med('cacher', s => s.cacher?.gets),
      hits: med('cacher', s => s.cacher?.hits),
      misses: med('cacher', s => s.cacher?.misses),
      puts: med('cacher', s => s.cacher?.puts)
    }
  }
}

function markdown (doc) {
  const f = (x, d = 2) => x === null || x === undefined ? '–' : x.toFixed(d)
  const mib = (b) => b === null || b === undefined ? '–' : (b / 1048576).toFixed(1)
  const L = []
  L.push('# Shared cache benchmark: a fresh host builds while a peer holds a warm cache', '')
  L.push(`The benchmark of issue 5 in the lab office (\`scripts/lab\`, [docs/lab.md](../lab.md)): ${doc.lab.hosts} hosts, ${doc.lab.cpuPerHost} core each, ${doc.lab.rate} links. ` +
    'A fresh host (h1, empty caches) builds while h2 holds a warm cache, three ways: plain cold `go build -trimpath`, `grid build` with the grid daemons of h2–h4 as peers ' +
    `(the shared cache, [docs/cache.md](../cache.md)), and \`go build -trimpath\` with bradfitz/go-tool-cache's \`go-cacher\` as GOCACHEPROG against its \`${doc.tools.server}\` on h2. ` +
    'Produced by `scripts/bench-shared.js`; every sample (with grid\'s whole summary and go-cacher\'s stats) is in [`shared.json`](shared.json).', '')
  L.push('## Latest results', '')
  const dirty = doc.git.dirtyFiles?.length > 0 ? ` (with uncommitted changes to ${doc.git.dirtyFiles.length <= 3 ? doc.git.dirtyFiles.map(x => `\`${x}\``).join(', ') : `${doc.git.dirtyFiles.length} files`})` : doc.git.dirty ? ' (with uncommitted changes)' : ''
  const changed = doc.git.rebuiltDuringRun || doc.git.unchangedDuringRun === false ? ' (**the tree or build changed during the run**)' : ''
  L.push(`${doc.date.slice(0, 10)}, commit ${doc.git.commit?.slice(0, 12)}${dirty}${changed}; ${doc.machine.go}; node ${doc.machine.node}; ` +
    `${doc.machine.cpuModel} × ${doc.machine.cores} cores, kernel ${doc.machine.kernel}; go-tool-cache ${doc.tools.version ?? '?'} (\`go-cacher\` + \`${doc.tools.server}\`). ` +
    'Medians of wall-clock seconds on h1 (0.5 core), from `scripts/lab run` spawn to exit.', '')
  L.push('| target | rounds | plain cold `go build` | `grid build`, warm peer | `go-cacher`, warm server | speedup grid | speedup go-cacher |')
  L.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: |')
  for (const s of doc.summary) {
    L.push(`| \`${s.target}\` | ${s.rounds} | ${f(s.wallS.plain.median, 1)} s | **${f(s.wallS.grid.median, 1)} s** | ${f(s.wallS.cacher.median, 1)} s | **×${f(s.speedup.grid)}** | ×${f(s.speedup.cacher)} |`)
  }
  L.push('')
  L.push('Bytes through h1\'s interface (eth0 frames, median per build, MiB), CPU time of h1 and h2 (cgroup, whole host, CPU-s) and the share of their active 100 ms periods in which the 0.5-core quota throttled them; the plain row is the background (mesh chatter of the daemons on h2–h4 reaching h1; h1 runs no daemon then):', '')
  L.push('| target | case | h1 rx | h1 tx | h1 CPU | h1 throttled | h2 CPU | h2 throttled |')
  L.push('| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |')
  const pct = (x) => x === null || x === undefined ? '–' : `${(x * 100).toFixed(0)} %`
  for (const s of doc.summary) {
    for (const c of CASES) {
      L.push(`| \`${s.target}\` | ${c === 'cacher' ? 'go-cacher' : c} | ${mib(s.h1Bytes[c].rx)} | ${mib(s.h1Bytes[c].tx)} | ${f(s.h1CpuS[c], 1)} | ${pct(s.h1ThrottledShare?.[c])} | ${f(s.h2CpuS[c], 1)} | ${pct(s.h2ThrottledShare?.[c])} |`)
    }
  }
  L.push('')
  L.push('The grid builds (medians of the `--json` summaries):', '')
  L.push('| target | actions | peer lookups | peer hits (share) | misses | peer lookup p50 / p99 (max p99) | time waiting on peers, summed (mean per get) | bytes fetched | compiles local / remote | go-cacher gets / hits / misses |')
  L.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |')
  for (const s of doc.summary) {
    const g = s.grid
    L.push(`| \`${s.target}\` | ${g.actions ?? '–'} | ${g.lookups ?? '–'} | ${g.peerHits ?? '–'} (${g.peerHitShare === null ? '–' : (g.peerHitShare * 100).toFixed(1) + ' %'}) | ${g.misses ?? '–'} | ` +
      `${f(g.lookupP50Ms)} / ${f(g.lookupP99Ms)} (${f(g.lookupP99MsMax)}) ms | ${f(g.peerWaitMs === null ? null : g.peerWaitMs / 1000)} s (${f(g.meanWaitPerGetMs, 1)} ms) | ${mib(g.peerBytes)} MiB | ${g.compilesLocal ?? '–'} / ${g.compilesRemote ?? '–'} | ` +
      `${s.cacher.gets ?? '–'} / ${s.cacher.hits ?? '–'} / ${s.cacher.misses ?? '–'} |`)
  }
  L.push('')
  L.push('Samples (s), in the order they ran:', '')
  for (const s of doc.summary) {
    const rows = doc.samples.filter(x => x.target === s.target)
    for (let r = 1; r <= s.rounds; r++) {
      const inRound = rows.filter(x => x.round === r)
      L.push(`* \`${s.target}\` round ${r}: ` + inRound.map(x => `${x.case === 'cacher' ? 'go-cacher' : x.case} ${x.ok ? f(x.wallS, 1) : 'FAILED'}`).join(', '))
    }
    if (s.failed.length > 0) L.push(`* **Failed:** ${s.failed.join('; ')}`)
  }
  L.push('')
  L.push(`Pre-fill, outside the lab on ${doc.machine.cores} cores: grid ${f(doc.prefill.grid.wallS, 1)} s (${doc.prefill.grid.summary?.compiles?.local ?? '?'} compiles, ${mib(doc.prefill.grid.cacheBytes)} MiB cache dir); ` +
    `go-cacher ${f(doc.prefill.cacher.wallS, 1)} s (${doc.prefill.cacher.stats?.puts ?? '?'} puts, ${mib(doc.prefill.cacher.cacheBytes)} MiB server dir).`)
  L.push('')
  L.push(`Load: \`${doc.machine.uptimeBefore}\` before, \`${doc.machine.uptimeAfter}\` after.` +
    (doc.machine.otherLabs.length > 0 ? ` Other labs were running on the machine during the run (${doc.machine.otherLabs.join(', ')}).` : ''))
  L.push('')
  L.push('### Reading the numbers', '')
  for (const s of doc.summary) {
    const g = s.grid
    const facts = []
    if (s.wallS.grid.median !== null && s.wallS.cacher.median !== null) {
      facts.push(`grid took ×${f(s.wallS.grid.median / s.wallS.cacher.median)} the wall time of go-cacher while moving ${f(s.h1Bytes.grid.rx / s.h1Bytes.cacher.rx, 3)}× its bytes into h1, ` +
        `and used ×${f(s.h1CpuS.grid / s.h1CpuS.cacher, 1)} its CPU on h1 and ×${f(s.h2CpuS.grid / s.h2CpuS.cacher, 1)} on the serving host h2`)
    }
    if (g.peerWaitMs !== null && s.wallS.grid.median !== null) {
      facts.push(`cmd/go waited on peers for ${f(g.peerWaitMs / 1000, 1)} s summed over ${g.lookups} gets (${f(g.meanWaitPerGetMs, 1)} ms each on average, lookup and fetch), ` +
        `${f(g.peerWaitMs / 1000 / s.wallS.grid.median, 1)}× the build's wall time: gets overlap only as far as cmd/go runs actions in parallel`)
    }
    if (g.lookupP99MsMax !== null) facts.push(`lookup p99 stayed under the 250 ms lookup deadline (largest p99 of a build ${f(g.lookupP99MsMax, 1)} ms); misses ${g.misses}, compiles ${g.compilesLocal} local / ${g.compilesRemote} remote`)
    L.push(`* \`${s.target}\`: ${facts.join('; ')}.`)
  }
  L.push('')
  if (readdirSync(dirname(OUT)).includes('shared-timeline.md')) L.push('Where a warm-peer build\'s time goes on h1, and what was changed for it, measured by hand: [`shared-timeline.md`](shared-timeline.md).', '')
  L.push('## What is measured', '')
  L.push(`* **The lab.** One lab, \`scripts/lab up ${doc.lab.hosts} --cpu ${doc.lab.cpuPerHost} --rate ${doc.lab.rate}\` with a unique prefix, torn down at the end (also on failure). ` +
    `h2, h3 and h4 run grid daemons (\`${doc.lab.daemonArgs.join(' ')}\`, default listen address, mDNS on, no swarm key); h2's grid cache is warm, h3's and h4's are empty. ` +
    `h2 also runs \`${doc.tools.server}\` on port ${CACHER_PORT} with a warm cache. h1 is the fresh host.`)
  L.push('* **Warm caches** are filled before any timing, on the machine itself (all cores, outside the namespaces): `grid build <all targets>` into h2\'s grid cache dir, with an embedded node listening on 127.0.0.1 only, mDNS off (so h2\'s entries are signed by h2\'s own key, which lives in that cache dir); ' +
    `and \`go build -trimpath <all targets>\` through \`go-cacher\` (its own empty local dir) into the server's cache dir, with the server on 127.0.0.1, then restarted inside h2 on the same dir.`)
  L.push('* **Cases**, each on h1 with `scripts/lab run h1 -- …` (h1\'s namespace and 0.5-core cgroup), the order reversed every round (plain, grid, go-cacher; then go-cacher, grid, plain):')
  L.push('  * *plain*: `go build -trimpath T`, empty `GOCACHE`.')
  L.push('  * *grid*: a grid daemon on h1 on an empty grid cache (only the shim, a one-time build per Go version, is copied in) is started and waited for until it lists h2, h3 and h4 as connected — outside the timing; then `grid --json build T` (which runs `go build -trimpath` with grid as GOCACHEPROG) with an empty `GOCACHE`. Stopped afterwards, so the other cases run without it.')
  L.push('  * *go-cacher*: `GOCACHEPROG="go-cacher --verbose --cache-dir <empty> --cache-server http://10.77.0.2:31364" go build -trimpath T`, empty `GOCACHE`.')
  L.push('* **Bytes** are h1\'s `eth0` counters (`/sys/class/net/eth0/statistics` in its namespace: Ethernet frames, 14-byte header, no preamble/FCS) before and after the build; they include the mesh chatter of the running daemons (see the plain row) and, for grid, the lookups to h3 and h4. ' +
    '**CPU** is the hosts\' cgroup `cpuacct.usage`; h1\'s includes its daemon\'s work for grid.')
  L.push('* **Lookup latency** is grid\'s own: from the summary\'s `cache.peer.lookups` (per get that asked the mesh, from asking to the answer used).')
  L.push('')
  L.push('## Caveats', '')
  L.push('* The machine is shared. Other jobs ran on it during the run (see the load above), so wall times are noisy; the hosts\' quotas cap each host at 0.5 core but do not guarantee it.')
  L.push('* All hosts share one disk and page cache: the warm caches on h2 are likely in memory, as they would be on a peer that just built.')
  L.push('* `go build` of several packages compiles but does not keep results; for `cmd/...` it also links every command (`go build -n cmd/...` lists 153 links), and cmd/go does not cache those links, so every case, warm or not, runs them all on h1: part of the warm builds\' time that no cache removes.')
  L.push('* Links are 1gbit with ~0.1 ms round trips (no netem on this kernel): a fast switched LAN. go-cacher does one or two HTTP round trips per get (its server speaks the two-request protocol); grid batches lookups and asks every connected member.')
  L.push('* `go-cacher` and its server are Go binaries; grid is Node. Both run inside the same quotas.')
  L.push('')
  L.push('## Reproduce', '')
  L.push('```')
  L.push('npx tsc --build')
  L.push('sudo node scripts/bench-shared.js                               # --rounds 3 --targets std,cmd/...:1')
  L.push('sudo node scripts/bench-shared.js --rounds 5 --targets std --out /tmp/shared.json')
  L.push('sudo node scripts/bench-shared.js --server gocached            # the other go-tool-cache server')
  L.push('```')
  L.push('')
  L.push(`If the working tree may be rebuilt while the benchmark runs (a rebuild changes the code under test, and a changed shim is rebuilt inside a timed grid build), run it from a snapshot of its own` +
    `${doc.root !== undefined ? ` (the run above ran from \`${doc.root}\`)` : ''}:`, '')
  L.push('```')
  L.push('git clone --shared . /tmp/gridsnap && cp -a node_modules /tmp/gridsnap/ && (cd /tmp/gridsnap && npx tsc --build)')
  L.push('sudo node /tmp/gridsnap/scripts/bench-shared.js --out "$PWD/docs/benchmarks/shared.json"')
  L.push('```')
  L.push('')
  L.push('The script refuses a grid sample whose shim is not the one seeded from the pre-fill, and the JSON records whether the build changed during the run (`git.rebuiltDuringRun`).', '')
  L.push('`TARGET:N` gives one target N rounds. It needs root, what the lab needs (iproute2, cgroup-v1 cpu), Go and network access for `go install` of go-tool-cache ' +
    'the first time. It leaves nothing behind; if it is killed with SIGKILL, remove the lab with `scripts/lab --prefix <prefix> down` (`ip netns list | grep ^bs`).')
  L.push('')
  return L.join('\n')
}

// ---------------------------------------------------------------- main

async function main () {
  if (process.getuid?.() !== 0) { say('needs root (the lab: network namespaces, tc, cgroups)'); process.exit(2) }
  await lab.open()
  const prefix = lab.prefix
  const run = lab.circumstances(execFileSync('go', ['version'], { encoding: 'utf8' }).trim())
  const samples = []
  let prefill
  let serverChild
  try {
    tools = await ensureGoToolCache()
    say(`lab ${prefix}: up ${HOSTS} --cpu ${CPU} --rate ${RATE}`)
    await lab.lab(['up', String(HOSTS), '--cpu', String(CPU), '--rate', RATE])
    const allTargets = TARGETS.map(t => t.target)
    const serverDir = join(lab.hostDir(2), SERVER)
    await mkdir(serverDir, { recursive: true })
    const grid = await prefillGrid(allTargets)
    say(`grid pre-fill: ${grid.wallS} s, ${grid.summary?.compiles?.local} compiles`)
    const cacher = await prefillCacher(allTargets, serverDir)
    say(`go-cacher pre-fill: ${cacher.wallS} s, ${JSON.stringify(cacher.stats)}`)
    prefill = { grid, cacher }

    say('starting daemons on h2, h3, h4 and the cache server on h2')
    for (const h of ['h2', 'h3', 'h4']) await lab.lab(['start', h, '--', ...DAEMON_ARGS])
    serverChild = startBackground(LAB, ['--prefix', prefix, 'run', 'h2', '--', tools.server, ...serverArgs(serverDir, `:${CACHER_PORT}`)], join(lab.hostDir(2), `${SERVER}.log`))
    await waitForCacherServer()
    await lab.waitForPeers(2, 2)

    for (const t of TARGETS) {
      for (let r = 1; r <= t.rounds; r++) {
        const order = r % 2 === 1 ? CASES : [...CASES].reverse()
        for (const c of order) {
          if (lab.aborted) throw new Error('interrupted')
          say(`${t.target} round ${r}/${t.rounds}: ${c}`)
          let s
          try { s = await RUNNERS[c](t.target) } catch (err) { s = { case: c, ok: false, error: err.message } }
          s.target = t.target
          s.round = r
          samples.push(s)
          const g = s.summary
          say(`  ${c}: ${s.ok ? `${s.wallS} s` : `FAILED ${s.error?.split('\n').slice(-3).join(' | ')}`}; h1 rx ${(s.h1RxBytes / 1048576).toFixed(1)} MiB tx ${(s.h1TxBytes / 1048576).toFixed(1)} MiB, h1 CPU ${s.h1CpuS} s` +
            (g ? `; hits ${g.cache.hits} (peer ${g.cache.peerHits}) misses ${g.cache.misses}, lookups ${g.cache.peer.lookups.count} p50 ${g.cache.peer.lookups.p50Ms} p99 ${g.cache.peer.lookups.p99Ms} ms, wait ${g.cache.peer.waitMs} ms, compiles ${g.compiles.local}/${g.compiles.remote}` : '') +
            (s.cacher ? `; go-cacher ${JSON.stringify(s.cacher)}` : ''))
        }
      }
    }
  } finally {
    await stopBackground(serverChild)
    await lab.teardown()
  }

  const doc = {
    date: run.date,
    ...run.end(),
    lab: { hosts: HOSTS, cpuPerHost: CPU, cfsPeriodUs: 100000, rate: RATE, tbf: 'burst 256kb latency 5ms, both directions', daemonArgs: DAEMON_ARGS, mdns: true, swarmKey: null, warmHost: 'h2', emptyPeers: ['h3', 'h4'], freshHost: 'h1' },
    tools: { module: GO_TOOL_CACHE, version: tools?.version ?? null, client: 'go-cacher', server: SERVER, serverAddress: `${CACHER_SERVER_IP}:${CACHER_PORT}` },
    params: { rounds: ROUNDS, targets: TARGETS, cases: CASES, buildTimeoutSeconds: BUILD_TIMEOUT_MS / 1000 },
    prefill,
    summary: TARGETS.map(t => summarize(t, samples.filter(s => s.target === t.target))),
    samples
  }
  await mkdir(dirname(OUT), { recursive: true })
  await writeFile(OUT, JSON.stringify(doc, null, 2) + '\n')
  const md = join(dirname(OUT), basename(OUT).replace(/\.json$/, '') + '.md')
  await writeFile(md, markdown(doc))
  say(`wrote ${relative(process.cwd(), OUT) || OUT} and ${relative(process.cwd(), md) || md}`)
  for (const s of doc.summary) {
    say(`${s.target}: plain ${s.wallS.plain.median} s, grid ${s.wallS.grid.median} s (×${s.speedup.grid}), go-cacher ${s.wallS.cacher.median} s (×${s.speedup.cacher}); ` +
      `grid lookups ${s.grid.lookups} p50 ${s.grid.lookupP50Ms} ms p99 ${s.grid.lookupP99Ms} ms, peer hits ${s.grid.peerHits}, compiles ${s.grid.compilesLocal}`)
  }
  return samples.every(s => s.ok) ? 0 : 1
}

main().then(code => process.exit(code), async (err) => {
  if (lab.aborted) return // the signal handler tears down and exits
  say(err.stack ?? String(err))
  await lab.teardown().catch(() => {})
  process.exit(1)
})
