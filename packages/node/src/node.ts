/**
 * A grid node: the cache, the local compile pool and the build registry behind one Unix
 * socket. `grid daemon` runs one for as long as it is up; `grid build` starts an embedded one
 * for the length of a build when no daemon answers. The request handler is the one place that
 * maps wire messages onto the subsystems.
 */
import { availableParallelism } from 'node:os'
import { readFile } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { CACHE_ID_BYTES, GRID_VERSION, INDEX_RECORD_BYTES, PROTOCOL_VERSION, GridError, errorCode, isGridError, parseSwarmKey, type BuildStats, type Failure, type NodeStatus, type PeerInfo, type Policy, type UnlistedPeer, toolchainLabel, type Reply, type Request, type ToolchainInfo } from '@grid/protocol'
import { Builds, HELPER_OPEN_MS, holdEnd, notUtf8, settled, wroteOutput } from './builds/index.js'
import { Cache, hex } from './cache/cache.js'
import { Trimmer } from './cache/trim.js'
import { cacheGc, cacheStats } from './cache-stats.js'
import { ControlServer, type RequestContext } from './control/index.js'
import { growHeapForMesh } from './heap.js'
import { loadIdentity } from './identity/index.js'
import { logFile, logger } from './log.js'
import { LocalPool, Spawner, takesStartHeap, type Rank } from './worker/index.js'
import { ensureShim } from './shim/index.js'
import { WORKER_DIR } from './remote/constants.js'
import { prepareCacheDir } from './paths.js'
import { Backlog, BACKLOG_TRIES, Dispatcher, goParallelism, localOrPeer, HISTORY_FILE, LOCAL_NICE, LONG_POLE_MS, LONG_POLE_WAIT, LONG_POLE_WAIT_MAX_MS, Scheduler, place, type LocalReason } from './scheduler/index.js'
import type { PrivateKey } from '@libp2p/interface'
import type { Mesh, OwnLoad, PeerView } from './mesh/index.js'
import type { PeerCache, Trust } from './peercache/index.js'
import type { LinkProbes, Offload, RemoteCompiler, Worker } from './remote/index.js'
import type { GoToolchain } from './toolchain/index.js'
import { join, resolve } from 'node:path'
import type { BuildRecord } from './builds/index.js'
import { compilerStamp, detectGo, probeCompiler } from './toolchain/index.js'

const log = logger('grid:node')

type CompileRequest = Extract<Request, { type: 'compile' }>
type CompileResult = Reply & { type: 'compile-result' }
/**
 * A compile placed here: why, and where it queues. `suspects`: peers that said it failed or
 * printed something; the node runs it itself to see its output (Dispatcher.rerun).
 */
interface Placed { reason: LocalReason, priority: Rank, expectedMs: number, suspects?: string[] }
/** What scheduling a compile gave: its result (a peer or a race copy ran it), or a local placement. */
type Scheduled = { result: CompileResult } | Placed

/** How long a starting daemon waits for another process to release the cache index. */
const LOCK_WAIT_MS = 5_000

/**
 * An embedded node starts its mesh on the first miss; gets wait at most this long for a first
 * peer, so a build that starts while peers hold everything does not compile the first packages.
 */
const MESH_WARMUP_MS = 1_000

/**
 * How often a daemon checks that its control socket and shim are still where it made them:
 * removed with the cache dir (rm -rf ~/.cache/grid), nothing could reach the daemon, another
 * could not start beside it (its mesh port is taken), and shells under grid env would name a
 * shim that is gone. Two stats every 10 s cost nothing.
 */
const HOME_CHECK_MS = 10_000

export interface MeshOptions {
  listen: string[]
  bootstrap: string[]
  mdns: boolean
  /** path of the swarm key file; undefined: the open mesh */
  swarmKeyFile: string | undefined
  policy: Policy
  /** whose cache entries to accept: members' ('mesh') or only our own ('self') */
  trust: Trust
  /** share (0–100) of peer claims re-checked by a local compile instead of being fetched */
  verifyPercent: number
  /** when to offer compiles to peers */
  offload: Offload
  /** address space a peer's compile may use here (bytes) */
  taskMemory: number
}

export interface GridNodeInit {
  cacheDir: string
  /** The control socket path. */
  control: string
  mode?: 'daemon' | 'embedded'
  /** Local compile slots; default: one per core. */
  slots?: number
  /** The compilers' starting heap in MiB (worker/constants.ts COMPILE_START_HEAP_MB); 0: theirs. */
  compileHeapMB?: number
  /** The libp2p mesh; omitted: this node serves only its own machine. */
  mesh?: MeshOptions
  /** Trim the cache (least recently used first) when its blobs pass this many bytes. */
  cacheMax?: number
}

/**
 * A compile's rank in the local queue and the backlog: its remaining critical path in the
 * build's graph, else its expected time. Read whenever a slot frees, so a compile that began
 * waiting before the graph arrived (it is listed beside the build) is ranked by it once it has.
 */
function rank (build: BuildRecord | undefined, importPath: string, expectedMs: number): Rank {
  return () => build?.plan?.priority(importPath) ?? expectedMs
}

/** The .go files on a compile's command line, absolute. */
function goFiles (args: string[], cwd: string): string[] {
  return args.filter(a => a.endsWith('.go') && !a.startsWith('-')).map(a => resolve(cwd, a))
}

/** What was thrown, for a log line: an error's message and code. */
function describe (err: unknown): string {
  const code = errorCode(err)
  return `${err instanceof Error ? err.message : String(err)}${code === undefined ? '' : ` (${code})`}`
}

/**
 * What the node tells its clients of a failure of its own (its mesh's start): a GridError's code,
 * message and hint; anything else is a bug (GRID_ERR_INTERNAL), whose details are in the log.
 */
function failure (err: unknown): Failure {
  const log = ownLog()
  const hint = isGridError(err) ? err.hint : undefined
  return {
    code: isGridError(err) ? err.code : 'GRID_ERR_INTERNAL',
    message: err instanceof Error ? err.message : String(err),
    ...(hint !== undefined ? { hint } : log !== null ? { hint: `the node's log says more: ${log}` } : {})
  }
}

/** The file this node logs to, absolute (what `grid status` shows), or null. */
function ownLog (): string | null {
  const file = logFile()
  return file === undefined ? null : resolve(file)
}

function percentiles (samples: number[]): { count: number, p50Ms: number, p99Ms: number } {
  if (samples.length === 0) return { count: 0, p50Ms: 0, p99Ms: 0 }
  const sorted = [...samples].sort((a, b) => a - b)
  const at = (q: number): number => Math.round((sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number) * 1000) / 1000
  return { count: sorted.length, p50Ms: at(0.5), p99Ms: at(0.99) }
}

