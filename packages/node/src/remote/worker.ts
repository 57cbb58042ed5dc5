/**
 * The worker: runs compile tasks for peers. It never executes a command line it was sent: it
 * validates the typed task (flags from an allow-list, clean absolute paths, size caps, its own
 * toolchain), receives the inputs it lacks (asked for by sha256, or sent with an eager offer
 * when they are the task's own; each checked on arrival), materialises them under a per-task
 * sandbox, builds the compile command itself with the relocation recipe, runs it in its pool at
 * low priority with a timeout, and returns the outputs. Nothing is written outside
 * `<cache>/worker/`.
 *
 * Identical tasks share one compile. Once a task's inputs are all here the worker computes its
 * task key (packages/protocol/src/task.ts: the compiler, env, flags, the paths the compiler
 * records, and the content of every input; not the requester's own paths). A task whose key
 * matches a compile already running here joins it: it waits for that compile's result, which
 * is path-independent (the archive is built in a sandbox with relocation), and takes no slot.
 * The compile belongs to no requester: it runs until it finishes, however many of its
 * requesters go away, and is cancelled only when every one of them has (STYLE.md). Its sandbox
 * and slot are released when it ends.
 *
 * Slots are checked at offer time, before any input the worker asks for moves (an eager offer's
 * inputs come with it and are stored either way: content-addressed, within the task's caps, and
 * what that requester's next task here needs). With every slot taken, a task is
 * still let through if a running compile has its offer key (the part of the key the offer
 * alone fixes: compiler, env, flags with cmd/go's action ID, recorded source paths and hashes)
 * and the worker lacks none of its inputs but the importcfg and embedcfg: a true duplicate
 * lacks only those, since they name requester paths; its sources and export data arrived with
 * the first requester. Such a task may only join: if its full key matches nothing running once
 * those two arrive, it is refused as busy, as it would have been at the offer, and the
 * requester tries another peer. The wire is unchanged.
 */
import { randomBytes } from 'node:crypto'
import { readFileSync, statfsSync } from 'node:fs'
import { join } from 'node:path'
import type { Libp2p, Stream } from '@libp2p/interface'
import {
  GridError, PACKING, errorCode, formatEmbedcfg, formatImportcfg, parseEmbedcfg, parseImportcfg, taskKey, taskOfferKey, validateTask,
  type CompileTask, type Embedcfg, type Importcfg
} from '@grid/protocol'
import { logger } from '../log.js'
import { pack, unpack } from '../pack.js'
import { ByteBudget, SharedBudget } from '../budget.js'
import { deadline } from '../signals.js'
import { compilerStamp } from '../toolchain/index.js'
import type { LocalPool } from '../worker/index.js'
import { BUSY, COMPILE_PROTOCOL, DISK_FULL, INPUTS_DIR, MAX_COMPILE_MESSAGE_BYTES, RESULT_SEND_BASE_MS, RESULT_SEND_BYTES_PER_MS, STREAM_IDLE_MS, WORKER_FULL_WARN_MS, WORKER_MIN_FREE_BYTES, WORKER_NICE, WORKER_READ_BUDGET_BYTES, WORKER_READ_SHARE_BYTES, WORKER_ROOM_CHECK_MS, WORKER_TASK_TIMEOUT_MS, WORKER_UNPACK_BUDGET_BYTES, WORKER_UNPACK_SHARE_BYTES } from './constants.js'
import { withCgoSection } from './archive.js'
import { InputStore } from './inputs.js'
import { MeteredStream, type Metered } from './metered.js'
import { relocatedTrimpath } from './parse.js'
import { Sandboxes, type Sandbox } from './sandbox.js'
import { inputDirs } from './task-builder.js'
import { decodeCompileMessage, packr, type CompileMessage } from './wire.js'

const log = logger('grid:worker')
const FAULT = process.env.GRID_TEST_FAULT ?? ''

export type CompileResult = Extract<CompileMessage, { type: 'result' }>

