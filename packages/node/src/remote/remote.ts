/**
 * Requester side of remote compiles, the transport half: turns a compile into a task, knows
 * which peers can take one (best first), and runs one attempt on one peer, returning the
 * outputs in memory. Whether to ship a compile, and racing overdue attempts, is the scheduler's
 * (packages/node/src/scheduler); writing the winner's outputs too. Any failure (refusal, error,
 * timeout, a peer that vanishes) is a reason, never an exception: a peer costs time, never
 * correctness.
 *
 * Peers are eligible when their advert accepts work, has a slot free for us (peer-slots.ts),
 * and shows the same compiler, canary and GOEXPERIMENT as ours; a peer that failed recently is
 * skipped for a while. The fastest first: each peer's speed is a moving average of its
 * attempts' wall time over their expected compile time.
 *
 * Nothing a peer says is taken on its word: a refusal is "busy" only in the worker's own form
 * and place (BUSY), and then the peer counts as full until its next advert (peer-slots.ts); one
 * whose refusals keep contradicting its adverts, whose `need` is not a set of the task's inputs,
 * whose compile time is impossible, or whose failure a clean local compile disproves is set
 * aside like any failing peer. Nor is what it sends held without bound: its answers are read
 * within a node-wide budget (`reading`, metered.ts), an archive that came packed is unpacked
 * within another (`unpacking`), and a stream kept between tasks that brings anything unasked is
 * dropped unread.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import type { Libp2p, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { GRID_VERSION, GridError, PACKING, formatLinkRate, type Advert, type ToolchainInfo } from '@grid/protocol'
import { ByteBudget, SharedBudget, type Release } from '../budget.js'
import { logger } from '../log.js'
import { PACK_MIN_BYTES, PACKED_SHARE, pack, packsOver, unpack } from '../pack.js'
import { deadline, linked } from '../signals.js'
import { BLOB_BATCH_BYTES, BUSY, COMPILE_PROTOCOL, EAGER_INPUT_BYTES, INCOMPATIBLE_RETRY_MS, LINK_PRIOR_BYTES_PER_MS, LINK_PROBE_TIMEOUT_MS, LINK_STALE_MS, MAX_COMPILE_MESSAGE_BYTES, MAX_IDLE_STREAMS, MAX_KNOWN_INPUTS, MAX_RATIO, MIN_RATIO, REMOTE_BASE_MS, REMOTE_PER_INPUT_MB_MS, REQUESTER_READ_BUDGET_BYTES, REQUESTER_READ_SHARE_BYTES, REQUESTER_UNPACK_BUDGET_BYTES, REQUESTER_UNPACK_SHARE_BYTES, WORKER_TASK_TIMEOUT_MS } from './constants.js'
import type { LinkProbes, LinkSample } from './link.js'
import { parseCompileArgs } from './parse.js'
import { asmHeaderProblem, peerArchiveProblem } from './archive.js'
import { buildTask, type PreparedTask, type TaskBytes } from './task-builder.js'
import { ExportDataCache } from './export-cache.js'
import { MeteredStream } from './metered.js'
import { PeerSlots } from './peer-slots.js'
import { decodeCompileMessage, packr, type CompileMessage } from './wire.js'

const log = logger('grid:remote')

export type Offload = 'never' | 'busy' | 'always'
export const OFFLOAD_POLICIES: readonly Offload[] = ['never', 'busy', 'always']

/** A peer that failed is not offered work for this long. */
const PENALTY_MS = 30_000
/** Races lost in a row (no success between) before a late peer is set aside like a failed one. */
const OVERDUE_STREAK = 3
/**
 * Refusals as busy in a row, each the first after an advert that showed a slot free for us (no
 * task taken between), before the peer is set aside like a failed one. An honest peer's advert
 * lags its slots by up to a second, so another requester can take the slot it showed: one such
 * refusal is ordinary, two in a row rare; a peer that keeps showing slots it refuses draws our
 * compiles away from peers that would run them.
 */
const BUSY_STREAK = 3
/**
 * A task that moved at least this many bytes (inputs sent and the archive back) times the
 * peer's link (`msPerByte`); a smaller one times its fixed cost (`extraMs`). On a gigabit LAN a
 * small task's time beyond the compile is its sandbox and round trips; on a 10 Mbit/s Wi-Fi
 * link, runtime's 13 MB archive alone took 11 s, which the fixed cost of small tasks hid.
 */
const LINK_SAMPLE_BYTES = 256 * 1024
/** Decay per task of the sums behind `bytesPerExpectedMs` (the last ~20 tasks count most). */
const BYTES_DECAY = 0.95

/**
 * How a peer did on our compiles: `late` counts races lost in a row, reset by a success.
 * `ratio` (its compile time over our expected time), `extraMs` (wall time beyond its compile
 * on tasks that moved little: its sandbox, the round trips) and `msPerByte` (on tasks that moved
 * LINK_SAMPLE_BYTES or more, the rest of that time per byte moved: its link) predict a task's
 * wall time there; all are moving averages over successes, undefined before the first, except
 * that a link probe (link.ts) sets `msPerByte` outright. `linkAt`: when `msPerByte` was last
 * measured (Date.now()). `probed`: the last probe's time per byte alone, which decides whether
 * bodies go packed (`packsTo`).
 */
interface Score { ok: number, failed: number, speed: number, late: number, ratio: number | undefined, extraMs: number | undefined, msPerByte: number | undefined, linkAt: number | undefined, probed: number | undefined }
/** Weight of a new sample in a peer's moving averages (speed, ratio, extraMs, msPerByte). */
const SPEED_ALPHA = 0.3

/** Moves a moving average toward a sample (the first sample is taken as it is). */
function toward (average: number | undefined, sample: number): number {
  return average === undefined ? sample : average + SPEED_ALPHA * (sample - average)
}

/** A peer's speed moves toward elapsed / expected (clamped: one wild sample cannot dominate). */
function addSpeedSample (score: Score, elapsedMs: number, expectedMs: number): void {
  score.speed = toward(score.speed, Math.min(MAX_RATIO, Math.max(0.1, elapsedMs / Math.max(1, expectedMs))))
}

