// The node's compile spawner (packages/node/src/worker/spawner.ts, packages/node/shim/spawner.go):
// the real shim binary built with the real go, real children, and the pool's fallback to Node's
// own spawn when the spawner is gone.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { detectGo, ensureShim } from '@grid/node'
import { LocalPool, Spawner, SpawnerGone } from '@grid/node/server'
import { defer, processRunning, tempDir, waitFor } from '../helpers/index.js'

const linux = process.platform === 'linux'
const env = { PATH: process.env.PATH ?? '/usr/bin:/bin' }

describe('compile spawner', { skip: linux ? false : 'the node uses it on Linux only' }, () => {
  let binary = ''
  const shimCache = mkdtempSync(join(tmpdir(), 'grid-spawner-shim-'))
  after(() => { rmSync(shimCache, { recursive: true, force: true }) })
  before(async () => { binary = await ensureShim(shimCache, await detectGo()) })

  async function started (t: Parameters<typeof defer>[0]): Promise<Spawner> {
    const spawner = await Spawner.start(binary)
    defer(t, async () => { await spawner.close() })
    return spawner
  }

  it('runs a command in its directory and environment: merged output in order, exit code, output cut at the cap', async (t) => {
    const dir = await tempDir(t, 'grid-spawner')
    const spawner = await started(t)
    const ran = await spawner.run('/bin/sh', ['-c', 'echo out; echo err >&2; pwd; echo "$X"; exit 3'], { cwd: dir, env: { ...env, X: 'y' }, outputCap: 1 << 20 })
    assert.deepEqual({ ...ran, output: ran.output.toString() }, { exitCode: 3, signal: null, output: `out\nerr\n${dir}\ny\n` })
    const capped = await spawner.run('/bin/sh', ['-c', 'head -c 100000 /dev/zero; echo done >&2'], { cwd: dir, env, outputCap: 1000 })
    assert.equal(capped.exitCode, 0)
    assert.equal(capped.output.length, 1000, 'the first 1000 bytes, and the child ran to its end')
    const both = await Promise.all([1, 2, 3].map(async n => await spawner.run('/bin/sh', ['-c', `sleep 0.${4 - n}; echo ${n}`], { cwd: dir, env, outputCap: 100 })))
    assert.deepEqual(both.map(r => r.output.toString()), ['1\n', '2\n', '3\n'], 'concurrent runs each get their own answer')
  })

  it('an aborted run is ended by a signal; a command that cannot start is an error and the spawner goes on', async (t) => {
    const dir = await tempDir(t, 'grid-spawner')
    const spawner = await started(t)
    const abort = new AbortController()
    const sleeping = spawner.run('/bin/sleep', ['30'], { cwd: dir, env, outputCap: 100 }, abort.signal)
    setTimeout(() => { abort.abort() }, 200)
    const ended = await sleeping
    assert.equal(ended.signal, 'terminated')
    await assert.rejects(spawner.run(join(dir, 'missing'), [], { cwd: dir, env, outputCap: 100 }),
      (err: Error) => !(err instanceof SpawnerGone) && /no such file/.test(err.message))
    assert.equal((await spawner.run('/bin/true', [], { cwd: dir, env, outputCap: 100 })).exitCode, 0)
    assert.equal(spawner.alive, true)
  })

  it('a stop signal to the node\'s whole process group (systemd\'s stop, Ctrl-C, a hang-up) leaves the spawner to the node, and its children to the default action', async (t) => {
    // Regression: the spawner died of the group's SIGTERM before the node closed it, and every
    // `systemctl stop` or `scripts/lab stop` logged "the compile spawner stopped" as a failure.
    const dir = await tempDir(t, 'grid-spawner')
    const spawner = await started(t)
    // One answer first: the spawner has started running, as it has long before any stop.
    assert.equal((await spawner.run('/bin/true', [], { cwd: dir, env, outputCap: 100 })).exitCode, 0)
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
      process.kill(spawner.pid as number, signal)
      // A signal is acted on before the process runs on, so a spawner it killed cannot answer.
      assert.equal((await spawner.run('/bin/true', [], { cwd: dir, env, outputCap: 100 })).exitCode, 0, `after ${signal}`)
    }
    assert.equal(spawner.alive, true)
    const child = await spawner.run('/bin/sh', ['-c', 'kill -TERM $$; exit 0'], { cwd: dir, env, outputCap: 100 })
    assert.equal(child.signal, 'terminated', 'a child inherits no ignored SIGTERM')
  })

  it('a spawner killed mid-compile takes its child with it, and the pool then compiles from Node', async (t) => {
    const dir = await tempDir(t, 'grid-spawner')
    const spawner = await started(t)
    const pidFile = join(dir, 'child.pid')
    const orphan = spawner.run('/bin/sh', ['-c', `echo $$ > ${pidFile}; exec sleep 30`], { cwd: dir, env, outputCap: 100 })
    await waitFor(async () => existsSync(pidFile) && (await readFile(pidFile, 'utf8')).endsWith('\n'), 10_000, () => 'the child to start')
    const child = Number(await readFile(pidFile, 'utf8'))
    assert.equal(await processRunning(child), true)
    process.kill(spawner.pid as number, 'SIGKILL')
    await assert.rejects(orphan, SpawnerGone)
    await waitFor(async () => !(await processRunning(child)), 10_000, () => 'the child to be killed with its spawner')
    assert.equal(spawner.alive, false)

    await writeFile(join(dir, 'x.go'), 'package x\n\nfunc F() int { return 1 }\n')
    const tool = join(execFileSync('go', ['env', 'GOTOOLDIR'], { encoding: 'utf8' }).trim(), 'compile')
    const pool = new LocalPool({ slots: 1 })
    pool.spawner = spawner
    const compiled = await pool.run({ tool, args: ['-o', join(dir, 'x.a'), '-p', 'x', 'x.go'], cwd: dir, env: {} })
    assert.equal(compiled.exitCode, 0, compiled.output.toString())
    assert.ok((await readFile(join(dir, 'x.a'))).length > 0)
  })

  it('the pool runs compiles through the spawner: a compile error comes back as cmd/go would show it, and the memory cap holds', async (t) => {
    const dir = await tempDir(t, 'grid-spawner')
    const spawner = await started(t)
    await writeFile(join(dir, 'x.go'), 'package x\n\nfunc F() int { return "no" }\n')
    const tool = join(execFileSync('go', ['env', 'GOTOOLDIR'], { encoding: 'utf8' }).trim(), 'compile')
    const pool = new LocalPool({ slots: 1 })
    pool.spawner = spawner
    const [code, here] = execFileSync('/bin/sh', ['-c', `cd ${dir} && ${tool} -o x.a -p x x.go > out 2>&1; echo $?; cat out`], { encoding: 'utf8' }).split(/\n(.*)/s)
    const failed = await pool.run({ tool, args: ['-o', join(dir, 'x.a'), '-p', 'x', 'x.go'], cwd: dir, env: {}, memoryBytes: 4 * 1024 ** 3, nice: 5 })
    assert.notEqual(failed.exitCode, 0)
    assert.equal(failed.exitCode, Number(code))
    assert.equal(failed.output.toString(), here ?? '')
    assert.match(here ?? '', /cannot use "no"/)
    const starved = await pool.run({ tool, args: ['-o', join(dir, 'x.a'), '-p', 'x', 'x.go'], cwd: dir, env: {}, memoryBytes: 256 * 1024 ** 2 })
    assert.notEqual(starved.exitCode, 0, 'the address-space cap holds through the spawner too')
    assert.doesNotMatch(starved.output.toString(), /cannot use "no"/, 'it failed before compiling')
    assert.equal(spawner.alive, true, 'the pool used the spawner, which is still running')
  })
})
