// The daemon's life: `grid daemon --detach` starts it in the background, a second one is
// refused, `grid stop` stops it and frees its cache; a daemon that cannot start says why.
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { readdir, readFile, rm } from 'node:fs/promises'
import { createServer, type AddressInfo } from 'node:net'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { GridNode } from '@grid/node/embed'
import { defer, goBuild, grid, processRunning, procStat, sameFiles, shimGocache, startDaemon, status, summary, waitFor, world } from '../helpers/index.js'

/** The pid of `parent`'s `grid-shim spawner` child (Linux), or undefined. */
async function spawnerOf (parent: number): Promise<number | undefined> {
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue
    try {
      if ((await procStat(Number(name)))?.ppid !== parent) continue
      const argv = (await readFile(`/proc/${name}/cmdline`, 'utf8')).split('\0')
      if (argv[0]?.endsWith('/grid-shim') === true && argv[1] === 'spawner') return Number(name)
    } catch {} // it exited while we looked
  }
  return undefined
}

function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

describe('grid daemon --detach and grid stop', () => {
  it('start a daemon that outlives the command, refuse a second, stop it and free its cache', async (t) => {
    const w = await world(t)
    // as Go's flags are written: the daemon it starts must not read it as its own --detach
    const started = await grid(w, ['--json', 'daemon', '-detach'])
    assert.equal(started.code, 0, started.stderr)
    const { pid, nodeId, control, mesh, log } = JSON.parse(started.stdout)
    defer(t, () => { if (alive(pid)) process.kill(pid, 'SIGKILL') })
    assert.equal(control, w.control)
    assert.ok(mesh !== null && mesh.addrs.length > 0, `in the mesh when --detach returns: ${started.stdout}`)
    // the command has exited; its daemon has not
    assert.ok(alive(pid), 'the daemon runs after grid daemon --detach exited')
    const s = await status(w)
    assert.equal(s.running, true)
    assert.equal(s.pid, pid)
    assert.equal(s.nodeId, nodeId)
    // where its log is, as --detach said
    assert.equal(s.log, log)
    assert.equal(log, join(w.cacheDir, 'logs', 'grid.log'))
    // its compiles start through the shim's spawner (worker/spawner.ts), a child it stops with it
    let spawner: number | undefined
    if (process.platform === 'linux') {
      await waitFor(async () => (spawner = await spawnerOf(pid)) !== undefined, 60_000, () => 'the daemon to start its spawner')
    }

    for (const args of [['daemon', '--detach'], ['daemon', '--no-mesh']]) {
      const again = await grid(w, args)
      assert.equal(again.code, 1, `${args.join(' ')}: ${again.stderr}`)
      assert.match(again.stderr, /GRID_ERR_DAEMON_RUNNING/)
      assert.match(again.stderr, new RegExp(`a grid daemon \\(pid ${pid}\\) already answers on`))
      assert.match(again.stderr, /hint: .*grid stop/)
    }

    const stopped = await grid(w, ['stop'])
    assert.equal(stopped.code, 0, stopped.stderr)
    assert.match(stopped.stderr, new RegExp(`stopped daemon ${nodeId} \\(pid ${pid}\\)`))
    assert.equal(alive(pid), false, 'grid stop returns once the daemon has exited')
    assert.equal(existsSync(`${w.control}.json`), false, 'its record beside the socket went with it')
    if (spawner !== undefined) await waitFor(async () => !(await processRunning(spawner as number)), 10_000, () => 'its spawner to exit')
    assert.equal((await status(w)).running, false)
    // its cache index is free: this process can open it
    const stats = await grid(w, ['--json', 'cache', 'stats'])
    assert.equal(stats.code, 0, stats.stderr)

    const nothing = await grid(w, ['--json', 'stop'])
    assert.equal(nothing.code, 0, nothing.stderr)
    assert.deepEqual(JSON.parse(nothing.stdout), { stopped: false, running: false, control: w.control })
  })

  it('a daemon whose cache dir is removed while it runs answers on its socket again, with a new index and its shim: builds hit again', async (t) => {
    const w = await world(t)
    // the default socket, in the cache dir: removed with it
    w.control = join(w.cacheDir, 'grid.sock')
    w.env.GRID_CONTROL = w.control
    assert.equal((await grid(w, ['init'])).code, 0) // a swarm key beside the config: a mesh of its own
    const ref = join(w.dir, 'ref')
    assert.equal((await goBuild(['-o', ref + '/', './...'])).code, 0)
    // the daemon builds its shim again from a warm GOCACHE (each build below has an empty one)
    const started = await grid(w, ['--json', 'daemon', '--detach'], { env: { ...w.env, GOCACHE: await shimGocache() } })
    assert.equal(started.code, 0, started.stderr)
    const { pid } = JSON.parse(started.stdout)
    defer(t, () => { if (alive(pid)) process.kill(pid, 'SIGKILL') })
    const [key] = await readdir(join(w.cacheDir, 'shim'))
    const shim = join(w.cacheDir, 'shim', key as string, 'grid-shim')
    if (process.platform === 'linux') await waitFor(async () => await spawnerOf(pid) !== undefined, 60_000, () => 'the daemon to start its spawner (its shim)')
    const out = join(w.dir, 'out')
    const build = async (): Promise<any> => {
      await w.freshGoCache()
      await rm(out, { recursive: true, force: true })
      const r = await grid(w, ['--json', 'build', '-o', out + '/', './...'])
      assert.equal(r.code, 0, r.stderr)
      await sameFiles(out, ref)
      return summary(r)
    }
    await build()
    await rm(w.cacheDir, { recursive: true, force: true })
    await waitFor(async () => (await status(w)).pid === pid, 60_000, () => 'the daemon to answer on its socket again')
    await waitFor(() => existsSync(join(w.cacheDir, 'index', 'CURRENT')), 60_000, () => 'the daemon to start a new cache index')
    await waitFor(() => existsSync(shim), 180_000, () => 'the daemon to build its shim again (shells under grid env name it)')
    const second = await build()
    assert.equal(second.node, 'daemon')
    assert.ok(second.cache.puts > 0, JSON.stringify(second.cache))
    const third = await build()
    assert.equal(third.compiles.local, 0, `what the build before put is served: ${JSON.stringify(third.cache)}`)
    const stopped = await grid(w, ['stop'])
    assert.equal(stopped.code, 0, stopped.stderr)
  })

  it('a daemon without a mesh builds its shim again when it is removed (shells under grid env name it)', async (t) => {
    const w = await world(t)
    // it builds the shim again from a warm GOCACHE
    const daemon = await startDaemon(t, w, ['--no-mesh'], { DEBUG: 'grid:node', GOCACHE: await shimGocache() })
    await waitFor(() => /looking after the shim/.test(daemon.stderr()), 60_000, () => `the daemon to find its shim: ${daemon.stderr()}`)
    const [key] = await readdir(join(w.cacheDir, 'shim'))
    const shim = join(w.cacheDir, 'shim', key as string, 'grid-shim')
    assert.ok(existsSync(shim))
    await rm(join(w.cacheDir, 'shim'), { recursive: true, force: true })
    await waitFor(() => existsSync(shim), 120_000, () => `the daemon to build its shim again: ${daemon.stderr()}`)
    assert.match(daemon.stderr(), /was removed while the node ran: building it again/)
  })

  it('stop a daemon in the middle of a build: the build completes on its own, identical to go build', async (t) => {
    const w = await world(t)
    const ref = join(w.dir, 'ref')
    assert.equal((await goBuild(['-o', ref + '/', './...'])).code, 0)
    const started = await grid(w, ['--json', 'daemon', '--detach', '--no-mesh'])
    assert.equal(started.code, 0, started.stderr)
    const { pid } = JSON.parse(started.stdout)
    defer(t, () => { if (alive(pid)) process.kill(pid, 'SIGKILL') })
    const out = join(w.dir, 'out')
    const building = grid(w, ['build', '-o', out + '/', './...'])
    await waitFor(async () => (await status(w)).activeBuilds === 1, 60_000, () => 'the build to begin')
    const stopped = await grid(w, ['stop'])
    assert.equal(stopped.code, 0, stopped.stderr)
    assert.match(stopped.stderr, /1 build it was serving went on without it/)
    const built = await building
    assert.equal(built.code, 0, built.stderr)
    assert.match(built.stderr, /the node went away during the build/)
    await sameFiles(out, ref)
  })

  it('two grid daemon --detach at once: one starts, the other is refused as a second daemon', async (t) => {
    const w = await world(t)
    const both = await Promise.all([1, 2].map(async () => await grid(w, ['--json', 'daemon', '--detach', '--no-mesh'])))
    for (const r of both) {
      if (r.code === 0) { const { pid } = JSON.parse(r.stdout); defer(t, () => { if (alive(pid)) process.kill(pid, 'SIGKILL') }) }
    }
    const started = both.filter(r => r.code === 0)
    assert.equal(started.length, 1, both.map(r => r.stdout + r.stderr).join('\n'))
    const { pid } = JSON.parse((started[0] as { stdout: string }).stdout)
    const refused = both.find(r => r.code !== 0) as { code: number, stdout: string }
    assert.equal(refused.code, 1)
    const { error } = JSON.parse(refused.stdout)
    assert.equal(error.code, 'GRID_ERR_DAEMON_RUNNING', error.message)
    assert.match(error.message, new RegExp(`a grid daemon \\(pid ${pid}\\) already answers`))
    // daemon.out is the running daemon's: the refused one's words went to a file of its own
    const out = await readFile(join(w.cacheDir, 'logs', 'daemon.out'), 'utf8')
    assert.doesNotMatch(out, /GRID_ERR_CACHE_LOCKED/, out)
    assert.deepEqual((await readdir(join(w.cacheDir, 'logs'))).filter(f => f.startsWith('daemon.out.')), [], 'nor is that file left behind')
    assert.equal((await grid(w, ['stop'])).code, 0)
  })

  it('a daemon in a terminal that closes (SIGHUP) stops as for SIGTERM: its socket removed, its cache closed', async (t) => {
    const w = await world(t)
    const daemon = await startDaemon(t, w, ['--no-mesh'])
    await daemon.kill('SIGHUP')
    assert.equal(daemon.child.signalCode, null, `it stopped itself, not killed by SIGHUP: ${daemon.stderr()}`)
    assert.equal(daemon.child.exitCode, 0, daemon.stderr())
    assert.match(daemon.stderr(), /node stopped/)
    assert.equal(existsSync(w.control), false, 'no stale socket left behind')
  })

  it('grid peers on a daemon without a mesh says it has none, rather than to wait for peers', async (t) => {
    const w = await world(t)
    await startDaemon(t, w, ['--no-mesh'])
    const r = await grid(w, ['peers'])
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /^no peers: this node runs without a mesh/)
    assert.doesNotMatch(r.stdout, /\(yet\)/)
    const json = await grid(w, ['--json', 'peers'])
    assert.deepEqual(JSON.parse(json.stdout), [])
    assert.equal((await grid(w, ['stop'])).code, 0)
  })

  it('grid status and grid stop wait for a node that holds the cache but does not answer on its socket (a daemon starting or stopping)', async (t) => {
    const w = await world(t)
    // what a daemon holds from opening its index until its socket answers (its mesh starting),
    // and again from its socket closing until its index is closed
    const { Cache, loadIdentity } = await import('@grid/node/server')
    const held = await Cache.open({ dir: w.cacheDir, nodeId: (await loadIdentity(w.cacheDir)).peerId })
    let open = true
    defer(t, async () => { if (open) await held.close() })
    const asking = [grid(w, ['--json', 'status']), grid(w, ['--json', 'stop'])] as const
    const aWhile = new Promise<undefined>(resolve => setTimeout(resolve, 3_000, undefined))
    for (const command of asking) {
      const early = await Promise.race([command, aWhile])
      assert.equal(early, undefined, `it waits for the cache rather than fail, or find nothing to stop: ${early?.stdout ?? ''}${early?.stderr ?? ''}`)
    }
    open = false
    await held.close()
    const [status, stop] = await Promise.all(asking)
    assert.equal(status.code, 0, status.stderr)
    assert.equal(JSON.parse(status.stdout).running, false)
    assert.equal(stop.code, 0, stop.stderr)
    assert.deepEqual(JSON.parse(stop.stdout), { stopped: false, running: false, control: w.control })
  })

  it('report why a daemon started in the background could not start, and leave nothing running', async (t) => {
    const w = await world(t)
    const taken = createServer()
    await new Promise<void>(resolve => taken.listen(0, '127.0.0.1', resolve))
    defer(t, () => { taken.close() })
    const port = (taken.address() as AddressInfo).port
    const r = await grid(w, ['daemon', '--detach', '--listen', `/ip4/127.0.0.1/tcp/${port}`])
    assert.equal(r.code, 1, r.stderr)
    // the daemon's own error on the same line as ours, as it printed it: the port, the reason
    // and its code; its hint before ours
    const [first, hint] = r.stderr.trimEnd().split('\n')
    assert.match(first ?? '', new RegExp(`^grid: the daemon started in the background exited \\(status 1\\) before it answered on .*: the mesh could not listen on /ip4/127.0.0.1/tcp/${port}: .*EADDRINUSE.* \\(GRID_ERR_MESH_START\\) \\(GRID_ERR_DAEMON_START\\)$`))
    assert.match(hint ?? '', /^ {2}hint: another program .*; everything it printed is in /)
    assert.doesNotMatch(r.stderr, /^\s+at /m, 'no stack traces')
    assert.match(r.stderr, new RegExp(join(w.cacheDir, 'logs', 'daemon.out').replaceAll('/', '\\/')))
    assert.equal((await status(w)).running, false)

    // flags are checked before anything starts
    const bad = await grid(w, ['daemon', '--detach', '--slots', '0'])
    assert.equal(bad.code, 2, bad.stderr)
    assert.match(bad.stderr, /--slots must be a positive integer/)
  })

  it('do not stop the embedded node of a running build', async (t) => {
    const w = await world(t)
    const node = new GridNode({ cacheDir: w.cacheDir, control: w.control, mode: 'embedded' })
    await node.start()
    defer(t, async () => { await node.stop() })
    const r = await grid(w, ['stop'])
    assert.equal(r.code, 1, r.stderr)
    assert.match(r.stderr, new RegExp(`embedded node of a running grid build \\(pid ${process.pid}\\)`))
    assert.match(r.stderr, /GRID_ERR_DAEMON_STOP/)
    assert.equal((await status(w)).running, true, 'it still serves')
    const daemon = await grid(w, ['daemon', '--no-mesh'])
    assert.equal(daemon.code, 1)
    assert.match(daemon.stderr, /GRID_ERR_DAEMON_RUNNING/)
  })
})
