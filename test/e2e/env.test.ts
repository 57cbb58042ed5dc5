// `grid env`: plain go commands through the node, with no grid process per build; and with no
// node, go as without grid, caching in its own GOCACHE in its own format.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { ControlClient } from '@grid/node'
import type { NodeStatus } from '@grid/protocol'
import { GOMOD, bigPackage, defer, goBuild, grid, nestedGoModule, procStat, run, sameFiles, startDaemon, status, summary, waitFor, world, type RunResult, type World } from '../helpers/index.js'

/** The variables `grid --json env` sets, applied to the world's environment. */
async function gridEnv (w: World, env: NodeJS.ProcessEnv = w.env): Promise<NodeJS.ProcessEnv> {
  const r = await grid(w, ['--json', 'env'], { env })
  assert.equal(r.code, 0, r.stderr)
  const { set, unset } = JSON.parse(r.stdout) as { set: Record<string, string>, unset: string[] }
  assert.deepEqual(unset, [])
  return { ...env, ...set }
}

/** `go build` as a user types it, in an environment. */
async function go (args: string[], env: NodeJS.ProcessEnv): Promise<RunResult> {
  return await run('go', args, { cwd: GOMOD, env })
}

/**
 * The node's status once it has counted `served` builds: a build under grid env ends when its
 * helper's connection closes, which the node may see a moment after go has exited.
 */
async function statusAfter (w: World, served: number): Promise<any> {
  let s: any
  await waitFor(async () => { s = await status(w); return s.buildsServed >= served }, 10_000, () => `build ${served} to end: ${JSON.stringify(s)}`)
  return s
}

/** The node's status, asked on its socket from this process (a `grid status` per poll is slow to start). */
async function nodeStatus (w: World): Promise<NodeStatus> {
  const client = await ControlClient.connect(w.control)
  try {
    return (await client.request({ type: 'status' })).status
  } finally {
    client.close()
  }
}

/** The pid of `parent`'s child whose command is `comm` (Linux), or undefined. */
async function childNamed (parent: number, comm: string): Promise<number | undefined> {
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name) || (await procStat(Number(name)))?.ppid !== parent) continue
    if ((await readFile(`/proc/${name}/comm`, 'utf8').catch(() => '')).trim() === comm) return Number(name)
  }
  return undefined
}

/** The compiler runs that `go build -x` printed (cached actions print none). */
function compilesIn (stderr: string): string[] {
  return stderr.split('\n').filter(l => /\/compile /.test(l) && !l.includes('-V=full'))
}

