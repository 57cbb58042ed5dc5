// A requester against peers that lie: a fake worker speaking /grid/compile/1.2.0 over an
// in-memory stream pair, behind the real RemoteCompiler. Each test is named after a defect an
// audit reproduced with a hostile member built on raw js-libp2p.
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { execFileSync } from 'node:child_process'
import { brotliDecompressSync } from 'node:zlib'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, it, mock } from 'node:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { lpStream, streamPair } from '@libp2p/utils'
import type { Stream } from '@libp2p/interface'
import { Packr } from 'msgpackr'
import { closeLogging, configureLogging } from '@grid/node'
import { PeerSlots } from '@grid/node/server'
import { tempDir } from '../helpers/index.js'

// Internals that @grid/node/server does not export, from the built package.
const dist = (path: string): string => new URL(`../../../packages/node/dist/${path}`, import.meta.url).href
const { RemoteCompiler } = await import(dist('remote/remote.js')) as typeof import('../../packages/node/src/remote/remote.js')
const { decodeCompileMessage } = await import(dist('remote/wire.js')) as typeof import('../../packages/node/src/remote/wire.js')
const constants = await import(dist('remote/constants.js')) as typeof import('../../packages/node/src/remote/constants.js')
const { pack } = await import(dist('pack.js')) as typeof import('../../packages/node/src/pack.js')
const scheduler = await import(dist('scheduler/index.js')) as typeof import('../../packages/node/src/scheduler/index.js')
const { BUSY } = constants

const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false })
const sha = (data: Buffer): string => createHash('sha256').update(data).digest('hex')
const TOOLCHAIN = { go: 'go1.26', compiler: 'compile version go1.26', canary: 'c', experiment: '' }

type Msg = Record<string, any>
/** One side of a compile stream, as the fake worker sees it. */
interface Conn { read: () => Promise<Msg>, send: (m: Msg) => Promise<void>, received: () => number }
/** What the fake worker does with one offer; returns false to end the stream. */
type Behaviour = (offer: Msg, conn: Conn) => Promise<boolean>

/** Reads `blobs` up to `done` (an eager offer's inputs, or the answer to a need). */
async function inputs (conn: Conn): Promise<void> {
  for (;;) if ((await conn.read()).type === 'done') return
}

/** A fake peer behind a libp2p stub: each dial gets a stream served by `behaviour`. */
async function fakePeer (behaviour: Behaviour, dial?: () => void) {
  const peerId = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
  const stats = { offers: 0, dials: 0, bytesAfterNeed: 0 }
  const serve = async (stream: Stream): Promise<void> => {
    const lp = lpStream(stream, { maxDataLength: 96 * 2 ** 20 })
    let received = 0
    const conn: Conn = {
      read: async () => { const b = (await lp.read()).subarray(); received += b.length; return packr.unpack(b) },
      send: async (m) => { await lp.write(packr.pack(m)) },
      received: () => received
    }
    try {
      for (;;) {
        const offer = await conn.read()
        stats.offers++
        if (!await behaviour(offer, conn)) break
      }
    } catch {} // the requester reset or closed the stream
  }
  const libp2p = {
    dialProtocol: async () => {
      stats.dials++
      dial?.()
      const [out, inbound] = await streamPair()
      void serve(inbound)
      return out
    }
  }
  return { peerId, libp2p, stats }
}

function compilerFor (peer: { peerId: string, libp2p: unknown }, slots = { total: 4, free: 4 }, more: Record<string, unknown> = {}) {
  const advert = { accepting: true, slots, load: 0, toolchains: [TOOLCHAIN], ...more }
  return new RemoteCompiler({ libp2p: peer.libp2p as never, peers: () => [{ peerId: peer.peerId, advert: advert as never }], isUntrusted: () => false, own: () => TOOLCHAIN as never })
}

/** A prepared task of one ~3.5 KB source and an importcfg, built by hand (the fake worker reads none of it). */
function preparedTask (extra: { buildId?: string, paddingLines?: number } = {}) {
  const source = Buffer.from('package x\n\n' + '// padding\n'.repeat(extra.paddingLines ?? 320))
  const importcfg = Buffer.from('# import config\n')
  const files = [{ path: '/src/x/a.go', sha256: sha(source), size: source.length }, { path: '/w/b001/importcfg', sha256: sha(importcfg), size: importcfg.length }]
  const task = { v: 1, compiler: TOOLCHAIN.compiler, goroot: '/go', env: {}, flags: ['-p=x', '-nolocalimports'], trimpath: '', inputFlags: { '-importcfg': '/w/b001/importcfg' }, sources: ['/src/x/a.go'], files, asmhdr: false, importPath: 'x' }
  return {
    prepared: { task, blobs: new Map([[sha(source), source], [sha(importcfg), importcfg]]), out: '/nonexistent/_pkg_.a', asmhdr: undefined, inputBytes: source.length + importcfg.length, pragmas: [], buildId: extra.buildId } as never,
    source: sha(source),
    importcfg: sha(importcfg)
  }
}

const busyReply = { type: 'fail', code: 'GRID_ERR_TASK_REFUSED', message: BUSY }

