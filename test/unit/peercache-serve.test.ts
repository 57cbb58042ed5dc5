// The shared cache between peers (packages/node/src/peercache/peercache.ts, docs/cache.md "Shared
// cache") on real libp2p nodes on loopback, with real caches in temp dirs: a member that resets
// its stream in the middle of a reply, or asks for much and never reads, costs the serving node
// nothing but that stream; a stream has a bounded number of answers in progress; the bodies a
// node holds to serve them, over every stream and connection, stay within one node-wide budget
// (which a member that resets or goes away gives back, waiting or not), and so do the bodies it
// fetches (given back when a fetch fails or its wait times out); a body whose
// length is not the claimed size is rejected like one that does not hash to its OutputID; over a
// slow link bodies come packed, and packed bytes that do not unpack to the body are rejected too,
// as is a body packed unasked; the asking side's stream takes in at most a message of a member's
// reply over the cap or to a request never made, and keeps its stream for a late reply;
// --verify distrusts a producer only over a compile's output, not a test result's.
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { pathToFileURL } from 'node:url'
import { brotliCompressSync, brotliDecompressSync, constants as zlib } from 'node:zlib'
import type { Libp2p, Stream } from '@libp2p/interface'
import { lpStream } from '@libp2p/utils'
import * as varint from 'uint8-varint'
import { CHUNK_BYTES, MAX_PEER_MESSAGE_BYTES, Packr, claimBytes, emptyBuildStats, validatePeerCacheMessage, type Claim, type Found, type PeerCacheMessage } from '@grid/protocol'
import { Cache, signer } from '@grid/node/server'
import type * as PeerCacheModule from '../../packages/node/src/peercache/index.js'
import type * as BuildsModule from '../../packages/node/src/builds/index.js'
import type * as BudgetModule from '../../packages/node/src/budget.js'
import { ROOT, defer, tempDir, waitFor } from '../helpers/index.js'
import { libp2pNode } from '../helpers/libp2p.js'

// The peer cache is internal to @grid/node (not in its package exports): loaded from its build.
const { PeerCache, CACHE_PROTOCOL, LOOKUP_TIMEOUT_MS, MAX_ANSWERS_PER_STREAM } =
  await import(pathToFileURL(join(ROOT, 'packages/node/dist/peercache/index.js')).href) as typeof PeerCacheModule
const { ByteBudget } = await import(pathToFileURL(join(ROOT, 'packages/node/dist/budget.js')).href) as typeof BudgetModule
const { Builds, BuildSources, buildIdAction } = await import(pathToFileURL(join(ROOT, 'packages/node/dist/builds/index.js')).href) as typeof BuildsModule
type PeerCache = InstanceType<typeof PeerCache>
type PeerCacheInit = PeerCacheModule.PeerCacheInit
type Ctx = Parameters<typeof tempDir>[0]

const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false })
const MiB = 1024 * 1024
const sha256 = (b: Uint8Array): Buffer => createHash('sha256').update(b).digest()

interface Node { libp2p: Libp2p, id: string, cache: Cache, peerCache: PeerCache }

/** A node with a cache and the shared cache, asking `peers()` (every member trusted). */
async function cacheNode (t: Ctx, peers: () => string[] = () => [], toolchain = 'go1.test', compilerStamp?: string, extra: Partial<PeerCacheInit> = {}): Promise<Node> {
  const dir = await tempDir(t, 'pc')
  const { libp2p, key, id } = await libp2pNode(t)
  const cache = await Cache.open({ dir, nodeId: id })
  defer(t, async () => { await cache.close() })
  const peerCache = new PeerCache({
    libp2p, cache, privateKey: key, selfId: id, trust: 'mesh', verifyPercent: 0, peers, isKnownMember: () => true, toolchain: () => toolchain, compilerStamp: () => compilerStamp, ...extra
  })
  await peerCache.start()
  defer(t, async () => { await peerCache.stop() })
  return { libp2p, id, cache, peerCache }
}

/** A node that asks `server` (and is connected to it). */
async function client (t: Ctx, server: Libp2p): Promise<Node> {
  const node = await cacheNode(t, () => [server.peerId.toString()])
  await node.libp2p.dial(server.getMultiaddrs())
  return node
}

async function putBlob (cache: Cache, size: number): Promise<{ actionId: Buffer, outputId: Buffer, body: Buffer }> {
  const actionId = randomBytes(32)
  const body = randomBytes(size)
  const { outputId } = await cache.putBytes(actionId, body)
  return { actionId, outputId: Buffer.from(outputId), body }
}

/** find, asked again while the lookup itself misses (the first one also opens the stream, on a busy machine). */
async function settledFind (node: Node, actionId: Uint8Array, build?: Parameters<PeerCache['find']>[1]): ReturnType<PeerCache['find']> {
  const deadline = Date.now() + 20_000
  for (;;) {
    const result = await node.peerCache.find(actionId, build)
    if (!('miss' in result) || result.miss !== 'not-found' || Date.now() > deadline) return result
  }
}

/** The serving node still answers: another member fetches the entry through its own stream, byte for byte. */
async function servesStill (t: Ctx, server: Node, blob: { actionId: Buffer, body: Buffer }): Promise<void> {
  const b = await client(t, server.libp2p)
  const result = await settledFind(b, blob.actionId)
  assert.ok('hit' in result, `a later fetch from another member: ${JSON.stringify(result)}`)
  assert.equal(result.bytes, blob.body.length)
  assert.equal(result.hit.size, blob.body.length)
  assert.ok((await b.cache.readVerified(sha256(blob.body).toString('hex')))?.equals(blob.body), 'the body stored from the later fetch')
}

/** The cache streams the server has open from `peer`. */
function streamsFrom (server: Libp2p, peer: Libp2p): Stream[] {
  return server.getConnections(peer.peerId).flatMap(c => c.streams).filter(s => s.protocol === CACHE_PROTOCOL)
}

/** A few turns of the event loop: an unhandled rejection is reported after the microtasks of its turn. */
async function turns (): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise(resolve => setImmediate(resolve))
}