export interface WorkerInit {
  libp2p: Libp2p
  /** `<cache>/worker`: blob store and sandboxes */
  dir: string
  pool: LocalPool
  /** address space each task's compile may use (`ulimit -v`) */
  memoryBytes: number
  /** this node's toolchain, once probed: its `-V=full`, GOROOT, and the compiler binary it was probed from (path and stamp) */
  toolchain: () => { compiler: string, goroot: string, tool: string, stamp: string } | undefined
  /** the compiler binary is no longer the one probed: the node probes it again */
  changed?: () => void
  /** whether the node takes remote work now (its --accept-remote policy and load) */
  accepting: () => boolean
  /** free bytes below which the worker refuses tasks (WORKER_MIN_FREE_BYTES; tests raise it) */
  minFreeBytes?: number
  /** bytes of compile messages read at once, from every stream (WORKER_READ_BUDGET_BYTES; tests set a small one) */
  readBudgetBytes?: number
  /** what one peer's messages may hold of them (WORKER_READ_SHARE_BYTES, or the budget if smaller) */
  readShareBytes?: number
  /** bytes of inputs that came packed, unpacked at once (WORKER_UNPACK_BUDGET_BYTES; tests set a small one) */
  unpackBudgetBytes?: number
  /** what one peer's unpacked inputs may hold of them (WORKER_UNPACK_SHARE_BYTES, or the budget if smaller) */
  unpackShareBytes?: number
  /** how long a requester has to take an answer, beyond its size's time (RESULT_SEND_BASE_MS; tests set a short one) */
  sendBaseMs?: number
}

export interface ExecuteOptions {
  /** the requester, for logs and refusals */
  peer: string
  /** the requester went away or its deadline passed: stop waiting (the compile stops once no one waits) */
  signal: AbortSignal
  /** admitted with every slot taken: join a running compile or be refused as busy */
  joinOnly?: boolean
  /** called once the task has joined a compile or started one (which then holds or waits for its slot): its reservation ends (`admit`) */
  started?: () => void
}

/** A message read within the read budget, decoded; its bytes are given back to the budget at once. */
function decoded (message: Metered, peer: string): CompileMessage {
  try {
    return decodeCompileMessage(message.bytes, peer)
  } finally {
    message.release()
  }
}

/** The configs of a task, parsed once: the key is computed from them and the sandbox gets them. */
interface TaskConfigs { importcfg: Importcfg | undefined, embedcfg: Embedcfg | undefined }

/** One compile and the requesters waiting for it. */
interface Job {
  key: string
  offerKey: string
  importPath: string
  waiters: number
  settled: boolean
  controller: AbortController
  result: Promise<CompileResult>
}

export class Worker {
  private readonly init: WorkerInit
  /** compiles running or waiting for a slot, by task key */
  private readonly jobs = new Map<string, Job>()
  /** tasks let in on a free slot whose compile has not started yet (`admit`): their slots are spoken for */
  private reserved = 0
  private readonly sandboxes: Sandboxes
  /** the inputs peers sent, by content (inputs.ts) */
  readonly inputs: InputStore
  /** the compile messages being read or handled now, from every peer, at most a share of them each peer's (metered.ts) */
  readonly reading: SharedBudget
  /** the inputs that came packed, unpacked and held until stored (each message's beside its packed bytes, which `reading` holds), at most a share of them each peer's */
  readonly unpacking: SharedBudget
  /**
   * ran: compiles run; shared: tasks that joined a running compile instead; packed: archives sent
   * back packed; unpacked: tasks some of whose inputs came packed
   */
  readonly stats = { ran: 0, shared: 0, refused: 0, failed: 0, packed: 0, unpacked: 0 }
  /** The last look at the disk's free space: whether there was room, and when */
  private room = { ok: true, at: 0, warnedAt: 0 }

  /** Compiles running for peers now (or about to, waiting for their slot). */
  get compiles (): number {
    return this.jobs.size
  }

  constructor (init: WorkerInit) {
    this.init = init
    this.sandboxes = new Sandboxes(join(init.dir, 'tasks'))
    this.inputs = new InputStore(join(init.dir, INPUTS_DIR))
    const budget = new ByteBudget(init.readBudgetBytes ?? WORKER_READ_BUDGET_BYTES)
    this.reading = new SharedBudget(budget, Math.min(init.readShareBytes ?? WORKER_READ_SHARE_BYTES, budget.limit))
    const unpacked = new ByteBudget(init.unpackBudgetBytes ?? WORKER_UNPACK_BUDGET_BYTES)
    this.unpacking = new SharedBudget(unpacked, Math.min(init.unpackShareBytes ?? WORKER_UNPACK_SHARE_BYTES, unpacked.limit))
  }

