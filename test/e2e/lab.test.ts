// The lab itself (scripts/lab, docs/lab.md): hosts reach each other, multicast crosses the
// bridge (what mDNS needs), links are rate-shaped, CPU quotas hold, and `down` leaves nothing.
// Needs root; skipped with the reason otherwise.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { after, before, describe, it } from 'node:test'
import { LAB_GRID_BIN, LAB_PROBE, createLab, labAvailable, type Lab } from '../helpers/lab.js'
import { processRunning } from '../helpers/index.js'

const skip = await labAvailable()

/** The last JSON line a probe printed. */
function result (stdout: string): any {
  const line = stdout.trim().split('\n').filter(l => !l.includes('"ready":true')).at(-1) ?? ''
  try {
    return JSON.parse(line)
  } catch {
    throw new Error(`no JSON result from the probe: ${stdout}`)
  }
}

function netnsNames (): string[] {
  return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).split('\n').map(l => l.split(' ')[0] ?? '').filter(Boolean)
}

function cgroupNames (): string[] {
  return ['/sys/fs/cgroup/cpu', '/sys/fs/cgroup/cpuacct'].flatMap(d => existsSync(d) ? readdirSync(d) : [])
}

describe('lab', { skip: skip ?? false }, () => {
  let lab: Lab
  let cleanup: (() => unknown) | undefined
  before(async () => { lab = await createLab({ after: (fn) => { cleanup = fn } }, { hosts: 2 }) })
  after(async () => { await cleanup?.() })

  it('hosts reach each other over the bridge (~0.1 ms round trips)', async () => {
    const [h1, h2] = lab.hosts as [typeof lab.hosts[0], typeof lab.hosts[0]]
    // an echo server on each host, each host pings the other
    // (each answers the warm-up datagram and 5 timed ones, then exits)
    const echoes = ['h1', 'h2'].map(async h => await lab.run(h, 'node', [LAB_PROBE, 'udp-echo', '--count', '6', '--timeout', '15']))
    const [p1, p2] = await Promise.all([
      lab.run('h1', 'node', [LAB_PROBE, 'udp-ping', '--to', h2.ip, '--count', '5']),
      lab.run('h2', 'node', [LAB_PROBE, 'udp-ping', '--to', h1.ip, '--count', '5'])
    ])
    for (const e of await Promise.all(echoes)) assert.equal(e.code, 0, e.stderr + e.stdout)
    for (const [r, ip] of [[p1, h2.ip], [p2, h1.ip]] as const) {
      assert.equal(r.code, 0, r.stderr + r.stdout)
      const got = result(r.stdout).results[ip]
      assert.equal(got.received, 5, JSON.stringify(got))
      assert.ok(got.medianMs < 20, `round trip ${got.medianMs} ms`)
    }
    // the machine's own namespace has no route into the lab
    const own = execFileSync('ip', ['-o', 'addr'], { encoding: 'utf8' })
    assert.doesNotMatch(own, /10\.77\.0\./)
  })

  it('multicast to the mDNS group crosses the bridge, both ways', async () => {
    const ip = (name: string): string => lab.hosts.find(h => h.name === name)?.ip ?? ''
    await Promise.all(([['h1', 'h2'], ['h2', 'h1']] as const).map(async ([from, to]) => {
      const listen = lab.run(to, 'node', [LAB_PROBE, 'mcast-listen', '--timeout', '10', '--from', ip(from)])
      // the sender keeps going for 2 s so the listener's start-up (under the quota) is covered
      const send = await lab.run(from, 'node', [LAB_PROBE, 'mcast-send', '--count', '20', '--interval', '100', '--message', `from ${from}`])
      const heard = await listen
      assert.equal(send.code, 0, send.stderr + send.stdout)
      assert.equal(heard.code, 0, heard.stderr + heard.stdout)
      const r = result(heard.stdout)
      assert.equal(r.received[0].message, `from ${from}`)
      assert.equal(r.received[0].from, ip(from))
    }))
  })

  it('each link is shaped by tbf at 1gbit', async () => {
    const [h1, h2] = lab.hosts as [typeof lab.hosts[0], typeof lab.hosts[0]]
    for (const h of lab.hosts) {
      const qdisc = execFileSync('tc', ['-n', h.netns, 'qdisc', 'show', 'dev', 'eth0'], { encoding: 'utf8' })
      assert.match(qdisc, /tbf .*rate 1Gbit/)
    }
    const sink = lab.run(h2.name, 'node', [LAB_PROBE, 'tcp-sink', '--timeout', '20'])
    let sent
    for (let i = 0; i < 20; i++) { // until the sink listens
      sent = await lab.run(h1.name, 'node', [LAB_PROBE, 'tcp-send', '--to', h2.ip, '--mib', '64'])
      if (sent.code === 0) break
      await new Promise(resolve => setTimeout(resolve, 100))
    }
    assert.equal(sent?.code, 0, sent?.stderr)
    const got = await sink
    assert.equal(got.code, 0, got.stderr + got.stdout)
    const mibs = result(got.stdout).mibPerSecond
    // 1 Gbit/s is 119 MiB/s on the wire (~113 of TCP payload); unshaped veths do GiB/s
    assert.ok(mibs <= 125, `${mibs} MiB/s is above the link rate`)
    assert.ok(mibs >= 30, `${mibs} MiB/s is far below the link rate`)
  })

  it('processes run under the host CPU quota (0.5 core)', async () => {
    const h1 = lab.hosts[0] as typeof lab.hosts[0]
    assert.equal(readFileSync(`${h1.cgroup}/cpu.cfs_quota_us`, 'utf8').trim(), '50000')
    assert.equal(readFileSync(`${h1.cgroup}/cpu.cfs_period_us`, 'utf8').trim(), '100000')
    const throttled = (): number => Number(/nr_throttled (\d+)/.exec(readFileSync(`${h1.cgroup}/cpu.stat`, 'utf8'))?.[1])
    const before = throttled()
    const r = await lab.run(h1.name, 'node', [LAB_PROBE, 'spin', '--seconds', '2'])
    assert.equal(r.code, 0, r.stderr)
    const { cores } = result(r.stdout)
    assert.ok(cores > 0.3 && cores < 0.65, `a busy loop got ${cores} cores under a 0.5-core quota`)
    assert.ok(throttled() > before, 'the cgroup was never throttled')
  })

  it('run passes the exit status through and sets the host\'s GRID_CACHE, GRID_CONTROL, GOCACHE', async () => {
    const h2 = lab.hosts[1] as typeof lab.hosts[0]
    const r = await lab.run('h2', 'sh', ['-c', 'echo "$GRID_CACHE $GRID_CONTROL $GOCACHE"; exit 7'])
    assert.equal(r.code, 7)
    assert.equal(r.stdout.trim(), `${h2.cache} ${h2.control} ${h2.gocache}`)
  })

  it('down leaves nothing behind, also with daemons running, and is idempotent', async () => {
    let cleanup2: (() => unknown) | undefined
    const other = await createLab({ after: (fn) => { cleanup2 = fn } }, { hosts: 2, cpu: 1, rate: '100mbit' })
    try {
      await other.startAll(['--slots', '1'])
      const pids = await Promise.all(other.hosts.map(async h => await other.daemonPid(h.name)))
      assert.ok(pids.every(p => p !== undefined), `daemons: ${pids.join(',')}`)
      const st = await other.run('h1', process.execPath, [LAB_GRID_BIN, '--json', 'status'])
      assert.equal(st.code, 0, st.stderr)
      assert.equal(JSON.parse(st.stdout).pid, pids[0])
      await other.stop('h2')
      assert.equal(await other.daemonPid('h2'), undefined)
      assert.ok(netnsNames().some(n => n.startsWith(other.prefix + '-')))
      await other.down()
      assert.deepEqual(netnsNames().filter(n => n.startsWith(other.prefix + '-')), [])
      assert.deepEqual(cgroupNames().filter(n => n.startsWith(other.prefix + '-')), [])
      assert.equal(existsSync(`/tmp/${other.prefix}`), false)
      for (const pid of pids) assert.equal(await processRunning(pid as number), false, `daemon ${pid} still runs`)
      await other.down() // nothing left: still fine
    } finally {
      await cleanup2?.()
    }
  })
})