/** The libp2p error of a dial past our own limit of outbound streams for the protocol (matched by name: STYLE.md). */
function isLocalStreamLimit (err: unknown): boolean {
  return (err as { name?: unknown } | null)?.name === 'TooManyOutboundProtocolStreamsError'
}

/**
 * How a failed attempt showed the peer to be of another grid version: `protocol`, it does not
 * handle COMPILE_PROTOCOL (multistream-select's UnsupportedProtocolError, matched by name), or
 * `task`, its worker speaks the protocol but refused the task as GRID_ERR_TASK_INCOMPATIBLE.
 */
type IncompatibleKind = 'protocol' | 'task'

/** Why and how (`IncompatibleKind`) a failed attempt shows the peer to be of another grid version, or undefined. */
function incompatibility (err: unknown): { kind: IncompatibleKind, why: string } | undefined {
  if ((err as { name?: unknown } | null)?.name === 'UnsupportedProtocolError') return { kind: 'protocol', why: `it does not speak ${COMPILE_PROTOCOL}` }
  if ((err as { code?: unknown } | null)?.code === 'GRID_ERR_TASK_INCOMPATIBLE') return { kind: 'task', why: (err as Error).message }
  return undefined
}

type ResultMessage = Extract<CompileMessage, { type: 'result' }>

/** A worker's result, and the give-back of its bytes to the read budget: its archive is a view of them, or, unpacked, held in `unpacking`. */
interface HeldResult { result: ResultMessage, release: Release }

/**
 * An attempt's deadline (ms): REMOTE_BASE_MS plus REMOTE_PER_INPUT_MB_MS per MB of inputs, or
 * `notBeforeMs` when that is later, up to WORKER_TASK_TIMEOUT_MS beyond the first (the worker
 * ends a task by then itself).
 */
export function attemptDeadlineMs (inputBytes: number, notBeforeMs = 0): number {
  const own = REMOTE_BASE_MS + (inputBytes / 1e6) * REMOTE_PER_INPUT_MB_MS
  return Math.round(Math.max(own, Math.min(notBeforeMs, own + WORKER_TASK_TIMEOUT_MS)))
}

/**
 * The bytes a task moves over a link, as predicted: its archive packed when that link is slow
 * (`packsTo`). Its inputs count in full, packed or not: counted at half their bytes, the long
 * poles of a requester on 10 Mbit/s Wi-Fi went to its helpers more often, and its remote tasks'
 * overhead p50 rose from ~93 to ~125 ms with no gain in wall time (docs/mesh.md).
 */
function wireBytes (bytes: TaskBytes, packed: boolean): number {
  return bytes.inputs + (packed ? PACKED_SHARE : 1) * bytes.archive
}

/** Whether a member's worker unpacks inputs packed as this node packs them (its advert's `unpacks`). */
function unpacksInputs (advert: Advert | undefined): boolean {
  return advert?.unpacks?.includes(PACKING) === true
}

/** An input on its way to a worker: `data` packed when `packed` is set. */
interface InputItem { sha256: string, data: Uint8Array, packed?: typeof PACKING }

/** What a task moved over the link: inputs sent, and the archive and go_asm.h back as they came (packed or not). */
interface TaskBytesMoved { sent: number, received: number }

/** The hashes of a task's importcfg and embedcfg: all a task admitted only to join a running compile asks for. */
function configHashes (prepared: PreparedTask): Set<string> {
  const paths = new Set([prepared.task.inputFlags['-importcfg'], prepared.task.inputFlags['-embedcfg']])
  return new Set(prepared.task.files.filter(f => paths.has(f.path)).map(f => f.sha256))
}

/** An input packed for a worker that unpacks inputs, or as it is when that would not save much. */
async function packInput (item: InputItem): Promise<InputItem> {
  if (item.data.length < PACK_MIN_BYTES) return item
  const packed = await pack(item.data)
  return packed === undefined ? item : { sha256: item.sha256, data: packed, packed: PACKING }
}

/** Whether a message is the worker's refusal for lack of a slot, exactly as the worker sends it. */
function isBusy (m: CompileMessage): boolean {
  return m.type === 'fail' && m.code === 'GRID_ERR_TASK_REFUSED' && m.message === BUSY
}

export interface RemoteInit {
  libp2p: Libp2p
  /** connected members with their adverts */
  peers: () => Array<{ peerId: string, advert: Advert }>
  isUntrusted: (peerId: string) => boolean
  own: () => ToolchainInfo | undefined
  /** whether the peer handles COMPILE_PROTOCOL, as identify said; undefined: not known yet */
  speaks?: (peerId: string) => boolean | undefined
  /** measures peers' links before big tasks go to them (absent: learnt from tasks alone) */
  links?: LinkProbes
  /** bytes of compile messages read or held at once, from every stream (REQUESTER_READ_BUDGET_BYTES; tests set a small one) */
  readBudgetBytes?: number
  /** what one peer's messages may hold of them (REQUESTER_READ_SHARE_BYTES, or the budget if smaller) */
  readShareBytes?: number
  /** bytes of archives that came packed, unpacked at once (REQUESTER_UNPACK_BUDGET_BYTES; tests set a small one) */
  unpackBudgetBytes?: number
  /** what one peer's archives may hold of them (REQUESTER_UNPACK_SHARE_BYTES, or the budget if smaller) */
  unpackShareBytes?: number
}

export interface RemoteRequest { args: string[], cwd: string, env: Record<string, string>, importPath: string, goroot: string }

/**
 * One attempt on one peer. `busy`: refused for lack of a slot (no penalty, unless the peer keeps
 * refusing what it advertises). `remote-diagnostics`: the compile failed or printed there; the
 * caller reruns it here and calls `disproved` when that run is clean.
 */
export type Attempt =
  | { ok: true, peer: string, archive: Uint8Array, asmhdr: Uint8Array | null, transferMs: number, compileMs: number, wallMs: number }
  | { ok: false, peer: string, reason: 'busy' | 'peer-error' | 'remote-diagnostics' | 'cancelled' | 'incompatible' }