  async start (): Promise<void> {
    await this.sandboxes.reset()
    await this.inputs.start()
    await this.init.libp2p.handle(COMPILE_PROTOCOL, (stream: Stream, connection: { remotePeer: { toString: () => string } }) => {
      void this.serve(stream, connection.remotePeer.toString())
    }, { maxInboundStreams: 64 })
  }

  async stop (): Promise<void> {
    await this.init.libp2p.unhandle(COMPILE_PROTOCOL).catch(() => {})
    await this.inputs.stop()
  }

  /**
   * The stream adapter: offer → need → blobs, done → result | fail, then the next offer on the
   * same stream. A requester keeps a stream for its next task to this worker (no dial, no
   * protocol negotiation); the stream ends when the requester closes it, after STREAM_IDLE_MS
   * without an offer, or after a failure that leaves it mid-task.
   */
  private async serve (stream: Stream, peer: string): Promise<void> {
    const wire = new MeteredStream(stream, async (bytes, signal) => await this.reading.take(peer, bytes, signal), MAX_COMPILE_MESSAGE_BYTES, peer)
    // A requester that resets the stream or loses its connection stops waiting at once.
    const gone = new AbortController()
    const onClose = (): void => { gone.abort(new GridError('GRID_ERR_CANCELLED', `${peer} went away`)) }
    stream.addEventListener('close', onClose, { once: true })
    try {
      for (;;) {
        let first: Metered
        const idle = deadline(STREAM_IDLE_MS, gone.signal)
        try {
          first = await wire.read(idle.signal)
        } catch {
          break // closed by the requester, gone, idle, or a length over the cap
        } finally {
          idle.done()
        }
        if (!await this.task(first, wire, peer, gone.signal)) break
      }
    } finally {
      stream.removeEventListener('close', onClose)
      // close waits for the requester to take what is still queued (RESULT_SEND_BASE_MS)
      const closing = deadline(this.init.sendBaseMs ?? RESULT_SEND_BASE_MS)
      await stream.close({ signal: closing.signal }).catch(() => stream.abort(new GridError('GRID_ERR_CANCELLED', 'compile stream closed')))
      closing.done()
    }
  }