export class GridNode {
  readonly cacheDir: string
  readonly control: string
  readonly mode: 'daemon' | 'embedded'
  readonly builds = new Builds()
  /** the builds opened for helpers under `grid env`, by their go command's pid (compile.goPid) */
  private readonly envBuilds = new Map<number, string>()
  readonly pool: LocalPool
  private readonly scheduler: Scheduler
  private readonly dispatcher: Dispatcher
  private readonly backlog = new Backlog()
  private readonly server: ControlServer
  private _cache: Cache | undefined
  private _nodeId = ''
  private readonly startedAt = Date.now()
  private readonly stopRequested: { promise: Promise<void>, resolve: () => void }
  private readonly counters = { hits: 0, peerHits: 0, misses: 0, puts: 0, compiles: 0, remoteCompiles: 0, corrupt: 0, badFrames: 0 }
  private readonly meshOptions: MeshOptions | undefined
  private mesh: Mesh | undefined
  private peerCache: PeerCache | undefined
  private remote: RemoteCompiler | undefined
  private worker: Worker | undefined
  private links: LinkProbes | undefined
  /** the workstation's own load, for the `idle` policy and the adverts (mesh/load.ts) */
  private load: OwnLoad | undefined
  private goToolchain: GoToolchain | undefined
  private meshStartedAt = 0
  private readonly cacheMax: number | undefined
  /** --cache-max: trims the cache past it (cache/trim.ts); made once the cache is open */
  private trimmer: Trimmer | undefined
  private meshStarting: Promise<void> | undefined
  /** Why the mesh's start failed, once it has (boxed: whatever was thrown) */
  private meshError: { err: unknown } | undefined
  /** askPeers said why it asks no peer (askingNoPeer) */
  private saidNoPeer = false
  private toolchains: ToolchainInfo[] = []
  /**
   * The compiler binary `toolchains[0]` was probed from (its path and stamp). Only a compile
   * whose tool is this file goes to peers, who are matched to what was probed from it.
   */
  private ownCompiler: { path: string, stamp: string } | undefined
  /** Compilers other than ownCompiler that builds used: each is logged once. */
  private readonly otherCompilers = new Set<string>()
  /** Settles once the first probe of the node's toolchain has ended (the mesh has started). */
  private probed: Promise<void> | undefined
  /** Builds whose compiler is not the node's, logged once each. */
  private readonly otherCompilerBuilds = new WeakSet<BuildRecord>()
  /** A new probe of the node's toolchain, when its compiler changed on disk since the last. */
  private reprobing: Promise<void> | undefined
  /**
   * Why the last probe of the node's toolchain failed (no `go`, or one that does not run: Go
   * being reinstalled as the probe ran), undefined once one succeeded. A daemon probes again at
   * each home check until one does: without a toolchain it shares no compile and no cache entry.
   */
  private probeFailed: string | undefined
  /** The toolchain probe, running in the background once the mesh is up; stop cancels it. */
  private probing: Promise<void> | undefined
  private readonly probeAbort = new AbortController()
  /** aborted as the node stops: what waits for a build's end waits no longer */
  private readonly stopping = new AbortController()
  private privateKey: (() => Promise<PrivateKey>) | undefined
  private homeTimer: NodeJS.Timeout | undefined
  /** start() finished: only a node that started says it stopped */
  private started = false
  /** The last check found another node on the control socket (said once) */
  private homeTaken = false
  private checkingHome: Promise<void> | undefined
  /** The shim this daemon built (its spawner's): built again if removed */
  private shimPath: string | undefined

  constructor (init: GridNodeInit) {
    this.cacheDir = init.cacheDir
    this.control = init.control
    this.mode = init.mode ?? 'daemon'
    this.meshOptions = init.mesh
    this.cacheMax = init.cacheMax
    this.pool = new LocalPool({
      ...(init.slots === undefined ? {} : { slots: init.slots }),
      ...(init.compileHeapMB === undefined ? {} : { startHeapMB: init.compileHeapMB })
    })
    this.scheduler = new Scheduler({ historyFile: join(init.cacheDir, HISTORY_FILE) })
    this.dispatcher = new Dispatcher({ pool: this.pool, remote: () => this.remote })
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
    await prepareCacheDir(this.cacheDir)
    const identity = await loadIdentity(this.cacheDir)
    this._nodeId = identity.peerId
    this._cache = await this.openCache(identity.peerId)
    this._cache.events.onCorrupt = () => { this.counters.corrupt++ }
    if (this.cacheMax !== undefined) this.trimmer = new Trimmer({ cache: this._cache, maxBytes: this.cacheMax, pinned: h => this.builds.isPinned(h) })
    this.privateKey = identity.privateKey
    await this.scheduler.start()
    try {
      // A daemon without its mesh is a failed start, and its socket appears only once the mesh
      // is up: whoever sees the socket (scripts/lab, `grid status`) sees the whole node. An
      // embedded node (inside `grid build`) joins the mesh on its first cache miss or compile,
      // in the background: a no-op build never pays for loading libp2p.
      if (this.meshOptions !== undefined && this.mode === 'daemon') await this.ensureMesh()
      await this.server.start()
    } catch (err) {
      // closes what it had opened; the caller reports err (a daemon's "node stopped" before
      // its real error read as if it had run)
      log.debug(`node did not start: ${(err as Error).message}`)
      await this.stop()
      throw err
    }
    this.started = true
    if (this.mode === 'daemon') {
      this.homeTimer = setInterval(() => { this.checkingHome ??= this.checkHome().finally(() => { this.checkingHome = undefined }) }, HOME_CHECK_MS)
      this.homeTimer.unref()
      if (this.meshOptions === undefined) this.probing = this.findShim() // with a mesh, startSpawner finds it
    }
    log.info(`node ${this._nodeId} (${this.mode}, pid ${process.pid}) serving ${this.control}, cache ${this.cacheDir}, ${this.pool.slots} slots`)
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
    const meshOptions = this.meshOptions
    const privateKey = this.privateKey
    this.meshStarting ??= privateKey().then(async key => { await this.startMesh(key, meshOptions) }).catch((err: unknown) => {
      this.meshError = { err }
      // A daemon's is its failed start, which its caller reports. An embedded node's builds run
      // alone: said here once, whether a compile or a miss started it (askPeers).
      if (this.mode === 'embedded') log.warn(`mesh not started: ${describe(err)}`)
      throw err
    })
    await this.meshStarting
  }

  /**
   * Why the mesh did not start, for the builds that ran alone for it, once its start has
   * settled; undefined when it started, or when nothing asked for it (an embedded node's build
   * that missed nothing). An embedded node's failed start is no failed build: its builds run
   * alone, and every `grid build` it serves, its own or another's, says why (build-end's reply).
   */
  private async meshFailure (): Promise<Failure | undefined> {
    await this.meshStarting?.catch(() => {})
    return this.meshError === undefined ? undefined : failure(this.meshError.err)
  }

  private wantMesh (): void {
    if (this.meshStarting === undefined && this.meshOptions !== undefined) {
      this.ensureMesh().catch(() => {}) // said as it failed
    }
  }

  /**
   * A miss that no peer is asked about, for the mesh did not start: said once, so that a log
   * with misses and no lookups says why (the start's failure is a warning of its own).
   */
  private askingNoPeer (err: unknown): void {
    if (this.saidNoPeer) return
    this.saidNoPeer = true
    log.debug(`no peer is asked about this node's misses: its mesh did not start (${describe(err)})`)
  }

