// The mesh with real daemons on loopback: discovery by bootstrap and peer exchange,
// membership by swarm key, and a killed peer leaving and rejoining.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { chmod, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { noise } from '@chainsafe/libp2p-noise'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import type { Libp2p } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { ADVERT_PROTOCOL, ADVERT_TOPIC, HEARTBEAT_MS, PEER_TIMEOUT_MS } from '@grid/node'
import { formatSwarmKey, swarmPrologue } from '@grid/protocol'
import { grid, run, startDaemon, status, tempDir, waitFor, world, type Daemon, type World } from '../helpers/index.js'

interface Member { w: World, d: Daemon, id: string, addr: string }

async function freePort (): Promise<number> {
  const { createServer } = await import('node:net')
  return await new Promise(resolve => {
    const server = createServer()
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port
      server.close(() => resolve(port))
    })
  })
}

async function member (t: Parameters<typeof world>[0], extra: string[] = [], w?: World): Promise<Member> {
  w ??= await world(t)
  const d = await startDaemon(t, w, extra)
  const s = await status(w)
  return { w, d, id: s.nodeId, addr: s.mesh.addrs[0] }
}

async function peerIds (m: Member): Promise<string[]> {
  const r = await grid(m.w, ['--json', 'peers'])
  if (r.code !== 0) return []
  return (JSON.parse(r.stdout) as Array<{ peerId: string }>).map(p => p.peerId).sort()
}

async function sees (m: Member, others: Member[]): Promise<boolean> {
  const ids = await peerIds(m)
  return others.every(o => ids.includes(o.id)) && ids.length === others.length
}

/** Every peer m lists is connected over exactly one connection (duplicate dials have settled). */
async function settled (m: Member): Promise<boolean> {
  const r = await grid(m.w, ['--json', 'peers'])
  if (r.code !== 0) return false
  return (JSON.parse(r.stdout) as Array<{ connected: boolean, connections: number }>).every(p => p.connected && p.connections === 1)
}