export interface Candidate { peerId: string, free: number, load: number, speed: number }

/** A compile stream to one peer, read within the read budget (metered.ts); `unwatch` ends its watch while it is kept between tasks. */
interface Channel { stream: Stream, wire: MeteredStream, reused: boolean, unwatch?: () => void }

export class RemoteCompiler {
  private readonly init: RemoteInit
  private readonly slots = new PeerSlots()
  private readonly penalty = new Map<string, number>()
  readonly scores = new Map<string, Score>()
  private readonly exports = new ExportDataCache()
  /** Compile streams kept open between tasks, per peer: each is dropped at the first byte its peer sends unasked, having let it send at most a window. */
  private readonly idle = new Map<string, Channel[]>()
  /** The answers being read or held now, from every peer, at most a share of them each peer's (metered.ts). */
  readonly reading: SharedBudget
  /** The archives that came packed, unpacked and held now (each beside its packed bytes, which `reading` holds), at most a share of them each peer's. */
  readonly unpacking: SharedBudget
  /** Per peer, the input hashes it holds as far as we know: it had them or we sent them. */
  private readonly held = new Map<string, Set<string>>()
  /** Per peer, its refusals as busy in a row that contradicted an advert (BUSY_STREAK). */
  private readonly refusals = new Map<string, number>()
  /**
   * Peers of another grid version, which cannot take our tasks (`incompatibility`): the grid
   * version their advert showed then, how the attempt showed it (`kind`), why, and until when.
   * Not a failure of theirs; they get no task while they advertise that version, for
   * INCOMPATIBLE_RETRY_MS (`incompatibleWith`).
   */
  private readonly incompatible = new Map<string, { version: string, kind: IncompatibleKind, why: string, until: number }>()
  /** Why compiles could not be tasks, each said once in the log (the summary only counts them). */
  private readonly unsupportedSaid = new Set<string>()
  /** Called when one of our tasks leaves a peer, whatever the outcome: its slot may be free. */
  onSlotFreed: (() => void) | undefined
  /** Decayed sums over our tasks of the bytes each moved and of its expected compile time. */
  private movedBytes = 0
  private movedExpectedMs = 0
  /** Per peer, when its link was last probed (a probe that failed is not tried again sooner either). */
  private readonly probedAt = new Map<string, number>()
  /** Per peer, its probe that is due or running, settled when it has finished (`linkOfBest`). */
  private readonly measuring = new Map<string, Promise<void>>()
  /** When `probeLinks` last looked for peers to probe. */
  private probeLookedAt = 0
  /** The last probe of the chain (`enqueueProbe`). */
  private probes: Promise<void> = Promise.resolve()
  /** Aborted when the node stops: probes in flight end. */
  private readonly closing = new AbortController()

  constructor (init: RemoteInit) {
    this.init = init
    const budget = new ByteBudget(init.readBudgetBytes ?? REQUESTER_READ_BUDGET_BYTES)
    this.reading = new SharedBudget(budget, Math.min(init.readShareBytes ?? REQUESTER_READ_SHARE_BYTES, budget.limit))
    const unpacked = new ByteBudget(init.unpackBudgetBytes ?? REQUESTER_UNPACK_BUDGET_BYTES)
    this.unpacking = new SharedBudget(unpacked, Math.min(init.unpackShareBytes ?? REQUESTER_UNPACK_SHARE_BYTES, unpacked.limit))
  }

  /** An advert from `peer` arrived (the mesh calls this): its busy slots count our tasks there now. */
  advertised (peer: string): void {
    this.slots.advertised(peer)
  }

  /** Free remote slots right now (for sizing go's -p). */
  capacity (): number {
    return this.candidates().reduce((n, p) => n + p.free, 0)
  }

  /** The task and its inputs, or why this compile cannot be shipped. */
  async prepare (req: RemoteRequest): Promise<PreparedTask | { reason: 'toolchain-unknown' | 'unsupported-task' }> {
    const own = this.init.own()
    if (own === undefined) return { reason: 'toolchain-unknown' }
    const parsed = parseCompileArgs(req.args, req.cwd)
    if ('unsupported' in parsed) return this.unsupported(req.importPath, parsed.unsupported)
    const prepared = await buildTask(parsed, req.env, own.compiler, req.goroot, this.exports).catch((err: Error) => ({ unsupported: err.message }))
    if ('unsupported' in prepared) return this.unsupported(req.importPath, prepared.unsupported)
    return prepared
  }

  /** A compile that cannot be a task; why, in the log the first time (of the first 100 reasons). */
  private unsupported (importPath: string, why: string): { reason: 'unsupported-task' } {
    if (!this.unsupportedSaid.has(why) && this.unsupportedSaid.size < 100) {
      this.unsupportedSaid.add(why)
      log.info(`compiles stay here (unsupported-task) for ${why}, ${importPath}'s first; docs/remote.md, "Build modes"`)
    }
    return { reason: 'unsupported-task' }
  }

  /**
   * The shortest wall time a free peer is predicted to take for a compile we expect to take
   * `expectedMs` here: its compile ratio times that, plus its fixed cost beyond the compile,
   * plus the bytes such a compile moves (`bytesPerExpectedMs`) at the speed of its link. What
   * is not known of a peer yet is presumed as here: a peer that has finished none of our tasks
   * compiles as fast as this host, and one whose link was not timed moves bytes for free.
   * `bytes`: what the task moves, when known (`taskBytes`). Undefined when no peer is free.
   */
  predictMs (expectedMs: number, bytes?: TaskBytes): number | undefined {
    let best: number | undefined
    for (const c of this.candidates()) {
      const score = this.scores.get(c.peerId)
      const moved = bytes === undefined ? expectedMs * this.bytesPerExpectedMs() : wireBytes(bytes, this.packsTo(c.peerId))
      const ms = expectedMs * (score?.ratio ?? 1) + (score?.extraMs ?? 0) + moved * (score?.msPerByte ?? 0)
      if (best === undefined || ms < best) best = ms
    }
    return best
  }