  /**
   * One task, from its offer (`first`) to its result or failure. Returns whether the stream is
   * between tasks again and may carry the next one: after a result, or a refusal of the offer
   * itself (the requester sends nothing more for it); not after a failure mid-task.
   */
  private async task (first: Metered, wire: MeteredStream, peer: string, gone: AbortSignal): Promise<boolean> {
    const timed = deadline(WORKER_TASK_TIMEOUT_MS, gone)
    const signal = timed.signal
    const read = async (): Promise<Metered> => await wire.read(signal)
    // A requester that reads nothing more grants no window: each answer has its size's time
    // (RESULT_SEND_BASE_MS), then the stream is reset rather than hold its bytes here for good.
    const send = async (m: CompileMessage): Promise<void> => {
      const bytes = packr.pack(m)
      const ms = Math.round((this.init.sendBaseMs ?? RESULT_SEND_BASE_MS) + bytes.byteLength / RESULT_SEND_BYTES_PER_MS)
      const taken = deadline(ms, gone)
      try {
        await wire.write(bytes, taken.signal)
      } catch (err) {
        const untaken = new GridError('GRID_ERR_CANCELLED', `${peer} did not take an answer of ${bytes.byteLength} bytes within ${ms} ms`, { cause: err })
        wire.abort(untaken)
        throw gone.aborted ? err : untaken
      } finally {
        taken.done()
      }
    }
    let between = true // nothing more of this task is on its way from the requester
    let unpacked = 0 // inputs that came packed
    let reservation: (() => void) | undefined // ends this task's hold on a free slot (`admit`)
    try {
      // the offer's bytes are given back once decoded: a task's fields are strings, copied out
      const offer = decoded(first, peer)
      if (offer.type !== 'offer') { between = false; throw new GridError('GRID_ERR_TASK_REFUSED', `expected an offer, got ${offer.type}`) }
      if (offer.eager === true) between = false // its inputs and `done` are on their way
      const task = this.check(offer.task, peer)
      if (offer.eager === true) {
        // inputs sent with the offer: any of the task's, none twice (checked like any input)
        unpacked += await this.receiveInputs(read, peer, task, new Set(task.files.map(f => f.sha256)), 'is not one of the task\'s inputs, or came twice', signal)
        between = true
      }
      const joinOnly = this.admit(task)
      if (!joinOnly) {
        // the slot stays this task's while its inputs come (`admit`), until its compile starts or it ends
        let held = true
        reservation = () => { if (held) { held = false; this.reserved-- } }
      }
      const need = await this.missing(task)
      if (joinOnly && !this.onlyConfigs(task, need)) throw new GridError('GRID_ERR_TASK_REFUSED', BUSY)
      if (offer.eager !== true || need.length > 0) {
        await send({ type: 'need', hashes: need })
        between = false
        const wanted = new Set(need)
        unpacked += await this.receiveInputs(read, peer, task, wanted, 'was not asked for', signal)
        between = true
        if (wanted.size > 0) throw new GridError('GRID_ERR_TASK_REFUSED', `${wanted.size} inputs were never sent`)
      }
      if (unpacked > 0) this.stats.unpacked++
      const result = await this.execute(task, { peer, signal, joinOnly, ...(reservation === undefined ? {} : { started: reservation }) })
      // Test-only misbehaviour (GRID_TEST_FAULT), to show a requester survives such peers.
      if (FAULT === 'worker-hang') await new Promise(resolve => setTimeout(resolve, WORKER_TASK_TIMEOUT_MS))
      if (FAULT === 'worker-garbage' && result.archive !== null) result.archive = randomBytes(result.archive.length)
      if (FAULT === 'worker-cgo-ldflag' && result.archive !== null) {
        result.archive = withCgoSection(Buffer.from(result.archive), [['cgo_ldflag', '-wrapper'], ['cgo_ldflag', '/bin/sh,-c,exit 1']])
      }
      // The requester's probe found the link slow (../pack.ts). A new object: a compile two
      // requesters share hands both the same result. Its length unpacked goes with it: the room
      // the requester takes before it unpacks.
      const archive = result.archive
      const packed = offer.pack === PACKING && archive !== null ? await pack(archive) : undefined
      if (packed !== undefined) this.stats.packed++
      await send(packed === undefined ? result : { ...result, archive: packed, packed: PACKING, archiveSize: (archive as Uint8Array).byteLength })
      return true
    } catch (caught) {
      let err = caught
      if (isDiskFull(caught)) {
        // an input or sandbox file the disk would not take (full, or gone read-only)
        this.hasRoom(true) // the next offers are refused before their inputs move
        err = new GridError('GRID_ERR_TASK_REFUSED', DISK_FULL, { cause: caught })
      }
      // Only grid's own errors go to the requester as they are: a file system's error (a path
      // too long once under the sandbox, say) names this node's directories, and its code is
      // none of grid's. It is logged here, and the requester hears GRID_ERR_INTERNAL.
      const own = errorCode(err)?.startsWith('GRID_ERR_') === true
      if (!own) {
        if (signal.aborted) log.debug(`task from ${peer} ended: ${(err as Error).message}`) // the requester went away, or the deadline passed
        else log.warn(`task from ${peer} failed here: ${(err as Error).message}`)
        err = new GridError('GRID_ERR_INTERNAL', `the worker could not run the task (${errorCode(err) ?? (err as Error).name})`, { cause: err })
      }
      const code = errorCode(err) ?? 'GRID_ERR_INTERNAL'
      if (code === 'GRID_ERR_TASK_REFUSED' || code === 'GRID_ERR_TASK_INCOMPATIBLE') {
        this.stats.refused++
        const busy = (err as Error).message === BUSY
        if (busy) log.debug(`refused a task from ${peer}: ${BUSY}`)
        else log.warn(`refused a task from ${peer}: ${(err as Error).message}`)
      } else { this.stats.failed++; log.debug(`task from ${peer} failed: ${(err as Error).message}`) }
      await send({ type: 'fail', code, message: (err as Error).message }).catch(() => {})
      return between && !signal.aborted && code !== 'GRID_ERR_MESSAGE_INVALID'
    } finally {
      reservation?.()
      timed.done()
    }
  }

