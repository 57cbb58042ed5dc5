#!/usr/bin/env node
/**
 * Benchmark (not a test): the mesh in the lab office (scripts/lab, docs/lab.md). Needs root.
 *
 *   npx tsc --build && sudo node scripts/bench-mesh.js [--rounds 3] [--sizes 4,8] [--out FILE]
 *   node scripts/bench-mesh.js --render docs/benchmarks/mesh.json   (rewrites mesh.md from the JSON)
 *
 * For each size N, R rounds, each on a fresh lab with a unique prefix (`scripts/lab up N
 * --cpu 2/N --rate 1gbit`: the hosts' quotas add up to 2 cores), always torn down afterwards:
 *
 *   convergence  all N daemons are started at once (`scripts/lab start-all --no-wait -- --slots
 *                1`: default listen address, mDNS on, no bootstrap), then every host is polled
 *                every ~200 ms with a `peers` request until every host lists all N−1 others as
 *                connected. Reported: seconds from the start-all call to that moment, and to
 *                the moment the first host listed all others. Each host's daemon.log gives the
 *                breakdown (process start, control socket up, mesh listening, peers joined).
 *   at rest      10 s after convergence (polling stopped), each host's eth0 byte and packet
 *                counters, its TCP/UDP counters (/proc/net/snmp), the TCP payload of its
 *                connections (`ss -ti`) and its cgroup CPU time, read at t and t+60 s, scaled
 *                to one minute. eth0 is the host's only link, so this is all the mesh's traffic:
 *                gossipsub (adverts every 5 s, its own 1 s heartbeat control), libp2p pings,
 *                identify, yamux/Noise framing, TCP/IP headers and ACKs, and mDNS. Frames are
 *                counted as the kernel does (Ethernet header, no preamble/FCS).
 *
 * Polling goes over each host's control socket (a path socket under /tmp/<prefix>/hI/) from
 * this process, in the machine's own namespace and outside every quota: it does not touch the
 * lab's links, and costs the hosts only the daemon's work to answer (inside its quota). The
 * control protocol (u32 length + msgpack map) is spoken directly, with a minimal msgpack codec
 * below, so that polling does not spawn a Node CLI per poll (40 of them a second at N = 8 would
 * take the CPU the hosts are measured on).
 *
 * The daemons get an empty config dir (XDG_CONFIG_HOME in a temp dir, GRID_CONFIG unset): no
 * swarm key, nobody's config. Writes JSON (default docs/benchmarks/mesh.json) and mesh.md
 * beside it. Progress goes to stderr. Node builtins only.
 */
import { execFile, execFileSync, spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { createConnection } from 'node:net'
import os from 'node:os'
import { basename, dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { gitInfo, newestBuild, machineInfo } from './lib/lab-bench.js'

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const LAB = join(ROOT, 'scripts', 'lab')
const TOTAL_CORES = 2
const RATE = '1gbit'
const DAEMON_ARGS = ['--slots', '1']
const CG_CPU = '/sys/fs/cgroup/cpu'
const CG_ACCT = '/sys/fs/cgroup/cpuacct'

const { values: opts } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    sizes: { type: 'string', default: '4,8' },
    out: { type: 'string', default: join(ROOT, 'docs', 'benchmarks', 'mesh.json') },
    'poll-ms': { type: 'string', default: '200' },
    'rest-wait': { type: 'string', default: '10' },
    window: { type: 'string', default: '60' },
    timeout: { type: 'string', default: '120' },
    render: { type: 'string' },
    help: { type: 'boolean', short: 'h' }
  }
})
if (opts.help) {
  process.stderr.write('usage: sudo node scripts/bench-mesh.js [--rounds 3] [--sizes 4,8] [--out docs/benchmarks/mesh.json]\n' +
    '         [--poll-ms 200] [--rest-wait 10] [--window 60] [--timeout 120]\n' +
    '       node scripts/bench-mesh.js --render FILE.json     # rewrite the .md beside it from the JSON\n')
  process.exit(2)
}
const ROUNDS = posInt(opts.rounds, '--rounds')
const SIZES = opts.sizes.split(',').map(s => posInt(s.trim(), '--sizes'))
const POLL_MS = posInt(opts['poll-ms'], '--poll-ms')
const REST_WAIT_S = Number(opts['rest-wait'])
const WINDOW_S = posInt(opts.window, '--window')
const TIMEOUT_S = posInt(opts.timeout, '--timeout')
const OUT = resolve(opts.out)
const RENDER = opts.render === undefined ? undefined : resolve(opts.render)

function posInt (s, name) {
  const n = Number(s)
  if (!Number.isInteger(n) || n < 1) { process.stderr.write(`${name}: expected a positive integer, got ${s}\n`); process.exit(2) }
  return n
}

const say = (msg) => process.stderr.write(`bench-mesh: ${msg}\n`)
const sleep = (ms) => new Promise(resolve => setTimeout(resolve, ms))
const median = (xs) => {
  const s = xs.filter(x => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b)
  if (s.length === 0) return null
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2
}
const max = (xs) => { const s = xs.filter(x => typeof x === 'number'); return s.length === 0 ? null : Math.max(...s) }
const min = (xs) => { const s = xs.filter(x => typeof x === 'number'); return s.length === 0 ? null : Math.min(...s) }
const r3 = (x) => x === null || x === undefined ? null : Math.round(x * 1000) / 1000
const r0 = (x) => x === null || x === undefined ? null : Math.round(x)

