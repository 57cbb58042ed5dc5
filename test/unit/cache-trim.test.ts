// --cache-max on a node that runs for weeks: the trims its puts set off. A real node (no mesh)
// on a real Unix socket, its cache on real LevelDB and real files in a temp dir; the entries
// reach it as the cache helper sends them (blobs in place, then `cache-index`).
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { mkdir, utimes, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { describe, it } from 'node:test'
import { ControlClient } from '@grid/node'
import { Cache, GC_SPARES_RECENT_MS, GridNode, Trimmer } from '@grid/node/server'
import { defer, tempDir, waitFor } from '../helpers/index.js'

/** Writes `n` blobs of `size` bytes as the helper does, and returns their index records (INDEX_RECORD_BYTES each). */
async function blobs (cacheDir: string, n: number, size: number): Promise<{ records: Buffer, paths: string[] }> {
  const records = Buffer.alloc(72 * n)
  const paths: string[] = []
  for (let i = 0; i < n; i++) {
    const body = randomBytes(size)
    const output = createHash('sha256').update(body).digest()
    const path = join(cacheDir, 'blobs', output.toString('hex').slice(0, 2), output.toString('hex'))
    await mkdir(dirname(path), { recursive: true })
    await writeFile(path, body)
    paths.push(path)
    randomBytes(32).copy(records, 72 * i)
    output.copy(records, 72 * i + 32)
    records.writeBigUInt64BE(BigInt(size), 72 * i + 64)
  }
  return { records, paths }
}

/** Counts the cache's trims (gc) and whether any trim, or the size check before it, is under way. */
function watchTrims (cache: Cache): { gcs: () => number, busy: () => boolean } {
  let gcs = 0
  let busy = 0
  const track = <A extends unknown[], R>(fn: (...args: A) => Promise<R>) => async (...args: A): Promise<R> => {
    busy++
    try { return await fn(...args) } finally { busy-- }
  }
  const gc = cache.gc.bind(cache)
  cache.gc = track(async (...args: Parameters<Cache['gc']>) => { gcs++; return await gc(...args) })
  cache.approxBytes = track(cache.approxBytes.bind(cache))
  return { gcs: () => gcs, busy: () => busy > 0 }
}

describe('--cache-max', () => {
  it('a cache that builds\' recent blobs keep over the limit is not trimmed again after every put', async (t) => {
    const dir = await tempDir(t)
    const node = new GridNode({ cacheDir: dir, control: join(dir, 'grid.sock'), mode: 'daemon', cacheMax: 20_000 })
    await node.start()
    defer(t, async () => { await node.stop() })
    const trims = watchTrims(node.cache)
    const client = await ControlClient.connect(join(dir, 'grid.sock'))
    defer(t, () => { client.close() })
    // a cold build's puts: 40 batches of fresh blobs, 4 KB each, far past the limit; all are
    // spared (written in the last GC_SPARES_RECENT_MS), so no trim can take any of them
    let stored = 0
    for (let batch = 0; batch < 40; batch++) {
      const { records } = await blobs(dir, 8, 4096)
      stored += (await client.request({ type: 'cache-index', build: '', entries: records })).stored
      await waitFor(() => !trims.busy(), 10_000, () => 'the trim to end')
    }
    assert.equal(stored, 320, 'every put is indexed')
    assert.equal((await node.cache.stats()).entries, 320)
    // each trim scans the whole index and stats every blob it spares: one, not one per put
    assert.equal(trims.gcs(), 1, `trims run for 40 batches of puts that no trim could take: ${trims.gcs()}`)
  })

  it('trims again once the blobs a trim had to spare can go', async (t) => {
    const dir = await tempDir(t)
    const cache = await Cache.open({ dir, nodeId: 'p' })
    t.after(() => cache.close())
    const trims = watchTrims(cache)
    const init = { cache, maxBytes: 20_000, pinned: () => false, retrimMs: 60_000 }
    const trimmer = new Trimmer(init)
    const { records, paths } = await blobs(dir, 16, 4096)
    for (let at = 0; at < records.length; at += 72) {
      await cache.put(records.subarray(at, at + 32), records.subarray(at + 32, at + 64), 4096)
    }
    trimmer.maybe()
    await trimmer.settled()
    trimmer.maybe()
    await trimmer.settled()
    assert.equal(trims.gcs(), 1, 'held off while nothing could have changed')
    assert.equal((await cache.stats()).blobs, 16, 'the recent blobs were spared')
    // the blobs age past GC_SPARES_RECENT_MS, and the hold-off ends
    const then = new Date(Date.now() - GC_SPARES_RECENT_MS - 60_000)
    for (const p of paths) await utimes(p, then, then)
    init.retrimMs = 0
    trimmer.maybe()
    await trimmer.settled()
    assert.equal(trims.gcs(), 2)
    const left = await cache.stats()
    assert.ok(left.bytes <= 18_000, `trimmed to 90 % of the limit: ${left.bytes} bytes left`)
  })
})