describe('peer cache: serving', () => {
  const unhandled: unknown[] = []
  const onUnhandled = (reason: unknown): void => { unhandled.push(reason) }
  before(() => { process.on('unhandledRejection', onUnhandled) })
  after(() => { process.off('unhandledRejection', onUnhandled) })
  const noUnhandled = (): void => {
    assert.deepEqual(unhandled.map(r => r instanceof Error ? `${r.name}: ${r.message}` : String((r as Event)?.type ?? r)), [], 'unhandled rejections')
  }

  it('a member that resets its stream in the middle of a reply: the node keeps running and serves the next fetch', async (t) => {
    const a = await cacheNode(t)
    const blob = await putBlob(a.cache, 32 * MiB)
    const m = await libp2pNode(t)
    await m.libp2p.dial(a.libp2p.getMultiaddrs())
    const stream = await m.libp2p.dialProtocol(a.libp2p.peerId, CACHE_PROTOCOL)
    const lp = lpStream(stream, { maxDataLength: MAX_PEER_MESSAGE_BYTES, maxBufferSize: MAX_PEER_MESSAGE_BYTES * 4 })
    await lp.write(packr.pack({ type: 'fetch', id: 1, outputId: blob.outputId }))
    const first = validatePeerCacheMessage(packr.unpack((await lp.read()).subarray()), 'a')
    assert.equal(first.type, 'chunk', 'the node is sending the body')
    stream.abort(new Error('the member went away'))
    await waitFor(() => streamsFrom(a.libp2p, m.libp2p).length === 0, 10_000, () => 'the node to drop the reset stream')
    await turns()
    noUnhandled()
    await servesStill(t, a, blob)
    noUnhandled()
  })

  it('a member that asks for many bodies, never reads, then goes away: the node keeps running and serves the next fetch', async (t) => {
    const a = await cacheNode(t)
    const blob = await putBlob(a.cache, 4 * MiB)
    const m = await libp2pNode(t)
    await m.libp2p.dial(a.libp2p.getMultiaddrs())
    const stream = await m.libp2p.dialProtocol(a.libp2p.peerId, CACHE_PROTOCOL)
    stream.pause() // nothing read: no window updates, the node's writes wait
    const lp = lpStream(stream)
    for (let id = 1; id <= 40; id++) await lp.write(packr.pack({ type: 'fetch', id, outputId: blob.outputId }))
    await waitFor(() => a.peerCache.served.bodies >= 1, 10_000, () => 'the node to start sending')
    await m.libp2p.stop()
    await waitFor(() => a.libp2p.getConnections(m.libp2p.peerId).length === 0, 10_000, () => 'the member\'s connection to close')
    await turns()
    noUnhandled()
    await servesStill(t, a, blob)
    noUnhandled()
  })

  it(`at most MAX_ANSWERS_PER_STREAM (${MAX_ANSWERS_PER_STREAM}) answers in progress on one stream; the rest wait, in order`, async (t) => {
    const a = await cacheNode(t)
    const blobs = []
    for (let i = 0; i < MAX_ANSWERS_PER_STREAM + 4; i++) blobs.push(await putBlob(a.cache, 1024 + i))
    // each answer starts by reading its body: hold the reads, release them oldest first
    const started: string[] = []
    const gates: Array<() => void> = []
    let released = 0
    let most = 0
    const readVerified = a.cache.readVerified.bind(a.cache)
    a.cache.readVerified = async (outputHex: string) => {
      started.push(outputHex)
      most = Math.max(most, started.length - released) // a released small answer is done within its turn
      await new Promise<void>(resolve => gates.push(resolve))
      return await readVerified(outputHex)
    }
    const m = await libp2pNode(t)
    await m.libp2p.dial(a.libp2p.getMultiaddrs())
    const stream = await m.libp2p.dialProtocol(a.libp2p.peerId, CACHE_PROTOCOL)
    const lp = lpStream(stream, { maxDataLength: MAX_PEER_MESSAGE_BYTES, maxBufferSize: MAX_PEER_MESSAGE_BYTES * 4 })
    const replies: PeerCacheMessage[] = []
    const reading = (async () => {
      while (replies.length < blobs.length) replies.push(validatePeerCacheMessage(packr.unpack((await lp.read()).subarray()), 'a'))
    })()
    await lp.writeV(blobs.map((b, i) => packr.pack({ type: 'fetch', id: i + 1, outputId: b.outputId })))
    while (released < blobs.length) {
      await waitFor(() => started.length - released >= Math.min(MAX_ANSWERS_PER_STREAM, blobs.length - released), 10_000,
        () => `answer ${released + 1} to start (${started.length} started, ${released} released)`)
      assert.ok(most <= MAX_ANSWERS_PER_STREAM, `${most} answers in progress at once on one stream`)
      gates[released++]?.()
    }
    await reading
    assert.equal(most, MAX_ANSWERS_PER_STREAM, 'that many answers run at once')
    assert.deepEqual(started, blobs.map(b => b.outputId.toString('hex')), 'answers start in the order asked')
    for (const [i, b] of blobs.entries()) {
      const reply = replies.find(r => r.id === i + 1)
      assert.ok(reply?.type === 'chunk' && reply.last && Buffer.from(reply.data).equals(b.body), `reply ${i + 1}`)
    }
    stream.abort(new Error('done'))
  })
})