  /**
   * How long a task's bytes take over the link of the peer a compile would go to now (the first
   * candidate), as last measured; 0 when there is none, or its link was never timed.
   */
  linkMs (bytes: TaskBytes): number {
    const best = this.candidates()[0]
    if (best === undefined) return 0
    const msPerByte = this.scores.get(best.peerId)?.msPerByte
    return msPerByte === undefined ? 0 : wireBytes(bytes, this.packsTo(best.peerId)) * msPerByte
  }

  /** Bytes a compile moves (inputs out, archive back) per ms of its expected time: our tasks' lately, else a prior. */
  private bytesPerExpectedMs (): number {
    return this.movedExpectedMs > 0 ? this.movedBytes / this.movedExpectedMs : LINK_PRIOR_BYTES_PER_MS
  }

  /**
   * Measures, in the background and one at a time, the link of each capable peer whose link
   * was not timed (by a probe or a big task) within LINK_STALE_MS: probes at once would share
   * this host's own link, and each would look slower. Cheap to call per compile: it looks for
   * such peers at most once a second.
   */
  probeLinks (): void {
    const now = Date.now()
    if (this.init.links === undefined || this.measuring.size > 0 || now - this.probeLookedAt < 1_000) return
    this.probeLookedAt = now
    const due = this.init.peers().filter(p => this.capable(p.peerId, p.advert) && !this.linkFresh(p.peerId, now))
    // the peers our compiles would go to first are measured first (`linkOfBest` waits for them)
    due.sort((a, b) => (this.scores.get(a.peerId)?.speed ?? 1) - (this.scores.get(b.peerId)?.speed ?? 1))
    for (const { peerId } of due) this.enqueueProbe(peerId)
  }

  /**
   * `peer`'s link as last timed (by a probe, or by our tasks that moved much), in ms per byte;
   * undefined when it never was.
   */
  msPerByte (peer: string): number | undefined {
    return this.scores.get(peer)?.msPerByte
  }

  /**
   * Whether bodies from `peer` (archives, cache bodies) go packed: its link's last probe was
   * slow (../pack.ts). The probe's figure alone: the time per byte learnt from tasks counts
   * packing and unpacking, which would keep a link packed because it was.
   */
  packsTo (peer: string): boolean {
    return packsOver(this.scores.get(peer)?.probed)
  }

  /**
   * Times `peer`'s link in the background, after the probes already due, unless it was timed
   * within LINK_STALE_MS or is being timed. For a member whose cache this node fetches from:
   * one that takes no compiles of ours is not probed by `probeLinks`.
   */
  measureLink (peer: string): void {
    if (this.init.links === undefined || this.measuring.has(peer) || this.linkFresh(peer, Date.now())) return
    this.enqueueProbe(peer)
  }

  /** Whether `peer`'s link was timed, or a probe of it tried, within LINK_STALE_MS. */
  private linkFresh (peer: string, now: number): boolean {
    const fresh = (at: number | undefined): boolean => at !== undefined && now - at < LINK_STALE_MS
    return fresh(this.scores.get(peer)?.linkAt) || fresh(this.probedAt.get(peer))
  }

  /**
   * Adds `peer`'s probe to the one chain of probes: one after another, since probes at once
   * would share this host's own link and each would look slower. Its promise in `measuring`
   * settles once its own probe has.
   */
  private enqueueProbe (peerId: string): void {
    const links = this.init.links
    if (links === undefined) return
    const queue = this.probes.then(async () => {
      try {
        if (this.closing.signal.aborted) return
        this.probedAt.set(peerId, Date.now())
        const sample = await links.measure(peerId, this.closing.signal)
        if (sample !== undefined) this.linkMeasured(peerId, sample)
      } finally {
        this.measuring.delete(peerId)
      }
    }).catch((err: Error) => { log.debug(`link probe of ${peerId} failed: ${err.message}`) })
    this.probes = queue
    this.measuring.set(peerId, queue)
  }

  /**
   * Waits while the best candidate's link is being measured (its probe due or running), for at
   * most LINK_PROBE_TIMEOUT_MS in all: a long pole is placed by what its link costs. The probes
   * of a build's start are usually done before its first long pole (runtime) arrives; a
   * 10 Mbit/s link takes ~2 s to measure, a gigabit one a few ms.
   */
  async linkOfBest (signal: AbortSignal): Promise<void> {
    const until = performance.now() + LINK_PROBE_TIMEOUT_MS
    for (;;) {
      const best = this.candidates()[0]
      const pending = best === undefined ? undefined : this.measuring.get(best.peerId)
      const left = until - performance.now()
      if (pending === undefined || left <= 0 || signal.aborted) return
      const waiting = linked(signal) // ends the sleep once the probe is done
      try {
        await Promise.race([pending, sleep(left, undefined, { signal: waiting.signal }).catch(() => {})])
      } finally {
        waiting.end()
      }
    }
  }

  /**
   * A probe timed `peer`'s link: its time per byte replaces what tasks taught, and a peer that
   * has run none of our tasks yet ranks by it (a compile's bytes at that speed, per ms of
   * compile), so that a slow link is not the first choice for a big task.
   */
  linkMeasured (peer: string, sample: LinkSample): void {
    const score = this.score(peer)
    score.msPerByte = sample.msPerByte
    score.probed = sample.msPerByte
    score.linkAt = Date.now()
    if (score.ok === 0 && score.failed === 0) score.speed = Math.min(MAX_RATIO, 1 + sample.msPerByte * this.bytesPerExpectedMs())
    log.info(`link to ${peer}: ${sample.atLeast ? 'at most ' : ''}${formatLinkRate(sample.msPerByte)}, round trip ${sample.rttMs.toFixed(1)} ms`)
  }

  /** Whether any connected member could take our compiles (free slots or not). */
  anyCapable (): boolean {
    return this.init.peers().some(p => this.capable(p.peerId, p.advert))
  }