// ---------------------------------------------------------------- minimal msgpack

function encodeMsgpack (value) {
  const parts = []
  const enc = (v) => {
    if (v === null || v === undefined) parts.push(Buffer.from([0xc0]))
    else if (v === true || v === false) parts.push(Buffer.from([v ? 0xc3 : 0xc2]))
    else if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffffffff) {
      if (v < 128) parts.push(Buffer.from([v]))
      else { const b = Buffer.alloc(5); b[0] = 0xce; b.writeUInt32BE(v, 1); parts.push(b) }
    } else if (typeof v === 'string') {
      const s = Buffer.from(v, 'utf8')
      if (s.length < 32) parts.push(Buffer.from([0xa0 | s.length]))
      else { const b = Buffer.alloc(5); b[0] = 0xdb; b.writeUInt32BE(s.length, 1); parts.push(b) }
      parts.push(s)
    } else if (typeof v === 'object' && !Array.isArray(v)) {
      const keys = Object.keys(v)
      if (keys.length >= 16) throw new Error('map too large for this encoder')
      parts.push(Buffer.from([0x80 | keys.length]))
      for (const k of keys) { enc(k); enc(v[k]) }
    } else throw new Error(`cannot encode ${typeof v}`)
  }
  enc(value)
  return Buffer.concat(parts)
}

function decodeMsgpack (buf) {
  let p = 0
  const str = (n) => { const s = buf.toString('utf8', p, p + n); p += n; return s }
  const bin = (n) => { const b = buf.subarray(p, p + n); p += n; return b }
  const arr = (n) => { const a = []; for (let i = 0; i < n; i++) a.push(dec()); return a }
  const map = (n) => { const o = {}; for (let i = 0; i < n; i++) { const k = dec(); o[String(k)] = dec() } return o }
  const dec = () => {
    const t = buf[p++]
    if (t <= 0x7f) return t
    if (t >= 0xe0) return t - 0x100
    if ((t & 0xf0) === 0x80) return map(t & 0x0f)
    if ((t & 0xf0) === 0x90) return arr(t & 0x0f)
    if ((t & 0xe0) === 0xa0) return str(t & 0x1f)
    let v
    switch (t) {
      case 0xc0: return null
      case 0xc2: return false
      case 0xc3: return true
      case 0xc4: v = buf[p]; p += 1; return bin(v)
      case 0xc5: v = buf.readUInt16BE(p); p += 2; return bin(v)
      case 0xc6: v = buf.readUInt32BE(p); p += 4; return bin(v)
      case 0xca: v = buf.readFloatBE(p); p += 4; return v
      case 0xcb: v = buf.readDoubleBE(p); p += 8; return v
      case 0xcc: v = buf[p]; p += 1; return v
      case 0xcd: v = buf.readUInt16BE(p); p += 2; return v
      case 0xce: v = buf.readUInt32BE(p); p += 4; return v
      case 0xcf: v = Number(buf.readBigUInt64BE(p)); p += 8; return v
      case 0xd0: v = buf.readInt8(p); p += 1; return v
      case 0xd1: v = buf.readInt16BE(p); p += 2; return v
      case 0xd2: v = buf.readInt32BE(p); p += 4; return v
      case 0xd3: v = Number(buf.readBigInt64BE(p)); p += 8; return v
      case 0xd9: v = buf[p]; p += 1; return str(v)
      case 0xda: v = buf.readUInt16BE(p); p += 2; return str(v)
      case 0xdb: v = buf.readUInt32BE(p); p += 4; return str(v)
      case 0xdc: v = buf.readUInt16BE(p); p += 2; return arr(v)
      case 0xdd: v = buf.readUInt32BE(p); p += 4; return arr(v)
      case 0xde: v = buf.readUInt16BE(p); p += 2; return map(v)
      case 0xdf: v = buf.readUInt32BE(p); p += 4; return map(v)
      case 0xd4: p += 2; return undefined // fixext: not expected; skip
      case 0xd5: p += 3; return undefined
      case 0xd6: p += 5; return undefined
      case 0xd7: p += 9; return undefined
      case 0xd8: p += 17; return undefined
      default: throw new Error(`msgpack type 0x${t.toString(16)} not supported`)
    }
  }
  return dec()
}

// ---------------------------------------------------------------- control socket client

/** One connection to a node's control socket; requests are `{type, id}` maps. */
class Control {
  constructor (path) {
    this.path = path
    this.sock = undefined
    this.nextId = 1
    this.pending = new Map()
    this.buf = Buffer.alloc(0)
  }

  async connect () {
    await new Promise((resolve, reject) => {
      const sock = createConnection(this.path)
      sock.once('connect', () => { sock.off('error', reject); resolve() })
      sock.once('error', reject)
      sock.on('data', (chunk) => this.onData(chunk))
      sock.on('close', () => { if (this.sock === sock) this.fail(new Error('control connection closed')) })
      sock.on('error', () => {})
      this.sock = sock
    })
  }

  onData (chunk) {
    this.buf = Buffer.concat([this.buf, chunk])
    while (this.buf.length >= 4) {
      const len = this.buf.readUInt32BE(0)
      if (this.buf.length < 4 + len) return
      const msg = decodeMsgpack(this.buf.subarray(4, 4 + len))
      this.buf = this.buf.subarray(4 + len)
      const waiter = this.pending.get(msg.id)
      if (waiter !== undefined) { this.pending.delete(msg.id); waiter.resolve(msg) }
    }
  }