describe('peer cache: the node-wide serve budget', () => {
  const unhandled: unknown[] = []
  const onUnhandled = (reason: unknown): void => { unhandled.push(reason) }
  before(() => { process.on('unhandledRejection', onUnhandled) })
  after(() => { process.off('unhandledRejection', onUnhandled) })

  /** Asks for `blobs` (one request each) on a new stream of `m` to `server`, and checks every body that comes back. */
  async function fetchOver (m: Libp2p, server: Libp2p, blobs: Array<{ outputId: Buffer, body: Buffer }>): Promise<void> {
    const stream = await m.dialProtocol(server.peerId, CACHE_PROTOCOL)
    const lp = lpStream(stream, { maxDataLength: MAX_PEER_MESSAGE_BYTES, maxBufferSize: MAX_PEER_MESSAGE_BYTES * 4 })
    const got = new Map<number, Uint8Array[]>()
    const reading = (async () => {
      for (let done = 0; done < blobs.length;) {
        const msg = validatePeerCacheMessage(packr.unpack((await lp.read()).subarray()), 'server')
        assert.equal(msg.type, 'chunk', `reply ${msg.id}`)
        const chunk = msg as Extract<PeerCacheMessage, { type: 'chunk' }>
        got.set(chunk.id, [...(got.get(chunk.id) ?? []), chunk.data])
        if (chunk.last) done++
      }
    })()
    await lp.writeV(blobs.map((b, i) => packr.pack({ type: 'fetch', id: i + 1, outputId: b.outputId })))
    await reading
    for (const [i, b] of blobs.entries()) assert.ok(Buffer.concat(got.get(i + 1) ?? []).equals(b.body), `body ${i + 1}`)
    stream.abort(new Error('done'))
  }

  it('big bodies asked for over many streams of several connections: the bodies held at once stay within the budget (a stream alone was bounded, not the node)', async (t) => {
    // 2 members × 4 streams × MAX_ANSWERS_PER_STREAM answers: 64 bodies asked for at once, where
    // the budget holds 3; before, every stream held its 8 (and a connection may open 16 streams)
    const budget = 2 * MiB
    const a = await cacheNode(t, undefined, undefined, undefined, { serveBudgetBytes: budget })
    const blobs: Array<{ outputId: Buffer, body: Buffer }> = []
    for (let i = 0; i < 4; i++) blobs.push(await putBlob(a.cache, 600 * 1024 + i))
    const runs: Array<Promise<void>> = []
    for (let n = 0; n < 2; n++) {
      const m = await libp2pNode(t)
      await m.libp2p.dial(a.libp2p.getMultiaddrs())
      for (let s = 0; s < 4; s++) {
        runs.push(fetchOver(m.libp2p, a.libp2p, Array.from({ length: MAX_ANSWERS_PER_STREAM }, (_, i) => blobs[(s + i) % blobs.length]!)))
      }
    }
    await Promise.all(runs)
    const held = a.peerCache.serveBudget
    assert.equal(a.peerCache.served.bodies, 2 * 4 * MAX_ANSWERS_PER_STREAM, 'every body served')
    assert.ok(held.peak <= budget, `${held.peak} bytes of bodies held at once, over the budget of ${budget}`)
    assert.ok(held.peak > blobs[3]!.body.length, `more than one body at once (${held.peak} bytes)`)
    assert.deepEqual({ inUse: held.inUse, waiting: held.waiting }, { inUse: 0, waiting: 0 }, 'all given back')

    // a body larger than the budget is served, alone, while other fetches wait their turn
    const big = await putBlob(a.cache, budget + MiB)
    const bigHex = big.outputId.toString('hex')
    let heldWithBig: number | undefined
    const readVerified = a.cache.readVerified.bind(a.cache)
    a.cache.readVerified = async (outputHex: string) => {
      if (outputHex === bigHex) heldWithBig = held.inUse
      return await readVerified(outputHex)
    }
    const m = await libp2pNode(t)
    await m.libp2p.dial(a.libp2p.getMultiaddrs())
    await Promise.all([fetchOver(m.libp2p, a.libp2p, [...blobs, big, ...blobs]), fetchOver(m.libp2p, a.libp2p, [...blobs, ...blobs])])
    assert.equal(heldWithBig, big.body.length, 'nothing else held while the larger body was')
    assert.deepEqual({ inUse: held.inUse, waiting: held.waiting }, { inUse: 0, waiting: 0 }, 'all given back')
  })

  it('members that reset their stream or go away, with bodies held or waiting for the budget, give it all back at once; lookups are answered meanwhile', async (t) => {
    const budget = 2 * MiB
    const a = await cacheNode(t, undefined, undefined, undefined, { serveBudgetBytes: budget })
    const blob = await putBlob(a.cache, MiB + 4096) // more than a stream's window: its reply stalls while unread (one at a time fits)
    const held = a.peerCache.serveBudget
    /** A member's stream that asks for the body MAX_ANSWERS_PER_STREAM times and never reads. */
    const stalled = async (): Promise<{ libp2p: Libp2p, stream: Stream }> => {
      const m = await libp2pNode(t)
      await m.libp2p.dial(a.libp2p.getMultiaddrs())
      const stream = await m.libp2p.dialProtocol(a.libp2p.peerId, CACHE_PROTOCOL)
      stream.pause()
      const lp = lpStream(stream)
      await lp.writeV(Array.from({ length: MAX_ANSWERS_PER_STREAM }, (_, i) => packr.pack({ type: 'fetch', id: i + 1, outputId: blob.outputId })))
      return { libp2p: m.libp2p, stream }
    }
    const state = (): string => `${held.inUse} bytes held, ${held.waiting} waiting`
    const holds = await stalled()
    await waitFor(() => held.inUse > 0 && held.waiting === MAX_ANSWERS_PER_STREAM - 1, 10_000, () => `a body held, the rest waiting (${state()})`)
    const resets = await stalled()
    const leaves = await stalled()
    await waitFor(() => held.waiting === 3 * MAX_ANSWERS_PER_STREAM - 1, 10_000, () => `every other fetch waiting (${state()})`)
    assert.equal(held.inUse, blob.body.length)

    // another member's lookup is answered, its small body with it, while the fetches wait
    const small = await putBlob(a.cache, 2000)
    const b = await client(t, a.libp2p)
    const found = await settledFind(b, small.actionId)
    assert.ok('hit' in found, JSON.stringify(found))

    // the waits of a stream reset and of a member gone leave the queue, though the held body is not given back yet
    resets.stream.abort(new Error('the member reset its stream'))
    await leaves.libp2p.stop()
    await waitFor(() => held.waiting === MAX_ANSWERS_PER_STREAM - 1, 10_000, () => `the waits of the gone to be cancelled (${state()})`)
    assert.equal(held.inUse, blob.body.length, 'the body held stays held')
    // and the one holding a body goes: everything is given back
    holds.stream.abort(new Error('the member reset its stream'))
    await waitFor(() => held.inUse === 0 && held.waiting === 0, 10_000, () => `the budget given back (${state()})`)
    await turns()
    assert.deepEqual(unhandled.map(r => r instanceof Error ? `${r.name}: ${r.message}` : String((r as Event)?.type ?? r)), [], 'unhandled rejections')
    await servesStill(t, a, blob)
    assert.deepEqual({ inUse: held.inUse, waiting: held.waiting }, { inUse: 0, waiting: 0 }, 'all given back after the next fetch')
  })

  it('a member that keeps its stream open and takes no reply: the stream is reset once a reply waits past its time, and the budget given back', async (t) => {
    const serveWriteMs = 1_000
    const a = await cacheNode(t, undefined, undefined, undefined, { serveBudgetBytes: 3 * MiB, serveWriteMs })
    const blob = await putBlob(a.cache, 2 * MiB) // more than a stream's first window
    const held = a.peerCache.serveBudget
    const m = await libp2pNode(t)
    await m.libp2p.dial(a.libp2p.getMultiaddrs())
    const stream = await m.libp2p.dialProtocol(a.libp2p.peerId, CACHE_PROTOCOL)
    stream.pause() // nothing read: no window updates, the node's reply waits
    const closed = new Promise<number>(resolve => { stream.addEventListener('close', () => { resolve(Date.now()) }, { once: true }) })
    await lpStream(stream).writeV([1, 2].map(id => packr.pack({ type: 'fetch', id, outputId: blob.outputId })))
    await waitFor(() => held.inUse > 0 && held.waiting === 1, 10_000, () => `one body held, one waiting (${held.inUse} bytes held)`)
    const holding = Date.now()
    const at = await Promise.race([closed, new Promise<undefined>(resolve => setTimeout(() => { resolve(undefined) }, serveWriteMs + 10_000).unref())])
    assert.ok(at !== undefined, 'the node reset the stream whose member took no reply')
    assert.equal(stream.status, 'reset')
    await waitFor(() => held.inUse === 0 && held.waiting === 0, 10_000, () => `the budget given back (${held.inUse} bytes held, ${held.waiting} waiting)`)
    assert.ok(at - holding >= serveWriteMs - 500, `not before the reply's time (${at - holding} ms)`)
    assert.equal(m.libp2p.getConnections(a.libp2p.peerId).length, 1, 'the member stays connected: only the stream went')
    await servesStill(t, a, blob)
  })
})

