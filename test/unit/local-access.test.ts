// Other users of a shared workstation: what grid makes on disk is its user's alone, and what it
// finds there (a cache dir, a control socket) must be its user's own. Real files, a real Unix
// socket and the real CLI; cases that need a file of another user's run as root only (chown).
import assert from 'node:assert/strict'
import { lstatSync } from 'node:fs'
import { chmod, chown, lstat, mkdir, readFile, stat, symlink, unlink, writeFile } from 'node:fs/promises'
import { Server } from 'node:net'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { ControlClient, prepareCacheDir } from '@grid/node'
import { ControlServer } from '@grid/node/server'
import { errorCode } from '@grid/protocol'
import { GRID_BIN, defer, run, tempDir } from '../helpers/index.js'

const isRoot = process.getuid?.() === 0
const NOBODY = 65534

/** Runs `fn` under `mask`, the umask a user's login gave, and restores the test's. */
async function underUmask<T> (mask: number, fn: () => Promise<T>): Promise<T> {
  const old = process.umask(mask)
  try { return await fn() } finally { process.umask(old) }
}

const modeOf = async (path: string): Promise<number> => (await lstat(path)).mode & 0o777

describe('local access: other users of the machine', () => {
  it('makes the cache dir 0700 under a umask of 0002, and tightens an existing one of ours', async (t) => {
    const dir = await tempDir(t)
    const fresh = join(dir, 'fresh', 'grid')
    await underUmask(0o002, async () => { await prepareCacheDir(fresh) })
    assert.equal(await modeOf(fresh), 0o700, 'a new cache dir is private: it holds the shim cmd/go runs and the code of every build')
    const old = join(dir, 'old')
    await mkdir(old)
    await chmod(old, 0o775)
    await writeFile(join(old, 'keep'), 'x')
    await prepareCacheDir(old)
    assert.equal(await modeOf(old), 0o700, 'an old group-writable cache dir is made private')
    assert.equal((await stat(join(old, 'keep'))).isFile(), true, 'and loses nothing')
  })

  it('refuses a cache dir that another user owns', { skip: !isRoot && 'needs root, to give a dir to another user' }, async (t) => {
    const dir = join(await tempDir(t), 'theirs')
    await mkdir(dir, { mode: 0o777 })
    await chmod(dir, 0o777)
    await chown(dir, NOBODY, NOBODY)
    await assert.rejects(prepareCacheDir(dir), (err: Error) => errorCode(err) === 'GRID_ERR_CACHE_OPEN' && /another user/.test(err.message))
  })

  it('binds the control socket 0600: no moment in which another user can connect', async (t) => {
    const path = join(await tempDir(t), 's.sock')
    // the socket's mode right after bind(2), before anything else the server does
    let atBind: number | undefined
    const listen = Server.prototype.listen
    Server.prototype.listen = function (this: Server, ...args: unknown[]) {
      const result = (listen as (...a: unknown[]) => Server).apply(this, args)
      if (args[0] === path) atBind = lstatSync(path).mode & 0o777
      return result
    } as typeof listen
    defer(t, () => { Server.prototype.listen = listen })
    const server = new ControlServer({ path, handler: async () => { throw new Error('no requests here') } })
    await underUmask(0o002, async () => { await server.start() })
    defer(t, async () => { await server.stop() })
    assert.equal(atBind, 0o600)
  })

  it('does not talk to a control socket another user made', { skip: !isRoot && 'needs root, to give a socket to another user' }, async (t) => {
    const path = join(await tempDir(t), 'theirs.sock')
    const server = new ControlServer({ path, handler: async () => { throw new Error('no requests here') } })
    await server.start()
    defer(t, async () => { await server.stop() })
    await chown(path, NOBODY, NOBODY)
    await assert.rejects(ControlClient.connect(path), (err: Error) => errorCode(err) === 'GRID_ERR_SOCKET_PATH' && /another user/.test(err.message))
  })

  it('grid init --force writes the new swarm key 0600 whatever the old file\'s mode, and not through a symlink', async (t) => {
    const dir = await tempDir(t)
    const key = join(dir, 'swarm.key')
    assert.equal((await run(process.execPath, [GRID_BIN, 'init', '--swarm-key', key])).code, 0)
    await chmod(key, 0o644) // copied in by hand, say
    const r = await run(process.execPath, [GRID_BIN, 'init', '--swarm-key', key, '--force'])
    assert.equal(r.code, 0, r.stderr)
    assert.equal(await modeOf(key), 0o600)
    const other = join(dir, 'other')
    await writeFile(other, 'not a key')
    await unlink(key)
    await symlink(other, key)
    assert.equal((await run(process.execPath, [GRID_BIN, 'init', '--swarm-key', key, '--force'])).code, 0)
    assert.equal(await readFile(other, 'utf8'), 'not a key', 'the file a symlink at the key\'s path names is left alone')
    assert.equal((await lstat(key)).isFile(), true)
    assert.equal(await modeOf(key), 0o600)
  })
})
