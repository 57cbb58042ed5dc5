// The scheduler's planning half: critical paths through a package graph, where a compile is
// placed and why, the duration history, the local queue's priority order, and the output
// rewrite a local race copy uses.
import assert from 'node:assert/strict'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, it, mock } from 'node:test'
import { execFileSync } from 'node:child_process'
import { DEFAULT_TASK_MEMORY } from '@grid/node'
import { MAX_GRAPH_PACKAGES } from '@grid/protocol'
import { Backlog, History, LocalPool, LONG_POLE_MS, Plan, TINY_MS, estimateMs, localOrPeer, overdueMs, place } from '@grid/node/server'
import { tempDir } from '../helpers/index.js'

// Internals that @grid/node/server does not export, from the built package.
const { Scheduler } = await import(new URL('../../../packages/node/dist/scheduler/index.js', import.meta.url).href) as typeof import('../../packages/node/src/scheduler/index.js')

//   main ─┬─ a ── c (runtime-like, slow)
//         └─ b ── c
//   d (unrelated)
const graph = [
  { p: 'c', i: [], b: 0 },
  { p: 'a', i: ['c'], b: 0 },
  { p: 'b', i: ['c', 'unsafe-not-in-graph'], b: 0 },
  { p: 'main', i: ['a', 'b'], b: 0 },
  { p: 'd', i: [], b: 0 }
]
const cost: Record<string, number> = { c: 100, a: 10, b: 50, main: 5, d: 7 }

