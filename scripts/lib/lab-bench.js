/**
 * Helpers shared by the lab benchmarks (scripts/bench-shared.js, scripts/bench-remote.js).
 * Node builtins only.
 *
 *   numbers      median, maxOf, r2, r3, posInt, parseTargets
 *   the machine  uptime, loadavg, gitInfo, newestBuild, otherLabs, duBytes, readLog
 *   a lab host   cgroupCpuSeconds, cgroupThrottle, netCounters (by prefix and host number)
 *   LabRun       one lab with a unique prefix: a temp dir, the processes started for it (each
 *                in its own process group), `scripts/lab` calls, the peers a host's daemon
 *                lists, and a teardown that always runs (at the end, on failure, on SIGINT)
 */
import { execFile, execFileSync, spawn } from 'node:child_process'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..')
export const LAB = join(ROOT, 'scripts', 'lab')
export const GRID = join(ROOT, 'packages', 'cli', 'bin', 'grid.js')
export const CG_CPU = '/sys/fs/cgroup/cpu'
export const CG_ACCT = '/sys/fs/cgroup/cpuacct'

// ---------------------------------------------------------------- numbers

export const sleep = (ms) => new Promise(resolve => setTimeout(resolve, ms))
const finite = (xs) => xs.filter(x => typeof x === 'number' && Number.isFinite(x))
export const median = (xs) => {
  const s = finite(xs).sort((a, b) => a - b)
  if (s.length === 0) return null
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2
}
export const maxOf = (xs) => { const s = finite(xs); return s.length === 0 ? null : Math.max(...s) }
export const r3 = (x) => x === null || x === undefined ? null : Math.round(x * 1000) / 1000
export const r2 = (x) => x === null || x === undefined ? null : Math.round(x * 100) / 100

/** A positive integer option, or exit 2 naming the option. */
export function posInt (s, name) {
  const n = Number(s)
  if (!Number.isInteger(n) || n < 1) { process.stderr.write(`${name}: expected a positive integer, got ${s}\n`); process.exit(2) }
  return n
}

/** `std,cmd/...:1` → [{target: 'std', rounds}, {target: 'cmd/...', rounds: 1}]. */
export function parseTargets (spec, rounds, name = '--targets') {
  return spec.split(',').map(s => s.trim()).filter(Boolean).map(s => {
    const m = /^(.*?)(?::(\d+))?$/.exec(s)
    return { target: m[1], rounds: m[2] === undefined ? rounds : posInt(m[2], `${name} ${s}`) }
  })
}

// ---------------------------------------------------------------- the machine

export const uptime = () => { try { return execFileSync('uptime', { encoding: 'utf8' }).trim() } catch { return null } }
export const loadavg = () => os.loadavg().map(x => Math.round(x * 100) / 100)

export function gitInfo () {
  try {
    const commit = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim()
    const dirtyFiles = execFileSync('git', ['status', '--porcelain'], { cwd: ROOT, encoding: 'utf8' }).split('\n').filter(Boolean).map(l => l.slice(3))
    return { commit, dirty: dirtyFiles.length > 0, dirtyFiles }
  } catch { return { commit: null, dirty: null, dirtyFiles: [] } }
}

/** Newest mtime (ms) of the compiled packages: a rebuild during the run would mix code. */
export function newestBuild () {
  let newest = 0
  const walk = (dir) => {
    let entries
    try { entries = readdirSync(dir, { withFileTypes: true }) } catch { return }
    for (const e of entries) {
      const p = join(dir, e.name)
      if (e.isDirectory()) walk(p)
      else if (e.name.endsWith('.js')) newest = Math.max(newest, statSync(p).mtimeMs)
    }
  }
  for (const pkg of readdirSync(join(ROOT, 'packages'))) walk(join(ROOT, 'packages', pkg, 'dist'))
  return newest
}

/** Prefixes of the labs (network namespaces `<prefix>-h<i>` / `-sw`) on the machine, but `except`. */
export function otherLabs (except) {
  try {
    return [...new Set(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).split('\n')
      .map(l => l.split(' ')[0].replace(/-(h\d+|sw)$/, '')).filter(p => p !== '' && p !== except))]
  } catch { return [] }
}

export function readLog (p) { try { return readFileSync(p, 'utf8').slice(-2000) } catch { return '' } }
export function duBytes (dir) { try { return Number(execFileSync('du', ['-sb', dir], { encoding: 'utf8' }).split('\t')[0]) } catch { return null } }

// ---------------------------------------------------------------- a lab host