  /** Why no peer can take a compile now (when `candidates()` is empty). */
  whyNone (): 'no-peers' | 'no-capable-peer' | 'peers-busy' {
    const peers = this.init.peers()
    if (peers.length === 0) return 'no-peers'
    return this.anyCapable() ? 'peers-busy' : 'no-capable-peer'
  }

  /** Peers that could take a compile now, best first: fastest, then most free slots, then least loaded. */
  candidates (): Candidate[] {
    return this.init.peers().flatMap(({ peerId, advert }) => {
      if (!this.capable(peerId, advert)) return []
      const free = this.slots.free(peerId, advert.slots)
      if (free <= 0) return []
      return [{ peerId, free, load: advert.load, speed: this.scores.get(peerId)?.speed ?? 1 }]
    }).sort((a, b) => a.speed - b.speed || b.free - a.free || a.load - b.load)
  }

  private capable (peerId: string, advert: Advert): boolean {
    const own = this.init.own()
    if (own === undefined || !advert.accepting || this.init.isUntrusted(peerId) || (this.penalty.get(peerId) ?? 0) > Date.now()) return false
    if (this.incompatibleWith(peerId, advert) !== undefined) return false
    return advert.toolchains.some(t => t.compiler === own.compiler && t.canary === own.canary && t.experiment === own.experiment)
  }

  /**
   * Why `peer` (advertising `advert`) cannot take our tasks whatever its toolchain, or undefined:
   * identify lists another version of the compile protocol and not ours, or an attempt showed it
   * to be of another grid version (while it advertises the version it had then, for a while).
   * A dial that found no COMPILE_PROTOCOL is forgotten once identify lists the protocol (the
   * worker registered it late); a refusal of the task's shape is not, since such a worker lists
   * the protocol all along: it stands until the peer advertises another version or it expires.
   */
  incompatibleWith (peerId: string, advert: Advert): string | undefined {
    const speaks = this.init.speaks?.(peerId)
    if (speaks === false) return `it does not speak ${COMPILE_PROTOCOL}`
    const known = this.incompatible.get(peerId)
    if (known === undefined) return undefined
    const listedLate = known.kind === 'protocol' && speaks === true
    if (!listedLate && known.version === advert.version && Date.now() < known.until) return known.why
    this.incompatible.delete(peerId) // identify lists our protocol now, it runs another version, or it is time to try again
    return undefined
  }

  /**
   * Runs the task on `peer`; `expectedMs` (the local estimate) feeds the peer's speed. Its
   * deadline is never before `notBeforeMs` (`attemptDeadlineMs`): the scheduler's race of a late
   * task must begin before the deadline ends it.
   */
  async attempt (peer: string, prepared: PreparedTask, signal: AbortSignal, expectedMs: number, notBeforeMs = 0): Promise<Attempt> {
    this.slots.started(peer)
    let hadSlot = true // a refusal as busy never held a slot there
    const score = this.score(peer)
    const started = performance.now()
    const io = { sent: 0, received: 0 }
    let release: Release | undefined // the result's bytes, held until it has been checked and handed on
    try {
      const answer = await this.run(peer, prepared, signal, io, notBeforeMs)
      if (answer === 'busy') {
        hadSlot = false
        this.busy(peer, prepared.task.importPath)
        return { ok: false, peer, reason: 'busy' }
      }
      const { result } = answer
      release = answer.release
      if (result.exitCode !== 0 || result.output.length > 0) {
        // Diagnostics name sandbox paths that cmd/go cannot shorten: let the local compile
        // print them exactly as plain go build would.
        return { ok: false, peer, reason: 'remote-diagnostics' }
      }
      if (result.archive === null) throw new GridError('GRID_ERR_MESSAGE_INVALID', `${peer} returned no package archive`)
      const problem = peerArchiveProblem(Buffer.from(result.archive.buffer, result.archive.byteOffset, result.archive.byteLength), prepared.buildId, prepared.pragmas)
      if (problem !== undefined) throw new GridError('GRID_ERR_MESSAGE_INVALID', `${peer} returned an archive its task cannot produce: ${problem}`)
      if (prepared.asmhdr !== undefined && result.asmhdr === null) throw new GridError('GRID_ERR_MESSAGE_INVALID', `${peer} returned no go_asm.h`)
      const header = prepared.asmhdr !== undefined && result.asmhdr !== null ? asmHeaderProblem(Buffer.from(result.asmhdr.buffer, result.asmhdr.byteOffset, result.asmhdr.byteLength)) : undefined
      if (header !== undefined) throw new GridError('GRID_ERR_MESSAGE_INVALID', `${peer} returned a go_asm.h its task cannot produce: ${header}`)
      const wallMs = performance.now() - started
      // the peer's own figure (checked at decode), never more than the task took us in all
      const compileMs = Math.min(result.compileMs, wallMs)
      score.ok++
      score.late = 0
      this.refusals.delete(peer)
      addSpeedSample(score, wallMs, expectedMs)
      score.ratio = toward(score.ratio, Math.min(MAX_RATIO, Math.max(MIN_RATIO, compileMs / Math.max(1, expectedMs))))
      const moved = io.sent + io.received // as they went over the link: packed, if they were
      this.movedBytes = this.movedBytes * BYTES_DECAY + moved
      this.movedExpectedMs = this.movedExpectedMs * BYTES_DECAY + Math.max(1, expectedMs)
      if (moved < LINK_SAMPLE_BYTES || score.extraMs === undefined) score.extraMs = toward(score.extraMs, wallMs - compileMs)
      if (moved >= LINK_SAMPLE_BYTES) {
        score.msPerByte = toward(score.msPerByte, Math.max(0, wallMs - compileMs - score.extraMs) / moved)
        score.linkAt = Date.now()
      }
      return { ok: true, peer, archive: result.archive, asmhdr: result.asmhdr, transferMs: Math.max(0, wallMs - compileMs), compileMs, wallMs }
    } catch (err) {
      if (signal.aborted) return { ok: false, peer, reason: 'cancelled' }
      const found = incompatibility(err)
      if (found !== undefined) {
        const { kind, why } = found
        // another grid version: not the peer's failure, and nothing more to send it for now
        hadSlot = false
        const version = this.init.peers().find(p => p.peerId === peer)?.advert.version ?? ''
        if (!this.incompatible.has(peer)) log.info(`${peer} (grid ${version || '?'}, this node ${GRID_VERSION}) cannot take this node's compiles: ${why}; none go to it while it runs that version (tried again in ${INCOMPATIBLE_RETRY_MS / 60_000} min)`)
        this.incompatible.set(peer, { version, kind, why, until: Date.now() + INCOMPATIBLE_RETRY_MS })
        return { ok: false, peer, reason: 'incompatible' }
      }
      if (isLocalStreamLimit(err)) {
        // our own limit on streams to the peer, not its fault: it counts as full for now
        hadSlot = false
        this.slots.refused(peer)
        log.debug(`no stream to ${peer} for ${prepared.task.importPath}: ${(err as Error).message}`)
        return { ok: false, peer, reason: 'busy' }
      }
      score.failed++
      this.penalty.set(peer, Date.now() + PENALTY_MS)
      log.info(`remote compile of ${prepared.task.importPath} on ${peer} failed (${(err as Error).message}); compiling locally`)
      return { ok: false, peer, reason: 'peer-error' }
    } finally {
      release?.()
      this.slots.ended(peer, hadSlot)
      this.onSlotFreed?.()
    }
  }

