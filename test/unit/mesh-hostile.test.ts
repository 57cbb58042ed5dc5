// The mesh (packages/node/src/mesh/mesh.ts) against hosts on the LAN that hold no swarm key: mDNS
// answers anyone can send, and what identify says of a peer. Real meshes and libp2p nodes on
// loopback; the mDNS answers are handed to the mesh as its mDNS discovery hands them.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { pathToFileURL } from 'node:url'
import { noise } from '@chainsafe/libp2p-noise'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { identify } from '@libp2p/identify'
import type { PeerDiscovery, PeerId, PeerInfo, PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { closeLogging, configureLogging } from '@grid/node'
import { CONTROL_CHAR, MAX_ADVERT_ADDRS, swarmPrologue } from '@grid/protocol'
import type * as MeshModule from '../../packages/node/src/mesh/mesh.js'
import type * as ConstantsModule from '../../packages/node/src/mesh/constants.js'
import type * as MemberNoiseModule from '../../packages/node/src/mesh/member-noise.js'
import { ROOT, defer, tempDir, waitFor } from '../helpers/index.js'
import { libp2pNode } from '../helpers/libp2p.js'

// Internal to @grid/node (not in its package exports): loaded from its build.
const dist = (path: string): string => pathToFileURL(join(ROOT, 'packages/node/dist', path)).href
const { Mesh } = await import(dist('mesh/mesh.js')) as typeof MeshModule
const { DIAL_BURST, PEER_TIMEOUT_MS } = await import(dist('mesh/constants.js')) as typeof ConstantsModule
const { memberNoise } = await import(dist('mesh/member-noise.js')) as typeof MemberNoiseModule

type Ctx = Parameters<typeof libp2pNode>[0]
type Mesh = InstanceType<typeof Mesh>

/** The mesh's private parts these tests look at. */
interface Inside {
  dialBudget: number
  dialing: Set<string>
  dials: Map<string, { notMember: boolean, nextAttempt: number }>
  mdnsPeers: Map<string, { addrs: Multiaddr[] }>
  mdnsDiscovery: (discovery: PeerDiscovery) => PeerDiscovery
  onMdnsPeer: (info: PeerInfo) => void
  prune: (now: number) => void
  refusals?: { keys: Map<string, { count: number }>, flush: () => void }
  tryDial: (key: string, target: () => Multiaddr[]) => Promise<void>
}
const inside = (mesh: Mesh): Inside => mesh as unknown as Inside

async function startMesh (t: Ctx, swarmKey: Uint8Array, privateKey?: PrivateKey, bootstrap: string[] = [], peersFile?: string): Promise<Mesh> {
  const mesh = new Mesh({
    peersFile,
    privateKey: privateKey ?? await generateKeyPair('Ed25519'),
    listen: ['/ip4/127.0.0.1/tcp/0'],
    bootstrap,
    mdns: false,
    swarmKey,
    policy: 'never',
    local: () => ({ toolchains: [], slots: { total: 1, free: 1 }, load: 0 })
  })
  await mesh.start()
  defer(t, async () => { await mesh.stop() })
  return mesh
}

/** A fresh key whose PeerId sorts after `than`'s: the mesh dials it at once when mDNS finds it. */
async function keyAfter (than: string): Promise<{ key: PrivateKey, id: PeerId }> {
  for (;;) {
    const key = await generateKeyPair('Ed25519')
    const id = peerIdFromPrivateKey(key)
    if (id.toString() > than) return { key, id }
  }
}

/** A TCP port on 127.0.0.1 that nothing listens on (it was free a moment ago). */
async function closedPort (): Promise<number> {
  return await new Promise(resolve => {
    const server = createServer()
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port
      server.close(() => resolve(port))
    })
  })
}