/** CPU seconds the host's cgroup has used (cpuacct.usage), or null. */
export function cgroupCpuSeconds (prefix, i) {
  for (const p of [`${CG_ACCT}/${prefix}-h${i}/cpuacct.usage`, `${CG_CPU}/${prefix}-h${i}/cpuacct.usage`]) {
    try { return Number(readFileSync(p, 'utf8')) / 1e9 } catch {}
  }
  return null
}

/** The host's CFS throttling counters (cgroup-v1 cpu.stat): periods, throttled periods, throttled time. */
export function cgroupThrottle (prefix, i) {
  try {
    const st = Object.fromEntries(readFileSync(`${CG_CPU}/${prefix}-h${i}/cpu.stat`, 'utf8').trim().split('\n').map(l => { const [k, v] = l.split(' '); return [k, Number(v)] }))
    return { periods: st.nr_periods ?? null, throttled: st.nr_throttled ?? null, throttledS: st.throttled_time === undefined ? null : st.throttled_time / 1e9 }
  } catch { return { periods: null, throttled: null, throttledS: null } }
}

/** The host's eth0 byte and packet counters (read inside its namespace). */
export function netCounters (prefix, i) {
  return new Promise((resolve, reject) => {
    execFile('ip', ['netns', 'exec', `${prefix}-h${i}`, 'sh', '-c',
      'd=/sys/class/net/eth0/statistics; echo $(cat $d/rx_bytes) $(cat $d/tx_bytes) $(cat $d/rx_packets) $(cat $d/tx_packets)'],
    { timeout: 30_000 }, (err, stdout) => {
      if (err) return reject(err)
      const [rxBytes, txBytes, rxPackets, txPackets] = stdout.trim().split(/\s+/).map(Number)
      resolve({ rxBytes, txBytes, rxPackets, txPackets })
    })
  })
}

// ---------------------------------------------------------------- one lab

export class LabRun {
  /**
   * @param {object} o
   * @param {string} o.name        progress lines start with it (`bench-remote: 12:00:00 …`)
   * @param {string} o.tag         prefix of the lab's prefix and of the temp dir's name
   * @param {number} o.timeoutMs   default limit of one run()
   */
  constructor ({ name, tag, timeoutMs }) {
    this.name = name
    this.tag = tag
    this.timeoutMs = timeoutMs
    this.prefix = undefined
    this.tmp = undefined
    this.cfgDir = undefined
    this.aborted = false
    this.children = new Set()
  }

  say (msg) { process.stderr.write(`${this.name}: ${new Date().toISOString().slice(11, 19)} ${msg}\n`) }

  /** Makes the temp dir and the prefix, and tears down on SIGINT/SIGTERM. Call before up(). */
  async open () {
    this.tmp = await mkdtemp(`/tmp/${this.name}-`)
    this.cfgDir = join(this.tmp, 'xdg-config')
    await mkdir(this.cfgDir)
    this.prefix = `${this.tag}${process.pid.toString(36)}${Math.random().toString(36).slice(2, 5)}`
    let tearing = false
    const onSignal = (sig) => {
      if (tearing) return
      tearing = true
      this.aborted = true
      this.say(`${sig}: tearing down`)
      this.teardown().finally(() => process.exit(130))
    }
    process.once('SIGINT', onSignal)
    process.once('SIGTERM', onSignal)
  }

  /** /tmp/<prefix>/h<i>: the host's dir (cache/, grid.sock, gocache/, daemon.log). */
  hostDir (i) { return `/tmp/${this.prefix}/h${i}` }

  /** The environment of everything started: no one's grid config, no GOCACHEPROG. */
  baseEnv (extra = {}) {
    const env = { ...process.env, XDG_CONFIG_HOME: this.cfgDir, ...extra }
    for (const k of ['GRID_CONFIG', 'GRID_LAB_PREFIX', 'GRID_CACHE', 'GRID_CONTROL', 'GOCACHEPROG']) if (!(k in extra)) delete env[k]
    return env
  }

