// A blob the cache cannot read is not a corrupt one: only bytes that fail their hash are deleted.
// Real LevelDB and real files in a temp dir; the EMFILE case in a child under `ulimit -n`.
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { mkdir, readFile, rename, rm, stat, symlink, unlink, utimes, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { Cache } from '@grid/node/server'
import { run, tempDir } from '../helpers/index.js'

const id = (): Uint8Array => randomBytes(32)
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')

/** Opens the cache in `argv[4]`, gets every ActionID of `actions.json` at once, then one by one. */
const CHILD = `
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
const [serverUrl, polyfillUrl, dir] = process.argv.slice(2)
await import(polyfillUrl)
const { Cache } = await import(serverUrl)
const cache = await Cache.open({ dir, nodeId: 'p' })
let corruptEvents = 0
cache.events.onCorrupt = () => { corruptEvents++ }
const actions = JSON.parse(readFileSync(join(dir, 'actions.json'), 'utf8')).map(h => Buffer.from(h, 'hex'))
const tally = (outcomes) => {
  const t = { hit: 0, miss: 0, corrupt: 0, rejected: 0 }
  for (const o of outcomes) {
    if (o.status === 'rejected') t.rejected++
    else if (o.value === undefined) t.miss++
    else if (o.value === 'corrupt') t.corrupt++
    else t.hit++
  }
  return t
}
const together = tally(await Promise.allSettled(actions.map(a => cache.get(a))))
const oneByOne = []
for (const a of actions) oneByOne.push(await cache.get(a).then(value => ({ status: 'fulfilled', value }), () => ({ status: 'rejected' })))
const after = tally(oneByOne)
await cache.close()
process.stdout.write(JSON.stringify({ together, after, corruptEvents }))
`

describe('cache: blobs it cannot read', () => {
  it('a blob that cannot be opened for its re-hash (EMFILE under ulimit -n) is a miss: not deleted, not corrupt, served by the next get', async (t) => {
    const dir = await tempDir(t)
    const cache = await Cache.open({ dir, nodeId: 'p' })
    const n = 400
    const bodies = Array.from({ length: n }, () => randomBytes(1024))
    const actions = bodies.map(() => id())
    const paths: string[] = []
    for (const [i, body] of bodies.entries()) paths.push((await cache.putBytes(actions[i] as Uint8Array, body)).diskPath)
    await cache.close()
    // a new ctime on every blob: each get must re-hash its blob, all at once, one fd each
    const now = new Date()
    for (const path of paths) await utimes(path, now, now)
    await writeFile(join(dir, 'actions.json'), JSON.stringify(actions.map(a => Buffer.from(a).toString('hex'))))
    const script = join(dir, 'child.mjs')
    await writeFile(script, CHILD)
    // As the audit found it: 400 re-hashes at once in a daemon under \`ulimit -n 120\`. Node and
    // the open index hold ~25 descriptors (loading grid's modules needs ~80 for a moment).
    const res = await run('sh', ['-c', 'ulimit -n 128 && exec "$@"', 'sh', process.execPath, script,
      import.meta.resolve('@grid/node/server'), import.meta.resolve('@grid/protocol/polyfill'), dir], { timeoutMs: 60_000 })
    assert.equal(res.code, 0, res.stderr)
    const out = JSON.parse(res.stdout) as { together: Record<string, number>, after: Record<string, number>, corruptEvents: number }
    const detail = `${JSON.stringify(out)}\n${res.stderr.slice(0, 2000)}`
    assert.ok(out.together.hit !== n, `the descriptor limit never bit, so this proves nothing: ${detail}`)
    assert.equal(out.together.corrupt, 0, `unreadable blobs reported corrupt: ${detail}`)
    assert.equal(out.together.rejected, 0, detail)
    assert.equal(out.corruptEvents, 0, detail)
    assert.match(res.stderr, /EMFILE/, 'the warning names the errno')
    assert.deepEqual(out.after, { hit: n, miss: 0, corrupt: 0, rejected: 0 }, `entries lost: ${detail}`)
    for (const [i, path] of paths.entries()) assert.equal(sha(await readFile(path)), sha(bodies[i] as Buffer), `blob ${i} kept intact`)
  })

  it('a blob path whose stat fails (ELOOP) is a miss, and the entry is kept for when it reads again', async (t) => {
    const cache = await Cache.open({ dir: await tempDir(t), nodeId: 'p' })
    t.after(() => cache.close())
    let corrupt = 0
    cache.events.onCorrupt = () => { corrupt++ }
    const action = id()
    const body = randomBytes(500)
    const { diskPath } = await cache.putBytes(action, body)
    await rename(diskPath, `${diskPath}.aside`)
    await symlink(diskPath, diskPath) // a link to itself: every stat and open fails with ELOOP
    assert.equal(await cache.get(action), undefined)
    assert.equal(corrupt, 0)
    await unlink(diskPath)
    await rename(`${diskPath}.aside`, diskPath)
    const hit = await cache.get(action)
    assert.ok(hit !== undefined && hit !== 'corrupt', 'the entry outlived the failed read')
    assert.deepEqual(await readFile(hit.diskPath), body)
  })

  it('a directory in place of a blob is a miss on get: its entry goes, nothing is counted corrupt or removed', async (t) => {
    const dir = await tempDir(t)
    const cache = await Cache.open({ dir, nodeId: 'p' })
    t.after(() => cache.close())
    let corrupt = 0
    cache.events.onCorrupt = () => { corrupt++ }
    // a body as large as an empty directory, so the size check alone does not catch it
    const probe = join(dir, 'probe')
    await mkdir(probe)
    const size = (await stat(probe)).size
    const action = id()
    const { diskPath } = await cache.putBytes(action, randomBytes(size))
    await rm(diskPath)
    await mkdir(diskPath)
    assert.equal(await cache.get(action), undefined)
    assert.equal(corrupt, 0)
    assert.ok((await stat(diskPath)).isDirectory(), 'left as it was')
    assert.equal((await cache.stats()).entries, 0, 'the entry naming no usable blob is dropped')
  })

  it('verify carries on past a directory in place of a blob: drops its entry, keeps the good ones, removes the corrupt one', async (t) => {
    const cache = await Cache.open({ dir: await tempDir(t), nodeId: 'p' })
    t.after(() => cache.close())
    const good = [id(), id()]
    const goodPuts = await Promise.all(good.map(async a => await cache.putBytes(a, randomBytes(300))))
    const bad = await cache.putBytes(id(), randomBytes(300))
    await writeFile(bad.diskPath, randomBytes(300))
    const dirBlob = await cache.putBytes(id(), randomBytes(300))
    await rm(dirBlob.diskPath)
    await mkdir(dirBlob.diskPath)
    const result = await cache.verify()
    assert.deepEqual(result, { checked: 3, corrupt: 1, missing: 2, removedEntries: 2 })
    for (const [i, a] of good.entries()) {
      const hit = await cache.get(a)
      assert.ok(hit !== undefined && hit !== 'corrupt', `good entry ${i} kept`)
      assert.equal(hit.diskPath, goodPuts[i]?.diskPath)
    }
    await assert.rejects(stat(bad.diskPath))
    assert.ok((await stat(dirBlob.diskPath)).isDirectory(), 'not a blob, not ours to delete')
    assert.equal((await cache.stats()).entries, 2)
  })

  it('verify leaves a blob it cannot read (ELOOP) and its entry alone, and counts it unreadable', async (t) => {
    const cache = await Cache.open({ dir: await tempDir(t), nodeId: 'p' })
    t.after(() => cache.close())
    const action = id()
    const body = randomBytes(300)
    const { diskPath } = await cache.putBytes(action, body)
    const otherAction = id()
    await cache.putBytes(otherAction, randomBytes(300))
    await rename(diskPath, `${diskPath}.aside`)
    await symlink(diskPath, diskPath)
    const result = await cache.verify()
    assert.deepEqual(result, { checked: 1, corrupt: 0, missing: 0, removedEntries: 0, unreadable: 1 })
    await unlink(diskPath)
    await rename(`${diskPath}.aside`, diskPath)
    const hit = await cache.get(action)
    assert.ok(hit !== undefined && hit !== 'corrupt', 'the entry outlived the failed read')
    assert.deepEqual(await readFile(hit.diskPath), body)
    assert.equal(typeof (await cache.get(otherAction)), 'object', 'the other entry kept')
  })
})
