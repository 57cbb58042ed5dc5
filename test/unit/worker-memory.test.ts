// A worker's memory against one member's many compile streams: what it buffers of the messages
// sent to it is held within its node-wide read budget (remote/metered.ts), and what it unpacks
// of the inputs that came packed within a budget of its own, over real libp2p nodes on loopback
// (TCP, noise, yamux as the mesh configures it).
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { pathToFileURL } from 'node:url'
import { brotliCompressSync, constants as zlib } from 'node:zlib'
import type { Libp2p, Stream } from '@libp2p/interface'
import { lpStream, streamPair } from '@libp2p/utils'
import { yamux } from '@libp2p/yamux'
import { Packr } from 'msgpackr'
import * as varint from 'uint8-varint'
import { MAX_TASK_FILE_BYTES } from '@grid/protocol'
import { ROOT, tempDir, waitFor } from '../helpers/index.js'
import { libp2pNode } from '../helpers/libp2p.js'
import { requester, workerFor, writeRecorder, type Requester } from '../helpers/worker.js'

const dist = (path: string): string => pathToFileURL(join(ROOT, 'packages/node/dist', path)).href
const { BLOB_BATCH_BYTES, COMPILE_PROTOCOL, WORKER_UNPACK_BUDGET_BYTES } = await import(dist('remote/constants.js')) as typeof import('../../packages/node/src/remote/constants.js')
const { RemoteCompiler } = await import(dist('remote/remote.js')) as typeof import('../../packages/node/src/remote/remote.js')
const { STREAM_WINDOW_BYTES } = await import(dist('mesh/constants.js')) as typeof import('../../packages/node/src/mesh/constants.js')
const { ByteBudget } = await import(dist('budget.js')) as typeof import('../../packages/node/src/budget.js')
const { MeteredStream } = await import(dist('remote/metered.js')) as typeof import('../../packages/node/src/remote/metered.js')

const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false })
const MiB = 1024 * 1024
// never reached: every message here is refused before its task is looked at
const TOOLCHAIN = { compiler: 'compile version go0', goroot: '', tool: '', stamp: '' }
// the mesh's muxer (mesh.ts)
const muxer = (): ReturnType<typeof yamux> => yamux({ streamOptions: { maxStreamWindowSize: STREAM_WINDOW_BYTES, maxReadBufferLength: STREAM_WINDOW_BYTES } })
type Ctx = Parameters<typeof tempDir>[0]

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

/**
 * A requester's node and its RemoteCompiler, connected to `worker`, whose advert says it unpacks
 * inputs, over a link timed slow (~100 Mbit/s): its inputs of 1 KiB or more go packed.
 */
async function packingRequester (t: Ctx, r: Requester & { toolchain: { compiler: string } }, worker: { libp2p: Libp2p, id: string }) {
  const node = await libp2pNode(t, { streamMuxers: [muxer()] })
  await node.libp2p.dial(worker.libp2p.getMultiaddrs()[0]!)
  const own = { go: 'go', compiler: r.toolchain.compiler, canary: 'c', experiment: '' }
  const advert = { accepting: true, slots: { total: 8, free: 8 }, load: 0, toolchains: [own], unpacks: ['br'] }
  const remote = new RemoteCompiler({ libp2p: node.libp2p, peers: () => [{ peerId: worker.id, advert: advert as never }], isUntrusted: () => false, own: () => own as never })
  t.after(() => { remote.close() })
  remote.linkMeasured(worker.id, { rttMs: 1, msPerByte: 8e-5, atLeast: false })
  const prepared = {
    task: r.task, blobs: r.blobs, out: '/nonexistent/_pkg_.a', asmhdr: undefined, inputBytes: [...r.blobs.values()].reduce((n, b) => n + b.length, 0), pragmas: r.pragmas ?? [], buildId: r.buildId
  } as never
  return async () => await remote.attempt(worker.id, prepared, new AbortController().signal, 50)
}

