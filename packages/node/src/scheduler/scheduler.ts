/**
 * The scheduler: planning, apart from execution (as cmd/go keeps planning in action.go and
 * running in exec.go). For each compile the shim hands the node it says where it should run
 * and why, and how urgent it is:
 *
 *   * expected cost: the package's compile-time history (compiles run here only), else an
 *     estimate from its source size;
 *   * priority: the remaining critical path through the build's package graph (`go list -deps`
 *     from `grid build`), so the local queue and the peers take the long poles first;
 *   * placement, by the requester's `--offload` policy: `never` keeps everything local; `busy`
 *     (default) ships a compile that is not tiny when every local slot is taken, or when a free
 *     peer is predicted to be clearly faster for it (a long pole: not clearly slower);
 *     `always` ships whatever it can. Every compile that stays local has a reason.
 *
 * Execution (the race of a remote task against a local copy or a second peer) is dispatch.ts.
 */
import { stat } from 'node:fs/promises'
import type { GraphPackage } from '@grid/protocol'
import type { Offload } from '../remote/index.js'
import { ARCHIVE_BYTES_PER_SOURCE_BYTE } from '../remote/constants.js'
import { BACKLOG_DEPTH, COST_BASE_MS, COST_BYTES_PER_MS, FASTER_PEER, LONG_POLE_MS, OVERDUE_FACTOR, OVERDUE_MARGIN_MS, REMOTE_P_MAX, REMOTE_P_PER_CORE, SCALE_DECAY, SCALE_MAX, SCALE_MIN, TINY_MS, TRANSFER_BYTES_PER_MS } from './constants.js'
import { History } from './history.js'
import { Plan } from './plan.js'

/** Why a compile ran locally. Counted per build in `compiles.localReasons`. */
export type LocalReason =
  | 'policy' // --offload never
  | 'local-free' // --offload busy and a local slot was free
  | 'too-small' // expected to take less than shipping it
  | 'no-peers' // no connected member (or the mesh is not up yet)
  | 'no-capable-peer' // members, but none with this compiler, canary and GOEXPERIMENT that takes work
  | 'peers-busy' // capable peers, all slots taken
  | 'peers-slower' // a long pole, and the free peers predicted clearly slower than here (their link, their CPU)
  | 'peer-error' // the peer failed, timed out or returned something unusable
  | 'unsupported-task' // a flag outside the task allow-list, or inputs that cannot be read
  | 'remote-diagnostics' // the peer's compile printed or failed: rerun here for go's own messages
  | 'toolchain-unknown' // this node has not probed its own toolchain yet
  | 'toolchain-other' // the compile's compiler is not the one this node probed (another GOROOT, or Go changed since)
  | 'path-not-utf8' // its directory or an argument is a path that is not UTF-8, which this node cannot open
  | 'raced' // the peer was overdue and the local copy finished first

export type Placement = { where: 'local', reason: LocalReason } | { where: 'remote' }

/** Expected compile time from source bytes, for a package without history. */
export function estimateMs (sourceBytes: number): number {
  return COST_BASE_MS + sourceBytes / COST_BYTES_PER_MS
}

/**
 * When a remote task counts as overdue (ms after it was sent). `linkMs`: what its bytes both
 * ways take over the link of the peer it goes to, as that link was timed, when slower than the
 * inputs at TRANSFER_BYTES_PER_MS: a requester on 10 Mbit/s Wi-Fi raced one in ten of its tasks
 * to fast helpers by a local copy that lost, on its one slot.
 */
export function overdueMs (expectedMs: number, inputBytes: number, linkMs = 0): number {
  return OVERDUE_FACTOR * (expectedMs + Math.max(inputBytes / TRANSFER_BYTES_PER_MS, linkMs)) + OVERDUE_MARGIN_MS
}

/**
 * cmd/go's -p for a build (node.ts, `build-begin`): the local slots, the peers' free slots (at
 * most REMOTE_P_PER_CORE per local core and REMOTE_P_MAX in all) and, with peers, BACKLOG_DEPTH
 * more that wait at the node. `remoteSlots` is the capped share.
 */
export function goParallelism (localSlots: number, freeRemoteSlots: number, cores: number): { parallelism: number, remoteSlots: number } {
  const remoteSlots = Math.max(0, Math.min(freeRemoteSlots, REMOTE_P_PER_CORE * Math.max(1, cores), REMOTE_P_MAX))
  return { parallelism: localSlots + remoteSlots + (remoteSlots > 0 ? BACKLOG_DEPTH : 0), remoteSlots }
}

