/**
 * Execution of a compile the scheduler placed on a peer. The task goes to the best candidate
 * (a busy refusal moves on to the next, once). If it is overdue (scheduler.ts `overdueMs`), it
 * is raced: a local copy joins the local queue at the task's priority, and a second peer takes
 * a speculative duplicate if one has a free slot. The first good result wins and the others
 * are cancelled; only the winner writes where cmd/go expects the outputs (a local copy writes
 * beside them and is renamed into place), so a loser can never leave half a file. A local
 * copy's result is final whatever its exit status: it is exactly what cmd/go would have run.
 * When every contender has failed, the reason goes back and the compile runs locally.
 *
 * A peer whose compile failed or printed something (`remote-diagnostics`) is believed only
 * until the same compile runs here: compiles are deterministic, so when the local run (a race's
 * local copy, or the rerun that the diagnostics call for, `rerun`) exits 0 and prints nothing,
 * the peer lied and is scored and set aside like a failing one (RemoteCompiler.disproved).
 * Otherwise a peer could fail every task it is given, never be scored down, and keep getting them.
 */
import { randomBytes } from 'node:crypto'
import { renameSync, writeFileSync } from 'node:fs'
import { rename, rm } from 'node:fs/promises'
import { logger } from '../log.js'
import type { Attempt, PreparedTask, RemoteCompiler, RemoteRequest } from '../remote/index.js'
import { redirectOutputs } from '../remote/parse.js'
import { taskBytes } from '../remote/task-builder.js'
import type { CompileJob, CompileOutcome, LocalPool, Rank } from '../worker/index.js'
import { overdueMs, type LocalReason } from './scheduler.js'
import { DEADLINE_OVER_RACE, FASTER_PEER, LONG_POLE_LINK_SHARE, LONG_POLE_MS } from './constants.js'

const log = logger('grid:scheduler')

/** Candidates tried in turn when the first refuses as busy (adverts lag a little behind slots). */
const MAX_ATTEMPTS = 2

export interface DispatchRequest extends RemoteRequest { tool: string }

export interface Races { local: boolean, duplicate: boolean }

export type DispatchOutcome = (
  | { done: true, by: 'remote', exitCode: 0, output: Buffer, peer: string, transferMs: number, compileMs: number, overheadMs: number, duplicate: boolean }
  | { done: true, by: 'local', exitCode: number, output: Buffer, runMs: number }
  /** `suspects`: peers that said the compile failed or printed, for `rerun` to check */
  | { done: false, reason: LocalReason, suspects?: string[] }
) & { races: Races }

type Contender =
  | Attempt & { duplicate: boolean }
  | { ok: true, local: true, exitCode: number, output: Buffer, runMs: number, tmp: Outputs }
  | { ok: false, local: true, reason: 'cancelled' }

type Win = Extract<Contender, { ok: true }>

interface Outputs { out: string, asmhdr: string | undefined }

export interface DispatcherInit {
  pool: LocalPool
  remote: () => RemoteCompiler | undefined
}

export class Dispatcher {
  private readonly init: DispatcherInit
  /** Compiles between choosing to go remote and their first attempt: slots they will take. */
  preparing = 0

  constructor (init: DispatcherInit) {
    this.init = init
  }

