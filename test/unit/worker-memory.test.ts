// A worker's memory against one member's many compile streams: what it buffers of the messages
// sent to it is held within its node-wide read budget (remote/metered.ts), over real libp2p
// nodes on loopback (TCP, noise, yamux as the mesh configures it).
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { pathToFileURL } from 'node:url'
import type { Stream } from '@libp2p/interface'
import { lpStream, streamPair } from '@libp2p/utils'
import { yamux } from '@libp2p/yamux'
import { Packr } from 'msgpackr'
import * as varint from 'uint8-varint'
import { ROOT, tempDir, waitFor } from '../helpers/index.js'
import { libp2pNode } from '../helpers/libp2p.js'
import { requester, workerFor, writeRecorder } from '../helpers/worker.js'

const dist = (path: string): string => pathToFileURL(join(ROOT, 'packages/node/dist', path)).href
const { COMPILE_PROTOCOL } = await import(dist('remote/constants.js')) as typeof import('../../packages/node/src/remote/constants.js')
const { STREAM_WINDOW_BYTES } = await import(dist('mesh/constants.js')) as typeof import('../../packages/node/src/mesh/constants.js')
const { ByteBudget } = await import(dist('budget.js')) as typeof import('../../packages/node/src/budget.js')
const { MeteredStream } = await import(dist('remote/metered.js')) as typeof import('../../packages/node/src/remote/metered.js')

const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false })
const MiB = 1024 * 1024
// never reached: every message here is refused before its task is looked at
const TOOLCHAIN = { compiler: 'compile version go0', goroot: '', tool: '', stamp: '' }
// the mesh's muxer (mesh.ts)
const muxer = (): ReturnType<typeof yamux> => yamux({ streamOptions: { maxStreamWindowSize: STREAM_WINDOW_BYTES, maxReadBufferLength: STREAM_WINDOW_BYTES } })

/** A message's length prefix and `bytes` of its body (all of it, or the first part). */
function message (length: number, bytes = length): Uint8Array {
  return Buffer.concat([varint.encode(length), Buffer.alloc(bytes, 0xc1)]) // 0xc1: never valid msgpack
}