/** A real archive of package x with build ID abc/abc, so that a result carrying it passes its checks. */
async function realArchive (t: Parameters<typeof tempDir>[0]): Promise<Buffer> {
  const dir = await tempDir(t, 'hostile')
  const goroot = execFileSync('go', ['env', 'GOROOT'], { encoding: 'utf8' }).trim()
  const hostTool = execFileSync('go', ['env', 'GOHOSTOS', 'GOHOSTARCH'], { encoding: 'utf8' }).trim().split('\n').join('_')
  await writeFile(join(dir, 'a.go'), 'package x\n\nfunc F() int { return 1 }\n')
  execFileSync(join(goroot, 'pkg', 'tool', hostTool, 'compile'), ['-o', join(dir, 'x.a'), '-p', 'x', '-buildid', 'abc/abc', '-pack', 'a.go'], { cwd: dir })
  return await readFile(join(dir, 'x.a'))
}

/** Answers every offer with the worker's busy refusal, keeping the stream. */
const alwaysBusy: Behaviour = async (offer, conn) => {
  if (offer.eager === true) await inputs(conn)
  await conn.send(busyReply)
  return true
}

describe('remote compiles against hostile peers', () => {
  it('a peer that advertises free slots and refuses every offer as busy gets a bounded number of offers, then is set aside', async () => {
    const peer = await fakePeer(alwaysBusy)
    const remote = compilerFor(peer)
    const { prepared } = preparedTask()
    const signal = new AbortController().signal
    // What the node's backlog did: offer again whenever the peer looks free, the peer
    // re-advertising its free slots all the while.
    for (let i = 0; i < 40; i++) {
      if (remote.candidates().length > 0) {
        const a = await remote.attempt(peer.peerId, prepared, signal, 100)
        assert.ok(!a.ok && a.reason === 'busy', JSON.stringify(a))
        assert.equal(remote.capacity(), 0, 'refused: full until its next advert')
      }
      remote.advertised(peer.peerId)
    }
    assert.ok(peer.stats.offers <= 3, `${peer.stats.offers} offers`)
    assert.deepEqual(remote.candidates(), [], 'set aside')
    assert.ok((remote.scores.get(peer.peerId)?.failed ?? 0) >= 1, 'scored as failing')
  })

  it('the busy text after a need for the task\'s inputs is a peer error, not busy', async () => {
    for (const message of [`compile failed: ${BUSY}`, BUSY]) {
      const peer = await fakePeer(async (offer, conn) => {
        if (offer.eager === true) await inputs(conn)
        await conn.send({ type: 'need', hashes: offer.task.files.map((f: { sha256: string }) => f.sha256) })
        await inputs(conn)
        await conn.send({ type: 'fail', code: 'GRID_ERR_TASK_REFUSED', message })
        return true
      })
      const remote = compilerFor(peer)
      const a = await remote.attempt(peer.peerId, preparedTask().prepared, new AbortController().signal, 100)
      assert.ok(!a.ok && a.reason === 'peer-error', `${message}: ${JSON.stringify(a)}`)
      assert.equal(remote.scores.get(peer.peerId)?.failed, 1)
      assert.deepEqual(remote.candidates(), [], 'set aside')
    }
  })

  it('busy after a need for the configs alone is the worker\'s join-only refusal: busy, no penalty', async () => {
    const { prepared, importcfg } = preparedTask()
    const peer = await fakePeer(async (offer, conn) => {
      if (offer.eager === true) await inputs(conn)
      await conn.send({ type: 'need', hashes: [importcfg] })
      await inputs(conn)
      await conn.send(busyReply)
      return true
    })
    const remote = compilerFor(peer)
    const a = await remote.attempt(peer.peerId, prepared, new AbortController().signal, 100)
    assert.ok(!a.ok && a.reason === 'busy', JSON.stringify(a))
    assert.equal(remote.scores.get(peer.peerId)?.failed ?? 0, 0)
    remote.advertised(peer.peerId)
    assert.equal(remote.candidates().length, 1, 'free again at its next advert')
  })

  it('a need with duplicates or with hashes the task does not have is a peer error, and nothing is sent for it', async () => {
    const { prepared, source } = preparedTask()
    for (const hashes of [Array.from({ length: 1000 }, () => source), ['ab'.repeat(32)], [source, source]]) {
      const peer = await fakePeer(async (offer, conn) => {
        if (offer.eager === true) await inputs(conn)
        await conn.send({ type: 'need', hashes })
        const before = conn.received()
        try { await inputs(conn) } finally { peer.stats.bytesAfterNeed = conn.received() - before }
        await conn.send({ type: 'fail', code: 'GRID_ERR_INTERNAL', message: 'x' })
        return false
      })
      const remote = compilerFor(peer)
      const a = await remote.attempt(peer.peerId, prepared, new AbortController().signal, 100)
      assert.ok(!a.ok && a.reason === 'peer-error', JSON.stringify(a))
      assert.equal(remote.scores.get(peer.peerId)?.failed, 1)
      assert.equal(peer.stats.bytesAfterNeed, 0, `bytes sent for a need of ${hashes.length}`)
    }
  })

  it('an advert of 1024 free slots gives at most MAX_TASKS_PER_PEER, and go\'s -p stays capped', async () => {
    const peer = await fakePeer(alwaysBusy)
    const remote = compilerFor(peer, { total: 1024, free: 1024 })
    assert.ok(remote.capacity() <= constants.MAX_TASKS_PER_PEER, `capacity ${remote.capacity()}`)
    assert.ok(constants.MAX_TASKS_PER_PEER + constants.MAX_IDLE_STREAMS < 64, 'under libp2p\'s 64 streams per protocol and the worker\'s 64 inbound')
    assert.ok(new PeerSlots().free('p', { total: 1024, free: 1024 }) <= constants.MAX_TASKS_PER_PEER)
    const { parallelism, remoteSlots } = scheduler.goParallelism(2, 1024, 2)
    assert.ok(remoteSlots <= 16 && parallelism <= 2 + 16 + scheduler.BACKLOG_DEPTH, `-p ${parallelism}`)
    assert.ok(scheduler.goParallelism(64, 10_000, 1024).remoteSlots <= scheduler.REMOTE_P_MAX)
    assert.deepEqual(scheduler.goParallelism(1, 4, 2), { parallelism: 1 + 4 + scheduler.BACKLOG_DEPTH, remoteSlots: 4 }, 'an honest advert as before')
    assert.deepEqual(scheduler.goParallelism(4, 0, 4), { parallelism: 4, remoteSlots: 0 })
  })

  it('our own limit on outbound streams is not scored as the peer\'s failure', async () => {
    const peer = await fakePeer(alwaysBusy, () => {
      const err = new Error('Too many outbound protocol streams for protocol "/grid/compile/1.2.0" - 65/64')
      err.name = 'TooManyOutboundProtocolStreamsError'
      throw err
    })
    const remote = compilerFor(peer)
    const a = await remote.attempt(peer.peerId, preparedTask().prepared, new AbortController().signal, 100)
    assert.ok(!a.ok && a.reason === 'busy', JSON.stringify(a))
    assert.equal(remote.scores.get(peer.peerId)?.failed ?? 0, 0)
    remote.advertised(peer.peerId)
    assert.equal(remote.candidates().length, 1, 'not set aside')
  })

  it('a result\'s compileMs must be finite, not negative and not absurd; one longer than the task took is clamped', async (t) => {
    const base = { type: 'result', exitCode: 0, output: Buffer.alloc(0), archive: null, asmhdr: null }
    for (const compileMs of [Number.NaN, -1, -1e12, Number.POSITIVE_INFINITY, 1e12]) {
      assert.throws(() => decodeCompileMessage(packr.pack({ ...base, compileMs }), 'peerX'), /malformed result/, String(compileMs))
    }
    assert.equal((decodeCompileMessage(packr.pack({ ...base, compileMs: 12.5 }), 'peerX') as { compileMs: number }).compileMs, 12.5)

    const archive = await realArchive(t)
    for (const compileMs of [-1e9, 500_000]) {
      const peer = await fakePeer(async (offer, conn) => {
        if (offer.eager === true) await inputs(conn)
        await conn.send({ ...base, archive, compileMs })
        return true
      })
      const remote = compilerFor(peer)
      const a = await remote.attempt(peer.peerId, preparedTask({ buildId: 'abc/abc' }).prepared, new AbortController().signal, 100)
      if (compileMs < 0) {
        assert.ok(!a.ok && a.reason === 'peer-error', JSON.stringify(a))
        assert.equal(remote.predictMs(100), undefined)
      } else {
        assert.ok(a.ok, JSON.stringify({ ...a, archive: undefined }))
        assert.ok(a.compileMs <= a.wallMs, `compileMs ${a.compileMs} within wall ${a.wallMs}`)
        assert.ok(a.transferMs >= 0)
        const predicted = remote.predictMs(100) as number
        assert.ok(predicted >= 0 && predicted <= 100 * 20 + a.wallMs, `predictMs ${predicted}`)
      }
    }
  })

  it('a peer that reports ~0 ms compiles cannot drive its ratio below MIN_RATIO', async (t) => {
    // A result's compileMs is the peer's word, capped only by the wall time: with no floor, a
    // peer that said 0 ms had a ratio of 0 and was predicted to take any compile in its fixed
    // cost alone, long poles included.
    const archive = await realArchive(t)
    const peer = await fakePeer(async (offer, conn) => {
      if (offer.eager === true) await inputs(conn)
      await conn.send({ type: 'result', exitCode: 0, output: Buffer.alloc(0), archive, asmhdr: null, compileMs: 0.001 })
      return true
    })
    const remote = compilerFor(peer)
    for (let i = 0; i < 10; i++) {
      const a = await remote.attempt(peer.peerId, preparedTask({ buildId: 'abc/abc' }).prepared, new AbortController().signal, 1000)
      assert.ok(a.ok, JSON.stringify({ ...a, archive: undefined }))
    }
    const longPole = 60_000
    const predicted = remote.predictMs(longPole) as number
    assert.ok(predicted >= longPole * constants.MIN_RATIO, `predicted ${predicted} ms for a compile of ${longPole} ms here`)
  })

  it('says in its log, once, why a compile cannot be a task: the summary only counts unsupported-task', async (t) => {
    const file = join(await tempDir(t), 'grid.log')
    configureLogging({ stderr: 'silent', file })
    try {
      const c = compilerFor({ peerId: 'p', libp2p: {} })
      for (const importPath of ['a', 'b']) {
        const r = await c.prepare({ args: ['-p', importPath, '-S', '-o', '/w/b1/_pkg_.a', 'a.go'], cwd: '/m', env: {}, importPath, goroot: '/g' })
        assert.deepEqual(r, { reason: 'unsupported-task' })
      }
    } finally {
      await closeLogging()
      configureLogging({ stderr: 'silent' })
    }
    const said = (await readFile(file, 'utf8')).split('\n').filter(l => l.includes('unsupported-task'))
    assert.equal(said.length, 1, said.join('\n'))
    assert.match(said[0] ?? '', /for flag -S, a's first/)
  })

  it('a go_asm.h with more than the compiler\'s #define lines (an #include the assembler here would act on) is a peer error', async (t) => {
    const archive = await realArchive(t)
    const header = '// generated by compile -asmhdr from package x\n\n#define const_K 3\n#define const_S "a\\nb"\n#define T__size 16\n#define T_A 0\n'
    for (const [asmhdr, ok] of [[header, true], [header + '#include "/dev/tty"\n', false], ['#define X 1 \\\n#include "/etc/passwd"\n', false], ['#define X 1', false]] as const) {
      const peer = await fakePeer(async (offer, conn) => {
        if (offer.eager === true) await inputs(conn)
        await conn.send({ type: 'result', exitCode: 0, output: Buffer.alloc(0), archive, asmhdr: Buffer.from(asmhdr), compileMs: 1 })
        return true
      })
      const { prepared } = preparedTask({ buildId: 'abc/abc' })
      const a = await compilerFor(peer).attempt(peer.peerId, { ...(prepared as object), asmhdr: '/nonexistent/go_asm.h' } as never, new AbortController().signal, 100)
      assert.equal(a.ok, ok, `${JSON.stringify(asmhdr)}: ${JSON.stringify({ ...a, archive: undefined, asmhdr: undefined })}`)
      if (!ok) assert.ok(!a.ok && a.reason === 'peer-error')
    }
  })

  it('over a link probed slow the archive is asked for packed, and one that does not unpack to a good archive is a peer error', async (t) => {
    const archive = await realArchive(t)
    const packed = await pack(archive)
    assert.ok(packed !== undefined && packed.length < archive.length, 'an archive packs smaller')
    const asked: unknown[] = []
    // what the fake worker sends back: the archive packed, or bytes that are not brotli, or a packed stranger
    let reply: { archive: Buffer, packed?: string } = { archive: packed }
    const peer = await fakePeer(async (offer, conn) => {
      asked.push(offer.pack)
      if (offer.eager === true) await inputs(conn)
      await conn.send({ type: 'result', exitCode: 0, output: Buffer.alloc(0), asmhdr: null, compileMs: 5, packed: 'br', ...reply })
      return true
    })
    const remote = compilerFor(peer)
    const attempt = async () => await remote.attempt(peer.peerId, preparedTask({ buildId: 'abc/abc' }).prepared, new AbortController().signal, 100)
    remote.linkMeasured(peer.peerId, { rttMs: 0.2, msPerByte: 1e-5, atLeast: false }) // ~100 MB/s: not worth packing
    const fast = await attempt()
    assert.ok(fast.ok && Buffer.from(fast.archive).equals(archive), 'a packed reply is unpacked even when not asked for')
    remote.linkMeasured(peer.peerId, { rttMs: 1, msPerByte: 8e-5, atLeast: false }) // ~100 Mbit/s
    assert.equal(remote.packsTo(peer.peerId), true)
    const slow = await attempt()
    assert.ok(slow.ok && Buffer.from(slow.archive).equals(archive), 'the archive unpacked is the one the worker compiled')
    assert.deepEqual(asked, [undefined, 'br'])
    reply = { archive: Buffer.from('not brotli at all') }
    const garbage = await attempt()
    assert.ok(!garbage.ok && garbage.reason === 'peer-error', JSON.stringify(garbage))
    reply = { archive: await pack(Buffer.concat([archive, archive])) as Buffer }
    const wrong = await attempt()
    assert.ok(!wrong.ok && wrong.reason === 'peer-error', 'an archive its task cannot produce, packed or not')
    assert.throws(() => decodeCompileMessage(packr.pack({ type: 'result', exitCode: 0, output: Buffer.alloc(0), asmhdr: null, compileMs: 5, archive: packed, packed: 'zstd' }), 'peerX'),
      /malformed result/, 'a packing no offer of ours asks for')
    const result = { type: 'result', exitCode: 0, output: Buffer.alloc(0), asmhdr: null, compileMs: 5, archive: packed }
    assert.equal((decodeCompileMessage(packr.pack({ ...result, packed: 'br', archiveSize: archive.length }), 'peerX') as { archiveSize?: number }).archiveSize, archive.length)
    for (const [extra, why] of [
      [{ archiveSize: archive.length }, 'a size for an archive not packed'],
      [{ packed: 'br', archiveSize: constants.MAX_COMPILE_MESSAGE_BYTES + 1 }, 'a size over the largest message'],
      [{ packed: 'br', archiveSize: -1 }, 'a negative size'],
      [{ packed: 'br', archiveSize: 1.5 }, 'a size that is not an integer']
    ] as const) assert.throws(() => decodeCompileMessage(packr.pack({ ...result, ...extra }), 'peerX'), /malformed result/, why)
    assert.equal((decodeCompileMessage(packr.pack({ type: 'offer', task: {}, pack: 'zstd' }), 'peerX') as { pack?: string }).pack, 'zstd', 'a later version\'s packing is asked for as it is')
    assert.throws(() => decodeCompileMessage(packr.pack({ type: 'offer', task: {}, pack: 'x'.repeat(17) }), 'peerX'), /malformed offer/)
  })

  it('over a link probed slow the inputs go packed to a worker whose advert says it unpacks them, and as they are to one that does not', async (t) => {
    const archive = await realArchive(t)
    // what the fake worker got, per input sent: packed or not; every one must come to its hash
    let got: Array<string | undefined> = []
    const take = async (conn: Conn): Promise<void> => {
      for (;;) {
        const m = await conn.read()
        if (m.type === 'done') return
        for (const i of m.items as Array<{ sha256: string, data: Uint8Array, packed?: string }>) {
          const data = i.packed === 'br' ? brotliDecompressSync(i.data) : Buffer.from(i.data)
          assert.equal(sha(data), i.sha256, 'an input comes to its hash')
          got.push(i.packed)
        }
      }
    }
    const peer = await fakePeer(async (offer, conn) => {
      if (offer.eager === true) await take(conn)
      // asks for every input again, so that both ways of sending them are seen
      await conn.send({ type: 'need', hashes: offer.task.files.map((f: { sha256: string }) => f.sha256) })
      await take(conn)
      await conn.send({ type: 'result', exitCode: 0, output: Buffer.alloc(0), archive, asmhdr: null, compileMs: 5 })
      return true
    })
    const { prepared } = preparedTask({ buildId: 'abc/abc' })
    // a requester of its own per case, which knows of no input held there: each task sends its
    // two inputs with the offer (eager), then again for the need
    const sent = async (link: number, more: Record<string, unknown>): Promise<Array<string | undefined>> => {
      const remote = compilerFor(peer, undefined, more)
      remote.linkMeasured(peer.peerId, { rttMs: 1, msPerByte: link, atLeast: false })
      got = []
      const a = await remote.attempt(peer.peerId, prepared, new AbortController().signal, 100)
      assert.ok(a.ok, JSON.stringify({ ...a, archive: undefined }))
      return got
    }
    const fast = 1e-5 // ~100 MB/s
    const slow = 8e-4 // 10 Mbit/s
    const unpacks = { unpacks: ['zstd', 'br'] }
    // the ~3.5 KB source packed; the importcfg, 17 bytes, too small to be worth it
    assert.deepEqual(await sent(slow, unpacks), ['br', undefined, 'br', undefined], 'a slow link to a worker that unpacks them')
    assert.deepEqual(await sent(fast, unpacks), [undefined, undefined, undefined, undefined], 'a fast link')
    assert.deepEqual(await sent(slow, {}), [undefined, undefined, undefined, undefined], 'a member of an earlier version: no `unpacks` in its advert')
    assert.deepEqual(await sent(slow, { unpacks: ['zstd'] }), [undefined, undefined, undefined, undefined], 'a worker that unpacks other packings only')
    // a long pole's prediction counts its inputs in full, packed or not (remote.ts, wireBytes)
    const unpacking = compilerFor(peer, undefined, unpacks)
    unpacking.linkMeasured(peer.peerId, { rttMs: 1, msPerByte: slow, atLeast: false })
    assert.equal(Math.round(unpacking.linkMs({ inputs: 1e6, archive: 0 })), 800)
  })

  it('a peer on a slow link is predicted slow for a long pole: its link is timed on the tasks that moved many bytes', async (t) => {
    // In the lab a helper on 10 Mbit/s Wi-Fi was predicted at 7.7 s for runtime (9 s here): its
    // fixed cost was learnt on small tasks, and runtime's inputs and 13 MB archive took ~20 s to
    // move. The build took 60-68 s, against 44 s with no helper at all.
    const archive = await realArchive(t)
    const linkPeer = async (msPerMiB: number) => await fakePeer(async (offer, conn) => {
      const before = conn.received()
      if (offer.eager === true) await inputs(conn)
      else {
        await conn.send({ type: 'need', hashes: offer.task.files.map((f: { sha256: string }) => f.sha256) })
        await inputs(conn)
      }
      const compileMs = offer.task.files[0].size > 100_000 ? 300 : 50
      await new Promise(resolve => setTimeout(resolve, compileMs + msPerMiB * (conn.received() - before) / 2 ** 20))
      await conn.send({ type: 'result', exitCode: 0, output: Buffer.alloc(0), archive, asmhdr: null, compileMs })
      return true
    })
    const longPole = 9000
    const placed = async (msPerMiB: number): Promise<string> => {
      const peer = await linkPeer(msPerMiB)
      const remote = compilerFor(peer)
      const signal = new AbortController().signal
      const small = await remote.attempt(peer.peerId, preparedTask({ buildId: 'abc/abc' }).prepared, signal, 50)
      assert.ok(small.ok)
      const big = await remote.attempt(peer.peerId, preparedTask({ buildId: 'abc/abc', paddingLines: 100_000 }).prepared, signal, 300)
      assert.ok(big.ok)
      // a link learnt slow from tasks gets no packing: their time counts the hosts' CPU (and,
      // once packed, the packing); only a probe decides
      assert.equal(remote.packsTo(peer.peerId), false)
      return scheduler.place({ offload: 'busy', mesh: true, localFree: true, expectedMs: longPole, peerMs: () => remote.predictMs(longPole) }).where
    }
    assert.equal(await placed(0), 'remote', 'a peer as fast as this host, on a fast link, takes the long pole')
    assert.equal(await placed(1000), 'local', 'the same peer behind ~8 Mbit/s keeps it here')
  })

  it('a peer whose link a probe timed, before any task of ours: a slow link keeps a long pole here and ranks last', async () => {
    // The first long pole of a build (runtime) used to go to a peer nobody had timed, presumed
    // as fast as this host: on 10 Mbit/s Wi-Fi its inputs and archive took ~20 s to move.
    const advert = { accepting: true, slots: { total: 1, free: 1 }, load: 0, toolchains: [TOOLCHAIN] }
    let ids = ['slow']
    const remote = new RemoteCompiler({ libp2p: {} as never, peers: () => ids.map(peerId => ({ peerId, advert: advert as never })), isUntrusted: () => false, own: () => TOOLCHAIN as never })
    const longPole = 9000
    const where = (): string => scheduler.place({ offload: 'busy', mesh: true, localFree: true, expectedMs: longPole, peerMs: () => remote.predictMs(longPole) }).where
    assert.equal(remote.predictMs(longPole), longPole, 'not timed: presumed as fast as this host')
    assert.equal(where(), 'remote')
    remote.linkMeasured('slow', { rttMs: 1, msPerByte: 8e-4, atLeast: false }) // 10 Mbit/s
    assert.ok((remote.predictMs(longPole) as number) > longPole * 1.5, `predicted ${remote.predictMs(longPole)} ms`)
    assert.equal(where(), 'local', 'the only free peer is on a slow link')
    assert.equal(Math.round(remote.linkMs({ inputs: 1e6, archive: 0 })), 800, 'a megabyte over its link')
    assert.equal(Math.round(remote.linkMs({ inputs: 0, archive: 1e6 })), 240, 'an archive comes back packed over a slow link')
    ids = ['slow', 'fast', 'untimed']
    assert.deepEqual(remote.candidates().map(c => c.peerId), ['fast', 'untimed', 'slow'], 'the slow link last')
    assert.equal(remote.linkMs({ inputs: 1e6, archive: 0 }), 0, 'the first candidate now, its link not timed')
    assert.equal(where(), 'remote', 'peers not timed yet are presumed as fast as this host')
    remote.linkMeasured('fast', { rttMs: 0.2, msPerByte: 1e-5, atLeast: false }) // ~100 MB/s
    assert.equal(where(), 'remote', 'a free peer on a fast link takes it')
    assert.equal(remote.candidates().at(-1)?.peerId, 'slow')
  })

  it('a long pole waits for the probe of its best peer\'s link that a build\'s start began, and only for it', async () => {
    // In the lab runtime arrived ~1 s after the build began, while the 10 Mbit/s helper's
    // probe (~2 s) was still running: it went there, presumed fast, and took 21 s to fail.
    const advert = { accepting: true, slots: { total: 1, free: 1 }, load: 0, toolchains: [TOOLCHAIN] }
    const probed: string[] = []
    const links = {
      measure: async (peer: string) => {
        probed.push(peer)
        await new Promise(resolve => setTimeout(resolve, 300))
        return { rttMs: 1, msPerByte: 8e-4, atLeast: false }
      }
    }
    const remote = new RemoteCompiler({ libp2p: {} as never, peers: () => [{ peerId: 'wifi', advert: advert as never }], isUntrusted: () => false, own: () => TOOLCHAIN as never, links: links as never })
    const longPole = 9000
    remote.probeLinks()
    assert.equal(remote.predictMs(longPole), longPole, 'while the probe runs the peer is presumed as fast as here')
    const started = performance.now()
    await remote.linkOfBest(new AbortController().signal)
    const waited = performance.now() - started
    assert.ok(waited >= 250 && waited < 2_000, `waited ${waited} ms`)
    assert.ok((remote.predictMs(longPole) as number) > longPole * 1.5, 'then its link is known')
    remote.probeLinks()
    const again = performance.now()
    await remote.linkOfBest(new AbortController().signal)
    assert.ok(performance.now() - again < 50, 'a link measured is not measured again, nor waited for')
    assert.deepEqual(probed, ['wifi'])
  })

  it('a member the shared cache fetches from is probed once, after the probes due, whether or not it takes our compiles', async () => {
    // A member with a warm cache that takes no compiles (--accept-remote never) is not probed
    // when a build begins; the shared cache asks for its link before weighing a big body.
    const taking = { accepting: true, slots: { total: 1, free: 1 }, load: 0, toolchains: [TOOLCHAIN] }
    const cacheOnly = { ...taking, accepting: false }
    const probed: string[] = []
    const links = {
      measure: async (peer: string) => {
        probed.push(peer)
        await new Promise(resolve => setTimeout(resolve, 100))
        return { rttMs: 1, msPerByte: peer === 'cache-only' ? 8e-4 : 1e-5, atLeast: false }
      }
    }
    const peers = [{ peerId: 'helper', advert: taking as never }, { peerId: 'cache-only', advert: cacheOnly as never }]
    const remote = new RemoteCompiler({ libp2p: {} as never, peers: () => peers, isUntrusted: () => false, own: () => TOOLCHAIN as never, links: links as never })
    remote.probeLinks()
    remote.measureLink('cache-only')
    remote.measureLink('cache-only')
    assert.equal(remote.msPerByte('cache-only'), undefined, 'not timed yet')
    const until = Date.now() + 5_000
    while (remote.msPerByte('cache-only') === undefined && Date.now() < until) await new Promise(resolve => setTimeout(resolve, 20))
    assert.deepEqual(probed, ['helper', 'cache-only'], 'one probe each, one after the other, the build\'s first')
    assert.equal(remote.msPerByte('cache-only'), 8e-4)
    assert.equal(remote.msPerByte('helper'), 1e-5)
    remote.measureLink('cache-only')
    remote.probeLinks()
    await new Promise(resolve => setTimeout(resolve, 150))
    assert.deepEqual(probed, ['helper', 'cache-only'], 'links timed lately are not probed again')
  })

  it('remembers a peer holds a task\'s sources, not its importcfg, which names the build\'s $WORK and never comes again', async (t) => {
    const archive = await realArchive(t)
    const eagerHashes: string[][] = []
    const peer = await fakePeer(async (offer, conn) => {
      const got: string[] = []
      if (offer.eager === true) {
        for (;;) {
          const m = await conn.read()
          if (m.type === 'done') break
          for (const item of m.items as Array<{ sha256: string }>) got.push(item.sha256)
        }
      }
      eagerHashes.push(got)
      await conn.send({ type: 'result', exitCode: 0, output: Buffer.alloc(0), archive, asmhdr: null, compileMs: 1 })
      return true
    })
    const remote = compilerFor(peer)
    const { prepared, source, importcfg } = preparedTask({ buildId: 'abc/abc' })
    for (let i = 0; i < 2; i++) {
      const a = await remote.attempt(peer.peerId, prepared, new AbortController().signal, 100)
      assert.ok(a.ok, JSON.stringify({ ...a, archive: undefined }))
    }
    assert.deepEqual(eagerHashes.map(h => h.sort()), [[source, importcfg].sort(), [importcfg]], 'the source went once, the importcfg with each task')
    const held = (remote as unknown as { held: Map<string, Set<string>> }).held.get(peer.peerId)
    assert.deepEqual([...held ?? []], [source], 'what the requester keeps for the peer')
  })
})


describe('remote compiles against peers of another grid version', () => {
  /** A requester whose one peer advertises grid `version.v` (changed by the test) and is or is not known to speak the compile protocol. */
  function versioned (peer: { peerId: string, libp2p: unknown }, version: { v: string }, speaks?: () => boolean | undefined) {
    const advert = (): never => ({ accepting: true, slots: { total: 4, free: 4 }, load: 0, toolchains: [TOOLCHAIN], version: version.v }) as never
    return new RemoteCompiler({ libp2p: peer.libp2p as never, peers: () => [{ peerId: peer.peerId, advert: advert() }], isUntrusted: () => false, own: () => TOOLCHAIN as never, ...(speaks === undefined ? {} : { speaks }) })
  }

  it('a worker that refuses the task as of another grid version is not scored down, and gets no task until it advertises another version', async () => {
    const peer = await fakePeer(async (offer, conn) => {
      if (offer.eager === true) await inputs(conn)
      await conn.send({ type: 'fail', code: 'GRID_ERR_TASK_INCOMPATIBLE', message: 'task from x is of another grid version: the task has the field "gcflags", unknown to this version' })
      return true
    })
    const version = { v: '0.2.0' }
    const remote = versioned(peer, version, () => true) // identify lists the compile protocol: same id, another task shape
    const a = await remote.attempt(peer.peerId, preparedTask().prepared, new AbortController().signal, 100)
    assert.ok(!a.ok && a.reason === 'incompatible', JSON.stringify(a))
    assert.equal(remote.scores.get(peer.peerId)?.failed ?? 0, 0, 'not its failure')
    assert.deepEqual(remote.candidates(), [], 'no more tasks for it')
    assert.equal(remote.whyNone(), 'no-capable-peer')
    assert.equal(remote.anyCapable(), false)
    version.v = '0.3.0' // upgraded
    assert.equal(remote.candidates().length, 1, 'offered tasks again once it runs another version')
  })

  it('a worker that refused the task as incompatible while identify lists the compile protocol is not offered tasks again at the next look', async () => {
    // The mark was dropped by the first candidates() after it was set, because identify lists
    // the protocol for such a worker: it got the next compile, and the next, each refused.
    const peer = await fakePeer(async (offer, conn) => {
      if (offer.eager === true) await inputs(conn)
      await conn.send({ type: 'fail', code: 'GRID_ERR_TASK_INCOMPATIBLE', message: 'task from x is of another grid version: version 2, this worker\'s is 1' })
      return true
    })
    const remote = versioned(peer, { v: '0.2.0' }, () => true)
    const a = await remote.attempt(peer.peerId, preparedTask().prepared, new AbortController().signal, 100)
    assert.ok(!a.ok && a.reason === 'incompatible', JSON.stringify(a))
    for (let i = 0; i < 3; i++) {
      assert.deepEqual(remote.candidates(), [], `no task for it at look ${i + 1}`)
      assert.equal(remote.whyNone(), 'no-capable-peer')
      assert.equal(remote.anyCapable(), false)
    }
    assert.match(remote.incompatibleWith(peer.peerId, { version: '0.2.0' } as never) ?? '', /another grid version/)
    assert.equal(peer.stats.offers, 1, 'one offer in all')
  })

  it('a worker that did not speak the compile protocol yet is offered tasks again once identify lists it (it registered it late)', async () => {
    const { UnsupportedProtocolError } = await import('@libp2p/interface')
    const peerId = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
    const libp2p = { dialProtocol: async () => { throw new UnsupportedProtocolError('Protocol selection failed - could not negotiate /grid/compile/1.2.0') } }
    let listed: boolean | undefined // what identify says of the compile protocol: not yet
    const remote = versioned({ peerId, libp2p }, { v: '0.2.0' }, () => listed)
    const a = await remote.attempt(peerId, preparedTask().prepared, new AbortController().signal, 100)
    assert.ok(!a.ok && a.reason === 'incompatible', JSON.stringify(a))
    assert.deepEqual(remote.candidates(), [])
    listed = true // identify (pushed) lists our protocol for it after all: it started up late
    assert.equal(remote.candidates().length, 1, 'offered tasks again once identify lists this protocol')
  })

  it('a peer that does not speak this compile protocol costs no score; one identify lists without it is not dialled at all', async () => {
    const { UnsupportedProtocolError } = await import('@libp2p/interface')
    const peerId = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
    let dials = 0
    const libp2p = { dialProtocol: async () => { dials++; throw new UnsupportedProtocolError('Protocol selection failed - could not negotiate /grid/compile/1.2.0') } }
    const remote = versioned({ peerId, libp2p }, { v: '0.2.0' })
    const a = await remote.attempt(peerId, preparedTask().prepared, new AbortController().signal, 100)
    assert.ok(!a.ok && a.reason === 'incompatible', JSON.stringify(a))
    assert.equal(remote.scores.get(peerId)?.failed ?? 0, 0)
    assert.deepEqual(remote.candidates(), [])
    const known = versioned({ peerId, libp2p }, { v: '0.2.0' }, () => false)
    assert.deepEqual(known.candidates(), [], 'identify said it lacks the protocol')
    assert.match(known.incompatibleWith(peerId, { version: '0.2.0' } as never) ?? '', /does not speak \/grid\/compile\//)
    assert.equal(dials, 1)
  })
})

describe('remote attempt deadlines', () => {
  it('a long compile is not killed by the fixed deadline before its race could begin', async () => {
    // 30 s and 2 s per MB of inputs ended a compile expected to take 15 s (raced only after
    // ~30.5 s): the honest peer took a failure and a penalty, and the compile began again here.
    const { attemptDeadlineMs } = await import(dist('remote/remote.js')) as typeof import('../../packages/node/src/remote/remote.js')
    const fixed = constants.REMOTE_BASE_MS + 2 * constants.REMOTE_PER_INPUT_MB_MS
    assert.equal(attemptDeadlineMs(2e6), fixed)
    assert.equal(attemptDeadlineMs(2e6, 5_000), fixed, 'a small task keeps the fixed deadline')
    assert.equal(attemptDeadlineMs(2e6, 81_000), 81_000)
    assert.equal(attemptDeadlineMs(2e6, 1e9), fixed + constants.WORKER_TASK_TIMEOUT_MS, 'never beyond the worker\'s own limit and the fixed part')

    const peer = await fakePeer(async () => await new Promise<boolean>(() => {})) // takes the offer, never answers
    const remote = compilerFor(peer)
    const { prepared } = preparedTask()
    mock.timers.enable({ apis: ['setTimeout'] })
    try {
      let settled: unknown
      const running = remote.attempt(peer.peerId, prepared, new AbortController().signal, 20_000, 81_000)
      void running.then(a => { settled = a })
      const turn = async (): Promise<void> => { await new Promise(resolve => setImmediate(resolve)) } // timers are mocked: no waitFor
      for (let i = 0; i < 1_000 && peer.stats.offers === 0; i++) await turn()
      assert.equal(peer.stats.offers, 1, 'the offer arrived')
      mock.timers.tick(constants.REMOTE_BASE_MS + 1_000)
      for (let i = 0; i < 5; i++) await turn()
      assert.equal(settled, undefined, 'still running past the fixed deadline')
      mock.timers.tick(81_000)
      const a = await running
      assert.ok(!a.ok && a.reason === 'peer-error', JSON.stringify(a))
    } finally {
      mock.timers.reset()
    }
  })
})
