// The embedded node of a `grid build` with no daemon: it serves the builds that find it on the
// socket to their end, and a build that arrives just as it decides to stop starts over on a node
// of its own. Real processes throughout: two `grid` commands, with the order in which the first
// one's node reads its requests fixed by stopping that process (SIGSTOP) while they queue.
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdir, writeFile } from 'node:fs/promises'
import { createServer, type AddressInfo } from 'node:net'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { ControlClient, detectGo } from '@grid/node'
import { GRID_BIN, defer, goBuild, grid, meshPortTaken, run, sameFiles, waitFor, world, type RunResult, type World } from '../helpers/index.js'

/** A `grid` command as a real process, its output collected, killed (and let go on, if stopped) when the test ends. */
function start (t: Parameters<typeof defer>[0], w: World, args: string[], cwd: string, env: NodeJS.ProcessEnv = w.env): { child: ChildProcess, out: () => string, err: () => string, done: Promise<RunResult> } {
  const child = spawn(process.execPath, [GRID_BIN, ...args], { cwd, env, stdio: ['pipe', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout?.on('data', (b: Buffer) => { stdout += b.toString() })
  child.stderr?.on('data', (b: Buffer) => { stderr += b.toString() })
  const done = new Promise<RunResult>(resolve => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })))
  defer(t, async () => {
    if (child.exitCode !== null || child.signalCode !== null) return
    child.kill('SIGKILL')
    child.kill('SIGCONT')
    await done
  })
  return { child, out: () => stdout, err: () => stderr, done }
}

/**
 * The connections the node answering on `control` has accepted, as the kernel sees them (`ss`,
 * Linux): the bytes of requests on each that the node has not read yet, and which process holds
 * the other end.
 */
async function accepted (control: string): Promise<Array<{ unread: number, client: number | undefined }>> {
  const r = await run('ss', ['-xHnp']).catch((err: Error) => { throw new Error(`this test reads the sockets with ss (iproute2): ${err.message}`) })
  const rows = r.stdout.split('\n').map(l => l.trim().split(/\s+/)).filter(f => f[1] === 'ESTAB')
  // netid state recv-q send-q local inode peer peer-inode users:(("name",pid=N,fd=M))
  const owner = new Map(rows.map(f => [f[5], Number(/pid=(\d+)/.exec(f[8] ?? '')?.[1])]))
  return rows.filter(f => f[4] === control).map(f => ({ unread: Number(f[2]), client: owner.get(f[7]) }))
}

/** A module whose program runs until its stdin closes: a build that lasts as long as the test wants. */
async function waiterModule (dir: string): Promise<string> {
  await mkdir(dir, { recursive: true })
  await writeFile(join(dir, 'go.mod'), 'module example.com/waiter\n\ngo 1.24\n')
  await writeFile(join(dir, 'main.go'), [
    'package main', '', 'import "os"', '',
    'func main() {', '\tos.Stdout.WriteString("ready\\n")', '\tbuf := make([]byte, 512)', '\tfor {',
    '\t\tif _, err := os.Stdin.Read(buf); err != nil {', '\t\t\treturn', '\t\t}', '\t}', '}', ''
  ].join('\n'))
  return dir
}

