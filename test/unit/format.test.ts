// The text of `grid peers` and `grid status`: what a developer reads when checking the office mesh;
// and the build summary's words on the shared cache.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { formatPeers, formatStatus, peerAddress } from '@grid/cli/format'
import { formatSummary } from '@grid/cli/output'
import { emptyBuildStats, type NodeStatus, type PeerInfo } from '@grid/protocol'

const ID = '12D3KooWAkayn13m9K2JAbwqFhG2pB5Xn51zm7MY8YphKArGrf23'
const listen = (ip: string): string => `/ip4/${ip}/tcp/4770/p2p/${ID}`

function peer (over: Partial<PeerInfo> = {}): PeerInfo {
  return {
    peerId: ID,
    addrs: [listen('127.0.0.1'), listen('10.0.0.7'), listen('192.168.1.7')],
    connected: true,
    connections: 1,
    address: `/ip4/192.168.1.7/tcp/51622/p2p/${ID}`,
    rttMs: 1.5,
    lastSeen: 1_000_000,
    advert: { version: '0.1.0', toolchains: [{ go: 'go1.26.8' }], slots: { free: 1, total: 2 }, load: 0.5, policy: 'idle', accepting: true },
    untrusted: null,
    remote: { ok: 12, failed: 0 },
    ...over
  }
}

describe('peerAddress', () => {
  it('shows the listen address on the host the connection reaches, not the loopback one a peer lists first', () => {
    assert.equal(peerAddress(peer()), listen('192.168.1.7'))
  })

  it('falls back to the connection, then to the first address that is not loopback', () => {
    assert.equal(peerAddress(peer({ addrs: [listen('127.0.0.1')] })), `/ip4/192.168.1.7/tcp/51622/p2p/${ID}`)
    assert.equal(peerAddress(peer({ address: null })), listen('10.0.0.7'))
    assert.equal(peerAddress(peer({ address: null, addrs: [listen('127.0.0.1')] })), listen('127.0.0.1'))
    assert.equal(peerAddress(peer({ address: null, addrs: [] })), '-')
  })
})

describe('formatPeers', () => {
  it('has one row per peer with its link as measured and the compiles sent to it, and says when it failed some', () => {
    const text = formatPeers([peer({ remote: { ok: 12, failed: 0, msPerByte: 8e-4 } }), peer({ peerId: 'other', connected: false, rttMs: null, remote: { ok: 3, failed: 2 } })], 1_004_000)
    const [head, first, second] = text.split('\n')
    assert.match(head ?? '', /^PEER\s+ADDRESS\s+GRID\s+GO\s+SLOTS\s+LOAD\s+RTT\s+SEEN\s+POLICY\s+LINK\s+SENT$/)
    assert.match(first ?? '', new RegExp(`^${ID}\\s+/ip4/192\\.168\\.1\\.7/tcp/4770/\\S+\\s+0\\.1\\.0\\s+go1\\.26\\.8\\s+1/2\\s+0\\.50\\s+1\\.5 ms\\s+4 s ago\\s+idle\\s+1\\.3 MB/s\\s+12$`))
    assert.match(second ?? '', /\sdisconnected\s.*\s-\s+3 \(2 failed\)$/)
    // a link whose bodies come packed (its probe was slow) says so
    const packed = formatPeers([peer({ remote: { ok: 12, failed: 0, msPerByte: 8e-4, packed: true } })], 1_004_000)
    assert.match(packed.split('\n')[1] ?? '', /\s1\.3 MB\/s packed\s+12$/)
  })

  it('names the peers whose cache entries are refused, and why, below the table', () => {
    const text = formatPeers([peer({ untrusted: 'served bytes that do not hash to their OutputID' }), peer({ peerId: 'other' })])
    const lines = text.split('\n')
    assert.equal(lines.length, 5)
    assert.equal(lines[3], '')
    assert.equal(lines[4], `untrusted: ${ID}: served bytes that do not hash to their OutputID`)
    assert.doesNotMatch(formatPeers([peer()]), /untrusted/)
  })

  it('names a member of another grid version, and a connected peer no advert of which is taken, with why and what to do', () => {
    const text = formatPeers([peer({ advert: { ...peer().advert, version: '0.2.0' }, incompatible: 'it does not speak /grid/compile/1.2.0' })], 1_004_000, [
      { peerId: 'newer', address: '/ip4/192.168.1.9/tcp/4770', agent: 'grid/0.3.0 node/20', protocols: ['/grid/advert/2.0.0', '/grid/compile/2.0.0'], why: 'advert from newer: bad version 2' }
    ])
    const lines = text.split('\n')
    assert.match(lines[1] ?? '', /\s0\.2\.0\s/, 'its grid version, in the table')
    assert.equal(lines[3], `incompatible: ${ID} (grid 0.2.0): it does not speak /grid/compile/1.2.0 (another grid version: run the same one on every member, see \`grid --version\`)`)
    assert.equal(lines[4], 'not listed: newer at /ip4/192.168.1.9/tcp/4770 (grid/0.3.0 node/20): advert from newer: bad version 2; it speaks /grid/advert/2.0.0 /grid/compile/2.0.0 (another grid version: run the same one on every member, see `grid --version`)')
    assert.match(formatPeers([], 0, [{ peerId: 'x', address: null, agent: null, protocols: [], why: 'no advert yet' }]), /^not listed: x at \?: no advert yet\nno peers \(yet\)/)
  })

  it('names a member whose toolchain is another, with how', () => {
    const text = formatPeers([peer({ otherToolchain: 'its compiler prints this node\'s "compile version go1.26.8" but compiles the canary to other bytes (built from other sources, or another grid version\'s canary?)' })])
    assert.equal(text.split('\n')[3], `other toolchain: ${ID}: its compiler prints this node's "compile version go1.26.8" but compiles the canary to other bytes (built from other sources, or another grid version\'s canary?)`)
  })

  it('says how to look further when there are no peers', () => {
    assert.match(formatPeers([]), /^no peers \(yet\): check `grid status`/)
  })
})

