// A daemon runs for weeks: what it keeps for a build must go with the build. Real nodes of one
// swarm on loopback, in this process so that the test can read their state, and real go builds
// through the CLI; each test builds or interrupts several times and checks that the state the
// builds left returns to where it was.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { cp, readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { ControlClient, DEFAULT_TASK_MEMORY, PEER_TIMEOUT_MS } from '@grid/node'
import { GridNode, type MeshOptions } from '@grid/node/server'
import { formatSwarmKey, generateSwarmKey } from '@grid/protocol'
import { GOMOD, defer, grid, summary, waitFor, world, type World } from '../helpers/index.js'

type Ctx = Parameters<typeof world>[0]

/** A swarm key of the test's own: no other node on this machine can join its mesh. */
async function swarmKey (w: World): Promise<string> {
  const file = join(w.dir, 'swarm.key')
  await writeFile(file, formatSwarmKey(generateSwarmKey()))
  return file
}

/** A daemon-mode node of the swarm, in this process, on loopback only; stopped when the test ends. */
async function meshNode (t: Ctx, w: World, key: string, mesh: Partial<MeshOptions>, slots?: number): Promise<GridNode> {
  const node = new GridNode({
    cacheDir: w.cacheDir,
    control: w.control,
    mode: 'daemon',
    ...(slots === undefined ? {} : { slots }),
    mesh: { listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap: [], mdns: false, swarmKeyFile: key, policy: 'never', trust: 'mesh', verifyPercent: 0, offload: 'busy', taskMemory: DEFAULT_TASK_MEMORY, ...mesh }
  })
  await node.start()
  defer(t, async () => { await node.stop() })
  return node
}

async function addrOf (node: GridNode): Promise<string> {
  const addr = (await node.status()).mesh?.addrs[0]
  assert.ok(addr !== undefined, 'the node listens')
  return addr
}

/** The node's private parts a test reads. */
interface Inside {
  remote: {
    /** export data by `path\0size\0mtime` (remote/export-cache.ts) */
    exports: { entries: Map<string, unknown> }
    /** by peer: the inputs it holds, the streams kept for its next task, our tasks there (remote/remote.ts) */
    held: Map<string, unknown>
    idle: Map<string, unknown>
    slots: { peers: Map<string, unknown> }
  } | undefined
  peerCache: {
    /** claims held back for --verify, by ActionID (peercache/peercache.ts) */
    sampled: Map<string, unknown>
    /** the lookup stream to each peer */
    channels: Map<string, unknown>
  } | undefined
}
const inside = (node: GridNode): Inside => node as unknown as Inside

/** A changed comment in every .go file of the module: each of its packages compiles again. */
async function edit (dir: string, n: number): Promise<void> {
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!e.isFile() || !e.name.endsWith('.go')) continue
    const file = join(e.parentPath, e.name)
    const text = (await readFile(file, 'utf8')).replace(/\n\/\/ soak \d+\n$/, '\n')
    await writeFile(file, `${text}// soak ${n}\n`)
  }
}