describe('grid env', () => {
  it('sends plain go builds through the daemon: identical output, counted, cached and recalled as grid build\'s', async (t) => {
    const w = await world(t)
    const ref = join(w.dir, 'ref')
    assert.equal((await goBuild(['-o', ref + '/', './...'])).code, 0)
    await startDaemon(t, w)
    const env = await gridEnv(w)
    assert.match(env.GOFLAGS ?? '', /(^| )-trimpath -toolexec=\S+grid-shim$/)
    assert.match(env.GOCACHEPROG ?? '', /grid-shim cacheprog$/)

    const out1 = join(w.dir, 'out1')
    const cold = await go(['build', '-o', out1 + '/', './...'], env)
    assert.equal(cold.code, 0, cold.stderr)
    assert.equal(cold.stderr, '', 'nothing of grid\'s own on go\'s stderr')
    await sameFiles(out1, ref)
    const s1 = await statusAfter(w, 1)
    assert.equal(s1.buildsServed, 1, 'the go command was one build')
    assert.deepEqual(s1.lastBuild.command.slice(0, 2), ['go', 'build'])
    assert.ok(s1.lastBuild.compiles.local > 10, `its compiles, counted on it: ${JSON.stringify(s1.lastBuild.compiles)}`)
    assert.equal(s1.lastBuild.compiles.local, s1.counters.compiles)

    // go clean -cache, then the same command twice: all from the grid cache, then recalled
    for (const round of [1, 2]) {
      await w.freshGoCache()
      const warm = await go(['build', '-o', join(w.dir, 'out2') + '/', './...'], { ...env, GOCACHE: w.env.GOCACHE })
      assert.equal(warm.code, 0, warm.stderr)
      const s = await statusAfter(w, 1 + round)
      assert.equal(s.counters.compiles, s1.counters.compiles, 'no compile ran')
      assert.equal(s.lastBuild.compiles.local, 0)
      assert.ok(s.lastBuild.cache.hits > 50, JSON.stringify(s.lastBuild.cache))
      if (round === 2) assert.equal(s.lastBuild.cache.recalled, s.lastBuild.cache.hits, 'the second time, every hit recalled')
    }
    await sameFiles(join(w.dir, 'out2'), ref)

    // grid build in this environment undoes it for the go it runs (no second -toolexec)
    const viaGrid = await grid(w, ['--json', 'build', '-o', join(w.dir, 'out3') + '/', './...'], { env: { ...env, GOCACHE: w.env.GOCACHE } })
    assert.equal(viaGrid.code, 0, viaGrid.stderr)
    assert.equal(summary(viaGrid).compiles.local, 0)
    assert.doesNotMatch(viaGrid.stderr, /grid env names another/, 'a current grid env is not stale')
    await sameFiles(join(w.dir, 'out3'), ref)

    // a shell whose grid env is from before an upgrade (another shim) is told so by grid build
    const stale = await grid(w, ['--json', 'build', '-o', join(w.dir, 'out4') + '/', './...'], {
      env: { ...env, GOCACHE: w.env.GOCACHE, GOCACHEPROG: '/old/grid-shim cacheprog' }
    })
    assert.equal(stale.code, 0, stale.stderr)
    assert.match(stale.stderr, /grid: warning: this shell's grid env names another cache helper \(\/old\/grid-shim cacheprog\)/)
    assert.match(stale.stderr, /hint: run eval "\$\(grid env\)" again/)
  })

  it('a build\'s logged summary counts its last compile, also one whose end the node sees after the go command\'s cache helper has gone', async (t) => {
    // A build under grid env ended as its cache helper's connection closed. Its go has exited by
    // then, but the node can see the connection of the go's last compile close after that one
    // (here: the node stopped while go finished), and checks that compile's output with a stat:
    // the summary it logged missed the compile's end.
    const w = await world(t)
    const daemon = await startDaemon(t, w, ['--no-mesh'])
    const env = await gridEnv(w)
    const mod = join(w.dir, 'slow')
    await mkdir(join(mod, 'big'), { recursive: true })
    await writeFile(join(mod, 'go.mod'), 'module example.com/slow\n\ngo 1.24\n')
    await writeFile(join(mod, 'big', 'big.go'), bigPackage(8000))
    const node = daemon.child.pid as number
    defer(t, () => { try { process.kill(node, 'SIGCONT') } catch {} }) // before its teardown kills it
    const go = spawn('go', ['build', './big'], { cwd: mod, env, stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    go.stderr?.on('data', (b: Buffer) => { stderr += b.toString() })
    const exited = new Promise<number | null>(resolve => go.on('close', code => resolve(code)))
    defer(t, () => { go.kill('SIGKILL') })

    // The shim has become the compiler on the node's grant, and the miss before it is counted
    // (the helper reports it within 100 ms; at its close it would wait for the node to answer).
    let compiler: number | undefined
    let s: NodeStatus | undefined
    await waitFor(async () => {
      compiler = await childNamed(go.pid as number, 'compile')
      s = await nodeStatus(w)
      return compiler !== undefined && s.compilesRunning === 1 && s.counters.misses >= 1
    }, 60_000, () => `the compile granted and running: ${JSON.stringify(s?.counters)}`)
    process.kill(compiler as number, 'SIGSTOP')
    process.kill(node, 'SIGSTOP') // the node sees nothing more until go has exited
    process.kill(compiler as number, 'SIGKILL') // interrupted: it writes no -o, and counts as failed
    assert.equal(await exited, 1, stderr)
    assert.match(stderr, /signal: killed/)
    process.kill(node, 'SIGCONT')

    const last = (await statusAfter(w, 1)).lastBuild as NonNullable<NodeStatus['lastBuild']>
    assert.deepEqual([last.compiles.local, last.compiles.failed, last.compiles.running], [1, 1, 0], `the build's compile, which failed: ${JSON.stringify(last.compiles)}`)
    const log = join(w.cacheDir, 'logs', 'grid.log')
    let line = ''
    await waitFor(async () => {
      line = (await readFile(log, 'utf8').catch(() => '')).split('\n').find(l => l.includes(`build ${last.build} ended: `)) ?? ''
      return line !== ''
    }, 10_000, () => `build ${last.build}'s end in the log`)
    const logged = / ended: (\d+) actions, (\d+) hits, (\d+) compiles here, (\d+) on peers, (\d+) failed$/.exec(line)
    assert.ok(logged !== null, line)
    assert.deepEqual(logged.slice(1).map(Number), [last.actions, last.cache.hits, last.compiles.local, last.compiles.remote, last.compiles.failed], `the summary logged as the build ended is the build's: ${line}`)
  })

  it('a go command that a test runs with a GOCACHE of its own caches there; one that keeps go\'s shares the grid cache', async (t) => {
    // cmd/go passes its environment, GOCACHEPROG and all, to the test binaries it runs, and
    // under grid env no grid build names its go: the helper looks for a go above its own
    const w = await world(t)
    const mod = await nestedGoModule(w.dir)
    await startDaemon(t, w)
    const env = await gridEnv(w)
    // each go command whose cache helper goes to the node is a build there
    const own = await run('go', ['test', '-count=1', '-v', '-run', 'TestNestedGoCachesItself', '.'], { cwd: mod, env })
    assert.equal(own.code, 0, own.stdout + own.stderr)
    assert.match(own.stdout, /--- PASS: TestNestedGoCachesItself/)
    const s1 = await statusAfter(w, 1) // the nested go build ended before its go test did
    assert.deepEqual([s1.buildsServed, s1.lastBuild.command.slice(0, 2)], [1, ['go', 'test']], 'the nested go with a GOCACHE of its own did not go to the node')
    const shared = await run('go', ['test', '-count=1', '-v', '-run', 'TestNestedGoSameCache', '.'], { cwd: mod, env })
    assert.equal(shared.code, 0, shared.stdout + shared.stderr)
    const s = await statusAfter(w, 3)
    assert.equal(s.buildsServed, 3, 'the go test that kept its GOCACHE, and the go build its test ran')
  })

  it('with no node, go caches in GOCACHE in its own format: plain go reads it back', async (t) => {
    const w = await world(t)
    const ref = join(w.dir, 'ref')
    assert.equal((await goBuild(['-o', ref + '/', './...'])).code, 0)
    const printed = await grid(w, ['env'])
    assert.equal(printed.code, 0)
    assert.match(printed.stderr, /no node answers on .*grid\.sock/)
    assert.match(printed.stdout, /^export GOCACHEPROG='.*grid-shim cacheprog'$/m)
    const env = await gridEnv(w)

    const built = await go(['build', '-o', join(w.dir, 'out') + '/', './...'], env)
    assert.equal(built.code, 0, built.stderr)
    await sameFiles(join(w.dir, 'out'), ref)
    // the same GOCACHE, grid's environment gone: every compile is a hit
    const plain = await go(['build', '-trimpath', '-x', '-o', join(w.dir, 'plain') + '/', './...'], w.env)
    assert.equal(plain.code, 0, plain.stderr)
    assert.deepEqual(compilesIn(plain.stderr), [])
    await sameFiles(join(w.dir, 'plain'), ref)
    // and the other way round: a fresh helper reads what it wrote
    const again = await go(['build', '-x', '-o', join(w.dir, 'again') + '/', './...'], env)
    assert.equal(again.code, 0, again.stderr)
    assert.deepEqual(compilesIn(again.stderr), [])
  })

  it('keeps the GOFLAGS from before, restores them with --unset, and refuses a -toolexec of another', async (t) => {
    const w = await world(t)
    const before = { ...w.env, GOFLAGS: '-tags=gridtest' }
    const env = await gridEnv(w, before)
    assert.match(env.GOFLAGS ?? '', /^-tags=gridtest -trimpath -toolexec=\S+$/)
    assert.equal(env.GRID_ENV_GOFLAGS, '-tags=gridtest')
    assert.deepEqual(await gridEnv(w, env), env, 'applied twice, the same')

    const undo = await grid(w, ['--json', 'env', '--unset'], { env })
    assert.equal(undo.code, 0, undo.stderr)
    const { set, unset } = JSON.parse(undo.stdout)
    assert.deepEqual(set, { GOFLAGS: '-tags=gridtest' })
    assert.ok(['GOCACHEPROG', 'GRID_SOCKET', 'GRID_ENV_GOFLAGS', 'GRID_WITHOUT_NODE'].every(v => unset.includes(v)), unset.join(' '))
    const sh = await grid(w, ['env', '--unset'], { env })
    assert.match(sh.stdout, /^export GOFLAGS='-tags=gridtest'\nunset GOCACHEPROG /)

    const other = await grid(w, ['--json', 'env'], { env: { ...w.env, GOFLAGS: '-toolexec=/bin/true' } })
    assert.equal(other.code, 1)
    assert.equal(JSON.parse(other.stdout).error.code, 'GRID_ERR_TOOLEXEC_CONFLICT')
    const shell = await grid(w, ['env', '--shell', 'csh'])
    assert.equal(shell.code, 2)
    assert.match(shell.stderr, /unknown shell csh/)
  })

  it('a GOFLAGS set for one grid command in a grid env shell is kept (GOFLAGS=-tags=foo grid build), less grid env\'s own entries', async (t) => {
    const w = await world(t)
    const mod = await flagsModule(w.dir)
    const ref = join(w.dir, 'ref')
    const plain = await goBuild(['-tags=foo', '-o', ref + '/', '.'], mod)
    assert.equal(plain.code, 0, plain.stderr)
    const env = await gridEnv(w)
    const changed: Array<[string, string]> = [
      ['set for the command', '-tags=foo'],
      ['added before grid env\'s', `-tags=foo ${env.GOFLAGS ?? ''}`]
    ]
    for (const [i, [how, goflags]] of changed.entries()) {
      const out = join(w.dir, `out${i}`)
      const r = await grid(w, ['build', '-o', out + '/', '.'], { cwd: mod, env: { ...env, GOFLAGS: goflags } })
      assert.equal(r.code, 0, `${how}: ${r.stderr}`)
      await sameFiles(out, ref)
    }
    // --unset, too, keeps the GOFLAGS of now, without grid's -trimpath and -toolexec (the
    // user's own from before, a `go env -w GOFLAGS` included, stay)
    const users = (env.GOFLAGS ?? '').replace(/ ?-trimpath -toolexec=\S+$/, '')
    const undo = await grid(w, ['--json', 'env', '--unset'], { env: { ...env, GOFLAGS: `-tags=foo ${env.GOFLAGS ?? ''}` } })
    assert.equal(undo.code, 0, undo.stderr)
    assert.deepEqual(JSON.parse(undo.stdout).set, { GOFLAGS: ['-tags=foo', users].filter(f => f !== '').join(' ') })
  })

  it('leaves the user\'s GOFLAGS text as it is (quoted -ldflags with two spaces), and restores an empty GOFLAGS empty', async (t) => {
    const w = await world(t)
    const mod = await flagsModule(w.dir)
    const goflags = '-tags=foo \'-ldflags=-X "main.version=a  b"\''
    const ref = join(w.dir, 'ref')
    const plain = await goBuild(['-o', ref + '/', '.'], mod, { GOFLAGS: goflags })
    assert.equal(plain.code, 0, plain.stderr)
    const env = await gridEnv(w, { ...w.env, GOFLAGS: goflags })
    assert.ok(env.GOFLAGS?.startsWith(`${goflags} `), env.GOFLAGS)
    const out = join(w.dir, 'out')
    const built = await run('go', ['build', '-o', out + '/', '.'], { cwd: mod, env })
    assert.equal(built.code, 0, built.stderr)
    await sameFiles(out, ref)
    assert.equal((await run(join(out, 'flags'), [])).stdout, 'a  b foo\n')

    const empty = await gridEnv(w, { ...w.env, GOFLAGS: '' })
    const undo = await grid(w, ['--json', 'env', '--unset'], { env: empty })
    assert.equal(undo.code, 0, undo.stderr)
    const { set, unset } = JSON.parse(undo.stdout)
    assert.deepEqual(set, { GOFLAGS: '' })
    assert.ok(!unset.includes('GOFLAGS'), unset.join(' '))
    const sh = await grid(w, ['env', '--unset'], { env: empty })
    assert.match(sh.stdout, /^export GOFLAGS=''$/m)
  })
})

/** A module of one program that prints `version` (for -ldflags -X) and whether the build tag foo was set. */
async function flagsModule (dir: string): Promise<string> {
  const mod = join(dir, 'flags')
  await mkdir(mod, { recursive: true })
  await writeFile(join(mod, 'go.mod'), 'module example.com/flags\n\ngo 1.24\n')
  await writeFile(join(mod, 'main.go'), 'package main\n\nimport "os"\n\nvar version = "none"\n\nfunc main() { os.Stdout.WriteString(version + " " + tag + "\\n") }\n')
  await writeFile(join(mod, 'tag_foo.go'), '//go:build foo\n\npackage main\n\nconst tag = "foo"\n')
  await writeFile(join(mod, 'tag_other.go'), '//go:build !foo\n\npackage main\n\nconst tag = "untagged"\n')
  return mod
}
