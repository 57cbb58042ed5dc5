// The scheduler's execution half: a remote task that goes overdue is raced by a local copy
// (the real compiler) or by a second peer, the first good result is the one written where
// cmd/go expects it, and a peer that lost a race it was late in is scored down. The peers are
// stubs whose answers the test releases; the pool and the compiler are real.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { readFile, readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { Dispatcher, LocalPool, overdueMs } from '@grid/node/server'
import { tempDir } from '../helpers/index.js'

// Internals that @grid/node/server does not export, from the built package.
const { attemptDeadlineMs } = await import(new URL('../../../packages/node/dist/remote/remote.js', import.meta.url).href) as typeof import('../../packages/node/src/remote/remote.js')

const goroot = execFileSync('go', ['env', 'GOROOT'], { encoding: 'utf8' }).trim()
const hostTool = execFileSync('go', ['env', 'GOHOSTOS', 'GOHOSTARCH'], { encoding: 'utf8' }).trim().split('\n').join('_')
const COMPILE = join(goroot, 'pkg', 'tool', hostTool, 'compile')
const goversion = execFileSync('go', ['env', 'GOVERSION'], { encoding: 'utf8' }).trim()

type Answer = { ok: true, peer: string, archive: Uint8Array, asmhdr: null, transferMs: number, compileMs: number, wallMs: number } | { ok: false, peer: string, reason: string }

type TaskBytes = { inputs: number, archive: number }

/** Peers whose attempts wait until the test answers them (or the dispatcher cancels them). */
function stubRemote (peers: string[], out: string, predictMs: (expectedMs: number, bytes?: TaskBytes) => number | undefined = () => undefined, msPerByte = 0) {
  const calls: string[] = []
  const overdue: string[] = []
  const notBefore: number[] = [] // each attempt's earliest deadline, as the dispatcher asked
  const answers = new Map<string, Array<(a: Answer) => void>>() // per peer, its attempts waiting, oldest first
  const remote = {
    // one 1000-byte source and a 100-byte importcfg
    prepare: async () => ({ task: { importPath: 'x', sources: ['/m/a.go'], files: [{ path: '/m/a.go', size: 1000 }, { path: '/w/importcfg', size: 100 }] }, blobs: new Map(), out, asmhdr: undefined, inputBytes: 1100 }),
    candidates: () => peers.filter(p => !calls.includes(p)).map(peerId => ({ peerId, free: 1, load: 0, speed: 1 })),
    whyNone: () => 'no-peers',
    predictMs,
    probeLinks: () => {},
    linkOfBest: async () => {},
    linkMs: (bytes: TaskBytes) => (bytes.inputs + bytes.archive) * msPerByte,
    attempt: async (peer: string, _prepared: unknown, signal: AbortSignal, _expectedMs: number, notBeforeMs = 0) => {
      calls.push(peer)
      notBefore.push(notBeforeMs)
      return await new Promise<Answer>(resolve => {
        answers.set(peer, [...answers.get(peer) ?? [], resolve])
        signal.addEventListener('abort', () => resolve({ ok: false, peer, reason: 'cancelled' }), { once: true })
      })
    },
    overdue: (peer: string) => { overdue.push(peer) }
  }
  return { remote, calls, overdue, notBefore, answer: (peer: string, a: Answer) => answers.get(peer)?.shift()?.(a) }
}

async function pkgDir (t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await tempDir(t, 'disp')
  await writeFile(join(dir, 'a.go'), 'package x\n\nfunc F(n int) int { return n * 3 }\n')
  return dir
}

const args = (out: string): string[] => ['-o', out, '-p', 'x', '-buildid', 'abc/abc', '-goversion', goversion, '-pack', 'a.go']
const request = (dir: string) => ({ tool: COMPILE, args: args(join(dir, '_pkg_.a')), cwd: dir, env: {}, importPath: 'x', goroot })
const good = (peer: string, bytes: string): Answer => ({ ok: true, peer, archive: Buffer.from(bytes), asmhdr: null, transferMs: 1, compileMs: 2, wallMs: 5 })

async function waitUntil (check: () => boolean): Promise<void> {
  const deadline = Date.now() + 10_000
  while (!check()) {
    if (Date.now() > deadline) throw new Error('timed out')
    await new Promise(resolve => setTimeout(resolve, 10))
  }
}