  /**
   * Reads `blobs` messages up to `done`, storing each input; every one must be in `allowed`, and
   * leaves it (so none comes twice), and be as long as the task declared it: the task's limits
   * are on the sizes it declares. A packed input is unpacked into at most that size first. An
   * input already in the store is not written again. Each message's bytes are held in the
   * node's read budget until its inputs are stored, and its packed inputs' declared sizes in
   * the unpack budget. `signal`: the task's deadline, or its requester gone. Returns how many
   * came packed.
   */
  private async receiveInputs (read: () => Promise<Metered>, peer: string, task: CompileTask, allowed: Set<string>, notAllowed: string, signal: AbortSignal): Promise<number> {
    const declared = new Map(task.files.map(f => [f.sha256, f.size]))
    let packed = 0
    for (;;) {
      const message = await read()
      try {
        const m = decodeCompileMessage(message.bytes, peer)
        if (m.type === 'done') return packed
        packed += await this.storeInputs(m, peer, declared, allowed, notAllowed, signal)
      } finally {
        message.release()
      }
    }
  }

  /**
   * Stores the inputs of one `blobs` message (`receiveInputs`); returns how many came packed.
   * Those are unpacked beside the message, so the sizes the task declares for them are taken
   * from the unpack budget first, and held until they are stored: a message waits there for
   * room (until `signal` aborts), and one that declares more than the whole budget is refused,
   * as no honest requester's batch does (WORKER_UNPACK_BUDGET_BYTES).
   */
  private async storeInputs (m: CompileMessage, peer: string, declared: Map<string, number>, allowed: Set<string>, notAllowed: string, signal: AbortSignal): Promise<number> {
    let packed = 0
    let unpacked = 0 // what the packed ones declare: the most their unpacking holds
    if (m.type !== 'blobs') throw new GridError('GRID_ERR_TASK_REFUSED', `expected blobs, got ${m.type}`)
    for (const item of m.items) {
      if (!allowed.has(item.sha256)) throw new GridError('GRID_ERR_TASK_REFUSED', `sent an input that ${notAllowed} (${item.sha256.slice(0, 16)}…)`)
      allowed.delete(item.sha256)
      if (item.packed !== undefined) { packed++; unpacked += declared.get(item.sha256) as number } // every one is in `allowed`, a subset of the task's
    }
    const limit = this.unpacking.budget.limit
    if (unpacked > limit) throw new GridError('GRID_ERR_TASK_REFUSED', `sent packed inputs the task declares as ${unpacked} bytes in one message, more than this worker unpacks at once (${limit} bytes)`)
    const release = packed === 0 ? undefined : await this.unpacking.take(peer, unpacked, signal)
    try {
      // each settled before any failure is thrown: the room is given back once no unpack runs
      const settled = await Promise.allSettled(m.items.map(async item => {
        const size = declared.get(item.sha256) as number
        const data = item.packed === undefined ? item.data : await unpackInput(item.data, size, item.sha256)
        if (data.length !== size) {
          throw new GridError('GRID_ERR_TASK_REFUSED', `sent ${data.length} bytes for input ${item.sha256.slice(0, 16)}…, which the task declared as ${size} bytes`)
        }
        return { sha256: item.sha256, data }
      }))
      for (const s of settled) if (s.status === 'rejected') throw s.reason
      for (const s of settled) {
        const item = (s as PromiseFulfilledResult<{ sha256: string, data: Uint8Array }>).value
        if (!this.inputs.has(item.sha256)) this.inputs.put(item.sha256, item.data)
      }
    } finally {
      release?.()
    }
    return packed
  }

  /** Everything a task must satisfy before a byte of it is written (slots aside: `admit`). */
  check (value: unknown, peer: string): CompileTask {
    const task = validateTask(value, peer)
    const own = this.init.toolchain()
    if (own === undefined) throw new GridError('GRID_ERR_TASK_REFUSED', 'this node has not identified its Go toolchain yet')
    if (task.compiler !== own.compiler) throw new GridError('GRID_ERR_TASK_REFUSED', `task needs "${task.compiler}", this node has "${own.compiler}"`)
    if (!this.hasRoom()) throw new GridError('GRID_ERR_TASK_REFUSED', DISK_FULL)
    // What the requester matched (the -V=full and canary of its advert) was probed from this
    // file: a compiler reinstalled or rebuilt in place since may write other bytes.
    if (compilerStamp(own.tool) !== own.stamp) {
      this.init.changed?.()
      throw new GridError('GRID_ERR_TASK_REFUSED', `this node's Go compiler ${own.tool} changed since it was identified`)
    }
    if (!this.init.accepting()) throw new GridError('GRID_ERR_TASK_REFUSED', 'this node does not take remote work now (policy)')
    return task
  }

