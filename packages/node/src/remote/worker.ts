/**
 * The worker: runs compile tasks for peers. It never executes a command line it was sent: it
 * validates the typed task (flags from an allow-list, clean absolute paths, size caps, its own
 * toolchain), receives only the inputs it lacks (by sha256, checked on arrival), materialises
 * them under a per-task sandbox, builds the compile command itself with the relocation recipe,
 * runs it in its pool at low priority with a timeout, and returns the outputs. Nothing is
 * written outside `<cache>/worker/`.
 */
import { createHash, randomBytes } from 'node:crypto'
import { copyFile, mkdir, readFile, rename, rm, writeFile, access } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import type { Libp2p, Stream } from '@libp2p/interface'
import { lpStream } from '@libp2p/utils'
import { GridError, errorCode, validateTask, type CompileTask } from '@grid/protocol'
import { logger } from '../log.js'
import type { LocalPool } from '../worker/index.js'
import { BUSY, COMPILE_PROTOCOL, MAX_COMPILE_MESSAGE_BYTES, WORKER_NICE, WORKER_TASK_TIMEOUT_MS } from './constants.js'
import { relocatedTrimpath } from './parse.js'
import { inputDirs } from './task-builder.js'
import { decodeCompileMessage, packr, type CompileMessage } from './wire.js'

const log = logger('grid:worker')
const FAULT = process.env.GRID_TEST_FAULT ?? ''

export interface WorkerInit {
  libp2p: Libp2p
  /** `<cache>/worker`: blob store and sandboxes */
  dir: string
  pool: LocalPool
  /** this node's toolchain, once probed */
  toolchain: () => { compiler: string, goroot: string, tool: string } | undefined
  /** whether the node takes remote work now (its --accept-remote policy and load) */
  accepting: () => boolean
}

export class Worker {
  private readonly init: WorkerInit
  readonly stats = { ran: 0, refused: 0, failed: 0 }

  constructor (init: WorkerInit) {
    this.init = init
  }

  async start (): Promise<void> {
    await mkdir(join(this.init.dir, 'blobs'), { recursive: true })
    await this.init.libp2p.handle(COMPILE_PROTOCOL, (stream: Stream, connection: { remotePeer: { toString: () => string } }) => {
      void this.serve(stream, connection.remotePeer.toString())
    }, { maxInboundStreams: 64 })
  }

  async stop (): Promise<void> {
    await this.init.libp2p.unhandle(COMPILE_PROTOCOL).catch(() => {})
  }

  private async serve (stream: Stream, peer: string): Promise<void> {
    const lp = lpStream(stream, { maxDataLength: MAX_COMPILE_MESSAGE_BYTES, maxBufferSize: MAX_COMPILE_MESSAGE_BYTES * 2 })
    const send = async (m: CompileMessage): Promise<void> => { await lp.write(packr.pack(m)) }
    const signal = AbortSignal.timeout(WORKER_TASK_TIMEOUT_MS)
    let sandbox: string | undefined
    try {
      const offer = decodeCompileMessage((await lp.read({ signal })).subarray(), peer)
      if (offer.type !== 'offer') throw new GridError('GRID_ERR_TASK_REFUSED', `expected an offer, got ${offer.type}`)
      const task = this.check(offer.task, peer)
      const need = await this.missing(task)
      await send({ type: 'need', hashes: need })
      const wanted = new Set(need)
      for (;;) {
        const m = decodeCompileMessage((await lp.read({ signal })).subarray(), peer)
        if (m.type === 'done') break
        if (m.type !== 'blobs') throw new GridError('GRID_ERR_TASK_REFUSED', `expected blobs, got ${m.type}`)
        for (const item of m.items) await this.store(item.sha256, item.data, wanted)
      }
      if (wanted.size > 0) throw new GridError('GRID_ERR_TASK_REFUSED', `${wanted.size} inputs were never sent`)
      sandbox = join(this.init.dir, 'tasks', `t-${randomBytes(6).toString('hex')}`)
      const result = await this.run(task, sandbox, signal)
      this.stats.ran++
      // Test-only misbehaviour (GRID_TEST_FAULT), to show a requester survives such peers.
      if (FAULT === 'worker-hang') await new Promise(resolve => setTimeout(resolve, WORKER_TASK_TIMEOUT_MS))
      if (FAULT === 'worker-garbage' && result.type === 'result' && result.archive !== null) result.archive = randomBytes(result.archive.length)
      await send(result)
      await stream.close()
    } catch (err) {
      const code = errorCode(err) ?? 'GRID_ERR_INTERNAL'
      if (code === 'GRID_ERR_TASK_REFUSED') {
        this.stats.refused++
        const busy = (err as Error).message === BUSY
        if (busy) log.debug(`refused a task from ${peer}: ${BUSY}`)
        else log.warn(`refused a task from ${peer}: ${(err as Error).message}`)
      } else { this.stats.failed++; log.debug(`task from ${peer} failed: ${(err as Error).message}`) }
      await send({ type: 'fail', code, message: (err as Error).message }).catch(() => {})
      await stream.close().catch(() => stream.abort(err as Error))
    } finally {
      if (sandbox !== undefined) await rm(sandbox, { recursive: true, force: true })
    }
  }