/** A raw libp2p host in the open mesh, with gossipsub: a member that does what a grid node would not. */
async function rogueMember (t: { after: (fn: () => Promise<void>) => void }, pubsub: Record<string, unknown> = {}, swarmKey?: Uint8Array): Promise<Libp2p> {
  const { gossipsub } = await import('@libp2p/gossipsub')
  const { identify } = await import('@libp2p/identify')
  const rogue = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise({ prologueBytes: swarmPrologue(swarmKey) })],
    streamMuxers: [yamux()],
    services: { identify: identify(), pubsub: gossipsub({ allowPublishToZeroTopicPeers: true, globalSignaturePolicy: 'StrictSign', ...pubsub } as never) }
  })
  t.after(async () => { await rogue.stop() })
  return rogue
}
describe('mesh', () => {
  it('4 daemons with bootstrap addresses only all list each other, with toolchain and slots', async (t) => {
    const goVersion = (await run('go', ['env', 'GOVERSION'])).stdout.trim()
    const first = await member(t, ['--slots', '2'])
    const rest = await Promise.all([3, 1, 2].map(async slots => await member(t, ['--slots', String(slots), '--bootstrap', first.addr])))
    const all = [first, ...rest]
    for (const m of all) {
      const others = all.filter(o => o !== m)
      await waitFor(async () => await sees(m, others), 20_000, () => `${m.id} to list the other three`)
      // peer exchange may dial a pair twice; libp2p closes the extra connection a moment later
      await waitFor(async () => await settled(m), 20_000, () => `${m.id}'s connections to settle`)
    }
    const slotsOf = new Map(all.map((m, i) => [m.id, [2, 3, 1, 2][i]]))
    for (const m of all) {
      const list = JSON.parse((await grid(m.w, ['--json', 'peers'])).stdout) as Array<{ peerId: string, advert: any, connected: boolean }>
      for (const p of list) {
        assert.equal(p.advert.toolchains[0]?.go, goVersion, 'toolchain advertised')
        assert.match(p.advert.toolchains[0]?.compiler, /^compile version go/)
        assert.equal(p.advert.slots.total, slotsOf.get(p.peerId), 'slots advertised')
        assert.equal(p.connected, true)
        assert.equal((p as unknown as { connections: number }).connections, 1, 'one connection per pair of peers')
      }
      const canaries = new Set(list.map(p => p.advert.toolchains[0].canary))
      assert.equal(canaries.size, 1, 'same toolchain, same canary')
    }
  })

  it('nodes with another swarm key or none never join, cannot open a grid stream, and members log why', async (t) => {
    const keys = await tempDir(t)
    const key = join(keys, 'team.key')
    const other = join(keys, 'other.key')
    await writeFile(key, formatSwarmKey(randomBytes(32)))
    await writeFile(other, formatSwarmKey(randomBytes(32)))
    await chmod(key, 0o644) // as a key copied in by hand often is
    const m1 = await member(t, ['--swarm-key', key])
    assert.match(m1.d.stderr(), /grid: warning: the swarm key .*team\.key is readable by other users of this machine \(mode 644\): each of them can join the mesh\n {2}hint: chmod 600/)
    await chmod(key, 0o600)
    const m2 = await member(t, ['--swarm-key', key, '--bootstrap', m1.addr])
    assert.doesNotMatch(m2.d.stderr(), /readable by other users/)
    const wrongKey = await member(t, ['--swarm-key', other, '--bootstrap', m1.addr, '--bootstrap', m2.addr])
    const noKey = await member(t, ['--bootstrap', m1.addr, '--bootstrap', m2.addr])
    await waitFor(async () => (await sees(m1, [m2])) && (await sees(m2, [m1])), 20_000, () => 'the two members to find each other')
    // both non-members connect from 127.0.0.1: a member logs that address's first refusal, and
    // counts the rest (a line a minute)
    for (const m of [m1, m2]) await waitFor(() => /GRID_ERR_NOT_MEMBER/.test(m.d.stderr()), 20_000, () => `a member to log a refusal:\n${m.d.stderr()}`)
    assert.match(m1.d.stderr(), /refused inbound connection from \/ip4\/127\.0\.0\.1\/tcp\/\d+.*not a member of swarm [0-9a-f]{16}/)
    // a few heartbeats later, still nobody else
    await new Promise(resolve => setTimeout(resolve, 6_000))
    assert.deepEqual(await peerIds(m1), [m2.id])
    assert.deepEqual(await peerIds(m2), [m1.id])
    assert.deepEqual(await peerIds(wrongKey), [])
    assert.deepEqual(await peerIds(noKey), [])
    // a daemon without a key says, as it starts, that it is in the open mesh; one with a key does not
    assert.match(noKey.d.stderr(), /grid: warning: no swarm key, so this daemon is in the open mesh.*\n {2}hint: for an office, run `grid init`/)
    assert.doesNotMatch(m1.d.stderr(), /open mesh/)

    // A raw libp2p host with the wrong prologue cannot open the grid protocol on a member.
    for (const prologue of [swarmPrologue(undefined), swarmPrologue(randomBytes(32))]) {
      const outsider = await createLibp2p({
        transports: [tcp()],
        connectionEncrypters: [noise({ prologueBytes: prologue })],
        streamMuxers: [yamux()]
      })
      t.after(async () => { await outsider.stop() })
      await assert.rejects(outsider.dialProtocol(multiaddr(m1.addr), ADVERT_PROTOCOL, { signal: AbortSignal.timeout(10_000) }))
    }
    // The same host with the team's prologue can (control: the refusal is the key, not the host).
    const { parseSwarmKey } = await import('@grid/protocol')
    const { readFile } = await import('node:fs/promises')
    const insider = await createLibp2p({
      transports: [tcp()],
      connectionEncrypters: [noise({ prologueBytes: swarmPrologue(parseSwarmKey(await readFile(key, 'utf8'))) })],
      streamMuxers: [yamux()]
    })
    t.after(async () => { await insider.stop() })
    const stream = await insider.dialProtocol(multiaddr(m1.addr), ADVERT_PROTOCOL, { signal: AbortSignal.timeout(10_000) })
    await stream.close()
  })

  it('bad adverts over real gossip (bad fields, oversized, random bytes, a forged sender) are dropped and logged; nothing crashes', async (t) => {
    const m = await member(t)
    const { encodeAdvert } = await import('@grid/protocol')
    const rogue = await rogueMember(t, { maxInboundDataLength: 4 * 1024 * 1024 })
    const pubsub = rogue.services.pubsub as unknown as { subscribe: (t: string) => void, getSubscribers: (t: string) => unknown[], publish: (t: string, d: Uint8Array) => Promise<unknown> }
    pubsub.subscribe(ADVERT_TOPIC)
    await rogue.dial(multiaddr(m.addr))
    await waitFor(() => pubsub.getSubscribers(ADVERT_TOPIC).length > 0, 10_000, () => 'the member to subscribe')
    const rogueId = rogue.peerId.toString()
    const valid = {
      v: 1, peerId: rogueId, addrs: [], version: '0.1.0', toolchains: [], targets: ['*'],
      slots: { total: 1, free: 1 }, load: 0, policy: 'never' as const, accepting: false, seq: 1
    }
    const { Packr } = await import('msgpackr')
    const pack = (v: unknown): Uint8Array => new Packr({ useRecords: false }).pack(v)
    const bad: Array<[string, Uint8Array]> = [
      ['bad field', pack({ ...valid, slots: { total: 1, free: 9 } })],
      ['forged sender', encodeAdvert({ ...valid, peerId: m.id })],
      ['oversized', pack({ ...valid, version: 'x'.repeat(100_000) })],
      ['random bytes', randomBytes(300)]
    ]
    for (const [, data] of bad) await pubsub.publish(ADVERT_TOPIC, data).catch(() => {})
    await waitFor(() => (m.d.stderr().match(/dropped an advert from/g) ?? []).length >= bad.length, 10_000, () => `the member to log ${bad.length} dropped adverts:\n${m.d.stderr()}`)
    assert.match(m.d.stderr(), new RegExp(`dropped an advert from ${rogueId}`))
    assert.match(m.d.stderr(), /advert names \w+ but is signed by/)
    assert.match(m.d.stderr(), /over the cap/)
    assert.deepEqual(await peerIds(m), [], 'no bad advert made it into the peer table')
    assert.equal((await status(m.w)).running, true, 'the member is still serving')
    // and a valid advert from the same host is accepted: the drops were about the content
    await pubsub.publish(ADVERT_TOPIC, encodeAdvert({ ...valid, seq: 2 }))
    await waitFor(async () => (await peerIds(m)).includes(rogueId), 10_000, () => 'the valid advert to be accepted')
  })

  it('forged members through gossip: adverts signed by fresh keys nobody is connected to are not dialled past a small rate, listed past a bound, or remembered', async (t) => {
    const m = await member(t)
    // 16 local ports that every forged advert names: each connection attempt to them is counted
    const { createServer } = await import('node:net')
    let attempts = 0
    const ports: number[] = []
    for (let i = 0; i < 16; i++) {
      const server = createServer(socket => { attempts++; socket.destroy() })
      await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
      t.after(async () => { await new Promise(resolve => server.close(resolve)) })
      ports.push((server.address() as { port: number }).port)
    }
    const { generateKeyPair, publicKeyToProtobuf } = await import('@libp2p/crypto/keys')
    const { peerIdFromPrivateKey } = await import('@libp2p/peer-id')
    const { encodeAdvert } = await import('@grid/protocol')
    const rogue = await rogueMember(t)
    const pubsub = rogue.services.pubsub as unknown as { subscribe: (t: string) => void, getSubscribers: (t: string) => unknown[], publish: (t: string, d: Uint8Array) => Promise<unknown>, publishConfig: unknown }
    pubsub.subscribe(ADVERT_TOPIC)
    await rogue.dial(multiaddr(m.addr))
    await waitFor(() => pubsub.getSubscribers(ADVERT_TOPIC).length > 0, 10_000, () => 'the member to subscribe')
    const rogueId = rogue.peerId.toString()
    const advert = (peerId: string, addrs: string[]): Uint8Array => encodeAdvert({
      v: 1, peerId, addrs, version: '0.1.0', toolchains: [], targets: ['*'], slots: { total: 1, free: 1 }, load: 0, policy: 'never', accepting: false, seq: 1
    })
    // The rogue's own advert: it is connected, so it is listed and remembered (peers.json is written).
    await pubsub.publish(ADVERT_TOPIC, advert(rogueId, rogue.getMultiaddrs().map(String)))
    const peersFile = join(m.w.cacheDir, 'peers.json')
    const remembered = async (): Promise<string[]> => Object.keys(JSON.parse(await readFile(peersFile, 'utf8').catch(() => '{}')) as object)
    await waitFor(async () => (await remembered()).includes(rogueId), 10_000, () => 'the connected rogue to be remembered')

    // Then, as in the audit, adverts each signed by a fresh key (so each from a PeerId nobody is
    // connected to), each naming the 16 counted ports.
    const own = pubsub.publishConfig
    const forged = new Set<string>()
    const start = Date.now()
    for (let i = 0; i < 300; i++) {
      const key = await generateKeyPair('Ed25519')
      const id = peerIdFromPrivateKey(key).toString()
      pubsub.publishConfig = { type: 0, author: peerIdFromPrivateKey(key), key: publicKeyToProtobuf(key.publicKey), privateKey: key }
      await pubsub.publish(ADVERT_TOPIC, advert(id, ports.map(p => `/ip4/127.0.0.1/tcp/${p}/p2p/${id}`)))
      forged.add(id)
    }
    pubsub.publishConfig = own
    const listedForged = async (): Promise<number> => (await peerIds(m)).filter(id => forged.has(id)).length
    // the member took some in (a relayed advert can still introduce a far member)…
    await waitFor(async () => (await listedForged()) > 0, 10_000, () => 'the member to take in forged adverts')
    await new Promise(resolve => setTimeout(resolve, 10_000))
    const seconds = (Date.now() - start) / 1000
    const listed = await listedForged()
    const dialled = attempts
    t.diagnostic(`after ${seconds.toFixed(1)} s: ${listed} forged members listed, ${dialled} connection attempts to the ports they name`)
    // …but at most MAX_ADVERT_ONLY_PEERS (64) of them, dialled at most DIAL_ADDRS_PER_SECOND (4)
    // addresses a second after a burst of DIAL_BURST (8), plus the 16 of one member the budget
    // went into debt for (mesh/constants.ts)
    assert.ok(listed <= 64, `${listed} forged members listed`)
    assert.ok(dialled <= 8 + 16 + 4 * seconds, `${dialled} connection attempts in ${seconds.toFixed(1)} s`)
    const saved = await remembered()
    assert.ok(saved.includes(rogueId))
    assert.deepEqual(saved.filter(id => forged.has(id)), [], 'no forged member in peers.json')

    // Once their adverts stop they age out, and nobody dials them any more.
    await waitFor(async () => (await listedForged()) === 0, PEER_TIMEOUT_MS + 15_000, () => 'the forged members to leave the table')
    await new Promise(resolve => setTimeout(resolve, 2_000)) // dials already under way end
    const after = attempts
    await new Promise(resolve => setTimeout(resolve, 5_000))
    assert.equal(attempts - after, 0, 'no dials to forged members that aged out')
    assert.deepEqual((await remembered()).filter(id => forged.has(id)), [])
  })

  it('more than ten PeerIds from one address within the hour (NAT, containers, fresh caches) do not deafen a member to that address', async (t) => {
    const key = randomBytes(32)
    const keyFile = join(await tempDir(t, 'key'), 'swarm.key')
    await writeFile(keyFile, formatSwarmKey(key))
    const m = await member(t, ['--swarm-key', keyFile])
    const b = await member(t, ['--swarm-key', keyFile, '--bootstrap', m.addr])
    await waitFor(async () => await sees(m, [b]), 20_000, () => 'the member to list b')
    // short-lived members on the same address, each a PeerId of its own: containers behind one
    // NAT, or builds with fresh caches; each joins the adverts' topic and goes
    for (let i = 0; i < 14; i++) {
      const passing = await rogueMember(t, {}, key)
      const pubsub = passing.services.pubsub as unknown as { subscribe: (t: string) => void, getSubscribers: (t: string) => unknown[] }
      pubsub.subscribe(ADVERT_TOPIC)
      await passing.dial(multiaddr(m.addr))
      await waitFor(() => pubsub.getSubscribers(ADVERT_TOPIC).length > 0, 10_000, () => 'the member to subscribe')
      await passing.stop()
    }
    // b, still there on the same address, gossips an advert every heartbeat: the member hears them
    const seqOfB = async (): Promise<number> => {
      const list = JSON.parse((await grid(m.w, ['--json', 'peers'])).stdout) as Array<{ peerId: string, advert: { seq: number } }>
      return list.find(p => p.peerId === b.id)?.advert.seq ?? 0
    }
    const before = await seqOfB()
    let now = before
    await waitFor(async () => (now = await seqOfB()) >= before + 2, 4 * HEARTBEAT_MS, () => `two more adverts of b gossiped to the member (seq ${before}, now ${now})`)
  })

  it('a killed daemon leaves the peer lists within the timeout, and rejoins by itself with the same PeerId', async (t) => {
    const a = await member(t)
    const b = await member(t, ['--bootstrap', a.addr])
    // c listens on a fixed port, as a daemon does by default (4770): after its restart the others
    // find it again at the same address without being told.
    const port = await freePort()
    const listen = ['--listen', `/ip4/127.0.0.1/tcp/${port}`]
    const c = await member(t, [...listen, '--bootstrap', a.addr])
    for (const [m, others] of [[a, [b, c]], [b, [a, c]], [c, [a, b]]] as Array<[Member, Member[]]>) {
      await waitFor(async () => await sees(m, others), 20_000, () => `${m.id} to list the others`)
    }
    await c.d.kill('SIGKILL')
    const killedAt = Date.now()
    await waitFor(async () => (await sees(a, [b])) && (await sees(b, [a])), PEER_TIMEOUT_MS + 15_000, () => 'the killed daemon to leave')
    const leftAfter = Date.now() - killedAt
    t.diagnostic(`left the peer lists after ${leftAfter} ms (timeout ${PEER_TIMEOUT_MS} ms)`)

    // restarted with no bootstrap address at all: the members that knew it redial it
    const again = await member(t, listen, c.w)
    assert.equal(again.id, c.id, 'same cache dir, same PeerId')
    for (const [m, others] of [[a, [b, again]], [b, [a, again]], [again, [a, b]]] as Array<[Member, Member[]]>) {
      await waitFor(async () => await sees(m, others), 45_000, () => `${m.id} to list the restarted daemon again`)
    }
  })

  it('a member remembered at an address another member has now (DHCP) is not taken for a non-member, and is found again', async (t) => {
    const b = await member(t)
    const c = await member(t, ['--bootstrap', b.addr])
    // a remembers b, and redials it at once: of two members the smaller PeerId dials (the other
    // waits for it), so a gets a key whose PeerId sorts before b's
    const w = await world(t)
    const { loadIdentity } = await import('@grid/node/server')
    for (let i = 0; i < 64 && (await loadIdentity(w.cacheDir)).peerId > b.id; i++) await rm(join(w.cacheDir, 'peer.key'))
    // a's peers.json from before: b at the address c has now (DHCP moved it), and no one else
    // to hear of b's own address from, so that the stale one is the one dialled (with c as a
    // bootstrap address, c's advert of b sometimes came first, under load, and the stale
    // address was never dialled)
    const stale = `${c.addr.slice(0, c.addr.indexOf('/p2p/'))}/p2p/${b.id}`
    await writeFile(join(w.cacheDir, 'peers.json'), JSON.stringify({ [b.id]: [stale] }))
    const a = await member(t, [], w)
    await waitFor(async () => /another member answered there|GRID_ERR_NOT_MEMBER/.test(a.d.stderr()), 20_000, () => `a to dial b at c's address: ${a.d.stderr()}`)
    assert.doesNotMatch(a.d.stderr(), /GRID_ERR_NOT_MEMBER/, 'c answered as a member, only not as b')
    // then a hears of b's own address, from a member that joins both
    const d = await member(t, ['--bootstrap', a.addr, '--bootstrap', b.addr])
    await waitFor(async () => await sees(a, [b, c, d]), 30_000, () => `a to list b, c and d: ${a.d.stderr()}`)
    assert.doesNotMatch(a.d.stderr(), /GRID_ERR_NOT_MEMBER/)
  })

  it('a daemon restarted at once (after an upgrade) is listed with its new advert, not its old one until the timeout', async (t) => {
    const a = await member(t)
    const port = await freePort()
    const listen = ['--listen', `/ip4/127.0.0.1/tcp/${port}`]
    const c = await member(t, [...listen, '--bootstrap', a.addr, '--slots', '2'])
    const advertOfC = async (): Promise<{ seq: number, slots: { total: number } } | undefined> => {
      const r = await grid(a.w, ['--json', 'peers'])
      if (r.code !== 0) return undefined
      return (JSON.parse(r.stdout) as Array<{ peerId: string, advert: { seq: number, slots: { total: number } } }>).find(p => p.peerId === c.id)?.advert
    }
    const slotsOfC = async (): Promise<number | undefined> => (await advertOfC())?.slots.total
    // a daemon that has run a while has sent more adverts than a new one sends in seconds. c
    // advertises at once each peer that connects to it: hosts that connect and go send it
    // through as many adverts in seconds as its heartbeats would in a minute.
    const first = await advertOfC()
    await waitFor(async () => {
      const ad = await advertOfC()
      if (ad !== undefined && first !== undefined && ad.slots.total === 2 && ad.seq >= first.seq + 8) return true
      const passing = await createLibp2p({ transports: [tcp()], connectionEncrypters: [noise({ prologueBytes: swarmPrologue(undefined) })], streamMuxers: [yamux()] })
      // a dial that fails is only a connection fewer: the next poll dials again
      await passing.dial(multiaddr(c.addr), { signal: AbortSignal.timeout(10_000) }).catch(() => {})
      await passing.stop()
      return false
    }, 60_000, () => 'c to send 8 adverts')
    await c.d.kill('SIGTERM')
    const again = await member(t, [...listen, '--bootstrap', a.addr, '--slots', '3'], c.w)
    assert.equal(again.id, c.id, 'same cache dir, same PeerId')
    const restartedAt = Date.now()
    // its adverts count on from where the old process's stopped: well within the peer timeout
    await waitFor(async () => await slotsOfC() === 3, PEER_TIMEOUT_MS / 2, () => 'a to list c with its new advert')
    t.diagnostic(`new advert listed ${Date.now() - restartedAt} ms after the restart`)
  })


  it('a member whose adverts are of a newer version is listed as not listed, with why, and its drops are logged once', async (t) => {
    const m = await member(t)
    const { encodeAdvert } = await import('@grid/protocol')
    const { ADVERT_TOPIC } = await import('@grid/node')
    const rogue = await rogueMember(t)
    const pubsub = rogue.services.pubsub as unknown as { subscribe: (t: string) => void, getSubscribers: (t: string) => unknown[], publish: (t: string, d: Uint8Array) => Promise<unknown> }
    pubsub.subscribe(ADVERT_TOPIC)
    await rogue.dial(multiaddr(m.addr))
    await waitFor(() => pubsub.getSubscribers(ADVERT_TOPIC).length > 0, 10_000, () => 'the member to subscribe')
    const rogueId = rogue.peerId.toString()
    const { Packr } = await import('msgpackr')
    const next = (seq: number): Uint8Array => new Packr({ useRecords: false }).pack({
      v: 2, peerId: rogueId, addrs: [], version: '0.2.0', toolchains: [], targets: ['*'], slots: { total: 1, free: 1 }, load: 0, policy: 'never', accepting: false, seq, clock: Date.now()
    })
    for (let seq = 1; seq <= 3; seq++) await pubsub.publish(ADVERT_TOPIC, next(seq)).catch(() => {})
    await waitFor(() => /dropped an advert from/.test(m.d.stderr()), 10_000, () => 'the member to drop the advert')
    await waitFor(async () => /not listed: /.test((await grid(m.w, ['peers'])).stdout), 10_000, () => 'grid peers to show the newer member')
    const text = (await grid(m.w, ['peers'])).stdout
    assert.match(text, new RegExp(`not listed: ${rogueId} at /ip4/127\\.0\\.0\\.1/tcp/\\d+\\S* \\(.+\\): advert from ${rogueId}: bad version 2 .*another grid version`))
    assert.equal((m.d.stderr().match(new RegExp(`dropped an advert from ${rogueId}`, 'g')) ?? []).length, 1, 'logged once, not at every advert')
    // for scripts: not in the peers array, which lists the listed, but in the status, with why
    assert.ok(!(await peerIds(m)).includes(rogueId))
    const unlisted = (JSON.parse((await grid(m.w, ['--json', 'status'])).stdout) as { mesh: { unlisted: Array<{ peerId: string, why: string }> } }).mesh.unlisted
    assert.deepEqual(unlisted.map(u => u.peerId), [rogueId])
    assert.match(unlisted[0]?.why ?? '', /bad version 2/)
    assert.match((await grid(m.w, ['status'])).stdout, /peers \(and 1 connected but not listed: see grid peers\)/)
    // a valid advert from it lists it as usual
    await pubsub.publish(ADVERT_TOPIC, encodeAdvert({ v: 1, peerId: rogueId, addrs: [], version: '0.1.0', toolchains: [], targets: ['*'], slots: { total: 1, free: 1 }, load: 0, policy: 'never', accepting: false, seq: 4 }))
    await waitFor(async () => (await peerIds(m)).includes(rogueId), 10_000, () => 'the valid advert to be accepted')
    assert.doesNotMatch((await grid(m.w, ['peers'])).stdout, /not listed/)
    assert.deepEqual((JSON.parse((await grid(m.w, ['--json', 'status'])).stdout) as { mesh: { unlisted: unknown[] } }).mesh.unlisted, [])
  })

})