describe('peer cache: ByteBudget', () => {
  const never = new AbortController().signal
  it('grants in order, within the limit; one larger than the limit alone; tryTake takes free room, never more', async () => {
    const budget = new ByteBudget(10)
    const order: string[] = []
    const seen = (): string[] => [...order] // a copy: assert.deepEqual would narrow `order` itself
    const r1 = await budget.take(6, never)
    const w2 = budget.take(6, never).then(r => { order.push('second'); return r })
    const w3 = budget.take(1, never).then(r => { order.push('third'); return r }) // would fit, but waits its turn
    await turns()
    assert.deepEqual(seen(), [])
    const small = budget.tryTake(4)
    assert.ok(small !== undefined, 'a small hold takes the free room at once')
    assert.equal(budget.tryTake(1), undefined, 'but not more')
    small()
    small() // given back once only
    assert.equal(budget.inUse, 6)
    r1()
    const r2 = await w2
    const r3 = await w3
    assert.deepEqual(seen(), ['second', 'third'])
    assert.equal(budget.inUse, 7)
    const w4 = budget.take(25, never).then(r => { order.push('larger'); return r })
    r2()
    await turns()
    assert.deepEqual(seen(), ['second', 'third'], 'the larger one waits for nothing else to be held')
    r3()
    const r4 = await w4
    assert.equal(budget.inUse, 25)
    assert.equal(budget.tryTake(1), undefined)
    r4()
    assert.deepEqual({ inUse: budget.inUse, waiting: budget.waiting, peak: budget.peak }, { inUse: 0, waiting: 0, peak: 25 })
  })

  it('a cancelled wait leaves the queue, and the next in line gets the room', async () => {
    const budget = new ByteBudget(10)
    const r1 = await budget.take(8, never)
    const cancel = new AbortController()
    const cancelled = budget.take(5, cancel.signal)
    const next = budget.take(2, never)
    assert.equal(budget.waiting, 2)
    cancel.abort(new Error('the stream was reset'))
    await assert.rejects(cancelled, /the stream was reset/)
    const r2 = await next
    assert.deepEqual({ inUse: budget.inUse, waiting: budget.waiting }, { inUse: 10, waiting: 0 })
    r1()
    r2()
    await assert.rejects(budget.take(1, cancel.signal), /the stream was reset/, 'an aborted signal takes nothing')
    assert.equal(budget.inUse, 0)
  })
})

type ChunkOf = (body: Buffer, fetch: Extract<PeerCacheMessage, { type: 'fetch' }>) => Promise<Array<{ data: Uint8Array, last: boolean, packed?: string }>>

/** A body in chunks of CHUNK_BYTES, as it is. */
const plainChunks: ChunkOf = async body => {
  const chunks = []
  for (let off = 0; off < body.length; off += CHUNK_BYTES) chunks.push({ data: body.subarray(off, off + CHUNK_BYTES), last: off + CHUNK_BYTES >= body.length })
  return chunks
}

/**
 * A member that claims `blob` for its ActionID with the size `claimed`, signed by itself, and
 * sends the body when asked: as it is, in chunks, or what `chunks` makes of the fetch.
 */
async function claimer (t: Ctx, blob: { actionId: Buffer, body: Buffer }, claimed: number, chunks = plainChunks): Promise<{ libp2p: Libp2p, id: string }> {
  const p = await libp2pNode(t)
  const toolchain = 'go1.test'
  const outputId = sha256(blob.body)
  const claim: Claim = {
    actionId: blob.actionId, outputId, size: claimed, time: Date.now(), producer: p.id, toolchain,
    sig: await signer(p.key)(claimBytes(blob.actionId, outputId, toolchain))
  }
  await p.libp2p.handle(CACHE_PROTOCOL, (stream: Stream) => {
    const lp = lpStream(stream, { maxDataLength: MAX_PEER_MESSAGE_BYTES, maxBufferSize: MAX_PEER_MESSAGE_BYTES * 4 })
    void (async () => {
      for (;;) {
        const msg = validatePeerCacheMessage(packr.unpack((await lp.read()).subarray()), 'test')
        if (msg.type === 'lookup') {
          await lp.write(packr.pack({ type: 'found', id: msg.id, entries: msg.keys.map(k => blob.actionId.equals(k) ? claim : null) }))
        } else if (msg.type === 'fetch') {
          for (const chunk of await chunks(blob.body, msg)) await lp.write(packr.pack({ ...chunk, type: 'chunk', id: msg.id }))
        }
      }
    })().catch((err: Error) => { stream.abort(err) })
  })
  return { libp2p: p.libp2p, id: p.id }
}

describe('peer cache: a body of another size than claimed', () => {
  for (const [what, delta] of [['larger', 1000], ['smaller', -1000]] as const) {
    it(`a claim ${what} than the body sent: a miss, the peer untrusted, nothing stored`, async (t) => {
      const blob = { actionId: randomBytes(32), body: randomBytes(2 * CHUNK_BYTES + 4096) } // fetched, in chunks
      const p = await claimer(t, blob, blob.body.length + delta)
      const b = await client(t, p.libp2p)
      const result = await settledFind(b, blob.actionId)
      assert.deepEqual('miss' in result ? result.miss : result, 'rejected')
      assert.match(b.peerCache.untrusted.get(p.id) ?? '', /size|bytes/, 'the serving peer is untrusted')
      assert.equal(b.peerCache.mayAsk(), false, 'its claims are not asked for again')
      assert.equal(await b.cache.get(blob.actionId), undefined, 'no entry stored')
      assert.equal(existsSync(b.cache.blobPath(sha256(blob.body).toString('hex'))), false, 'no blob stored')
    })
  }
})


describe('peer cache: the time a build waited on peers', () => {
  // The summary said `8.7 s waiting, summed over parallel gets` of a 3.9 s build: a sum over gets
  // that run side by side is no time anyone waited. The build's waits are joined as they come.
  it('is the union of its gets\' waits: their sum when none overlap; with gets at once, less than the sum, no less than the longest', async (t) => {
    const server = await cacheNode(t)
    const c = await client(t, server.libp2p)
    // bodies fetched after the lookup, and small ones that come with it
    const blobs = []
    for (let i = 0; i < 12; i++) blobs.push(await putBlob(server.cache, i % 3 === 0 ? 1000 + i : 200 * 1024 + i))
    const opened = await settledFind(c, (await putBlob(server.cache, 10)).actionId) // the stream open: each get below a hit
    assert.ok('hit' in opened, JSON.stringify(opened))
    const builds = new Builds()
    const close = (a: number, b: number): boolean => Math.abs(a - b) <= 1e-6 * Math.max(1, a, b)
    const hit = (r: Awaited<ReturnType<PeerCache['find']>>): number => {
      assert.ok('hit' in r, JSON.stringify(r))
      return r.waitMs
    }

    // one get at a time
    const apart = builds.begin(['go', 'build', './apart'], '/src')
    const waitsApart: number[] = []
    for (const b of blobs.slice(0, 6)) waitsApart.push(hit(await c.peerCache.find(b.actionId, apart)))
    const sumApart = waitsApart.reduce((a, b) => a + b, 0)
    assert.ok(close(apart.peerWaits.sumMs(), sumApart), `sum ${apart.peerWaits.sumMs()} ms, the gets' waits ${waitsApart.join(' + ')} ms`)
    assert.ok(close(apart.peerWaits.unionMs(), sumApart), `no two gets at once: the union ${apart.peerWaits.unionMs()} ms is the sum ${sumApart} ms`)

    // every get at once, as cmd/go asks: all begin before any ends
    const together = builds.begin(['go', 'build', './together'], '/src')
    const before = performance.now()
    const waits = (await Promise.all(blobs.slice(6).map(async b => await c.peerCache.find(b.actionId, together)))).map(hit)
    const window = performance.now() - before
    const sum = together.peerWaits.sumMs()
    const union = together.peerWaits.unionMs()
    const longest = Math.max(...waits)
    assert.ok(close(sum, waits.reduce((a, b) => a + b, 0)), `sum ${sum} ms, the gets' waits ${waits.join(' + ')} ms`)
    assert.ok(union >= longest, `the union ${union} ms, the longest wait ${longest} ms`)
    assert.ok(union < sum, `the gets overlapped: the union ${union} ms is less than the sum ${sum} ms`)
    assert.ok(union <= window, `the union ${union} ms within the ${window} ms from the first get to the last answer`)
    assert.ok(close(apart.peerWaits.unionMs(), sumApart), 'the other build\'s untouched')
  })
})