  fail (err) {
    this.sock?.destroy()
    this.sock = undefined
    this.buf = Buffer.alloc(0)
    for (const w of this.pending.values()) w.reject(err)
    this.pending.clear()
  }

  async request (type, timeoutMs = 5000) {
    if (this.sock === undefined) await this.connect()
    const id = this.nextId++
    const body = encodeMsgpack({ type, id })
    const head = Buffer.alloc(4)
    head.writeUInt32BE(body.length, 0)
    const reply = new Promise((resolve, reject) => {
      const timer = setTimeout(() => { this.pending.delete(id); reject(new Error(`${type}: no reply in ${timeoutMs} ms`)) }, timeoutMs)
      this.pending.set(id, { resolve: (m) => { clearTimeout(timer); resolve(m) }, reject: (e) => { clearTimeout(timer); reject(e) } })
    })
    this.sock.write(Buffer.concat([head, body]))
    const msg = await reply
    if (msg.type === 'error') throw new Error(`${type}: ${msg.code}: ${msg.message}`)
    return msg
  }

  close () { this.fail(new Error('closed')) }
}

// ---------------------------------------------------------------- lab and host probes

let cfgDir
function labEnv () {
  const env = { ...process.env, XDG_CONFIG_HOME: cfgDir }
  delete env.GRID_CONFIG
  delete env.GRID_LAB_PREFIX
  return env
}

function lab (prefix, args, timeoutMs = 120_000) {
  return new Promise((resolve, reject) => {
    execFile(LAB, ['--prefix', prefix, ...args], { cwd: ROOT, env: labEnv(), timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`scripts/lab ${args.join(' ')} failed: ${err.message}\n${stderr}`))
      else resolve({ stdout, stderr })
    })
  })
}

function sh (cmd, args, timeoutMs = 30_000) {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout) => err ? reject(err) : resolve(stdout))
  })
}

function cgroupCpu (prefix, i) {
  const read = (p) => { try { return readFileSync(p, 'utf8') } catch { return undefined } }
  const usage = read(`${CG_ACCT}/${prefix}-h${i}/cpuacct.usage`) ?? read(`${CG_CPU}/${prefix}-h${i}/cpuacct.usage`)
  const stat = Object.fromEntries((read(`${CG_CPU}/${prefix}-h${i}/cpu.stat`) ?? '').trim().split('\n').filter(Boolean).map(l => { const [k, v] = l.split(' '); return [k, Number(v)] }))
  return { cpuSeconds: usage === undefined ? null : Number(usage) / 1e9, nrPeriods: stat.nr_periods ?? null, nrThrottled: stat.nr_throttled ?? null, throttledSeconds: stat.throttled_time === undefined ? null : stat.throttled_time / 1e9 }
}

/** Counters of one host, read inside its namespace in one go. */
async function hostCounters (prefix, i) {
  const script = 'd=/sys/class/net/eth0/statistics; echo "dev $(cat $d/tx_bytes) $(cat $d/rx_bytes) $(cat $d/tx_packets) $(cat $d/rx_packets)"; ' +
    'grep -E "^(Tcp|Udp):" /proc/net/snmp; echo "--ss"; ss -tinH state established "( sport = :4770 or dport = :4770 )"'
  const at = Date.now()
  const out = await sh('ip', ['netns', 'exec', `${prefix}-h${i}`, 'sh', '-c', script])
  const [head, ssText = ''] = out.split('--ss\n')
  const lines = head.trim().split('\n')
  const dev = lines[0].split(' ').slice(1).map(Number)
  const snmp = {}
  for (let k = 1; k + 1 < lines.length; k += 2) {
    const names = lines[k].split(/\s+/); const vals = lines[k + 1].split(/\s+/)
    const proto = names[0].replace(':', '')
    for (let j = 1; j < names.length; j++) snmp[`${proto}${names[j]}`] = Number(vals[j])
  }
  // ss -ti: one line for the socket, one (indented) for its tcp_info; key by the 4-tuple
  const conns = {}
  const ssLines = ssText.split('\n')
  for (let k = 0; k < ssLines.length; k++) {
    const m = /^(?:[A-Z-]+\s+)?\d+\s+\d+\s+(\S+)\s+(\S+)/.exec(ssLines[k])
    if (m === null) continue
    const info = ssLines[k + 1] ?? ''
    const num = (name) => { const x = new RegExp(`\\b${name}:(\\d+)`).exec(info); return x === null ? 0 : Number(x[1]) }
    conns[`${m[1]} ${m[2]}`] = { bytesSent: num('bytes_sent'), bytesReceived: num('bytes_received'), bytesRetrans: num('bytes_retrans'), segsOut: num('segs_out'), segsIn: num('segs_in') }
    k++
  }
  return {
    at,
    txBytes: dev[0], rxBytes: dev[1], txPackets: dev[2], rxPackets: dev[3],
    tcpOutSegs: snmp.TcpOutSegs, tcpInSegs: snmp.TcpInSegs, tcpRetransSegs: snmp.TcpRetransSegs, tcpCurrEstab: snmp.TcpCurrEstab,
    udpOutDatagrams: snmp.UdpOutDatagrams, udpInDatagrams: snmp.UdpInDatagrams,
    conns,
    cpu: cgroupCpu(prefix, i)
  }
}