  /**
   * Whether the disk of the worker's dir has room for a task (WORKER_MIN_FREE_BYTES), by a look
   * at most WORKER_ROOM_CHECK_MS old unless `fresh`. A full disk is logged, once in a while. The
   * node's advert says it takes no work meanwhile (mesh.ts, `accepting`).
   */
  hasRoom (fresh = false): boolean {
    const now = Date.now()
    if (!fresh && now - this.room.at < WORKER_ROOM_CHECK_MS) return this.room.ok
    let free = Number.POSITIVE_INFINITY // a disk that cannot be looked at is left to fail the task
    try {
      const st = statfsSync(this.init.dir)
      free = st.bavail * st.bsize
    } catch {}
    this.room.ok = free >= (this.init.minFreeBytes ?? WORKER_MIN_FREE_BYTES)
    this.room.at = now
    if (!this.room.ok && now - this.room.warnedAt >= WORKER_FULL_WARN_MS) {
      this.room.warnedAt = now
      log.warn(`${DISK_FULL} (${Math.round(free / 1048576)} MiB free on the disk of ${this.init.dir}); peers compile their tasks themselves meanwhile. Free some space on that disk`)
    }
    return this.room.ok
  }

  /**
   * Whether a checked task may go on: with a free slot it may (false), with every slot taken
   * only to join a running compile with its offer key (true); otherwise it is refused as busy.
   * A task let in on a free slot holds it (`reserved`) while its inputs come, until its compile
   * starts: two offers at once for the last free slot (two requesters that read the same
   * advert) are not both let in, the second to wait in the pool behind the first, held for
   * its requester's race when it should have heard "busy" and gone elsewhere.
   */
  private admit (task: CompileTask): boolean {
    if (this.init.pool.running + this.reserved < this.init.pool.slots) { this.reserved++; return false }
    const offerKey = taskOfferKey(task)
    for (const job of this.jobs.values()) if (job.offerKey === offerKey) return true
    throw new GridError('GRID_ERR_TASK_REFUSED', BUSY)
  }

  /** Whether the hashes a task lacks are at most those of its importcfg and embedcfg. */
  private onlyConfigs (task: CompileTask, need: string[]): boolean {
    const byPath = new Map(task.files.map(f => [f.path, f.sha256]))
    const configs = new Set([task.inputFlags['-importcfg'], task.inputFlags['-embedcfg']].map(p => (p === undefined ? undefined : byPath.get(p))))
    return need.every(h => configs.has(h))
  }

  /**
   * The hashes of a checked task's inputs that are not in the blob store; the others count as
   * used now (one syscall each, synchronously: see `run`).
   */
  async missing (task: CompileTask): Promise<string[]> {
    const need = new Set<string>()
    for (const f of task.files) if (!this.inputs.has(f.sha256)) need.add(f.sha256)
    return [...need]
  }

  /**
   * Runs a task that `check` accepted and whose inputs are all in the blob store: joins the
   * compile of an identical task running here, or starts one. The result is the caller's own
   * copy. Rejects with GRID_ERR_CANCELLED when `signal` aborts first.
   */
  async execute (task: CompileTask, options: ExecuteOptions): Promise<CompileResult> {
    const { key, configs } = await this.keyOf(task, options.peer)
    let job = this.jobs.get(key)
    if (job !== undefined) {
      this.stats.shared++
      log.debug(`task ${task.importPath} from ${options.peer} joins the running compile ${key.slice(0, 16)}… (${job.waiters} waiting)`)
    } else {
      if (options.joinOnly === true && this.init.pool.running + this.reserved >= this.init.pool.slots) throw new GridError('GRID_ERR_TASK_REFUSED', BUSY)
      job = this.startJob(task, key, configs) // takes its pool slot in this turn when one is free
    }
    options.started?.()
    return { ...await this.wait(job, options.signal) }
  }