describe('peer cache: the node-wide fetch budget', () => {
  it('many gets at once: the bodies being fetched stay within the budget, and every one comes', async (t) => {
    const budget = 2 * MiB
    const server = await cacheNode(t)
    const blobs = []
    for (let i = 0; i < 12; i++) blobs.push(await putBlob(server.cache, 600 * 1024 + i))
    const c = await cacheNode(t, () => [server.id], 'go1.test', undefined, { fetchBudgetBytes: budget })
    await c.libp2p.dial(server.libp2p.getMultiaddrs())
    const results = await Promise.all(blobs.map(async b => await settledFind(c, b.actionId)))
    for (const [i, r] of results.entries()) assert.ok('hit' in r && r.bytes === blobs[i]!.body.length, `get ${i + 1}: ${JSON.stringify(r)}`)
    const held = c.peerCache.fetchBudget
    assert.ok(held.peak <= budget, `${held.peak} bytes being fetched at once, over the budget of ${budget}`)
    assert.ok(held.peak > blobs[11]!.body.length, `more than one body at once (${held.peak} bytes)`)
    assert.deepEqual({ inUse: held.inUse, waiting: held.waiting }, { inUse: 0, waiting: 0 }, 'all given back')
  })

  it('a fetch that fails, and one that waited for it past its deadline, give back what they took', async (t) => {
    const blobs = [0, 1].map(() => ({ actionId: randomBytes(32), body: randomBytes(1536 * 1024) }))
    // a member that claims both bodies and never sends one
    const p = await liar(t, blobs, async () => {})
    const c = await cacheNode(t, () => [p.id], 'go1.test', undefined, { fetchBudgetBytes: 2 * MiB }) // room for one
    await c.libp2p.dial(p.libp2p.getMultiaddrs())
    const results = await Promise.all(blobs.map(async b => await settledFind(c, b.actionId)))
    assert.deepEqual(results.map(r => 'miss' in r ? r.miss : 'hit'), ['fetch-failed', 'fetch-failed'])
    assert.ok(p.fetches() >= 1, 'a body was asked for')
    const held = c.peerCache.fetchBudget
    assert.equal(held.peak, blobs[0]!.body.length, 'one fetch at a time')
    assert.deepEqual({ inUse: held.inUse, waiting: held.waiting }, { inUse: 0, waiting: 0 }, 'all given back')
  })

  it('a member that claims a large body and sends only its first chunk is cut once it falls behind, and the fetch waiting for its room goes on', async (t) => {
    // 200 MiB claimed (the whole budget, alone) would be held to its deadline, 3 s + 10.5 s; a
    // 40 MiB body waiting for the room waits 3 s + 2.1 s at most
    const claimed = { actionId: randomBytes(32), body: Buffer.alloc(0), size: 200 * MiB }
    const p = await liar(t, [claimed], async (lp, id) => {
      await lp.write(packr.pack({ type: 'chunk', id, data: randomBytes(CHUNK_BYTES), last: false }))
    })
    const server = await cacheNode(t)
    const honest = await putBlob(server.cache, 40 * MiB)
    const c = await cacheNode(t, () => [p.id, server.id], 'go1.test', undefined, { fetchBudgetBytes: 64 * MiB })
    await c.libp2p.dial(p.libp2p.getMultiaddrs())
    await c.libp2p.dial(server.libp2p.getMultiaddrs())
    const lying = settledFind(c, claimed.actionId)
    await waitFor(() => c.peerCache.fetchBudget.inUse === claimed.size, 10_000, () => 'the claim holding the fetch budget')
    const fetched = await settledFind(c, honest.actionId)
    assert.ok('hit' in fetched && fetched.bytes === honest.body.length, `the body that waited: ${JSON.stringify(fetched)}`)
    const lied = await lying
    assert.ok('miss' in lied && lied.miss === 'fetch-failed', JSON.stringify(lied))
    assert.equal(p.fetches(), 1)
  })
})

/**
 * A member that claims `blobs` (a claim's size is its body's, or `size`) and answers each fetch
 * with `onFetch` (which may send nothing).
 */
async function liar (t: Ctx, blobs: Array<{ actionId: Buffer, body: Buffer, size?: number }>, onFetch: (lp: ReturnType<typeof lpStream>, id: number) => Promise<void>): Promise<{ id: string, libp2p: Libp2p, fetches: () => number }> {
  const p = await libp2pNode(t)
  const claims = await Promise.all(blobs.map(async b => {
    const outputId = sha256(b.body)
    return { actionId: b.actionId, outputId, size: b.size ?? b.body.length, time: Date.now(), producer: p.id, toolchain: 'go1.test', sig: await signer(p.key)(claimBytes(b.actionId, outputId, 'go1.test')) }
  }))
  let fetches = 0
  await p.libp2p.handle(CACHE_PROTOCOL, (stream: Stream) => {
    const lp = lpStream(stream, { maxDataLength: MAX_PEER_MESSAGE_BYTES, maxBufferSize: MAX_PEER_MESSAGE_BYTES * 4 })
    void (async () => {
      for (;;) {
        const msg = validatePeerCacheMessage(packr.unpack((await lp.read()).subarray()), 'test')
        if (msg.type === 'lookup') await lp.write(packr.pack({ type: 'found', id: msg.id, entries: msg.keys.map(k => claims.find(c => c.actionId.equals(k)) ?? null) }))
        else { fetches++; await onFetch(lp, msg.id) }
      }
    })().catch((err: Error) => { stream.abort(err) })
  })
  return { id: p.id, libp2p: p.libp2p, fetches: () => fetches }
}