function perMinute (a, b) {
  const f = 60_000 / (b.at - a.at)
  const d = (k) => (b[k] - a[k]) * f
  let payloadTx = 0; let payloadRx = 0; let retrans = 0; let kept = 0
  for (const [key, c] of Object.entries(b.conns)) {
    const c0 = a.conns[key]
    if (c0 === undefined) continue
    kept++
    payloadTx += c.bytesSent - c0.bytesSent
    payloadRx += c.bytesReceived - c0.bytesReceived
    retrans += c.bytesRetrans - c0.bytesRetrans
  }
  return {
    seconds: (b.at - a.at) / 1000,
    txBytes: r0(d('txBytes')), rxBytes: r0(d('rxBytes')), txPackets: r0(d('txPackets')), rxPackets: r0(d('rxPackets')),
    tcpPayloadTxBytes: r0(payloadTx * f), tcpPayloadRxBytes: r0(payloadRx * f), tcpRetransBytes: r0(retrans * f),
    tcpOutSegs: r0(d('tcpOutSegs')), tcpInSegs: r0(d('tcpInSegs')), tcpRetransSegs: r0(d('tcpRetransSegs')),
    udpOutDatagrams: r0(d('udpOutDatagrams')), udpInDatagrams: r0(d('udpInDatagrams')),
    connections: { atStart: Object.keys(a.conns).length, atEnd: Object.keys(b.conns).length, throughout: kept },
    cpuSeconds: a.cpu.cpuSeconds === null ? null : r3((b.cpu.cpuSeconds - a.cpu.cpuSeconds) * f)
  }
}

/** Process start of a pid as unix ms (10 ms resolution). */
function processStartMs (pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const ticks = Number(fields[19]) // since boot, in USER_HZ (100 on Linux)
    const uptime = Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0])
    return Date.now() - uptime * 1000 + ticks * 10
  } catch { return null }
}

/** Timestamps from a daemon.log: control socket up, mesh listening, each peer's first advert. */
function parseDaemonLog (text) {
  const out = { serving: null, meshListening: null, joined: {} }
  for (const line of text.split('\n')) {
    const m = /^(\d{4}-\d\d-\d\dT[\d:.]+Z) \w+ (\S+) (.*)$/.exec(line)
    if (m === null) continue
    const t = Date.parse(m[1])
    if (m[2] === 'grid:node' && / serving /.test(m[3]) && out.serving === null) out.serving = t
    else if (m[2] === 'grid:mesh' && /^mesh \S+ swarm .* listening on/.test(m[3]) && out.meshListening === null) out.meshListening = t
    else if (m[2] === 'grid:mesh') {
      const j = /^peer (\S+) joined/.exec(m[3])
      if (j !== null && out.joined[j[1]] === undefined) out.joined[j[1]] = t
    }
  }
  return out
}

// ---------------------------------------------------------------- one round

let currentPrefix