  /**
   * `peer` refused a task as busy: full until its next advert; after BUSY_STREAK refusals in a
   * row that each contradicted an advert, set aside like a failed peer.
   */
  private busy (peer: string, importPath: string): void {
    if (!this.slots.refused(peer)) return // another of our tasks offered at the same moment
    const streak = (this.refusals.get(peer) ?? 0) + 1
    this.refusals.set(peer, streak)
    if (streak < BUSY_STREAK) return
    this.refusals.delete(peer)
    this.score(peer).failed++
    this.penalty.set(peer, Date.now() + PENALTY_MS)
    log.info(`${peer} refused ${importPath} as busy: ${streak} refusals in a row of slots it advertised as free; avoiding it for ${PENALTY_MS / 1000} s`)
  }

  /**
   * A clean compile here (exit 0, nothing printed) of a task these peers said failed or printed
   * something: compiles are deterministic, so they lied. Scored as a failure and set aside.
   */
  disproved (peers: Iterable<string>, importPath: string): void {
    for (const peer of peers) {
      this.score(peer).failed++
      this.penalty.set(peer, Date.now() + PENALTY_MS)
      log.info(`${peer} reported diagnostics for ${importPath}, which compiles cleanly here: avoiding it for ${PENALTY_MS / 1000} s`)
    }
  }

  /**
   * A peer that lost a race it was overdue in: scored down (a failure, and its speed by the time
   * it took without answering), so faster peers come first. Slow is not broken: it is set aside
   * only after OVERDUE_STREAK such losses in a row (a peer that stalls), like a failed one.
   */
  overdue (peer: string, importPath: string, elapsedMs: number, expectedMs: number): void {
    const score = this.score(peer)
    score.failed++
    score.late++
    addSpeedSample(score, elapsedMs, expectedMs)
    const stalls = score.late >= OVERDUE_STREAK
    if (stalls) this.penalty.set(peer, Date.now() + PENALTY_MS)
    log.info(`remote compile of ${importPath} on ${peer} was overdue and lost its race after ${Math.round(elapsedMs)} ms` +
      (stalls ? `; ${score.late} in a row: avoiding the peer for ${PENALTY_MS / 1000} s` : ''))
  }

  private score (peer: string): Score {
    let score = this.scores.get(peer)
    if (score === undefined) { score = { ok: 0, failed: 0, speed: 1, late: 0, ratio: undefined, extraMs: undefined, msPerByte: undefined, linkAt: undefined, probed: undefined }; this.scores.set(peer, score) }
    return score
  }

  /**
   * Runs the task: its result, or 'busy' when the worker refused it for lack of a slot. A kept
   * stream that turns out dead before any answer costs one fresh dial.
   */
  private async run (peer: string, prepared: PreparedTask, signal: AbortSignal, io: TaskBytesMoved, notBeforeMs: number): Promise<HeldResult | 'busy'> {
    const timed = deadline(attemptDeadlineMs(prepared.inputBytes, notBeforeMs), signal)
    try {
      const kept = this.takeIdle(peer)
      if (kept !== undefined) {
        try {
          return await this.runOn(kept, peer, prepared, timed.signal, performance.now(), io)
        } catch (err) {
          if (!(err instanceof StaleStream) || timed.signal.aborted) throw err
          log.debug(`kept stream to ${peer} was closed: dialling`)
          io.sent = 0 // what went down the dead stream is not what this task moves
        }
      }
      const started = performance.now()
      const stream = await this.init.libp2p.dialProtocol(peerIdFromString(peer), COMPILE_PROTOCOL, { signal: timed.signal })
      const wire = new MeteredStream(stream, async (bytes, signal) => await this.reading.take(peer, bytes, signal), MAX_COMPILE_MESSAGE_BYTES, peer)
      return await this.runOn({ stream, wire, reused: false }, peer, prepared, timed.signal, started, io)
    } finally {
      timed.done()
    }
  }

