// Liveness of connections (packages/node/src/mesh/liveness.ts) between real libp2p nodes on
// loopback: a peer that stops answering is ended, one whose bytes keep coming is not, however
// late its answer to a ping (on a slow link the answer waits behind them), and one that answers
// is left alone. The timings are shortened; the logic is the daemon's.
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { pathToFileURL } from 'node:url'
import type { Connection, Stream } from '@libp2p/interface'
import { PING_PROTOCOL, ping } from '@libp2p/ping'
import type * as LivenessModule from '../../packages/node/src/mesh/liveness.js'
import { ROOT, defer, waitFor } from '../helpers/index.js'
import { libp2pNode } from '../helpers/libp2p.js'

// Internal to @grid/node (not in its package exports): loaded from its build.
const dist = (path: string): string => pathToFileURL(join(ROOT, 'packages/node/dist', path)).href
const { Liveness } = await import(dist('mesh/liveness.js')) as typeof LivenessModule

type Ctx = Parameters<typeof libp2pNode>[0]
const FEED_PROTOCOL = '/grid-test/feed/1.0.0'
// equal, as the daemon's are
const QUIET_MS = 1_000
const PING_TIMEOUT_MS = 1_000

/**
 * `a` connected to `b`, `a` watching its connection with Liveness (checked by the test, not a
 * timer). `b` answers pings (libp2p's ping service) or swallows them (`pings: 'never'`, counted
 * in `swallowed`), and once `a` opens a feed stream sends 1 KiB on it every 100 ms while
 * `feeding.on`, until the stream ends.
 */
async function pair (t: Ctx, pings: 'answer' | 'never') {
  const noMonitor = { connectionMonitor: { enabled: false } }
  const a = await libp2pNode(t, noMonitor)
  const b = await libp2pNode(t, pings === 'answer' ? { ...noMonitor, services: { ping: ping() } } : noMonitor)
  const swallowed = { pings: 0 }
  if (pings === 'never') await b.libp2p.handle(PING_PROTOCOL, () => { swallowed.pings++ }) // read nothing, answer nothing
  const feeding = { on: true }
  await b.libp2p.handle(FEED_PROTOCOL, (stream: Stream) => {
    void (async () => {
      while (stream.status === 'open' && stream.writeStatus === 'writable') {
        if (feeding.on) stream.send(new Uint8Array(1024))
        await sleep(100)
      }
    })().catch(() => {})
  })
  const stop = new AbortController()
  defer(t, () => { stop.abort() })
  const liveness = new Liveness({ connections: () => a.libp2p.getConnections(), signal: stop.signal, quietMs: QUIET_MS, pingTimeoutMs: PING_TIMEOUT_MS })
  a.libp2p.addEventListener('connection:open', evt => { liveness.watch(evt.detail) })
  const conn: Connection = await a.libp2p.dial(b.libp2p.getMultiaddrs()[0] as never)
  return { a, b, conn, liveness, swallowed, feeding }
}

/** Checks every 100 ms for `ms`, as the mesh's timer would (every LIVENESS_CHECK_MS). */
async function checkFor (liveness: InstanceType<typeof Liveness>, ms: number): Promise<void> {
  for (const until = Date.now() + ms; Date.now() < until; await sleep(100)) liveness.check()
}

describe('liveness of connections', { timeout: 60_000 }, () => {
  it('a peer that sends nothing and answers no ping is ended once the ping is overdue', async (t) => {
    const { conn, liveness, swallowed } = await pair(t, 'never')
    const started = Date.now()
    await checkFor(liveness, QUIET_MS + PING_TIMEOUT_MS + 1_000)
    assert.equal(conn.status, 'aborted', 'the connection was ended')
    const tookMs = Date.now() - started
    assert.ok(tookMs >= QUIET_MS + PING_TIMEOUT_MS, `ended after ${tookMs} ms, not before its ping was overdue`)
    assert.equal(swallowed.pings, 1)
  })

  it('a peer whose bytes keep coming is not ended, however late its ping is answered; once they stop, it is', async (t) => {
    const { a, conn, liveness, swallowed, feeding } = await pair(t, 'never')
    const feed = await conn.newStream(FEED_PROTOCOL)
    let received = 0
    feed.addEventListener('message', evt => { received += evt.data.byteLength })
    // bytes every 100 ms: never quiet, never pinged
    await checkFor(liveness, 1_000)
    assert.ok(received >= 5 * 1024, `the feed ran (${received} bytes)`)
    assert.equal(swallowed.pings, 0, 'a connection that brings bytes is not pinged')
    // quiet long enough to be pinged; then its bytes come on while the ping's 1 s runs out
    // unanswered, as on a slow link where the answer waits behind a transfer
    feeding.on = false
    await sleep(QUIET_MS + 200)
    liveness.check()
    feeding.on = true
    await waitFor(() => swallowed.pings === 1, 1_000, () => 'the ping to reach the peer')
    await checkFor(liveness, PING_TIMEOUT_MS + 1_000)
    assert.equal(conn.status, 'open', 'not ended while its bytes came')
    assert.equal(a.libp2p.getConnections().length, 1)
    // quiet again: pinged, no answer, ended
    feeding.on = false
    await checkFor(liveness, QUIET_MS + PING_TIMEOUT_MS + 1_000)
    assert.equal(conn.status, 'aborted', 'ended once its bytes stopped and its ping went unanswered')
    assert.equal(swallowed.pings, 2)
  })

  it('a quiet peer that answers pings (libp2p\'s ping service) is left connected', async (t) => {
    const { conn, liveness } = await pair(t, 'answer')
    let pinged = 0
    const open = conn.newStream.bind(conn)
    conn.newStream = async (protocols, options) => {
      if (protocols === PING_PROTOCOL) pinged++
      return await open(protocols, options)
    }
    await checkFor(liveness, 3_000)
    assert.equal(conn.status, 'open')
    assert.ok(pinged >= 2, `pinged while quiet (${pinged} pings)`)
  })
})