  private async startMesh (privateKey: PrivateKey, options: MeshOptions): Promise<void> {
    let swarmKey: Uint8Array | undefined
    if (options.swarmKeyFile !== undefined) {
      const text = await readFile(options.swarmKeyFile, 'utf8').catch((err: Error) => {
        throw new GridError('GRID_ERR_SWARM_KEY', `cannot read the swarm key ${options.swarmKeyFile}: ${err.message}`, { hint: 'create one with `grid init`, or copy the team\'s file there' })
      })
      swarmKey = parseSwarmKey(text, options.swarmKeyFile)
    }
    growHeapForMesh()
    const { Mesh, OwnLoad } = await import('./mesh/index.js')
    const load = new OwnLoad({ cores: availableParallelism(), peerCompiles: () => this.worker?.compiles ?? 0 })
    load.start()
    this.load = load
    const mesh = new Mesh({
      privateKey,
      listen: options.listen,
      bootstrap: options.bootstrap,
      mdns: options.mdns,
      swarmKey,
      policy: options.policy,
      peersFile: join(this.cacheDir, 'peers.json'),
      onAdvert: peerId => { this.remote?.advertised(peerId); this.steal() },
      onLeave: peerId => { this.remote?.forget(peerId); this.peerCache?.forget(peerId) },
      local: () => ({
        toolchains: this.toolchains,
        slots: { total: this.pool.slots, free: Math.max(0, this.pool.slots - this.pool.running) },
        load: load.perCore(),
        room: this.worker?.hasRoom() ?? true
      })
    })
    await mesh.start()
    this.mesh = mesh
    this.meshStartedAt = Date.now()
    this.pool.onChange = () => mesh.schedulePublish('slots')
    const { PeerCache, CACHE_PROTOCOL } = await import('./peercache/index.js')
    const { COMPILE_PROTOCOL } = await import('./remote/index.js')
    const libp2p = mesh.libp2p
    if (libp2p !== undefined) {
      const peerCache = new PeerCache({
        libp2p,
        cache: this.cache,
        privateKey,
        selfId: this._nodeId,
        trust: options.trust,
        verifyPercent: options.verifyPercent,
        peers: () => mesh.connectedMembers(),
        isKnownMember: id => mesh.isKnownMember(id),
        speaks: id => mesh.speaks(id, CACHE_PROTOCOL),
        toolchain: () => { const t = this.toolchains[0]; return t === undefined ? '' : toolchainLabel(t) },
        compilerStamp: () => this.ownCompiler?.stamp,
        compileMs: bytes => this.scheduler.archiveMs(bytes),
        link: { msPerByte: peer => this.remote?.msPerByte(peer), measure: peer => { this.remote?.measureLink(peer) }, packs: peer => this.remote?.packsTo(peer) ?? false }
      })
      await peerCache.start()
      this.peerCache = peerCache
    }
    // The toolchain probe compiles a canary (~30 ms): adverts go out without it, then with it.
    const signal = this.probeAbort.signal
    let probed: () => void = () => {}
    this.probed = new Promise(resolve => { probed = resolve })
    this.probing = detectGo({ signal }).then(async go => {
      this.goToolchain = go
      const spawning = this.startSpawner(go, signal)
      await this.probeCompiler(go, signal).finally(probed)
      await spawning
    }).catch((err: Error) => { if (!signal.aborted) this.probeFailure(err) }).finally(probed)
    const { LinkProbes, RemoteCompiler, Worker } = await import('./remote/index.js')
    if (libp2p !== undefined) {
      this.worker = new Worker({
        libp2p,
        dir: join(this.cacheDir, WORKER_DIR),
        pool: this.pool,
        memoryBytes: options.taskMemory,
        toolchain: () => {
          const go = this.goToolchain
          const tc = this.toolchains[0]
          const own = this.ownCompiler
          if (go === undefined || tc === undefined || own === undefined) return undefined
          return { compiler: tc.compiler, goroot: go.goroot, tool: own.path, stamp: own.stamp }
        },
        changed: () => { this.reprobe() },
        accepting: () => mesh.accepting()
      })
      await this.worker.start()
      this.links = new LinkProbes(libp2p)
      await this.links.start()
      this.remote = new RemoteCompiler({
        libp2p,
        peers: () => mesh.connectedAdverts(),
        isUntrusted: id => this.peerCache?.untrusted.has(id) ?? false,
        own: () => this.toolchains[0],
        speaks: id => mesh.speaks(id, COMPILE_PROTOCOL),
        links: this.links
      })
      this.remote.onSlotFreed = () => { this.steal() }
    }
  }

  /** Probes the node's compiler and advertises what it found. */
  private async probeCompiler (go: GoToolchain, signal: AbortSignal): Promise<void> {
    const probed = await probeCompiler(go, signal)
    this.toolchains = [probed.info]
    this.ownCompiler = { path: probed.compile, stamp: probed.stamp }
    this.mesh?.schedulePublish()
  }

  /**
   * The node's compiler is no longer the file it probed (Go reinstalled, or its compiler rebuilt,
   * while the node runs): nothing goes to peers or is taken from them for it until it has been
   * probed again, and the adverts say what it is now.
   */
  private reprobe (): void {
    if (this.reprobing !== undefined || this.probeAbort.signal.aborted) return
    if (this.ownCompiler !== undefined) {
      log.warn(`the Go compiler ${this.ownCompiler.path} changed since this node identified it: identifying it again`)
      this.toolchains = []
      this.ownCompiler = undefined
      this.mesh?.schedulePublish()
    } else if (this.probeFailed === undefined) {
      return // the first probe is still running
    }
    const signal = this.probeAbort.signal
    this.reprobing = detectGo({ signal }).then(async go => {
      this.goToolchain = go
      await this.probeCompiler(go, signal)
      log.info(`Go toolchain now ${this.toolchains[0]?.compiler ?? '?'}`)
      // a first probe that failed never got as far as the spawner
      if (this.probeFailed !== undefined && this.shimPath === undefined) await this.startSpawner(go, signal)
      this.probeFailed = undefined
    }).catch((err: Error) => { if (!signal.aborted) this.probeFailure(err) })
      .finally(() => { this.reprobing = undefined })
  }

  /**
   * A probe of the node's toolchain failed: said once per reason, and (a daemon) tried again at
   * its next home check. Go reinstalled while the node runs (`rm -rf /usr/local/go`, then the
   * new archive unpacked) has no `go`, or half of one, for a few seconds: a node that gave up
   * then would share nothing with its peers until restarted.
   */
  private probeFailure (err: Error): void {
    if (err.message !== this.probeFailed) {
      log.warn(`no Go toolchain to advertise: ${err.message}${this.mode === 'daemon' ? ` (tried again every ${HOME_CHECK_MS / 1000} s)` : ''}`)
    }
    this.probeFailed = err.message
  }

  /**
   * Whether a compile's tool is the compiler this node probed (the file itself, by its stamp):
   * peers take only such compiles. Another one (a build with another GOROOT, whose compiler may
   * have the same `-V=full` and still write other bytes) is logged once, with what to do; the
   * node's own compiler changed on disk is probed again.
   */
  private ownCompile (tool: string): boolean {
    const own = this.ownCompiler
    if (own === undefined) return false
    const stamp = compilerStamp(tool)
    if (stamp === own.stamp) return true
    if (tool === own.path) this.reprobe()
    else if (!this.otherCompilers.has(tool) && this.otherCompilers.size < 64) {
      this.otherCompilers.add(tool)
      log.warn(`compiles by ${tool} stay on this machine (toolchain-other): peers are matched to the compiler this node identified, ${own.path} ` +
        `(${this.toolchains[0]?.compiler ?? '?'}), and this is another one. Start the daemon with the go your builds use (on its PATH, or GRID_GO) to share them`)
    }
    return false
  }

  /**
   * Starts the node's compiles (a peer's tasks, races) through the shim's spawner once the shim
   * is built (worker/spawner.ts): Node's own spawn copies this process's page tables per child,
   * a cost that grows with the heap of a long-lived node. A daemon on Linux only; an embedded
   * node lives for one build and starts them from Node.
   */
  private async startSpawner (go: GoToolchain, signal: AbortSignal): Promise<void> {
    if (process.platform !== 'linux' || this.mode !== 'daemon') return
    try {
      this.shimPath = await ensureShim(this.cacheDir, go, { signal })
      const spawner = await Spawner.start(this.shimPath)
      if (signal.aborted) { await spawner.close(); return }
      this.pool.spawner = spawner
      log.debug(`compiles start through the shim's spawner (pid ${String(spawner.pid)})`)
    } catch (err) {
      if (!signal.aborted) log.warn(`compiles start from Node, not the shim's spawner: ${(err as Error).message}`)
    }
  }

  /**
   * A daemon without a mesh (`--no-mesh`) starts no spawner, but looks after its shim too:
   * shells under `grid env` name it, and checkHome builds it again if it is removed.
   */
  private async findShim (): Promise<void> {
    const signal = this.probeAbort.signal
    try {
      const go = await detectGo({ signal })
      this.goToolchain = go
      this.shimPath = await ensureShim(this.cacheDir, go, { signal })
      log.debug(`looking after the shim ${this.shimPath}`)
    } catch (err) {
      if (!signal.aborted) log.warn(`the shim is not looked after: ${(err as Error).message}`)
    }
  }

