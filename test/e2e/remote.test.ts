// Compiles on peers: three daemons on loopback, byte-identical output, and peers that die,
// hang or lie costing time, never correctness.
import assert from 'node:assert/strict'
import { cp, mkdir, rm, utimes, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { BACKLOG_DEPTH, LOCAL_NICE } from '@grid/node/server'
import { encodeFrame } from '@grid/protocol'
import { FIXTURES, GOMOD, MODDEP, goBuild, grid, moduleProxyEnv, patchedGoroot, roundTrip, run, sameFiles, startDaemon, status, summary, tempDir, waitFor, world, type Daemon, type World } from '../helpers/index.js'

const STDHTTP = join(FIXTURES, 'stdhttp')
type Ctx = Parameters<typeof world>[0]

async function addrOf (w: World): Promise<string> {
  return (await status(w)).mesh.addrs[0]
}

/**
 * Workers that take work, and a requester that by default sends every compile it can to them
 * (`requesterArgs` replace that policy).
 */
/** The fixture module built by plain go and through grid on `r`: grid's binaries must be the same bytes; its compile summary. */
async function fixtureAgainstPlain (r: World): Promise<any> {
  const ref = join(r.dir, 'ref')
  const out = join(r.dir, 'out')
  assert.equal((await goBuild(['-o', ref + '/', './...'])).code, 0)
  const res = await grid(r, ['--json', 'build', '-o', out + '/', './...'])
  assert.equal(res.code, 0, res.stderr)
  await sameFiles(out, ref)
  return summary(res).compiles
}

async function cluster (t: Ctx, workerEnv: NodeJS.ProcessEnv[] = [{}, {}], requesterArgs = ['--offload', 'always']): Promise<{ r: World, workers: Array<{ w: World, d: Daemon }> }> {
  // the workers start side by side: each has a world of its own
  const workers = await Promise.all(workerEnv.map(async env => {
    const w = await world(t)
    const d = await startDaemon(t, w, ['--accept-remote', 'always', '--slots', '2'], env)
    return { w, d }
  }))
  const r = await world(t)
  const bootstrap = (await Promise.all(workers.map(async ({ w }) => await addrOf(w)))).flatMap(a => ['--bootstrap', a])
  // --trust self: the workers' caches must not answer for them; this is about compiles.
  await startDaemon(t, r, [...requesterArgs, '--trust', 'self', ...bootstrap])
  await waitFor(async () => {
    const peers = JSON.parse((await grid(r, ['--json', 'peers'])).stdout) as Array<{ connected: boolean, advert: { toolchains: unknown[] } }>
    return peers.filter(p => p.connected && p.advert.toolchains.length > 0).length === workers.length
  }, 20_000, () => 'the requester to see its workers with their toolchains')
  return { r, workers }
}

describe('remote compiles', () => {
  it('3 daemons: ≥ 30 % of compiles run on peers and the binaries are byte-identical to go build -trimpath', async (t) => {
    // The three daemons share this machine's cores. With two local slots the requester kept
    // 60-70 % of the compiles (its peers, compiling on the same cores, were busy), once 70.4 %:
    // one local slot, and what waits for it goes to a peer that frees up first (the backlog).
    const { r } = await cluster(t, [{}, {}], ['--offload', 'always', '--slots', '1'])
    // -cover: the compiles of the module's packages carry a -coveragecfg input. moddep last:
    // by then its standard packages are cached, and what compiles is its own package and the
    // two of its dependency, whose sources (an embedded file among them) are in the module cache.
    const cases = [
      { name: 'stdhttp', cwd: STDHTTP, pkgs: ['.'], env: {} },
      { name: 'gomod', cwd: GOMOD, pkgs: ['./...'], env: {} },
      { name: 'gomod-cover', cwd: GOMOD, pkgs: ['-cover', './...'], env: {} },
      // each build with a module cache of its own: -trimpath leaves no trace of where it is
      { name: 'moddep', cwd: MODDEP, pkgs: ['.'], env: await moduleProxyEnv(t), gridEnv: await moduleProxyEnv(t) }
    ]
    const onPeers: Record<string, number> = {} // the compiles each worker won, over the builds so far
    for (const { name, cwd, pkgs, env, gridEnv } of cases) {
      const ref = join(r.dir, `ref-${name}`)
      const out = join(r.dir, `out-${name}`)
      const plain = await goBuild(['-o', ref + '/', ...pkgs], cwd, env)
      assert.equal(plain.code, 0, plain.stderr)
      const res = await grid(r, ['--json', 'build', '-o', out + '/', ...pkgs], { cwd, env: { ...r.env, ...(gridEnv ?? env) } })
      assert.equal(res.code, 0, res.stderr)
      const c = summary(res).compiles
      const share = c.remote / (c.remote + c.local)
      t.diagnostic(`${name}: ${c.remote} remote, ${c.local} local (${JSON.stringify(c.localReasons)}); transfer ${c.remoteTransferMs} ms, compile ${c.remoteCompileMs} ms`)
      if (name === 'stdhttp') assert.ok(share >= 0.3, `${name}: ${c.remote} of ${c.remote + c.local} compiles ran on peers`)
      if (name === 'gomod-cover') assert.equal(c.localReasons['unsupported-task'] ?? 0, 0, 'coverage compiles are tasks like any other')
      if (name === 'moddep') assert.ok(c.remote > 0 && c.remote + c.local <= 3, `moddep: its own three packages, some on peers: ${JSON.stringify(c)}`)
      // its dependency came into a fresh module cache as go loaded the packages: a download, not an edit
      assert.equal(summary(res).cache.edited, 0, `${name}: every output stored`)
      await sameFiles(out, ref)
      // the requester's entry of each compile a worker ran names that worker (docs/cache.md, invariant 5)
      for (const [peer, n] of Object.entries(c.byPeer as Record<string, number>)) onPeers[peer] = (onPeers[peer] ?? 0) + n
      const stats = await grid(r, ['--json', 'cache', 'stats'])
      assert.equal(stats.code, 0, stats.stderr)
      const total = Object.values(onPeers).reduce((a, b) => a + b, 0)
      assert.deepEqual(JSON.parse(stats.stdout).compiledOnPeers, { entries: total, byPeer: onPeers }, `${name}: entries compiled on peers, by worker`)
    }
  })

  it('-race, -pgo and a cross-compile run on peers too, byte-identical', async (t) => {
    const { r } = await cluster(t)
    const pgo = join(FIXTURES, 'pgo', 'cpu.pprof')
    // GOARCH=arm64 leaves out cgocalc (cgo is off when cross-compiling) and beta with it
    const cases = [
      { name: 'race', args: ['-race', './...'], env: {} },
      { name: 'pgo-arm64', args: [`-pgo=${pgo}`, './cmd/alpha', './wordfreq'], env: { GOARCH: 'arm64' } }
    ]
    for (const { name, args, env } of cases) {
      const ref = join(r.dir, `ref-${name}`)
      const out = join(r.dir, `out-${name}`)
      const plain = await goBuild(['-o', ref + '/', ...args], GOMOD, env)
      assert.equal(plain.code, 0, plain.stderr)
      const res = await grid(r, ['--json', 'build', '-o', out + '/', ...args], { env: { ...r.env, ...env } })
      assert.equal(res.code, 0, res.stderr)
      const c = summary(res).compiles
      t.diagnostic(`${name}: ${c.remote} remote, ${c.local} local (${JSON.stringify(c.localReasons)})`)
      assert.ok(c.remote > 0, `${name}: no compile ran on a peer: ${JSON.stringify(c.localReasons)}`)
      assert.equal(c.localReasons['unsupported-task'] ?? 0, 0, `${name}: every compile is a task`)
      await sameFiles(out, ref)
    }
  })

  it('default policy: compiles waiting for the one local slot go to peers as they free up, byte-identical', async (t) => {
    const { r } = await cluster(t, [{}, {}], ['--slots', '1'])
    const ref = join(r.dir, 'ref')
    const out = join(r.dir, 'out')
    assert.equal((await goBuild(['-o', ref + '/', '.'], STDHTTP)).code, 0)
    // --toolexec auto keeps the shim: peers can take compiles
    const res = await grid(r, ['--json', '--toolexec', 'auto', 'build', '-o', out + '/', '.'], { cwd: STDHTTP })
    assert.equal(res.code, 0, res.stderr)
    const s = summary(res)
    const c = s.compiles
    t.diagnostic(`${c.remote} remote (${c.fromBacklog} from the backlog), ${c.local} local (${JSON.stringify(c.localReasons)})`)
    assert.equal(s.toolexec, true)
    assert.ok(s.command.some((a: string) => a.startsWith('-toolexec=')), s.command.join(' '))
    // go -p: the one local slot, the workers' 4 free slots, and BACKLOG_DEPTH more waiting here
    const p = s.command.indexOf('-p')
    assert.equal(p >= 0 ? s.command[p + 1] : undefined, String(1 + 4 + BACKLOG_DEPTH), `go's -p in ${s.command.join(' ')}`)
    // a -p of the user's own wins, in GOFLAGS too (go's command line would override it)
    const own = await grid(r, ['--json', 'build', '-o', join(r.dir, 'own') + '/', '.'], { cwd: STDHTTP, env: { ...r.env, GOFLAGS: '-p=3' } })
    assert.equal(own.code, 0, own.stderr)
    assert.ok(!summary(own).command.includes('-p'), `grid raised GOFLAGS' -p=3: ${summary(own).command.join(' ')}`)
    assert.ok(c.remote > 0 && c.fromBacklog > 0, `peers took compiles from the backlog: ${JSON.stringify(c)}`)
    assert.ok(c.fromBacklog <= c.remote)
    await sameFiles(out, ref)
    // with peers that take compiles, one run here goes below go's own steps (LOCAL_NICE)
    const here = await roundTrip(r, encodeFrame({
      type: 'compile', id: 1, build: '', tool: 'compile', args: ['-o', join(r.dir, 'x.a'), '-p', 'x'], cwd: r.dir, env: {}, importPath: 'x', canRunHere: true
    }))
    assert.deepEqual({ type: here.type, nice: here.nice }, { type: 'compile-here', nice: LOCAL_NICE })
    // go test's -p also bounds the test binaries run at once: grid test leaves it to go
    const tested = await grid(r, ['--json', 'test', './set'])
    assert.equal(tested.code, 0, tested.stderr)
    const command = summary(tested).command
    assert.ok(!command.includes('-p'), `grid test added -p: ${command.join(' ')}`)
  })

  it('a peer killed in the middle of a build, 10 times: every build completes with identical output', async (t) => {
    const { r, workers } = await cluster(t)
    const victim = workers[0] as { w: World, d: Daemon }
    const mod = join(await tempDir(t), 'mod')
    await cp(GOMOD, mod, { recursive: true })
    // warm the standard library on both sides, so each round compiles only the module
    assert.equal((await grid(r, ['build', './...'], { cwd: mod })).code, 0)
    for (let round = 1; round <= 10; round++) {
      // change a package most of the module imports: several compiles per round
      const file = join(mod, 'set', 'round.go')
      await writeFile(file, `package set\n\n// Round is rewritten by the test.\nconst Round = ${round}\n`)
      const ref = join(r.dir, `ref-${round}`)
      const out = join(r.dir, `out-${round}`)
      assert.equal((await goBuild(['-o', ref + '/', './...'], mod)).code, 0)
      const building = grid(r, ['--json', 'build', '-o', out + '/', './...'], { cwd: mod })
      await new Promise(resolve => setTimeout(resolve, 150 + (round * 97) % 600))
      await victim.d.kill('SIGKILL')
      const res = await building
      assert.equal(res.code, 0, `round ${round}: ${res.stderr}`)
      await sameFiles(out, ref)
      victim.d = await startDaemon(t, victim.w, ['--accept-remote', 'always', '--slots', '2'])
    }
  })

  it('a build with another GOROOT whose compiler has the same -V=full (a patched copy) compiles nothing on peers and is byte-identical to plain go', async (t) => {
    const { r } = await cluster(t)
    // The daemons probed the go on PATH; this GOROOT's compiler prints the same -V=full and
    // writes other bytes (patchedGoroot).
    const env = { GOROOT: await patchedGoroot(t) }
    const ref = join(r.dir, 'ref')
    const out = join(r.dir, 'out')
    // plain go with that GOROOT, in a GOCACHE of its own (the stock compiler's entries have the same keys)
    const plain = await run('go', ['build', '-trimpath', '-o', ref + '/', './...'], { cwd: GOMOD, env: { ...process.env, ...env, GOCACHE: join(r.dir, 'gocache-ref') } })
    assert.equal(plain.code, 0, plain.stderr)
    const res = await grid(r, ['--json', 'build', '-o', out + '/', './...'], { env: { ...r.env, ...env } })
    assert.equal(res.code, 0, res.stderr)
    const c = summary(res).compiles
    t.diagnostic(`remote ${c.remote}, local ${c.local}, reasons ${JSON.stringify(c.localReasons)}`)
    await sameFiles(out, ref)
    assert.equal(c.remote, 0, 'the peers run the compiler they probed, not this one')
    assert.ok((c.localReasons['toolchain-other'] ?? 0) > 0, JSON.stringify(c.localReasons))
  })

  it('a daemon that probes its compiler while Go is half reinstalled (no go) identifies it again once go is back, and its peers see its toolchain', async (t) => {
    // The worker's GOROOT: a copy whose compiler is a file of its own (patchedGoroot with no
    // flags: the stock compiler's bytes), run through a go that fails while `gone` exists, as
    // during `rm -rf /usr/local/go && tar -C /usr/local -xzf go….tar.gz`.
    const dir = await tempDir(t, 'reinstall')
    const goroot = await patchedGoroot(t, [])
    const realGo = join((await run('go', ['env', 'GOROOT'])).stdout.trim(), 'bin', 'go')
    const gone = join(dir, 'gone')
    const wrapper = join(dir, 'go')
    await writeFile(wrapper, `#!/bin/sh\nif [ -e '${gone}' ]; then echo 'go: not there (being reinstalled)' >&2; exit 1; fi\nexec '${realGo}' "$@"\n`, { mode: 0o755 })
    const { r, workers: [worker] } = await cluster(t, [{ GOROOT: goroot, GRID_GO: wrapper }])
    const w = worker as { w: World, d: Daemon }
    const toolchains = async (): Promise<number | undefined> => {
      const peers = JSON.parse((await grid(r, ['--json', 'peers'])).stdout) as Array<{ peerId: string, advert: { toolchains: unknown[] } }>
      const id = (await status(w.w)).nodeId as string
      return peers.find(p => p.peerId === id)?.advert.toolchains.length
    }
    // Go is being reinstalled: its compiler is another file now, and go is gone. A build on the
    // worker with that GOROOT has it look at its compiler, and probe it again: which fails.
    await writeFile(gone, '')
    const compile = join((await run('go', ['env', 'GOTOOLDIR'], { env: { ...process.env, GOROOT: goroot } })).stdout.trim(), 'compile')
    const later = new Date(Date.now() + 60_000)
    await utimes(compile, later, later)
    const mod = join(dir, 'mod')
    await mkdir(mod)
    await writeFile(join(mod, 'go.mod'), 'module tiny\n\ngo 1.24\n')
    await writeFile(join(mod, 'p.go'), 'package p\n\nfunc F() int { return 1 }\n')
    const res = await grid(w.w, ['build', './...'], { cwd: mod, env: { ...w.w.env, GOROOT: goroot } })
    assert.equal(res.code, 0, res.stderr)
    await waitFor(async () => await toolchains() === 0, 20_000, () => `the worker to advertise no toolchain: ${w.d.stderr()}`)
    assert.match(w.d.stderr(), /no Go toolchain to advertise: .*not there/)
    // Go is back: the daemon identifies its compiler again by itself (no build, no restart).
    await rm(gone)
    await waitFor(async () => await toolchains() === 1, 30_000, () => `the worker to advertise its toolchain again: ${w.d.stderr()}`)
  })

  it('a worker whose compiler prints the release\'s -V=full but decides otherwise gets no compile, and grid peers says why', async (t) => {
    // its GOROOT's compiler inlines no function with a closure: a compiler rebuilt from patched sources
    const { r } = await cluster(t, [{ GOROOT: await patchedGoroot(t, ['-d=inlfuncswithclosures=0']) }])
    const c = await fixtureAgainstPlain(r)
    assert.equal(c.remote, 0, JSON.stringify(c))
    assert.ok((c.localReasons['no-capable-peer'] ?? 0) > 0, JSON.stringify(c.localReasons))
    const [p] = JSON.parse((await grid(r, ['--json', 'peers'])).stdout) as Array<{ otherToolchain: string | null }>
    assert.match(p?.otherToolchain ?? '', /compiles the canary to other bytes/)
    assert.match((await grid(r, ['peers'])).stdout, /other toolchain: \w+: its compiler prints this node's "compile version go/)
  })

  it('a member of a newer grid version (other protocol versions) gets no compile, is not scored down, and grid peers says why', async (t) => {
    const { r } = await cluster(t, [{}])
    // The newer member advertises on the same topic, with the worker's toolchain and more free
    // slots, but speaks only the next versions of the compile and cache protocols.
    const { gossipsub } = await import('@libp2p/gossipsub')
    const { identify } = await import('@libp2p/identify')
    const { createLibp2p } = await import('libp2p')
    const { tcp } = await import('@libp2p/tcp')
    const { yamux } = await import('@libp2p/yamux')
    const { noise } = await import('@chainsafe/libp2p-noise')
    const { multiaddr } = await import('@multiformats/multiaddr')
    const { ADVERT_TOPIC } = await import('@grid/node')
    const { encodeAdvert, swarmPrologue } = await import('@grid/protocol')
    const newer = await createLibp2p({
      addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
      transports: [tcp()],
      connectionEncrypters: [noise({ prologueBytes: swarmPrologue(undefined) })],
      streamMuxers: [yamux()],
      nodeInfo: { name: 'grid', version: '9.0.0' },
      services: { identify: identify(), pubsub: gossipsub({ allowPublishToZeroTopicPeers: true, globalSignaturePolicy: 'StrictSign' }) }
    })
    t.after(async () => { await newer.stop() })
    for (const protocol of ['/grid/compile/9.0.0', '/grid/cache/9.0.0']) await newer.handle(protocol, (stream: { abort: (e: Error) => void }) => { stream.abort(new Error('test')) })
    const pubsub = newer.services.pubsub as unknown as { subscribe: (t: string) => void, getSubscribers: (t: string) => unknown[], publish: (t: string, d: Uint8Array) => Promise<unknown> }
    pubsub.subscribe(ADVERT_TOPIC)
    const worker = JSON.parse((await grid(r, ['--json', 'peers'])).stdout)[0].advert
    let seq = 0
    let toolchains = worker.toolchains
    const advertise = async (): Promise<void> => {
      await pubsub.publish(ADVERT_TOPIC, encodeAdvert({ ...worker, toolchains, peerId: newer.peerId.toString(), addrs: newer.getMultiaddrs().map(String), version: '9.0.0', slots: { total: 8, free: 8 }, seq: ++seq })).catch(() => {})
    }
    const timer = setInterval(() => { void advertise() }, 2_000)
    t.after(() => { clearInterval(timer) })
    await newer.dial(multiaddr((await status(r)).mesh.addrs[0]))
    const newerId = newer.peerId.toString()
    const listed = async (): Promise<any> => (JSON.parse((await grid(r, ['--json', 'peers'])).stdout) as any[]).find(p => p.peerId === newerId)
    await waitFor(async () => { await advertise(); return (await listed())?.connected === true }, 20_000, () => 'the requester to list the newer member')

    const c = await fixtureAgainstPlain(r)
    t.diagnostic(`remote ${c.remote} (${JSON.stringify(c.byPeer)}), local ${c.local} (${JSON.stringify(c.localReasons)})`)
    assert.equal(c.byPeer[newerId] ?? 0, 0)
    const p = await listed()
    assert.deepEqual(p.remote, { ok: 0, failed: 0, packed: false }, 'not scored down')
    assert.match(p.incompatible, /does not speak \/grid\/compile\/1\.2\.0/)
    assert.match(p.agent, /^grid\/9\.0\.0/)
    const text = (await grid(r, ['peers'])).stdout
    assert.match(text, new RegExp(`incompatible: ${newerId} \\(grid 9\\.0\\.0\\).*does not speak /grid/compile/1\\.2\\.0.*another grid version`))
    // A grid version whose canary package changed advertises another canary for the same
    // release: what differs is grid, and grid peers says so rather than suspect its compiler.
    toolchains = worker.toolchains.map((tc: { canary: string }) => ({ ...tc, canary: 'f'.repeat(64) }))
    await waitFor(async () => { await advertise(); return (await listed())?.otherToolchain != null }, 20_000, () => 'the requester to take the newer member\'s canary')
    assert.match((await listed()).otherToolchain, /compiles the canary to other bytes: it runs another grid version/)
  })

  it('a peer that hangs, one that returns garbage and one whose archives would run a command at link time: the build completes and all are scored down', async (t) => {
    // the third returns the true archive with a cgo section added: `cgo_ldflag -wrapper`, which
    // cmd/link would pass to the host linker (peerArchiveProblem)
    const { r, workers } = await cluster(t, [{ GRID_TEST_FAULT: 'worker-hang' }, { GRID_TEST_FAULT: 'worker-garbage' }, { GRID_TEST_FAULT: 'worker-cgo-ldflag' }])
    const c = await fixtureAgainstPlain(r)
    t.diagnostic(`remote ${c.remote}, local ${c.local}, reasons ${JSON.stringify(c.localReasons)}, races ${JSON.stringify(c.races)}`)
    assert.ok((c.localReasons['peer-error'] ?? 0) >= 1, 'the lying peer failed at least once')
    // the hanging peer's task went overdue and a local copy won the race (not a 30 s deadline)
    assert.ok(c.races.local >= 1 && c.races.localWon >= 1 && (c.localReasons.raced ?? 0) >= 1, `raced: ${JSON.stringify(c.races)}`)
    const peers = JSON.parse((await grid(r, ['--json', 'peers'])).stdout) as Array<{ peerId: string, remote: { ok: number, failed: number } }>
    for (const { w } of workers) {
      const id = (await status(w)).nodeId
      const p = peers.find(x => x.peerId === id)
      assert.ok(p !== undefined && p.remote.failed >= 1 && p.remote.ok === 0, `${id} scored down: ${JSON.stringify(p?.remote)}`)
    }
  })
})
