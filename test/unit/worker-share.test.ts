// Two requesters that need the same compile on one worker share it: the real Go toolchain, a
// real LocalPool, two real cmd/go compile invocations of one package from two layouts (other
// checkout, $WORK and dependency paths). The compiler runs once and both get the bytes their own
// local compile writes; the compile outlives a requester that leaves, and stops when all have.
import assert from 'node:assert/strict'
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { lpStream, streamPair } from '@libp2p/utils'
import type { Stream } from '@libp2p/interface'
import { Packr } from 'msgpackr'
import { errorCode, type CompileTask } from '@grid/protocol'
import { LocalPool, Worker, buildTask, parseCompileArgs } from '@grid/node/server'
import { run, tempDir, waitFor } from '../helpers/index.js'

const MODULE: Record<string, string> = {
  'go.mod': 'module example.com/share\n\ngo 1.24\n',
  'dep/dep.go': 'package dep\n\n// Pair is generic: its body travels in the export data.\ntype Pair[T any] struct{ A, B T }\n\nfunc Swap[T any](p Pair[T]) Pair[T] { return Pair[T]{p.B, p.A} }\n',
  'share.go': 'package share\n\nimport "example.com/share/dep"\n\nfunc Flip(a, b int) (int, int) {\n\tp := dep.Swap(dep.Pair[int]{A: a, B: b})\n\treturn p.A, p.B\n}\n'
}

/** A -toolexec that writes down cmd/go's compile of example.com/share (argv, cwd, env), then runs the tool. */
const RECORDER = `#!/bin/sh
case "$1" in
  */compile) if [ "$TOOLEXEC_IMPORTPATH" = "example.com/share" ] && [ "$2" != "-V=full" ]; then
    pwd > "$REC.cwd"; printf '%s\\0' "$@" > "$REC.args"; env -0 > "$REC.env"; fi ;;
esac
exec "$@"
`

interface Toolchain { compiler: string, goroot: string, tool: string }

interface Requester {
  name: string
  task: CompileTask
  blobs: Map<string, Buffer>
  /** what cmd/go's own compile invocation writes on the requester */
  local: Buffer
}

/**
 * Builds example.com/share from `<root>/<dir>` with `go build -trimpath` (fresh GOCACHE, its own
 * $WORK), keeps cmd/go's compile invocation of it, turns that into a task as the requester
 * would, and runs the invocation again as is for the reference bytes.
 */
async function requester (root: string, name: string, dir: string, recorder: string): Promise<Requester & { toolchain: Toolchain }> {
  const src = join(root, dir)
  for (const [file, text] of Object.entries(MODULE)) {
    await mkdir(join(src, file, '..'), { recursive: true })
    await writeFile(join(src, file), text)
  }
  const rec = join(root, `rec-${name}`)
  const env: NodeJS.ProcessEnv = {
    ...process.env, REC: rec, GOCACHE: join(root, `gocache-${name}`), GOTMPDIR: join(root, `tmp-${name}`), GOFLAGS: '', GOWORK: 'off', GOPROXY: 'off'
  }
  delete env.GOCACHEPROG
  await mkdir(env.GOTMPDIR as string, { recursive: true })
  const built = await run('go', ['build', '-trimpath', '-work', '-toolexec', recorder, '.'], { cwd: src, env })
  assert.equal(built.code, 0, built.stderr)
  const argv = (await readFile(`${rec}.args`, 'utf8')).split('\0').slice(0, -1)
  const cwd = (await readFile(`${rec}.cwd`, 'utf8')).trim()
  const toolEnv = Object.fromEntries((await readFile(`${rec}.env`, 'utf8')).split('\0').filter(kv => kv.includes('=')).map(kv => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]))
  const tool = argv[0] as string
  const compiler = (await run(tool, ['-V=full'])).stdout.trim()
  const goroot = (await run('go', ['env', 'GOROOT'], { env })).stdout.trim()
  const parsed = parseCompileArgs(argv.slice(1), cwd)
  if ('unsupported' in parsed) throw new Error(`cmd/go's compile is not a task: ${parsed.unsupported}`)
  const prepared = await buildTask(parsed, toolEnv, compiler, goroot)
  if ('unsupported' in prepared) throw new Error(`cmd/go's compile is not a task: ${prepared.unsupported}`)
  const again = await run(tool, argv.slice(1), { cwd, env: toolEnv })
  assert.equal(again.code, 0, again.stderr)
  return { name, task: prepared.task, blobs: prepared.blobs, local: await readFile(parsed.out), toolchain: { compiler, goroot, tool } }
}

/** A worker with a real pool of one slot, counting the compiles the pool completes. */
function workerFor (dir: string, toolchain: Toolchain, handle?: (h: (stream: Stream, connection: unknown) => void) => void): { worker: Worker, pool: LocalPool, compiles: () => number } {
  const pool = new LocalPool({ slots: 1 })
  let compiles = 0
  const runInPool = pool.run.bind(pool)
  pool.run = async (...args) => {
    const outcome = await runInPool(...args)
    compiles++
    return outcome
  }
  // Only the stream test starts the worker; it hands the protocol handler to the test.
  const libp2p = { handle: async (_protocol: string, h: (stream: Stream, connection: unknown) => void) => { handle?.(h) }, unhandle: async () => {} }
  const worker = new Worker({ libp2p: libp2p as never, dir, pool, toolchain: () => toolchain, accepting: () => true })
  return { worker, pool, compiles: () => compiles }
}

async function sendInputs (worker: Worker, r: Requester): Promise<void> {
  for (const sha256 of await worker.missing(r.task)) await worker.putInput(sha256, r.blobs.get(sha256) as Buffer)
}

describe('worker: identical tasks share one compile', () => {
  let root: string
  let alice: Requester
  let bob: Requester
  let toolchain: Toolchain
  let n = 0
  const workerDir = (): string => join(root, `worker-${++n}`)

  before(async () => {
    root = await tempDir({ after }, 'share')
    const recorder = join(root, 'rec.sh')
    await writeFile(recorder, RECORDER)
    await chmod(recorder, 0o755)
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
    release()
    const [ra, rb] = await Promise.all([a, b])
    assert.equal(compiles(), 1)
    assert.deepEqual(worker.stats, { ran: 1, shared: 1, refused: 0, failed: 0 })
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
    const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false })
    /** A requester's side of /grid/compile/1.0.0, one step at a time. */
    const open = async (r: Requester, task = r.task): Promise<{ stream: Stream, need: any, finish: () => Promise<any> }> => {
      const [out, inbound] = await streamPair()
      ;(handler as (stream: Stream, connection: unknown) => void)(inbound, { remotePeer: { toString: () => r.name } })
      const lp = lpStream(out)
      await lp.write(packr.pack({ type: 'offer', task }))
      const need = packr.unpack((await lp.read()).subarray())
      return {
        stream: out,
        need,
        finish: async () => {
          await lp.write(packr.pack({ type: 'blobs', items: (need.hashes as string[]).map(sha256 => ({ sha256, data: r.blobs.get(sha256) })) }))
          await lp.write(packr.pack({ type: 'done' }))
          return packr.unpack((await lp.read()).subarray())
        }
      }
    }
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
    assert.deepEqual(worker.stats, { ran: 1, shared: 1, refused: 1, failed: 1 })
    await worker.stop()
  })
})
