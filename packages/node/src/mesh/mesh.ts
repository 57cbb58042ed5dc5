/**
 * The mesh: this node's libp2p host, how it finds and keeps the other members, and the table
 * of what they advertise. No master: every node runs the same loop.
 *
 *  - Discovery: mDNS (optional), bootstrap addresses (dialled with backoff, forever), and the
 *    addresses inside every advert (peer exchange). mDNS finds, it does not connect: the
 *    smaller PeerId dials, the other after a grace period. mDNS answers need no swarm key: at
 *    most MAX_ADVERT_ADDRS addresses of one are kept, they never reach libp2p's peer store, and
 *    a PeerId only they named is forgotten when they stop. Duplicate connections from
 *    simultaneous dials are closed by one rule both ends apply: keep the connection opened by
 *    the smaller PeerId.
 *  - Whoever signs an advert chooses the addresses in it, and any member can sign with fresh
 *    keys. So an advert from a PeerId no direct connection, mDNS or bootstrap address vouches for
 *    is relayed, but at most MAX_ADVERT_ONLY_PEERS such members are listed and dialled at a time,
 *    they are forgotten once their adverts stop, and only members this node has been connected
 *    to are remembered (MAX_KNOWN_PEERS, peers.json). All dials share one budget of
 *    DIAL_ADDRS_PER_SECOND addresses, and each member has its own backoff.
 *  - Membership: Noise with the swarm prologue (member-noise.ts); failures are logged, and mark
 *    a PeerId a non-member unless it is a member reached at an address it never advertised.
 *  - Liveness: a connection whose peer has gone quiet and does not answer a ping is ended
 *    (liveness.ts); one whose peer is still sending never is, however slow its link.
 *  - Adverts: gossiped on ADVERT_TOPIC on change (slot changes at most once a second) and
 *    every HEARTBEAT_MS, also fetched directly from each new connection (ADVERT_PROTOCOL) so a
 *    new peer is listed at once. Every advert is validated; bad ones are dropped and the
 *    sender logged. A peer whose adverts stop for PEER_TIMEOUT_MS leaves the table.
 *  - A peer that goes away is redialled with backoff for REJOIN_WINDOW_MS after its last
 *    advert; bootstrap addresses are redialled for as long as the node runs.
 */