  /** The task key, from the configs and sources in the blob store; refuses configs the compiler would not read. */
  private async keyOf (task: CompileTask, peer: string): Promise<{ key: string, configs: TaskConfigs }> {
    const byPath = new Map(task.files.map(f => [f.path, f]))
    const content = new Map<string, string>()
    const paths = [...Object.entries(task.inputFlags).filter(([flag]) => flag === '-importcfg' || flag === '-embedcfg').map(([, p]) => p), ...task.sources]
    for (const path of paths) {
      const { sha256: sha, size } = byPath.get(path) as { sha256: string, size: number }
      if (content.has(sha)) continue
      // held from an earlier task, so never checked against this one's sizes, which bound what
      // is read here (a source declared empty could otherwise be 64 MiB, named 4096 times)
      const held = this.inputs.size(sha)
      if (held !== size) throw new GridError('GRID_ERR_TASK_REFUSED', `task from ${peer} refused: input ${sha.slice(0, 16)}… is ${held} bytes, which the task declared as ${size} bytes`)
      content.set(sha, this.inputs.read(sha))
    }
    const contentOf = (f: { sha256: string }): string | undefined => content.get(f.sha256)
    const key = taskKey(task, contentOf, peer)
    const text = (flag: string): string | undefined => {
      const path = task.inputFlags[flag]
      return path === undefined ? undefined : content.get((byPath.get(path) as { sha256: string }).sha256)
    }
    const importcfg = text('-importcfg')
    const embedcfg = text('-embedcfg')
    return {
      key,
      configs: {
        importcfg: importcfg === undefined ? undefined : parseImportcfg(importcfg, peer),
        embedcfg: embedcfg === undefined ? undefined : parseEmbedcfg(embedcfg, peer)
      }
    }
  }

  /** Starts the compile of `task` for whoever waits on it; the job leaves `jobs` when it ends. */
  private startJob (task: CompileTask, key: string, configs: TaskConfigs): Job {
    const controller = new AbortController()
    const state = { key, offerKey: taskOfferKey(task), importPath: task.importPath, waiters: 0, settled: false, controller }
    const timed = deadline(WORKER_TASK_TIMEOUT_MS, controller.signal)
    const result = (async () => {
      const sandbox = this.sandboxes.acquire()
      try {
        const result = await this.run(task, configs, sandbox, timed.signal)
        this.stats.ran++
        return result
      } finally {
        timed.done()
        state.settled = true
        if (this.jobs.get(key) === state) this.jobs.delete(key)
        this.sandboxes.release(sandbox)
      }
    })()
    result.catch(() => {}) // its waiters see a failure; with none left, nobody needs to
    const job: Job = Object.assign(state, { result })
    this.jobs.set(key, job)
    return job
  }