describe('a long-running node', () => {
  it('forgets the export data of each build\'s $WORK once the build is over', async (t) => {
    const hw = await world(t)
    const key = await swarmKey(hw)
    const helper = await meshNode(t, hw, key, { policy: 'always' })
    const rw = await world(t)
    // every compile it can to the helper; the helper's cache must not answer for it
    const requester = await meshNode(t, rw, key, { bootstrap: [await addrOf(helper)], offload: 'always', trust: 'self' }, 1)
    await waitFor(() => requester.peers().some(p => p.connected && (p.advert.toolchains as unknown[]).length > 0), 20_000,
      () => 'the requester to see the helper with its toolchain')
    const src = join(rw.dir, 'src')
    await cp(GOMOD, src, { recursive: true })
    const paths = (): string[] => [...inside(requester).remote?.exports.entries.keys() ?? []].map(k => k.split('\0')[0] as string)
    const gone = (): string[] => paths().filter(p => !existsSync(p))
    for (let n = 1; n <= 4; n++) {
      await edit(src, n)
      const res = await grid(rw, ['--json', 'build', '-o', join(rw.dir, 'out') + '/', './...'], { cwd: src })
      assert.equal(res.code, 0, res.stderr)
      t.diagnostic(`build ${n}: ${JSON.stringify(summary(res).compiles.localReasons)} ${summary(res).compiles.remote} remote`)
      assert.ok(summary(res).compiles.remote > 0, `build ${n}: compiles ran on the helper`)
    }
    assert.ok(paths().length > 0, 'the requester read export data for its tasks')
    // the archives of each build's own packages were read from its $WORK, which cmd/go removed
    // when the build ended: their export data can never be used again
    await waitFor(() => gone().length === 0, 10_000, () => `no export data kept of archives that are gone (${gone().length} of ${paths().length}: ${gone().slice(0, 3).join(', ')}…)`)
    assert.equal(requester.builds.count, 0)
  })

  it('forgets what it kept to talk to a member once the member has left the mesh', async (t) => {
    const hw = await world(t)
    const key = await swarmKey(hw)
    const helper = await meshNode(t, hw, key, { policy: 'always' })
    const rw = await world(t)
    // trust mesh: it asks the helper's cache as well
    const requester = await meshNode(t, rw, key, { bootstrap: [await addrOf(helper)], offload: 'always' }, 1)
    await waitFor(() => requester.peers().some(p => p.connected && (p.advert.toolchains as unknown[]).length > 0), 20_000,
      () => 'the requester to see the helper with its toolchain')
    const res = await grid(rw, ['--json', 'build', '-o', join(rw.dir, 'out') + '/', './...'])
    assert.equal(res.code, 0, res.stderr)
    assert.ok(summary(res).compiles.remote > 0, 'compiles ran on the helper')
    const id = helper.nodeId
    const kept = (): string[] => {
      const r = inside(requester).remote
      const c = inside(requester).peerCache
      return Object.entries({ held: r?.held, idle: r?.idle, slots: r?.slots.peers, channels: c?.channels }).filter(([, m]) => m?.has(id) === true).map(([name]) => name)
    }
    assert.deepEqual(kept(), ['held', 'idle', 'slots', 'channels'], 'what the requester keeps for the helper while it is there')
    // a helper that goes for good: a machine retired, a container or a CI job with a fresh cache
    await helper.stop()
    await waitFor(() => !requester.peers().some(p => p.peerId === id), PEER_TIMEOUT_MS + 10_000, () => 'the helper to leave the peer table')
    assert.deepEqual(kept(), [], 'nothing kept for a member that has left')
  })

  it('a build that goes away without build-end leaves none of its --verify samples behind', async (t) => {
    const hw = await world(t)
    const key = await swarmKey(hw)
    const helper = await meshNode(t, hw, key, {})
    const rw = await world(t)
    const requester = await meshNode(t, rw, key, { bootstrap: [await addrOf(helper)], verifyPercent: 100 })
    await waitFor(() => requester.peers().some(p => p.connected), 20_000, () => 'the requester to see the helper')
    const sampled = (): number => inside(requester).peerCache?.sampled.size ?? -1
    for (let n = 0; n < 3; n++) {
      // an entry only the helper has, which the requester holds back to compare with its own put
      const actionId = randomBytes(32)
      await helper.cache.putBytes(actionId, randomBytes(100))
      const client = await ControlClient.connect(rw.control)
      const { build } = await client.request({ type: 'build-begin', command: ['go', 'build', './...'], cwd: rw.dir })
      const reply = await client.request({ type: 'cache-get', build, actionId })
      assert.equal(reply.type, 'cache-miss', 'a sampled claim is a miss')
      assert.equal(sampled(), 1, 'the claim waits for cmd/go\'s put')
      client.close() // Ctrl-C: cmd/go never puts it, and grid build never sends build-end
      await waitFor(() => requester.builds.count === 0, 5_000, () => 'the build to end with its connection')
      await waitFor(() => sampled() === 0, 5_000, () => `no sampled claim left once the build has gone (${sampled()})`)
    }
  })
})