  /**
   * `io` counts the bytes moved; the result has its archive unpacked, if it came packed, and its
   * bytes stay held in the read budget (the unpacked archive in `unpacking`) until the caller
   * releases them.
   */
  private async runOn (channel: Channel, peer: string, prepared: PreparedTask, deadline: AbortSignal, started: number, io: TaskBytesMoved): Promise<HeldResult | 'busy'> {
    const { stream, wire } = channel
    const dialled = performance.now()
    let releaseLast: Release | undefined // the last message's bytes, held while its fields (views of them) are in use
    const read = async (): Promise<CompileMessage> => {
      releaseLast?.()
      const message = await wire.read(deadline)
      releaseLast = message.release
      return decodeCompileMessage(message.bytes, peer)
    }
    let answered = false
    let keep = false
    const held = this.heldBy(peer)
    const fresh = [...prepared.blobs].filter(([sha256]) => !held.has(sha256))
    const eager = fresh.reduce((n, [, data]) => n + data.length, 0) <= EAGER_INPUT_BYTES
    // a slow link: the archive comes back packed, and the inputs go packed if the worker unpacks them
    const packed = this.packsTo(peer)
    const packInputs = packed && unpacksInputs(this.init.peers().find(p => p.peerId === peer)?.advert)
    try {
      const offer = packr.pack({ type: 'offer', task: prepared.task, ...(eager ? { eager } : {}), ...(packed ? { pack: PACKING } : {}) })
      if (eager) io.sent += await this.sendInputs(wire, fresh.map(([sha256, data]) => ({ sha256, data })), packInputs, deadline, offer)
      else await wire.write(offer, deadline)
      let reply = await read()
      answered = true
      const claimed = performance.now()
      const asked = reply.type === 'need' ? reply.hashes.length : undefined
      if (isBusy(reply)) {
        keep = true // a refused offer leaves the stream between tasks
        return 'busy'
      }
      if (reply.type === 'fail') throw refusal(peer, reply)
      let joinOnly = false
      if (reply.type === 'need') {
        const items = this.needed(peer, reply.hashes, prepared)
        const configs = configHashes(prepared)
        joinOnly = items.every(i => configs.has(i.sha256))
        io.sent += await this.sendInputs(wire, items, packInputs, deadline)
        reply = await read()
      } else if (!eager) throw new GridError('GRID_ERR_MESSAGE_INVALID', `${peer} answered an offer with ${reply.type}`)
      const sent = performance.now()
      const result = reply
      // A task the worker let in with every slot taken, only to join a running compile, asks
      // for its importcfg and embedcfg alone; if it then finds nothing to join, it is refused
      // as busy (worker.ts). Any other refusal after inputs moved is the peer's failure.
      if (joinOnly && isBusy(result)) return 'busy'
      if (result.type === 'fail') throw refusal(peer, result)
      if (result.type !== 'result') throw new GridError('GRID_ERR_MESSAGE_INVALID', `${peer} answered with ${result.type}`)
      keep = true
      this.remember(held, prepared)
      io.received = (result.archive?.byteLength ?? 0) + (result.asmhdr?.byteLength ?? 0)
      if (result.packed !== undefined && result.archive !== null) {
        // Unpacked beside its packed bytes, so held in `unpacking` first: as much as the worker
        // declares (one of an earlier version declares nothing: the largest a result may be),
        // and it must come to exactly that. Bytes that unpack past it end there.
        const size = result.archiveSize ?? MAX_COMPILE_MESSAGE_BYTES
        const what = `the archive ${peer} returned for ${prepared.task.importPath}`
        const releaseMessage = releaseLast
        const releaseUnpacked = await this.unpacking.take(peer, size, deadline)
        releaseLast = () => { releaseMessage?.(); releaseUnpacked() }
        const archive = await unpack(result.archive, size, what)
        if (result.archiveSize !== undefined && archive.byteLength !== size) throw new GridError('GRID_ERR_MESSAGE_INVALID', `${what} unpacks to ${archive.byteLength} bytes, not the ${size} it declares`)
        Object.assign(result, { archive, packed: undefined, archiveSize: undefined })
      }
      const now = performance.now()
      if (log.debugEnabled) {
        const phases = asked === undefined
          ? `offer→result ${(now - dialled).toFixed(1)} ms`
          : `offer→need ${(claimed - dialled).toFixed(1)} ms, ${asked} inputs sent in ${(sent - claimed).toFixed(1)} ms, done→result ${(now - sent).toFixed(1)} ms`
        log.debug(`${prepared.task.importPath} on ${peer}: ${channel.reused ? 'kept stream' : 'dial'} ${(dialled - started).toFixed(1)} ms, ` +
          `${eager ? `${fresh.length} inputs with the offer, ` : ''}${phases} of which compile ${result.compileMs.toFixed(1)} ms`)
      }
      const release = releaseLast as Release
      releaseLast = undefined // the caller's now
      return { result, release }
    } catch (err) {
      if (deadline.aborted) keep = false
      if (channel.reused && !answered && !deadline.aborted) throw new StaleStream(err as Error)
      throw err
    } finally {
      releaseLast?.()
      if (keep) this.keepIdle(peer, channel)
      else stream.abort(new GridError('GRID_ERR_CANCELLED', 'compile stream dropped'))
    }
  }

  /**
   * The inputs a worker's `need` asks for: each one of the task's, none twice (so never more than
   * the task's own bytes). Anything else is the peer's failure, before a byte is sent: one `need`
   * naming a 3.5 KB input 20,000 times made a requester send 71 MB.
   */
  private needed (peer: string, hashes: string[], prepared: PreparedTask): InputItem[] {
    if (hashes.length > prepared.blobs.size) throw new GridError('GRID_ERR_MESSAGE_INVALID', `${peer} asked for ${hashes.length} inputs of a task that has ${prepared.blobs.size}`)
    const items: InputItem[] = []
    const asked = new Set<string>()
    for (const sha256 of hashes) {
      const data = prepared.blobs.get(sha256)
      if (data === undefined) throw new GridError('GRID_ERR_MESSAGE_INVALID', `${peer} asked for an input the task does not have (${sha256.slice(0, 16)}…)`)
      if (asked.has(sha256)) throw new GridError('GRID_ERR_MESSAGE_INVALID', `${peer} asked for input ${sha256.slice(0, 16)}… twice`)
      asked.add(sha256)
      items.push({ sha256, data })
    }
    return items
  }

