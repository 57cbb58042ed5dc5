/**
 * A grid node: the cache, the local compile pool and the build registry behind one Unix
 * socket. `grid daemon` runs one for as long as it is up; `grid build` starts an embedded one
 * for the length of a build when no daemon answers. The request handler is the one place that
 * maps wire messages onto the subsystems.
 */
import { loadavg, availableParallelism } from 'node:os'
import { readFile } from 'node:fs/promises'
import { GRID_VERSION, GridError, parseSwarmKey, type NodeStatus, type PeerInfo, type Policy, type Reply, type Request, type ToolchainInfo } from '@grid/protocol'
import { Builds } from './builds/index.js'
import { Cache, hex } from './cache/cache.js'
import { ControlServer, type RequestContext } from './control/index.js'
import { loadIdentity } from './identity/index.js'
import { logger } from './log.js'
import { LocalPool } from './worker/index.js'
import type { PrivateKey } from '@libp2p/interface'
import type { Mesh, PeerView } from './mesh/index.js'
import { detectGo, probeToolchain } from './toolchain/index.js'

const log = logger('grid:node')

/** How long a starting daemon waits for another process to release the cache index. */
const LOCK_WAIT_MS = 5_000

export interface MeshOptions {
  listen: string[]
  bootstrap: string[]
  mdns: boolean
  /** path of the swarm key file; undefined: the open mesh */
  swarmKeyFile: string | undefined
  policy: Policy
}

export interface GridNodeInit {
  cacheDir: string
  /** The control socket path. */
  control: string
  mode?: 'daemon' | 'embedded'
  /** Local compile slots; default: one per core. */
  slots?: number
  /** The libp2p mesh; omitted: this node serves only its own machine. */
  mesh?: MeshOptions
}

export class GridNode {
  readonly cacheDir: string
  readonly control: string
  readonly mode: 'daemon' | 'embedded'
  readonly builds = new Builds()
  readonly pool: LocalPool
  private readonly server: ControlServer
  private _cache: Cache | undefined
  private _nodeId = ''
  private readonly startedAt = Date.now()
  private readonly stopRequested: { promise: Promise<void>, resolve: () => void }
  private readonly counters = { hits: 0, misses: 0, puts: 0, compiles: 0, corrupt: 0, badFrames: 0 }
  private readonly meshOptions: MeshOptions | undefined
  private mesh: Mesh | undefined
  private meshStarting: Promise<void> | undefined
  private toolchains: ToolchainInfo[] = []
  private privateKey: PrivateKey | undefined

  constructor (init: GridNodeInit) {
    this.cacheDir = init.cacheDir
    this.control = init.control
    this.mode = init.mode ?? 'daemon'
    this.meshOptions = init.mesh
    this.pool = new LocalPool(init.slots === undefined ? {} : { slots: init.slots })
    this.server = new ControlServer({
      path: init.control,
      handler: async (req, ctx) => await this.handle(req, ctx),
      onBadFrame: () => { this.counters.badFrames++ }
    })
    let resolve!: () => void
    const promise = new Promise<void>(r => { resolve = r })
    this.stopRequested = { promise, resolve }
  }

  get cache (): Cache {
    if (this._cache === undefined) throw new TypeError('node not started')
    return this._cache
  }

  get nodeId (): string { return this._nodeId }

  /** Resolves when a client asked the node to shut down. */
  get shutdownRequested (): Promise<void> { return this.stopRequested.promise }

  async start (): Promise<void> {
    const identity = await loadIdentity(this.cacheDir)
    this._nodeId = identity.peerId
    this._cache = await this.openCache(identity.peerId)
    this._cache.events.onCorrupt = () => { this.counters.corrupt++ }
    try {
      await this.server.start()
    } catch (err) {
      await this._cache.close()
      this._cache = undefined
      throw err
    }
    log.info(`node ${this._nodeId} (${this.mode}) serving ${this.control}, cache ${this.cacheDir}, ${this.pool.slots} slots`)
    this.privateKey = identity.privateKey
    // A daemon without its mesh is a failed start. An embedded node (inside `grid build`) joins
    // the mesh on its first cache miss or compile, in the background: a no-op build never pays
    // for loading libp2p, and the grid never fails a build.
    if (this.meshOptions !== undefined && this.mode === 'daemon') {
      try { await this.ensureMesh() } catch (err) { await this.stop(); throw err }
    }
  }