describe('peer cache: bodies packed over a slow link', () => {
  /** A body of Go-like text that packs well, over two chunks. */
  const text = (): Buffer => Buffer.from(Array.from({ length: 40_000 }, (_, i) => `func f${i}(x int) int { return x * ${i % 97} }\n`).join(''))
  const slowLink = { msPerByte: () => 8e-5, measure: () => {}, packs: () => true } // ~100 Mbit/s, timed so

  it('a fetch over a link measured slow asks for the body packed: fewer bytes move, and the entry is the body itself', async (t) => {
    const server = await cacheNode(t)
    const blob = { actionId: randomBytes(32), body: text() }
    const { outputId } = await server.cache.putBytes(blob.actionId, blob.body)
    assert.ok(blob.body.length > CHUNK_BYTES, `${blob.body.length} bytes`)
    // as the protocol has it: asked, the chunks say packed and unpack to the body; not asked, the body as it is
    const m = await libp2pNode(t)
    await m.libp2p.dial(server.libp2p.getMultiaddrs())
    const stream = await m.libp2p.dialProtocol(server.libp2p.peerId, CACHE_PROTOCOL)
    const lp = lpStream(stream, { maxDataLength: MAX_PEER_MESSAGE_BYTES, maxBufferSize: MAX_PEER_MESSAGE_BYTES * 4 })
    const fetch = async (extra: Record<string, unknown>): Promise<Array<Extract<PeerCacheMessage, { type: 'chunk' }>>> => {
      await lp.write(packr.pack({ type: 'fetch', id: 1, outputId, ...extra }))
      const chunks = []
      for (;;) {
        const msg = validatePeerCacheMessage(packr.unpack((await lp.read()).subarray()), 'server')
        assert.equal(msg.type, 'chunk')
        chunks.push(msg as Extract<PeerCacheMessage, { type: 'chunk' }>)
        if ((msg as { last: boolean }).last) return chunks
      }
    }
    const packed = await fetch({ pack: 'br' })
    assert.ok(packed.every(c => c.packed === 'br'), 'every chunk says packed')
    const bytes = Buffer.concat(packed.map(c => c.data))
    assert.ok(bytes.length < blob.body.length / 4, `${bytes.length} bytes for a body of ${blob.body.length}`)
    assert.ok(brotliDecompressSync(bytes).equals(blob.body))
    for (const extra of [{}, { pack: 'zstd' }]) {
      const plain = await fetch(extra)
      assert.ok(plain.every(c => c.packed === undefined), JSON.stringify(extra))
      assert.ok(Buffer.concat(plain.map(c => c.data)).equals(blob.body), JSON.stringify(extra))
    }
    stream.abort(new Error('done'))
    // and through the shared cache of a member on that link
    const c = await cacheNode(t, () => [server.id], 'go1.test', undefined, { link: slowLink })
    await c.libp2p.dial(server.libp2p.getMultiaddrs())
    const result = await settledFind(c, blob.actionId)
    assert.ok('hit' in result, JSON.stringify(result))
    assert.ok((await c.cache.readVerified(Buffer.from(outputId).toString('hex')))?.equals(blob.body), 'the body stored')
  })

  // brotli at its default quality takes seconds for these megabytes on a loaded machine, which
  // the fetch deadline (3 s and more) counts: a lower quality makes the same lie
  const quick = (b: Buffer): Buffer => brotliCompressSync(b, { params: { [zlib.BROTLI_PARAM_QUALITY]: 4 } })
  const lies: Array<[string, ChunkOf]> = [
    ['bytes that are not brotli', async () => [{ data: Buffer.from('not brotli at all'), last: true, packed: 'br' }]],
    ['a packed body that unpacks past the claimed size', async body => [{ data: quick(Buffer.concat([body, body])), last: true, packed: 'br' }]],
    ['chunks packed and not', async body => {
      const packed = quick(body)
      return [{ data: packed.subarray(0, 100), last: false, packed: 'br' }, { data: packed.subarray(100), last: true }]
    }]
  ]
  for (const [what, chunks] of lies) {
    it(`${what}: a miss, the peer untrusted, nothing stored`, async (t) => {
      const blob = { actionId: randomBytes(32), body: text() }
      const p = await claimer(t, blob, blob.body.length, chunks)
      const b = await cacheNode(t, () => [p.id], 'go1.test', undefined, { link: slowLink })
      await b.libp2p.dial(p.libp2p.getMultiaddrs())
      const result = await settledFind(b, blob.actionId)
      assert.deepEqual('miss' in result ? result.miss : result, 'rejected')
      assert.match(b.peerCache.untrusted.get(p.id) ?? '', /unpack|packed/, 'the serving peer is untrusted')
      assert.equal(await b.cache.get(blob.actionId), undefined, 'no entry stored')
    })
  }
})

describe('peer cache: a body packed unasked', () => {
  it('a body sent packed over a link not timed slow is a wrong body, refused before it is unpacked: the fetch budget counted the body alone', async (t) => {
    // Go-like text over two chunks, packed: the bytes unpack to the body itself
    const body = Buffer.from(Array.from({ length: 40_000 }, (_, i) => `func f${i}(x int) int { return x * ${i % 97} }\n`).join(''))
    const blob = { actionId: randomBytes(32), body }
    const asked: Array<string | undefined> = []
    const p = await claimer(t, blob, body.length, async (b, fetch) => {
      asked.push(fetch.pack)
      return [{ data: brotliCompressSync(b, { params: { [zlib.BROTLI_PARAM_QUALITY]: 4 } }), last: true, packed: 'br' }]
    })
    const c = await cacheNode(t, () => [p.id]) // no link timed: nothing asked for packed
    await c.libp2p.dial(p.libp2p.getMultiaddrs())
    const result = await settledFind(c, blob.actionId)
    assert.deepEqual(asked, [undefined])
    assert.deepEqual('miss' in result ? result.miss : result, 'rejected')
    assert.match(c.peerCache.untrusted.get(p.id) ?? '', /packed, which was not asked for/, 'the serving peer is untrusted')
    assert.equal(await c.cache.get(blob.actionId), undefined, 'no entry stored')
    assert.equal(c.peerCache.fetchBudget.peak, body.length, 'the body alone was counted')
  })
})

describe('peer cache: toolchains', () => {
  it('a claim of another toolchain is skipped, not taken as a lie; an own entry another compiler made is not served', async (t) => {
    const server = await cacheNode(t, () => [], 'compile version go1.26.8 canary 0123456789abcdef')
    const blob = await putBlob(server.cache, 1000)
    // the asker's compiler prints the same -V=full but has another canary
    const other = await cacheNode(t, () => [server.id], 'compile version go1.26.8 canary fedcba9876543210')
    await other.libp2p.dial(server.libp2p.getMultiaddrs())
    const build = { stats: { cache: { peer: { rejected: { badHash: 0, badClaim: 0, toolchain: 0 }, verify: { sampled: 0 } } } } }
    const deadline = Date.now() + 20_000
    while (build.stats.cache.peer.rejected.toolchain === 0 && Date.now() < deadline) await other.peerCache.find(blob.actionId, build as never)
    assert.equal(build.stats.cache.peer.rejected.toolchain, 1, 'skipped as of another toolchain')
    assert.equal(build.stats.cache.peer.rejected.badClaim, 0)
    assert.equal(other.peerCache.untrusted.size, 0, 'not a lie')
    assert.equal(await other.cache.get(blob.actionId), undefined, 'nothing taken')
    // an entry of a build whose compiler was not the server's own (shared: false) is not served
    const same = await cacheNode(t, () => [server.id], 'compile version go1.26.8 canary 0123456789abcdef')
    await same.libp2p.dial(server.libp2p.getMultiaddrs())
    const foreign = randomBytes(32)
    const body = randomBytes(500)
    const { outputId } = await server.cache.putBytes(foreign, body)
    await server.cache.put(foreign, outputId, body.length, undefined, undefined, { toolchain: undefined, shared: false })
    assert.ok('hit' in await settledFind(same, blob.actionId), 'own entries are served')
    const result = await same.peerCache.find(foreign, undefined)
    assert.ok('miss' in result && result.miss === 'not-found', JSON.stringify(result))
  })

  it('an own entry put before the node knew its compiler is served only if the build\'s compiler is the one it probed since', async (t) => {
    // An embedded node that never joined the mesh (so never probed), or a daemon still probing,
    // stores its entries with the stamp of the build's compiler (its GOTOOLDIR's); a daemon that
    // later serves the cache compares it with its own compiler's.
    const toolchain = 'compile version go1.26.8 canary 0123456789abcdef'
    const server = await cacheNode(t, () => [], toolchain, '1:100:4096:1700000000000000000')
    const asker = await cacheNode(t, () => [server.id], toolchain)
    await asker.libp2p.dial(server.libp2p.getMultiaddrs())
    const put = async (compiler: string): Promise<Uint8Array> => {
      const action = randomBytes(32)
      const body = randomBytes(500)
      const { outputId } = await server.cache.putBytes(action, body)
      await server.cache.put(action, outputId, body.length, undefined, undefined, { toolchain: undefined, shared: true, compiler })
      return action
    }
    const ours = await put('1:100:4096:1700000000000000000')
    const another = await put('1:200:4096:1700000000000000000') // another GOROOT's compiler: the same -V=full, other bytes
    assert.ok('hit' in await settledFind(asker, ours), 'made by the compiler the node probed: served')
    const result = await asker.peerCache.find(another, undefined)
    assert.ok('miss' in result && result.miss === 'not-found', JSON.stringify(result))
  })
})