describe('scheduler', () => {
  it('ranks each package by its remaining critical path', () => {
    const plan = new Plan(graph, pkg => cost[pkg.p] as number)
    assert.equal(plan.size, 5)
    assert.equal(plan.priority('main'), 5)
    assert.equal(plan.priority('a'), 15)
    assert.equal(plan.priority('b'), 55)
    assert.equal(plan.priority('c'), 155) // c + b + main: the longest chain that waits on c
    assert.equal(plan.priority('d'), 7)
    assert.equal(plan.priority('not-in-graph'), undefined)
  })

  it('measures the critical path and total compile time of a finished build', () => {
    const plan = new Plan(graph, () => 1)
    const measured = new Map([['c', 100], ['a', 10], ['b', 50], ['main', 5], ['d', 7], ['x [x.test]', 3]])
    assert.deepEqual(plan.criticalPath(measured), { ms: 155, totalMs: 175 })
    // packages answered from the cache were not compiled: they weigh nothing
    assert.deepEqual(plan.criticalPath(new Map([['a', 10], ['main', 5]])), { ms: 15, totalMs: 15 })
  })

  it('follows variants built for one package (PGO: `c [main]`) in the critical path, and ranks them as their package', () => {
    const plan = new Plan(graph, pkg => cost[pkg.p] as number)
    assert.equal(plan.priority('c [main]'), plan.priority('c'))
    assert.equal(plan.priority('nowhere [main]'), undefined)
    // main's imports built again for it: c [main] → b [main] → main is the longest chain
    const measured = new Map([['c', 100], ['a', 10], ['b', 50], ['main', 5], ['d', 7], ['c [main]', 300], ['b [main]', 200], ['a [main]', 1]])
    assert.deepEqual(plan.criticalPath(measured), { ms: 505, totalMs: 673 })
  })

  it('plans a chain of imports as deep as build-graph admits (it ran out of call stack at ~10,000)', () => {
    const depth = MAX_GRAPH_PACKAGES
    const chain = Array.from({ length: depth }, (_, n) => ({ p: `m/p${n}`, i: n === 0 ? [] : [`m/p${n - 1}`], b: 0 }))
    const plan = new Plan(chain, () => 2)
    assert.equal(plan.priority('m/p0'), 2 * depth, 'the root waits for the whole chain above it')
    assert.equal(plan.priority(`m/p${depth - 1}`), 2)
    assert.deepEqual(plan.criticalPath(new Map(chain.map(p => [p.p, 3]))), { ms: 3 * depth, totalMs: 3 * depth })
  })

  it('survives an import cycle in a broken graph', () => {
    const plan = new Plan([{ p: 'x', i: ['y'], b: 0 }, { p: 'y', i: ['x'], b: 0 }], () => 10)
    assert.ok((plan.priority('x') ?? 0) >= 10 && (plan.priority('y') ?? 0) >= 10)
  })

  it('places compiles by policy, local capacity and size, always with a reason when local', () => {
    const big = TINY_MS * 10
    assert.deepEqual(place({ offload: 'never', mesh: true, localFree: false, expectedMs: big }), { where: 'local', reason: 'policy' })
    assert.deepEqual(place({ offload: 'busy', mesh: false, localFree: false, expectedMs: big }), { where: 'local', reason: 'no-peers' })
    assert.deepEqual(place({ offload: 'busy', mesh: true, localFree: true, expectedMs: big }), { where: 'local', reason: 'local-free' })
    assert.deepEqual(place({ offload: 'busy', mesh: true, localFree: false, expectedMs: TINY_MS / 2 }), { where: 'local', reason: 'too-small' })
    assert.deepEqual(place({ offload: 'busy', mesh: true, localFree: false, expectedMs: big }), { where: 'remote' })
    assert.deepEqual(place({ offload: 'always', mesh: true, localFree: true, expectedMs: 1 }), { where: 'remote' })
    // a free peer predicted to be clearly faster for this compile takes it even now
    assert.deepEqual(place({ offload: 'busy', mesh: true, localFree: true, expectedMs: big, peerMs: () => big / 2 }), { where: 'remote' })
    assert.deepEqual(place({ offload: 'busy', mesh: true, localFree: true, expectedMs: big, peerMs: () => big }), { where: 'local', reason: 'local-free' })
    assert.deepEqual(place({ offload: 'busy', mesh: true, localFree: true, expectedMs: big, peerMs: () => undefined }), { where: 'local', reason: 'local-free' })
    // a long pole goes to a free peer unless that peer is predicted to be clearly slower
    assert.deepEqual(place({ offload: 'busy', mesh: true, localFree: true, expectedMs: LONG_POLE_MS, peerMs: () => undefined }), { where: 'remote' })
    assert.deepEqual(place({ offload: 'busy', mesh: true, localFree: true, expectedMs: LONG_POLE_MS, peerMs: () => LONG_POLE_MS }), { where: 'remote' })
    assert.deepEqual(place({ offload: 'busy', mesh: true, localFree: true, expectedMs: LONG_POLE_MS, peerMs: () => 2 * LONG_POLE_MS }), { where: 'local', reason: 'local-free' })
    assert.deepEqual(place({ offload: 'busy', mesh: true, localFree: true, expectedMs: TINY_MS / 2, peerMs: () => 1 }), { where: 'local', reason: 'local-free' })
  })

  it('estimates unknown packages by source size, and gives big tasks more time before racing them', () => {
    assert.ok(estimateMs(0) < TINY_MS, 'an empty package is tiny')
    assert.ok(estimateMs(2_700_000) > 1000, 'runtime-sized source is a long pole')
    assert.ok(overdueMs(1000, 0) > overdueMs(10, 0))
    assert.ok(overdueMs(10, 50_000_000) > overdueMs(10, 0), 'inputs take time to send')
    // a task of 500 KB both ways to a peer on 10 Mbit/s Wi-Fi (8e-4 ms per byte): 400 ms on the link
    assert.equal(overdueMs(100, 100_000, 400), 2 * (100 + 400) + 500, 'a link timed slow gives its time')
    assert.equal(overdueMs(100, 100_000, 0.5), overdueMs(100, 100_000), 'a fast link: the inputs at 50 MB/s, as before')
  })

  it('remembers durations as a moving average across restarts, and ignores a corrupt file', async (t) => {
    const dir = await tempDir(t, 'hist')
    const file = join(dir, 'history.json')
    const h = new History(file)
    await h.load()
    h.record('fmt', 100)
    h.record('fmt', 200)
    h.record('', 5)
    h.record('bad', Number.NaN)
    assert.equal(h.get('fmt'), 150)
    await h.save()
    const again = new History(file)
    await again.load()
    assert.equal(again.get('fmt'), 150)
    assert.equal(again.get('bad'), undefined)
    await writeFile(file, '{not json')
    const broken = new History(file)
    await broken.load()
    assert.equal(broken.get('fmt'), undefined)
    assert.match(await readFile(file, 'utf8'), /not json/, 'loading never rewrites the file')
  })

  it('a save waits for one already under way: what was recorded is on disk when it resolves', async (t) => {
    // A build's end saves without waiting; the node's stop right after found nothing left to
    // write and returned while that write was under way, and the process could exit before it.
    const file = join((await tempDir(t, 'hist')), 'history.json')
    const h = new History(file)
    h.record('fmt', 100)
    const first = h.save() // not awaited, as a build's end
    await h.save() // nothing new: the stop's
    assert.deepEqual(JSON.parse(await readFile(file, 'utf8')).packages, { fmt: 100 })
    await first
    // and one recorded while a write is under way is in the next
    h.record('net', 200)
    const second = h.save()
    h.record('os', 300)
    await h.save()
    assert.deepEqual(JSON.parse(await readFile(file, 'utf8')).packages, { fmt: 100, net: 200, os: 300 })
    await second
    assert.deepEqual(JSON.parse(await readFile(file, 'utf8')).packages, { fmt: 100, net: 200, os: 300 })
  })

  it('a peer\'s compile time does not enter the history: expected times stay this host\'s', async (t) => {
    // A peer's reported compileMs went into the history like a local time: a fast peer pulled
    // the expected times (and so its own ratio) toward its speed, and one that said 0 ms halved
    // a package's expected time each build until it was too small to ship.
    const dir = await tempDir(t, 'hist')
    const scheduler = new Scheduler({ historyFile: join(dir, 'history.json') })
    await scheduler.start()
    const files = (): string[] => []
    scheduler.record('fmt', 400, 'here', 40_000)
    assert.equal(await scheduler.expectedMs('fmt', undefined, files), 400)
    const scale = scheduler.scale
    for (let i = 0; i < 10; i++) scheduler.record('fmt', 0, 'peer')
    scheduler.record('fmt', 100, 'peer')
    assert.equal(await scheduler.expectedMs('fmt', undefined, files), 400, 'peers\' times leave the expected time alone')
    assert.equal(scheduler.scale, scale, 'and the size model')
    assert.ok(await scheduler.expectedMs('fmt', undefined, files) >= TINY_MS)

    // a package compiled only on peers keeps its size estimate, as before its first compile
    const plan = new Plan([{ p: 'big', i: [], b: 200_000 }], () => 0)
    const before = await scheduler.expectedMs('big', plan, files)
    scheduler.record('big', 1, 'peer')
    assert.equal(scheduler.history.get('big'), undefined)
    assert.equal(await scheduler.expectedMs('big', plan, files), before)

    // a race's local copy is timed here: it counts
    scheduler.record('fmt', 200, 'here')
    assert.equal(await scheduler.expectedMs('fmt', undefined, files), 300)
    await scheduler.stop()
    const again = new Scheduler({ historyFile: join(dir, 'history.json') })
    await again.start()
    assert.deepEqual([again.history.get('fmt'), again.history.get('big')], [300, undefined], 'history.json holds this host\'s times only')
  })

  it('serves waiting compiles by priority, first come first served among equals', async () => {
    const pool = new LocalPool({ slots: 1 })
    const release = await pool.lease()
    const order: string[] = []
    const wait = (name: string, priority: number): Promise<void> => pool.lease({ priority }).then(free => { order.push(name); free() })
    const all = Promise.all([wait('low', 1), wait('high', 100), wait('mid-1', 50), wait('mid-2', 50)])
    assert.equal(pool.free, false)
    release()
    await all
    assert.deepEqual(order, ['high', 'mid-1', 'mid-2', 'low'])
    assert.equal(pool.free, true)
  })

  it('reads a rank given as a function when the slot frees, not when the compile began waiting', async () => {
    // the build's graph arrives while compiles wait: they are served by its ranks
    const pool = new LocalPool({ slots: 1 })
    const release = await pool.lease()
    const ranks = new Map<string, number>()
    const order: string[] = []
    const wait = (name: string, fallback: number): Promise<void> =>
      pool.lease({ priority: () => ranks.get(name) ?? fallback }).then(free => { order.push(name); free() })
    const all = Promise.all([wait('big-leaf', 90), wait('runtime-dep', 5), wait('other', 40)])
    ranks.set('runtime-dep', 1000).set('big-leaf', 10)
    release()
    await all
    assert.deepEqual(order, ['runtime-dep', 'other', 'big-leaf'])

    const backlog = new Backlog()
    const taken: string[] = []
    let late = 1
    void backlog.wait(50, new AbortController().signal).then(() => taken.push('fixed'))
    void backlog.wait(() => late, new AbortController().signal).then(() => taken.push('ranked later'))
    late = 60
    assert.equal(backlog.take(1), 1)
    await new Promise(resolve => setImmediate(resolve))
    assert.deepEqual(taken, ['ranked later'])
  })

  it('a cancelled waiter leaves the queue', async () => {
    const pool = new LocalPool({ slots: 1 })
    const release = await pool.lease()
    const abort = new AbortController()
    const waiting = pool.lease({ signal: abort.signal, priority: 10 })
    abort.abort()
    await assert.rejects(waiting, (err: { code?: string }) => err.code === 'GRID_ERR_CANCELLED')
    release()
    assert.equal(pool.free, true)
  })

  it('hands backlogged compiles to freed peer slots most urgent first, and forgets one that got its local slot', async () => {
    const backlog = new Backlog()
    const taken: string[] = []
    const local = new AbortController()
    const wait = (name: string, priority: number, signal = new AbortController().signal): void => {
      void backlog.wait(priority, signal).then(() => taken.push(name))
    }
    wait('low', 1)
    wait('high', 100)
    wait('mid-1', 50, local.signal)
    wait('mid-2', 50)
    assert.equal(backlog.size, 4)
    local.abort() // mid-1 got a local slot first: no peer may take it now
    assert.equal(backlog.size, 3)
    assert.equal(backlog.take(2), 2)
    await new Promise(resolve => setImmediate(resolve))
    assert.deepEqual(taken, ['high', 'mid-2'])
    assert.equal(backlog.take(5), 1)
    assert.equal(backlog.take(1), 0)
    await new Promise(resolve => setImmediate(resolve))
    assert.deepEqual(taken, ['high', 'mid-2', 'low'])
  })

  it('a long pole waits for a peer alone during its head start, then for the local slot too', async () => {
    const turn = async (): Promise<void> => { await new Promise(resolve => setImmediate(resolve)) }
    mock.timers.enable({ apis: ['setTimeout'] })
    try {
      // nobody frees a peer: after the head start it takes the local slot, which stayed free till then
      const pool = new LocalPool({ slots: 1 })
      const backlog = new Backlog()
      let asked = 0
      let settled = false
      const waited = localOrPeer(pool, backlog, { priority: 9, headStartMs: 400, signal: new AbortController().signal, waiting: () => { asked++ } })
      void waited.then(() => { settled = true })
      await turn()
      assert.equal(asked, 1, 'a peer slot was looked for at once')
      assert.equal(backlog.size, 1)
      mock.timers.tick(399)
      await turn()
      assert.equal(settled, false)
      assert.equal(pool.free, true, 'the local slot is not taken during the head start')
      mock.timers.tick(1)
      const leased = await waited
      assert.notEqual(leased, undefined)
      assert.equal(pool.free, false)
      assert.equal(backlog.size, 0, 'with the local slot, it no longer waits for a peer')
      leased?.free()
      assert.equal(pool.free, true)

      // a peer slot freed during the head start takes it, and the local slot is never leased
      const shipped = localOrPeer(pool, backlog, { priority: 9, headStartMs: 400, signal: new AbortController().signal, waiting: () => {} })
      await turn()
      assert.equal(backlog.take(1), 1)
      assert.equal(await shipped, undefined)
      mock.timers.tick(1000)
      await turn()
      assert.equal(pool.free, true)

      // no head start, the local slot busy: the first of the two wins; cancelling leaves both queues
      const busy = await pool.lease()
      const cancel = new AbortController()
      const cancelled = localOrPeer(pool, backlog, { priority: 1, headStartMs: 0, signal: cancel.signal, waiting: () => {} })
      const local = localOrPeer(pool, backlog, { priority: 2, headStartMs: 0, signal: new AbortController().signal, waiting: () => {} })
      await turn()
      assert.equal(backlog.size, 2)
      cancel.abort()
      await assert.rejects(cancelled, /cancelled/)
      assert.equal(backlog.size, 1)
      busy()
      const slot = await local
      assert.notEqual(slot, undefined)
      assert.equal(backlog.size, 0)
      slot?.free()
      assert.equal(pool.free, true)
    } finally {
      mock.timers.reset()
    }
  })

  it('caps a compile\'s address space when asked: below what the Go runtime maps it fails, under the default it passes', async (t) => {
    if (process.platform === 'win32') { t.skip('ulimit is Unix'); return }
    const dir = await tempDir(t, 'grid-cap')
    await writeFile(join(dir, 'x.go'), 'package x\n\nfunc F() int { return 1 }\n')
    const tool = join(execFileSync('go', ['env', 'GOTOOLDIR'], { encoding: 'utf8' }).trim(), 'compile')
    const pool = new LocalPool({ slots: 1 })
    const job = (memoryBytes: number): Parameters<LocalPool['run']>[0] => ({ tool, args: ['-o', join(dir, 'x.a'), '-p', 'x', 'x.go'], cwd: dir, env: {}, memoryBytes })
    const starved = await pool.run(job(256 * 1024 ** 2))
    assert.notEqual(starved.exitCode, 0, 'a compile with 256 MiB of address space cannot even start its runtime')
    const capped = await pool.run(job(DEFAULT_TASK_MEMORY))
    assert.equal(capped.exitCode, 0, capped.output.toString())
    assert.ok((await readFile(join(dir, 'x.a'))).length > 0)
  })
})
