// A disk that fills up under the cache, and an index removed while the node runs: the index
// cannot be written, what it holds is still served, and it takes writes again once it can.
// Real LevelDB and real files in a temp dir. The full disk is a child process under a file-size
// limit (`ulimit -f`), whose writes past it fail as they would on a full disk, or a directory
// where LevelDB's next table file goes.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, readdir, rm, unlink, utimes, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { Cache } from '@grid/node/server'
import { run, tempDir, waitFor } from '../helpers/index.js'

const id = (): Uint8Array => randomBytes(32)

/** Another node: opens the cache in `argv[4]`, puts an entry, says `ready <ActionID>`, and closes it when its stdin ends. */
const OTHER = `
import { randomBytes } from 'node:crypto'
const [serverUrl, polyfillUrl, dir] = process.argv.slice(2)
await import(polyfillUrl)
const { Cache } = await import(serverUrl)
const cache = await Cache.open({ dir, nodeId: 'other' })
const action = randomBytes(32)
await cache.putBytes(action, randomBytes(64))
process.stdout.write('ready ' + action.toString('hex') + ' \\n')
process.stdin.resume()
process.stdin.on('end', async () => { await cache.close(); process.exit(0) })
`

/**
 * Opens the cache in `argv[4]`, puts entries until the index cannot take one more (the file-size
 * limit), then gets every ActionID of `actions.json`, or with `argv[5]` 'gc' trims the cache to
 * nothing.
 */
const CHILD = `
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
const [serverUrl, polyfillUrl, dir, mode] = process.argv.slice(2)
await import(polyfillUrl)
const { Cache } = await import(serverUrl)
const cache = await Cache.open({ dir, nodeId: 'p' })
let corruptEvents = 0
cache.events.onCorrupt = () => { corruptEvents++ }
let filled = ''
for (let i = 0; i < 100000 && filled === ''; i++) {
  await cache.putBytes(randomBytes(32), randomBytes(64)).catch(err => { filled = err.message })
}
if (mode === 'gc') {
  const gc = await cache.gc(0).then(r => ({ removedBlobs: r.removedBlobs, removedBytes: r.removedBytes }), err => ({ error: err.message }))
  await cache.close()
  process.stdout.write(JSON.stringify({ filled, gc }))
  process.exit(0)
}
const actions = JSON.parse(readFileSync(join(dir, 'actions.json'), 'utf8')).map(h => Buffer.from(h, 'hex'))
const outcomes = { hit: 0, miss: 0, corrupt: 0, rejected: [] }
for (const a of actions) {
  await cache.get(a).then(v => { if (v === undefined) outcomes.miss++; else if (v === 'corrupt') outcomes.corrupt++; else outcomes.hit++ },
    err => { outcomes.rejected.push(err.message) })
}
await cache.close()
process.stdout.write(JSON.stringify({ filled, outcomes, corruptEvents }))
`

/** Runs CHILD on the cache in `dir` under a file-size limit: a disk that fills up as it runs. */
async function onFullDisk (dir: string, mode = 'get'): Promise<{ out: any, stderr: string }> {
  const script = join(dir, 'child.mjs')
  await writeFile(script, CHILD)
  // 512 blocks (256 or 512 KiB by the shell): the index opens, its log then fills within a
  // few thousand puts. Node ignores SIGXFSZ: a write past the limit fails with EFBIG.
  const res = await run('sh', ['-c', 'ulimit -f 512 && exec "$@"', 'sh', process.execPath, script,
    import.meta.resolve('@grid/node/server'), import.meta.resolve('@grid/protocol/polyfill'), dir, mode], { timeoutMs: 60_000 })
  assert.equal(res.code, 0, res.stderr)
  const out = JSON.parse(res.stdout)
  assert.match(out.filled, /File too large|No space/, `the index never filled up, so this proves nothing: ${res.stdout}`)
  return { out, stderr: res.stderr }
}

