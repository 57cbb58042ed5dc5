/**
 * @grid/node: the grid node (daemon or embedded) and the pieces the CLI drives directly:
 * the control client, the toolchain check and the shim builder.
 */
export { GridNode, type GridNodeInit } from './node.js'
export { Cache } from './cache/index.js'
export { ControlClient, ControlServer, CONNECT_TIMEOUT_MS } from './control/index.js'
export { LocalPool, DEFAULT_SLOTS } from './worker/index.js'
export { detectGo, checkGoVersion, parseGoVersion, type GoToolchain } from './toolchain/index.js'
export { ensureShim, SHIM_SOURCE_DIR } from './shim/index.js'
export { loadIdentity } from './identity/index.js'
export { defaultCacheDir, defaultControlPath, checkSocketPath } from './paths.js'
export { configureLogging, closeLogging, logger, type Logger } from './log.js'
export type { MeshOptions } from './node.js'
export { loadConfig, defaultConfigPath, defaultSwarmKeyPath, configDir, checkMultiaddr, checkPolicy, checkTrust, checkPercent, DEFAULT_LISTEN, type NodeConfig } from './config/index.js'
export { DEFAULT_PORT, HEARTBEAT_MS, PEER_TIMEOUT_MS } from './mesh/constants.js'
export { Mesh, type MeshInit, type PeerView } from './mesh/index.js'
export { ADVERT_PROTOCOL, ADVERT_TOPIC } from './mesh/constants.js'
