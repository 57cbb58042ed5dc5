// The grid must never fail a build: a node killed mid-build, a corrupt blob, two builds on one
// node, garbage on the socket. Each compares the output with plain `go build -trimpath`.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { createConnection, createServer, type AddressInfo, type Socket } from 'node:net'
import { join } from 'node:path'
import { before, describe, it } from 'node:test'
import { Packr } from 'msgpackr'
import { ControlClient } from '@grid/node'
import { COMPILE_KEEPALIVE_MS, encodeFrame, FrameDecoder, INDEX_RECORD_BYTES, MAX_FRAME_BYTES, PROTOCOL_VERSION } from '@grid/protocol'
import { GOMOD, GRID_BIN, defer, goBuild, grid, meshPortTaken, roundTrip, run, sameFiles, startDaemon, status, stdWarmGoCache, suiteContext, summary, waitFor, world, type World } from '../helpers/index.js'

/** Whether a process on this machine names `path` on its command line (Linux; elsewhere: no). */
async function processesNaming (path: string): Promise<boolean> {
  for (const name of await readdir('/proc').catch(() => [])) {
    if (!/^\d+$/.test(name)) continue
    const argv = await readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '')
    if (argv.includes(path)) return true
  }
  return false
}

describe('robustness', () => {
  const suite = suiteContext()
  let ref = ''
  before(async () => {
    const w = await world(suite)
    ref = join(w.dir, 'ref')
    const plain = await goBuild(['-o', ref + '/', './...'])
    assert.equal(plain.code, 0, plain.stderr)
  })

  it('a node killed in the middle of a build: the build completes with identical output', async (t) => {
    const w = await world(t)
    const daemon = await startDaemon(t, w)
    const out = join(w.dir, 'out')
    const child = spawn(process.execPath, [GRID_BIN, '--json', 'build', '-o', out + '/', './...'], { cwd: GOMOD, env: w.env, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (b: Buffer) => { stdout += b.toString() })
    child.stderr.on('data', (b: Buffer) => { stderr += b.toString() })
    const done = new Promise<number | null>(resolve => child.on('close', code => resolve(code)))
    await waitFor(async () => (await status(w)).counters?.compiles >= 5, 120_000, () => 'five compiles on the node')
    await daemon.kill('SIGKILL')
    const code = await done
    assert.equal(code, 0, stderr)
    const s = JSON.parse(stdout.trim().split('\n').at(-1) as string)
    assert.match(s.nodeLost, /closed/)
    assert.ok((s.compiles.fallbacks['node-unreachable'] ?? 0) + (s.compiles.fallbacks['node-error'] ?? 0) > 0, JSON.stringify(s.compiles))
    await sameFiles(out, ref)
  })

  it('a blob corrupted on disk is detected by hash, dropped and rebuilt; the output is correct', async (t) => {
    const w = await world(t)
    // The same command twice: the second build's helper gets the entries recalled, and must
    // still notice that their blobs changed.
    const out = join(w.dir, 'out')
    const first = await grid(w, ['--json', 'build', '-o', out + '/', './...'])
    assert.equal(first.code, 0, first.stderr)
    // Flip a byte in every blob over 100 KiB: the runtime's and other archives the link needs.
    const blobs = join(w.cacheDir, 'blobs')
    let corrupted = 0
    for (const shard of await readdir(blobs)) {
      if (shard === 'tmp') continue
      for (const name of await readdir(join(blobs, shard))) {
        const path = join(blobs, shard, name)
        if ((await stat(path)).size < 100 * 1024) continue
        const bytes = await readFile(path)
        bytes[bytes.length >> 1] = (bytes[bytes.length >> 1] as number) ^ 0x5a
        await writeFile(path, bytes)
        corrupted++
      }
    }
    assert.ok(corrupted > 0)
    await w.freshGoCache()
    await rm(out, { recursive: true }) // so that the binaries are linked again, from what the build gets
    const second = await grid(w, ['--json', 'build', '-o', out + '/', './...'])
    assert.equal(second.code, 0, second.stderr)
    const s = summary(second)
    assert.ok(s.cache.corrupt > 0, `corrupt blobs reported: ${JSON.stringify(s.cache)}`)
    assert.ok(s.cache.recalled > 0, `the untouched entries were recalled: ${JSON.stringify(s.cache)}`)
    assert.ok(s.compiles.local > 0, 'the dropped entries were rebuilt')
    await sameFiles(out, ref)
    const log = await readFile(join(w.cacheDir, 'logs', 'grid.log'), 'utf8')
    assert.match(log, /does not hash to its name/)
  })

  it('an index a crash left unreadable is repaired as the node starts: the next build hits what it held', async (t) => {
    const w = await world(t)
    const out = join(w.dir, 'out')
    const first = await grid(w, ['--json', 'build', '-o', out + '/', './...'])
    assert.equal(first.code, 0, first.stderr)
    await writeFile(join(w.cacheDir, 'index', 'CURRENT'), 'garbage\0')
    await w.freshGoCache()
    await rm(out, { recursive: true })
    const second = await grid(w, ['--json', 'build', '-o', out + '/', './...'])
    assert.equal(second.code, 0, second.stderr)
    const s = summary(second)
    assert.equal(s.compiles.local, 0, `every entry kept: ${JSON.stringify(s.cache)}`)
    assert.ok(s.cache.hits > 0)
    await sameFiles(out, ref)
    const log = await readFile(join(w.cacheDir, 'logs', 'grid.log'), 'utf8')
    assert.match(log, /does not open \(Corruption: [^)]*\): repairing it/)
    assert.match(log, /repaired the cache index/)
  })

  const noneCanStart = /grid: warning: no node answers on .* and none can start: .*\. This build runs as plain go/
  for (const [why, shut, says] of [
    ['another process holds it', async (w: World) => {
      const { Cache } = await import('@grid/node/server')
      const holder = await Cache.open({ dir: w.cacheDir, nodeId: 'holder' }) // as grid cache verify does with no daemon
      return async () => { await holder.close() }
    }, noneCanStart],
    ['its index cannot be opened', async (w: World) => {
      await mkdir(w.cacheDir, { recursive: true })
      await writeFile(join(w.cacheDir, 'index'), 'not a LevelDB') // as a full disk or permissions keep it shut
      return async () => {}
    }, noneCanStart],
    ['its control path is a directory', async (w: World) => {
      await mkdir(w.control, { recursive: true })
      return async () => { assert.equal((await stat(w.control)).isDirectory(), true, 'left as it was') }
    }, /grid: warning: no node answers on .* and none can start: .* is a directory, not a socket: grid will not replace it\. This build runs as plain go/],
    ['its control path is a file', async (w: World) => {
      await writeFile(w.control, 'a config, say')
      return async () => { assert.equal(await readFile(w.control, 'utf8'), 'a config, say', 'never replaced by a socket') }
    }, /is a file, not a socket/],
    ['its control path is too long for a socket', async (w: World) => {
      w.env.GRID_CONTROL = join(w.dir, 'x'.repeat(120) + '.sock')
      return async () => {
        const s = await grid(w, ['status'])
        assert.equal(s.code, 1, 'status says what is wrong, not "not running"')
        assert.match(s.stderr, /over the 107-byte limit of Unix sockets.*\(GRID_ERR_SOCKET_PATH\)/)
      }
    }, /grid: warning: .*over the 107-byte limit of Unix sockets.*\. This build runs as plain go/],
    ['its config file is not JSON', async (w: World) => {
      await writeFile(w.env.GRID_CONFIG as string, '{ "listen": ')
      return async () => {}
    }, /grid: warning: no node answers on .* and none can start: .*config\.json: not JSON.*\. This build runs as plain go/],
    ['the cache dir is a file', async (w: World) => {
      await rm(w.cacheDir, { recursive: true, force: true })
      await writeFile(w.cacheDir, 'not a dir')
      return async () => {}
    }, /grid: warning: cannot use .* as grid's cache dir: it, or a dir above it, is not a directory\. This build runs as plain go/],
    // What a full cache dir refuses first, each driven here by something in the way of the
    // file: the shim (a new Go or grid), the node's key (a new cache dir), the blob store.
    ['the shim cannot be written into the cache dir', async (w: World) => {
      await rm(join(w.cacheDir, 'shim'), { recursive: true, force: true })
      await writeFile(join(w.cacheDir, 'shim'), 'in the way')
      return async () => {}
    }, /grid: warning: cannot write grid's shim into the cache dir .*\. This build runs as plain go/],
    ['the node\'s key cannot be written into the cache dir', async (w: World) => {
      await mkdir(join(w.cacheDir, 'peer.key'), { recursive: true })
      return async () => {}
    }, /grid: warning: no node answers on .* and none can start: cannot read or write the node's key .*\. This build runs as plain go/],
    ['the node\'s key is not a key', async (w: World) => {
      await writeFile(join(w.cacheDir, 'peer.key'), 'garbage\n')
      return async () => {}
    }, /grid: warning: no node answers on .* and none can start: the node's key .*peer\.key is not a key grid can read .*\. This build runs as plain go.*\n {2}hint: move it aside/],
    ['the blob store cannot be made in the cache dir', async (w: World) => {
      await writeFile(join(w.cacheDir, 'blobs'), 'in the way')
      return async () => {}
    }, /grid: warning: no node answers on .* and none can start: cannot make the blob store in .*\. This build runs as plain go/],
    // The node answers, and fails as it never should (a bug, a daemon of another version): the
    // grid never fails a build, go builds without it.
    ['the node answering fails the build\'s start with an error of its own', async (w: World) => {
      const { ControlServer } = await import('@grid/node/server')
      const { GridError } = await import('@grid/protocol')
      const server = new ControlServer({ path: w.control, handler: async () => { throw new GridError('GRID_ERR_INTERNAL', 'a bug in the node') } })
      await server.start()
      return async () => { await server.stop() }
    }, /grid: warning: the node at .* could not take this build: a bug in the node \(GRID_ERR_INTERNAL\)\. This build runs as plain go/],
    ['the shim does not build with this go', async (w: World) => {
      await rm(join(w.cacheDir, 'shim'), { recursive: true, force: true })
      const wrapper = join(w.dir, 'go-no-shim')
      await writeFile(wrapper, '#!/bin/sh\ncase "$*" in *grid-shim*) echo "this go builds no shim" >&2; exit 1;; esac\nexec go "$@"\n', { mode: 0o755 })
      w.env.GRID_GO = wrapper
      return async () => {}
    }, /grid: warning: building the shim with .*go-no-shim .* failed: this go builds no shim\. This build runs as plain go/]
  ] as const) {
    it(`no node can take the build because ${why}: the build runs as plain go, says why, and is identical`, async (t) => {
      const w = await world(t)
      await stdWarmGoCache(w) // what plain go compiles is the module's packages
      const release = await shut(w)
      const out = join(w.dir, 'out')
      let r: Awaited<ReturnType<typeof grid>>
      try {
        r = await grid(w, ['--json', 'build', '-o', out + '/', './...'])
      } finally {
        await release()
      }
      assert.equal(r.code, 0, r.stderr)
      assert.match(r.stderr, says)
      assert.match(r.stderr, /\n {2}hint: \S/)
      const s = summary(r)
      assert.equal(s.node, 'none')
      assert.equal(s.toolexec, false)
      assert.ok(!s.command.some((a: string) => a.startsWith('-toolexec')), s.command.join(' '))
      assert.ok(s.command.includes('-trimpath'))
      await sameFiles(out, ref)
    })
  }

  it('a blob store that takes no more blobs (a full disk): the build warns, with the code and a hint, and is identical', async (t) => {
    const w = await world(t)
    // every shard dir is a file: each blob the helper writes is refused, as on a full disk
    await mkdir(join(w.cacheDir, 'blobs'), { recursive: true })
    for (let i = 0; i < 256; i++) await writeFile(join(w.cacheDir, 'blobs', i.toString(16).padStart(2, '0')), 'in the way')
    const out = join(w.dir, 'out')
    const r = await grid(w, ['--json', 'build', '-o', out + '/', './...'])
    assert.equal(r.code, 0, r.stderr)
    await sameFiles(out, ref)
    const s = summary(r)
    assert.ok(s.cache.unstored > 0 && s.cache.puts === 0, JSON.stringify(s.cache))
    assert.match(s.cache.unstoredWhy, /not a directory/)
    // without --json, the warning as the user reads it: for any build whose outputs were not
    // stored, so one package of no imports (a build of ./... compiled all the above again)
    const plain = await grid(w, ['build', './asmsum'])
    assert.equal(plain.code, 0, plain.stderr)
    assert.match(plain.stderr, /grid: warning: \d+ outputs of this build could not be stored in the cache \(.*not a directory\): the next build compiles them again \(GRID_ERR_CACHE_WRITE\)\n {2}hint: free some space/)
  })

  it('a TMPDIR that is not a directory (go\'s temp files in GOTMPDIR): the build succeeds, identical to plain go', async (t) => {
    const w = await world(t)
    const notDir = join(w.dir, 'not-a-dir')
    await writeFile(notDir, 'a file')
    const goTmp = join(w.dir, 'gotmp')
    await mkdir(goTmp)
    // cmd/alpha: no cgo, whose own temp files go to TMPDIR whatever GOTMPDIR says
    const env = { TMPDIR: notDir, GOTMPDIR: goTmp }
    const plainOut = join(w.dir, 'plain')
    const plain = await goBuild(['-o', plainOut + '/', './cmd/alpha'], GOMOD, env)
    assert.equal(plain.code, 0, plain.stderr)
    const out = join(w.dir, 'out')
    const r = await grid(w, ['build', '-o', out + '/', './cmd/alpha'], { env: { ...w.env, ...env } })
    assert.equal(r.code, 0, r.stderr)
    await sameFiles(out, plainOut)
  })

  it('a log dir that cannot be made (a full disk) costs the node its log, not the build', async (t) => {
    const w = await world(t)
    await writeFile(join(w.cacheDir, 'logs'), 'in the way')
    const out = join(w.dir, 'out')
    const r = await grid(w, ['--json', 'build', '-o', out + '/', './...'])
    assert.equal(r.code, 0, r.stderr)
    assert.equal(summary(r).node, 'embedded')
    await sameFiles(out, ref)
  })

  it('a swarm key the config names but that is missing: the build says so and runs alone, identical', async (t) => {
    const w = await world(t)
    const key = join(w.dir, 'no-such', 'swarm.key')
    await writeFile(w.env.GRID_CONFIG as string, JSON.stringify({ mdns: false, listen: ['/ip4/127.0.0.1/tcp/0'], swarmKey: key }))
    const out = join(w.dir, 'out')
    const r = await grid(w, ['--json', 'build', '-o', out + '/', './...'])
    assert.equal(r.code, 0, r.stderr)
    assert.ok(r.stderr.includes(`grid: warning: the swarm key ${key} is missing: this build runs without the mesh`), r.stderr)
    assert.match(r.stderr, /\n {2}hint: copy the team's swarm\.key there/)
    assert.equal(summary(r).node, 'embedded')
    await sameFiles(out, ref)
  })

  it('an embedded node whose mesh cannot listen (its port taken): the build says so once, with a hint, and runs alone, identical', async (t) => {
    const w = await world(t)
    const addr = await meshPortTaken(t, w)
    const out = join(w.dir, 'out')
    const r = await grid(w, ['--json', 'build', '-o', out + '/', './...'])
    assert.equal(r.code, 0, r.stderr)
    // the node joins the mesh on the build's first miss, in the background: it fails after go started
    const warnings = r.stderr.split('\n').filter(line => line.startsWith('grid: warning: '))
    assert.equal(warnings.length, 1, r.stderr)
    assert.ok(warnings[0]?.endsWith(`this build ran without the mesh (no peers, no shared cache): the mesh could not listen on ${addr}: address already in use (EADDRINUSE) (GRID_ERR_MESH_START)`), r.stderr)
    assert.match(r.stderr, /\n {2}hint: another program \(another grid daemon\?\) uses port \d+: /)
    assert.equal(summary(r).node, 'embedded')
    // and in --json, for scripts
    const { meshFailure } = summary(r)
    assert.equal(meshFailure?.code, 'GRID_ERR_MESH_START', r.stdout)
    assert.ok(warnings[0]?.endsWith(`: ${meshFailure.message as string} (GRID_ERR_MESH_START)`), meshFailure.message)
    assert.match(meshFailure.hint, /^another program \(another grid daemon\?\) uses port \d+: /)
    assert.ok((summary(r).compiles.localReasons['no-peers'] ?? 0) > 0, 'the build ran alone')
    await sameFiles(out, ref)
  })

  it('an embedded node that expects peers (a bootstrap address) and whose mesh cannot listen: its log says once why no peer is asked about its misses', async (t) => {
    // Regression: the node asked no peer about any miss and said nothing of why.
    const w = await world(t)
    const addr = await meshPortTaken(t, w, { bootstrap: true })
    // packages that import nothing, not even the runtime: a few misses, at a compile each
    const mod = join(w.dir, 'leaves')
    for (const name of ['a', 'b', 'c']) {
      await mkdir(join(mod, name), { recursive: true })
      await writeFile(join(mod, name, `${name}.go`), `package ${name}\n\nfunc F() int { return ${name.charCodeAt(0)} }\n`)
    }
    await writeFile(join(mod, 'go.mod'), 'module example.com/leaves\n\ngo 1.24\n')
    const r = await grid(w, ['--json', 'build', './...'], { cwd: mod, env: { ...w.env, DEBUG: 'grid:node' } })
    assert.equal(r.code, 0, r.stderr)
    const s = summary(r)
    assert.equal(s.node, 'embedded')
    assert.ok(s.cache.misses >= 3, `a miss per package: ${JSON.stringify(s.cache)}`)
    const lines = (await readFile(join(w.cacheDir, 'logs', 'grid.log'), 'utf8')).split('\n')
    const why = lines.filter(line => line.includes(' debug grid:node no peer is asked about this node\'s misses: '))
    assert.equal(why.length, 1, `said once, for ${s.cache.misses} misses:\n${lines.join('\n')}`)
    assert.ok(why[0]?.endsWith(`its mesh did not start (the mesh could not listen on ${addr}: address already in use (EADDRINUSE) (GRID_ERR_MESH_START))`), why[0])
    assert.equal(lines.filter(line => line.includes(' warn grid:node mesh not started: ')).length, 1, lines.join('\n'))
  })

  it('two builds at once on one node are both correct', async (t) => {
    const w = await world(t)
    await startDaemon(t, w)
    const builds = await Promise.all([1, 2].map(async i => {
      const env = { ...w.env, GOCACHE: join(w.dir, `gocache-parallel-${i}`) }
      const out = join(w.dir, `out${i}`)
      return { out, r: await grid(w, ['--json', 'build', '-o', out + '/', './...'], { env }) }
    }))
    for (const { out, r } of builds) {
      assert.equal(r.code, 0, r.stderr)
      assert.equal(summary(r).node, 'daemon')
      await sameFiles(out, ref)
    }
    assert.equal((await status(w)).buildsServed, 2)
    // A helper that opens while another build runs asks the node about every miss: the other
    // build's puts are entries it can use (docs/cache.md, "Absent entries").
    const absent = builds.map(({ r }) => summary(r).cache.absent)
    assert.ok(absent.includes(0), `misses each build's helper answered itself: ${absent.join(', ')}`)
  })

  it('a daemon that hangs (SIGSTOP): the build gives up on it and runs as plain go, identical', async (t) => {
    const w = await world(t)
    await stdWarmGoCache(w) // what plain go compiles is the module's packages
    const daemon = await startDaemon(t, w, ['--no-mesh'])
    const pid = daemon.child.pid as number
    process.kill(pid, 'SIGSTOP')
    t.after(() => { try { process.kill(pid, 'SIGCONT') } catch {} }) // if it is still there
    const out = join(w.dir, 'out')
    // grid gives up on the node after 5 s, not its usual 15 (GRID_TEST_ANSWER_MS, control/client.ts)
    const r = await grid(w, ['--json', 'build', '-o', out + '/', './...'], { env: { ...w.env, GRID_TEST_ANSWER_MS: '5000' } })
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stderr, /grid: warning: the node at .* did not answer a build-begin request within 5 s\. This build runs as plain go/)
    // the daemon's own log and pid, for a kill -9 the user can paste (it does not act on a plain kill)
    assert.ok(r.stderr.includes(`hint: it may be hung: its log (${join(w.cacheDir, 'logs', 'grid.log')}) says what it last did;`), r.stderr)
    assert.ok(r.stderr.includes(`kill -9 ${pid} ends it`), r.stderr)
    const s = summary(r)
    assert.equal(s.node, 'none')
    assert.ok(s.wallMs >= 5_000, 'the wait is in the build\'s time')
    await sameFiles(out, ref)
  })

  it('a daemon that hangs during a build (SIGSTOP): the build goes on without it and does not wait for it at the end, identical', async (t) => {
    const w = await world(t)
    const daemon = await startDaemon(t, w, ['--no-mesh'])
    const pid = daemon.child.pid as number
    t.after(() => { try { process.kill(pid, 'SIGCONT') } catch {} }) // if it is still there
    const out = join(w.dir, 'out')
    // the shims and the cache helper give up on the silent node after 10 s, not 30 (the
    // shortest GRID_TEST_STALL_MS takes: two keepalives)
    const building = grid(w, ['--json', 'build', '-o', out + '/', './...'], { env: { ...w.env, GRID_TEST_STALL_MS: '10000' } })
    await waitFor(async () => (await status(w)).counters?.compiles >= 3, 120_000, () => 'three compiles on the node')
    process.kill(pid, 'SIGSTOP')
    const r = await building
    assert.equal(r.code, 0, r.stderr)
    const s = summary(r)
    assert.ok(s.compiles.fallbacks['node-stalled'] > 0, JSON.stringify(s.compiles.fallbacks))
    // the shims or the cache helper found it hung: build-end is not given its usual 15 s
    assert.match(s.nodeLost, /stopped answering during the build/)
    await sameFiles(out, ref)
  })

  for (const [how, signal, group, command] of [
    ['Ctrl-C', 'SIGINT', true, 'build'], ['SIGTERM to grid alone (a supervisor)', 'SIGTERM', false, 'build'], ['Ctrl-C', 'SIGINT', true, 'env']
  ] as const) {
    it(`${how} while grid ${command} builds its shim (a first one after an upgrade): grid dies of it as go does, leaving no go build or temp dir`, async (t) => {
      const w = await world(t)
      const gotmp = join(w.dir, 'gotmp')
      await mkdir(gotmp)
      // a cache dir with no shim yet: grid builds one, with go build in a temp dir in GOTMPDIR
      const env = { ...w.env, GRID_CACHE: join(w.dir, 'upgraded'), GOTMPDIR: gotmp }
      const child = spawn(process.execPath, [GRID_BIN, command, ...(command === 'build' ? ['./...'] : [])], { cwd: GOMOD, env, detached: true, stdio: 'ignore' })
      const exited = new Promise<NodeJS.Signals | number | null>(resolve => child.once('exit', (code, signal) => resolve(signal ?? code)))
      t.after(() => { try { process.kill(-(child.pid as number), 'SIGKILL') } catch {} })
      const building = async (): Promise<string[]> => (await readdir(gotmp)).filter(name => name.startsWith('grid-shim-'))
      await waitFor(async () => (await building()).length > 0, 60_000, () => 'the shim\'s build to start')
      process.kill(group ? -(child.pid as number) : child.pid as number, signal) // a terminal signals the whole process group
      assert.equal(await exited, signal)
      await waitFor(async () => !(await processesNaming(gotmp)), 10_000, () => 'no go build of the shim left running')
      assert.deepEqual(await building(), [], 'the shim build\'s temp dir is removed')
    })
  }

  for (const [how, signal, group] of [['Ctrl-C', 'SIGINT', true], ['SIGTERM to grid alone (a supervisor)', 'SIGTERM', false]] as const) {
    it(`${how} while go builds: grid dies of it as go does, so that a shell script stops there too`, async (t) => {
      // A shell tells a command that died of Ctrl-C from one that exited 130: a script's loop of
      // builds stopped at the first under plain go, and under grid went on to the next build.
      const w = await world(t)
      await startDaemon(t, w, ['--no-mesh'])
      const interrupt = async (cmd: string, args: string[], env: NodeJS.ProcessEnv, started: () => Promise<boolean>): Promise<NodeJS.Signals | number | null> => {
        const child = spawn(cmd, args, { cwd: GOMOD, env, detached: true, stdio: 'ignore' })
        const exited = new Promise<NodeJS.Signals | number | null>(resolve => child.once('exit', (code, signal) => resolve(signal ?? code)))
        t.after(() => { try { process.kill(-(child.pid as number), 'SIGKILL') } catch {} })
        await waitFor(started, 120_000, () => `${cmd} to start compiling`)
        process.kill(group ? -(child.pid as number) : child.pid as number, signal) // a terminal signals the whole process group
        return await exited
      }
      const plainCache = join(w.dir, 'gocache-plain')
      const plain = await interrupt('go', ['build', '-a', '-trimpath', './...'], { ...w.env, GOCACHE: plainCache },
        async () => (await readdir(plainCache).catch(() => [])).length > 16) // go's cache has its first entries
      assert.equal(plain, signal, 'plain go dies of it')
      const viaGrid = await interrupt(process.execPath, [GRID_BIN, 'build', '-a', './...'], w.env, async () => (await status(w)).counters?.compiles >= 1)
      assert.equal(viaGrid, signal, 'so does grid')
    })
  }

  it('a second Ctrl-C ends grid at once while a step before go does not heed the first (a go that hangs)', async (t) => {
    const w = await world(t)
    // a go that hangs and ignores Ctrl-C, as on a home on a stalled file server
    const hung = join(w.dir, 'go')
    await writeFile(hung, '#!/bin/sh\ntrap "" INT\nsleep 3600\n', { mode: 0o755 })
    const child = spawn(process.execPath, [GRID_BIN, 'build', './...'], { cwd: GOMOD, env: { ...w.env, GRID_GO: hung }, detached: true, stdio: 'ignore' })
    const exited = new Promise<NodeJS.Signals | number | null>(resolve => child.once('exit', (code, signal) => resolve(signal ?? code)))
    t.after(() => { try { process.kill(-(child.pid as number), 'SIGKILL') } catch {} })
    await waitFor(async () => await processesNaming(hung), 60_000, () => 'grid to ask the go that hangs')
    process.kill(-(child.pid as number), 'SIGINT')
    await new Promise(resolve => setTimeout(resolve, 1_000)) // two presses, not one signal twice (they would merge)
    process.kill(-(child.pid as number), 'SIGINT')
    const ended = await Promise.race([exited, new Promise(resolve => setTimeout(resolve, 20_000, 'still running 20 s after the second Ctrl-C'))])
    assert.equal(ended, 'SIGINT')
  })

  it('a compile waiting for a slot hears compile-wait every few seconds, so its shim can tell a busy node from a hung one', async (t) => {
    const w = await world(t)
    const gotooldir = await oneSlotNode(t, w)
    const client = await ControlClient.connect(w.control)
    t.after(() => { client.close() })
    const { build } = await client.request({ type: 'build-begin', command: ['go', 'build'], cwd: w.dir })
    const compile = encodeFrame({
      type: 'compile', id: 1, build, tool: join(gotooldir, 'compile'), args: ['-o', join(w.dir, 'x.a'), '-p', 'x', join(w.dir, 'x.go')],
      cwd: w.dir, env: {}, importPath: 'x', canRunHere: true
    })
    const holder = await openFrames(w)
    t.after(() => { holder.socket.destroy() })
    holder.socket.write(compile)
    const granted = await holder.next(5_000) as { type: string, nice?: number }
    assert.equal(granted.type, 'compile-here', 'the only slot, granted')
    assert.equal(granted.nice, undefined, 'with no peers, at go\'s own priority')
    const waiter = await openFrames(w)
    t.after(() => { waiter.socket.destroy() })
    waiter.socket.write(compile)
    const started = Date.now()
    const heard = await waiter.next(COMPILE_KEEPALIVE_MS + 3_000)
    assert.equal(heard.type, 'compile-wait', `while the slot is taken: ${JSON.stringify(heard)}`)
    assert.equal(heard.id, 1)
    assert.ok(Date.now() - started >= COMPILE_KEEPALIVE_MS - 500, 'not before the keepalive interval')
    holder.socket.destroy() // the compiler the slot went to has exited
    assert.equal((await waiter.next(5_000)).type, 'compile-here', 'then the slot, once free')
  })

  it('a compile of Go 1.25 is granted its slot without a starting heap, which its compiler would refuse (go1.26 with one)', async (t) => {
    const w = await world(t)
    const gotooldir = await oneSlotNode(t, w)
    const grant = async (goversion: string): Promise<{ type: string, heapMB?: number }> => await roundTrip(w, encodeFrame({
      type: 'compile', id: 1, build: '', tool: join(gotooldir, 'compile'), args: ['-o', join(w.dir, 'x.a'), '-p', 'x', '-goversion', goversion, join(w.dir, 'x.go')],
      cwd: w.dir, env: {}, importPath: 'x', canRunHere: true
    })) // the connection closes at once: the slot is free again
    const old = await grant('go1.25.5')
    assert.equal(old.type, 'compile-here')
    assert.equal(old.heapMB, undefined, '-d=gcstart is an unknown debug key before Go 1.26: every compile failed')
    assert.equal((await grant('go1.26.8')).heapMB, 512)
  })

  it('malformed and oversized frames close that connection with a logged reason; the node keeps serving', async (t) => {
    const w = await world(t)
    const daemon = await startDaemon(t, w)
    const oversized = Buffer.alloc(4)
    oversized.writeUInt32BE(MAX_FRAME_BYTES + 1)
    const cases: Array<[string, Buffer, RegExp]> = [
      ['random bytes', Buffer.from([0, 0, 0, 5, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1]), /GRID_ERR_FRAME_MALFORMED/],
      ['oversized length', oversized, /GRID_ERR_FRAME_TOO_LARGE/],
      ['unknown type', rawFrame({ type: 'rm-rf', id: 1, path: '/' }), /GRID_ERR_MESSAGE_INVALID/],
      ['a reply sent as a request', encodeFrame({ type: 'ok', id: 1 }), /GRID_ERR_MESSAGE_INVALID/]
    ]
    for (const [what, bytes, reason] of cases) {
      const closed = await sendAndWaitClose(w, bytes)
      assert.ok(closed, `${what}: connection closed by the node`)
      await waitFor(() => reason.test(daemon.stderr()), 5_000, () => `${what} logged as ${reason}`)
      const s = await status(w)
      assert.equal(s.running, true, `${what}: node still serving`)
    }
    assert.equal((await status(w)).counters.badFrames, cases.length)
    // and a good request on a raw socket still gets its reply
    const reply = await roundTrip(w, encodeFrame({ type: 'cache-stats', id: 9 }))
    assert.equal(reply.type, 'cache-stats-result')
  })

  it('a node names its protocol version to grid build, and refuses an older grid\'s messages with a logged reason', async (t) => {
    const w = await world(t)
    const daemon = await startDaemon(t, w)
    const client = await ControlClient.connect(w.control)
    t.after(() => client.close())
    const begun = await client.request({ type: 'build-begin', command: ['go', 'build', './...'], cwd: w.dir })
    assert.equal(begun.protocol, PROTOCOL_VERSION)
    // what the cache helper of protocol 1 sent for each put
    const old = rawFrame({ type: 'cache-put', id: 1, build: begun.build, actionId: Buffer.alloc(32), outputId: Buffer.alloc(32), size: 0 })
    assert.ok(await sendAndWaitClose(w, old), 'connection closed by the node')
    await waitFor(() => /unknown type "cache-put"/.test(daemon.stderr()), 5_000, () => 'the refused message logged')
    assert.equal((await status(w)).running, true)
  })

  it('an index batch that names a missing blob stores the rest, and the node says which', async (t) => {
    const w = await world(t)
    const daemon = await startDaemon(t, w)
    const client = await ControlClient.connect(w.control)
    t.after(() => client.close())
    const { blobDir } = await client.request({ type: 'cache-open', build: 'none' })
    const body = Buffer.from('an archive')
    const outputId = createHash('sha256').update(body).digest()
    await mkdir(join(blobDir, outputId.toString('hex').slice(0, 2)), { recursive: true })
    await writeFile(join(blobDir, outputId.toString('hex').slice(0, 2), outputId.toString('hex')), body)
    const record = (action: number, output: Buffer, size: number): Buffer => {
      const r = Buffer.alloc(INDEX_RECORD_BYTES)
      r.fill(action, 0, 32)
      output.copy(r, 32)
      r.writeBigUInt64BE(BigInt(size), 64)
      return r
    }
    const missing = createHash('sha256').update('never written').digest()
    const entries = Buffer.concat([record(1, outputId, body.length), record(2, missing, 13), record(3, outputId, body.length + 1)])
    const reply = await client.request({ type: 'cache-index', build: 'none', entries })
    assert.equal(reply.stored, 1)
    await waitFor(() => (daemon.stderr().match(/not stored/g) ?? []).length === 2, 5_000, () => 'the two bad entries logged')
    const hit = await client.request({ type: 'cache-get', build: 'none', actionId: Buffer.alloc(32, 1) })
    assert.equal(hit.type, 'cache-hit')
    assert.deepEqual(Buffer.from((hit as { outputId: Uint8Array }).outputId), outputId)
    for (const action of [2, 3]) {
      const miss = await client.request({ type: 'cache-get', build: 'none', actionId: Buffer.alloc(32, action) })
      assert.equal(miss.type, 'cache-miss', `entry ${action} was not stored`)
    }
  })
})

/** An embedded node of one slot on `w`'s socket, stopped after the test; go's GOTOOLDIR, for the compiles the test sends it. */
async function oneSlotNode (t: { after: (fn: () => Promise<void>) => void }, w: World): Promise<string> {
  const { GridNode } = await import('@grid/node/embed')
  const node = new GridNode({ cacheDir: w.cacheDir, control: w.control, mode: 'embedded', slots: 1 })
  await node.start()
  t.after(async () => { await node.stop() })
  return (await run('go', ['env', 'GOTOOLDIR'])).stdout.trim()
}

function rawFrame (value: unknown): Buffer {
  const body = new Packr({ useRecords: false }).pack(value)
  const head = Buffer.alloc(4)
  head.writeUInt32BE(body.length)
  return Buffer.concat([head, body])
}

async function sendAndWaitClose (w: World, bytes: Buffer): Promise<boolean> {
  return await new Promise(resolve => {
    const socket = createConnection(w.control)
    const timer = setTimeout(() => { socket.destroy(); resolve(false) }, 5_000)
    socket.on('connect', () => socket.write(bytes))
    socket.on('error', () => {})
    socket.on('close', () => { clearTimeout(timer); resolve(true) })
  })
}

/** A raw connection to the node and the frames it sends, one at a time. */
async function openFrames (w: World): Promise<{ socket: Socket, next: (timeoutMs: number) => Promise<{ type: string, id: number }> }> {
  const socket = createConnection(w.control)
  await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject) })
  socket.on('error', () => {})
  const decoder = new FrameDecoder()
  const frames: Array<{ type: string, id: number }> = []
  let wake = (): void => {}
  socket.on('data', chunk => { frames.push(...decoder.push(chunk)); wake() })
  const next = async (timeoutMs: number): Promise<{ type: string, id: number }> => {
    const deadline = Date.now() + timeoutMs
    while (frames.length === 0) {
      if (Date.now() > deadline) throw new Error(`no frame from the node within ${timeoutMs} ms`)
      await new Promise<void>(resolve => { wake = resolve; setTimeout(resolve, 50) })
    }
    return frames.shift() as { type: string, id: number }
  }
  return { socket, next }
}