async function round (n, r) {
  const cpu = String(Math.round(TOTAL_CORES / n * 10000) / 10000)
  const prefix = `bm${process.pid.toString(36)}n${n}r${r}${Math.random().toString(36).slice(2, 5)}`
  currentPrefix = prefix
  const result = { size: n, round: r, prefix, cpuPerHost: Number(cpu), loadAvg: os.loadavg().map(x => Math.round(x * 100) / 100), ok: false }
  const ctls = []
  try {
    say(`N=${n} round ${r}: up (${prefix}, cpu ${cpu} core each, ${RATE})`)
    await lab(prefix, ['up', String(n), '--cpu', String(cpu), '--rate', RATE])
    const hosts = Array.from({ length: n }, (_, k) => k + 1)
    const cpuBefore = hosts.map(i => cgroupCpu(prefix, i))
    const state = hosts.map(i => ({ i, nodeId: null, controlAt: null, firstPeerAt: null, firstCompleteAt: null, complete: false, polls: 0, pollErrors: 0, lastError: null, lastConnected: [] }))
    for (const i of hosts) ctls.push(new Control(`/tmp/${prefix}/h${i}/grid.sock`))

    // Start every daemon at once; poll while start-all is still launching them.
    const t0 = Date.now()
    const startAll = new Promise((resolve) => {
      const child = spawn(LAB, ['--prefix', prefix, 'start-all', '--no-wait', '--', ...DAEMON_ARGS], { cwd: ROOT, env: labEnv(), stdio: ['ignore', 'ignore', 'pipe'] })
      let err = ''
      child.stderr.on('data', (b) => { err += b })
      child.on('close', (code) => resolve({ code, stderr: err, at: Date.now() }))
    })
    let convergedAt = null
    const deadline = t0 + TIMEOUT_S * 1000
    const pollHost = async (s) => {
      const ctl = ctls[s.i - 1]
      let next = Date.now()
      while (convergedAt === null && Date.now() < deadline) {
        next += POLL_MS
        try {
          if (s.nodeId === null) {
            const st = await ctl.request('status')
            s.nodeId = st.status.nodeId
            s.controlAt = Date.now()
          }
          const reply = await ctl.request('peers')
          const now = Date.now()
          s.polls++
          const connected = reply.peers.filter(p => p.connected === true && p.peerId !== s.nodeId).map(p => p.peerId)
          s.lastConnected = connected
          if (connected.length > 0 && s.firstPeerAt === null) s.firstPeerAt = now
          s.complete = new Set(connected).size >= n - 1
          if (s.complete && s.firstCompleteAt === null) s.firstCompleteAt = now
          if (convergedAt === null && state.every(x => x.complete)) convergedAt = now
        } catch (err) {
          s.pollErrors++
          s.lastError = err.message
          ctl.close()
        }
        await sleep(Math.max(0, next - Date.now()))
      }
    }
    await Promise.all(state.map(pollHost))
    for (const c of ctls) c.close()
    const started = await startAll
    result.startAll = { exitCode: started.code, seconds: r3((started.at - t0) / 1000) }
    if (started.code !== 0) throw new Error(`start-all exited ${started.code}: ${started.stderr.trim()}`)

    // where the time went, per host
    const ids = state.map(s => s.nodeId)
    const perHost = []
    for (const s of state) {
      const dir = `/tmp/${prefix}/h${s.i}`
      const pid = Number((await readFile(`${dir}/daemon.pid`, 'utf8').catch(() => '')).trim()) || null
      const log = parseDaemonLog(await readFile(`${dir}/daemon.log`, 'utf8').catch(() => ''))
      const joinedOthers = Object.entries(log.joined).filter(([id]) => id !== s.nodeId && ids.includes(id)).map(([, t]) => t).sort((a, b) => a - b)
      const c1 = cgroupCpu(prefix, s.i); const c0 = cpuBefore[s.i - 1]
      const rel = (t) => t === null || t === undefined ? null : r3((t - t0) / 1000)
      perHost.push({
        host: `h${s.i}`,
        nodeId: s.nodeId,
        processStart: rel(pid === null ? null : processStartMs(pid)),
        serving: rel(log.serving),
        meshListening: rel(log.meshListening),
        firstJoined: rel(joinedOthers[0]),
        allJoined: joinedOthers.length >= n - 1 ? rel(joinedOthers[n - 2]) : null,
        firstPoll: rel(s.controlAt),
        firstPeerPolled: rel(s.firstPeerAt),
        allConnectedPolled: rel(s.firstCompleteAt),
        polls: s.polls,
        pollErrorsBeforeUp: s.pollErrors,
        cpuSecondsToConvergence: c1.cpuSeconds === null ? null : r3(c1.cpuSeconds - c0.cpuSeconds),
        throttledPeriods: c1.nrThrottled === null ? null : c1.nrThrottled - c0.nrThrottled,
        periods: c1.nrPeriods === null ? null : c1.nrPeriods - c0.nrPeriods,
        throttledSeconds: c1.throttledSeconds === null ? null : r3(c1.throttledSeconds - c0.throttledSeconds)
      })
    }
    result.perHost = perHost
    if (convergedAt === null) {
      result.error = `not converged after ${TIMEOUT_S} s: ` + state.map(s => `h${s.i} ${s.lastConnected.length}/${n - 1}${s.lastError ? ` (${s.lastError})` : ''}`).join(', ')
      say(result.error)
      return result
    }
    const unknown = state.flatMap(s => s.lastConnected.filter(id => !ids.includes(id)))
    if (unknown.length > 0) throw new Error(`hosts list peers that are not lab daemons: ${unknown.join(' ')}`)
    result.convergenceSeconds = r3((convergedAt - t0) / 1000)
    result.firstNodeSeconds = r3((min(state.map(s => s.firstCompleteAt)) - t0) / 1000)
    result.launchSpreadSeconds = r3(max(perHost.map(h => h.processStart)) - min(perHost.map(h => h.processStart)))
    say(`N=${n} round ${r}: converged in ${result.convergenceSeconds} s (first node ${result.firstNodeSeconds} s; ` +
      `daemons launched ${min(perHost.map(h => h.processStart))}–${max(perHost.map(h => h.processStart))} s, control up by ${max(perHost.map(h => h.serving))} s, ` +
      `mesh listening by ${max(perHost.map(h => h.meshListening))} s)`)

    // at rest
    await sleep(REST_WAIT_S * 1000)
    say(`N=${n} round ${r}: at rest, counting for ${WINDOW_S} s`)
    const a = await Promise.all(hosts.map(i => hostCounters(prefix, i)))
    await sleep(WINDOW_S * 1000)
    const b = await Promise.all(hosts.map(i => hostCounters(prefix, i)))
    const rest = hosts.map((i, k) => ({ host: `h${i}`, ...perMinute(a[k], b[k]) }))
    // still a full mesh at the end of the window?
    const still = await Promise.all(hosts.map(async (i) => {
      try {
        const reply = await ctls[i - 1].request('peers')
        return reply.peers.filter(p => p.connected === true && ids.includes(p.peerId)).length
      } catch { return null } finally { ctls[i - 1].close() }
    }))
    result.rest = {
      perHost: rest,
      txBytesPerMin: { median: median(rest.map(h => h.txBytes)), max: max(rest.map(h => h.txBytes)) },
      rxBytesPerMin: { median: median(rest.map(h => h.rxBytes)), max: max(rest.map(h => h.rxBytes)) },
      connectedPeersAtEnd: still
    }
    say(`N=${n} round ${r}: at rest per node per minute tx median ${kib(result.rest.txBytesPerMin.median)} max ${kib(result.rest.txBytesPerMin.max)}, ` +
      `rx median ${kib(result.rest.rxBytesPerMin.median)} max ${kib(result.rest.rxBytesPerMin.max)}; connected at end: ${still.join(',')}`)
    result.ok = still.every(c => c === n - 1)
    if (!result.ok) result.error = `not a full mesh at the end of the window: ${still.join(',')}`
    return result
  } catch (err) {
    result.error = err.message
    say(`N=${n} round ${r}: FAILED: ${err.message}`)
    return result
  } finally {
    for (const c of ctls) c.close()
    try { await lab(prefix, ['down'], 60_000) } catch (err) { say(`down ${prefix} failed: ${err.message}`) }
    currentPrefix = undefined
  }
}

