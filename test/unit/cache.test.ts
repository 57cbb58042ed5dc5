// The cache on real LevelDB and real files in a temp dir.
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { mkdir, readdir, readFile, stat, utimes, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { describe, it } from 'node:test'
import { AbsentFilter, Cache, GC_SPARES_RECENT_MS, MAX_RECALL_LISTS } from '@grid/node/server'
import { ABSENT_PROBES, errorCode, RECALL_RECORD_BYTES } from '@grid/protocol'
import { GRID_BIN, run, tempDir } from '../helpers/index.js'

const id = (): Uint8Array => randomBytes(32)
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')

/** Sets a file's times to `ms` ago. */
async function age (path: string, ms: number): Promise<void> {
  const then = new Date(Date.now() - ms)
  await utimes(path, then, then)
}

/** Reads an absent filter as the helper does (absent.go), not through AbsentFilter. */
function mayHoldIn (bits: Uint8Array, actionId: Uint8Array): boolean {
  const mask = bits.length * 8 - 1
  const v = new DataView(actionId.buffer, actionId.byteOffset, 32)
  for (let i = 0; i < ABSENT_PROBES; i++) {
    const bit = (v.getUint32(4 * i) & mask) >>> 0
    if (((bits[bit >>> 3] ?? 0) & (1 << (bit & 7))) === 0) return false
  }
  return true
}

/** The cache's absent filter once it has one of at least `minBytes` (it is filled in the background). */
async function absentOf (cache: Cache, minBytes = 1): Promise<Uint8Array> {
  for (let i = 0; i < 200; i++) {
    const bits = cache.absentFilter()
    if (bits !== undefined && bits.length >= minBytes) return bits
    await new Promise(resolve => setTimeout(resolve, 10))
  }
  const bits = cache.absentFilter()
  assert.fail(`no absent filter of ${minBytes} bytes or more within 2 s: ${bits?.length ?? 'none'}`)
}

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
    assert.deepEqual(await cache.stats(), { dir, entries: 1, blobs: 1, bytes: body.length, compiledOnPeers: { entries: 0, byPeer: {} } })
  })

  it('an own put whose compile ran on a peer\'s worker names that worker, and keeps this node as its producer; one without stays without, across a reopen', async (t) => {
    const dir = await tempDir(t)
    let cache = await Cache.open({ dir, nodeId: 'peer-A' })
    // the helper writes the blob, the node indexes it (Node.index): put, not putBytes
    const put = async (body: Buffer, worker?: string): Promise<Uint8Array> => {
      const outputId = createHash('sha256').update(body).digest()
      const path = cache.blobPath(hex(outputId))
      await mkdir(dirname(path), { recursive: true })
      await writeFile(path, body)
      const action = id()
      await cache.put(action, outputId, body.length, undefined, undefined, { toolchain: 'go1.x', shared: true, ...(worker === undefined ? {} : { worker }) })
      return action
    }
    const remote = await put(Buffer.from('archive compiled on B'), 'peer-B')
    const local = await put(Buffer.from('archive compiled here'))
    await cache.close() // what the index holds, not what the process remembers
    cache = await Cache.open({ dir, nodeId: 'peer-A' })
    t.after(() => cache.close())
    const fromB = await cache.get(remote)
    assert.ok(fromB !== undefined && fromB !== 'corrupt')
    assert.equal(fromB.producer, 'peer-A', 'this node checked the archive and vouches for it')
    assert.equal(fromB.worker, 'peer-B')
    const here = await cache.get(local)
    assert.ok(here !== undefined && here !== 'corrupt')
    assert.equal(here.producer, 'peer-A')
    assert.equal(here.worker, undefined)
    assert.deepEqual((await cache.stats()).compiledOnPeers, { entries: 1, byPeer: { 'peer-B': 1 } })
  })

  it('recalls the entries a remembered list names, packed with their blob stamps', async (t) => {
    const dir = await tempDir(t)
    let cache = await Cache.open({ dir, nodeId: 'p' })
    const bodies = [randomBytes(100), randomBytes(200)]
    const actions = [id(), id()]
    const puts = await Promise.all(bodies.map(async (b, i) => await cache.putBytes(actions[i] as Uint8Array, b)))
    const unknown = id() // looked up, never put: not recalled
    // under its command's key and its directory's, as a build's end does
    await cache.remember(['k', 'dir'], [...actions, unknown].map(a => Buffer.from(a).toString('hex')))
    await cache.close() // the list outlives the node
    cache = await Cache.open({ dir, nodeId: 'p' })
    t.after(() => cache.close())
    assert.equal((await cache.recall(['other'])).packed.length, 0)
    assert.equal((await cache.recall(['other', 'dir'])).entries.size, 2, 'another command in the directory: its newest list')
    await cache.remember(['k2', 'dir'], [Buffer.from(actions[0] as Uint8Array).toString('hex')])
    assert.equal((await cache.recall(['other', 'dir'])).entries.size, 1, 'the directory\'s newest list')
    assert.equal((await cache.recall(['k', 'dir'])).entries.size, 2, 'the command\'s own list first')
    const { packed, entries } = await cache.recall(['k'])
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

  it('sets the absent filter\'s bits as docs/protocol.md lays them out (the helper reads them so)', () => {
    // ActionID bytes 0..31: probe i is the big-endian word at byte 4i, modulo 65,536 bits (the
    // smallest filter). The same vector is in the shim's absent_test.go.
    const filter = new AbsentFilter(0)
    assert.equal(filter.bits.length, 8192)
    const action = Uint8Array.from({ length: 32 }, (_, i) => i)
    assert.equal(filter.mayHold(action), false)
    filter.add(action)
    const set = [...filter.bits.entries()].filter(([, b]) => b !== 0)
    assert.deepEqual(set, [[64, 8], [192, 128], [321, 8], [449, 128], [578, 8], [706, 128]])
    assert.equal(set.length, ABSENT_PROBES)
    assert.equal(filter.mayHold(action), true)
    // random ActionIDs: few false "maybe"s in a filter with one entry in
    const maybe = Array.from({ length: 1000 }, id).filter(a => filter.mayHold(a)).length
    assert.ok(maybe === 0, `${maybe} of 1000 unknown ActionIDs passed a filter holding one`)
  })

  it('hands out an absent filter that holds every entry, old and new, and rules out others', async (t) => {
    const dir = await tempDir(t)
    let cache = await Cache.open({ dir, nodeId: 'p' })
    const before = [id(), id(), id()]
    for (const a of before) await cache.putBytes(a, randomBytes(50))
    await cache.close()
    cache = await Cache.open({ dir, nodeId: 'p' }) // the filter is filled from a scan of the index
    t.after(() => cache.close())
    const filter = await absentOf(cache)
    const mayHold = (a: Uint8Array): boolean => mayHoldIn(filter, a)
    const after = [id(), id()]
    for (const a of after) await cache.putBytes(a, randomBytes(60))
    for (const a of [...before, ...after]) assert.ok(mayHold(a), 'an entry of the index is ruled out')
    const unknown = Array.from({ length: 1000 }, id).filter(mayHold).length
    assert.ok(unknown < 10, `${unknown} of 1000 unknown ActionIDs passed the filter`)
  })

  it('fills a larger absent filter when the index outgrows it, losing no entry on the way', async (t) => {
    const dir = await tempDir(t)
    const cache = await Cache.open({ dir, nodeId: 'p' })
    t.after(() => cache.close())
    const body = randomBytes(10)
    const first = id()
    const { outputId } = await cache.putBytes(first, body)
    assert.equal((await absentOf(cache)).length, 8192)
    // entries naming one blob: only index writes, in batches, while the filter is refilled
    const actions = [first, ...Array.from({ length: 9000 }, id)]
    await Promise.all(actions.slice(1).map(async a => await cache.put(a, outputId, body.length)))
    const filter = await absentOf(cache, 8193) // a larger one
    const held = actions.filter(a => mayHoldIn(filter, a)).length
    assert.equal(held, actions.length, 'entries of the index ruled out by the larger filter')
    const unknown = Array.from({ length: 1000 }, id).filter(a => mayHoldIn(filter, a)).length
    assert.ok(unknown < 20, `${unknown} of 1000 unknown ActionIDs passed the larger filter`)
  })

  it('keeps the newest recall lists only', async (t) => {
    const cache = await Cache.open({ dir: await tempDir(t), nodeId: 'p' })
    t.after(() => cache.close())
    const action = id()
    await cache.putBytes(action, randomBytes(10))
    const a = Buffer.from(action).toString('hex')
    for (let i = 0; i <= MAX_RECALL_LISTS; i++) {
      await cache.remember([`k${i}`], [a])
      await new Promise(resolve => setTimeout(resolve, 2)) // lists are ordered by their ms
    }
    assert.equal((await cache.recall(['k0'])).entries.size, 0, 'the oldest list was forgotten')
    assert.equal((await cache.recall(['k1'])).entries.size, 1)
    assert.equal((await cache.recall([`k${MAX_RECALL_LISTS}`])).entries.size, 1)
  })

  it('a body fetched again whose blob is already in the store keeps that file (its inode, so every entry\'s stamp); a corrupt one of the same size is replaced', async (t) => {
    // putBytes renamed a fresh copy over the blob: a new inode, and every other entry naming it
    // failed its stamp check and cost a re-hash.
    const cache = await Cache.open({ dir: await tempDir(t), nodeId: 'p' })
    t.after(() => cache.close())
    const body = randomBytes(4000)
    const first = await cache.putBytes(id(), body)
    const before = await stat(first.diskPath, { bigint: true })
    const pin = new Set<string>()
    const again = await cache.putBytes(id(), body, undefined, undefined, pin)
    assert.equal(again.diskPath, first.diskPath)
    const after = await stat(first.diskPath, { bigint: true })
    assert.deepEqual([after.ino, after.ctimeNs], [before.ino, before.ctimeNs], 'the blob file left as it was')
    assert.deepEqual([...pin], [hex(first.outputId)], 'pinned for the build it is handed to, in the turn of its put')
    // the same size, other bytes: not trusted for its size
    const spoilt = Buffer.from(body)
    spoilt[100] = (spoilt[100] as number) ^ 0xff
    await writeFile(first.diskPath, spoilt)
    const action = id()
    await cache.putBytes(action, body)
    assert.deepEqual(await readFile(first.diskPath), body, 'a corrupt blob of the same size is replaced')
    const hit = await cache.get(action)
    assert.ok(typeof hit === 'object' && hit.size === body.length)
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

  for (const victim of ['CURRENT', 'MANIFEST-']) {
    it(`repairs an index whose ${victim.replace('-', '')} is garbage (as a crash can leave it), keeping its entries`, async (t) => {
      const dir = await tempDir(t)
      const bodies = [randomBytes(100), randomBytes(200), randomBytes(300)]
      const actions = bodies.map(() => id())
      const before = await Cache.open({ dir, nodeId: 'p' })
      for (const [i, body] of bodies.entries()) await before.putBytes(actions[i] as Uint8Array, body)
      await before.close()
      const index = join(dir, 'index')
      const file = (await readdir(index)).find(name => name.startsWith(victim))
      assert.ok(file !== undefined, `LevelDB keeps a ${victim} file`)
      await writeFile(join(index, file), 'garbage\0')
      const after = await Cache.open({ dir, nodeId: 'p' })
      t.after(() => after.close())
      for (const [i, body] of bodies.entries()) {
        const hit = await after.get(actions[i] as Uint8Array)
        assert.ok(hit !== undefined && hit !== 'corrupt', `entry ${i} kept`)
        assert.deepEqual(await readFile(hit.diskPath), body)
      }
    })
  }

  it('refuses with GRID_ERR_CACHE_OPEN an index it cannot open for another reason, and leaves it as it is', async (t) => {
    const dir = await tempDir(t)
    const index = join(dir, 'index')
    await writeFile(index, 'not a LevelDB') // not even a directory (as a full disk or permissions also keep it shut)
    await assert.rejects(Cache.open({ dir, nodeId: 'p' }), (err: unknown) => {
      assert.equal(errorCode(err), 'GRID_ERR_CACHE_OPEN')
      assert.match((err as Error).message, /cannot be opened: /)
      return true
    })
    assert.equal(await readFile(index, 'utf8'), 'not a LevelDB', 'nothing moved or removed')
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
    for (const p of puts) await age(p.diskPath, GC_SPARES_RECENT_MS + 60_000) // gc spares blobs written just now
    // touch #0 so it is the most recent; pin #1
    assert.ok(typeof (await cache.get(puts[0]!.action)) === 'object')
    const pinned = new Set([Buffer.from(puts[1]!.outputId).toString('hex')])
    const result = await cache.gc(2000, h => pinned.has(h))
    assert.equal(result.stats.bytes, 2000)
    assert.ok(typeof (await cache.get(puts[0]!.action)) === 'object', 'recently used entry kept')
    assert.ok(typeof (await cache.get(puts[1]!.action)) === 'object', 'pinned entry kept')
    assert.equal(await cache.get(puts[2]!.action), undefined)
    assert.equal(result.removedEntries, 3)
  })

  it('gc spares a blob written in the last GC_SPARES_RECENT_MS: it may be in cmd/go\'s hands, not yet pinned', async (t) => {
    const cache = await Cache.open({ dir: await tempDir(t), nodeId: 'p' })
    t.after(() => cache.close())
    const old = await cache.putBytes(id(), randomBytes(1000))
    const fresh = await cache.putBytes(id(), randomBytes(1000))
    await age(old.diskPath, GC_SPARES_RECENT_MS + 60_000)
    const result = await cache.gc(0)
    assert.equal(result.removedBlobs, 1)
    assert.deepEqual(result.spared, { blobs: 1, bytes: 1000 }, 'the blob left past the size is counted')
    await assert.rejects(stat(old.diskPath))
    await stat(fresh.diskPath)
  })

  it('grid cache gc right after a build filled the disk says that it kept the fresh blobs, and why, instead of only "removed 0"', async (t) => {
    const dir = await tempDir(t)
    const cache = await Cache.open({ dir, nodeId: 'p' })
    await cache.putBytes(id(), randomBytes(3000))
    await cache.close()
    // no node on this socket: the command opens the cache itself
    const r = await run(process.execPath, [GRID_BIN, '--cache', dir, '--control', join(dir, 'none.sock'), 'cache', 'gc', '--max-size', '0'])
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /^removed 0 entries, 0 blobs, 0 B$/m)
    assert.match(r.stdout, /^kept 1 blobs \(2\.9 KiB\) past the size: in use by a running build, or written in the last 10 minutes.*run grid cache gc again once they are older$/m)
  })

  it('a hit or a put and gc\'s removal of the same blob exclude each other', async (t) => {
    const cache = await Cache.open({ dir: await tempDir(t), nodeId: 'p' })
    t.after(() => cache.close())
    const action = id()
    const got = { action, ...(await cache.putBytes(action, randomBytes(1000))) }
    const put = await cache.putBytes(id(), randomBytes(1000))
    // re-put under another action, as the helper indexes a blob it found already in place
    const again = id()
    for (const p of [got, put]) await age(p.diskPath, GC_SPARES_RECENT_MS + 60_000)
    assert.equal(typeof await cache.get(got.action), 'object', 'its stamp taken again after the aging: the next get is a stat')
    const getPin = new Set<string>()
    const putPin = new Set<string>()
    let hit: Promise<unknown> | undefined
    let stored: Promise<unknown> | undefined
    // The pins are asked at the moment of removal; a get and a put of that blob that begin just
    // after gc has chosen it (in the next microtask) find it being removed: a miss, a refused put.
    const result = await cache.gc(0, h => {
      if (h === hex(got.outputId)) queueMicrotask(() => { hit = cache.get(got.action, getPin) })
      if (h === hex(put.outputId)) queueMicrotask(() => { stored = cache.put(again, put.outputId, 1000, undefined, putPin).catch((err: unknown) => errorCode(err)) })
      return getPin.has(h) || putPin.has(h)
    })
    assert.equal(result.removedBlobs, 2)
    assert.equal(await hit, undefined, 'no hit for a blob being removed')
    assert.equal(getPin.size, 0)
    assert.equal(await stored, 'GRID_ERR_CACHE_MISSING_BLOB', 'no entry for a blob being removed')
    assert.equal(putPin.size, 0)
    // begun before gc chose it, a put pins the blob first, and gc spares it
    const kept = await cache.putBytes(id(), randomBytes(1000))
    await age(kept.diskPath, GC_SPARES_RECENT_MS + 60_000)
    const early = new Set<string>()
    const spared = await cache.gc(0, h => {
      if (h === hex(kept.outputId)) void cache.put(id(), kept.outputId, 1000, undefined, early)
      return early.has(h)
    })
    assert.equal(spared.removedBlobs, 0)
    await stat(kept.diskPath)
    assert.equal(await cache.get(again), undefined)
  })

  it('a put of an orphan blob\'s bytes and gc\'s sweep of orphans exclude each other', async (t) => {
    // An orphan (a blob no entry names) is swept once older than its grace; a put of the same
    // bytes (another action made them: the helper finds the blob in place) that began as the sweep
    // asked about its pins went through, pinned it, and handed its path to cmd/go, and the sweep
    // then unlinked it.
    const dir = await tempDir(t)
    const cache = await Cache.open({ dir, nodeId: 'p' })
    t.after(() => cache.close())
    const orphan = async (): Promise<{ outputId: Buffer, path: string }> => {
      const body = randomBytes(1000)
      const outputId = createHash('sha256').update(body).digest()
      const path = join(cache.blobDir, hex(outputId).slice(0, 2), hex(outputId))
      await mkdir(dirname(path), { recursive: true })
      await writeFile(path, body)
      await age(path, 24 * 3600_000)
      return { outputId, path }
    }
    const swept = await orphan()
    const putPin = new Set<string>()
    let stored: Promise<unknown> | undefined
    const result = await cache.gc(0, h => {
      if (h === hex(swept.outputId)) queueMicrotask(() => { stored = cache.put(id(), swept.outputId, 1000, undefined, putPin).catch((err: unknown) => errorCode(err)) })
      return putPin.has(h)
    })
    assert.equal(await stored, 'GRID_ERR_CACHE_MISSING_BLOB', 'no entry for an orphan being removed')
    assert.equal(putPin.size, 0, 'nor a pin: cmd/go is not handed it')
    assert.equal(result.removedBlobs, 1)
    await assert.rejects(stat(swept.path))
    // pinned by a build while the sweep looks at the file (a hit of it that the build counts): spared
    const held = await orphan()
    const buildPin = new Set<string>()
    const kept = await cache.gc(0, h => {
      if (h === hex(held.outputId) && buildPin.size === 0) queueMicrotask(() => buildPin.add(h))
      return buildPin.has(h)
    })
    assert.equal(kept.removedBlobs, 0)
    await stat(held.path)
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
