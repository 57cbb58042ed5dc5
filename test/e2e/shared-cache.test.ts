// One cache for the office: node B, with an empty cache, builds what node A already built,
// from A's cache, verified by content hash; and lying, poisoning or vanishing peers cost time,
// never correctness.
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { before, describe, it } from 'node:test'
import { ControlClient } from '@grid/node'
import { FIXTURES, GOMOD, ROOT, goBuild, grid, patchedGoroot, run, sameFiles, startDaemon, status, suiteContext, summary, waitFor, world, type Daemon, type World } from '../helpers/index.js'

const STDHTTP = join(FIXTURES, 'stdhttp')

describe('shared cache', () => {
  const suite = suiteContext()
  let a: World
  let aDaemon: Daemon | undefined
  const refs: Record<string, string> = {}

  /** (Re)starts A on its warm cache, optionally misbehaving; returns its first address. */
  async function startA (env: NodeJS.ProcessEnv = {}): Promise<string> {
    await aDaemon?.kill()
    aDaemon = await startDaemon(suite, a, [], env)
    return (await status(a)).mesh.addrs[0]
  }

  async function nodeB (t: Parameters<typeof world>[0], aAddr: string, extra: string[] = []): Promise<{ w: World, d: Daemon }> {
    const w = await world(t)
    const d = await startDaemon(t, w, ['--bootstrap', aAddr, ...extra])
    // A, connected (B may also learn of other members from A: only A matters here)
    const aId = (await status(a)).nodeId as string
    await waitFor(async () => {
      const peers = JSON.parse((await grid(w, ['--json', 'peers'])).stdout) as Array<{ peerId: string, connected: boolean }>
      return peers.some(p => p.peerId === aId && p.connected)
    }, 20_000, () => 'B to see A')
    return { w, d }
  }

  before(async () => {
    a = await world(suite)
    await startA()
    for (const [name, cwd, pkgs] of [['gomod', GOMOD, './...'], ['stdhttp', STDHTTP, '.']] as const) {
      refs[name] = join(a.dir, `ref-${name}`)
      const plain = await goBuild(['-o', refs[name] + '/', pkgs], cwd)
      assert.equal(plain.code, 0, plain.stderr)
      const r = await grid(a, ['--json', 'build', '-o', join(a.dir, `a-${name}`) + '/', pkgs], { cwd })
      assert.equal(r.code, 0, r.stderr)
      await sameFiles(join(a.dir, `a-${name}`), refs[name] as string)
    }
  })

  it('B builds the fixture module and net/http from A\'s cache: ≥ 95 % peer hits, no compile, identical binaries', async (t) => {
    const aAddr = await startA()
    for (const [name, cwd, pkgs] of [['gomod', GOMOD, './...'], ['stdhttp', STDHTTP, '.']] as const) {
      const b = await nodeB(t, aAddr) // an empty cache for each tree
      const out = join(b.w.dir, `out-${name}`)
      const r = await grid(b.w, ['--json', 'build', '-o', out + '/', pkgs], { cwd })
      assert.equal(r.code, 0, r.stderr)
      const s = summary(r)
      const share = s.cache.peerHits / s.actions
      t.diagnostic(`${name}: ${s.cache.peerHits}/${s.actions} lookups were peer hits (${(share * 100).toFixed(1)} %), ${s.cache.peer.bytes} bytes`)
      assert.ok(share >= 0.95, `${name}: peer hits ${s.cache.peerHits} of ${s.actions} lookups`)
      // the wall time its gets waited on peers: within their sum, and within the build
      const { waitMs, waitWallMs } = s.cache.peer
      assert.ok(waitWallMs > 0 && waitWallMs <= waitMs && waitWallMs <= s.wallMs, `${name}: waited ${waitWallMs} ms on peers (summed over gets ${waitMs} ms) in a ${s.wallMs} ms build`)
      assert.equal(s.compiles.local, 0, `${name}: B compiled nothing`)
      assert.deepEqual(s.compiles.fallbacks, {})
      await sameFiles(out, refs[name] as string)
      await sameFiles(out, join(a.dir, `a-${name}`))
      assert.equal((await status(b.w)).counters.compiles, 0)
    }
  })

  it('a peer serving bytes that do not hash to the OutputID is rejected and untrusted; B still builds correctly', async (t) => {
    const aAddr = await startA({ GRID_TEST_FAULT: 'serve-bad-bytes' })
    const b = await nodeB(t, aAddr)
    const out = join(b.w.dir, 'out')
    const r = await grid(b.w, ['--json', 'build', '-o', out + '/', './...'])
    assert.equal(r.code, 0, r.stderr)
    const s = summary(r)
    assert.ok(s.cache.peer.rejected.badHash >= 1, JSON.stringify(s.cache.peer))
    assert.equal(s.cache.peerHits, 0)
    assert.ok(s.compiles.local > 0, 'B compiled what it could not trust')
    await sameFiles(out, refs.gomod as string)
    const peers = JSON.parse((await grid(b.w, ['--json', 'peers'])).stdout)
    assert.match(peers[0].untrusted, /do not hash/)
    assert.match(b.d.stderr(), /is now untrusted/)
  })

  it('a poisoned mapping (valid blob, wrong ActionID) is caught with --verify 100: dropped, producer untrusted, output correct', async (t) => {
    const aAddr = await startA({ GRID_TEST_FAULT: 'serve-poisoned' })
    const b = await nodeB(t, aAddr, ['--verify', '100'])
    const out = join(b.w.dir, 'out')
    const r = await grid(b.w, ['--json', 'build', '-o', out + '/', './...'])
    assert.equal(r.code, 0, r.stderr)
    const s = summary(r)
    assert.ok(s.cache.peer.verify.mismatched >= 1, JSON.stringify(s.cache.peer))
    assert.equal(s.cache.peerHits, 0, 'nothing from the poisoner was used')
    await sameFiles(out, refs.gomod as string)
    assert.match(b.d.stderr(), /VERIFY FAILED: peer 12D3\w+ claims action/)
    const peers = JSON.parse((await grid(b.w, ['--json', 'peers'])).stdout)
    assert.match(peers[0].untrusted, /did not match a local compile/)
  })

  it('the serving peer killed while B is fetching: B completes with correct output', async (t) => {
    const aAddr = await startA()
    const b = await nodeB(t, aAddr)
    const client = await ControlClient.connect(b.w.control)
    t.after(() => client.close())
    const out = join(b.w.dir, 'out')
    const building = grid(b.w, ['--json', 'build', '-o', out + '/', '.'], { cwd: STDHTTP })
    await waitFor(async () => (await client.request({ type: 'status' })).status.counters.peerHits >= 10, 60_000, () => 'B to fetch from A')
    await aDaemon?.kill('SIGKILL')
    aDaemon = undefined
    const r = await building
    assert.equal(r.code, 0, r.stderr)
    const s = summary(r)
    t.diagnostic(`peer hits before the kill: ${s.cache.peerHits}, compiled after it: ${s.compiles.local}`)
    assert.ok(s.cache.peerHits >= 10 && s.compiles.local > 0, 'the kill happened in the middle of the build')
    await sameFiles(out, refs.stdhttp as string)
  })

  it('a producer whose clock is two hours ahead: go clean -testcache still reruns a test result fetched from it', async (t) => {
    // cmd/go ignores a cached test result whose time is before `go clean -testcache`: an entry
    // must carry its put time by this node's clock, not the producer's.
    const p = await world(t)
    const shifted = { NODE_OPTIONS: `--import ${join(ROOT, 'test/dist/helpers/clock-shift.js')}`, GRID_TEST_CLOCK_SHIFT_MS: String(2 * 3600_000) }
    await startDaemon(t, p, [], shifted)
    const produced = await grid(p, ['test', './wordfreq'])
    assert.equal(produced.code, 0, produced.stderr)
    const pStatus = await status(p)
    const b = { w: await world(t) }
    await startDaemon(t, b.w, ['--bootstrap', pStatus.mesh.addrs[0], '--offload', 'never'])
    await waitFor(async () => {
      const peers = JSON.parse((await grid(b.w, ['--json', 'peers'])).stdout) as Array<{ peerId: string, connected: boolean }>
      return peers.some(x => x.peerId === pStatus.nodeId && x.connected)
    }, 20_000, () => 'B to see the producer')
    const fromPeer = await grid(b.w, ['--json', 'test', './wordfreq'])
    assert.equal(fromPeer.code, 0, fromPeer.stderr)
    assert.match(fromPeer.stderr, /wordfreq\s+\(cached\)/, 'the test result came from the peer')
    assert.ok(summary(fromPeer).cache.peerHits > 0)
    const cleaned = await run('go', ['clean', '-testcache'], { env: b.w.env })
    assert.equal(cleaned.code, 0, cleaned.stderr)
    const again = await grid(b.w, ['test', './wordfreq'])
    assert.equal(again.code, 0, again.stderr)
    assert.doesNotMatch(again.stdout + again.stderr, /\(cached\)/, 'go clean -testcache: the test runs again')
  })


  it('a build with another GOROOT whose compiler has the same -V=full neither takes peers\' entries nor gives them its own', async (t) => {
    // cmd/go's ActionIDs are the same for both compilers: only the grid can keep them apart.
    const goroot = await patchedGoroot(t)
    const aAddr = await startA() // A's cache holds the stock compiler's entries (before)
    const memberOf = async (addr: string): Promise<World> => {
      const w = await world(t)
      await startDaemon(t, w, ['--bootstrap', addr, '--offload', 'never'])
      await waitFor(async () => {
        const peers = JSON.parse((await grid(w, ['--json', 'peers'])).stdout) as Array<{ connected: boolean, advert: { toolchains: unknown[] } }>
        return peers.some(p => p.connected && p.advert.toolchains.length > 0)
      }, 20_000, () => 'the new member to see its peer')
      return w
    }
    // B builds with the patched GOROOT: none of A's entries, and its binaries are plain go's with that GOROOT
    const b = await memberOf(aAddr)
    const patchedRef = join(b.dir, 'ref-patched')
    const plain = await run('go', ['build', '-trimpath', '-o', patchedRef + '/', './...'], { cwd: GOMOD, env: { ...process.env, GOROOT: goroot, GOCACHE: join(b.dir, 'gocache-ref') } })
    assert.equal(plain.code, 0, plain.stderr)
    const patched = await grid(b, ['--json', 'build', '-o', join(b.dir, 'out-patched') + '/', './...'], { env: { ...b.env, GOROOT: goroot } })
    assert.equal(patched.code, 0, patched.stderr)
    assert.equal(summary(patched).cache.peerHits, 0, 'no entry of the stock compiler')
    await sameFiles(join(b.dir, 'out-patched'), patchedRef)
    // C, joining through B, builds with the stock compiler: B's entries are the patched
    // compiler's and are not served (A's may be: they are the stock compiler's)
    const bStatus = await status(b)
    const c = await memberOf(bStatus.mesh.addrs[0])
    const stock = await grid(c, ['--json', 'build', '-o', join(c.dir, 'out') + '/', './...'])
    assert.equal(stock.code, 0, stock.stderr)
    assert.equal(summary(stock).cache.peer.byPeer[bStatus.nodeId], undefined, 'no entry of the patched compiler')
    await sameFiles(join(c.dir, 'out'), refs.gomod as string)
  })

  it('a source saved after cmd/go hashed it: its output is not stored, so after an undo neither A nor B builds from the saved one', async (t) => {
    // cmd/go hashes a package's files, runs its C compiler, then its Go compiler, which reads
    // them again. The C compiler here saves word.go once in between, as an editor would: A's
    // archive is of the new word.go under the action ID of the old. Stored so (plain go keeps
    // it in its own GOCACHE), the old word.go, back after an undo, was a hit on it: on A, and
    // on every member of the mesh.
    const aAddr = await startA()
    const mod = join(a.dir, 'edited')
    await mkdir(join(mod, 'p'), { recursive: true })
    await writeFile(join(mod, 'go.mod'), 'module example.com/edited\n\ngo 1.22\n')
    await writeFile(join(mod, 'p', 'c.go'), 'package p\n\n// static int seven(void) { return 7; }\nimport "C"\n\nfunc Seven() int { return int(C.seven()) }\n')
    const word = join(mod, 'p', 'word.go')
    const before = 'package p\n\nconst Word = "before"\n'
    await writeFile(word, before)
    const armed = join(a.dir, 'armed')
    const cc = join(a.dir, 'cc')
    // (p's own C compiles name p's directory, -I; runtime/cgo's come before p is hashed)
    await writeFile(cc, `#!/bin/sh\nfor a; do if [ "$a" = ${join(mod, 'p')} ] && rm ${armed} 2>/dev/null; then printf 'package p\\n\\nconst Word = "after!"\\n' > ${word}; fi; done\nexec gcc "$@"\n`)
    await chmod(cc, 0o755)
    const cgo = { CC: cc, CGO_ENABLED: '1' }

    await writeFile(armed, '')
    const first = await grid(a, ['--json', 'build', '-o', join(a.dir, 'first.a'), './p'], { cwd: mod, env: { ...a.env, ...cgo } })
    assert.equal(first.code, 0, first.stderr)
    assert.ok(!existsSync(armed), 'the C compiler saved word.go during the build')
    assert.ok((await readFile(join(a.dir, 'first.a'))).includes('after!'), 'the archive is of the word.go saved during the build')
    assert.equal(summary(first).cache.edited, 1, `one output not stored: ${JSON.stringify(summary(first).cache)}`)

    await writeFile(word, before) // the undo
    const ref = join(a.dir, 'edited-ref.a')
    const plain = await goBuild(['-o', ref, './p'], mod, cgo)
    assert.equal(plain.code, 0, plain.stderr)
    const b = await nodeB(t, aAddr)
    const fromB = await grid(b.w, ['--json', 'build', '-o', join(b.w.dir, 'p.a'), './p'], { cwd: mod, env: { ...b.w.env, ...cgo } })
    assert.equal(fromB.code, 0, fromB.stderr)
    assert.ok(summary(fromB).cache.peerHits > 0, 'B had its other entries from A')
    assert.deepEqual(await readFile(join(b.w.dir, 'p.a')), await readFile(ref), 'B\'s archive is go build -trimpath\'s of the sources as they are')
    await a.freshGoCache()
    const again = await grid(a, ['--json', 'build', '-o', join(a.dir, 'again.a'), './p'], { cwd: mod, env: { ...a.env, ...cgo } })
    assert.equal(again.code, 0, again.stderr)
    assert.deepEqual(await readFile(join(a.dir, 'again.a')), await readFile(ref), 'so is A\'s')
    assert.equal(summary(again).cache.edited, 0)
  })
})