  /** Waits for a job's result until `signal` aborts; the last waiter to leave cancels the job. */
  private async wait (job: Job, signal: AbortSignal): Promise<CompileResult> {
    job.waiters++
    try {
      return await new Promise<CompileResult>((resolve, reject) => {
        const onAbort = (): void => { reject(new GridError('GRID_ERR_CANCELLED', 'compile cancelled: its requester went away or timed out', { cause: signal.reason })) }
        if (signal.aborted) { onAbort(); return }
        signal.addEventListener('abort', onAbort, { once: true })
        job.result.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort))
      })
    } finally {
      job.waiters--
      if (job.waiters === 0 && !job.settled) {
        // no one is left to take the result: free the slot, and let nobody join a dying compile
        if (this.jobs.get(job.key) === job) this.jobs.delete(job.key)
        job.controller.abort()
        log.debug(`compile of ${job.importPath} cancelled: every requester went away`)
      }
    }
  }

  /**
   * Materialises the inputs under `sandbox`, builds the command, runs it. Tasks with equal keys
   * share what this returns: any new influence on the output must be reported in the task key
   * as well (taskKeyLines in packages/protocol/src/task.ts).
   */
  private async run (task: CompileTask, configs: TaskConfigs, sandbox: Sandbox, signal: AbortSignal): Promise<CompileResult> {
    const own = this.init.toolchain()
    if (own === undefined) throw new GridError('GRID_ERR_TASK_REFUSED', 'no toolchain')
    const inSandbox = (p: string): string => sandbox.at(p) // p is a clean absolute path: stays under the sandbox
    const carried = new Set(task.files.map(f => f.path))
    const carriedInSandbox = (cfg: string) => (p: string): string => {
      if (!carried.has(p)) throw new GridError('GRID_ERR_TASK_REFUSED', `${cfg} names ${p}, which the task does not carry`)
      return inSandbox(p)
    }
    // The configs are written from their parse, the one the key was computed from: the compiler
    // reads nothing the worker did not see. Every other input is a hard link to the blob store
    // (one syscall, no copy; the compiler only reads it). Synchronous on purpose: a few dozen
    // cheap syscalls in a row cost far less than an event-loop turn each on a busy machine.
    // The sandbox's directories usually exist already (sandbox.ts).
    const t0 = performance.now()
    const configText = new Map<string, string>()
    const importcfg = task.inputFlags['-importcfg']
    if (importcfg !== undefined && configs.importcfg !== undefined) configText.set(importcfg, formatImportcfg(configs.importcfg, carriedInSandbox('importcfg')))
    const embedcfg = task.inputFlags['-embedcfg']
    if (embedcfg !== undefined && configs.embedcfg !== undefined) configText.set(embedcfg, formatEmbedcfg(configs.embedcfg, carriedInSandbox('embedcfg')))
    for (const f of task.files) {
      const target = inSandbox(f.path)
      const text = configText.get(f.path)
      if (text !== undefined) sandbox.write(target, text)
      else sandbox.link(this.inputs.path(f.sha256), target)
    }
    const t1 = performance.now()
    const outDir = join(sandbox.root, '_out_')
    const archivePath = sandbox.output(join(outDir, '_pkg_.a'))
    const asmhdrPath = task.asmhdr ? sandbox.output(join(outDir, 'go_asm.h')) : undefined
    const args = [
      ...task.flags,
      '-o', archivePath,
      '-trimpath', relocatedTrimpath(sandbox.root, task.trimpath, inputDirs(task), task.goroot),
      ...Object.entries(task.inputFlags).map(([flag, path]) => `${flag}=${inSandbox(path)}`),
      ...(asmhdrPath !== undefined ? ['-asmhdr', asmhdrPath] : []),
      ...task.sources.map(inSandbox)
    ]
    log.debug(`task ${task.importPath}: ${own.tool} ${args.join(' ')}`)
    const started = performance.now()
    const outcome = await this.init.pool.run({ tool: own.tool, args, cwd: sandbox.root, env: { ...task.env, GOROOT: own.goroot }, nice: WORKER_NICE, memoryBytes: this.init.memoryBytes }, { signal, guest: true })
    const compileMs = performance.now() - started
    // A compile that failed on a disk that filled meanwhile failed for want of room, not for
    // anything in the task: its requester hears that, not diagnostics it would take for a lie.
    if (outcome.exitCode !== 0 && !this.hasRoom(true)) throw new GridError('GRID_ERR_TASK_REFUSED', DISK_FULL)
    const read = (path: string | undefined): Buffer | null => { try { return path === undefined ? null : readFileSync(path) } catch { return null } }
    const result: CompileResult = {
      type: 'result',
      exitCode: outcome.exitCode,
      output: outcome.output,
      archive: outcome.exitCode === 0 ? read(archivePath) : null,
      asmhdr: outcome.exitCode === 0 ? read(asmhdrPath) : null,
      compileMs
    }
    if (log.debugEnabled) log.debug(`task ${task.importPath}: ${task.files.length} inputs laid out in ${(t1 - t0).toFixed(1)} ms, command ${(started - t1).toFixed(1)} ms, ` +
      `queued ${outcome.queuedMs.toFixed(1)} ms, compile ${outcome.runMs.toFixed(1)} ms, outputs read ${(performance.now() - started - compileMs).toFixed(1)} ms`)
    return result
  }
}

/** A write the file system refused for want of room (or because it went read-only). */
function isDiskFull (err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code
  return code === 'ENOSPC' || code === 'EDQUOT' || code === 'EROFS'
}

/** A packed input unpacked into at most its declared size; one that does not unpack is refused like one of the wrong size. */
async function unpackInput (packed: Uint8Array, size: number, sha256: string): Promise<Uint8Array> {
  try {
    return await unpack(packed, size, `packed input ${sha256.slice(0, 16)}…`)
  } catch (err) {
    throw new GridError('GRID_ERR_TASK_REFUSED', `${(err as Error).message} (the task declared it as ${size} bytes)`, { cause: err })
  }
}