describe('the mesh against hosts without the swarm key', { timeout: 60_000 }, () => {
  it('an mDNS answer with 2000 addresses costs the dial budget at most MAX_ADVERT_ADDRS, and leaves nothing in libp2p\'s peer store once pruned', async (t) => {
    const mesh = await startMesh(t, randomBytes(32))
    const { id: forged } = await keyAfter(mesh.peerId)
    const port = await closedPort()
    // distinct loopback addresses (not this host's own 127.0.0.1), each refused at once
    const addrs = Array.from({ length: 2000 }, (_, i) => multiaddr(`/ip4/127.0.${1 + (i >> 7)}.${1 + (i & 0x7f)}/tcp/${port}`))
    // libp2p adds its own listener to a discovery after the factory returned it, as here
    const discovery = new EventTarget() as unknown as PeerDiscovery
    const other = await libp2pNode(t, { peerDiscovery: [() => inside(mesh).mdnsDiscovery(discovery)] })
    discovery.dispatchEvent(new CustomEvent<PeerInfo>('peer', { detail: { id: forged, multiaddrs: addrs } }))

    assert.equal(inside(mesh).mdnsPeers.get(forged.toString())?.addrs.length, MAX_ADVERT_ADDRS)
    // it was charged 2000: no dial went out for ~500 s
    assert.ok(inside(mesh).dialBudget >= DIAL_BURST - MAX_ADVERT_ADDRS, `dial budget ${inside(mesh).dialBudget}`)
    // libp2p's own handling of the answer would have stored all 2000 addresses
    assert.equal(await other.libp2p.peerStore.has(forged), false, 'libp2p\'s listener took the mDNS answer')

    // the mesh's failed dial leaves the PeerId in its peer store, until the answers stop
    const store = mesh.libp2p?.peerStore
    assert.ok(store !== undefined)
    await waitFor(() => !inside(mesh).dialing.has(forged.toString()), 10_000, () => 'the dial to end')
    assert.equal(await store.has(forged), true, 'a failed dial records the PeerId (what the prune must undo)')
    inside(mesh).prune(Date.now() + PEER_TIMEOUT_MS + 1)
    assert.equal(inside(mesh).mdnsPeers.has(forged.toString()), false)
    await waitFor(async () => !(await store.has(forged)), 5_000, () => 'the pruned mDNS peer to leave libp2p\'s peer store')
  })

  it('a member named by an mDNS answer at a non-member\'s address is not marked a non-member; a PeerId only mDNS named is', async (t) => {
    const swarmKey = randomBytes(32)
    const mesh = await startMesh(t, swarmKey)
    // a real member, connected once (so known with the addresses it advertised), then gone
    const { key: memberKey, id: member } = await keyAfter(mesh.peerId)
    const other = await startMesh(t, swarmKey, memberKey, mesh.addrs())
    await waitFor(() => mesh.connectedMembers().includes(member.toString()), 10_000, () => 'the member to be listed')
    await other.stop()
    await waitFor(() => mesh.libp2p?.getConnections(member).length === 0, 10_000, () => 'the member to be gone')

    // a host with another swarm key (it counts the handshakes that failed), and an mDNS answer
    // naming the member at its address
    const failed = { count: 0 }
    const rogue = await libp2pNode(t, { connectionEncrypters: [memberNoise(swarmPrologue(randomBytes(32)), () => { failed.count++ })] })
    const rogueAddr = rogue.libp2p.getMultiaddrs()[0]?.decapsulateCode(421)
    assert.ok(rogueAddr !== undefined)
    const id = member.toString()
    inside(mesh).onMdnsPeer({ id: member, multiaddrs: [rogueAddr] })
    // the mesh also redials the member at its own (now closed) addresses, with backoff: dial the
    // address mDNS gave until the rogue has been reached
    await waitFor(() => {
      if (failed.count > 0) return !inside(mesh).dialing.has(id)
      const state = inside(mesh).dials.get(id)
      if (state !== undefined) state.nextAttempt = 0
      void inside(mesh).tryDial(id, () => inside(mesh).mdnsPeers.get(id)?.addrs ?? [])
      return false
    }, 10_000, () => 'a dial of the member at the rogue\'s address')
    assert.equal(inside(mesh).dials.get(id)?.notMember, false, 'a forged mDNS answer kept a member from being dialled for 5 minutes')

    // a PeerId nothing but mDNS named, at the rogue's address: a non-member, retried rarely
    const { id: stranger } = await keyAfter(mesh.peerId)
    inside(mesh).onMdnsPeer({ id: stranger, multiaddrs: [rogueAddr] })
    await waitFor(() => inside(mesh).dials.get(stranger.toString())?.notMember === true, 10_000, () => 'the stranger to be marked a non-member')
  })

  it('a host without the key that connects over and over is logged once, then counted, not a line per connection (the refused-handshake log flood)', async (t) => {
    const file = join(await tempDir(t), 'grid.log')
    configureLogging({ stderr: 'silent', file })
    const mesh = await startMesh(t, randomBytes(32))
    const rogue = await libp2pNode(t, { connectionEncrypters: [noise({ prologueBytes: swarmPrologue(randomBytes(32)) })] })
    const target = multiaddr(mesh.addrs()[0])
    const attempts = 20
    for (let i = 0; i < attempts; i++) await rogue.libp2p.dial(target).then(() => assert.fail('a non-member connected'), () => {})
    // each attempt comes from another port of 127.0.0.1, one address: its refusals logged in full
    // or counted, all of them
    const refused = async (): Promise<string[]> => (await readFile(file, 'utf8')).split('\n').filter(line => line.includes('GRID_ERR_NOT_MEMBER'))
    const counted = (): number => inside(mesh).refusals?.keys.get('from 127.0.0.1')?.count ?? 0
    let logged: string[] = []
    await waitFor(async () => { logged = await refused(); return logged.length + counted() === attempts }, 10_000,
      () => `the mesh to refuse every attempt: ${counted()} counted, logged:\n${logged.join('\n')}`)
    inside(mesh).refusals?.flush() // as the mesh stops (else once a minute)
    await closeLogging()
    const lines = await refused()
    assert.equal(lines.length, 2, lines.join('\n'))
    assert.match(lines[0] ?? '', /warn grid:mesh refused inbound connection from \/ip4\/127\.0\.0\.1\/tcp\/\d+: the handshake failed/)
    assert.match(lines[1] ?? '', new RegExp(`warn grid:mesh … and ${attempts - 1} more refused handshakes from 127\\.0\\.0\\.1 in the last \\d+ s: not members of swarm ${mesh.fingerprint}`))
  })

  it('a peer\'s agent and protocols from identify reach `grid peers` with their control characters escaped', async (t) => {
    const swarmKey = randomBytes(32)
    const mesh = await startMesh(t, swarmKey)
    // a member (it holds the key) of another make, that does not speak the advert protocol: unlisted
    const odd = await libp2pNode(t, {
      nodeInfo: { name: 'grid', version: '0.1.0', userAgent: 'grid/0.1.0 \x1b]0;x\x07' },
      connectionEncrypters: [noise({ prologueBytes: swarmPrologue(swarmKey) })],
      services: { identify: identify() }
    })
    await odd.libp2p.handle('/grid/x\x1b[2J/1.0.0', () => {})
    await odd.libp2p.dial(multiaddr(mesh.addrs()[0]))
    await waitFor(() => mesh.unlisted().some(u => u.peerId === odd.id && u.agent !== undefined), 10_000, () => 'identify to describe the peer')
    const seen = mesh.unlisted().find(u => u.peerId === odd.id)
    assert.equal(seen?.agent, 'grid/0.1.0 \\x1b]0;x\\x07')
    assert.ok(seen.protocols.includes('/grid/x\\x1b[2J/1.0.0'), seen.protocols.join(' '))
    assert.ok(!seen.protocols.some(p => CONTROL_CHAR.test(p)))
  })
})

describe('the mesh after a restart', { timeout: 60_000 }, () => {
  // Regression: of a member remembered from before the restart (peers.json) at an address it no
  // longer listens on, only that address was redialled, never the one mDNS found it at. When every
  // member had restarted on another port (or each had the other at an old DHCP address), none
  // dialled another where it was, and the office mesh stayed apart.
  it('a member remembered at an address it left is dialled where mDNS finds it now', async (t) => {
    const swarmKey = randomBytes(32)
    const b = await startMesh(t, swarmKey)
    // a's PeerId sorts after b's: a waits for b to dial first, and then dials from its redial loop
    const { key } = await keyAfter(b.peerId)
    const peersFile = join(await tempDir(t), 'peers.json')
    await writeFile(peersFile, JSON.stringify({ [b.peerId]: [`/ip4/127.0.0.1/tcp/${await closedPort()}/p2p/${b.peerId}`] }))
    const a = await startMesh(t, swarmKey, key, [], peersFile)
    inside(a).onMdnsPeer({ id: peerIdFromString(b.peerId), multiaddrs: b.addrs().map(addr => multiaddr(addr)) })
    await waitFor(() => a.connectedMembers().includes(b.peerId), 20_000, () => 'a to dial b at the address mDNS gave')
  })
})