  /**
   * A daemon waits a little for the cache lock: a short-lived `grid status` or `grid cache`
   * may hold it for a moment while no node runs. An embedded node does not wait: its caller
   * treats a held lock as "another node is starting" and connects to that one instead.
   */
  private async openCache (nodeId: string): Promise<Cache> {
    const deadline = Date.now() + (this.mode === 'daemon' ? LOCK_WAIT_MS : 0)
    for (;;) {
      try {
        return await Cache.open({ dir: this.cacheDir, nodeId })
      } catch (err) {
        if ((err as { code?: string }).code !== 'GRID_ERR_CACHE_LOCKED' || Date.now() >= deadline) throw err
        await new Promise(resolve => setTimeout(resolve, 100))
      }
    }
  }

  /** Starts the mesh once (if configured); later calls join the same start. */
  async ensureMesh (): Promise<void> {
    if (this.meshOptions === undefined || this.privateKey === undefined) return
    this.meshStarting ??= this.startMesh(this.privateKey, this.meshOptions)
    await this.meshStarting
  }

  private wantMesh (): void {
    if (this.meshStarting === undefined && this.meshOptions !== undefined) {
      this.ensureMesh().catch((err: Error) => log.warn(`mesh not started: ${err.message}`))
    }
  }

  private async startMesh (privateKey: PrivateKey, options: MeshOptions): Promise<void> {
    let swarmKey: Uint8Array | undefined
    if (options.swarmKeyFile !== undefined) {
      const text = await readFile(options.swarmKeyFile, 'utf8').catch((err: Error) => {
        throw new GridError('GRID_ERR_SWARM_KEY', `cannot read the swarm key ${options.swarmKeyFile}: ${err.message}`, { hint: 'create one with `grid init`, or copy the team\'s file there' })
      })
      swarmKey = parseSwarmKey(text, options.swarmKeyFile)
    }
    const cores = availableParallelism()
    const { Mesh } = await import('./mesh/index.js')
    const mesh = new Mesh({
      privateKey,
      listen: options.listen,
      bootstrap: options.bootstrap,
      mdns: options.mdns,
      swarmKey,
      policy: options.policy,
      local: () => ({
        toolchains: this.toolchains,
        slots: { total: this.pool.slots, free: Math.max(0, this.pool.slots - this.pool.running) },
        load: (loadavg()[0] ?? 0) / cores
      })
    })
    await mesh.start()
    this.mesh = mesh
    this.pool.onChange = () => mesh.schedulePublish()
    // The toolchain probe compiles a canary (~30 ms): adverts go out without it, then with it.
    void detectGo().then(probeToolchain).then(info => {
      this.toolchains = [info]
      mesh.schedulePublish()
    }, (err: Error) => log.warn(`no Go toolchain to advertise: ${err.message}`))
  }

  async stop (): Promise<void> {
    await this.meshStarting?.catch(() => {})
    await this.mesh?.stop()
    this.mesh = undefined
    await this.server.stop()
    await this._cache?.close()
    this._cache = undefined
    log.info('node stopped')
  }

  async status (): Promise<NodeStatus> {
    return {
      version: GRID_VERSION,
      nodeId: this._nodeId,
      pid: process.pid,
      mode: this.mode,
      startedAt: this.startedAt,
      control: this.control,
      cacheDir: this.cacheDir,
      slots: this.pool.slots,
      compilesRunning: this.pool.running,
      buildsServed: this.builds.served,
      activeBuilds: this.builds.count,
      cache: await this.cache.stats(),
      counters: { ...this.counters },
      mesh: this.mesh === undefined || this.meshOptions === undefined
        ? null
        : { peerId: this.mesh.peerId, addrs: this.mesh.addrs(), swarm: this.mesh.fingerprint, mdns: this.meshOptions.mdns, policy: this.meshOptions.policy, peers: this.mesh.list().length }
    }
  }