  async compile (req: DispatchRequest, expectedMs: number, priority: Rank, signal: AbortSignal): Promise<DispatchOutcome> {
    const started = performance.now()
    const races: Races = { local: false, duplicate: false }
    const remote = this.init.remote()
    if (remote === undefined) return { done: false, reason: 'no-peers', races }
    remote.probeLinks() // a peer that joined since the build began (remote/link.ts)
    // Preparing reads and hashes every input: not for a compile no peer could take.
    if (remote.candidates().length === 0) return { done: false, reason: remote.whyNone(), races }
    // A long pole is placed by what its best peer's link costs: measured when the build began, a
    // few ms on a LAN, ~2 s on 10 Mbit/s.
    const longPole = expectedMs >= LONG_POLE_MS
    // Counted from here (node.ts `steal` takes no more from the backlog than the peers' free
    // slots less these): while a long pole waits for its best peer's link probe (up to 4 s),
    // leaves taken from the backlog meanwhile took the peer's slot first.
    this.preparing++
    let prepared: Awaited<ReturnType<RemoteCompiler['prepare']>>
    try {
      if (longPole) await remote.linkOfBest(signal)
      prepared = await remote.prepare(req)
    } finally {
      this.preparing-- // its first attempt (below, in this same turn) now counts as the peer's
    }
    const preparedAt = performance.now()
    if ('reason' in prepared) return { done: false, reason: prepared.reason, races }
    // A long pole stays for a local slot when the free peers are predicted clearly slower, with
    // the bytes of this task (place() asks only while a local slot is free, and without them;
    // this also covers a compile placed while the slot was taken, and one the backlog offers a
    // freed peer). In the lab a helper on 10 Mbit/s Wi-Fi took runtime, net and net/http that
    // way: ~20 s each to move, against 4-10 s here.
    const bytes = taskBytes(prepared)
    if (longPole) {
      const peerMs = remote.predictMs(expectedMs, bytes)
      if ((peerMs !== undefined && peerMs * FASTER_PEER >= expectedMs) || remote.linkMs(bytes) > LONG_POLE_LINK_SHARE * expectedMs) {
        return { done: false, reason: 'peers-slower', races }
      }
    }
    const first = remote.candidates()
    if (first.length === 0) return { done: false, reason: remote.whyNone(), races }
    const linkMs = remote.linkMs(bytes) // over the first candidate's link
    const overdue = overdueMs(expectedMs, prepared.inputBytes, linkMs)
    // no attempt's deadline ends it before its race could begin (the archive's way back counted too)
    const notBefore = DEADLINE_OVER_RACE * overdueMs(expectedMs, bytes.inputs + bytes.archive, linkMs)

    const race = new AbortController()
    const cancel = (): void => race.abort()
    signal.addEventListener('abort', cancel, { once: true })
    if (signal.aborted) race.abort()
    const tried = new Set<string>()
    const diagnosed = new Set<string>() // peers whose compile failed or printed
    const primary = { peer: '', since: 0 } // the peer the first contender is waiting on, since when
    const winner = await new Promise<Win | LocalReason>(resolve => {
      let pending = 0
      let failure: LocalReason | undefined
      let settled = false
      const contend = (p: Promise<Contender>): void => {
        pending++
        // None rejects by design; one that did anyway must not leave the compile waiting forever
        // (its shim, kept alive by compile-wait, would never fall back): it counts as withdrawn.
        void p.catch((err: unknown): Contender => {
          log.warn(`${req.importPath}: a contender for its compile failed: ${(err as Error).message}`)
          return { ok: false, local: true, reason: 'cancelled' }
        }).then(c => {
          pending--
          if (settled) return
          if (c.ok) { settled = true; resolve(c); return }
          if (!('local' in c) && c.reason === 'remote-diagnostics') diagnosed.add(c.peer)
          if (!('local' in c)) failure ??= c.reason === 'busy' ? 'peers-busy' : c.reason === 'incompatible' ? 'no-capable-peer' : c.reason === 'cancelled' ? 'peer-error' : c.reason
          if (pending === 0) { settled = true; resolve(failure ?? 'peer-error') }
        })
      }
      contend(this.primary(remote, first.map(c => c.peerId), prepared, expectedMs, notBefore, race.signal, tried, primary))
      const timer = setTimeout(() => {
        if (settled) return
        log.debug(`${req.importPath} overdue on ${[...tried].join(', ')}: racing`)
        races.local = true
        contend(this.localCopy(req, prepared, priority, race.signal))
        const spare = remote.candidates().find(c => !tried.has(c.peerId))
        if (spare !== undefined) {
          races.duplicate = true
          tried.add(spare.peerId)
          contend(remote.attempt(spare.peerId, prepared, race.signal, expectedMs, notBefore).then(a => ({ ...a, duplicate: true })))
        }
      }, overdue)
      race.signal.addEventListener('abort', () => clearTimeout(timer), { once: true })
    })
    race.abort() // the losers stop here
    signal.removeEventListener('abort', cancel)
    const primaryWon = typeof winner !== 'string' && !('local' in winner) && !winner.duplicate
    // the peer the primary still waits on was late, unless it is the one whose result won, or
    // it was given the task after the race began (another refused it as busy) and has not had
    // the overdue time itself: it is scored by the time since it was given the task
    const waitedMs = performance.now() - primary.since
    const late = primary.peer !== '' && waitedMs >= overdue && (typeof winner === 'string' || 'local' in winner || winner.peer !== primary.peer)
    if (races.local && !primaryWon && !signal.aborted && late) remote.overdue(primary.peer, req.importPath, waitedMs, expectedMs)
    if (typeof winner === 'string') return { done: false, reason: winner, races, ...(diagnosed.size > 0 ? { suspects: [...diagnosed] } : {}) }
    if ('local' in winner) {
      if (winner.exitCode === 0 && winner.output.length === 0 && diagnosed.size > 0) remote.disproved(diagnosed, req.importPath)
      // a local copy's result is what cmd/go would have got: keep it, failed or not (unless
      // the shim has gone, and may be writing the same outputs itself)
      if (winner.exitCode === 0 && !signal.aborted) await this.place(winner.tmp, prepared)
      else await removeOutputs(winner.tmp)
      return { done: true, by: 'local', exitCode: winner.exitCode, output: winner.output, runMs: winner.runMs, races }
    }
    if (signal.aborted) return { done: false, reason: 'peer-error', races }
    const wonAt = performance.now()
    this.write(winner.archive, winner.asmhdr, prepared)
    if (log.debugEnabled) log.debug(`${req.importPath}: prepared in ${(preparedAt - started).toFixed(1)} ms, remote ${(wonAt - preparedAt).toFixed(1)} ms ` +
      `(attempt ${winner.wallMs.toFixed(1)} ms), written in ${(performance.now() - wonAt).toFixed(1)} ms`)
    return {
      done: true,
      by: 'remote',
      exitCode: 0,
      output: Buffer.alloc(0),
      peer: winner.peer,
      transferMs: winner.transferMs,
      compileMs: winner.compileMs,
      // everything but the compile itself: preparing, shipping, waiting, writing back
      overheadMs: Math.max(0, performance.now() - started - winner.compileMs),
      duplicate: winner.duplicate,
      races
    }
  }