import { readFile } from 'node:fs/promises'
import { networkInterfaces } from 'node:os'
import { gossipsub, type GossipSub } from '@libp2p/gossipsub'
import { identify, identifyPush } from '@libp2p/identify'
import type { Connection, Libp2p, PeerDiscovery, PeerId, PeerInfo, PrivateKey, Stream } from '@libp2p/interface'
import { mdns } from '@libp2p/mdns'
import { peerIdFromString } from '@libp2p/peer-id'
import { ping, type Ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { lpStream } from '@libp2p/utils'
import { yamux } from '@libp2p/yamux'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import {
  ADVERT_VERSION, CONTROL_CHAR, GRID_VERSION, GridError, MAX_ADVERT_ADDRS, MAX_ADVERT_BYTES, PACKING, decodeAdvert, encodeAdvert, swarmFingerprint, swarmPrologue,
  type Advert, type Policy, type ToolchainInfo
} from '@grid/protocol'
import { writeFileAtomic } from '../files.js'
import { LogLimiter, logger } from '../log.js'
import { deadline } from '../signals.js'
import {
  ADVERT_PROTOCOL, ADVERT_SLOTS_MS, ADVERT_SOON_MS, ADVERT_TOPIC, DIAL_ADDRS_PER_SECOND, DIAL_BURST, DIAL_GRACE_MS, DIAL_TIMEOUT_MS, HEARTBEAT_MS, IDLE_LOAD_PER_CORE,
  INBOUND_CONNECTIONS_PER_SECOND, MAX_ADVERT_ONLY_PEERS, MAX_CONNECTIONS, MAX_KNOWN_PEERS, MAX_PEERS, MDNS_INTERVAL_MS, NOT_MEMBER_RETRY_MS, PEER_TIMEOUT_MS,
  PING_EVERY_BEATS, PING_TIMEOUT_MS, REDIAL_MAX_MS, REDIAL_MIN_MS, REFUSED_LOG_ADDRESSES, REFUSED_LOG_INTERVAL_MS, REJOIN_WINDOW_MS, STREAM_WINDOW_BYTES
} from './constants.js'
import { Liveness } from './liveness.js'
import { memberNoise, type HandshakeFailure } from './member-noise.js'
import { windowUpdatesAtHalf } from './yamux-window.js'

const log = logger('grid:mesh')

export interface MeshInit {
  privateKey: PrivateKey
  listen: string[]
  bootstrap: string[]
  mdns: boolean
  /** undefined: the open mesh of nodes without a key */
  swarmKey: Uint8Array | undefined
  policy: Policy
  /** What this node can offer right now: read at every advert. `load`: the workstation's own, per core (load.ts). */
  /** `room`: whether the disk has room for peers' tasks (the worker's; absent: it has) */
  local: () => { toolchains: ToolchainInfo[], slots: { total: number, free: number }, load: number, room?: boolean }
  /** Where the members this node has been connected to are remembered across restarts (JSON). */
  peersFile?: string
  /** Called after each valid advert from a connected member, with its PeerId (its free slots may have changed). */
  onAdvert?: (peerId: string) => void
  /** Called when a member leaves the peer table (its adverts stopped): what is kept to talk to it may go. */
  onLeave?: (peerId: string) => void
}

export interface PeerView {
  peerId: string
  addrs: string[]
  connected: boolean
  connections: number
  /** remote address of the live connection, if any */
  address: string | undefined
  rttMs: number | undefined
  lastSeen: number
  advert: Advert
}

/** `id`: the advert's PeerId, parsed once (the scheduler asks who is connected for every compile). */
interface PeerEntry { id: PeerId, advert: Advert, lastSeen: number, rttMs: number | undefined }
interface DialState { failures: number, nextAttempt: number, notMember: boolean }
/**
 * A member whose addresses this node knows. `connected`: a direct connection to it has succeeded
 * (entries from peers.json too, which holds only those); only these are saved, and redialled
 * after they leave the table. `relayed`: known only from an advert gossip relayed, which anyone
 * could have signed (MAX_ADVERT_ONLY_PEERS). Neither: mDNS or a bootstrap address vouches for it.
 */
interface Known { last: number, addrs: Multiaddr[], connected: boolean, relayed: boolean }

type Services = { identify: unknown, identifyPush: unknown, ping: Ping, pubsub: GossipSub }

/**
 * A connected peer as libp2p's identify described it: the protocols it handles (grid's, with
 * their versions, among them) and its agent (`grid/<version> …`), control characters escaped.
 * Kept while it is connected.
 */
export interface Identified { protocols: string[], agent: string | undefined }

/** A connected peer that is not in the peer table: no advert of it has been taken, and why. */
export interface Unlisted { peerId: string, address: string | undefined, agent: string | undefined, protocols: string[], why: string }

export class Mesh {
  private readonly init: MeshInit
  private node: Libp2p<Services> | undefined
  private readonly peers = new Map<string, PeerEntry>()
  private readonly dials = new Map<string, DialState>()
  /** bootstrap address → the PeerId it turned out to be */
  private readonly bootstrapPeers = new Map<string, string>()
  /** PeerIds named by bootstrap addresses (/p2p/<id>) */
  private readonly bootstrapIds: Set<string>
  /** when a peer in the table or found by mDNS was first known without a connection (DIAL_GRACE_MS) */
  private readonly discoveredAt = new Map<string, number>()
  /** peers mDNS found (at most MAX_PEERS): when it last answered, and at which addresses */
  private readonly mdnsPeers = new Map<string, { last: number, addrs: Multiaddr[] }>()
  private readonly dialing = new Set<string>()
  /** members whose addresses this node knows (at most MAX_KNOWN_PEERS + MAX_PEERS) */
  private readonly known = new Map<string, Known>()
  /** relayed adverts dropped since the last heartbeat because MAX_ADVERT_ONLY_PEERS were listed */
  private droppedRelayed = 0
  /** connected peers as identify described them (at most MAX_CONNECTIONS: one per connected peer) */
  private readonly identified = new Map<string, Identified>()
  /** why the last advert of a connected peer was not taken (its sender, for `unlisted`) */
  private readonly refusedAdverts = new Map<string, string>()
  /** the last reason logged for dropping each sender's adverts (at most MAX_PEERS, then forgotten) */
  private readonly loggedDrops = new Map<string, string>()
  /** address dials left in the budget (DIAL_ADDRS_PER_SECOND), and when it was last topped up */
  private dialBudget = DIAL_BURST
  private dialBudgetAt = Date.now()
  /**
   * The last advert's `seq`. It starts at this start's wall-clock time in ms, so that it goes on
   * increasing across a restart (one advert a millisecond would be needed to catch up): peers
   * keep an advert with a higher seq than a newer one for PEER_TIMEOUT_MS, and a node restarted
   * after an upgrade of Go or grid, counting from 0 again, was listed with its old toolchain,
   * version and slots for 20 s, its compiles refused under the old toolchain.
   */
  private seq = Date.now()
  private beats = 0
  private seenChanged = false
  private saveTimer: NodeJS.Timeout | undefined
  private timers: NodeJS.Timeout[] = []
  private publishTimer: NodeJS.Timeout | undefined
  private publishDue = 0
  private readonly stopping = new AbortController()
  /** Ends connections whose peer has gone quiet and does not answer a ping (liveness.ts). */
  private readonly liveness = new Liveness({ connections: () => this.node?.getConnections() ?? [], signal: this.stopping.signal })
  /** Refused handshakes, logged once per address and then counted (REFUSED_LOG_INTERVAL_MS). */
  private readonly refusals: LogLimiter
  readonly fingerprint: string

  constructor (init: MeshInit) {
    this.init = init
    this.fingerprint = swarmFingerprint(init.swarmKey)
    this.refusals = new LogLimiter({
      log,
      intervalMs: REFUSED_LOG_INTERVAL_MS,
      maxKeys: REFUSED_LOG_ADDRESSES,
      summary: (key, count, seconds) => `… and ${count} more refused handshakes ${key ?? `from or to other addresses (past ${REFUSED_LOG_ADDRESSES} at once)`} in the last ${seconds} s: not members of swarm ${this.fingerprint} [GRID_ERR_NOT_MEMBER]`
    })
    this.bootstrapIds = new Set(init.bootstrap.flatMap(a => { try { return [peerIdIn(multiaddr(a)) ?? ''] } catch { return [] } }).filter(id => id !== ''))
  }

  get peerId (): string { return this.node?.peerId.toString() ?? '' }

  /** The libp2p host, for the protocols built on the mesh (the shared cache). */
  get libp2p (): Libp2p<Services> | undefined { return this.node }

  /** Members in the peer table with a live connection. */
  connectedMembers (): string[] {
    return this.connectedAdverts().map(p => p.peerId)
  }

  /**
   * Members with a live connection and their adverts: what the scheduler asks for every compile,
   * so without the addresses and the order that `list()` adds.
   */
  connectedAdverts (): Array<{ peerId: string, advert: Advert }> {
    const node = this.node
    const connected: Array<{ peerId: string, advert: Advert }> = []
    if (node === undefined) return connected
    for (const [peerId, e] of this.peers) if (node.getConnections(e.id).length > 0) connected.push({ peerId, advert: e.advert })
    return connected
  }

  /**
   * Whether a connected peer handles `protocol` (one of grid's, `/grid/<name>/<version>`), as
   * identify listed its protocols: true when listed; false when another version of it is listed
   * and not this one (a member of another grid version); undefined otherwise. A node registers its
   * grid protocols a moment after it connects, and an older node does not push the change, so a
   * list without any version of it says nothing yet.
   */
  speaks (peerId: string, protocol: string): boolean | undefined {
    const listed = this.identified.get(peerId)?.protocols
    if (listed === undefined) return undefined
    if (listed.includes(protocol)) return true
    const family = protocol.slice(0, protocol.lastIndexOf('/') + 1)
    return listed.some(p => p.startsWith(family)) ? false : undefined
  }

  /** What identify said of a connected peer, if it has answered. */
  identifiedAs (peerId: string): Identified | undefined {
    return this.identified.get(peerId)
  }

  /**
   * Connected peers that are not in the peer table, and why: a member whose adverts this node
   * refuses or cannot fetch (another grid version's, say) is connected but listed nowhere else.
   */
  unlisted (): Unlisted[] {
    const node = this.node
    if (node === undefined) return []
    const seen = new Set<string>()
    const out: Unlisted[] = []
    for (const conn of node.getConnections()) {
      const id = conn.remotePeer.toString()
      if (seen.has(id) || this.peers.has(id)) continue
      seen.add(id)
      const identified = this.identified.get(id)
      const why = this.refusedAdverts.get(id) ?? (this.speaks(id, ADVERT_PROTOCOL) === false ? `it does not speak ${ADVERT_PROTOCOL}` : 'no advert yet')
      out.push({ peerId: id, address: conn.remoteAddr.toString(), agent: identified?.agent, protocols: (identified?.protocols ?? []).filter(p => p.startsWith('/grid/')), why })
    }
    return out.sort((a, b) => a.peerId.localeCompare(b.peerId))
  }

  /** Whether peers can be expected soon: bootstrap addresses, or members remembered from before. */
  expectsPeers (): boolean {
    return this.init.bootstrap.length > 0 || [...this.known.values()].some(k => k.connected)
  }

  /**
   * Whether a PeerId advertised as a member of this mesh: one this node has been connected to
   * (remembered, MAX_KNOWN_PEERS), or one whose adverts are arriving.
   */
  isKnownMember (id: string): boolean {
    return id === this.peerId || this.known.has(id)
  }

  /** This node's listen addresses with /p2p/<id>, ready for --bootstrap. */
  addrs (): string[] {
    return this.node?.getMultiaddrs().map(ma => ma.toString()) ?? []
  }

  async start (): Promise<void> {
    await this.loadKnownPeers()
    try {
      this.node = await this.create(this.init.listen)
      await this.node.start()
    } catch (err) {
      await Promise.resolve(this.node?.stop()).catch(() => {})
      throw listenError(err, this.init.listen)
    }
    const node = this.node
    const pubsub = node.services.pubsub
    pubsub.topicValidators.set(ADVERT_TOPIC, (from, msg) => this.validateGossip(from, msg) as never)
    pubsub.addEventListener('message', evt => {
      if (evt.detail.topic !== ADVERT_TOPIC || evt.detail.type !== 'signed') return
      this.accept(decodeAdvert(evt.detail.data, evt.detail.from.toString()))
    })
    pubsub.addEventListener('subscription-change', () => this.schedulePublish())
    pubsub.subscribe(ADVERT_TOPIC)
    await node.handle(ADVERT_PROTOCOL, (stream: Stream) => { void this.serveAdvert(stream) }, { maxInboundStreams: 8 })
    // Not libp2p's peer:discovery: that also fires for every PeerId a failed dial adds to the
    // peer store, such as one a forged advert named. mDNS peers come from create().
    node.addEventListener('connection:open', evt => {
      this.liveness.watch(evt.detail)
      this.dedupe(evt.detail)
    })
    node.addEventListener('peer:connect', evt => {
      const id = evt.detail.toString()
      const state = this.dials.get(id)
      if (state !== undefined) { state.failures = 0; state.notMember = false }
      const known = this.known.get(id)
      if (known !== undefined && !known.connected) {
        // a direct, authenticated connection: now a member to remember
        known.connected = true
        known.relayed = false
        this.knownChanged()
      }
      void this.fetchAdvert(evt.detail)
      this.schedulePublish()
    })
    node.addEventListener('peer:identify', evt => {
      const id = evt.detail.peerId.toString()
      if (node.getConnections(evt.detail.peerId).length === 0) return
      // as the peer sent them, but for control characters: `grid peers` prints both
      const agent = evt.detail.agentVersion
      this.identified.set(id, { protocols: evt.detail.protocols.map(printable), agent: agent === undefined ? undefined : printable(agent) })
    })
    node.addEventListener('peer:disconnect', evt => {
      const id = evt.detail.toString()
      this.identified.delete(id)
      this.refusedAdverts.delete(id)
      log.debug(`disconnected from ${id}`)
    })
    this.timers.push(setInterval(() => { void this.heartbeat() }, HEARTBEAT_MS))
    this.timers.push(setInterval(() => { void this.redial() }, REDIAL_MIN_MS))
    for (const t of this.timers) t.unref()
    this.liveness.start()
    log.info(`mesh ${node.peerId.toString()} swarm ${this.fingerprint} listening on ${this.addrs().join(' ') || '(nothing)'}${this.init.mdns ? ', mDNS on' : ''}`)
    void this.redial()
    this.schedulePublish()
  }

  async stop (): Promise<void> {
    this.stopping.abort()
    this.liveness.stop()
    for (const t of this.timers) clearInterval(t)
    this.refusals.flush()
    clearTimeout(this.publishTimer)
    clearTimeout(this.saveTimer)
    await this.node?.stop()
    this.node = undefined
  }

  list (): PeerView[] {
    const node = this.node
    return [...this.peers.entries()].map(([id, e]) => {
      const conns = node?.getConnections(e.id) ?? []
      const conn = conns[0]
      return {
        peerId: id,
        addrs: e.advert.addrs,
        connected: conn !== undefined,
        connections: conns.length,
        address: conn?.remoteAddr.toString(),
        rttMs: e.rttMs,
        lastSeen: e.lastSeen,
        advert: e.advert
      }
    }).sort((a, b) => a.peerId.localeCompare(b.peerId))
  }

  /**
   * Send our advert soon, coalescing bursts of changes: within ADVERT_SOON_MS, or within
   * ADVERT_SLOTS_MS when only our free slots changed (`slots`).
   */
  schedulePublish (why: 'soon' | 'slots' = 'soon'): void {
    if (this.node === undefined) return
    const due = Date.now() + (why === 'slots' ? ADVERT_SLOTS_MS : ADVERT_SOON_MS)
    if (this.publishTimer !== undefined) {
      if (this.publishDue <= due) return
      clearTimeout(this.publishTimer) // something more urgent: bring it forward
    }
    this.publishDue = due
    this.publishTimer = setTimeout(() => {
      this.publishTimer = undefined
      void this.publish()
    }, due - Date.now())
    this.publishTimer.unref()
  }

  private async create (listen: string[]): Promise<Libp2p<Services>> {
    windowUpdatesAtHalf() // a window update per half window used, not per frame (yamux-window.ts)
    return await createLibp2p({
      privateKey: this.init.privateKey,
      start: false,
      // identify tells this agent to every peer: a member of another grid version is recognisable
      nodeInfo: { name: 'grid', version: GRID_VERSION },
      addresses: { listen },
      transports: [tcp()],
      connectionEncrypters: [memberNoise(swarmPrologue(this.init.swarmKey), f => this.onHandshakeFailure(f))],
      streamMuxers: [yamux({ streamOptions: { maxStreamWindowSize: STREAM_WINDOW_BYTES, maxReadBufferLength: STREAM_WINDOW_BYTES } })],
      peerDiscovery: this.init.mdns ? [components => this.mdnsDiscovery(mdns({ interval: MDNS_INTERVAL_MS })(components))] : [],
      connectionManager: { inboundConnectionThreshold: INBOUND_CONNECTIONS_PER_SECOND, maxConnections: MAX_CONNECTIONS },
      // its pings wait behind a transfer on a slow link and it ended connections that were busy
      // sending: liveness.ts watches them instead
      connectionMonitor: { enabled: false },
      services: {
        identify: identify(),
        // tells the peers when this node's protocols change: it registers the compile and cache
        // protocols after it has joined the mesh, and peers use it by what identify lists (speaks)
        identifyPush: identifyPush(),
        ping: ping(),
        // No penalty for PeerIds sharing an address (gossipsub's P6). It counts every PeerId
        // seen from an address in the last hour (it keeps a gone peer's score that long); from
        // the eleventh on, every peer there scores below zero and leaves the gossip mesh, and
        // from the fifteenth everything they send is ignored (graylisted): their adverts stop,
        // and they leave the peer table. Members behind one NAT, containers on one host, or
        // builds with fresh caches (a new PeerId each) got there within minutes, and with
        // them any daemon on that address. Who may join is the swarm key's to decide.
        pubsub: gossipsub({ allowPublishToZeroTopicPeers: true, emitSelf: false, globalSignaturePolicy: 'StrictSign', scoreParams: { IPColocationFactorWeight: 0 } })
      }
    }) as unknown as Libp2p<Services>
  }

  /** Whether this node takes remote work now: its policy, for `idle` its load, and room on its disk. */
  accepting (): boolean {
    const policy = this.init.policy
    const local = this.init.local()
    if (local.room === false) return false
    return policy === 'always' || (policy === 'idle' && local.load < IDLE_LOAD_PER_CORE)
  }

  private advert (): Advert {
    const local = this.init.local()
    const policy = this.init.policy
    const accepting = this.accepting()
    return {
      v: ADVERT_VERSION,
      peerId: this.peerId,
      addrs: this.addrs().slice(0, MAX_ADVERT_ADDRS),
      version: GRID_VERSION,
      toolchains: local.toolchains,
      targets: ['*'],
      slots: local.slots,
      load: Math.round(local.load * 100) / 100,
      policy,
      accepting,
      seq: ++this.seq,
      unpacks: [PACKING]
    }
  }

  private async publish (): Promise<void> {
    const node = this.node
    if (node === undefined) return
    try {
      await node.services.pubsub.publish(ADVERT_TOPIC, encodeAdvert(this.advert()))
    } catch (err) {
      log.debug(`publishing the advert failed: ${(err as Error).message}`)
    }
  }

  private validateGossip (from: PeerId, msg: { type: string, data: Uint8Array, from?: PeerId }): 'accept' | 'reject' {
    const sender = msg.type === 'signed' && msg.from !== undefined ? msg.from.toString() : `unsigned message via ${from.toString()}`
    try {
      if (msg.type !== 'signed') throw new GridError('GRID_ERR_ADVERT_INVALID', 'unsigned advert')
      const advert = decodeAdvert(msg.data, sender)
      if (advert.peerId !== sender) throw new GridError('GRID_ERR_ADVERT_INVALID', `advert names ${advert.peerId} but is signed by ${sender}`)
      return 'accept'
    } catch (err) {
      const message = (err as Error).message
      // A member of another grid version sends adverts this one cannot read, every heartbeat:
      // each reason is said once per sender, and `grid peers` shows the connected ones (unlisted).
      if (this.loggedDrops.get(sender) !== message) {
        log.warn(`dropped an advert from ${sender} (relayed by ${from.toString()}): ${message}`)
        if (this.loggedDrops.size >= MAX_PEERS) this.loggedDrops.clear()
        this.loggedDrops.set(sender, message)
      }
      const connected = msg.type === 'signed' && msg.from !== undefined && this.node !== undefined && this.node.getConnections(msg.from).length > 0
      if (connected) this.rememberRefused(sender, message)
      return 'reject'
    }
  }

  /**
   * Records a valid advert. Peer exchange: its addresses become dial candidates, unless nothing
   * vouches for its signer and MAX_ADVERT_ONLY_PEERS such members are listed already.
   */
  private accept (advert: Advert): void {
    const node = this.node
    if (advert.peerId === this.peerId || node === undefined) return
    const now = Date.now()
    const entry = this.peers.get(advert.peerId)
    if (entry !== undefined && advert.seq <= entry.advert.seq && now - entry.lastSeen < PEER_TIMEOUT_MS) {
      // an older advert that arrived late: keep the newer one, but it still shows the peer is alive
      if (advert.seq < entry.advert.seq) return
    }
    const id = entry?.id ?? peerIdFromString(advert.peerId)
    const connected = node.getConnections(id).length > 0
    const before = this.known.get(advert.peerId)
    const vouched = connected || before?.relayed === false || this.mdnsPeers.has(advert.peerId) || this.bootstrapIds.has(advert.peerId)
    if (!vouched && before === undefined && this.relayedCount() >= MAX_ADVERT_ONLY_PEERS) {
      this.droppedRelayed++
      return
    }
    if (entry === undefined && this.peers.size >= MAX_PEERS && !(vouched && this.evictRelayed())) {
      log.debug(`peer table full (${MAX_PEERS}): ${advert.peerId} not listed`)
      return
    }
    if (entry === undefined) log.info(`peer ${advert.peerId} joined (${advert.toolchains.map(t => t.go).join(', ') || 'no toolchain'}, ${advert.slots.total} slots, ${advert.policy}${vouched ? '' : ', known only from a relayed advert'})`)
    this.peers.set(advert.peerId, { id, advert, lastSeen: now, rttMs: entry?.rttMs })
    const addrs = dialAddrs(parseAddrs(advert.addrs), advert.peerId)
    const nowConnected = connected || before?.connected === true
    this.known.delete(advert.peerId) // re-inserted last: the map's order is least recently seen first
    this.known.set(advert.peerId, { last: now, addrs, connected: nowConnected, relayed: !vouched })
    if (nowConnected && (before?.connected !== true || before.addrs.join() !== addrs.join())) {
      // a new member or new addresses: remember them soon (a crash must not forget them)
      this.knownChanged()
    }
    if (!connected) this.discoveredAt.set(advert.peerId, this.discoveredAt.get(advert.peerId) ?? now)
    else this.init.onAdvert?.(advert.peerId)
  }

  /** Members listed only on the strength of a relayed advert. */
  private relayedCount (): number {
    let n = 0
    for (const k of this.known.values()) if (k.relayed) n++
    return n
  }

  /** Makes room in a full peer table for a member something vouches for: drops the stalest relayed one. */
  private evictRelayed (): boolean {
    for (const [id, k] of this.known) {
      if (k.relayed && this.peers.has(id)) { this.forget(id); return true }
    }
    return false
  }

  /** Forgets a member never connected to, here and in libp2p's peer store (a failed dial adds it there). */
  private forget (id: string): void {
    const entry = this.peers.get(id)
    this.peers.delete(id)
    this.known.delete(id)
    if (this.mdnsPeers.has(id)) return // still on this LAN: mDNS keeps it
    this.discoveredAt.delete(id)
    if (!this.dialing.has(id)) this.dials.delete(id)
    const node = this.node
    if (node === undefined) return
    const peer = entry?.id ?? peerIdFromString(id)
    if (node.getConnections(peer).length === 0) void node.peerStore.delete(peer).catch(() => {})
  }

  /**
   * mDNS's answers go to onMdnsPeer only. Anyone on the LAN can send them, without the swarm key,
   * each with a fresh PeerId and thousands of addresses; libp2p, whose listener is added after
   * this one (once the factory has returned it), would merge every one into its peer store, which
   * nothing empties.
   */
  private mdnsDiscovery (discovery: PeerDiscovery): PeerDiscovery {
    discovery.addEventListener('peer', evt => {
      evt.stopImmediatePropagation()
      this.onMdnsPeer(evt.detail)
    })
    return discovery
  }

  /** mDNS found a peer on this LAN (again: it answers every MDNS_INTERVAL_MS). At most MAX_ADVERT_ADDRS of its addresses are kept. */
  private onMdnsPeer (info: PeerInfo): void {
    const id = info.id.toString()
    if (id === this.peerId) return
    const first = !this.mdnsPeers.has(id)
    if (first && this.mdnsPeers.size >= MAX_PEERS) return
    const addrs = dialAddrs(info.multiaddrs, id).slice(0, MAX_ADVERT_ADDRS)
    this.mdnsPeers.set(id, { last: Date.now(), addrs })
    const known = this.known.get(id)
    if (known?.relayed === true) known.relayed = false
    if (first) {
      log.debug(`discovered ${id} at ${addrs.map(String).join(', ')}`)
      this.discoveredAt.set(id, this.discoveredAt.get(id) ?? Date.now())
      // the smaller PeerId dials at once; the other waits DIAL_GRACE_MS in the redial loop
      if (this.peerId < id) void this.tryDial(id, () => addrs.length > 0 ? addrs : info.id)
    }
  }

  /** The members to remember changed: save them soon. */
  private knownChanged (): void {
    this.seenChanged = true
    if (this.saveTimer === undefined) {
      this.saveTimer = setTimeout(() => { this.saveTimer = undefined; void this.saveKnownPeers() }, 500)
      this.saveTimer.unref()
    }
  }

  private async serveAdvert (stream: Stream): Promise<void> {
    const timed = deadline(DIAL_TIMEOUT_MS)
    try {
      const lp = lpStream(stream, { maxDataLength: MAX_ADVERT_BYTES })
      await lp.write(encodeAdvert(this.advert()), { signal: timed.signal })
      await stream.close()
    } catch (err) {
      stream.abort(err as Error)
    } finally {
      timed.done()
    }
  }

  private async fetchAdvert (peer: PeerId): Promise<void> {
    const node = this.node
    if (node === undefined) return
    const { signal, done } = deadline(DIAL_TIMEOUT_MS, this.stopping.signal)
    try {
      const stream = await node.dialProtocol(peer, ADVERT_PROTOCOL, { signal })
      const lp = lpStream(stream, { maxDataLength: MAX_ADVERT_BYTES, maxBufferSize: MAX_ADVERT_BYTES * 2 })
      const bytes = await lp.read({ signal })
      await stream.close().catch(() => {})
      const advert = decodeAdvert(bytes.subarray(), peer.toString())
      if (advert.peerId !== peer.toString()) throw new GridError('GRID_ERR_ADVERT_INVALID', `advert names ${advert.peerId}`)
      this.accept(advert)
    } catch (err) {
      if (this.stopping.signal.aborted) return
      const unsupported = (err as { name?: string }).name === 'UnsupportedProtocolError'
      const message = unsupported ? `it does not speak ${ADVERT_PROTOCOL}` : (err as Error).message
      log.debug(`advert from ${peer.toString()} not fetched: ${message}`)
      if (unsupported || (err as { code?: string }).code === 'GRID_ERR_ADVERT_INVALID') this.rememberRefused(peer.toString(), message)
    } finally {
      done()
    }
  }

  /** Why a connected peer's advert was not taken (one per connected peer: MAX_CONNECTIONS). */
  private rememberRefused (peerId: string, why: string): void {
    if (this.refusedAdverts.size >= MAX_CONNECTIONS && !this.refusedAdverts.has(peerId)) return
    this.refusedAdverts.set(peerId, why)
  }

  /** Both ends keep the connection opened by the smaller PeerId; the oldest if it opened several. */
  private dedupe (conn: Connection): void {
    const node = this.node
    if (node === undefined) return
    const conns = node.getConnections(conn.remotePeer).filter(c => c.status === 'open')
    if (conns.length < 2) return
    const weDial = this.peerId < conn.remotePeer.toString()
    const preferred = conns.filter(c => c.direction === (weDial ? 'outbound' : 'inbound'))
    const pool = preferred.length > 0 ? preferred : conns
    const keep = pool.reduce((a, b) => (a.timeline.open <= b.timeline.open ? a : b))
    for (const c of conns) {
      if (c !== keep) {
        log.debug(`closing duplicate connection to ${conn.remotePeer.toString()} (${c.direction})`)
        void c.close().catch(() => {})
      }
    }
  }

  private async heartbeat (): Promise<void> {
    const now = Date.now()
    for (const [id, entry] of this.peers) {
      if (now - entry.lastSeen > PEER_TIMEOUT_MS) {
        this.peers.delete(id)
        if (!this.mdnsPeers.has(id)) this.discoveredAt.delete(id)
        log.info(`peer ${id} left (no advert for ${Math.round((now - entry.lastSeen) / 1000)} s)`)
        this.init.onLeave?.(id)
      }
    }
    this.prune(now)
    this.refusals.sweep()
    await this.publish()
    await this.saveKnownPeers()
    const node = this.node
    if (node === undefined || this.beats++ % PING_EVERY_BEATS !== 0) return
    await Promise.all([...this.peers].map(async ([id, { id: peer }]) => {
      if (node.getConnections(peer).length === 0) return
      const timed = deadline(PING_TIMEOUT_MS)
      try {
        const rtt = await node.services.ping.ping(peer, { signal: timed.signal })
        const entry = this.peers.get(id)
        if (entry !== undefined) entry.rttMs = rtt
      } catch {} finally {
        timed.done()
      }
    }))
  }

  /**
   * Forgets what has aged out: members never connected to whose adverts stopped (and mDNS peers
   * that stopped answering) after PEER_TIMEOUT_MS, and the dial state of whom nobody dials.
   */
  private prune (now: number): void {
    for (const [id, k] of this.known) {
      if (!k.connected && now - k.last > PEER_TIMEOUT_MS && !this.peers.has(id)) this.forget(id)
    }
    for (const [id, m] of this.mdnsPeers) {
      if (now - m.last > PEER_TIMEOUT_MS) {
        this.mdnsPeers.delete(id)
        if (!this.peers.has(id)) this.discoveredAt.delete(id)
        // not a member: what a failed dial left of it in libp2p's peer store goes too
        if (!this.known.has(id) && !this.peers.has(id)) this.forget(id)
      }
    }
    for (const key of this.dials.keys()) {
      if (!key.startsWith('bootstrap ') && !this.dialing.has(key) && !this.known.has(key) && !this.mdnsPeers.has(key)) this.dials.delete(key)
    }
    if (this.droppedRelayed > 0) {
      log.warn(`dropped ${this.droppedRelayed} adverts from members no connection, mDNS or bootstrap address vouches for: ${MAX_ADVERT_ONLY_PEERS} such members are listed already (is a member forging adverts?)`)
      this.droppedRelayed = 0
    }
  }

  /**
   * Dials bootstrap addresses and known-but-unconnected peers whose backoff has passed: first
   * those mDNS, a bootstrap address or a past connection vouches for, then those known only from
   * a relayed advert, as long as the dial budget lasts.
   */
  private async redial (): Promise<void> {
    const node = this.node
    if (node === undefined) return
    const now = Date.now()
    const jobs: Array<Promise<void>> = []
    for (const addr of this.init.bootstrap) {
      const id = this.bootstrapPeers.get(addr)
      if (id !== undefined && (id === this.peerId || node.getConnections(peerIdFromString(id)).length > 0)) continue
      jobs.push(this.tryDial(`bootstrap ${addr}`, () => multiaddr(addr), conn => { this.bootstrapPeers.set(addr, conn.remotePeer.toString()) }))
    }
    const vouched: string[] = [...this.mdnsPeers.keys()]
    const relayed: string[] = []
    for (const [id, k] of this.known) {
      if (k.relayed) relayed.push(id)
      else if (!k.connected || now - k.last < REJOIN_WINDOW_MS) vouched.push(id)
    }
    for (const id of new Set([...vouched.reverse(), ...relayed])) { // most recently seen first
      const peer = this.peers.get(id)?.id ?? peerIdFromString(id)
      if (node.getConnections(peer).length > 0) continue
      const since = this.discoveredAt.get(id) ?? now
      if (this.peerId > id && now - since < DIAL_GRACE_MS) continue // the smaller id dials first
      // Dial the addresses it advertised (they carry /p2p/<id>) when we have them: they outlive
      // libp2p's own address book, which forgets a peer that went away. And where mDNS finds it
      // now: those remembered from before a restart may be gone (another port, a new DHCP
      // lease). Advertised first, so that a forged mDNS answer cannot crowd them out.
      const addrs = this.known.get(id)?.addrs ?? []
      const found = this.mdnsPeers.get(id)?.addrs ?? []
      const seen = new Set(addrs.map(String))
      const all = [...addrs, ...found.filter(a => !seen.has(String(a)))]
      jobs.push(this.tryDial(id, () => all.length > 0 ? all : peer))
    }
    await Promise.all(jobs)
  }

  /**
   * Takes `n` address dials from the budget: DIAL_ADDRS_PER_SECOND, up to DIAL_BURST at once.
   * A member with more addresses than a burst is dialled once the budget is full, and the dials
   * after it wait until the budget is paid back.
   */
  private takeDialBudget (n: number): boolean {
    const now = Date.now()
    this.dialBudget = Math.min(DIAL_BURST, this.dialBudget + (now - this.dialBudgetAt) * DIAL_ADDRS_PER_SECOND / 1000)
    this.dialBudgetAt = now
    if (this.dialBudget < Math.min(n, DIAL_BURST)) return false
    this.dialBudget -= n
    return true
  }

  private async tryDial (key: string, target: () => Multiaddr | Multiaddr[] | PeerId, onConnect?: (conn: Connection) => void): Promise<void> {
    const node = this.node
    if (node === undefined || this.dialing.has(key)) return
    const state = this.dials.get(key) ?? { failures: 0, nextAttempt: 0, notMember: false }
    this.dials.set(key, state)
    if (Date.now() < state.nextAttempt) return
    // every list is at most MAX_ADVERT_ADDRS already (adverts, peers.json, mDNS): the budget is
    // charged for the addresses dialled, as libp2p dials at most ~25 of a longer one
    const wanted = target()
    const to = Array.isArray(wanted) ? wanted.slice(0, MAX_ADVERT_ADDRS) : wanted
    // a PeerId: libp2p dials the addresses identify gave it, most often one
    if (!this.takeDialBudget(Array.isArray(to) ? to.length : 1)) return // the next round tries again
    this.dialing.add(key)
    const dialing = deadline(DIAL_TIMEOUT_MS, this.stopping.signal)
    try {
      const conn = await node.dial(to, { signal: dialing.signal })
      state.failures = 0
      state.nextAttempt = 0
      onConnect?.(conn)
    } catch (err) {
      state.failures++
      const backoff = Math.min(REDIAL_MAX_MS, REDIAL_MIN_MS * 2 ** (state.failures - 1))
      state.nextAttempt = Date.now() + (state.notMember ? NOT_MEMBER_RETRY_MS : backoff)
      if (!this.stopping.signal.aborted) log.debug(`dial ${key} failed (${state.failures}x, next in ${Math.round((state.nextAttempt - Date.now()) / 1000)} s): ${(err as Error).message}`)
    } finally {
      dialing.done()
      this.dialing.delete(key)
    }
  }

  /**
   * Members this node was connected to before a restart are redialled at their last addresses
   * for REJOIN_WINDOW_MS after this start: a workstation that rebooted finds its mesh again by
   * itself. The file is written most recently seen first; past MAX_KNOWN_PEERS the rest is
   * dropped (and the file rewritten).
   */
  private async loadKnownPeers (): Promise<void> {
    if (this.init.peersFile === undefined) return
    try {
      const saved = JSON.parse(await readFile(this.init.peersFile, 'utf8')) as Record<string, unknown>
      const entries = Object.entries(saved)
      for (const [id, addrs] of entries.slice(0, MAX_KNOWN_PEERS).reverse()) {
        if (!Array.isArray(addrs) || !addrs.every(a => typeof a === 'string')) continue
        try { peerIdFromString(id) } catch { continue }
        this.known.set(id, { last: Date.now(), addrs: dialAddrs(parseAddrs(addrs.slice(0, MAX_ADVERT_ADDRS)), id), connected: true, relayed: false })
      }
      if (entries.length > MAX_KNOWN_PEERS) this.seenChanged = true
    } catch {}
  }

  /** Saves the members this node has been connected to, most recently seen first, at most MAX_KNOWN_PEERS. */
  private async saveKnownPeers (): Promise<void> {
    if (this.init.peersFile === undefined || !this.seenChanged) return
    this.seenChanged = false
    const connected = [...this.known].filter(([, k]) => k.connected)
    for (const [id] of connected.slice(0, Math.max(0, connected.length - MAX_KNOWN_PEERS))) this.known.delete(id)
    const out: Record<string, string[]> = {}
    for (const [id, k] of connected.slice(-MAX_KNOWN_PEERS).reverse()) out[id] = k.addrs.map(String)
    await writeFileAtomic(this.init.peersFile, JSON.stringify(out)).catch(() => {})
  }

  private onHandshakeFailure (f: HandshakeFailure): void {
    if (this.stopping.signal.aborted) return
    const who = f.remotePeer ?? f.remoteAddr
    if (f.error.name === 'UnexpectedPeerError') {
      // Noise decrypted the other end's identity, so it holds this swarm key: a member, only
      // not the one dialled. Its address is stale (DHCP gave it to another workstation) or this
      // host's own (a member's 127.0.0.1 reached this node itself). Marked a non-member, the
      // member dialled was not tried again for 5 minutes at any address.
      log.info(`${who} is not at ${f.remoteAddr} any more: another member answered there (${f.error.message})`)
      return
    }
    // Whoever connects repeats this at will (libp2p lets an address connect 100 times a
    // second): said once per address (its IP, not the port each connection comes from), then
    // counted (REFUSED_LOG_INTERVAL_MS).
    let ip: string | undefined
    try { ip = ipOf(multiaddr(f.remoteAddr)) } catch {}
    const key = `${f.direction === 'inbound' ? 'from' : 'to'} ${ip ?? f.remoteAddr}`
    const known = f.remotePeer === undefined || f.direction !== 'outbound' ? undefined : this.known.get(f.remotePeer)
    if (known !== undefined && !known.addrs.some(a => withoutPeerId(a) === withoutPeerId(f.remoteAddr))) {
      // A member's PeerId at an address it never advertised, as an mDNS answer anyone on the LAN
      // can send names it: the failure says nothing of the member. Marked a non-member, it was
      // not dialled for 5 minutes at its own addresses either.
      this.refusals.warn(key, `refused outbound connection to ${who} at ${f.remoteAddr}, an address it never advertised: the handshake failed, so the host there is not a member of swarm ${this.fingerprint} [GRID_ERR_NOT_MEMBER]: ${f.error.message}`)
      return
    }
    this.refusals.warn(key, `refused ${f.direction} connection ${f.direction === 'inbound' ? 'from' : 'to'} ${who}: the handshake failed, so it is not a member of swarm ${this.fingerprint} (it has no swarm key or another one) [GRID_ERR_NOT_MEMBER]: ${f.error.message}`)
    if (f.remotePeer !== undefined) {
      const state = this.dials.get(f.remotePeer) ?? { failures: 0, nextAttempt: 0, notMember: true }
      state.notMember = true
      this.dials.set(f.remotePeer, state)
    }
  }
}

/**
 * GRID_ERR_MESH_START for a mesh that could not listen, naming each address that failed once,
 * with its reason. libp2p's message lists them as `ADDR: STACK` after advice about its own
 * options, and Node's reason names the address again (`listen EADDRINUSE: address already in
 * use 0.0.0.0:4770`).
 */
function listenError (err: unknown, listen: string[]): GridError {
  const lines = (err as Error).message.split('\n')
  const failed: Array<{ addr: string, why: string }> = []
  for (const line of lines) {
    const m = /^\s*(\/\S+): (?:\w*Error: )?(.*)$/.exec(line)
    if (m === null) continue
    const sys = /^listen (E[A-Z]+): (.*?)(?: \S+:\d+)?$/.exec(m[2] as string)
    failed.push({ addr: m[1] as string, why: sys === null ? (m[2] as string) : `${sys[2] as string} (${sys[1] as string})` })
  }
  // another failure than libp2p's list: its message without stack lines
  const what = failed.length > 0
    ? failed.map(f => `${f.addr}: ${f.why}`).join('; ')
    : `${listen.join(', ')}: ${lines.filter(line => line.trim() !== '' && !/^\s+at /.test(line)).map(line => line.trim()).join('; ')}`
  const config = '"listen" in the config file (the addresses a grid build\'s own node listens on too)'
  const inUse = (err as { code?: string }).code === 'EADDRINUSE' || what.includes('EADDRINUSE')
  const ports = [...new Set(failed.map(f => /\/tcp\/(\d+)/.exec(f.addr)?.[1]).filter(p => p !== undefined))]
  const port = ports.length === 1 ? `port ${ports[0] as string}` : 'that port'
  return new GridError('GRID_ERR_MESH_START', `the mesh could not listen on ${what}`, {
    cause: err,
    hint: inUse
      ? `another program (another grid daemon?) uses ${port}: stop it, or pick another port: \`grid daemon --listen /ip4/0.0.0.0/tcp/0\` (any free one), or ${config}`
      : `fix the address: \`grid daemon --listen\`, or ${config}`
  })
}

const CONTROL_CHARS = new RegExp(CONTROL_CHAR.source, 'g')

/** Text from a peer with its control characters escaped (\x1b): no escape sequence of its reaches a terminal. */
function printable (text: string): string {
  return text.replace(CONTROL_CHARS, c => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`)
}

function parseAddrs (addrs: string[]): Multiaddr[] {
  return addrs.flatMap(a => { try { return [multiaddr(a)] } catch { return [] } })
}

/**
 * The addresses to dial `id` at: those naming another PeerId left out, /p2p/<id> added to the
 * rest; and, when it has others, none at an IP address of this host's own. A member listening on
 * all interfaces advertises 127.0.0.1 (and a docker0 or VPN address that other hosts have too):
 * once its LAN address failed (a partition, a cable pulled), libp2p went on to 127.0.0.1:4770,
 * reached this node itself, failed the handshake, and took the member for a non-member, not
 * dialled again for 5 minutes (NOT_MEMBER_RETRY_MS) by either side: the mesh stayed split.
 * Members that share this host (tests on loopback) advertise only such addresses, and keep them.
 */
function dialAddrs (addrs: Multiaddr[], id: string): Multiaddr[] {
  const named = addrs.flatMap(a => {
    const other = peerIdIn(a)
    if (other === undefined) return [a.encapsulate(`/p2p/${id}`)]
    return other === id ? [a] : []
  })
  const own = ownIps()
  const elsewhere = named.filter(a => !own.has(ipOf(a) ?? ''))
  return elsewhere.length > 0 ? elsewhere : named
}

/** This host's own IP addresses (every interface, loopback included). */
function ownIps (): Set<string> {
  return new Set(Object.values(networkInterfaces()).flatMap(list => (list ?? []).map(i => i.address)))
}

/** The address without its /p2p/<id>, to compare addresses given with and without one. */
function withoutPeerId (a: Multiaddr | string): string {
  const text = String(a)
  const at = text.indexOf('/p2p/')
  return at < 0 ? text : text.slice(0, at)
}

function ipOf (a: Multiaddr): string | undefined {
  return a.getComponents().find(c => c.name === 'ip4' || c.name === 'ip6')?.value
}

function peerIdIn (a: Multiaddr): string | undefined {
  return a.getComponents().findLast(c => c.name === 'p2p')?.value
}