describe('peer cache: --verify', () => {
  it('a sampled test result that differs from the local run is unverifiable, its producer still trusted; a compile\'s that differs distrusts it', async (t) => {
    // cmd/go's test result entries hold the test's elapsed time (`ok pkg 0.123s`): they differ on
    // every run, and an honest producer was distrusted for the daemon's life. Only a compile's
    // output is deterministic; the node knows an action was a compile from its -buildid.
    const server = await cacheNode(t)
    const testResult = await putBlob(server.cache, 100)
    const compile = await putBlob(server.cache, 2000)
    const b = await cacheNode(t, () => [server.id], 'go1.test', undefined, { verifyPercent: 100 })
    await b.libp2p.dial(server.libp2p.getMultiaddrs())
    const build = { stats: emptyBuildStats('b', ['go', 'test', './...']), sources: new BuildSources(Date.now()) }
    const id = buildIdAction(compile.actionId)
    build.sources.register(['-o', '/tmp/go-build1/b001/_pkg_.a', '-p', 'example.com/m', '-buildid', `${id}/${id}`, '-pack', 'm.go'], '/src/m')
    const verify = build.stats.cache.peer.verify
    for (const blob of [testResult, compile]) {
      const r = await settledFind(b, blob.actionId, build as never)
      assert.deepEqual('miss' in r ? r.miss : r, 'verify-sample')
    }
    assert.equal(verify.sampled, 2)

    b.peerCache.checkPut(testResult.actionId, sha256(Buffer.from('ok  \texample.com/m\t0.124s\n')))
    assert.equal(b.peerCache.untrusted.size, 0, 'a test result that differs says nothing of its producer')
    assert.deepEqual({ ...verify }, { sampled: 2, confirmed: 0, mismatched: 0, unverifiable: 1 })

    b.peerCache.checkPut(compile.actionId, randomBytes(32))
    assert.match(b.peerCache.untrusted.get(server.id) ?? '', /did not match a local compile/, 'a compile that differs: its producer is untrusted')
    assert.deepEqual({ ...verify }, { sampled: 2, confirmed: 0, mismatched: 1, unverifiable: 1 })
  })
})

describe('peer cache: slow links', () => {
  it('a body that would come slower over its peer\'s link than compiling it here is compiled instead; on a fast link, untimed, or with the claim, it comes', async (t) => {
    // A member on 10 Mbit/s Wi-Fi that fetched all of std from a peer's cache took 101 s where it
    // builds alone in 72 s (docs/mesh.md).
    const server = await cacheNode(t)
    let msPerByte: number | undefined
    const asked: string[] = []
    const c = await cacheNode(t, () => [server.id], 'go1.test', undefined, {
      compileMs: bytes => 8 + bytes / 10_000, // 256 KiB: ~34 ms here
      link: { msPerByte: () => msPerByte, measure: peer => { asked.push(peer) } }
    })
    await c.libp2p.dial(server.libp2p.getMultiaddrs())
    const blobs = await Promise.all([1, 2, 3].map(async () => await putBlob(server.cache, 256 * 1024)))
    const inline = await putBlob(server.cache, 4 * 1024)
    const build = { stats: emptyBuildStats('b', ['go', 'build']) } as never
    const find = async (actionId: Uint8Array): Promise<string> => {
      const r = await settledFind(c, actionId, build)
      return 'miss' in r ? r.miss : 'hit'
    }

    assert.equal(await find(blobs[0]!.actionId), 'hit', 'a link never timed: fetched')
    assert.ok(asked.includes(server.id), 'and its link is asked to be timed')
    msPerByte = 8e-4 // 10 Mbit/s: 256 KiB take ~210 ms, ~63 ms were they packed as an archive
    const bodies = server.peerCache.served.bodies
    assert.equal(await find(blobs[1]!.actionId), 'slow-link')
    assert.equal(server.peerCache.served.bodies, bodies, 'its body was not asked for')
    assert.equal(await c.cache.get(blobs[1]!.actionId), undefined, 'nothing stored')
    assert.equal((build as { stats: { cache: { peer: { slowLink: number } } } }).stats.cache.peer.slowLink, 1, 'counted for the build')
    assert.equal(await find(inline.actionId), 'hit', 'a small body comes with the claim: no fetch to weigh')
    msPerByte = 1e-5 // ~100 MB/s
    assert.equal(await find(blobs[2]!.actionId), 'hit', 'on a fast link it is fetched')
    assert.equal(await find(blobs[1]!.actionId), 'hit', 'and so is the one compiled before')
  })

  it('a claim from a member on a slow link is kept aside while the others answer: the same entry comes from one on a fast link', async (t) => {
    const wifi = await cacheNode(t)
    const desk = await cacheNode(t)
    const links: Record<string, number> = { [wifi.id]: 8e-4, [desk.id]: 1e-5 }
    let peers = [wifi.id, desk.id]
    const c = await cacheNode(t, () => peers, 'go1.test', undefined, {
      compileMs: bytes => 8 + bytes / 10_000,
      link: { msPerByte: peer => links[peer], measure: () => {} }
    })
    await c.libp2p.dial(wifi.libp2p.getMultiaddrs())
    await c.libp2p.dial(desk.libp2p.getMultiaddrs())
    const both = await putBlob(wifi.cache, 256 * 1024)
    await desk.cache.putBytes(both.actionId, both.body)
    const onlyWifi = await putBlob(wifi.cache, 256 * 1024)
    const result = await settledFind(c, both.actionId)
    assert.ok('hit' in result, JSON.stringify(result))
    assert.equal(result.peer, desk.id, 'fetched from the member on the fast link')
    assert.equal(wifi.peerCache.served.bodies, 0, 'nothing asked of the one on Wi-Fi')
    const slow = await settledFind(c, onlyWifi.actionId)
    assert.deepEqual('miss' in slow ? slow.miss : slow, 'slow-link', 'an entry only the slow member has is compiled here')
    peers = [wifi.id]
    links[wifi.id] = 1e-5 // it came back to its desk, and its link was timed again
    assert.ok('hit' in await settledFind(c, onlyWifi.actionId))
  })
})

