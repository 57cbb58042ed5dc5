// A requester's memory against workers that answer with more than they were asked: what its
// compile streams buffer is held within its node-wide read budget, and a stream kept between
// tasks is dropped as soon as its worker sends on it, having taken in at most a window
// (remote/metered.ts), over real libp2p nodes on loopback (TCP, noise, yamux as the mesh
// configures it). Its compiles still come back right from an honest peer meanwhile. An archive
// that came packed is unpacked within a budget of its own, by the size its result declares.
// Every attempt pauses its stream as soon as dialProtocol returns it: the workers' getting the
// offers shows that its SYN went out.
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { pathToFileURL } from 'node:url'
import { brotliCompressSync, constants as zlib } from 'node:zlib'
import type { Libp2p, Stream } from '@libp2p/interface'
import { lpStream } from '@libp2p/utils'
import { yamux } from '@libp2p/yamux'
import { Packr } from 'msgpackr'
import * as varint from 'uint8-varint'
import { ROOT, tempDir, waitFor } from '../helpers/index.js'
import { libp2pNode } from '../helpers/libp2p.js'
import { requester, workerFor, writeRecorder, type Requester } from '../helpers/worker.js'

const dist = (path: string): string => pathToFileURL(join(ROOT, 'packages/node/dist', path)).href
const { COMPILE_PROTOCOL, BUSY, MAX_COMPILE_MESSAGE_BYTES } = await import(dist('remote/constants.js')) as typeof import('../../packages/node/src/remote/constants.js')
const { STREAM_WINDOW_BYTES } = await import(dist('mesh/constants.js')) as typeof import('../../packages/node/src/mesh/constants.js')
const { RemoteCompiler } = await import(dist('remote/remote.js')) as typeof import('../../packages/node/src/remote/remote.js')

const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false })
const MiB = 1024 * 1024
// the mesh's muxer (mesh.ts)
const muxer = (): ReturnType<typeof yamux> => yamux({ streamOptions: { maxStreamWindowSize: STREAM_WINDOW_BYTES, maxReadBufferLength: STREAM_WINDOW_BYTES } })
type Ctx = Parameters<typeof tempDir>[0]

/** A message's length prefix and `bytes` of its body (all of it, or the first part). */
function message (length: number, bytes = length): Uint8Array {
  return Buffer.concat([varint.encode(length), Buffer.alloc(bytes, 0xc1)]) // 0xc1: never valid msgpack
}

/**
 * A member that takes compile streams and, for each offer (read with its inputs), does `answer`
 * on the stream; the streams it was given, in order.
 */
async function hostileWorker (t: Ctx, answer: (stream: Stream, n: number) => void): Promise<{ node: Awaited<ReturnType<typeof libp2pNode>>, streams: Stream[] }> {
  const node = await libp2pNode(t, { streamMuxers: [muxer()] })
  const streams: Stream[] = []
  await node.libp2p.handle(COMPILE_PROTOCOL, (stream: Stream) => {
    streams.push(stream)
    const n = streams.length
    void (async () => {
      const lp = lpStream(stream, { maxDataLength: 16 * MiB })
      for (;;) {
        const offer = packr.unpack((await lp.read()).subarray())
        if (offer.eager === true) while (packr.unpack((await lp.read()).subarray()).type !== 'done');
        answer(stream, n)
      }
    })().catch(() => {}) // the requester reset the stream
  }, { maxInboundStreams: 64 })
  return { node, streams }
}

/** The requester's node and its RemoteCompiler, connected to `peers` (each taking our toolchain's compiles). */
async function requesterNode (t: Ctx, r: Requester & { toolchain: { compiler: string } }, peers: Array<{ libp2p: Libp2p, id: string }>, budget: { readBudgetBytes: number, readShareBytes: number, unpackBudgetBytes?: number, unpackShareBytes?: number }) {
  const node = await libp2pNode(t, { streamMuxers: [muxer()] })
  for (const p of peers) await node.libp2p.dial(p.libp2p.getMultiaddrs()[0]!)
  const own = { go: 'go', compiler: r.toolchain.compiler, canary: 'c', experiment: '' }
  const advert = { accepting: true, slots: { total: 8, free: 8 }, load: 0, toolchains: [own] }
  const remote = new RemoteCompiler({ libp2p: node.libp2p, peers: () => peers.map(p => ({ peerId: p.id, advert: advert as never })), isUntrusted: () => false, own: () => own as never, ...budget })
  t.after(() => { remote.close() })
  const prepared = {
    task: r.task, blobs: r.blobs, out: '/nonexistent/_pkg_.a', asmhdr: undefined, inputBytes: [...r.blobs.values()].reduce((n, b) => n + b.length, 0), pragmas: r.pragmas ?? [], buildId: r.buildId
  } as never
  return { node, remote, prepared }
}