  /**
   * Sends inputs in batches of BLOB_BATCH_BYTES, each packed when `packed` (those of at least
   * PACK_MIN_BYTES that pack smaller), then `done`; the last batch and `done` leave in one write
   * (one frame, not two), behind `first` when given (an eager offer). Returns the inputs' bytes
   * as they went.
   */
  private async sendInputs (wire: MeteredStream, items: InputItem[], packed: boolean, signal: AbortSignal, first?: Uint8Array): Promise<number> {
    let batch: InputItem[] = []
    let bytes = 0
    let sent = 0
    const head: Uint8Array[] = first === undefined ? [] : [first]
    const frame = async (): Promise<Uint8Array> => {
      const ready = packed ? await Promise.all(batch.map(packInput)) : batch
      sent += ready.reduce((n, i) => n + i.data.length, 0)
      return packr.pack({ type: 'blobs', items: ready })
    }
    for (const item of items) {
      batch.push(item)
      bytes += item.data.length
      if (bytes >= BLOB_BATCH_BYTES) {
        await wire.writeV([...head.splice(0), await frame()], signal)
        batch = []
        bytes = 0
      }
    }
    const tail = batch.length > 0 ? [await frame()] : []
    await wire.writeV([...head, ...tail, packr.pack({ type: 'done' })], signal)
    return sent
  }

  private heldBy (peer: string): Set<string> {
    let held = this.held.get(peer)
    if (held === undefined) { held = new Set(); this.held.set(peer, held) }
    return held
  }

  /**
   * After a result the peer holds every input of the task. Its importcfg and embedcfg are not
   * remembered: they name the build's own $WORK, so they almost never come again, and a daemon
   * would otherwise keep one hash per task it ever shipped, for every peer (up to
   * MAX_KNOWN_INPUTS each). When one does come again, it is a few hundred bytes sent again.
   */
  private remember (held: Set<string>, prepared: PreparedTask): void {
    if (held.size > MAX_KNOWN_INPUTS) held.clear()
    const configs = configHashes(prepared)
    for (const h of prepared.blobs.keys()) if (!configs.has(h)) held.add(h)
  }

  /** A kept stream to `peer` that still looks open and brought nothing unasked, if there is one. */
  private takeIdle (peer: string): Channel | undefined {
    const kept = this.idle.get(peer)
    while (kept !== undefined && kept.length > 0) {
      const channel = kept.pop() as Channel
      channel.unwatch?.() // paused again, for the task's reads
      if (this.unasked(peer, channel)) continue
      if (channel.stream.status === 'open' && channel.stream.remoteWriteStatus === 'writable') return { ...channel, reused: true }
      channel.stream.abort(new GridError('GRID_ERR_CANCELLED', 'stale compile stream'))
    }
    return undefined
  }

  /**
   * Keeps a stream for the next task to `peer`, watched (metered.ts `watch`): a worker has
   * nothing to say between tasks, so the first byte it sends drops the stream as it comes, not
   * when the next task would take it.
   */
  private keepIdle (peer: string, channel: Channel): void {
    if (this.unasked(peer, channel)) return
    let kept = this.idle.get(peer)
    if (kept === undefined) { kept = []; this.idle.set(peer, kept) }
    if (kept.length >= MAX_IDLE_STREAMS) { void channel.stream.close().catch(() => {}); return }
    const keeping: Channel = { ...channel }
    keeping.unwatch = channel.wire.watch(() => {
      const now = this.idle.get(peer)
      const at = now?.indexOf(keeping) ?? -1
      if (at >= 0) now?.splice(at, 1)
      this.dropUnasked(peer, keeping)
    })
    kept.push(keeping)
  }

  /**
   * Whether the worker sent on a stream between tasks, where it has nothing to say: a protocol
   * error. Such a stream is dropped unread (it held at most a window of it).
   */
  private unasked (peer: string, channel: Channel): boolean {
    if (channel.wire.unread === 0) return false
    this.dropUnasked(peer, channel)
    return true
  }

  private dropUnasked (peer: string, channel: Channel): void {
    log.info(`${peer} sent ${channel.wire.unread} bytes unasked on a compile stream between tasks: stream dropped unread`)
    channel.stream.abort(new GridError('GRID_ERR_MESSAGE_INVALID', 'bytes sent unasked between tasks'))
  }

  /**
   * A build ended: the export data read from its $WORK, which cmd/go has removed, is forgotten
   * (export-cache.ts). Never fails.
   */
  async buildEnded (): Promise<void> {
    await this.exports.prune().catch((err: Error) => log.debug(`pruning export data failed: ${err.message}`))
  }

  /**
   * `peer` left the mesh's table (its adverts stopped): what was kept to talk to it goes, the
   * inputs we believe it holds (up to MAX_KNOWN_INPUTS) and the streams kept for its next task.
   * A member that comes back learns them again at its first tasks, and its link is probed again.
   * Its score stays (it is small, and `grid peers` shows it if the peer returns), and so does a
   * penalty not yet served.
   */
  forget (peer: string): void {
    this.held.delete(peer)
    for (const c of this.idle.get(peer) ?? []) c.stream.abort(new GridError('GRID_ERR_CANCELLED', 'the peer left the mesh'))
    this.idle.delete(peer)
    this.refusals.delete(peer)
    this.slots.forget(peer)
    // it may come back over another link (a laptop that moved): measured again then
    this.probedAt.delete(peer)
    const score = this.scores.get(peer)
    if (score !== undefined) score.linkAt = undefined
    if ((this.penalty.get(peer) ?? 0) <= Date.now()) this.penalty.delete(peer)
  }

  /** Closes every kept stream and ends link probes (the node is stopping). */
  close (): void {
    this.closing.abort()
    for (const kept of this.idle.values()) for (const c of kept) void c.stream.close().catch(() => {})
    this.idle.clear()
  }
}

/** A worker's `fail`, as the error it is: a refusal as incompatible keeps its code (`incompatibility`). */
function refusal (peer: string, m: Extract<CompileMessage, { type: 'fail' }>): GridError {
  return new GridError(m.code === 'GRID_ERR_TASK_INCOMPATIBLE' ? 'GRID_ERR_TASK_INCOMPATIBLE' : 'GRID_ERR_TASK_REFUSED', `${peer}: ${m.message}`, { transient: true })
}

/** A kept stream failed before the peer answered anything: it was closed while idle. */
class StaleStream extends Error {
  constructor (cause: Error) {
    super(`kept stream failed: ${cause.message}`, { cause })
  }
}