  /** Everything a task must satisfy before a byte of it is written. */
  check (value: unknown, peer: string): CompileTask {
    const task = validateTask(value, peer)
    const own = this.init.toolchain()
    if (own === undefined) throw new GridError('GRID_ERR_TASK_REFUSED', 'this node has not identified its Go toolchain yet')
    if (task.compiler !== own.compiler) throw new GridError('GRID_ERR_TASK_REFUSED', `task needs "${task.compiler}", this node has "${own.compiler}"`)
    if (!this.init.accepting()) throw new GridError('GRID_ERR_TASK_REFUSED', 'this node does not take remote work now (policy)')
    if (this.init.pool.running >= this.init.pool.slots) throw new GridError('GRID_ERR_TASK_REFUSED', BUSY)
    return task
  }

  private blobPath (sha256: string): string {
    return join(this.init.dir, 'blobs', sha256.slice(0, 2), sha256)
  }

  private async missing (task: CompileTask): Promise<string[]> {
    const need = new Set<string>()
    for (const f of task.files) {
      try { await access(this.blobPath(f.sha256)) } catch { need.add(f.sha256) }
    }
    return [...need]
  }

  private async store (sha256: string, data: Uint8Array, wanted: Set<string>): Promise<void> {
    if (!wanted.has(sha256)) throw new GridError('GRID_ERR_TASK_REFUSED', `sent an input that was not asked for (${sha256.slice(0, 16)}…)`)
    if (createHash('sha256').update(data).digest('hex') !== sha256) throw new GridError('GRID_ERR_TASK_REFUSED', `input ${sha256.slice(0, 16)}… does not hash to its name`)
    const path = this.blobPath(sha256)
    await mkdir(dirname(path), { recursive: true })
    const tmp = `${path}.${randomBytes(4).toString('hex')}.tmp`
    await writeFile(tmp, data)
    await rename(tmp, path)
    wanted.delete(sha256)
  }

  /** Materialises the inputs under `sandbox`, builds the command, runs it. */
  private async run (task: CompileTask, sandbox: string, signal: AbortSignal): Promise<CompileMessage> {
    const own = this.init.toolchain()
    if (own === undefined) throw new GridError('GRID_ERR_TASK_REFUSED', 'no toolchain')
    const inSandbox = (p: string): string => join(sandbox, p) // p is a clean absolute path: stays under sandbox
    const carried = new Set(task.files.map(f => f.path))
    for (const f of task.files) {
      const target = inSandbox(f.path)
      await mkdir(dirname(target), { recursive: true })
      await copyFile(this.blobPath(f.sha256), target)
    }
    const importcfg = task.inputFlags['-importcfg']
    if (importcfg !== undefined) {
      const lines = (await readFile(inSandbox(importcfg), 'utf8')).split('\n').map(line => {
        const m = /^packagefile ([^=]+)=(.+)$/.exec(line.trim())
        if (m === null) return line
        if (!carried.has(m[2] as string)) throw new GridError('GRID_ERR_TASK_REFUSED', `importcfg names ${m[2]}, which the task does not carry`)
        return `packagefile ${m[1]}=${inSandbox(m[2] as string)}`
      })
      await writeFile(inSandbox(importcfg), lines.join('\n'))
    }
    const embedcfg = task.inputFlags['-embedcfg']
    if (embedcfg !== undefined) {
      const cfg = JSON.parse(await readFile(inSandbox(embedcfg), 'utf8')) as { Files?: Record<string, string> }
      for (const [name, file] of Object.entries(cfg.Files ?? {})) {
        if (!carried.has(file)) throw new GridError('GRID_ERR_TASK_REFUSED', `embedcfg names ${file}, which the task does not carry`)
        ;(cfg.Files as Record<string, string>)[name] = inSandbox(file)
      }
      await writeFile(inSandbox(embedcfg), JSON.stringify(cfg))
    }
    const outDir = join(sandbox, '_out_')
    await mkdir(outDir, { recursive: true })
    const args = [
      ...task.flags,
      '-o', join(outDir, '_pkg_.a'),
      '-trimpath', relocatedTrimpath(sandbox, task.trimpath, inputDirs(task), task.goroot),
      ...Object.entries(task.inputFlags).map(([flag, path]) => `${flag}=${inSandbox(path)}`),
      ...(task.asmhdr ? ['-asmhdr', join(outDir, 'go_asm.h')] : []),
      ...task.sources.map(inSandbox)
    ]
    log.debug(`task ${task.importPath}: ${own.tool} ${args.join(' ')}`)
    const started = performance.now()
    const outcome = await this.init.pool.run({ tool: own.tool, args, cwd: sandbox, env: { ...task.env, GOROOT: own.goroot }, nice: WORKER_NICE }, { signal })
    const compileMs = performance.now() - started
    const read = async (name: string): Promise<Buffer | null> => await readFile(join(outDir, name)).catch(() => null)
    return {
      type: 'result',
      exitCode: outcome.exitCode,
      output: outcome.output,
      archive: outcome.exitCode === 0 ? await read('_pkg_.a') : null,
      asmhdr: outcome.exitCode === 0 && task.asmhdr ? await read('go_asm.h') : null,
      compileMs
    }
  }
}