describe('worker read budget', () => {
  it('holds one member\'s streams of large messages within the node-wide budget, and reads each in turn', async t => {
    const dir = await tempDir(t)
    const node = await libp2pNode(t, { streamMuxers: [muxer()] })
    const member = await libp2pNode(t, { streamMuxers: [muxer()] })
    const budget = 24 * MiB
    const { worker } = workerFor(join(dir, 'worker'), TOOLCHAIN, h => { void node.libp2p.handle(COMPILE_PROTOCOL, h, { maxInboundStreams: 64 }) }, { readBudgetBytes: budget })
    await worker.start()
    t.after(async () => { await worker.stop() })
    await member.libp2p.dial(node.libp2p.getMultiaddrs()[0]!)
    const open = async (): Promise<Stream> => await member.libp2p.dialProtocol(node.libp2p.peerId, COMPILE_PROTOCOL)

    // messages larger than a stream's window: the first takes 20 of the 24 MiB and stalls after
    // its first MiB, holding them
    const size = 20 * MiB
    const stalled = await open()
    stalled.send(message(size, MiB))
    await waitFor(() => worker.reading.budget.inUse === size, 10_000, () => 'the first message holding its bytes of the budget')
    // five more, whole, on streams of their own: each waits its turn, and its stream is paused
    const senders = await Promise.all(Array.from({ length: 5 }, open))
    for (const s of senders) s.send(message(size))
    await waitFor(() => worker.reading.waiting === 5, 10_000, () => 'five messages waiting for room')
    await new Promise(resolve => setTimeout(resolve, 500)) // time for whatever the worker would take in
    for (const s of senders) {
      // a paused stream sends no window update: the member got no further than one window
      assert.ok(s.writeBufferLength >= size - STREAM_WINDOW_BYTES, `a waiting stream holds the rest of its message unsent (${s.writeBufferLength} bytes)`)
    }
    assert.equal(worker.reading.budget.inUse, size)

    // the stalled stream goes: the others are read one after another, each refused as undecodable
    stalled.abort(new Error('gone'))
    const answers = await Promise.all(senders.map(async s => packr.unpack((await lpStream(s, { maxDataLength: MiB }).read()).subarray())))
    for (const a of answers) assert.deepEqual([a.type, a.code], ['fail', 'GRID_ERR_MESSAGE_INVALID'])
    assert.ok(worker.reading.budget.peak <= budget, `at most the budget was held at once (${worker.reading.budget.peak})`)
    await waitFor(() => worker.reading.budget.inUse === 0, 10_000, () => 'every message\'s bytes given back')
  })

  it('leaves room for other peers\' messages while one member holds its share with stalled ones', async t => {
    const dir = await tempDir(t)
    let serve: ((stream: Stream, connection: unknown) => void) | undefined
    const { worker } = workerFor(join(dir, 'worker'), TOOLCHAIN, h => { serve = h }, { readBudgetBytes: 24 * MiB, readShareBytes: 12 * MiB })
    await worker.start()
    t.after(async () => { await worker.stop() })
    const open = async (peer: string): Promise<Stream> => {
      const [out, inbound] = await streamPair()
      serve?.(inbound, { remotePeer: { toString: () => peer } })
      return out
    }
    // one member starts two messages of 10 MiB and sends only their first MiB: the first holds
    // 10 MiB, the second waits for the member's share
    for (let i = 0; i < 2; i++) (await open('member-a')).send(message(10 * MiB, MiB))
    await waitFor(() => worker.reading.budget.inUse === 10 * MiB && worker.reading.waiting === 1, 10_000, () => 'one message held, one waiting for its member\'s share')
    // another member's message is read meanwhile (and refused as undecodable), not after the
    // first member's streams time out
    const other = await open('member-b')
    other.send(message(10 * MiB))
    const answer = packr.unpack((await lpStream(other, { maxDataLength: MiB }).read()).subarray())
    assert.deepEqual([answer.type, answer.code], ['fail', 'GRID_ERR_MESSAGE_INVALID'])
    assert.equal(worker.reading.budget.peak, 20 * MiB)
  })

  it('resets a stream whose requester takes no answer, rather than hold the result for as long as the connection lives', async t => {
    // a package whose archive is larger than a stream's first window (256 KiB): the member
    // sends the task and its inputs, then reads nothing, so the result stays queued at the worker
    const dir = await tempDir(t)
    const big = Array.from({ length: 200 }, (_, i) => `func F${i}(a, b int) int { return a*${i} + b }\n\ntype T${i} struct{ A, B int }\n\nfunc (t T${i}) M() int { return t.A + ${i} }\n`).join('\n')
    const r = await requester(dir, 'member', 'src/share', await writeRecorder(dir), {}, { 'big.go': `package share\n\n${big}` })
    assert.ok(r.local.length > 512 * 1024, `an archive larger than two first windows (${r.local.length} bytes)`)
    const node = await libp2pNode(t, { streamMuxers: [muxer()] })
    const member = await libp2pNode(t, { streamMuxers: [muxer()] })
    const sendBaseMs = 1_000
    const { worker, compiles } = workerFor(join(dir, 'worker'), r.toolchain, h => { void node.libp2p.handle(COMPILE_PROTOCOL, h, { maxInboundStreams: 64 }) }, { sendBaseMs })
    await worker.start()
    t.after(async () => { await worker.stop() })
    await member.libp2p.dial(node.libp2p.getMultiaddrs()[0]!)
    const stream = await member.libp2p.dialProtocol(node.libp2p.peerId, COMPILE_PROTOCOL)
    stream.pause() // no window updates: the worker can send one window of its answer
    const frames = [packr.pack({ type: 'offer', task: r.task, eager: true }), packr.pack({ type: 'blobs', items: [...r.blobs].map(([sha256, data]) => ({ sha256, data })) }), packr.pack({ type: 'done' })]
    stream.send(Buffer.concat(frames.flatMap(f => [varint.encode(f.length), f])))
    const reset = new Promise<Date>(resolve => { stream.addEventListener('close', () => { resolve(new Date()) }, { once: true }) })
    await waitFor(() => compiles() === 1, 60_000, () => 'the task compiled')
    const compiled = Date.now()
    // its answer's time: the base, and its size at 1 MB/s
    const allowed = sendBaseMs + r.local.length / 1_000
    const closed = await Promise.race([reset, new Promise<undefined>(resolve => setTimeout(() => { resolve(undefined) }, allowed + 10_000).unref())])
    assert.ok(closed !== undefined, `the worker reset the stream once its answer was not taken within ${allowed} ms`)
    assert.ok(closed.getTime() - compiled >= allowed - 500, `not before the answer's time (${closed.getTime() - compiled} ms)`)
    assert.equal(stream.status, 'reset')
  })

  it('refuses a message whose length is over the cap before any of its body is read', async () => {
    const [out, inbound] = await streamPair()
    const budget = new ByteBudget(4 * MiB)
    const wire = new MeteredStream(inbound, async (bytes, signal) => await budget.take(bytes, signal), MiB, 'a member')
    out.send(message(MiB + 1, 1024))
    await assert.rejects(wire.read(new AbortController().signal), (err: Error & { code?: string }) => err.code === 'GRID_ERR_MESSAGE_INVALID' && /over the cap/.test(err.message))
    assert.equal(budget.peak, 0)
  })

  it('reads messages back to back within the budget, and gives each back when released', async () => {
    const [out, inbound] = await streamPair()
    const budget = new ByteBudget(MiB)
    const wire = new MeteredStream(inbound, async (bytes, signal) => await budget.take(bytes, signal), MiB, 'a member')
    const sent = [packr.pack({ type: 'done' }), packr.pack({ type: 'need', hashes: [] })]
    out.send(Buffer.concat(sent.flatMap(m => [varint.encode(m.length), m])))
    const first = await wire.read(new AbortController().signal)
    assert.deepEqual(packr.unpack(first.bytes), { type: 'done' })
    assert.equal(budget.inUse, sent[0]!.length)
    first.release()
    first.release() // idempotent
    const second = await wire.read(new AbortController().signal)
    assert.deepEqual(packr.unpack(second.bytes), { type: 'need', hashes: [] })
    second.release()
    assert.equal(budget.inUse, 0)
    // what the worker writes is lpStream's framing
    await wire.write(packr.pack({ type: 'done' }))
    assert.deepEqual(packr.unpack((await lpStream(out).read()).subarray()), { type: 'done' })
  })
})
