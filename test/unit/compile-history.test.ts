// The compile-time history (and the build's measured critical path) learn only from compiles
// that compiled. A real node on a real Unix socket, the real shim and the real Go compiler:
// before, a compile the shim became was timed by its connection closing, whatever ended it, so
// a failed compile or one killed 30 ms in made a package that takes seconds look tiny to the
// next build (kept local, ranked last). The same went for a `compile-done` with a failure, and
// for a failed compile the node ran itself.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { ControlClient, detectGo, ensureShim } from '@grid/node'
import { GridNode } from '@grid/node/server'
import type { BuildStats } from '@grid/protocol'
import { bigPackage, defer, run, tempDir, waitFor, type RunResult } from '../helpers/index.js'

/** The history the node saved (read after it stopped). */
async function savedHistory (cacheDir: string): Promise<Record<string, number>> {
  return (JSON.parse(await readFile(join(cacheDir, 'history.json'), 'utf8')) as { packages: Record<string, number> }).packages
}

/** A node with two slots and a build open on it. */
async function nodeWithBuild (t: Parameters<typeof tempDir>[0]): Promise<{ dir: string, node: GridNode, client: ControlClient, build: string, compiler: string }> {
  const dir = await tempDir(t, 'hist')
  const node = new GridNode({ cacheDir: join(dir, 'cache'), control: join(dir, 'g.sock'), mode: 'daemon', slots: 2 })
  await node.start()
  defer(t, async () => { await node.stop() })
  const client = await ControlClient.connect(node.control)
  defer(t, () => { client.close() })
  const { build } = await client.request({ type: 'build-begin', command: ['go', 'build', './...'], cwd: dir })
  const compiler = join((await run('go', ['env', 'GOTOOLDIR'])).stdout.trim(), 'compile')
  return { dir, node, client, build, compiler }
}

describe('compile-time history', () => {
  it('a compile the shim became counts only when it wrote its output: not when it failed, nor when it was interrupted', async (t) => {
    const { dir, node, client, build, compiler } = await nodeWithBuild(t)
    const shim = await ensureShim(node.cacheDir, await detectGo())
    await client.request({ type: 'build-graph', build, packages: ['good', 'bad', 'big'].map(p => ({ p, i: [], b: 1000 })) })
    for (const p of ['good', 'bad', 'big']) await mkdir(join(dir, p, 'b001'), { recursive: true })
    await writeFile(join(dir, 'good', 'good.go'), 'package good\n\nfunc F() int { return 1 }\n')
    await writeFile(join(dir, 'bad', 'bad.go'), 'package bad\n\nfunc F( {\n')
    await writeFile(join(dir, 'big', 'big.go'), bigPackage())
    // as cmd/go runs it under -toolexec, with -o relative to the compile's directory
    const shimArgs = (p: string): string[] => [compiler, '-o', 'b001/_pkg_.a', '-p', p, '-pack', '-c=1', `${p}.go`]
    const env = (p: string): NodeJS.ProcessEnv => ({ ...process.env, GRID_SOCKET: node.control, GRID_BUILD: build, TOOLEXEC_IMPORTPATH: p })

    const good = await run(shim, shimArgs('good'), { cwd: join(dir, 'good'), env: env('good') })
    assert.equal(good.code, 0, good.stderr)
    const bad = await run(shim, shimArgs('bad'), { cwd: join(dir, 'bad'), env: env('bad') })
    assert.equal(bad.code, 2, 'the compiler rejects bad.go')
    assert.match(bad.stdout, /syntax error/) // cmd/compile reports on stdout

    // big: interrupted as a Ctrl-C of the build would, once the shim has become the compiler
    const child = spawn(shim, shimArgs('big'), { cwd: join(dir, 'big'), env: env('big'), stdio: 'ignore' })
    defer(t, () => { child.kill('SIGKILL') })
    const ended = new Promise<Pick<RunResult, 'code' | 'signal'>>(resolve => child.on('close', (code, signal) => resolve({ code, signal })))
    const comm = async (): Promise<string> => (await readFile(`/proc/${child.pid as number}/comm`, 'utf8').catch(() => '')).trim()
    await waitFor(async () => node.pool.running === 1 && await comm() === 'compile', 30_000, () => 'the shim granted a slot, and exec\'d the compiler')
    child.kill('SIGINT')
    assert.deepEqual(await ended, { code: null, signal: 'SIGINT' }, 'the compile was interrupted, not finished')
    await waitFor(() => node.pool.running === 0, 10_000, () => 'its slot freed')

    const { stats } = await client.request({ type: 'build-end', build }) as { stats: BuildStats }
    await node.stop()
    const history = await savedHistory(node.cacheDir)
    assert.deepEqual(Object.keys(history), ['good'], 'only the compile that compiled has a time')
    assert.equal(stats.compiles.local, 3)
    assert.equal(stats.compiles.failed, 2, 'the failed compile and the interrupted one')
    // the critical path is made of the same compiles
    assert.ok(stats.compiles.criticalPath !== null)
    assert.ok(Math.abs(stats.compiles.criticalPath.totalMs - (history.good as number)) <= 1, `all compile time is good's: ${JSON.stringify(stats.compiles.criticalPath)}, good ${history.good} ms`)
  })

  it('a compile-done with a failure, and a failed compile the node ran, leave no time; their successes do', async (t) => {
    const { dir, node, build, compiler } = await nodeWithBuild(t)
    await writeFile(join(dir, 'ok.go'), 'package ok\n')
    await writeFile(join(dir, 'bad.go'), 'package bad\n\nfunc F( {\n')
    const compile = async (p: string, source: string, canRunHere: boolean): Promise<{ reply: { type: string, exitCode?: number }, client: ControlClient }> => {
      const client = await ControlClient.connect(node.control) // one slot per connection
      defer(t, () => { client.close() })
      const args = ['-o', join(dir, `${p}.a`), '-p', p, '-pack', join(dir, source)]
      return { reply: await client.request({ type: 'compile', build, tool: compiler, args, cwd: dir, env: {}, importPath: p, canRunHere }), client }
    }
    // granted, and run by a shim that cannot exec, which says how it ended
    for (const [p, exitCode] of [['done-failed', 1], ['done-ok', 0]] as const) {
      const { reply, client } = await compile(p, 'ok.go', true)
      assert.equal(reply.type, 'compile-here')
      await client.request({ type: 'compile-done', build, exitCode })
    }
    // run by the node (a client that cannot run the compiler)
    for (const [p, source, exitCode] of [['ran-failed', 'bad.go', 2], ['ran-ok', 'ok.go', 0]] as const) {
      const { reply } = await compile(p, source, false)
      assert.deepEqual([reply.type, reply.exitCode], ['compile-result', exitCode])
    }
    const control = await ControlClient.connect(node.control)
    defer(t, () => { control.close() })
    const { stats } = await control.request({ type: 'build-end', build }) as { stats: BuildStats }
    await node.stop()
    assert.deepEqual(Object.keys(await savedHistory(node.cacheDir)).sort(), ['done-ok', 'ran-ok'])
    assert.equal(stats.compiles.failed, 2)
  })
})
