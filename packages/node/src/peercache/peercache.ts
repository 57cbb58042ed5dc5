/**
 * The office-wide cache. On a local miss the node asks its peers (one batched lookup per peer,
 * over a persistent stream, with a short deadline: a slow peer is a miss, never a stall), takes
 * the first claim that is signed by a trusted member, fetches the body from that peer (a small
 * one comes with the claim), checks sha256 = OutputID, stores it locally (so popular entries
 * spread) and serves it to cmd/go.
 *
 * Trust (docs/cache.md, "Shared cache"):
 *  - `trust: 'mesh'` accepts claims signed by any member not marked untrusted; `'self'` asks
 *    no peer at all.
 *  - `verifyPercent`: that share of the claims peers offer is not fetched; the get is answered
 *    with a miss, cmd/go compiles, and its put is compared with the claim. A mismatch marks the
 *    producer untrusted (its claims are refused from then on) and is logged as an error. Only
 *    when the action was a compile of the build (its `-buildid`): cmd/go's other entries may
 *    differ from run to run (a test's result holds its elapsed time), and such a mismatch is
 *    counted `unverifiable`, no one distrusted.
 *  - A peer that serves bytes that do not hash to the OutputID, or a body of another length than
 *    its claim's size (the size is not signed), is marked untrusted too.
 *
 * Fetching: the bodies being fetched, from every peer, hold at most `fetchBudgetBytes` of memory
 * (FETCH_BUDGET_BYTES; one larger body alone); a fetch that would go over waits its turn, in
 * order, as long as its deadline, and is a miss after that.
 *
 * Serving: a stream has at most MAX_ANSWERS_PER_STREAM requests answered at once (the rest wait,
 * in order); the bodies being served, over every stream and connection, hold at most
 * `serveBudgetBytes` of memory (SERVE_BUDGET_BYTES; one larger body alone), a fetch that would go
 * over waiting its turn, in order; a member that resets its stream or goes away mid-reply ends
 * that stream only, and gives back its place and its bytes, and so does one that does not take a
 * reply within `serveWriteMs` (SERVE_WRITE_MS).
 *
 * GRID_TEST_FAULT (tests only) makes this node misbehave as a server: `serve-bad-bytes` flips a
 * byte of every body it serves; `serve-poisoned` answers lookups with a claim for another
 * entry's output, signed by itself.
 */