  /**
   * A daemon's paths removed while it runs (the cache dir removed by hand): its control socket
   * is listened on again, once nothing else answers there, and its shim is built again. The
   * cache index and the log file see to themselves (Cache.heal, log.ts).
   */
  private async checkHome (): Promise<void> {
    const socket = await this.server.recheck().catch(() => 'taken' as const)
    if (socket === 'again') log.warn(`the control socket ${this.control} was removed while the node ran: it answers there again`)
    else if (socket === 'taken' && !this.homeTaken) log.warn(`the control socket ${this.control} is another node's now: this node answers there again once that one has gone`)
    this.homeTaken = socket === 'taken'
    const go = this.goToolchain
    if (this.shimPath !== undefined && go !== undefined && !existsSync(this.shimPath)) {
      log.warn(`the shim ${this.shimPath} was removed while the node ran: building it again (shells under grid env name it)`)
      // for the node's go now: one reinstalled as another release since (reprobe) has another key, and path
      const rebuilt = await ensureShim(this.cacheDir, go, { signal: this.probeAbort.signal }).catch((err: Error) => { log.warn(`cannot build the shim again: ${err.message}`) })
      if (rebuilt !== undefined) this.shimPath = rebuilt
    }
    if (this.probeFailed !== undefined) this.reprobe()
  }

  /**
   * Stops once no build is active: an embedded node, when its own build is done, serves the
   * builds that found it on the socket to their end. From the moment it sees none, it takes no
   * new build (GRID_ERR_NODE_CLOSED) and no new connection: `grid build` takes either for a node
   * gone and starts over, on a node of its own once this one has let go of the cache. A build it
   * took would have lost its node as this one stopped.
   */
  async stopWhenIdle (): Promise<void> {
    await this.builds.close()
    // only promise callbacks run between the two, no I/O: no connection is accepted in between
    this.server.stopListening()
    await this.stop()
  }

