/**
 * @grid/node/server: the grid node (daemon or embedded) and its subsystems, for the process
 * that runs a node. Loading it opens LevelDB bindings and key material: clients use
 * `@grid/node` instead.
 */
export { GridNode, type GridNodeInit, type MeshOptions } from './node.js'
export { Cache, AbsentFilter } from './cache/index.js'
export { GC_SPARES_RECENT_MS, MAX_RECALL_LISTS } from './cache/constants.js'
export { LocalPool, withConcurrency, withStartHeap, takesStartHeap, DEFAULT_SLOTS, Spawner, SpawnerGone } from './worker/index.js'
export { loadIdentity } from './identity/index.js'
export { ControlServer } from './control/index.js'
export { prepareCacheDir } from './paths.js'
export { signer, verifier } from './identity/ed25519.js'
export { exportDataOnly, peerArchiveProblem, withCgoSection } from './remote/archive.js'
export { PeerSlots, ADVERT_LAG_MS } from './remote/peer-slots.js'
export { parseCompileArgs, relocatedTrimpath } from './remote/parse.js'
export { Backlog, localOrPeer, Plan, History, place, estimateMs, overdueMs, BACKLOG_DEPTH, LOCAL_NICE, TINY_MS, LONG_POLE_MS } from './scheduler/index.js'
export { Dispatcher, withOutputs } from './scheduler/dispatch.js'
export { Worker, type CompileResult } from './remote/worker.js'
export { Sandboxes } from './remote/sandbox.js'
export { InputStore, inputStoreDir } from './remote/inputs.js'
export { cacheStats } from './cache-stats.js'
export { WORKER_INPUT_TTL_MS } from './remote/constants.js'
export { windowUpdatesAtHalf } from './mesh/yamux-window.js'
export { OwnLoad } from './mesh/load.js'
export { IDLE_LOAD_PER_CORE, LOAD_SAMPLE_MS, LOAD_WINDOW_MS } from './mesh/constants.js'
export { buildTask } from './remote/task-builder.js'
export { compilerStamp, probeToolchain } from './toolchain/probe.js'
export { deadline } from './signals.js'