describe('cache: a full disk', () => {
  it('a get whose index write fails (a full disk) is still a hit, or a miss, never an error that ends the build\'s cache', async (t) => {
    const dir = await tempDir(t)
    const cache = await Cache.open({ dir, nodeId: 'p' })
    const stamped = Array.from({ length: 20 }, () => id())
    const gone = Array.from({ length: 20 }, () => id())
    const paths: string[] = []
    for (const a of stamped) paths.push((await cache.putBytes(a, randomBytes(512))).diskPath)
    const gonePaths: string[] = []
    for (const a of gone) gonePaths.push((await cache.putBytes(a, randomBytes(512))).diskPath)
    await cache.close()
    // A new ctime: each get re-hashes its blob and writes the new stamp. A blob that is gone: the
    // get drops its entry. Both are index writes, which the full disk refuses.
    const now = new Date()
    for (const path of paths) await utimes(path, now, now)
    for (const path of gonePaths) await unlink(path)
    await writeFile(join(dir, 'actions.json'), JSON.stringify([...stamped, ...gone].map(a => Buffer.from(a).toString('hex'))))
    const { out, stderr } = await onFullDisk(dir)
    const detail = `${JSON.stringify(out)}\n${stderr.slice(0, 2000)}`
    assert.deepEqual(out.outcomes, { hit: stamped.length, miss: gone.length, corrupt: 0, rejected: [] }, detail)
    assert.equal(out.corruptEvents, 0, detail)
    assert.match(stderr, /cannot write the cache index/, 'the warning says what failed')
    // with room again, the entries of the blobs that went are dropped, the others served
    const again = await Cache.open({ dir, nodeId: 'p' })
    t.after(() => again.close())
    for (const a of gone) assert.equal(await again.get(a), undefined)
    for (const a of stamped) assert.ok(typeof await again.get(a) === 'object')
  })

  it('grid cache gc frees the space on a full disk, where the index cannot take the removal of entries', async (t) => {
    const dir = await tempDir(t)
    const cache = await Cache.open({ dir, nodeId: 'p' })
    const actions = Array.from({ length: 20 }, () => id())
    const paths: string[] = []
    for (const a of actions) paths.push((await cache.putBytes(a, randomBytes(4096))).diskPath)
    await cache.close()
    const old = new Date(Date.now() - 3_600_000) // past the 10 minutes gc spares
    for (const path of paths) await utimes(path, old, old)
    const { out, stderr } = await onFullDisk(dir, 'gc')
    const detail = `${JSON.stringify(out)}\n${stderr.slice(0, 2000)}`
    assert.equal(out.gc.error, undefined, detail)
    assert.ok(out.gc.removedBlobs >= actions.length && out.gc.removedBytes >= actions.length * 4096, detail)
    for (const path of paths) assert.equal(existsSync(path), false, `${path} is still there`)
    // with room again, the entries left naming the removed blobs are misses
    const again = await Cache.open({ dir, nodeId: 'p' })
    t.after(() => again.close())
    for (const a of actions) assert.equal(await again.get(a), undefined)
  })

  it('an index that failed a table write (a full disk) takes writes again once there is room, without a restart', async (t) => {
    const dir = await tempDir(t)
    const cache = await Cache.open({ dir, nodeId: 'p', healMs: 50 })
    t.after(() => cache.close())
    const body = randomBytes(64)
    const { outputId } = await cache.putBytes(id(), body)
    // LevelDB's next tables cannot be written (a directory has each one's name): the table its
    // full write buffer goes to fails, as on a full disk, and from then on every write fails
    const index = join(dir, 'index')
    const last = Math.max(...(await readdir(index)).map(n => Number.parseInt(n, 10)).filter(n => Number.isInteger(n)))
    const blocked = Array.from({ length: 40 }, (_, i) => join(index, `${String(last + 1 + i).padStart(6, '0')}.ldb`))
    for (const path of blocked) await mkdir(path)
    const kept: Uint8Array[] = []
    let failed: string | undefined
    for (let round = 0; round < 200 && failed === undefined; round++) {
      const actions = Array.from({ length: 500 }, () => id())
      const outcomes = await Promise.allSettled(actions.map(async a => await cache.put(a, outputId, body.length)))
      outcomes.forEach((o, i) => { if (o.status === 'fulfilled') kept.push(actions[i] as Uint8Array); else failed ??= String(o.reason) })
    }
    assert.ok(failed !== undefined, 'the write buffer never went to a table, so this proves nothing')
    // still failing a while later: LevelDB keeps the error
    await new Promise(resolve => setTimeout(resolve, 200))
    await assert.rejects(cache.put(id(), outputId, body.length))
    // room again
    for (const path of blocked) await rm(path, { recursive: true })
    const after = id()
    await waitFor(async () => await cache.put(after, outputId, body.length).then(() => true, () => false), 10_000, () => `the index never took a write again (it failed with ${failed ?? ''})`)
    await cache.close()
    const again = await Cache.open({ dir, nodeId: 'p' })
    t.after(() => again.close())
    assert.ok(typeof await again.get(after) === 'object', 'the entry put once there was room is kept')
    assert.ok(typeof await again.get(kept[0] as Uint8Array) === 'object', 'entries put before the disk filled are kept')
  })

  it('an index removed while the node runs (rm -rf of the cache dir) is started afresh, and what is put then is kept', async (t) => {
    const dir = await tempDir(t)
    const cache = await Cache.open({ dir, nodeId: 'p', healMs: 50 })
    t.after(() => cache.close())
    await rm(dir, { recursive: true, force: true })
    // LevelDB would go on in files that are gone, until it needs a new one; what it held is
    // lost at the next start either way
    await waitFor(() => existsSync(join(dir, 'index', 'CURRENT')), 10_000, () => 'a new index in place of the removed one')
    const after = id()
    await cache.putBytes(after, randomBytes(100))
    await cache.close()
    const again = await Cache.open({ dir, nodeId: 'p' })
    t.after(() => again.close())
    assert.ok(typeof await again.get(after) === 'object', 'an entry put after the removal is kept')
  })

  it('an index removed and replaced by another node\'s while this one runs: this one stops writing there, and takes that one over once it is free', async (t) => {
    const dir = await tempDir(t)
    // healed by hand: the other node must open its cache before this one looks
    const cache = await Cache.open({ dir, nodeId: 'p', healMs: 3_600_000 })
    t.after(() => cache.close())
    await cache.putBytes(id(), randomBytes(64))
    await rm(dir, { recursive: true, force: true })
    // another node (a build's, no daemon answering) makes a cache there and holds it
    const script = join(await tempDir(t), 'other.mjs')
    await writeFile(script, OTHER)
    const other = spawn(process.execPath, [script, import.meta.resolve('@grid/node/server'), import.meta.resolve('@grid/protocol/polyfill'), dir], { stdio: ['pipe', 'pipe', 'inherit'] })
    t.after(() => { other.kill() })
    let said = ''
    other.stdout.on('data', (b: Buffer) => { said += b.toString() })
    await waitFor(() => said.includes('ready'), 20_000, () => 'the other node to open its cache')
    const theirs = Buffer.from(said.split(' ')[1] as string, 'hex')
    // ours no longer writes into its directory
    await cache.heal()
    await assert.rejects(cache.putBytes(id(), randomBytes(64)), 'this index takes no more writes in the other node\'s directory')
    other.stdin.end() // the other node closes its cache and exits
    await new Promise(resolve => other.once('exit', resolve))
    const after = id()
    assert.equal(await cache.heal(), true, 'this node takes the index over')
    // its absent filter holds the other node's entries too, or helpers would answer them as misses
    const absent = (): { mayHold: (id: Uint8Array) => boolean } | undefined => (cache as unknown as { absent?: { mayHold: (id: Uint8Array) => boolean } }).absent
    await waitFor(() => absent()?.mayHold(theirs) === true, 10_000, () => 'the absent filter to take in the other node\'s entry')
    await cache.putBytes(after, randomBytes(64))
    await cache.close()
    const again = await Cache.open({ dir, nodeId: 'p' })
    t.after(() => again.close())
    assert.ok(typeof await again.get(theirs) === 'object', 'the other node\'s entry is intact')
    assert.ok(typeof await again.get(after) === 'object', 'the entry put once this node took the index over is kept')
  })
})