const kib = (b) => b === null ? '-' : `${(b / 1024).toFixed(1)} KiB`

// ---------------------------------------------------------------- summary and output

function summarize (rounds, n) {
  const rs = rounds.filter(r => r.size === n)
  const conv = rs.map(r => r.convergenceSeconds ?? null)
  const first = rs.map(r => r.firstNodeSeconds ?? null)
  const restHosts = rs.flatMap(r => r.rest?.perHost ?? [])
  const field = (k) => restHosts.map(h => h[k])
  const phase = (k) => r3(median(rs.map(r => max((r.perHost ?? []).map(h => h[k])))))
  return {
    size: n,
    cpuPerHost: Math.round(TOTAL_CORES / n * 10000) / 10000,
    rounds: rs.length,
    failedRounds: rs.filter(r => !r.ok).length,
    convergenceSeconds: { samples: conv, median: median(conv) },
    firstNodeSeconds: { samples: first, median: median(first) },
    // medians over rounds of the slowest host's time for each step (seconds from start-all)
    slowestHostMedian: {
      processStart: phase('processStart'),
      serving: phase('serving'),
      meshListening: phase('meshListening'),
      allJoined: phase('allJoined'),
      allConnectedPolled: phase('allConnectedPolled')
    },
    cpuSecondsToConvergenceMedian: r3(median(rs.flatMap(r => (r.perHost ?? []).map(h => h.cpuSecondsToConvergence)))),
    rest: {
      // over every node of every round
      nodes: restHosts.length,
      txBytesPerMin: { median: median(field('txBytes')), max: max(field('txBytes')), perRoundMedian: rs.map(r => r.rest?.txBytesPerMin.median ?? null) },
      rxBytesPerMin: { median: median(field('rxBytes')), max: max(field('rxBytes')), perRoundMedian: rs.map(r => r.rest?.rxBytesPerMin.median ?? null) },
      txPacketsPerMin: median(field('txPackets')),
      tcpPayloadTxBytesPerMin: median(field('tcpPayloadTxBytes')),
      tcpOutSegsPerMin: median(field('tcpOutSegs')),
      tcpRetransSegsPerMin: median(field('tcpRetransSegs')),
      udpOutDatagramsPerMin: median(field('udpOutDatagrams')),
      udpInDatagramsPerMin: median(field('udpInDatagrams')),
      cpuSecondsPerMin: r3(median(field('cpuSeconds')))
    }
  }
}


function versionOf (pkg) {
  try { return JSON.parse(readFileSync(join(ROOT, 'node_modules', pkg, 'package.json'), 'utf8')).version } catch { return null }
}

