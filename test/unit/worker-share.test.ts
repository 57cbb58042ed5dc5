// Two requesters that need the same compile on one worker share it: the real Go toolchain, a
// real LocalPool, two real cmd/go compile invocations of one package from two layouts (other
// checkout, $WORK and dependency paths). The compiler runs once and both get the bytes their own
// local compile writes; the compile outlives a requester that leaves, and stops when all have.
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { before, describe, it } from 'node:test'
import type { Stream } from '@libp2p/interface'
import { errorCode } from '@grid/protocol'
import type { Worker } from '@grid/node/server'
import { suiteContext, tempDir, waitFor } from '../helpers/index.js'
import { writeRecorder, openTask, requester, workerFor, type Requester, type Toolchain } from '../helpers/worker.js'

async function sendInputs (worker: Worker, r: Requester): Promise<void> {
  for (const sha256 of await worker.missing(r.task)) worker.inputs.put(sha256, r.blobs.get(sha256) as Buffer)
}

describe('worker: identical tasks share one compile', () => {
  let root: string
  let alice: Requester
  let bob: Requester
  let toolchain: Toolchain
  let n = 0
  const workerDir = (): string => join(root, `worker-${++n}`)

  const suite = suiteContext()

  before(async () => {
    root = await tempDir(suite, 'share')
    const recorder = await writeRecorder(root)
    const a = await requester(root, 'alice', 'alice/src/share', recorder)
    bob = await requester(root, 'bob', 'bob/work/checkouts/7/share', recorder)
    alice = a
    toolchain = a.toolchain
    // the premise: the two layouts differ in every path, not in the bytes cmd/go writes
    assert.notDeepEqual(alice.task.files.map(f => f.path).sort(), bob.task.files.map(f => f.path).sort())
    assert.ok(alice.local.equals(bob.local), 'the two requesters\' own compiles differ')
  })

  it('runs the compiler once for two requesters; both get the bytes of their own local compile', async () => {
    const { worker, pool, compiles } = workerFor(workerDir(), toolchain)
    await sendInputs(worker, alice)
    await sendInputs(worker, bob)
    // hold the only slot, so the first compile is still waiting when the second task arrives
    const release = await pool.lease()
    const a = worker.execute(alice.task, { peer: 'alice', signal: AbortSignal.timeout(60_000) })
    const b = worker.execute(bob.task, { peer: 'bob', signal: AbortSignal.timeout(60_000) })
    await waitFor(() => worker.stats.shared === 1, 10_000, () => 'bob\'s task to join alice\'s compile')
    assert.equal(pool.queued, 1, 'one compile waits for the slot, not two')
    assert.equal(worker.compiles, 1, 'the compiles for peers, as the idle policy counts them')
    release()
    assert.equal(pool.free, true, 'the peers\' compile holds the slot as a guest: an own compile would start at once')
    const [ra, rb] = await Promise.all([a, b])
    assert.equal(compiles(), 1)
    assert.equal(worker.compiles, 0)
    assert.deepEqual(worker.stats, { ran: 1, shared: 1, refused: 0, failed: 0, packed: 0, unpacked: 0 })
    for (const [r, who] of [[ra, alice], [rb, bob]] as const) {
      assert.equal(r.exitCode, 0, Buffer.from(r.output).toString())
      assert.equal(r.output.length, 0)
      assert.ok(r.archive !== null && Buffer.from(r.archive).equals(who.local), `${who.name}: the shared result differs from cmd/go's own compile`)
    }
    assert.notEqual(ra, rb, 'each requester gets its own copy of the result')
  })

  it('finishes the compile for the second requester when the first goes away', async () => {
    const { worker, pool, compiles } = workerFor(workerDir(), toolchain)
    await sendInputs(worker, alice)
    await sendInputs(worker, bob)
    const release = await pool.lease()
    const gone = new AbortController()
    const a = worker.execute(alice.task, { peer: 'alice', signal: gone.signal })
    const b = worker.execute(bob.task, { peer: 'bob', signal: AbortSignal.timeout(60_000) })
    await waitFor(() => worker.stats.shared === 1, 10_000, () => 'bob\'s task to join alice\'s compile')
    gone.abort()
    await assert.rejects(a, (err: unknown) => errorCode(err) === 'GRID_ERR_CANCELLED')
    assert.equal(pool.queued, 1, 'the compile still waits for its slot')
    release()
    const rb = await b
    assert.ok(rb.archive !== null && Buffer.from(rb.archive).equals(bob.local))
    assert.equal(compiles(), 1)
  })

  it('cancels the compile once every requester has gone; the next identical task compiles afresh', async () => {
    const { worker, pool, compiles } = workerFor(workerDir(), toolchain)
    await sendInputs(worker, alice)
    await sendInputs(worker, bob)
    const release = await pool.lease()
    const [ga, gb] = [new AbortController(), new AbortController()]
    const a = worker.execute(alice.task, { peer: 'alice', signal: ga.signal })
    const b = worker.execute(bob.task, { peer: 'bob', signal: gb.signal })
    await waitFor(() => worker.stats.shared === 1, 10_000, () => 'bob\'s task to join alice\'s compile')
    ga.abort()
    assert.equal(pool.queued, 1)
    gb.abort()
    await assert.rejects(a, (err: unknown) => errorCode(err) === 'GRID_ERR_CANCELLED')
    await assert.rejects(b, (err: unknown) => errorCode(err) === 'GRID_ERR_CANCELLED')
    assert.equal(pool.queued, 0, 'the abandoned compile no longer waits for a slot')
    release()
    assert.equal(pool.running, 0, 'the abandoned compile took the slot')
    const again = await worker.execute(bob.task, { peer: 'bob', signal: AbortSignal.timeout(60_000) })
    assert.ok(again.archive !== null && Buffer.from(again.archive).equals(bob.local))
    assert.equal(compiles(), 1)
    assert.equal(worker.stats.shared, 1, 'the new task did not join the cancelled compile')
  })

  it('over the stream: with every slot taken a duplicate joins, sending only its importcfg; other work is refused busy', async () => {
    let handler: ((stream: Stream, connection: unknown) => void) | undefined
    const { worker, pool, compiles } = workerFor(workerDir(), toolchain, h => { handler = h })
    await worker.start()
    const open = async (r: Requester, task = r.task) => await openTask(handler as (stream: Stream, connection: unknown) => void, r, task)
    const a = await open(alice)
    assert.equal(a.need.type, 'need')
    // alice is in; now every slot is taken before her compile starts
    const release = await pool.lease()
    const ra = a.finish()
    await waitFor(() => pool.queued === 1, 10_000, () => 'alice\'s compile to wait for the slot')
    const b = await open(bob)
    const bobImportcfg = bob.task.files.find(f => f.path === bob.task.inputFlags['-importcfg'])?.sha256
    assert.deepEqual(b.need, { type: 'need', hashes: [bobImportcfg] }, 'a duplicate needs only its importcfg: the rest came with alice')
    const rb = b.finish()
    await waitFor(() => worker.stats.shared === 1, 10_000, () => 'bob\'s task to join alice\'s compile')
    // other work is refused at the offer, before any input moves
    const other = await open(bob, { ...bob.task, flags: bob.task.flags.map(f => (f.startsWith('-lang=') ? '-lang=go1.23' : f)) })
    assert.equal(other.need.type, 'fail')
    assert.match(other.need.message, /slots are busy/)
    // alice's stream breaks: bob still gets the compile
    a.stream.abort(new Error('alice went away'))
    await assert.rejects(ra)
    await waitFor(() => worker.stats.failed === 1, 10_000, () => 'alice\'s side to end')
    release()
    const result = await rb
    assert.equal(result.type, 'result')
    assert.ok(Buffer.from(result.archive).equals(bob.local))
    assert.equal(compiles(), 1)
    assert.deepEqual(worker.stats, { ran: 1, shared: 1, refused: 1, failed: 1, packed: 0, unpacked: 0 })
    await worker.stop()
  })

  it('over the stream: a free slot is held for the task let in on it while its inputs come; another offer meanwhile is refused busy', async () => {
    let handler: ((stream: Stream, connection: unknown) => void) | undefined
    const { worker, pool, compiles } = workerFor(workerDir(), toolchain, h => { handler = h })
    await worker.start()
    const open = async (r: Requester, task = r.task) => await openTask(handler as (stream: Stream, connection: unknown) => void, r, task)
    const otherTask = { ...bob.task, flags: bob.task.flags.map(f => (f.startsWith('-lang=') ? '-lang=go1.23' : f)) }
    const a = await open(alice)
    assert.equal(a.need.type, 'need')
    assert.equal(pool.running, 0, 'alice\'s compile has not started: her inputs are still to come')
    // two requesters read the same advert of one free slot: the second hears busy and goes elsewhere
    const other = await open(bob, otherTask)
    assert.equal(other.need.type, 'fail', JSON.stringify(other.need))
    assert.match(other.need.message, /slots are busy/)
    assert.equal((await a.finish()).type, 'result')
    // the slot is free again once alice's task is over: the next one is let in and compiles
    const again = await open(bob, otherTask)
    assert.equal(again.need.type, 'need')
    assert.equal((await again.finish()).type, 'result')
    assert.equal(compiles(), 2)
    // a task that fails before its compile gives its hold back too
    const bad = await open(alice)
    assert.equal(bad.need.type, 'need')
    bad.stream.abort(new Error('alice went away'))
    await waitFor(async () => (await open(bob, otherTask)).need.type === 'need', 10_000, () => 'the slot to be free again')
    await worker.stop()
  })

  it('over the stream: one stream carries task after task, in a reused sandbox, each result its own', async () => {
    let handler: ((stream: Stream, connection: unknown) => void) | undefined
    const { worker, pool, compiles } = workerFor(workerDir(), toolchain, h => { handler = h })
    await worker.start()
    const a = await openTask(handler as (stream: Stream, connection: unknown) => void, alice, alice.task)
    const ra = await a.finish()
    assert.ok(ra.type === 'result' && Buffer.from(ra.archive).equals(alice.local), JSON.stringify(ra).slice(0, 200))
    // a refused offer leaves the stream between tasks too
    const release = await pool.lease()
    const busy = await a.offer({ ...bob.task, flags: bob.task.flags.map(f => (f.startsWith('-lang=') ? '-lang=go1.23' : f)) }, bob)
    assert.equal(busy.need.type, 'fail')
    release()
    const b = await a.offer(bob.task, bob)
    assert.equal(b.need.type, 'need', 'the stream takes the next offer')
    const rb = await b.finish()
    assert.ok(rb.type === 'result' && Buffer.from(rb.archive).equals(bob.local), 'the second task, laid out where the first was, gets the bytes of its own compile')
    assert.equal(compiles(), 2)
    assert.deepEqual(worker.stats, { ran: 2, shared: 0, refused: 1, failed: 0, packed: 0, unpacked: 0 })
    await a.stream.close()
    await worker.stop()
  })
})