/**
 * A member that claims `blob` (signed by itself) and answers as `claimer` does, except on its
 * first stream, where it answers the first lookup with `misbehave` once `armed` has settled.
 * The streams it was given, in order.
 */
async function misbehaver (t: Ctx, blob: { actionId: Buffer, body: Buffer }, armed: Promise<void>, misbehave: (stream: Stream, lp: ReturnType<typeof lpStream>, lookup: number) => Promise<void>): Promise<{ libp2p: Libp2p, id: string, streams: Stream[] }> {
  const p = await libp2pNode(t)
  const outputId = sha256(blob.body)
  const claim: Found = {
    actionId: blob.actionId, outputId, size: blob.body.length, time: Date.now(), producer: p.id, toolchain: 'go1.test',
    sig: await signer(p.key)(claimBytes(blob.actionId, outputId, 'go1.test')), body: blob.body
  }
  const streams: Stream[] = []
  await p.libp2p.handle(CACHE_PROTOCOL, (stream: Stream) => {
    streams.push(stream)
    const first = streams.length === 1
    const lp = lpStream(stream, { maxDataLength: MAX_PEER_MESSAGE_BYTES, maxBufferSize: MAX_PEER_MESSAGE_BYTES * 4 })
    void (async () => {
      for (let n = 1; ; n++) {
        const msg = validatePeerCacheMessage(packr.unpack((await lp.read()).subarray()), 'test')
        if (msg.type !== 'lookup') throw new Error(`a ${msg.type}: only lookups expected`)
        if (first && n === 1) {
          await armed
          await misbehave(stream, lp, msg.id)
        } else {
          await lp.write(packr.pack({ type: 'found', id: msg.id, entries: msg.keys.map(k => blob.actionId.equals(k) ? claim : null) }))
        }
      }
    })().catch((err: Error) => { stream.abort(err) })
  })
  return { libp2p: p.libp2p, id: p.id, streams }
}

describe('peer cache: what a member can make the asking side hold', () => {
  // The asking side's stream to a member reads every reply as it comes (channel.ts): what it has
  // not read yet stays within STREAM_BUFFER_BYTES; a frame over MAX_PEER_MESSAGE_BYTES ends the
  // stream at its length, a reply to a request never made ends it too, a late reply is dropped.
  // What the stream took in is counted as it arrives: all of it, before it was reset, could
  // have been held.

  /**
   * Asks `p` for `blob` with the member misbehaving on its first stream: the first get's
   * result, and the bytes that stream took in from the moment it was armed.
   */
  async function askMisbehaver (t: Ctx, blob: { actionId: Buffer, body: Buffer }, misbehave: Parameters<typeof misbehaver>[3]) {
    let arm!: () => void
    const p = await misbehaver(t, blob, new Promise<void>(resolve => { arm = resolve }), misbehave)
    const c = await cacheNode(t, () => [p.id])
    await c.libp2p.dial(p.libp2p.getMultiaddrs())
    const first = c.peerCache.find(blob.actionId, undefined)
    await waitFor(() => p.streams.length === 1 && streamsFrom(c.libp2p, p.libp2p).length === 1, 10_000, () => 'the asking stream')
    let received = 0
    streamsFrom(c.libp2p, p.libp2p)[0]!.addEventListener('message', e => { received += e.data.byteLength })
    arm()
    return { p, c, first: await first, received: () => received }
  }

  /** Sends `bytes` of 0xc1 (never valid msgpack) a MiB at a time, as fast as the stream takes them, until the stream goes. */
  async function flood (stream: Stream, bytes: number): Promise<void> {
    const slice = Buffer.alloc(MiB, 0xc1)
    for (let sent = 0; sent < bytes && stream.status === 'open'; sent += MiB) {
      if (!stream.send(slice)) await stream.onDrain().catch(() => {})
    }
  }

  it('a reply longer than the message cap ends the stream at its length: at most a message taken in, and the next get comes on a new stream', async (t) => {
    const blob = { actionId: randomBytes(32), body: randomBytes(4096) } // comes with its claim
    const { p, c, first, received } = await askMisbehaver(t, blob, async stream => {
      stream.send(varint.encode(64 * MiB))
      await flood(stream, 64 * MiB)
    })
    assert.deepEqual('miss' in first ? first.miss : first, 'not-found')
    await waitFor(() => p.streams[0]!.status !== 'open', 10_000, () => 'the member\'s stream reset')
    assert.ok(received() <= MAX_PEER_MESSAGE_BYTES, `${received()} bytes taken in before the stream was reset, over a message of ${MAX_PEER_MESSAGE_BYTES}`)
    const next = await settledFind(c, blob.actionId)
    assert.ok('hit' in next && next.bytes === blob.body.length, JSON.stringify(next))
    assert.equal(p.streams.length, 2)
    assert.equal(c.peerCache.untrusted.size, 0, 'a broken stream is no lie')
  })

  it('a reply to a request never made ends the stream: none of the 64 MiB that follow it is read', async (t) => {
    const blob = { actionId: randomBytes(32), body: randomBytes(4096) }
    const { p, c, first, received } = await askMisbehaver(t, blob, async (stream, lp, lookup) => {
      await lp.write(packr.pack({ type: 'gone', id: lookup + 1000 }))
      const chunk = packr.pack({ type: 'chunk', id: lookup + 1000, data: Buffer.alloc(CHUNK_BYTES), last: false })
      for (let i = 0; i < 64 && stream.status === 'open'; i++) await lp.write(chunk).catch(() => {})
    })
    assert.deepEqual('miss' in first ? first.miss : first, 'not-found')
    await waitFor(() => p.streams[0]!.status !== 'open', 10_000, () => 'the member\'s stream reset')
    assert.ok(received() <= MAX_PEER_MESSAGE_BYTES, `${received()} bytes taken in before the stream was reset`)
    const next = await settledFind(c, blob.actionId)
    assert.ok('hit' in next && next.bytes === blob.body.length, JSON.stringify(next))
    assert.equal(p.streams.length, 2)
  })

  it('a reply that comes after its lookup was given up on is dropped, and the stream kept', async (t) => {
    const blob = { actionId: randomBytes(32), body: randomBytes(4096) }
    let late!: () => void
    const sent = new Promise<void>(resolve => { late = resolve })
    const p = await misbehaver(t, blob, Promise.resolve(), async (stream, lp, lookup) => {
      // the reply goes once the asker's wait for it is over: it began before the lookup was sent
      await new Promise(resolve => setTimeout(resolve, LOOKUP_TIMEOUT_MS + 50))
      await lp.write(packr.pack({ type: 'found', id: lookup, entries: [null] }))
      late()
    })
    const c = await cacheNode(t, () => [p.id])
    await c.libp2p.dial(p.libp2p.getMultiaddrs())
    const first = await c.peerCache.find(blob.actionId, undefined)
    assert.deepEqual('miss' in first ? first.miss : first, 'not-found', 'the lookup given up on')
    await sent
    const next = await settledFind(c, blob.actionId)
    assert.ok('hit' in next && next.bytes === blob.body.length, JSON.stringify(next))
    assert.equal(p.streams.length, 1, 'the same stream')
  })
})