import { statSync } from 'node:fs'
import type { Connection, Libp2p, PrivateKey, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import {
  CHUNK_BYTES, GridError, INLINE_BODY_BYTES, INLINE_BUDGET_BYTES, MAX_BODY_BYTES, MAX_PEER_MESSAGE_BYTES, PACKING, claimBytes, foundTime,
  validatePeerCacheMessage, type Claim, type Found, type PeerCacheMessage
} from '@grid/protocol'
import { Waits, type BuildRecord } from '../builds/index.js'
import { hex, type Cache, type CacheHit } from '../cache/index.js'
import { signer, verifier, type Sign, type Verify } from '../identity/ed25519.js'
import { logger } from '../log.js'
import { PACKED_SHARE, pack, unpack } from '../pack.js'
import { deadline } from '../signals.js'
import { ByteBudget, type Release } from '../budget.js'
import { Channel, packr } from './channel.js'
import {
  BATCH_WINDOW_MS, CACHE_PROTOCOL, FETCH_BASE_MS, FETCH_BUDGET_BYTES, FETCH_LINK_MARGIN, FETCH_MIN_BYTES_PER_MS, LOOKUP_TIMEOUT_MS, MAX_ANSWERS_PER_STREAM, MAX_INBOUND_STREAMS,
  SERVE_BUDGET_BYTES, SERVE_WRITE_MS, STREAM_BUFFER_BYTES
} from './constants.js'

const log = logger('grid:peercache')

export type Trust = 'mesh' | 'self'

export interface PeerCacheInit {
  libp2p: Libp2p
  cache: Cache
  privateKey: PrivateKey
  selfId: string
  trust: Trust
  verifyPercent: number
  /** peers to ask: connected members */
  peers: () => string[]
  isKnownMember: (id: string) => boolean
  /** whether a peer handles CACHE_PROTOCOL, as identify said (undefined: not known yet): one of another grid version is not asked */
  speaks?: (peerId: string) => boolean | undefined
  /**
   * this node's toolchain (toolchainLabel: `-V=full` and canary), signed into its claims; '' until
   * probed. Only claims that name it are taken, and own entries are served under it.
   */
  toolchain: () => string
  /**
   * the stamp (compilerStamp) of the compiler file `toolchain` was probed from, undefined until
   * probed: an own entry put before then names its build's compiler's stamp, and is served only
   * when they match
   */
  compilerStamp?: () => string | undefined
  /**
   * What compiling an entry here instead is expected to take, in ms, for a body of that many
   * bytes; with `link`, a body whose bytes alone would take longer over its peer's link is not
   * fetched, and cmd/go compiles it (`slowerToFetch`). Absent: every claimed body is fetched.
   */
  compileMs?: (bytes: number) => number
  /**
   * A peer's link in ms per byte as last timed (undefined: never), a way to have it timed in the
   * background, and whether its bodies go packed (a slow link, ../pack.ts; absent: never).
   */
  link?: { msPerByte: (peer: string) => number | undefined, measure: (peer: string) => void, packs?: (peer: string) => boolean }
  /** Bytes of bodies held at once to serve them, node-wide (default SERVE_BUDGET_BYTES; tests set a small one). */
  serveBudgetBytes?: number
  /** Bytes of bodies being fetched at once, node-wide (default FETCH_BUDGET_BYTES; tests set a small one). */
  fetchBudgetBytes?: number
  /** How long a member has to take each reply (default SERVE_WRITE_MS; tests set a short one). */
  serveWriteMs?: number
}

interface Batch { keys: Uint8Array[], waiters: Array<(claim: Found | null) => void>, timer: NodeJS.Timeout }

/** waitMs: the whole wait (lookup and fetch); lookupMs: the lookup alone, when peers were asked. */
export interface PeerHit { hit: CacheHit, peer: string, bytes: number, waitMs: number, lookupMs: number }
export type PeerMiss = { miss: 'no-peers' | 'not-found' | 'verify-sample' | 'slow-link' | 'rejected' | 'fetch-failed', waitMs: number, lookupMs?: number }
/** A hit or miss before its wait has ended. */
type Unwaited<T> = T extends unknown ? Omit<T, 'waitMs'> : never

/**
 * Whether a body of `bytes` is predicted to come slower over a link of `msPerByte` than compiling
 * it here takes (`compileMs`, for an entry of that size). A member on 10 Mbit/s Wi-Fi whose builds
 * fetched every entry from a peer's warm cache took 101 s for std against 72 s alone
 * (docs/mesh.md, "Measured in the lab"). The bytes alone are weighed, not the bodies already on
 * their way: cmd/go's gets come in bursts, and on a gigabit link a burst's queue would turn
 * away bodies that still come sooner than a busy host compiles them.
 */
export function slowerToFetch (bytes: number, msPerByte: number, compileMs: number): boolean {
  return bytes * msPerByte > compileMs
}

/** What a failed stream operation gave: an Error, or a close event (onDrain rejects with one) and its error. */
function asError (why: unknown): Error {
  if (why instanceof Error) return why
  const error = (why as { error?: unknown } | undefined)?.error
  if (error instanceof Error) return error
  const type = (why as { type?: unknown } | undefined)?.type
  return new Error(type === 'close' ? 'the stream closed' : String(why))
}

/** How long fetching a body of `bytes` over a link timed at `msPerByte` (0: never timed) may take. */
function fetchDeadline (bytes: number, msPerByte = 0): number {
  return FETCH_BASE_MS + Math.max(bytes / FETCH_MIN_BYTES_PER_MS, FETCH_LINK_MARGIN * bytes * msPerByte)
}

export class PeerCache {
  private readonly init: PeerCacheInit
  private readonly channels = new Map<string, Promise<Channel>>()
  private readonly batches = new Map<string, Batch>()
  /** producer PeerId → the check of its signatures on claims */
  private readonly checks = new Map<string, Verify>()
  private readonly sign: Sign
  readonly untrusted = new Map<string, string>()
  /** ActionID hex → the claim we did not fetch, to compare with cmd/go's put */
  private readonly sampled = new Map<string, { claim: Claim, peer: string, build: BuildRecord | undefined }>()
  private readonly fault = process.env.GRID_TEST_FAULT ?? ''
  private lastServed: Claim | undefined
  readonly served = { lookups: 0, claims: 0, bodies: 0, bytes: 0 }
  /** The memory of bodies being served, over every stream and connection (`inUse`, `peak`, `waiting`). */
  readonly serveBudget: ByteBudget
  /** The memory of bodies being fetched, from every peer (`inUse`, `peak`, `waiting`). */
  readonly fetchBudget: ByteBudget

  constructor (init: PeerCacheInit) {
    this.init = init
    this.serveBudget = new ByteBudget(init.serveBudgetBytes ?? SERVE_BUDGET_BYTES)
    this.fetchBudget = new ByteBudget(init.fetchBudgetBytes ?? FETCH_BUDGET_BYTES)
    this.sign = signer(init.privateKey)
  }

  async start (): Promise<void> {
    await this.init.libp2p.handle(CACHE_PROTOCOL, (stream: Stream, connection: Connection) => {
      void this.serve(stream, connection.remotePeer.toString())
    }, { maxInboundStreams: MAX_INBOUND_STREAMS })
  }

  async stop (): Promise<void> {
    for (const ch of this.channels.values()) void ch.then(c => c.close(), () => {})
    this.channels.clear()
    await this.init.libp2p.unhandle(CACHE_PROTOCOL).catch(() => {})
  }

  /** `peer` left the mesh: its stream goes (a lookup still on it is a miss). Whether it is trusted stays. */
  forget (peer: string): void {
    const channel = this.channels.get(peer)
    if (channel === undefined) return
    this.channels.delete(peer)
    void channel.then(c => { c.close() }, () => {})
  }

  /** Whether find would ask any peer now. */
  mayAsk (): boolean {
    return this.init.trust !== 'self' && this.askable().length > 0
  }

  /** The peers a lookup goes to: connected members not untrusted, and not of another grid version. */
  private askable (): string[] {
    return this.init.peers().filter(p => !this.untrusted.has(p) && this.init.speaks?.(p) !== false)
  }

  /** Why `peer` is asked nothing whatever it holds: another grid version's cache protocol; or undefined. */
  incompatibleWith (peer: string): string | undefined {
    return this.init.speaks?.(peer) === false ? `it does not speak ${CACHE_PROTOCOL}` : undefined
  }

  /**
   * Asks the peers for an ActionID; on success the entry is stored locally and returned. The wait
   * is one of the build's (`build.peerWaits`), which sums and joins them.
   */
  async find (actionId: Uint8Array, build: BuildRecord | undefined): Promise<PeerHit | PeerMiss> {
    if (this.init.trust === 'self' || this.init.toolchain() === '') return { miss: 'no-peers', waitMs: 0 }
    const peers = this.askable()
    if (peers.length === 0) return { miss: 'no-peers', waitMs: 0 }
    const wait = (build?.peerWaits ?? new Waits()).begin()
    try {
      return { ...await this.ask(peers, actionId, build, wait.elapsed), waitMs: wait.end() }
    } finally {
      wait.end()
    }
  }

  /** find's lookup and fetch; `waited`: ms since the get began. */
  private async ask (peers: string[], actionId: Uint8Array, build: BuildRecord | undefined, waited: () => number): Promise<Unwaited<PeerHit | PeerMiss>> {
    const found = await this.firstClaim(peers, actionId, build)
    const lookupMs = waited()
    if (found === undefined) return { miss: 'not-found', lookupMs }
    const { claim, peer } = found
    if (this.init.verifyPercent > 0 && Math.random() * 100 < this.init.verifyPercent) {
      this.sampled.set(hex(actionId), { claim, peer, build })
      if (build !== undefined) build.stats.cache.peer.verify.sampled++
      return { miss: 'verify-sample', lookupMs }
    }
    if (this.slowFrom(peer, claim)) {
      if (build !== undefined) build.stats.cache.peer.slowLink = (build.stats.cache.peer.slowLink ?? 0) + 1
      return { miss: 'slow-link', lookupMs }
    }
    const output = hex(claim.outputId).slice(0, 16)
    const time = foundTime(claim, Date.now()) // by our clock, not the peer's
    let release: Release | undefined
    try {
      let body = claim.body
      if (body === undefined) {
        const msPerByte = this.linkOf(peer)
        // its chunks are held until the body is stored, and the packed ones too while it unpacks;
        // decided once: a probe that ends meanwhile must not have it asked for packed uncounted
        const packed = this.packs(peer)
        const bytes = packed ? 2 * claim.size : claim.size
        const wait = Math.ceil(fetchDeadline(claim.size, msPerByte))
        const waiting = deadline(wait)
        try {
          release = await this.fetchBudget.take(bytes, waiting.signal).catch((err: unknown) => {
            throw new GridError('GRID_ERR_TIMEOUT', `no room to fetch ${output}… within ${wait} ms (${this.fetchBudget.inUse} bytes being fetched)`, { cause: err, transient: true })
          })
        } finally {
          waiting.done()
        }
        // the bodies being fetched besides this one, which may be ahead of it in the peer's queue
        body = await this.fetch(peer, claim, packed, msPerByte, this.fetchBudget.inUse - bytes)
      }
      // the size is not signed: a body of another length is a wrong body, as one of other bytes is
      if (body.length !== claim.size) throw new GridError('GRID_ERR_CACHE_CORRUPT', `served ${body.length} bytes for ${output}…, whose claim says ${claim.size}`)
      const stored = await this.init.cache.putBytes(actionId, body, { producer: claim.producer, sig: claim.sig, toolchain: claim.toolchain, servedBy: peer, time }, claim.outputId, build?.pinned)
        .catch((err: Error & { code?: string }) => {
          if (err.code === 'GRID_ERR_CACHE_CORRUPT') throw new GridError('GRID_ERR_CACHE_CORRUPT', `served bytes for ${output}… that do not hash to it`, { cause: err })
          throw err
        })
      const hit: CacheHit = {
        outputId: claim.outputId, size: body.length, time, diskPath: stored.diskPath,
        producer: claim.producer, sig: claim.sig, toolchain: claim.toolchain, servedBy: peer, shared: true
      }
      return { hit, peer, bytes: body.length, lookupMs }
    } catch (err) {
      // a body that is not what the claim names (its bytes or its size): the peer serving it is untrusted
      if ((err as { code?: string }).code === 'GRID_ERR_CACHE_CORRUPT') {
        this.distrust(peer, (err as Error).message)
        if (build !== undefined) build.stats.cache.peer.rejected.badHash++
        return { miss: 'rejected', lookupMs }
      }
      log.debug(`fetch of ${hex(claim.outputId).slice(0, 16)}… from ${peer} failed: ${(err as Error).message}`)
      return { miss: 'fetch-failed', lookupMs }
    } finally {
      release?.()
    }
  }

  /** Whether the body of `claim` would come slower from `peer` than compiling it here (`slowerToFetch`). */
  private slowFrom (peer: string, claim: Found): boolean {
    if (claim.body !== undefined || this.init.compileMs === undefined) return false
    const msPerByte = this.linkOf(peer)
    // over a slow link the body comes packed (../pack.ts): fewer bytes, as predicted for an archive
    const bytes = this.packs(peer) ? PACKED_SHARE * claim.size : claim.size
    return msPerByte !== undefined && slowerToFetch(bytes, msPerByte, this.init.compileMs(claim.size))
  }

  /**
   * `peer`'s link in ms per byte as last timed, undefined if never (or no link is known here).
   * A link not timed lately is timed again in the background; one never timed is fetched from
   * meanwhile.
   */
  private linkOf (peer: string): number | undefined {
    const link = this.init.link
    if (link === undefined) return undefined
    link.measure(peer)
    return link.msPerByte(peer)
  }

  /** Whether bodies from `peer` go packed: its link was timed slow (../pack.ts). */
  private packs (peer: string): boolean {
    return this.init.link?.packs?.(peer) ?? false
  }

  /**
   * cmd/go put an entry: if we held back a claim for it (--verify), compare. Only a compile's
   * output is deterministic: a mismatch on any other action (a test's result holds its elapsed
   * time, `ok pkg 0.123s`) says nothing of its producer, and is counted `unverifiable`. The
   * sample's build tells compiles (the shim hands each to the node with its `-buildid`).
   */
  checkPut (actionId: Uint8Array, outputId: Uint8Array): void {
    const key = hex(actionId)
    const sample = this.sampled.get(key)
    if (sample === undefined) return
    this.sampled.delete(key)
    const stats = sample.build?.stats.cache.peer.verify
    if (Buffer.from(sample.claim.outputId).equals(Buffer.from(outputId))) {
      if (stats !== undefined) stats.confirmed++
      return
    }
    if (sample.build?.sources.compiled(actionId) !== true) {
      if (stats !== undefined) stats.unverifiable = (stats.unverifiable ?? 0) + 1
      log.debug(`a sampled claim from ${sample.claim.producer} for action ${key.slice(0, 16)}…, not a compile here, differs from the local put: unverifiable`)
      return
    }
    if (stats !== undefined) stats.mismatched++
    log.error(`VERIFY FAILED: peer ${sample.claim.producer} claims action ${key.slice(0, 16)}… produces ${hex(sample.claim.outputId).slice(0, 16)}…, ` +
      `but compiling it here gave ${hex(outputId).slice(0, 16)}… (served by ${sample.peer}). Its entries are no longer accepted.`)
    this.distrust(sample.claim.producer, `a verified claim did not match a local compile (action ${key.slice(0, 16)}…)`)
  }

  /** Forget sampled claims of a build that ended. */
  endBuild (build: BuildRecord): void {
    for (const [k, v] of this.sampled) if (v.build === build) this.sampled.delete(k)
  }

  distrust (peer: string, why: string): void {
    if (!this.untrusted.has(peer)) log.error(`peer ${peer} is now untrusted: ${why}`)
    this.untrusted.set(peer, why)
  }

  /**
   * The first usable claim of the peers' answers. One whose body would come slower over its
   * peer's link than a compile here (`slowFrom`) is kept aside while the other peers answer: a
   * member on Wi-Fi that answers first must not turn away the same entry on a desk's cable.
   */
  private async firstClaim (peers: string[], actionId: Uint8Array, build: BuildRecord | undefined): Promise<{ claim: Found, peer: string } | undefined> {
    return await new Promise(resolve => {
      let open = peers.length
      let done = false
      let slow: { claim: Found, peer: string } | undefined
      const timer = setTimeout(() => finish(slow), LOOKUP_TIMEOUT_MS)
      const finish = (result: { claim: Found, peer: string } | undefined): void => {
        if (done) return
        done = true
        clearTimeout(timer)
        resolve(result)
      }
      for (const peer of peers) {
        this.lookup(peer, actionId).then(async claim => {
          if (claim !== null && !done) {
            const own = this.init.toolchain()
            if (claim.toolchain !== own) {
              // another compiler's entry (another canary, or a node of another grid version):
              // not a lie, and not ours to use; cmd/go's ActionID does not tell them apart
              if (build !== undefined) build.stats.cache.peer.rejected.toolchain = (build.stats.cache.peer.rejected.toolchain ?? 0) + 1
              log.debug(`a claim from ${peer} is of the toolchain "${claim.toolchain.slice(0, 100)}", not this node's "${own}"`)
            } else {
              const why = await this.refuse(claim, actionId)
              if (why === undefined && !this.slowFrom(peer, claim)) { finish({ claim, peer }); return }
              if (why === undefined) slow ??= { claim, peer }
              else {
                if (build !== undefined) build.stats.cache.peer.rejected.badClaim++
                log.warn(`refused a claim from ${peer}: ${why}`)
              }
            }
          }
          if (--open === 0) finish(slow)
        }, () => { if (--open === 0) finish(slow) })
      }
    })
  }

  /** Why a claim must not be used, or undefined if it may. */
  private async refuse (claim: Claim, actionId: Uint8Array): Promise<string | undefined> {
    if (!Buffer.from(claim.actionId).equals(Buffer.from(actionId))) return 'it answers another action'
    if (this.untrusted.has(claim.producer)) return `its producer ${claim.producer} is untrusted`
    if (!this.init.isKnownMember(claim.producer)) return `its producer ${claim.producer} is not a member`
    try {
      const check = this.producerCheck(claim.producer)
      if (check === undefined || !(await check(claimBytes(claim.actionId, claim.outputId, claim.toolchain), claim.sig))) return 'bad signature'
    } catch {
      return 'bad signature'
    }
    return undefined
  }

  /** A producer's signature check, made from its PeerId once (members are few; a bad id throws). */
  private producerCheck (producer: string): Verify | undefined {
    let check = this.checks.get(producer)
    if (check === undefined) {
      const key = peerIdFromString(producer).publicKey
      if (key === undefined) return undefined
      check = verifier(key)
      this.checks.set(producer, check)
    }
    return check
  }

  /** One key of a batched lookup to one peer; null when the peer does not have it or fails. */
  private async lookup (peer: string, actionId: Uint8Array): Promise<Found | null> {
    return await new Promise(resolve => {
      let batch = this.batches.get(peer)
      if (batch === undefined) {
        batch = { keys: [], waiters: [], timer: setTimeout(() => { void this.flush(peer) }, BATCH_WINDOW_MS) }
        this.batches.set(peer, batch)
      }
      batch.keys.push(actionId)
      batch.waiters.push(resolve)
      if (batch.keys.length >= 256) { clearTimeout(batch.timer); void this.flush(peer) }
    })
  }

  private async flush (peer: string): Promise<void> {
    const batch = this.batches.get(peer)
    if (batch === undefined) return
    this.batches.delete(peer)
    const answer = (claims: Array<Found | null>): void => { batch.waiters.forEach((w, i) => w(claims[i] ?? null)) }
    let channel: Channel
    try {
      channel = await this.channel(peer)
    } catch {
      answer([])
      return
    }
    const cancel = channel.send({ type: 'lookup', keys: batch.keys }, msg => {
      clearTimeout(timer)
      answer(msg instanceof Error || msg.type !== 'found' ? [] : msg.entries)
      return true
    })
    const timer = setTimeout(() => { cancel(); answer([]) }, LOOKUP_TIMEOUT_MS)
  }

  /**
   * `msPerByte`: the peer's link as last timed, which may allow a slow link more time than the
   * floor rate; over a slow one (`askPacked`) the body is asked for packed (../pack.ts), and a
   * peer may still send it as it is. Bytes that do not unpack to at most the claim's size are a
   * wrong body, and so is a body sent packed when it was not asked for: the fetch budget counted
   * the body alone, and its packed bytes would be held beside it while it unpacked.
   */
  private async fetch (peer: string, claim: Claim, askPacked: boolean, msPerByte = 0, ahead = 0): Promise<Buffer> {
    const channel = await this.channel(peer)
    const deadline = fetchDeadline(claim.size, msPerByte)
    const output = hex(claim.outputId).slice(0, 16)
    const started = performance.now()
    const got = await new Promise<{ body: Buffer, packed: boolean }>((resolve, reject) => {
      const chunks: Uint8Array[] = []
      let bytes = 0
      let timer: NodeJS.Timeout | undefined
      // The body keeps to the pace its deadline was sized by, from the start: its first bytes
      // within FETCH_BASE_MS and the time the bodies being fetched besides it (`ahead`, which
      // may be before it in the peer's queue) take at the deadline's rate, then the claim's size
      // at that rate. A steady transfer with nothing ahead is held to its deadline; a member
      // that claims a large body and then sends nothing, or trickles it, is cut as soon as it
      // falls behind, and gives back the room its claim took of the fetch budget.
      const msPerByteDue = claim.size === 0 ? 0 : (deadline - FETCH_BASE_MS) / claim.size
      const pace = (): void => {
        clearTimeout(timer)
        const due = started + FETCH_BASE_MS + (Math.max(0, ahead) + bytes) * msPerByteDue
        timer = setTimeout(() => {
          cancel()
          reject(new GridError('GRID_ERR_TIMEOUT', `fetch of ${output}… from ${peer} fell behind: ${bytes} of ${claim.size} bytes after ${Math.round(performance.now() - started)} ms (${Math.round(deadline)} ms for all of it)`, { transient: true }))
        }, Math.max(0, due - performance.now()))
      }
      let packed: boolean | undefined // as the first chunk says; every chunk must say the same
      const cancel = channel.send({ type: 'fetch', outputId: claim.outputId, ...(askPacked ? { pack: PACKING } : {}) }, msg => {
        if (msg instanceof Error) { clearTimeout(timer); reject(msg); return true }
        if (msg.type === 'chunk') {
          bytes += msg.data.length
          packed ??= msg.packed === PACKING
          const wrong = bytes > claim.size || bytes > MAX_BODY_BYTES
            ? `served more than the ${claim.size} bytes the claim for ${output}… says`
            : packed !== (msg.packed === PACKING) ? `served ${output}… in chunks packed and not`
              : packed && !askPacked ? `served ${output}… packed, which was not asked for` : undefined
          if (wrong !== undefined) { clearTimeout(timer); reject(new GridError('GRID_ERR_CACHE_CORRUPT', wrong)); return true }
          chunks.push(msg.data)
          if (!msg.last) { pace(); return false }
          clearTimeout(timer)
          resolve({ body: Buffer.concat(chunks), packed })
          return true
        }
        clearTimeout(timer)
        reject(new GridError('GRID_ERR_CACHE_MISSING_BLOB', `${peer} no longer has the body (${msg.type})`, { transient: true }))
        return true
      })
      pace()
    })
    if (!got.packed) return got.body
    return await unpack(got.body, claim.size, `the body served for ${output}…`).catch((err: Error) => {
      throw new GridError('GRID_ERR_CACHE_CORRUPT', err.message, { cause: err })
    })
  }

  private async channel (peer: string): Promise<Channel> {
    let pending = this.channels.get(peer)
    if (pending !== undefined) {
      const ch = await pending.catch(() => undefined)
      if (ch !== undefined && ch.closed === undefined) return ch
      this.channels.delete(peer)
    }
    const dialling = deadline(LOOKUP_TIMEOUT_MS * 4)
    pending = this.init.libp2p.dialProtocol(peerIdFromString(peer), CACHE_PROTOCOL, { signal: dialling.signal })
      .then(stream => new Channel(stream, peer))
      .finally(() => { dialling.done() })
    this.channels.set(peer, pending)
    pending.catch(() => this.channels.delete(peer))
    return await pending
  }

  /**
   * Serves one inbound stream: lookups from our index, bodies verified on the way out. At most
   * MAX_ANSWERS_PER_STREAM requests are answered at once; the next message is read when one is
   * done, so requests wait their turn in order and a member cannot queue requests without end.
   * The bodies themselves wait for `serveBudget`, node-wide. Replies go out one at a time; the
   * first that cannot be written (the member reset the stream or went away) ends the stream:
   * logged, never thrown. A stream that closes or resets, however noticed, cancels its answers'
   * waits for the budget (`gone`), so a member gone away keeps no place in the queue.
   */
  private async serve (stream: Stream, from: string): Promise<void> {
    const lp = lpStream(stream, { maxDataLength: MAX_PEER_MESSAGE_BYTES, maxBufferSize: STREAM_BUFFER_BYTES })
    const gone = new AbortController()
    const onClose = (): void => { gone.abort(new GridError('GRID_ERR_CANCELLED', `the cache stream from ${from} closed`)) }
    stream.addEventListener('close', onClose, { once: true })
    let ended: Error | undefined
    const end = (why: unknown): Error => {
      if (ended === undefined) {
        ended = asError(why)
        if ((ended as { code?: string }).code === 'GRID_ERR_MESSAGE_INVALID') log.warn(`closing a cache stream: ${ended.message}`)
        else log.debug(`cache stream from ${from} ended: ${ended.message}`)
        stream.abort(ended)
        gone.abort(ended)
      }
      return ended
    }
    let writing: Promise<void> = Promise.resolve()
    const reply = async (msg: PeerCacheMessage): Promise<void> => {
      const write = writing.then(async () => {
        if (ended !== undefined) throw ended
        const ms = this.init.serveWriteMs ?? SERVE_WRITE_MS
        const taken = deadline(ms, gone.signal)
        try {
          await lp.write(packr.pack(msg), { signal: taken.signal }).catch((err: unknown) => {
            throw end(taken.signal.aborted && !gone.signal.aborted ? new GridError('GRID_ERR_CANCELLED', `${from} did not take a reply within ${ms} ms`) : err)
          })
        } finally {
          taken.done()
        }
      })
      writing = write.catch(() => {}) // the next reply checks `ended`
      await write
    }
    let answering = 0
    let slotFree: (() => void) | undefined
    try {
      for (;;) {
        while (answering >= MAX_ANSWERS_PER_STREAM) await new Promise<void>(resolve => { slotFree = resolve })
        const msg = validatePeerCacheMessage(packr.unpack((await lp.read()).subarray()), from)
        answering++
        void this.answer(msg, reply, gone.signal)
          .catch(async (err: unknown) => {
            if (ended === undefined) await reply({ type: 'fail', id: msg.id, code: 'GRID_ERR_INTERNAL', message: asError(err).message })
          })
          .catch(() => {}) // the stream ended: logged by end()
          .finally(() => { answering--; slotFree?.(); slotFree = undefined })
      }
    } catch (err) {
      end(err)
    } finally {
      stream.removeEventListener('close', onClose)
    }
  }

  /** `gone`: the stream ended; a wait for the budget stops, and what was taken is given back. */
  private async answer (msg: PeerCacheMessage, reply: (m: PeerCacheMessage) => Promise<void>, gone: AbortSignal): Promise<void> {
    if (msg.type === 'lookup') {
      this.served.lookups++
      const entries: Array<Found | null> = await Promise.all(msg.keys.map(async key => await this.claimFor(key)))
      const release = await this.inline(entries)
      try {
        await reply({ type: 'found', id: msg.id, entries })
      } finally {
        release?.()
      }
      return
    }
    if (msg.type === 'fetch') {
      const outputHex = hex(msg.outputId)
      // Synchronous, so that the budget is asked in the order the fetches were (a stat on the
      // thread pool finishes in any order): answers start in the order asked.
      let size: number | undefined
      try { size = statSync(this.init.cache.blobPath(outputHex)).size } catch {}
      if (size === undefined) { await reply({ type: 'gone', id: msg.id }); return }
      // the whole body is held while it is sent, and its packed copy too when the asker wants it packed
      const release = await this.serveBudget.take(msg.pack === PACKING ? 2 * size : size, gone)
      try {
        const body = await this.init.cache.readVerified(outputHex)
        if (body === undefined) { await reply({ type: 'gone', id: msg.id }); return }
        this.serving(body)
        // the asker measured the link slow (../pack.ts): the body goes packed, if that makes it smaller
        const packed = msg.pack === PACKING ? await pack(body) : undefined
        const data = packed ?? body
        for (let off = 0; off < data.length || off === 0; off += CHUNK_BYTES) {
          const last = off + CHUNK_BYTES >= data.length
          await reply({ type: 'chunk', id: msg.id, data: data.subarray(off, off + CHUNK_BYTES), last, ...(packed !== undefined ? { packed: PACKING } : {}) })
          if (last) break
        }
      } finally {
        release()
      }
      return
    }
    await reply({ type: 'fail', id: msg.id, code: 'GRID_ERR_MESSAGE_INVALID', message: `${msg.type} is a reply` })
  }

  /**
   * Puts the bodies of small entries into a lookup reply, within the reply's budget and what
   * `serveBudget` has free now, even ahead of fetches waiting for it: a lookup never waits for
   * memory (with no room its claims go without the bodies, which are fetched as big ones are). The release of what was taken, if anything.
   */
  private async inline (entries: Array<Found | null>): Promise<Release | undefined> {
    let budget = INLINE_BUDGET_BYTES
    const small: Found[] = []
    for (const c of entries) {
      if (c === null || c.size > INLINE_BODY_BYTES || c.size > budget) continue
      budget -= c.size
      small.push(c)
    }
    if (small.length === 0) return undefined
    const release = this.serveBudget.tryTake(INLINE_BUDGET_BYTES - budget)
    if (release === undefined) return undefined
    try {
      await this.readInline(small)
    } catch (err) {
      release()
      throw err
    }
    return release
  }

  private async readInline (small: Found[]): Promise<void> {
    await Promise.all(small.map(async c => {
      const body = await this.init.cache.readVerified(hex(c.outputId))
      if (body === undefined || body.length !== c.size) return // fetched (or found gone) as a big one would be
      c.body = this.serving(body)
    }))
  }

  /** Counts a body on its way to a peer (and spoils it under the serve-bad-bytes fault). */
  private serving (body: Buffer): Buffer {
    if (this.fault === 'serve-bad-bytes' && body.length > 0) body[body.length >> 1] = (body[body.length >> 1] as number) ^ 0xff
    this.served.bodies++
    this.served.bytes += body.length
    return body
  }

  private async claimFor (actionId: Uint8Array): Promise<Found | null> {
    const hit = await this.init.cache.get(actionId)
    if (hit === undefined || hit === 'corrupt') return null
    let claim: Claim
    if (hit.producer === this.init.selfId || hit.sig === undefined || hit.toolchain === undefined) {
      if (hit.producer !== this.init.selfId) return null // an unsigned entry of someone else: not ours to vouch for
      const toolchain = this.init.toolchain()
      // Only what this node's own compiler made, as far as it knows: not the entry of a build
      // with another compiler, nor one put under another toolchain (before Go changed here).
      if (!hit.shared || toolchain === '' || (hit.toolchain !== undefined && hit.toolchain !== toolchain)) return null
      // put before the node knew its compiler: only if the build's compiler is the file it probed since
      if (hit.toolchain === undefined && hit.compiler !== undefined && hit.compiler !== this.init.compilerStamp?.()) return null
      claim = { actionId, outputId: hit.outputId, size: hit.size, time: hit.time, producer: this.init.selfId, toolchain, sig: await this.sign(claimBytes(actionId, hit.outputId, toolchain)) }
    } else {
      claim = { actionId, outputId: hit.outputId, size: hit.size, time: hit.time, producer: hit.producer, toolchain: hit.toolchain, sig: hit.sig }
    }
    if (this.fault === 'serve-poisoned') {
      const previous = this.lastServed
      this.lastServed = claim
      if (previous !== undefined && !Buffer.from(previous.outputId).equals(Buffer.from(claim.outputId))) {
        claim = { ...claim, outputId: previous.outputId, size: previous.size, producer: this.init.selfId, toolchain: this.init.toolchain() }
        claim.sig = await this.sign(claimBytes(actionId, claim.outputId, claim.toolchain))
      }
    }
    this.served.claims++
    return { ...claim, age: Math.max(0, Date.now() - hit.time) } // our clock's time, as an age
  }
}
