// Link probes (packages/node/src/remote/link.ts) between real libp2p nodes on loopback: what a
// probe measures, what the answering side refuses, and what a probe of a slow peer says.
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { pathToFileURL } from 'node:url'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import type { Stream } from '@libp2p/interface'
import { lpStream } from '@libp2p/utils'
import { Packr } from 'msgpackr'
import type * as RemoteModule from '../../packages/node/src/remote/index.js'
import type * as ConstantsModule from '../../packages/node/src/remote/constants.js'
import { ROOT } from '../helpers/index.js'
import { libp2pNode } from '../helpers/libp2p.js'

// Internal to @grid/node (not in its package exports): loaded from its build.
const dist = (path: string): string => pathToFileURL(join(ROOT, 'packages/node/dist', path)).href
const { LinkProbes } = await import(dist('remote/index.js')) as typeof RemoteModule
const { LINK_PROBE_BYTES, LINK_PROTOCOL } = await import(dist('remote/constants.js')) as typeof ConstantsModule

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false })
type Ctx = Parameters<typeof libp2pNode>[0]

/** Two connected nodes; the second answers probes with LinkProbes unless `answer` serves them. */
async function pair (t: Ctx, answer?: (stream: Stream) => Promise<void>) {
  const a = await libp2pNode(t)
  const b = await libp2pNode(t)
  if (answer === undefined) await new LinkProbes(b.libp2p).start()
  else await b.libp2p.handle(LINK_PROTOCOL, (stream: Stream) => { answer(stream).catch(() => {}) }) // ends when the prober closes
  await a.libp2p.dial(b.libp2p.getMultiaddrs()[0] as never)
  return { a, b, probes: new LinkProbes(a.libp2p) }
}

// a probe ends by its own 4 s deadline: a test that hangs fails here in a minute, not at the runner's 15
describe('link probes', { timeout: 60_000 }, () => {
  it('time a loopback link: a round trip, and a time per byte far below a slow link\'s', async (t) => {
    const { b, probes } = await pair(t)
    const sample = await probes.measure(b.id, new AbortController().signal)
    assert.ok(sample !== undefined)
    assert.equal(sample.atLeast, false)
    assert.ok(sample.rttMs > 0 && sample.rttMs < 2_000, `rtt ${sample.rttMs}`)
    // 10 Mbit/s is 8e-4 ms per byte; loopback through noise and yamux is far below even 1e-4
    assert.ok(sample.msPerByte >= 0 && sample.msPerByte < 1e-4, `msPerByte ${sample.msPerByte}`)
  })

  it('a peer that reads the big frames slowly is measured slow, the round trip left out, and sent one big frame only', async (t) => {
    let delayMs = 400
    let big = 0
    const { b, probes } = await pair(t, async (stream) => {
      const lp = lpStream(stream, { maxDataLength: 2 * LINK_PROBE_BYTES })
      for (;;) {
        const m = packr.unpack((await lp.read()).subarray()) as { pad: Uint8Array }
        if (m.pad.length > 1) {
          big++
          await new Promise(resolve => setTimeout(resolve, delayMs))
        }
        await lp.write(packr.pack({ type: 'ack', bytes: m.pad.length }))
      }
    })
    const sample = await probes.measure(b.id, new AbortController().signal)
    assert.ok(sample !== undefined)
    const mbs = 1 / sample.msPerByte / 1000
    assert.ok(mbs > 1.5 && mbs < 2.8, `${mbs.toFixed(2)} MB/s for 1 MiB answered after ${delayMs} ms`)
    assert.equal(big, 1, 'a slow link is sent one big frame: a second would cost it its time again')
    // a fast one gets two, the faster counting
    delayMs = 0
    big = 0
    assert.ok(await probes.measure(b.id, new AbortController().signal) !== undefined)
    assert.equal(big, 2)
  })

  it('a peer that never answers the big frame is at least as slow as the probe\'s deadline says, garbage collected or not', async (t) => {
    const { b, probes } = await pair(t, async (stream) => {
      const lp = lpStream(stream, { maxDataLength: 2 * LINK_PROBE_BYTES })
      const m = packr.unpack((await lp.read()).subarray()) as { pad: Uint8Array }
      await lp.write(packr.pack({ type: 'ack', bytes: m.pad.length }))
      await lp.read() // the big frame: never answered
      await lp.read() // ends when the prober gives up and aborts the stream
    })
    // On Node 20 a timeout inside AbortSignal.any is lost to the garbage collector, and a probe
    // with such a deadline waited for good (src/signals.ts): collect while it waits.
    const collecting = setInterval(gc, 200)
    const sample = await probes.measure(b.id, new AbortController().signal).finally(() => { clearInterval(collecting) })
    assert.ok(sample !== undefined && sample.atLeast, JSON.stringify(sample))
    assert.ok(1 / sample.msPerByte / 1000 < 0.3, `${sample.msPerByte} ms per byte`)
  })

  it('a peer without the protocol, or one that acknowledges wrongly, gives no sample', async (t) => {
    const a = await libp2pNode(t)
    const b = await libp2pNode(t)
    await a.libp2p.dial(b.libp2p.getMultiaddrs()[0] as never)
    assert.equal(await new LinkProbes(a.libp2p).measure(b.id, new AbortController().signal), undefined)

    const liar = await pair(t, async (stream) => {
      const lp = lpStream(stream, { maxDataLength: 2 * LINK_PROBE_BYTES })
      for (;;) { await lp.read(); await lp.write(packr.pack({ type: 'ack', bytes: 7 })) }
    })
    assert.equal(await liar.probes.measure(liar.b.id, new AbortController().signal), undefined)
  })

  it('the answering side closes a stream with an oversized or malformed frame and goes on answering; one probe per peer per gap', async (t) => {
    const { b } = await pair(t)
    /** A fresh member (the answering side takes one probe per peer per gap) sends one frame. */
    const sendFrame = async (frame: Uint8Array): Promise<string> => {
      await new Promise(resolve => setTimeout(resolve, 250)) // libp2p takes 5 connections a second from one address
      const c = await libp2pNode(t)
      const stream = await c.libp2p.dialProtocol(b.libp2p.getMultiaddrs()[0] as never, LINK_PROTOCOL)
      const lp = lpStream(stream, { maxDataLength: 4 * LINK_PROBE_BYTES })
      await lp.write(frame)
      return await lp.read({ signal: AbortSignal.timeout(5_000) }).then(() => 'answered', (err: Error) => err.name)
    }
    assert.equal(await sendFrame(packr.pack({ type: 'probe', pad: new Uint8Array(1) })), 'answered')
    assert.notEqual(await sendFrame(packr.pack({ type: 'probe', pad: new Uint8Array(LINK_PROBE_BYTES + 4096) })), 'answered', 'oversized')
    assert.notEqual(await sendFrame(packr.pack({ type: 'ack', bytes: 1 })), 'answered', 'not a probe')
    assert.notEqual(await sendFrame(Buffer.from([0xc1, 0xc1])), 'answered', 'not msgpack')
    await new Promise(resolve => setTimeout(resolve, 250))
    const c = await libp2pNode(t)
    await c.libp2p.dial(b.libp2p.getMultiaddrs()[0] as never)
    const probes = new LinkProbes(c.libp2p)
    assert.ok(await probes.measure(b.id, new AbortController().signal) !== undefined, 'still answering, and the first probe of a peer is answered')
    assert.equal(await probes.measure(b.id, new AbortController().signal), undefined, 'a second at once is refused')
  })
})