export interface PlaceInput {
  offload: Offload
  /** whether the node can reach peers at all (a mesh with a remote compiler) */
  mesh: boolean
  localFree: boolean
  expectedMs: number
  /**
   * The wall time (transfer included) this compile is predicted to take on the best free
   * peer, from how that peer did on earlier tasks and its link's probe (a peer not timed is
   * presumed as fast as this host); undefined when no peer is free. Asked only when it decides.
   */
  peerMs?: () => number | undefined
}

/** Where a compile should run. Pure: the node supplies the facts. */
export function place (input: PlaceInput): Placement {
  if (input.offload === 'never') return { where: 'local', reason: 'policy' }
  if (!input.mesh) return { where: 'local', reason: 'no-peers' }
  if (input.offload === 'always') return { where: 'remote' }
  if (input.expectedMs < TINY_MS) return { where: 'local', reason: input.localFree ? 'local-free' : 'too-small' }
  // A free local slot wins unless a free peer is predicted to be clearly faster for this
  // compile: a requester busy linking, running cgo and shipping work compiles slower than an
  // idle peer, and on a long pole that outweighs the trip. So a long pole (LONG_POLE_MS) goes
  // to a free peer unless that peer is predicted to be clearly slower.
  if (input.localFree) {
    const peerMs = input.peerMs?.()
    const ship = input.expectedMs >= LONG_POLE_MS
      ? peerMs === undefined || peerMs * FASTER_PEER < input.expectedMs
      : peerMs !== undefined && peerMs < FASTER_PEER * input.expectedMs
    if (!ship) return { where: 'local', reason: 'local-free' }
  }
  return { where: 'remote' }
}

export interface SchedulerInit {
  historyFile: string
}

export class Scheduler {
  readonly history: History

  constructor (init: SchedulerInit) {
    this.history = new History(init.historyFile)
  }

  async start (): Promise<void> { await this.history.load() }
  async stop (): Promise<void> { await this.history.save() }

  /**
   * How much slower (or faster) this machine compiles than the size model says: decayed sums of
   * actual over estimated times of packages timed here, so a slow or busy host (a 0.5-core lab
   * host is ~5×) ranks, ships and races by its own clock before it has any history.
   */
  private scaleSums = { actual: 0, estimated: 0 }

  get scale (): number {
    const { actual, estimated } = this.scaleSums
    return estimated === 0 ? 1 : Math.min(SCALE_MAX, Math.max(SCALE_MIN, actual / estimated))
  }

  private estimate (sourceBytes: number): number {
    return estimateMs(sourceBytes) * this.scale
  }

  /**
   * Expected time here of a compile whose archive has `bytes` (ARCHIVE_BYTES_PER_SOURCE_BYTE to
   * its sources): the shared cache weighs fetching a peer's entry against it.
   */
  archiveMs (bytes: number): number {
    return this.estimate(bytes / ARCHIVE_BYTES_PER_SOURCE_BYTE)
  }

  /** A build's plan from its package graph, costed by history, else by source size. */
  plan (packages: GraphPackage[]): Plan {
    return new Plan(packages, pkg => this.history.get(pkg.p) ?? this.estimate(pkg.b))
  }

  /**
   * Expected compile time of one compile: history, else the plan's source size, else the size
   * of the .go files on its command line (a few stats; only for packages outside the graph).
   */
  async expectedMs (importPath: string, plan: Plan | undefined, sources: () => string[]): Promise<number> {
    const known = this.history.get(importPath)
    if (known !== undefined) return known
    const pkg = plan?.package(importPath)
    if (pkg !== undefined) return this.estimate(pkg.b)
    let bytes = 0
    for (const file of sources()) bytes += await stat(file).then(s => s.size, () => 0)
    return this.estimate(bytes)
  }

  /**
   * A compile finished in `ms`, here or on a peer. Only this host's times enter the history
   * (and, with `sourceBytes` from the plan, calibrate the size model): an expected time is this
   * host's, the measure of a peer's ratio (remote.ts), of when a task is overdue and of what is
   * too small to ship. A peer's figure is another machine's, on its word: mixed in, a peer three
   * times faster drifted toward a ratio of 1 on the packages it usually took, and one that said
   * 0 ms halved a package's expected time each build. A package compiled only on peers keeps
   * its size estimate, scaled by this host's own times.
   */
  record (importPath: string, ms: number, where: 'here' | 'peer', sourceBytes?: number): void {
    if (where === 'peer') return
    this.history.record(importPath, ms)
    if (sourceBytes === undefined) return
    this.scaleSums.actual = this.scaleSums.actual * SCALE_DECAY + ms
    this.scaleSums.estimated = this.scaleSums.estimated * SCALE_DECAY + estimateMs(sourceBytes)
  }
}