describe('formatStatus', () => {
  const status: NodeStatus = {
    version: '0.1.0',
    nodeId: ID,
    pid: 42,
    mode: 'daemon',
    startedAt: 1_000_000,
    control: '/run/grid.sock',
    cacheDir: '/var/cache/grid',
    slots: 2,
    compilesRunning: 1,
    buildsServed: 3,
    activeBuilds: 1,
    cache: { dir: '/var/cache/grid', entries: 10, blobs: 8, bytes: 4096 },
    counters: { hits: 7, peerHits: 2, misses: 5, puts: 9, compiles: 4, remoteCompiles: 6, corrupt: 0, badFrames: 1 },
    mesh: { peerId: ID, addrs: [listen('10.0.0.7')], swarm: 'open', mdns: true, policy: 'idle', peers: 2, worker: { ran: 11, shared: 1, refused: 3, failed: 0 } }
  }

  it('counts hits from peers and compiles on peers beside the local ones, and what this node did for peers', () => {
    const text = formatStatus(status, 1_010_000)
    assert.match(text, /^node: +\S+ \(daemon, grid 0\.1\.0, pid 42, up 10 s\)$/m)
    assert.match(text, /^served: +7 hits \(2 from peers\), 5 misses, 9 puts; compiles for its builds 4 here, 6 on peers; 0 corrupt blobs dropped, 1 bad connections$/m)
    assert.match(text, /^ +tasks from peers: 11 compiled, 1 joined an identical running one, 3 refused \(busy or not acceptable\), 0 failed$/m)
    const packed = formatStatus({ ...status, mesh: { ...status.mesh!, worker: { ran: 11, shared: 1, refused: 3, failed: 0, packed: 4 } } }, 1_010_000)
    assert.match(packed, /^ +tasks from peers: 11 compiled, .*, 0 failed; 4 archives sent back packed \(slow links\)$/m)
    const both = formatStatus({ ...status, mesh: { ...status.mesh!, worker: { ran: 11, shared: 1, refused: 3, failed: 0, packed: 4, unpacked: 6 } } }, 1_010_000)
    assert.match(both, /^ +tasks from peers: 11 compiled, .*, 0 failed; 4 archives sent back packed, 6 tasks' inputs came packed \(slow links\)$/m)
    assert.match(text, /^cache: +10 entries, 8 blobs, 4\.0 KiB in \/var\/cache\/grid$/m)
    assert.match(text, /^mesh: +swarm open, 2 peers, mDNS on, accept-remote idle$/m)
  })

  it('shows the inputs of peers\' compiles kept beside the cache, when there are any', () => {
    const cache = { ...status.cache, workerInputs: { inputs: 120, bytes: 3 * 1024 * 1024 } }
    assert.match(formatStatus({ ...status, cache }), /^cache: +10 entries, 8 blobs, 4\.0 KiB in \/var\/cache\/grid\n +and 120 inputs of peers' compiles, 3\.0 MiB \(each kept 3 days from its last use\)$/m)
    assert.doesNotMatch(formatStatus({ ...status, cache: { ...cache, workerInputs: { inputs: 0, bytes: 0 } } }), /inputs of peers/)
  })

  it('says how many cache entries peers\' workers compiled, by peer, when there are any', () => {
    const cache = { ...status.cache, compiledOnPeers: { entries: 5, byPeer: { 'peer-B': 2, 'peer-C': 3 } }, workerInputs: { inputs: 1, bytes: 1024 } }
    assert.match(formatStatus({ ...status, cache }), /^cache: +10 entries, 8 blobs, 4\.0 KiB in \/var\/cache\/grid\n +of which 5 compiled on peers: 3 by peer-C, 2 by peer-B\n +and 1 input of peers' compiles/m)
    assert.doesNotMatch(formatStatus({ ...status, cache: { ...cache, compiledOnPeers: { entries: 0, byPeer: {} } } }), /compiled on peers/)
  })

  it('says whether the node takes peers\' compiles now, and the own load its idle policy judges', () => {
    const mesh = status.mesh as NonNullable<NodeStatus['mesh']>
    assert.match(formatStatus({ ...status, mesh: { ...mesh, accepting: false, load: 0.8249 } }), /^mesh: +swarm open, 2 peers, mDNS on, accept-remote idle \(not taking work now; own load 0\.82 per core\)$/m)
    assert.match(formatStatus({ ...status, mesh: { ...mesh, policy: 'always', accepting: true } }), /accept-remote always \(taking work now\)$/m)
  })

  it('shows the build that ended last: its command, cache and compiles (a build under grid env has no summary of its own)', () => {
    assert.doesNotMatch(formatStatus(status), /last:/)
    const last = emptyBuildStats('b1', ['go', 'build', './...'])
    last.endedAt = 1_004_000
    last.actions = 20
    last.cache.hits = 12
    last.cache.misses = 8
    last.compiles.local = 5
    last.compiles.remote = 3
    const text = formatStatus({ ...status, lastBuild: last }, 1_010_000)
    assert.match(text, /^builds: +3 served, 1 running\n +last: go build \.\/\.\.\.: 20 actions, 12 hits, 8 misses, 5 compiles here, 3 on peers \(ended 6 s ago\)$/m)
  })

  it('names the file the node logs to, when it has one (a user looking for what a daemon did)', () => {
    assert.match(formatStatus({ ...status, log: '/var/cache/grid/logs/grid.log' }), /^control: +\/run\/grid\.sock\nlog: +\/var\/cache\/grid\/logs\/grid\.log$/m)
    assert.doesNotMatch(formatStatus({ ...status, log: null }), /^log:/m)
    assert.doesNotMatch(formatStatus(status), /^log:/m) // a node before it was in the status
  })

  it('says why the node\'s mesh did not start, with its hint, rather than that it is off', () => {
    const meshFailure = { code: 'GRID_ERR_MESH_START', message: 'the mesh could not listen on /ip4/0.0.0.0/tcp/4770: address already in use (EADDRINUSE)', hint: 'pick another port' }
    const text = formatStatus({ ...status, mesh: null, meshFailure })
    assert.match(text, /^mesh: +not started, its builds run alone: the mesh could not listen on \/ip4\/0\.0\.0\.0\/tcp\/4770: address already in use \(EADDRINUSE\) \(GRID_ERR_MESH_START\)\n {2}hint: pick another port$/m)
    const { hint: _, ...noHint } = meshFailure
    assert.doesNotMatch(formatStatus({ ...status, mesh: null, meshFailure: noHint }), /hint:/)
    assert.match(formatStatus({ ...status, mesh: null, meshFailure: null }), /^mesh: +off$/m)
  })

  it('leaves out the peers lines when the node runs no mesh, or no worker', () => {
    assert.match(formatStatus({ ...status, mesh: null }), /^mesh: +off$/m)
    const { worker: _, ...noWorker } = status.mesh as NonNullable<NodeStatus['mesh']>
    assert.doesNotMatch(formatStatus({ ...status, mesh: noWorker }), /tasks from peers/)
  })
})

describe('formatSummary', () => {
  it('says the size of the hits once, and the wall time the build waited on peers, not the sum over parallel gets', () => {
    // a second host's build of what the first built: 214 hits from one peer in a 3.9 s build,
    // whose gets waited 8.7 s between them, 2.1 s of the build's time
    const stats = emptyBuildStats('b', ['go', 'build', './...'])
    stats.actions = 216
    stats.cache.hits = 214
    stats.cache.peerHits = 214
    stats.cache.misses = 2
    stats.cache.hitBytes = 33 * 1024 * 1024
    stats.cache.peer.bytes = 33 * 1024 * 1024
    stats.cache.peer.byPeer[ID] = { hits: 214, bytes: 33 * 1024 * 1024 }
    stats.cache.peer.waitMs = 8700
    stats.cache.peer.waitWallMs = 2100
    const all = formatSummary(stats, 3900)
    assert.match(all, / · cache 214 hits \(33 MiB\), all from 1 peer \(2\.1 s of the build waiting on peers\), 2 misses, /)
    assert.equal(all.match(/MiB/g)?.length, 1, all)
    assert.doesNotMatch(all, /8\.7/, 'the sum is --json\'s alone')
    // some hits local: the peers' share of the bytes is news
    stats.cache.hits = 300
    stats.cache.localHits = 86
    stats.cache.hitBytes = 50 * 1024 * 1024
    assert.match(formatSummary(stats, 3900), / · cache 300 hits \(50 MiB\), 214 from 1 peer \(33 MiB, 2\.1 s of the build waiting on peers\), 2 misses, /)
    // a node from before waitWallMs: no time, rather than the sum said as one
    delete stats.cache.peer.waitWallMs
    assert.match(formatSummary(stats, 3900), / · cache 300 hits \(50 MiB\), 214 from 1 peer \(33 MiB\), 2 misses, /)
    stats.cache.hits = 214
    stats.cache.localHits = 0
    stats.cache.hitBytes = 33 * 1024 * 1024
    assert.match(formatSummary(stats, 3900), / · cache 214 hits \(33 MiB\), all from 1 peer, 2 misses, /)
  })

  it('says how many entries peers had that were compiled here instead, over a slow link, and only when some were', () => {
    const stats = emptyBuildStats('b', ['go', 'build', './...'])
    stats.actions = 10
    stats.cache.hits = 3
    stats.cache.peerHits = 3
    stats.cache.peer.byPeer[ID] = { hits: 3, bytes: 3000 }
    stats.cache.peer.bytes = 3000
    assert.doesNotMatch(formatSummary(stats, 1000), /slow link/)
    stats.cache.peer.slowLink = 1
    assert.match(formatSummary(stats, 1000), / · 1 peer entry compiled instead \(slow link\) · /)
    stats.cache.peer.slowLink = 7
    assert.match(formatSummary(stats, 1000), / · 7 peer entries compiled instead \(slow link\) · /)
    delete stats.cache.peer.slowLink // a node from before the count
    assert.doesNotMatch(formatSummary(stats, 1000), /slow link/)
  })

  it('says how many sampled peer entries could not be verified (not compiles), apart from the mismatched, and only when some were', () => {
    const stats = emptyBuildStats('b', ['go', 'test', './...'])
    stats.cache.peer.verify = { sampled: 5, confirmed: 3, mismatched: 0, unverifiable: 0 }
    assert.match(formatSummary(stats, 1000), / · verified 3\/5 peer entries · /)
    stats.cache.peer.verify.unverifiable = 2
    assert.match(formatSummary(stats, 1000), / · verified 3\/5 peer entries, 2 unverifiable \(not compiles\) · /)
    delete stats.cache.peer.verify.unverifiable // a node from before the count
    assert.match(formatSummary(stats, 1000), / · verified 3\/5 peer entries · /)
  })
})