function markdown (doc) {
  const f = (x, d = 2) => x === null || x === undefined ? '–' : x.toFixed(d)
  const k = (b) => b === null || b === undefined ? '–' : `${(b / 1024).toFixed(1)}`
  const lines = []
  lines.push('# Mesh benchmark: convergence and traffic at rest', '')
  lines.push(`Grid daemons in the lab office (\`scripts/lab\`, [docs/lab.md](../lab.md)): N hosts on one switch, ${doc.lab.rate} links, CPU quotas adding up to ${doc.lab.totalCores} cores. ` +
    `Produced by \`scripts/bench-mesh.js\`; every sample, the per-host breakdown and the machine are in [\`mesh.json\`](mesh.json).`, '')
  lines.push('## Latest results', '')
  lines.push(`${doc.date.slice(0, 10)}, ${doc.rounds} round${doc.rounds === 1 ? '' : 's'} per size, commit ${doc.git.commit?.slice(0, 12)}${doc.git.dirty ? ' (with uncommitted changes)' : ''}` +
    `${doc.git.rebuiltDuringRun || !doc.git.unchangedDuringRun ? ' (**the tree or build changed during the run**)' : ''}; ` +
    `node ${doc.machine.node}, ${doc.machine.go}; ${doc.machine.cpuModel} × ${doc.machine.cores} cores, kernel ${doc.machine.kernel}; ` +
    `libp2p ${doc.versions.libp2p}, gossipsub ${doc.versions['@libp2p/gossipsub']}. Load average before ${doc.machine.loadBefore.join(' ')}, after ${doc.machine.loadAfter.join(' ')}.`, '')
  lines.push('| hosts | CPU per host | converged (median) | samples | first node lists all (median) | tx per node per min at rest, median / max | rx per node per min, median / max | daemon CPU at rest |')
  lines.push('| ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |')
  for (const s of doc.summary) {
    lines.push(`| ${s.size} | ${s.cpuPerHost} core | **${f(s.convergenceSeconds.median)} s** | ${s.convergenceSeconds.samples.map(x => f(x)).join(', ')} | ${f(s.firstNodeSeconds.median)} s | ` +
      `**${k(s.rest.txBytesPerMin.median)}** / ${k(s.rest.txBytesPerMin.max)} KiB | ${k(s.rest.rxBytesPerMin.median)} / ${k(s.rest.rxBytesPerMin.max)} KiB | ` +
      `${f(s.rest.cpuSecondsPerMin, 1)} CPU-s/min |`)
  }
  lines.push('')
  lines.push('Where convergence time goes (median over rounds of the slowest host, seconds after `start-all`):', '')
  lines.push('| hosts | daemon process started | control socket up | mesh listening | all peers\' adverts in (log) | all connected (polled) | CPU-s per host to converge |')
  lines.push('| ---: | ---: | ---: | ---: | ---: | ---: | ---: |')
  for (const s of doc.summary) {
    const p = s.slowestHostMedian
    lines.push(`| ${s.size} | ${f(p.processStart)} | ${f(p.serving)} | ${f(p.meshListening)} | ${f(p.allJoined)} | ${f(p.allConnectedPolled)} | ${f(s.cpuSecondsToConvergenceMedian)} |`)
  }
  lines.push('')
  lines.push('Traffic at rest, median per node per minute:', '')
  lines.push('| hosts | frames out | TCP segments out (retransmitted) | TCP payload out | UDP datagrams out / in (mDNS) |')
  lines.push('| ---: | ---: | ---: | ---: | ---: |')
  for (const s of doc.summary) {
    const r = s.rest
    lines.push(`| ${s.size} | ${r.txPacketsPerMin ?? '–'} | ${r.tcpOutSegsPerMin ?? '–'} (${r.tcpRetransSegsPerMin ?? '–'}) | ${k(r.tcpPayloadTxBytesPerMin)} KiB | ${r.udpOutDatagramsPerMin ?? '–'} / ${r.udpInDatagramsPerMin ?? '–'} |`)
  }
  const small = doc.summary.filter(s => s.rest.tcpOutSegsPerMin > 0 && s.rest.txBytesPerMin.median > 0)
  if (small.length > 0) {
    lines.push('', 'Segments are small: ' + small.map(s => `${Math.round(s.rest.tcpPayloadTxBytesPerMin / s.rest.tcpOutSegsPerMin)} B of payload per TCP segment out at N=${s.size}`).join(', ') +
      ' (pure ACKs included), so Ethernet/IP/TCP headers (66 B a frame with TCP timestamps) are ' +
      small.map(s => `${Math.round(100 * s.rest.txPacketsPerMin * 66 / s.rest.txBytesPerMin.median)} %`).join(' and ') + ' of the bytes sent.')
  }
  const withData = doc.summary.filter(s => s.rest.txBytesPerMin.median !== null)
  for (let j = 1; j < withData.length; j++) {
    const a = withData[j - 1]; const b = withData[j]
    const ratio = (x, y) => (y / x).toFixed(2)
    lines.push('', `From ${a.size} to ${b.size} hosts, tx per node at rest grew ×${ratio(a.rest.txBytesPerMin.median, b.rest.txBytesPerMin.median)} ` +
      `(TCP payload ×${ratio(a.rest.tcpPayloadTxBytesPerMin, b.rest.tcpPayloadTxBytesPerMin)}); the number of peers (N−1) grew ×${ratio(a.size - 1, b.size - 1)}, (N−1)² ×${ratio((a.size - 1) ** 2, (b.size - 1) ** 2)}. ` +
      `Convergence went from ${f(a.convergenceSeconds.median)} s to ${f(b.convergenceSeconds.median)} s.`)
  }
  const failed = doc.rounds_.filter(r => !r.ok)
  if (failed.length > 0) {
    lines.push('', 'Failed rounds: ' + failed.map(r => `N=${r.size} round ${r.round}: ${r.error}`).join('; '))
  }
  lines.push('')
  lines.push('## What is measured', '')
  lines.push(`* **Setup.** Each round is a fresh lab with a unique prefix: \`scripts/lab up N --cpu ${TOTAL_CORES}/N --rate ${doc.lab.rate}\`, torn down (\`down\`) at the end, also on failure. ` +
    `Daemons run with \`${doc.lab.daemonArgs.join(' ')}\`, the default listen address (all interfaces, port 4770), mDNS on, no bootstrap address, no swarm key (an empty config dir), fresh caches and identities.`)
  lines.push(`* **Convergence** runs from the \`scripts/lab start-all --no-wait\` call (the daemons are launched one after the other without waiting, within ~0.1–0.2 s) until every host's \`peers\` lists all N−1 others as connected. ` +
    `Each host is polled every ${doc.params.pollMs} ms, so times are up to that much late. "First node" is when the first host listed all others. The breakdown comes from the daemons' own logs ("serving", "mesh … listening", "peer … joined" = first advert from that peer).`)
  lines.push('* **Polling** speaks the control protocol to each host\'s control socket (a path socket) from the benchmark process, in the machine\'s own namespace: outside the hosts\' CPU quotas and off the lab\'s links. ' +
    'Only the daemon\'s work to answer is charged to its host. (`scripts/lab run` would put each poll in the host\'s cgroup; a Node CLI per poll would also take much of the machine.)')
  lines.push(`* **At rest**: ${doc.params.restWaitSeconds} s after convergence, with polling stopped, each host's \`eth0\` counters (\`/sys/class/net/eth0/statistics\` inside its namespace) are read at t and t+${doc.params.windowSeconds} s and scaled to one minute. ` +
    'eth0 is a host\'s only link, so this is **all** mesh traffic: advert gossip (every 5 s per node, forwarded through gossipsub), gossipsub\'s own heartbeat control, libp2p pings (every 5 s per peer), identify, yamux and Noise framing, TCP/IP headers and ACKs, and mDNS queries and answers. ' +
    'Bytes are Ethernet frames as the kernel counts them (14-byte header, no preamble or FCS). tx of one node is rx of others (and mDNS multicast is received by every host). ' +
    'TCP payload is the sum of `bytes_sent` (`ss -ti`) over the connections open through the window (Noise-encrypted libp2p bytes); segment and datagram counts are from the namespace\'s `/proc/net/snmp`. Daemon CPU is the host\'s cgroup `cpuacct.usage` over the window.')
  lines.push('* The machine is shared: other work on it shows up as noise, mostly in convergence times (load averages are recorded).')
  lines.push('')
  lines.push('## Reproduce', '')
  lines.push('```')
  lines.push('npx tsc --build')
  lines.push('sudo node scripts/bench-mesh.js                     # --rounds 3 --sizes 4,8')
  lines.push('sudo node scripts/bench-mesh.js --rounds 5 --sizes 4,8,16 --out /tmp/mesh.json')
  lines.push('```')
  lines.push('')
  lines.push(`It takes about ${Math.ceil((doc.params.restWaitSeconds + doc.params.windowSeconds + 15) / 60 * 2)} minutes per round and size (mostly the ${doc.params.windowSeconds} s window). It needs root and what the lab needs (iproute2, cgroup-v1 cpu). ` +
    'It leaves nothing behind; if it is killed with SIGKILL, remove leftovers with `ip netns list | grep ^bm` and `scripts/lab --prefix <prefix> down`.')
  lines.push('')
  return lines.join('\n')
}