  /** Runs a command to its end; resolves with code, stdout, stderr and wall seconds. */
  run (cmd, args, { env = this.baseEnv(), timeoutMs = this.timeoutMs, cwd = ROOT } = {}) {
    return new Promise((resolve) => {
      const t0 = process.hrtime.bigint()
      const child = spawn(cmd, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
      this.children.add(child)
      let stdout = ''; let stderr = ''
      child.stdout.on('data', (b) => { stdout += b })
      child.stderr.on('data', (b) => { stderr += b })
      const timer = setTimeout(() => { stderr += `\n[killed after ${timeoutMs / 1000} s]`; try { process.kill(-child.pid, 'SIGKILL') } catch {} }, timeoutMs)
      child.on('close', (code, signal) => {
        clearTimeout(timer)
        this.children.delete(child)
        resolve({ code: code ?? (signal === null ? -1 : 128), signal, stdout, stderr, wallS: Number(process.hrtime.bigint() - t0) / 1e9 })
      })
      child.on('error', (err) => { stderr += String(err) })
    })
  }

  /** `scripts/lab --prefix <prefix> ARGS…`; throws with the end of its stderr if it fails. */
  async lab (args, timeoutMs = 120_000) {
    const r = await this.run(LAB, ['--prefix', this.prefix, ...args], { timeoutMs })
    if (r.code !== 0) throw new Error(`scripts/lab ${args.join(' ')} exited ${r.code}: ${r.stderr.trim().split('\n').slice(-15).join('\n')}`)
    return r
  }

  /** `grid --json CMD` against host i's daemon (its control socket is a path socket: reachable from here). */
  async gridJson (i, cmd) {
    const r = await this.run(process.execPath, [GRID, '--json', cmd], {
      env: this.baseEnv({ GRID_CONTROL: `${this.hostDir(i)}/grid.sock`, GRID_CACHE: `${this.hostDir(i)}/cache` }), timeoutMs: 15_000
    })
    if (r.code !== 0) return null
    try { return JSON.parse(r.stdout) } catch { return null }
  }

  /**
   * The peers host i's daemon lists as connected and `accept` (by default: all of them).
   * @param {number} i
   * @param {(peer: any) => boolean} [accept]
   */
  async connectedPeers (i, accept = () => true) {
    const list = await this.gridJson(i, 'peers')
    return Array.isArray(list) ? list.filter(p => p.connected === true && accept(p)) : []
  }

  /** Polls until host i lists `want` connected peers that `accept`; throws after timeoutMs. */
  async waitForPeers (i, want, { timeoutMs = 60_000, accept = undefined } = {}) {
    const t0 = Date.now()
    for (;;) {
      const peers = await this.connectedPeers(i, accept)
      if (peers.length >= want) return { seconds: r2((Date.now() - t0) / 1000), peers: peers.length, list: peers }
      if (Date.now() - t0 > timeoutMs) throw new Error(`h${i}: ${peers.length} of ${want} peers connected${accept ? ' and ready' : ''} after ${timeoutMs / 1000} s`)
      await sleep(300)
    }
  }

  /**
   * The run's circumstances, taken now: the date, the commit, the newest build, the load, the
   * other labs on the machine. `end()` adds what changed by then, as a record's `git` and
   * `machine` (with `go`, the output of `go version`).
   * @param {string} go
   */
  circumstances (go) {
    const prefix = this.prefix
    const date = new Date().toISOString()
    const uptimeBefore = uptime()
    const git = gitInfo()
    const buildBefore = newestBuild()
    const labsBefore = otherLabs(prefix)
    return {
      date,
      end: () => ({
        git: { ...git, unchangedDuringRun: JSON.stringify(gitInfo()) === JSON.stringify(git), builtAt: new Date(buildBefore).toISOString(), rebuiltDuringRun: newestBuild() !== buildBefore },
        machine: machineInfo(go, { uptimeBefore, uptimeAfter: uptime(), otherLabs: [...new Set([...labsBefore, ...otherLabs(prefix)])] })
      })
    }
  }

  /** Kills what is still running, takes the lab down, removes the temp dir. Safe to call twice. */
  async teardown () {
    for (const c of this.children) { try { process.kill(-c.pid, 'SIGKILL') } catch {} }
    if (this.prefix !== undefined) {
      this.say(`tearing down lab ${this.prefix}`)
      try { execFileSync(LAB, ['--prefix', this.prefix, 'down'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'], env: this.baseEnv() }) } catch (err) { this.say(`down failed: ${err.message}`) }
    }
    this.prefix = undefined
    if (this.tmp !== undefined) await rm(this.tmp, { recursive: true, force: true })
    this.tmp = undefined
  }
}

/** What a benchmark record says about the machine; `extra` adds the script's own fields (load, labs). */
export function machineInfo (go, extra = {}) {
  return { node: process.version, go, cpuModel: os.cpus()[0]?.model ?? null, cores: os.cpus().length, kernel: os.release(), ...extra }
}
