/**
 * Requester side of remote compiles: decides, for each compile the shim hands the node,
 * whether to offer it to a peer, picks the peer, ships the task and writes the outputs where
 * cmd/go expects them. Any failure (refusal, error, timeout, a peer that vanishes) returns a
 * reason and the compile runs locally: a peer costs time, never correctness.
 *
 * Policy (`--offload`): `never`; `busy` (default) offers a compile only while every local slot
 * is taken; `always` offers every compile it can (tests, and machines that should stay cool).
 * Peers are eligible when their advert accepts work, has a free slot, and shows the same
 * compiler and canary as ours; a peer that failed recently is skipped for a while.
 */
import { writeFile } from 'node:fs/promises'
import type { Libp2p } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import { GridError, type Advert, type ToolchainInfo } from '@grid/protocol'
import { logger } from '../log.js'
import { BLOB_BATCH_BYTES, BUSY, COMPILE_PROTOCOL, MAX_COMPILE_MESSAGE_BYTES, REMOTE_BASE_MS, REMOTE_PER_INPUT_MB_MS } from './constants.js'
import { parseCompileArgs } from './parse.js'
import { isGoArchive } from './archive.js'
import { buildTask, type PreparedTask } from './task-builder.js'
import { decodeCompileMessage, packr, type CompileMessage } from './wire.js'

const log = logger('grid:remote')

export type Offload = 'never' | 'busy' | 'always'
export const OFFLOAD_POLICIES: readonly Offload[] = ['never', 'busy', 'always']

/** A peer that failed is not offered work for this long. */
const PENALTY_MS = 30_000
/** Peers tried for one compile before it runs locally. */
const MAX_ATTEMPTS = 2


export interface RemoteInit {
  libp2p: Libp2p
  offload: Offload
  /** connected members with their adverts */
  peers: () => Array<{ peerId: string, advert: Advert }>
  isUntrusted: (peerId: string) => boolean
  own: () => ToolchainInfo | undefined
}

export interface RemoteRequest { args: string[], cwd: string, env: Record<string, string>, importPath: string, goroot: string }
export type RemoteOutcome =
  | { ok: true, peer: string, output: Buffer, transferMs: number, compileMs: number }
  | { ok: false, reason: string }

export class RemoteCompiler {
  private readonly init: RemoteInit
  private readonly inFlight = new Map<string, number>()
  private readonly penalty = new Map<string, number>()
  readonly scores = new Map<string, { ok: number, failed: number }>()

  constructor (init: RemoteInit) {
    this.init = init
  }

  /** Whether to try a peer for this compile, given how busy the local pool is. */
  wants (localBusy: boolean): boolean {
    return this.init.offload === 'always' || (this.init.offload === 'busy' && localBusy)
  }

  /** Free remote slots right now (for sizing go's -p). */
  capacity (): number {
    return this.eligible().reduce((n, p) => n + p.free, 0)
  }

  async compile (req: RemoteRequest, signal: AbortSignal): Promise<RemoteOutcome> {
    const own = this.init.own()
    if (own === undefined) return { ok: false, reason: 'toolchain-unknown' }
    const candidates = this.eligible()
    if (candidates.length === 0) return { ok: false, reason: this.init.peers().length === 0 ? 'no-peers' : 'peers-busy' }
    const parsed = parseCompileArgs(req.args, req.cwd)
    if ('unsupported' in parsed) return { ok: false, reason: 'unsupported-task' }
    const prepared = await buildTask(parsed, req.env, own.compiler, req.goroot).catch((err: Error) => ({ unsupported: err.message }))
    if ('unsupported' in prepared) return { ok: false, reason: 'unsupported-task' }
    // Adverts lag a little behind a peer's slots: a busy refusal (one round trip, no inputs
    // sent) moves on to the next candidate without holding it against the peer.
    for (const { peerId: peer } of candidates.slice(0, MAX_ATTEMPTS)) {
      const outcome = await this.attempt(peer, req, prepared, signal)
      if (outcome !== 'busy') return outcome
    }
    return { ok: false, reason: 'peers-busy' }
  }