describe('requester read budget', () => {
  it('holds a worker\'s answers on many streams within its read budget, and reads an honest peer\'s result meanwhile', async t => {
    const dir = await tempDir(t)
    const r = await requester(dir, 'a', 'src-a', await writeRecorder(dir))
    // answers larger than a stream's window: the first stream's takes 32 of the 40 MiB and
    // stalls after its first MiB, holding them; the others' come whole
    const size = 32 * MiB
    const hostile = await hostileWorker(t, (stream, n) => { stream.send(n === 1 ? message(size, MiB) : message(size)) })
    const honest = await libp2pNode(t, { streamMuxers: [muxer()] })
    const { worker } = workerFor(join(dir, 'worker'), r.toolchain, h => { void honest.libp2p.handle(COMPILE_PROTOCOL, h, { maxInboundStreams: 64 }) })
    await worker.start()
    t.after(async () => { await worker.stop() })
    const budget = 40 * MiB
    const { remote, prepared } = await requesterNode(t, r, [hostile.node, honest], { readBudgetBytes: budget, readShareBytes: 36 * MiB })
    const signal = new AbortController().signal

    const first = remote.attempt(hostile.node.id, prepared, signal, 50)
    await waitFor(() => remote.reading.budget.inUse === size, 10_000, () => 'the first answer holding its bytes of the budget')
    // four more, on streams of their own: each waits for the peer's share, its stream paused
    const others = Array.from({ length: 4 }, async () => await remote.attempt(hostile.node.id, prepared, signal, 50))
    await waitFor(() => remote.reading.waiting === 4, 10_000, () => 'four answers waiting for room')
    await new Promise(resolve => setTimeout(resolve, 500)) // time for whatever the requester would take in
    for (const s of hostile.streams.slice(1)) {
      // a paused stream sends no window update: the worker got no further than one window
      assert.ok(s.writeBufferLength >= size - STREAM_WINDOW_BYTES, `a waiting stream's worker holds the rest of its answer unsent (${s.writeBufferLength} bytes)`)
    }
    assert.equal(remote.reading.budget.inUse, size)

    // an honest peer's result is read meanwhile, outside the hostile peer's share, and is cmd/go's
    const good = await remote.attempt(honest.id, prepared, signal, 50)
    assert.ok(good.ok, `the honest peer's attempt: ${JSON.stringify(good)}`)
    assert.equal(Buffer.compare(Buffer.from(good.archive), r.local), 0)
    assert.equal(remote.reading.budget.inUse, size, 'the result\'s bytes given back once its attempt ended')

    // the stalled stream goes: the others are read one after another, each refused as undecodable
    hostile.streams[0]!.abort(new Error('gone'))
    for (const a of await Promise.all([first, ...others])) assert.deepEqual([a.ok, !a.ok && a.reason], [false, 'peer-error'])
    assert.ok(remote.reading.budget.peak <= budget, `at most the budget was held at once (${remote.reading.budget.peak})`)
    assert.equal(remote.reading.budget.inUse, 0)
  })

  it('drops a kept stream as soon as its worker sends on it between tasks, unread, having let it send at most a window', async t => {
    const dir = await tempDir(t)
    const r = await requester(dir, 'a', 'src-a', await writeRecorder(dir))
    // refuses every offer as busy (the stream is kept for the next task), and then, on the
    // first stream, once armed, sends 64 MiB nobody asked for
    const unasked = 64 * MiB
    const busy = packr.pack({ type: 'fail', code: 'GRID_ERR_TASK_REFUSED', message: BUSY })
    let arm!: () => void
    const armed = new Promise<void>(resolve => { arm = resolve })
    const hostile = await hostileWorker(t, (stream, n) => {
      stream.send(Buffer.concat([varint.encode(busy.length), busy]))
      if (n === 1) void armed.then(() => stream.send(message(unasked)))
    })
    const { node, remote, prepared } = await requesterNode(t, r, [hostile.node], { readBudgetBytes: 40 * MiB, readShareBytes: 36 * MiB })
    const signal = new AbortController().signal

    assert.deepEqual(await remote.attempt(hostile.node.id, prepared, signal, 50), { ok: false, peer: hostile.node.id, reason: 'busy' })
    const ours = node.libp2p.getConnections(hostile.node.libp2p.peerId).flatMap(c => c.streams).filter(s => s.protocol === COMPILE_PROTOCOL)
    assert.equal(ours.length, 1, 'the stream kept')
    let received = 0
    ours[0]!.addEventListener('message', e => { received += e.data.byteLength })
    arm()

    // dropped as the bytes come, with no task to take it: the worker got no further than a window
    const kept = hostile.streams[0]!
    await waitFor(() => kept.status !== 'open', 10_000, () => 'the kept stream reset')
    assert.ok(received > 0 && received <= STREAM_WINDOW_BYTES, `the requester took in ${received} bytes of what was sent unasked, at most a window`)
    // the next task goes on a new stream
    assert.deepEqual(await remote.attempt(hostile.node.id, prepared, signal, 50), { ok: false, peer: hostile.node.id, reason: 'busy' })
    assert.equal(hostile.streams.length, 2)
    assert.equal(remote.reading.budget.peak, busy.length, 'no read took more than a refusal')
    assert.equal(remote.reading.budget.inUse, 0)
  })

  it('unpacks an archive that came packed within its own budget, taking the size the worker declares: small packed answers that unpack large hold no more, and an honest worker\'s packed result comes back as cmd/go\'s', async t => {
    const dir = await tempDir(t)
    const r = await requester(dir, 'a', 'src-a', await writeRecorder(dir))
    // 32 MiB of zeros pack to a few KB: each answer's message is small, its archive large
    const large = 32 * MiB
    const zeros = brotliCompressSync(Buffer.alloc(large), { params: { [zlib.BROTLI_PARAM_QUALITY]: 1 } })
    const packedLocal = brotliCompressSync(r.local, { params: { [zlib.BROTLI_PARAM_QUALITY]: 1 } })
    // what the worker answers: `archive` packed, declared as `declared` bytes unpacked
    let archive = zeros
    let declared: number | undefined = large
    const hostile = await hostileWorker(t, stream => {
      const body = packr.pack({ type: 'result', exitCode: 0, output: Buffer.alloc(0), archive, asmhdr: null, compileMs: 1, packed: 'br', ...(declared === undefined ? {} : { archiveSize: declared }) })
      stream.send(Buffer.concat([varint.encode(body.length), body]))
    })
    const honest = await libp2pNode(t, { streamMuxers: [muxer()] })
    const { worker } = workerFor(join(dir, 'worker'), r.toolchain, h => { void honest.libp2p.handle(COMPILE_PROTOCOL, h, { maxInboundStreams: 64 }) })
    await worker.start()
    t.after(async () => { await worker.stop() })
    const budget = 40 * MiB
    const { remote, prepared } = await requesterNode(t, r, [hostile.node, honest], { readBudgetBytes: budget, readShareBytes: 36 * MiB, unpackBudgetBytes: budget, unpackShareBytes: 36 * MiB })
    // both links timed slow (~100 Mbit/s): the archives are asked for packed
    for (const peer of [hostile.node.id, honest.id]) remote.linkMeasured(peer, { rttMs: 1, msPerByte: 8e-5, atLeast: false })
    const signal = new AbortController().signal
    const unpacking = remote.unpacking.budget

    // cmd/go's archive, packed, declared a byte longer than it is: refused for that alone
    archive = packedLocal
    declared = r.local.length + 1
    const longer = await remote.attempt(hostile.node.id, prepared, signal, 50)
    assert.deepEqual([longer.ok, !longer.ok && longer.reason], [false, 'peer-error'])
    declared = r.local.length
    const right = await remote.attempt(hostile.node.id, prepared, signal, 50)
    assert.ok(right.ok && Buffer.from(right.archive).equals(r.local), 'declared as it is, the same archive is taken')
    assert.equal(unpacking.peak, r.local.length + 1)

    // one that declares 1 MiB and unpacks past it: refused there, having taken 1 MiB
    archive = zeros
    declared = MiB
    const lie = await remote.attempt(hostile.node.id, prepared, signal, 50)
    assert.deepEqual([lie.ok, !lie.ok && lie.reason], [false, 'peer-error'])
    assert.equal(unpacking.peak, MiB, 'the room the archive declared, and no more')

    // six that declare what they unpack to, on streams of their own, and an honest peer's
    // meanwhile: the worker's share has room for one of them at a time, the honest peer's
    // archive is unpacked beside it
    declared = large
    const attempts = await Promise.all([
      ...Array.from({ length: 6 }, async () => await remote.attempt(hostile.node.id, prepared, signal, 50)),
      remote.attempt(honest.id, prepared, signal, 50)
    ])
    const good = attempts.pop()!
    for (const a of attempts) assert.deepEqual([a.ok, !a.ok && a.reason], [false, 'peer-error'], 'zeros are no archive of the task')
    assert.ok(hostile.streams.length >= 2, `the answers came on several streams (${hostile.streams.length})`)
    assert.ok(good.ok, `the honest peer's attempt: ${JSON.stringify({ ...good, archive: undefined })}`)
    assert.equal(Buffer.compare(Buffer.from(good.archive), r.local), 0, 'the honest archive unpacked is cmd/go\'s')
    assert.equal(worker.stats.packed, 1, 'the honest worker packed it')
    assert.ok(unpacking.peak >= large && unpacking.peak <= large + r.local.length, `one large archive held at once, beside at most the honest one (${unpacking.peak})`)
    assert.ok(remote.reading.budget.peak <= budget, `the messages held within their budget (${remote.reading.budget.peak})`)

    // a worker of an earlier version declares nothing: the largest a result may be is taken, alone
    declared = undefined
    const earlier = await remote.attempt(hostile.node.id, prepared, signal, 50)
    assert.deepEqual([earlier.ok, !earlier.ok && earlier.reason], [false, 'peer-error'])
    assert.equal(unpacking.peak, MAX_COMPILE_MESSAGE_BYTES)
    assert.deepEqual([unpacking.inUse, remote.reading.budget.inUse], [0, 0], 'all given back')
  })
})