  peers (): PeerInfo[] {
    return (this.mesh?.list() ?? []).map((p: PeerView) => ({
      peerId: p.peerId,
      addrs: p.addrs,
      connected: p.connected,
      address: p.address ?? null,
      rttMs: p.rttMs ?? null,
      lastSeen: p.lastSeen,
      advert: p.advert as unknown as Record<string, unknown>
    }))
  }

  /** Maps one request onto the subsystems. Every branch returns exactly one reply. */
  async handle (req: Request, ctx: RequestContext): Promise<Reply> {
    const id = req.id
    switch (req.type) {
      case 'cache-get': {
        const build = this.builds.get(req.build)
        const hit = await this.cache.get(req.actionId)
        if (build !== undefined) build.stats.actions++
        if (hit === undefined || hit === 'corrupt') {
          this.wantMesh()
          this.counters.misses++
          if (build !== undefined) {
            build.stats.cache.misses++
            if (hit === 'corrupt') build.stats.cache.corrupt++
          }
          return { type: 'cache-miss', id }
        }
        this.counters.hits++
        if (build !== undefined) {
          build.stats.cache.hits++
          build.stats.cache.hitBytes += hit.size
          build.pinned.add(hex(hit.outputId))
        }
        return { type: 'cache-hit', id, outputId: hit.outputId, size: hit.size, time: hit.time, diskPath: hit.diskPath }
      }
      case 'cache-put': {
        const diskPath = await this.cache.put(req.actionId, req.outputId, req.size)
        this.counters.puts++
        const build = this.builds.get(req.build)
        if (build !== undefined) {
          build.stats.cache.puts++
          build.stats.cache.putBytes += req.size
          build.pinned.add(hex(req.outputId))
        }
        return { type: 'cache-put-ok', id, diskPath }
      }
      case 'cache-open':
        return { type: 'cache-opened', id, blobDir: this.cache.blobDir }
      case 'compile': {
        this.wantMesh()
        const build = this.builds.get(req.build)
        if (build !== undefined) build.stats.compiles.running++
        try {
          const outcome = await this.pool.run({ tool: req.tool, args: req.args, cwd: req.cwd, env: req.env }, { signal: ctx.signal })
          this.counters.compiles++
          if (build !== undefined) {
            build.stats.compiles.local++
            if (outcome.exitCode !== 0) build.stats.compiles.failed++
          }
          log.debug(`compiled ${req.importPath} in ${outcome.runMs.toFixed(1)} ms (queued ${outcome.queuedMs.toFixed(1)} ms)`)
          return { type: 'compile-result', id, exitCode: outcome.exitCode, output: outcome.output }
        } finally {
          if (build !== undefined) build.stats.compiles.running--
        }
      }
      case 'build-begin': {
        const record = this.builds.begin(req.command)
        ctx.onClose(() => this.builds.end(record.stats.build))
        log.info(`build ${record.stats.build} began: ${req.command.join(' ')}`)
        return { type: 'build-begun', id, build: record.stats.build }
      }
      case 'build-progress':
      case 'build-end': {
        const record = this.builds.get(req.build)
        if (record === undefined) throw new GridError('GRID_ERR_MESSAGE_INVALID', `no active build ${req.build}`)
        const stats = req.type === 'build-end' ? this.builds.end(req.build) ?? record.stats : record.stats
        if (req.type === 'build-end') {
          log.info(`build ${req.build} ended: ${stats.actions} actions, ${stats.cache.hits} hits, ${stats.compiles.local} compiles`)
        }
        return { type: 'build-stats', id, stats }
      }
      case 'status':
        return { type: 'status-result', id, status: await this.status() }
      case 'cache-stats':
        return { type: 'cache-stats-result', id, stats: await this.cache.stats() }
      case 'cache-gc':
        return { type: 'cache-gc-result', id, result: await this.cache.gc(req.maxBytes, this.builds.pinnedOutputs()) }
      case 'cache-verify':
        return { type: 'cache-verify-result', id, result: await this.cache.verify() }
      case 'shutdown':
        this.stopRequested.resolve()
        return { type: 'ok', id }
      case 'peers':
        return { type: 'peers-result', id, peers: this.peers() }
    }
  }
}
