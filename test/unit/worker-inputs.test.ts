// A worker's store of the inputs peers sent (packages/node/src/remote/inputs.ts): inputs a task
// uses count as used, and a sweep removes those unused for WORKER_INPUT_TTL_MS and the temp
// files a crash left. Real files in a temp dir; times set with utimes.
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, stat, utimes, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { errorCode, type CompileTask } from '@grid/protocol'
import { Cache, cacheStats, GridNode, InputStore, inputStoreDir, LocalPool, Worker, WORKER_INPUT_TTL_MS } from '@grid/node/server'
import { GRID_BIN, defer, run, suiteContext, tempDir } from '../helpers/index.js'

const sha = (data: string): string => createHash('sha256').update(data).digest('hex')
const DAY = 86_400_000

/** Sets a file's times to `ms` ago. */
async function age (path: string, ms: number): Promise<void> {
  const then = new Date(Date.now() - ms)
  await utimes(path, then, then)
}

describe('worker inputs', () => {
  const suite = suiteContext()

  it('keeps what was used within the TTL, removes the rest and stale temp files', async () => {
    const dir = join(await tempDir(suite, 'inputs'), 'blobs')
    const store = new InputStore(dir)
    await store.start()
    await store.sweep() // the sweep start() begins, over an empty store: done before the files below
    const [old, usedAgain, fresh] = ['package old', 'package again', 'package fresh'].map(text => {
      store.put(sha(text), Buffer.from(text))
      return sha(text)
    }) as [string, string, string]
    await age(store.path(old), WORKER_INPUT_TTL_MS + DAY)
    await age(store.path(usedAgain), WORKER_INPUT_TTL_MS + DAY)
    assert.equal(store.has(usedAgain), true)
    assert.ok(Date.now() - (await stat(store.path(usedAgain))).mtimeMs < DAY, 'asking for an input marks it used')
    const crashed = join(dir, old.slice(0, 2), `${old}.1234abcd.tmp`)
    const writing = join(dir, fresh.slice(0, 2), `${fresh}.5678abcd.tmp`)
    await writeFile(crashed, 'half')
    await writeFile(writing, 'half')
    await age(crashed, 3_600_000)

    const swept = await store.sweep()
    assert.deepEqual(swept, { removed: 2, bytes: Buffer.byteLength('package old') + 4 })
    assert.equal(existsSync(store.path(old)), false)
    assert.equal(existsSync(crashed), false)
    assert.equal(existsSync(writing), true, 'a temp file of a minute ago may be a write in progress')
    assert.equal(store.has(old), false)
    assert.equal(store.has(usedAgain), true)
    assert.equal(store.has(fresh), true)
    assert.equal(store.read(fresh), 'package fresh')
    await store.stop()
  })

  it('counts its inputs and their bytes for the cache\'s stats, leaving temp files out', async () => {
    const cacheDir = await tempDir(suite, 'cache')
    const store = new InputStore(inputStoreDir(cacheDir))
    await store.start()
    await store.sweep() // the sweep start() begins, over an empty store: done before the files below
    for (const text of ['package a', 'package bb']) store.put(sha(text), Buffer.from(text))
    await writeFile(join(inputStoreDir(cacheDir), sha('package a').slice(0, 2), `${sha('package c')}.1234abcd.tmp`), 'partial')
    assert.deepEqual(await store.usage(), { inputs: 2, bytes: 19 })
    await store.stop()
    const cache = await Cache.open({ dir: cacheDir, nodeId: 'p' })
    try {
      const stats = await cacheStats(cache)
      assert.deepEqual(stats.workerInputs, { inputs: 2, bytes: 19 })
      assert.equal(stats.entries, 0)
    } finally {
      await cache.close()
    }
    assert.deepEqual(await new InputStore(join(cacheDir, 'nothing')).usage(), { inputs: 0, bytes: 0 }, 'no store yet: nothing')
  })

  it('grid cache gc --json has the stats grid cache stats --json has, the inputs of peers\' compiles with them, from a node and without one', async (t) => {
    const dir = await tempDir(t)
    const cacheDir = join(dir, 'grid')
    const control = join(dir, 'g.sock')
    const store = new InputStore(inputStoreDir(cacheDir))
    await store.start()
    await store.sweep()
    store.put(sha('package a'), Buffer.from('package a'))
    await store.stop()
    const cache = await Cache.open({ dir: cacheDir, nodeId: 'p' })
    await cache.putBytes(randomBytes(32), randomBytes(100))
    await cache.close()
    const cli = async (args: string[]): Promise<any> => {
      const r = await run(process.execPath, [GRID_BIN, '--cache', cacheDir, '--control', control, '--json', 'cache', ...args])
      assert.equal(r.code, 0, r.stderr)
      return JSON.parse(r.stdout)
    }
    const same = async (): Promise<void> => {
      const stats = await cli(['stats'])
      assert.deepEqual(stats.workerInputs, { inputs: 1, bytes: 9 })
      assert.deepEqual((await cli(['gc', '--max-size', '10G'])).stats, stats)
    }
    await same() // no node on the socket: the commands open the cache themselves
    const node = new GridNode({ cacheDir, control, mode: 'daemon' })
    await node.start()
    defer(t, async () => { await node.stop() })
    await same()
  })

  it('refuses an input that does not hash to its name', async () => {
    const store = new InputStore(join(await tempDir(suite, 'inputs'), 'blobs'))
    assert.throws(() => store.put(sha('one'), Buffer.from('two')), (err: unknown) => errorCode(err) === 'GRID_ERR_TASK_REFUSED')
  })

  it('a task the worker is offered marks the inputs it holds used; the next sweep keeps them', async () => {
    const root = await tempDir(suite, 'inputs')
    const worker = new Worker({ libp2p: {} as never, dir: join(root, 'worker'), pool: new LocalPool({ slots: 1 }), memoryBytes: 1 << 30, toolchain: () => undefined, accepting: () => true })
    await mkdir(join(root, 'worker', 'blobs'), { recursive: true })
    const held = sha('package held')
    worker.inputs.put(held, Buffer.from('package held'))
    await age(worker.inputs.path(held), WORKER_INPUT_TTL_MS + DAY)
    const task = { files: [{ path: '/src/held.go', sha256: held, size: 12 }, { path: '/src/new.go', sha256: sha('package new'), size: 11 }] } as unknown as CompileTask
    assert.deepEqual(await worker.missing(task), [sha('package new')])
    assert.deepEqual(await worker.inputs.sweep(), { removed: 0, bytes: 0 })
    assert.equal(worker.inputs.has(held), true)
  })
})
