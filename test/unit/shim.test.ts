// The Go shim's own unit tests (msgpack codec, frame caps, flag classification) run with the
// real go, so CI covers the project's only Go code too; and the shim's builds in the cache dir.
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { chmod, mkdir, readdir, readFile, stat, utimes, writeFile } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { it } from 'node:test'
import { ROOT, run, tempDir } from '../helpers/index.js'

const DAY = 86_400_000

it('go vet and go test pass for the shim', async () => {
  const cwd = join(ROOT, 'packages/node/shim')
  const env: NodeJS.ProcessEnv = { ...process.env, GOFLAGS: '-buildvcs=false', GOWORK: 'off' }
  delete env.GOCACHEPROG
  const vet = await run('go', ['vet', '.'], { cwd, env })
  assert.equal(vet.code, 0, vet.stderr)
  const test = await run('go', ['test', '-count=1', '.'], { cwd, env })
  assert.equal(test.code, 0, test.stdout + test.stderr)
  assert.match(test.stdout, /^ok\s/m)
})

it('marks the shim used at each use, and a new build removes other keys unused for 30 days', async (t) => {
  const { detectGo, ensureShim, SHIM_UNUSED_MS } = await import('@grid/node')
  const cacheDir = await tempDir(t, 'shim-prune')
  const shimDir = join(cacheDir, 'shim')
  const made = async (name: string, ageMs: number): Promise<string> => {
    const dir = join(shimDir, name)
    await mkdir(dir, { recursive: true })
    await writeFile(join(dir, 'grid-shim'), 'an old build')
    const then = new Date(Date.now() - ageMs)
    await utimes(dir, then, then)
    return dir
  }
  const unused = await made('00000000deadbeef', SHIM_UNUSED_MS + DAY)
  const recent = await made('11111111deadbeef', SHIM_UNUSED_MS - DAY)
  const crashed = await made('build-AbCdEf', 2 * 3_600_000)
  const building = await made('build-GhIjKl', 60_000)

  const binary = await ensureShim(cacheDir, await detectGo())
  assert.deepEqual((await readdir(shimDir)).sort(), [basename(dirname(binary)), '11111111deadbeef', 'build-GhIjKl'].sort())
  assert.equal(existsSync(unused) || existsSync(crashed), false)
  assert.equal(existsSync(recent) && existsSync(building), true)

  const then = new Date(Date.now() - SHIM_UNUSED_MS - DAY)
  await utimes(dirname(binary), then, then)
  assert.equal(await ensureShim(cacheDir, await detectGo()), binary)
  assert.ok(Date.now() - (await stat(dirname(binary))).mtimeMs < DAY, 'a use marks the key used')
})

it('is built anew where another user could have replaced it (a cache dir an older grid left group-writable), and never group-writable itself', async (t) => {
  const { detectGo, ensureShim } = await import('@grid/node')
  const cacheDir = await tempDir(t, 'shim-tamper')
  const go = await detectGo()
  const old = process.umask(0o002) // a umask that makes new files group-writable
  try {
    const binary = await ensureShim(cacheDir, go)
    assert.equal((await stat(binary)).mode & 0o022, 0, 'the shim is not group-writable under umask 0002')
    assert.equal(await ensureShim(cacheDir, go), binary)
    await writeFile(binary, '#!/bin/sh\necho planted\n')
    await chmod(dirname(binary), 0o775)
    assert.equal(await ensureShim(cacheDir, go), binary)
    assert.notEqual((await readFile(binary, 'utf8')).slice(0, 9), '#!/bin/sh', 'the planted shim was replaced by a build')
    assert.equal((await stat(dirname(binary))).mode & 0o022, 0)
  } finally {
    process.umask(old)
  }
})

it('is built in GOTMPDIR, where go makes its own temp files, when TMPDIR is not a directory', async (t) => {
  const { detectGo, ensureShim } = await import('@grid/node')
  const cacheDir = await tempDir(t, 'shim-tmpdir')
  const notDir = join(cacheDir, 'not-a-dir')
  await writeFile(notDir, 'a file')
  const goTmp = join(cacheDir, 'gotmp')
  await mkdir(goTmp)
  const saved = { TMPDIR: process.env.TMPDIR, GOTMPDIR: process.env.GOTMPDIR }
  t.after(() => { for (const [k, v] of Object.entries(saved)) { if (v === undefined) delete process.env[k]; else process.env[k] = v } })
  const go = await detectGo()
  process.env.TMPDIR = notDir
  process.env.GOTMPDIR = goTmp
  const binary = await ensureShim(cacheDir, go)
  const res = await run(binary, ['cacheprog'], { env: { ...process.env, GRID_SOCKET: '' }, timeoutMs: 10_000 })
  assert.match(res.stdout, /KnownCommands/, `the shim runs: ${res.stdout}${res.stderr}`)
  assert.deepEqual((await readdir(join(cacheDir, 'shim'))).filter(n => n.startsWith('build-')), [], 'no temp dir left in the cache')
  assert.deepEqual(await readdir(goTmp), [], 'nor in GOTMPDIR')
})
