/**
 * @grid/node: what a client of a node needs, kept light so `grid build` starts fast against a
 * running daemon: the control client, the toolchain check, the shim builder, paths, config and
 * logging. The node itself (cache, pool, mesh) is `@grid/node/server`, loaded only by the
 * process that runs one.
 */
export { ControlClient, ControlServer, CONNECT_TIMEOUT_MS } from './control/index.js'
export { detectGo, checkGoVersion, parseGoVersion, type GoToolchain } from './toolchain/index.js'
export { ensureShim, pruneShims, SHIM_SOURCE_DIR, SHIM_UNUSED_MS } from './shim/index.js'
export { defaultCacheDir, defaultControlPath, checkSocketPath, prepareCacheDir } from './paths.js'
export { makeDirs } from './files.js'
export { deadline } from './signals.js'
export { LOG_ROTATE_BYTES, configureLogging, closeLogging, logger, type Logger } from './log.js'
export type { MeshOptions, GridNodeInit } from './node.js'
export { loadConfig, defaultConfigPath, defaultSwarmKeyPath, configDir, checkMultiaddr, checkPolicy, checkTrust, checkPercent, checkOffload, checkTaskMemory, checkCompileHeap, DEFAULT_LISTEN, DEFAULT_TASK_MEMORY, type NodeConfig } from './config/index.js'
export { DEFAULT_PORT, HEARTBEAT_MS, PEER_TIMEOUT_MS, ADVERT_PROTOCOL, ADVERT_TOPIC } from './mesh/constants.js'
export { buildIdAction, compileFiles } from './builds/index.js'
export { GC_SPARES_RECENT_MS } from './cache/constants.js'