describe('the embedded node of a grid build', () => {
  for (const mesh of [true, false]) {
    it(`${mesh ? 'its mesh starting' : 'alone'}: a build that arrives as it decides to stop starts over on a node of its own, and is identical`, async (t) => {
      const w = await world(t)
      if (mesh) {
        // With a swarm key, an embedded node joins its mesh, in the background, on its first miss.
        const key = join(w.dir, 'swarm.key')
        assert.equal((await grid(w, ['init', '--swarm-key', key])).code, 0)
        await writeFile(w.env.GRID_CONFIG as string, JSON.stringify({ mdns: false, listen: ['/ip4/127.0.0.1/tcp/0'], swarmKey: key }))
      }
      const mod = await waiterModule(join(w.dir, 'waiter'))
      const ref = join(w.dir, 'ref')
      const plain = await goBuild(['-o', ref + '/', '.'], mod)
      assert.equal(plain.code, 0, plain.stderr)
      // the cache holds what the first build needs: it misses nothing, and its node has no mesh yet
      const warm = await grid(w, ['run', '.'], { cwd: mod })
      assert.equal(warm.code, 0, warm.stderr)

      // The first build starts the node, and runs its program until told.
      const first = start(t, w, ['--json', 'run', '.'], mod, { ...w.env, GOCACHE: await w.freshGoCache() })
      await waitFor(() => first.err().includes('ready\n'), 60_000, () => `the first build's program: ${first.err()}`)
      // Another build on that node (this test's client), the last of its builds to end.
      const other = await ControlClient.connect(w.control)
      defer(t, () => { other.close() })
      const { build } = await other.request({ type: 'build-begin', command: ['go', 'build', '.'], cwd: mod })

      // The second build finds the node and connects to it; its go waits at a gate before `go env`.
      const { goroot } = await detectGo()
      const gate = join(w.dir, 'gate')
      const gatedGo = join(w.dir, 'go-gated')
      await writeFile(gatedGo, `#!/bin/sh\nwhile [ ! -e '${gate}' ]; do sleep 0.05; done\nexec '${join(goroot, 'bin', 'go')}' "$@"\n`, { mode: 0o755 })
      const out = join(w.dir, 'out')
      const second = start(t, w, ['--json', 'build', '-o', out + '/', '.'], mod, { ...w.env, GOCACHE: await w.freshGoCache(), GRID_GO: gatedGo })
      const secondPid = second.child.pid as number
      await waitFor(async () => (await accepted(w.control)).some(c => c.client === secondPid), 30_000, () => 'the second build to connect')

      // The first build ends; its grid waits for the other build, the only one left.
      first.child.stdin?.end()
      await waitFor(() => first.out().includes('"exitCode"'), 60_000, () => `the first build's summary: ${first.err()}`)
      const alone = (conns: Array<{ client: number | undefined }>): boolean => conns.length === 2 && conns.every(c => c.client === process.pid || c.client === secondPid)
      await waitFor(async () => alone(await accepted(w.control)), 30_000, () => 'the first build\'s own connections to close')

      // The other build misses: a node with a mesh starts it now, and is stopped (SIGSTOP) before
      // it is up. Meanwhile the other build ends and the second asks to begin: the node reads the
      // end first and decides to stop. With a mesh, its stop waits for the mesh to be up, and the
      // node reads the second build's request meanwhile (it took it, and stopped under it);
      // alone, it stops at once, with that request unread (the second build's connection is
      // reset, which it took for an error of the node's, and built as plain go).
      const miss = await other.request({ type: 'cache-get', build, actionId: new Uint8Array(32).fill(7) })
      assert.equal(miss.type, 'cache-miss')
      const firstPid = first.child.pid as number
      process.kill(firstPid, 'SIGSTOP')
      const ended = other.request({ type: 'build-end', build }).then(() => 'ended', (err: Error) => err.message)
      await waitFor(async () => (await accepted(w.control)).some(c => c.client === process.pid && c.unread > 0), 30_000, () => 'the build-end to reach the node')
      await writeFile(gate, '')
      await waitFor(async () => (await accepted(w.control)).some(c => c.client === secondPid && c.unread > 0), 60_000, () => `the second build's build-begin to reach the node: ${second.err()}`)
      process.kill(firstPid, 'SIGCONT')

      assert.equal(await ended, 'ended')
      const r = await second.done
      assert.equal(r.code, 0, r.stderr)
      const s = JSON.parse(r.stdout.trim().split('\n').at(-1) as string)
      // its own node, from start to end: not the first one stopping under it, nor plain go
      assert.equal(s.node, 'embedded', r.stderr)
      assert.equal(s.ownNode, true, r.stderr)
      assert.equal(s.nodeLost, undefined, r.stderr)
      assert.deepEqual(s.compiles.fallbacks, {})
      assert.doesNotMatch(r.stderr, /grid: warning/)
      await sameFiles(out, ref)
      assert.equal((await first.done).code, 0, first.err())
    })
  }

  it('whose mesh could not start (its port taken): a build that finds it on the socket says so once, as the first build does, in text and --json; grid status shows it', async (t) => {
    // Regression: only the build whose own node it was warned; another build on that node,
    // alone as well, said nothing, and the user took it for a build in the office mesh.
    const w = await world(t)
    const addr = await meshPortTaken(t, w)
    const mod = await waiterModule(join(w.dir, 'waiter'))
    const ref = join(w.dir, 'ref')
    const plain = await goBuild(['-o', ref + '/', '.'], mod)
    assert.equal(plain.code, 0, plain.stderr)
    const warning = `grid: warning: this build ran without the mesh (no peers, no shared cache): the mesh could not listen on ${addr}: address already in use (EADDRINUSE) (GRID_ERR_MESH_START)`
    const said = (stderr: string): string[] => stderr.split('\n').filter(line => line.startsWith('grid: warning: '))

    // The first build's node misses (an empty cache), so it tries the mesh, and fails; its program
    // keeps the node up.
    const first = start(t, w, ['--json', 'run', '.'], mod)
    await waitFor(() => first.err().includes('ready\n'), 120_000, () => `the first build's program: ${first.err()}`)
    const out = join(w.dir, 'out')
    const r = await grid(w, ['--json', 'build', '-o', out + '/', '.'], { cwd: mod, env: { ...w.env, GOCACHE: await w.freshGoCache() } })
    assert.equal(r.code, 0, r.stderr)
    assert.deepEqual(said(r.stderr), [warning], r.stderr)
    assert.match(r.stderr, /\n {2}hint: another program \(another grid daemon\?\) uses port \d+: /)
    const s = JSON.parse(r.stdout.trim().split('\n').at(-1) as string)
    // Regression: --json said `daemon` for any node this build did not start.
    assert.deepEqual({ node: s.node, ownNode: s.ownNode }, { node: 'embedded', ownNode: false }, 'it ran on the first build\'s node')
    assert.equal(s.meshFailure?.code, 'GRID_ERR_MESH_START', r.stdout)
    assert.ok(warning.endsWith(`: ${s.meshFailure.message as string} (GRID_ERR_MESH_START)`), s.meshFailure.message)
    assert.match(s.meshFailure.hint, /^another program \(another grid daemon\?\) uses port \d+: /)
    await sameFiles(out, ref)

    const status = await grid(w, ['--json', 'status'])
    assert.deepEqual(JSON.parse(status.stdout).meshFailure, { code: s.meshFailure.code, message: s.meshFailure.message, hint: s.meshFailure.hint })
    const text = await grid(w, ['status'])
    assert.ok(text.stdout.includes(`\nmesh:    not started, its builds run alone: ${s.meshFailure.message as string} (GRID_ERR_MESH_START)\n  hint: another program`), text.stdout)

    first.child.stdin?.end()
    const own = await first.done
    assert.equal(own.code, 0, own.stderr)
    assert.deepEqual(said(own.stderr), [warning], own.stderr)
    const ownSummary = JSON.parse(own.stdout.trim().split('\n').at(-1) as string)
    assert.deepEqual(ownSummary.meshFailure, s.meshFailure)
    assert.deepEqual({ node: ownSummary.node, ownNode: ownSummary.ownNode }, { node: 'embedded', ownNode: true })
  })
})