  async stop (): Promise<void> {
    this.stopping.abort()
    clearInterval(this.homeTimer)
    await this.checkingHome
    // a node stopping answers no one new (its stop may wait on its mesh for a while)
    this.server.stopListening()
    await this.meshStarting?.catch(() => {})
    // A node stopped soon after its mesh started (an embedded node's short build) must not
    // leave the probe's canary dir behind: cancelled, it removes it before it settles.
    this.probeAbort.abort()
    await this.probing
    await this.reprobing
    await this.peerCache?.stop()
    this.peerCache = undefined
    await this.worker?.stop()
    this.worker = undefined
    await this.links?.stop()
    this.links = undefined
    await this.pool.spawner?.close()
    this.pool.spawner = undefined
    this.remote?.close()
    this.remote = undefined
    await this.mesh?.stop()
    this.mesh = undefined
    this.load?.stop()
    this.load = undefined
    await this.server.stop()
    await this.scheduler.stop()
    this.trimmer = undefined
    await this._cache?.close()
    this._cache = undefined
    if (this.started) log.info('node stopped')
    this.started = false
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
      log: ownLog(),
      slots: this.pool.slots,
      compilesRunning: this.pool.running,
      buildsServed: this.builds.served,
      activeBuilds: this.builds.count,
      lastBuild: this.builds.last ?? null,
      cache: await cacheStats(this.cache),
      counters: { ...this.counters },
      meshFailure: this.meshError === undefined ? null : failure(this.meshError.err),
      mesh: this.mesh === undefined || this.meshOptions === undefined
        ? null
        : { peerId: this.mesh.peerId, addrs: this.mesh.addrs(), swarm: this.mesh.fingerprint, mdns: this.meshOptions.mdns, policy: this.meshOptions.policy, accepting: this.mesh.accepting(), ...(this.load === undefined ? {} : { load: Math.round(this.load.perCore() * 100) / 100 }), peers: this.mesh.list().length, unlisted: this.unlistedPeers(), ...(this.worker === undefined ? {} : { worker: { ...this.worker.stats } }) }
    }
  }

  /**
   * Where a compile runs: the scheduler places it; a remote placement is dispatched (and raced
   * when overdue). Returns the result when a peer or a local race copy produced it, else why
   * it runs locally, with the priority it queues at.
   */
  private async schedule (req: CompileRequest, build: BuildRecord | undefined, signal: AbortSignal): Promise<Scheduled> {
    const plan = build?.plan
    const offload = this.meshOptions?.offload ?? 'busy' // no mesh: placed locally as no-peers
    const remote = this.remote
    // Kept here before its cost is estimated: that (a few stats of its sources) would only order
    // the local queue, which go's -p keeps short. History or nothing.
    const here = (reason: LocalReason): Placed => {
      const expectedMs = this.scheduler.history.get(req.importPath) ?? 0
      return { reason, priority: rank(build, req.importPath, expectedMs), expectedMs }
    }
    if (notUtf8(req)) return here('path-not-utf8') // no file of it could be opened here (builds/sources.ts)
    if (offload === 'never' || remote === undefined || !remote.anyCapable()) return here(offload === 'never' ? 'policy' : remote?.whyNone() ?? 'no-peers') // nowhere to ship it
    if (!this.ownCompile(req.tool)) return here(this.ownCompiler === undefined ? 'toolchain-unknown' : 'toolchain-other')
    const expectedMs = await this.scheduler.expectedMs(req.importPath, plan, () => goFiles(req.args, req.cwd))
    const priority = rank(build, req.importPath, expectedMs)
    const placement = place({ offload, mesh: true, localFree: this.pool.free, expectedMs, peerMs: () => remote.predictMs(expectedMs) })
    if (expectedMs >= LONG_POLE_MS && log.debugEnabled) {
      const peerMs = remote.predictMs(expectedMs)
      log.debug(`long pole ${req.importPath}: expected ${Math.round(expectedMs)} ms here, ${peerMs === undefined ? 'no peer free' : `${Math.round(peerMs)} ms on the best free peer`}, ` +
        `local slot ${this.pool.free ? 'free' : 'taken'}: ${placement.where === 'local' ? `local (${placement.reason})` : 'remote'}`)
    }
    if (placement.where === 'local') return { reason: placement.reason, priority, expectedMs }
    return await this.offload(req, build, expectedMs, priority, signal)
  }

  /** Dispatches a compile to peers; the result, or why it runs locally after all. */
  private async offload (req: CompileRequest, build: BuildRecord | undefined, expectedMs: number, priority: Rank, signal: AbortSignal, fromBacklog = false): Promise<Scheduled> {
    const goroot = req.env.GOROOT ?? this.goToolchain?.goroot
    if (goroot === undefined) return { reason: 'toolchain-unknown', priority, expectedMs }
    const r = await this.dispatcher.compile({ tool: req.tool, args: req.args, cwd: req.cwd, env: req.env, importPath: req.importPath, goroot }, expectedMs, priority, signal)
    const c = build?.stats.compiles
    if (c !== undefined) {
      if (r.races.local) c.races.local++
      if (r.races.duplicate) c.races.duplicate++
    }
    if (!r.done) return { reason: r.reason, priority, expectedMs, ...(r.suspects === undefined ? {} : { suspects: r.suspects }) }
    if (r.by === 'local') {
      this.counters.compiles++
      this.finished(req.importPath, build, r.exitCode === 0, r.runMs)
      if (c !== undefined) {
        c.local++
        c.races.localWon++
        c.localReasons.raced = (c.localReasons.raced ?? 0) + 1
      }
    } else {
      this.counters.remoteCompiles++
      this.finished(req.importPath, build, r.exitCode === 0, r.compileMs, 'peer')
      if (c !== undefined && build !== undefined) {
        c.remote++
        if (fromBacklog) c.fromBacklog++
        if (r.duplicate) c.races.duplicateWon++
        c.byPeer[r.peer] = (c.byPeer[r.peer] ?? 0) + 1
        // its archive is the worker's: the entry cmd/go puts for it names that worker
        build.sources.ranOn(req.args, r.peer)
        c.remoteTransferMs += Math.round(r.transferMs)
        c.remoteCompileMs += Math.round(r.compileMs)
        build.overheadMs.push(r.overheadMs)
      }
    }
    return { result: { type: 'compile-result', id: req.id, exitCode: r.exitCode, output: r.output } }
  }

  /**
   * A local slot for a compile placed here. One that stayed only because every peer was busy
   * waits in the backlog as well: if a peer frees up first, it goes there instead (and back
   * to waiting should that fail, at most BACKLOG_TRIES times). A long pole waits for a peer
   * alone for a while before it queues for the local slot too (LONG_POLE_WAIT). A peer's
   * diagnostics come back as a placement with `suspects`, for the caller to run and check.
   */
  private async localSlot (req: CompileRequest, build: BuildRecord | undefined, placed: Placed, signal: AbortSignal): Promise<{ result: CompileResult } | { free: () => void, reason: LocalReason } | Placed & { suspects: string[] }> {
    let reason = placed.reason
    let headStart = placed.expectedMs >= LONG_POLE_MS ? Math.min(placed.expectedMs * LONG_POLE_WAIT, LONG_POLE_WAIT_MAX_MS) : 0
    for (let tries = 0; ; tries++) {
      if (reason !== 'peers-busy' || tries >= BACKLOG_TRIES || (this.pool.free && headStart === 0) || this.remote === undefined) {
        return { free: await this.pool.lease({ signal, priority: placed.priority }), reason }
      }
      const first = await localOrPeer(this.pool, this.backlog, { priority: placed.priority, headStartMs: headStart, signal, waiting: () => { this.steal() } })
      headStart = 0
      if (first !== undefined) return { free: first.free, reason }
      const r = await this.offload(req, build, placed.expectedMs, placed.priority, signal, true)
      if ('result' in r) return r
      if (r.suspects !== undefined) return { ...r, suspects: r.suspects }
      reason = r.reason
    }
  }

  /** The nice level of a compile run here: LOCAL_NICE while some peer could take compiles, else go's own. */
  private localNice (): number | undefined {
    return this.remote?.anyCapable() === true ? LOCAL_NICE : undefined
  }

  /** Peer slots are free: the most urgent compiles of the backlog go to them. */
  private steal (): void {
    const remote = this.remote
    if (remote === undefined || this.backlog.size === 0) return
    const free = remote.capacity() - this.dispatcher.preparing
    if (free > 0) this.backlog.take(free)
  }

  /**
   * A compile ended. One that produced its output (`ok`) puts its time into the build's critical
   * path, and into the history if it ran here. One that failed or was interrupted is counted
   * failed, and its time goes nowhere: it is not what the package costs (a syntax error ends a
   * 3 s compile in 30 ms, and so does cmd/go killing its tools after another package failed).
   * Such a time made the package tiny for the next build (kept local, ranked last), and put
   * into the critical path a package nothing was compiled after.
   */
  private finished (importPath: string, build: BuildRecord | undefined, ok: boolean, ms: number, where: 'here' | 'peer' = 'here'): void {
    if (!ok) {
      if (build !== undefined) build.stats.compiles.failed++
      return
    }
    this.scheduler.record(importPath, ms, where, where === 'here' ? build?.plan?.package(importPath)?.b : undefined)
    build?.durations.set(importPath, (build.durations.get(importPath) ?? 0) + ms)
  }

  /**
   * A compile the shim ran on a grant ended after `ms`. Whether it compiled: its exit status
   * when the shim said it (`compile-done`), else (the connection closed: the compiler it became
   * exited, or was killed) whether its output was written since the grant (builds/output.ts).
   * The build's end waits for that stat (holdEnd, from the grant), so that its summary counts
   * this compile.
   * @param grantedWall when the grant was sent (ms since the epoch)
   */
  private async shimEnded (req: { importPath: string, args: string[], cwd: string }, build: BuildRecord | undefined, ms: number, grantedWall: number, exitCode: number | undefined): Promise<void> {
    const compiled = exitCode === undefined ? await wroteOutput(req.args, req.cwd, grantedWall) : exitCode === 0
    this.finished(req.importPath, build, compiled, ms)
  }

  private countHit (build: BuildRecord, outputId: Uint8Array, size: number): void {
    build.stats.cache.hits++
    build.stats.cache.hitBytes += size
    build.pinned.add(hex(outputId))
  }

  /**
   * The entries the last build of this command looked up (docs/cache.md, "Recall"), packed for
   * the cache helper, and pinned by this build. Looked up when the build begins; empty on any
   * failure: recall only saves round trips.
   */
  private async recall (build: BuildRecord): Promise<Uint8Array> {
    const buildId = build.stats.build
    try {
      const { packed, entries } = await this.cache.recall(build.recallKeys, build.pinned)
      build.recalled = entries
      if (entries.size > 0) log.debug(`build ${buildId}: recalled ${entries.size} entries`)
      return packed
    } catch (err) {
      log.warn(`recalling entries for build ${buildId} failed: ${(err as Error).message}`)
      return new Uint8Array(0)
    }
  }

  /**
   * Index entries for blobs the cache helper has put in place (INDEX_RECORD_BYTES each). All of
   * a batch go to LevelDB together; an entry whose blob is not there as described is logged and
   * skipped, the rest are stored. Returns how many were.
   */
  private async index (records: Uint8Array, build: BuildRecord | undefined): Promise<number> {
    const view = new DataView(records.buffer, records.byteOffset, records.byteLength)
    const puts: Array<Promise<boolean>> = []
    // shared with peers under this node's toolchain, but not what another compiler made
    const compiler = this.buildCompiler(build)
    const toolchain = this.toolchains[0]
    // Not known yet (an embedded node that never probes, a daemon still probing): the build's
    // compiler, by its stamp, for peercache to compare with the node's once probed. Served as
    // the node's own, another GOROOT's entries (the same -V=full, other bytes) reached peers.
    const dir = compiler === 'unknown' ? build?.gotooldir : undefined
    const stamp = dir === undefined ? undefined : compilerStamp(join(dir, process.platform === 'win32' ? 'compile.exe' : 'compile'))
    const own = {
      toolchain: compiler === 'own' && toolchain !== undefined ? toolchainLabel(toolchain) : undefined,
      shared: compiler !== 'other' && !(dir !== undefined && stamp === undefined),
      ...(stamp === undefined ? {} : { compiler: stamp })
    }
    for (let at = 0; at + INDEX_RECORD_BYTES <= records.length; at += INDEX_RECORD_BYTES) {
      const actionId = records.slice(at, at + CACHE_ID_BYTES)
      const outputId = records.slice(at + CACHE_ID_BYTES, at + 2 * CACHE_ID_BYTES)
      const size = Number(view.getBigUint64(at + 2 * CACHE_ID_BYTES))
      // compiled on a peer's worker: the entry says which (docs/cache.md, invariant 5)
      const worker = build?.sources.workerOf(actionId)
      const put = async (): Promise<boolean> => await this.cache.put(actionId, outputId, size, undefined, build?.pinned, worker === undefined ? own : { ...own, worker }).then(() => {
        this.peerCache?.checkPut(actionId, outputId)
        this.counters.puts++
        if (build !== undefined) {
          // cmd/go also puts entries it did not look up first (a link's output, under a subkey),
          // and looks them up next time
          build.looked.add(hex(actionId))
          build.stats.cache.puts++
          build.stats.cache.putBytes += size
          build.pinned.add(hex(outputId))
        }
        return true
      }, (err: Error) => {
        log.warn(`index entry ${hex(actionId)} not stored: ${err.message}`)
        // a put the helper got wrong is refused as such; any other refusal is the index's
        if (build !== undefined && errorCode(err) !== 'GRID_ERR_CACHE_MISSING_BLOB') this.countUnstored(build, 1, err.message)
        return false
      })
      puts.push(this.storable(actionId, outputId, build).then(async ok => ok && await put()))
    }
    const stored = (await Promise.all(puts)).filter(Boolean).length
    if (log.debugEnabled) log.debug(`indexed ${stored} of ${puts.length} entries`)
    this.maybeTrim()
    return stored
  }

  /**
   * Whether an output cmd/go put may be stored under its ActionID: not when a file its compile
   * read changed during the build (builds/sources.ts), so may not be what cmd/go hashed. Such a
   * blob stays pinned for the build, which has been handed it, and goes at a later `gc`.
   */
  private async storable (actionId: Uint8Array, outputId: Uint8Array, build: BuildRecord | undefined): Promise<boolean> {
    const changed = await build?.sources.changed(actionId)
    if (changed === undefined || build === undefined) return true
    build.pinned.add(hex(outputId))
    build.stats.cache.edited++
    log.info(`build ${build.stats.build}: output of action ${hex(actionId)} not stored: ${changed} changed during the build`)
    return false
  }

  /** Hits the cache helper served from recalled entries: counted as the node's own gets are. */
  private countRecalled (build: BuildRecord, actionIds: Uint8Array): void {
    for (let at = 0; at + CACHE_ID_BYTES <= actionIds.length; at += CACHE_ID_BYTES) {
      const actionHex = hex(actionIds.subarray(at, at + CACHE_ID_BYTES))
      const e = build.recalled.get(actionHex)
      if (e === undefined) continue // not one we handed out: nothing to count
      build.stats.actions++
      build.looked.add(actionHex)
      this.counters.hits++
      build.stats.cache.localHits++
      build.stats.cache.recalled++
      this.countHit(build, e.outputId, e.size)
      this.cache.touch(actionHex)
    }
  }

  /** Outputs of a build the cache could not store (the helper's blob writes, the index's writes). */
  private countUnstored (build: BuildRecord, n: number, why: string): void {
    build.stats.cache.unstored += n
    if (build.stats.cache.unstoredWhy === '') build.stats.cache.unstoredWhy = why
  }

  /** Misses the cache helper served from the absent filter: counted as the node's own misses are. */
  private countAbsent (build: BuildRecord | undefined, misses: number): void {
    this.counters.misses += misses
    if (build === undefined) return
    build.stats.actions += misses
    build.stats.cache.misses += misses
    build.stats.cache.absent += misses
  }

  /**
   * The absent filter for a cache helper that opens now, if it may have one: a miss in our own
   * index must be the answer to a lookup (askPeers would ask no one), and no other build may be
   * running, whose puts this one could use (a filter does not learn of entries added after it
   * is handed out). What the helper then answers itself costs at worst a compile done again:
   * an entry put by a build that starts later, or held by a peer that turns up later.
   */
  private absentFilterForHelper (): Uint8Array | undefined {
    if (this.builds.count > 1) return undefined
    if (this.meshOptions !== undefined) {
      // an embedded node that expects peers waits for one on its first miss (askPeers)
      if (this.mode === 'embedded' && this.peersExpected()) return undefined
      if (this.peerCache?.mayAsk() === true) return undefined
    }
    return this.cache.absentFilter()
  }

  /** Whether this node should expect peers: bootstrap addresses, or members remembered from earlier builds. */
  private peersExpected (): boolean {
    return (this.meshOptions?.bootstrap.length ?? 0) > 0 || existsSync(join(this.cacheDir, 'peers.json'))
  }

  /** A local miss: ask the mesh (joining it first if this embedded node has not yet). */
  private async askPeers (actionId: Uint8Array, build: BuildRecord | undefined): Promise<{ outputId: Uint8Array, size: number, time: number, diskPath: string } | undefined> {
    if (this.meshOptions === undefined) return undefined
    if (this.meshError !== undefined) { this.askingNoPeer(this.meshError.err); return undefined }
    if (this.mode === 'embedded') {
      // Wait for the mesh (and a first peer) only when peers are expected. A machine alone
      // starts it in the background and its build never waits on it.
      if (!this.peersExpected() && this.mesh === undefined) { this.wantMesh(); return undefined }
      try { await this.ensureMesh() } catch (err) { this.askingNoPeer(err); return undefined }
      const wait = this.meshStartedAt + MESH_WARMUP_MS - Date.now()
      if (wait > 0 && this.mesh?.expectsPeers() === true && this.mesh.connectedMembers().length === 0) await this.waitForPeer(wait)
    }
    const peerCache = this.peerCache
    if (peerCache === undefined) return undefined
    if (this.toolchains.length === 0 && this.probed !== undefined) {
      // claims are taken only under this node's toolchain: a node that has just joined the mesh
      // (an embedded one, on its first miss) identifies it first
      await Promise.race([this.probed, new Promise(resolve => setTimeout(resolve, MESH_WARMUP_MS))])
    }
    if (this.buildCompiler(build) === 'other') return undefined
    const result = await peerCache.find(actionId, build)
    if (build !== undefined && result.lookupMs !== undefined) build.lookupMs.push(result.lookupMs)
    if ('miss' in result) return undefined
    if (build !== undefined) {
      build.stats.cache.peerHits++
      build.stats.cache.peer.bytes += result.bytes
      const per = build.stats.cache.peer.byPeer[result.peer] ?? { hits: 0, bytes: 0 }
      per.hits++
      per.bytes += result.bytes
      build.stats.cache.peer.byPeer[result.peer] = per
      this.countHit(build, result.hit.outputId, result.hit.size)
    }
    this.maybeTrim()
    return result.hit
  }

  /**
   * Whether a build's entries are made by this node's compiler ('own'), by another one ('other':
   * a GOROOT of its own, whose compiler may print the same `-V=full` and write other bytes; its
   * entries are neither taken from peers nor given to them, as its compiles are not shipped), or
   * 'unknown' (its cache helper did not say, or the node's compiler is not probed yet).
   */
  private buildCompiler (build: BuildRecord | undefined): 'own' | 'other' | 'unknown' {
    const dir = build?.gotooldir
    if (dir === undefined || build === undefined || this.ownCompiler === undefined) return 'unknown'
    const tool = join(dir, process.platform === 'win32' ? 'compile.exe' : 'compile')
    if (this.ownCompile(tool)) return 'own'
    if (this.ownCompiler === undefined) return 'unknown' // it changed on disk: probed again
    if (!this.otherCompilerBuilds.has(build)) {
      this.otherCompilerBuilds.add(build)
      log.info(`build ${build.stats.build} uses the compiler ${tool}, not this node's: its cache entries are neither taken from peers nor served to them`)
    }
    return 'other'
  }

  private async waitForPeer (ms: number): Promise<void> {
    const deadline = Date.now() + ms
    while (Date.now() < deadline && (this.mesh?.connectedMembers().length ?? 0) === 0) {
      await new Promise(resolve => setTimeout(resolve, 25))
    }
  }

  /** --cache-max: trim in the background when the blobs pass the limit (cache/trim.ts). */
  private maybeTrim (): void {
    this.trimmer?.maybe()
  }

  peers (): PeerInfo[] {
    return (this.mesh?.list() ?? []).map((p: PeerView) => {
      const incompatible = p.connected ? this.incompatibility(p) : null
      return {
        peerId: p.peerId,
        addrs: p.addrs,
        connected: p.connected,
        connections: p.connections,
        address: p.address ?? null,
        rttMs: p.rttMs ?? null,
        lastSeen: p.lastSeen,
        advert: p.advert as unknown as Record<string, unknown>,
        untrusted: this.peerCache?.untrusted.get(p.peerId) ?? null,
        remote: this.remoteInfo(p.peerId),
        incompatible,
        agent: this.mesh?.identifiedAs(p.peerId)?.agent ?? null,
        otherToolchain: this.otherToolchain(p.advert, incompatible !== null)
      }
    })
  }

  /**
   * What `grid peers` shows of our compiles on `peer`: the fields PeerInfo documents, not the
   * whole score the scheduler keeps (its moving averages are its own and may change).
   */
  private remoteInfo (peer: string): PeerInfo['remote'] {
    const score = this.remote?.scores.get(peer)
    if (score === undefined) return { ok: 0, failed: 0, packed: false }
    return { ok: score.ok, failed: score.failed, speed: score.speed, ...(score.msPerByte === undefined ? {} : { msPerByte: score.msPerByte }), packed: this.remote?.packsTo(peer) ?? false }
  }

  /**
   * How a peer's advertised toolchain differs from this node's, or null (the same, or not known
   * yet on either side). The canary is compiled from a package of grid's own (toolchain/probe.ts),
   * which grid versions may change: the same release then gives another canary on a member of
   * another version, and that is what to look at first, not its compiler.
   */
  private otherToolchain (advert: { toolchains: ToolchainInfo[] }, otherGridVersion: boolean): string | null {
    const own = this.toolchains[0]
    if (own === undefined || advert.toolchains.length === 0) return null
    if (advert.toolchains.some(t => t.compiler === own.compiler && t.canary === own.canary && t.experiment === own.experiment)) return null
    const t = advert.toolchains[0] as ToolchainInfo
    if (t.compiler !== own.compiler) return `its compiler is "${t.compiler}", this node's "${own.compiler}"`
    if (t.canary !== own.canary) {
      return `its compiler prints this node's "${own.compiler}" but compiles the canary to other bytes` +
        (otherGridVersion ? ': it runs another grid version, whose canary may differ (run the same grid version on every member)' : ' (built from other sources, or another grid version\'s canary?)')
    }
    return `its GOEXPERIMENT is "${t.experiment}", this node's "${own.experiment}"`
  }

  /** Why a listed member takes none of this node's compiles or cache lookups (another grid version), or null. */
  private incompatibility (p: PeerView): string | null {
    const why = [this.remote?.incompatibleWith(p.peerId, p.advert), this.peerCache?.incompatibleWith(p.peerId)].filter(w => w !== undefined)
    return why.length === 0 ? null : why.join('; ')
  }

  /** Connected peers no advert of which was taken (another grid version's, say), for `grid peers`. */
  unlistedPeers (): UnlistedPeer[] {
    return (this.mesh?.unlisted() ?? []).map(u => ({ peerId: u.peerId, address: u.address ?? null, agent: u.agent ?? null, protocols: u.protocols, why: u.why }))
  }

  /** A build's stats with the figures derived from its record. */
  private summarise (record: BuildRecord): BuildStats {
    const stats = record.stats
    const now = performance.now()
    stats.cache.peer.waitMs = Math.round(record.peerWaits.sumMs(now) * 1000) / 1000
    stats.cache.peer.waitWallMs = Math.round(record.peerWaits.unionMs(now) * 1000) / 1000
    stats.cache.peer.lookups = percentiles(record.lookupMs)
    stats.compiles.overhead = percentiles(record.overheadMs)
    stats.compiles.criticalPath = record.plan?.criticalPath(record.durations) ?? null
    return stats
  }

  /** Ends a build: its stats, and what the next build learns from it (history, recall list). */
  private endBuild (record: BuildRecord): BuildStats {
    const build = record.stats.build
    this.builds.end(build)
    const stats = this.summarise(record)
    this.peerCache?.endBuild(record)
    void this.remote?.buildEnded()
    void this.scheduler.history.save()
    if (record.looked.size > 0) {
      this.cache.remember(record.recallKeys, record.looked).catch((err: Error) => log.warn(`remembering build ${build}'s lookups failed: ${err.message}`))
    }
    log.info(`build ${build} ended: ${stats.actions} actions, ${stats.cache.hits} hits, ${stats.compiles.local} compiles here, ${stats.compiles.remote} on peers, ${stats.compiles.failed} failed`)
    // under grid env no summary is printed: the log is where this shows
    if (stats.cache.unstored > 0) log.warn(`build ${build}: ${stats.cache.unstored} outputs could not be stored in the cache (${stats.cache.unstoredWhy}): the next build compiles them again; free some space on the disk of ${this.cacheDir}`)
    return stats
  }

  /**
   * Ends a build whose `grid build` went away without build-end (interrupted, killed): no
   * summary and no recall list, but nothing the node keeps for a build stays behind (the claims
   * held back for --verify, each of which holds the whole record, and its $WORK's export data).
   */
  private dropBuild (record: BuildRecord): void {
    if (this.builds.end(record.stats.build) === undefined) return // it ended with build-end
    this.peerCache?.endBuild(record)
    void this.remote?.buildEnded()
  }

  /** Maps one request onto the subsystems. Every branch returns exactly one reply. */
  async handle (req: Request, ctx: RequestContext): Promise<Reply> {
    const id = req.id
    switch (req.type) {
      case 'cache-get': {
        const build = this.builds.get(req.build)
        if (build !== undefined) { build.stats.actions++; build.looked.add(hex(req.actionId)) }
        const local = await this.cache.get(req.actionId, build?.pinned)
        if (local !== undefined && local !== 'corrupt') {
          this.counters.hits++
          if (build !== undefined) { build.stats.cache.localHits++; this.countHit(build, local.outputId, local.size) }
          return { type: 'cache-hit', id, outputId: local.outputId, size: local.size, time: local.time, diskPath: local.diskPath }
        }
        if (local === 'corrupt' && build !== undefined) build.stats.cache.corrupt++
        const fromPeer = await this.askPeers(req.actionId, build)
        if (fromPeer !== undefined) {
          this.counters.hits++
          this.counters.peerHits++
          return { type: 'cache-hit', id, outputId: fromPeer.outputId, size: fromPeer.size, time: fromPeer.time, diskPath: fromPeer.diskPath }
        }
        this.counters.misses++
        if (build !== undefined) build.stats.cache.misses++
        return { type: 'cache-miss', id }
      }
      case 'cache-index':
        return { type: 'cache-indexed', id, stored: await this.index(req.entries, this.builds.get(req.build)) }
      case 'cache-open': {
        let build = this.builds.get(req.build)
        let opened: string | undefined
        if (build === undefined && req.build === '' && req.command !== undefined) {
          // A helper under `grid env`: no grid build named it, so its connection is the build,
          // counted, recalled and remembered as one (a go command run by hand is one build).
          // cmd/go starts its helper, then hashes files while the helper connects (a helper of
          // an older grid does not say when it started)
          const since = Date.now() - (req.ageMs ?? HELPER_OPEN_MS)
          const record = build = this.builds.begin(req.command, req.cwd ?? '', since)
          const goPid = req.goPid
          opened = record.stats.build
          record.recalling = this.recall(record)
          if (goPid !== undefined) this.envBuilds.set(goPid, opened)
          ctx.onClose(() => {
            if (goPid !== undefined && this.envBuilds.get(goPid) === record.stats.build) this.envBuilds.delete(goPid)
            // Its go has exited, and so have its compilers, but the node may see their
            // connections close after this one, and checks each compile's output with a stat:
            // its summary is written once they are counted, as build-end's is.
            void settled(record, this.stopping.signal).then(() => {
              if (this.builds.get(record.stats.build) !== undefined) this.endBuild(record)
            })
          })
          log.info(`build ${opened} began (grid env): ${req.command.join(' ')}`)
        }
        if (build !== undefined && req.gotooldir !== undefined) build.gotooldir ??= req.gotooldir
        if (build !== undefined && req.ageMs !== undefined) build.sources.helperStarted(Date.now() - req.ageMs)
        const recalled = await (build?.recalling ?? new Uint8Array(0))
        const absent = this.absentFilterForHelper()
        return {
          type: 'cache-opened', id, blobDir: this.cache.blobDir, recalled,
          ...(absent === undefined ? {} : { absent }), ...(opened === undefined ? {} : { build: opened })
        }
      }
      case 'cache-recalled': {
        const build = this.builds.get(req.build)
        if (build !== undefined) this.countRecalled(build, req.actionIds)
        this.countAbsent(build, req.misses ?? 0)
        if (build !== undefined && req.unstored !== undefined) this.countUnstored(build, req.unstored, req.unstoredWhy ?? '')
        return { type: 'ok', id }
      }
      case 'compile': {
        this.wantMesh()
        // a shim under `grid env` names its go command's pid, whose helper opened the build
        const build = this.builds.get(req.build === '' && req.goPid !== undefined ? this.envBuilds.get(req.goPid) ?? '' : req.build)
        build?.sources.register(req.args, req.cwd) // before it runs: checked when go puts its output
        const c = build?.stats.compiles
        if (c !== undefined) c.running++
        let handedOver = false
        try {
          let placed = await this.schedule(req, build, ctx.signal)
          if ('result' in placed) return placed.result
          // A peer's diagnostics are checked against a run whose output the node sees (below):
          // the shim's compile-done tells only the exit status.
          if (req.canRunHere === true && placed.suspects === undefined) {
            // The cheap shape (DESIGN §1): the shim runs the compiler itself once it holds one
            // of our slots; the slot is freed by its compile-done or when it disconnects.
            const slot = await this.localSlot(req, build, placed, ctx.signal)
            if ('result' in slot) return slot.result
            if ('suspects' in slot) placed = slot
            else if (ctx.release !== undefined) {
              // The connection holds a grant already (a client that sent two compiles on it):
              // its release and compile-done are the connection's, and a second grant would
              // take the first one's place there, its slot never freed. After `slots` of them
              // every compile waited for good (kept alive by compile-wait), and so did builds.
              slot.free()
              throw new GridError('GRID_ERR_MESSAGE_INVALID', 'a connection holds one compile slot at a time: this one holds one already (send compile-done, or use a connection per compile)')
            } else {
              const grantedAt = performance.now()
              const grantedWall = Date.now() // what its output's mtime is compared with
              handedOver = true
              if (c !== undefined) c.localReasons[slot.reason] = (c.localReasons[slot.reason] ?? 0) + 1
              ctx.release = () => { slot.free(); if (c !== undefined) c.running-- }
              // The build's end waits for this compile to be counted: the node may see its go
              // command end (build-end, or its helper's close under grid env) before this closes.
              const counted = build === undefined ? undefined : holdEnd(build)
              ctx.done = exitCode => { void this.shimEnded(req, build, performance.now() - grantedAt, grantedWall, exitCode).finally(counted) }
              // The shim became the compiler, holding this connection: it closes when the compile ends.
              ctx.onClose(() => { ctx.done?.(); ctx.done = undefined; ctx.release?.(); ctx.release = undefined })
              this.counters.compiles++
              if (c !== undefined) c.local++
              const nice = this.localNice()
              // the shim adds -d=gcstart from the grant: only for a compiler that knows it
              const heapMB = takesStartHeap(req.args) ? this.pool.startHeapMB : 0
              return { type: 'compile-here', id, ...(nice === undefined ? {} : { nice }), ...(heapMB > 0 ? { heapMB } : {}), concurrency: this.pool.concurrency() }
            }
          }
          if (c !== undefined) c.localReasons[placed.reason] = (c.localReasons[placed.reason] ?? 0) + 1
          const job = { tool: req.tool, args: req.args, cwd: req.cwd, env: req.env, nice: this.localNice() }
          const slot = { signal: ctx.signal, priority: placed.priority }
          const outcome = placed.suspects === undefined
            ? await this.pool.run(job, slot)
            : await this.dispatcher.rerun(job, placed.suspects, req.importPath, slot)
          this.counters.compiles++
          this.finished(req.importPath, build, outcome.exitCode === 0, outcome.runMs)
          if (c !== undefined) c.local++
          log.debug(`compiled ${req.importPath} in ${outcome.runMs.toFixed(1)} ms (queued ${outcome.queuedMs.toFixed(1)} ms)`)
          return { type: 'compile-result', id, exitCode: outcome.exitCode, output: outcome.output }
        } finally {
          if (c !== undefined && !handedOver) c.running--
        }
      }
      case 'compile-done':
        ctx.done?.(req.exitCode)
        ctx.done = undefined
        ctx.release?.()
        ctx.release = undefined
        return { type: 'ok', id }
      case 'build-begin': {
        const record = this.builds.begin(req.command, req.cwd)
        ctx.onClose(() => { this.dropBuild(record) })
        // ready by the time go starts its cache helper, which asks for it at its first lookup
        record.recalling = this.recall(record)
        log.info(`build ${record.stats.build} began: ${req.command.join(' ')}`)
        const remote = this.meshOptions?.offload === 'never' ? undefined : this.remote
        // more compiles than slots wait here, so the node picks the next by the critical path;
        // the peers' share is capped, whatever their adverts say
        const { parallelism, remoteSlots } = goParallelism(this.pool.slots, remote?.capacity() ?? 0, availableParallelism())
        const offload = remote?.anyCapable() ?? false // every free remote slot is a capable peer's
        remote?.probeLinks() // before its long poles are placed (remote/link.ts)
        return { type: 'build-begun', id, build: record.stats.build, parallelism, remoteSlots, offload, protocol: PROTOCOL_VERSION, mode: this.mode }
      }
      case 'build-graph': {
        const record = this.builds.get(req.build)
        if (record === undefined) throw new GridError('GRID_ERR_MESSAGE_INVALID', `no active build ${req.build}`)
        record.plan = this.scheduler.plan(req.packages)
        log.debug(`build ${req.build}: graph of ${record.plan.size} packages`)
        return { type: 'ok', id }
      }
      case 'build-progress':
      case 'build-end': {
        let record = this.builds.get(req.build)
        if (req.type === 'build-end' && record !== undefined) {
          await settled(record, this.stopping.signal) // its last compiles, a stat each: its summary counts them
          record = this.builds.get(req.build)
        }
        if (record === undefined) throw new GridError('GRID_ERR_MESSAGE_INVALID', `no active build ${req.build}`)
        if (req.type === 'build-progress') return { type: 'build-stats', id, stats: this.summarise(record) }
        const stats = this.endBuild(record)
        // a build that ran alone for it is told why (an embedded node joins on its first miss:
        // its start may still be under way)
        const meshFailure = await this.meshFailure()
        return { type: 'build-stats', id, stats, ...(meshFailure === undefined ? {} : { meshFailure }) }
      }
      case 'status':
        return { type: 'status-result', id, status: await this.status() }
      case 'cache-stats':
        return { type: 'cache-stats-result', id, stats: await cacheStats(this.cache) }
      case 'cache-gc':
        return { type: 'cache-gc-result', id, result: await cacheGc(this.cache, req.maxBytes, h => this.builds.isPinned(h)) }
      case 'cache-verify':
        return { type: 'cache-verify-result', id, result: await this.cache.verify() }
      case 'shutdown':
        this.stopRequested.resolve()
        return { type: 'ok', id }
      case 'peers':
        return { type: 'peers-result', id, peers: this.peers(), unlisted: this.unlistedPeers() }
    }
  }
}