// ---------------------------------------------------------------- main

async function render (file) {
  const doc = JSON.parse(await readFile(file, 'utf8'))
  const md = join(dirname(file), basename(file).replace(/\.json$/, '') + '.md')
  await writeFile(md, markdown({ ...doc, rounds: doc.params.rounds, rounds_: doc.rounds }))
  say(`wrote ${relative(process.cwd(), md) || md}`)
  return 0
}

async function main () {
  if (RENDER !== undefined) return await render(RENDER)
  if (process.getuid?.() !== 0) { say('needs root (the lab: network namespaces, tc, cgroups)'); process.exit(2) }
  cfgDir = await mkdtemp(join(os.tmpdir(), 'bench-mesh-cfg-'))
  const onSignal = (sig) => {
    say(`${sig}: tearing down`)
    if (currentPrefix !== undefined) { try { execFileSync(LAB, ['--prefix', currentPrefix, 'down'], { cwd: ROOT, stdio: 'inherit' }) } catch {} }
    try { execFileSync('rm', ['-rf', cfgDir]) } catch {}
    process.exit(130)
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)

  const loadBefore = os.loadavg().map(x => Math.round(x * 100) / 100)
  const date = new Date().toISOString()
  const git = gitInfo()
  const buildBefore = newestBuild()
  const rounds = []
  try {
    for (const n of SIZES) {
      for (let r = 1; r <= ROUNDS; r++) rounds.push(await round(n, r))
    }
  } finally {
    await rm(cfgDir, { recursive: true, force: true })
  }
  const loadAfter = os.loadavg().map(x => Math.round(x * 100) / 100)
  let go = null
  try { go = execFileSync('go', ['version'], { encoding: 'utf8' }).trim() } catch {}
  const gitEnd = gitInfo()
  const buildAfter = newestBuild()
  const doc = {
    date,
    git: { ...git, unchangedDuringRun: gitEnd.commit === git.commit && gitEnd.dirty === git.dirty, builtAt: new Date(buildBefore).toISOString(), rebuiltDuringRun: buildAfter !== buildBefore },
    machine: machineInfo(go, { loadBefore, loadAfter }),
    versions: Object.fromEntries(['libp2p', '@libp2p/gossipsub', '@libp2p/mdns', '@libp2p/yamux', '@chainsafe/libp2p-noise', '@libp2p/tcp'].map(p => [p, versionOf(p)])),
    lab: { totalCores: TOTAL_CORES, cpuPerHost: 'totalCores / N', cfsPeriodUs: 100000, rate: RATE, tbf: 'burst 256kb latency 5ms, both directions', daemonArgs: DAEMON_ARGS, mdns: true, swarmKey: null },
    params: { rounds: ROUNDS, sizes: SIZES, pollMs: POLL_MS, restWaitSeconds: REST_WAIT_S, windowSeconds: WINDOW_S, timeoutSeconds: TIMEOUT_S },
    summary: SIZES.map(n => summarize(rounds, n)),
    rounds
  }
  await mkdir(dirname(OUT), { recursive: true })
  await writeFile(OUT, JSON.stringify(doc, null, 2) + '\n')
  const md = join(dirname(OUT), basename(OUT).replace(/\.json$/, '') + '.md')
  await writeFile(md, markdown({ ...doc, rounds: ROUNDS, rounds_: rounds }))
  say(`wrote ${relative(process.cwd(), OUT) || OUT} and ${relative(process.cwd(), md) || md}`)
  for (const s of doc.summary) {
    say(`N=${s.size} (${s.cpuPerHost} core each): converged median ${s.convergenceSeconds.median} s [${s.convergenceSeconds.samples.join(', ')}], first node ${s.firstNodeSeconds.median} s; ` +
      `at rest tx ${kib(s.rest.txBytesPerMin.median)}/min median, ${kib(s.rest.txBytesPerMin.max)} max; rx ${kib(s.rest.rxBytesPerMin.median)} median, ${kib(s.rest.rxBytesPerMin.max)} max`)
  }
  return rounds.every(r => r.ok) ? 0 : 1
}

main().then(code => process.exit(code), (err) => { say(err.stack ?? String(err)); process.exit(1) })
