// The cache on real LevelDB and real files in a temp dir.
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { readFile, stat, writeFile } from 'node:fs/promises'
import { describe, it } from 'node:test'
import { Cache, MAX_RECALL_LISTS } from '@grid/node/server'
import { errorCode, RECALL_RECORD_BYTES } from '@grid/protocol'
import { tempDir } from '../helpers/index.js'

const id = (): Uint8Array => randomBytes(32)

describe('cache', () => {
  it('stores a body by content hash and serves it with its producer', async (t) => {
    const dir = await tempDir(t)
    const cache = await Cache.open({ dir, nodeId: 'peer-A' })
    t.after(() => cache.close())
    const action = id()
    const body = Buffer.from('package archive bytes')
    const { outputId, diskPath } = await cache.putBytes(action, body)
    assert.deepEqual(Buffer.from(outputId), createHash('sha256').update(body).digest())
    assert.ok(diskPath.endsWith(Buffer.from(outputId).toString('hex')))
    const hit = await cache.get(action)
    assert.ok(hit !== undefined && hit !== 'corrupt')
    assert.equal(hit.size, body.length)
    assert.deepEqual(await readFile(hit.diskPath), body)
    assert.equal(await cache.get(id()), undefined)
    assert.deepEqual(await cache.stats(), { dir, entries: 1, blobs: 1, bytes: body.length })
  })

  it('recalls the entries a remembered list names, packed with their blob stamps', async (t) => {
    const dir = await tempDir(t)
    let cache = await Cache.open({ dir, nodeId: 'p' })
    const bodies = [randomBytes(100), randomBytes(200)]
    const actions = [id(), id()]
    const puts = await Promise.all(bodies.map(async (b, i) => await cache.putBytes(actions[i] as Uint8Array, b)))
    const unknown = id() // looked up, never put: not recalled
    await cache.remember('k', [...actions, unknown].map(a => Buffer.from(a).toString('hex')))
    await cache.close() // the list outlives the node
    cache = await Cache.open({ dir, nodeId: 'p' })
    t.after(() => cache.close())
    assert.equal((await cache.recall('other')).packed.length, 0)
    const { packed, entries } = await cache.recall('k')
    assert.equal(packed.length, 2 * RECALL_RECORD_BYTES)
    assert.equal(entries.size, 2)
    for (let i = 0; i < 2; i++) {
      const r = packed.subarray(i * RECALL_RECORD_BYTES, (i + 1) * RECALL_RECORD_BYTES)
      assert.deepEqual(r.subarray(0, 32), Buffer.from(actions[i] as Uint8Array))
      assert.deepEqual(r.subarray(32, 64), Buffer.from(puts[i]?.outputId as Uint8Array))
      assert.equal(r.readBigUInt64BE(64), BigInt(bodies[i]?.length as number))
      const st = await stat(puts[i]?.diskPath as string, { bigint: true })
      assert.equal(r.readBigUInt64BE(80), st.ino, 'the inode the helper compares')
      assert.equal(r.readBigUInt64BE(88), st.ctimeNs, 'the ctime the helper compares')
    }
  })

  it('keeps the newest recall lists only', async (t) => {
    const cache = await Cache.open({ dir: await tempDir(t), nodeId: 'p' })
    t.after(() => cache.close())
    const action = id()
    await cache.putBytes(action, randomBytes(10))
    const a = Buffer.from(action).toString('hex')
    for (let i = 0; i <= MAX_RECALL_LISTS; i++) {
      await cache.remember(`k${i}`, [a])
      await new Promise(resolve => setTimeout(resolve, 2)) // lists are ordered by their ms
    }
    assert.equal((await cache.recall('k0')).entries.size, 0, 'the oldest list was forgotten')
    assert.equal((await cache.recall('k1')).entries.size, 1)
    assert.equal((await cache.recall(`k${MAX_RECALL_LISTS}`)).entries.size, 1)
  })

  it('refuses a put whose blob is not on disk', async (t) => {
    const cache = await Cache.open({ dir: await tempDir(t), nodeId: 'p' })
    t.after(() => cache.close())
    await assert.rejects(cache.put(id(), id(), 10), (err: unknown) => errorCode(err) === 'GRID_ERR_CACHE_MISSING_BLOB')
  })

  it('detects a blob corrupted on disk, drops it, and reports a miss', async (t) => {
    const cache = await Cache.open({ dir: await tempDir(t), nodeId: 'p' })
    t.after(() => cache.close())
    const action = id()
    const { diskPath } = await cache.putBytes(action, randomBytes(4096))
    const bytes = await readFile(diskPath)
    bytes[100] = (bytes[100] as number) ^ 0xff
    await writeFile(diskPath, bytes)
    let corrupt = 0
    cache.events.onCorrupt = () => { corrupt++ }
    assert.equal(await cache.get(action), 'corrupt')
    assert.equal(corrupt, 1)
    await assert.rejects(stat(diskPath))
    assert.equal(await cache.get(action), undefined)
  })

  it('serves an untouched blob without re-hashing and a rewritten-but-valid one after re-hashing', async (t) => {
    const cache = await Cache.open({ dir: await tempDir(t), nodeId: 'p' })
    t.after(() => cache.close())
    const action = id()
    const body = randomBytes(1000)
    const { diskPath } = await cache.putBytes(action, body)
    await writeFile(diskPath, body) // same bytes, new ctime: must re-hash and still serve
    const hit = await cache.get(action)
    assert.ok(hit !== undefined && hit !== 'corrupt')
  })

  it('refuses to open an index another process holds', async (t) => {
    const dir = await tempDir(t)
    const a = await Cache.open({ dir, nodeId: 'p' })
    t.after(() => a.close())
    await assert.rejects(Cache.open({ dir, nodeId: 'p' }), (err: unknown) => errorCode(err) === 'GRID_ERR_CACHE_LOCKED')
  })

  it('gc removes least recently used blobs first and never a pinned one', async (t) => {
    const cache = await Cache.open({ dir: await tempDir(t), nodeId: 'p' })
    t.after(() => cache.close())
    const puts = []
    for (let i = 0; i < 5; i++) {
      const action = id()
      puts.push({ action, ...(await cache.putBytes(action, randomBytes(1000))) })
      await new Promise(resolve => setTimeout(resolve, 5))
    }
    // touch #0 so it is the most recent; pin #1
    assert.ok(typeof (await cache.get(puts[0]!.action)) === 'object')
    const pinned = new Set([Buffer.from(puts[1]!.outputId).toString('hex')])
    const result = await cache.gc(2000, pinned)
    assert.equal(result.stats.bytes, 2000)
    assert.ok(typeof (await cache.get(puts[0]!.action)) === 'object', 'recently used entry kept')
    assert.ok(typeof (await cache.get(puts[1]!.action)) === 'object', 'pinned entry kept')
    assert.equal(await cache.get(puts[2]!.action), undefined)
    assert.equal(result.removedEntries, 3)
  })

  it('verify re-hashes every blob and drops corrupt ones with their entries', async (t) => {
    const cache = await Cache.open({ dir: await tempDir(t), nodeId: 'p' })
    t.after(() => cache.close())
    const good = await cache.putBytes(id(), randomBytes(100))
    const bad = await cache.putBytes(id(), randomBytes(100))
    await writeFile(bad.diskPath, randomBytes(100))
    const result = await cache.verify()
    assert.deepEqual(result, { checked: 2, corrupt: 1, missing: 1, removedEntries: 1 })
    await stat(good.diskPath)
    await assert.rejects(stat(bad.diskPath))
  })
})