  /**
   * The local run of a compile that `suspects` said failed or printed something (a dispatch
   * outcome's `suspects`): its outcome is what cmd/go gets, and when it is clean they lied.
   * The caller needs the output to tell (a compile the shim runs itself reports only its exit).
   */
  async rerun (job: CompileJob, suspects: string[], importPath: string, options: { signal: AbortSignal, priority: Rank }): Promise<CompileOutcome> {
    const outcome = await this.init.pool.run(job, options)
    if (outcome.exitCode === 0 && outcome.output.length === 0) this.init.remote()?.disproved(suspects, importPath)
    return outcome
  }

  /**
   * The first candidates in turn, moving on only when one refuses as busy or is of another grid
   * version, at most MAX_ATTEMPTS of them. A peer in `tried` is skipped: a retry after the race
   * began must not land on the peer already running the speculative duplicate.
   */
  private async primary (remote: RemoteCompiler, peers: string[], prepared: PreparedTask, expectedMs: number, notBefore: number, signal: AbortSignal, tried: Set<string>, current: { peer: string, since: number }): Promise<Contender> {
    let last: Attempt | undefined
    for (const peer of peers.slice(0, MAX_ATTEMPTS)) {
      if (tried.has(peer)) continue
      tried.add(peer)
      current.peer = peer
      current.since = performance.now()
      last = await remote.attempt(peer, prepared, signal, expectedMs, notBefore)
      if (last.ok || (last.reason !== 'busy' && last.reason !== 'incompatible')) break
    }
    current.peer = '' // settled: whatever it was, the attempt has already been scored
    return { ...(last as Attempt), duplicate: false }
  }

  /** The same compile in the local pool, writing beside cmd/go's outputs. */
  private async localCopy (req: DispatchRequest, prepared: PreparedTask, priority: Rank, signal: AbortSignal): Promise<Contender> {
    const suffix = `.grid-race-${randomBytes(4).toString('hex')}`
    const tmp: Outputs = { out: prepared.out + suffix, asmhdr: prepared.asmhdr === undefined ? undefined : prepared.asmhdr + suffix }
    try {
      const outcome = await this.init.pool.run({ tool: req.tool, args: redirectOutputs(req.args, tmp), cwd: req.cwd, env: req.env }, { signal, priority })
      return { ok: true, local: true, exitCode: outcome.exitCode, output: outcome.output, runMs: outcome.runMs, tmp }
    } catch {
      await removeOutputs(tmp)
      return { ok: false, local: true, reason: 'cancelled' }
    }
  }

  private async place (tmp: Outputs, prepared: PreparedTask): Promise<void> {
    if (tmp.asmhdr !== undefined && prepared.asmhdr !== undefined) await rename(tmp.asmhdr, prepared.asmhdr)
    await rename(tmp.out, prepared.out)
  }

  /**
   * A remote winner's outputs, each written beside its place and renamed into it. Synchronous,
   * like reading the inputs (remote/task-builder.ts): one archive into the page cache costs
   * less than four trips through the thread pool on a busy requester.
   */
  private write (archive: Uint8Array, asmhdr: Uint8Array | null, prepared: PreparedTask): void {
    const suffix = `.grid-${randomBytes(4).toString('hex')}`
    if (prepared.asmhdr !== undefined && asmhdr !== null) {
      writeFileSync(prepared.asmhdr + suffix, asmhdr)
      renameSync(prepared.asmhdr + suffix, prepared.asmhdr)
    }
    writeFileSync(prepared.out + suffix, archive)
    renameSync(prepared.out + suffix, prepared.out)
  }
}

async function removeOutputs (tmp: Outputs): Promise<void> {
  await rm(tmp.out, { force: true })
  if (tmp.asmhdr !== undefined) await rm(tmp.asmhdr, { force: true })
}