  private async attempt (peer: string, req: RemoteRequest, prepared: PreparedTask, signal: AbortSignal): Promise<RemoteOutcome | 'busy'> {
    this.inFlight.set(peer, (this.inFlight.get(peer) ?? 0) + 1)
    const score = this.scores.get(peer) ?? { ok: 0, failed: 0 }
    this.scores.set(peer, score)
    try {
      const result = await this.run(peer, prepared, signal)
      if (result.exitCode !== 0 || result.output.length > 0) {
        // Diagnostics name sandbox paths that cmd/go cannot shorten: let the local compile
        // print them exactly as plain go build would.
        return { ok: false, reason: 'remote-diagnostics' }
      }
      if (result.archive === null || !isGoArchive(Buffer.from(result.archive))) throw new GridError('GRID_ERR_MESSAGE_INVALID', `${peer} returned something that is not a Go package archive`)
      if (signal.aborted) throw new GridError('GRID_ERR_CANCELLED', 'the requester went away')
      if (prepared.asmhdr !== undefined && result.asmhdr === null) throw new GridError('GRID_ERR_MESSAGE_INVALID', `${peer} returned no go_asm.h`)
      await writeFile(prepared.out, result.archive)
      if (prepared.asmhdr !== undefined && result.asmhdr !== null) await writeFile(prepared.asmhdr, result.asmhdr)
      score.ok++
      return { ok: true, peer, output: Buffer.alloc(0), transferMs: result.transferMs, compileMs: result.compileMs }
    } catch (err) {
      if ((err as Error).message.includes(BUSY)) return 'busy'
      score.failed++
      this.penalty.set(peer, Date.now() + PENALTY_MS)
      log.info(`remote compile of ${req.importPath} on ${peer} failed (${(err as Error).message}); compiling locally`)
      return { ok: false, reason: 'peer-error' }
    } finally {
      this.inFlight.set(peer, (this.inFlight.get(peer) ?? 1) - 1)
    }
  }

  /** Peers that could take a compile now, best first (most free slots, then lowest load). */
  private eligible (): Array<{ peerId: string, free: number, load: number }> {
    const own = this.init.own()
    if (own === undefined) return []
    const now = Date.now()
    return this.init.peers().flatMap(({ peerId, advert }) => {
      if (!advert.accepting || this.init.isUntrusted(peerId) || (this.penalty.get(peerId) ?? 0) > now) return []
      const tc = advert.toolchains.find(t => t.compiler === own.compiler && t.canary === own.canary && t.experiment === own.experiment)
      if (tc === undefined) return []
      // Our own tasks on it are in its advert too once it re-advertises; bound by its total.
      const mine = this.inFlight.get(peerId) ?? 0
      const free = Math.min(advert.slots.total - mine, Math.max(advert.slots.free, advert.slots.total - mine))
      return free > 0 && (advert.slots.free > 0 || mine > 0) ? [{ peerId, free, load: advert.load }] : []
    }).sort((a, b) => b.free - a.free || a.load - b.load)
  }

  private async run (peer: string, prepared: PreparedTask, signal: AbortSignal): Promise<Extract<CompileMessage, { type: 'result' }> & { transferMs: number }> {
    const deadline = AbortSignal.any([signal, AbortSignal.timeout(Math.round(REMOTE_BASE_MS + (prepared.inputBytes / 1e6) * REMOTE_PER_INPUT_MB_MS))])
    const started = performance.now()
    const stream = await this.init.libp2p.dialProtocol(peerIdFromString(peer), COMPILE_PROTOCOL, { signal: deadline })
    const lp = lpStream(stream, { maxDataLength: MAX_COMPILE_MESSAGE_BYTES, maxBufferSize: MAX_COMPILE_MESSAGE_BYTES * 2 })
    const read = async (): Promise<CompileMessage> => decodeCompileMessage((await lp.read({ signal: deadline })).subarray(), peer)
    try {
      await lp.write(packr.pack({ type: 'offer', task: prepared.task }), { signal: deadline })
      const need = await read()
      if (need.type === 'fail') throw new GridError('GRID_ERR_TASK_REFUSED', `${peer}: ${need.message}`, { transient: true })
      if (need.type !== 'need') throw new GridError('GRID_ERR_MESSAGE_INVALID', `${peer} answered an offer with ${need.type}`)
      let batch: Array<{ sha256: string, data: Uint8Array }> = []
      let bytes = 0
      for (const sha256 of need.hashes) {
        const data = prepared.blobs.get(sha256)
        if (data === undefined) throw new GridError('GRID_ERR_MESSAGE_INVALID', `${peer} asked for an input the task does not have`)
        batch.push({ sha256, data })
        bytes += data.length
        if (bytes >= BLOB_BATCH_BYTES) { await lp.write(packr.pack({ type: 'blobs', items: batch }), { signal: deadline }); batch = []; bytes = 0 }
      }
      if (batch.length > 0) await lp.write(packr.pack({ type: 'blobs', items: batch }), { signal: deadline })
      await lp.write(packr.pack({ type: 'done' }), { signal: deadline })
      const result = await read()
      if (result.type === 'fail') throw new GridError('GRID_ERR_TASK_REFUSED', `${peer}: ${result.message}`, { transient: true })
      if (result.type !== 'result') throw new GridError('GRID_ERR_MESSAGE_INVALID', `${peer} answered with ${result.type}`)
      await stream.close().catch(() => {})
      return { ...result, transferMs: performance.now() - started - result.compileMs }
    } catch (err) {
      stream.abort(err as Error)
      throw err
    }
  }
}