describe('worker unpack budget', () => {
  it('unpacks packed inputs within its own budget, by the sizes the task declares: a member\'s small messages on many streams that unpack large hold no more, and an honest requester\'s packed inputs compile to cmd/go\'s archive meanwhile, or wait for room', async t => {
    const dir = await tempDir(t)
    // a source of several KB: the honest requester sends it packed
    const big = Array.from({ length: 60 }, (_, i) => `func F${i}(a, b int) int { return a*${i} + b }\n`).join('\n')
    const r = await requester(dir, 'honest', 'src/share', await writeRecorder(dir), {}, { 'big.go': `package share\n\n${big}` })
    const node = await libp2pNode(t, { streamMuxers: [muxer()] })
    const budget = 40 * MiB
    const { worker } = workerFor(join(dir, 'worker'), r.toolchain, h => { void node.libp2p.handle(COMPILE_PROTOCOL, h, { maxInboundStreams: 64 }) }, { unpackBudgetBytes: budget, unpackShareBytes: 36 * MiB })
    await worker.start()
    t.after(async () => { await worker.stop() })
    const unpacking = worker.unpacking.budget

    // A member's tasks: the honest one's, with inputs of its own declared as `declared` bytes
    // each, sent with the offer as 12 MiB of zeros packed (a few KB), under hashes they do not have
    const member = await libp2pNode(t, { streamMuxers: [muxer()] })
    await member.libp2p.dial(node.libp2p.getMultiaddrs()[0]!)
    const zeros = brotliCompressSync(Buffer.alloc(12 * MiB), { params: { [zlib.BROTLI_PARAM_QUALITY]: 1 } })
    const hostile = async (inputs: number, declared: number): Promise<{ type: string, code: string, message: string }> => {
      const extra = Array.from({ length: inputs }, (_, i) => ({ path: `/hostile/in${i}.bin`, sha256: createHash('sha256').update(`in${i}`).digest('hex'), size: declared }))
      const stream = await member.libp2p.dialProtocol(node.libp2p.peerId, COMPILE_PROTOCOL)
      const lp = lpStream(stream, { maxDataLength: MiB })
      await lp.writeV([
        packr.pack({ type: 'offer', task: { ...r.task, files: [...r.task.files, ...extra] }, eager: true }),
        packr.pack({ type: 'blobs', items: extra.map(f => ({ sha256: f.sha256, data: zeros, packed: 'br' })) }),
        packr.pack({ type: 'done' })
      ])
      return packr.unpack((await lp.read()).subarray())
    }

    // inputs that could never be unpacked within the budget: refused before a byte is unpacked
    const never = await hostile(4, 12 * MiB)
    assert.deepEqual([never.type, never.code], ['fail', 'GRID_ERR_TASK_REFUSED'])
    assert.match(never.message, /declares as 50331648 bytes in one message, more than this worker unpacks at once \(41943040 bytes\)/)
    assert.equal(unpacking.peak, 0)
    // one declared as 1 MiB that unpacks past it: refused there, having taken 1 MiB
    const lie = await hostile(1, MiB)
    assert.deepEqual([lie.type, lie.code], ['fail', 'GRID_ERR_TASK_REFUSED'])
    assert.match(lie.message, /unpacks to more than 1048576 bytes/)
    assert.equal(unpacking.peak, MiB, 'the room the input declared, and no more')

    // six messages of two such inputs declared as they unpack (24 MiB each), on streams of their
    // own, and an honest requester's task meanwhile: the member's share has room for one of them
    // at a time, the honest task's inputs are unpacked beside it
    const honest = await packingRequester(t, r, node)
    const [good, ...refused] = await Promise.all([honest(), ...Array.from({ length: 6 }, async () => await hostile(2, 12 * MiB))])
    for (const a of refused) {
      assert.deepEqual([a.type, a.code], ['fail', 'GRID_ERR_TASK_REFUSED'])
      assert.match(a.message, /does not hash to its name/, 'each unpacked in full, then refused')
    }
    assert.ok(good!.ok, `the honest requester's attempt: ${JSON.stringify({ ...good, archive: undefined })}`)
    assert.equal(Buffer.compare(Buffer.from(good.archive), r.local), 0, 'the archive is cmd/go\'s')
    assert.equal(worker.stats.unpacked, 1, 'the honest task\'s inputs came packed')
    assert.ok(unpacking.peak >= 24 * MiB && unpacking.peak <= budget, `at most the budget held at once, one of the member's messages at least (${unpacking.peak})`)

    // another honest requester's task (sending its inputs anew, with the offer) while the whole
    // budget is taken, as another member's inputs being unpacked would: it waits, then compiles
    const other = await worker.unpacking.take('another member', budget, new AbortController().signal)
    const patient = (await packingRequester(t, r, node))()
    await waitFor(() => worker.unpacking.waiting === 1, 30_000, () => 'the honest task\'s packed inputs waiting for room')
    assert.equal(worker.stats.unpacked, 1, 'not unpacked yet')
    other()
    const waited = await patient
    assert.ok(waited.ok, `the waiting requester's attempt: ${JSON.stringify({ ...waited, archive: undefined })}`)
    assert.equal(Buffer.compare(Buffer.from(waited.archive), r.local), 0)
    assert.equal(worker.stats.unpacked, 2)
    assert.ok(unpacking.peak <= budget)
    assert.deepEqual([unpacking.inUse, worker.reading.budget.inUse], [0, 0], 'all given back')
  })

  it('has room for any message of packed inputs an honest requester sends: its batches close at BLOB_BATCH_BYTES, before an input of the largest size', () => {
    assert.ok(WORKER_UNPACK_BUDGET_BYTES >= BLOB_BATCH_BYTES + MAX_TASK_FILE_BYTES, `${WORKER_UNPACK_BUDGET_BYTES} bytes`)
  })
})