/** A dispatcher over stub peers whose one local slot is taken: a race's local copy can only queue. */
async function slotTaken (t: { after: (fn: () => Promise<void> | void) => void }, peers: string[]) {
  const dir = await pkgDir(t as { after: (fn: () => Promise<void>) => void })
  const pool = new LocalPool({ slots: 1 })
  t.after(await pool.lease())
  const stub = stubRemote(peers, join(dir, '_pkg_.a'))
  return { dir, pool, stub, d: new Dispatcher({ pool, remote: () => stub.remote as never }) }
}

describe('dispatch', () => {
  it('a prompt peer wins without a race and its archive is written in place', async (t) => {
    const dir = await pkgDir(t)
    const stub = stubRemote(['p1', 'p2'], join(dir, '_pkg_.a'))
    const d = new Dispatcher({ pool: new LocalPool({ slots: 1 }), remote: () => stub.remote as never })
    const running = d.compile(request(dir), 1_000, 0, new AbortController().signal)
    await waitUntil(() => stub.calls.length === 1)
    stub.answer('p1', good('p1', 'from p1'))
    const r = await running
    assert.ok(r.done && r.by === 'remote' && r.peer === 'p1' && !r.duplicate, JSON.stringify(r))
    assert.deepEqual(r.races, { local: false, duplicate: false })
    assert.equal(await readFile(join(dir, '_pkg_.a'), 'utf8'), 'from p1')
    assert.deepEqual(stub.overdue, [])
    assert.deepEqual((await readdir(dir)).sort(), ['_pkg_.a', 'a.go'], 'no temp files left')
  })

  it('an overdue peer is raced by a local copy, which wins; the peer is scored down', async (t) => {
    const dir = await pkgDir(t)
    const stub = stubRemote(['hangs'], join(dir, '_pkg_.a'))
    const d = new Dispatcher({ pool: new LocalPool({ slots: 1 }), remote: () => stub.remote as never })
    const r = await d.compile(request(dir), 1, 0, new AbortController().signal)
    assert.ok(r.done && r.by === 'local' && r.exitCode === 0, JSON.stringify(r))
    assert.deepEqual(r.races, { local: true, duplicate: false })
    assert.deepEqual(stub.overdue, ['hangs'])
    // byte for byte what the compiler writes when cmd/go runs it directly
    const ref = join(dir, 'ref.a')
    execFileSync(COMPILE, args(ref), { cwd: dir })
    assert.ok((await readFile(join(dir, '_pkg_.a'))).equals(await readFile(ref)))
    assert.deepEqual((await readdir(dir)).sort(), ['_pkg_.a', 'a.go', 'ref.a'], 'no temp files left')
  })

  it('with every local slot taken, a second peer runs a speculative duplicate and its result is kept', async (t) => {
    const dir = await pkgDir(t)
    const pool = new LocalPool({ slots: 1 })
    const release = await pool.lease() // the local slot stays busy: the local copy can only queue
    t.after(release)
    const stub = stubRemote(['slow', 'spare'], join(dir, '_pkg_.a'))
    const d = new Dispatcher({ pool, remote: () => stub.remote as never })
    const running = d.compile(request(dir), 1, 0, new AbortController().signal)
    await waitUntil(() => stub.calls.includes('spare'))
    stub.answer('spare', good('spare', 'from spare'))
    const r = await running
    assert.ok(r.done && r.by === 'remote' && r.peer === 'spare' && r.duplicate, JSON.stringify(r))
    assert.deepEqual(r.races, { local: true, duplicate: true })
    assert.equal(await readFile(join(dir, '_pkg_.a'), 'utf8'), 'from spare')
    assert.deepEqual(stub.overdue, ['slow'])
    assert.equal(pool.queued, 0, 'the queued local copy was withdrawn')
  })

  it('a primary that moves on after a late busy refusal does not join the duplicate\'s peer, which is not scored down when it wins', async (t) => {
    // The primary's retry walked its first candidates without looking at the duplicate's peer:
    // both attempts ran on it, and when the duplicate won, that peer was scored overdue.
    const { dir, stub, d } = await slotTaken(t, ['p1', 'p2'])
    const running = d.compile(request(dir), 1, 0, new AbortController().signal)
    await waitUntil(() => stub.calls.includes('p2')) // overdue on p1: the duplicate went to p2
    stub.answer('p1', { ok: false, peer: 'p1', reason: 'busy' }) // p1 refuses late (a join that found nothing to join)
    await new Promise(resolve => setImmediate(resolve))
    stub.answer('p2', good('p2', 'from p2')) // the duplicate's attempt, the oldest on p2
    const r = await running
    assert.ok(r.done && r.by === 'remote' && r.peer === 'p2' && r.duplicate, JSON.stringify(r))
    assert.deepEqual(stub.overdue, [], 'the winner is not scored as late')
    assert.deepEqual(stub.calls, ['p1', 'p2'], 'p2 got the task once')
    assert.equal(await readFile(join(dir, '_pkg_.a'), 'utf8'), 'from p2')
  })

  it('a peer the primary moved to after the race began is not scored late when another contender wins soon after', async (t) => {
    const { dir, stub, d } = await slotTaken(t, ['p1', 'p2', 'p3'])
    const running = d.compile(request(dir), 1, 0, new AbortController().signal)
    await waitUntil(() => stub.calls.includes('p1'))
    // by the time the task is overdue on p1, p2 has no free slot in its advert: the duplicate goes to p3
    stub.remote.candidates = () => [{ peerId: 'p3', free: 1, load: 0, speed: 1 }]
    await waitUntil(() => stub.calls.includes('p3'))
    stub.answer('p1', { ok: false, peer: 'p1', reason: 'busy' }) // p1 refuses late: the primary moves to p2
    await waitUntil(() => stub.calls.includes('p2'))
    stub.answer('p3', good('p3', 'from p3'))
    const r = await running
    assert.ok(r.done && r.by === 'remote' && r.peer === 'p3' && r.duplicate, JSON.stringify(r))
    assert.deepEqual(stub.calls, ['p1', 'p3', 'p2'])
    assert.deepEqual(stub.overdue, [], 'p2 had the task for moments, not for its overdue time')
  })

  it('a long pole waiting for its best peer\'s link probe counts as preparing, so the backlog does not hand its slot to another', async (t) => {
    const dir = await pkgDir(t)
    const stub = stubRemote(['p1'], join(dir, '_pkg_.a'), expectedMs => expectedMs)
    let probed!: () => void
    stub.remote.linkOfBest = async () => await new Promise<void>(resolve => { probed = resolve })
    const d = new Dispatcher({ pool: new LocalPool({ slots: 1 }), remote: () => stub.remote as never })
    const running = d.compile(request(dir), 5_000, 0, new AbortController().signal)
    await waitUntil(() => probed !== undefined)
    assert.equal(d.preparing, 1, 'the peer slot it is about to take is spoken for')
    probed()
    await waitUntil(() => stub.calls.length === 1)
    assert.equal(d.preparing, 0)
    stub.answer('p1', good('p1', 'from p1'))
    assert.ok((await running).done)
  })

  it('a long pole is not sent to a free peer predicted clearly slower (a slow link), even with the local slot taken', async (t) => {
    // In the lab a helper on 10 Mbit/s Wi-Fi took runtime, net and net/http whenever the
    // requester's slot was taken or the backlog offered them: ~20 s each, against 4-10 s here.
    const dir = await pkgDir(t)
    const asked: Array<TaskBytes | undefined> = []
    const stub = stubRemote(['slow'], join(dir, '_pkg_.a'), (expectedMs, bytes) => { asked.push(bytes); return 3 * expectedMs })
    const d = new Dispatcher({ pool: new LocalPool({ slots: 1 }), remote: () => stub.remote as never })
    const running = d.compile(request(dir), 5_000, 0, new AbortController().signal)
    await Promise.race([running, waitUntil(() => stub.calls.length === 1)])
    stub.answer('slow', good('slow', 'from slow'))
    const r = await running
    assert.ok(!r.done && r.reason === 'peers-slower', JSON.stringify(r))
    assert.deepEqual(stub.calls, [])
    // predicted with the task's own bytes: its inputs, and an archive of five times its sources
    // (runtime: 3 MB of inputs, a 13 MB archive; small tasks' bytes per ms would say far less)
    assert.deepEqual(asked, [{ inputs: 1100, archive: 5 * 1000 }])
    // nor to one predicted about as fast whose link alone would take over a fifth of its time
    // here: 6100 bytes at 0.2 ms each (the compile ratio and the expected time come from small
    // compiles; the link is measured)
    const wifi = stubRemote(['wifi'], join(dir, '_pkg_.a'), expectedMs => expectedMs, 0.2)
    const onWifi = await new Dispatcher({ pool: new LocalPool({ slots: 1 }), remote: () => wifi.remote as never }).compile(request(dir), 5_000, 0, new AbortController().signal)
    assert.ok(!onWifi.done && onWifi.reason === 'peers-slower', JSON.stringify(onWifi))
    assert.deepEqual(wifi.calls, [])
    // a short compile, or a peer predicted about as fast, still goes
    const fast = stubRemote(['fast'], join(dir, '_pkg_.a'), expectedMs => expectedMs)
    const d2 = new Dispatcher({ pool: new LocalPool({ slots: 1 }), remote: () => fast.remote as never })
    const going = d2.compile(request(dir), 5_000, 0, new AbortController().signal)
    await waitUntil(() => fast.calls.length === 1)
    fast.answer('fast', good('fast', 'from fast'))
    assert.ok((await going).done)
  })

  it('a long compile\'s attempts are given a deadline past their race, with its archive\'s way back; a small one keeps the fixed deadline', async (t) => {
    // The deadline (30 s and 2 s per MB of inputs) ended a compile expected to take 15 s before
    // its race began (~30.5 s): a failure for the honest peer, and the compile began again here.
    const { dir, pool, stub, d } = await slotTaken(t, ['p1', 'p2'])
    const running = d.compile(request(dir), 20_000, 0, new AbortController().signal)
    await waitUntil(() => stub.calls.length === 1)
    stub.answer('p1', good('p1', 'from p1'))
    assert.ok((await running).done)
    // 1100 bytes of inputs and an expected archive of 5000: 2 × (2 × (20 s + 6100 B at 50 MB/s) + 0.5 s)
    assert.deepEqual(stub.notBefore, [2 * overdueMs(20_000, 1100 + 5000)])
    assert.ok(attemptDeadlineMs(1100, stub.notBefore[0]) > overdueMs(20_000, 1100), 'the deadline is after the race begins')
    const small = stubRemote(['p1'], join(dir, '_pkg_.a'))
    const going = new Dispatcher({ pool, remote: () => small.remote as never }).compile(request(dir), 100, 0, new AbortController().signal)
    await waitUntil(() => small.calls.length === 1)
    small.answer('p1', good('p1', 'from p1'))
    assert.ok((await going).done)
    assert.equal(attemptDeadlineMs(1100, small.notBefore[0]), attemptDeadlineMs(1100), 'a small task keeps the fixed deadline')
  })

  it('a failing peer before the deadline gives its reason back, and nothing is written', async (t) => {
    const dir = await pkgDir(t)
    const stub = stubRemote(['bad'], join(dir, '_pkg_.a'))
    const d = new Dispatcher({ pool: new LocalPool({ slots: 1 }), remote: () => stub.remote as never })
    const running = d.compile(request(dir), 10_000, 0, new AbortController().signal)
    await waitUntil(() => stub.calls.length === 1)
    stub.answer('bad', { ok: false, peer: 'bad', reason: 'peer-error' })
    const r = await running
    assert.ok(!r.done && r.reason === 'peer-error', JSON.stringify(r))
    assert.deepEqual(stub.overdue, [], 'a failure is scored by the attempt itself, not again')
    assert.deepEqual(await readdir(dir), ['a.go'])
  })

  it('a peer\'s remote-diagnostics that a clean local rerun disproves is scored as a lie', async (t) => {
    const dir = await pkgDir(t)
    const stub = stubRemote(['liar'], join(dir, '_pkg_.a'))
    const disproved: string[] = []
    Object.assign(stub.remote, { disproved: (peers: Iterable<string>) => { disproved.push(...peers) } })
    const d = new Dispatcher({ pool: new LocalPool({ slots: 1 }), remote: () => stub.remote as never })
    const running = d.compile(request(dir), 10_000, 0, new AbortController().signal)
    await waitUntil(() => stub.calls.length === 1)
    stub.answer('liar', { ok: false, peer: 'liar', reason: 'remote-diagnostics' })
    const r = await running
    assert.ok(!r.done && r.reason === 'remote-diagnostics', JSON.stringify(r))
    assert.deepEqual(r.suspects, ['liar'], 'the peer to check against the local run')
    assert.deepEqual(disproved, [], 'not before the local run')
    const { tool, args: a, cwd, env } = request(dir)
    const outcome = await d.rerun({ tool, args: a, cwd, env }, r.suspects ?? [], 'x', { signal: new AbortController().signal, priority: 0 })
    assert.equal(outcome.exitCode, 0)
    assert.equal(outcome.output.length, 0)
    assert.deepEqual(disproved, ['liar'])
  })

  it('a compile that fails here too leaves the peer that reported it alone', async (t) => {
    const dir = await pkgDir(t)
    await writeFile(join(dir, 'a.go'), 'package x\n\nfunc F() int { return "no" }\n')
    const stub = stubRemote([], join(dir, '_pkg_.a'))
    const disproved: string[] = []
    Object.assign(stub.remote, { disproved: (peers: Iterable<string>) => { disproved.push(...peers) } })
    const d = new Dispatcher({ pool: new LocalPool({ slots: 1 }), remote: () => stub.remote as never })
    const { tool, args: a, cwd, env } = request(dir)
    const outcome = await d.rerun({ tool, args: a, cwd, env }, ['honest'], 'x', { signal: new AbortController().signal, priority: 0 })
    assert.notEqual(outcome.exitCode, 0)
    assert.ok(outcome.output.length > 0)
    assert.deepEqual(disproved, [])
  })

  it('a duplicate that reports diagnostics while the race\'s clean local copy wins is scored as a lie', async (t) => {
    const dir = await pkgDir(t)
    const stub = stubRemote(['slow', 'liar'], join(dir, '_pkg_.a'))
    const disproved: string[] = []
    Object.assign(stub.remote, { disproved: (peers: Iterable<string>) => { disproved.push(...peers) } })
    const pool = new LocalPool({ slots: 1 })
    const release = await pool.lease() // the local copy queues until the liar has answered
    t.after(release)
    const d = new Dispatcher({ pool, remote: () => stub.remote as never })
    const running = d.compile(request(dir), 1, 0, new AbortController().signal)
    await waitUntil(() => stub.calls.includes('liar'))
    stub.answer('liar', { ok: false, peer: 'liar', reason: 'remote-diagnostics' })
    await new Promise(resolve => setImmediate(resolve))
    release()
    const r = await running
    assert.ok(r.done && r.by === 'local' && r.exitCode === 0, JSON.stringify(r))
    assert.deepEqual(disproved, ['liar'])
    assert.deepEqual(stub.overdue, ['slow'])
  })

  it('an attempt that throws (a bug, not a peer\'s answer) ends the dispatch: the compile runs here, not never', async (t) => {
    const dir = await pkgDir(t)
    const stub = stubRemote(['p1'], join(dir, '_pkg_.a'))
    stub.remote.attempt = async () => { throw new Error('a bug in an attempt') }
    const d = new Dispatcher({ pool: new LocalPool({ slots: 1 }), remote: () => stub.remote as never })
    // expected far away, so no race starts: only the thrown attempt is in the running
    const r = await d.compile(request(dir), 600_000, 0, new AbortController().signal)
    assert.ok(!r.done, JSON.stringify(r))
    assert.equal(r.reason, 'peer-error')
  })

  it('a requester that goes away cancels everything', async (t) => {
    const dir = await pkgDir(t)
    const stub = stubRemote(['p1'], join(dir, '_pkg_.a'))
    const d = new Dispatcher({ pool: new LocalPool({ slots: 1 }), remote: () => stub.remote as never })
    const abort = new AbortController()
    const running = d.compile(request(dir), 10_000, 0, abort.signal)
    await waitUntil(() => stub.calls.length === 1)
    abort.abort()
    const r = await running
    assert.ok(!r.done, JSON.stringify(r))
    assert.deepEqual(await readdir(dir), ['a.go'])
  })
})
